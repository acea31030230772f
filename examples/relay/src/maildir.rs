//! Local delivery into Maildir folders (`<root>/<domain>/<local>/new/`).
//!
//! A message is written to `tmp/`, fsync'd, renamed into `new/` and the
//! directory fsync'd, so a delivered message survives a crash. The file name
//! is derived from the queue id and recipient index: redelivering after a
//! crash between "written" and "marked delivered in the queue" replaces the
//! same file instead of making a duplicate.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use portcullis_core::{Address, ReversePath};

/// Whether a local part may name a mailbox directory: letters, digits and
/// `. _ + -`, not starting with a dot (no `..`, no `/`, no hidden names).
pub(crate) fn is_safe_mailbox_name(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// The Maildir of `addr` under `root`; `None` if its name is not safe.
pub(crate) fn mailbox_dir(root: &Path, addr: &Address) -> Option<PathBuf> {
    let local = addr.local_part().as_str().to_ascii_lowercase();
    let domain = addr.domain().ascii();
    if !is_safe_mailbox_name(&local) || !is_safe_mailbox_name(domain) {
        return None;
    }
    Some(root.join(domain).join(local))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Deliver one message to one mailbox. `unique` must be unique per
/// (message, recipient) and stable across retries (queue id + index).
pub(crate) fn deliver(
    root: &Path,
    addr: &Address,
    sender: &ReversePath,
    unique: &str,
    hostname: &str,
    message: &[u8],
) -> io::Result<PathBuf> {
    let dir = mailbox_dir(root, addr).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} does not name a safe mailbox directory"),
        )
    })?;
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let safe_unique: String = unique
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{safe_unique}.{hostname}");
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        // RFC 5321 §4.4: the final delivery adds Return-Path.
        let mut head = Vec::with_capacity(128);
        head.extend_from_slice(b"Return-Path: ");
        head.extend_from_slice(sender.to_string().as_bytes());
        head.extend_from_slice(b"\r\nDelivered-To: ");
        head.extend_from_slice(addr.to_string().as_bytes());
        head.extend_from_slice(b"\r\n");
        f.write_all(&head)?;
        f.write_all(message)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &new)?;
    sync_dir(&dir.join("new"))?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_with_return_path() {
        let root = tempfile::tempdir().unwrap();
        let addr = Address::parse("Postmaster@LocalHost").unwrap();
        let from = ReversePath::parse("<a@example.net>").unwrap();
        let path = deliver(
            root.path(),
            &addr,
            &from,
            "Q1.0",
            "mx",
            b"Subject: x\r\n\r\nhi\r\n",
        )
        .unwrap();
        assert_eq!(
            path.parent().unwrap(),
            root.path().join("localhost/postmaster/new")
        );
        let got = fs::read(&path).unwrap();
        assert_eq!(
            got,
            b"Return-Path: <a@example.net>\r\nDelivered-To: Postmaster@LocalHost\r\nSubject: x\r\n\r\nhi\r\n"
        );
        assert_eq!(
            fs::read_dir(path.parent().unwrap().parent().unwrap().join("tmp"))
                .unwrap()
                .count(),
            0
        );
        // A retry of the same delivery replaces, not duplicates.
        deliver(root.path(), &addr, &from, "Q1.0", "mx", b"x\r\n").unwrap();
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["", ".hidden", "a/b", "..", "a%b", "a!b", "a b"] {
            assert!(!is_safe_mailbox_name(bad), "{bad}");
        }
        for good in ["postmaster", "first.last", "a+tag", "x_y-z"] {
            assert!(is_safe_mailbox_name(good), "{good}");
        }
    }
}
