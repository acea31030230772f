//! The durable spool: an append-only segment log with group commit.
//!
//! This module is the crate's only file I/O (its job is to write a
//! directory); everything else in the crate is sans-IO or network.
//!
//! # Layout
//!
//! ```text
//! <dir>/lock                      advisory lock: one process per spool
//! <dir>/segments/<seq:016x>.log   append-only logs of records
//! <dir>/corrupt/                  bytes that failed their checksum, set aside at open
//! <dir>/archive/<seq:016x>.log    reclaimed segments kept for `archive_retention`
//! ```
//!
//! A record is `magic(4) len(4) crc32(4) kind(1) payload(len)`, the CRC covering
//! kind and payload. Kinds: a *message* (metadata JSON + the raw message), a
//! *state* update (JSON), a *remove* (8-byte id). Replaying the segments in
//! order rebuilds the index.
//!
//! # Why a log and not a file per message
//!
//! A `250` after DATA must mean the message is on disk, which costs an
//! `fsync`. With one file per message every session pays its own `fsync`
//! of the data and another of the directory. With a shared log, concurrent
//! [`Spool::store`] calls are *group committed*: the first caller to find no
//! commit in progress writes everything queued so far with one `write` and
//! one `fdatasync`, and every writer in that batch returns. Under 64
//! concurrent writers one `fdatasync` covers many messages.
//!
//! Measured with criterion on the shared, noisy 2-core CI machine, 10 KiB
//! messages, two runs of `cargo bench -p portcullis-queue --bench queue`
//! (ratios only mean something within one run; `docs/benchmarks.md`):
//!
//! | writers | this spool (run 1 / run 2) | bare `write + fsync + rename + fsync(dir)` per message |
//! |---|---|---|
//! | 1  | 364 / 279 msgs/s     | 105 / 100 msgs/s |
//! | 64 | 8 783 / 20 300 msgs/s | 947 / 1 252 msgs/s |
//!
//! 64 writers reach 24× / 73× the single-writer rate (the goal was 5×); a
//! file per message cannot share its `fsync`s and gets 9× / 13× from 64
//! writers only because the file system merges some journal commits. The
//! log also needs one sync per batch where a file per message needs two
//! (file and directory), which is why even one writer is faster. The price is
//! reclamation (below) instead of a simple `unlink`.
//!
//! # Durability contract
//!
//! * [`Spool::store`] returns only after the record is written and
//!   `fdatasync`ed; a new segment's directory entry is `fsync`ed before any
//!   record in it is acknowledged.
//! * State updates and removals are durable on return too.
//! * After any write or sync failure the spool refuses further writes
//!   ([`SpoolError::Poisoned`]): after a failed `fsync` the page cache can no
//!   longer be trusted, so the process should restart and recover.
//!
//! # Recovery
//!
//! [`Spool::open`] replays every segment. A torn record at the end of the
//! newest segment (a store that never returned) is truncated away and never
//! delivered. A record that fails its checksum elsewhere is copied to
//! `corrupt/` with a `tracing` warning and skipped, not deleted.
//!
//! # Reclamation, compaction, archive
//!
//! A segment is reclaimed when it is not the active one, no live message has
//! a record in it, and every older segment is gone (so a removal record never
//! disappears before the message it removes). [`Spool::maintain`] copies the
//! few live messages of an old segment forward so long-lived messages do not
//! pin the log. With `archive_retention` set, reclaimed segments move to
//! `archive/` instead of being deleted and are pruned after the retention.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::{Clock, Envelope, Reply};
use serde::{Deserialize, Serialize};

use crate::id::QueueId;
use crate::state::{DeliveryState, Hold};

const MAGIC: [u8; 4] = *b"PCQ1";
const HEADER_LEN: usize = 13;
const KIND_MESSAGE: u8 = 1;
const KIND_STATE: u8 = 2;
const KIND_REMOVE: u8 = 3;
/// Larger records are treated as corruption (a message is capped well below).
const MAX_RECORD: u32 = 1 << 30;

/// Errors from the spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the spool lock.
    #[error("spool {0} is locked by another process")]
    Locked(PathBuf),
    /// An earlier write or sync failed; the spool accepts no more writes
    /// until it is reopened (recovery decides what is on disk).
    #[error("spool refuses writes after an earlier failure: {0}")]
    Poisoned(String),
    /// No live message has this id.
    #[error("no message {0} in the spool")]
    NotFound(QueueId),
    /// A record read back failed its checksum or did not decode.
    #[error("message {id} is corrupt on disk: {detail}")]
    Corrupt {
        /// Which message.
        id: QueueId,
        /// What was wrong.
        detail: String,
    },
    /// The message is larger than a spool record may be (1 GiB).
    #[error("message of {0} octets is too large for the spool")]
    TooLarge(u64),
    /// The state given does not fit the message (wrong recipient count).
    #[error("invalid state for {id}: {detail}")]
    InvalidState {
        /// Which message.
        id: QueueId,
        /// What was wrong.
        detail: String,
    },
}

impl SpoolError {
    /// The SMTP reply for a client whose message could not be stored:
    /// `452 4.3.1` when the disk is full, else `451 4.3.0` (RFC 3463 §3.4).
    pub fn reply(&self) -> Reply {
        match self {
            SpoolError::Io { source, .. } if source.raw_os_error() == Some(28) => {
                Reply::insufficient_storage()
            }
            SpoolError::TooLarge(_) => Reply::message_too_big(),
            _ => Reply::temporary_failure(),
        }
    }

    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        SpoolError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// Spool tuning. `Default` is what a relay should use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpoolConfig {
    /// Start a new segment once the active one reaches this size.
    pub max_segment_bytes: u64,
    /// [`Spool::maintain`] copies live messages out of the oldest segment
    /// when more than this many segments exist.
    pub compact_after_segments: usize,
    /// Keep reclaimed segments in `archive/` this long (`None`: delete them).
    pub archive_retention: Option<Duration>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_segment_bytes: 64 << 20,
            compact_after_segments: 8,
            archive_retention: None,
        }
    }
}

impl SpoolConfig {
    /// Set [`SpoolConfig::max_segment_bytes`].
    pub fn with_max_segment_bytes(mut self, bytes: u64) -> Self {
        self.max_segment_bytes = bytes.max(4096);
        self
    }

    /// Set [`SpoolConfig::compact_after_segments`].
    pub fn with_compact_after_segments(mut self, n: usize) -> Self {
        self.compact_after_segments = n.max(1);
        self
    }

    /// Set [`SpoolConfig::archive_retention`].
    pub fn with_archive_retention(mut self, retention: Option<Duration>) -> Self {
        self.archive_retention = retention;
        self
    }
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segments replayed.
    pub segments: usize,
    /// Live messages recovered (to be rescheduled).
    pub messages: usize,
    /// Bytes of a torn final write that were discarded.
    pub truncated_bytes: u64,
    /// Files written to `corrupt/`.
    pub corrupt_files: Vec<PathBuf>,
}

/// Metadata of one spooled message, as listed and inspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageInfo {
    /// The queue id.
    pub id: QueueId,
    /// When the spool accepted it (from the spool's clock).
    pub arrival: SystemTime,
    /// Sender, parameters and recipients.
    pub envelope: Envelope,
    /// Size of the message in octets.
    pub size: u64,
    /// Delivery state (per recipient, hold).
    pub state: DeliveryState,
}

#[derive(Serialize, Deserialize)]
struct MessageMeta {
    id: QueueId,
    arrival: SystemTime,
    envelope: Envelope,
    state: DeliveryState,
}

#[derive(Serialize, Deserialize)]
struct StateRecord {
    id: QueueId,
    state: DeliveryState,
}

#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
    record_len: u32,
}

struct Entry {
    info: MessageInfo,
    location: Location,
    /// Segments holding records of this message that still matter.
    segments: Vec<u64>,
}

#[derive(Default)]
struct Index {
    messages: HashMap<QueueId, Entry>,
    /// Per segment: how many live messages have records in it.
    segments: BTreeMap<u64, u64>,
}

impl Index {
    fn touch(&mut self, id: QueueId, segment: u64) {
        if let Some(e) = self.messages.get_mut(&id)
            && !e.segments.contains(&segment)
        {
            e.segments.push(segment);
            *self.segments.entry(segment).or_insert(0) += 1;
        }
    }

    fn forget_segments(&mut self, segments: &[u64]) {
        for s in segments {
            if let Some(n) = self.segments.get_mut(s) {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn insert(&mut self, info: MessageInfo, location: Location) {
        let id = info.id;
        if let Some(old) = self.messages.remove(&id) {
            // A copied-forward record supersedes every older record.
            self.forget_segments(&old.segments);
        }
        self.messages.insert(
            id,
            Entry {
                info,
                location,
                segments: Vec::new(),
            },
        );
        self.segments.entry(location.segment).or_insert(0);
        self.touch(id, location.segment);
    }

    fn set_state(&mut self, id: QueueId, state: DeliveryState, segment: u64) {
        if let Some(e) = self.messages.get_mut(&id) {
            e.info.state = state;
            self.touch(id, segment);
        }
    }

    fn remove(&mut self, id: QueueId) {
        if let Some(old) = self.messages.remove(&id) {
            self.forget_segments(&old.segments);
        }
    }
}

enum Op {
    Insert {
        info: Box<MessageInfo>,
        rel: usize,
        record_len: u32,
    },
    State {
        id: QueueId,
        state: DeliveryState,
    },
    Remove {
        id: QueueId,
    },
}

struct Active {
    seq: u64,
    file: File,
    len: u64,
}

struct Log {
    buf: Vec<u8>,
    ops: Vec<Op>,
    next_ticket: u64,
    durable_ticket: u64,
    committing: bool,
    poisoned: Option<String>,
}

struct Inner {
    dir: PathBuf,
    config: SpoolConfig,
    clock: Arc<dyn Clock>,
    _lock: File,
    log: Mutex<Log>,
    committed: Condvar,
    writer: Mutex<Active>,
    active_seq: AtomicU64,
    index: RwLock<Index>,
    /// State changes (shared) against compaction (exclusive), so a copied
    /// record never carries stale state or resurrects a removed message,
    /// while state changes still share group commits with each other.
    mutate: RwLock<()>,
    next_id: AtomicU64,
    recovery: RecoveryReport,
}

/// The durable message spool. Cheap to clone (shared handle); `Send + Sync`.
///
/// Writes block on `fdatasync`: async callers should use
/// `tokio::task::spawn_blocking` (or a dedicated thread).
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner.dir)
            .field("messages", &self.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.log")
}

fn sync_dir(path: &Path) -> Result<(), SpoolError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io("sync dir", path, e))
}

fn encode_record(kind: u8, payload_parts: &[&[u8]], out: &mut Vec<u8>) -> u32 {
    let len: usize = payload_parts.iter().map(|p| p.len()).sum();
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    for p in payload_parts {
        h.update(p);
    }
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.push(kind);
    for p in payload_parts {
        out.extend_from_slice(p);
    }
    (HEADER_LEN + len) as u32
}

/// Whether `buf` starts with a record header whose whole record is present
/// but fails its checksum: corruption, not a torn write (set it aside).
fn whole_but_bad(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN
        && buf[..4] == MAGIC
        && u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]])
            .checked_add(HEADER_LEN as u32)
            .is_some_and(|total| total <= MAX_RECORD && total as usize <= buf.len())
        && parse_record(buf).is_none()
}

/// A record parsed from a buffer: kind, payload and its total length.
fn parse_record(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    if buf.len() < HEADER_LEN || buf[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > MAX_RECORD {
        return None;
    }
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let total = HEADER_LEN + len as usize;
    if buf.len() < total {
        return None;
    }
    let kind = buf[12];
    let payload = &buf[HEADER_LEN..total];
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    (h.finalize() == crc).then_some((kind, payload, total))
}

fn split_message(payload: &[u8]) -> Option<(MessageMeta, &[u8])> {
    let meta_len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let meta_end = 4usize.checked_add(meta_len)?;
    let meta: MessageMeta = serde_json::from_slice(payload.get(4..meta_end)?).ok()?;
    Some((meta, payload.get(meta_end..)?))
}

fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Spool {
    /// Open (creating if needed) the spool in `dir`, take its lock and
    /// recover: replay every segment, truncate a torn final write, set
    /// corrupt records aside in `corrupt/`. Recovered messages are listed by
    /// [`Spool::list`] for the scheduler to pick up; what was found is in
    /// [`Spool::recovery_report`].
    ///
    /// Arrival times of stored messages are read from `clock`.
    pub fn open(
        dir: impl AsRef<Path>,
        config: SpoolConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Spool, SpoolError> {
        let dir = dir.as_ref().to_owned();
        for sub in ["segments", "corrupt", "archive"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| SpoolError::io("create dir", &p, e))?;
        }
        sync_dir(&dir)?;
        let lock_path = dir.join("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| SpoolError::io("open", &lock_path, e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir)),
            Err(fs::TryLockError::Error(e)) => return Err(SpoolError::io("lock", &lock_path, e)),
        }

        let (index, mut report, last_seq) = recover(&dir)?;
        // Never append to a recovered segment: start a fresh one.
        let seq = last_seq.map_or(1, |s| s + 1);
        let active = create_segment(&dir, seq)?;
        let max_id = index.messages.keys().map(|id| id.0).max().unwrap_or(0);
        let next_id = max_id.saturating_add(1).max(unix_micros(clock.now()));
        report.messages = index.messages.len();

        let spool = Spool {
            inner: Arc::new(Inner {
                dir,
                config,
                clock,
                _lock: lock_file,
                log: Mutex::new(Log {
                    buf: Vec::new(),
                    ops: Vec::new(),
                    next_ticket: 1,
                    durable_ticket: 0,
                    committing: false,
                    poisoned: None,
                }),
                committed: Condvar::new(),
                writer: Mutex::new(active),
                active_seq: AtomicU64::new(seq),
                index: RwLock::new(index),
                mutate: RwLock::new(()),
                next_id: AtomicU64::new(next_id),
                recovery: report,
            }),
        };
        {
            let mut idx = spool.write_index();
            idx.segments.entry(seq).or_insert(0);
        }
        spool.reclaim()?;
        Ok(spool)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What recovery found when this spool was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Store a message with its envelope. Returns only when both are durable
    /// (written and `fdatasync`ed; see the module docs), so the caller may
    /// then answer `250`. Concurrent callers share syncs (group commit).
    pub fn store(&self, envelope: &Envelope, message: &[u8]) -> Result<QueueId, SpoolError> {
        self.store_with_hold(envelope, message, Hold::None)
    }

    /// Store a message that a filter quarantined: durable like
    /// [`Spool::store`], listed by [`Spool::quarantined`], not scheduled
    /// until [`Spool::release`]d.
    pub fn store_quarantined(
        &self,
        envelope: &Envelope,
        message: &[u8],
        reason: &str,
    ) -> Result<QueueId, SpoolError> {
        self.store_with_hold(
            envelope,
            message,
            Hold::Quarantined {
                reason: reason.to_owned(),
            },
        )
    }

    fn store_with_hold(
        &self,
        envelope: &Envelope,
        message: &[u8],
        hold: Hold,
    ) -> Result<QueueId, SpoolError> {
        let id = QueueId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let mut state = DeliveryState::new(envelope.recipients.len());
        state.hold = hold;
        let info = MessageInfo {
            id,
            arrival: self.inner.clock.now(),
            envelope: envelope.clone(),
            size: message.len() as u64,
            state,
        };
        self.append_message(info, message)?;
        Ok(id)
    }

    fn append_message(&self, info: MessageInfo, message: &[u8]) -> Result<(), SpoolError> {
        let meta_json = message_meta(&info, message.len())?;
        self.append(|buf, ops| push_message(buf, ops, info, &meta_json, message))
    }

    /// Append records through group commit and wait until they are durable.
    fn append(&self, encode: impl FnOnce(&mut Vec<u8>, &mut Vec<Op>)) -> Result<(), SpoolError> {
        let inner = &*self.inner;
        let mut log = lock(&inner.log);
        if let Some(p) = &log.poisoned {
            return Err(SpoolError::Poisoned(p.clone()));
        }
        let Log { buf, ops, .. } = &mut *log;
        encode(buf, ops);
        let ticket = log.next_ticket;
        log.next_ticket += 1;
        loop {
            if log.durable_ticket >= ticket {
                return match &log.poisoned {
                    Some(p) => Err(SpoolError::Poisoned(p.clone())),
                    None => Ok(()),
                };
            }
            if log.committing {
                log = inner.committed.wait(log).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Become the leader: commit everything queued so far.
            log.committing = true;
            let buf = std::mem::take(&mut log.buf);
            let ops = std::mem::take(&mut log.ops);
            let last = log.next_ticket - 1;
            drop(log);
            let mut rotated = false;
            // Only the leader touches the writer, so this lock is uncontended.
            let mut writer = lock(&inner.writer);
            let result = (|| {
                if writer.len >= inner.config.max_segment_bytes {
                    *writer = create_segment(&inner.dir, writer.seq + 1)?;
                    inner.active_seq.store(writer.seq, Ordering::Release);
                    rotated = true;
                }
                let path = self.segment_path(writer.seq);
                writer
                    .file
                    .write_all(&buf)
                    .map_err(|e| SpoolError::io("write", &path, e))?;
                writer
                    .file
                    .sync_data()
                    .map_err(|e| SpoolError::io("fdatasync", &path, e))?;
                Ok::<(), SpoolError>(())
            })();
            let base = writer.len;
            let seq = writer.seq;
            if result.is_ok() {
                writer.len += buf.len() as u64;
            }
            drop(writer);
            if result.is_ok() {
                let mut idx = self.write_index();
                if rotated {
                    idx.segments.entry(seq).or_insert(0);
                }
                for op in ops {
                    match op {
                        Op::Insert {
                            info,
                            rel,
                            record_len,
                        } => idx.insert(
                            *info,
                            Location {
                                segment: seq,
                                offset: base + rel as u64,
                                record_len,
                            },
                        ),
                        Op::State { id, state } => idx.set_state(id, state, seq),
                        Op::Remove { id } => idx.remove(id),
                    }
                }
            }
            log = lock(&inner.log);
            if let Err(e) = &result {
                tracing::error!(error = %e, "spool write failed; refusing further writes");
                log.poisoned = Some(e.to_string());
            }
            log.durable_ticket = last;
            log.committing = false;
            inner.committed.notify_all();
            drop(log);
            if rotated {
                // The records are durable already: a reclaim failure must not
                // turn this store into an error (the client would resend).
                if let Err(e) = self.reclaim() {
                    tracing::warn!(error = %e, "spool segment reclamation failed");
                }
            }
            log = lock(&inner.log);
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the spool still accepts writes (false after a write or
    /// sync failure; reopen to recover).
    pub fn is_healthy(&self) -> bool {
        lock(&self.inner.log).poisoned.is_none()
    }

    /// Number of live messages (including held and quarantined ones).
    pub fn len(&self) -> usize {
        self.read_index().messages.len()
    }

    /// Whether the spool holds no live message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live message, oldest id first (admin "list"; also what a
    /// scheduler enqueues after [`Spool::open`]).
    pub fn list(&self) -> Vec<MessageInfo> {
        let idx = self.read_index();
        let mut v: Vec<MessageInfo> = idx.messages.values().map(|e| e.info.clone()).collect();
        v.sort_by_key(|m| m.id);
        v
    }

    /// Messages quarantined by a filter.
    pub fn quarantined(&self) -> Vec<MessageInfo> {
        let mut v: Vec<MessageInfo> = self
            .read_index()
            .messages
            .values()
            .filter(|e| matches!(e.info.state.hold, Hold::Quarantined { .. }))
            .map(|e| e.info.clone())
            .collect();
        v.sort_by_key(|m| m.id);
        v
    }

    /// Metadata and state of one message (admin "inspect").
    pub fn inspect(&self, id: QueueId) -> Result<MessageInfo, SpoolError> {
        self.read_index()
            .messages
            .get(&id)
            .map(|e| e.info.clone())
            .ok_or(SpoolError::NotFound(id))
    }

    /// The message bytes, checksum-verified.
    pub fn read(&self, id: QueueId) -> Result<Vec<u8>, SpoolError> {
        // Compaction may move the record between looking it up and opening
        // the segment; look again once if the segment is gone.
        for _ in 0..3 {
            let loc = self
                .read_index()
                .messages
                .get(&id)
                .map(|e| e.location)
                .ok_or(SpoolError::NotFound(id))?;
            let path = self.segment_path(loc.segment);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SpoolError::io("open", &path, e)),
            };
            let mut buf = vec![0; loc.record_len as usize];
            file.read_exact_at(&mut buf, loc.offset)
                .map_err(|e| SpoolError::io("read", &path, e))?;
            let corrupt = |detail: &str| SpoolError::Corrupt {
                id,
                detail: detail.to_owned(),
            };
            let (kind, payload, _) = parse_record(&buf).ok_or_else(|| corrupt("bad checksum"))?;
            if kind != KIND_MESSAGE {
                return Err(corrupt("not a message record"));
            }
            let (meta, data) = split_message(payload).ok_or_else(|| corrupt("bad metadata"))?;
            if meta.id != id {
                return Err(corrupt("record belongs to another message"));
            }
            return Ok(data.to_vec());
        }
        Err(SpoolError::NotFound(id))
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.inner.dir.join("segments").join(segment_name(seq))
    }

    /// Persist a message's delivery state (after the scheduler changed it).
    /// Durable on return.
    pub fn set_state(&self, id: QueueId, state: &DeliveryState) -> Result<(), SpoolError> {
        let _m = self.inner.mutate.read().unwrap_or_else(|e| e.into_inner());
        {
            let idx = self.read_index();
            let e = idx.messages.get(&id).ok_or(SpoolError::NotFound(id))?;
            if e.info.envelope.recipients.len() != state.recipients.len() {
                return Err(SpoolError::InvalidState {
                    id,
                    detail: format!(
                        "{} recipient states for {} recipients",
                        state.recipients.len(),
                        e.info.envelope.recipients.len()
                    ),
                });
            }
        }
        let json = serde_json::to_vec(&StateRecord {
            id,
            state: state.clone(),
        })
        .map_err(|e| SpoolError::InvalidState {
            id,
            detail: e.to_string(),
        })?;
        let state = state.clone();
        self.append(|buf, ops| {
            encode_record(KIND_STATE, &[&json], buf);
            ops.push(Op::State { id, state });
        })
    }

    fn update_state(
        &self,
        id: QueueId,
        f: impl FnOnce(&mut DeliveryState),
    ) -> Result<DeliveryState, SpoolError> {
        let mut state = self.inspect(id)?.state;
        f(&mut state);
        self.set_state(id, &state)?;
        Ok(state)
    }

    /// Hold a message (admin): it stays spooled but is not delivered.
    pub fn hold(&self, id: QueueId) -> Result<DeliveryState, SpoolError> {
        self.update_state(id, |s| s.hold = Hold::Held)
    }

    /// Release a held or quarantined message for delivery.
    pub fn release(&self, id: QueueId) -> Result<DeliveryState, SpoolError> {
        self.update_state(id, |s| s.hold = Hold::None)
    }

    /// Clear every pending recipient's retry time so the message is due now
    /// (admin "deliver now"; tell the scheduler too).
    pub fn deliver_now(&self, id: QueueId) -> Result<DeliveryState, SpoolError> {
        self.update_state(id, |s| {
            for r in &mut s.recipients {
                r.next_attempt = None;
            }
        })
    }

    /// Remove a message (delivered, bounced, expired or deleted by an
    /// admin). Durable on return.
    pub fn remove(&self, id: QueueId) -> Result<(), SpoolError> {
        let _m = self.inner.mutate.read().unwrap_or_else(|e| e.into_inner());
        if !self.read_index().messages.contains_key(&id) {
            return Err(SpoolError::NotFound(id));
        }
        self.append(|buf, ops| {
            encode_record(KIND_REMOVE, &[&id.0.to_le_bytes()], buf);
            ops.push(Op::Remove { id });
        })
    }

    /// Housekeeping, to be called now and then (e.g. every minute):
    /// reclaims empty segments, copies live messages out of the oldest
    /// segment when there are more than `compact_after_segments`, and prunes
    /// archived segments older than the retention at `now`.
    pub fn maintain(&self, now: SystemTime) -> Result<(), SpoolError> {
        self.reclaim()?;
        let (count, oldest, active) = {
            let idx = self.read_index();
            let active = self.inner.active_seq.load(Ordering::Acquire);
            (
                idx.segments.len(),
                idx.segments.keys().next().copied(),
                active,
            )
        };
        if let Some(oldest) = oldest
            && count > self.inner.config.compact_after_segments
            && oldest != active
        {
            self.compact_segment(oldest)?;
            self.reclaim()?;
        }
        self.prune_archive(now)
    }

    fn compact_segment(&self, seq: u64) -> Result<(), SpoolError> {
        // Copy in batches of ~8 MiB, one group commit each; state changes
        // wait meanwhile so no copy carries stale state.
        const BATCH_BYTES: usize = 8 << 20;
        let _m = self.inner.mutate.write().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<QueueId> = self
            .read_index()
            .messages
            .iter()
            .filter(|(_, e)| e.segments.contains(&seq))
            .map(|(id, _)| *id)
            .collect();
        let mut batch: Vec<(MessageInfo, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        for (n, id) in ids.iter().enumerate() {
            match (self.inspect(*id), self.read(*id)) {
                (Ok(info), Ok(data)) => {
                    let meta = message_meta(&info, data.len())?;
                    bytes += meta.len() + data.len();
                    batch.push((info, meta, data));
                }
                (Err(SpoolError::NotFound(_)), _) | (_, Err(SpoolError::NotFound(_))) => {}
                (Err(e), _) | (_, Err(e)) => return Err(e),
            }
            if bytes >= BATCH_BYTES || n + 1 == ids.len() {
                let items = std::mem::take(&mut batch);
                bytes = 0;
                if items.is_empty() {
                    continue;
                }
                self.append(|buf, ops| {
                    for (info, meta, data) in items {
                        push_message(buf, ops, info, &meta, &data);
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Delete (or archive) segments that no live message needs, oldest first.
    fn reclaim(&self) -> Result<(), SpoolError> {
        let active = self.inner.active_seq.load(Ordering::Acquire);
        loop {
            let oldest = {
                let idx = self.read_index();
                match idx.segments.iter().next() {
                    Some((&seq, &live)) if live == 0 && seq != active => seq,
                    _ => return Ok(()),
                }
            };
            let path = self.segment_path(oldest);
            let segdir = self.inner.dir.join("segments");
            if self.inner.config.archive_retention.is_some() {
                let to = self.inner.dir.join("archive").join(segment_name(oldest));
                fs::rename(&path, &to).map_err(|e| SpoolError::io("archive", &path, e))?;
                sync_dir(&self.inner.dir.join("archive"))?;
            } else {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(SpoolError::io("remove", &path, e)),
                }
            }
            // Ordered removal: an older segment is gone for good before a
            // newer one (which may hold its removal records) goes.
            sync_dir(&segdir)?;
            self.write_index().segments.remove(&oldest);
        }
    }

    fn prune_archive(&self, now: SystemTime) -> Result<(), SpoolError> {
        let Some(retention) = self.inner.config.archive_retention else {
            return Ok(());
        };
        let dir = self.inner.dir.join("archive");
        let entries = fs::read_dir(&dir).map_err(|e| SpoolError::io("list", &dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            // Age is counted from the segment's last write (its mtime; a
            // rename keeps it), which is at or before the reclaim time.
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH);
            if now.duration_since(modified).unwrap_or_default() > retention {
                fs::remove_file(&path).map_err(|e| SpoolError::io("prune", &path, e))?;
            }
        }
        Ok(())
    }

    /// Archived copies of message `id` (from segments kept in `archive/`):
    /// metadata as it was when archived, and the message bytes.
    pub fn archived(&self, id: QueueId) -> Result<Option<(MessageInfo, Vec<u8>)>, SpoolError> {
        let dir = self.inner.dir.join("archive");
        let mut found = None;
        let entries = fs::read_dir(&dir).map_err(|e| SpoolError::io("list", &dir, e))?;
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let mut buf = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .map_err(|e| SpoolError::io("read", &path, e))?;
            let mut pos = 0;
            while let Some((kind, payload, total)) = parse_record(&buf[pos..]) {
                if kind == KIND_MESSAGE
                    && let Some((meta, data)) = split_message(payload)
                    && meta.id == id
                {
                    found = Some((
                        MessageInfo {
                            id,
                            arrival: meta.arrival,
                            size: data.len() as u64,
                            envelope: meta.envelope,
                            state: meta.state,
                        },
                        data.to_vec(),
                    ));
                }
                pos += total;
            }
        }
        Ok(found)
    }
}

/// The metadata JSON of a message record, checking the record size.
fn message_meta(info: &MessageInfo, message_len: usize) -> Result<Vec<u8>, SpoolError> {
    let meta = MessageMeta {
        id: info.id,
        arrival: info.arrival,
        envelope: info.envelope.clone(),
        state: info.state.clone(),
    };
    let meta_json = serde_json::to_vec(&meta).map_err(|e| SpoolError::InvalidState {
        id: info.id,
        detail: e.to_string(),
    })?;
    if 4 + meta_json.len() as u64 + message_len as u64 > u64::from(MAX_RECORD) {
        // Recovery would take a larger record for corruption.
        return Err(SpoolError::TooLarge(message_len as u64));
    }
    Ok(meta_json)
}

fn push_message(
    buf: &mut Vec<u8>,
    ops: &mut Vec<Op>,
    info: MessageInfo,
    meta_json: &[u8],
    message: &[u8],
) {
    let rel = buf.len();
    let meta_len = (meta_json.len() as u32).to_le_bytes();
    let record_len = encode_record(KIND_MESSAGE, &[&meta_len, meta_json, message], buf);
    ops.push(Op::Insert {
        info: Box::new(info),
        rel,
        record_len,
    });
}

fn create_segment(dir: &Path, seq: u64) -> Result<Active, SpoolError> {
    let segdir = dir.join("segments");
    let path = segdir.join(segment_name(seq));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| SpoolError::io("create", &path, e))?;
    let len = file
        .metadata()
        .map_err(|e| SpoolError::io("stat", &path, e))?
        .len();
    // The new name must be durable before any record in it is acknowledged.
    sync_dir(&segdir)?;
    Ok(Active { seq, file, len })
}

/// Replay all segments into an index.
fn recover(dir: &Path) -> Result<(Index, RecoveryReport, Option<u64>), SpoolError> {
    let segdir = dir.join("segments");
    let mut report = RecoveryReport::default();
    let mut segments = Vec::new();
    let entries = fs::read_dir(&segdir).map_err(|e| SpoolError::io("list", &segdir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io("list", &segdir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let seq = name
            .strip_suffix(".log")
            .filter(|s| s.len() == 16)
            .and_then(|s| u64::from_str_radix(s, 16).ok());
        match seq {
            Some(seq) => segments.push(seq),
            None => {
                let to = dir.join("corrupt").join(format!("stray-{name}"));
                tracing::warn!(file = %entry.path().display(), to = %to.display(), "stray file in spool segments moved aside");
                fs::rename(entry.path(), &to)
                    .map_err(|e| SpoolError::io("move aside", &entry.path(), e))?;
                report.corrupt_files.push(to);
            }
        }
    }
    segments.sort_unstable();
    let last = segments.last().copied();
    let mut index = Index::default();
    for &seq in &segments {
        let path = segdir.join(segment_name(seq));
        let mut buf = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| SpoolError::io("read", &path, e))?;
        index.segments.entry(seq).or_insert(0);
        report.segments += 1;
        let mut pos = 0usize;
        while pos < buf.len() {
            if let Some((kind, payload, total)) = parse_record(&buf[pos..]) {
                apply_recovered(&mut index, seq, pos as u64, kind, payload, total as u32);
                pos += total;
                continue;
            }
            // Bad bytes at `pos`: find the next valid record, if any.
            let next = (pos + 1..buf.len())
                .find(|&p| buf[p..].starts_with(&MAGIC) && parse_record(&buf[p..]).is_some());
            match next {
                None if Some(seq) == last && !whole_but_bad(&buf[pos..]) => {
                    // A torn final write: the store never returned.
                    let cut = (buf.len() - pos) as u64;
                    tracing::warn!(segment = %path.display(), offset = pos, bytes = cut, "discarding partial write at end of spool");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| SpoolError::io("open", &path, e))?;
                    f.set_len(pos as u64)
                        .and_then(|()| f.sync_all())
                        .map_err(|e| SpoolError::io("truncate", &path, e))?;
                    report.truncated_bytes += cut;
                    break;
                }
                next => {
                    let end = next.unwrap_or(buf.len());
                    let to = dir
                        .join("corrupt")
                        .join(format!("{seq:016x}-{pos:016x}.bin"));
                    tracing::warn!(segment = %path.display(), offset = pos, bytes = end - pos, to = %to.display(), "corrupt spool record set aside");
                    fs::write(&to, &buf[pos..end]).map_err(|e| SpoolError::io("write", &to, e))?;
                    report.corrupt_files.push(to);
                    pos = end;
                }
            }
        }
    }
    if !report.corrupt_files.is_empty() {
        sync_dir(&dir.join("corrupt"))?;
        sync_dir(&segdir)?;
    }
    Ok((index, report, last))
}

fn apply_recovered(
    index: &mut Index,
    seq: u64,
    offset: u64,
    kind: u8,
    payload: &[u8],
    record_len: u32,
) {
    match kind {
        KIND_MESSAGE => match split_message(payload) {
            Some((meta, data)) => index.insert(
                MessageInfo {
                    id: meta.id,
                    arrival: meta.arrival,
                    size: data.len() as u64,
                    envelope: meta.envelope,
                    state: meta.state,
                },
                Location {
                    segment: seq,
                    offset,
                    record_len,
                },
            ),
            None => tracing::warn!(segment = seq, offset, "undecodable message record skipped"),
        },
        KIND_STATE => match serde_json::from_slice::<StateRecord>(payload) {
            Ok(r) => index.set_state(r.id, r.state, seq),
            Err(e) => {
                tracing::warn!(segment = seq, offset, error = %e, "undecodable state record skipped")
            }
        },
        KIND_REMOVE => match payload.try_into() {
            Ok(b) => index.remove(QueueId(u64::from_le_bytes(b))),
            Err(_) => tracing::warn!(segment = seq, offset, "bad remove record skipped"),
        },
        other => tracing::warn!(
            segment = seq,
            offset,
            kind = other,
            "unknown record kind skipped"
        ),
    }
}
