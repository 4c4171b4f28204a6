//! The exact scanner: walks a JSON object byte by byte, member by member, skipping values
//! without building them. It handles every well-formed object (escaped keys included)
//! and stops at the first malformed part; [`super::index`] defers to it whenever its
//! fast path is not sure.

use super::Field;

/// The top-level fields of `object`, in order; see [`super::fields`].
pub(super) fn fields(object: &[u8]) -> Fields<'_> {
    let mut scan = Scanner::new(object, 0);
    scan.skip_ws();
    let open = scan.expect(b'{').is_some();
    scan.skip_ws();
    let done = !open || scan.peek() == Some(b'}');
    Fields { scan, done }
}

/// The value of the member whose key ends just before `pos` (the key's closing quote
/// is at `pos - 1`): `: value` and then `,` or `}`. `None` when that is malformed.
pub(super) fn member_value(object: &[u8], pos: usize) -> Option<Field<'_>> {
    let mut scan = Scanner::new(object, pos);
    scan.rest_of_member()
}

/// The first position at or after `pos` that is not JSON whitespace.
pub(super) fn skip_ws(text: &[u8], mut pos: usize) -> usize {
    while text.get(pos).copied().is_some_and(is_ws) {
        pos += 1;
    }
    pos
}

/// Whether `b` is JSON whitespace.
pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Iterator over the top-level fields of an object; see [`super::fields`].
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

/// A cursor over JSON text that skips values without building them.
#[derive(Debug)]
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a [u8], pos: usize) -> Self {
        Self { text, pos }
    }

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
        self.pos = skip_ws(self.text, self.pos);
    }

    /// Reads one `"key": value` member and the `,` after it (or stops before `}`).
    fn member(&mut self) -> Option<(&'a [u8], Field<'a>)> {
        self.skip_ws();
        let key = self.string()?;
        let value = self.rest_of_member()?;
        Some((key, value))
    }

    /// Reads `: value` and the `,` after it (or stops before `}`).
    fn rest_of_member(&mut self) -> Option<Field<'a>> {
        self.skip_ws();
        self.expect(b':')?;
        self.skip_ws();
        let start = self.pos;
        self.value()?;
        let value = Field::new(&self.text[start..self.pos]);
        self.skip_ws();
        match self.peek()? {
            b',' => self.pos += 1,
            b'}' => {}
            _ => return None,
        }
        Some(value)
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
