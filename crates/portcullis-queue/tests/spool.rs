//! Spool behaviour: durability across reopen, recovery of torn and corrupt
//! records, state persistence, admin operations, compaction and archive.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{
    Clock, Envelope, ForwardPath, MailParams, ManualClock, Recipient, Reply, ReversePath,
};
use portcullis_queue::{
    DeliveryState, Hold, QueueId, RecipientStatus, Spool, SpoolConfig, SpoolError,
};

fn envelope(rcpts: &[&str]) -> Envelope {
    let mut env = Envelope::new(
        ReversePath::parse("<alice@example.org>").unwrap(),
        MailParams::default(),
    );
    for r in rcpts {
        env.recipients
            .push(Recipient::new(ForwardPath::parse(r).unwrap()));
    }
    env
}

fn open(dir: &std::path::Path, config: SpoolConfig) -> Spool {
    Spool::open(dir, config, Arc::new(ManualClock::default())).unwrap()
}

fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn stored_messages_survive_reopen_with_state() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let (a, b) = {
        let spool = Spool::open(tmp.path(), SpoolConfig::default(), clock.clone()).unwrap();
        let a = spool
            .store(&envelope(&["<b@x.example>", "<c@y.example>"]), b"msg a\r\n")
            .unwrap();
        clock.advance(Duration::from_secs(10));
        let b = spool
            .store(&envelope(&["<d@x.example>"]), b"msg b\r\n")
            .unwrap();
        assert!(b > a);
        let mut st = spool.inspect(a).unwrap().state;
        st.recipients[0].status = RecipientStatus::Delivered;
        st.recipients[0].attempts = 1;
        st.recipients[1].attempts = 1;
        st.recipients[1].last_reply = Some(Reply::new(451, (4, 7, 1), "later"));
        spool.set_state(a, &st).unwrap();
        (a, b)
    };
    let spool = Spool::open(tmp.path(), SpoolConfig::default(), clock.clone()).unwrap();
    assert_eq!(spool.recovery_report().messages, 2);
    assert_eq!(spool.read(a).unwrap(), b"msg a\r\n");
    assert_eq!(spool.read(b).unwrap(), b"msg b\r\n");
    let ia = spool.inspect(a).unwrap();
    assert_eq!(ia.state.recipients[0].status, RecipientStatus::Delivered);
    assert_eq!(ia.state.recipients[1].status, RecipientStatus::Pending);
    assert_eq!(
        ia.state.recipients[1].last_reply.as_ref().unwrap().code(),
        451
    );
    let ib = spool.inspect(b).unwrap();
    assert_eq!(
        ib.arrival.duration_since(ia.arrival).unwrap(),
        Duration::from_secs(10)
    );
    // New ids never collide with recovered ones.
    let c = spool.store(&envelope(&["<e@x.example>"]), b"c").unwrap();
    assert!(c > b);
}

#[test]
fn removed_messages_stay_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let id = {
        let spool = open(tmp.path(), SpoolConfig::default());
        let id = spool.store(&envelope(&["<b@x.example>"]), b"x").unwrap();
        spool.remove(id).unwrap();
        assert!(matches!(spool.read(id), Err(SpoolError::NotFound(_))));
        id
    };
    let spool = open(tmp.path(), SpoolConfig::default());
    assert!(spool.is_empty());
    assert!(matches!(spool.inspect(id), Err(SpoolError::NotFound(_))));
}

#[test]
fn a_second_process_cannot_open_a_locked_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let _spool = open(tmp.path(), SpoolConfig::default());
    let err = Spool::open(
        tmp.path(),
        SpoolConfig::default(),
        Arc::new(ManualClock::default()),
    )
    .unwrap_err();
    assert!(matches!(err, SpoolError::Locked(_)), "{err}");
}

#[test]
fn torn_final_write_is_discarded() {
    let tmp = tempfile::tempdir().unwrap();
    let id = {
        let spool = open(tmp.path(), SpoolConfig::default());
        spool
            .store(&envelope(&["<b@x.example>"]), b"whole")
            .unwrap()
    };
    // Simulate a crash in the middle of the next write: half a record.
    let last = segments(tmp.path()).pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(b"PCQ1\x40\x00\x00\x00garbage-partial").unwrap();
    drop(f);
    let spool = open(tmp.path(), SpoolConfig::default());
    assert_eq!(spool.len(), 1);
    assert_eq!(spool.read(id).unwrap(), b"whole");
    assert_eq!(spool.recovery_report().truncated_bytes, 23);
    assert!(spool.recovery_report().corrupt_files.is_empty());
}

#[test]
fn corrupt_record_is_quarantined_not_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = {
        let spool = open(tmp.path(), SpoolConfig::default());
        let a = spool
            .store(&envelope(&["<b@x.example>"]), b"first message")
            .unwrap();
        let b = spool
            .store(&envelope(&["<b@x.example>"]), b"second message")
            .unwrap();
        let c = spool
            .store(&envelope(&["<b@x.example>"]), b"third message")
            .unwrap();
        (a, b, c)
    };
    // Flip a byte inside the second message's body.
    let seg = segments(tmp.path())
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let at = bytes
        .windows(b"second message".len())
        .position(|w| w == b"second message")
        .unwrap();
    bytes[at] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();
    // A later segment exists (the one opened last time), so this is not the tail.
    let spool = open(tmp.path(), SpoolConfig::default());
    assert_eq!(spool.read(a).unwrap(), b"first message");
    assert_eq!(spool.read(c).unwrap(), b"third message");
    assert!(matches!(spool.inspect(b), Err(SpoolError::NotFound(_))));
    let report = spool.recovery_report();
    assert_eq!(report.corrupt_files.len(), 1);
    let kept = fs::read(&report.corrupt_files[0]).unwrap();
    assert!(kept.windows(13).any(|w| w == b"Second messag"));
}

#[test]
fn stray_files_are_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path(), SpoolConfig::default()));
    fs::write(tmp.path().join("segments").join("junk.tmp"), b"?").unwrap();
    let spool = open(tmp.path(), SpoolConfig::default());
    assert_eq!(spool.recovery_report().corrupt_files.len(), 1);
    assert!(tmp.path().join("corrupt").join("stray-junk.tmp").exists());
}

#[test]
fn hold_release_quarantine_and_deliver_now() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let spool = Spool::open(tmp.path(), SpoolConfig::default(), clock.clone()).unwrap();
    let env = envelope(&["<b@x.example>"]);
    let a = spool.store(&env, b"a").unwrap();
    let q = spool
        .store_quarantined(&env, b"q", "bulk checksum")
        .unwrap();
    assert_eq!(spool.hold(a).unwrap().hold, Hold::Held);
    let listed: Vec<QueueId> = spool.quarantined().iter().map(|m| m.id).collect();
    assert_eq!(listed, vec![q]);
    let mut st = spool.inspect(a).unwrap().state;
    st.recipients[0].next_attempt = Some(clock.now() + Duration::from_secs(3600));
    spool.set_state(a, &st).unwrap();
    drop(spool);

    let spool = Spool::open(tmp.path(), SpoolConfig::default(), clock.clone()).unwrap();
    assert_eq!(spool.inspect(a).unwrap().state.hold, Hold::Held);
    assert_eq!(
        spool.inspect(q).unwrap().state.hold,
        Hold::Quarantined {
            reason: "bulk checksum".into()
        }
    );
    assert!(
        spool.deliver_now(a).unwrap().recipients[0]
            .next_attempt
            .is_none()
    );
    assert_eq!(spool.release(a).unwrap().hold, Hold::None);
    assert_eq!(spool.release(q).unwrap().hold, Hold::None);
    assert!(spool.quarantined().is_empty());
    let wrong = DeliveryState::new(5);
    assert!(matches!(
        spool.set_state(a, &wrong),
        Err(SpoolError::InvalidState { .. })
    ));
}

#[test]
fn concurrent_writers_all_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(
        tmp.path(),
        SpoolConfig::default().with_max_segment_bytes(8192),
    );
    let ids: Vec<(QueueId, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let spool = spool.clone();
                s.spawn(move || {
                    (0..50)
                        .map(|i| {
                            let body = format!("thread {t} message {i}\r\n")
                                .repeat(20)
                                .into_bytes();
                            (
                                spool.store(&envelope(&["<b@x.example>"]), &body).unwrap(),
                                body,
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(ids.len(), 400);
    drop(spool);
    let spool = open(tmp.path(), SpoolConfig::default());
    assert_eq!(spool.len(), 400);
    for (id, body) in ids {
        assert_eq!(spool.read(id).unwrap(), body);
    }
    assert!(segments(tmp.path()).len() > 5, "small segments rotate");
}

#[test]
fn empty_segments_are_reclaimed_and_live_ones_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let config = SpoolConfig::default()
        .with_max_segment_bytes(4096)
        .with_compact_after_segments(2);
    let spool = Spool::open(tmp.path(), config.clone(), clock.clone()).unwrap();
    let body = vec![b'x'; 3000];
    let keep = spool
        .store(&envelope(&["<b@x.example>"]), b"long-lived")
        .unwrap();
    let mut gone = Vec::new();
    for _ in 0..20 {
        gone.push(spool.store(&envelope(&["<b@x.example>"]), &body).unwrap());
    }
    for id in &gone {
        spool.remove(*id).unwrap();
    }
    // `keep` pins the oldest segment; maintenance copies it forward.
    for _ in 0..5 {
        spool.maintain(clock.now()).unwrap();
    }
    assert!(
        segments(tmp.path()).len() <= 3,
        "{:?}",
        segments(tmp.path())
    );
    assert_eq!(spool.read(keep).unwrap(), b"long-lived");
    drop(spool);
    let spool = Spool::open(tmp.path(), config, clock).unwrap();
    assert_eq!(spool.len(), 1);
    assert_eq!(spool.read(keep).unwrap(), b"long-lived");
}

#[test]
fn archive_keeps_reclaimed_segments_until_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let config = SpoolConfig::default()
        .with_max_segment_bytes(4096)
        .with_archive_retention(Some(Duration::from_secs(86_400)));
    let spool = Spool::open(tmp.path(), config, clock.clone()).unwrap();
    let body = vec![b'y'; 5000];
    let first = spool.store(&envelope(&["<b@x.example>"]), &body).unwrap();
    spool.store(&envelope(&["<b@x.example>"]), &body).unwrap();
    spool.remove(first).unwrap();
    spool.store(&envelope(&["<b@x.example>"]), &body).unwrap(); // rotates, reclaims
    spool.maintain(clock.now()).unwrap();
    let (info, data) = spool.archived(first).unwrap().expect("archived copy");
    assert_eq!(info.id, first);
    assert_eq!(data, body);
    // Retention is measured against the `now` passed in (file mtime is real time).
    #[allow(clippy::disallowed_methods)]
    let later = std::time::SystemTime::now() + Duration::from_secs(2 * 86_400);
    spool.maintain(later).unwrap();
    assert!(spool.archived(first).unwrap().is_none());
}

#[test]
fn health_filter_continues_while_the_spool_accepts_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path(), SpoolConfig::default());
    assert!(spool.is_healthy());
    let f = portcullis_queue::SpoolHealthFilter::new(spool);
    assert_eq!(f.check(), portcullis_core::Verdict::Continue);
}

#[test]
fn corrupt_final_record_is_set_aside_not_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = {
        let spool = open(tmp.path(), SpoolConfig::default());
        let a = spool.store(&envelope(&["<b@x.example>"]), b"kept").unwrap();
        let b = spool
            .store(&envelope(&["<b@x.example>"]), b"flipped")
            .unwrap();
        (a, b)
    };
    // One segment: the damaged record is the last one of the newest segment,
    // where a torn write would be, but it is whole, so it is corruption.
    let segs = segments(tmp.path());
    assert_eq!(segs.len(), 1);
    let seg = segs[0].clone();
    let mut bytes = fs::read(&seg).unwrap();
    let at = bytes.windows(7).position(|w| w == b"flipped").unwrap();
    bytes[at] ^= 1;
    fs::write(&seg, &bytes).unwrap();
    let spool = open(tmp.path(), SpoolConfig::default());
    assert_eq!(spool.read(a).unwrap(), b"kept");
    assert!(spool.inspect(b).is_err());
    assert_eq!(spool.recovery_report().truncated_bytes, 0);
    assert_eq!(spool.recovery_report().corrupt_files.len(), 1);
}
