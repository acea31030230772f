//! The [`Transport`] seam: hand one message to one next hop for a set of
//! recipients, get one [`Outcome`] per recipient back. Plus
//! [`FakeTransport`], an in-process transport for tests.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;

use portcullis_core::{Envelope, Recipient, Reply, ReversePath, async_trait};

use crate::dsn::DsnKind;

/// What happened to one recipient in one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The next hop accepted responsibility (2xx after DATA).
    Delivered(Reply),
    /// Try again later (4xx, connection failure, DNS SERVFAIL, …).
    Deferred(Reply),
    /// Permanent failure (5xx, null MX, NXDOMAIN): bounce.
    Bounced(Reply),
    /// Another MTA accepted a recipient that asked for `NOTIFY=SUCCESS`
    /// (RFC 3461 §4.1). The queue is done with it as with
    /// [`Outcome::Delivered`]; only the sender's notice differs: when the
    /// next hop announced DSN and took the `NOTIFY` parameter it reports
    /// success itself and none comes from here (`dsn_passed_on`), else a
    /// `relayed` DSN does (RFC 3464 §2.3.3). A relaying transport reports
    /// its other accepted recipients as [`Outcome::Delivered`], where the
    /// difference does not matter; a final delivery is always `Delivered`.
    Relayed {
        /// The next hop's reply after the data.
        reply: Reply,
        /// The next hop took the DSN request over.
        dsn_passed_on: bool,
    },
}

impl Outcome {
    /// The reply behind the outcome.
    pub fn reply(&self) -> &Reply {
        match self {
            Outcome::Delivered(r) | Outcome::Deferred(r) | Outcome::Bounced(r) => r,
            Outcome::Relayed { reply, .. } => reply,
        }
    }

    /// Whether the recipient is done with: [`Outcome::Delivered`] or
    /// [`Outcome::Relayed`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Delivered(_) | Outcome::Relayed { .. })
    }

    /// The success DSN this outcome calls for if the recipient asked
    /// `NOTIFY=SUCCESS`: `delivered` for a final delivery, `relayed` for a
    /// next hop without DSN, none when the next hop took the request over
    /// or the recipient is not done with.
    pub fn success_dsn(&self) -> Option<DsnKind> {
        match self {
            Outcome::Delivered(_) => Some(DsnKind::Success),
            Outcome::Relayed {
                dsn_passed_on: false,
                ..
            } => Some(DsnKind::Relayed),
            _ => None,
        }
    }

    /// Map an SMTP reply: 2xx delivered, 4xx deferred, 5xx bounced
    /// (RFC 5321 §4.2.1; a 3xx where a final reply was due is deferred).
    pub fn from_reply(reply: Reply) -> Self {
        match reply.code() {
            200..=299 => Outcome::Delivered(reply),
            500..=599 => Outcome::Bounced(reply),
            _ => Outcome::Deferred(reply),
        }
    }
}

/// One host to try for a next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HopHost {
    /// Host name (for TLS SNI / certificate checks and logs), or the
    /// address literal's text.
    pub name: String,
    /// Addresses to connect to, in order.
    pub addrs: Vec<IpAddr>,
    /// TCP port (25 for MX delivery).
    pub port: u16,
}

impl HopHost {
    /// A host with its addresses.
    pub fn new(name: impl Into<String>, addrs: Vec<IpAddr>, port: u16) -> Self {
        HopHost {
            name: name.into(),
            addrs,
            port,
        }
    }
}

/// Where to deliver a destination's mail: hosts in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NextHop {
    /// The destination routed (the recipient domain, lower-case A-label).
    pub destination: String,
    /// Hosts in try order (MX preference, randomised among equals).
    pub hosts: Vec<HopHost>,
}

impl NextHop {
    /// A next hop for `destination` through `hosts`.
    pub fn new(destination: impl Into<String>, hosts: Vec<HopHost>) -> Self {
        NextHop {
            destination: destination.into(),
            hosts,
        }
    }
}

/// One delivery attempt: a message, its sender, and the recipients this
/// attempt is for (a subset of the envelope, all routed to the same hop).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DeliveryRequest<'a> {
    /// Where to.
    pub hop: &'a NextHop,
    /// Sender and MAIL parameters (the recipient list is not used).
    pub envelope: &'a Envelope,
    /// The recipients to deliver to in this attempt.
    pub recipients: &'a [&'a Recipient],
    /// The message (header and body, CRLF line ends).
    pub message: &'a [u8],
}

impl<'a> DeliveryRequest<'a> {
    /// Build a request.
    pub fn new(
        hop: &'a NextHop,
        envelope: &'a Envelope,
        recipients: &'a [&'a Recipient],
        message: &'a [u8],
    ) -> Self {
        DeliveryRequest {
            hop,
            envelope,
            recipients,
            message,
        }
    }
}

/// Delivers a message to a next hop.
///
/// Contract: `deliver` returns exactly one [`Outcome`] per entry of
/// `request.recipients`, in the same order. Failures that affect every
/// recipient (connection refused, TLS failure, timeout) are returned as that
/// outcome for each recipient, not as a panic or a shorter vector; callers
/// treat a missing outcome as a deferral. Implementations must be
/// `Send + Sync` and may be called concurrently for different hops.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Attempt delivery; see the trait docs for the contract.
    async fn deliver(&self, request: DeliveryRequest<'_>) -> Vec<Outcome>;
}

/// One delivery a [`FakeTransport`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FakeDelivery {
    /// The destination of the hop.
    pub destination: String,
    /// The sender.
    pub sender: ReversePath,
    /// Recipients of this attempt.
    pub recipients: Vec<Recipient>,
    /// The message bytes.
    pub message: Vec<u8>,
}

/// A scripted in-process transport for tests: records every delivery and
/// answers with queued scripts, or with a per-recipient rule, else delivers.
#[derive(Default)]
pub struct FakeTransport {
    script: Mutex<VecDeque<Vec<Outcome>>>,
    #[allow(clippy::type_complexity)]
    rule: Option<Box<dyn Fn(&Recipient) -> Outcome + Send + Sync>>,
    seen: Mutex<Vec<FakeDelivery>>,
}

impl std::fmt::Debug for FakeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTransport").finish_non_exhaustive()
    }
}

impl FakeTransport {
    /// Delivers everything with `250 2.0.0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answer each recipient with `rule` (when no script is queued).
    pub fn with_rule(rule: impl Fn(&Recipient) -> Outcome + Send + Sync + 'static) -> Self {
        FakeTransport {
            rule: Some(Box::new(rule)),
            ..Self::default()
        }
    }

    /// Queue the outcomes of the next call (used once, in order).
    pub fn push_script(&self, outcomes: Vec<Outcome>) {
        self.script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(outcomes);
    }

    /// Every delivery attempted so far.
    pub fn deliveries(&self) -> Vec<FakeDelivery> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Transport for FakeTransport {
    async fn deliver(&self, request: DeliveryRequest<'_>) -> Vec<Outcome> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(FakeDelivery {
                destination: request.hop.destination.clone(),
                sender: request.envelope.reverse_path.clone(),
                recipients: request.recipients.iter().map(|r| (*r).clone()).collect(),
                message: request.message.to_vec(),
            });
        if let Some(s) = self
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
        {
            return s;
        }
        request
            .recipients
            .iter()
            .map(|r| match &self.rule {
                Some(rule) => rule(r),
                None => Outcome::Delivered(Reply::new(250, (2, 0, 0), "OK")),
            })
            .collect()
    }
}
