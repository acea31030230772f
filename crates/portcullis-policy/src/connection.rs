//! Connection control on one relay: simultaneous sessions per client and
//! in total ([`SessionLimiter`]), and a [`LoadGate`] fed with the server's
//! load. Both are local, in-process state: a session count shared through
//! a network store would outlive crashed relays.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use portcullis_core::{Reply, mask_ip};

/// Caps on simultaneous sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions at once from one client network.
    pub per_client: usize,
    /// Sessions at once in total.
    pub total: usize,
    /// Prefix lengths that group clients (e.g. 32 and 128: per address).
    pub v4_prefix: u8,
    /// IPv6 prefix length.
    pub v6_prefix: u8,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            per_client: 10,
            total: 1000,
            v4_prefix: 32,
            v6_prefix: 64,
        }
    }
}

#[derive(Debug, Default)]
struct SessionCounts {
    per_client: DashMap<IpAddr, usize>,
    total: AtomicUsize,
}

/// Counts open sessions; [`try_open`](SessionLimiter::try_open) hands out a
/// [`SessionPermit`] that the server keeps for the life of the connection.
#[derive(Debug, Clone, Default)]
pub struct SessionLimiter {
    limits: SessionLimits,
    counts: Arc<SessionCounts>,
}

/// One open session; dropping it closes the session's slot.
#[must_use = "the session slot is released when the permit is dropped"]
#[derive(Debug)]
pub struct SessionPermit {
    counts: Arc<SessionCounts>,
    network: IpAddr,
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
        if let dashmap::Entry::Occupied(mut e) = self.counts.per_client.entry(self.network) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

impl SessionLimiter {
    /// A limiter with these caps.
    pub fn new(limits: SessionLimits) -> Self {
        SessionLimiter {
            limits,
            counts: Arc::default(),
        }
    }

    /// Open a session for `ip`, or the `421` to send when a cap is reached:
    /// `421 4.7.0` for too many from this client, `421 4.3.2` in total.
    pub fn try_open(&self, ip: IpAddr) -> Result<SessionPermit, Reply> {
        let total = self.counts.total.fetch_add(1, Ordering::AcqRel);
        if total >= self.limits.total {
            self.counts.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Reply::new(
                421,
                (4, 3, 2),
                "Too many connections, try again later",
            ));
        }
        let network = mask_ip(ip, self.limits.v4_prefix, self.limits.v6_prefix);
        let mut slot = self.counts.per_client.entry(network).or_insert(0);
        if *slot >= self.limits.per_client {
            drop(slot);
            self.counts.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Reply::new(
                421,
                (4, 7, 0),
                "Too many connections from your host, try again later",
            ));
        }
        *slot += 1;
        Ok(SessionPermit {
            counts: self.counts.clone(),
            network,
        })
    }

    /// Sessions open now (total).
    pub fn open_sessions(&self) -> usize {
        self.counts.total.load(Ordering::Acquire)
    }

    /// Sessions open now from the network of `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let network = mask_ip(ip, self.limits.v4_prefix, self.limits.v6_prefix);
        self.counts.per_client.get(&network).map_or(0, |c| *c)
    }
}

/// The server's current load, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Open sessions.
    pub sessions: u64,
    /// Messages waiting in the queue.
    pub queue: u64,
}

/// When the gate closes and opens again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadThresholds {
    /// Close at this many sessions.
    pub max_sessions: u64,
    /// Close at this queue size.
    pub max_queue: u64,
    /// Reopen only once both are below this percentage of their maximum
    /// (hysteresis, so the gate does not flap at the threshold).
    pub reopen_percent: u8,
}

impl Default for LoadThresholds {
    fn default() -> Self {
        LoadThresholds {
            max_sessions: 1000,
            max_queue: 100_000,
            reopen_percent: 90,
        }
    }
}

/// A connect-time gate that follows the load: closed (every new client
/// gets `421 4.3.2`) from the moment sessions or queue reach their maximum
/// until both fall below `reopen_percent` of it. A blocked client is
/// always refused with `554 5.7.1` (RFC 5321 §3.1: a 554 greeting).
#[derive(Debug)]
pub struct LoadGate {
    thresholds: LoadThresholds,
    sessions: AtomicU64,
    queue: AtomicU64,
    closed: AtomicBool,
}

/// What the gate says to a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// Serve the client.
    Open,
    /// `421 4.3.2`: overloaded, come back later.
    Busy(Reply),
    /// `554 5.7.1`: this client is blocked.
    Refused(Reply),
}

impl LoadGate {
    /// An open gate.
    pub fn new(thresholds: LoadThresholds) -> Self {
        LoadGate {
            thresholds,
            sessions: AtomicU64::new(0),
            queue: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Report the current load; the gate closes or reopens accordingly.
    pub fn update(&self, load: Load) {
        self.sessions.store(load.sessions, Ordering::Release);
        self.queue.store(load.queue, Ordering::Release);
        let t = &self.thresholds;
        let over = load.sessions >= t.max_sessions || load.queue >= t.max_queue;
        let pct = u64::from(t.reopen_percent.min(100));
        let under = load.sessions.saturating_mul(100) < t.max_sessions.saturating_mul(pct)
            && load.queue.saturating_mul(100) < t.max_queue.saturating_mul(pct);
        if over {
            self.closed.store(true, Ordering::Release);
        } else if under {
            self.closed.store(false, Ordering::Release);
        }
    }

    /// The last reported load.
    pub fn load(&self) -> Load {
        Load {
            sessions: self.sessions.load(Ordering::Acquire),
            queue: self.queue.load(Ordering::Acquire),
        }
    }

    /// Whether new clients are being turned away.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Decide for a new client; `blocked` says whether policy blocks it.
    pub fn admit(&self, blocked: bool) -> GateDecision {
        if blocked {
            GateDecision::Refused(Reply::new(554, (5, 7, 1), "Access denied"))
        } else if self.is_closed() {
            GateDecision::Busy(Reply::new(421, (4, 3, 2), "Server busy, try again later"))
        } else {
            GateDecision::Open
        }
    }
}

impl Default for LoadGate {
    fn default() -> Self {
        LoadGate::new(LoadThresholds::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_caps_and_release() {
        let limiter = SessionLimiter::new(SessionLimits {
            per_client: 2,
            total: 3,
            v4_prefix: 24,
            v6_prefix: 64,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a2: IpAddr = "192.0.2.200".parse().unwrap();
        let b: IpAddr = "198.51.100.1".parse().unwrap();
        let p1 = limiter.try_open(a).unwrap();
        let _p2 = limiter.try_open(a2).unwrap();
        let refused = limiter.try_open(a).unwrap_err();
        assert_eq!(
            (refused.code(), refused.enhanced().unwrap().to_string()),
            (421, "4.7.0".into())
        );
        let _p3 = limiter.try_open(b).unwrap();
        let full = limiter.try_open(b).unwrap_err();
        assert_eq!(full.enhanced().unwrap().to_string(), "4.3.2");
        assert_eq!((limiter.open_sessions(), limiter.open_from(a)), (3, 2));
        drop(p1);
        assert_eq!((limiter.open_sessions(), limiter.open_from(a)), (2, 1));
        let _p4 = limiter.try_open(a).unwrap();
    }

    #[test]
    fn gate_closes_and_reopens_with_hysteresis() {
        let gate = LoadGate::new(LoadThresholds {
            max_sessions: 100,
            max_queue: 1000,
            reopen_percent: 90,
        });
        assert_eq!(gate.admit(false), GateDecision::Open);
        gate.update(Load {
            sessions: 100,
            queue: 0,
        });
        let GateDecision::Busy(r) = gate.admit(false) else {
            panic!("should be busy")
        };
        assert_eq!(
            r.to_wire(true),
            b"421 4.3.2 Server busy, try again later\r\n"
        );
        gate.update(Load {
            sessions: 95,
            queue: 0,
        });
        assert!(gate.is_closed(), "95 is not below 90% of 100");
        gate.update(Load {
            sessions: 89,
            queue: 900,
        });
        assert!(gate.is_closed(), "the queue is at 90% of its maximum");
        gate.update(Load {
            sessions: 89,
            queue: 899,
        });
        assert_eq!(gate.admit(false), GateDecision::Open);
        gate.update(Load {
            sessions: 0,
            queue: 1000,
        });
        assert!(gate.is_closed(), "a full queue closes the gate too");
        let GateDecision::Refused(r) = gate.admit(true) else {
            panic!("blocked")
        };
        assert_eq!(
            (r.code(), r.enhanced().unwrap().to_string()),
            (554, "5.7.1".into())
        );
    }
}
