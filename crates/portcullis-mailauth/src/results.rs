//! Authentication results as values, and the RFC 8601
//! `Authentication-Results` header built from them.

use std::fmt::Write as _;
use std::net::IpAddr;

/// The name of the header [`AuthResults::header_value`] is the value of.
pub const AUTHENTICATION_RESULTS: &str = "Authentication-Results";

/// An SPF result (RFC 7208 §2.6), spelled as in RFC 8601 §2.7.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpfResult {
    /// No SPF record, or the identity was not checked.
    None,
    /// The record makes no assertion about the client.
    Neutral,
    /// The client is authorized.
    Pass,
    /// The client is explicitly not authorized (`-all`).
    Fail,
    /// The client is probably not authorized (`~all`).
    SoftFail,
    /// A transient DNS error; a later retry may succeed.
    TempError,
    /// The record could not be interpreted.
    PermError,
}

impl SpfResult {
    /// The RFC 8601 result keyword, e.g. `softfail`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SpfResult::None => "none",
            SpfResult::Neutral => "neutral",
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

/// A DKIM result for one signature (RFC 6376 §3.9, RFC 8601 §2.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DkimResult {
    /// The message carries no signature.
    None,
    /// The signature verified.
    Pass,
    /// The signature or the body hash did not verify.
    Fail,
    /// The signature was syntactically valid but could not be processed
    /// (e.g. expired, or a tag this verifier does not support).
    Neutral,
    /// The key could not be fetched because of a transient DNS error.
    TempError,
    /// The signature or key record is unusable (malformed, revoked, missing).
    PermError,
}

impl DkimResult {
    /// The RFC 8601 result keyword, e.g. `pass`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DkimResult::None => "none",
            DkimResult::Pass => "pass",
            DkimResult::Fail => "fail",
            DkimResult::Neutral => "neutral",
            DkimResult::TempError => "temperror",
            DkimResult::PermError => "permerror",
        }
    }
}

/// A DMARC result (RFC 7489 §11.2, RFC 8601 §2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DmarcResult {
    /// No DMARC record applies to the header From domain.
    None,
    /// An aligned SPF or DKIM pass.
    Pass,
    /// A record applies and nothing aligned passed.
    Fail,
    /// A transient DNS error prevented a decision.
    TempError,
    /// The record or the message could not be evaluated.
    PermError,
}

impl DmarcResult {
    /// The RFC 8601 result keyword, e.g. `fail`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DmarcResult::None => "none",
            DmarcResult::Pass => "pass",
            DmarcResult::Fail => "fail",
            DmarcResult::TempError => "temperror",
            DmarcResult::PermError => "permerror",
        }
    }
}

/// The policy a domain owner asks for when DMARC fails (RFC 7489 §6.3 `p=`,
/// after `sp=`/`np=` and the `t=y` test-mode downgrade are applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DmarcPolicy {
    /// Monitor only (`p=none`, or no usable record).
    None,
    /// Treat as suspicious (`p=quarantine`).
    Quarantine,
    /// Refuse (`p=reject`).
    Reject,
}

impl DmarcPolicy {
    /// The tag value, e.g. `quarantine`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The SPF check of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpfOutcome {
    /// The result.
    pub result: SpfResult,
    /// The domain whose record was evaluated; empty when the identity was
    /// not checked (no usable HELO name).
    pub domain: String,
}

impl SpfOutcome {
    /// An outcome for `domain`.
    pub fn new(result: SpfResult, domain: impl Into<String>) -> Self {
        SpfOutcome {
            result,
            domain: domain.into(),
        }
    }
}

/// The verification of one DKIM signature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DkimOutcome {
    /// The result.
    pub result: DkimResult,
    /// The signing domain (`d=`), empty when the signature could not be parsed.
    pub domain: String,
    /// The selector (`s=`), empty when the signature could not be parsed.
    pub selector: String,
    /// Why it did not pass, for people reading the header.
    pub reason: Option<String>,
}

impl DkimOutcome {
    /// An outcome for the signature `d=domain; s=selector`.
    pub fn new(result: DkimResult, domain: impl Into<String>, selector: impl Into<String>) -> Self {
        DkimOutcome {
            result,
            domain: domain.into(),
            selector: selector.into(),
            reason: None,
        }
    }

    /// With a reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// The DMARC evaluation of the header From domain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DmarcOutcome {
    /// The result.
    pub result: DmarcResult,
    /// The RFC 5322 From domain evaluated; empty when the message has no
    /// single From domain (RFC 7489 §6.6.1 exempts several).
    pub header_from: String,
    /// The policy that applies if the result is [`DmarcResult::Fail`].
    pub policy: DmarcPolicy,
}

impl DmarcOutcome {
    /// An outcome for `header_from`.
    pub fn new(result: DmarcResult, header_from: impl Into<String>, policy: DmarcPolicy) -> Self {
        DmarcOutcome {
            result,
            header_from: header_from.into(),
            policy,
        }
    }
}

/// Everything SPF, DKIM and DMARC said about one message: data to inspect,
/// log, or turn into a header with [`header_value`](Self::header_value).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthResults {
    /// The client the message came from.
    pub client_ip: IpAddr,
    /// The HELO/EHLO name as given (empty if none).
    pub helo: String,
    /// The MAIL FROM address without brackets, empty for the null sender.
    pub mail_from: String,
    /// SPF for the HELO identity (RFC 7208 §2.3).
    pub spf_helo: SpfOutcome,
    /// SPF for the MAIL FROM identity (RFC 7208 §2.4; `postmaster@<helo>`
    /// for the null sender).
    pub spf_mail_from: SpfOutcome,
    /// One entry per DKIM-Signature header, in header order; empty when
    /// the message is unsigned.
    pub dkim: Vec<DkimOutcome>,
    /// DMARC for the header From domain.
    pub dmarc: DmarcOutcome,
}

impl AuthResults {
    /// Results for a message from `client_ip` that nothing was checked for
    /// yet: every result `none`. Fill the public fields in.
    pub fn new(client_ip: IpAddr, helo: impl Into<String>, mail_from: impl Into<String>) -> Self {
        AuthResults {
            client_ip,
            helo: helo.into(),
            mail_from: mail_from.into(),
            spf_helo: SpfOutcome::new(SpfResult::None, ""),
            spf_mail_from: SpfOutcome::new(SpfResult::None, ""),
            dkim: Vec::new(),
            dmarc: DmarcOutcome::new(DmarcResult::None, "", DmarcPolicy::None),
        }
    }

    /// Whether any check ended in a transient DNS error.
    pub fn has_temp_error(&self) -> bool {
        self.spf_helo.result == SpfResult::TempError
            || self.spf_mail_from.result == SpfResult::TempError
            || self.dkim.iter().any(|d| d.result == DkimResult::TempError)
            || self.dmarc.result == DmarcResult::TempError
    }

    /// Whether at least one DKIM signature from `domain` passed.
    pub fn dkim_pass_for(&self, domain: &str) -> bool {
        self.dkim
            .iter()
            .any(|d| d.result == DkimResult::Pass && d.domain.eq_ignore_ascii_case(domain))
    }

    /// The value of an `Authentication-Results` header (RFC 8601 §2.2),
    /// unfolded, e.g. `mx.example; spf=pass smtp.mailfrom=a@b.example;
    /// spf=none smtp.helo=mx.b.example; dkim=pass header.d=b.example
    /// header.s=sel; dmarc=pass (p=reject) header.from=b.example`.
    ///
    /// Every value taken from the client or the message is emitted as an
    /// RFC 2045 token or, failing that, a quoted-string with control
    /// characters removed, so a hostile HELO or From cannot break the
    /// header's syntax or inject lines.
    pub fn header_value(&self, authserv_id: &str) -> String {
        let mut out = String::with_capacity(256);
        push_value(&mut out, authserv_id);

        // RFC 7208 §9.1 / RFC 8601 §2.7.2: smtp.mailfrom carries the
        // identity checked, which is postmaster@<helo> for the null sender.
        out.push_str("; spf=");
        out.push_str(self.spf_mail_from.result.as_str());
        if !self.mail_from.is_empty() {
            out.push_str(" smtp.mailfrom=");
            push_pvalue(&mut out, &self.mail_from);
        } else if !self.spf_mail_from.domain.is_empty() {
            out.push_str(" smtp.mailfrom=postmaster@");
            push_pvalue(&mut out, &self.spf_mail_from.domain);
        }
        if !self.helo.is_empty() {
            out.push_str("; spf=");
            out.push_str(self.spf_helo.result.as_str());
            out.push_str(" smtp.helo=");
            push_pvalue(&mut out, &self.helo);
        }

        if self.dkim.is_empty() {
            out.push_str("; dkim=none");
        }
        for dkim in &self.dkim {
            out.push_str("; dkim=");
            out.push_str(dkim.result.as_str());
            if let Some(reason) = &dkim.reason {
                out.push_str(" reason=");
                push_quoted(&mut out, reason);
            }
            if !dkim.domain.is_empty() {
                out.push_str(" header.d=");
                push_pvalue(&mut out, &dkim.domain);
            }
            if !dkim.selector.is_empty() {
                out.push_str(" header.s=");
                push_pvalue(&mut out, &dkim.selector);
            }
        }

        out.push_str("; dmarc=");
        out.push_str(self.dmarc.result.as_str());
        if self.dmarc.result != DmarcResult::None {
            // A comment, as common practice does: RFC 7489 registers no
            // property for the policy.
            let _ = write!(out, " (p={})", self.dmarc.policy.as_str());
        }
        if !self.dmarc.header_from.is_empty() {
            out.push_str(" header.from=");
            push_pvalue(&mut out, &self.dmarc.header_from);
        }
        out
    }
}

/// RFC 2045 §5.1 token characters: printable ASCII but SPACE and tspecials.
fn is_token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// RFC 5322 §3.2.3 dot-atom-text: atext runs separated by single dots.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|run| {
            !run.is_empty()
                && run
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        })
}

/// A domain name as RFC 5321 §4.1.2 spells one: dot-separated labels.
fn is_domain_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A `value` (RFC 8601 §2.2): a token if possible, else a quoted-string.
fn push_value(out: &mut String, value: &str) {
    if !value.is_empty() && value.chars().all(is_token_char) {
        out.push_str(value);
    } else {
        push_quoted(out, value);
    }
}

/// A `pvalue`: a token, `local@domain` in dot-atom form, or a quoted-string.
fn push_pvalue(out: &mut String, value: &str) {
    let plain = match value.rsplit_once('@') {
        Some((local, domain)) => is_dot_atom(local) && is_domain_name(domain),
        None => !value.is_empty() && value.chars().all(is_token_char),
    };
    if plain {
        out.push_str(value);
    } else {
        push_quoted(out, value);
    }
}

/// A quoted-string (RFC 5322 §3.2.4); control characters are dropped.
fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuthResults {
        AuthResults {
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "mx.a.test".into(),
            mail_from: "user@a.test".into(),
            spf_helo: SpfOutcome::new(SpfResult::None, "mx.a.test"),
            spf_mail_from: SpfOutcome::new(SpfResult::SoftFail, "a.test"),
            dkim: vec![],
            dmarc: DmarcOutcome::new(DmarcResult::None, "a.test", DmarcPolicy::None),
        }
    }

    #[test]
    fn header_spells_results_in_order() {
        let mut r = sample();
        assert_eq!(
            r.header_value("mx.example"),
            "mx.example; spf=softfail smtp.mailfrom=user@a.test; spf=none smtp.helo=mx.a.test; \
             dkim=none; dmarc=none header.from=a.test"
        );
        r.dkim.push(DkimOutcome {
            reason: Some("body hash \"mismatch\"".into()),
            ..DkimOutcome::new(DkimResult::Fail, "a.test", "s1")
        });
        r.dmarc = DmarcOutcome::new(DmarcResult::Fail, "a.test", DmarcPolicy::Reject);
        assert!(
            r.header_value("mx.example").ends_with(
                "; dkim=fail reason=\"body hash \\\"mismatch\\\"\" header.d=a.test header.s=s1; \
                 dmarc=fail (p=reject) header.from=a.test"
            ),
            "{}",
            r.header_value("mx.example")
        );
    }

    #[test]
    fn hostile_values_are_quoted_without_line_breaks() {
        let mut r = sample();
        r.helo = "evil\r\nX-Injected: yes; dkim=pass".into();
        r.mail_from = "\"a b\"@a.test".into();
        let h = r.header_value("mx example");
        assert!(!h.contains('\r') && !h.contains('\n'), "{h}");
        assert!(h.starts_with("\"mx example\"; "), "{h}");
        assert!(
            h.contains("smtp.helo=\"evilX-Injected: yes; dkim=pass\""),
            "{h}"
        );
        assert!(h.contains("smtp.mailfrom=\"\\\"a b\\\"@a.test\""), "{h}");
    }

    #[test]
    fn null_sender_reports_postmaster_at_helo() {
        let mut r = sample();
        r.mail_from.clear();
        r.spf_mail_from = SpfOutcome::new(SpfResult::Pass, "mx.a.test");
        assert!(
            r.header_value("h")
                .starts_with("h; spf=pass smtp.mailfrom=postmaster@mx.a.test;"),
            "{}",
            r.header_value("h")
        );
    }
}
