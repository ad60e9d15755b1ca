//! Length-prefixed strings: [`Int8Receiver`], [`Int16Receiver`], [`Int32Receiver`]
//! (Twisted's `IntNStringReceiver` family).
//!
//! Each string is sent as its length in 1, 2 or 4 bytes, big-endian (network order),
//! then its bytes. A length over `max_length` (99999 by default) is refused as soon as
//! the prefix is in, before any of the payload is buffered; `max_length` itself is
//! accepted. See the [module overview](super) for what happens next.

use std::fmt;
use std::ops::Range;

use super::{
    max_prefixed, Buffer, Framing, Src, StringContext, StringControl, StringHandler,
    DEFAULT_MAX_STRING_BYTES,
};
use crate::{Context, Protocol, Reason};

/// What an [`IntNParser`] found in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringEvent<'a> {
    /// A whole string, prefix removed (Twisted's `stringReceived`). May be empty.
    String(&'a [u8]),
    /// A prefix announced this many bytes, over `max_length` (Twisted's
    /// `lengthLimitExceeded`). If parsing goes on, that many payload bytes are skipped.
    LengthLimitExceeded(usize),
}

/// A sans-I/O parser for strings with an `N`-byte big-endian length prefix
/// (`N` is 1, 2 or 4).
///
/// Feed it chunks with [`feed`](Self::feed) and pull [`StringEvent`]s. Strings are
/// slices of the chunk, or of the parser's buffer for a string that spans chunks.
///
/// # Examples
///
/// ```
/// use twistor::framing::{Int16Parser, StringEvent};
///
/// let mut parser = Int16Parser::new(1000);
/// let mut feed = parser.feed(b"\x00\x05hello\x00\x00\x00\x03ab");
/// assert_eq!(feed.next_event().unwrap().0, StringEvent::String(b"hello"));
/// assert_eq!(feed.next_event().unwrap().0, StringEvent::String(b""));
/// assert!(feed.next_event().is_none()); // "ab" waits for its third byte
/// ```
#[derive(Debug)]
pub struct IntNParser<const N: usize> {
    input: Buffer,
    max_length: usize,
    /// Payload bytes still to discard after an overlong prefix.
    skip: usize,
}

/// Parser for 1-byte prefixes (Twisted's `Int8StringReceiver`).
pub type Int8Parser = IntNParser<1>;
/// Parser for 2-byte prefixes (Twisted's `Int16StringReceiver`).
pub type Int16Parser = IntNParser<2>;
/// Parser for 4-byte prefixes (Twisted's `Int32StringReceiver`).
pub type Int32Parser = IntNParser<4>;

impl<const N: usize> IntNParser<N> {
    /// Rejects prefix sizes Twisted does not have, at compile time.
    const PREFIX_BYTES: usize = {
        assert!(
            N == 1 || N == 2 || N == 4,
            "IntN prefixes are 1, 2 or 4 bytes"
        );
        N
    };

    /// A parser refusing strings over `max_length` bytes.
    pub fn new(max_length: usize) -> Self {
        let _ = Self::PREFIX_BYTES;
        IntNParser {
            input: Buffer::default(),
            max_length,
            skip: 0,
        }
    }

    /// Starts parsing `chunk` after whatever is buffered; pull the events from the
    /// returned feed. What is not parsed when the feed is dropped is kept.
    pub fn feed<'p, 'c>(&'p mut self, chunk: &'c [u8]) -> IntNFeed<'p, 'c, N> {
        IntNFeed {
            parser: self,
            chunk,
            pos: 0,
        }
    }

    /// The largest string accepted.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Changes the largest string accepted.
    pub fn set_max_length(&mut self, bytes: usize) {
        self.max_length = bytes;
    }

    /// What is buffered: an unfinished string with its prefix, or data kept back.
    pub fn buffered(&self) -> &[u8] {
        self.input.pending()
    }

    fn discard(&mut self) {
        self.input.reset();
        self.skip = 0;
    }

    fn step(&mut self, chunk: &[u8], pos: &mut usize) -> Step {
        loop {
            self.input.reset_if_consumed();
            if self.input.is_empty() && *pos == chunk.len() {
                return Step::Done;
            }
            if self.skip > 0 {
                let from_buffer = self.skip.min(self.input.len());
                self.input.consume(from_buffer);
                let from_chunk = (self.skip - from_buffer).min(chunk.len() - *pos);
                *pos += from_chunk;
                self.skip -= from_buffer + from_chunk;
                continue;
            }
            if self.input.is_empty() {
                // The steady state: strings straight from the chunk.
                let rest = &chunk[*pos..];
                if rest.len() < N {
                    self.input.extend(rest);
                    *pos = chunk.len();
                    return Step::Done;
                }
                let length = read_prefix(&rest[..N]);
                if length > self.max_length {
                    *pos += N;
                    self.skip = length;
                    return Step::TooLong(length);
                }
                if rest.len() - N < length {
                    self.input.extend(rest);
                    *pos = chunk.len();
                    return Step::Done;
                }
                let string = *pos + N..*pos + N + length;
                *pos = string.end;
                return Step::String(Src::Chunk, string);
            }
            if !self.input.fill(N, chunk, pos) {
                return Step::Done;
            }
            let length = read_prefix(&self.input.pending()[..N]);
            if length > self.max_length {
                self.input.consume(N);
                self.skip = length;
                return Step::TooLong(length);
            }
            if !self.input.fill(N + length, chunk, pos) {
                return Step::Done;
            }
            let start = self.input.start + N;
            self.input.consume(N + length);
            return Step::String(Src::Buf, start..start + length);
        }
    }
}

fn read_prefix(bytes: &[u8]) -> usize {
    bytes.iter().fold(0, |n, &b| n << 8 | usize::from(b))
}

enum Step {
    String(Src, Range<usize>),
    TooLong(usize),
    Done,
}

/// One chunk being parsed by an [`IntNParser`]: pull events with
/// [`next_event`](Self::next_event).
pub struct IntNFeed<'p, 'c, const N: usize> {
    parser: &'p mut IntNParser<N>,
    chunk: &'c [u8],
    pos: usize,
}

impl<const N: usize> IntNFeed<'_, '_, N> {
    /// The next string or overlong prefix, with the controls to use while handling it;
    /// `None` once everything complete has been handed out.
    pub fn next_event(&mut self) -> Option<(StringEvent<'_>, StringControl<'_>)> {
        let step = self.parser.step(self.chunk, &mut self.pos);
        let IntNParser {
            input, max_length, ..
        } = &mut *self.parser;
        let event = match step {
            Step::Done => return None,
            Step::String(Src::Buf, range) => StringEvent::String(&input.data[range]),
            Step::String(Src::Chunk, range) => StringEvent::String(&self.chunk[range]),
            Step::TooLong(length) => StringEvent::LengthLimitExceeded(length),
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

impl<const N: usize> Drop for IntNFeed<'_, '_, N> {
    fn drop(&mut self) {
        self.parser.input.stash(self.chunk, &mut self.pos);
    }
}

impl<const N: usize> fmt::Debug for IntNFeed<'_, '_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntNFeed")
            .field("parser", &self.parser)
            .field("chunk_bytes_left", &(self.chunk.len() - self.pos))
            .finish()
    }
}

/// A protocol that receives strings with an `N`-byte big-endian length prefix
/// (Twisted's `IntNStringReceiver`); use the aliases [`Int8Receiver`],
/// [`Int16Receiver`], [`Int32Receiver`].
///
/// Strings up to 99999 bytes by default (Twisted's `MAX_LENGTH`); a longer prefix calls
/// [`StringHandler::length_limit_exceeded`], which closes the connection by default.
/// [`StringContext::send_string`] adds the prefix, and refuses a string too long for
/// it. Pausing works as for [`LineReceiver`](super::LineReceiver).
///
/// # Examples
///
/// ```
/// use twistor::framing::{Int16Receiver, StringContext, StringHandler};
///
/// struct Echo;
/// impl StringHandler for Echo {
///     fn string_received(&mut self, cx: &mut StringContext<'_, '_>, string: &[u8]) {
///         cx.send_string(string).expect("what fits in a prefix fits in the answer");
///     }
/// }
///
/// let protocol = Int16Receiver::new(Echo).max_length(10_000);
/// # let _ = protocol;
/// ```
pub struct IntNReceiver<H: StringHandler, const N: usize> {
    parser: IntNParser<N>,
    handler: H,
}

/// Strings with a 1-byte length prefix (Twisted's `Int8StringReceiver`).
pub type Int8Receiver<H> = IntNReceiver<H, 1>;
/// Strings with a 2-byte length prefix (Twisted's `Int16StringReceiver`).
pub type Int16Receiver<H> = IntNReceiver<H, 2>;
/// Strings with a 4-byte length prefix (Twisted's `Int32StringReceiver`).
pub type Int32Receiver<H> = IntNReceiver<H, 4>;

impl<H: StringHandler, const N: usize> IntNReceiver<H, N> {
    /// A receiver accepting strings up to 99999 bytes.
    pub fn new(handler: H) -> Self {
        IntNReceiver {
            parser: IntNParser::new(DEFAULT_MAX_STRING_BYTES),
            handler,
        }
    }

    /// Sets the largest string accepted (Twisted's `MAX_LENGTH`).
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

    /// The longest string [`StringContext::send_string`] can send with this prefix.
    pub fn max_sendable() -> usize {
        max_prefixed(N)
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
        let framing = Framing::Prefix(N);
        let handler = &mut self.handler;
        let mut feed = self.parser.feed(chunk);
        let result = first(
            handler,
            &mut StringContext::new(&mut *cx, feed.control(), framing),
        );
        while cx.is_reading() {
            let Some((event, ctl)) = feed.next_event() else {
                break;
            };
            let cx = &mut StringContext::new(&mut *cx, ctl, framing);
            match event {
                StringEvent::String(string) => handler.string_received(cx, string),
                StringEvent::LengthLimitExceeded(length) => {
                    log::debug!(
                        "{}: string of {length} bytes announced, over {}",
                        cx.id(),
                        cx.max_length()
                    );
                    handler.length_limit_exceeded(cx, length)
                }
            }
        }
        if !cx.is_open() {
            feed.discard();
        }
        result
    }
}

impl<H: StringHandler, const N: usize> Protocol for IntNReceiver<H, N> {
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

impl<H: StringHandler, const N: usize> fmt::Debug for IntNReceiver<H, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntNReceiver")
            .field("prefix_bytes", &N)
            .field("handler", &std::any::type_name::<H>())
            .field("parser", &self.parser)
            .finish()
    }
}
