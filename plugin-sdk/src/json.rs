//! Zero-allocation access to the top-level fields of a JSON object.
//!
//! Event values are JSON objects. Most plugins read one or two fields of each event, so
//! parsing the whole object into a tree (and allocating for it) would cost more than the
//! plugin's own logic. [`field`] scans the object once and hands back the raw text of one
//! field's value as a [`Field`], which converts to a number or string on demand.
//!
//! ```
//! use eddy_plugin_sdk::json;
//! let value = br#"{"user": "user-1", "amount": 42.5, "tags": ["a", "b"]}"#;
//! assert_eq!(json::field(value, "amount").and_then(|f| f.as_f64()), Some(42.5));
//! assert_eq!(json::field(value, "user").and_then(|f| f.as_str()).as_deref(), Some("user-1"));
//! assert!(json::field(value, "missing").is_none());
//! ```

use std::borrow::Cow;

/// The raw JSON text of one field's value, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    raw: &'a [u8],
}

impl<'a> Field<'a> {
    /// The value's JSON text exactly as it appears in the event, e.g. `42.5` or `"DE"`.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The value as a number, if it is a JSON number.
    pub fn as_f64(&self) -> Option<f64> {
        match self.raw.first()? {
            b'-' | b'0'..=b'9' => parse_simple_decimal(self.raw)
                .or_else(|| std::str::from_utf8(self.raw).ok()?.parse().ok()),
            _ => None,
        }
    }

    /// The value as an integer, if it is a JSON number without fraction or exponent.
    pub fn as_i64(&self) -> Option<i64> {
        std::str::from_utf8(self.raw).ok()?.parse().ok()
    }

    /// The value as a string, if it is a JSON string. Borrows from the event unless the
    /// string has escape sequences.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        let inner = self.raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        if inner.contains(&b'\\') {
            serde_json::from_slice::<String>(self.raw)
                .ok()
                .map(Cow::Owned)
        } else {
            std::str::from_utf8(inner).ok().map(Cow::Borrowed)
        }
    }

    /// The value as a boolean, if it is `true` or `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self.raw {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        }
    }

    /// Whether the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.raw == b"null"
    }
}

/// Finds the top-level field `name` of the JSON object `object`.
///
/// Returns `None` when the object has no such field or is not a well-formed object up to
/// that field. Never allocates unless a key in the object contains escape sequences.
pub fn field<'a>(object: &'a [u8], name: &str) -> Option<Field<'a>> {
    fields(object)
        .find(|(key, _)| key_equals(key, name))
        .map(|(_, value)| value)
}

/// The top-level fields of a JSON object, in order, as (raw key with its quotes, value).
/// Stops at the first malformed part.
pub fn fields(object: &[u8]) -> Fields<'_> {
    let mut scan = Scanner {
        text: object,
        pos: 0,
    };
    scan.skip_ws();
    let open = scan.expect(b'{').is_some();
    scan.skip_ws();
    let done = !open || scan.peek() == Some(b'}');
    Fields { scan, done }
}

/// Iterator over the top-level fields of an object; see [`fields`].
#[derive(Debug)]
pub struct Fields<'a> {
    scan: Scanner<'a>,
    done: bool,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], Field<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.scan.member();
        if item.is_none() {
            self.done = true;
        }
        item
    }
}

/// The body of an object between its braces, trimmed, e.g. `"a": 1` for `{"a": 1}`.
/// Returns `None` when `object` does not start with `{` and end with `}`.
pub fn object_body(object: &[u8]) -> Option<&[u8]> {
    let trimmed = object.trim_ascii();
    let body = trimmed.strip_prefix(b"{")?.strip_suffix(b"}")?;
    Some(body.trim_ascii())
}

/// Writes the union of two JSON objects' fields into `out` as one object: the fields of
/// `base`, then those fields of `extra` that `base` does not have (so keys stay unique).
/// Returns `false` and writes nothing when either is not an object.
pub fn merge_objects(out: &mut Vec<u8>, base: &[u8], extra: &[u8]) -> bool {
    let Some(body) = object_body(base) else {
        return false;
    };
    if object_body(extra).is_none() {
        return false;
    }
    out.push(b'{');
    out.extend_from_slice(body);
    let mut first = body.is_empty();
    for (key, value) in fields(extra) {
        if fields(base).any(|(k, _)| raw_keys_equal(k, key)) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(key);
        out.push(b':');
        out.extend_from_slice(value.raw());
    }
    out.push(b'}');
    true
}

/// Whether a raw (quoted) key names `name`.
fn key_equals(raw_key: &[u8], name: &str) -> bool {
    let inner = &raw_key[1..raw_key.len() - 1];
    if inner == name.as_bytes() {
        return true;
    }
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(raw_key).is_ok_and(|k| k == name)
    } else {
        inner == name.as_bytes()
    }
}

/// Whether two raw (quoted) keys name the same field.
fn raw_keys_equal(a: &[u8], b: &[u8]) -> bool {
    a == b
        || ((a.contains(&b'\\') || b.contains(&b'\\'))
            && serde_json::from_slice::<String>(b).is_ok_and(|b| key_equals(a, &b)))
}

/// Parses `-?digits(.digits)?` exactly, without a string conversion, when the digits fit
/// in 2^53 and there are at most 22 of them after the point (then one division by an
/// exact power of ten is correctly rounded). Anything else is left to the full parser.
fn parse_simple_decimal(raw: &[u8]) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let (negative, digits) = match raw.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, raw),
    };
    let mut mantissa: u64 = 0;
    let mut fraction_digits: Option<usize> = None;
    let mut count = 0;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                count += 1;
                if let Some(f) = &mut fraction_digits {
                    *f += 1;
                }
            }
            b'.' if fraction_digits.is_none() && count > 0 => fraction_digits = Some(0),
            _ => return None,
        }
    }
    let scale = fraction_digits.unwrap_or(0);
    if count == 0 || fraction_digits == Some(0) || mantissa > (1 << 53) || scale >= POW10.len() {
        return None;
    }
    let value = mantissa as f64 / POW10[scale];
    Some(if negative { -value } else { value })
}

/// A cursor over JSON text that skips values without building them.
#[derive(Debug)]
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Reads one `"key": value` member and the `,` after it (or stops before `}`).
    fn member(&mut self) -> Option<(&'a [u8], Field<'a>)> {
        self.skip_ws();
        let key = self.string()?;
        self.skip_ws();
        self.expect(b':')?;
        self.skip_ws();
        let start = self.pos;
        self.value()?;
        let value = Field {
            raw: &self.text[start..self.pos],
        };
        self.skip_ws();
        match self.peek()? {
            b',' => self.pos += 1,
            b'}' => {}
            _ => return None,
        }
        Some((key, value))
    }

    /// Skips a string, returning its raw text with the quotes.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        self.expect(b'"')?;
        loop {
            match self.next()? {
                b'"' => return Some(&self.text[start..self.pos]),
                b'\\' => {
                    self.next()?;
                }
                _ => {}
            }
        }
    }

    /// Skips one value of any kind.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => self.nested(),
            _ => {
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                (self.pos > start).then_some(())
            }
        }
    }

    /// Skips an object or array, however deeply nested, counting brackets outside strings.
    fn nested(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Some(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_of_every_kind() {
        let v = br#" { "a" : 1, "b": "x\"y", "c": {"a": 2, "d": [1, {"e": "}"}]}, "d": -2.5e1, "e": null } "#;
        assert_eq!(field(v, "a").unwrap().as_i64(), Some(1));
        assert_eq!(field(v, "b").unwrap().as_str().unwrap(), "x\"y");
        assert_eq!(
            field(v, "c").unwrap().raw(),
            br#"{"a": 2, "d": [1, {"e": "}"}]}"#
        );
        assert_eq!(field(v, "d").unwrap().as_f64(), Some(-25.0));
        assert!(field(v, "e").unwrap().is_null());
        assert!(field(v, "f").is_none());
    }

    #[test]
    fn numbers_parse_exactly_like_the_standard_parser() {
        for text in [
            "0",
            "-0",
            "42",
            "-42.5",
            "100.00",
            "0.1",
            "1234.5678",
            "9007199254740993",
            "1e3",
            "1.5E-2",
            "-0.000001",
            "123456789012.34",
        ] {
            let want: f64 = text.parse().unwrap();
            let got = Field {
                raw: text.as_bytes(),
            }
            .as_f64()
            .unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
        }
        for bad in ["-", "1.", ".5", "1..2", "--1", "1x"] {
            assert!(parse_simple_decimal(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn nested_keys_are_not_top_level() {
        assert!(field(br#"{"x": {"amount": 5}}"#, "amount").is_none());
    }

    #[test]
    fn escaped_keys_match_their_text() {
        assert_eq!(
            field(br#"{"amou\u006et": 7}"#, "amount").unwrap().as_i64(),
            Some(7)
        );
    }

    #[test]
    fn malformed_input_gives_none() {
        for bad in [
            &b""[..],
            b"[1]",
            b"{",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\" 1}",
            b"{\"a\":1 \"b\":2}",
            b"\"s\"",
        ] {
            assert!(field(bad, "b").is_none(), "{:?}", std::str::from_utf8(bad));
        }
        assert!(field(b"{}", "a").is_none());
    }

    #[test]
    fn merges_objects() {
        let mut out = Vec::new();
        assert!(merge_objects(&mut out, br#"{"a":1}"#, br#" {"b":2} "#));
        assert_eq!(out, br#"{"a":1,"b":2}"#);
        out.clear();
        assert!(merge_objects(
            &mut out,
            br#"{"a":1,"b":2}"#,
            br#"{"b":3, "c" : [4], "a":0}"#
        ));
        assert_eq!(out, br#"{"a":1,"b":2,"c":[4]}"#);
        out.clear();
        assert!(merge_objects(&mut out, b"{}", br#"{"c":1}"#));
        assert_eq!(out, br#"{"c":1}"#);
        out.clear();
        assert!(merge_objects(&mut out, br#"{"a":1}"#, b"{}"));
        assert_eq!(out, br#"{"a":1}"#);
        assert!(!merge_objects(&mut out, b"[]", b"{}"));
    }
}
