//! Why a request could not be used.

/// A request that breaks the protocol or carries unusable attributes.
///
/// Every error is answered, never dropped: [`RequestError::is_framing`]
/// errors come from the [`Decoder`](crate::Decoder) (the stream itself is
/// malformed), the others from the [`PolicySession`](crate::PolicySession)
/// (a well-formed request whose values make no sense). Both get the
/// service's configured error answer, a temporary failure by default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A line longer than the decoder's limit.
    #[error("line longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// More attributes than the decoder's limit.
    #[error("more than {max} attributes")]
    TooManyAttributes {
        /// The limit.
        max: usize,
    },
    /// A line without `=`.
    #[error("attribute line without '='")]
    MissingEquals,
    /// An empty attribute name or one with bytes other than `[A-Za-z0-9_-]`.
    #[error("bad attribute name")]
    BadName,
    /// The same attribute twice in one request.
    #[error("attribute {name} sent twice")]
    DuplicateAttribute {
        /// Its name.
        name: String,
    },
    /// A control character (other than TAB) in a value.
    #[error("control character 0x{byte:02x} in a value")]
    ControlCharacter {
        /// The byte.
        byte: u8,
    },
    /// A value that is not UTF-8.
    #[error("attribute {name} is not UTF-8")]
    InvalidUtf8 {
        /// Its name.
        name: String,
    },
    /// An empty line with no attributes before it.
    #[error("empty request")]
    Empty,
    /// `request=` is missing or not `smtpd_access_policy`.
    #[error("not an smtpd_access_policy request")]
    NotAccessPolicy,
    /// An attribute the stage needs is missing.
    #[error("attribute {name} missing")]
    Missing {
        /// Its name.
        name: &'static str,
    },
    /// An attribute whose value does not parse (address, IP, number).
    #[error("attribute {name} has a bad value: {reason}")]
    BadValue {
        /// Its name.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl RequestError {
    /// Whether this is a framing error found by the decoder (as opposed to a
    /// well-formed request with bad values).
    pub fn is_framing(&self) -> bool {
        matches!(
            self,
            RequestError::LineTooLong { .. }
                | RequestError::TooManyAttributes { .. }
                | RequestError::MissingEquals
                | RequestError::BadName
                | RequestError::DuplicateAttribute { .. }
                | RequestError::ControlCharacter { .. }
                | RequestError::InvalidUtf8 { .. }
                | RequestError::Empty
        )
    }
}
