//! Finding a top-level field of a JSON object 64 bytes at a time.
//!
//! The exact scanner ([`super::scan`]) decides what to do at every byte: a branch per
//! byte and, in WebAssembly, an interruption check per loop iteration. This lookup
//! instead classifies 64 bytes at once into bit masks ([`super::classify`]) and finds the
//! key with arithmetic on them:
//!
//! - which bytes are inside strings: the prefix XOR of the quote mask (every quote flips
//!   in or out), carried from block to block;
//! - which strings could be the key: opening quotes whose closing quote comes exactly
//!   `name.len() + 1` bytes later — one AND of two masks;
//! - which of those are top-level keys: nesting depth 1 (brackets outside strings,
//!   counted), before the object's closing bracket, and preceded by `{` or `,`.
//!
//! Only a candidate's bytes are compared with the name. The member's value ends at its
//! closing quote (a string, read off the masks) or at the first delimiter of the next 8
//! bytes (a number or literal, found with word arithmetic); an object or array value, or
//! one that runs further, is read by the exact scanner. Escape sequences break the quote
//! arithmetic, so a backslash before the answer, a key of more than [`MAX_KEY`] bytes or
//! an object under 16 bytes leave the question to the exact scanner ([`Lookup::Unsure`]).
//!
//! Flat objects, the common case, take a quicker path first ([`find_by_quotes`]): up to
//! the first backslash or bracket nothing can be nested or escaped, so there a key is
//! any `"name"` followed by `:`, found with two 16-byte compares (the quotes `len + 1`
//! bytes apart) and no string tracking at all. It roughly halves the lookup's cost on
//! the generator's payments.

use super::classify::{self, BlockMasks};
use super::scan::{self, is_ws, skip_ws};
use super::Field;

/// What the block lookup concluded.
pub(super) enum Lookup<'a> {
    /// The first top-level member with that key, and its value.
    Found(Field<'a>),
    /// No top-level member has that key (or the object is malformed at the member that
    /// does).
    Absent,
    /// Not decidable this way; ask the exact scanner.
    Unsure,
}

/// The longest key handled: its closing quote must be within 63 bytes of its opening one,
/// so that it is in the same block or the next.
const MAX_KEY: usize = 62;

/// Looks up the first top-level member of `object` whose key is `name`.
#[inline]
pub(super) fn find<'a>(object: &'a [u8], name: &[u8]) -> Lookup<'a> {
    match locate(object, name) {
        Place::ABSENT => Lookup::Absent,
        Place::UNSURE => Lookup::Unsure,
        place => Lookup::Found(Field::new(&object[place.range()])),
    }
}

/// Where a value is in its object, packed in one word so that [`locate`] returns it in a
/// register. In WebAssembly a returned struct goes through memory and takes one more
/// argument, which for `locate` would be its seventh (counting the two the runtime adds)
/// and go through the stack, where Cranelift's 32-bit store and 64-bit load stall the
/// call: a few nanoseconds on every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place(u64);

impl Place {
    /// No top-level member has the key.
    const ABSENT: Place = Place(u64::MAX);
    /// Not decidable here; ask the exact scanner.
    const UNSURE: Place = Place(u64::MAX - 1);

    /// The value at `start..end` (both below 2^32, which [`locate`] checks up front).
    fn new(start: usize, end: usize) -> Self {
        Place((start as u64) << 32 | end as u64)
    }

    /// `field`, a slice of `object`, or [`Place::ABSENT`].
    fn of_field(object: &[u8], field: Option<Field<'_>>) -> Self {
        field.map_or(Place::ABSENT, |field| {
            let start = field.raw().as_ptr() as usize - object.as_ptr() as usize;
            Place::new(start, start + field.raw().len())
        })
    }

    /// The value's byte range.
    fn range(self) -> std::ops::Range<usize> {
        (self.0 >> 32) as usize..(self.0 & u64::from(u32::MAX)) as usize
    }
}

/// [`find`]'s work: the quick search, then the block walk.
#[inline(never)]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn locate(object: &[u8], name: &[u8]) -> Place {
    let len = name.len();
    // A key holding `"` or `\` has an escape sequence, which is the exact scanner's to
    // read (and a `"` in `name` would match across two strings).
    if object.len() < 16
        || object.len() >= u32::MAX as usize
        || len > MAX_KEY
        || name.iter().any(|&b| b == b'"' || b == b'\\')
        || first_non_ws(object) != Some(b'{')
    {
        return Place::UNSURE;
    }
    if let Some(place) = find_by_quotes(object, name) {
        return place;
    }
    let mut blocks = Blocks::new(object);
    let mut current = blocks.next_block().unwrap_or_default();
    let mut depth = 0u32;
    loop {
        let next = blocks.next_block();
        let lookahead = next.unwrap_or_default();
        if current.backslash | lookahead.backslash != 0 {
            return Place::UNSURE;
        }
        // Bit i: a closing quote `len + 1` bytes after byte i of this block.
        let closes_after =
            (current.close_quote >> (len + 1)) | (lookahead.close_quote << (63 - len));
        let mut candidates = current.open_quote & closes_after;
        let (end, depth_after) = current.walk_brackets(depth);
        if let Some(end) = end {
            candidates &= below(end);
        }
        while candidates != 0 {
            let i = candidates.trailing_zeros();
            candidates &= candidates - 1;
            let before = below(i);
            let opened = (current.open & before).count_ones();
            let closed = (current.close & before).count_ones();
            if depth + opened != closed + 1 {
                continue;
            }
            let quote = current.start + i as usize;
            let key = &object[quote + 1..quote + 1 + len];
            if !same_bytes(key, name) || !starts_member(object, quote) {
                continue;
            }
            return member_value(object, quote + len + 1, &current, &lookahead);
        }
        match (end, next) {
            (None, Some(next)) => {
                current = next;
                depth = depth_after;
            }
            _ => return Place::ABSENT,
        }
    }
}

/// The quick search: the first `"name"` followed by `:` before any backslash or bracket
/// (other than the object's opening one), 16 positions at a time.
///
/// Before the first backslash every quote is structural, and a structural quote followed
/// by `name"` and `:` opens a key in well-formed JSON (were it a closing quote, `name"`
/// would follow a string directly). Before the first bracket that key is at depth 1, and
/// as the search goes in order it is the first such key. `None` when it meets a
/// backslash or bracket (the object's closing one included) first, or the member is
/// malformed: the block walk then decides. Needs what [`find`] checks first.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn find_by_quotes(object: &[u8], name: &[u8]) -> Option<Place> {
    let shift = name.len() + 1;
    let first = skip_ws(object, 0) + 1;
    let last = object.len().checked_sub(shift + 16)?;
    if last < first {
        return None;
    }
    let mut at = first;
    loop {
        // The final chunk overlaps the one before it: drop the positions already seen.
        let start = at.min(last);
        let masks = classify::quote_pairs(object, start, shift);
        let stops = masks >> 16;
        let mut pairs =
            u64::from(masks & 0xffff) & !0 << (at - start) & below(stops.trailing_zeros());
        while pairs != 0 {
            let quote = start + pairs.trailing_zeros() as usize;
            pairs &= pairs - 1;
            if !same_bytes(&object[quote + 1..quote + shift], name) {
                continue;
            }
            let colon = skip_ws(object, quote + shift + 1);
            if object.get(colon) != Some(&b':') {
                // A string value that spells the name.
                continue;
            }
            // Strings are left to the exact scanner: this search has no string masks.
            let place = value_after_colon(object, colon, |_| None);
            return (place != Place::ABSENT).then_some(place);
        }
        if stops != 0 || start == last {
            return None;
        }
        at = start + 16;
    }
}

/// One classified block, its masks restricted to what matters outside strings.
#[derive(Debug, Clone, Copy, Default)]
struct Block {
    /// Offset of the block's first byte.
    start: usize,
    /// Quotes that open a string.
    open_quote: u64,
    /// Quotes that close a string.
    close_quote: u64,
    /// `{` and `[` outside strings.
    open: u64,
    /// `}` and `]` outside strings.
    close: u64,
    /// Backslashes anywhere.
    backslash: u64,
}

impl Block {
    /// Follows the brackets of the block from nesting depth `depth`: where the object
    /// ends (the depth returns to 0), if it does here, and the depth after the block.
    fn walk_brackets(&self, mut depth: u32) -> (Option<u32>, u32) {
        let mut brackets = self.open | self.close;
        while brackets != 0 {
            let i = brackets.trailing_zeros();
            brackets &= brackets - 1;
            if self.open & (1 << i) != 0 {
                depth += 1;
            } else if depth <= 1 {
                return (Some(i), 0);
            } else {
                depth -= 1;
            }
        }
        (None, depth)
    }
}

/// Classifies a text block after block, carrying whether a string is open across blocks.
struct Blocks<'a> {
    text: &'a [u8],
    start: usize,
    /// All ones when the previous block ended inside a string, else zero.
    inside: u64,
}

impl<'a> Blocks<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self {
            text,
            start: 0,
            inside: 0,
        }
    }

    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn next_block(&mut self) -> Option<Block> {
        if self.start >= self.text.len() {
            return None;
        }
        let BlockMasks {
            quote,
            backslash,
            open,
            close,
        } = classify::block(self.text, self.start);
        // Bit i is set from an opening quote up to (not including) its closing quote.
        let inside = prefix_xor(quote) ^ self.inside;
        self.inside = (inside >> 63).wrapping_neg();
        let block = Block {
            start: self.start,
            open_quote: quote & inside,
            close_quote: quote & !inside,
            open: open & !inside,
            close: close & !inside,
            backslash,
        };
        self.start += 64;
        Some(block)
    }
}

/// The value of the member whose key's closing quote is at `close`, and the `,` or `}`
/// after it. A string value ends at the next closing quote of the masks of the key's
/// block and the next one (which have no backslashes). [`Place::ABSENT`] when the member
/// is malformed.
fn member_value(object: &[u8], close: usize, current: &Block, next: &Block) -> Place {
    let colon = skip_ws(object, close + 1);
    if object.get(colon) != Some(&b':') {
        return Place::ABSENT;
    }
    value_after_colon(object, colon, |start| {
        next_bit(current.close_quote, next.close_quote, current.start, start).map(|quote| quote + 1)
    })
}

/// The value after the member's `:` at `colon`, and the `,` or `}` after it. A string
/// ends where `string_end` says, given where its text starts; a number or literal at the
/// first delimiter of its first 8 bytes; an object or array, or a value whose end is not
/// found so, is read by the exact scanner.
#[inline(always)]
fn value_after_colon(
    object: &[u8],
    colon: usize,
    string_end: impl FnOnce(usize) -> Option<usize>,
) -> Place {
    let start = skip_ws(object, colon + 1);
    let end = match object.get(start) {
        Some(b'"') => string_end(start + 1),
        Some(b'{' | b'[') | None => None,
        Some(_) => scalar_end(object, start),
    };
    let Some(end) = end else {
        return Place::of_field(object, scan::member_value(object, colon));
    };
    match object.get(skip_ws(object, end)) {
        Some(b',' | b'}') if end > start => Place::new(start, end),
        _ => Place::ABSENT,
    }
}

/// Where a number or literal starting at `start` ends: the first `,`, `}`, `]` or byte up
/// to 0x20 (whitespace) among the 8 bytes from `start`, found in one 64-bit word.
/// `None` when there is none there (or fewer than 8 bytes are left).
#[inline]
fn scalar_end(text: &[u8], start: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let word = u64::from_le_bytes(*text.get(start..)?.first_chunk::<8>()?);
    // The lowest byte flagged by each test is exact (a borrow only runs upwards from a
    // byte that is itself flagged), so the lowest flagged byte of their union is too.
    let below = |n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let equal = |x: u64, b: u8| {
        let diff = x ^ (ONES * u64::from(b));
        diff.wrapping_sub(ONES) & !diff & HIGHS
    };
    // `}` and `]` differ only in bit 5.
    let delims = below(0x21) | equal(word, b',') | equal(word | (ONES * 0x20), b'}');
    (delims != 0).then(|| start + delims.trailing_zeros() as usize / 8)
}

/// The position of the first set bit at or after `from` of the 128-bit mask made of
/// `low` (bits from `start`) and `high` (bits from `start + 64`); `None` when there is
/// none there.
#[inline]
fn next_bit(low: u64, high: u64, start: usize, from: usize) -> Option<usize> {
    let offset = from - start;
    let (mask, base) = if offset < 64 {
        let low = low & (!0u64 << offset);
        if low != 0 {
            return Some(start + low.trailing_zeros() as usize);
        }
        (high, start + 64)
    } else if offset < 128 {
        (high & (!0u64 << (offset - 64)), start + 64)
    } else {
        return None;
    };
    (mask != 0).then(|| base + mask.trailing_zeros() as usize)
}

/// Bit i is the XOR of bits 0..=i of `x`.
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// The bits below bit `i` (`i < 64`).
#[inline]
fn below(i: u32) -> u64 {
    (1u64 << i) - 1
}

/// The first byte that is not JSON whitespace.
fn first_non_ws(text: &[u8]) -> Option<u8> {
    text.get(skip_ws(text, 0)).copied()
}

/// Whether the string opening at `quote` is where a member starts: after `{` or `,`.
fn starts_member(text: &[u8], quote: usize) -> bool {
    let before = text[..quote].iter().rev().find(|b| !is_ws(**b));
    matches!(before, Some(b'{' | b','))
}

/// Byte equality in 8-, 4-, 2- and 1-byte steps: straight-line code for short keys,
/// where a `memcmp` call would cost more than the comparison (in Wasm it is a byte loop).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a, b);
    while let (Some((x, rest_a)), Some((y, rest_b))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if x != y {
            return false;
        }
        (a, b) = (rest_a, rest_b);
    }
    if let (Some((x, rest_a)), Some((y, rest_b))) =
        (a.split_first_chunk::<4>(), b.split_first_chunk::<4>())
    {
        if x != y {
            return false;
        }
        (a, b) = (rest_a, rest_b);
    }
    if let (Some((x, rest_a)), Some((y, rest_b))) =
        (a.split_first_chunk::<2>(), b.split_first_chunk::<2>())
    {
        if x != y {
            return false;
        }
        (a, b) = (rest_a, rest_b);
    }
    a.first() == b.first()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_xor_marks_the_inside_of_strings() {
        let quotes = 0b1_0010_0010u64; // quotes at 1, 5 and 8
                                       // Inside from 1 up to 5, and from 8 on (that string is still open).
        assert_eq!(prefix_xor(quotes), !0 << 8 | 0b1_1110);
    }

    #[test]
    fn same_bytes_compares_every_length() {
        let text = b"abcdefghijklmnopqrstu";
        for n in 0..text.len() {
            let a = &text[..n];
            assert!(same_bytes(a, &text[..n]));
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 1;
                assert!(!same_bytes(a, &b), "{n} {i}");
            }
            assert!(!same_bytes(a, &text[..n + 1]));
        }
    }

    #[test]
    fn next_bit_looks_in_both_halves() {
        let (low, high) = (0b1001u64 << 60, 0b10u64);
        assert_eq!(next_bit(low, high, 100, 100), Some(160));
        assert_eq!(next_bit(low, high, 100, 161), Some(163));
        assert_eq!(next_bit(low, high, 100, 164), Some(165));
        assert_eq!(next_bit(low, high, 100, 166), None);
        assert_eq!(next_bit(low, high, 100, 228), None);
    }

    #[test]
    fn scalar_end_finds_the_first_delimiter_in_8_bytes() {
        let cases: [(&[u8], Option<usize>); 9] = [
            (b"1568.80,\"c", Some(7)),
            (b"-1}xxxxxxx", Some(2)),
            (b"true]xxxxx", Some(4)),
            (b"null xxxxx", Some(4)),
            (b"12\n,xxxxxx", Some(2)),
            (b"1\x00\x7d,xxxxx", Some(1)),
            (b"1234567,", Some(7)),
            (b"12345678,", None),
            (b"1,", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                scalar_end(text, 0),
                want,
                "{:?}",
                text.escape_ascii().to_string()
            );
        }
        // Bytes above the first delimiter do not matter, even ones that borrow.
        assert_eq!(scalar_end(b"ab\x00\xff\x21,]}x", 0), Some(2));
        assert_eq!(scalar_end(b"x12 ]]]]]]", 1), Some(3));
    }

    /// The raw value `find_by_quotes` settles on, if it does.
    fn quick(object: &str, name: &str) -> Option<String> {
        find_by_quotes(object.as_bytes(), name.as_bytes())
            .map(|place| object[place.range()].to_owned())
    }

    #[test]
    fn the_quick_search_finds_keys_in_every_chunk_up_to_the_last_byte() {
        let payment = r#"{"seq":0,"ts":1700000000000,"user":"user-55","card":"card-55-0","amount":49.12,"country":"ES"}"#;
        assert_eq!(quick(payment, "seq").as_deref(), Some("0"));
        assert_eq!(quick(payment, "amount").as_deref(), Some("49.12"));
        // The last key sits in the final, overlapping chunk.
        assert_eq!(quick(payment, "country").as_deref(), Some(r#""ES""#));
        // Not there: the search stops at the closing brace and leaves it to the block walk.
        assert_eq!(quick(payment, "count"), None);
        assert!(matches!(find(payment.as_bytes(), b"count"), Lookup::Absent));
    }

    #[test]
    fn the_quick_search_skips_string_values_that_spell_the_key() {
        let object = r#"{"note": "amount", "why":"amount" ,"amount" : 7}"#;
        assert_eq!(quick(object, "amount").as_deref(), Some("7"));
    }

    #[test]
    fn the_quick_search_stops_at_the_first_backslash_or_bracket() {
        // Past a bracket a key may be nested; past a backslash a quote may be escaped.
        for object in [
            r#"{"meta": {"amount": 1}, "amount": 2}"#,
            r#"{"list": [1, 2, 3, 4], "amount": 2}"#,
            r#"{"note": "say \"amount\": 1", "amount": 2}"#,
        ] {
            assert_eq!(quick(object, "amount"), None, "{object}");
            match find(object.as_bytes(), b"amount") {
                Lookup::Found(value) => assert_eq!(value.raw(), b"2", "{object}"),
                Lookup::Unsure => {}
                Lookup::Absent => panic!("{object}"),
            }
        }
        // A key before the first bracket is settled.
        assert_eq!(
            quick(r#"{"amount": 1, "meta": {"amount": 2}}"#, "amount").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn brackets_find_where_the_object_ends() {
        let block = Block {
            open: 0b0000_0101,
            close: 0b0101_0000,
            ..Block::default()
        };
        assert_eq!(block.walk_brackets(0), (Some(6), 0));
        assert_eq!(block.walk_brackets(1), (None, 1));
    }
}
