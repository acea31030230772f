//! DATA decoding: end-of-data detection, dot-unstuffing and the checks that
//! make smuggling impossible (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8).
//!
//! [`DataDecoder`] is usable on its own (the [`Session`](crate::Session)
//! drives one per message). It appends the unstuffed message to a caller's
//! buffer and allocates nothing itself, except when folding long lines
//! ([`DataDecoder::fold_long_lines`]), which rebuilds the part it just wrote
//! once a line needs a fold.
//!
//! The end of the message is `<CRLF>.<CRLF>` and nothing else. Every CR must
//! be followed by LF and every LF preceded by CR; a bare CR or LF is recorded
//! ([`DataError::BareNewline`]) and, because the line it ends is not a line,
//! it can never start the end-of-data sequence: `<LF>.<LF>`, `<LF>.<CRLF>`,
//! `<CR>.<CR>` and `<CRLF>.<LF>` are all message content. The message is
//! read to its real end so that nothing after a smuggled terminator is ever
//! taken as a command.

use memchr::memrchr;

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

/// Octets the fast path looks at per step (a multiple of [`LANE`]).
const BLOCK: usize = 128;
/// The fast path needs one octet before a block and three after it (a
/// line-start dot is decided by the two octets that follow it).
const BLOCK_SPAN: usize = BLOCK + 4;

/// Decodes a DATA message: finds `<CRLF>.<CRLF>`, removes dot-stuffing, and
/// checks line endings, line length and size.
///
/// One pass: blocks of 128 octets are checked at once for the two things
/// that need attention, a CR not followed by LF (or an LF not preceded by
/// CR) and a dot after an LF; a block with neither (almost all of them) is
/// just copied. The octets of a call that do not fill a block, and the
/// first two, go through a one-octet-at-a-time state machine with the same
/// rules, so how the input is split never changes the result.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    /// Octets since the last LF, CR and a stuffed dot included.
    line_len: usize,
    max_line: Option<usize>,
    /// Fold output lines to this many octets before CRLF, if set.
    fold_width: Option<usize>,
    /// Octets of the current output line so far (for folding).
    out_line_len: usize,
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
            fold_width: None,
            out_line_len: 0,
            max_size,
            size: 0,
            wire_octets: 0,
            bare_newline: false,
            line_too_long: false,
            too_big: false,
        }
    }

    /// Fold text lines longer than `max_line` octets (CRLF included) in the
    /// output instead of refusing them: `<CRLF><SP>` is inserted where a
    /// line reaches the limit, as Postfix does for `smtp_line_length_limit`
    /// (it keeps MIME structure intact). Combine with `max_line: None` in
    /// [`new`](Self::new). Limits under 4 octets are treated as 4. The
    /// message size counts the octets received, not the inserted ones.
    pub fn fold_long_lines(mut self, max_line: usize) -> Self {
        self.fold_width = Some(max_line.saturating_sub(2).max(2));
        self
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
        let start = out.len();
        let status = self.decode_inner(input, out);
        if let Some(width) = self.fold_width {
            self.fold(out, start, width);
        }
        self.wire_octets += match status {
            DataStatus::NeedMore => input.len(),
            DataStatus::Complete { consumed } => consumed,
        } as u64;
        status
    }

    fn decode_inner(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataStatus {
        let len = input.len();
        let mut i = 0;
        // The first two octets, and a line-start dot, one at a time: the
        // fast path looks back two octets.
        while i < len
            && (i < 2
                || matches!(self.state, State::Dot | State::DotCr)
                || (self.state == State::LineStart && input[i] == b'.'))
        {
            if self.step(input[i], out) {
                return DataStatus::Complete { consumed: i + 1 };
            }
            i += 1;
        }
        if i >= 2 && i + BLOCK_SPAN <= len {
            match self.bulk(input, i, out) {
                Ok(next) => i = next,
                Err(consumed) => return DataStatus::Complete { consumed },
            }
        }
        while i < len {
            if self.step(input[i], out) {
                return DataStatus::Complete { consumed: i + 1 };
            }
            i += 1;
        }
        DataStatus::NeedMore
    }

    /// One octet, the slow and obvious way. Returns whether it ended the
    /// data (it was the LF of `<CRLF>.<CRLF>`).
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        // The dot (and CR) of a pending `.CRLF` count towards the line's
        // length only once they turn out to be text, as in the fast path.
        match self.state {
            State::LineStart if b == b'.' => {
                // Dropped unless it starts `.CRLF` (RFC 5321 §4.5.2).
                self.state = State::Dot;
                return false;
            }
            State::Dot if b == b'\r' => {
                self.state = State::DotCr;
                return false;
            }
            State::DotCr if b == b'\n' => return true,
            State::DotCr => {
                // The CR after the dot was not followed by LF: text, and bare.
                self.count_octets(2);
                self.emit(out, b"\r");
                self.bare_newline = true;
                self.state = State::Mid;
            }
            State::Dot => {
                // The dot was stuffing: dropped, but it was on the wire.
                self.count_octets(1);
                self.state = State::Mid;
            }
            _ => {}
        }
        let prev_cr = self.state == State::Cr;
        if b == b'\n' {
            // RFC 5321 §2.3.8: an LF must follow a CR.
            self.bare_newline |= !prev_cr;
            self.line_len = 0;
            self.state = if prev_cr {
                State::LineStart
            } else {
                State::Mid
            };
        } else {
            // ... and a CR must be followed by an LF.
            self.bare_newline |= prev_cr;
            self.count_octets(1);
            self.state = if b == b'\r' { State::Cr } else { State::Mid };
        }
        self.emit(out, std::slice::from_ref(&b));
        false
    }

    /// `n` more octets in the current line (not its LF).
    #[inline]
    fn count_octets(&mut self, n: usize) {
        self.line_len += n;
        // A line of `max` octets before its LF is over the limit with it
        // (RFC 5321 §4.5.3.1.6: the limit includes CRLF).
        if self.max_line.is_some_and(|max| self.line_len >= max) {
            self.line_too_long = true;
        }
    }

    /// The fast path over whole blocks from `start` (at least 2, in state
    /// `LineStart`, `Mid` or `Cr`, and not at a line-start dot). Returns
    /// where the octet-wise path must take over, or `Err(consumed)` at the
    /// end of the data.
    fn bulk(&mut self, input: &[u8], start: usize, out: &mut Vec<u8>) -> Result<usize, usize> {
        let mut p = start;
        let mut seg = start; // first octet not yet written out
        let mut end = None;
        // Block p looks at the pairs (p - 1 + j, p + j) and at the dots at
        // p + 1 + j after an LF, for j in 0..BLOCK; deciding a dot needs the
        // two octets after it.
        let blocks = (input.len() - start - (BLOCK_SPAN - BLOCK)) / BLOCK;
        let a_blocks = &input[start - 1..].as_chunks::<BLOCK>().0[..blocks];
        let b_blocks = &input[start..].as_chunks::<BLOCK>().0[..blocks];
        let c_blocks = &input[start + 1..].as_chunks::<BLOCK>().0[..blocks];
        // Line length (RFC 5321 §4.5.3.1.6) without looking at every line:
        // the current line began at `floor + 1` or later (at `floor -
        // carry` exactly at the start), so a line ending in block p has
        // fewer than p + BLOCK - floor + carry octets. Only if that bound
        // reaches the limit are the lines counted exactly.
        let max = self.max_line.unwrap_or(usize::MAX);
        let (mut floor, mut carry) = (start, self.line_len);
        let mut count_lines = false;
        for k in 0..blocks {
            let (a, b, c) = (&a_blocks[k], &b_blocks[k], &c_blocks[k]);
            let (attention, has_lf) = scan_block(a, b, c);
            count_lines |= p + BLOCK - floor + carry >= max;
            if has_lf {
                (floor, carry) = (p, 0);
            }
            if !attention {
                p += BLOCK;
                continue;
            }
            let mut pairs = BLOCK; // pairs of this block to check
            let b_lanes = b.as_chunks::<LANE>().0;
            let c_lanes = c.as_chunks::<LANE>().0;
            'lanes: for (n, (bl, cl)) in b_lanes.iter().zip(c_lanes).enumerate() {
                if !dot_after_lf(bl, cl) {
                    continue;
                }
                let mut hits = dot_after_lf_mask(bl, cl);
                while hits != 0 {
                    let j = hits.trailing_zeros() as usize / 8;
                    hits &= hits - 1;
                    let d = p + 1 + n * LANE + j; // '.' at d, LF at d - 1
                    if input[d - 2] != b'\r' {
                        continue; // after a bare LF: not a line, just text
                    }
                    self.emit(out, &input[seg..d]);
                    seg = d + 1;
                    if input[d + 1] == b'\r' && input[d + 2] == b'\n' {
                        // <CRLF>.<CRLF>: nothing after it is looked at.
                        pairs = (d + 1 - p).min(BLOCK);
                        end = Some(d);
                        break 'lanes;
                    }
                }
            }
            if unpaired(&a[..pairs], &b[..pairs]) {
                self.bare_newline = true;
            }
            if end.is_some() {
                break;
            }
            p += BLOCK;
        }
        // A stuffed dot at p was dropped already.
        let resume = end.unwrap_or(p.max(seg));
        if count_lines {
            self.check_lines(&input[start..resume], max);
        } else if end.is_none() {
            // No line can be too long; carry the current one's length over.
            self.line_len = match memrchr(b'\n', &input[floor..resume]) {
                Some(q) => resume - (floor + q + 1),
                None => self.line_len + (resume - start),
            };
        }
        if let Some(d) = end {
            return Err(d + 3);
        }
        self.emit(out, &input[seg.min(resume)..resume]);
        self.state = if input[resume - 1] == b'\r' {
            State::Cr
        } else if input[resume - 1] == b'\n' && input[resume - 2] == b'\r' {
            State::LineStart
        } else {
            State::Mid
        };
        Ok(resume)
    }

    /// RFC 5321 §4.5.3.1.6 over a region the fast path went through: no run
    /// of `max` octets without an LF. Looks at windows of `max` octets for
    /// their last LF rather than at every line: one search per window.
    fn check_lines(&mut self, region: &[u8], max: usize) {
        let mut p = 0;
        while p < region.len() {
            // The current line began `line_len` octets before `p`; it may
            // have fewer than `budget` more octets before its LF.
            let budget = max.saturating_sub(self.line_len);
            let window = &region[p..region.len().min(p + budget)];
            match memrchr(b'\n', window) {
                Some(q) => {
                    p += q + 1;
                    self.line_len = 0;
                }
                None => {
                    self.line_len += region.len() - p;
                    if self.line_len >= max {
                        self.line_too_long = true;
                    }
                    // Count the rest of a long line exactly, for the next call.
                    if let Some(q) = memrchr(b'\n', &region[p..]) {
                        self.line_len = region.len() - (p + q + 1);
                    }
                    return;
                }
            }
        }
    }
}

impl DataDecoder {
    /// Fold the lines of `out[start..]` to `width` octets before CRLF,
    /// carrying the length of the current line from call to call. An octet
    /// other than CR or LF that would make a line longer gets `CRLF SP`
    /// before it; a CR never does (it is the end of the line).
    fn fold(&mut self, out: &mut Vec<u8>, start: usize, width: usize) {
        if !self.needs_folding(&out[start..], width) {
            return;
        }
        let src = out.split_off(start);
        let mut i = 0;
        while i < src.len() {
            // Octets that fit before the line reaches `width`.
            let room = width.saturating_sub(self.out_line_len);
            let window = &src[i..src.len().min(i + room)];
            if let Some(q) = memchr::memchr(b'\n', window) {
                out.extend_from_slice(&window[..=q]);
                i += q + 1;
                self.out_line_len = 0;
                continue;
            }
            out.extend_from_slice(window);
            self.out_line_len += window.len();
            i += window.len();
            match src.get(i) {
                None => break,
                Some(b'\n') => self.out_line_len = 0,
                Some(b'\r') => self.out_line_len += 1,
                Some(_) => {
                    out.extend_from_slice(b"\r\n ");
                    self.out_line_len = 1;
                    continue;
                }
            }
            out.push(src[i]);
            i += 1;
        }
    }

    /// Whether some line of `region` (the first one continuing the current
    /// output line) may need folding: a run of more than `width` octets
    /// without LF. Updates nothing; one search per `width` octets.
    fn needs_folding(&mut self, region: &[u8], width: usize) -> bool {
        let mut len = self.out_line_len;
        let mut p = 0;
        while p < region.len() {
            let room = (width + 1).saturating_sub(len);
            let window = &region[p..region.len().min(p + room)];
            match memrchr(b'\n', window) {
                Some(q) => {
                    p += q + 1;
                    len = 0;
                }
                None if window.len() == room => return true,
                None => {
                    len += window.len();
                    break;
                }
            }
        }
        self.out_line_len = len;
        false
    }
}

/// Whether a block holds a CR/LF pairing fault (`a` is the octet before
/// `b`) or a dot after an LF (`c` is the octet after `b`), and whether it
/// holds an LF: folds without early exit, so they vectorise.
#[inline]
fn scan_block(a: &[u8; BLOCK], b: &[u8; BLOCK], c: &[u8; BLOCK]) -> (bool, bool) {
    let mut attention = 0u8;
    let mut lfs = 0u8;
    for j in 0..BLOCK {
        let lf = u8::from(b[j] == b'\n');
        attention |= (u8::from(a[j] == b'\r') ^ lf) | (lf & u8::from(c[j] == b'.'));
        lfs |= lf;
    }
    (attention != 0, lfs != 0)
}

/// Octets looked at together when a block needs attention.
const LANE: usize = 16;

/// The high bit of octet j set where `b[j]` is an LF followed by a dot
/// `c[j]` (eight octets a word, in the two halves of the result).
#[inline]
fn dot_after_lf_mask(b: &[u8; LANE], c: &[u8; LANE]) -> u128 {
    let word = |x: &[u8; LANE], half: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&x[half * 8..half * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let half = |h: usize| eq_octets(word(b, h), b'\n') & eq_octets(word(c, h), b'.');
    u128::from(half(0)) | (u128::from(half(1)) << 64)
}

/// The high bit of each octet of `w` equal to `v`, and nothing else.
#[inline]
fn eq_octets(w: u64, v: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let t = w ^ (u64::from(v) * 0x0101_0101_0101_0101);
    // Per octet: the high bit of (t & 0x7f) + 0x7f, or of t, is set iff t != 0.
    !(((t & LOW7) + LOW7) | t | LOW7)
}

/// Whether some `b[j]` is an LF followed by a dot `c[j]`.
#[inline]
fn dot_after_lf(b: &[u8; LANE], c: &[u8; LANE]) -> bool {
    let mut acc = 0u8;
    for j in 0..LANE {
        acc |= u8::from(b[j] == b'\n') & u8::from(c[j] == b'.');
    }
    acc != 0
}

/// Whether some CR in `a` is not followed by LF, or some LF in `b` not
/// preceded by CR (`b` is `a` one octet on).
#[inline]
fn unpaired(a: &[u8], b: &[u8]) -> bool {
    let mut acc = 0u8;
    for (x, y) in a.iter().zip(b) {
        acc |= u8::from(*x == b'\r') ^ u8::from(*y == b'\n');
    }
    acc != 0
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
