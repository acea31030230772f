//! Operator lists read from text: known-bad checksums and the
//! solicited-bulk allowlist. Both reload without a restart: the relay reads
//! the file when it changes and hands the text (or a reader) to `reload_*`;
//! a list with an error is refused and the one in use is kept.
//!
//! Syntax of both: one entry per line; `#` starts a comment that runs to the
//! end of the line; blank lines are ignored.

use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, RwLock};

use portcullis_core::{Address, Domain, ReversePath};

use crate::checksum::Checksum;
use crate::error::FingerprintError;
use crate::fuzzy::{FuzzyFingerprint, FuzzyIndex};
use crate::message::Fingerprints;

fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line
            .split_once('#')
            .map_or(line, |(before, _)| before)
            .trim();
        (!line.is_empty()).then_some((i + 1, line))
    })
}

fn read_all(mut reader: impl Read) -> Result<String, FingerprintError> {
    let mut text = String::new();
    reader.read_to_string(&mut text)?;
    Ok(text)
}

/// A parsed known-bad list.
///
/// Entries:
/// - 64 hex digits: an exact [`Checksum`]; it matches when it equals any of a
///   message's exact checksums (body, raw body, a part, an attachment — so
///   `b3sum` of a malicious attachment works — or a header checksum).
/// - `fuzzy:` and 512 hex digits: a [`FuzzyFingerprint`] (as printed by
///   [`FuzzyFingerprint::to_hex`]); it matches messages at least the configured
///   similarity away, found through the LSH index, not by scanning.
#[derive(Debug, Default)]
pub struct KnownBadList {
    exact: HashSet<Checksum>,
    fuzzy: FuzzyIndex<usize>,
}

/// Why a message matched the known-bad list.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum KnownBadHit {
    /// One of the message's exact checksums is listed.
    Exact(Checksum),
    /// The fuzzy fingerprint is near a listed one.
    Fuzzy {
        /// Line of the matching list entry.
        line: usize,
        /// Estimated similarity.
        similarity: f64,
    },
}

impl KnownBadList {
    /// Parse a list's text. The first bad line refuses the whole list.
    pub fn parse(text: &str) -> Result<Self, FingerprintError> {
        let list = KnownBadList::default();
        let mut exact = HashSet::new();
        for (line, entry) in entries(text) {
            if let Some(hex) = entry.strip_prefix("fuzzy:") {
                let fp = FuzzyFingerprint::from_hex(hex.trim()).ok_or_else(|| {
                    FingerprintError::List {
                        line,
                        reason: "a fuzzy entry is `fuzzy:` and 512 hex digits".into(),
                    }
                })?;
                list.fuzzy.insert(fp, line);
            } else {
                let c = entry
                    .parse::<Checksum>()
                    .map_err(|e| FingerprintError::List {
                        line,
                        reason: e.to_string(),
                    })?;
                exact.insert(c);
            }
        }
        Ok(KnownBadList { exact, ..list })
    }

    /// Parse from a reader (e.g. an open file).
    pub fn from_reader(reader: impl Read) -> Result<Self, FingerprintError> {
        Self::parse(&read_all(reader)?)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.exact.len() + self.fuzzy.len()
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first reason `fp` is listed, if any. Fuzzy entries match at
    /// `fuzzy_threshold` similarity or more.
    pub fn check(&self, fp: &Fingerprints, fuzzy_threshold: f64) -> Option<KnownBadHit> {
        if let Some(c) = fp.exact().find(|c| self.exact.contains(c)) {
            return Some(KnownBadHit::Exact(c));
        }
        let query = fp.fuzzy.as_ref()?;
        let (line, similarity) = self
            .fuzzy
            .find_similar(query, fuzzy_threshold)
            .into_iter()
            .next()?;
        Some(KnownBadHit::Fuzzy { line, similarity })
    }
}

/// A [`KnownBadList`] that can be replaced while in use (thread-safe; readers
/// never wait for a parse).
#[derive(Debug, Default)]
pub struct KnownBad {
    current: RwLock<Arc<KnownBadList>>,
}

impl KnownBad {
    /// Start with `list`.
    pub fn new(list: KnownBadList) -> Self {
        KnownBad {
            current: RwLock::new(Arc::new(list)),
        }
    }

    /// Replace the list with one parsed from `text`; on error the current
    /// list stays. Returns the number of entries now in use.
    pub fn reload_from_str(&self, text: &str) -> Result<usize, FingerprintError> {
        let list = KnownBadList::parse(text)?;
        let n = list.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
        Ok(n)
    }

    /// [`reload_from_str`](Self::reload_from_str) from a reader.
    pub fn reload_from_reader(&self, reader: impl Read) -> Result<usize, FingerprintError> {
        self.reload_from_str(&read_all(reader)?)
    }

    /// The list in use.
    pub fn current(&self) -> Arc<KnownBadList> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Senders and mailing lists whose bulk mail the operator asked for: their
/// messages are counted but never refused or tagged as bulk (known-bad
/// entries still apply).
///
/// Entries:
/// - `sender:user@example.org` — this envelope sender (RFC 5321 `MAIL FROM`);
/// - `domain:example.org` — envelope senders at this domain or its subdomains;
/// - `list:announce.example.org` — messages with this `List-Id` (RFC 2919).
#[derive(Debug, Default, Clone)]
pub struct SolicitedBulk {
    senders: HashSet<String>,
    domains: Vec<Domain>,
    lists: HashSet<String>,
}

impl SolicitedBulk {
    /// Parse an allowlist's text. The first bad line refuses it.
    pub fn parse(text: &str) -> Result<Self, FingerprintError> {
        let mut out = SolicitedBulk::default();
        for (line, entry) in entries(text) {
            let bad = |reason: String| FingerprintError::List { line, reason };
            let (kind, value) = entry
                .split_once(':')
                .ok_or_else(|| bad("expected `sender:`, `domain:` or `list:`".into()))?;
            let value = value.trim();
            match kind.trim() {
                "sender" => {
                    let a = Address::parse(value).map_err(|e| bad(e.to_string()))?;
                    out.senders.insert(a.key().to_lowercase());
                }
                "domain" => out
                    .domains
                    .push(Domain::parse(value).map_err(|e| bad(e.to_string()))?),
                "list" if !value.is_empty() => {
                    let id = value.trim_start_matches('<').trim_end_matches('>');
                    out.lists.insert(id.to_ascii_lowercase());
                }
                other => return Err(bad(format!("unknown entry kind `{other}`"))),
            }
        }
        Ok(out)
    }

    /// Whether a message from `sender` with `list_id` is solicited bulk.
    pub fn allows(&self, sender: &ReversePath, list_id: Option<&str>) -> bool {
        if list_id.is_some_and(|id| self.lists.contains(id)) {
            return true;
        }
        let Some(addr) = sender.address() else {
            return false;
        };
        self.senders.contains(&addr.key().to_lowercase())
            || self.domains.iter().any(|d| addr.domain().is_within(d))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.senders.len() + self.domains.len() + self.lists.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A [`SolicitedBulk`] allowlist that can be replaced while in use.
#[derive(Debug, Default)]
pub struct SolicitedBulkList {
    current: RwLock<Arc<SolicitedBulk>>,
}

impl SolicitedBulkList {
    /// Start with `list`.
    pub fn new(list: SolicitedBulk) -> Self {
        SolicitedBulkList {
            current: RwLock::new(Arc::new(list)),
        }
    }

    /// Replace the allowlist with one parsed from `text`; on error the current
    /// one stays. Returns the number of entries now in use.
    pub fn reload_from_str(&self, text: &str) -> Result<usize, FingerprintError> {
        let list = SolicitedBulk::parse(text)?;
        let n = list.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
        Ok(n)
    }

    /// [`reload_from_str`](Self::reload_from_str) from a reader.
    pub fn reload_from_reader(&self, reader: impl Read) -> Result<usize, FingerprintError> {
        self.reload_from_str(&read_all(reader)?)
    }

    /// The allowlist in use.
    pub fn current(&self) -> Arc<SolicitedBulk> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
