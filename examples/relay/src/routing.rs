//! Where remote mail goes: a per-domain route, else the smarthost, else the
//! destination's MX hosts.

use std::net::IpAddr;
use std::sync::Arc;

use portcullis_core::{Domain, Reply};
use portcullis_queue::{HopHost, NextHop, Outcome, Transport};

use crate::config::HostPort;

/// Resolves MX records for a destination (the queue's resolver in the relay,
/// a fixed answer in tests).
#[portcullis_core::async_trait]
pub(crate) trait MxLookup: Send + Sync {
    async fn next_hop(&self, destination: &str, port: u16) -> Result<NextHop, Outcome>;
}

/// The relay's routing table and its transport.
pub(crate) struct Router {
    routes: Vec<(Domain, HostPort)>,
    smarthost: Option<HostPort>,
    mx_port: u16,
    mx: Arc<dyn MxLookup>,
    transport: Arc<dyn Transport>,
}

impl Router {
    pub(crate) fn new(
        routes: Vec<(Domain, HostPort)>,
        smarthost: Option<HostPort>,
        mx_port: u16,
        mx: Arc<dyn MxLookup>,
        transport: Arc<dyn Transport>,
    ) -> Self {
        Router {
            routes,
            smarthost,
            mx_port,
            mx,
            transport,
        }
    }

    pub(crate) fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    /// The configured host for `destination`, if any (route, then smarthost).
    pub(crate) fn configured(&self, destination: &str) -> Option<&HostPort> {
        let dom = Domain::parse(destination).ok();
        self.routes
            .iter()
            .find(|(d, _)| Some(d) == dom.as_ref())
            .map(|(_, hp)| hp)
            .or(self.smarthost.as_ref())
    }

    /// The next hop for a destination domain. `Err` is the outcome for
    /// every recipient when there is none (DNS failure: deferred).
    pub(crate) async fn next_hop(&self, destination: &str) -> Result<NextHop, Outcome> {
        if let Some(hp) = self.configured(destination) {
            let addrs = resolve_host(&hp.host, hp.port).await?;
            return Ok(NextHop::new(
                destination,
                vec![HopHost::new(hp.host.clone(), addrs, hp.port)],
            ));
        }
        self.mx.next_hop(destination, self.mx_port).await
    }
}

/// A host name or IP literal to addresses.
pub(crate) async fn resolve_host(host: &str, port: u16) -> Result<Vec<IpAddr>, Outcome> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let v: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            if v.is_empty() {
                Err(Outcome::Deferred(Reply::new(
                    451,
                    (4, 4, 4),
                    format!("No address for {host}"),
                )))
            } else {
                Ok(v)
            }
        }
        Err(e) => Err(Outcome::Deferred(Reply::new(
            451,
            (4, 4, 3),
            format!("Cannot resolve {host}: {e}"),
        ))),
    }
}

/// MX lookup until the queue crate's resolver is wired: every destination
/// without a route is deferred (and retried), never lost.
pub(crate) struct NoMx;

#[portcullis_core::async_trait]
impl MxLookup for NoMx {
    async fn next_hop(&self, destination: &str, _port: u16) -> Result<NextHop, Outcome> {
        Err(Outcome::Deferred(Reply::new(
            451,
            (4, 4, 3),
            format!("No route to {destination} (MX lookup not available)"),
        )))
    }
}

/// Remote transport until the queue crate's SMTP client is wired: defers.
pub(crate) struct NoTransport;

#[portcullis_core::async_trait]
impl Transport for NoTransport {
    async fn deliver(&self, request: portcullis_queue::DeliveryRequest<'_>) -> Vec<Outcome> {
        vec![
            Outcome::Deferred(Reply::new(451, (4, 4, 0), "Remote delivery not available"));
            request.recipients.len()
        ]
    }
}
