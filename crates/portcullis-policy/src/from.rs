//! FROM restrictions: who an account may send as, for the envelope sender
//! and the header `From:`.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_core::{Address, Domain, ReversePath};

use crate::account::{Account, AccountKind};

/// Which mailboxes exist, e.g. the operator's user directory.
///
/// # Contract
/// `Send + Sync + Debug`, callable from many threads; answers synchronously (cache
/// a remote directory). `Ok(false)` means the mailbox is known not to
/// exist; an error means "cannot tell" and the policy applies its store
/// failure policy (by default a `451 4.3.0` deferral).
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Whether `address` is a mailbox (or alias) the operator knows.
    fn mailbox_exists(&self, address: &Address) -> Result<bool, DirectoryError>;
}

/// A directory could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The backend failed.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// Why a sender was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FromViolation {
    /// The header `From:` is missing or not one valid mailbox (RFC 5322 §3.6.2).
    InvalidHeaderFrom,
    /// `MAIL FROM:<>` is not allowed for this account.
    NullSender,
    /// The sender is not in a required domain.
    WrongDomain,
    /// The account may not use this identity (not its own, not mapped by an admin).
    NotOwned,
    /// The directory says the sender mailbox does not exist.
    UnknownSender,
}

impl FromViolation {
    /// Text for the SMTP reply.
    pub fn text(&self) -> &'static str {
        match self {
            FromViolation::InvalidHeaderFrom => "Header From is missing or invalid",
            FromViolation::NullSender => "Null sender not allowed for this account",
            FromViolation::WrongDomain => "Sender address is not in an allowed domain",
            FromViolation::NotOwned => "Sender address not owned by the authenticated user",
            FromViolation::UnknownSender => "Sender address unknown",
        }
    }
}

/// FROM restrictions for outbound accounts (user, domain and network
/// accounts; inbound clients are not restricted here).
#[derive(Debug, Clone, Default)]
pub struct FromRules {
    /// The sender must be the account's own identity: a user account sends
    /// as its own address, a domain account as any address of its domain;
    /// or an identity an admin mapped to the account in `identities`.
    /// Network accounts have no identity and are only held to `required_domains`.
    pub require_own_identity: bool,
    /// When not empty, the sender domain must be one of these (or a subdomain).
    pub required_domains: Vec<Domain>,
    /// Admin-mapped identities per account name (lower case), e.g. an old
    /// address forwarded in that the user may now send as.
    pub identities: HashMap<String, Vec<Address>>,
    /// Also check the header `From:` at end of data.
    pub check_header_from: bool,
    /// Allow `MAIL FROM:<>` (bounces, RFC 5321 §4.5.5) from accounts.
    pub allow_null_sender: bool,
    /// "Valid sender required": the sender must exist in this directory.
    pub directory: Option<Arc<dyn Directory>>,
}

impl FromRules {
    /// Whether there is anything to check.
    pub fn is_active(&self) -> bool {
        self.require_own_identity
            || !self.required_domains.is_empty()
            || self.check_header_from
            || self.directory.is_some()
            || !self.allow_null_sender
    }

    /// Check an envelope sender for `account`.
    pub fn check_sender(
        &self,
        account: &Account,
        sender: &ReversePath,
    ) -> Result<(), FromCheckError> {
        if account.kind() == AccountKind::Client {
            return Ok(());
        }
        match sender.address() {
            None if self.allow_null_sender => Ok(()),
            None => Err(FromViolation::NullSender.into()),
            Some(a) => self.check_address(account, a),
        }
    }

    /// Check one sender mailbox (envelope or header) for `account`.
    pub fn check_address(&self, account: &Account, sender: &Address) -> Result<(), FromCheckError> {
        if account.kind() == AccountKind::Client {
            return Ok(());
        }
        if !self.required_domains.is_empty()
            && !self
                .required_domains
                .iter()
                .any(|d| sender.domain().is_within(d))
        {
            return Err(FromViolation::WrongDomain.into());
        }
        if self.require_own_identity && !self.owns(account, sender) {
            return Err(FromViolation::NotOwned.into());
        }
        if let Some(dir) = &self.directory {
            match dir.mailbox_exists(sender) {
                Ok(true) => {}
                Ok(false) => return Err(FromViolation::UnknownSender.into()),
                Err(e) => return Err(FromCheckError::Directory(e)),
            }
        }
        Ok(())
    }

    /// Check the header `From:` of `message` (headers, then body).
    pub fn check_header(&self, account: &Account, message: &[u8]) -> Result<(), FromCheckError> {
        if !self.check_header_from || account.kind() == AccountKind::Client {
            return Ok(());
        }
        let from = header_from(message).ok_or(FromViolation::InvalidHeaderFrom)?;
        self.check_address(account, &from)
    }

    fn owns(&self, account: &Account, sender: &Address) -> bool {
        let own = match account.kind() {
            // Account names are ASCII-lower-cased and `Domain::ascii` is the
            // lower-case A-label, so the exact comparison is tried first.
            AccountKind::User => account.split_name().is_some_and(|(local, domain)| {
                eq_ignore_case(local, sender.local_part().as_str())
                    && eq_ignore_case(domain, sender.domain().ascii())
            }),
            AccountKind::Domain => eq_ignore_case(account.name(), sender.domain().ascii()),
            AccountKind::Network | AccountKind::Client => true,
        };
        own || self.identities.get(account.name()).is_some_and(|ids| {
            ids.iter().any(|id| {
                id.domain() == sender.domain()
                    && id
                        .local_part()
                        .as_str()
                        .eq_ignore_ascii_case(sender.local_part().as_str())
            })
        })
    }
}

/// ASCII case-insensitive equality, with the (usual) exact match first.
fn eq_ignore_case(a: &str, b: &str) -> bool {
    a == b || a.eq_ignore_ascii_case(b)
}

/// A FROM check failed: a violation, or the directory could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FromCheckError {
    /// The sender breaks a rule.
    #[error("{}", .0.text())]
    Violation(FromViolation),
    /// The directory failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<FromViolation> for FromCheckError {
    fn from(v: FromViolation) -> Self {
        FromCheckError::Violation(v)
    }
}

/// The single mailbox of the header `From:` (RFC 5322 §3.6.2), or `None`
/// when there is none, more than one, or it is not a valid address.
///
/// Handles `addr`, `Name <addr>`, `"Quoted, Name" <addr>`, comments and
/// folding; a group syntax or several mailboxes count as invalid (a relay
/// holding users to one identity cannot accept "From: a, b").
pub fn header_from(message: &[u8]) -> Option<Address> {
    let mut value: Option<Vec<u8>> = None;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // end of the header section
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(v) = value.as_mut() {
                v.push(b' ');
                v.extend_from_slice(line);
            }
            continue;
        }
        if value.is_some() {
            // A second header line after From: From is complete.
            if line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"from:") {
                return None; // two From: fields (RFC 5322 §3.6 allows one)
            }
            continue;
        }
        if line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"from:") {
            value = Some(line[5..].to_vec());
        }
    }
    let value = String::from_utf8(value?).ok()?;
    let cleaned = strip_comments_and_quotes(&value)?;
    if cleaned.contains([',', ';', ':']) {
        return None;
    }
    let addr = match (cleaned.find('<'), cleaned.rfind('>')) {
        // Take the angle-addr from the original: it may hold a quoted local part.
        (Some(l), Some(r)) if l < r => value.get(l + 1..r)?.to_owned(),
        (None, None) => cleaned.trim().to_owned(),
        _ => return None,
    };
    Address::parse_with(
        addr.trim(),
        portcullis_core::ParseOptions::default().with_utf8(true),
    )
    .ok()
}

/// The header value with comments removed and quoted strings blanked (same
/// length, so positions of `<` and `>` line up with the original).
fn strip_comments_and_quotes(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let (mut depth, mut quoted, mut escaped) = (0u32, false, false);
    for ch in value.chars() {
        let blank = if escaped {
            escaped = false;
            true
        } else if ch == '\\' && (quoted || depth > 0) {
            escaped = true;
            true
        } else if quoted {
            if ch == '"' {
                quoted = false;
            }
            true
        } else if ch == '"' && depth == 0 {
            quoted = true;
            true
        } else if ch == '(' {
            depth += 1;
            true
        } else if ch == ')' && depth > 0 {
            depth -= 1;
            true
        } else {
            depth > 0
        };
        if blank {
            out.extend(std::iter::repeat_n(' ', ch.len_utf8()));
        } else {
            out.push(ch);
        }
    }
    (depth == 0 && !quoted).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(h: &str) -> Option<String> {
        header_from(h.as_bytes()).map(|a| a.to_string())
    }

    #[test]
    fn header_from_forms() {
        assert_eq!(
            from("From: a@example.com\r\n\r\nbody"),
            Some("a@example.com".into())
        );
        assert_eq!(
            from("Subject: x\r\nFROM: \"Doe, John\" <j@example.com> (work)\r\n\r\n"),
            Some("j@example.com".into())
        );
        assert_eq!(
            from("From: Very\r\n Long Name\r\n <l@example.com>\r\nTo: x\r\n\r\n"),
            Some("l@example.com".into())
        );
        assert_eq!(from("From: a@example.com, b@example.com\r\n\r\n"), None);
        assert_eq!(from("From: group: a@example.com;\r\n\r\n"), None);
        assert_eq!(from("From: not an address\r\n\r\n"), None);
        assert_eq!(
            from("To: x@example.com\r\n\r\nFrom: a@example.com\r\n"),
            None
        );
        assert_eq!(
            from("From: a@example.com\r\nFrom: b@example.com\r\n\r\n"),
            None
        );
        assert_eq!(from("From: \"unterminated <a@example.com>\r\n\r\n"), None);
        assert_eq!(from("From: <a@example.com\r\n\r\n"), None);
    }
}
