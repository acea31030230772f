//! BATV "prvs" tags (draft-levine-smtp-batv-01 §4), computed exactly as
//! Exim's `${prvs{address}{secret}{keynum}}` computes them.
//!
//! # The tag
//!
//! `prvs=KDDDSSSSSS=local@domain`, where
//! - `K` is the key number, one decimal digit;
//! - `DDD` is the day the tag expires: `(unix_seconds / 86400 + validity_days) mod 1000`,
//!   three decimal digits with leading zeros (Exim: `prvs_daystamp(7)`);
//! - `SSSSSS` is the first 3 bytes of `HMAC-SHA1(secret, source)` in lower-case hex.
//!
//! # The exact hashed byte string
//!
//! `source` is the concatenation, with no separators, of
//! 1. the key digit as one ASCII character (`'0'`–`'9'`),
//! 2. the three ASCII digits `DDD`,
//! 3. the original address exactly as written: the local part (unquoted, as
//!    [`LocalPart::as_str`] holds it), `@`, and the domain as written
//!    ([`Domain::as_str`](portcullis_core::Domain::as_str)), with no case folding.
//!
//! For key `3`, expiry day `788` and `user@example.com` the HMAC input is the
//! 20 bytes `3788user@example.com`. This is Exim's `prvs_hmac_sha1()`
//! (`string_sprintf("%s%s%s", key_num, daystamp, address)`), and the vectors
//! in `tests/vectors/` were produced by Exim 4.96.
//!
//! # Where we differ from Exim on purpose
//!
//! Exim's `${prvscheck}` accepts a tag when `expiry >= today` on the
//! three-digit day numbers, correcting only for expiry days 000–006. A tag
//! expiring on day 993–999 therefore stays valid to Exim for up to ~990 days
//! after the counter wraps. We accept a tag only while its expiry day lies
//! 0..=`validity_days` days ahead, modulo 1000. The interop test predicts
//! exactly the vectors where this makes Exim and us disagree.
//!
//! Exim matches `prvs=` case-insensitively but compares the hex signature
//! case-sensitively, so `prvs=3461447CC3=…` fails there; we accept hex in
//! either case, for MTAs that change the case of local parts.
//!
//! Because the hash covers the address as written, a relay that changes the
//! case of the local part or domain of a bounce address invalidates the tag;
//! Exim behaves the same. What is case-insensitive is the tag syntax:
//! `PRVS=` and the hex digits.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use portcullis_core::{Address, LocalPart};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::error::BatvError;

type HmacSha1 = Hmac<Sha1>;

/// Days a new tag stays valid: Exim signs with `prvs_daystamp(7)`.
pub const DEFAULT_VALIDITY_DAYS: u16 = 7;
/// Exim refuses longer secrets (it pads the key into one SHA-1 block by hand).
pub const MAX_SECRET_LEN: usize = 64;
/// Key numbers are one decimal digit.
pub const KEY_SLOTS: usize = 10;

const SECONDS_PER_DAY: u64 = 86_400;
/// The day field has three digits, so day numbers wrap every 1000 days.
const DAY_MODULUS: u64 = 1000;
/// `K` + `DDD` + `SSSSSS`.
const TAG_VALUE_LEN: usize = 10;
const PREFIX: &str = "prvs=";
const LEGACY_INFIX: &str = "=prvs=";

/// The BATV signing keys, by key number (0–9), and which one signs.
///
/// Rotation: [`insert`](Self::insert) the new key, make it current with
/// [`set_current`](Self::set_current), and [`remove`](Self::remove) the old
/// key only once its last tags have expired (the validity window). Keys come
/// from configuration; the ring never generates one.
#[derive(Clone)]
pub struct KeyRing {
    /// The keyed MAC state per slot, cloned per use so the key is padded once.
    keys: [Option<HmacSha1>; KEY_SLOTS],
    current: u8,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        f.debug_struct("KeyRing")
            .field("keys", &self.key_numbers().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl KeyRing {
    /// A ring holding one key, which signs.
    pub fn new(number: u8, secret: &[u8]) -> Result<Self, BatvError> {
        let mut ring = KeyRing {
            keys: Default::default(),
            current: number,
        };
        ring.insert(number, secret)?;
        Ok(ring)
    }

    /// A ring from configured `(number, secret)` pairs, signing with `current`,
    /// which must be among them.
    pub fn from_keys<S: AsRef<[u8]>>(
        current: u8,
        keys: impl IntoIterator<Item = (u8, S)>,
    ) -> Result<Self, BatvError> {
        let mut ring = KeyRing {
            keys: Default::default(),
            current,
        };
        for (number, secret) in keys {
            ring.insert(number, secret.as_ref())?;
        }
        ring.set_current(current)?;
        Ok(ring)
    }

    /// Add (or replace) a key; it verifies but does not sign until made current.
    pub fn insert(&mut self, number: u8, secret: &[u8]) -> Result<(), BatvError> {
        let slot = slot(number)?;
        if secret.is_empty() {
            return Err(BatvError::EmptySecret(number));
        }
        if secret.len() > MAX_SECRET_LEN {
            return Err(BatvError::SecretTooLong {
                key: number,
                len: secret.len(),
            });
        }
        let mac = HmacSha1::new_from_slice(secret).map_err(|_| BatvError::EmptySecret(number))?;
        self.keys[slot] = Some(mac);
        Ok(())
    }

    /// [`insert`](Self::insert), by value.
    pub fn with_key(mut self, number: u8, secret: &[u8]) -> Result<Self, BatvError> {
        self.insert(number, secret)?;
        Ok(self)
    }

    /// Sign with `number` from now on; the key must be in the ring.
    pub fn set_current(&mut self, number: u8) -> Result<(), BatvError> {
        if self.mac(number).is_none() {
            return Err(BatvError::UnknownKey(number));
        }
        self.current = number;
        Ok(())
    }

    /// Remove a retired key: its tags stop verifying.
    pub fn remove(&mut self, number: u8) -> Result<(), BatvError> {
        let slot = slot(number)?;
        if number == self.current {
            return Err(BatvError::RemoveCurrentKey(number));
        }
        if self.keys[slot].take().is_none() {
            return Err(BatvError::UnknownKey(number));
        }
        Ok(())
    }

    /// The signing key's number.
    pub fn current(&self) -> u8 {
        self.current
    }

    /// Whether key `number` is in the ring.
    pub fn contains(&self, number: u8) -> bool {
        self.mac(number).is_some()
    }

    /// The numbers of the keys in the ring, ascending.
    pub fn key_numbers(&self) -> impl Iterator<Item = u8> + '_ {
        (0u8..)
            .zip(self.keys.iter())
            .filter_map(|(n, k)| k.as_ref().map(|_| n))
    }

    fn mac(&self, number: u8) -> Option<&HmacSha1> {
        self.keys.get(usize::from(number)).and_then(Option::as_ref)
    }
}

fn slot(number: u8) -> Result<usize, BatvError> {
    let slot = usize::from(number);
    if slot >= KEY_SLOTS {
        return Err(BatvError::KeyNumberOutOfRange(number));
    }
    Ok(slot)
}

/// Where the tag sits in the local part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TagOrder {
    /// `prvs=KDDDSSSSSS=local` (draft-levine-smtp-batv-01, Exim).
    Standard,
    /// `local=prvs=KDDDSSSSSS`, the order of early drafts and some old
    /// signers; the signature covers the same bytes as in the standard order.
    Legacy,
}

/// A prvs tag split into its fields (not yet verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrvsTag<'a> {
    /// Key number `K`.
    pub key: u8,
    /// Expiry day `DDD` (0–999).
    pub expiry_day: u16,
    /// The 3 signature bytes `SSSSSS`.
    pub signature: [u8; 3],
    /// The original local part.
    pub local: &'a str,
    /// Which order the tag was written in.
    pub order: TagOrder,
}

impl<'a> PrvsTag<'a> {
    /// Split a local part into a tag, case-insensitively (`PRVS=`, hex in
    /// either case). The legacy order is tried only when `accept_legacy` is set.
    /// `None` means "not tagged".
    pub fn parse(local: &'a str, accept_legacy: bool) -> Option<Self> {
        if let Some(tag) = Self::parse_standard(local) {
            return Some(tag);
        }
        if accept_legacy {
            return Self::parse_legacy(local);
        }
        None
    }

    fn parse_standard(local: &'a str) -> Option<Self> {
        let head = local.get(..PREFIX.len())?;
        if !head.eq_ignore_ascii_case(PREFIX) {
            return None;
        }
        let rest = &local[PREFIX.len()..];
        let value = rest.get(..TAG_VALUE_LEN)?;
        let original = rest[TAG_VALUE_LEN..].strip_prefix('=')?;
        Self::from_value(value, original, TagOrder::Standard)
    }

    fn parse_legacy(local: &'a str) -> Option<Self> {
        let split = local
            .len()
            .checked_sub(LEGACY_INFIX.len() + TAG_VALUE_LEN)?;
        let infix = local.get(split..split + LEGACY_INFIX.len())?;
        if !infix.eq_ignore_ascii_case(LEGACY_INFIX) {
            return None;
        }
        let value = &local[split + LEGACY_INFIX.len()..];
        Self::from_value(value, &local[..split], TagOrder::Legacy)
    }

    fn from_value(value: &str, original: &'a str, order: TagOrder) -> Option<Self> {
        if original.is_empty() {
            return None;
        }
        let b = value.as_bytes();
        if b.len() != TAG_VALUE_LEN || !b[..4].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let key = b[0] - b'0';
        let expiry_day =
            u16::from(b[1] - b'0') * 100 + u16::from(b[2] - b'0') * 10 + u16::from(b[3] - b'0');
        let mut signature = [0u8; 3];
        for (i, byte) in signature.iter_mut().enumerate() {
            *byte = hex_nibble(b[4 + 2 * i])? << 4 | hex_nibble(b[5 + 2 * i])?;
        }
        Some(PrvsTag {
            key,
            expiry_day,
            signature,
            local: original,
            order,
        })
    }
}

fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The outcome of checking an address for a prvs tag. Data, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verification {
    /// The tag is genuine and in date.
    Valid {
        /// The address without its tag.
        original: Address,
        /// The key that signed it.
        key: u8,
    },
    /// The tag is genuine but its expiry day has passed.
    Expired {
        /// The address without its tag.
        original: Address,
        /// The key that signed it.
        key: u8,
    },
    /// The signature does not match (forged or altered).
    BadSignature {
        /// The key number the tag names.
        key: u8,
    },
    /// The tag names a key that is not in the ring.
    UnknownKey {
        /// The key number the tag names.
        key: u8,
    },
    /// The address carries no prvs tag.
    NotTagged,
}

impl Verification {
    /// Whether the tag is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verification::Valid { .. })
    }

    /// A short reason for logs and reply text.
    pub fn describe(&self) -> &'static str {
        match self {
            Verification::Valid { .. } => "valid BATV tag",
            Verification::Expired { .. } => "BATV tag expired",
            Verification::BadSignature { .. } => "BATV signature does not match",
            Verification::UnknownKey { .. } => "BATV key unknown",
            Verification::NotTagged => "no BATV tag",
        }
    }
}

/// Signing and verification settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrvsConfig {
    /// Days a new tag is valid, and the furthest ahead an expiry day may lie
    /// when verifying. Default 7, as Exim.
    pub validity_days: u16,
    /// Also accept `local=prvs=KDDDSSSSSS` when verifying. Default off.
    pub accept_legacy_order: bool,
}

impl Default for PrvsConfig {
    fn default() -> Self {
        PrvsConfig {
            validity_days: DEFAULT_VALIDITY_DAYS,
            accept_legacy_order: false,
        }
    }
}

impl PrvsConfig {
    /// Set the validity window in days (1–999).
    pub fn with_validity_days(mut self, days: u16) -> Result<Self, BatvError> {
        if days == 0 || u64::from(days) >= DAY_MODULUS {
            return Err(BatvError::ValidityOutOfRange(days));
        }
        self.validity_days = days;
        Ok(self)
    }

    /// Accept the legacy `local=prvs=…` order when verifying.
    pub fn with_legacy_order(mut self, accept: bool) -> Self {
        self.accept_legacy_order = accept;
        self
    }
}

/// A prvs signer and verifier: a [`KeyRing`] and a [`PrvsConfig`].
#[derive(Debug, Clone)]
pub struct Prvs {
    ring: KeyRing,
    config: PrvsConfig,
}

impl Prvs {
    /// Sign and verify with `ring` and the default settings.
    pub fn new(ring: KeyRing) -> Self {
        Prvs {
            ring,
            config: PrvsConfig::default(),
        }
    }

    /// Replace the settings.
    pub fn with_config(mut self, config: PrvsConfig) -> Self {
        self.config = config;
        self
    }

    /// The key ring.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// The key ring, to rotate keys.
    pub fn ring_mut(&mut self) -> &mut KeyRing {
        &mut self.ring
    }

    /// The settings.
    pub fn config(&self) -> &PrvsConfig {
        &self.config
    }

    /// Tag `address` with the current key, valid for `validity_days` from `now`.
    ///
    /// Fails if the address is already tagged (in either order) or the
    /// tagged local part would exceed 64 octets.
    pub fn sign(&self, address: &Address, now: SystemTime) -> Result<Address, BatvError> {
        if self.is_tagged(address) {
            return Err(BatvError::AlreadyTagged);
        }
        let key = self.ring.current;
        let mac = self.ring.mac(key).ok_or(BatvError::UnknownKey(key))?;
        let expiry_day = day_mod_1000(unix_day(now) + u64::from(self.config.validity_days));
        let sig = signature(
            mac,
            key,
            expiry_day,
            address.local_part().as_str(),
            address.domain().as_str(),
        );
        let local = format!(
            "{PREFIX}{key}{expiry_day:03}{:02x}{:02x}{:02x}={}",
            sig[0],
            sig[1],
            sig[2],
            address.local_part().as_str()
        );
        Ok(address.with_local_part(LocalPart::new(&local)?))
    }

    /// Whether the local part looks like a prvs tag (not checked).
    pub fn is_tagged(&self, address: &Address) -> bool {
        PrvsTag::parse(address.local_part().as_str(), true).is_some()
    }

    /// Check the tag on `address` at `now`, and on success (or expiry) give
    /// the address without its tag.
    ///
    /// Order of checks: syntax, key, signature (constant time), then expiry,
    /// as Exim's `${prvscheck}`. The expiry day is valid when it lies between
    /// today and `validity_days` ahead, counted modulo 1000 so the window
    /// works across the day-number wrap (day 998 signs expiry 005).
    pub fn verify(&self, address: &Address, now: SystemTime) -> Verification {
        let status = self.check(address, now);
        let original = || {
            let tag = PrvsTag::parse(
                address.local_part().as_str(),
                self.config.accept_legacy_order,
            )?;
            // A substring of a valid local part is valid; never panic anyway.
            let local = LocalPart::new(tag.local).ok()?;
            Some(address.with_local_part(local))
        };
        match status {
            TagStatus::Valid { key } => match original() {
                Some(original) => Verification::Valid { original, key },
                None => Verification::BadSignature { key },
            },
            TagStatus::Expired { key } => match original() {
                Some(original) => Verification::Expired { original, key },
                None => Verification::BadSignature { key },
            },
            TagStatus::BadSignature { key } => Verification::BadSignature { key },
            TagStatus::UnknownKey { key } => Verification::UnknownKey { key },
            TagStatus::NotTagged => Verification::NotTagged,
        }
    }

    /// [`verify`](Self::verify) without building the untagged address: the
    /// same checks, no allocation.
    pub fn check(&self, address: &Address, now: SystemTime) -> TagStatus {
        let Some(tag) = PrvsTag::parse(
            address.local_part().as_str(),
            self.config.accept_legacy_order,
        ) else {
            return TagStatus::NotTagged;
        };
        let key = tag.key;
        let Some(mac) = self.ring.mac(key) else {
            return TagStatus::UnknownKey { key };
        };
        let domain = address.domain().as_str();
        let expected = signature(mac, key, tag.expiry_day, tag.local, domain);
        if !bool::from(expected.ct_eq(&tag.signature)) {
            return TagStatus::BadSignature { key };
        }
        let today = day_mod_1000(unix_day(now));
        let ahead = (u64::from(tag.expiry_day) + DAY_MODULUS - u64::from(today)) % DAY_MODULUS;
        if ahead <= u64::from(self.config.validity_days) {
            TagStatus::Valid { key }
        } else {
            TagStatus::Expired { key }
        }
    }
}

/// [`Verification`] without the untagged address, from [`Prvs::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TagStatus {
    /// Genuine and in date, signed with `key`.
    Valid {
        /// The signing key.
        key: u8,
    },
    /// Genuine but past its expiry day.
    Expired {
        /// The signing key.
        key: u8,
    },
    /// The signature does not match.
    BadSignature {
        /// The key number the tag names.
        key: u8,
    },
    /// The tag names a key that is not in the ring.
    UnknownKey {
        /// The key number the tag names.
        key: u8,
    },
    /// No prvs tag.
    NotTagged,
}

/// The first 3 bytes of HMAC-SHA1 over the source documented in the module docs.
fn signature(keyed: &HmacSha1, key: u8, expiry_day: u16, local: &str, domain: &str) -> [u8; 3] {
    let mut mac = keyed.clone();
    let mut head = [0u8; 4];
    head[0] = b'0' + key;
    head[1] = b'0' + (expiry_day / 100 % 10) as u8;
    head[2] = b'0' + (expiry_day / 10 % 10) as u8;
    head[3] = b'0' + (expiry_day % 10) as u8;
    mac.update(&head);
    mac.update(local.as_bytes());
    mac.update(b"@");
    mac.update(domain.as_bytes());
    let full = mac.finalize().into_bytes();
    [full[0], full[1], full[2]]
}

/// The exact string Exim hashes for a tag: key digit, `DDD`, `local@domain`.
///
/// Provided for documentation and debugging; [`Prvs`] hashes the same bytes
/// without building this string.
pub fn hash_source(key: u8, expiry_day: u16, address: &Address) -> String {
    format!(
        "{}{:03}{}@{}",
        key % 10,
        expiry_day % 1000,
        address.local_part().as_str(),
        address.domain().as_str()
    )
}

fn unix_day(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / SECONDS_PER_DAY)
}

fn day_mod_1000(day: u64) -> u16 {
    (day % DAY_MODULUS) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at_day(day: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(day * SECONDS_PER_DAY + 43_200)
    }

    fn prvs() -> Prvs {
        Prvs::new(KeyRing::new(3, b"secret").unwrap())
    }

    #[test]
    fn key_ring_rejects_bad_configuration() {
        assert_eq!(
            KeyRing::new(10, b"x").unwrap_err(),
            BatvError::KeyNumberOutOfRange(10)
        );
        assert_eq!(KeyRing::new(1, b"").unwrap_err(), BatvError::EmptySecret(1));
        assert!(matches!(
            KeyRing::new(1, &[b'a'; 65]).unwrap_err(),
            BatvError::SecretTooLong { key: 1, len: 65 }
        ));
        let mut ring = KeyRing::new(1, b"a").unwrap();
        assert_eq!(ring.set_current(2).unwrap_err(), BatvError::UnknownKey(2));
        assert_eq!(ring.remove(1).unwrap_err(), BatvError::RemoveCurrentKey(1));
        assert_eq!(ring.remove(4).unwrap_err(), BatvError::UnknownKey(4));
    }

    #[test]
    fn ring_from_configured_keys() {
        let ring = KeyRing::from_keys(2, [(1, "old"), (2, "new")]).unwrap();
        assert_eq!(ring.key_numbers().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(ring.current(), 2);
        assert_eq!(
            KeyRing::from_keys(3, [(1, "old")]).unwrap_err(),
            BatvError::UnknownKey(3)
        );
        assert_eq!(
            KeyRing::from_keys(1, [(1, "")]).unwrap_err(),
            BatvError::EmptySecret(1)
        );
    }

    #[test]
    fn debug_does_not_leak_secrets() {
        let ring = KeyRing::new(1, b"hunter2").unwrap();
        assert!(!format!("{ring:?}").contains("hunter2"));
    }

    #[test]
    fn parse_is_case_insensitive_and_strict() {
        let t = PrvsTag::parse("PRVS=3788B9AC3E=User", false).unwrap();
        assert_eq!(
            (t.key, t.expiry_day, t.signature, t.local),
            (3, 788, [0xb9, 0xac, 0x3e], "User")
        );
        for bad in [
            "prvs=3788b9ac3=user",
            "prvs=3788b9ac3eq=user",
            "prvs=3788b9ac3e=",
            "prvs=x788b9ac3e=user",
            "prvs=3788b9ac3g=user",
            "prvs-3788b9ac3e=user",
            "user",
            "prvs=",
            "user=prvs=3788b9ac3e",
        ] {
            assert_eq!(PrvsTag::parse(bad, false), None, "{bad}");
        }
        let legacy = PrvsTag::parse("user=PRVS=3788b9ac3e", true).unwrap();
        assert_eq!((legacy.local, legacy.order), ("user", TagOrder::Legacy));
        assert_eq!(PrvsTag::parse("=prvs=3788b9ac3e", true), None);
        // Multi-byte characters must not make slicing panic.
        assert_eq!(PrvsTag::parse("prvsé3788b9ac3e=u", true), None);
        assert_eq!(PrvsTag::parse("ééééééééééééé=prvs=3788b9ac3é", true), None);
    }

    #[test]
    fn window_counts_across_the_day_wrap() {
        let p = prvs();
        let addr = Address::parse("user@example.com").unwrap();
        let tagged = p.sign(&addr, at_day(20_995)).unwrap();
        assert!(tagged.local_part().as_str().starts_with("prvs=3002"));
        for day in 20_995..=21_002 {
            assert!(p.verify(&tagged, at_day(day)).is_valid(), "day {day}");
        }
        assert!(matches!(
            p.verify(&tagged, at_day(21_003)),
            Verification::Expired { key: 3, .. }
        ));
        // A day before signing is outside the window too (expiry 8 days ahead).
        assert!(matches!(
            p.verify(&tagged, at_day(20_994)),
            Verification::Expired { .. }
        ));
    }

    #[test]
    fn rotation_keeps_old_tags_until_the_key_is_removed() {
        let mut p = prvs();
        let addr = Address::parse("user@example.com").unwrap();
        let now = at_day(20_454);
        let old = p.sign(&addr, now).unwrap();
        p.ring_mut().insert(4, b"new secret").unwrap();
        p.ring_mut().set_current(4).unwrap();
        let new = p.sign(&addr, now).unwrap();
        assert!(new.local_part().as_str().starts_with("prvs=4"));
        assert_eq!(
            p.verify(&old, now),
            Verification::Valid {
                original: addr.clone(),
                key: 3
            }
        );
        p.ring_mut().remove(3).unwrap();
        assert_eq!(p.verify(&old, now), Verification::UnknownKey { key: 3 });
        assert!(p.verify(&new, now).is_valid());
    }

    #[test]
    fn never_tags_twice_and_refuses_overlong_local_parts() {
        let p = prvs();
        let now = at_day(20_454);
        let tagged = p
            .sign(&Address::parse("user@example.com").unwrap(), now)
            .unwrap();
        assert_eq!(p.sign(&tagged, now).unwrap_err(), BatvError::AlreadyTagged);
        let long = Address::parse(&format!("{}@example.com", "a".repeat(49))).unwrap();
        assert!(matches!(
            p.sign(&long, now).unwrap_err(),
            BatvError::Address(_)
        ));
    }

    #[test]
    fn hash_source_is_key_day_address() {
        let a = Address::parse("User@Example.COM").unwrap();
        assert_eq!(hash_source(3, 7, &a), "3007User@Example.COM");
    }
}
