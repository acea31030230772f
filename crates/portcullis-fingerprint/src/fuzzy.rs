//! Fuzzy fingerprints: word shingles summarised by MinHash, compared by
//! estimated Jaccard similarity and found through LSH bands.
//!
//! # Why MinHash (and not SimHash)
//!
//! Bulk copies differ by a few words (a name, a date, a token). The fraction
//! of shared word shingles (Jaccard similarity) measures exactly that, and
//! MinHash estimates it without bias: the chance two signatures agree in a slot
//! *is* the Jaccard similarity. That lets the lookup be *banded* (LSH): split
//! the signature into [`BANDS`] bands of [`ROWS`] slots; two messages become
//! candidates when any band is equal, with probability `1 - (1 - s^ROWS)^BANDS`
//! for similarity `s` — about 0.99 at `s = 0.7`, 0.64 at `0.5` and 0.12 at
//! `0.3` for 16 × 4. A band is just a key, so the lookup is a handful of exact
//! key reads in a hash map or in Redis, never a scan, and the same band keys
//! serve as [`Checksum`]s for bulk counting in any
//! [`ChecksumStore`](crate::ChecksumStore).
//!
//! SimHash is smaller (64 bits) but its similarity is a Hamming distance over
//! weighted features; finding near neighbours needs permuted tables per
//! allowed bit distance, and its distance does not map to "fraction of the
//! text changed" as directly. Its usual weakness with short texts (a few
//! changed words flip many bits) also hurts on short spam.
//!
//! The signature uses one-permutation hashing with rotation densification
//! (Shrivastava & Li, 2014): each shingle is hashed once and lands in one of
//! [`SLOTS`] bins keeping the minimum, so the cost is one hash per word rather
//! than [`SLOTS`] per word. Hashes are fixed functions (no random seed) so
//! signatures are stable across processes, machines and releases of this
//! crate's major version — they are stored in shared Redis.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use crate::checksum::{Checksum, hex_value};

/// Slots in a signature.
pub const SLOTS: usize = 64;
/// LSH bands.
pub const BANDS: usize = 16;
/// Slots per band.
pub const ROWS: usize = SLOTS / BANDS;
/// Words per shingle.
pub const SHINGLE_WORDS: usize = 3;

const EMPTY: u32 = u32::MAX;

/// A MinHash signature of a message's normalised text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FuzzyFingerprint {
    slots: [u32; SLOTS],
}

impl std::fmt::Debug for FuzzyFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FuzzyFingerprint({})", self.to_hex())
    }
}

/// 64-bit finaliser of splitmix64: a fixed, well-mixing permutation.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes that make up words in normalised text: ASCII letters and digits,
/// `#` (a masked token) and every byte of a non-ASCII character.
const WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'#' || b >= 0x80;
        c += 1;
    }
    t
};

/// FNV-1a of a word is folded in byte by byte as the word is scanned, then
/// mixed: cheap and fixed.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl FuzzyFingerprint {
    /// The signature of `text`, which should already be normalised
    /// ([`Normalization`](crate::Normalization)); words are runs of letters,
    /// digits, `#` and non-ASCII characters. `None` when the text has no words.
    pub fn of_text(text: &str) -> Option<Self> {
        let mut builder = FuzzyBuilder::default();
        builder.add_text(text);
        builder.finish()
    }

    /// Estimated Jaccard similarity of the two shingle sets, in `0.0..=1.0`.
    pub fn similarity(&self, other: &FuzzyFingerprint) -> f64 {
        let same = self
            .slots
            .iter()
            .zip(other.slots.iter())
            .filter(|(a, b)| a == b)
            .count();
        same as f64 / SLOTS as f64
    }

    /// The band keys, one per band, as [`Checksum`]s (domain-separated from
    /// content checksums). Similar messages share at least one with high
    /// probability; counting recipients per band key counts near copies.
    pub fn band_checksums(&self) -> [Checksum; BANDS] {
        std::array::from_fn(|band| {
            let mut buf = [0u8; 1 + 4 * ROWS];
            buf[0] = band as u8;
            for (r, v) in self.slots[band * ROWS..(band + 1) * ROWS]
                .iter()
                .enumerate()
            {
                buf[1 + 4 * r..5 + 4 * r].copy_from_slice(&v.to_le_bytes());
            }
            Checksum::derived("portcullis-fingerprint 2026 lsh band v1", &buf)
        })
    }

    fn band_keys(&self) -> [u64; BANDS] {
        std::array::from_fn(|band| {
            let mut h = mix(band as u64 + 1);
            for &v in &self.slots[band * ROWS..(band + 1) * ROWS] {
                h = mix(h ^ u64::from(v));
            }
            h
        })
    }

    /// Text form: 512 hex digits (the slots, big-endian).
    pub fn to_hex(&self) -> String {
        self.slots.iter().map(|s| format!("{s:08x}")).collect()
    }

    /// Parse the [`to_hex`](Self::to_hex) form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != SLOTS * 8 {
            return None;
        }
        let mut slots = [0u32; SLOTS];
        for (slot, chunk) in slots.iter_mut().zip(b.chunks_exact(8)) {
            let mut v = 0u32;
            for &c in chunk {
                v = v << 4 | u32::from(hex_value(c)?);
            }
            *slot = v;
        }
        Some(FuzzyFingerprint { slots })
    }
}

/// Builds a signature from text fed in pieces (one per text part).
#[derive(Debug, Clone)]
pub(crate) struct FuzzyBuilder {
    slots: [u32; SLOTS],
    /// The hashes of the two words before the next one (oldest first).
    older: u64,
    old: u64,
    words: usize,
}

impl Default for FuzzyBuilder {
    fn default() -> Self {
        FuzzyBuilder {
            slots: [EMPTY; SLOTS],
            older: 0,
            old: 0,
            words: 0,
        }
    }
}

impl FuzzyBuilder {
    /// Add the words of `text` (normalised): each word is hashed once as it
    /// is scanned, and each shingle's hash is a rotate-and-xor of its three
    /// word hashes (kept in two fields, no window shifting).
    pub(crate) fn add_text(&mut self, text: &str) {
        self.add_bytes(text.as_bytes());
    }

    /// [`add_text`](Self::add_text) over UTF-8 bytes.
    pub(crate) fn add_bytes(&mut self, b: &[u8]) {
        let mut i = 0;
        loop {
            while b.get(i).is_some_and(|&c| !WORD_BYTE[usize::from(c)]) {
                i += 1;
            }
            if i >= b.len() {
                break;
            }
            let mut h = FNV_OFFSET;
            while let Some(&c) = b.get(i) {
                if !WORD_BYTE[usize::from(c)] {
                    break;
                }
                h = (h ^ u64::from(c)).wrapping_mul(FNV_PRIME);
                i += 1;
            }
            self.add_word(mix(h));
        }
    }

    #[inline]
    fn add_word(&mut self, hash: u64) {
        let (older, old) = (self.older, self.old);
        self.older = old;
        self.old = hash;
        self.words += 1;
        if self.words >= SHINGLE_WORDS {
            self.add_shingle(older, old, hash);
        }
    }

    #[inline]
    fn add_shingle(&mut self, a: u64, b: u64, c: u64) {
        let h = mix(a ^ b.rotate_left(21) ^ c.rotate_left(42));
        // Top 6 bits pick the bin (SLOTS = 64), the low 32 bits are the value.
        let bin = (h >> 58) as usize % SLOTS;
        let value = (h as u32).min(EMPTY - 1);
        if value < self.slots[bin] {
            self.slots[bin] = value;
        }
    }

    pub(crate) fn finish(mut self) -> Option<FuzzyFingerprint> {
        if self.words == 0 {
            return None;
        }
        if self.words < SHINGLE_WORDS {
            // Too short for one full shingle: the words seen are the shingle
            // (missing words hash as 0).
            let (older, old) = (self.older, self.old);
            if self.words == 1 {
                self.add_shingle(0, 0, old);
            } else {
                self.add_shingle(0, older, old);
            }
        }
        // Rotation densification: an empty bin borrows the next non-empty
        // bin's value, offset by the distance so borrowed values differ.
        let filled = self.slots;
        for bin in 0..SLOTS {
            if filled[bin] != EMPTY {
                continue;
            }
            for d in 1..SLOTS {
                let v = filled[(bin + d) % SLOTS];
                if v != EMPTY {
                    self.slots[bin] = (mix(u64::from(v) ^ (d as u64) << 32) as u32).min(EMPTY - 1);
                    break;
                }
            }
        }
        Some(FuzzyFingerprint { slots: self.slots })
    }
}

/// An in-memory LSH index of fuzzy fingerprints with values (e.g. a list
/// entry's name). Lookups read [`BANDS`] hash buckets and compare only the
/// candidates found there, never the whole index.
///
/// Thread-safe (`Send + Sync`): reads share a lock, inserts take it briefly.
#[derive(Debug, Default)]
pub struct FuzzyIndex<V> {
    inner: RwLock<IndexInner<V>>,
}

#[derive(Debug)]
struct IndexInner<V> {
    entries: Vec<(FuzzyFingerprint, V)>,
    bands: HashMap<u64, Vec<usize>>,
}

impl<V> Default for IndexInner<V> {
    fn default() -> Self {
        IndexInner {
            entries: Vec::new(),
            bands: HashMap::new(),
        }
    }
}

impl<V: Clone> FuzzyIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        FuzzyIndex {
            inner: RwLock::new(IndexInner::default()),
        }
    }

    /// Add a fingerprint with its value.
    pub fn insert(&self, fingerprint: FuzzyFingerprint, value: V) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let id = inner.entries.len();
        for key in fingerprint.band_keys() {
            inner.bands.entry(key).or_default().push(id);
        }
        inner.entries.push((fingerprint, value));
    }

    /// Number of fingerprints stored.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stored fingerprints whose estimated similarity to `query` is at least
    /// `threshold`, best first, with their similarity. A stored fingerprint
    /// that shares no band with `query` is not found (see the module docs for
    /// the odds); one that does is checked against the threshold exactly.
    pub fn find_similar(&self, query: &FuzzyFingerprint, threshold: f64) -> Vec<(V, f64)> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        for key in query.band_keys() {
            for &id in inner.bands.get(&key).map_or(&[][..], Vec::as_slice) {
                if !seen.insert(id) {
                    continue;
                }
                if let Some((fp, value)) = inner.entries.get(id) {
                    let s = fp.similarity(query);
                    if s >= threshold {
                        found.push((value.clone(), s));
                    }
                }
            }
        }
        found.sort_by(|a, b| b.1.total_cmp(&a.1));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize, seed: &str) -> String {
        (0..n).map(|i| format!("{seed}{i} ")).collect()
    }

    #[test]
    fn identical_text_identical_signature_and_unrelated_far() {
        let a = FuzzyFingerprint::of_text(&words(200, "w")).unwrap();
        let b = FuzzyFingerprint::of_text(&words(200, "w")).unwrap();
        let c = FuzzyFingerprint::of_text(&words(200, "z")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.similarity(&b), 1.0);
        assert!(a.similarity(&c) < 0.2, "{}", a.similarity(&c));
        assert_eq!(FuzzyFingerprint::of_text("  ,, "), None);
        assert!(FuzzyFingerprint::of_text("one").is_some());
    }

    #[test]
    fn similarity_tracks_jaccard() {
        // 200 words, 10 changed: ~30 of ~200 shingles differ, Jaccard ~ 0.74.
        let base = words(200, "w");
        let mut changed: Vec<String> = base.split(' ').map(str::to_owned).collect();
        for i in (0..200).step_by(20) {
            changed[i] = format!("x{i}");
        }
        let a = FuzzyFingerprint::of_text(&base).unwrap();
        let b = FuzzyFingerprint::of_text(&changed.join(" ")).unwrap();
        let s = a.similarity(&b);
        assert!((0.55..0.95).contains(&s), "similarity {s}");
    }

    /// The signature as first written (per-word FNV-1a over a separately
    /// found word, a shifted three-word window): the optimised builder must
    /// give the same slots, so stored signatures stay valid.
    fn reference_signature(text: &str) -> Option<[u32; SLOTS]> {
        let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'#' || c >= 0x80;
        let mut slots = [EMPTY; SLOTS];
        let mut window = [0u64; SHINGLE_WORDS];
        let mut words = 0;
        let shingle = |window: &[u64; SHINGLE_WORDS], slots: &mut [u32; SLOTS]| {
            let mut h = 0u64;
            for (k, w) in window.iter().enumerate() {
                h ^= w.rotate_left(21 * k as u32);
            }
            let h = mix(h);
            let bin = (h >> 58) as usize % SLOTS;
            slots[bin] = slots[bin].min((h as u32).min(EMPTY - 1));
        };
        for word in text.as_bytes().split(|&c| !is_word(c)) {
            if word.is_empty() {
                continue;
            }
            let mut h = FNV_OFFSET;
            for &c in word {
                h = (h ^ u64::from(c)).wrapping_mul(FNV_PRIME);
            }
            window.rotate_left(1);
            window[SHINGLE_WORDS - 1] = mix(h);
            words += 1;
            if words >= SHINGLE_WORDS {
                shingle(&window, &mut slots);
            }
        }
        if words == 0 {
            return None;
        }
        if words < SHINGLE_WORDS {
            shingle(&window, &mut slots);
        }
        let filled = slots;
        for bin in 0..SLOTS {
            if filled[bin] != EMPTY {
                continue;
            }
            for d in 1..SLOTS {
                let v = filled[(bin + d) % SLOTS];
                if v != EMPTY {
                    slots[bin] = (mix(u64::from(v) ^ (d as u64) << 32) as u32).min(EMPTY - 1);
                    break;
                }
            }
        }
        Some(slots)
    }

    #[test]
    fn builder_matches_reference_signature() {
        let texts = [
            String::new(),
            "one".into(),
            "two words".into(),
            "  three words here, and # more ## text; é日本 x".into(),
            words(300, "w"),
            "a".repeat(100) + " " + &"b1".repeat(50),
        ];
        // And pseudo-random texts over word bytes, separators and UTF-8.
        let alphabet = ["a", "Z", "0", "#", " ", ",", "\n", "é", "日", "--"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let random = (0..300).map(|n| {
            (0..n % 97)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    alphabet[(seed >> 59) as usize % alphabet.len()]
                })
                .collect::<String>()
        });
        for t in texts.into_iter().chain(random) {
            let t = &t;
            let fast = FuzzyFingerprint::of_text(t).map(|f| f.slots);
            assert_eq!(fast, reference_signature(t), "{t:?}");
        }
        // Fed in pieces (one per part), words do not join across pieces.
        let mut b = FuzzyBuilder::default();
        b.add_text("alpha beta");
        b.add_bytes(b"gamma delta");
        assert_eq!(
            b.finish().map(|f| f.slots),
            reference_signature("alpha beta gamma delta")
        );
    }

    #[test]
    fn hex_round_trip() {
        let a = FuzzyFingerprint::of_text("hello big bulk world").unwrap();
        assert_eq!(FuzzyFingerprint::from_hex(&a.to_hex()), Some(a.clone()));
        assert_eq!(FuzzyFingerprint::from_hex("00"), None);
        assert_eq!(FuzzyFingerprint::from_hex(&"g".repeat(512)), None);
    }

    #[test]
    fn index_finds_near_not_far() {
        let index = FuzzyIndex::new();
        let base = words(100, "w");
        index.insert(FuzzyFingerprint::of_text(&base).unwrap(), "spam-run");
        index.insert(
            FuzzyFingerprint::of_text(&words(100, "q")).unwrap(),
            "other",
        );
        let near = base.replacen("w50 ", "john ", 1);
        let hits = index.find_similar(&FuzzyFingerprint::of_text(&near).unwrap(), 0.7);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, "spam-run");
        let far = FuzzyFingerprint::of_text(&words(100, "k")).unwrap();
        assert!(index.find_similar(&far, 0.5).is_empty());
        assert_eq!(index.len(), 2);
    }
}
