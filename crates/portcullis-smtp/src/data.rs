//! DATA decoding: end-of-data detection, dot-unstuffing and the checks that
//! make smuggling impossible (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8).
//!
//! [`DataDecoder`] is usable on its own (the [`Session`](crate::Session)
//! drives one per message). It allocates nothing and need not copy:
//! [`DataDecoder::decode_spans`] hands the unstuffed message to the caller
//! as spans of the input (removing a stuffing dot is a gap between two
//! spans), and [`DataDecoder::decode`] appends those spans to a `Vec`.
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
    /// Inside a line; the last octet was CR.
    Cr,
    /// After CRLF and `.` (the dot is not part of the message either way).
    Dot,
    /// After CRLF `.` CR (the CR not yet handed out).
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

/// Octets the fast path looks at per step (a multiple of [`LANE`], at most
/// 64: one bit per octet in [`Marks`]).
const BLOCK: usize = 64;
/// The smallest step of the fast path, for what is left after the blocks.
const LANE: usize = 16;

/// Decodes a DATA message: finds `<CRLF>.<CRLF>`, removes dot-stuffing, and
/// checks line endings, line length and size.
///
/// One pass: blocks of 64 octets are checked at once for the two things
/// that need attention, a CR not followed by LF (or an LF not preceded by
/// CR) and a dot after an LF, and for an LF (line length is bounded by the
/// distance between blocks with one); a block with no attention and an LF
/// (almost all of them) is passed over and becomes part of the current
/// span. The octets of a call that do not fill a block, and the first two,
/// go through a one-octet-at-a-time state machine with the same rules, so
/// how the input is split never changes the result.
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
    /// hands out no more output. (Output after other errors is still handed
    /// out but not meaningful: the message is to be refused.)
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

    /// Decode `input`, appending message octets (unstuffed, CRLF line
    /// endings as received) to `out`: [`decode_spans`](Self::decode_spans)
    /// with every span copied.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataStatus {
        self.decode_spans(input, |span| out.extend_from_slice(span))
    }

    /// Decode `input` without copying it: `span` is called with the message
    /// octets of this call in order, as non-empty slices of `input` (a
    /// stuffing dot, and the terminator, fall between spans). Two kinds of
    /// span are not part of `input`: the `<CRLF><SP>` that
    /// [folding](Self::fold_long_lines) inserts, and a CR that arrived in an
    /// earlier call after a line-start dot and turned out not to end the
    /// data (such a message has a bare CR and is to be refused).
    ///
    /// The spans of all calls, joined, are exactly what
    /// [`decode`](Self::decode) appends.
    pub fn decode_spans<'a>(
        &mut self,
        input: &'a [u8],
        mut span: impl FnMut(&'a [u8]),
    ) -> DataStatus {
        let status = self.run(input, &mut span);
        self.wire_octets += match status {
            DataStatus::NeedMore => input.len(),
            DataStatus::Complete { consumed } => consumed,
        } as u64;
        status
    }

    /// Hand out `bytes` as message content: counted, refused past the size
    /// limit, folded if asked for.
    #[inline]
    fn emit<'a>(&mut self, bytes: &'a [u8], sink: &mut impl FnMut(&'a [u8])) {
        if bytes.is_empty() {
            return;
        }
        self.size += bytes.len() as u64;
        if self.too_big {
            return;
        }
        if self.max_size.is_some_and(|m| self.size > m) {
            self.too_big = true;
            return;
        }
        match self.fold_width {
            None => sink(bytes),
            Some(width) => self.fold(bytes, width, sink),
        }
    }

    /// The work of [`decode_spans`](Self::decode_spans). `seg` is the first
    /// octet of the input not yet handed out or dropped.
    fn run<'a>(&mut self, input: &'a [u8], sink: &mut impl FnMut(&'a [u8])) -> DataStatus {
        let len = input.len();
        let mut i = 0;
        let mut seg = 0;
        // The first two octets, and a line-start dot, one at a time: the
        // fast path looks back two octets.
        while i < len
            && (i < 2
                || matches!(self.state, State::Dot | State::DotCr)
                || (self.state == State::LineStart && input[i] == b'.'))
        {
            if self.step(input, i, &mut seg, sink) {
                return DataStatus::Complete { consumed: i + 1 };
            }
            i += 1;
        }
        if i >= 2 {
            match self.bulk(input, i, &mut seg, sink) {
                Ok(next) => i = next,
                Err(consumed) => return DataStatus::Complete { consumed },
            }
        }
        while i < len {
            if self.step(input, i, &mut seg, sink) {
                return DataStatus::Complete { consumed: i + 1 };
            }
            i += 1;
        }
        // In `DotCr` the rest is at most the CR, which may end the data yet.
        if self.state != State::DotCr {
            self.emit(&input[seg..], sink);
        }
        DataStatus::NeedMore
    }

    /// Octet `i`, the slow and obvious way. Returns whether it ended the
    /// data (it was the LF of `<CRLF>.<CRLF>`).
    fn step<'a>(
        &mut self,
        input: &'a [u8],
        i: usize,
        seg: &mut usize,
        sink: &mut impl FnMut(&'a [u8]),
    ) -> bool {
        let b = input[i];
        // The dot (and CR) of a pending `.CRLF` count towards the line's
        // length only once they turn out to be text, as in the fast path.
        match self.state {
            State::LineStart if b == b'.' => {
                // Dropped unless it starts `.CRLF` (RFC 5321 §4.5.2), and
                // not message content then either.
                self.emit(&input[*seg..i], sink);
                *seg = i + 1;
                self.state = State::Dot;
                return false;
            }
            State::Dot if b == b'\r' => {
                self.state = State::DotCr;
                return false;
            }
            State::DotCr if b == b'\n' => return true,
            State::DotCr => {
                // The CR after the dot was not followed by LF: text, and
                // bare. It is `input[i - 1]`, the start of the pending span,
                // unless it came in an earlier call.
                self.count_octets(2);
                if i == 0 {
                    self.emit(b"\r", sink);
                }
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

    /// The fast path from `start` (at least 2, in state `LineStart`, `Mid`
    /// or `Cr`, and not at a line-start dot): blocks, then lanes. Returns
    /// where the octet-wise path must take over, or `Err(consumed)` at the
    /// end of the data.
    fn bulk<'a>(
        &mut self,
        input: &'a [u8],
        start: usize,
        seg: &mut usize,
        sink: &mut impl FnMut(&'a [u8]),
    ) -> Result<usize, usize> {
        let max = match self.max_line {
            Some(max) if !self.line_too_long => max,
            _ => usize::MAX,
        };
        let mut lines = LineBound::new(start, self.line_len, max);
        let mut p = start;
        let mut end = self.blocks::<BLOCK>(input, &mut p, seg, &mut lines, sink);
        if end.is_none() {
            end = self.blocks::<LANE>(input, &mut p, seg, &mut lines, sink);
        }
        if p == start && end.is_none() {
            return Ok(start);
        }
        // A stuffed dot just past the last block was dropped already.
        let resume = end.unwrap_or(p.max(*seg));
        if max != usize::MAX {
            if lines.exceeded {
                self.check_lines(&input[start..resume], max);
            } else if end.is_none() {
                // No line can be too long; carry the current one's length over.
                self.line_len = match memrchr(b'\n', &input[start..resume]) {
                    Some(q) => resume - (start + q + 1),
                    None => self.line_len + (resume - start),
                };
            }
        }
        if let Some(d) = end {
            return Err(d + 3);
        }
        self.state = if input[resume - 1] == b'\r' {
            State::Cr
        } else if input[resume - 1] == b'\n' && input[resume - 2] == b'\r' {
            State::LineStart
        } else {
            State::Mid
        };
        Ok(resume)
    }

    /// Whole blocks of `N` octets from `*pos`, as long as the input has the
    /// octet before a block and the three after it (a dot after the block's
    /// last LF is decided by the two octets after the dot). Advances `*pos`
    /// past the blocks looked at; returns the dot of `<CRLF>.<CRLF>` if
    /// found.
    #[inline(always)]
    fn blocks<'a, const N: usize>(
        &mut self,
        input: &'a [u8],
        pos: &mut usize,
        seg: &mut usize,
        lines: &mut LineBound,
        sink: &mut impl FnMut(&'a [u8]),
    ) -> Option<usize> {
        let start = *pos;
        let count = input.len().saturating_sub(start + 3) / N;
        if count == 0 {
            return None;
        }
        // Block k looks at the pairs (a[j], b[j]) = octets (p - 1 + j, p + j)
        // and at the octets c[j] = p + 1 + j after an LF, for j in 0..N.
        let a_blocks = &input[start - 1..].as_chunks::<N>().0[..count];
        let b_blocks = &input[start..].as_chunks::<N>().0[..count];
        let c_blocks = &input[start + 1..].as_chunks::<N>().0[..count];
        let mut p = start;
        for k in 0..count {
            let (a, b, c) = (&a_blocks[k], &b_blocks[k], &c_blocks[k]);
            let (attention, has_lf) = scan_block(a, b, c);
            if attention || !has_lf {
                if !has_lf {
                    lines.no_lf(p, N);
                }
                if attention && let Some(d) = self.attend(input, p, a, b, c, seg, sink) {
                    *pos = p;
                    return Some(d);
                }
            }
            p += N;
        }
        *pos = p;
        None
    }

    /// A block at `p` that holds a pairing fault or a dot after an LF: hand
    /// out the message up to each line-start dot, record a fault, and
    /// return the dot of `<CRLF>.<CRLF>` if it is here.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn attend<'a, const N: usize>(
        &mut self,
        input: &'a [u8],
        p: usize,
        a: &[u8; N],
        b: &[u8; N],
        c: &[u8; N],
        seg: &mut usize,
        sink: &mut impl FnMut(&'a [u8]),
    ) -> Option<usize> {
        let Marks {
            mut faults,
            mut dots,
        } = Marks::of(a, b, c);
        let mut end = None;
        while dots != 0 {
            let j = dots.trailing_zeros() as usize;
            dots &= dots - 1;
            let d = p + 1 + j; // '.' at d, LF at d - 1
            if input[d - 2] != b'\r' {
                continue; // after a bare LF: not a line, just text
            }
            self.emit(&input[*seg..d], sink);
            *seg = d + 1;
            if input[d + 1] == b'\r' && input[d + 2] == b'\n' {
                // <CRLF>.<CRLF>: nothing after the dot is looked at (pair
                // j + 1 ends at it).
                if j + 2 < 64 {
                    faults &= (1 << (j + 2)) - 1;
                }
                end = Some(d);
                break;
            }
        }
        if faults != 0 {
            self.bare_newline = true;
        }
        end
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

    /// Hand out `src` with its lines folded to `width` octets before CRLF,
    /// carrying the length of the current output line from span to span. An
    /// octet other than CR or LF that would make a line longer gets
    /// `CRLF SP` before it; a CR never does (it is the end of the line).
    fn fold<'a>(&mut self, src: &'a [u8], width: usize, sink: &mut impl FnMut(&'a [u8])) {
        let mut i = 0;
        let mut seg = 0;
        while i < src.len() {
            // Octets that fit before the line reaches `width`: every line
            // that ends among them is short enough.
            let room = width.saturating_sub(self.out_line_len);
            let window = &src[i..src.len().min(i + room)];
            if let Some(q) = memrchr(b'\n', window) {
                i += q + 1;
                self.out_line_len = 0;
                continue;
            }
            self.out_line_len += window.len();
            i += window.len();
            match src.get(i) {
                None => break,
                Some(b'\n') => self.out_line_len = 0,
                Some(b'\r') => self.out_line_len += 1,
                Some(_) => {
                    if seg < i {
                        sink(&src[seg..i]);
                    }
                    sink(b"\r\n ");
                    seg = i;
                    self.out_line_len = 1;
                    continue;
                }
            }
            i += 1;
        }
        if seg < src.len() {
            sink(&src[seg..]);
        }
    }
}

/// RFC 5321 §4.5.3.1.6 in the fast path without looking at every line: a
/// line that ends in a block with an LF began in the block before, or in
/// the run of blocks without LF just before that (at the start, in the
/// `line_len` octets carried over), so it is shorter than that run plus two
/// blocks. Only if this bound reaches the limit are the lines counted
/// exactly, afterwards. Blocks with an LF (almost all) need no bookkeeping.
struct LineBound {
    /// The position just after the last block without LF.
    run_end: usize,
    /// Octets in the run of blocks without LF that ends there, the
    /// carried-over line included.
    run: usize,
    max: usize,
    exceeded: bool,
}

impl LineBound {
    fn new(start: usize, line_len: usize, max: usize) -> Self {
        LineBound {
            run_end: start,
            run: line_len,
            max,
            exceeded: line_len.saturating_add(2 * BLOCK) >= max,
        }
    }

    /// The block of `n` octets (at most `BLOCK`) at `p` has no LF.
    #[inline]
    fn no_lf(&mut self, p: usize, n: usize) {
        if p != self.run_end {
            self.run = 0;
        }
        self.run += n;
        self.run_end = p + n;
        if self.run.saturating_add(2 * BLOCK) >= self.max {
            self.exceeded = true;
        }
    }
}

/// Whether a block holds a CR/LF pairing fault (`a` is the octet before
/// `b`) or a dot after an LF (`c` is the octet after `b`), and whether it
/// holds an LF: folds without early exit, so they vectorise.
#[inline(always)]
fn scan_block<const N: usize>(a: &[u8; N], b: &[u8; N], c: &[u8; N]) -> (bool, bool) {
    let mut attention = 0u8;
    let mut lfs = 0u8;
    for j in 0..N {
        let lf = u8::from(b[j] == b'\n');
        attention |= (u8::from(a[j] == b'\r') ^ lf) | (lf & u8::from(c[j] == b'.'));
        lfs |= lf;
    }
    (attention != 0, lfs != 0)
}

/// Where a block needs attention, one bit per octet `j` of a block of at
/// most 64 (see [`scan_block`] for `a`, `b`, `c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marks {
    /// Pair `(a[j], b[j])` has a CR without LF or an LF without CR.
    faults: u64,
    /// `b[j]` is an LF and `c[j]` a dot.
    dots: u64,
}

impl Marks {
    /// With SSE2 (always there on x86-64): a compare and a movemask per 16
    /// octets, no branch.
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2"
    ))]
    #[inline]
    fn of<const N: usize>(a: &[u8; N], b: &[u8; N], c: &[u8; N]) -> Marks {
        use safe_arch::{cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i};
        use safe_arch::{m128i, set_splat_i8_m128i};
        let splat = |v: u8| set_splat_i8_m128i(v.cast_signed());
        let (cr, lf, dot) = (splat(b'\r'), splat(b'\n'), splat(b'.'));
        let bits = |v: m128i| u64::from(move_mask_i8_m128i(v).cast_unsigned());
        let mut marks = Marks { faults: 0, dots: 0 };
        let (xs, ys, zs) = (a.as_chunks::<LANE>().0, b.as_chunks().0, c.as_chunks().0);
        for (k, ((x, y), z)) in xs.iter().zip(ys).zip(zs).enumerate() {
            let is_lf = cmp_eq_mask_i8_m128i(load_unaligned_m128i(y), lf);
            let faults = cmp_eq_mask_i8_m128i(load_unaligned_m128i(x), cr) ^ is_lf;
            let dots = is_lf & cmp_eq_mask_i8_m128i(load_unaligned_m128i(z), dot);
            marks.faults |= bits(faults) << (k * LANE);
            marks.dots |= bits(dots) << (k * LANE);
        }
        marks
    }

    /// Elsewhere: the same, eight octets at a time in a `u64`.
    #[cfg(not(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2"
    )))]
    #[inline]
    fn of<const N: usize>(a: &[u8; N], b: &[u8; N], c: &[u8; N]) -> Marks {
        Marks::portable(a, b, c)
    }

    /// [`Marks::of`] without SIMD (on x86 too, to be tested against it).
    #[cfg_attr(
        all(
            any(target_arch = "x86", target_arch = "x86_64"),
            target_feature = "sse2"
        ),
        allow(dead_code)
    )]
    fn portable<const N: usize>(a: &[u8; N], b: &[u8; N], c: &[u8; N]) -> Marks {
        let word = |x: &[u8; 8]| u64::from_le_bytes(*x);
        let (xs, ys, zs) = (a.as_chunks::<8>().0, b.as_chunks().0, c.as_chunks().0);
        let mut marks = Marks { faults: 0, dots: 0 };
        for (k, ((x, y), z)) in xs.iter().zip(ys).zip(zs).enumerate() {
            let (x, y, z) = (word(x), word(y), word(z));
            let is_lf = eq_octets(y, b'\n');
            marks.faults |= high_bits(eq_octets(x, b'\r') ^ is_lf) << (k * 8);
            marks.dots |= high_bits(is_lf & eq_octets(z, b'.')) << (k * 8);
        }
        marks
    }
}

/// The high bit of each octet of `w` equal to `v`, and nothing else.
#[inline]
fn eq_octets(w: u64, v: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let t = w ^ (u64::from(v) * 0x0101_0101_0101_0101);
    // Per octet: the high bit of (t & 0x7f) + 0x7f, or of t, is set iff t != 0.
    !(((t & LOW7) + LOW7) | t | LOW7)
}

/// The high bits of the eight octets of `w` (nothing else set) as the low
/// eight bits of the result: bit 8i + 7 moves to bit 56 + i in the product,
/// and no two terms of it meet.
#[inline]
fn high_bits(w: u64) -> u64 {
    ((w >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
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

    #[test]
    fn spans_are_the_input_less_the_dots() {
        let input = b"a\r\n..b\r\n.c\r\n.\r\nQUIT\r\n";
        let mut d = DataDecoder::new(Some(1000), None);
        let mut spans = Vec::new();
        let status = d.decode_spans(input, |s| spans.push(s));
        assert_eq!(status, DataStatus::Complete { consumed: 15 });
        assert_eq!(spans, [&b"a\r\n"[..], b".b\r\n", b"c\r\n"]);
        let range = input.as_ptr_range();
        for s in spans {
            assert!(range.contains(&s.as_ptr()), "{s:?} is a copy");
        }
    }

    /// The SIMD and the portable ways of marking a block agree, on blocks
    /// made mostly of the octets that matter.
    #[test]
    fn marks_agree_with_the_portable_way() {
        use proptest::prelude::*;
        let octets = prop::sample::select(&b"\r\n.a"[..]);
        let block = prop::collection::vec(octets, 66);
        proptest!(|(v in block)| {
            let a: &[u8; 64] = v[..64].try_into().unwrap();
            let b: &[u8; 64] = v[1..65].try_into().unwrap();
            let c: &[u8; 64] = v[2..].try_into().unwrap();
            prop_assert_eq!(Marks::of(a, b, c), Marks::portable(a, b, c));
            let (a, b, c) = (a[..16].try_into().unwrap(), b[..16].try_into().unwrap(), c[..16].try_into().unwrap());
            let lane: (&[u8; 16], &[u8; 16], &[u8; 16]) = (a, b, c);
            prop_assert_eq!(Marks::of(lane.0, lane.1, lane.2), Marks::portable(lane.0, lane.1, lane.2));
            // And they mark what they say, octet by octet.
            let m = Marks::portable(lane.0, lane.1, lane.2);
            for j in 0..16 {
                let fault = (lane.0[j] == b'\r') != (lane.1[j] == b'\n');
                let dot = lane.1[j] == b'\n' && lane.2[j] == b'.';
                prop_assert_eq!(m.faults >> j & 1 == 1, fault);
                prop_assert_eq!(m.dots >> j & 1 == 1, dot);
            }
        });
    }
}
