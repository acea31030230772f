//! Answering requests with a [`Chain`]: which stages run for each
//! `protocol_state`, and how the request's attributes become a [`Context`].

use std::net::{IpAddr, SocketAddr};

use portcullis_core::{
    Chain, Client, Context, Envelope, Filter, ForwardPath, MailParams, ParseOptions, Recipient,
    Reply, ReversePath, Verdict,
};

use crate::action::{DeferStyle, PolicyAction};
use crate::codec::Request;
use crate::error::RequestError;

/// The filters and the answer rules, shared by every connection.
#[derive(Debug, Clone)]
pub struct PolicyService {
    chain: Chain,
    defer_style: DeferStyle,
    error_action: PolicyAction,
}

impl PolicyService {
    /// A service over `chain`, deferring with [`DeferStyle::IfPermit`] and
    /// answering bad requests with `451 4.3.0` (like Postfix's own
    /// `default_action` when a policy server fails: mail waits, nothing is
    /// let through unchecked).
    pub fn new(chain: Chain) -> Self {
        PolicyService {
            chain,
            defer_style: DeferStyle::IfPermit,
            error_action: PolicyAction::Reply(Reply::temporary_failure()),
        }
    }

    /// How deferrals are sent.
    pub fn with_defer_style(mut self, style: DeferStyle) -> Self {
        self.defer_style = style;
        self
    }

    /// The answer to a request that could not be used (e.g. `DUNNO` to fail
    /// open instead of the default temporary failure).
    pub fn with_error_action(mut self, action: PolicyAction) -> Self {
        self.error_action = action;
        self
    }

    /// The answer to a request that could not be used.
    pub fn error_action(&self) -> &PolicyAction {
        &self.error_action
    }

    /// The filters.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// A session for one client connection (Postfix sends the requests of one
    /// SMTP transaction over one connection, in order).
    pub fn session(&self) -> PolicySession<'_> {
        PolicySession {
            service: self,
            transaction: None,
        }
    }
}

/// What a request was answered with, and why (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answer {
    /// The response to send.
    pub action: PolicyAction,
    /// The chain's verdict; `None` when no stage ran (unknown state) or the
    /// request was unusable.
    pub verdict: Option<Verdict>,
    /// The filter that decided, if one refused.
    pub decided_by: Option<&'static str>,
    /// Why the request was unusable, if it was.
    pub error: Option<RequestError>,
}

impl Answer {
    fn error(service: &PolicyService, error: RequestError) -> Self {
        Answer {
            action: service.error_action.clone(),
            verdict: None,
            decided_by: None,
            error: Some(error),
        }
    }
}

/// The mail transaction a connection is in, keyed by Postfix's `instance`
/// attribute, so `mail_from` runs once per message and not once per
/// recipient (a rate limit counts messages at MAIL).
#[derive(Debug)]
struct Transaction {
    instance: String,
    cx: Context,
    /// The `mail_from` verdict when it refused (later requests repeat it).
    mail_refused: Option<(Verdict, Option<&'static str>)>,
    data_done: bool,
}

/// The per-connection half of the service: answers requests in order.
#[derive(Debug)]
pub struct PolicySession<'a> {
    service: &'a PolicyService,
    transaction: Option<Transaction>,
}

impl PolicySession<'_> {
    /// Answer a decoded request, or the decoder's error in its place.
    pub async fn answer_item(&mut self, item: Result<Request, RequestError>) -> Answer {
        match item {
            Ok(request) => self.answer(&request).await,
            Err(e) => Answer::error(self.service, e),
        }
    }

    /// Answer one request.
    ///
    /// | `protocol_state` | stages run |
    /// |---|---|
    /// | `CONNECT` | `connect` |
    /// | `EHLO`, `HELO` | `helo` |
    /// | `MAIL` | `mail_from` |
    /// | `RCPT` | `mail_from` (once per `instance`), then `rcpt_to` |
    /// | `DATA`, `END-OF-MESSAGE` | `mail_from` (once per `instance`), then `data_start` (once per `instance`) |
    /// | anything else (`VRFY`, `ETRN`) | none: `DUNNO` |
    ///
    /// A transaction is the run of requests with the same `instance` and
    /// client address (Postfix keeps `instance` for all requests of one
    /// message); a request without `instance` is a transaction of its own.
    pub async fn answer(&mut self, request: &Request) -> Answer {
        match self.try_answer(request).await {
            Ok(answer) => answer,
            Err(e) => Answer::error(self.service, e),
        }
    }

    async fn try_answer(&mut self, request: &Request) -> Result<Answer, RequestError> {
        if request.request_type() != Some("smtpd_access_policy") {
            return Err(RequestError::NotAccessPolicy);
        }
        let state = request
            .protocol_state()
            .ok_or(RequestError::Missing {
                name: "protocol_state",
            })?
            .to_ascii_uppercase();
        let chain = &self.service.chain;
        match state.as_str() {
            "CONNECT" => {
                let mut cx = Context::new(client(request)?);
                let verdict = chain.connect(&mut cx).await;
                Ok(self.finish(verdict, &cx))
            }
            "EHLO" | "HELO" => {
                let mut cx = Context::new(client(request)?);
                let verdict = chain.helo(&mut cx).await;
                Ok(self.finish(verdict, &cx))
            }
            "MAIL" | "RCPT" | "DATA" | "END-OF-MESSAGE" => {
                let service = self.service;
                let tx = self.transaction(request).await?;
                if let Some((verdict, by)) = &tx.mail_refused {
                    let mut answer = finish(service, verdict.clone(), &tx.cx);
                    answer.decided_by = *by;
                    return Ok(answer);
                }
                let verdict = match state.as_str() {
                    "RCPT" => {
                        let path = forward_path(request)?;
                        let mut rcpt = Recipient::new(path);
                        // Headers are per message, but each RCPT answer can
                        // carry one: start from none so a header is prepended once.
                        tx.cx.actions.clear();
                        let v = chain.rcpt_to(&mut tx.cx, &mut rcpt).await;
                        if !v.is_refusal()
                            && let Some(env) = tx.cx.envelope.as_mut()
                        {
                            env.recipients.push(rcpt);
                        }
                        v
                    }
                    "DATA" | "END-OF-MESSAGE" if !tx.data_done => {
                        tx.data_done = true;
                        tx.cx.actions.clear();
                        if let Some(env) = tx.cx.envelope.as_mut()
                            && env.recipients.is_empty()
                            && let Some(r) = request.get_nonempty("recipient")
                        {
                            // A request on a new connection: Postfix names
                            // the recipient when there is exactly one.
                            env.recipients.push(Recipient::new(parse_forward(r)?));
                        }
                        chain.data_start(&mut tx.cx).await
                    }
                    _ => {
                        // MAIL (mail_from ran above) or a second DATA-stage request.
                        tx.cx.actions.clear();
                        Verdict::Continue
                    }
                };
                Ok(finish(service, verdict, &tx.cx))
            }
            _ => Ok(Answer {
                action: PolicyAction::Dunno,
                verdict: None,
                decided_by: None,
                error: None,
            }),
        }
    }

    fn finish(&self, verdict: Verdict, cx: &Context) -> Answer {
        finish(self.service, verdict, cx)
    }

    /// The transaction of this request: the current one when `instance`
    /// matches, else a new one with `mail_from` run.
    async fn transaction(&mut self, request: &Request) -> Result<&mut Transaction, RequestError> {
        let instance = request.instance().unwrap_or_default();
        // Parsed on every request, so a bad one is refused even mid-transaction.
        let client = client(request)?;
        let current = self.transaction.as_ref().is_some_and(|t| {
            !instance.is_empty() && t.instance == instance && t.cx.client.peer == client.peer
        });
        if !current {
            // Drop the old one first so a failure below cannot leave it in place.
            self.transaction = None;
            let mut cx = Context::new(client);
            let mut sender = reverse_path(request)?;
            let mut params = MailParams::default();
            if let Some(size) = request.get_nonempty("size") {
                params.size = Some(size.parse().map_err(|_| RequestError::BadValue {
                    name: "size",
                    reason: "not a number".into(),
                })?);
            }
            let verdict = self
                .service
                .chain
                .mail_from(&mut cx, &mut sender, &params)
                .await;
            let mail_refused = verdict.is_refusal().then_some((verdict, cx.decided_by));
            cx.envelope = Some(Envelope::new(sender, params));
            cx.actions.clear();
            self.transaction = Some(Transaction {
                instance: instance.to_owned(),
                cx,
                mail_refused,
                data_done: false,
            });
        }
        self.transaction
            .as_mut()
            .ok_or(RequestError::Missing { name: "instance" })
    }
}

fn finish(service: &PolicyService, verdict: Verdict, cx: &Context) -> Answer {
    Answer {
        action: PolicyAction::from_verdict(&verdict, &cx.actions, service.defer_style),
        decided_by: if verdict.is_continue() {
            None
        } else {
            cx.decided_by
        },
        verdict: Some(verdict),
        error: None,
    }
}

/// The [`Client`] described by a request's `client_*`, `helo_name`,
/// `sasl_username`, `encryption_protocol` and `server_*` attributes.
///
/// `client_name` is Postfix's verified reverse name (`unknown` when it did
/// not verify) and becomes [`Client::reverse_dns`]; the unverified
/// `reverse_client_name` is not used, since a whitelist by name must not
/// trust a PTR record the forward lookup did not confirm.
pub fn client(request: &Request) -> Result<Client, RequestError> {
    let ip: IpAddr = request
        .get_nonempty("client_address")
        .ok_or(RequestError::Missing {
            name: "client_address",
        })?
        .parse()
        .map_err(|_| RequestError::BadValue {
            name: "client_address",
            reason: "not an IP address".into(),
        })?;
    let port = request
        .get_nonempty("client_port")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let mut client = Client::new(SocketAddr::new(ip, port));
    client.local = request
        .get_nonempty("server_address")
        .and_then(|a| a.parse::<IpAddr>().ok())
        .map(|a| {
            let port = request
                .get_nonempty("server_port")
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(0);
            SocketAddr::new(a, port)
        });
    client.reverse_dns = request
        .get_nonempty("client_name")
        .filter(|n| !n.eq_ignore_ascii_case("unknown"))
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
    client.helo = request.get_nonempty("helo_name").map(str::to_owned);
    client.esmtp = request
        .get("protocol_name")
        .is_some_and(|p| p.eq_ignore_ascii_case("ESMTP"));
    client.tls = request.get_nonempty("encryption_protocol").is_some();
    client.authenticated = request.get_nonempty("sasl_username").map(str::to_owned);
    Ok(client)
}

/// `sender=` as a path: empty is the null sender `<>`.
pub fn reverse_path(request: &Request) -> Result<ReversePath, RequestError> {
    let sender = request
        .get("sender")
        .ok_or(RequestError::Missing { name: "sender" })?;
    if sender.is_empty() {
        return Ok(ReversePath::Null);
    }
    ReversePath::parse_with(&format!("<{sender}>"), ParseOptions::default()).map_err(|e| {
        RequestError::BadValue {
            name: "sender",
            reason: e.to_string(),
        }
    })
}

/// `recipient=` as a path.
pub fn forward_path(request: &Request) -> Result<ForwardPath, RequestError> {
    let rcpt = request
        .get_nonempty("recipient")
        .ok_or(RequestError::Missing { name: "recipient" })?;
    parse_forward(rcpt)
}

fn parse_forward(rcpt: &str) -> Result<ForwardPath, RequestError> {
    ForwardPath::parse_with(&format!("<{rcpt}>"), ParseOptions::default()).map_err(|e| {
        RequestError::BadValue {
            name: "recipient",
            reason: e.to_string(),
        }
    })
}
