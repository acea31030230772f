//! Delivery status notifications (RFC 3461 parameters, RFC 3464 format).
//!
//! [`build_dsn`] turns a spooled message and the recipients to report on
//! into a `multipart/report; report-type=delivery-status` message with a
//! human-readable part, a `message/delivery-status` part and the original
//! (headers only, or the whole message per `RET`), plus the envelope to
//! send it with: from `<>` (RFC 5321 §4.5.5) to the original sender. No
//! DSN is ever produced for a message whose reverse path is null, nor for
//! recipients whose `NOTIFY` does not ask for this kind.
//!
//! A message sent with `REQUIRETLS` (RFC 8689 §5) is reported as if it had
//! `RET=HDRS` (a `RET=FULL` is disregarded): only its header section is
//! returned; and the DSN is itself sent with `REQUIRETLS`, so the way back
//! to the sender keeps the same promise (where it cannot, the DSN is lost,
//! as §5 warns, rather than sent in the clear). Both hold for every kind
//! of notice, not only failures: a delay or success notice quotes the same
//! header section.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_core::{
    Body, EnhancedCode, Envelope, ForwardPath, MailParams, Notify, Recipient, Reply, Ret,
    ReversePath,
};

use crate::spool::MessageInfo;

/// Which notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DsnKind {
    /// Permanent failure (`Action: failed`), for `NOTIFY=FAILURE` (the default).
    Failure,
    /// Still trying (`Action: delayed`), for `NOTIFY=DELAY` (the default).
    Delay,
    /// Delivered (`Action: delivered`), only for `NOTIFY=SUCCESS`.
    Success,
    /// Handed to a next hop that does not do DSN (`Action: relayed`, RFC
    /// 3464 §2.3.3), only for `NOTIFY=SUCCESS` (RFC 3461 §4.1): the last
    /// notice the sender gets from a DSN-aware path.
    Relayed,
}

impl DsnKind {
    fn action(self) -> &'static str {
        match self {
            DsnKind::Failure => "failed",
            DsnKind::Delay => "delayed",
            DsnKind::Success => "delivered",
            DsnKind::Relayed => "relayed",
        }
    }

    /// Whether a recipient with these `NOTIFY` flags asked for this kind.
    pub fn requested_by(self, notify: Notify) -> bool {
        match self {
            DsnKind::Failure => notify.failure,
            DsnKind::Delay => notify.delay,
            DsnKind::Success | DsnKind::Relayed => notify.success,
        }
    }
}

/// Settings for generated DSNs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DsnConfig {
    /// This MTA's host name (`Reporting-MTA`, `From: MAILER-DAEMON@…`).
    pub reporting_mta: String,
    /// With no `RET`, a failure DSN returns the full message up to this
    /// size and only the headers above it (`RET=FULL` is honoured up to
    /// this size too).
    pub max_full_return: usize,
}

impl DsnConfig {
    /// DSNs reported by `reporting_mta`; full message returned up to 1 MiB.
    pub fn new(reporting_mta: impl Into<String>) -> Self {
        DsnConfig {
            reporting_mta: reporting_mta.into(),
            max_full_return: 1 << 20,
        }
    }
}

/// One recipient to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DsnRecipient {
    /// Envelope index of the recipient in the original message.
    pub index: usize,
    /// The last reply (remote or local) explaining the status, if any.
    pub reply: Option<Reply>,
    /// The remote MTA that gave the reply, if known.
    pub remote_mta: Option<String>,
}

impl DsnRecipient {
    /// Report on recipient `index` with `reply`.
    pub fn new(index: usize, reply: Option<Reply>) -> Self {
        DsnRecipient {
            index,
            reply,
            remote_mta: None,
        }
    }
}

/// A DSN ready to spool: send `message` with `envelope` (from `<>`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dsn {
    /// `MAIL FROM:<>` to the original sender.
    pub envelope: Envelope,
    /// The report message (CRLF line ends).
    pub message: Vec<u8>,
}

/// Build a DSN of `kind` for `info` (the original envelope and arrival)
/// about `recipients`, with `original` the original message bytes.
///
/// Returns `None` when no DSN must be sent: a null reverse path, or no
/// listed recipient whose `NOTIFY` asks for `kind`.
/// `will_retry_until` fills `Will-Retry-Until` in delay reports.
pub fn build_dsn(
    config: &DsnConfig,
    kind: DsnKind,
    info: &MessageInfo,
    recipients: &[DsnRecipient],
    original: &[u8],
    now: SystemTime,
    will_retry_until: Option<SystemTime>,
) -> Option<Dsn> {
    // RFC 3461 §6.2 / RFC 5321 §4.5.5: never notify about a notification.
    let sender = info.envelope.reverse_path.address()?.clone();
    let reported: Vec<(&Recipient, &DsnRecipient)> = recipients
        .iter()
        .filter_map(|r| info.envelope.recipients.get(r.index).map(|rc| (rc, r)))
        .filter(|(rc, _)| kind.requested_by(rc.effective_notify()))
        .collect();
    if reported.is_empty() {
        return None;
    }
    let host = one_line(&config.reporting_mta);
    let boundary = format!(
        "=_portcullis_{:016x}_{:x}",
        info.id.0,
        unix_secs(now) ^ 0x5a5a_5a5a
    );
    let mut m = String::new();
    let subject = match kind {
        DsnKind::Failure => "Undelivered Mail Returned to Sender",
        DsnKind::Delay => "Delayed Mail (still being retried)",
        DsnKind::Success => "Successful Mail Delivery Report",
        DsnKind::Relayed => "Relayed Mail Delivery Report",
    };
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.{ts}.dsn@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n",
        date = rfc5322_date(now),
        id = info.id,
        ts = unix_secs(now),
    );
    // Human part.
    let _ = write!(m, "This is the mail system at host {host}.\r\n\r\n");
    match kind {
        DsnKind::Failure => m.push_str(
            "Your message could not be delivered to one or more recipients.\r\n\
             It is attached below.\r\n\r\n",
        ),
        DsnKind::Delay => m.push_str(
            "Your message could not be delivered yet. The mail system will keep\r\n\
             trying; you do not need to send it again.\r\n\r\n",
        ),
        DsnKind::Success => {
            m.push_str("Your message was delivered to the following recipients.\r\n\r\n")
        }
        DsnKind::Relayed => m.push_str(
            "Your message was relayed to the following recipients, through a mail\r\n\
             system that does not send delivery notifications: you will get no\r\n\
             further notice of its delivery, though other systems may still report\r\n\
             a failure.\r\n\r\n",
        ),
    }
    for (rc, r) in &reported {
        let _ = write!(m, "<{}>", final_recipient(&rc.path));
        if let Some(reply) = &r.reply {
            let _ = write!(m, ": {}", one_line(&reply.to_string()));
        }
        m.push_str("\r\n");
    }
    // Machine-readable part (RFC 3464 §2).
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n"
    );
    if let Some(envid) = &info.envelope.params.envid {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", xtext(envid));
    }
    let _ = write!(m, "Arrival-Date: {}\r\n", rfc5322_date(info.arrival));
    for (rc, r) in &reported {
        m.push_str("\r\n");
        if let Some((addr_type, addr)) = &rc.orcpt {
            let _ = write!(
                m,
                "Original-Recipient: {}; {}\r\n",
                one_line(addr_type),
                xtext(addr)
            );
        }
        let _ = write!(
            m,
            "Final-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\n",
            final_recipient(&rc.path),
            kind.action(),
            status(kind, r.reply.as_ref())
        );
        if let Some(mta) = &r.remote_mta {
            let _ = write!(m, "Remote-MTA: dns; {}\r\n", one_line(mta));
        }
        if let Some(reply) = &r.reply {
            let _ = write!(
                m,
                "Diagnostic-Code: smtp; {}\r\n",
                one_line(&reply.to_string())
            );
        }
        if !matches!(kind, DsnKind::Success | DsnKind::Relayed) {
            let _ = write!(m, "Last-Attempt-Date: {}\r\n", rfc5322_date(now));
        }
        if let (DsnKind::Delay, Some(until)) = (kind, will_retry_until) {
            let _ = write!(m, "Will-Retry-Until: {}\r\n", rfc5322_date(until));
        }
    }
    // The original: full or headers (RFC 3461 §4.3, RFC 3462 text/rfc822-headers).
    // RFC 8689 §5: REQUIRETLS behaves as RET=HDRS, RET=FULL disregarded.
    let requiretls = info.envelope.params.requiretls;
    let full = kind == DsnKind::Failure
        && !requiretls
        && info.envelope.params.ret != Some(Ret::Headers)
        && original.len() <= config.max_full_return;
    let mut out = m.into_bytes();
    let eight_bit = !original.is_ascii();
    if full {
        let _ = write_str(
            &mut out,
            &format!(
                "\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n{}\r\n",
                if eight_bit {
                    "Content-Transfer-Encoding: 8bit\r\n"
                } else {
                    ""
                }
            ),
        );
        out.extend_from_slice(original);
        if !original.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    } else {
        let _ = write_str(
            &mut out,
            &format!(
                "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n{}\r\n",
                if eight_bit {
                    "Content-Transfer-Encoding: 8bit\r\n"
                } else {
                    ""
                }
            ),
        );
        let headers = header_block(original);
        out.extend_from_slice(headers);
        if !headers.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    let _ = write_str(&mut out, &format!("\r\n--{boundary}--\r\n"));

    let mut params = MailParams::default();
    if eight_bit {
        params.body = Body::EightBitMime;
    }
    // RFC 8689 §5: the notice about a REQUIRETLS message goes with REQUIRETLS.
    params.requiretls = requiretls;
    let mut envelope = Envelope::new(ReversePath::Null, params);
    let mut rcpt = Recipient::new(ForwardPath::Mailbox(sender));
    rcpt.notify = Some(Notify::NEVER);
    envelope.recipients.push(rcpt);
    Some(Dsn {
        envelope,
        message: out,
    })
}

fn write_str(out: &mut Vec<u8>, s: &str) -> std::fmt::Result {
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn final_recipient(path: &ForwardPath) -> String {
    match path.address() {
        Some(a) => one_line(&a.to_string()),
        None => "postmaster".to_owned(),
    }
}

/// The DSN status code: the reply's enhanced code when it has the right
/// class, else a generic one (RFC 3463).
fn status(kind: DsnKind, reply: Option<&Reply>) -> EnhancedCode {
    let want = match kind {
        DsnKind::Failure => 5,
        DsnKind::Delay => 4,
        DsnKind::Success | DsnKind::Relayed => 2,
    };
    match reply.and_then(|r| r.enhanced()) {
        Some(e) if e.class == want => e,
        _ => EnhancedCode::new(want, 0, 0),
    }
}

/// The header block of a message (up to the first empty line).
fn header_block(message: &[u8]) -> &[u8] {
    let crlf = message.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = message.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(c), _) => &message[..c + 2],
        (None, Some(l)) => &message[..l + 1],
        (None, None) => message,
    }
}

/// Keep a field value on one line: no CR/LF can start a new header.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// RFC 3461 §4 xtext: `+XX` for `+`, `=`, controls, space and non-ASCII.
pub(crate) fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
    out
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// RFC 5322 §3.3 date-time in UTC, e.g. `Tue, 24 Nov 2026 12:33:09 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = unix_secs(t);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, mo, d) = civil_from_days(days);
    const DOW: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DOW[(days % 7) as usize],
        d,
        MON[(mo - 1) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_005_189);
        assert_eq!(rfc5322_date(t), "Wed, 18 Nov 2026 12:33:09 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn xtext_encodes_specials() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }

    #[test]
    fn header_block_stops_at_blank_line() {
        assert_eq!(
            header_block(b"A: 1\r\nB: 2\r\n\r\nbody"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_block(b"A: 1\n\nbody"), b"A: 1\n");
    }
}
