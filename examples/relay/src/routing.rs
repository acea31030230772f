//! Where remote mail goes: a per-domain route, else the smarthost, else the
//! destination's MX hosts (the queue's `MxRouter`). Configured hosts are
//! resolved at each delivery, so a changed address is picked up.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use portcullis_core::{Domain, Reply};
use portcullis_queue::{HopHost, NextHop, Outcome, Router as QueueRouter, Transport};

use crate::config::HostPort;

/// The relay's routing table and its transport.
pub(crate) struct Router {
    routes: Vec<(Domain, HostPort)>,
    smarthost: Option<HostPort>,
    /// MX routing for everything not configured (`None`: no resolver, defer).
    mx: Option<Arc<dyn QueueRouter>>,
    transport: Arc<dyn Transport>,
    /// `[delivery] tls = "required"`: the opportunistic transport a message
    /// marked `TLS-Required: No` (RFC 8689 §4.2.2) goes through instead.
    tls_optional: Option<Arc<dyn Transport>>,
    /// Our own name: as a backup MX we must not forward to ourselves.
    hostname: String,
}

impl Router {
    pub(crate) fn new(
        routes: Vec<(Domain, HostPort)>,
        smarthost: Option<HostPort>,
        mx: Option<Arc<dyn QueueRouter>>,
        transport: Arc<dyn Transport>,
        hostname: String,
    ) -> Self {
        Router {
            routes,
            smarthost,
            mx,
            transport,
            tls_optional: None,
            hostname,
        }
    }

    /// Send messages marked `TLS-Required: No` through `transport`.
    pub(crate) fn with_tls_optional(mut self, transport: Option<Arc<dyn Transport>>) -> Self {
        self.tls_optional = transport;
        self
    }

    /// The transport for a message: the opportunistic one when the sender
    /// marked it `TLS-Required: No` and there is one, else the configured.
    pub(crate) fn transport_for(&self, tls_optional: bool) -> &dyn Transport {
        match (&self.tls_optional, tls_optional) {
            (Some(t), true) => t.as_ref(),
            _ => self.transport.as_ref(),
        }
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
    /// every recipient when there is none.
    pub(crate) async fn next_hop(
        &self,
        destination: &str,
        now: SystemTime,
    ) -> Result<NextHop, Outcome> {
        if let Some(hp) = self.configured(destination) {
            let addrs = resolve_host(&hp.host, hp.port).await?;
            return Ok(NextHop::new(
                destination,
                vec![HopHost::new(hp.host.clone(), addrs, hp.port)],
            ));
        }
        let Some(mx) = &self.mx else {
            return Err(Outcome::Deferred(Reply::new(
                451,
                (4, 4, 3),
                format!("No route to {destination}: no DNS resolver"),
            )));
        };
        let hop = mx.route(destination, now).await.map_err(|e| e.outcome())?;
        // RFC 5321 §5.1: a host that finds its own name among the MX hosts
        // discards it and every less preferred one (hosts are in order).
        let own = hop.hosts.iter().position(|h| {
            h.name
                .trim_end_matches('.')
                .eq_ignore_ascii_case(&self.hostname)
        });
        match own {
            Some(0) => Err(Outcome::Deferred(Reply::new(
                451,
                (4, 4, 6),
                format!("Mail for {destination} loops back to myself (primary MX unreachable)"),
            ))),
            Some(n) => {
                let mut hosts = hop.hosts.clone();
                hosts.truncate(n);
                Ok(NextHop::new(hop.destination.clone(), hosts))
            }
            None => Ok(hop),
        }
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
