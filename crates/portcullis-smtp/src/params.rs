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
    // Inlined: the result is a struct the caller reads a field or two of;
    // built here and copied out through memory it cost more than the
    // checks (its small fields, written one by one and then copied as
    // words, stall the copy).
    #[inline(always)]
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
        let mut params = self;
        while let Some(param) = params.next_param() {
            let (key, value) = param.octets().ok_or_else(Reply::parameter_syntax)?;
            let k = folded_octets(key);
            if k == Some(SIZE) && ext.size {
                once(1)?;
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                p.size = Some(parse_size(v).ok_or_else(Reply::parameter_syntax)?);
            } else if k == Some(BODY) && (ext.eight_bit_mime || ext.binary_mime) {
                once(2)?;
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                let f = folded_octets(v);
                p.body = if f == Some(SEVEN_BIT) {
                    Body::SevenBit
                } else if f == Some(EIGHT_BIT_MIME) && ext.eight_bit_mime {
                    Body::EightBitMime
                } else if v.eq_ignore_ascii_case(b"BINARYMIME") && ext.binary_mime && ext.chunking {
                    Body::BinaryMime
                } else {
                    return Err(Reply::parameter_not_implemented());
                };
            } else if k == Some(SMTPUTF8) && ext.smtputf8 {
                once(4)?;
                if value.is_some() {
                    return Err(Reply::parameter_syntax());
                }
                p.smtputf8 = true;
            } else if k == Some(RET) && ext.dsn {
                once(8)?;
                let v = folded_octets(value.ok_or_else(Reply::parameter_syntax)?);
                p.ret = Some(if v == Some(FULL) {
                    Ret::Full
                } else if v == Some(HDRS) {
                    Ret::Headers
                } else {
                    return Err(Reply::parameter_syntax());
                });
            } else if k == Some(ENVID) && ext.dsn {
                once(16)?;
                let v = param.value_text().ok_or_else(Reply::parameter_syntax)?;
                // RFC 3461 §4.4: at most 100 characters.
                if v.len() > 100 {
                    return Err(Reply::parameter_syntax());
                }
                p.envid = Some(auth::xtext_decode(v).ok_or_else(Reply::parameter_syntax)?);
            } else if k == Some(AUTH) && ext.auth.any() {
                once(32)?;
                let v = param.value_text().ok_or_else(Reply::parameter_syntax)?;
                p.auth = Some(if v == "<>" {
                    v.to_owned()
                } else {
                    auth::xtext_decode(v).ok_or_else(Reply::parameter_syntax)?
                });
            } else if key.eq_ignore_ascii_case(b"REQUIRETLS") && ext.requiretls && tls {
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
    // Inlined, as `mail_params`.
    #[inline(always)]
    pub fn rcpt_params(self, ext: &Extensions) -> Result<RcptParams, Reply> {
        // NOTIFY as bits until the end (SEEN, then the flags): a struct of
        // bools built a byte at a time and then copied whole stalls the
        // copy (store forwarding).
        let mut notify = 0u8;
        let mut orcpt = None;
        let mut params = self;
        while let Some(param) = params.next_param() {
            let (key, value) = param.octets().ok_or_else(Reply::parameter_syntax)?;
            let k = folded_octets(key);
            if k == Some(NOTIFY) && ext.dsn {
                if notify != 0 {
                    return Err(replies::duplicate_parameter());
                }
                let v = value.ok_or_else(Reply::parameter_syntax)?;
                notify = SEEN | parse_notify(v).ok_or_else(Reply::parameter_syntax)?;
            } else if k == Some(ORCPT) && ext.dsn {
                if orcpt.is_some() {
                    return Err(replies::duplicate_parameter());
                }
                let v = param.value_text().ok_or_else(Reply::parameter_syntax)?;
                // RFC 3461 §4.2: addr-type ";" xtext
                let (kind, addr) = v.split_once(';').ok_or_else(Reply::parameter_syntax)?;
                if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(Reply::parameter_syntax());
                }
                let addr = auth::xtext_decode(addr).ok_or_else(Reply::parameter_syntax)?;
                orcpt = Some((kind.to_owned(), addr));
            } else {
                return Err(Reply::unknown_parameter());
            }
        }
        let notify = (notify != 0).then_some(Notify {
            success: notify & SUCCESS_BIT != 0,
            failure: notify & FAILURE_BIT != 0,
            delay: notify & DELAY_BIT != 0,
        });
        Ok(RcptParams { notify, orcpt })
    }
}

// NOTIFY while it is parsed.
const SEEN: u8 = 0x80;
const SUCCESS_BIT: u8 = 1;
const FAILURE_BIT: u8 = 2;
const DELAY_BIT: u8 = 4;

/// A keyword or value of up to eight octets as one word, its letters
/// folded to lower case with `| 0x20`; `None` if longer. Exact for the
/// octets a parameter can hold (printable ASCII, and UTF-8, whose octets
/// stay above 0x7f): `| 0x20` maps only `A`–`Z` onto `a`–`z`, and onto a
/// digit only control octets. So a word equals a constant below exactly
/// when the text equals it ignoring ASCII case.
#[inline]
fn folded_octets(b: &[u8]) -> Option<u64> {
    let w = match (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        _ if b.len() > 8 => return None,
        // Two overlapping halves: the shared octets are the same in both.
        (Some(lo), Some(hi)) => {
            u64::from(u32::from_le_bytes(*lo))
                | u64::from(u32::from_le_bytes(*hi)) << (8 * (b.len() - 4))
        }
        _ => b
            .iter()
            .enumerate()
            .fold(0, |w, (i, &c)| w | u64::from(c) << (8 * i)),
    };
    Some(w | 0x2020_2020_2020_2020)
}

/// [`folded_octets`] for a constant.
const fn word(s: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let mut i = 0;
    while i < s.len() {
        w[i] = s[i];
        i += 1;
    }
    u64::from_le_bytes(w) | 0x2020_2020_2020_2020
}

const SIZE: u64 = word(b"size");
const BODY: u64 = word(b"body");
const SMTPUTF8: u64 = word(b"smtputf8");
const RET: u64 = word(b"ret");
const ENVID: u64 = word(b"envid");
const AUTH: u64 = word(b"auth");
const NOTIFY: u64 = word(b"notify");
const ORCPT: u64 = word(b"orcpt");
const SEVEN_BIT: u64 = word(b"7bit");
const EIGHT_BIT_MIME: u64 = word(b"8bitmime");
const FULL: u64 = word(b"full");
const HDRS: u64 = word(b"hdrs");
const NEVER: u64 = word(b"never");
const SUCCESS: u64 = word(b"success");
const FAILURE: u64 = word(b"failure");
const DELAY: u64 = word(b"delay");

/// RFC 1870 `SIZE=` value: 1–20 digits; a number too large for u64 is
/// `u64::MAX` (certainly over any limit).
#[inline]
fn parse_size(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    let mut n = 0u64;
    for &c in v {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.saturating_mul(10).saturating_add(u64::from(d));
    }
    Some(n)
}

/// RFC 3461 §4.1: `NEVER` or a comma list of SUCCESS, FAILURE, DELAY; as
/// bits, none for NEVER.
#[inline]
fn parse_notify(v: &[u8]) -> Option<u8> {
    if folded_octets(v) == Some(NEVER) {
        return Some(0);
    }
    let mut n = 0;
    for word in v.split(|&c| c == b',') {
        n |= match folded_octets(word) {
            Some(SUCCESS) => SUCCESS_BIT,
            Some(FAILURE) => FAILURE_BIT,
            Some(DELAY) => DELAY_BIT,
            _ => return None,
        };
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, parse_command};

    fn mail(line: &str, ext: &Extensions) -> Result<MailParams, Reply> {
        match parse_command(line.as_bytes()) {
            Ok(Command::Mail { params, .. }) => params.mail_params(ext, false),
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn rcpt(line: &str) -> Result<RcptParams, Reply> {
        match parse_command(line.as_bytes()) {
            Ok(Command::Rcpt { params, .. }) => params.rcpt_params(&Extensions::default()),
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn mail_parameters_any_case() {
        let ext = Extensions::default();
        let p = mail(
            "MAIL FROM:<> size=123 Body=8bitMIME SmtpUtf8 ret=hdrs",
            &ext,
        )
        .unwrap();
        assert_eq!(p.size, Some(123));
        assert_eq!(p.body, Body::EightBitMime);
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Headers));
        let p = mail("MAIL FROM:<> BODY=7bit RET=Full ENVID=a+2Bb", &ext).unwrap();
        assert_eq!((p.body, p.ret), (Body::SevenBit, Some(Ret::Full)));
        assert_eq!(p.envid.as_deref(), Some("a+b"));
        // Over u64: certainly too big, not an error.
        let p = mail("MAIL FROM:<> SIZE=99999999999999999999", &ext).unwrap();
        assert_eq!(p.size, Some(u64::MAX));
    }

    #[test]
    fn bad_mail_parameters() {
        let ext = Extensions::default();
        let code = |line: &str| mail(line, &ext).map(|_| ()).map_err(|r| r.code());
        assert_eq!(code("MAIL FROM:<> SIZE=1 SIZE=2"), Err(501));
        assert_eq!(code("MAIL FROM:<> SIZE=12a"), Err(501));
        assert_eq!(code("MAIL FROM:<> SIZE=123456789012345678901"), Err(501));
        assert_eq!(code("MAIL FROM:<> SIZE"), Err(501));
        assert_eq!(code("MAIL FROM:<> BODY=8BITMIMEX"), Err(504));
        assert_eq!(code("MAIL FROM:<> BODY=BINARYMIME"), Err(504));
        assert_eq!(code("MAIL FROM:<> SMTPUTF8=yes"), Err(501));
        assert_eq!(code("MAIL FROM:<> RET=ALL"), Err(501));
        assert_eq!(code("MAIL FROM:<> SIZEX=1"), Err(555));
        assert_eq!(code("MAIL FROM:<> REQUIRETLS"), Err(555));
        assert_eq!(code("MAIL FROM:<> X=a=b"), Err(501));
        let binary = Extensions {
            binary_mime: true,
            ..Extensions::default()
        };
        assert_eq!(
            mail("MAIL FROM:<> BODY=binarymime", &binary).map(|p| p.body),
            Ok(Body::BinaryMime)
        );
        let no_dsn = Extensions {
            dsn: false,
            ..Extensions::default()
        };
        assert_eq!(
            mail("MAIL FROM:<> RET=FULL", &no_dsn).map_err(|r| r.code()),
            Err(555)
        );
        let tls = Extensions {
            requiretls: true,
            ..Extensions::default()
        };
        match parse_command(b"MAIL FROM:<> requiretls") {
            Ok(Command::Mail { params, .. }) => {
                assert!(params.mail_params(&tls, true).unwrap().requiretls);
                assert!(params.mail_params(&tls, false).is_err());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rcpt_parameters() {
        let p = rcpt("RCPT TO:<a@b> notify=success,Delay ORCPT=rfc822;a+40b").unwrap();
        assert_eq!(
            p.notify,
            Some(Notify {
                success: true,
                failure: false,
                delay: true
            })
        );
        assert_eq!(p.orcpt, Some(("rfc822".into(), "a@b".into())));
        assert_eq!(
            rcpt("RCPT TO:<a@b> NOTIFY=never").unwrap().notify,
            Some(Notify::NEVER)
        );
        let code = |line: &str| rcpt(line).map(|_| ()).map_err(|r| r.code());
        assert_eq!(code("RCPT TO:<a@b> NOTIFY=NEVER,DELAY"), Err(501));
        assert_eq!(code("RCPT TO:<a@b> NOTIFY=FAILURE,"), Err(501));
        assert_eq!(code("RCPT TO:<a@b> NOTIFY=DELAY NOTIFY=DELAY"), Err(501));
        assert_eq!(code("RCPT TO:<a@b> ORCPT=rfc822"), Err(501));
        assert_eq!(code("RCPT TO:<a@b> SIZE=1"), Err(555));
    }
}
