//! `portcullis-relay policyd`: a Postfix policy server (`check_policy_service`)
//! answering with the relay's filters, so an operator keeps Postfix as the
//! MTA and gains Portcullis' greylisting and rate limits.
//!
//! The filters come from the same `relay.toml` as the relay, in this order:
//! `[batv]` bounce validation (when `domains` are set), the backup-MX
//! recipient check (`[backup_mx]` with `domains` and `learn_recipients`;
//! see [`BackupRecipients`]), `[policy]` (rate limits, recipient caps;
//! always on; with the accounts file's per-account `limits` merged over
//! the defaults, as the relay does, for the `sasl_username` Postfix
//! passes), then `[greylist]` (when `enabled = true`). The relay's own
//! relaying rules are not used: Postfix
//! decides relaying itself (`reject_unauth_destination`), and the policy
//! service only ever narrows what Postfix allows. In `main.cf`:
//!
//! ```text
//! smtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated,
//!     reject_unauth_destination, check_policy_service inet:127.0.0.1:10040
//! ```
//!
//! SIGHUP re-reads the file (and the accounts file's limits) and rebuilds
//! the chain over the same stores (counters, locks, greylist triplets,
//! learned recipients are never reset); a connection
//! open across the reload answers each new transaction with the chain in
//! force when its first request arrives. A file that does not load keeps
//! the old chain; keys bound at start are warned about by name (the
//! relay's [`crate::reload::spawn_on_hup`] and
//! [`crate::reload::needs_restart_common`]).
//!
//! The protocol itself (codec, stage mapping, verdict → action) is the
//! `portcullis-policyd` crate; this file owns the sockets, the stores and
//! the timers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use portcullis_core::{
    Chain, Clock, Context, Domain, Filter, ForwardPath, Recipient, Reply, SystemClock, Verdict,
    async_trait,
};
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

/// What survives a reload: the stores and the command line, opened or
/// read once at start.
struct Base {
    clock: Arc<dyn Clock>,
    args: Args,
    /// Counters and locks (`[policy] store`), and the Redis pool.
    stores: crate::stores::Stores,
    data_dir: std::path::PathBuf,
    /// `[greylist] store = "redis"` at start (takes precedence over
    /// `--greylist-store`).
    greylist_redis: bool,
    /// The greylist store, opened on first use (greylisting may be turned
    /// on by a reload) and then shared by every chain.
    greylist: Mutex<Option<Arc<dyn portcullis_greylist::GreylistStore>>>,
    /// The redb greylist store when it syncs once a second (`--greylist-sync flush`).
    redb: Mutex<Option<Arc<portcullis_greylist::RedbStore>>>,
}

impl Base {
    /// The greylist store: opened once, whatever the reloads do.
    fn greylist_store(&self) -> Result<Arc<dyn portcullis_greylist::GreylistStore>, String> {
        let mut slot = self.greylist.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let store: Arc<dyn portcullis_greylist::GreylistStore> = match self.args.greylist_store {
            _ if self.greylist_redis => self.stores.greylist()?,
            GreylistStore::Memory => Arc::new(crate::stores::Timed::local(
                "greylist",
                portcullis_greylist::MemoryStore::new(),
            )),
            GreylistStore::Redb => {
                let path = self.data_dir.join("greylist.redb");
                let sync = match self.args.greylist_sync {
                    GreylistSync::EveryWrite => portcullis_greylist::RedbSync::EveryWrite,
                    GreylistSync::Flush => portcullis_greylist::RedbSync::OnFlush,
                };
                let store = Arc::new(
                    portcullis_greylist::RedbStore::open_with(&path, sync)
                        .map_err(|e| format!("greylist store {}: {e}", path.display()))?,
                );
                if sync == portcullis_greylist::RedbSync::OnFlush {
                    *self.redb.lock().unwrap_or_else(|e| e.into_inner()) = Some(store.clone());
                }
                Arc::new(crate::stores::Timed::local("greylist", store))
            }
        };
        *slot = Some(store.clone());
        Ok(store)
    }

    fn redb(&self) -> Option<Arc<portcullis_greylist::RedbStore>> {
        self.redb.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What a reload replaces: the decision chain built from one configuration.
struct Current {
    settings: Settings,
    service: PolicyService,
    greylist: Option<Arc<portcullis_greylist::Greylist>>,
}

/// The chain in force; SIGHUP swaps it. A plain `RwLock<Arc<_>>`, as the
/// relay's [`crate::server::Shared`]: read once per transaction, written
/// once per reload, never held across an await.
struct Live {
    current: RwLock<Arc<Current>>,
}

impl Live {
    fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, current: Current) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(current);
    }
}

/// `[backup_mx]` in policyd: recipients of the backed-up domains are
/// judged by what Portcullis relays learned from the primary's answers
/// (`learn_recipients`, in the store they share: `store = "redis"`), the
/// way the relay's rules judge them at `RCPT`: known valid → `DUNNO`;
/// known not to exist (the primary said `5.1.1`) → `550 5.1.1`, noted as
/// an invalid recipient for `[policy] invalid_recipients_max` as the relay
/// does; not known → `450 4.1.1` (`DEFER_IF_PERMIT` with `--defer
/// if-permit`) with `defer_unknown_recipients`, else `DUNNO`. Never a 5xx
/// for a recipient that is not known to be invalid. Other recipients are
/// not this filter's business.
///
/// policyd learns nothing itself (Postfix delivers the mail, so no
/// delivery outcome reaches it) and makes no callouts.
struct BackupRecipients {
    domains: Vec<Domain>,
    learning: portcullis_greylist::RecipientLearning,
    /// The chain's policy, for the invalid-recipient note.
    policy: Arc<portcullis_policy::Policy>,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl Filter for BackupRecipients {
    fn name(&self) -> &'static str {
        "backup-mx-recipients"
    }

    async fn rcpt_to(&self, cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        let ForwardPath::Mailbox(addr) = &rcpt.path else {
            return Verdict::Continue;
        };
        if !self.domains.contains(addr.domain()) {
            return Verdict::Continue;
        }
        let now = self.clock.now();
        let verdict = self.learning.verdict(&self.learning.check(addr, now));
        if verdict == Verdict::Reject(Reply::no_such_user()) {
            // Directory harvesting defence, as the relay's session does.
            let account = self.policy.account(&cx.client);
            let note = self
                .policy
                .note_invalid_recipient(&cx.client, &account, now);
            if note.is_refusal() {
                return note;
            }
        }
        verdict
    }
}

/// The backup-MX check `settings` ask for, over `base`'s learned-recipient
/// store; `None` without backed-up domains or learning.
fn backup_recipients(
    settings: &Settings,
    base: &Base,
    policy: &Arc<portcullis_policy::Policy>,
) -> Result<Option<BackupRecipients>, String> {
    let Some(config) = settings.recipient_learning.clone() else {
        return Ok(None);
    };
    if settings.backup_domains.is_empty() {
        return Ok(None);
    }
    if settings.recipients_store != crate::stores::StoreKind::Redis {
        return Err(format!(
            "backup_mx.store: \"{}\" cannot serve policyd: it learns no recipients itself \
             (Postfix delivers the mail), it reads what Portcullis relays learned; set \
             store = \"redis\" with the relays' [redis], or learn_recipients = false",
            settings.recipients_store.as_str()
        ));
    }
    if settings.backup_callout.is_some() {
        tracing::warn!(
            "backup_mx.verify = \"callout\": policyd makes no callouts; recipients of the \
             backed-up domains are judged by what the relays learned"
        );
    }
    Ok(Some(BackupRecipients {
        domains: settings.backup_domains.clone(),
        learning: portcullis_greylist::RecipientLearning::new(base.stores.recipients()?, config),
        policy: policy.clone(),
        clock: base.clock.clone(),
    }))
}

/// Build the decision chain `settings` describes over `base`'s stores:
/// `[batv]` bounce validation, `[backup_mx]` recipients, `[policy]` (with
/// the accounts file's limits), `[greylist]`.
fn build(settings: Settings, base: &Base) -> Result<Current, String> {
    let clock = &base.clock;
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
    // A new `Policy` over the same counter store: counters, blocks and
    // locks carry over (the in-process list of recent violations starts
    // afresh, as in the relay's reload). Its limits are the relay's:
    // `[policy]` with the accounts file's per-account limits over them.
    let policy = Arc::new(portcullis_policy::Policy::new(
        crate::policy_config(&settings)?,
        base.stores.counters.clone(),
    ));
    // Before the policy, as the relay's rules are: a recipient known not
    // to exist is refused without counting towards the rates.
    if let Some(backup) = backup_recipients(&settings, base, &policy)? {
        chain.push(Arc::new(backup));
    }
    chain.push(Arc::new(portcullis_policy::PolicyFilter::new(
        policy,
        clock.clone(),
    )));
    let mut greylist = None;
    if let Some(config) = settings.greylist.clone() {
        let g = Arc::new(portcullis_greylist::Greylist::new(
            base.greylist_store()?,
            config,
        ));
        chain.push(Arc::new(portcullis_greylist::GreylistFilter::new(
            g.clone(),
            clock.clone(),
        )));
        greylist = Some(g);
    }
    let mut service = PolicyService::new(chain).with_defer_style(match base.args.defer {
        DeferMode::IfPermit => DeferStyle::IfPermit,
        DeferMode::Reply => DeferStyle::Reply,
    });
    if base.args.fail_open {
        service = service.with_error_action(PolicyAction::Dunno);
    }
    Ok(Current {
        settings,
        service,
        greylist,
    })
}

/// The keys a reload cannot apply in this mode: those bound at start in
/// the relay too, and the connection cap.
fn needs_restart(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut keys = crate::reload::needs_restart_common(old, new);
    if old.max_connections != new.max_connections {
        keys.push("limits.max_connections");
    }
    keys
}

/// Re-read the configuration and put the new chain in force.
fn reload(
    path: &std::path::Path,
    overrides: &crate::config::Overrides,
    live: &Live,
    base: &Base,
) -> Result<Vec<&'static str>, String> {
    let settings = crate::config::load(Some(path), overrides).map_err(|e| e.to_string())?;
    let restart = needs_restart(&live.current().settings, &settings);
    live.replace(build(settings, base)?);
    Ok(restart)
}

/// Run the policy server until SIGTERM/SIGINT; SIGHUP rebuilds the chain.
pub(crate) async fn run(
    settings: Settings,
    overrides: crate::config::Overrides,
    args: Args,
) -> Result<(), String> {
    crate::init_logging(&settings);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
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
    let base = Arc::new(Base {
        clock,
        args: args.clone(),
        stores,
        data_dir: settings.data_dir.clone(),
        greylist_redis: settings.greylist_store == crate::stores::StoreKind::Redis,
        greylist: Mutex::new(None),
        redb: Mutex::new(None),
    });
    let built = {
        let (s, b) = (settings.clone(), base.clone());
        tokio::task::spawn_blocking(move || build(s, &b))
            .await
            .map_err(|e| format!("policy setup failed: {e}"))??
    };
    let filters = format!("{:?}", built.service.chain());
    let greylist_on = built.greylist.is_some();
    let live = Arc::new(Live {
        current: RwLock::new(Arc::new(built)),
    });

    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (policyd): {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    let line = format!(
        "portcullis-relay policyd listening: {local}; filters: {filters}; greylist store: {}; config: {}",
        match (greylist_on, args.greylist_store) {
            (false, _) => "off".to_owned(),
            (true, _) if base.greylist_redis => "redis".to_owned(),
            (true, GreylistStore::Memory) => "memory".to_owned(),
            (true, GreylistStore::Redb) => settings
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
    // SIGHUP: a new chain over the same stores (the built-in defaults, with
    // no file, have nothing to re-read).
    if let Some(path) = Some(std::path::PathBuf::from(&settings.source)).filter(|p| p.is_file()) {
        let (live, base) = (live.clone(), base.clone());
        crate::reload::spawn_on_hup(
            path,
            crate::reload::HupMessages {
                reloaded: "configuration reloaded: policyd chain ([batv], [backup_mx], [policy] with the accounts file's limits, [greylist]) rebuilt over the same stores; open connections use it from their next transaction",
                not_reloaded: "configuration not reloaded; keeping the old policyd chain",
                restart: "policyd",
            },
            move |path| reload(path, &overrides, &live, &base),
        );
    }

    println!("{line}");
    tracing::info!("{line}");
    // Housekeeping: flush a lazily synced store, and expire old triplets
    // (with the greylist settings in force).
    let (hk_live, hk_base) = (live.clone(), base.clone());
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n += 1;
            if let Some(store) = hk_base.redb()
                && let Err(e) = store.flush()
            {
                tracing::warn!(error = %e, "greylist flush failed");
            }
            if n.is_multiple_of(60)
                && let Some(g) = &hk_live.current().greylist
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
    let accept = async {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let live = live.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(stream, &live).await {
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
    if let Some(store) = base.redb()
        && let Err(e) = store.flush()
    {
        // A clean stop should lose nothing; say so when it does.
        tracing::warn!(error = %e, "greylist flush at exit failed");
    }
    tracing::info!("policyd stopped");
    Ok(())
}

/// One client connection: requests in, one answer per request out, in order.
///
/// A request that starts a new transaction (an `instance` other than the
/// previous request's, or none) is answered with the chain in force when
/// it arrives; the requests of one transaction (same `instance`) stay on
/// the chain that began it, so a reload in the middle of a message never
/// runs `mail_from` twice (a rate limit counts each message once).
async fn serve(mut stream: TcpStream, live: &Live) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut decoder = Decoder::default();
    let mut current = live.current();
    let idle = current.settings.idle_timeout;
    let mut session = current.service.session();
    let mut instance: Option<String> = None;
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
            if let Ok(request) = &item {
                let this = request.instance().filter(|i| !i.is_empty());
                if this.is_none() || this != instance.as_deref() {
                    instance = this.map(str::to_owned);
                    let now = live.current();
                    if !Arc::ptr_eq(&now, &current) {
                        // A new transaction on the reloaded chain.
                        drop(session);
                        current = now;
                        session = current.service.session();
                    }
                }
            }
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
