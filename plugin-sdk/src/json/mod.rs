//! Zero-allocation access to the top-level fields of a JSON object.
//!
//! Event values are JSON objects. Most plugins read one or two fields of each event, so
//! parsing the whole object into a tree (and allocating for it) would cost more than the
//! plugin's own logic. [`field`] finds one field and hands back the raw text of its
//! value as a [`Field`], which converts to a number or string on demand.
//!
//! [`field`] looks at 16 or 64 bytes at a time (SIMD compares and bit arithmetic, see
//! `index.rs`), so its cost grows slowly with how far into the object the field is.
//! Text it cannot settle that way (a backslash before the field, a key over 62 bytes, an
//! object under 16 bytes) goes through the exact byte-by-byte scanner, which [`fields`]
//! also uses.
//!
//! ```
//! use eddy_plugin_sdk::json;
//! let value = br#"{"user": "user-1", "amount": 42.5, "tags": ["a", "b"]}"#;
//! assert_eq!(json::field(value, "amount").and_then(|f| f.as_f64()), Some(42.5));
//! assert_eq!(json::field(value, "user").and_then(|f| f.as_str()).as_deref(), Some("user-1"));
//! assert!(json::field(value, "missing").is_none());
//! ```

use std::borrow::Cow;

mod classify;
mod index;
mod number;
mod scan;

pub use scan::Fields;

/// The raw JSON text of one field's value, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    raw: &'a [u8],
}

impl<'a> Field<'a> {
    fn new(raw: &'a [u8]) -> Self {
        Self { raw }
    }

    /// The value's JSON text exactly as it appears in the event, e.g. `42.5` or `"DE"`.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The value as a number, if it is a JSON number.
    pub fn as_f64(&self) -> Option<f64> {
        match self.raw.first()? {
            b'-' | b'0'..=b'9' => number::parse_simple_decimal(self.raw)
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

/// Finds the first top-level field `name` of the JSON object `object`.
///
/// Returns `None` when the object has no such field. Values the host hands a plugin are
/// always well-formed JSON objects (the host validates every record it ingests); for
/// other text the answer is `None` or a best-effort slice of it, never a panic. Never
/// allocates unless the object has escape sequences in its keys.
#[inline]
pub fn field<'a>(object: &'a [u8], name: &str) -> Option<Field<'a>> {
    match index::find(object, name.as_bytes()) {
        index::Lookup::Found(value) => Some(value),
        index::Lookup::Absent => None,
        index::Lookup::Unsure => fields(object)
            .find(|(key, _)| key_equals(key, name))
            .map(|(_, value)| value),
    }
}

/// Appends to `numbers` the number in top-level field `name` of each packed value
/// (`values` back to back, `ends` the end of each), NaN where a value has no such field
/// or it is not a number: what [`crate::Batch::numbers`] returns, and what the host
/// answers a plugin's `field-numbers` with.
pub fn field_numbers(values: &[u8], ends: &[u32], name: &str, numbers: &mut Vec<f64>) {
    let mut start = 0;
    for &end in ends {
        let value = values.get(start..end as usize).unwrap_or_default();
        start = end as usize;
        let number = field(value, name).and_then(|field| field.as_f64());
        numbers.push(number.unwrap_or(f64::NAN));
    }
}

/// The top-level fields of a JSON object, in order, as (raw key with its quotes, value).
/// Stops at the first malformed part.
pub fn fields(object: &[u8]) -> Fields<'_> {
    scan::fields(object)
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
    fn numbers_the_fast_path_declines_parse_like_the_standard_parser() {
        for text in [
            "1e3",
            "1.5E-2",
            "9007199254740993",
            "-0",
            "12345678901234567890",
        ] {
            let want: f64 = text.parse().unwrap();
            let got = Field {
                raw: text.as_bytes(),
            }
            .as_f64()
            .unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
        }
        for not_a_number in ["-", "1..2", "--1", "1x", "\"1\"", "true", "[1]"] {
            let field = Field::new(not_a_number.as_bytes());
            assert!(field.as_f64().is_none(), "{not_a_number}");
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
