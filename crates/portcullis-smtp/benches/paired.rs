//! Paired ratios on a shared, noisy machine (as portcullis-fingerprint's
//! `paired`): ours and smtp-proto run interleaved in short rounds on the
//! same inputs as the criterion bench, so a change of load hits both
//! alike; each round gives a ratio, and the median ratio is reported.
//!
//! `cargo bench -p portcullis-smtp --bench paired`

#![allow(missing_docs, clippy::unwrap_used, clippy::disallowed_methods)] // a bench owns its clock

use std::hint::black_box;
use std::time::Instant;

#[path = "support/commands.rs"]
#[allow(dead_code)] // the session workload is the criterion bench's
mod commands;
#[path = "support/data.rs"]
mod data;

fn time(iters: u32, mut f: impl FnMut() -> usize) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    t.elapsed().as_secs_f64() / f64::from(iters)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `--list`: nothing to list.
    }
    let rounds = 60;

    let mix = commands::command_mix();
    let (mut ours, mut owned, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let iters = 100;
        let v = time(iters, || commands::validated(black_box(&mix)));
        let o = time(iters, || commands::owned_paths(black_box(&mix)));
        let p = time(iters, || commands::smtp_proto(black_box(&mix)));
        ours.push(p / v);
        owned.push(p / o);
        theirs.push(p);
    }
    println!(
        "commands: {} octets; {rounds} rounds; median smtp-proto {:.1} us",
        mix.len(),
        median(&mut theirs) * 1e6
    );
    println!(
        "  smtp-proto time / ours (validated, borrowed paths)   {:.2}",
        median(&mut ours)
    );
    println!(
        "  smtp-proto time / ours (paths then owned)            {:.2}",
        median(&mut owned)
    );

    let msg = data::stuffed_message();
    let mut out = Vec::with_capacity(msg.len());
    let finder = memchr::memmem::Finder::new(b"\r\n.\r\n");
    let (mut spans, mut copied, mut floor, mut proto) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let iters = 300;
        let s = time(iters, || data::spans(black_box(&msg), Some(1000)));
        let c = time(iters, || data::copied(black_box(&msg), &mut out));
        let p = time(iters, || data::smtp_proto(black_box(&msg), &mut out));
        let m = time(iters, || finder.find(black_box(&msg)).unwrap_or(0));
        spans.push(p / s);
        copied.push(p / c);
        floor.push(m / s);
        proto.push(p);
    }
    println!(
        "data: {} octets; {rounds} rounds; median smtp-proto {:.2} us",
        msg.len(),
        median(&mut proto) * 1e6
    );
    println!(
        "  smtp-proto time / ours (spans, no copy)              {:.2}",
        median(&mut spans)
    );
    println!(
        "  smtp-proto time / ours (copied into a Vec)           {:.2}",
        median(&mut copied)
    );
    println!(
        "  memmem scan time / ours (spans): share of the floor  {:.2}",
        median(&mut floor)
    );
}
