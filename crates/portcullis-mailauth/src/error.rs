//! The crate's error type.

/// What can go wrong configuring or signing. Verification never fails: its
/// problems are results (`permerror`, `temperror`) in [`crate::AuthResults`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailAuthError {
    /// A private key could not be parsed or is of an unsupported type.
    #[error("DKIM key: {0}")]
    Key(String),
    /// A signing domain, selector or option is invalid.
    #[error("DKIM configuration: {0}")]
    Config(String),
    /// Signing failed (e.g. the message has no header to sign).
    #[error("DKIM signing: {0}")]
    Sign(String),
    /// The DNS resolver could not be built.
    #[error("DNS resolver: {0}")]
    Resolver(String),
}
