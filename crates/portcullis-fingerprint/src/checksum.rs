//! The [`Checksum`] value: a 32-byte blake3 digest with a hex text form.

use std::fmt;
use std::str::FromStr;

/// A 32-byte checksum (blake3). Shown and parsed as 64 lower-case hex digits,
/// the form `b3sum` prints, so an operator can list a known-bad attachment
/// by running `b3sum` on it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum(pub [u8; 32]);

impl Checksum {
    /// The blake3 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Checksum(*blake3::hash(bytes).as_bytes())
    }

    /// A checksum of `bytes` kept apart from plain content digests by a
    /// domain-separation `context` (blake3 key derivation), so e.g. an LSH band
    /// key can never equal the digest of some attachment.
    pub fn derived(context: &str, bytes: &[u8]) -> Self {
        Checksum(blake3::derive_key(context, bytes))
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

/// Why a text could not be read as a [`Checksum`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a checksum is 64 hex digits")]
#[non_exhaustive]
pub struct ChecksumParseError;

pub(crate) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl FromStr for Checksum {
    type Err = ChecksumParseError;

    /// 64 hex digits, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(ChecksumParseError);
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(ChecksumParseError)?;
            let lo = hex_value(pair[1]).ok_or(ChecksumParseError)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Checksum(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_b3sum_form() {
        // b3sum of the empty input, as printed by the reference tool.
        let empty: Checksum = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
            .parse()
            .unwrap();
        assert_eq!(Checksum::of(b""), empty);
        assert_eq!(empty.to_string().parse::<Checksum>().unwrap(), empty);
        assert_eq!(
            "AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262".parse::<Checksum>(),
            Ok(empty)
        );
        assert!("af13".parse::<Checksum>().is_err());
        assert!("zz".repeat(32).parse::<Checksum>().is_err());
        assert_ne!(Checksum::derived("a", b"x"), Checksum::of(b"x"));
    }
}
