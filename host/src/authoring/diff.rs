//! A readable line diff of expected against actual output, for `eddy plugin test`.

use std::fmt::Write as _;

use similar::{ChangeTag, TextDiff};

/// The lines that differ between `expected` and `actual` (one JSON value per line), with
/// their line numbers and a few lines of context; `None` when they are equal.
pub(super) fn line_diff(expected: &[&str], actual: &[&str]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let diff = TextDiff::from_slices(expected, actual);
    let mut out = String::new();
    for (i, group) in diff.grouped_ops(2).into_iter().enumerate() {
        if i > 0 {
            out.push_str("  ...\n");
        }
        for op in group {
            for change in diff.iter_changes(&op) {
                let (sign, line) = match change.tag() {
                    ChangeTag::Delete => ("-", change.old_index()),
                    ChangeTag::Insert => ("+", change.new_index()),
                    ChangeTag::Equal => (" ", change.new_index()),
                };
                let line = line.map_or(0, |i| i + 1);
                let _ = writeln!(out, "{sign} {line:>5} | {}", change.value());
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_differing_lines_with_their_numbers() {
        let expected = ["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"];
        let actual = ["{\"a\":1}", "{\"a\":20}", "{\"a\":3}"];
        let diff = line_diff(&expected, &actual).unwrap();
        assert!(diff.contains("-     2 | {\"a\":2}"), "{diff}");
        assert!(diff.contains("+     2 | {\"a\":20}"), "{diff}");
        assert!(line_diff(&expected, &expected).is_none());
    }
}
