//! Inbound verification: SPF, DKIM and DMARC through mail-auth, the
//! `Authentication-Results` header, and DMARC policy as configured.

use std::net::IpAddr;
use std::sync::Arc;

use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, MessageAuthenticator};
use portcullis_core::{Action, Context, Filter, Reply, Verdict, async_trait};

use crate::results::{
    AUTHENTICATION_RESULTS, AuthResults, DkimOutcome, DkimResult, DmarcOutcome, DmarcPolicy,
    DmarcResult, SpfOutcome, SpfResult,
};

/// What to do when DMARC ends in a transient DNS error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TempErrorAction {
    /// Accept with `temperror` in the header (default). A temporary
    /// failure is never grounds for a permanent refusal.
    #[default]
    Continue,
    /// Defer with `451 4.4.3` so the sender retries when DNS works again.
    Defer,
}

/// How [`AuthVerifier`] treats results. Defaults: header only for
/// `p=reject`, quarantine for `p=quarantine`, continue on temp errors, skip
/// authenticated clients.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyConfig {
    /// The `authserv-id` naming this host in the header (RFC 8601 §2.5),
    /// normally the host name.
    pub authserv_id: String,
    /// Refuse with `550 5.7.1` when DMARC fails and the policy is `reject`.
    /// Off by default: the operator opts in to enforcement.
    pub enforce_reject: bool,
    /// Quarantine when DMARC fails and the policy is `quarantine`.
    pub quarantine: bool,
    /// What a DMARC temp error does.
    pub on_temp_error: TempErrorAction,
    /// Skip clients that authenticated (SMTP AUTH) or come from a trusted
    /// network: their mail is submission, not inbound.
    pub skip_authenticated: bool,
}

impl VerifyConfig {
    /// Defaults for `authserv_id`.
    pub fn new(authserv_id: impl Into<String>) -> Self {
        VerifyConfig {
            authserv_id: authserv_id.into(),
            enforce_reject: false,
            quarantine: true,
            on_temp_error: TempErrorAction::Continue,
            skip_authenticated: true,
        }
    }

    /// Set [`enforce_reject`](Self::enforce_reject).
    pub fn with_enforce_reject(mut self, yes: bool) -> Self {
        self.enforce_reject = yes;
        self
    }

    /// Set [`quarantine`](Self::quarantine).
    pub fn with_quarantine(mut self, yes: bool) -> Self {
        self.quarantine = yes;
        self
    }

    /// Set [`on_temp_error`](Self::on_temp_error).
    pub fn with_temp_error(mut self, action: TempErrorAction) -> Self {
        self.on_temp_error = action;
        self
    }

    /// Set [`skip_authenticated`](Self::skip_authenticated).
    pub fn with_skip_authenticated(mut self, yes: bool) -> Self {
        self.skip_authenticated = yes;
        self
    }
}

/// What to do with a message, decided from its [`AuthResults`].
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthDecision {
    /// The `Authentication-Results` value to prepend.
    pub header: String,
    /// Accept, defer or reject.
    pub verdict: Verdict,
    /// Quarantine the message (only with a `Continue` verdict).
    pub quarantine: Option<String>,
}

/// The policy step, pure and synchronous: what `config` does with `results`.
///
/// Only a DMARC `fail` triggers the domain's policy (RFC 7489 §6.6.2);
/// `temperror` never rejects, it continues or defers per
/// [`VerifyConfig::on_temp_error`]. The policy is the one mail-auth
/// selected (`p=`, `sp=` or `np=`, downgraded one step under `t=y`).
pub fn decide(results: &AuthResults, config: &VerifyConfig) -> AuthDecision {
    let header = results.header_value(&config.authserv_id);
    let domain = &results.dmarc.header_from;
    let mut decision = AuthDecision {
        header,
        verdict: Verdict::Continue,
        quarantine: None,
    };
    match (results.dmarc.result, results.dmarc.policy) {
        (DmarcResult::Fail, DmarcPolicy::Reject) if config.enforce_reject => {
            decision.verdict = Verdict::Reject(Reply::new(
                550,
                (5, 7, 1),
                format!("Email rejected per DMARC policy for {}", printable(domain)),
            ));
        }
        (DmarcResult::Fail, DmarcPolicy::Quarantine) if config.quarantine => {
            decision.quarantine =
                Some(format!("DMARC policy quarantine for {}", printable(domain)));
        }
        (DmarcResult::TempError, _) if config.on_temp_error == TempErrorAction::Defer => {
            // RFC 3463 X.4.3: directory (DNS) server failure.
            decision.verdict = Verdict::Defer(Reply::new(
                451,
                (4, 4, 3),
                "Temporary DNS failure checking DMARC, try again later",
            ));
        }
        _ => {}
    }
    decision
}

/// Keep reply text to printable ASCII (the domain comes from the message).
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(253)
        .collect()
}

/// Verifies SPF, DKIM and DMARC for inbound mail and prepends
/// `Authentication-Results`.
///
/// DNS goes through the [`MessageAuthenticator`] the caller built (its
/// resolver, name servers and cache): this crate opens no sockets of its
/// own. See [`crate::authenticator_with_name_servers`].
///
/// Not done here: RFC 8601 §5 asks the receiving border MTA to remove
/// incoming `Authentication-Results` fields that claim its own
/// authserv-id. [`Action`] can only add fields, so that is the relay's job
/// when it writes the message.
#[derive(Clone)]
pub struct AuthVerifier {
    authenticator: Arc<MessageAuthenticator>,
    config: VerifyConfig,
}

impl std::fmt::Debug for AuthVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuthVerifier {
    /// A verifier resolving through `authenticator`.
    pub fn new(authenticator: Arc<MessageAuthenticator>, config: VerifyConfig) -> Self {
        AuthVerifier {
            authenticator,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VerifyConfig {
        &self.config
    }

    /// Run SPF (HELO and MAIL FROM identities), DKIM and DMARC for one
    /// message and return the results as data. `mail_from` is the address
    /// without brackets, empty for the null sender; `helo` may be empty.
    ///
    /// DKIM signature expiry (`x=`) is judged by mail-auth against the
    /// system clock; mail-auth 0.13 takes no time argument.
    pub async fn verify(
        &self,
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
        message: &[u8],
    ) -> AuthResults {
        let auth = &*self.authenticator;
        let host = self.config.authserv_id.as_str();
        let helo_domain = spf_helo_domain(helo);

        // RFC 7208 §2.3: check HELO only when it is a domain name.
        let spf_helo = match helo_domain {
            Some(h) => {
                let out = auth
                    .verify_spf(SpfParameters::verify_ehlo(client_ip, h, host))
                    .await;
                SpfOutcome::new(spf_result(out.result()), h)
            }
            None => SpfOutcome::new(SpfResult::None, ""),
        };
        // RFC 7208 §2.4: the null sender is checked as postmaster@<helo>,
        // which is the HELO check again.
        let mail_from_domain = mail_from
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('.'))
            .filter(|d| !d.is_empty());
        let spf_mail_from = match (mail_from_domain, helo_domain) {
            // RFC 7208 §4.3: no valid domain name to check.
            (Some(d), _) if d.starts_with('[') || !d.contains('.') => {
                SpfOutcome::new(SpfResult::None, d)
            }
            (Some(d), _) => {
                let out = auth
                    .verify_spf(SpfParameters::verify_mail_from(
                        client_ip,
                        helo_domain.unwrap_or(d),
                        host,
                        mail_from,
                    ))
                    .await;
                SpfOutcome::new(spf_result(out.result()), d)
            }
            (None, Some(_)) => spf_helo.clone(),
            (None, None) => SpfOutcome::new(SpfResult::None, ""),
        };

        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            return AuthResults {
                client_ip,
                helo: helo.to_owned(),
                mail_from: mail_from.to_owned(),
                spf_helo,
                spf_mail_from,
                dkim: Vec::new(),
                dmarc: DmarcOutcome::new(DmarcResult::None, "", DmarcPolicy::None),
            };
        };
        let dkim_outputs = auth.verify_dkim(&parsed).await;
        let dkim = dkim_outputs.iter().map(dkim_outcome).collect();

        // DMARC aligns SPF on the identity that was checked (RFC 7489
        // §3.1.2), i.e. the HELO domain for the null sender; mail-auth wants
        // its SpfOutput for that identity.
        let spf_for_dmarc = mail_auth::SpfOutput::new(spf_mail_from.domain.clone())
            .with_result(to_mail_auth_spf(spf_mail_from.result));
        let dmarc_output = auth
            .verify_dmarc(DmarcParameters::new(
                &parsed,
                &dkim_outputs,
                &spf_mail_from.domain,
                &spf_for_dmarc,
            ))
            .await;
        let dmarc = DmarcOutcome::new(
            dmarc_result(&dmarc_output.result()),
            dmarc_output.domain(),
            dmarc_policy(dmarc_output.policy()),
        );

        AuthResults {
            client_ip,
            helo: helo.to_owned(),
            mail_from: mail_from.to_owned(),
            spf_helo,
            spf_mail_from,
            dkim,
            dmarc,
        }
    }

    /// [`verify`](Self::verify) then [`decide`].
    pub async fn check(
        &self,
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
        message: &[u8],
    ) -> (AuthResults, AuthDecision) {
        let results = self.verify(client_ip, helo, mail_from, message).await;
        let decision = decide(&results, &self.config);
        (results, decision)
    }
}

/// The HELO name if SPF can check it: a domain name with a dot, not an
/// address literal (RFC 7208 §2.3).
fn spf_helo_domain(helo: &str) -> Option<&str> {
    let h = helo.trim().trim_end_matches('.');
    let usable = h.contains('.')
        && !h.starts_with('[')
        && h.parse::<IpAddr>().is_err()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    usable.then_some(h)
}

fn spf_result(r: mail_auth::SpfResult) -> SpfResult {
    match r {
        mail_auth::SpfResult::Pass => SpfResult::Pass,
        mail_auth::SpfResult::Fail => SpfResult::Fail,
        mail_auth::SpfResult::SoftFail => SpfResult::SoftFail,
        mail_auth::SpfResult::Neutral => SpfResult::Neutral,
        mail_auth::SpfResult::TempError => SpfResult::TempError,
        mail_auth::SpfResult::PermError => SpfResult::PermError,
        mail_auth::SpfResult::None => SpfResult::None,
    }
}

fn to_mail_auth_spf(r: SpfResult) -> mail_auth::SpfResult {
    match r {
        SpfResult::Pass => mail_auth::SpfResult::Pass,
        SpfResult::Fail => mail_auth::SpfResult::Fail,
        SpfResult::SoftFail => mail_auth::SpfResult::SoftFail,
        SpfResult::Neutral => mail_auth::SpfResult::Neutral,
        SpfResult::TempError => mail_auth::SpfResult::TempError,
        SpfResult::PermError => mail_auth::SpfResult::PermError,
        SpfResult::None => mail_auth::SpfResult::None,
    }
}

fn dkim_outcome(out: &mail_auth::DkimOutput<'_>) -> DkimOutcome {
    let (result, error) = match out.result() {
        mail_auth::DkimResult::Pass => (DkimResult::Pass, None),
        // RFC 6376 §6.1.3: a body hash mismatch is PERMFAIL, i.e. RFC 8601
        // `fail`; mail-auth reports it as neutral.
        mail_auth::DkimResult::Neutral(
            e @ mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch),
        ) => (DkimResult::Fail, Some(e)),
        mail_auth::DkimResult::Neutral(e) => (DkimResult::Neutral, Some(e)),
        mail_auth::DkimResult::Fail(e) => (DkimResult::Fail, Some(e)),
        mail_auth::DkimResult::PermError(e) => (DkimResult::PermError, Some(e)),
        mail_auth::DkimResult::TempError(e) => (DkimResult::TempError, Some(e)),
        mail_auth::DkimResult::None => (DkimResult::None, None),
    };
    let (domain, selector) = out
        .signature()
        .map(|s| (s.d.as_str(), s.s.as_str()))
        .unwrap_or_default();
    DkimOutcome {
        reason: error.map(|e| e.to_string()),
        ..DkimOutcome::new(result, domain, selector)
    }
}

fn dmarc_result(r: &mail_auth::DmarcResult) -> DmarcResult {
    match r {
        mail_auth::DmarcResult::Pass => DmarcResult::Pass,
        mail_auth::DmarcResult::Fail(_) => DmarcResult::Fail,
        mail_auth::DmarcResult::TempError(_) => DmarcResult::TempError,
        mail_auth::DmarcResult::PermError(_) => DmarcResult::PermError,
        mail_auth::DmarcResult::None => DmarcResult::None,
    }
}

fn dmarc_policy(p: Policy) -> DmarcPolicy {
    match p {
        Policy::Quarantine => DmarcPolicy::Quarantine,
        Policy::Reject => DmarcPolicy::Reject,
        Policy::None | Policy::Unspecified => DmarcPolicy::None,
    }
}

#[async_trait]
impl Filter for AuthVerifier {
    fn name(&self) -> &'static str {
        "mailauth"
    }

    /// SPF uses the client IP, the HELO name and the MAIL FROM path from
    /// the context; the decision's header is pushed as an
    /// `Action::AddHeader`, a quarantine as `Action::Quarantine`.
    async fn message(&self, cx: &mut Context, message: &[u8]) -> Verdict {
        if self.config.skip_authenticated
            && (cx.client.authenticated.is_some() || cx.client.trusted_network)
        {
            return Verdict::Continue;
        }
        let helo = cx.client.helo.clone().unwrap_or_default();
        let mail_from = cx
            .envelope
            .as_ref()
            .and_then(|e| e.reverse_path.address())
            // A-label domain: SPF queries DNS with it (RFC 7208 §4.3).
            .map(|a| format!("{}@{}", a.local_part(), a.domain().ascii()))
            .unwrap_or_default();
        let (_, decision) = self.check(cx.client.ip(), &helo, &mail_from, message).await;
        cx.actions.push(Action::AddHeader {
            name: AUTHENTICATION_RESULTS.into(),
            value: decision.header,
        });
        if let Some(reason) = decision.quarantine {
            cx.actions.push(Action::Quarantine { reason });
        }
        decision.verdict
    }
}
