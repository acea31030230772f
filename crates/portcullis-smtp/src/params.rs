//! MAIL and RCPT parameters checked against what EHLO advertised
//! (RFC 5321 §4.1.1.11 and the extensions' parameters): what the
//! [`Session`](crate::Session) does with [`EsmtpParams`], usable alone with
//! [`parse_command`](crate::parse_command).

use portcullis_core::{Body, MailParams, Notify, Reply, Ret};

use crate::auth;
use crate::command::EsmtpParams;
use crate::config::Extensions;
use crate::replies;

/// The parameters of `RCPT TO` (RFC 3461 DSN).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RcptParams {
    /// `NOTIFY=`; `None` means not given.
    pub notify: Option<Notify>,
    /// `ORCPT=` as `(addr-type, xtext-decoded address)`.
    pub orcpt: Option<(String, String)>,
}

impl EsmtpParams<'_> {
    /// Check and interpret MAIL parameters against the extensions
    /// advertised (`tls`: whether the connection is under TLS, for
    /// REQUIRETLS). A parameter that is unknown or belongs to an extension
    /// not advertised is `555 5.5.4`; a malformed one `501 5.5.4`; a
    /// repeated one `501 5.5.4`. The size limit is the caller's to check.
    /// Allocates only for ENVID and AUTH.
    pub fn mail_params(self, ext: &Extensions, tls: bool) -> Result<MailParams, Reply> {
        let mut p = MailParams::default();
        let mut seen = 0u8;
        let mut once = |bit: u8| -> Result<(), Reply> {
            if seen & bit != 0 {
                return Err(replies::duplicate_parameter());
            }
            seen |= bit;
            Ok(())
        };
        for item in self {
            let (key, value) = item.map_err(|_| Reply::parameter_syntax())?;
            let is = |k: &str| key.eq_ignore_ascii_case(k);
            if is("SIZE") && ext.size {
                once(1)?;
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 20 {
                    return Err(Reply::parameter_syntax());
                }
                // Too large for u64 is certainly over any limit.
                p.size = Some(v.parse().unwrap_or(u64::MAX));
            } else if is("BODY") && (ext.eight_bit_mime || ext.binary_mime) {
                once(2)?;
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                p.body = if v.eq_ignore_ascii_case("7BIT") {
                    Body::SevenBit
                } else if v.eq_ignore_ascii_case("8BITMIME") && ext.eight_bit_mime {
                    Body::EightBitMime
                } else if v.eq_ignore_ascii_case("BINARYMIME") && ext.binary_mime && ext.chunking {
                    Body::BinaryMime
                } else {
                    return Err(Reply::parameter_not_implemented());
                };
            } else if is("SMTPUTF8") && ext.smtputf8 {
                once(4)?;
                if value.is_some() {
                    return Err(Reply::parameter_syntax());
                }
                p.smtputf8 = true;
            } else if is("RET") && ext.dsn {
                once(8)?;
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                p.ret = Some(if v.eq_ignore_ascii_case("FULL") {
                    Ret::Full
                } else if v.eq_ignore_ascii_case("HDRS") {
                    Ret::Headers
                } else {
                    return Err(Reply::parameter_syntax());
                });
            } else if is("ENVID") && ext.dsn {
                once(16)?;
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                // RFC 3461 §4.4: at most 100 characters.
                if v.len() > 100 {
                    return Err(Reply::parameter_syntax());
                }
                p.envid = Some(auth::xtext_decode(v).ok_or_else(Reply::parameter_syntax)?);
            } else if is("AUTH") && ext.auth.any() {
                once(32)?;
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                p.auth = Some(if v == "<>" {
                    v.to_owned()
                } else {
                    auth::xtext_decode(v).ok_or_else(Reply::parameter_syntax)?
                });
            } else if is("REQUIRETLS") && ext.requiretls && tls {
                once(64)?;
                if value.is_some() {
                    return Err(Reply::parameter_syntax());
                }
                p.requiretls = true;
            } else {
                return Err(Reply::unknown_parameter());
            }
        }
        Ok(p)
    }

    /// Check and interpret RCPT parameters (NOTIFY, ORCPT with DSN), with
    /// the replies of [`EsmtpParams::mail_params`]. Allocates only for ORCPT.
    pub fn rcpt_params(self, ext: &Extensions) -> Result<RcptParams, Reply> {
        let mut p = RcptParams::default();
        for item in self {
            let (key, value) = item.map_err(|_| Reply::parameter_syntax())?;
            if key.eq_ignore_ascii_case("NOTIFY") && ext.dsn {
                if p.notify.is_some() {
                    return Err(replies::duplicate_parameter());
                }
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                p.notify = Some(parse_notify(v).ok_or_else(Reply::parameter_syntax)?);
            } else if key.eq_ignore_ascii_case("ORCPT") && ext.dsn {
                if p.orcpt.is_some() {
                    return Err(replies::duplicate_parameter());
                }
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                // RFC 3461 §4.2: addr-type ";" xtext
                let (kind, addr) = v.split_once(';').ok_or_else(Reply::parameter_syntax)?;
                if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(Reply::parameter_syntax());
                }
                let addr = auth::xtext_decode(addr).ok_or_else(Reply::parameter_syntax)?;
                p.orcpt = Some((kind.to_owned(), addr));
            } else {
                return Err(Reply::unknown_parameter());
            }
        }
        Ok(p)
    }
}

/// RFC 3461 §4.1: `NEVER` or a comma list of SUCCESS, FAILURE, DELAY.
fn parse_notify(v: &str) -> Option<Notify> {
    if v.eq_ignore_ascii_case("NEVER") {
        return Some(Notify::NEVER);
    }
    let mut n = Notify::NEVER;
    for word in v.split(',') {
        if word.eq_ignore_ascii_case("SUCCESS") {
            n.success = true;
        } else if word.eq_ignore_ascii_case("FAILURE") {
            n.failure = true;
        } else if word.eq_ignore_ascii_case("DELAY") {
            n.delay = true;
        } else {
            return None;
        }
    }
    Some(n)
}
