"""`filter`: keeps the events whose field compares true against a value.

The Python twin of example-plugins/filter (Rust): the same config, the same verdicts, the
same rejection reasons and error messages, byte for byte.

Config: `field` (a top-level field of the event), `op` (one of `== != < <= > >=`) and
`value`. Numbers compare as numbers when both sides are numbers, otherwise as text (in
code point order, as Rust compares strings). An event without the field is rejected to
the dead-letter sink.

    [[plugin]]
    name = "big-spenders"
    path = "filter.wasm"
    config = { field = "amount", op = ">=", value = "100" }
"""

import math

import eddy_plugin as eddy

# Each comparison as a test of an ordering (-1, 0 or 1).
OPS = {
    "==": lambda o: o == 0,
    "!=": lambda o: o != 0,
    "<": lambda o: o < 0,
    "<=": lambda o: o <= 0,
    ">": lambda o: o > 0,
    ">=": lambda o: o >= 0,
}

# What the filter decides for one event.
KEEP, DROP, MISSING = "keep", "drop", "missing"


def order(a, b):
    """-1, 0 or 1 as `a` is less than, equal to or greater than `b`; None when they do not
    compare (a NaN, as Rust's `partial_cmp`). Works for floats and for str."""
    if a < b:
        return -1
    if a > b:
        return 1
    return 0 if a == b else None


class FieldFilter(eddy.Filter):
    """Keeps events where `field op value` holds."""

    def __init__(self, config):
        # The same order of checks as the Rust plugin, so the same error comes first.
        self.text = config.require("value")
        self.field = config.require("field")
        op = config.require("op")
        if op not in OPS:
            raise eddy.ConfigError(f"config key `op` = {eddy.quote(op)}: expected one of == != < <= > >=")
        self.holds = OPS[op]
        # A number when Rust's f64 parser takes it ("+1", "1e3", "inf", "nan"; not " 1", "1_0").
        self.number = eddy.parse_f64(self.text)
        self.missing = f"no field `{self.field}`"

    def verdict(self, event):
        """The verdict for one event, read from the event alone. `select` gives the same
        verdicts, reading a numeric field as one column for the batch."""
        field = event.field(self.field)
        if field is None:
            return MISSING
        have = None if self.number is None else field.as_number()
        if have is not None:
            return self.judge(order(have, self.number))
        text = field.as_str()
        return self.judge(None if text is None else order(text, self.text))

    def judge(self, ordering):
        """Keep when the ordering satisfies `op`; drop when not, or when there is none."""
        return KEEP if ordering is not None and self.holds(ordering) else DROP

    def select(self, batch, out):
        if self.number is None:
            for event in batch:
                self.apply(event, self.verdict(event), out)
            return
        # A numeric comparison reads the field as one column, which the host parses.
        for event, have in zip(batch, batch.numbers(self.field)):
            # NaN: no such field, or not a number; the text comparison decides.
            verdict = self.verdict(event) if math.isnan(have) else self.judge(order(have, self.number))
            self.apply(event, verdict, out)

    def apply(self, event, verdict, out):
        """Keeps, drops or rejects `event`."""
        if verdict == KEEP:
            out.keep(event)
        elif verdict == MISSING:
            out.reject(event, self.missing)


eddy.export(FieldFilter)
