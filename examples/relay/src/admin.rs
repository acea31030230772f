//! The admin interface: HTTP with JSON replies on `[admin] listen`
//! (loopback unless `allow_non_loopback = true`), every request carrying
//! `Authorization: Bearer <token>` (compared in constant time). The relay
//! refuses to start with `[admin] listen` and no token.
//!
//! | Method | Path                                   | What                                   |
//! |--------|----------------------------------------|----------------------------------------|
//! | GET    | `/queue`                               | every spooled message                  |
//! | GET    | `/queue/ID`                            | one message                            |
//! | POST   | `/queue/ID/hold`                       | hold it                                |
//! | POST   | `/queue/ID/release`                    | release a held or quarantined message  |
//! | POST   | `/queue/ID/deliver`                    | deliver now (ignore the backoff)       |
//! | POST   | `/queue/ID/delete`, `DELETE /queue/ID` | delete without a DSN                   |
//! | GET    | `/quarantine`                          | quarantined messages                   |
//! | POST   | `/quarantine/ID/release`               | release one                            |
//! | GET    | `/accounts/KIND/NAME`                  | counters and lock record of an account |
//! | POST   | `/accounts/KIND/NAME/unlock[?forget]`  | unlock (`forget`: clear the history)   |
//! | GET    | `/report`                              | the policy report (counters, locks, violations) |
//!
//! `KIND` is `user`, `domain`, `network` or `client` (a client network,
//! e.g. `client/192.0.2.0/24`: the name is the rest of the path).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::Clock;
use portcullis_policy::{Account, AccountKind, LockRecord, LockState};
use portcullis_queue::{MessageInfo, QueueId, SpoolError};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::delivery::Deliverer;
use crate::http::{self, Request, Response};

/// Shortest token accepted.
const MIN_TOKEN_LEN: usize = 16;

/// `[admin]` as written: off unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AdminSection {
    /// e.g. `127.0.0.1:9426`.
    pub(crate) listen: Option<String>,
    /// The bearer token (at least 16 characters). Required with `listen`.
    pub(crate) token: Option<String>,
    /// Allow a non-loopback `listen` address (the interface is plain HTTP).
    pub(crate) allow_non_loopback: bool,
}

/// The checked `[admin]` settings.
#[derive(Clone)]
pub(crate) struct AdminSettings {
    pub(crate) listen: SocketAddr,
    pub(crate) token: String,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("listen", &self.listen)
            .field("token", &"(hidden)")
            .finish()
    }
}

impl AdminSection {
    /// The checked settings, if admin is on. Errors are (key, message).
    pub(crate) fn check(&self) -> Result<Option<AdminSettings>, (String, String)> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        let err = |k: &str, m: String| (format!("admin.{k}"), m);
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| err("listen", format!("{listen:?} is not an address:port")))?;
        if !listen.ip().is_loopback() && !self.allow_non_loopback {
            return Err(err(
                "listen",
                "not a loopback address (set allow_non_loopback = true to mean it)".into(),
            ));
        }
        // Header values arrive trimmed: compare with the trimmed token.
        let token = self.token.as_deref().unwrap_or_default().trim().to_owned();
        if token.len() < MIN_TOKEN_LEN {
            return Err(err(
                "token",
                format!("required with admin.listen, at least {MIN_TOKEN_LEN} characters"),
            ));
        }
        Ok(Some(AdminSettings { listen, token }))
    }
}

/// What the admin handlers work on.
pub(crate) struct Admin {
    pub(crate) token: String,
    pub(crate) deliverer: Arc<Deliverer>,
    pub(crate) policy: Arc<crate::reload::LivePolicy>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Whether `req` carries the token (constant time over the token bytes).
fn authorized(req: &Request, token: &str) -> bool {
    let Some(given) = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

/// Serve the admin interface on `socket` until `stop` turns true.
pub(crate) async fn serve(socket: TcpListener, admin: Arc<Admin>, stop: watch::Receiver<bool>) {
    http::serve(socket, stop, move |req| {
        let admin = admin.clone();
        async move {
            if !authorized(&req, &admin.token) {
                return Response::json(401, &json!({"error": "missing or wrong token"}));
            }
            tracing::info!(method = %req.method, path = %req.path, "admin request");
            // Spool operations fsync: off the runtime threads.
            match tokio::task::spawn_blocking(move || handle(&admin, &req)).await {
                Ok(r) => r,
                Err(_) => Response::json(500, &json!({"error": "admin task failed"})),
            }
        }
    })
    .await;
}

fn not_found() -> Response {
    Response::json(404, &json!({"error": "no such resource"}))
}

fn spool_error(e: &SpoolError) -> Response {
    let status = if matches!(e, SpoolError::NotFound(_)) {
        404
    } else {
        500
    };
    Response::json(status, &json!({"error": e.to_string()}))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn message_json(info: &MessageInfo) -> Value {
    let recipients: Vec<Value> = info
        .envelope
        .recipients
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let st = info.state.recipients.get(i);
            json!({
                "address": r.path.to_string(),
                "status": st.map(|s| serde_json::to_value(s.status).unwrap_or(Value::Null)),
                "attempts": st.map(|s| s.attempts),
                "next_attempt": st.and_then(|s| s.next_attempt).map(unix),
                "last_reply": st.and_then(|s| s.last_reply.as_ref()).map(ToString::to_string),
            })
        })
        .collect();
    json!({
        "id": info.id.to_string(),
        "arrival": unix(info.arrival),
        "sender": info.envelope.reverse_path.to_string(),
        "size": info.size,
        "hold": serde_json::to_value(&info.state.hold).unwrap_or(Value::Null),
        "recipients": recipients,
    })
}

fn lock_json(r: &LockRecord, now: SystemTime) -> Value {
    let state = match r.state {
        LockState::Unlocked => json!("unlocked"),
        LockState::Until(t) => json!({"until": unix(t)}),
        LockState::Permanent => json!("permanent"),
    };
    json!({
        "in_effect": r.in_effect(now),
        "times_locked": r.times_locked,
        "state": state,
        "reason": r.reason,
        "since": unix(r.since),
    })
}

fn account_kind(s: &str) -> Option<AccountKind> {
    match s {
        "user" => Some(AccountKind::User),
        "domain" => Some(AccountKind::Domain),
        "network" => Some(AccountKind::Network),
        "client" => Some(AccountKind::Client),
        _ => None,
    }
}

fn handle(admin: &Admin, req: &Request) -> Response {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let method = req.method.as_str();
    let spool = admin.deliverer.spool();
    let list = |v: Vec<MessageInfo>| {
        Response::json(
            200,
            &Value::Array(v.iter().map(message_json).collect::<Vec<_>>()),
        )
    };
    let done = |id: QueueId, op: &str, r: Result<(), SpoolError>| match r {
        Ok(()) => Response::json(200, &json!({"id": id.to_string(), "done": op})),
        Err(e) => spool_error(&e),
    };
    match (method, segments.as_slice()) {
        ("GET", ["queue"]) => list(spool.list()),
        ("GET", ["quarantine"]) => list(spool.quarantined()),
        ("GET", ["queue", id]) => match id.parse::<QueueId>() {
            Ok(id) => match spool.inspect(id) {
                Ok(info) => Response::json(200, &message_json(&info)),
                Err(e) => spool_error(&e),
            },
            Err(_) => not_found(),
        },
        ("DELETE", ["queue", id]) | ("POST", ["queue", id, "delete"]) => match id.parse() {
            Ok(id) => done(id, "delete", admin.deliverer.admin_delete(id)),
            Err(_) => not_found(),
        },
        ("POST", ["queue" | "quarantine", id, op]) => {
            let Ok(id) = id.parse::<QueueId>() else {
                return not_found();
            };
            let d = &admin.deliverer;
            match (segments[0], *op) {
                ("queue", "hold") => done(id, "hold", d.admin_hold(id)),
                ("queue", "deliver") => done(id, "deliver", d.admin_deliver_now(id)),
                (_, "release") => done(id, "release", d.admin_release(id)),
                _ => not_found(),
            }
        }
        ("GET", ["report"]) => report(admin),
        (_, ["accounts", kind, rest @ ..]) if !rest.is_empty() => {
            let Some(kind) = account_kind(kind) else {
                return not_found();
            };
            let unlock = rest.last() == Some(&"unlock") && rest.len() > 1;
            let name_parts = if unlock {
                &rest[..rest.len() - 1]
            } else {
                rest
            };
            let account = Account::new(kind, &name_parts.join("/"));
            match (method, unlock) {
                ("POST", true) => {
                    let forget = req.query_param("forget").is_some();
                    match admin.policy.policy().unlock(&account, forget) {
                        Ok(()) => Response::json(
                            200,
                            &json!({"account": account.key(), "done": "unlock", "forget_history": forget}),
                        ),
                        Err(e) => Response::json(500, &json!({"error": e.to_string()})),
                    }
                }
                ("GET", false) => account_json(admin, &account),
                _ => Response::json(405, &json!({"error": "method not allowed"})),
            }
        }
        _ => not_found(),
    }
}

fn account_json(admin: &Admin, account: &Account) -> Response {
    let now = admin.clock.now();
    let lock = match admin.policy.policy().lock_record(account) {
        Ok(l) => l,
        Err(e) => return Response::json(500, &json!({"error": e.to_string()})),
    };
    let report = match admin.policy.policy().report(now) {
        Ok(r) => r,
        Err(e) => return Response::json(500, &json!({"error": e.to_string()})),
    };
    // Counter keys are `<counter>:<account key>`; a distinct-set key may
    // carry more after it.
    let key = account.key();
    let counters: Vec<Value> = report
        .counters
        .iter()
        .filter(|c| {
            c.key
                .split_once(':')
                .is_some_and(|(_, k)| k == key || k.starts_with(&format!("{key}:")))
        })
        .map(|c| json!({"key": c.key, "window_secs": c.window.as_secs(), "count": c.count}))
        .collect();
    let violations: Vec<Value> = report
        .violations
        .iter()
        .filter(|v| v.subject == key)
        .map(|v| json!({"at": unix(v.at), "rule": format!("{:?}", v.rule), "code": v.code, "detail": v.detail}))
        .collect();
    Response::json(
        200,
        &json!({
            "account": key,
            "lock": lock.as_ref().map(|l| lock_json(l, now)),
            "counters": counters,
            "violations": violations,
        }),
    )
}

fn report(admin: &Admin) -> Response {
    let now = admin.clock.now();
    match admin.policy.policy().report(now) {
        Ok(r) => Response::json(
            200,
            &json!({
                "counters": r.counters.iter().map(|c| json!({"key": c.key, "window_secs": c.window.as_secs(), "count": c.count})).collect::<Vec<_>>(),
                "locks": r.locks.iter().map(|l| json!({"key": l.key, "record": lock_json(&l.record, now)})).collect::<Vec<_>>(),
                "violations": r.violations.iter().map(|v| json!({"at": unix(v.at), "subject": v.subject, "rule": format!("{:?}", v.rule), "code": v.code, "detail": v.detail})).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => Response::json(500, &json!({"error": e.to_string()})),
    }
}

/// `portcullis-relay admin …`: the operations, as command-line words.
#[derive(Debug, clap::Args)]
pub(crate) struct CliArgs {
    /// queue | quarantine | show ID | hold ID | release ID | deliver ID |
    /// delete ID | account KIND NAME | unlock KIND NAME \[forget\] | report
    #[arg(required = true, num_args = 1..)]
    words: Vec<String>,
}

fn cli_request(words: &[String]) -> Option<(&'static str, String)> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    Some(match w.as_slice() {
        ["queue"] => ("GET", "/queue".into()),
        ["quarantine"] => ("GET", "/quarantine".into()),
        ["report"] => ("GET", "/report".into()),
        ["show", id] => ("GET", format!("/queue/{id}")),
        [op @ ("hold" | "release" | "deliver" | "delete"), id] => {
            ("POST", format!("/queue/{id}/{op}"))
        }
        ["account", kind, name] => ("GET", format!("/accounts/{kind}/{name}")),
        ["unlock", kind, name] => ("POST", format!("/accounts/{kind}/{name}/unlock")),
        ["unlock", kind, name, "forget"] => {
            ("POST", format!("/accounts/{kind}/{name}/unlock?forget"))
        }
        _ => return None,
    })
}

/// Run one admin command against the running relay's admin endpoint.
pub(crate) fn cli(settings: &crate::config::Settings, args: &CliArgs) -> ExitCode {
    let Some(admin) = &settings.admin else {
        eprintln!("portcullis-relay: no [admin] listen/token in the configuration");
        return ExitCode::from(2);
    };
    let Some((method, path)) = cli_request(&args.words) else {
        eprintln!("portcullis-relay: unknown admin command {:?}", args.words);
        return ExitCode::from(2);
    };
    match call(admin, method, &path) {
        Ok((status, body)) => {
            print!("{body}");
            if status == 200 {
                ExitCode::SUCCESS
            } else {
                eprintln!("portcullis-relay: admin endpoint answered {status}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("portcullis-relay: admin endpoint {}: {e}", admin.listen);
            ExitCode::FAILURE
        }
    }
}

fn call(admin: &AdminSettings, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&admin.listen, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        admin.listen, admin.token
    )?;
    let mut response = String::new();
    tcp.take(16 * 1024 * 1024).read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(listen: &str, token: Option<&str>) -> AdminSection {
        AdminSection {
            listen: Some(listen.into()),
            token: token.map(Into::into),
            allow_non_loopback: false,
        }
    }

    #[test]
    fn admin_needs_a_token_and_loopback() {
        assert!(AdminSection::default().check().unwrap().is_none());
        let e = section("127.0.0.1:9426", None).check().unwrap_err();
        assert_eq!(e.0, "admin.token");
        let e = section("127.0.0.1:9426", Some("short"))
            .check()
            .unwrap_err();
        assert_eq!(e.0, "admin.token");
        let e = section("0.0.0.0:9426", Some("0123456789abcdef"))
            .check()
            .unwrap_err();
        assert_eq!(e.0, "admin.listen");
        let mut open = section("0.0.0.0:9426", Some("0123456789abcdef"));
        open.allow_non_loopback = true;
        assert!(open.check().unwrap().is_some());
        assert!(
            section("[::1]:9426", Some("0123456789abcdef"))
                .check()
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn token_must_match_exactly() {
        let req = |auth: Option<&str>| Request {
            method: "GET".into(),
            path: "/queue".into(),
            query: String::new(),
            headers: auth
                .map(|a| vec![("authorization".to_owned(), a.to_owned())])
                .unwrap_or_default(),
            body: Vec::new(),
        };
        let token = "0123456789abcdef";
        assert!(authorized(&req(Some("Bearer 0123456789abcdef")), token));
        assert!(!authorized(&req(Some("Bearer 0123456789abcde")), token));
        assert!(!authorized(&req(Some("Bearer 0123456789abcdefX")), token));
        assert!(!authorized(&req(Some("0123456789abcdef")), token));
        assert!(!authorized(&req(None), token));
    }

    #[test]
    fn cli_words_map_to_requests() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            cli_request(&w("hold 00000000000000ab")),
            Some(("POST", "/queue/00000000000000ab/hold".into()))
        );
        assert_eq!(
            cli_request(&w("unlock user a@b.example")),
            Some(("POST", "/accounts/user/a@b.example/unlock".into()))
        );
        assert_eq!(
            cli_request(&w("unlock user a@b.example forget")),
            Some(("POST", "/accounts/user/a@b.example/unlock?forget".into()))
        );
        assert_eq!(cli_request(&w("unlock user a@b.example nope")), None);
        assert_eq!(cli_request(&w("frobnicate")), None);
    }
}
