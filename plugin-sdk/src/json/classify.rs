//! Classifying JSON text 16 bytes at a time: which bytes are quotes, backslashes, opening
//! brackets (`{` `[`) and closing brackets (`}` `]`), as one bit per byte.
//!
//! This is the only target-specific code of the SDK: SSE2 on x86-64 (part of the
//! baseline, so every x86-64 build has it), `simd128` in WebAssembly, and a portable loop
//! elsewhere. All three compute the same masks; the tests check each build against the
//! portable one. In WebAssembly these functions enable `simd128` themselves, so a plugin
//! needs no build flags; building the whole plugin with `-C target-feature=+simd128` (as
//! this repository's `.cargo/config.toml` does) lets them inline into the plugin's loop,
//! ~6% faster. Wasmtime, like every current Wasm engine, supports `simd128`.

/// Bit `i` of each mask stands for byte `i` of a 16-byte chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ChunkMasks {
    /// `"`
    pub quote: u16,
    /// `\`
    pub backslash: u16,
    /// `{` or `[`
    pub open: u16,
    /// `}` or `]`
    pub close: u16,
}

/// Bit masks of a 64-byte block: bit `i` stands for byte `i` of the block; bits past the
/// end of the text are zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct BlockMasks {
    /// `"`
    pub quote: u64,
    /// `\`
    pub backslash: u64,
    /// `{` or `[`
    pub open: u64,
    /// `}` or `]`
    pub close: u64,
}

/// Classifies the 64 bytes of `text` from `start`. Needs `text.len() >= 16`; a chunk
/// that would run past the end is read as the last 16 bytes of `text` and shifted.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
pub(super) fn block(text: &[u8], start: usize) -> BlockMasks {
    debug_assert!(text.len() >= 16);
    let mut masks = BlockMasks::default();
    for k in 0..4 {
        let offset = start + 16 * k;
        let chunk = match text.get(offset..offset + 16) {
            Some(bytes) => classify(bytes),
            None if offset < text.len() => {
                // The last, partial chunk: classify the final 16 bytes and drop the bits
                // of those already covered.
                let tail = classify(&text[text.len() - 16..]);
                let seen = offset + 16 - text.len();
                ChunkMasks {
                    quote: tail.quote >> seen,
                    backslash: tail.backslash >> seen,
                    open: tail.open >> seen,
                    close: tail.close >> seen,
                }
            }
            None => break,
        };
        let shift = 16 * k;
        masks.quote |= u64::from(chunk.quote) << shift;
        masks.backslash |= u64::from(chunk.backslash) << shift;
        masks.open |= u64::from(chunk.open) << shift;
        masks.close |= u64::from(chunk.close) << shift;
    }
    masks
}

/// The masks of one 16-byte chunk (`bytes.len() == 16`).
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn classify(bytes: &[u8]) -> ChunkMasks {
    let chunk: &[u8; 16] = bytes.try_into().expect("a chunk is 16 bytes");
    simd::classify(chunk)
}

/// The masks of one chunk, one byte at a time: the definition the SIMD versions follow.
#[cfg_attr(
    any(target_arch = "x86_64", target_arch = "wasm32"),
    allow(dead_code, reason = "the tests check the SIMD version against it")
)]
fn classify_portable(chunk: &[u8; 16]) -> ChunkMasks {
    let mut masks = ChunkMasks::default();
    for (i, &b) in chunk.iter().enumerate() {
        let bit = 1u16 << i;
        match b {
            b'"' => masks.quote |= bit,
            b'\\' => masks.backslash |= bit,
            b'{' | b'[' => masks.open |= bit,
            b'}' | b']' => masks.close |= bit,
            _ => {}
        }
    }
    masks
}

/// For the 16 positions `i` from `start`: bit `i` of the low half is set when bytes
/// `start + i` and `start + shift + i` are both quotes (a string of `shift - 1` bytes may
/// open there), bit `i` of the high half when byte `start + i` is a backslash or a
/// bracket. Needs `start + shift + 16 <= text.len()`.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
pub(super) fn quote_pairs(text: &[u8], start: usize, shift: usize) -> u32 {
    let first: &[u8; 16] = text[start..start + 16].try_into().expect("16 bytes");
    let second: &[u8; 16] = text[start + shift..start + shift + 16]
        .try_into()
        .expect("16 bytes");
    simd::quote_pairs(first, second)
}

/// [`quote_pairs`] one byte at a time: the definition the SIMD versions follow.
#[cfg_attr(
    any(target_arch = "x86_64", target_arch = "wasm32"),
    allow(dead_code, reason = "the tests check the SIMD version against it")
)]
fn quote_pairs_portable(first: &[u8; 16], second: &[u8; 16]) -> u32 {
    let mut masks = 0u32;
    for i in 0..16 {
        if first[i] == b'"' && second[i] == b'"' {
            masks |= 1 << i;
        }
        if matches!(first[i], b'\\' | b'{' | b'[' | b'}' | b']') {
            masks |= 1 << (16 + i);
        }
    }
    masks
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::ChunkMasks;
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    #[inline(always)]
    pub(super) fn classify(chunk: &[u8; 16]) -> ChunkMasks {
        // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU has these
        // instructions; `chunk` is 16 readable bytes and the load needs no alignment.
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            // `{` and `[` differ only in bit 5, as do `}` and `]`.
            let folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
            // A movemask of 16 bytes is 16 bits.
            ChunkMasks {
                quote: _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))) as u16,
                backslash: _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))) as u16,
                open: _mm_movemask_epi8(_mm_cmpeq_epi8(folded, _mm_set1_epi8(b'{' as i8))) as u16,
                close: _mm_movemask_epi8(_mm_cmpeq_epi8(folded, _mm_set1_epi8(b'}' as i8))) as u16,
            }
        }
    }

    #[inline(always)]
    pub(super) fn quote_pairs(first: &[u8; 16], second: &[u8; 16]) -> u32 {
        // SAFETY: as in `classify`: SSE2 is baseline and both arrays are 16 readable bytes.
        unsafe {
            let a = _mm_loadu_si128(first.as_ptr().cast::<__m128i>());
            let b = _mm_loadu_si128(second.as_ptr().cast::<__m128i>());
            let quote = _mm_set1_epi8(b'"' as i8);
            let pairs = _mm_and_si128(_mm_cmpeq_epi8(a, quote), _mm_cmpeq_epi8(b, quote));
            let folded = _mm_or_si128(a, _mm_set1_epi8(0x20));
            let stops = _mm_or_si128(
                _mm_or_si128(
                    _mm_cmpeq_epi8(a, _mm_set1_epi8(b'\\' as i8)),
                    _mm_cmpeq_epi8(folded, _mm_set1_epi8(b'{' as i8)),
                ),
                _mm_cmpeq_epi8(folded, _mm_set1_epi8(b'}' as i8)),
            );
            (_mm_movemask_epi8(pairs) as u32) | ((_mm_movemask_epi8(stops) as u32) << 16)
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use super::ChunkMasks;
    use std::arch::wasm32::{
        u8x16_bitmask, u8x16_eq, u8x16_splat, v128, v128_and, v128_load, v128_or,
    };

    #[inline]
    #[target_feature(enable = "simd128")]
    pub(super) fn classify(chunk: &[u8; 16]) -> ChunkMasks {
        // SAFETY: `chunk` is 16 readable bytes; `v128.load` has no alignment requirement.
        let v = unsafe { v128_load(chunk.as_ptr().cast::<v128>()) };
        // `{` and `[` differ only in bit 5, as do `}` and `]`.
        let folded = v128_or(v, u8x16_splat(0x20));
        ChunkMasks {
            quote: u8x16_bitmask(u8x16_eq(v, u8x16_splat(b'"'))),
            backslash: u8x16_bitmask(u8x16_eq(v, u8x16_splat(b'\\'))),
            open: u8x16_bitmask(u8x16_eq(folded, u8x16_splat(b'{'))),
            close: u8x16_bitmask(u8x16_eq(folded, u8x16_splat(b'}'))),
        }
    }

    #[inline]
    #[target_feature(enable = "simd128")]
    pub(super) fn quote_pairs(first: &[u8; 16], second: &[u8; 16]) -> u32 {
        // SAFETY: both arrays are 16 readable bytes; `v128.load` needs no alignment.
        let (a, b) = unsafe {
            (
                v128_load(first.as_ptr().cast::<v128>()),
                v128_load(second.as_ptr().cast::<v128>()),
            )
        };
        let quote = u8x16_splat(b'"');
        let pairs = v128_and(u8x16_eq(a, quote), u8x16_eq(b, quote));
        let folded = v128_or(a, u8x16_splat(0x20));
        let stops = v128_or(
            v128_or(
                u8x16_eq(a, u8x16_splat(b'\\')),
                u8x16_eq(folded, u8x16_splat(b'{')),
            ),
            u8x16_eq(folded, u8x16_splat(b'}')),
        );
        u32::from(u8x16_bitmask(pairs)) | (u32::from(u8x16_bitmask(stops)) << 16)
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "wasm32")))]
mod simd {
    pub(super) use super::classify_portable as classify;
    pub(super) use super::quote_pairs_portable as quote_pairs;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_portable_classification_agree_on_every_byte() {
        for first in (0..=255u8).step_by(16) {
            let mut chunk = [0u8; 16];
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = first.wrapping_add(i as u8);
            }
            assert_eq!(
                simd::classify(&chunk),
                classify_portable(&chunk),
                "{chunk:?}"
            );
        }
        let chunk = *br#"{"a":[1,"\"]}x]]"#;
        assert_eq!(simd::classify(&chunk), classify_portable(&chunk));
    }

    #[test]
    fn simd_and_portable_quote_pairs_agree_on_every_byte() {
        for first in (0..=255u8).step_by(16) {
            let mut a = [0u8; 16];
            for (i, b) in a.iter_mut().enumerate() {
                *b = first.wrapping_add(i as u8);
            }
            let b = *br#""x"""""y""\"{""""#;
            assert_eq!(
                simd::quote_pairs(&a, &b),
                quote_pairs_portable(&a, &b),
                "{a:?}"
            );
        }
        let a = *br#"{"a":[1,"\\"]}"x"#;
        let b = *br#"a"b""c"""""""""""#;
        let got = simd::quote_pairs(&a, &b);
        assert_eq!(got, quote_pairs_portable(&a, &b));
        // Quotes in both at 1, 3, 8, 11 and 14; stops at 0 `{`, 5 `[`, 9 and 10 `\`,
        // 12 `]` and 13 `}`.
        assert_eq!(got & 0xffff, 1 << 1 | 1 << 3 | 1 << 8 | 1 << 11 | 1 << 14);
        assert_eq!(got >> 16, 1 | 1 << 5 | 1 << 9 | 1 << 10 | 1 << 12 | 1 << 13);
    }

    #[test]
    fn blocks_cover_partial_chunks_and_stop_at_the_end() {
        // 40 bytes: two whole chunks and a partial one.
        let text = br#"{"key": "value", "list": [1, 2], "z": {}}"#;
        let text = &text[..40];
        let masks = block(text, 0);
        let mut want = BlockMasks::default();
        for (i, &b) in text.iter().enumerate() {
            let bit = 1u64 << i;
            match b {
                b'"' => want.quote |= bit,
                b'{' | b'[' => want.open |= bit,
                b'}' | b']' => want.close |= bit,
                _ => {}
            }
        }
        assert_eq!(masks, want);
        assert_eq!(block(text, 32).quote, want.quote >> 32);
    }
}
