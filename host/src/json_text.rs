//! Writing JSON text by hand on the hot path (without building values first).

/// Writes `text` as a JSON string. Plain text (printable ASCII without `"` or `\\`) is
/// copied as is; anything else goes through serde_json, invalid UTF-8 lossily decoded.
pub fn write_str(out: &mut Vec<u8>, text: &[u8]) {
    if text
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(text);
        out.push(b'"');
        return;
    }
    let text = String::from_utf8_lossy(text);
    serde_json::to_writer(out, text.as_ref()).expect("writing JSON to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_plain_and_escaped_strings() {
        for text in [
            "user-1",
            "",
            "a \"quoted\" \\ word",
            "tab\there",
            "ünï",
            "\u{1}",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, text.as_bytes());
            assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), text);
        }
        let mut out = Vec::new();
        write_str(&mut out, b"\xff");
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), "\u{fffd}");
    }
}
