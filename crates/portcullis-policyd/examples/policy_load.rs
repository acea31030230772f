//! A small client of the Postfix policy protocol, for comparing policy
//! servers (e.g. `portcullis-relay policyd` and postgrey):
//!
//! ```text
//! policy_load compare ADDR_A ADDR_B DELAY_SECS   # same triplets to both, decisions side by side
//! policy_load bench ADDR CONNECTIONS SECONDS new|known [DELAY_SECS]
//! ```
//!
//! `compare` sends every request to both servers and prints each phase's
//! decisions (defer / pass) and every disagreement. `bench` keeps
//! CONNECTIONS connections busy for SECONDS, one request in flight per
//! connection as Postfix's smtpd processes do, and prints requests/s:
//! `new` makes every request a new triplet (the store's write path),
//! `known` cycles over 1000 triplets that passed greylisting already
//! (needs the server's delay, default 1 s, to prepare them).
//!
//! Requests carry the attributes Postfix 3.7 sends at RCPT.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_policyd::{Decoder, Request};

#[path = "../tests/support/mod.rs"]
mod support;

/// One triplet, by number: client /24 networks, senders and recipients
/// vary so that numbers map to distinct triplets.
fn triplet(n: u64, run: u64) -> (String, String, String) {
    let client = format!("10.{}.{}.{}", (n >> 8) & 0xff, n & 0xff, 1 + (run % 200));
    let sender = format!("sender{n}r{run}@example.org");
    let recipient = format!("user{}@example.net", n % 97);
    (client, sender, recipient)
}

fn request(client: &str, sender: &str, recipient: &str, instance: u64) -> Request {
    support::rcpt(client, sender, recipient, &format!("{instance:x}.5f3a.1"))
}

/// One connection to a policy server.
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    pending: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn {
            stream,
            decoder: Decoder::default(),
            buf: vec![0; 4096],
            pending: Vec::new(),
        }
    }

    /// Send one request, return the `action=` value.
    fn ask(&mut self, req: &Request) -> String {
        self.stream.write_all(&req.to_wire()).unwrap();
        loop {
            if !self.pending.is_empty() {
                let d = self.decoder.decode(&self.pending);
                self.pending.drain(..d.consumed);
                if let Some(item) = d.item {
                    let resp = item.expect("a well-formed response");
                    return resp.get("action").unwrap_or_default().to_owned();
                }
            }
            let n = self.stream.read(&mut self.buf).unwrap();
            assert!(n > 0, "server closed the connection");
            self.pending.extend_from_slice(&self.buf[..n]);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Defer,
    Pass,
    Other,
}

fn classify(action: &str) -> Decision {
    let upper = action.to_ascii_uppercase();
    if upper.starts_with("DEFER") || upper.starts_with('4') {
        Decision::Defer
    } else if upper.starts_with("DUNNO") || upper.starts_with("PREPEND") || upper == "OK" {
        Decision::Pass
    } else {
        Decision::Other
    }
}

fn compare(a: &str, b: &str, delay: u64) {
    let mut ca = Conn::open(a);
    let mut cb = Conn::open(b);
    let mut instance = 0u64;
    let mut disagreements = 0usize;
    let mut phase = |name: &str, reqs: &[(String, String, String)]| {
        let (mut defer, mut pass, mut other) = ([0usize; 2], [0usize; 2], [0usize; 2]);
        for (client, sender, rcpt) in reqs {
            instance += 1;
            let req = request(client, sender, rcpt, instance);
            let (ra, rb) = (ca.ask(&req), cb.ask(&req));
            let (da, db) = (classify(&ra), classify(&rb));
            for (i, d) in [da, db].into_iter().enumerate() {
                match d {
                    Decision::Defer => defer[i] += 1,
                    Decision::Pass => pass[i] += 1,
                    Decision::Other => other[i] += 1,
                }
            }
            if da != db {
                disagreements += 1;
                println!("  DIFFERENT {name}: {client} <{sender}> -> <{rcpt}>: A={ra:?} B={rb:?}");
            }
        }
        println!(
            "{name:<44} A: defer {:>4} pass {:>4} other {:>2} | B: defer {:>4} pass {:>4} other {:>2}",
            defer[0], pass[0], other[0], defer[1], pass[1], other[1]
        );
    };
    let base: Vec<_> = (0..200).map(|n| triplet(n, 0)).collect();
    phase("1 new triplets", &base);
    phase("2 same triplets, before the delay", &base);
    std::thread::sleep(Duration::from_secs(delay + 1));
    phase("3 same triplets, after the delay", &base);
    // Same /24, another host; BATV tag; VERP-style number; +extension.
    let variants: Vec<_> = base
        .iter()
        .enumerate()
        .map(|(i, (c, s, r))| {
            let c = c
                .rsplit_once('.')
                .map(|(net, _)| format!("{net}.250"))
                .unwrap();
            let (local, domain) = s.split_once('@').unwrap();
            let s = match i % 3 {
                0 => format!("prvs=0123456789={local}@{domain}"),
                1 => s.clone(),
                _ => format!("{local}+list-{i}@{domain}"),
            };
            (c, s, r.clone())
        })
        .collect();
    phase("4 variants (other host of the /24, BATV, +ext)", &variants);
    // Clients that passed (steps 3, 4) send from new senders, five rounds.
    // Both servers auto-whitelist a client after 5 passes but count at most
    // one pass per client per hour, so within one run every round defers.
    for round in 0..5 {
        let fresh: Vec<_> = base
            .iter()
            .take(50)
            .map(|(c, _, r)| (c.clone(), format!("fresh{round}@example.com"), r.clone()))
            .collect();
        phase(&format!("5.{round} passed clients, new sender"), &fresh);
        if round < 4 {
            std::thread::sleep(Duration::from_secs(delay + 1));
            phase(&format!("5.{round} ... retried after the delay"), &fresh);
        }
    }
    println!("disagreements: {disagreements}");
}

fn bench(addr: &str, connections: usize, seconds: u64, known: bool, delay: u64) {
    const KNOWN: u64 = 1000;
    // A run number keeps triplets of separate runs apart.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 200;
    if known {
        let mut c = Conn::open(addr);
        for n in 0..KNOWN {
            let (cl, s, r) = triplet(n, run);
            c.ask(&request(&cl, &s, &r, n));
        }
        std::thread::sleep(Duration::from_secs(delay + 1));
        for n in 0..KNOWN {
            let (cl, s, r) = triplet(n, run);
            let a = c.ask(&request(&cl, &s, &r, n));
            assert_eq!(classify(&a), Decision::Pass, "prepared triplet {n}: {a}");
        }
    }
    let next = Arc::new(AtomicU64::new(if known { 0 } else { 1 << 20 }));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (next, stop, addr) = (next.clone(), stop.clone(), addr.to_owned());
            std::thread::spawn(move || {
                let mut c = Conn::open(&addr);
                let mut done = 0u64;
                let mut decisions = [0u64; 3];
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let n = if known { i % KNOWN } else { i };
                    let (cl, s, r) = triplet(n, run);
                    let a = c.ask(&request(&cl, &s, &r, i));
                    decisions[classify(&a) as usize] += 1;
                    done += 1;
                }
                (done, decisions)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut decisions = [0u64; 3];
    for t in threads {
        let (n, d) = t.join().unwrap();
        total += n;
        for i in 0..3 {
            decisions[i] += d[i];
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{addr} {} connections={connections}: {total} requests in {secs:.1} s = {:.0} req/s (defer {}, pass {}, other {})",
        if known { "known" } else { "new" },
        total as f64 / secs,
        decisions[0],
        decisions[1],
        decisions[2]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    match arg(0) {
        "compare" => compare(arg(1), arg(2), arg(3).parse().unwrap_or(2)),
        "bench" => bench(
            arg(1),
            arg(2).parse().unwrap_or(8),
            arg(3).parse().unwrap_or(5),
            arg(4) == "known",
            arg(5).parse().unwrap_or(1),
        ),
        _ => {
            eprintln!(
                "usage: policy_load compare ADDR_A ADDR_B DELAY_SECS\n       policy_load bench ADDR CONNECTIONS SECONDS new|known [DELAY_SECS]"
            );
            std::process::exit(2);
        }
    }
}
