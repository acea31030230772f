//! SRS, the Sender Rewriting Scheme, compatible with libsrs2, postsrsd and
//! Perl's Mail::SRS (the "guarded" scheme all three use by default).
//!
//! # Forward
//!
//! A relay forwarding mail from `local@domain` rewrites the envelope sender to
//! `SRS0=HHHH=TT=domain=local@forwarder`:
//! - `TT` is the day number (`unix_seconds / 86400`) modulo 1024, as two
//!   characters of the base32 alphabet `A–Z2–7`, high five bits first;
//! - `HHHH` is the first `hash_length` (default 4) characters of the standard
//!   base64 encoding of `HMAC-SHA1(secret, TT ‖ domain ‖ local)`, where each
//!   of the three strings is ASCII-lower-cased before hashing (libsrs2
//!   `srs_hash_create_v` folds with `tolower`; Mail::SRS uses `lc`). Domain and
//!   local part are written into the address in their original case.
//!
//! Forwarding an address that is already `SRS0` (a second hop) gives
//! `SRS1=HHHH=host==HHHH=TT=domain=local@forwarder`, where `host` is the SRS0
//! address's domain and the hash covers `host ‖ "=HHHH=TT=domain=local"` (the
//! SRS0 local part minus its `SRS0` prefix). Forwarding an `SRS1` address
//! keeps its host and user and recomputes the hash.
//!
//! # Reverse
//!
//! A bounce to an `SRS0` address is checked (timestamp no older than
//! `max_age_days`, default 21; hash compared case-insensitively, in constant
//! time, against every secret) and rewritten to `local@domain`. A bounce to an
//! `SRS1` address is checked (hash only, as libsrs2) and rewritten to the
//! `SRS0` address at the first forwarder.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use portcullis_core::{Address, Domain, LocalPart, ParseOptions};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::error::SrsError;

type HmacSha1 = Hmac<Sha1>;

/// libsrs2's default maximum age of an SRS0 address in days.
pub const DEFAULT_MAX_AGE_DAYS: u16 = 21;
/// libsrs2's default number of hash characters.
pub const DEFAULT_HASH_LENGTH: usize = 4;
/// Base64 of the 20-byte SHA-1 MAC, without padding.
const MAX_HASH_LENGTH: usize = 27;
const SECONDS_PER_DAY: u64 = 86_400;
/// libsrs2 `SRS_TIME_BASECHARS`: the RFC 4648 base32 alphabet. The stamp is a
/// 10-bit number written as two of these characters, not a byte encoding, so
/// a base32 codec does not apply.
const TIME_BASECHARS: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Two 5-bit characters: timestamps wrap every 1024 days.
const TIME_SLOTS: u64 = 1024;
/// The separator between fields after the first (libsrs2 `SRSSEP`).
const SEP: char = '=';

/// Settings for [`Srs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SrsConfig {
    /// Days an SRS0 address stays reversible. Default 21.
    pub max_age_days: u16,
    /// Hash characters written when forwarding. Default 4.
    pub hash_length: usize,
    /// Fewest hash characters accepted when reversing. Default 4.
    pub hash_min: usize,
    /// The character after `SRS0`/`SRS1` when forwarding: `=` (default), `+` or `-`.
    pub separator: char,
    /// Rewrite even senders already in the forwarder's domain. Default off,
    /// as libsrs2 (such senders pass SPF as they are).
    pub always_rewrite: bool,
}

impl Default for SrsConfig {
    fn default() -> Self {
        SrsConfig {
            max_age_days: DEFAULT_MAX_AGE_DAYS,
            hash_length: DEFAULT_HASH_LENGTH,
            hash_min: DEFAULT_HASH_LENGTH,
            separator: SEP,
            always_rewrite: false,
        }
    }
}

impl SrsConfig {
    /// Set the maximum age in days.
    pub fn with_max_age_days(mut self, days: u16) -> Self {
        self.max_age_days = days;
        self
    }

    /// Set the written and the minimum accepted hash length (1–27).
    pub fn with_hash_length(mut self, length: usize, min: usize) -> Result<Self, SrsError> {
        for n in [length, min] {
            if n == 0 || n > MAX_HASH_LENGTH {
                return Err(SrsError::HashLengthOutOfRange(n));
            }
        }
        self.hash_length = length;
        self.hash_min = min;
        Ok(self)
    }

    /// Set the separator written after `SRS0`/`SRS1`.
    pub fn with_separator(mut self, separator: char) -> Result<Self, SrsError> {
        if !is_separator(separator) {
            return Err(SrsError::BadSeparator(separator));
        }
        self.separator = separator;
        Ok(self)
    }

    /// Rewrite senders in the forwarder's own domain too.
    pub fn with_always_rewrite(mut self, always: bool) -> Self {
        self.always_rewrite = always;
        self
    }
}

fn is_separator(c: char) -> bool {
    matches!(c, '=' | '+' | '-')
}

/// An SRS rewriter: the signing secret, older secrets still accepted, settings.
#[derive(Clone)]
pub struct Srs {
    /// First signs; all verify (libsrs2 `srs_add_secret` order).
    secrets: Vec<HmacSha1>,
    config: SrsConfig,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srs")
            .field("secrets", &self.secrets.len())
            .field("config", &self.config)
            .finish()
    }
}

impl Srs {
    /// A rewriter signing with `secret` (from configuration; never generated here).
    pub fn new(secret: &[u8]) -> Result<Self, SrsError> {
        Ok(Srs {
            secrets: vec![keyed(secret)?],
            config: SrsConfig::default(),
        })
    }

    /// Also accept addresses made with an older `secret` (rotation).
    pub fn with_old_secret(mut self, secret: &[u8]) -> Result<Self, SrsError> {
        self.secrets.push(keyed(secret)?);
        Ok(self)
    }

    /// Replace the settings.
    pub fn with_config(mut self, config: SrsConfig) -> Self {
        self.config = config;
        self
    }

    /// The settings.
    pub fn config(&self) -> &SrsConfig {
        &self.config
    }

    /// Rewrite the envelope sender `sender` for mail forwarded by `forwarder`.
    ///
    /// Returns `sender` unchanged when it is already in `forwarder`'s domain
    /// (unless `always_rewrite`), `SRS1` when `sender` is an SRS address, else
    /// `SRS0`. Fails with [`SrsError::Address`] when the new local part exceeds
    /// the 64 octets [`Address`] allows; [`forward_local`](Self::forward_local)
    /// has no such limit.
    pub fn forward(
        &self,
        sender: &Address,
        forwarder: &Domain,
        now: SystemTime,
    ) -> Result<Address, SrsError> {
        if !self.config.always_rewrite && sender.domain() == forwarder {
            return Ok(sender.clone());
        }
        let local =
            self.forward_local(sender.local_part().as_str(), sender.domain().as_str(), now)?;
        Ok(Address::new(LocalPart::new(&local)?, forwarder.clone()))
    }

    /// The SRS local part for a sender `local@domain` (the caller appends
    /// `@forwarder`). Works on strings so SRS addresses longer than RFC 5321's
    /// 64-octet local part, which many MTAs accept, can still be made.
    pub fn forward_local(
        &self,
        local: &str,
        domain: &str,
        now: SystemTime,
    ) -> Result<String, SrsError> {
        let sep = self.config.separator;
        if let Some(rest) = strip_tag(local, "SRS1") {
            // Re-forwarding SRS1: keep the first forwarder and the SRS0 user,
            // new hash (libsrs2 srs_compile_guarded).
            let (_, tail) = rest.split_once(SEP).ok_or(SrsError::Malformed)?;
            let (srs_host, srs_user) = tail.split_once(SEP).ok_or(SrsError::Malformed)?;
            if srs_host.is_empty() || srs_user.is_empty() {
                return Err(SrsError::Malformed);
            }
            let hash = self.hash(&self.secrets[0], &[srs_host, srs_user]);
            return Ok(format!("SRS1{sep}{hash}{SEP}{srs_host}{SEP}{srs_user}"));
        }
        if strip_tag(local, "SRS0").is_some() {
            // The SRS0 user keeps its separator: "=HHHH=TT=domain=local".
            let srs_user = local.get(4..).ok_or(SrsError::Malformed)?;
            let hash = self.hash(&self.secrets[0], &[domain, srs_user]);
            return Ok(format!("SRS1{sep}{hash}{SEP}{domain}{SEP}{srs_user}"));
        }
        let stamp = timestamp(now);
        let stamp = std::str::from_utf8(&stamp).map_err(|_| SrsError::BadTimestamp)?;
        let hash = self.hash(&self.secrets[0], &[stamp, domain, local]);
        Ok(format!(
            "SRS0{sep}{hash}{SEP}{stamp}{SEP}{domain}{SEP}{local}"
        ))
    }

    /// Rewrite a bounce recipient back: `SRS0` to the original sender, `SRS1`
    /// to the first forwarder's `SRS0` address.
    pub fn reverse(&self, recipient: &Address, now: SystemTime) -> Result<Address, SrsError> {
        let (local, host) = self.reverse_local(recipient.local_part().as_str(), now)?;
        let domain = Domain::parse_with(&host, ParseOptions::default().with_utf8(true))?;
        Ok(Address::new(LocalPart::new(&local)?, domain))
    }

    /// [`reverse`](Self::reverse) on the local part alone: the target's
    /// `(local part, domain)`, with no length limit.
    pub fn reverse_local(
        &self,
        local: &str,
        now: SystemTime,
    ) -> Result<(String, String), SrsError> {
        if let Some(rest) = strip_tag(local, "SRS0") {
            let (hash, rest) = rest.split_once(SEP).ok_or(SrsError::Malformed)?;
            let (stamp, rest) = rest.split_once(SEP).ok_or(SrsError::Malformed)?;
            let (host, user) = rest.split_once(SEP).ok_or(SrsError::Malformed)?;
            if hash.is_empty() || stamp.is_empty() || host.is_empty() || user.is_empty() {
                return Err(SrsError::Malformed);
            }
            // libsrs2 checks the timestamp before the hash.
            self.check_timestamp(stamp, now)?;
            self.check_hash(hash, &[stamp, host, user])?;
            return Ok((user.to_owned(), host.to_owned()));
        }
        if let Some(rest) = strip_tag(local, "SRS1") {
            let (hash, rest) = rest.split_once(SEP).ok_or(SrsError::Malformed)?;
            let (host, user) = rest.split_once(SEP).ok_or(SrsError::Malformed)?;
            if hash.is_empty() || host.is_empty() || user.is_empty() {
                return Err(SrsError::Malformed);
            }
            self.check_hash(hash, &[host, user])?;
            return Ok((format!("SRS0{user}"), host.to_owned()));
        }
        Err(SrsError::NotSrs)
    }

    fn hash(&self, mac: &HmacSha1, parts: &[&str]) -> String {
        let full = full_hash(mac, parts);
        // Base64 output is ASCII.
        // The config fields are public: clamp rather than trust them.
        let n = self.config.hash_length.clamp(1, MAX_HASH_LENGTH);
        String::from_utf8_lossy(&full[..n]).into_owned()
    }

    fn check_hash(&self, given: &str, parts: &[&str]) -> Result<(), SrsError> {
        let given = given.as_bytes();
        if given.len() < self.config.hash_min {
            return Err(SrsError::HashTooShort);
        }
        if given.len() > self.config.hash_length.clamp(1, MAX_HASH_LENGTH) {
            return Err(SrsError::BadHash);
        }
        let mut given_lower = [0u8; MAX_HASH_LENGTH];
        let given_lower = &mut given_lower[..given.len()];
        given_lower.copy_from_slice(given);
        given_lower.make_ascii_lowercase();
        let mut matched = subtle::Choice::from(0);
        for mac in &self.secrets {
            let mut expected = full_hash(mac, parts);
            let expected = &mut expected[..given.len()];
            // Case-insensitive: some MTAs smash the case of local parts (libsrs2 too).
            expected.make_ascii_lowercase();
            matched |= expected.ct_eq(given_lower);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SrsError::BadHash)
        }
    }

    fn check_timestamp(&self, stamp: &str, now: SystemTime) -> Result<(), SrsError> {
        let b = stamp.as_bytes();
        if b.len() != 2 {
            return Err(SrsError::BadTimestamp);
        }
        let mut then = 0u64;
        for c in b {
            let upper = c.to_ascii_uppercase();
            let value = TIME_BASECHARS
                .iter()
                .position(|x| *x == upper)
                .ok_or(SrsError::BadTimestamp)?;
            then = (then << 5) | value as u64;
        }
        let today = unix_day(now) % TIME_SLOTS;
        // Age modulo the 1024-day wrap; a future stamp counts as very old (libsrs2).
        let age = (today + TIME_SLOTS - then) % TIME_SLOTS;
        if age <= u64::from(self.config.max_age_days) {
            Ok(())
        } else {
            Err(SrsError::Expired)
        }
    }
}

/// Base64 (standard alphabet, unpadded: 27 characters) of
/// HMAC-SHA1 over the ASCII-lower-cased parts.
fn full_hash(mac: &HmacSha1, parts: &[&str]) -> [u8; MAX_HASH_LENGTH] {
    let mut mac = mac.clone();
    for part in parts {
        // libsrs2 lower-cases each argument (ASCII tolower) before hashing.
        for chunk in part.as_bytes().chunks(64) {
            let mut lower = [0u8; 64];
            let lower = &mut lower[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            mac.update(lower);
        }
    }
    let mut out = [0u8; MAX_HASH_LENGTH];
    // 20 bytes always encode to exactly 27 characters without padding, so
    // this cannot fail; if it did, the NULs left in `out` match no address
    // character and LocalPart refuses them.
    let _ = STANDARD_NO_PAD.encode_slice(mac.finalize().into_bytes(), &mut out);
    out
}

fn keyed(secret: &[u8]) -> Result<HmacSha1, SrsError> {
    if secret.is_empty() {
        return Err(SrsError::EmptySecret);
    }
    HmacSha1::new_from_slice(secret).map_err(|_| SrsError::EmptySecret)
}

/// `local` without `tag` and the following separator, if it starts with them
/// (case-insensitively, as libsrs2's `strncasecmp`).
fn strip_tag<'a>(local: &'a str, tag: &str) -> Option<&'a str> {
    let head = local.get(..tag.len())?;
    let mut rest = local[tag.len()..].chars();
    let sep = rest.next()?;
    (head.eq_ignore_ascii_case(tag) && is_separator(sep)).then_some(rest.as_str())
}

/// The two-character day stamp (libsrs2 `srs_timestamp_create`).
fn timestamp(now: SystemTime) -> [u8; 2] {
    let day = unix_day(now);
    [
        TIME_BASECHARS[((day >> 5) & 31) as usize],
        TIME_BASECHARS[(day & 31) as usize],
    ]
}

fn unix_day(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / SECONDS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at_day(day: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(day * SECONDS_PER_DAY + 43_200)
    }

    #[test]
    fn out_of_range_public_config_fields_do_not_panic() {
        let config = SrsConfig {
            hash_length: 500,
            ..SrsConfig::default()
        };
        let srs = Srs::new(b"s").unwrap().with_config(config);
        let local = srs.forward_local("u", "example.org", at_day(5)).unwrap();
        assert_eq!(local.split('=').nth(1).map(str::len), Some(27));
        assert!(srs.reverse_local(&local, at_day(5)).is_ok());
        let long = format!("SRS0={}=AF=example.org=u", "a".repeat(40));
        assert_eq!(srs.reverse_local(&long, at_day(5)), Err(SrsError::BadHash));
    }

    #[test]
    fn timestamp_wraps_every_1024_days() {
        assert_eq!(&timestamp(at_day(0)), b"AA");
        assert_eq!(&timestamp(at_day(1023)), b"77");
        assert_eq!(&timestamp(at_day(1024)), b"AA");
        assert_eq!(&timestamp(at_day(33)), b"BB");
    }

    #[test]
    fn reverse_age_counts_across_the_wrap() {
        let srs = Srs::new(b"s").unwrap();
        let fwd = Domain::parse("fwd.example").unwrap();
        let a = Address::parse("u@example.org").unwrap();
        let r = srs.forward(&a, &fwd, at_day(20_479)).unwrap(); // slot 1023
        assert_eq!(srs.reverse(&r, at_day(20_479 + 21)), Ok(a.clone()));
        assert_eq!(srs.reverse(&r, at_day(20_479 + 22)), Err(SrsError::Expired));
        assert_eq!(srs.reverse(&r, at_day(20_478)), Err(SrsError::Expired));
    }

    #[test]
    fn sender_in_forwarder_domain_is_left_alone() {
        let srs = Srs::new(b"s").unwrap();
        let a = Address::parse("u@Fwd.Example").unwrap();
        let fwd = Domain::parse("fwd.example").unwrap();
        assert_eq!(srs.forward(&a, &fwd, at_day(1)).unwrap(), a);
        let always = srs.with_config(SrsConfig::default().with_always_rewrite(true));
        assert!(
            always
                .forward(&a, &fwd, at_day(1))
                .unwrap()
                .local_part()
                .as_str()
                .starts_with("SRS0=")
        );
    }

    #[test]
    fn malformed_and_foreign_addresses_are_refused() {
        let srs = Srs::new(b"s").unwrap();
        for (local, err) in [
            ("user", SrsError::NotSrs),
            ("SRS0", SrsError::NotSrs),
            ("SRS2=abcd=x=y", SrsError::NotSrs),
            ("SRS0=abcd=AA=host", SrsError::Malformed),
            ("SRS0=abcd==host=u", SrsError::Malformed),
            ("SRS0=abcd=A=host=u", SrsError::BadTimestamp),
            ("SRS0=abcd=A1=host=u", SrsError::BadTimestamp),
            ("SRS1=abcd=host", SrsError::Malformed),
            ("SRS1=ab=host==x=y", SrsError::HashTooShort),
        ] {
            let a = Address::new(
                LocalPart::new(local).unwrap(),
                Domain::parse("fwd.example").unwrap(),
            );
            assert_eq!(srs.reverse(&a, at_day(20_000)), Err(err), "{local}");
        }
        assert_eq!(
            SrsConfig::default().with_separator('x'),
            Err(SrsError::BadSeparator('x'))
        );
        assert!(Srs::new(b"").is_err());
    }
}
