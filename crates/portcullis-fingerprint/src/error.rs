//! The crate's error type.

/// What can go wrong outside the fingerprinting itself (which never fails).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// A [`ChecksumStore`](crate::ChecksumStore) backend failed.
    #[error("checksum store: {0}")]
    Store(String),
    /// A list line could not be read; the list in use is kept.
    #[error("list line {line}: {reason}")]
    List {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// Reading a list failed.
    #[error("reading list: {0}")]
    Io(#[from] std::io::Error),
}
