//! `portcullis-relay policyd`: a Postfix policy server (`check_policy_service`)
//! answering with the relay's filters, so an operator keeps Postfix as the
//! MTA and gains Portcullis' greylisting and rate limits.
//!
//! The filters come from the same `relay.toml` as the relay, in this order:
//! `[batv]` bounce validation (when `domains` are set), `[policy]` (rate
//! limits, recipient caps; always on), then `[greylist]` (when
//! `enabled = true`). The relay's own relaying rules are not used: Postfix
//! decides relaying itself (`reject_unauth_destination`), and the policy
//! service only ever narrows what Postfix allows. In `main.cf`:
//!
//! ```text
//! smtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated,
//!     reject_unauth_destination, check_policy_service inet:127.0.0.1:10040
//! ```
//!
//! The protocol itself (codec, stage mapping, verdict → action) is the
//! `portcullis-policyd` crate; this file owns the sockets, the stores and
//! the timers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Chain, Clock, SystemClock};
use portcullis_policyd::{Decoder, DeferStyle, PolicyAction, PolicyService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::Settings;

/// Options of the `policyd` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Listen address (port 0 picks a free port, printed on the startup line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10040")]
    listen: SocketAddr,

    /// Where greylist state lives: `redb` (`greylist.redb` in the data
    /// directory, survives restarts) or `memory`.
    #[arg(long, value_enum, default_value_t = GreylistStore::Redb)]
    greylist_store: GreylistStore,

    /// With the redb store: `every-write` (fsync each write) or `flush`
    /// (fsync once a second; a crash forgets at most a second of triplets,
    /// which greylists a few senders again, never loses mail).
    #[arg(long, value_enum, default_value_t = GreylistSync::EveryWrite)]
    greylist_sync: GreylistSync,

    /// How deferrals are sent: `if-permit` (`DEFER_IF_PERMIT`, as postgrey:
    /// later Postfix rejections still win) or `reply` (our exact 4xx reply).
    #[arg(long, value_enum, default_value_t = DeferMode::IfPermit)]
    defer: DeferMode,

    /// Answer `DUNNO` instead of `451 4.3.0` to requests that break the
    /// protocol or carry unusable values.
    #[arg(long)]
    fail_open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GreylistStore {
    Redb,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GreylistSync {
    EveryWrite,
    Flush,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DeferMode {
    IfPermit,
    Reply,
}

/// Run the policy server until SIGTERM/SIGINT.
pub(crate) async fn run(settings: Settings, args: Args) -> Result<(), String> {
    crate::init_logging(&settings);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut chain = Chain::new();
    if let Some(batv) = &settings.batv {
        // Bounces to our domains must carry a valid prvs tag (backscatter).
        // Postfix keeps the tagged recipient: a valid tag is stripped only
        // for the filters after this one, so map `prvs=...=user@` back to
        // `user@` in Postfix (e.g. recipient_canonical_maps with a regexp).
        let ring = portcullis_batv::KeyRing::new(batv.key_number, &batv.secret)
            .map_err(|e| format!("batv: {e}"))?;
        let prvs = Arc::new(portcullis_batv::Prvs::new(ring));
        let mut validate = portcullis_batv::BounceValidation::new(prvs, clock.clone());
        for d in &batv.domains {
            validate = validate.protect_domain(d);
        }
        chain.push(Arc::new(validate));
    }
    // `[policy] store` / `[greylist] store = "redis"` share state with the
    // relays and other policy servers on the same Redis. With the memory
    // policy store, locks are kept in the data directory, in a file of
    // their own so that a relay may share the directory.
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", settings.data_dir.display()))?;
    let stores = {
        let (s, d) = (settings.clone(), settings.data_dir.clone());
        tokio::task::spawn_blocking(move || {
            crate::stores::Stores::open(&s, &d, crate::lock_journal::POLICYD_FILE_NAME)
        })
        .await
        .map_err(|e| format!("store setup failed: {e}"))??
    };
    let policy = Arc::new(portcullis_policy::Policy::new(
        settings.policy.clone(),
        stores.counters.clone(),
    ));
    chain.push(Arc::new(portcullis_policy::PolicyFilter::new(
        policy,
        clock.clone(),
    )));

    let mut greylist = None;
    let mut redb = None;
    let greylist_redis = settings.greylist_store == crate::stores::StoreKind::Redis;
    if let Some(config) = settings.greylist.clone() {
        let store: Arc<dyn portcullis_greylist::GreylistStore> = match args.greylist_store {
            _ if greylist_redis => stores.greylist()?,
            GreylistStore::Memory => Arc::new(crate::stores::Timed::local(
                "greylist",
                portcullis_greylist::MemoryStore::new(),
            )),
            GreylistStore::Redb => {
                std::fs::create_dir_all(&settings.data_dir)
                    .map_err(|e| format!("cannot create {}: {e}", settings.data_dir.display()))?;
                let path = settings.data_dir.join("greylist.redb");
                let sync = match args.greylist_sync {
                    GreylistSync::EveryWrite => portcullis_greylist::RedbSync::EveryWrite,
                    GreylistSync::Flush => portcullis_greylist::RedbSync::OnFlush,
                };
                let store = Arc::new(
                    portcullis_greylist::RedbStore::open_with(&path, sync)
                        .map_err(|e| format!("greylist store {}: {e}", path.display()))?,
                );
                if sync == portcullis_greylist::RedbSync::OnFlush {
                    redb = Some(store.clone());
                }
                Arc::new(crate::stores::Timed::local("greylist", store))
            }
        };
        let g = Arc::new(portcullis_greylist::Greylist::new(store, config));
        chain.push(Arc::new(portcullis_greylist::GreylistFilter::new(
            g.clone(),
            clock.clone(),
        )));
        greylist = Some(g);
    }
    let filters = format!("{chain:?}");
    let mut service = PolicyService::new(chain).with_defer_style(match args.defer {
        DeferMode::IfPermit => DeferStyle::IfPermit,
        DeferMode::Reply => DeferStyle::Reply,
    });
    if args.fail_open {
        service = service.with_error_action(PolicyAction::Dunno);
    }
    let service = Arc::new(service);

    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (policyd): {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    let line = format!(
        "portcullis-relay policyd listening: {local}; filters: {filters}; greylist store: {}; config: {}",
        match (&greylist, args.greylist_store) {
            (None, _) => "off".to_owned(),
            (Some(_), _) if greylist_redis => "redis".to_owned(),
            (Some(_), GreylistStore::Memory) => "memory".to_owned(),
            (Some(_), GreylistStore::Redb) => settings
                .data_dir
                .join("greylist.redb")
                .display()
                .to_string(),
        },
        settings.source
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut line = line;
    if let Some(addr) = settings.metrics {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (metrics.listen): {e}"))?;
        if let Ok(a) = socket.local_addr() {
            line.push_str(&format!("; metrics={a}"));
        }
        tokio::spawn(crate::metrics::serve(socket, None, stop_rx));
    }
    println!("{line}");
    tracing::info!("{line}");

    // Housekeeping: flush a lazily synced store, and expire old triplets.
    let last_flush = redb.clone();
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n += 1;
            if let Some(store) = &redb
                && let Err(e) = store.flush()
            {
                tracing::warn!(error = %e, "greylist flush failed");
            }
            if n.is_multiple_of(60)
                && let Some(g) = &greylist
            {
                #[allow(clippy::disallowed_methods)] // the relay binary owns the wall clock
                let now = std::time::SystemTime::now();
                if let Err(e) = g.sweep(now, 10_000) {
                    tracing::warn!(error = %e, "greylist sweep failed");
                }
            }
        }
    });

    // Postfix holds one connection per smtpd process (default_process_limit
    // 100); past the cap, new connections wait in the listen backlog.
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let idle = settings.idle_timeout;
    let accept = async {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let service = service.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(stream, &service, idle).await {
                            tracing::debug!(%peer, error = %e, "policy connection ended");
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = crate::wait_for_signal() => {}
    }
    housekeeping.abort();
    let _ = stop_tx.send(true);
    if let Some(store) = &last_flush
        && let Err(e) = store.flush()
    {
        // A clean stop should lose nothing; say so when it does.
        tracing::warn!(error = %e, "greylist flush at exit failed");
    }
    tracing::info!("policyd stopped");
    Ok(())
}

/// One client connection: requests in, one answer per request out, in order.
async fn serve(
    mut stream: TcpStream,
    service: &PolicyService,
    idle: Duration,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut decoder = Decoder::default();
    let mut session = service.session();
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::with_capacity(256);
    loop {
        let n = match tokio::time::timeout(idle, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()), // idle: Postfix reconnects when it needs us
        };
        if n == 0 {
            if !decoder.is_idle() {
                tracing::debug!("client closed in the middle of a request");
            }
            return Ok(());
        }
        let mut input = &buf[..n];
        while !input.is_empty() {
            let decoded = decoder.decode(input);
            input = &input[decoded.consumed..];
            let Some(item) = decoded.item else { continue };
            let started = tokio::time::Instant::now();
            let answer = session.answer_item(item).await;
            record(&answer, started.elapsed());
            if let Some(e) = &answer.error {
                tracing::warn!(error = %e, action = %answer.action, "unusable policy request");
            } else {
                tracing::debug!(action = %answer.action, decided_by = ?answer.decided_by, "policy answer");
            }
            answer.action.write_wire(&mut out);
        }
        if !out.is_empty() {
            // Pipelined requests get their answers in one write.
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

/// `portcullis_policyd_requests_total` and `portcullis_policyd_request_seconds`.
fn record(answer: &portcullis_policyd::Answer, took: Duration) {
    use portcullis_core::Verdict;
    let decision = match (&answer.error, &answer.verdict) {
        (Some(_), _) => "error",
        (None, None) => "none",
        (None, Some(Verdict::Continue)) => "continue",
        (None, Some(Verdict::Accept)) => "accept",
        (None, Some(Verdict::Defer(_))) => "defer",
        (None, Some(Verdict::Reject(_))) => "reject",
        (None, Some(Verdict::Disconnect(_))) => "disconnect",
        (None, Some(_)) => "other",
    };
    let code;
    let action = match &answer.action {
        PolicyAction::Dunno => "DUNNO",
        PolicyAction::DeferIfPermit(_) => "DEFER_IF_PERMIT",
        PolicyAction::Reply(r) => {
            code = r.code().to_string();
            &code
        }
        PolicyAction::Prepend { .. } => "PREPEND",
        PolicyAction::Hold(_) => "HOLD",
        _ => "OTHER",
    };
    crate::metrics::policyd_request(decision, action, answer.decided_by, took);
}
