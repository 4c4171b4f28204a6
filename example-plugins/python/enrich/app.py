"""`enrich`: adds the fields of a side-input row to each event.

The Python twin of example-plugins/enrich (Rust): the same config, the same output bytes,
the same rejection reasons and error messages.

Config: `table` (a `[[side_input]]` name), `field` (the event field whose value is the
row's key) and `on_missing` (`keep`, the default, passes the event on unchanged; `reject`
sends it to the dead-letter sink; `drop` drops it).

    [[plugin]]
    name = "with-user"
    path = "enrich.wasm"
    config = { table = "users", field = "user" }
"""

import eddy_plugin as eddy

ON_MISSING = ("keep", "reject", "drop")


class Enrich(eddy.Transform):
    """Merges a side-input row into each event."""

    def __init__(self, config):
        # The same order of checks as the Rust plugin, so the same error comes first.
        self.on_missing = config.get("on_missing", "keep")
        if self.on_missing not in ON_MISSING:
            raise eddy.ConfigError(
                f"config key `on_missing` = {eddy.quote(self.on_missing)}: expected keep, reject or drop"
            )
        self.table = config.require("table")
        # Looks the table up once, so a table the pipeline does not declare stops the
        # pipeline at start (the host names it) rather than failing every batch.
        eddy.lookup(self.table, b"")
        self.field = config.require("field")
        self.missing = f"no row in `{self.table}` for field `{self.field}`"

    def key(self, event):
        """The row key of `event`: the text of a string field, else the field's raw JSON
        (`5`, `true`); None when the event has no such field."""
        field = event.field(self.field)
        if field is None:
            return None
        text = field.as_str()
        return field.raw if text is None else text.encode()

    def process(self, batch, out):
        for event in batch:
            key = self.key(event)
            row = None if key is None else eddy.lookup(self.table, key)
            if row is not None:
                # Either side not an object: the event passes unchanged, as in Rust.
                out.emit(event, eddy.merge_objects(event.value, row) or event.value)
            elif self.on_missing == "keep":
                out.forward(event)
            elif self.on_missing == "reject":
                out.reject(event, self.missing)


eddy.export(Enrich)
