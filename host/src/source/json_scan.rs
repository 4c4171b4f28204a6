//! The fast path of [`super::extract`]: one pass over an event's bytes that validates it as
//! a JSON object and finds the raw values of two top-level fields, building nothing.
//!
//! Invariants:
//! - [`scan`] returns `Some` only for bytes that are valid UTF-8 and that serde_json
//!   accepts as exactly one JSON object (with JSON whitespace around it), and then the
//!   time and key it returns are what serde_json's reading of the fields gives.
//! - Whatever it is unsure of — an escaped field name, a time that is not a plain
//!   integer, a key that is not a plain string, deep nesting, invalid input — gives `None`,
//!   and the caller takes the slow path (serde_json), which is the authority on what is
//!   wrong. A property test holds the two paths to agree.
//!
//! Most events are plain: up to [`PLAIN_MAX`] bytes of ASCII with no backslash and no
//! control character. For those, one vectorised pass marks every quote first, and the
//! scan jumps from a string's opening quote to the next mark instead of walking the
//! string, so strings cost no byte-by-byte dependency chain. Other events are scanned
//! string by string, eight bytes at a time (a quote, a backslash, a control character or a
//! non-ASCII byte stops the skip), and only one with a non-ASCII byte pays a full UTF-8
//! check.

/// The time and key fields a [`scan`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scanned<'a> {
    /// The time field's value, an integer.
    pub timestamp: Option<i64>,
    /// The key field's value, a string without escapes (the bytes between its quotes).
    pub key: Option<&'a [u8]>,
}

/// Containers nested deeper than this take the slow path (serde_json allows 128).
const MAX_DEPTH: u32 = 64;

/// Digits of the longest time the fast path reads (fits an `i64` whatever the digits).
const MAX_TIME_DIGITS: usize = 18;

/// Bytes that stop a string skip: `"`, `\`, control characters and non-ASCII.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b >= 0x80 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// The longest event whose quotes are marked in one pass (a bit each, on the stack).
pub const PLAIN_MAX: usize = 1024;

/// Validates `json` as one JSON object and reads its top-level fields named `time` and
/// `key`; `None` when the input is invalid or needs the slow path (see the module doc).
pub fn scan<'a>(json: &'a [u8], time: Option<&str>, key: Option<&str>) -> Option<Scanned<'a>> {
    let (time, key) = (time.map(str::as_bytes), key.map(str::as_bytes));
    let mut quotes = [0u64; PLAIN_MAX / 64];
    if json.len() <= PLAIN_MAX && mark_quotes_if_plain(json, &mut quotes) {
        let mut scanner = Scanner::<true> {
            bytes: json,
            at: 0,
            non_ascii: false,
            quotes: &quotes[..json.len().div_ceil(64)],
        };
        let found = scanner.object(time, key)?;
        return scanner.at_end().then_some(found);
    }
    let mut scanner = Scanner::<false> {
        bytes: json,
        at: 0,
        non_ascii: false,
        quotes: &[],
    };
    let found = scanner.object(time, key)?;
    if !scanner.at_end() || (scanner.non_ascii && std::str::from_utf8(json).is_err()) {
        return None;
    }
    Some(found)
}

/// Marks each quote of `bytes` (at most [`PLAIN_MAX`]) in `quotes` (bit `i % 64` of word
/// `i / 64` for byte `i`) and says whether `bytes` is plain: no byte below 0x20, none
/// above 0x7f, no backslash.
fn mark_quotes_if_plain(bytes: &[u8], quotes: &mut [u64; PLAIN_MAX / 64]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= 32 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2, just checked (the answer is cached).
        return unsafe { mark_by_wide_vectors(bytes, quotes) };
    }
    #[cfg(target_arch = "x86_64")]
    return mark_by_vectors(bytes, quotes);
    #[cfg(not(target_arch = "x86_64"))]
    return mark_by_words(bytes, quotes);
}

/// [`mark_quotes_if_plain`] sixteen bytes at a time with SSE2 (every x86-64 has it).
#[cfg(target_arch = "x86_64")]
fn mark_by_vectors(bytes: &[u8], quotes: &mut [u64; PLAIN_MAX / 64]) -> bool {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // The quotes and odd bytes of bytes[from..from + 16], a bit each.
    let sixteen = |from: usize| {
        assert!(from + 16 <= bytes.len());
        // SAFETY: SSE2 is part of x86-64; the load reads bytes[from..from + 16], in bounds.
        unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr().add(from).cast());
            let quote = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)));
            // Signed: bytes from 0x80 up are negative, so below 0x20 too.
            let odd = _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
                _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
            );
            (
                quote as u64 & 0xffff,
                _mm_movemask_epi8(odd) as u64 & 0xffff,
            )
        }
    };
    let (special, at) = mark_by_chunks::<16>(bytes, quotes, sixteen);
    mark_tail(bytes, at, quotes) && special == 0
}

/// Marks the quotes of `bytes` in `quotes` `WIDTH` bytes at a time (a divisor of 64), as
/// `chunk` classifies them (the quote and odd bits of `bytes[from..from + WIDTH]`), the
/// last chunk overlapping the one before it. Returns the odd bits seen and where marking
/// stopped: the end, or 0 when `bytes` is shorter than a chunk.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mark_by_chunks<const WIDTH: usize>(
    bytes: &[u8],
    quotes: &mut [u64; PLAIN_MAX / 64],
    chunk: impl Fn(usize) -> (u64, u64),
) -> (u64, usize) {
    let len = bytes.len();
    let mut special = 0;
    let mut at = 0;
    while at + WIDTH <= len {
        let (quote, odd) = chunk(at);
        quotes[at / 64] |= quote << (at % 64);
        special |= odd;
        at += WIDTH;
    }
    if at < len && len >= WIDTH {
        // The last chunk again, its first `at - (len - WIDTH)` bytes already marked.
        let seen = at - (len - WIDTH);
        let (quote, odd) = chunk(len - WIDTH);
        // `at` is a multiple of WIDTH, so the fewer than WIDTH bytes left share its word.
        quotes[at / 64] |= (quote >> seen) << (at % 64);
        special |= odd >> seen;
        at = len;
    }
    (special, at)
}

/// [`mark_quotes_if_plain`] thirty-two bytes at a time with AVX2 (the caller gives it
/// inputs of at least 32 bytes; shorter ones are marked byte by byte).
///
/// # Safety
/// The processor must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mark_by_wide_vectors(bytes: &[u8], quotes: &mut [u64; PLAIN_MAX / 64]) -> bool {
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };
    // The quotes and odd bytes of bytes[from..from + 32], a bit each.
    let thirty_two = |from: usize| {
        assert!(from + 32 <= bytes.len());
        // SAFETY: AVX2 is enabled here; the load reads bytes[from..from + 32], in bounds.
        unsafe {
            let v = _mm256_loadu_si256(bytes.as_ptr().add(from).cast());
            let quote = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8)));
            // Signed: bytes from 0x80 up are negative, so below 0x20 too.
            let odd = _mm256_or_si256(
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8)),
                _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v),
            );
            (
                u64::from(quote as u32),
                u64::from(_mm256_movemask_epi8(odd) as u32),
            )
        }
    };
    let (special, at) = mark_by_chunks::<32>(bytes, quotes, thirty_two);
    mark_tail(bytes, at, quotes) && special == 0
}

/// [`mark_quotes_if_plain`] where SSE2 is not at hand: eight bytes at a time.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn mark_by_words(bytes: &[u8], quotes: &mut [u64; PLAIN_MAX / 64]) -> bool {
    let mut special = 0;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let (quote, odd) = classify_word(u64::from_le_bytes(chunk.try_into().expect("eight")));
        // The high bit of each quote byte, gathered into the low eight bits.
        let gathered = ((quote >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        quotes[at / 64] |= gathered << (at % 64);
        special |= odd;
        at += 8;
    }
    mark_tail(bytes, at, quotes) && special == 0
}

/// The bytes of `word` (eight, the first lowest) that are quotes, and those that are odd
/// (a backslash, below 0x20 or above 0x7f), each marked by its high bit, exactly: no sum
/// crosses into the next byte, so a match never marks its neighbour.
#[inline(always)]
fn classify_word(word: u64) -> (u64, u64) {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Bytes below `limit` (at most 0x80).
    let below = |word: u64, limit: u64| !(((word & !HIGHS) + ONES * (0x80 - limit)) | word) & HIGHS;
    let zero = |word: u64| below(word, 1);
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let odd = zero(word ^ (ONES * u64::from(b'\\'))) | below(word, 0x20) | (word & HIGHS);
    (quote, odd)
}

/// Marks the quotes of `bytes[at..]` one by one; whether those bytes are plain.
fn mark_tail(bytes: &[u8], at: usize, quotes: &mut [u64; PLAIN_MAX / 64]) -> bool {
    let mut plain = true;
    for (i, &b) in bytes.iter().enumerate().skip(at) {
        quotes[i / 64] |= u64::from(b == b'"') << (i % 64);
        plain &= (0x20..0x80).contains(&b) && b != b'\\';
    }
    plain
}

/// The first index from `at` of a byte that stops a string skip ([`STRING_STOP`]), or
/// `bytes.len()`; eight bytes at a time (SWAR) where eight remain.
#[inline(always)]
fn skip_plain_string_bytes(bytes: &[u8], mut at: usize) -> usize {
    while let Some(chunk) = bytes.get(at..at + 8) {
        let (quote, odd) = classify_word(u64::from_le_bytes(chunk.try_into().expect("eight")));
        let stops = quote | odd;
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < bytes.len() && !STRING_STOP[bytes[at] as usize] {
        at += 1;
    }
    at
}

/// The quotes of a plain input in order, from its marks ([`mark_quotes_if_plain`]).
struct Quotes<'q> {
    marks: &'q [u64],
    word: usize,
    /// The marks of `word` not yet returned.
    bits: u64,
}

impl<'q> Quotes<'q> {
    /// The quotes at or after byte `from`.
    #[inline(always)]
    fn from(marks: &'q [u64], from: usize) -> Self {
        let word = from / 64;
        let bits = marks.get(word).map_or(0, |m| m & (u64::MAX << (from % 64)));
        Quotes { marks, word, bits }
    }

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        while self.bits == 0 {
            self.word += 1;
            self.bits = *self.marks.get(self.word)?;
        }
        let at = self.word * 64 + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(at)
    }
}

/// A scan in progress; `PLAIN`: the input is plain and `quotes` marks its quotes.
struct Scanner<'a, 'q, const PLAIN: bool> {
    bytes: &'a [u8],
    at: usize,
    /// Whether a string held a non-ASCII byte (then the whole input gets a UTF-8 check).
    non_ascii: bool,
    /// Bit `i % 64` of word `i / 64` set for each quote at byte `i` (plain input only).
    quotes: &'q [u64],
}

impl<'a, const PLAIN: bool> Scanner<'a, '_, PLAIN> {
    /// Whether only whitespace is left.
    #[inline(always)]
    fn at_end(&mut self) -> bool {
        self.whitespace();
        self.at == self.bytes.len()
    }

    /// The index of the first quote at or after `from` (plain input).
    #[inline(always)]
    fn next_quote(&self, from: usize) -> Option<usize> {
        Quotes::from(self.quotes, from).next()
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline(always)]
    fn whitespace(&mut self) {
        if PLAIN {
            // A plain input has no tab, newline or carriage return.
            while self.peek() == Some(b' ') {
                self.at += 1;
            }
            return;
        }
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Consumes `byte` after optional whitespace.
    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.whitespace();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// The top-level object, reading the wanted fields.
    fn object(&mut self, time: Option<&[u8]>, key: Option<&[u8]>) -> Option<Scanned<'a>> {
        let mut found = Scanned::default();
        self.expect(b'{')?;
        self.whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(found);
        }
        if self.flat_fields(&mut found, time, key) {
            return Some(found);
        }
        loop {
            self.expect(b'"')?;
            let (name, escaped) = self.string_body()?;
            if escaped {
                return None; // an escaped name may spell a wanted field
            }
            self.expect(b':')?;
            self.whitespace();
            if is_field(name, time) {
                found.timestamp = Some(self.plain_integer()?);
            } else if is_field(name, key) {
                self.expect(b'"')?;
                let (value, escaped) = self.string_body()?;
                if escaped {
                    return None;
                }
                found.key = Some(value);
            } else {
                // Scalars inline; containers through the recursive path.
                match self.peek()? {
                    b'"' => {
                        self.at += 1;
                        self.string_body()?;
                    }
                    b'-' | b'0'..=b'9' => self.number()?,
                    _ => self.value(1)?,
                }
            }
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(found);
                }
                _ => return None,
            }
        }
    }

    /// Reads the fields of a plain input's object from quote to quote, while their values
    /// are scalars or strings, up to and including its closing brace; whether it got there.
    ///
    /// The quotes are known beforehand, so each field's name, value and the punctuation
    /// between them are found where they lie: no step waits for the one before it to find
    /// where it ends, and the processor overlaps the fields. At the first field it cannot
    /// read this way (a container, an unexpected byte, a wanted field of another type), it
    /// leaves `self.at` on that field's opening quote for the byte-by-byte walk, which reads
    /// the field again and decides. Called with `self.at` where the first name should open.
    #[inline(always)]
    fn flat_fields(
        &mut self,
        found: &mut Scanned<'a>,
        time: Option<&[u8]>,
        key: Option<&[u8]>,
    ) -> bool {
        if !PLAIN {
            return false;
        }
        let bytes = self.bytes;
        // A scan of the bytes from `at` up to the quote `until` (or the end).
        let up_to = |at: usize, until: Option<usize>| Scanner::<true> {
            bytes: &bytes[..until.unwrap_or(bytes.len())],
            at,
            non_ascii: false,
            quotes: &[],
        };
        let mut quotes = Quotes::from(self.quotes, self.at);
        let mut open = quotes.next();
        while open == Some(self.at) {
            let Some(close) = quotes.next() else {
                return false;
            };
            let name = &bytes[self.at + 1..close];
            let mut next = quotes.next();
            // The bytes from the name's closing quote to the next quote: `:`, then the
            // value if it is not a string.
            let mut between = up_to(close + 1, next);
            if between.expect(b':').is_none() {
                return false;
            }
            between.whitespace();
            if between.at == between.bytes.len() {
                // A string value, between `next` and the quote after it.
                let (Some(value_open), Some(value_close)) = (next, quotes.next()) else {
                    return false;
                };
                if is_field(name, time) {
                    return false;
                }
                if is_field(name, key) {
                    found.key = Some(&bytes[value_open + 1..value_close]);
                }
                next = quotes.next();
                between = up_to(value_close + 1, next);
            } else if is_field(name, time) {
                match between.plain_integer() {
                    Some(timestamp) => found.timestamp = Some(timestamp),
                    None => return false,
                }
            } else {
                let scalar = match between.peek() {
                    _ if is_field(name, key) => None,
                    Some(b'-' | b'0'..=b'9') => between.number(),
                    Some(b't' | b'f' | b'n') => between.value(1),
                    _ => None,
                };
                if scalar.is_none() {
                    return false;
                }
            }
            // After the value: `,` and the next name's quote (the loop checks it is next),
            // or `}` with no quote after it.
            between.whitespace();
            match (between.peek(), next) {
                (Some(b','), Some(_)) => {
                    between.at += 1;
                    between.whitespace();
                }
                (Some(b'}'), None) => {
                    self.at = between.at + 1;
                    return true;
                }
                _ => return false,
            }
            self.at = between.at;
            open = next;
        }
        false
    }

    /// Any JSON value, nested `depth` containers deep.
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.string_body().map(|_| ())
            }
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.at += 1;
                self.members(b'}', depth, true)
            }
            b'[' => {
                self.at += 1;
                self.members(b']', depth, false)
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// The members of a nested object (`named`) or array, after its opening bracket.
    fn members(&mut self, close: u8, depth: u32, named: bool) -> Option<()> {
        self.whitespace();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            if named {
                self.expect(b'"')?;
                self.string_body()?;
                self.expect(b':')?;
            }
            self.whitespace();
            self.value(depth + 1)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// The rest of a string after its opening quote: its raw bytes, and whether it holds
    /// an escape.
    #[inline(always)]
    fn string_body(&mut self) -> Option<(&'a [u8], bool)> {
        let bytes = self.bytes;
        let start = self.at;
        if PLAIN {
            // Nothing in a plain input can escape a quote or be refused inside a string.
            let end = self.next_quote(start)?;
            self.at = end + 1;
            return Some((&bytes[start..end], false));
        }
        let mut at = start;
        let mut escaped = false;
        loop {
            at = skip_plain_string_bytes(bytes, at);
            match *bytes.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    return Some((&bytes[start..at], escaped));
                }
                b'\\' => {
                    escaped = true;
                    at += match *bytes.get(at + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                        b'u' if bytes.get(at + 2..at + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                        _ => return None,
                    };
                }
                b if b >= 0x80 => {
                    self.non_ascii = true;
                    at += 1;
                }
                _ => return None, // a control character
            }
        }
    }

    #[inline(always)]
    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
            const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
            const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
            let values = u64::from_le_bytes(chunk.try_into().expect("eight")) ^ (ONES * 0x30);
            let not_digit = (((values & !HIGHS) + ONES * 0x76) | values) & HIGHS;
            let count = (not_digit.trailing_zeros() / 8) as usize;
            self.at += count;
            if count < 8 {
                return self.at - start;
            }
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// A JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    #[inline(always)]
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// A number that is a plain integer of at most [`MAX_TIME_DIGITS`] digits, as an
    /// `i64`; anything else (a fraction, an exponent, a string) takes the slow path.
    #[inline(always)]
    fn plain_integer(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        self.at += usize::from(negative);
        let start = self.at;
        let digits = self.digits();
        let leading_zero = digits > 1 && self.bytes[start] == b'0';
        if digits == 0 || digits > MAX_TIME_DIGITS || leading_zero {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        let value = decimal(&self.bytes[start..], digits) as i64;
        Some(if negative { -value } else { value })
    }
}

/// The value of the `count` ASCII digits (at most 19) that `bytes` starts with: eight at a
/// time, the first `count % 8` as eight whose surplus is shifted out.
#[inline(always)]
fn decimal(bytes: &[u8], count: usize) -> u64 {
    const ZEROS: u64 = u64::from_ne_bytes([b'0'; 8]);
    // Bytes at..at + 8 less `0` each; a byte below `0` borrows only from those after it.
    let eight = |at: usize| {
        let chunk = bytes.get(at..at + 8)?;
        Some(u64::from_le_bytes(chunk.try_into().expect("eight")).wrapping_sub(ZEROS))
    };
    let lead = count % 8;
    let mut value = 0;
    if lead > 0 {
        value = match eight(0) {
            // The lead digits become the high end of eight digits led by zeros.
            Some(digits) => eight_digits(digits << ((8 - lead) * 8)),
            None => bytes[..lead]
                .iter()
                .fold(0, |v, &d| v * 10 + u64::from(d - b'0')),
        };
    }
    let mut at = lead;
    while at < count {
        let digits = eight(at).expect("the digits are in bytes");
        value = value * 100_000_000 + eight_digits(digits);
        at += 8;
    }
    value
}

/// The number that eight digit values (0–9 a byte, the first lowest) spell.
#[inline(always)]
fn eight_digits(digits: u64) -> u64 {
    // Pairs, then quads, then all eight: each step multiplies the higher-order half.
    let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8);
    let low = (pairs & 0x0000_00ff_0000_00ff).wrapping_mul(100 + (1_000_000 << 32));
    let high = ((pairs >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32));
    low.wrapping_add(high) >> 32
}

/// Whether the field `name` is the `wanted` one: byte by byte inline, as field names are
/// short and most differ in length or first byte (a `memcmp` call costs more).
#[inline(always)]
fn is_field(name: &[u8], wanted: Option<&[u8]>) -> bool {
    wanted.is_some_and(|w| name.len() == w.len() && name.iter().zip(w).all(|(a, b)| a == b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_fields_and_skips_the_rest() {
        let line = br#"{"seq":0,"ts":1700000000000,"user":"user-17","card":"card-17-1","amount":42.17,"country":"DE"}"#;
        let found = scan(line, Some("ts"), Some("user")).unwrap();
        assert_eq!(found.timestamp, Some(1_700_000_000_000));
        assert_eq!(found.key, Some(&b"user-17"[..]));
        let nested = br#" {"a":[1,-2.5e+3,{"b":null,"c":[true,false,"x\"\u00e9\n"]}],"ts":-7,"user":"\u00e9t\u00e9"} "#;
        assert!(scan(nested, Some("ts"), None).is_some());
        assert_eq!(scan(nested, Some("ts"), Some("user")), None); // escaped key: slow path
        assert_eq!(
            scan("{\"user\":\"été\"}".as_bytes(), None, Some("user"))
                .unwrap()
                .key,
            Some("été".as_bytes())
        );
    }

    proptest::proptest! {
        /// Quotes are marked exactly, and plain means plain, by vectors and by words.
        #[test]
        fn quotes_and_plainness_are_marked_as_byte_by_byte(
            bytes in proptest::collection::vec(proptest::sample::select(
                vec![b'a', b' ', b'"', b'#', b'!', b'\\', 0x00, 0x01, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff]), 0..200),
        ) {
            let mut naive = [0u64; PLAIN_MAX / 64];
            let plain = mark_tail(&bytes, 0, &mut naive);
            let mut by_words = [0u64; PLAIN_MAX / 64];
            proptest::prop_assert_eq!(mark_by_words(&bytes, &mut by_words), plain);
            proptest::prop_assert_eq!(by_words, naive);
            let mut marked = [0u64; PLAIN_MAX / 64];
            proptest::prop_assert_eq!(mark_quotes_if_plain(&bytes, &mut marked), plain);
            proptest::prop_assert_eq!(marked, naive);
            #[cfg(target_arch = "x86_64")]
            {
                let mut by_vectors = [0u64; PLAIN_MAX / 64];
                proptest::prop_assert_eq!(mark_by_vectors(&bytes, &mut by_vectors), plain);
                proptest::prop_assert_eq!(by_vectors, naive);
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut wide = [0u64; PLAIN_MAX / 64];
                    // SAFETY: the processor has AVX2.
                    proptest::prop_assert_eq!(unsafe { mark_by_wide_vectors(&bytes, &mut wide) }, plain);
                    proptest::prop_assert_eq!(wide, naive);
                }
            }
        }

        /// The eight-at-a-time skip stops where a byte-by-byte skip would.
        #[test]
        fn the_word_skip_stops_where_the_byte_skip_does(
            bytes in proptest::collection::vec(proptest::sample::select(
                vec![b'a', b' ', b'"', b'\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff]), 0..40),
            at in 0..8usize,
        ) {
            let at = at.min(bytes.len());
            let naive = (at..bytes.len()).find(|&i| STRING_STOP[bytes[i] as usize]).unwrap_or(bytes.len());
            proptest::prop_assert_eq!(skip_plain_string_bytes(&bytes, at), naive);
        }
    }

    proptest::proptest! {
        /// Times read eight digits at a time are the integers the digits spell, whatever
        /// follows them.
        #[test]
        fn a_plain_integer_is_read_as_its_digits_spell(
            time in -999_999_999_999_999_999i64..=999_999_999_999_999_999,
            after in proptest::sample::select(vec!["", "}", ",\"x\":1}", "                }"]),
        ) {
            let line = format!("{{\"ts\":{time}{after}");
            let mut scanner = Scanner::<false> { bytes: line.as_bytes(), at: 6, non_ascii: false, quotes: &[] };
            proptest::prop_assert_eq!(scanner.plain_integer(), Some(time));
            proptest::prop_assert_eq!(scanner.at, 6 + time.to_string().len());
        }
    }

    /// [`scan`] by the byte-by-byte walk alone, as for input that is not plain.
    fn scan_byte_by_byte<'a>(
        json: &'a [u8],
        time: Option<&str>,
        key: Option<&str>,
    ) -> Option<Scanned<'a>> {
        let mut scanner = Scanner::<false> {
            bytes: json,
            at: 0,
            non_ascii: false,
            quotes: &[],
        };
        let found = scanner.object(time.map(str::as_bytes), key.map(str::as_bytes))?;
        (scanner.at_end() && (!scanner.non_ascii || std::str::from_utf8(json).is_ok()))
            .then_some(found)
    }

    /// Flat objects (scalar and string values) as text, spaced or not, maybe damaged.
    fn flat_object() -> impl proptest::strategy::Strategy<Value = (Vec<u8>, bool)> {
        use proptest::prelude::*;
        let value = prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            (0..2_000_000_000_000_000i64).prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| serde_json::to_string(&v).unwrap()),
            "[a-z 0-9-]{0,8}".prop_map(|v| format!("\"{v}\"")),
            prop::sample::select(vec!["true", "false", "null", "[1]", "{}"]).prop_map(String::from),
        ];
        let space = prop::sample::select(vec!["", " ", "  "]);
        let damage = prop::sample::select(vec!["", "\"", ":", ",", "}", "{", "x", "0", "-", " "]);
        (
            prop::collection::vec(("(ts|user|[a-z]{1,3})", value, space.clone()), 0..7),
            space,
            any::<prop::sample::Index>(),
            damage,
        )
            .prop_map(|(fields, space, at, damage)| {
                let body: Vec<String> = fields
                    .iter()
                    .map(|(name, value, s)| format!("{s}\"{name}\"{s}:{s}{value}{s}"))
                    .collect();
                let mut text = format!("{space}{{{}}}{space}", body.join(",")).into_bytes();
                let at = at.index(text.len() + 1);
                text.splice(at..at, damage.bytes());
                (text, damage.is_empty())
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The quote-to-quote walk gives what the byte-by-byte walk gives, and reads an
        /// undamaged flat object to its end by itself.
        #[test]
        fn the_quote_to_quote_walk_agrees_with_the_byte_walk((text, intact) in flat_object()) {
            for (time, key) in [(Some("ts"), Some("user")), (None, None), (Some("user"), Some("ts"))] {
                proptest::prop_assert_eq!(scan(&text, time, key), scan_byte_by_byte(&text, time, key));
            }
            let nested = text.windows(2).any(|w| w == b"[1" || w == b"{}");
            if intact && !nested {
                let mut quotes = [0u64; PLAIN_MAX / 64];
                proptest::prop_assert!(mark_quotes_if_plain(&text, &mut quotes));
                let mut scanner = Scanner::<true> { bytes: &text, at: 0, non_ascii: false, quotes: &quotes };
                scanner.expect(b'{').unwrap();
                scanner.whitespace();
                let empty = scanner.peek() == Some(b'}');
                if !empty {
                    proptest::prop_assert!(scanner.flat_fields(&mut Scanned::default(), None, None));
                    proptest::prop_assert!(scanner.at_end());
                }
            }
        }
    }

    #[test]
    fn refuses_what_is_not_one_plain_object() {
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"a\":1,}",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":1e}",
            b"{\"a\":-}",
            b"{\"a\":tru}",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\u12g4\"}",
            b"{\"a\":1} {}",
            b"{\"a\":\"\xff\"}",
            b"{\"ts\":1.0}",
            b"{\"ts\":1e3}",
            b"{\"ts\":01}",
            b"{\"ts\":-}",
            b"{\"ts\":-a}",
            b"{\"ts\":1234567890123456789}",
        ] {
            assert_eq!(
                scan(bad, Some("ts"), None),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(70), "]".repeat(70));
        assert_eq!(scan(deep.as_bytes(), None, None), None);
    }
}
