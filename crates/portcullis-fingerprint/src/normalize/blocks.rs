//! Byte-class masks of one block of input: sixteen bytes with SSE2 (always
//! there on x86-64), eight elsewhere. Each returns one bit per byte of the
//! block (bit `i` for byte `i`), so the scanners above are written once.
//! `core::arch` would need `unsafe`, which this crate forbids: `safe_arch`
//! wraps it.

#[cfg(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "sse2"
))]
mod imp {
    use safe_arch::{
        add_i8_m128i, cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i, m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
    };

    /// Bytes per block.
    pub(crate) const BLOCK: usize = 16;

    fn splat(c: u8) -> m128i {
        set_splat_i8_m128i(c.cast_signed())
    }

    /// All ones where `lo <= v <= hi` (unsigned): `v - lo` moved to the
    /// bottom of the signed range, below `hi - lo + 1` from there.
    fn in_range(v: m128i, lo: u8, hi: u8) -> m128i {
        cmp_lt_mask_i8_m128i(
            add_i8_m128i(v, splat(0x80u8.wrapping_sub(lo))),
            splat(0x80 + (hi - lo + 1)),
        )
    }

    fn bits(m: m128i) -> u32 {
        move_mask_i8_m128i(m).cast_unsigned()
    }

    /// Bytes equal to one of `of`.
    #[inline]
    pub(crate) fn eq_any<const N: usize>(block: &[u8; BLOCK], of: [u8; N]) -> u32 {
        let v = load_unaligned_m128i(block);
        bits(of.iter().fold(m128i::default(), |m, &c| {
            m | cmp_eq_mask_i8_m128i(v, splat(c))
        }))
    }

    /// Bytes up to 0x20 and from 0x80 (candidates for white space).
    #[inline]
    pub(crate) fn low_or_high(block: &[u8; BLOCK]) -> u32 {
        bits(cmp_lt_mask_i8_m128i(
            load_unaligned_m128i(block),
            splat(0x21),
        ))
    }

    /// [`low_or_high`] and `"#$%&'` and `<=>?` (candidates for a URL's end).
    #[inline]
    pub(crate) fn url_candidates(block: &[u8; BLOCK]) -> u32 {
        let v = load_unaligned_m128i(block);
        bits(
            cmp_lt_mask_i8_m128i(v, splat(0x21))
                | in_range(v, b'"', b'\'')
                | in_range(v, b'<', b'?'),
        )
    }
}

#[cfg(not(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "sse2"
)))]
mod imp {
    pub(crate) use super::portable::{BLOCK, eq_any, low_or_high, url_candidates};
}

/// The same masks eight bytes at a time in a `u64` (on x86 too, to be
/// tested against the SIMD ones).
#[cfg_attr(
    all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2",
        not(test)
    ),
    allow(dead_code)
)]
pub(crate) mod portable {
    use crate::normalize::{TOP, splat};

    /// Bytes per block.
    pub(crate) const BLOCK: usize = 8;

    /// The top bit of each byte of `m` as one bit per byte: bit 8i + 7
    /// moves to bit 56 + i in the product, and no two terms meet.
    fn bits(m: u64) -> u32 {
        (((m & TOP) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    }

    /// Per byte, without carries between bytes: with `lo <= 0x7f`, the top
    /// bit of `lo + (0x80 - n)` says `lo >= n`.
    fn at_least(lo: u64, n: u8) -> u64 {
        lo + splat(0x80 - n)
    }

    /// Bytes equal to one of `of`: exact, as the top bit of each zero byte
    /// of `v ^ c` (`(x & 0x7f) + 0x7f` carries into the top bit unless the
    /// low seven bits are zero).
    #[inline]
    pub(crate) fn eq_any<const N: usize>(block: &[u8; BLOCK], of: [u8; N]) -> u32 {
        let v = u64::from_le_bytes(*block);
        let low7 = !TOP;
        bits(of.iter().fold(0, |m, &c| {
            let x = v ^ splat(c);
            m | !(((x & low7) + low7) | x)
        }))
    }

    /// Bytes up to 0x20 and from 0x80.
    #[inline]
    pub(crate) fn low_or_high(block: &[u8; BLOCK]) -> u32 {
        let v = u64::from_le_bytes(*block);
        bits(v | !at_least(v & !TOP, 0x21))
    }

    /// [`low_or_high`] and `"#$%&'` and `<=>?`.
    #[inline]
    pub(crate) fn url_candidates(block: &[u8; BLOCK]) -> u32 {
        let v = u64::from_le_bytes(*block);
        let lo = v & !TOP;
        let range = |from: u8, to: u8| at_least(lo, from) & !at_least(lo, to + 1);
        bits(v | !at_least(lo, 0x21) | range(b'"', b'\'') | range(b'<', b'?'))
    }
}

pub(crate) use imp::{BLOCK, eq_any, low_or_high, url_candidates};

/// The first index from `from` of a byte that `accept` takes, or `None`.
/// Whole blocks are read through `mask`, which must mark every byte
/// `accept` takes (it may mark more); the last bytes one by one.
#[inline]
pub(crate) fn find(
    hay: &[u8],
    from: usize,
    mask: impl Fn(&[u8; BLOCK]) -> u32,
    accept: impl Fn(u8) -> bool,
) -> Option<usize> {
    let marked = |start: usize, mut m: u32| {
        while m != 0 {
            let at = start + m.trailing_zeros() as usize;
            if accept(hay[at]) {
                return Some(at);
            }
            m &= m - 1;
        }
        None
    };
    find_marked(hay, from, mask, marked, &accept)
}

/// [`find`] when `mask` marks exactly the bytes `accept` takes: the first
/// mark is the answer.
#[inline]
pub(crate) fn find_exact(
    hay: &[u8],
    from: usize,
    mask: impl Fn(&[u8; BLOCK]) -> u32,
    accept: impl Fn(u8) -> bool,
) -> Option<usize> {
    let first = |start: usize, m: u32| (m != 0).then(|| start + m.trailing_zeros() as usize);
    find_marked(hay, from, mask, first, &accept)
}

/// The scan of [`find`] and [`find_exact`]: `marked` picks the answer in a
/// block's mask, `accept` in a hay shorter than a block.
#[inline]
fn find_marked(
    hay: &[u8],
    from: usize,
    mask: impl Fn(&[u8; BLOCK]) -> u32,
    marked: impl Fn(usize, u32) -> Option<usize>,
    accept: &impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut i = from;
    while let Some(block) = hay
        .get(i..i + BLOCK)
        .and_then(|c| <&[u8; BLOCK]>::try_from(c).ok())
    {
        if let Some(at) = marked(i, mask(block)) {
            return Some(at);
        }
        i += BLOCK;
    }
    if i >= hay.len() {
        return None;
    }
    // The last block ends at the end: its bytes before `i` were read.
    match hay
        .len()
        .checked_sub(BLOCK)
        .and_then(|start| Some((start, <&[u8; BLOCK]>::try_from(hay.get(start..)?).ok()?)))
    {
        Some((start, block)) => marked(start, mask(block) & (u32::MAX << (i - start))),
        None => hay[i..].iter().position(|&c| accept(c)).map(|p| i + p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// `find` finds what a bytewise search finds, wherever the hay ends.
        #[test]
        fn find_matches_bytewise(
            hay in prop::collection::vec(prop::sample::select(vec![b' ', b'a', b'>', b'\t', 0xc3, b'"']), 0..70),
            from in 0usize..72,
        ) {
            let from = from.min(hay.len());
            let bytewise = |f: &dyn Fn(u8) -> bool| hay[from..].iter().position(|&c| f(c)).map(|p| from + p);
            prop_assert_eq!(
                find(&hay, from, |b| eq_any(b, [b'>', b'"']), |c| c == b'>' || c == b'"'),
                bytewise(&|c| c == b'>' || c == b'"')
            );
            prop_assert_eq!(
                find_exact(&hay, from, |b| eq_any(b, [b'>', b'"']), |c| c == b'>' || c == b'"'),
                bytewise(&|c| c == b'>' || c == b'"')
            );
            prop_assert_eq!(
                find(&hay, from, low_or_high, |c| c.is_ascii_whitespace()),
                bytewise(&|c: u8| c.is_ascii_whitespace())
            );
        }

        /// Each mask marks at least the bytes it is for (the SIMD ones
        /// exactly those; the portable ones the same, checked bytewise).
        #[test]
        fn masks_mark_their_bytes(bytes in prop::collection::vec(any::<u8>(), 16)) {
            let mut b16 = [0u8; 16];
            b16.copy_from_slice(&bytes);
            let want = |f: &dyn Fn(u8) -> bool| {
                b16[..BLOCK].iter().enumerate().fold(0u32, |m, (i, &c)| m | (u32::from(f(c)) << i))
            };
            let block: &[u8; BLOCK] = b16[..BLOCK].try_into().unwrap();
            let url = |c: u8| c <= 0x20 || c >= 0x80 || (b'"'..=b'\'').contains(&c) || (b'<'..=b'?').contains(&c);
            prop_assert_eq!(eq_any(block, [b'>', b'"', b'\'']), want(&|c| matches!(c, b'>' | b'"' | b'\'')));
            prop_assert_eq!(low_or_high(block), want(&|c| c <= 0x20 || c >= 0x80));
            prop_assert_eq!(url_candidates(block), want(&url));
            let p: &[u8; 8] = b16[..8].try_into().unwrap();
            let want8 = |f: &dyn Fn(u8) -> bool| {
                p.iter().enumerate().fold(0u32, |m, (i, &c)| m | (u32::from(f(c)) << i))
            };
            prop_assert_eq!(portable::eq_any(p, [b'&']), want8(&|c| c == b'&'));
            prop_assert_eq!(portable::low_or_high(p), want8(&|c| c <= 0x20 || c >= 0x80));
            prop_assert_eq!(portable::url_candidates(p), want8(&url));
        }
    }
}
