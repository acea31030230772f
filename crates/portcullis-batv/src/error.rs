//! The crate's error types: configuration mistakes and addresses that cannot
//! be rewritten. Verification outcomes are not errors; they are
//! [`Verification`](crate::Verification) values.

use portcullis_core::AddressError;

/// Why a key ring could not be built or changed, or an address not tagged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatvError {
    /// prvs has one decimal digit for the key number (draft-levine-smtp-batv-01 §4.1).
    #[error("BATV key number {0} is out of range (0-9)")]
    KeyNumberOutOfRange(u8),
    /// An empty secret would make every tag forgeable.
    #[error("BATV secret for key {0} is empty")]
    EmptySecret(u8),
    /// Exim refuses prvs secrets longer than one SHA-1 block; we refuse them
    /// too so every tag we make can be checked by Exim.
    #[error("BATV secret for key {key} is {len} bytes; at most 64 are allowed")]
    SecretTooLong {
        /// The key number.
        key: u8,
        /// The secret's length in bytes.
        len: usize,
    },
    /// The key number is not in the ring.
    #[error("BATV key {0} is not in the key ring")]
    UnknownKey(u8),
    /// The current signing key cannot be removed; rotate first.
    #[error("BATV key {0} is the current signing key and cannot be removed")]
    RemoveCurrentKey(u8),
    /// The validity window must be 1-999 days (the day field is three digits).
    #[error("BATV validity of {0} days is out of range (1-999)")]
    ValidityOutOfRange(u16),
    /// The address already carries a prvs tag; tagging twice breaks validation.
    #[error("address is already BATV-tagged")]
    AlreadyTagged,
    /// The tagged local part would not be a valid local part (too long: RFC 5321
    /// §4.5.3.1.1 allows 64 octets and a tag adds 16).
    #[error("tagged address would be invalid: {0}")]
    Address(#[from] AddressError),
}

/// Why an SRS rewrite (forward or reverse) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrsError {
    /// An empty secret would make every address forgeable.
    #[error("SRS secret is empty")]
    EmptySecret,
    /// The hash length must be between 1 and 27 characters (base64 of a SHA-1).
    #[error("SRS hash length {0} is out of range")]
    HashLengthOutOfRange(usize),
    /// The separator after `SRS0`/`SRS1` must be one of `=`, `+`, `-`.
    #[error("SRS separator {0:?} is not one of = + -")]
    BadSeparator(char),
    /// Reverse: the local part does not start with `SRS0`/`SRS1` and a separator.
    #[error("not an SRS address")]
    NotSrs,
    /// Reverse: an SRS address with missing fields.
    #[error("malformed SRS address")]
    Malformed,
    /// Reverse: the timestamp is not two base32 characters.
    #[error("bad SRS timestamp")]
    BadTimestamp,
    /// Reverse: the timestamp is older than the maximum age (or in the future).
    #[error("SRS address has expired")]
    Expired,
    /// Reverse: the hash is shorter than the configured minimum.
    #[error("SRS hash too short")]
    HashTooShort,
    /// Reverse: the hash does not match any secret.
    #[error("SRS hash does not match")]
    BadHash,
    /// The rewritten address would not be a valid address (usually: local part
    /// over 64 octets, RFC 5321 §4.5.3.1.1).
    #[error("rewritten address would be invalid: {0}")]
    Address(#[from] AddressError),
}
