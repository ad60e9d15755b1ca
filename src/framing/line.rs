//! Line framers: [`LineReceiver`] (lines, and a raw mode) and [`LineOnlyReceiver`].
//!
//! Both cut the stream at a delimiter (`\r\n` by default) and refuse lines over
//! `max_length` (16384 by default), with Twisted's rules; see the
//! [module overview](super) for the exact rules and where twistor differs from Twisted.
//! The parsing is done by [`LineParser`], which knows nothing of sockets.

use std::fmt;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::time::Duration;

use memchr::memmem;

use super::{Buffer, Src, RETAINED_BUFFER_BYTES};
use crate::{Context, JobError, PoolBusy, Reason, TimerId};

/// Twisted's default delimiter, `\r\n`: what telnet, SMTP, POP3, IRC and HTTP use.
pub const DEFAULT_DELIMITER: &[u8] = b"\r\n";

/// Twisted's `LineReceiver.MAX_LENGTH`: 16 KiB is far above any line a person types or
/// a text protocol sends, and small enough that a peer cannot make a connection hold
/// much memory with one endless line.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16384;

// ----- the delimiter -----

/// A non-empty delimiter and its searcher: `memchr` for one byte, `memmem` otherwise.
#[derive(Clone)]
struct Delimiter {
    finder: memmem::Finder<'static>,
    /// The delimiter when it is one byte, searched with `memchr`.
    single: Option<u8>,
    len: usize,
}

/// Where the first delimiter of `head ++ rest` starts.
enum Found {
    /// At this index of `head`, ending in `rest`.
    Head(usize),
    /// At this index of `rest`.
    Rest(usize),
}

impl Delimiter {
    fn new(bytes: &[u8]) -> Self {
        assert!(!bytes.is_empty(), "a line delimiter cannot be empty");
        Delimiter {
            finder: memmem::Finder::new(bytes).into_owned(),
            single: match *bytes {
                [byte] => Some(byte),
                _ => None,
            },
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        self.finder.needle()
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The first occurrence in `haystack` (Python's `split(delimiter, 1)`).
    #[inline]
    fn find(&self, haystack: &[u8]) -> Option<usize> {
        match self.single {
            Some(byte) => memchr::memchr(byte, haystack),
            None => self.finder.find(haystack),
        }
    }

    /// The first occurrence in `head ++ rest`, given that `head` holds none: only the
    /// last `len - 1` bytes of `head` are looked at, so a long unfinished line is not
    /// searched again with every chunk.
    fn find_across(&self, head: &[u8], rest: &[u8]) -> Option<Found> {
        let delimiter = self.bytes();
        for start in head.len().saturating_sub(delimiter.len() - 1)..head.len() {
            let (in_head, in_rest) = delimiter.split_at(head.len() - start);
            if head[start..] == *in_head && rest.starts_with(in_rest) {
                return Some(Found::Head(start));
            }
        }
        self.find(rest).map(Found::Rest)
    }
}

impl fmt::Debug for Delimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.bytes().escape_ascii().to_string())
    }
}

// ----- the pure parser -----

/// What [`LineParser`] found in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A line, without its delimiter (Twisted's `lineReceived`). May be empty.
    Line(&'a [u8]),
    /// Raw data, in raw mode (Twisted's `rawDataReceived`): everything pending, in one
    /// piece. Never empty.
    Raw(&'a [u8]),
    /// A line over `max_length` (Twisted's `lineLengthExceeded`).
    ///
    /// For a [`LineReceiver`]: the overlong line, its delimiter and everything pending
    /// after it, or the whole unfinished line when no delimiter has come yet; what is
    /// handed over is no longer buffered. For a [`LineOnlyReceiver`]: only the overlong
    /// line, or what had arrived of it.
    LineTooLong(&'a [u8]),
}

/// The state a handler can change from inside a callback, through [`LineControl`].
#[derive(Debug)]
struct ControlState {
    line_mode: bool,
    max_length: usize,
    /// Bytes handed back with `set_line_mode(extra)`, to be parsed after what is pending.
    extra: Vec<u8>,
    /// `set_line_mode(extra)` with `extra` a tail of the raw data being delivered: that
    /// many bytes are un-consumed instead of copied.
    rewind: Option<usize>,
    /// `clear_line_buffer` was called: drop what is pending.
    clear: bool,
    /// The delimiter was changed: what is buffered may hold the new one.
    new_delimiter: bool,
    /// One of `extra`, `rewind`, `clear` or `new_delimiter` is set: the next event must
    /// apply it first.
    requested: bool,
}

/// A sans-I/O line splitter with a raw mode: Twisted's `LineReceiver` parsing rules,
/// without the callbacks.
///
/// Feed it chunks with [`feed`](Self::feed) and pull [`LineEvent`]s one at a time;
/// between two events the [`LineControl`] that comes with each event may switch modes,
/// hand data back, clear the buffer or change the limit, exactly as a Twisted handler
/// does from its callbacks. Lines are slices of the chunk, or of the parser's buffer
/// for a line that spans chunks; only the unfinished tail of a chunk is copied.
///
/// # Examples
///
/// ```
/// use twistor::framing::{LineEvent, LineParser};
///
/// let mut parser = LineParser::new(b"\r\n", 100);
/// let mut lines = Vec::new();
/// for chunk in [&b"GET / HTTP/1.0\r\nHost: a\r"[..], b"\n\r\nbody"] {
///     let mut feed = parser.feed(chunk);
///     while let Some((event, mut control)) = feed.next_event() {
///         match event {
///             LineEvent::Line(b"") => control.set_raw_mode(), // headers done
///             LineEvent::Line(line) => lines.push(line.to_vec()),
///             LineEvent::Raw(body) => assert_eq!(body, b"body"),
///             LineEvent::LineTooLong(_) => unreachable!(),
///         }
///     }
/// }
/// assert_eq!(lines, [&b"GET / HTTP/1.0"[..], b"Host: a"]);
/// ```
#[derive(Debug)]
pub struct LineParser {
    input: Buffer,
    /// `input` holds no complete delimiter: a new chunk only needs to be searched from
    /// the last `delimiter.len() - 1` buffered bytes on.
    unfinished: bool,
    delimiter: Delimiter,
    ctl: ControlState,
    /// `LineOnlyReceiver`'s rules: an overlong line is reported alone and skipped.
    skip_overlong: bool,
    /// Discarding the rest of an overlong line, up to its delimiter.
    skipping: bool,
    /// While skipping: the last `delimiter.len() - 1` bytes discarded, which may begin
    /// the delimiter.
    skip_tail: Vec<u8>,
}

impl LineParser {
    /// A parser in line mode, cutting at `delimiter`, refusing lines over `max_length`
    /// bytes (the delimiter not counted).
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn new(delimiter: &[u8], max_length: usize) -> Self {
        LineParser {
            input: Buffer::default(),
            unfinished: false,
            delimiter: Delimiter::new(delimiter),
            ctl: ControlState {
                line_mode: true,
                max_length,
                extra: Vec::new(),
                rewind: None,
                clear: false,
                new_delimiter: false,
                requested: false,
            },
            skip_overlong: false,
            skipping: false,
            skip_tail: Vec::new(),
        }
    }

    /// Switches to `LineOnlyReceiver`'s handling of overlong lines.
    fn skipping_overlong_lines(mut self) -> Self {
        self.skip_overlong = true;
        self
    }

    /// Starts parsing `chunk` (after whatever is buffered); pull the events from the
    /// returned [`LineFeed`]. An empty chunk parses what is buffered (after a pause).
    ///
    /// When the feed is dropped, whatever of `chunk` was not parsed yet (because the
    /// caller stopped pulling events) is kept for the next feed.
    pub fn feed<'p, 'c>(&'p mut self, chunk: &'c [u8]) -> LineFeed<'p, 'c> {
        LineFeed {
            parser: self,
            chunk,
            pos: 0,
            last_raw: None,
        }
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        self.delimiter.bytes()
    }

    /// The longest line accepted, delimiter not counted.
    pub fn max_length(&self) -> usize {
        self.ctl.max_length
    }

    /// Changes the longest line accepted.
    pub fn set_max_length(&mut self, bytes: usize) {
        self.ctl.max_length = bytes;
    }

    /// Changes the delimiter; what is buffered is parsed with the new one on the next
    /// [`feed`](Self::feed).
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn set_delimiter(&mut self, delimiter: &[u8]) {
        self.delimiter = Delimiter::new(delimiter);
        self.delimiter_changed();
    }

    /// Forgets what the search state knew under the old delimiter: the buffer may hold
    /// the new one, and a skipped line's tail is only kept as long as the new one needs.
    fn delimiter_changed(&mut self) {
        self.unfinished = false;
        let keep = self.delimiter.len() - 1;
        let excess = self.skip_tail.len().saturating_sub(keep);
        self.skip_tail.drain(..excess);
    }

    /// True in line mode, false in raw mode.
    pub fn is_line_mode(&self) -> bool {
        self.ctl.line_mode
    }

    /// Switches to raw mode: what is buffered and what comes next goes out as
    /// [`LineEvent::Raw`].
    pub fn set_raw_mode(&mut self) {
        self.ctl.line_mode = false;
    }

    /// Switches to line mode, with `extra` appended to what is buffered; it is parsed on
    /// the next [`feed`](Self::feed) (an empty chunk will do).
    pub fn set_line_mode(&mut self, extra: &[u8]) {
        self.ctl.line_mode = true;
        if !extra.is_empty() {
            self.input.extend(extra);
            self.unfinished = false;
        }
    }

    /// Takes what is buffered (Twisted's `clearLineBuffer`).
    pub fn clear_line_buffer(&mut self) -> Vec<u8> {
        self.unfinished = false;
        self.skipping = false;
        self.skip_tail.clear();
        self.input.take()
    }

    /// What is buffered: an unfinished line, or what was kept back when the caller
    /// stopped pulling events.
    pub fn buffered(&self) -> &[u8] {
        self.input.pending()
    }

    /// Drops everything buffered and any pending control request.
    fn discard(&mut self) {
        self.input.reset();
        self.unfinished = false;
        self.skipping = false;
        self.skip_tail.clear();
        self.ctl.extra.clear();
        self.ctl.rewind = None;
        self.ctl.clear = false;
        self.ctl.new_delimiter = false;
        self.ctl.requested = false;
    }

    /// Finds the next event of `input ++ chunk[*pos..]`, consuming its bytes, and says
    /// where they are. Never returns a borrow, so the caller can hand out the event's
    /// bytes and the control state at the same time.
    fn step(&mut self, chunk: &[u8], pos: &mut usize, last_raw: &mut Option<Src>) -> Step {
        loop {
            self.input.reset_if_consumed();
            let rest = &chunk[*pos..];
            if self.input.is_empty() && rest.is_empty() {
                return Step::Done;
            }
            if !self.ctl.line_mode {
                // Raw mode hands over everything pending, in one piece.
                if self.input.is_empty() {
                    let range = *pos..chunk.len();
                    *pos = chunk.len();
                    *last_raw = Some(Src::Chunk);
                    return Step::Raw(Src::Chunk, range);
                }
                self.input.stash(chunk, pos);
                let range = self.input.start..self.input.data.len();
                self.input.consume(range.len());
                self.unfinished = false;
                *last_raw = Some(Src::Buf);
                return Step::Raw(Src::Buf, range);
            }
            if self.skipping {
                self.skip(chunk, pos);
                continue;
            }
            let delimiter_bytes = self.delimiter.len();
            let max = self.ctl.max_length;
            // An unfinished line this long cannot end within `max`, even if what follows
            // is the rest of a partial delimiter.
            let limit = max.saturating_add(delimiter_bytes);

            if self.input.is_empty() {
                // The steady state: lines straight from the chunk.
                return match self.delimiter.find(rest) {
                    Some(i) if i > max => {
                        self.overlong_line(Src::Chunk, *pos..*pos + i, chunk, pos)
                    }
                    Some(i) => {
                        let line = *pos..*pos + i;
                        *pos += i + delimiter_bytes;
                        Step::Line(Src::Chunk, line)
                    }
                    None if rest.len() >= limit => self.overlong_unfinished(Src::Chunk, chunk, pos),
                    None => {
                        self.input.extend(rest);
                        *pos = chunk.len();
                        self.unfinished = true;
                        Step::Done
                    }
                };
            }

            if !rest.is_empty() {
                if !self.unfinished {
                    // The buffer may hold whole lines (kept back, or handed back with
                    // `set_line_mode`): parse on from one contiguous buffer.
                    self.input.stash(chunk, pos);
                } else {
                    // The buffer holds an unfinished line: finish it with the head of the
                    // chunk, and go back to parsing straight from the chunk.
                    let head = self.input.pending();
                    let line = match self.delimiter.find_across(head, rest) {
                        Some(Found::Head(start)) if start <= max => {
                            *pos += delimiter_bytes - (head.len() - start);
                            Some(self.input.start..self.input.start + start)
                        }
                        Some(Found::Rest(i)) if head.len() + i <= max => {
                            self.input.data.extend_from_slice(&rest[..i]);
                            *pos += i + delimiter_bytes;
                            Some(self.input.start..self.input.data.len())
                        }
                        None if head.len() + rest.len() < limit => {
                            self.input.data.extend_from_slice(rest);
                            *pos = chunk.len();
                            return Step::Done;
                        }
                        // Overlong: take the whole chunk in and let the buffer path
                        // below report it (a rare path, so a copy is fine).
                        _ => None,
                    };
                    if let Some(line) = line {
                        self.input.consume(self.input.len());
                        return Step::Line(Src::Buf, line);
                    }
                    self.input.stash(chunk, pos);
                }
            }

            // Everything pending is in the buffer.
            let pending = self.input.pending();
            let start = self.input.start;
            return match self.delimiter.find(pending) {
                Some(i) if i > max => self.overlong_line(Src::Buf, start..start + i, chunk, pos),
                Some(i) => {
                    self.input.consume(i + delimiter_bytes);
                    Step::Line(Src::Buf, start..start + i)
                }
                None if pending.len() >= limit => self.overlong_unfinished(Src::Buf, chunk, pos),
                None => {
                    self.unfinished = true;
                    Step::Done
                }
            };
        }
    }

    /// A complete line over the limit, at `line` in `src`; when `src` is the buffer,
    /// nothing of the chunk is pending.
    fn overlong_line(
        &mut self,
        src: Src,
        line: Range<usize>,
        chunk: &[u8],
        pos: &mut usize,
    ) -> Step {
        let through_delimiter = line.end + self.delimiter.len();
        let range = if self.skip_overlong {
            // LineOnlyReceiver: that line alone, and parsing goes on after it.
            match src {
                Src::Chunk => *pos = through_delimiter,
                Src::Buf => self.input.consume(through_delimiter - self.input.start),
            }
            line
        } else {
            // LineReceiver: the line, its delimiter and everything after it.
            match src {
                Src::Chunk => {
                    *pos = chunk.len();
                    line.start..chunk.len()
                }
                Src::Buf => {
                    self.input.consume(self.input.len());
                    line.start..self.input.data.len()
                }
            }
        };
        Step::TooLong(src, range)
    }

    /// No delimiter, and already too much pending for a line within the limit: all of
    /// it is handed over (everything pending is in `src`).
    fn overlong_unfinished(&mut self, src: Src, chunk: &[u8], pos: &mut usize) -> Step {
        let range = match src {
            Src::Chunk => {
                let range = *pos..chunk.len();
                *pos = chunk.len();
                range
            }
            Src::Buf => {
                let range = self.input.start..self.input.data.len();
                self.input.consume(range.len());
                range
            }
        };
        self.unfinished = false;
        if self.skip_overlong {
            // LineOnlyReceiver: discard the rest of this line when it comes.
            let data = match src {
                Src::Chunk => &chunk[range.clone()],
                Src::Buf => &self.input.data[range.clone()],
            };
            self.skipping = true;
            self.skip_tail.clear();
            keep_tail(&mut self.skip_tail, data, self.delimiter.len() - 1);
        }
        Step::TooLong(src, range)
    }

    /// Discards input up to and including the next delimiter (the end of an overlong
    /// line that was already reported).
    fn skip(&mut self, chunk: &[u8], pos: &mut usize) {
        if !self.input.is_empty() {
            self.input.stash(chunk, pos);
        }
        let in_buffer = !self.input.is_empty();
        let pending = if in_buffer {
            self.input.pending()
        } else {
            &chunk[*pos..]
        };
        let delimiter_bytes = self.delimiter.len();
        let used = match self.delimiter.find_across(&self.skip_tail, pending) {
            Some(Found::Head(start)) => Some(delimiter_bytes - (self.skip_tail.len() - start)),
            Some(Found::Rest(i)) => Some(i + delimiter_bytes),
            None => None,
        };
        let used = match used {
            Some(used) => {
                self.skipping = false;
                self.skip_tail.clear();
                used
            }
            None => {
                keep_tail(&mut self.skip_tail, pending, delimiter_bytes - 1);
                pending.len()
            }
        };
        if in_buffer {
            self.input.consume(used);
        } else {
            *pos += used;
        }
    }
}

/// Appends `data` to `tail` and keeps only the last `keep` bytes.
fn keep_tail(tail: &mut Vec<u8>, data: &[u8], keep: usize) {
    tail.extend_from_slice(&data[data.len().saturating_sub(keep)..]);
    let excess = tail.len().saturating_sub(keep);
    tail.drain(..excess);
}

/// The next event, as positions (see [`LineParser::step`]).
enum Step {
    Line(Src, Range<usize>),
    Raw(Src, Range<usize>),
    TooLong(Src, Range<usize>),
    Done,
}

/// One chunk being parsed by a [`LineParser`]: pull events with
/// [`next_event`](Self::next_event).
///
/// Dropping the feed keeps what was not parsed yet; [`discard`](Self::discard) drops it
/// (the connection is closing).
pub struct LineFeed<'p, 'c> {
    parser: &'p mut LineParser,
    chunk: &'c [u8],
    pos: usize,
    /// Where the last raw event came from, for `set_line_mode` with a tail of it.
    last_raw: Option<Src>,
}

impl LineFeed<'_, '_> {
    /// The next line, raw data or overlong line, with the controls to use while
    /// handling it. `None` once everything complete has been handed out; an unfinished
    /// line stays buffered.
    ///
    /// Requests made through the previous event's [`LineControl`] take effect here,
    /// before the next event is looked for.
    pub fn next_event(&mut self) -> Option<(LineEvent<'_>, LineControl<'_>)> {
        self.settle();
        let chunk = self.chunk;
        // The steady state, kept short: a whole line straight from the chunk.
        let p = &*self.parser;
        let line = if p.ctl.line_mode && !p.skipping && p.input.is_empty() {
            p.delimiter
                .find(&chunk[self.pos..])
                .filter(|&i| i <= p.ctl.max_length)
        } else {
            None
        };
        if let Some(i) = line {
            let start = self.pos;
            self.pos += i + p.delimiter.len();
            let LineParser { ctl, delimiter, .. } = &mut *self.parser;
            let control = LineControl {
                state: ctl,
                delimiter,
                rest: [&[], &chunk[self.pos..]],
                raw: &[],
            };
            return Some((LineEvent::Line(&chunk[start..start + i]), control));
        }
        self.next_event_slow()
    }

    /// [`next_event`](Self::next_event) for everything but a line straight from the
    /// chunk: buffered data, modes, limits. Kept out of line so that the fast path
    /// stays small.
    #[inline(never)]
    fn next_event_slow(&mut self) -> Option<(LineEvent<'_>, LineControl<'_>)> {
        let step = self
            .parser
            .step(self.chunk, &mut self.pos, &mut self.last_raw);
        let chunk = self.chunk;
        let LineParser {
            input,
            ctl,
            delimiter,
            ..
        } = &mut *self.parser;
        let data: &[u8] = &input.data;
        let bytes = |src: Src, range: Range<usize>| match src {
            Src::Buf => &data[range],
            Src::Chunk => &chunk[range],
        };
        let (event, raw) = match step {
            Step::Done => return None,
            Step::Line(src, range) => (LineEvent::Line(bytes(src, range)), &[][..]),
            Step::Raw(src, range) => {
                let data = bytes(src, range);
                (LineEvent::Raw(data), data)
            }
            Step::TooLong(src, range) => (LineEvent::LineTooLong(bytes(src, range)), &[][..]),
        };
        let control = LineControl {
            state: ctl,
            delimiter,
            rest: [&data[input.start..], &chunk[self.pos..]],
            raw,
        };
        Some((event, control))
    }

    /// The controls, for a callback that is not about an event (`connection_made`,
    /// `read_eof`, ...): `clear_line_buffer` there returns what is buffered.
    pub fn control(&mut self) -> LineControl<'_> {
        self.settle();
        let LineParser {
            input,
            ctl,
            delimiter,
            ..
        } = &mut *self.parser;
        LineControl {
            state: ctl,
            delimiter,
            rest: [input.pending(), &self.chunk[self.pos..]],
            raw: &[],
        }
    }

    /// Drops everything not parsed yet, buffered or in this chunk, and any pending
    /// request from the controls; the mode and limit stay as they are.
    pub fn discard(mut self) {
        self.parser.discard();
        self.pos = self.chunk.len();
        self.last_raw = None;
    }

    /// Applies what the handler asked for through the last [`LineControl`].
    #[inline]
    fn settle(&mut self) {
        let last_raw = self.last_raw.take();
        if self.parser.ctl.requested {
            self.apply_requests(last_raw);
        }
    }

    #[inline(never)]
    fn apply_requests(&mut self, last_raw: Option<Src>) {
        let p = &mut *self.parser;
        p.ctl.requested = false;
        if p.ctl.new_delimiter {
            p.ctl.new_delimiter = false;
            p.delimiter_changed();
        }
        if p.ctl.clear {
            p.ctl.clear = false;
            p.input.reset();
            p.unfinished = false;
            p.skipping = false;
            p.skip_tail.clear();
            self.pos = self.chunk.len();
        }
        if let Some(n) = p.ctl.rewind.take() {
            // The raw event consumed everything pending; un-consume its tail.
            match last_raw {
                Some(Src::Buf) => p.input.start = p.input.data.len() - n,
                Some(Src::Chunk) => self.pos = self.chunk.len() - n,
                None => unreachable!("a rewind is only recorded during a raw event"),
            }
            p.unfinished = false;
        }
        if !p.ctl.extra.is_empty() {
            p.input.stash(self.chunk, &mut self.pos);
            p.input.extend(&p.ctl.extra);
            p.ctl.extra.clear();
            if p.ctl.extra.capacity() > RETAINED_BUFFER_BYTES {
                p.ctl.extra = Vec::new();
            }
            p.unfinished = false;
        }
    }
}

impl Drop for LineFeed<'_, '_> {
    fn drop(&mut self) {
        self.settle();
        if self.pos < self.chunk.len() {
            self.parser.input.stash(self.chunk, &mut self.pos);
            self.parser.unfinished = false;
        }
        // An idle connection keeps no large buffer after an overlong line.
        self.parser.input.reset_if_consumed();
    }
}

impl fmt::Debug for LineFeed<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineFeed")
            .field("parser", &self.parser)
            .field("chunk_bytes_left", &(self.chunk.len() - self.pos))
            .finish()
    }
}

/// A [`LineParser`]'s controls, handed out with each event: what a Twisted handler
/// does to its `LineReceiver` from inside a callback.
///
/// Mode, delimiter and limit changes apply to the next event. `set_line_mode(extra)`
/// and `clear_line_buffer` are applied when the next event is asked for.
pub struct LineControl<'a> {
    state: &'a mut ControlState,
    delimiter: &'a mut Delimiter,
    /// What is pending after the current event: the buffer's part, then the chunk's.
    rest: [&'a [u8]; 2],
    /// The current event's bytes, when it is raw data.
    raw: &'a [u8],
}

impl LineControl<'_> {
    /// Switches to raw mode: the rest of the current chunk, in one piece, and
    /// everything after it goes out as raw data (Twisted's `setRawMode`).
    pub fn set_raw_mode(&mut self) {
        self.state.line_mode = false;
    }

    /// Switches to line mode; `extra` is parsed for lines after what is already pending
    /// (Twisted's `setLineMode(extra)`).
    ///
    /// From `raw_data_received`, pass the part of the raw data you did not use: a tail
    /// of it is taken back without copying. Never recurses: the parser's loop picks
    /// `extra` up when the current callback returns.
    pub fn set_line_mode(&mut self, extra: &[u8]) {
        let state = &mut *self.state;
        state.line_mode = true;
        if extra.is_empty() {
            return;
        }
        state.requested = true;
        if state.extra.is_empty()
            && state.rewind.is_none()
            && !state.clear
            && is_tail_of(extra, self.raw)
        {
            state.rewind = Some(extra.len());
            return;
        }
        if let Some(n) = state.rewind.take() {
            state
                .extra
                .extend_from_slice(&self.raw[self.raw.len() - n..]);
        }
        state.extra.extend_from_slice(extra);
    }

    /// Returns and drops everything pending: what is buffered, the rest of the current
    /// chunk, and what was handed back with `set_line_mode` (Twisted's
    /// `clearLineBuffer`).
    pub fn clear_line_buffer(&mut self) -> Vec<u8> {
        let state = &mut *self.state;
        let rewound = match state.rewind.take() {
            Some(n) => &self.raw[self.raw.len() - n..],
            None => &[],
        };
        let mut out = Vec::with_capacity(
            self.rest[0].len() + self.rest[1].len() + rewound.len() + state.extra.len(),
        );
        out.extend_from_slice(self.rest[0]);
        out.extend_from_slice(self.rest[1]);
        out.extend_from_slice(rewound);
        out.append(&mut state.extra);
        state.clear = true;
        state.requested = true;
        self.rest = [&[], &[]];
        self.raw = &[];
        out
    }

    /// True in line mode, false in raw mode.
    pub fn is_line_mode(&self) -> bool {
        self.state.line_mode
    }

    /// The longest line accepted, delimiter not counted.
    pub fn max_length(&self) -> usize {
        self.state.max_length
    }

    /// Changes the longest line accepted, from the next line on (Twisted's
    /// `MAX_LENGTH`).
    pub fn set_max_length(&mut self, bytes: usize) {
        self.state.max_length = bytes;
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        self.delimiter.bytes()
    }

    /// Changes the delimiter, from the next line on: the rest of the current chunk is
    /// cut at the new one (Twisted's `self.delimiter = ...` inside `lineReceived`, which
    /// its loop reads again for every line).
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn set_delimiter(&mut self, delimiter: &[u8]) {
        *self.delimiter = Delimiter::new(delimiter);
        self.state.new_delimiter = true;
        self.state.requested = true;
    }
}

impl fmt::Debug for LineControl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineControl")
            .field("line_mode", &self.state.line_mode)
            .field("max_length", &self.state.max_length)
            .finish()
    }
}

/// True if `part` is a non-empty tail of `whole`, the same memory (not equal bytes).
///
/// Both are live borrows, so overlapping addresses mean the same bytes; comparing the
/// addresses is safe code.
fn is_tail_of(part: &[u8], whole: &[u8]) -> bool {
    let (part, whole) = (part.as_ptr_range(), whole.as_ptr_range());
    part.start != part.end && part.end == whole.end && part.start >= whole.start
}

// ----- LineReceiver -----

/// Callbacks for a [`LineReceiver`] (Twisted's `LineReceiver` methods).
///
/// Only [`line_received`](LineHandler::line_received) has no default. Every callback
/// gets a [`LineContext`]: the connection's [`Context`] (through `Deref`) and the
/// framer's controls.
#[diagnostic::on_unimplemented(
    note = "a `LineContext`'s `call_later` and `defer_to_thread` take closures typed on the handler \
            (`|h: &mut MyHandler, cx| ...`); one typed on the `LineReceiver` is set with \
            `Context::call_later(cx, ...)` or `Context::defer_to_thread(cx, ...)`"
)]
pub trait LineHandler: 'static {
    /// The connection is established.
    fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
        let _ = cx;
    }

    /// A line arrived, without its delimiter. It may be empty.
    ///
    /// `line` borrows the framer's buffer or the reactor's read buffer: copy what you
    /// keep. Pausing reading, closing the connection or switching modes here applies
    /// before the next line of the same chunk.
    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]);

    /// Raw data arrived, in raw mode: everything pending, in one piece. The default
    /// drops it.
    ///
    /// Hand back what is not yours with [`LineContext::set_line_mode`].
    fn raw_data_received(&mut self, cx: &mut LineContext<'_, '_>, data: &[u8]) {
        let _ = (cx, data);
    }

    /// A line over `max_length` arrived (see [`LineEvent::LineTooLong`] for what `line`
    /// holds). The default closes the connection.
    fn line_length_exceeded(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        let _ = line;
        cx.lose_connection()
    }

    /// The peer shut its write side. An unfinished last line is still buffered:
    /// [`LineContext::clear_line_buffer`] returns it. The default closes the connection.
    fn read_eof(&mut self, cx: &mut LineContext<'_, '_>) {
        cx.lose_connection()
    }

    /// The connection is gone; called exactly once. What was still buffered is
    /// dropped after this returns.
    fn connection_lost(&mut self, cx: &mut LineContext<'_, '_>, reason: Reason) {
        let _ = (cx, reason);
    }

    /// An outgoing connection (made with
    /// [`Reactor::connect_tcp`](crate::Reactor::connect_tcp) or
    /// [`connect_unix`](crate::Reactor::connect_unix)) could not be made: refused,
    /// unreachable or timed out. Called instead of `connection_made`, and
    /// `connection_lost` does not follow; `cx` reaches the reactor (to retry with
    /// `call_later`, or `stop_reactor`) but no connection. The default logs the error at
    /// debug level, as [`Protocol::connection_failed`](crate::Protocol::connection_failed)
    /// does: a client overrides it, or it sees nothing.
    fn connection_failed(&mut self, cx: &mut LineContext<'_, '_>, error: io::Error) {
        let _ = cx;
        log::debug!("connection failed: {error}");
    }

    /// The write buffer passed its high watermark: stop producing.
    fn pause_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        let _ = cx;
    }

    /// The write buffer drained below its low watermark: producing may go on.
    fn resume_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        let _ = cx;
    }
}

/// What a [`LineHandler`] callback gets: the connection's [`Context`] (through `Deref`,
/// so `cx.write`, `cx.lose_connection`, `cx.pause_reading` all work), plus the framer's
/// own controls.
pub struct LineContext<'a, 'b> {
    cx: &'a mut Context<'b>,
    ctl: LineControl<'a>,
}

impl LineContext<'_, '_> {
    /// Switches to raw mode (Twisted's `setRawMode`): from inside `line_received`, the
    /// rest of the current chunk goes to `raw_data_received` at once, in one piece.
    pub fn set_raw_mode(&mut self) {
        self.ctl.set_raw_mode()
    }

    /// Switches to line mode, with `extra` (bytes not yours, usually the unused tail of
    /// raw data) parsed for lines after what is pending (Twisted's
    /// `setLineMode(extra)`).
    ///
    /// Never recurses: the lines in `extra` are delivered after the current callback
    /// returns. From `raw_data_received`, a tail of `data` is taken back without a copy.
    pub fn set_line_mode(&mut self, extra: &[u8]) {
        self.ctl.set_line_mode(extra)
    }

    /// Returns and drops everything buffered; inside `line_received`, that includes the
    /// rest of the current chunk (Twisted's `clearLineBuffer`).
    pub fn clear_line_buffer(&mut self) -> Vec<u8> {
        self.ctl.clear_line_buffer()
    }

    /// Sends `line` followed by the delimiter, in one vectored write (Twisted's
    /// `sendLine`). Returns what [`Context::write_vectored`] returns.
    pub fn send_line(&mut self, line: &[u8]) -> bool {
        let delimiter = self.ctl.delimiter.bytes();
        self.cx
            .write_vectored(&[IoSlice::new(line), IoSlice::new(delimiter)])
    }

    /// Changes the longest line accepted, from the next line on (Twisted's
    /// `MAX_LENGTH`).
    pub fn set_max_length(&mut self, bytes: usize) {
        self.ctl.set_max_length(bytes)
    }

    /// The longest line accepted, delimiter not counted.
    pub fn max_length(&self) -> usize {
        self.ctl.max_length()
    }

    /// True in line mode, false in raw mode.
    pub fn is_line_mode(&self) -> bool {
        self.ctl.is_line_mode()
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        self.ctl.delimiter()
    }

    /// Changes the delimiter, from the next line on (Twisted's `self.delimiter = ...`):
    /// inside `line_received`, the rest of the current chunk is cut at the new one, and
    /// [`send_line`](Self::send_line) ends lines with it.
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::framing::{LineContext, LineHandler, LineReceiver};
    /// use twistor::testing::Harness;
    ///
    /// /// A header line says which delimiter the rest of the session uses.
    /// struct Negotiate(Vec<Vec<u8>>);
    /// impl LineHandler for Negotiate {
    ///     fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
    ///         if line == b"USE NUL" {
    ///             cx.set_delimiter(b"\0");
    ///         } else {
    ///             self.0.push(line.to_vec());
    ///         }
    ///     }
    /// }
    ///
    /// let mut h = Harness::new(LineReceiver::new(Negotiate(Vec::new())));
    /// h.connect();
    /// h.feed(b"USE NUL\r\none\0two\0");
    /// assert_eq!(h.protocol().handler().0, [b"one".to_vec(), b"two".to_vec()]);
    /// ```
    pub fn set_delimiter(&mut self, delimiter: &[u8]) {
        self.ctl.set_delimiter(delimiter)
    }

    /// Runs `f` with the handler and its [`LineContext`] after `delay`, on the reactor
    /// thread, as if it were one of its callbacks: what `f` makes ready (lines handed
    /// back with `set_line_mode`, data kept while paused and then resumed) is delivered
    /// when it returns.
    ///
    /// `H` is this connection's handler type; name it on the closure's first argument
    /// (`|h: &mut MyHandler, cx| ...`). The timer dies with the connection, and
    /// [`cancel_timer`](Context::cancel_timer) and
    /// [`reset_timer`](Context::reset_timer) take the returned id as for any timer.
    ///
    /// This shadows [`Context::call_later`], whose closure gets the `LineReceiver<H>`
    /// and a plain [`Context`]; that one is still reached as
    /// `Context::call_later(cx, delay, |p: &mut LineReceiver<H>, cx| ...)`.
    ///
    /// # Panics
    ///
    /// If this connection's protocol is not a `LineReceiver<H>` (the closure names
    /// another handler type, or the receiver is wrapped in a protocol of its own), as
    /// [`Context::call_later`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twistor::framing::{LineContext, LineHandler, LineReceiver};
    /// use twistor::testing::Harness;
    ///
    /// /// Answers each line a second later, counting the answers.
    /// #[derive(Default)]
    /// struct Slow {
    ///     answered: usize,
    /// }
    ///
    /// impl LineHandler for Slow {
    ///     fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
    ///         let answer = line.to_ascii_uppercase();
    ///         cx.call_later(Duration::from_secs(1), move |slow: &mut Slow, cx| {
    ///             slow.answered += 1;
    ///             cx.send_line(&answer);
    ///         });
    ///     }
    /// }
    ///
    /// let mut h = Harness::new(LineReceiver::new(Slow::default()).delimiter(b"\n"));
    /// h.connect();
    /// h.feed(b"hello\n");
    /// assert_eq!(h.take_written(), b"");
    /// h.advance(Duration::from_secs(1));
    /// assert_eq!(h.take_written(), b"HELLO\n");
    /// assert_eq!(h.protocol().handler().answered, 1);
    /// ```
    pub fn call_later<H, F>(&mut self, delay: Duration, f: F) -> TimerId
    where
        H: LineHandler,
        F: FnOnce(&mut H, &mut LineContext<'_, '_>) + 'static,
    {
        self.cx
            .call_later(delay, move |p: &mut LineReceiver<H>, cx| {
                p.with_handler(cx, f)
            })
    }

    /// Runs `job` on the reactor's thread pool, then `done` with the handler, its
    /// [`LineContext`] and the job's result, back on the reactor thread, as if it were
    /// one of its callbacks (Twisted's `deferToThread`).
    ///
    /// Everything [`Context::defer_to_thread`] says holds (completion order, a
    /// graceful close waits for `done`, a lost connection drops the result), and
    /// [`can_defer_to_thread`](Context::can_defer_to_thread) answers for it. `H` is
    /// this connection's handler type, named on `done`'s first argument. This shadows
    /// [`Context::defer_to_thread`], whose `done` gets the `LineReceiver<H>`; that one
    /// is still reached as `Context::defer_to_thread(cx, job, done)`.
    ///
    /// # Errors
    ///
    /// [`PoolBusy`] if the pool's queue is full, the reactor is stopping, or this
    /// connection is gone; neither `job` nor `done` will run, and the refusal hands
    /// both back ([`PoolBusy::into_inner`]).
    ///
    /// # Panics
    ///
    /// If this connection's protocol is not a `LineReceiver<H>`, as
    /// [`call_later`](Self::call_later).
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::framing::{LineContext, LineHandler, LineReceiver};
    /// use twistor::testing::Harness;
    ///
    /// /// Sums the digits of each line on the pool.
    /// struct Summer;
    ///
    /// impl LineHandler for Summer {
    ///     fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
    ///         let line = line.to_vec();
    ///         let job = move || line.iter().map(|b| u32::from(b - b'0')).sum::<u32>();
    ///         let queued = cx.defer_to_thread(job, |_: &mut Summer, cx, sum| {
    ///             let answer = match sum {
    ///                 Ok(sum) => sum.to_string(),
    ///                 Err(e) => format!("error: {e}"),
    ///             };
    ///             cx.send_line(answer.as_bytes());
    ///         });
    ///         if queued.is_err() {
    ///             cx.send_line(b"busy");
    ///         }
    ///     }
    /// }
    ///
    /// let mut h = Harness::new(LineReceiver::new(Summer).delimiter(b"\n"));
    /// h.connect();
    /// h.feed(b"123\n");
    /// assert_eq!(h.run_jobs(), 1);
    /// assert_eq!(h.take_written(), b"6\n");
    /// ```
    pub fn defer_to_thread<H, T, J, D>(&mut self, job: J, done: D) -> Result<(), PoolBusy<(J, D)>>
    where
        H: LineHandler,
        T: Send + 'static,
        J: FnOnce() -> T + Send + 'static,
        D: FnOnce(&mut H, &mut LineContext<'_, '_>, Result<T, JobError>) + 'static,
    {
        // Asked first: once wrapped, `done` could not be handed back.
        if !self.cx.can_defer_to_thread() {
            return Err(PoolBusy::new((job, done)));
        }
        self.cx
            .defer_to_thread(job, move |p: &mut LineReceiver<H>, cx, result| {
                p.with_handler(cx, |h, cx| done(h, cx, result))
            })
            .map_err(|_| ())
            .expect("the pool had room a moment ago, and only this thread submits");
        Ok(())
    }
}

deref_to_context!(LineContext);

impl fmt::Debug for LineContext<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineContext")
            .field("cx", &self.cx)
            .field("ctl", &self.ctl)
            .finish()
    }
}

/// A protocol that receives lines, and raw data in raw mode (Twisted's
/// `LineReceiver`): the adapter between the reactor and a [`LineHandler`].
///
/// Defaults as Twisted's: delimiter `\r\n`, lines up to 16384 bytes, and a line over
/// that closes the connection (override
/// [`line_length_exceeded`](LineHandler::line_length_exceeded) to do otherwise). See the
/// [module overview](super) for the exact rules.
///
/// Pausing: call `cx.pause_reading()` from a callback; no further line is delivered,
/// even from data already received, until `cx.resume_reading()`. The lines kept back
/// are delivered on the reactor's next turn, before anything new is read.
///
/// Timers and pool results set from a callback reach the handler:
/// [`LineContext::call_later`] and [`LineContext::defer_to_thread`] take closures typed
/// on it (`|h: &mut MyHandler, cx| ...`), with its own [`LineContext`]. Code that holds
/// the `LineReceiver<H>` instead reaches the handler with
/// [`with_handler`](Self::with_handler).
///
/// # Examples
///
/// ```
/// use twistor::framing::{LineContext, LineHandler, LineReceiver};
/// use twistor::Reactor;
///
/// /// Answers each line upper-cased; `quit` says bye and closes.
/// struct Shout {
///     lines: usize,
/// }
///
/// impl LineHandler for Shout {
///     fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
///         cx.send_line(b"hello");
///     }
///
///     fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
///         self.lines += 1;
///         if line == b"quit" {
///             cx.send_line(b"bye");
///             cx.lose_connection(); // no further line of this chunk is delivered
///         } else {
///             cx.send_line(&line.to_ascii_uppercase());
///         }
///     }
/// }
///
/// let protocol = LineReceiver::new(Shout { lines: 0 })
///     .delimiter(b"\n")
///     .max_length(4096);
/// assert!(protocol.is_line_mode());
/// assert_eq!(protocol.handler().lines, 0);
///
/// let mut reactor = Reactor::new()?;
/// let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), |_: &_| {
///     Some(LineReceiver::new(Shout { lines: 0 }).delimiter(b"\n"))
/// })?;
/// assert_ne!(port.local_addr.port(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LineReceiver<H: LineHandler> {
    parser: LineParser,
    handler: H,
}

impl<H: LineHandler> LineReceiver<H> {
    /// A line receiver in line mode, with delimiter `\r\n` and lines up to 16384 bytes.
    pub fn new(handler: H) -> Self {
        LineReceiver {
            parser: LineParser::new(DEFAULT_DELIMITER, DEFAULT_MAX_LINE_BYTES),
            handler,
        }
    }

    /// Sets the delimiter (Twisted's `delimiter`); `b"\n"` for most Unix tools.
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn delimiter(mut self, delimiter: &[u8]) -> Self {
        let max = self.parser.max_length();
        self.parser = LineParser::new(delimiter, max);
        self
    }

    /// Sets the longest line accepted, delimiter not counted (Twisted's `MAX_LENGTH`).
    pub fn max_length(mut self, bytes: usize) -> Self {
        self.parser.set_max_length(bytes);
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// True in line mode, false in raw mode.
    pub fn is_line_mode(&self) -> bool {
        self.parser.is_line_mode()
    }

    /// What is buffered: an unfinished line, or data kept back while paused.
    pub fn buffered(&self) -> &[u8] {
        self.parser.buffered()
    }

    /// Runs `f` with the handler and a [`LineContext`], as if it were a callback, then
    /// delivers whatever that made ready (after `set_line_mode(extra)`, say). For code
    /// that holds the `LineReceiver` rather than the handler:
    /// [`Reactor::call_protocol`](crate::Reactor::call_protocol), the testing kit's
    /// [`Harness::call`](crate::testing::Harness::call), or a timer typed on the
    /// receiver (`Context::call_later(cx, ...)`). A handler's own timers need none of
    /// this: see [`LineContext::call_later`].
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::framing::{LineContext, LineHandler, LineReceiver};
    /// use twistor::testing::Harness;
    ///
    /// struct Echo;
    /// impl LineHandler for Echo {
    ///     fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
    ///         cx.send_line(line);
    ///     }
    /// }
    ///
    /// let mut h = Harness::new(LineReceiver::new(Echo).delimiter(b"\n"));
    /// h.connect();
    /// // From outside: hand the framer two lines, as the peer would have sent them.
    /// h.call(|p: &mut LineReceiver<Echo>, cx| {
    ///     p.with_handler(cx, |_echo, cx| cx.set_line_mode(b"one\ntwo\n"));
    /// });
    /// assert_eq!(h.take_written(), b"one\ntwo\n");
    /// ```
    pub fn with_handler<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut H, &mut LineContext<'_, '_>) -> R,
    ) -> R {
        self.drive(cx, &[], f)
    }

    /// Runs `first` (a callback that is not about an event), then delivers events from
    /// `chunk` and the buffer while the connection reads.
    fn drive<R>(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &[u8],
        first: impl FnOnce(&mut H, &mut LineContext<'_, '_>) -> R,
    ) -> R {
        let handler = &mut self.handler;
        let mut feed = self.parser.feed(chunk);
        let result = first(
            handler,
            &mut LineContext {
                cx: &mut *cx,
                ctl: feed.control(),
            },
        );
        while cx.is_reading() {
            let Some((event, ctl)) = feed.next_event() else {
                break;
            };
            let cx = &mut LineContext { cx: &mut *cx, ctl };
            match event {
                LineEvent::Line(line) => handler.line_received(cx, line),
                LineEvent::Raw(data) => handler.raw_data_received(cx, data),
                LineEvent::LineTooLong(data) => {
                    log::debug!(
                        "{}: line over {} bytes ({} bytes pending)",
                        cx.id(),
                        cx.max_length(),
                        data.len()
                    );
                    handler.line_length_exceeded(cx, data)
                }
            }
        }
        if !cx.is_open() {
            feed.discard();
        }
        result
    }
}

receiver_impls!(impl<H: LineHandler> LineReceiver<H>);

// ----- LineOnlyReceiver -----

/// Callbacks for a [`LineOnlyReceiver`] (Twisted's `LineOnlyReceiver` methods).
///
/// Only [`line_received`](LineOnlyHandler::line_received) has no default.
#[diagnostic::on_unimplemented(
    note = "a `LineOnlyContext`'s `call_later` and `defer_to_thread` take closures typed on the \
            handler (`|h: &mut MyHandler, cx| ...`); one typed on the `LineOnlyReceiver` is set \
            with `Context::call_later(cx, ...)` or `Context::defer_to_thread(cx, ...)`"
)]
pub trait LineOnlyHandler: 'static {
    /// The connection is established.
    fn connection_made(&mut self, cx: &mut LineOnlyContext<'_, '_>) {
        let _ = cx;
    }

    /// A line arrived, without its delimiter. It may be empty.
    fn line_received(&mut self, cx: &mut LineOnlyContext<'_, '_>, line: &[u8]);

    /// A line over `max_length` arrived: `line` is that line alone, or what had arrived
    /// of it when it passed the limit (the rest of it is then discarded up to its
    /// delimiter). The default closes the connection; if the connection stays open,
    /// parsing goes on with the next line.
    fn line_length_exceeded(&mut self, cx: &mut LineOnlyContext<'_, '_>, line: &[u8]) {
        let _ = line;
        cx.lose_connection()
    }

    /// The peer shut its write side. The default closes the connection.
    fn read_eof(&mut self, cx: &mut LineOnlyContext<'_, '_>) {
        cx.lose_connection()
    }

    /// The connection is gone; called exactly once.
    fn connection_lost(&mut self, cx: &mut LineOnlyContext<'_, '_>, reason: Reason) {
        let _ = (cx, reason);
    }

    /// An outgoing connection (made with
    /// [`Reactor::connect_tcp`](crate::Reactor::connect_tcp) or
    /// [`connect_unix`](crate::Reactor::connect_unix)) could not be made: refused,
    /// unreachable or timed out. Called instead of `connection_made`, and
    /// `connection_lost` does not follow; `cx` reaches the reactor (to retry with
    /// `call_later`, or `stop_reactor`) but no connection. The default logs the error at
    /// debug level, as [`Protocol::connection_failed`](crate::Protocol::connection_failed)
    /// does: a client overrides it, or it sees nothing.
    fn connection_failed(&mut self, cx: &mut LineOnlyContext<'_, '_>, error: io::Error) {
        let _ = cx;
        log::debug!("connection failed: {error}");
    }

    /// The write buffer passed its high watermark: stop producing.
    fn pause_producing(&mut self, cx: &mut LineOnlyContext<'_, '_>) {
        let _ = cx;
    }

    /// The write buffer drained below its low watermark: producing may go on.
    fn resume_producing(&mut self, cx: &mut LineOnlyContext<'_, '_>) {
        let _ = cx;
    }
}

/// What a [`LineOnlyHandler`] callback gets: the connection's [`Context`] (through
/// `Deref`), plus `send_line` and the limit.
pub struct LineOnlyContext<'a, 'b> {
    cx: &'a mut Context<'b>,
    ctl: LineControl<'a>,
}

impl LineOnlyContext<'_, '_> {
    /// Sends `line` followed by the delimiter, in one vectored write (Twisted's
    /// `sendLine`).
    pub fn send_line(&mut self, line: &[u8]) -> bool {
        let delimiter = self.ctl.delimiter.bytes();
        self.cx
            .write_vectored(&[IoSlice::new(line), IoSlice::new(delimiter)])
    }

    /// Returns and drops everything buffered (at end of input: the unfinished last
    /// line); inside `line_received`, that includes the rest of the current chunk.
    pub fn clear_line_buffer(&mut self) -> Vec<u8> {
        self.ctl.clear_line_buffer()
    }

    /// Changes the longest line accepted, from the next line on.
    pub fn set_max_length(&mut self, bytes: usize) {
        self.ctl.set_max_length(bytes)
    }

    /// The longest line accepted, delimiter not counted.
    pub fn max_length(&self) -> usize {
        self.ctl.max_length()
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        self.ctl.delimiter()
    }

    /// Runs `f` with the handler and its [`LineOnlyContext`] after `delay`, as if it
    /// were one of its callbacks; `H` is this connection's handler type. As
    /// [`LineContext::call_later`], for a [`LineOnlyReceiver`]; the [`Context`] method
    /// it shadows is reached as `Context::call_later(cx, ...)`.
    ///
    /// # Panics
    ///
    /// If this connection's protocol is not a `LineOnlyReceiver<H>`.
    pub fn call_later<H, F>(&mut self, delay: Duration, f: F) -> TimerId
    where
        H: LineOnlyHandler,
        F: FnOnce(&mut H, &mut LineOnlyContext<'_, '_>) + 'static,
    {
        self.cx
            .call_later(delay, move |p: &mut LineOnlyReceiver<H>, cx| {
                p.with_handler(cx, f)
            })
    }

    /// Runs `job` on the reactor's thread pool, then `done` with the handler, its
    /// [`LineOnlyContext`] and the result, back on the reactor thread. As
    /// [`LineContext::defer_to_thread`], for a [`LineOnlyReceiver`]; the [`Context`]
    /// method it shadows is reached as `Context::defer_to_thread(cx, ...)`.
    ///
    /// # Errors
    ///
    /// [`PoolBusy`] if the pool's queue is full, the reactor is stopping, or this
    /// connection is gone; neither `job` nor `done` will run, and the refusal hands
    /// both back ([`PoolBusy::into_inner`]).
    ///
    /// # Panics
    ///
    /// If this connection's protocol is not a `LineOnlyReceiver<H>`.
    pub fn defer_to_thread<H, T, J, D>(&mut self, job: J, done: D) -> Result<(), PoolBusy<(J, D)>>
    where
        H: LineOnlyHandler,
        T: Send + 'static,
        J: FnOnce() -> T + Send + 'static,
        D: FnOnce(&mut H, &mut LineOnlyContext<'_, '_>, Result<T, JobError>) + 'static,
    {
        // Asked first: once wrapped, `done` could not be handed back.
        if !self.cx.can_defer_to_thread() {
            return Err(PoolBusy::new((job, done)));
        }
        self.cx
            .defer_to_thread(job, move |p: &mut LineOnlyReceiver<H>, cx, result| {
                p.with_handler(cx, |h, cx| done(h, cx, result))
            })
            .map_err(|_| ())
            .expect("the pool had room a moment ago, and only this thread submits");
        Ok(())
    }
}

deref_to_context!(LineOnlyContext);

impl fmt::Debug for LineOnlyContext<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineOnlyContext")
            .field("cx", &self.cx)
            .field("ctl", &self.ctl)
            .finish()
    }
}

/// A protocol that receives only lines (Twisted's `LineOnlyReceiver`): no raw mode,
/// and an overlong line is reported alone, then skipped.
///
/// Defaults as Twisted's: delimiter `\r\n`, lines up to 16384 bytes, and a line over
/// that closes the connection. Pausing works as for [`LineReceiver`] (Twisted's
/// `LineOnlyReceiver` cannot pause). See the [module overview](super) for the rules.
///
/// # Examples
///
/// ```
/// use twistor::framing::{LineOnlyContext, LineOnlyHandler, LineOnlyReceiver};
///
/// struct Log;
/// impl LineOnlyHandler for Log {
///     fn line_received(&mut self, cx: &mut LineOnlyContext<'_, '_>, line: &[u8]) {
///         println!("{}: {}", cx.id(), line.escape_ascii());
///     }
/// }
///
/// let protocol = LineOnlyReceiver::new(Log).delimiter(b"\n").max_length(1024);
/// # let _ = protocol;
/// ```
pub struct LineOnlyReceiver<H: LineOnlyHandler> {
    parser: LineParser,
    handler: H,
}

impl<H: LineOnlyHandler> LineOnlyReceiver<H> {
    /// A line-only receiver with delimiter `\r\n` and lines up to 16384 bytes.
    pub fn new(handler: H) -> Self {
        LineOnlyReceiver {
            parser: LineParser::new(DEFAULT_DELIMITER, DEFAULT_MAX_LINE_BYTES)
                .skipping_overlong_lines(),
            handler,
        }
    }

    /// Sets the delimiter.
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn delimiter(mut self, delimiter: &[u8]) -> Self {
        let max = self.parser.max_length();
        self.parser = LineParser::new(delimiter, max).skipping_overlong_lines();
        self
    }

    /// Sets the longest line accepted, delimiter not counted.
    pub fn max_length(mut self, bytes: usize) -> Self {
        self.parser.set_max_length(bytes);
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Runs `f` with the handler and a [`LineOnlyContext`], as if it were a callback;
    /// for code that holds the `LineOnlyReceiver` (a handler's own timers use
    /// [`LineOnlyContext::call_later`]).
    pub fn with_handler<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut H, &mut LineOnlyContext<'_, '_>) -> R,
    ) -> R {
        self.drive(cx, &[], f)
    }

    fn drive<R>(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &[u8],
        first: impl FnOnce(&mut H, &mut LineOnlyContext<'_, '_>) -> R,
    ) -> R {
        let handler = &mut self.handler;
        let mut feed = self.parser.feed(chunk);
        let result = first(
            handler,
            &mut LineOnlyContext {
                cx: &mut *cx,
                ctl: feed.control(),
            },
        );
        while cx.is_reading() {
            let Some((event, ctl)) = feed.next_event() else {
                break;
            };
            let cx = &mut LineOnlyContext { cx: &mut *cx, ctl };
            match event {
                LineEvent::Line(line) => handler.line_received(cx, line),
                LineEvent::LineTooLong(line) => {
                    log::debug!("{}: line over {} bytes", cx.id(), cx.max_length());
                    handler.line_length_exceeded(cx, line)
                }
                LineEvent::Raw(_) => unreachable!("a LineOnlyReceiver never enters raw mode"),
            }
        }
        if !cx.is_open() {
            feed.discard();
        }
        result
    }
}

receiver_impls!(impl<H: LineOnlyHandler> LineOnlyReceiver<H>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::test_util::fed;
    use crate::testing::Harness;

    /// An event, owned.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Line(Vec<u8>),
        Raw(Vec<u8>),
        TooLong(Vec<u8>),
    }

    impl From<LineEvent<'_>> for Ev {
        fn from(e: LineEvent<'_>) -> Ev {
            match e {
                LineEvent::Line(l) => Ev::Line(l.to_vec()),
                LineEvent::Raw(d) => Ev::Raw(d.to_vec()),
                LineEvent::LineTooLong(d) => Ev::TooLong(d.to_vec()),
            }
        }
    }

    fn line(s: &str) -> Ev {
        Ev::Line(s.as_bytes().to_vec())
    }

    fn too_long(s: &[u8]) -> Ev {
        Ev::TooLong(s.to_vec())
    }

    /// What a scripted handler does after an event.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Flow {
        Go,
        Pause,
        Close,
    }

    /// A connection in miniature: the parser, the events it delivered, and whether the
    /// handler paused or closed it.
    struct Conn<F> {
        parser: LineParser,
        events: Vec<Ev>,
        paused: bool,
        closed: bool,
        script: F,
    }

    impl<F: FnMut(&Ev, &mut LineControl<'_>) -> Flow> Conn<F> {
        fn new(parser: LineParser, script: F) -> Self {
            Conn {
                parser,
                events: Vec::new(),
                paused: false,
                closed: false,
                script,
            }
        }

        /// `data_received`: while paused or closed the chunk is only kept (or dropped).
        fn data(&mut self, chunk: &[u8]) {
            if self.closed {
                return;
            }
            let mut feed = self.parser.feed(chunk);
            if self.paused {
                return;
            }
            while let Some((event, mut ctl)) = feed.next_event() {
                let ev = Ev::from(event);
                self.events.push(ev.clone());
                match (self.script)(&ev, &mut ctl) {
                    Flow::Go => {}
                    Flow::Pause => {
                        self.paused = true;
                        break;
                    }
                    Flow::Close => {
                        self.closed = true;
                        feed.discard();
                        return;
                    }
                }
            }
        }

        /// `resume_reading` then `reading_resumed`.
        fn resume(&mut self) {
            self.paused = false;
            self.data(&[]);
        }
    }

    fn lines_only(_: &Ev, _: &mut LineControl<'_>) -> Flow {
        Flow::Go
    }

    /// A closing handler: the default `line_length_exceeded`.
    fn close_on_too_long(ev: &Ev, _: &mut LineControl<'_>) -> Flow {
        match ev {
            Ev::TooLong(_) => Flow::Close,
            _ => Flow::Go,
        }
    }

    /// Every way to cut `input`: whole, one byte at a time, at every split point, in
    /// packets of 2 to 9 bytes and, for short inputs, at every pair of split points.
    fn chunkings(input: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut all = vec![vec![input], input.chunks(1).collect()];
        for i in 1..input.len() {
            all.push(vec![&input[..i], &input[i..]]);
        }
        for size in 2..10 {
            all.push(input.chunks(size).collect());
        }
        if input.len() <= 40 {
            for i in 1..input.len() {
                for j in i + 1..input.len() {
                    all.push(vec![&input[..i], &input[i..j], &input[j..]]);
                }
            }
        }
        all
    }

    /// Feeds `input` at every chunking to a fresh parser driven by `script`, and checks
    /// the events (and whether the connection was closed) are `expected` each time.
    fn check_with<F>(
        make: impl Fn() -> LineParser,
        input: &[u8],
        script: F,
        expected: &[Ev],
        closed: bool,
    ) where
        F: Fn(&Ev, &mut LineControl<'_>) -> Flow + Copy,
    {
        for chunks in chunkings(input) {
            let mut conn = Conn::new(make(), script);
            for chunk in &chunks {
                conn.data(chunk);
            }
            assert_eq!(conn.events, expected, "chunks: {chunks:?}");
            assert_eq!(conn.closed, closed, "chunks: {chunks:?}");
        }
    }

    /// Like [`check_with`] for input that ends in an overlong line and a close: the
    /// events before it are `before` at every chunking, then exactly one overlong line
    /// starting with `overlong`. (What else `line_length_exceeded` gets depends on the
    /// chunking, in Twisted too.)
    fn check_closes<F>(
        make: impl Fn() -> LineParser,
        input: &[u8],
        script: F,
        before: &[Ev],
        overlong: &[u8],
    ) where
        F: Fn(&Ev, &mut LineControl<'_>) -> Flow + Copy,
    {
        for chunks in chunkings(input) {
            let mut conn = Conn::new(make(), script);
            for chunk in &chunks {
                conn.data(chunk);
            }
            assert!(conn.closed, "chunks: {chunks:?}");
            let (last, events) = conn.events.split_last().unwrap();
            assert_eq!(events, before, "chunks: {chunks:?}");
            assert!(
                matches!(last, Ev::TooLong(l) if l.starts_with(overlong)),
                "chunks: {chunks:?}: {last:?}"
            );
            assert!(conn.parser.buffered().is_empty());
        }
    }

    fn check(delimiter: &[u8], max: usize, input: &[u8], expected: &[Ev]) {
        check_with(
            || LineParser::new(delimiter, max),
            input,
            lines_only,
            expected,
            false,
        )
    }

    // ----- plain line splitting -----

    #[test]
    fn crlf_lines_at_every_chunking() {
        check(
            b"\r\n",
            100,
            b"hello\r\nworld\r\n\r\nlast\r",
            &[line("hello"), line("world"), line("")],
        );
    }

    #[test]
    fn empty_lines_are_delivered() {
        check(
            b"\r\n",
            100,
            b"\r\n\r\n\r\n",
            &[line(""), line(""), line("")],
        );
        check(b"\n", 100, b"\n\na\n", &[line(""), line(""), line("a")]);
    }

    #[test]
    fn lone_cr_and_lf_are_line_content_with_crlf() {
        check(
            b"\r\n",
            100,
            b"a\rb\nc\r\r\nd\n\r\n",
            &[line("a\rb\nc\r"), line("d\n")],
        );
    }

    #[test]
    fn multi_byte_delimiter_splits_at_first_occurrence() {
        // Python's split semantics: `xaaay` with `aa` is `x`, then `ay`.
        check(b"aa", 100, b"xaaayaa", &[line("x"), line("ay")]);
        check(b"aa", 100, b"aaaaa", &[line(""), line("")]);
        check(
            b"<END>",
            100,
            b"one<END>two<EN<END><END>",
            &[line("one"), line("two<EN"), line("")],
        );
    }

    #[test]
    fn unfinished_line_waits_and_is_buffered() {
        let mut p = LineParser::new(b"\r\n", 100);
        let mut feed = p.feed(b"abc\r\nde");
        assert_eq!(feed.next_event().map(|e| Ev::from(e.0)), Some(line("abc")));
        assert!(feed.next_event().is_none());
        drop(feed);
        assert_eq!(p.buffered(), b"de");
        let mut feed = p.feed(b"f\r");
        assert!(feed.next_event().is_none());
        drop(feed);
        assert_eq!(p.buffered(), b"def\r");
        let mut feed = p.feed(b"\ng");
        assert_eq!(feed.next_event().map(|e| Ev::from(e.0)), Some(line("def")));
        assert!(feed.next_event().is_none());
        drop(feed);
        assert_eq!(p.buffered(), b"g");
    }

    #[test]
    fn steady_state_hands_out_slices_of_the_chunk() {
        let chunk = b"one\ntwo\nthr".to_vec();
        let mut p = LineParser::new(b"\n", 100);
        let mut feed = p.feed(&chunk);
        while let Some((LineEvent::Line(l), _)) = feed.next_event() {
            let inside = chunk.as_ptr_range();
            assert!(inside.contains(&l.as_ptr()), "a line was copied");
        }
    }

    // ----- max_length, Twisted's LineReceiverLineLengthExceededTests and friends -----

    fn max6() -> LineParser {
        LineParser::new(b"\r\n", 6)
    }

    fn check_max6(input: &[u8], expected: &[Ev]) {
        let record = |_: &Ev, _: &mut LineControl<'_>| Flow::Go;
        let mut conn = Conn::new(max6(), record);
        conn.data(input);
        assert_eq!(conn.events, expected);
    }

    #[test]
    fn long_unended_line_is_handed_over_whole() {
        let excessive = [b'x'; 14];
        check_max6(&excessive, &[too_long(&excessive)]);
    }

    #[test]
    fn long_line_after_short_line() {
        let excessive = [b'x'; 14];
        let input = [&b"x\r\n"[..], &excessive].concat();
        check_max6(&input, &[line("x"), too_long(&excessive)]);
    }

    #[test]
    fn long_line_with_delimiter_gets_the_rest_of_the_buffer_too() {
        let x = [b'x'; 14];
        let excessive = [&x[..], b"\r\n", &x].concat();
        check_max6(&excessive, &[too_long(&excessive)]);
        let excessive = [&x[..], b"\r\n", &x, b"\r\n"].concat();
        check_max6(&excessive, &[too_long(&excessive)]);
        // Valid lines after the long one go with it, unparsed.
        let input = [&x[..], b"\r\nok\r\nok\r\n"].concat();
        check_max6(&input, &[too_long(&input)]);
    }

    #[test]
    fn exactly_max_length_is_accepted_and_one_more_is_not() {
        check_with(
            max6,
            b"xxxxxx\r\nyy\r\n",
            close_on_too_long,
            &[line("xxxxxx"), line("yy")],
            false,
        );
        check_closes(
            max6,
            b"yy\r\nxxxxxxx\r\nyy\r\n",
            close_on_too_long,
            &[line("yy")],
            b"xxxxxxx",
        );
    }

    #[test]
    fn unfinished_max_length_line_with_partial_delimiter_is_accepted() {
        // test_notQuiteMaximumLineLengthUnfinished: MAX bytes plus `\r`.
        let mut conn = Conn::new(LineParser::new(b"\r\n", 16384), close_on_too_long);
        conn.data(&[&[b'x'; 16384][..], b"\r"].concat());
        assert!(!conn.closed);
        assert_eq!(conn.parser.buffered().len(), 16385);
        // One byte more than that cannot be a line within the limit.
        let mut conn = Conn::new(LineParser::new(b"\r\n", 16384), close_on_too_long);
        conn.data(&[b'x'; 16386]);
        assert!(conn.closed);
    }

    #[test]
    fn maximum_line_length_remaining() {
        // test_maximumLineLengthRemaining: MAX + len(delimiter) unfinished bytes.
        let mut conn = Conn::new(LineParser::new(b"\r\n", 16384), close_on_too_long);
        conn.data(&[b'x'; 16386]);
        assert!(conn.closed);
    }

    #[test]
    fn maximum_line_length_closes_by_default() {
        // test_maximumLineLength: MAX+1 bytes, the delimiter, and more.
        let input = [&[b'x'; 16385][..], b"\r\nr"].concat();
        let mut conn = Conn::new(LineParser::new(b"\r\n", 16384), close_on_too_long);
        conn.data(&input);
        assert!(conn.closed);
        assert_eq!(conn.events, [too_long(&input)]);
    }

    #[test]
    fn maximum_line_length_partial_delimiter() {
        // test_maximumLineLengthPartialDelimiter, with `\n` and with `\r\n`.
        for delimiter in [&b"\n"[..], b"\r\n"] {
            let mut conn = Conn::new(LineParser::new(delimiter, 4), close_on_too_long);
            conn.data(b"xxx");
            conn.data(&delimiter[..delimiter.len() - 1]);
            conn.data(&[&delimiter[delimiter.len() - 1..], b"xxx"].concat());
            assert!(!conn.closed);
            assert_eq!(conn.events, [line("xxx")]);
            // And a line of exactly MAX with a split delimiter.
            let mut conn = Conn::new(LineParser::new(delimiter, 4), close_on_too_long);
            conn.data(&[&b"xxxx"[..], &delimiter[..delimiter.len() - 1]].concat());
            conn.data(&delimiter[delimiter.len() - 1..]);
            assert_eq!(conn.events, [line("xxxx")]);
        }
    }

    #[test]
    fn unfinished_line_buffer_is_bounded_by_max_length() {
        let mut conn = Conn::new(LineParser::new(b"\r\n", 100), close_on_too_long);
        for _ in 0..100 {
            conn.data(b"x");
        }
        conn.data(b"\r");
        assert_eq!(conn.parser.buffered().len(), 101);
        conn.data(b"x");
        assert!(conn.closed);
        assert!(conn.parser.buffered().is_empty());
    }

    #[test]
    fn a_large_buffer_is_given_back_once_consumed() {
        let mut p = LineParser::new(b"\n", 100_000);
        drop(p.feed(&[b'x'; 50_000]));
        assert!(p.input.data.capacity() >= 50_000);
        let mut feed = p.feed(b"\n");
        assert!(matches!(feed.next_event(), Some((LineEvent::Line(l), _)) if l.len() == 50_000));
        drop(feed);
        assert_eq!(p.input.data.capacity(), 0);
        // And after an overlong line that the handler let pass.
        let mut p = LineParser::new(b"\n", 10);
        drop(p.feed(b"0123456"));
        let mut feed = p.feed(&[b'x'; 50_000]);
        assert!(
            matches!(feed.next_event(), Some((LineEvent::LineTooLong(l), _)) if l.len() == 50_007)
        );
        drop(feed);
        assert_eq!(p.input.data.capacity(), 0);
    }

    #[test]
    fn set_max_length_applies_to_the_next_line() {
        let script = |ev: &Ev, ctl: &mut LineControl<'_>| match ev {
            Ev::Line(l) if l == b"short" => {
                ctl.set_max_length(2);
                Flow::Go
            }
            Ev::TooLong(_) => Flow::Close,
            _ => Flow::Go,
        };
        check_closes(
            || LineParser::new(b"\n", 100),
            b"short\nab\nabc\n",
            script,
            &[line("short"), line("ab")],
            b"abc",
        );
    }

    #[test]
    fn set_delimiter_cuts_the_rest_of_the_chunk_at_the_new_one() {
        // Twisted's loop reads `self.delimiter` again for every line, so a change in
        // `lineReceived` applies to what follows in the same buffer.
        let script = |ev: &Ev, ctl: &mut LineControl<'_>| {
            match ev {
                Ev::Line(l) if l == b"pipes" => ctl.set_delimiter(b"|"),
                Ev::Line(l) if l == b"crlf" => ctl.set_delimiter(b"\r\n"),
                _ => {}
            }
            Flow::Go
        };
        check_with(
            || LineParser::new(b"\n", 100),
            b"a\npipes\nb|c\n|crlf|d\r\ne|f\r\ng",
            script,
            &[
                line("a"),
                line("pipes"),
                line("b"),
                line("c\n"),
                line("crlf"),
                line("d"),
                line("e|f"),
            ],
            false,
        );
    }

    #[test]
    fn set_delimiter_between_feeds_searches_the_whole_buffer_again() {
        // The buffered unfinished line was searched for the old delimiter only; the new
        // one may be anywhere in it.
        let mut p = LineParser::new(b"\n", 100);
        assert!(p.feed(b"x|y").next_event().is_none());
        p.set_delimiter(b"|");
        let mut feed = p.feed(b"z|");
        assert_eq!(feed.next_event().map(|e| Ev::from(e.0)), Some(line("x")));
        assert_eq!(feed.next_event().map(|e| Ev::from(e.0)), Some(line("yz")));
        assert!(feed.next_event().is_none());
        drop(feed);
        // The same through the controls of a callback that is not about an event.
        let mut p = LineParser::new(b"\n", 100);
        assert!(p.feed(b"x|y").next_event().is_none());
        p.feed(b"").control().set_delimiter(b"|");
        let mut feed = p.feed(b"z|");
        assert_eq!(feed.next_event().map(|e| Ev::from(e.0)), Some(line("x")));
        assert_eq!(feed.next_event().map(|e| Ev::from(e.0)), Some(line("yz")));
        drop(feed);
        assert_eq!(p.delimiter(), b"|");
    }

    #[test]
    fn set_delimiter_to_a_longer_one_is_found_across_chunks() {
        let script = |ev: &Ev, ctl: &mut LineControl<'_>| {
            if *ev == line("long") {
                ctl.set_delimiter(b"<end>");
            }
            Flow::Go
        };
        check_with(
            || LineParser::new(b"\n", 100),
            b"long\nab<en<end>\n<end>c<end",
            script,
            &[line("long"), line("ab<en"), line("\n")],
            false,
        );
    }

    // ----- raw mode -----

    /// Twisted's `LineTester`: `len N` announces N raw bytes after an empty line;
    /// records lines, and appends raw data to the last entry.
    struct LineTester {
        received: Vec<Vec<u8>>,
        length: usize,
    }

    impl LineTester {
        fn on(&mut self, ev: &Ev, ctl: &mut LineControl<'_>) -> Flow {
            match ev {
                Ev::Line(l) => {
                    self.received.push(l.clone());
                    if l.is_empty() {
                        ctl.set_raw_mode();
                    } else if l == b"pause" {
                        return Flow::Pause;
                    } else if l == b"rawpause" {
                        ctl.set_raw_mode();
                        self.received.push(Vec::new());
                        return Flow::Pause;
                    } else if l == b"stop" {
                        return Flow::Close;
                    } else if let Some(n) = l.strip_prefix(b"len ") {
                        self.length = std::str::from_utf8(n).unwrap().parse().unwrap();
                    }
                }
                Ev::Raw(data) => {
                    let n = self.length.min(data.len());
                    self.received
                        .last_mut()
                        .unwrap()
                        .extend_from_slice(&data[..n]);
                    self.length -= n;
                    if self.length == 0 {
                        ctl.set_line_mode(&data[n..]);
                    }
                }
                Ev::TooLong(l) => {
                    if l.len() > ctl.max_length() + 1 {
                        ctl.set_line_mode(&l[ctl.max_length() + 1..]);
                    }
                }
            }
            Flow::Go
        }
    }

    /// Runs a `LineTester` (delimiter `\n`, MAX 64) over `input` cut into `chunks`.
    #[allow(clippy::type_complexity)] // an `impl FnMut` cannot be named in an alias
    fn line_tester(
        chunks: &[&[u8]],
    ) -> (
        Vec<Vec<u8>>,
        Conn<impl FnMut(&Ev, &mut LineControl<'_>) -> Flow>,
    ) {
        let mut tester = LineTester {
            received: Vec::new(),
            length: 0,
        };
        let received = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let out = received.clone();
        let mut conn = Conn::new(
            LineParser::new(b"\n", 64),
            move |ev: &Ev, ctl: &mut LineControl<'_>| {
                let flow = tester.on(ev, ctl);
                *out.borrow_mut() = tester.received.clone();
                flow
            },
        );
        for c in chunks {
            conn.data(c);
        }
        let received = received.borrow().clone();
        (received, conn)
    }

    const BUFFER: &[u8] = b"len 10\n\n0123456789len 5\n\n1234\nlen 20\nfoo 123\n\n0123456789\n012345678len 0\nfoo 5\n\n1234567890123456789012345678901234567890123456789012345678901234567890\nlen 1\n\na";

    fn owned(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn twisted_test_buffer_at_every_chunking() {
        let output = owned(&[
            "len 10",
            "0123456789",
            "len 5",
            "1234\n",
            "len 20",
            "foo 123",
            "0123456789\n012345678",
            "len 0",
            "foo 5",
            "",
            "67890",
            "len 1",
            "a",
        ]);
        for chunks in chunkings(BUFFER) {
            let (received, _) = line_tester(&chunks);
            assert_eq!(received, output, "chunks: {chunks:?}");
        }
    }

    #[test]
    fn twisted_test_pausing() {
        let buf = b"twiddle1\ntwiddle2\npause\ntwiddle3\n";
        for chunks in chunkings(buf) {
            let (received, mut conn) = line_tester(&chunks);
            assert_eq!(
                received,
                owned(&["twiddle1", "twiddle2", "pause"]),
                "{chunks:?}"
            );
            conn.resume();
            let lines: Vec<Ev> = conn.events.clone();
            assert_eq!(
                lines,
                [
                    line("twiddle1"),
                    line("twiddle2"),
                    line("pause"),
                    line("twiddle3")
                ],
                "{chunks:?}"
            );
        }
    }

    #[test]
    fn twisted_test_raw_pausing() {
        let buf = b"twiddle1\ntwiddle2\nlen 5\nrawpause\n12345twiddle3\n";
        for chunks in chunkings(buf) {
            let (received, mut conn) = line_tester(&chunks);
            assert_eq!(
                received,
                owned(&["twiddle1", "twiddle2", "len 5", "rawpause", ""]),
                "{chunks:?}"
            );
            conn.resume();
            // The raw bytes may come in pieces (as they arrived); the lines are whole.
            let mut raw = Vec::new();
            let mut after = Vec::new();
            for ev in &conn.events[4..] {
                match ev {
                    Ev::Raw(d) => raw.extend_from_slice(d),
                    other => after.push(other.clone()),
                }
            }
            assert!(raw.starts_with(b"12345"), "{chunks:?}");
            assert_eq!(after, [line("twiddle3")], "{chunks:?}");
        }
    }

    #[test]
    fn twisted_test_stop_producing() {
        let buf = b"twiddle1\ntwiddle2\nstop\nmore\nstuff\n";
        for chunks in chunkings(buf) {
            let (received, conn) = line_tester(&chunks);
            assert_eq!(
                received,
                owned(&["twiddle1", "twiddle2", "stop"]),
                "{chunks:?}"
            );
            assert!(conn.closed);
            assert!(conn.parser.buffered().is_empty(), "closing drops the rest");
        }
    }

    #[test]
    fn raw_mode_inside_line_received_gets_the_rest_of_the_chunk_in_one_piece() {
        let script = |ev: &Ev, ctl: &mut LineControl<'_>| {
            if *ev == line("raw") {
                ctl.set_raw_mode();
            }
            Flow::Go
        };
        let mut conn = Conn::new(LineParser::new(b"\r\n", 100), script);
        conn.data(b"a\r\nraw\r\nb\r\nc\r\n");
        assert_eq!(
            conn.events,
            [line("a"), line("raw"), Ev::Raw(b"b\r\nc\r\n".to_vec())]
        );
        // A raw line that arrived across chunks, then the rest.
        let mut conn = Conn::new(LineParser::new(b"\r\n", 100), script);
        conn.data(b"ra");
        conn.data(b"w\r\nxyz");
        conn.data(b"more");
        assert_eq!(
            conn.events,
            [
                line("raw"),
                Ev::Raw(b"xyz".to_vec()),
                Ev::Raw(b"more".to_vec())
            ]
        );
    }

    #[test]
    fn header_line_announces_raw_bytes_then_lines_again() {
        // `len N`, N raw bytes, back to lines: the upload protocol's shape.
        struct Upload {
            want: usize,
        }
        let input = b"len 6\r\nab\r\ncdnext\r\nlen 0\r\nafter\r\n";
        for chunks in chunkings(input) {
            let mut up = Upload { want: 0 };
            let mut body = Vec::new();
            let mut lines = Vec::new();
            {
                let mut conn = Conn::new(
                    LineParser::new(b"\r\n", 100),
                    |ev: &Ev, ctl: &mut LineControl<'_>| {
                        match ev {
                            Ev::Line(l) => {
                                lines.push(l.clone());
                                if let Some(n) = l.strip_prefix(b"len ") {
                                    up.want = std::str::from_utf8(n).unwrap().parse().unwrap();
                                    if up.want > 0 {
                                        ctl.set_raw_mode();
                                    }
                                }
                            }
                            Ev::Raw(d) => {
                                let n = up.want.min(d.len());
                                body.extend_from_slice(&d[..n]);
                                up.want -= n;
                                if up.want == 0 {
                                    ctl.set_line_mode(&d[n..]);
                                }
                            }
                            Ev::TooLong(_) => unreachable!(),
                        }
                        Flow::Go
                    },
                );
                for c in &chunks {
                    conn.data(c);
                }
            }
            assert_eq!(body, b"ab\r\ncd", "{chunks:?}");
            assert_eq!(
                lines,
                owned(&["len 6", "next", "len 0", "after"]),
                "{chunks:?}"
            );
        }
    }

    #[test]
    fn set_raw_mode_outside_a_callback_delivers_the_buffered_partial_line_as_raw() {
        let mut p = LineParser::new(b"\r\n", 100);
        drop(p.feed(b"partial"));
        p.set_raw_mode();
        let mut feed = p.feed(b" and more\r\n");
        let (ev, _) = feed.next_event().unwrap();
        assert_eq!(ev, LineEvent::Raw(b"partial and more\r\n"));
        assert!(feed.next_event().is_none());
    }

    #[test]
    fn set_line_mode_outside_a_callback_parses_extra_on_the_next_feed() {
        let mut p = LineParser::new(b"\n", 100);
        p.set_raw_mode();
        p.set_line_mode(b"a\nb\nc");
        let mut conn = Conn::new(p, lines_only);
        conn.data(b"d\n");
        assert_eq!(conn.events, [line("a"), line("b"), line("cd")]);
    }

    #[test]
    fn set_line_mode_inside_line_received_appends_after_the_rest() {
        let script = |ev: &Ev, ctl: &mut LineControl<'_>| {
            if *ev == line("inject") {
                ctl.set_line_mode(b"x\ny");
            }
            Flow::Go
        };
        let mut conn = Conn::new(LineParser::new(b"\n", 100), script);
        conn.data(b"inject\nrest\npart");
        assert_eq!(conn.events, [line("inject"), line("rest"), line("partx")]);
        assert_eq!(conn.parser.buffered(), b"y");
    }

    #[test]
    fn set_line_mode_from_line_length_exceeded_is_parsed_at_once() {
        // Twisted waits for the next dataReceived here (the `test_buffer#g8` trap).
        let script = |ev: &Ev, ctl: &mut LineControl<'_>| {
            if let Ev::TooLong(_) = ev {
                ctl.set_line_mode(b"again\n");
            }
            Flow::Go
        };
        let mut conn = Conn::new(LineParser::new(b"\n", 5), script);
        conn.data(b"toolong\nok\n");
        assert_eq!(conn.events, [too_long(b"toolong\nok\n"), line("again")]);
    }

    #[test]
    fn mode_flips_do_not_recurse() {
        // test_stackRecursion (FlippingLineTester): 1000 flips in one chunk, handing
        // back a copy of the raw data, so the parser takes the copying path.
        let flip = |ev: &Ev, ctl: &mut LineControl<'_>| {
            match ev {
                Ev::Line(_) => ctl.set_raw_mode(),
                Ev::Raw(d) => ctl.set_line_mode(&d[1..]),
                Ev::TooLong(_) => unreachable!(),
            }
            Flow::Go
        };
        let mut conn = Conn::new(LineParser::new(b"\n", 100), flip);
        conn.data(&b"x\nx".repeat(1000));
        let lines: Vec<u8> = conn
            .events
            .iter()
            .filter_map(|e| match e {
                Ev::Line(l) => Some(l.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .concat();
        assert_eq!(lines, [b'x'; 1000]);
    }

    #[test]
    fn mode_flips_with_raw_tails_are_linear() {
        // 100 000 flips in one chunk, handing back a tail of the raw slice itself: no
        // copy, no recursion.
        let n = 100_000;
        let input = b"x\nx".repeat(n);
        let mut p = LineParser::new(b"\n", 100);
        let mut feed = p.feed(&input);
        let mut lines = 0;
        while let Some((event, mut ctl)) = feed.next_event() {
            match event {
                LineEvent::Line(l) => {
                    assert_eq!(l, b"x");
                    lines += 1;
                    ctl.set_raw_mode();
                }
                LineEvent::Raw(d) => ctl.set_line_mode(&d[1..]),
                LineEvent::LineTooLong(_) => unreachable!(),
            }
        }
        assert_eq!(lines, n);
    }

    #[test]
    fn clear_line_buffer_inside_line_received_drops_the_rest_of_the_chunk() {
        // test_clearLineBuffer.
        let mut rest = Vec::new();
        let script = |_: &Ev, ctl: &mut LineControl<'_>| {
            rest = ctl.clear_line_buffer();
            Flow::Go
        };
        let mut conn = Conn::new(LineParser::new(b"\r\n", 100), script);
        conn.data(b"foo\r\nbar\r\nbaz");
        conn.data(b"quux\r\n");
        assert_eq!(conn.events, [line("foo"), line("quux")]);
        drop(conn);
        assert_eq!(rest, b"");
        // And with the line coming from the buffer.
        let mut rests = Vec::new();
        let script = |_: &Ev, ctl: &mut LineControl<'_>| {
            rests.push(ctl.clear_line_buffer());
            Flow::Go
        };
        let mut conn = Conn::new(LineParser::new(b"\r\n", 100), script);
        conn.data(b"fo");
        conn.data(b"o\r\nbar\r\nbaz");
        assert_eq!(conn.events, [line("foo")]);
        drop(conn);
        assert_eq!(rests, [b"bar\r\nbaz".to_vec()]);
    }

    #[test]
    fn clear_line_buffer_returns_what_set_line_mode_handed_back() {
        let mut p = LineParser::new(b"\n", 100);
        p.set_raw_mode();
        let mut feed = p.feed(b"abcdef");
        let (ev, mut ctl) = feed.next_event().unwrap();
        let LineEvent::Raw(d) = ev else { panic!() };
        ctl.set_line_mode(&d[3..]);
        ctl.set_line_mode(b"xyz");
        assert_eq!(ctl.clear_line_buffer(), b"defxyz");
        ctl.set_line_mode(b"1\n2");
        assert_eq!(feed.next_event().map(|e| Ev::from(e.0)), Some(line("1")));
        assert!(feed.next_event().is_none());
        drop(feed);
        assert_eq!(p.buffered(), b"2");
    }

    // ----- pause and close in the middle of a chunk -----

    #[test]
    fn pause_keeps_the_rest_and_resume_delivers_it() {
        // Twisted's ProducerTests.test_pauseResume: pause after every line.
        let mut conn = Conn::new(
            LineParser::new(b"\r\n", 100),
            |_: &Ev, _: &mut LineControl<'_>| Flow::Pause,
        );
        conn.data(b"hello, ");
        assert!(conn.events.is_empty());
        assert!(!conn.paused);
        conn.data(b"world\r\n");
        assert_eq!(conn.events, [line("hello, world")]);
        assert!(conn.paused);
        conn.resume();
        assert!(!conn.paused);
        conn.data(b"hello\r\nworld\r\n");
        assert_eq!(conn.events.len(), 2);
        assert!(conn.paused);
        conn.resume();
        assert_eq!(conn.events.last(), Some(&line("world")));
        assert!(conn.paused);
        conn.data(b"goodbye\r\n");
        assert_eq!(conn.events.len(), 3);
        conn.resume();
        assert_eq!(conn.events.last(), Some(&line("goodbye")));
        assert!(conn.paused);
        conn.resume();
        assert_eq!(conn.events.len(), 4);
        assert!(!conn.paused);
    }

    #[test]
    fn pause_at_every_chunking_gives_the_same_lines() {
        let input = b"a\r\npause\r\nb\r\npause\r\nc\r\nd";
        for chunks in chunkings(input) {
            let pause = |ev: &Ev, _: &mut LineControl<'_>| {
                if *ev == line("pause") {
                    Flow::Pause
                } else {
                    Flow::Go
                }
            };
            let mut conn = Conn::new(LineParser::new(b"\r\n", 100), pause);
            for c in &chunks {
                conn.data(c);
                while conn.paused {
                    conn.resume();
                }
            }
            assert_eq!(
                conn.events,
                [
                    line("a"),
                    line("pause"),
                    line("b"),
                    line("pause"),
                    line("c")
                ],
                "{chunks:?}"
            );
            assert_eq!(conn.parser.buffered(), b"d");
        }
    }

    #[test]
    fn close_inside_line_received_drops_the_rest() {
        let input = b"a\r\nquit\r\nb\r\nc";
        let close = |ev: &Ev, _: &mut LineControl<'_>| {
            if *ev == line("quit") {
                Flow::Close
            } else {
                Flow::Go
            }
        };
        check_with(
            || LineParser::new(b"\r\n", 100),
            input,
            close,
            &[line("a"), line("quit")],
            true,
        );
    }

    // ----- LineOnlyReceiver's rules -----

    fn line_only(max: usize) -> LineParser {
        LineParser::new(b"\n", max).skipping_overlong_lines()
    }

    #[test]
    fn line_only_buffer_byte_by_byte() {
        // LineOnlyReceiverTests.test_buffer.
        let buffer = b"foo\n    bleakness\n    desolation\n    plastic forks\n    ";
        let expected: Vec<Ev> = buffer
            .split(|&b| b == b'\n')
            .map(|l| Ev::Line(l.to_vec()))
            .collect();
        check_with(
            || line_only(64),
            buffer,
            lines_only,
            &expected[..expected.len() - 1],
            false,
        );
    }

    #[test]
    fn line_only_greater_than_maximum_closes() {
        // test_greaterThanMaximumLineLength.
        let input = [&[b'x'; 64 + 1 + 1][..], b"\r\nr"].concat();
        check_closes(
            || line_only(64),
            &input,
            close_on_too_long,
            &[],
            &[b'x'; 65],
        );
    }

    #[test]
    fn line_only_skips_one_overlong_line_and_goes_on() {
        // Complete overlong line: that line alone.
        let mut conn = Conn::new(line_only(3), lines_only);
        conn.data(b"ok\ntoolong\nyes\n");
        assert_eq!(conn.events, [line("ok"), too_long(b"toolong"), line("yes")]);
        // At every chunking: reported once, the rest of it skipped, then the next line.
        for chunks in chunkings(b"ok\ntoolong\nyes\nabcd") {
            let mut conn = Conn::new(line_only(3), lines_only);
            for c in &chunks {
                conn.data(c);
            }
            assert_eq!(conn.events.len(), 4, "{chunks:?}");
            assert_eq!(conn.events[0], line("ok"));
            assert!(matches!(&conn.events[1], Ev::TooLong(l) if l.starts_with(b"tool")));
            assert_eq!(conn.events[2], line("yes"));
            assert!(
                matches!(&conn.events[3], Ev::TooLong(l) if l == b"abcd"),
                "{chunks:?}"
            );
        }
    }

    #[test]
    fn line_only_skipping_finds_a_split_multi_byte_delimiter() {
        for chunks in chunkings(b"0123456789\r\nnext\r\n") {
            let mut conn = Conn::new(
                LineParser::new(b"\r\n", 4).skipping_overlong_lines(),
                lines_only,
            );
            for c in &chunks {
                conn.data(c);
            }
            assert_eq!(conn.events.len(), 2, "{chunks:?}");
            assert_eq!(conn.events[1], line("next"), "{chunks:?}");
        }
    }

    // ----- the Protocol adapter, on the testing harness -----

    #[derive(Default)]
    struct Script {
        events: Vec<Ev>,
        eof_rest: Option<Vec<u8>>,
        /// What the framer still held when `connection_lost` ran (before it discards).
        lost_rest: Option<Vec<u8>>,
    }

    impl LineHandler for Script {
        fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
            cx.send_line(b"hi");
        }

        fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
            self.events.push(Ev::Line(line.to_vec()));
            match line {
                b"pause" => cx.pause_reading(),
                b"quit" => {
                    cx.send_line(b"bye");
                    cx.lose_connection();
                }
                b"raw" => cx.set_raw_mode(),
                _ => {
                    cx.send_line(&line.to_ascii_uppercase());
                }
            }
        }

        fn raw_data_received(&mut self, cx: &mut LineContext<'_, '_>, data: &[u8]) {
            self.events.push(Ev::Raw(data.to_vec()));
            let end = data
                .iter()
                .position(|&b| b == b'.')
                .map_or(data.len(), |i| i + 1);
            if end < data.len() || data.ends_with(b".") {
                cx.set_line_mode(&data[end..]);
            }
        }

        fn read_eof(&mut self, cx: &mut LineContext<'_, '_>) {
            self.eof_rest = Some(cx.clear_line_buffer());
            cx.lose_connection();
        }

        fn connection_lost(&mut self, cx: &mut LineContext<'_, '_>, _: Reason) {
            self.lost_rest = Some(cx.clear_line_buffer());
        }
    }

    type Proto = LineReceiver<Script>;

    fn proto() -> Proto {
        LineReceiver::new(Script::default()).delimiter(b"\n")
    }

    fn events(h: &Harness<Proto>) -> &[Ev] {
        &h.protocol().handler().events
    }

    /// Where the chunk holding `input[at - 1]` ends: a framer paused or switched to raw
    /// by the line ending at `at` has the rest of that chunk, `input[at..end]`.
    fn end_of_chunk_through(chunks: &[&[u8]], at: usize) -> usize {
        let mut end = 0;
        for chunk in chunks {
            end += chunk.len();
            if end >= at {
                return end;
            }
        }
        panic!("{at} is past the input");
    }

    #[test]
    fn adapter_sends_lines_with_the_delimiter() {
        for chunks in chunkings(b"one\ntwo\n") {
            let mut h = fed(proto(), &chunks);
            assert_eq!(h.take_written(), b"hi\nONE\nTWO\n", "{chunks:?}");
            assert_eq!(events(&h), [line("one"), line("two")], "{chunks:?}");
        }
    }

    #[test]
    fn adapter_pause_then_reading_resumed_delivers_what_was_kept() {
        let input = b"a\npause\nb\nc\nd";
        let after_pause = b"a\npause\n".len();
        for chunks in chunkings(input) {
            let mut h = fed(proto(), &chunks);
            assert_eq!(events(&h), [line("a"), line("pause")], "{chunks:?}");
            assert!(h.reading_paused());
            // The framer keeps the rest of the chunk it paused in; the chunks fed after
            // it wait in the harness's fake kernel.
            let kept = &input[after_pause..end_of_chunk_through(&chunks, after_pause)];
            assert_eq!(h.protocol().buffered(), kept, "{chunks:?}");
            // resume_reading: the harness runs reading_resumed, then hands over what
            // waited.
            h.call(|_, cx| cx.resume_reading());
            assert_eq!(
                events(&h),
                [line("a"), line("pause"), line("b"), line("c")],
                "{chunks:?}"
            );
            assert_eq!(h.protocol().buffered(), b"d", "{chunks:?}");
            h.feed(b"\n");
            assert_eq!(events(&h).last(), Some(&line("d")));
            assert_eq!(h.take_written(), b"hi\nA\nB\nC\nD\n");
        }
    }

    #[test]
    fn adapter_close_drops_the_rest_of_the_chunk() {
        for chunks in chunkings(b"a\nquit\nb\nc") {
            let mut h = fed(proto(), &chunks);
            assert_eq!(events(&h), [line("a"), line("quit")], "{chunks:?}");
            assert_eq!(h.take_written(), b"hi\nA\nbye\n", "{chunks:?}");
            assert!(matches!(h.lost(), Some(Reason::Done)), "{chunks:?}");
            let rest = h.protocol().handler().lost_rest.as_deref();
            assert_eq!(rest, Some(&b""[..]), "dropped at the close: {chunks:?}");
        }
    }

    #[test]
    fn adapter_raw_mode_and_back() {
        let h = fed(proto(), &[b"raw\nab", b"c.x\ny\n"]);
        assert_eq!(
            events(&h),
            [
                line("raw"),
                Ev::Raw(b"ab".to_vec()),
                Ev::Raw(b"c.x\ny\n".to_vec()),
                line("x"),
                line("y")
            ]
        );
        assert!(h.protocol().is_line_mode());
        // At every chunking: raw pieces from after `raw\n` to the end of the chunk
        // holding the '.', then the lines handed back.
        let input = b"raw\nabc.x\ny\n";
        for chunks in chunkings(input) {
            let h = fed(proto(), &chunks);
            let evs = events(&h);
            let n = evs.len();
            assert!(n >= 4, "{chunks:?}: {evs:?}");
            assert_eq!(evs[0], line("raw"));
            assert_eq!(evs[n - 2..], [line("x"), line("y")], "{chunks:?}");
            let raw: Vec<u8> = evs[1..n - 2]
                .iter()
                .flat_map(|ev| match ev {
                    Ev::Raw(d) => d.clone(),
                    other => panic!("{chunks:?}: {other:?} in raw mode"),
                })
                .collect();
            let dot_end = b"raw\nabc.".len();
            assert_eq!(raw, &input[4..end_of_chunk_through(&chunks, dot_end)]);
            assert!(h.protocol().is_line_mode());
        }
    }

    #[test]
    fn adapter_read_eof_can_take_the_unfinished_line() {
        for chunks in chunkings(b"a\nlast words") {
            let mut h = fed(proto(), &chunks);
            assert_eq!(events(&h), [line("a")]);
            h.eof();
            let handler = h.protocol().handler();
            assert_eq!(handler.eof_rest.as_deref(), Some(&b"last words"[..]));
            assert_eq!(handler.lost_rest.as_deref(), Some(&b""[..]));
            assert!(matches!(h.lost(), Some(Reason::Done)), "{chunks:?}");
        }
    }

    #[test]
    fn adapter_with_handler_delivers_lines_handed_back() {
        let mut h = fed(proto(), &[]);
        h.call(|p, cx| {
            p.with_handler(cx, |_, cx| {
                cx.set_raw_mode();
                cx.set_line_mode(b"x\ny\nz");
            })
        });
        assert_eq!(events(&h), [line("x"), line("y")]);
        assert_eq!(h.protocol().buffered(), b"z");
        assert_eq!(h.take_written(), b"hi\nX\nY\n");
    }

    #[test]
    fn adapter_default_line_length_exceeded_closes() {
        /// Records what the framer held when the connection was lost.
        #[derive(Default)]
        struct Quiet(Option<Vec<u8>>);
        impl LineHandler for Quiet {
            fn line_received(&mut self, _: &mut LineContext<'_, '_>, _: &[u8]) {}
            fn connection_lost(&mut self, cx: &mut LineContext<'_, '_>, _: Reason) {
                self.0 = Some(cx.clear_line_buffer());
            }
        }
        for chunks in chunkings(b"ok\r\n12345\r\nmore\r\n") {
            let h = fed(LineReceiver::new(Quiet::default()).max_length(4), &chunks);
            assert!(matches!(h.lost(), Some(Reason::Done)), "{chunks:?}");
            assert_eq!(h.protocol().handler().0.as_deref(), Some(&b""[..]));
        }
    }

    #[test]
    fn line_only_adapter_delivers_and_closes() {
        struct Rec(Vec<Vec<u8>>);
        impl LineOnlyHandler for Rec {
            fn line_received(&mut self, cx: &mut LineOnlyContext<'_, '_>, line: &[u8]) {
                self.0.push(line.to_vec());
                cx.send_line(line);
            }
        }
        for chunks in chunkings(b"a\r\nb\r\n123456\r\nc\r\n") {
            let mut h = fed(
                LineOnlyReceiver::new(Rec(Vec::new())).max_length(5),
                &chunks,
            );
            assert_eq!(h.protocol().handler().0, [b"a".to_vec(), b"b".to_vec()]);
            assert_eq!(h.take_written(), b"a\r\nb\r\n", "{chunks:?}");
            assert!(matches!(h.lost(), Some(Reason::Done)), "{chunks:?}");
        }
    }
}
