//! Prints tags and SRS addresses made by this crate, so that
//! `tests/gen-vectors.sh` can have Exim's `${prvscheck}` and postsrsd check
//! them. Reads tab-separated lines on stdin:
//!
//! - `prvs <unix_time> <key> <secret> <address>` → prints the tagged address
//! - `srs <unix_time> <secret> <forwarder> <address>` → prints the SRS address
//!
//! Bad input lines print `ERROR <reason>`.

use std::io::{BufRead, Write};
use std::time::{Duration, UNIX_EPOCH};

use portcullis_batv::{KeyRing, Prvs, Srs};
use portcullis_core::Address;

fn line(fields: &[&str]) -> Result<String, String> {
    let at = |s: &str| -> Result<_, String> {
        let secs: u64 = s.parse().map_err(|e| format!("time: {e}"))?;
        Ok(UNIX_EPOCH + Duration::from_secs(secs))
    };
    match fields {
        ["prvs", time, key, secret, address] => {
            let key: u8 = key.parse().map_err(|e| format!("key: {e}"))?;
            let ring = KeyRing::new(key, secret.as_bytes()).map_err(|e| e.to_string())?;
            let address = Address::parse(address).map_err(|e| e.to_string())?;
            let tagged = Prvs::new(ring)
                .sign(&address, at(time)?)
                .map_err(|e| e.to_string())?;
            Ok(tagged.to_string())
        }
        ["srs", time, secret, forwarder, address] => {
            let srs = Srs::new(secret.as_bytes()).map_err(|e| e.to_string())?;
            let (local, domain) = address.rsplit_once('@').ok_or("no @")?;
            let local = srs
                .forward_local(local, domain, at(time)?)
                .map_err(|e| e.to_string())?;
            Ok(format!("{local}@{forwarder}"))
        }
        _ => Err(format!("cannot read {fields:?}")),
    }
}

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for input in stdin.lock().lines().map_while(Result::ok) {
        let fields: Vec<&str> = input.split('\t').collect();
        let result = line(&fields).unwrap_or_else(|e| format!("ERROR {e}"));
        if writeln!(out, "{result}").is_err() {
            return;
        }
    }
}
