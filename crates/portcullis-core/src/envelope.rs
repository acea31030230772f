//! The SMTP envelope and its ESMTP parameters.

use serde::{Deserialize, Serialize};

use crate::address::{ForwardPath, ReversePath};

/// `BODY=` (RFC 6152 8BITMIME, RFC 3030 BINARYMIME).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum Body {
    /// `BODY=7BIT` or none given.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME` (only with BDAT).
    BinaryMime,
}

/// `RET=` (RFC 3461 §4.3): how much of the message a DSN returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Ret {
    /// `RET=FULL`
    Full,
    /// `RET=HDRS`
    Headers,
}

/// `NOTIFY=` (RFC 3461 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Notify {
    /// `SUCCESS`
    pub success: bool,
    /// `FAILURE`
    pub failure: bool,
    /// `DELAY`
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };
    /// The default when no NOTIFY is given: failure and delay (RFC 3461 §4.1).
    pub const DEFAULT: Notify = Notify {
        success: false,
        failure: true,
        delay: true,
    };

    /// Whether this is `NEVER`.
    pub fn is_never(&self) -> bool {
        *self == Notify::NEVER
    }
}

/// Parameters of `MAIL FROM` (RFC 5321 §4.1.1.11 and extensions).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MailParams {
    /// `SIZE=` declared size in octets (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Body,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=` xtext-decoded (RFC 3461).
    pub envid: Option<String>,
    /// `AUTH=` (RFC 4954 §5), xtext-decoded; `<>` is kept as is.
    pub auth: Option<String>,
    /// `REQUIRETLS` (RFC 8689).
    pub requiretls: bool,
}

/// One accepted recipient with its DSN parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recipient {
    /// Where to deliver.
    pub path: ForwardPath,
    /// `NOTIFY=`; `None` means not given (RFC 3461 default applies).
    pub notify: Option<Notify>,
    /// `ORCPT=` as `(addr-type, xtext-decoded address)`.
    pub orcpt: Option<(String, String)>,
}

impl Recipient {
    /// A recipient with no DSN parameters.
    pub fn new(path: ForwardPath) -> Self {
        Recipient {
            path,
            notify: None,
            orcpt: None,
        }
    }

    /// The effective NOTIFY flags.
    pub fn effective_notify(&self) -> Notify {
        self.notify.unwrap_or(Notify::DEFAULT)
    }
}

/// Who sent, to whom, and how: everything of a transaction but the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Envelope {
    /// `MAIL FROM` path.
    pub reverse_path: ReversePath,
    /// `MAIL FROM` parameters.
    pub params: MailParams,
    /// Accepted recipients, in order.
    pub recipients: Vec<Recipient>,
}

impl Envelope {
    /// A new envelope with no recipients yet.
    pub fn new(reverse_path: ReversePath, params: MailParams) -> Self {
        Envelope {
            reverse_path,
            params,
            recipients: Vec::new(),
        }
    }
}
