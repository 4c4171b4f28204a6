//! Exact parsing of the common shape of JSON numbers without a string conversion.

/// Parses `-?digits(.digits)?` exactly when it is at most 19 bytes after the sign and
/// its digits fit in 2^53: then one division by an exact power of ten (at most 10^18) is
/// correctly rounded. Anything else is `None`, for the full parser.
///
/// 19 digits cannot overflow a `u64`, so the loop needs no overflow checks (which in
/// 32-bit WebAssembly would be a 128-bit multiply in software).
pub(super) fn parse_simple_decimal(raw: &[u8]) -> Option<f64> {
    const POW10: [f64; 19] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18,
    ];
    // 19 digits, or 18 and the point.
    const MAX_LEN: usize = 19;
    let (negative, text) = match raw.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, raw),
    };
    if text.len() > MAX_LEN {
        return None;
    }
    let mut mantissa: u64 = 0;
    // Where the point is, once there is one.
    let mut point = None;
    for (i, &b) in text.iter().enumerate() {
        let digit = b.wrapping_sub(b'0');
        if digit < 10 {
            mantissa = mantissa * 10 + u64::from(digit);
        } else if b == b'.' && point.is_none() && i > 0 {
            point = Some(i);
        } else {
            return None;
        }
    }
    // Digits after the point.
    let scale = point.map_or(0, |p| text.len() - 1 - p);
    if text.is_empty() || point.is_some() && scale == 0 || mantissa > (1 << 53) {
        return None;
    }
    let value = mantissa as f64 / POW10[scale];
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_like_the_standard_parser_or_declines() {
        for text in [
            "0",
            "-0",
            "42",
            "-42.5",
            "100.00",
            "0.1",
            "1234.5678",
            "9007199254740992",
            "123456789012.34",
            "-0.000001",
            "0.0000000000000000001",
            "999999999999999999",
        ] {
            let want: f64 = text.parse().unwrap();
            match parse_simple_decimal(text.as_bytes()) {
                Some(got) => assert_eq!(got.to_bits(), want.to_bits(), "{text}"),
                None => assert!(text.len() > 16, "{text} declined"),
            }
        }
        for bad in ["-", "1.", ".5", "1..2", "--1", "1x", "1e3", "", "1.2.3"] {
            assert!(parse_simple_decimal(bad.as_bytes()).is_none(), "{bad}");
        }
        // Past 2^53 or 18 digits: left to the full parser.
        assert!(parse_simple_decimal(b"9007199254740993").is_none());
        assert!(parse_simple_decimal(b"1234567890123456789").is_none());
    }
}
