//! Netstrings: [`NetstringReceiver`] (Twisted's `NetstringReceiver`).
//!
//! A netstring is `<length>:<payload>,` with the length in decimal
//! (<http://cr.yp.to/proto/netstrings.txt>): `5:hello,`, and `0:,` for the empty
//! string. The parser is as strict as Twisted's and rejects as early: leading zeros
//! (`01:`), signs, spaces or anything else where a digit or `:` belongs (at that
//! byte), a length over `max_length` (99999 by default) as soon as its digits say so,
//! before the colon, and a payload not followed by `,` (at the byte where the comma
//! belongs). Any error closes the connection.

use std::fmt;
use std::ops::Range;

use super::{
    Buffer, Framing, Src, StringContext, StringControl, StringHandler, DEFAULT_MAX_STRING_BYTES,
};
use crate::{Context, Protocol, Reason};

/// Why a netstring was refused (the reasons of Twisted's `NetstringParseError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetstringError {
    /// A netstring did not start with a valid length: something other than a digit
    /// or `:` after it, a leading zero, or no digit before the `:`.
    MissingLength,
    /// The length is over `max_length`.
    TooLong {
        /// The limit that was passed.
        max_length: usize,
    },
    /// The byte after the payload was not `,`.
    MissingComma,
}

impl fmt::Display for NetstringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetstringError::MissingLength => {
                f.write_str("netstring does not start with a length specification")
            }
            NetstringError::TooLong { max_length } => {
                write!(
                    f,
                    "netstring is longer than the maximum of {max_length} bytes"
                )
            }
            NetstringError::MissingComma => f.write_str("netstring is not terminated by a comma"),
        }
    }
}

impl std::error::Error for NetstringError {}

/// What a [`NetstringParser`] found in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetstringEvent<'a> {
    /// A whole netstring's payload. May be empty.
    String(&'a [u8]),
    /// The input is not valid netstrings; the parser ignores everything after this.
    Error(NetstringError),
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Reading the length's digits: their value so far, and how many.
    Length { value: usize, digits: usize },
    /// The length is known: waiting for the payload and its comma.
    Payload { length: usize },
    /// After an error: everything is discarded.
    Broken,
}

const START: State = State::Length {
    value: 0,
    digits: 0,
};

/// A sans-I/O netstring parser.
///
/// # Examples
///
/// ```
/// use twistor::framing::{NetstringError, NetstringEvent, NetstringParser};
///
/// let mut parser = NetstringParser::new(100);
/// let mut feed = parser.feed(b"5:hello,0:,01:x,");
/// assert_eq!(feed.next_event().unwrap().0, NetstringEvent::String(b"hello"));
/// assert_eq!(feed.next_event().unwrap().0, NetstringEvent::String(b""));
/// assert_eq!(
///     feed.next_event().unwrap().0,
///     NetstringEvent::Error(NetstringError::MissingLength)
/// );
/// assert!(feed.next_event().is_none());
/// ```
#[derive(Debug)]
pub struct NetstringParser {
    input: Buffer,
    max_length: usize,
    state: State,
}

impl NetstringParser {
    /// A parser refusing netstrings over `max_length` bytes.
    pub fn new(max_length: usize) -> Self {
        NetstringParser {
            input: Buffer::default(),
            max_length,
            state: START,
        }
    }

    /// Starts parsing `chunk` after whatever is buffered; pull the events from the
    /// returned feed. What is not parsed when the feed is dropped is kept.
    pub fn feed<'p, 'c>(&'p mut self, chunk: &'c [u8]) -> NetstringFeed<'p, 'c> {
        NetstringFeed {
            parser: self,
            chunk,
            pos: 0,
        }
    }

    /// The largest netstring accepted.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Changes the largest netstring accepted.
    pub fn set_max_length(&mut self, bytes: usize) {
        self.max_length = bytes;
    }

    /// True after an error: the input is not netstrings (Twisted's `brokenPeer`).
    pub fn is_broken(&self) -> bool {
        matches!(self.state, State::Broken)
    }

    fn discard(&mut self) {
        self.input.reset();
    }

    fn fail(&mut self, error: NetstringError) -> Step {
        self.state = State::Broken;
        Step::Error(error)
    }

    fn step(&mut self, chunk: &[u8], pos: &mut usize) -> Step {
        loop {
            self.input.reset_if_consumed();
            if self.input.is_empty() && *pos == chunk.len() {
                return Step::Done;
            }
            match self.state {
                State::Broken => {
                    self.input.reset();
                    *pos = chunk.len();
                    return Step::Done;
                }
                State::Length { value, digits } => {
                    // The length is parsed byte by byte into the state, never buffered.
                    let byte = if self.input.is_empty() {
                        *pos += 1;
                        chunk[*pos - 1]
                    } else {
                        let byte = self.input.pending()[0];
                        self.input.consume(1);
                        byte
                    };
                    self.state = match byte {
                        b'0'..=b'9' if digits > 0 && value == 0 => {
                            return self.fail(NetstringError::MissingLength)
                        }
                        b'0'..=b'9' => {
                            let value = value
                                .checked_mul(10)
                                .and_then(|v| v.checked_add(usize::from(byte - b'0')))
                                .filter(|&v| v <= self.max_length);
                            match value {
                                Some(value) => State::Length {
                                    value,
                                    digits: digits + 1,
                                },
                                None => {
                                    let max_length = self.max_length;
                                    return self.fail(NetstringError::TooLong { max_length });
                                }
                            }
                        }
                        b':' if digits > 0 => State::Payload { length: value },
                        _ => return self.fail(NetstringError::MissingLength),
                    };
                }
                State::Payload { length } => {
                    let framed = length + 1; // the payload and its comma
                    let (src, start) = if self.input.is_empty() {
                        let rest = &chunk[*pos..];
                        if rest.len() < framed {
                            self.input.extend(rest);
                            *pos = chunk.len();
                            return Step::Done;
                        }
                        let start = *pos;
                        *pos += framed;
                        (Src::Chunk, start)
                    } else {
                        if !self.input.fill(framed, chunk, pos) {
                            return Step::Done;
                        }
                        let start = self.input.start;
                        self.input.consume(framed);
                        (Src::Buf, start)
                    };
                    let comma = match src {
                        Src::Chunk => chunk[start + length],
                        Src::Buf => self.input.data[start + length],
                    };
                    if comma != b',' {
                        return self.fail(NetstringError::MissingComma);
                    }
                    self.state = START;
                    return Step::String(src, start..start + length);
                }
            }
        }
    }
}

/// Writes `<length>:` into `out` and returns it.
pub(super) fn length_prefix(length: usize, out: &mut [u8; 24]) -> &[u8] {
    let mut i = out.len() - 1;
    out[i] = b':';
    let mut n = length;
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

enum Step {
    String(Src, Range<usize>),
    Error(NetstringError),
    Done,
}

/// One chunk being parsed by a [`NetstringParser`]: pull events with
/// [`next_event`](Self::next_event).
pub struct NetstringFeed<'p, 'c> {
    parser: &'p mut NetstringParser,
    chunk: &'c [u8],
    pos: usize,
}

impl NetstringFeed<'_, '_> {
    /// The next netstring or error, with the controls to use while handling it; `None`
    /// once everything complete has been handed out.
    pub fn next_event(&mut self) -> Option<(NetstringEvent<'_>, StringControl<'_>)> {
        let step = self.parser.step(self.chunk, &mut self.pos);
        let NetstringParser {
            input, max_length, ..
        } = &mut *self.parser;
        let event = match step {
            Step::Done => return None,
            Step::String(Src::Buf, range) => NetstringEvent::String(&input.data[range]),
            Step::String(Src::Chunk, range) => NetstringEvent::String(&self.chunk[range]),
            Step::Error(error) => NetstringEvent::Error(error),
        };
        Some((event, StringControl { max_length }))
    }

    /// The controls, for a callback that is not about an event.
    pub fn control(&mut self) -> StringControl<'_> {
        StringControl {
            max_length: &mut self.parser.max_length,
        }
    }

    /// Drops everything not parsed yet, buffered or in this chunk.
    pub fn discard(mut self) {
        self.parser.discard();
        self.pos = self.chunk.len();
    }
}

impl Drop for NetstringFeed<'_, '_> {
    fn drop(&mut self) {
        if self.parser.is_broken() {
            self.parser.input.reset();
        } else {
            self.parser.input.stash(self.chunk, &mut self.pos);
        }
    }
}

impl fmt::Debug for NetstringFeed<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetstringFeed")
            .field("parser", &self.parser)
            .field("chunk_bytes_left", &(self.chunk.len() - self.pos))
            .finish()
    }
}

/// A protocol that receives netstrings (Twisted's `NetstringReceiver`).
///
/// Netstrings up to 99999 bytes by default; any malformed input closes the connection
/// (see [`NetstringError`] for what counts). [`StringContext::send_string`]
/// frames what it sends as a netstring. Pausing works as for
/// [`LineReceiver`](super::LineReceiver) (Twisted's `NetstringReceiver` cannot pause).
///
/// # Examples
///
/// ```
/// use twistor::framing::{NetstringReceiver, StringContext, StringHandler};
///
/// struct Reverse;
/// impl StringHandler for Reverse {
///     fn string_received(&mut self, cx: &mut StringContext<'_, '_>, string: &[u8]) {
///         let reversed: Vec<u8> = string.iter().rev().copied().collect();
///         let _ = cx.send_string(&reversed); // netstrings have no length cap to refuse
///     }
/// }
///
/// let protocol = NetstringReceiver::new(Reverse).max_length(1 << 16);
/// assert!(!protocol.is_broken());
/// ```
pub struct NetstringReceiver<H: StringHandler> {
    parser: NetstringParser,
    handler: H,
}

impl<H: StringHandler> NetstringReceiver<H> {
    /// A receiver accepting netstrings up to 99999 bytes.
    pub fn new(handler: H) -> Self {
        NetstringReceiver {
            parser: NetstringParser::new(DEFAULT_MAX_STRING_BYTES),
            handler,
        }
    }

    /// Sets the largest netstring accepted (Twisted's `MAX_LENGTH`).
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

    /// True once the peer sent something that is not a netstring (Twisted's
    /// `brokenPeer`); the connection is then closing.
    pub fn is_broken(&self) -> bool {
        self.parser.is_broken()
    }

    /// Runs `f` with the handler and a [`StringContext`], as if it were a callback; for
    /// timers, which get the receiver.
    pub fn with_handler<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut H, &mut StringContext<'_, '_>) -> R,
    ) -> R {
        self.drive(cx, &[], f)
    }

    fn drive<R>(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &[u8],
        first: impl FnOnce(&mut H, &mut StringContext<'_, '_>) -> R,
    ) -> R {
        let handler = &mut self.handler;
        let mut feed = self.parser.feed(chunk);
        let result = first(
            handler,
            &mut StringContext::new(&mut *cx, feed.control(), Framing::Netstring),
        );
        while cx.is_reading() {
            let Some((event, ctl)) = feed.next_event() else {
                break;
            };
            let cx = &mut StringContext::new(&mut *cx, ctl, Framing::Netstring);
            match event {
                NetstringEvent::String(string) => handler.string_received(cx, string),
                NetstringEvent::Error(error) => {
                    log::debug!("{}: {error}; closing", cx.id());
                    cx.lose_connection();
                }
            }
        }
        if !cx.is_open() {
            feed.discard();
        }
        result
    }
}

impl<H: StringHandler> Protocol for NetstringReceiver<H> {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.drive(cx, &[], |h, cx| h.connection_made(cx))
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        self.drive(cx, data, |_, _| {})
    }

    fn read_eof(&mut self, cx: &mut Context<'_>) {
        self.drive(cx, &[], |h, cx| h.read_eof(cx))
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        self.drive(cx, &[], |h, cx| h.connection_lost(cx, reason));
        self.parser.discard();
    }

    fn reading_resumed(&mut self, cx: &mut Context<'_>) {
        self.drive(cx, &[], |_, _| {})
    }

    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        self.drive(cx, &[], |h, cx| h.pause_producing(cx))
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        self.drive(cx, &[], |h, cx| h.resume_producing(cx))
    }
}

impl<H: StringHandler> fmt::Debug for NetstringReceiver<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetstringReceiver")
            .field("handler", &std::any::type_name::<H>())
            .field("parser", &self.parser)
            .finish()
    }
}
