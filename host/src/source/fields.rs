//! Reads an event's time and key out of its JSON text while validating it, in one pass and
//! without building the object: the fast path ([`super::json_scan`]) for plain events,
//! serde_json for the rest and for the reason an event is refused.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer as _;

use super::json_scan;
use crate::config::EventFields;

/// What [`extract`] found in an event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extracted<'a> {
    /// The event time, when the pipeline names a time field.
    pub timestamp: Option<i64>,
    /// The key's bytes, when the pipeline names a key field.
    pub key: Option<Cow<'a, [u8]>>,
}

/// Validates that `json` is one JSON object in UTF-8 and reads the fields `fields` names.
///
/// Returns a reason fit for a dead letter when the bytes are not UTF-8, the text is not a
/// JSON object, or a named field is missing or of the wrong type.
pub fn extract<'a>(json: &'a [u8], fields: &EventFields) -> Result<Extracted<'a>, String> {
    let (time, key) = (fields.time_field.as_deref(), fields.key_field.as_deref());
    let extracted = match json_scan::scan(json, time, key) {
        Some(found) => Extracted {
            timestamp: found.timestamp,
            key: found.key.map(Cow::Borrowed),
        },
        None => extract_slowly(json, time, key)?,
    };
    if let (Some(name), None) = (time, extracted.timestamp) {
        return Err(format!(
            "no event-time field `{name}` (integer milliseconds since the Unix epoch)"
        ));
    }
    if let (Some(name), None) = (key, &extracted.key) {
        return Err(format!("no key field `{name}`"));
    }
    Ok(extracted)
}

/// The slow path of [`extract`], through serde_json: any valid event, and the reason for
/// an invalid one.
fn extract_slowly<'a>(
    json: &'a [u8],
    time: Option<&str>,
    key: Option<&str>,
) -> Result<Extracted<'a>, String> {
    if let Err(e) = std::str::from_utf8(json) {
        return Err(format!(
            "not valid UTF-8 (at byte {}); events are UTF-8 JSON",
            e.valid_up_to()
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_map(ObjectVisitor { time, key })
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| format!("malformed JSON: {e}"))
}

/// Which of the wanted fields a key names.
enum Which {
    Time,
    Key,
    Other,
}

struct ObjectVisitor<'s> {
    time: Option<&'s str>,
    key: Option<&'s str>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Extracted<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Extracted::default();
        while let Some(which) = map.next_key_seed(KeyName {
            time: self.time,
            key: self.key,
        })? {
            match which {
                Which::Time => {
                    let name = self.time.unwrap_or_default();
                    out.timestamp = Some(map.next_value_seed(TimeValue { name })?);
                }
                Which::Key => {
                    let name = self.key.unwrap_or_default();
                    out.key = Some(map.next_value_seed(KeyValue { name })?);
                }
                Which::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Classifies an object key without allocating.
struct KeyName<'s> {
    time: Option<&'s str>,
    key: Option<&'s str>,
}

impl<'de> DeserializeSeed<'de> for KeyName<'_> {
    type Value = Which;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Which, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyName<'_> {
    type Value = Which;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Which, E> {
        Ok(if Some(name) == self.time {
            Which::Time
        } else if Some(name) == self.key {
            Which::Key
        } else {
            Which::Other
        })
    }
}

/// Reads event time: integer milliseconds (a float with no fraction is accepted).
struct TimeValue<'s> {
    name: &'s str,
}

impl<'de> DeserializeSeed<'de> for TimeValue<'_> {
    type Value = i64;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TimeValue<'_> {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "event-time field `{}` as integer milliseconds since the Unix epoch",
            self.name
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(v as i64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
}

/// Reads a key: a string (borrowed when unescaped) or a number or boolean as its text.
struct KeyValue<'s> {
    name: &'s str,
}

impl<'de> DeserializeSeed<'de> for KeyValue<'_> {
    type Value = Cow<'de, [u8]>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyValue<'_> {
    type Value = Cow<'de, [u8]>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "key field `{}` as a string or number", self.name)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v.as_bytes()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.as_bytes().to_vec()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string().into_bytes()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string().into_bytes()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string().into_bytes()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fields(time: Option<&str>, key: Option<&str>) -> EventFields {
        EventFields {
            time_field: time.map(Into::into),
            key_field: key.map(Into::into),
            ..EventFields::default()
        }
    }

    #[test]
    fn reads_time_and_key() {
        let f = fields(Some("ts"), Some("user"));
        let e = extract(br#"{"user":"u1","x":[1,{"ts":5}],"ts":1700000000000}"#, &f).unwrap();
        assert_eq!(e.timestamp, Some(1_700_000_000_000));
        assert_eq!(e.key.as_deref(), Some(&b"u1"[..]));
        assert!(matches!(e.key, Some(Cow::Borrowed(_))));
        let e = extract(br#"{"user": 42, "ts": 7.0}"#, &f).unwrap();
        assert_eq!((e.timestamp, e.key.as_deref()), (Some(7), Some(&b"42"[..])));
        let e = extract(br#"{"user": "a\"b", "ts": 1}"#, &f).unwrap();
        assert_eq!(e.key.as_deref(), Some(&b"a\"b"[..]));
    }

    #[test]
    fn names_what_is_wrong() {
        let f = fields(Some("ts"), Some("user"));
        let cases = [
            (&br#"{"user":"u1""#[..], "malformed JSON"),
            (br#"[1,2]"#, "malformed JSON"),
            (br#"{"user":"u1","ts":1} x"#, "malformed JSON"),
            (br#"{"user":"u1"}"#, "no event-time field `ts`"),
            (br#"{"ts":1}"#, "no key field `user`"),
            (br#"{"user":"u1","ts":"soon"}"#, "event-time field `ts`"),
            (br#"{"user":"u1","ts":1.5}"#, "event-time field `ts`"),
            (br#"{"user":[1],"ts":1}"#, "key field `user`"),
        ];
        for (json, want) in cases {
            let err = extract(json, &f).unwrap_err();
            assert!(
                err.contains(want),
                "{}: {err}",
                String::from_utf8_lossy(json)
            );
        }
    }

    /// JSON values with the shapes events have: nested containers, strings with escapes
    /// and non-ASCII, numbers of every syntax.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z\"\\\n\u{1}é😀]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("(ts|user|[a-z]{1,3})", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Events as text: an object with maybe a time and a key among other fields, written
    /// compact or pretty, then maybe damaged by splicing in a fragment.
    fn event_text() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop::sample::select(vec![
            &b""[..],
            &b"{"[..],
            &b"}"[..],
            &b"]"[..],
            &b","[..],
            &b":"[..],
            &b"\""[..],
            &b"\\"[..],
            &b"\\u00"[..],
            &b"0"[..],
            &b"-"[..],
            &b"."[..],
            &b"e"[..],
            &b" "[..],
            &b"\x0c"[..],
            &b"\xff"[..],
            &b"\xc3"[..],
            &b"\"ts\":1,"[..],
            &b"\"user\":\"u\","[..],
        ]);
        (
            prop::collection::btree_map("(ts|user|[a-z]{1,3})", json_value(), 0..5),
            any::<bool>(),
            prop::option::of((any::<prop::sample::Index>(), 0..3usize, fragment)),
        )
            .prop_map(|(fields, pretty, damage)| {
                let object = serde_json::Value::Object(fields.into_iter().collect());
                let mut text = if pretty {
                    serde_json::to_vec_pretty(&object).unwrap()
                } else {
                    serde_json::to_vec(&object).unwrap()
                };
                if let Some((at, cut, fragment)) = damage {
                    let at = at.index(text.len() + 1);
                    let end = (at + cut).min(text.len());
                    text.splice(at..end, fragment.iter().copied());
                }
                text
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The fast path accepts only what serde_json accepts, and reads the same fields.
        #[test]
        fn the_fast_path_agrees_with_serde_json(text in event_text()) {
            for (time, key) in [(Some("ts"), Some("user")), (None, None), (Some("user"), Some("ts"))] {
                if let Some(found) = json_scan::scan(&text, time, key) {
                    let slow = extract_slowly(&text, time, key);
                    prop_assert!(slow.is_ok(), "fast path accepted what serde_json refuses: {slow:?}");
                    let slow = slow.unwrap();
                    prop_assert_eq!(found.timestamp, slow.timestamp);
                    prop_assert_eq!(found.key, slow.key.as_deref());
                }
            }
        }
    }

    #[test]
    fn plain_events_take_the_fast_path() {
        let line = br#"{"seq":0,"ts":1700000000000,"user":"user-17","amount":42.17,"tags":["a",{"b":null}]}"#;
        let found = json_scan::scan(line, Some("ts"), Some("user")).unwrap();
        let slow = extract_slowly(line, Some("ts"), Some("user")).unwrap();
        assert_eq!(
            (found.timestamp, found.key),
            (slow.timestamp, slow.key.as_deref())
        );
    }

    #[test]
    fn without_named_fields_only_validates() {
        let e = extract(br#"{"a":1}"#, &EventFields::default()).unwrap();
        assert_eq!(e, Extracted::default());
    }
}
