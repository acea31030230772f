//! Criterion benches against the `smtp-proto` crate, on the same inputs in
//! the same run: (a) a realistic command mix, (b) DATA decoding of a 100 KiB
//! dot-stuffed message (ours without a copy, the headline, and with one),
//! with a plain `memchr::memmem` scan for `\r\n.\r\n` as the practical
//! upper bound.
//!
//! `cargo bench -p portcullis-smtp --bench smtp -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_core::Client;

#[path = "support/commands.rs"]
mod commands;
#[path = "support/data.rs"]
mod data;

use commands::{command_mix, lines};

fn commands(c: &mut Criterion) {
    let input = command_mix();
    let mut g = c.benchmark_group("commands");
    g.throughput(Throughput::Bytes(input.len() as u64));

    // The headline, like for like with smtp-proto's `Request::parse` below:
    // what the session checks before it allocates anything. Ours: the line
    // refused if it holds control characters or is not UTF-8; the command
    // parsed; the path validated in place against the full RFC 5321 grammar
    // and limits (dot-string or quoted local part ≤ 64, domain as LDH labels
    // ≤ 63 each and ≤ 255, or an address literal; path ≤ 256), borrowed,
    // not copied (`Path::reverse_path`/`forward_path`, the usual form
    // checked while `parse_command` finds the path's end); every ESMTP parameter
    // checked against the advertised extensions and interpreted (SIZE as a
    // number, BODY's value, NOTIFY's list, duplicates). smtp-proto: finds
    // the command by a hash of its name; checks that the address is atext
    // and dots with one '@', a non-empty local part, no leading or doubled
    // dot and ≤ 256 octets, but not the domain's LDH labels, the 64/63/255
    // limits or a dot before the '@'; does not look for control characters;
    // checks UTF-8 on the address only (replacing bad octets); returns the
    // address borrowed (`Cow`) and the parameters as typed values. So we
    // validate more, as the session must.
    g.bench_function("portcullis_validated", |b| {
        b.iter(|| commands::validated(&input))
    });

    // Informative: the same, with the paths parsed into owned core types
    // (`ReversePath`/`ForwardPath`: the local part and domain copied into
    // Strings): what building the session's MailFrom/RcptTo event costs.
    g.bench_function("portcullis_owned_paths", |b| {
        b.iter(|| commands::owned_paths(&input))
    });

    // The parser alone: the path's end found (the usual form of path
    // checked on the way, any other only delimited), the parameters not
    // interpreted. Not comparable with smtp-proto; shows where the time goes.
    g.bench_function("portcullis_parse_command_path_unvalidated", |b| {
        b.iter(|| commands::path_unvalidated(&input))
    });

    let proto_ok = lines(&input)
        .filter(|l| smtp_proto::Request::parse(&mut l.iter()).is_ok())
        .count();
    let ours_ok = lines(&input)
        .filter(|l| portcullis_smtp::parse_command(&l[..l.len() - 2]).is_ok())
        .count();
    let total = lines(&input).count();
    assert_eq!(ours_ok, total);
    eprintln!("commands: {total} lines; smtp-proto parses {proto_ok}, portcullis {ours_ok}");
    g.bench_function("smtp_proto_request_parse", |b| {
        b.iter(|| commands::smtp_proto(&input))
    });

    // The whole session: parsing, validation, path parsing, events,
    // decisions and reply encoding.
    g.bench_function("portcullis_session", |b| {
        let client = Client::new("192.0.2.1:25".parse().unwrap());
        let mut out = Vec::with_capacity(64 * 1024);
        b.iter(|| commands::session(&input, &client, &mut out))
    });
    g.finish();
}

fn data(c: &mut Criterion) {
    let input = data::stuffed_message();
    let mut g = c.benchmark_group("data_100k");
    g.throughput(Throughput::Bytes(input.len() as u64));
    let mut out = Vec::with_capacity(input.len());
    // The workloads and what each side checks: benches/support/data.rs.
    g.bench_function("portcullis_data_decoder_spans", |b| {
        b.iter(|| data::spans(black_box(&input), Some(1000)))
    });
    g.bench_function("portcullis_data_decoder", |b| {
        b.iter(|| data::copied(black_box(&input), &mut out))
    });
    // The headline without the line-length check (LongLines::Accept).
    g.bench_function("portcullis_data_decoder_spans_no_line_limit", |b| {
        b.iter(|| data::spans(black_box(&input), None))
    });
    g.bench_function("smtp_proto_data_receiver", |b| {
        b.iter(|| data::smtp_proto(black_box(&input), &mut out))
    });
    // The floor: find "\r\n.\r\n" and nothing else (no output, no checks).
    g.bench_function("memchr_memmem_scan", |b| {
        let finder = memchr::memmem::Finder::new(b"\r\n.\r\n");
        b.iter(|| finder.find(black_box(&input)))
    });
    g.finish();
}

criterion_group!(benches, commands, data);
criterion_main!(benches);
