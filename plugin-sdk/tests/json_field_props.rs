//! Property tests for `json::field`: on any well-formed object it agrees with the exact
//! member-by-member scanner (`json::fields`) and with serde_json, wherever the field sits
//! and whatever the object holds (nesting, escapes, whitespace, duplicate and long keys);
//! on any bytes at all it returns without panicking.

use eddy_plugin_sdk::json;
use proptest::prelude::*;
use serde_json::Value;

/// A JSON value to render, with the whitespace it is rendered with chosen per token.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// The names most generated keys are drawn from, so that objects often share and repeat
/// keys, and string values often spell a key.
const NAMES: [&str; 8] = ["a", "b", "amount", "user", "x\"y", "k\\", "é", ""];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES.to_vec()).prop_map(str::to_owned)
}

/// Strings that stress the scanner: brackets, quotes, commas and colons inside strings,
/// escapes, multi-byte UTF-8, lengths around the 16- and 64-byte block sizes, and text
/// equal to a key.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        "[a-z]{0,8}",
        "[a-z{}\\[\\]\",:\\\\ ]{0,20}",
        "[a-zé€😀\n\t]{0,6}",
        "[a-z]{55,75}",
    ]
}

/// Keys: mostly from [`NAMES`], some any text.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => name(), 1 => text()]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (any::<i32>(), 0u32..1000).prop_map(|(i, f)| format!("{i}.{f}")),
        (any::<i16>(), -30i32..30).prop_map(|(m, e)| format!("{m}e{e}")),
    ]
}

fn value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        text().prop_map(Json::Text),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            prop::collection::vec((key(), inner), 0..5).prop_map(Json::Object),
        ]
    })
}

/// A top-level object: its members and a whitespace seed.
fn object() -> impl Strategy<Value = (Vec<(String, Json)>, u64)> {
    (prop::collection::vec((key(), value()), 0..12), any::<u64>())
}

/// Renders JSON text with whitespace picked from a seed, and with some string characters
/// written as `\u` escapes, so equal values come in many spellings.
struct Renderer {
    seed: u64,
    out: String,
}

impl Renderer {
    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn space(&mut self) {
        let pick = self.next() % 8;
        self.out.push_str(match pick {
            0 => " ",
            1 => "\n  ",
            2 => "\t",
            _ => "",
        });
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                c if (c as u32) < 0x20 => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                c if c.is_ascii_alphabetic() && self.next().is_multiple_of(16) => {
                    self.out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    /// Writes `items` between `open` and `close`, comma-separated, each padded.
    fn list<T>(&mut self, open: char, close: char, items: &[T], item: fn(&mut Self, &T)) {
        self.out.push(open);
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.space();
            item(self, it);
            self.space();
        }
        self.out.push(close);
    }

    fn members(&mut self, members: &[(String, Json)]) {
        self.list('{', '}', members, |r, (k, v)| {
            r.string(k);
            r.space();
            r.out.push(':');
            r.space();
            r.value(v);
        });
    }

    fn value(&mut self, v: &Json) {
        match v {
            Json::Null => self.out.push_str("null"),
            Json::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => self.out.push_str(n),
            Json::Text(s) => self.string(s),
            Json::Array(items) => self.list('[', ']', items, Self::value),
            Json::Object(members) => self.members(members),
        }
    }
}

fn render(members: &[(String, Json)], seed: u64) -> String {
    let mut r = Renderer {
        seed: seed | 1,
        out: String::new(),
    };
    r.space();
    r.members(members);
    r.space();
    r.out
}

/// The exact answer: the first member whose key decodes to `name`.
fn first_member<'a>(object: &'a [u8], name: &str) -> Option<&'a [u8]> {
    json::fields(object)
        .find(|(raw_key, _)| serde_json::from_slice::<String>(raw_key).is_ok_and(|k| k == name))
        .map(|(_, value)| value.raw())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn field_agrees_with_the_exact_scanner_and_serde(
        (members, seed) in object(),
        probe in key(),
    ) {
        let text = render(&members, seed);
        let bytes = text.as_bytes();
        let parsed: Value = serde_json::from_str(&text).expect("rendered text is JSON");
        let mut names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        names.push(&probe);
        for name in names {
            let got = json::field(bytes, name).map(|f| f.raw());
            prop_assert_eq!(got, first_member(bytes, name), "{} in {}", name, text);
            let first = members.iter().position(|(k, _)| k == name);
            prop_assert_eq!(got.is_some(), first.is_some(), "{} in {}", name, text);
            if let Some(raw) = got {
                let got_value: Value = serde_json::from_slice(raw).expect("a field is JSON");
                let unique = members.iter().filter(|(k, _)| k == name).count() == 1;
                if unique {
                    prop_assert_eq!(&got_value, &parsed[name], "{} in {}", name, text);
                }
            }
        }
    }

    #[test]
    fn numbers_read_like_the_standard_parser(n in number()) {
        let text = format!(r#"{{"pad": "0123456789abcdef", "n": {n}}}"#);
        let got = json::field(text.as_bytes(), "n").and_then(|f| f.as_f64());
        let want: f64 = n.parse().unwrap();
        prop_assert_eq!(got.map(f64::to_bits), Some(want.to_bits()), "{}", n);
    }

    #[test]
    fn any_bytes_give_an_answer_without_panicking(
        bytes in prop::collection::vec(
            prop_oneof![
                prop::sample::select(b"{}[]\":,\\ abn01-".to_vec()),
                any::<u8>(),
            ],
            0..200,
        ),
        name in key(),
    ) {
        if let Some(found) = json::field(&bytes, &name) {
            let _ = (found.as_f64(), found.as_i64(), found.as_str(), found.as_bool());
        }
    }

    #[test]
    fn damaged_objects_give_an_answer_without_panicking(
        (members, seed) in object(),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = render(&members, seed).into_bytes();
        for (at, byte) in cuts {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match byte % 3 {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        for (name, _) in &members {
            if let Some(found) = json::field(&bytes, name) {
                let _ = (found.as_f64(), found.as_str());
            }
        }
    }
}
