//! `portcullis-relay`: the reference mail relay built from the Portcullis
//! crates. It owns every socket, TLS, the configuration, logging and the
//! wiring; the SMTP protocol, the spool and the filters live in the crates.
//!
//! Run with no arguments for a relay on safe local defaults, or with
//! `--config relay.toml` (see `examples/relay/relay.toml`, which documents
//! every key). `--check-config` validates a file and exits.

#![forbid(unsafe_code)]

mod admin;
mod callout;
mod config;
mod delivery;
mod filters;
mod http;
mod lock_journal;
mod maildir;
mod metrics;
mod outbound;
mod policyd;
mod reload;
mod routing;
mod rules;
mod server;
mod stores;
mod stream;
mod tls;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use portcullis_core::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Settings;
use crate::rules::Role;

/// A mail relay built from the Portcullis crates: inbound MX for local
/// domains, authenticated submission, a durable queue, delivery by MX,
/// smarthost or per-domain routes, and Maildir delivery for local mailboxes.
#[derive(Debug, Parser)]
#[command(name = "portcullis-relay", version)]
struct Cli {
    /// Configuration file (TOML; every key optional). Without it the relay
    /// runs on its built-in defaults: MX on 127.0.0.1:2525, submission on
    /// 127.0.0.1:2587, local domain `localhost`.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    /// Check the configuration, print a summary, and exit (status 2 on error).
    #[arg(long)]
    check_config: bool,

    /// Read a password from standard input, print its argon2 hash for the
    /// accounts file (`password_hash = "..."`), and exit.
    #[arg(long)]
    hash_password: bool,

    /// Data directory (spool, mailboxes, generated certificate); overrides
    /// `server.data_dir`. Default: ./portcullis-data
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Inbound MX listen address; overrides `mx.listen` (repeatable; port 0
    /// picks a free port, printed on the startup line).
    #[arg(long, value_name = "ADDR")]
    mx_listen: Vec<String>,

    /// Submission listen address; overrides `submission.listen` (repeatable).
    #[arg(long, value_name = "ADDR")]
    submission_listen: Vec<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve Postfix's policy protocol (check_policy_service) with the
    /// configured `[batv]`, `[policy]` and `[greylist]` filters instead of relaying.
    Policyd(policyd::Args),
    /// Talk to the running relay's admin endpoint (`[admin]` in the same
    /// configuration): queue, quarantine, show|hold|release|deliver|delete
    /// ID, account|unlock KIND NAME, report.
    Admin(admin::CliArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.hash_password {
        return hash_password();
    }
    let overrides = config::Overrides {
        data_dir: cli.data_dir.clone(),
        mx_listen: (!cli.mx_listen.is_empty()).then(|| cli.mx_listen.clone()),
        submission_listen: (!cli.submission_listen.is_empty())
            .then(|| cli.submission_listen.clone()),
    };
    let settings = match config::load(cli.config.as_deref(), &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portcullis-relay: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Admin(args)) = &cli.command {
        return admin::cli(&settings, args);
    }
    if cli.check_config {
        // The files the configuration points at must load too.
        if let Some(path) = &settings.accounts_file
            && let Err(e) = read_accounts_file(path)
        {
            eprintln!("portcullis-relay: configuration error: {e}");
            return ExitCode::from(2);
        }
        if let Some((cert, key)) = &settings.tls_cert
            && let Err(e) = tls::server_config(cert, key)
        {
            eprintln!("portcullis-relay: configuration error: tls: {e}");
            return ExitCode::from(2);
        }
        if let Some(ca) = &settings.delivery_tls_ca
            && let Err(e) = tls::client_config(ca)
        {
            eprintln!("portcullis-relay: configuration error: delivery.tls_ca_file: {e}");
            return ExitCode::from(2);
        }
        println!("configuration OK: {}", settings.source);
        println!(
            "  mx {:?}, submission {:?}, submissions (implicit TLS) {:?}",
            settings.mx_listen, settings.submission_listen, settings.submissions_listen
        );
        println!(
            "  local domains {}, backup MX domains {}, relay networks {}",
            settings.local_domains.len(),
            settings.backup_domains.len(),
            settings.relay_networks.len()
        );
        println!(
            "  delivery: smarthost {}, {} route(s), command timeout {}s, queue lifetime {}s, backup hold {}s",
            settings
                .smarthost
                .as_ref()
                .map_or_else(|| "none (MX)".to_owned(), ToString::to_string),
            settings.routes.len(),
            settings.command_timeout.as_secs(),
            settings.max_queue_time.as_secs(),
            settings.backup_hold.as_secs()
        );
        println!(
            "  backup MX recipients: {}",
            match (&settings.backup_callout, &settings.recipient_learning) {
                (Some(c), learning) => format!(
                    "callout to the primary ({}s per callout, cache {}s/{}s/{}s, {} per host){}{}",
                    c.timeout.as_secs(),
                    c.positive_ttl.as_secs(),
                    c.negative_ttl.as_secs(),
                    c.unknown_ttl.as_secs(),
                    c.max_per_host,
                    if learning.is_some() {
                        ", after what deliveries taught"
                    } else {
                        ""
                    },
                    if c.defer_unknown {
                        "; no answer: 450 4.1.1"
                    } else {
                        "; no answer: accepted"
                    }
                ),
                (None, Some(l)) => format!(
                    "learned from deliveries; unknown: {}",
                    if l.defer_unknown {
                        "450 4.1.1"
                    } else {
                        "accepted"
                    }
                ),
                (None, None) => "all accepted (no verification)".to_owned(),
            }
        );
        println!(
            "  stores: policy {}, greylist {}, bulk {}, outbound bulk {}, backup MX recipients {}{}",
            match settings.policy_store {
                stores::StoreKind::Memory => "memory (locks in policy-locks.redb)",
                other => other.as_str(),
            },
            settings.greylist_store.as_str(),
            settings.bulk_store.as_str(),
            settings.outbound_store.as_str(),
            settings.recipients_store.as_str(),
            settings
                .redis
                .as_ref()
                .map_or_else(String::new, |r| format!(
                    "; redis {} (prefix {:?})",
                    r.url, r.prefix
                ))
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis-relay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Policyd(args)) => runtime.block_on(policyd::run(settings, overrides, args)),
        Some(Command::Admin(_)) => Ok(()),
        None => runtime.block_on(run(settings, overrides)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("portcullis-relay: cannot read the password from standard input");
        return ExitCode::from(2);
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("portcullis-relay: empty password");
        return ExitCode::from(2);
    }
    match portcullis_accounts::hash_password(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

/// Read and parse the accounts file (argon2 hashes checked).
fn read_accounts_file(path: &Path) -> Result<portcullis_accounts::FileDirectory, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("accounts.file {}: {e}", path.display()))?;
    portcullis_accounts::FileDirectory::from_toml(&text)
        .map_err(|e| format!("accounts.file {}: {e}", path.display()))
}

/// The policy configuration, with the accounts file's per-account limits
/// merged over the `[policy]` defaults (a limit an account does not set
/// keeps the default). Read at start and again on SIGHUP (`reload`).
fn policy_config(settings: &Settings) -> Result<portcullis_policy::PolicyConfig, String> {
    let mut config = settings.policy.clone();
    // Logins that are a bare domain are domain accounts (portcullis-accounts).
    config.domain_accounts = true;
    let Some(path) = &settings.accounts_file else {
        return Ok(config);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("accounts.file {}: {e}", path.display()))?;
    let file = portcullis_accounts::AccountFile::from_toml(&text)
        .map_err(|e| format!("accounts.file {}: {e}", path.display()))?;
    let defaults = config.account_defaults;
    let merge = |l: &portcullis_accounts::AccountLimits| {
        let mut m = defaults;
        let over = |d: Option<u64>, v: Option<u32>| v.map(u64::from).or(d);
        m.rates.messages_per_minute = over(m.rates.messages_per_minute, l.messages_per_minute);
        m.rates.messages_per_hour = over(m.rates.messages_per_hour, l.messages_per_hour);
        m.rates.recipients_per_minute =
            over(m.rates.recipients_per_minute, l.recipients_per_minute);
        m.rates.recipients_per_hour = over(m.rates.recipients_per_hour, l.recipients_per_hour);
        m.distinct_recipients_per_day =
            over(m.distinct_recipients_per_day, l.distinct_recipients_per_day);
        m.max_message_size = l.max_message_size.or(m.max_message_size);
        m
    };
    let none = portcullis_accounts::AccountLimits::default();
    for u in &file.users {
        if u.limits != none {
            let id = portcullis_accounts::AccountId::user(&u.address);
            config.account_limits.insert(id.key(), merge(&u.limits));
        }
    }
    for d in &file.domains {
        if d.limits != none
            && let Ok(id) = portcullis_accounts::AccountId::parse(&d.domain)
        {
            config.account_limits.insert(id.key(), merge(&d.limits));
        }
    }
    Ok(config)
}

/// Accounts from the configured backend, if any.
async fn open_accounts(
    settings: &Settings,
) -> Result<Option<Arc<dyn portcullis_accounts::AccountDirectory>>, String> {
    if let Some(path) = &settings.accounts_file {
        let dir = Arc::new(read_accounts_file(path)?);
        spawn_accounts_reload(path.clone(), dir.clone());
        return Ok(Some(dir));
    }
    if let Some(url) = &settings.accounts_postgres {
        let dir = portcullis_accounts::PgDirectory::connect(url)
            .await
            .map_err(|e| format!("accounts.postgres: {e}"))?;
        dir.migrate()
            .await
            .map_err(|e| format!("accounts.postgres: migration: {e}"))?;
        return Ok(Some(Arc::new(dir)));
    }
    Ok(None)
}

/// SIGHUP re-reads the accounts file; a file that does not load is
/// reported and the accounts in use are kept.
fn spawn_accounts_reload(path: PathBuf, dir: Arc<portcullis_accounts::FileDirectory>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let result = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| dir.reload_toml(&text).map_err(|e| e.to_string()));
            match result {
                Ok(()) => {
                    tracing::info!(file = %path.display(), accounts = dir.len(), "accounts reloaded")
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "accounts not reloaded; keeping the old ones")
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (path, dir);
}

/// Local mailboxes from the account directory.
struct DirectoryUsers(Arc<dyn portcullis_accounts::AccountDirectory>);

#[portcullis_core::async_trait]
impl rules::LocalUsers for DirectoryUsers {
    async fn exists(
        &self,
        addr: &portcullis_core::Address,
    ) -> Result<bool, portcullis_core::Reply> {
        self.0.is_local_recipient(addr).await.map_err(|e| {
            tracing::error!(error = %e, "account directory failed");
            e.transaction_reply()
        })
    }
}

async fn bind_all(addrs: &[std::net::SocketAddr], what: &str) -> Result<Vec<TcpListener>, String> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(
            TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen on {a} ({what}): {e}"))?,
        );
    }
    Ok(out)
}

fn addr_list(ls: &[TcpListener]) -> String {
    ls.iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn run(settings: Settings, overrides: config::Overrides) -> Result<(), String> {
    init_logging(&settings);
    let settings = Arc::new(settings);
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            settings.data_dir.display()
        )
    })?;
    let data_dir = absolute(&settings.data_dir);
    let mailboxes = data_dir.join("mailboxes");
    std::fs::create_dir_all(&mailboxes)
        .map_err(|e| format!("cannot create {}: {e}", mailboxes.display()))?;

    let accounts = open_accounts(&settings).await?;
    let users: Arc<dyn rules::LocalUsers> = match &accounts {
        Some(a) => Arc::new(DirectoryUsers(a.clone())),
        None => Arc::new(rules::NoUsers),
    };
    // Counters, greylist triplets, checksum counts, learned recipients:
    // opened once, kept across reloads. A configured Redis must answer now.
    let stores = {
        let (s, d) = (settings.clone(), data_dir.clone());
        tokio::task::spawn_blocking(move || stores::Stores::open(&s, &d, lock_journal::FILE_NAME))
            .await
            .map_err(|e| format!("store setup failed: {e}"))??
    };
    let stores = Arc::new(stores);
    // `[backup_mx] learn_recipients`: `recipients.redb`, memory or Redis.
    let learning = match settings.recipient_learning {
        Some(_) => Some(stores.recipients()?),
        None => None,
    };

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let spool_dir = data_dir.join("spool");
    let spool = portcullis_queue::Spool::open(
        &spool_dir,
        portcullis_queue::SpoolConfig::default(),
        clock.clone(),
    )
    .map_err(|e| format!("spool {}: {e}", spool_dir.display()))?;
    let report = spool.recovery_report().clone();
    tracing::info!(
        messages = report.messages,
        segments = report.segments,
        truncated_bytes = report.truncated_bytes,
        corrupt = report.corrupt_files.len(),
        "spool recovered"
    );

    let mx_router: Option<Arc<dyn portcullis_queue::Router>> =
        match portcullis_queue::MxRouter::from_system(
            portcullis_queue::MxConfig::default().with_port(settings.mx_port),
        ) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver: mail without a route or smarthost will wait in the queue");
                None
            }
        };
    let mut transport = portcullis_queue::SmtpTransport::new(
        portcullis_queue::SmtpTransportConfig::new(settings.hostname.clone())
            .with_tls(settings.delivery_tls)
            .with_timeout(settings.command_timeout),
    )
    .map_err(|e| format!("SMTP client TLS setup: {e}"))?;
    if let Some(ca) = &settings.delivery_tls_ca {
        // Verified TLS (`tls = "required"`) trusts these CAs only.
        let config = tls::client_config(ca).map_err(|e| format!("delivery.tls_ca_file: {e}"))?;
        transport = transport.with_verified_tls(config);
    }
    // RFC 8689 §4.2.2: a message marked `TLS-Required: No` asks that TLS
    // failures not stop it; with TLS required by configuration it goes
    // through an opportunistic client (the same name and timeout).
    let tls_optional_transport: Option<Arc<dyn portcullis_queue::Transport>> =
        if settings.delivery_tls == portcullis_queue::TlsPolicy::Required {
            Some(Arc::new(
                portcullis_queue::SmtpTransport::new(
                    portcullis_queue::SmtpTransportConfig::new(settings.hostname.clone())
                        .with_tls(portcullis_queue::TlsPolicy::Opportunistic)
                        .with_timeout(settings.command_timeout),
                )
                .map_err(|e| format!("SMTP client TLS setup: {e}"))?,
            ))
        } else {
            None
        };
    let clock_for_base = clock.clone();
    // SIGHUP puts a re-read [policy] in force (same counter store).
    let policy = reload::LivePolicy::new(
        policy_config(&settings)?,
        stores.counters.clone(),
        clock.clone(),
    );
    let base = Arc::new(reload::Base {
        clock: clock_for_base,
        data_dir: data_dir.clone(),
        users,
        stores,
        policy: policy.clone(),
        learning,
        mx_router,
        transport: Arc::new(transport),
        tls_optional_transport,
    });
    let built = reload::build(settings.clone(), &base, None)?;
    let cert = built.cert;
    let rules = built.snapshot.rules.clone();
    let deliverer = delivery::Deliverer::new(
        spool,
        clock.clone(),
        rules,
        mailboxes.clone(),
        settings.hostname.clone(),
        built.router,
        &delivery::DeliverySettings {
            max_lifetime: settings.max_queue_time,
            backup_hold: settings.backup_hold,
            concurrency: settings.delivery_concurrency,
            first_retry: settings.first_retry,
        },
    );

    let mx = bind_all(&settings.mx_listen, "mx.listen").await?;
    let submission = bind_all(&settings.submission_listen, "submission.listen").await?;
    let submissions = bind_all(&settings.submissions_listen, "submissions.listen").await?;

    let (deadline_tx, deadline_rx) = watch::channel(false);
    let shared = Arc::new(server::Shared::new(
        built.snapshot,
        accounts.clone(),
        deliverer.clone(),
        policy,
        clock.clone(),
        deadline_rx,
    ));
    reload::spawn_config_reload(
        // `source` is the file's path, or a note when there is no file.
        Some(PathBuf::from(&settings.source)).filter(|p| p.is_file()),
        overrides,
        shared.clone(),
        base,
    );

    let metrics_socket = match settings.metrics {
        Some(a) => Some(bind_all(&[a], "metrics.listen").await?.remove(0)),
        None => None,
    };
    let admin_socket = match &settings.admin {
        Some(a) => Some(bind_all(&[a.listen], "admin.listen").await?.remove(0)),
        None => None,
    };
    // The one startup line: where it listens, where config and data live.
    let mut line = format!(
        "portcullis-relay listening: mx={} submission={} (STARTTLS, AUTH required)",
        addr_list(&mx),
        addr_list(&submission)
    );
    if !submissions.is_empty() {
        line.push_str(&format!(
            " submissions={} (implicit TLS)",
            addr_list(&submissions)
        ));
    }
    line.push_str(&format!(
        "; config: {}; data: {}; mailboxes: {}; certificate: {}{}; local domains: {}",
        settings.source,
        data_dir.display(),
        mailboxes.display(),
        cert.cert.display(),
        if cert.generated {
            " (self-signed, generated now)"
        } else {
            ""
        },
        settings
            .local_domains
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));
    if accounts.is_none() {
        line.push_str("; no accounts configured: AUTH will fail");
    }
    for (name, socket) in [("metrics", &metrics_socket), ("admin", &admin_socket)] {
        if let Some(s) = socket {
            line.push_str(&format!("; {name}={}", addr_list(std::slice::from_ref(s))));
        }
    }
    println!("{line}");
    tracing::info!(queued = deliverer.queued(), "{line}");

    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut accept_tasks = Vec::new();
    for (sockets, role, implicit) in [
        (mx, Role::Mx, false),
        (submission, Role::Submission, false),
        (submissions, Role::Submission, true),
    ] {
        for socket in sockets {
            accept_tasks.push(tokio::spawn(server::accept_loop(
                shared.clone(),
                server::Listener {
                    socket,
                    role,
                    implicit_tls: implicit,
                },
                stop_rx.clone(),
                alive_tx.clone(),
            )));
        }
    }
    drop(alive_tx);
    if let Some(socket) = metrics_socket {
        tokio::spawn(metrics::serve(
            socket,
            Some(deliverer.spool().clone()),
            stop_rx.clone(),
        ));
    }
    if let (Some(socket), Some(a)) = (admin_socket, &settings.admin) {
        let admin = Arc::new(admin::Admin {
            token: a.token.clone(),
            deliverer: deliverer.clone(),
            policy: shared.policy.clone(),
            clock: clock.clone(),
        });
        tokio::spawn(admin::serve(socket, admin, stop_rx.clone()));
    }

    let delivery_task = tokio::spawn(
        deliverer
            .clone()
            .run(stop_rx.clone(), settings.shutdown_grace),
    );

    wait_for_signal().await;
    let grace = settings.shutdown_grace;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections"
    );
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        let _ = t.await;
    }
    drop(shared);
    // Sessions finish their transactions until the deadline, then get 421.
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        tracing::info!("grace period over: closing remaining sessions with 421");
        let _ = deadline_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), alive_rx.recv()).await;
    }
    let _ = delivery_task.await;
    tracing::info!(
        queued = deliverer.queued(),
        "stopped; queued mail stays in the spool"
    );
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
