# The top-level fields of a JSON object, read from its raw text without parsing it; the
# number parsing and object merge of the Rust SDK (plugin-sdk/src/json/), byte for byte; and
# Rust's `{:?}` quoting of a string, for error messages that match the Rust plugins'.
#
# Invariants:
# - Every function here gives the Rust SDK's answer for the same bytes, so a Python plugin
#   and its Rust twin agree on every event: the first top-level member with a key wins, an
#   escaped key (`"am\u006funt"`) names its decoded text, a string with a lone surrogate
#   escape is not a string (serde_json refuses it), numbers follow Rust's `f64` grammar.
# - Nothing is re-serialised: values come back as slices of the input (`raw`), so what a
#   plugin passes on is exactly what it was given.
# - Values the host hands a plugin are well-formed JSON objects (the host validates every
#   record). For other text the answer is None or a best-effort slice, never an exception.
#
# The scanner walks an object member by member like plugin-sdk/src/json/scan.rs, but reads
# each member with one regular expression (C speed) instead of looping over bytes; only
# nested values are walked bracket by bracket.

import json
import re
import unicodedata

# Rust's `trim_ascii` set: JSON whitespace and \x0c.
_TRIM = b" \t\n\r\x0c"
# A string with its quotes; a backslash takes the next byte, whatever it is.
_STR = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRING = re.compile(_STR, re.S)
# The opening brace of an object and the whitespace around it.
_OPEN = re.compile(rb"[ \t\n\r]*\{[ \t\n\r]*")
# One member up to its value: the key (group 1), then a string (group 2), a number or
# literal (group 3: up to a delimiter or whitespace), or the bracket opening an object or
# array (no group; `_nested_end` finds its end).
_MEMBER = re.compile(
    rb"[ \t\n\r]*(" + _STR + rb")[ \t\n\r]*:[ \t\n\r]*"
    rb"(?:(" + _STR + rb')|([^"{\[,}\] \t\n\r][^,}\] \t\n\r]*)|[{\[])',
    re.S,
)
# What follows a member: `,` or `}` (group 1).
_AFTER = re.compile(rb"[ \t\n\r]*([,}])")
# What matters inside a nested value: quotes (strings are skipped) and brackets.
_NESTING = re.compile(rb'["{}\[\]]')
# What Rust's `str::parse::<f64>` accepts: ASCII digits with an optional point and
# exponent, or inf / infinity / nan in any case, all with an optional sign. (Python's
# float() also takes `1_0`, surrounding whitespace and other digits; Rust does not.)
_RUST_F64 = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))"
)


def _nested_end(text, pos):
    """The end of the object or array opening at `pos`, or None when it is not closed.
    Like the Rust scanner, it counts brackets outside strings: `]` closes `{` too."""
    depth = 0
    while True:
        m = _NESTING.search(text, pos)
        if m is None:
            return None
        pos = m.start()
        if text[pos] == 0x22:  # a string: skip it whole
            s = _STRING.match(text, pos)
            if s is None:
                return None
            pos = s.end()
            continue
        depth += 1 if text[pos] in b"{[" else -1
        pos += 1
        if depth == 0:
            return pos


def fields(obj):
    """The top-level members of the JSON object `obj` (bytes), in order, as
    (raw key with its quotes, raw value). Stops at the first malformed part."""
    m = _OPEN.match(obj)
    if m is None or obj[m.end() : m.end() + 1] == b"}":
        return
    pos = m.end()
    while True:
        m = _MEMBER.match(obj, pos)
        if m is None:
            return
        if m.lastindex == 1:  # an object or array
            start = m.end() - 1
            end = _nested_end(obj, start)
            if end is None:
                return
        else:
            start, end = m.start(m.lastindex), m.end()
        after = _AFTER.match(obj, end)
        if after is None:
            return
        yield m.group(1), obj[start:end]
        if after.group(1) == b"}":
            return
        pos = after.end()


def field(obj, name):
    """The raw value of the first top-level member of `obj` whose key is `name` (str),
    or None when there is none."""
    quoted = b'"' + name.encode() + b'"'
    # Without escapes, a key `name` must appear literally: most absent fields end here.
    if quoted not in obj and b"\\" not in obj:
        return None
    for key, value in fields(obj):
        if key_equals(key, name):
            return value
    return None


def string(raw):
    """The text of a raw JSON string (with its quotes), or None when `raw` is not one.

    Like serde_json, a string whose escapes decode to a lone surrogate is refused."""
    if len(raw) < 2 or raw[0] != 0x22 or raw[-1] != 0x22:
        return None
    inner = raw[1:-1]
    try:
        if b"\\" not in inner:
            return inner.decode("utf-8")
        text = json.loads(raw)
        text.encode("utf-8")  # fails on a lone surrogate
    except (ValueError, UnicodeError):
        return None
    return text if isinstance(text, str) else None


def parse_f64(text):
    """``text`` (str) as a float exactly when Rust's ``str::parse::<f64>`` accepts it (``1``,
    ``+1.5``, ``.5``, ``1e3``, ``inf``, ``NaN``), else None (``""``, ``" 1"``, ``1_0``, ``0x10``)."""
    if _RUST_F64.fullmatch(text) is None:
        return None
    return float(text)


def number(raw):
    """The value of a raw JSON number as a float, or None when `raw` is not a number."""
    if not raw or raw[0] not in b"-0123456789":
        return None
    try:
        return parse_f64(raw.decode("ascii"))
    except UnicodeDecodeError:
        return None


def key_equals(raw_key, name):
    """Whether a raw (quoted) key names `name` (str), escapes decoded."""
    inner = raw_key[1:-1]
    if inner == name.encode():
        return True
    return b"\\" in inner and string(raw_key) == name


def _raw_keys_equal(a, b):
    """Whether two raw (quoted) keys name the same member."""
    if a == b:
        return True
    if b"\\" not in a and b"\\" not in b:
        return False
    text = string(b)
    return text is not None and key_equals(a, text)


def object_body(obj):
    """The text between an object's braces, trimmed; None when `obj` is not `{...}`."""
    trimmed = obj.strip(_TRIM)
    if not (trimmed.startswith(b"{") and trimmed.endswith(b"}")):
        return None
    return trimmed[1:-1].strip(_TRIM)


def merge_objects(base, extra):
    """The union of two JSON objects' members (bytes, or str as UTF-8) as one object:
    `base`'s text, then the members of `extra` whose keys `base` lacks, copied raw (on a
    shared key, `base` wins). None when either is not an object (the Rust SDK's
    `json::merge_objects`, byte for byte)."""
    if isinstance(base, str):
        base = base.encode()
    if isinstance(extra, str):
        extra = extra.encode()
    body = object_body(base)
    if body is None or object_body(extra) is None:
        return None
    base_keys = {key for key, _ in fields(base)}
    # Keys without escapes are equal exactly when their bytes are.
    escaped = any(b"\\" in key for key in base_keys)
    out = [b"{", body]
    first = not body
    for key, value in fields(extra):
        if key in base_keys or (
            (escaped or b"\\" in key) and any(_raw_keys_equal(k, key) for k in base_keys)
        ):
            continue
        if not first:
            out.append(b",")
        first = False
        out += [key, b":", value]
    out.append(b"}")
    return b"".join(out)


# Characters that are Grapheme_Extend without being a combining mark (Mn, Me), per
# Unicode's Other_Grapheme_Extend; Rust's `{:?}` escapes both.
_OTHER_GRAPHEME_EXTEND = (
    (0x09BE, 0x09BE), (0x09D7, 0x09D7), (0x0B3E, 0x0B3E), (0x0B57, 0x0B57),
    (0x0BBE, 0x0BBE), (0x0BD7, 0x0BD7), (0x0CC2, 0x0CC2), (0x0CD5, 0x0CD6),
    (0x0D3E, 0x0D3E), (0x0D57, 0x0D57), (0x0DCF, 0x0DCF), (0x0DDF, 0x0DDF),
    (0x1B35, 0x1B35), (0x200C, 0x200C), (0x302E, 0x302F), (0xFF9E, 0xFF9F),
    (0x1133E, 0x1133E), (0x11357, 0x11357), (0x114B0, 0x114B0), (0x114BD, 0x114BD),
    (0x115AF, 0x115AF), (0x11930, 0x11930), (0x1D165, 0x1D165), (0x1D16E, 0x1D172),
    (0xE0020, 0xE007F),
)  # fmt: skip
_SHORT_ESCAPES = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}


def quote(text):
    """``text`` in double quotes, escaped as Rust's ``{:?}`` writes a string, so error
    messages match the Rust plugins' (``"~"``, ``"a\\"b"``, ``"\\u{7f}"``). Follows the
    Unicode version of this Python for which characters are printable."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif (
            not ch.isprintable()  # Unicode's Other and Separator categories, but for " "
            or unicodedata.category(ch) in ("Mn", "Me")
            or any(lo <= code <= hi for lo, hi in _OTHER_GRAPHEME_EXTEND)
        ):
            out.append(f"\\u{{{code:x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
