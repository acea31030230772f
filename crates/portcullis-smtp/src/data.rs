//! DATA decoding: end-of-data detection, dot-unstuffing and the checks that
//! make smuggling impossible (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8).
//!
//! [`DataDecoder`] is usable on its own (the [`Session`](crate::Session)
//! drives one per message). It never allocates: it appends the unstuffed
//! message to a caller's buffer.
//!
//! The end of the message is `<CRLF>.<CRLF>` and nothing else. Every CR must
//! be followed by LF and every LF preceded by CR; a bare CR or LF is recorded
//! ([`DataError::BareNewline`]) and, because the line it ends is not a line,
//! it can never start the end-of-data sequence: `<LF>.<LF>`, `<LF>.<CRLF>`,
//! `<CR>.<CR>` and `<CRLF>.<LF>` are all message content. The message is
//! read to its real end so that nothing after a smuggled terminator is ever
//! taken as a command.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use memchr::memrchr;

/// Finds `CRLF.`: the only place a line can start with a dot.
static STUFFED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n."));

/// Why a message has to be refused once its end is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A CR not followed by LF, or an LF not preceded by CR (RFC 5321 §2.3.8).
    #[error("bare <CR> or <LF> in message")]
    BareNewline,
    /// A text line over the configured limit (RFC 5321 §4.5.3.1.6).
    #[error("message line too long")]
    LineTooLong,
    /// More octets than the configured maximum message size (RFC 1870).
    #[error("message exceeds the maximum size")]
    TooBig,
}

impl DataError {
    /// The reply for a message refused for this reason.
    pub fn reply(&self) -> portcullis_core::Reply {
        use portcullis_core::Reply;
        match self {
            // Postfix's smtpd_forbid_bare_newline answers 5.5.2 as well.
            DataError::BareNewline => Reply::new(
                550,
                (5, 5, 2),
                "Message refused: bare <CR> or <LF> received (RFC 5321 section 2.3.8)",
            ),
            DataError::LineTooLong => Reply::new(
                550,
                (5, 5, 2),
                "Message refused: line longer than 1000 octets (RFC 5321 section 4.5.3.1.6)",
            ),
            DataError::TooBig => Reply::message_too_big(),
        }
    }
}

/// Where the decoder is, relative to line structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just after CRLF (or at the start of the data).
    LineStart,
    /// Inside a line; the last octet was not CR.
    Mid,
    /// Inside a line; the last octet was CR (already written out).
    Cr,
    /// After CRLF and `.` (the dot not yet written).
    Dot,
    /// After CRLF `.` CR (neither written).
    DotCr,
}

/// Progress of one [`DataDecoder::decode`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum DataStatus {
    /// All input was consumed; the message goes on.
    NeedMore,
    /// `<CRLF>.<CRLF>` was found: the first `consumed` octets of the input
    /// belonged to the message; the rest are commands.
    Complete {
        /// Octets of the input used, terminator included.
        consumed: usize,
    },
}

/// Decodes a DATA message: finds `<CRLF>.<CRLF>`, removes dot-stuffing, and
/// checks line endings, line length and size.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    line_len: usize,
    max_line: Option<usize>,
    max_size: Option<u64>,
    size: u64,
    wire_octets: u64,
    // Kept apart so the error reported does not depend on how the input
    // was split (the checks run at different points of a call).
    bare_newline: bool,
    line_too_long: bool,
    too_big: bool,
}

impl DataDecoder {
    /// A decoder. `max_line` is the longest text line in octets including
    /// CRLF (RFC 5321: 1000), `None` for no limit; `max_size` the largest
    /// unstuffed message, `None` for no limit.
    pub fn new(max_line: Option<usize>, max_size: Option<u64>) -> Self {
        DataDecoder {
            state: State::LineStart,
            line_len: 0,
            max_line,
            max_size,
            size: 0,
            wire_octets: 0,
            bare_newline: false,
            line_too_long: false,
            too_big: false,
        }
    }

    /// The problem with the message so far, if any; when there are several,
    /// `TooBig`, then `BareNewline`, then `LineTooLong`. The decoder goes on
    /// looking for the end of the data; after [`DataError::TooBig`] it
    /// writes no more output. (Output after other errors is still written
    /// but not meaningful: the message is to be refused.)
    pub fn error(&self) -> Option<DataError> {
        if self.too_big {
            Some(DataError::TooBig)
        } else if self.bare_newline {
            Some(DataError::BareNewline)
        } else if self.line_too_long {
            Some(DataError::LineTooLong)
        } else {
            None
        }
    }

    /// Octets of unstuffed message produced so far (counted even after an
    /// error, so a size can be reported).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Octets read from the wire so far.
    pub fn wire_octets(&self) -> u64 {
        self.wire_octets
    }

    fn fail(&mut self, e: DataError) {
        match e {
            DataError::BareNewline => self.bare_newline = true,
            DataError::LineTooLong => self.line_too_long = true,
            DataError::TooBig => self.too_big = true,
        }
    }

    #[inline]
    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if !self.too_big {
            if self.max_size.is_some_and(|m| self.size > m) {
                self.too_big = true;
                return;
            }
            out.extend_from_slice(bytes);
        }
    }

    /// Decode `input`, appending message octets (unstuffed, CRLF line
    /// endings as received) to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataStatus {
        let status = self.decode_inner(input, out);
        self.wire_octets += match status {
            DataStatus::NeedMore => input.len(),
            DataStatus::Complete { consumed } => consumed,
        } as u64;
        status
    }

    fn decode_inner(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataStatus {
        let len = input.len();
        if len == 0 {
            return DataStatus::NeedMore;
        }
        // Whether the octet before input[0] was a CR, for the pairing check.
        let prev_cr = matches!(self.state, State::Cr | State::DotCr);
        let mut i = 0; // next octet to look at
        let mut seg = 0; // start of the octets not yet written out
        let mut end = len; // how far this call consumes
        let mut complete = false;
        'outer: loop {
            // Line-start states, one octet at a time (a few octets at most).
            while self.state != State::Mid {
                if i >= len {
                    break 'outer;
                }
                let b = input[i];
                match self.state {
                    State::LineStart if b == b'.' => {
                        self.emit(out, &input[seg..i]);
                        i += 1;
                        seg = i; // the dot is dropped unless it starts `.CRLF`
                        self.state = State::Dot;
                    }
                    State::Cr if b == b'\n' => {
                        i += 1;
                        self.state = State::LineStart;
                    }
                    State::Dot if b == b'\r' => {
                        seg = i; // the CR is written unless LF follows
                        i += 1;
                        self.state = State::DotCr;
                    }
                    State::DotCr if b == b'\n' => {
                        end = i + 1;
                        complete = true;
                        break 'outer;
                    }
                    State::DotCr => {
                        if seg == i {
                            // The CR came in an earlier input: write it now.
                            self.emit(out, b"\r");
                        }
                        self.state = State::Mid;
                    }
                    // A stuffed dot (RFC 5321 §4.5.2) or an ordinary line.
                    _ => self.state = State::Mid,
                }
            }
            // Inside a line: jump from `CRLF.` to `CRLF.`; everything between
            // is message text. (A bare LF never starts a line, so `LF.` is
            // text too; the pairing check below refuses it.) One iterator
            // for the whole run: restarting a search per candidate costs.
            let mut near_end = None;
            for off in STUFFED.find_iter(&input[i..]) {
                let c = i + off; // CR at c, LF at c+1, dot at c+2
                if c + 4 >= len {
                    near_end = Some(c);
                    break;
                }
                self.emit(out, &input[seg..c + 2]);
                if input[c + 3] == b'\r' && input[c + 4] == b'\n' {
                    end = c + 5;
                    seg = end;
                    complete = true;
                    break 'outer;
                }
                seg = c + 3; // drop the stuffed dot
            }
            match near_end {
                Some(c) => {
                    // Too near the end to decide: octet by octet.
                    self.emit(out, &input[seg..c + 2]);
                    seg = c + 2;
                    i = c + 2;
                    self.state = State::LineStart;
                }
                None => {
                    self.state = if input[len - 1] == b'\r' {
                        State::Cr
                    } else if len >= 2 && input[len - 2..] == *b"\r\n" {
                        State::LineStart
                    } else {
                        State::Mid
                    };
                    break 'outer;
                }
            }
        }
        if !complete && seg < len && !matches!(self.state, State::Dot | State::DotCr) {
            self.emit(out, &input[seg..len]);
        }
        let region = &input[..end];
        // Every CR followed by LF, every LF preceded by CR (RFC 5321 §2.3.8).
        if !self.bare_newline && !crlf_paired(prev_cr, region) {
            self.fail(DataError::BareNewline);
        }
        if let Some(max) = self.max_line {
            self.check_lines(region, max);
        }
        if complete {
            DataStatus::Complete { consumed: end }
        } else {
            DataStatus::NeedMore
        }
    }

    /// RFC 5321 §4.5.3.1.6: no line (wire octets, CRLF included) over
    /// `max`. Looks at windows of `max` octets for their last LF rather
    /// than at every line: one search per window.
    fn check_lines(&mut self, region: &[u8], max: usize) {
        let mut p = 0;
        while p < region.len() {
            if self.line_len >= max {
                self.fail(DataError::LineTooLong);
                return;
            }
            // The current line began `line_len` octets before `p`; it may
            // have at most `budget` more octets including its LF.
            let budget = max - self.line_len;
            let window = &region[p..region.len().min(p + budget)];
            match memrchr(b'\n', window) {
                Some(q) => {
                    p += q + 1;
                    self.line_len = 0;
                }
                None if window.len() == budget => {
                    self.fail(DataError::LineTooLong);
                    return;
                }
                None => {
                    self.line_len += window.len();
                    return;
                }
            }
        }
    }
}

/// Whether, in `r` (preceded by a CR iff `prev_cr`), every LF follows a CR
/// and every CR but a final one is followed by LF. Written as a branch-free
/// fold over blocks so the compiler vectorises it.
fn crlf_paired(prev_cr: bool, r: &[u8]) -> bool {
    let Some(&first) = r.first() else {
        return true;
    };
    if (first == b'\n') != prev_cr {
        return false;
    }
    let a = &r[..r.len() - 1];
    let b = &r[1..];
    const BLOCK: usize = 256;
    let mut start = 0;
    while start < a.len() {
        let stop = (start + BLOCK).min(a.len());
        let mut acc = 0u8;
        for (x, y) in a[start..stop].iter().zip(&b[start..stop]) {
            acc |= u8::from(*x == b'\r') ^ u8::from(*y == b'\n');
        }
        if acc != 0 {
            return false;
        }
        start = stop;
    }
    true
}

/// Dot-stuff a message for sending with DATA (RFC 5321 §4.5.2): a `.` is
/// prepended to every line that starts with one. The inverse of what
/// [`DataDecoder`] does; handy for clients and tests.
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    let mut at_line_start = true;
    let mut seg = 0;
    for (i, &b) in message.iter().enumerate() {
        if at_line_start && b == b'.' {
            out.extend_from_slice(&message[seg..i]);
            out.push(b'.');
            seg = i;
        }
        at_line_start = b == b'\n' && i > 0 && message[i - 1] == b'\r';
    }
    out.extend_from_slice(&message[seg..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> (Vec<u8>, Option<usize>, Option<DataError>) {
        let mut d = DataDecoder::new(Some(1000), None);
        let mut out = Vec::new();
        match d.decode(input, &mut out) {
            DataStatus::Complete { consumed } => (out, Some(consumed), d.error()),
            DataStatus::NeedMore => (out, None, d.error()),
        }
    }

    #[test]
    fn simple_and_stuffed() {
        let (out, end, err) = decode_all(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"Subject: x\r\n\r\n.dot\r\n");
        assert_eq!(end, Some(24));
        assert_eq!(err, None);
    }

    #[test]
    fn empty_message() {
        let (out, end, err) = decode_all(b".\r\n");
        assert_eq!(out, b"");
        assert_eq!(end, Some(3));
        assert_eq!(err, None);
    }

    #[test]
    fn byte_at_a_time_matches() {
        let input = b"a\r\n.b\r\n..\r\n.\r\r\n.\r\nrest";
        let (whole, end, err) = decode_all(input);
        let mut d = DataDecoder::new(Some(1000), None);
        let mut out = Vec::new();
        let mut consumed = None;
        for (i, b) in input.iter().enumerate() {
            if let DataStatus::Complete { consumed: c } =
                d.decode(std::slice::from_ref(b), &mut out)
            {
                assert_eq!(c, 1);
                consumed = Some(i + 1);
                break;
            }
        }
        assert_eq!(out, whole);
        assert_eq!(consumed, end);
        assert_eq!(d.error(), err);
        assert_eq!(err, Some(DataError::BareNewline));
    }

    #[test]
    fn smuggling_variants_never_end() {
        for v in [
            &b"x\n.\nMAIL FROM:<a@b>\r\n"[..],
            b"x\n.\r\nMAIL FROM:<a@b>\r\n",
            b"x\r.\rMAIL FROM:<a@b>\r\n",
            b"x\r\n.\nMAIL FROM:<a@b>\r\n",
            b"x\r.\r\nMAIL FROM:<a@b>\r\n",
            b"x\n.\r\r\nMAIL FROM:<a@b>\r\n",
        ] {
            let (_, end, err) = decode_all(v);
            assert_eq!(end, None, "{v:?} ended the message");
            assert_eq!(err, Some(DataError::BareNewline), "{v:?}");
        }
    }

    #[test]
    fn long_lines_and_size() {
        let mut msg = vec![b'a'; 999];
        msg.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(decode_all(&msg).2, Some(DataError::LineTooLong));
        let mut msg = vec![b'a'; 998];
        msg.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(decode_all(&msg).2, None);
        let mut d = DataDecoder::new(None, Some(4));
        let mut out = Vec::new();
        assert_eq!(
            d.decode(b"abc\r\n.\r\n", &mut out),
            DataStatus::Complete { consumed: 8 }
        );
        assert_eq!(d.error(), Some(DataError::TooBig));
    }

    #[test]
    fn stuff_round_trip() {
        let msg = b".a\r\n..b\r\nc.\r\n.\r\n";
        let mut stuffed = Vec::new();
        dot_stuff(msg, &mut stuffed);
        assert_eq!(stuffed, b"..a\r\n...b\r\nc.\r\n..\r\n");
        stuffed.extend_from_slice(b".\r\n");
        let (out, _, err) = decode_all(&stuffed);
        assert_eq!(out, msg);
        assert_eq!(err, None);
    }
}
