//! Framers: protocol adapters that cut a byte stream into lines or messages.
//!
//! These are the framers of Twisted's `twisted.protocols.basic`, with Twisted's
//! callback names and defaults:
//!
//! | framer | handler trait | Twisted class |
//! |---|---|---|
//! | [`LineReceiver`] | [`LineHandler`] | `LineReceiver` (lines, and a raw mode) |
//! | [`LineOnlyReceiver`] | [`LineOnlyHandler`] | `LineOnlyReceiver` |
//! | [`Int8Receiver`], [`Int16Receiver`], [`Int32Receiver`] | [`StringHandler`] | `Int8StringReceiver`, ... |
//! | [`NetstringReceiver`] | [`StringHandler`] | `NetstringReceiver` |
//! | [`RespReceiver`] | [`RespHandler`] | (none: the Redis protocol, [`resp`]) |
//!
//! Each framer is a [`Protocol`](crate::Protocol): give it to the reactor as you would
//! any protocol. It forwards every callback to its handler with a context
//! ([`LineContext`], [`LineOnlyContext`], [`StringContext`]) that derefs to
//! [`Context`] and adds the framer's own controls (`send_line`,
//! `send_string`, `set_raw_mode`, ...).
//!
//! Timers and pool jobs set through that context come back to the handler, with its
//! context: `cx.call_later(delay, |h: &mut MyHandler, cx| ...)` and
//! `cx.defer_to_thread(job, |h: &mut MyHandler, cx, result| ...)` (name the handler's
//! type on the first argument). They shadow the [`Context`] methods of the same names,
//! whose closures get the framer (`LineReceiver<MyHandler>`) and a plain `Context`;
//! those are still there, called as `Context::call_later(cx, ...)`. Cancelling and
//! resetting a timer, and [`Context::can_defer_to_thread`], are the `Context`'s.
//!
//! Under each framer is a pure parser ([`LineParser`], [`IntNParser`],
//! [`NetstringParser`], [`resp::Decoder`]): bytes in, events out, no sockets. It can be driven on its own
//! (a blocking handler, a benchmark, a test) and it is where the framing rules live.
//!
//! # Guarantees
//!
//! - Lines and strings are handed out as `&[u8]` slices of the incoming chunk, or of
//!   the framer's own buffer when a line spans chunks: no allocation per line in steady
//!   state. Only the unfinished tail of a chunk is copied.
//! - A framer's memory is bounded: the unfinished line or string it keeps is at most
//!   `max_length` plus the delimiter (or prefix) long. Data kept back while the handler
//!   has paused reading is at most what had already arrived: one read.
//! - Pausing, closing and mode switches take effect between two events of one chunk:
//!   after each event the framer checks [`Context::is_reading`].
//!   If the handler paused, the rest is kept and delivered from
//!   [`Protocol::reading_resumed`](crate::Protocol::reading_resumed) (which may pause
//!   again); if it closed the connection, the rest is dropped.
//! - Delivery never recurses: `set_line_mode(extra)` inside a callback only queues
//!   `extra`, which the framer's loop parses next (Twisted's `test_stackRecursion`).
//!
//! # Where twistor differs from Twisted, on purpose
//!
//! Twisted's own tests and behaviour are the reference; the points below are the quirks
//! that twistor does not copy.
//!
//! - **Nothing is delivered after `lose_connection`**, in any framer and in raw mode
//!   too. Twisted's `LineReceiver` stops after a line that closes the connection but not
//!   after raw data, and its `IntNStringReceiver` and `NetstringReceiver` keep parsing
//!   the rest of the chunk after a close.
//! - **Every framer can pause.** Twisted's `LineOnlyReceiver` and `NetstringReceiver`
//!   ignore a pause; here pausing works the same way for all of them.
//! - **IntN, after a length over `max_length` that did not close the connection**, skips
//!   that string's payload as it arrives (without buffering it) and goes on with the next
//!   string. Twisted re-delivers the strings already parsed from the same chunk and calls
//!   `lengthLimitExceeded` again on the next chunk.
//! - **`LineOnlyReceiver`, after a line over `max_length`** that did not close the
//!   connection, drops that one line and goes on with the next. If the line is unfinished
//!   when it passes the limit, `line_length_exceeded` gets what has arrived so far, once,
//!   and the rest of that line is discarded up to its delimiter. Twisted fires again on
//!   every chunk with a growing buffer, and drops the other lines of the chunk. Like
//!   `LineReceiver`, an unfinished line only counts as over the limit once it is
//!   `max_length + delimiter.len()` long (Twisted's `LineOnlyReceiver` uses
//!   `> max_length`, so a line of exactly `max_length` whose delimiter is split across
//!   two reads is refused), so the outcome does not depend on how the input is chunked.
//! - **`set_line_mode(extra)` called from `line_length_exceeded`** is parsed at once.
//!   Twisted leaves it in the buffer until the next `dataReceived`, which on a real
//!   connection may never come (the peer waits for an answer).
//! - **A change made outside a data callback** (in a timer, a pool job's `done`,
//!   `with_handler`, `connection_made`) applies to what is already buffered as soon as
//!   that callback returns. After `set_raw_mode` there, a buffered unfinished line goes
//!   to `raw_data_received` at once, and the next chunk in a call of its own; after
//!   `set_delimiter` or a lower `max_length`, the buffer is parsed again at once.
//!   Twisted parses only in `dataReceived`: its `setRawMode` only sets a flag, and the
//!   buffer waits for the peer's next bytes, to go out with them as one raw piece. A
//!   peer that has sent everything (a request line and its body in one packet, the
//!   body held while a pool job checks the request) would wait forever. A
//!   [`LineParser`] driven directly keeps Twisted's rule: nothing is parsed before the
//!   next [`feed`](LineParser::feed).
//! - **After a netstring error** the framer drops everything it has and all later input
//!   (the connection is closing). Twisted keeps the bad bytes and calls `loseConnection`
//!   again on every later chunk.
//! - Return values are not a control channel: callbacks return `()`.
//!
//! What *is* as in Twisted, because programs rely on it: `line_length_exceeded` gets the
//! overlong line, its delimiter and everything buffered after it (or the whole
//! unfinished buffer), and the buffer is cleared; a line of exactly `max_length` is
//! accepted, and so is an unfinished line of `max_length` bytes plus a partial
//! delimiter; `set_raw_mode` inside `line_received` hands the rest of the chunk to
//! `raw_data_received` at once, in one piece; `set_delimiter` and `set_max_length`
//! inside `line_received` apply to the rest of the same chunk (Twisted's loop reads
//! `delimiter` and `MAX_LENGTH` again for every line); `clear_line_buffer` inside
//! `line_received` also drops the rest of the chunk; empty lines are delivered; a
//! multi-byte delimiter splits at its first occurrence (`xaaay` with `aa` gives `x`,
//! then `ay...`); IntN checks the limit on the prefix alone and accepts `max_length`
//! itself; netstrings reject leading zeros, signs, spaces, a partial length already
//! over the limit, and a missing comma, and close the connection on any of them.

// Maintainers: each file holds a pure parser (a `*Parser` that owns the buffer, and a
// `*Feed` that walks one chunk and yields one event at a time with a `*Control` handle
// to change the parser's state from inside the callback), then the `Protocol` adapter
// that drives it. Events borrow the parser's buffer while the control handle borrows
// the parser's other fields, so a handler can switch modes while it holds a line;
// whatever touches the buffer itself (`set_line_mode(extra)`, `clear_line_buffer`, a
// new delimiter that the buffer must be searched for again) is recorded and applied
// when the next event is asked for.

use std::fmt;
use std::io::{self, IoSlice};
use std::time::Duration;

use crate::{Context, JobError, PoolBusy, Reason, TimerId};

/// Implements [`Protocol`](crate::Protocol) and `Debug` for a receiver, written as the
/// impl header it stands for: `receiver_impls!(impl<H: LineHandler> LineReceiver<H>);`.
///
/// Every callback goes through the receiver's `drive(cx, chunk, first)`, which runs
/// `first` (the handler's callback of the same name, if it has one) and then delivers
/// what is ready while the connection reads; `connection_lost` then drops what is still
/// buffered. Every callback of [`Protocol`](crate::Protocol) is forwarded, the
/// client side's `connection_failed` included, so that a handler sees what a plain
/// protocol would. `Debug` shows the receiver's name, the fields given after `debug` (if
/// any), the handler's type and the parser.
macro_rules! receiver_impls {
    (
        impl<$h:ident: $handler:path $(, const $n:ident: usize)?> $receiver:ident<$($param:ident),+>
        $(, debug { $($field:ident: $value:expr),+ })?
    ) => {
        impl<$h: $handler $(, const $n: usize)?> $crate::Protocol for $receiver<$($param),+> {
            fn connection_made(&mut self, cx: &mut $crate::Context<'_>) {
                self.drive(cx, &[], |h, cx| h.connection_made(cx))
            }

            fn data_received(&mut self, cx: &mut $crate::Context<'_>, data: &[u8]) {
                self.drive(cx, data, |_, _| {})
            }

            fn read_eof(&mut self, cx: &mut $crate::Context<'_>) {
                self.drive(cx, &[], |h, cx| h.read_eof(cx))
            }

            fn connection_lost(&mut self, cx: &mut $crate::Context<'_>, reason: $crate::Reason) {
                self.drive(cx, &[], |h, cx| h.connection_lost(cx, reason));
                self.parser.discard();
            }

            fn connection_failed(&mut self, cx: &mut $crate::Context<'_>, error: std::io::Error) {
                self.drive(cx, &[], |h, cx| h.connection_failed(cx, error));
            }

            fn reading_resumed(&mut self, cx: &mut $crate::Context<'_>) {
                self.drive(cx, &[], |_, _| {})
            }

            fn pause_producing(&mut self, cx: &mut $crate::Context<'_>) {
                self.drive(cx, &[], |h, cx| h.pause_producing(cx))
            }

            fn resume_producing(&mut self, cx: &mut $crate::Context<'_>) {
                self.drive(cx, &[], |h, cx| h.resume_producing(cx))
            }
        }

        impl<$h: $handler $(, const $n: usize)?> std::fmt::Debug for $receiver<$($param),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($receiver))
                    $($(.field(stringify!($field), &$value))+)?
                    .field("handler", &std::any::type_name::<$h>())
                    .field("parser", &self.parser)
                    .finish()
            }
        }
    };
}

/// Implements `Deref` and `DerefMut` to [`Context`] for a handler's context type (a
/// struct with a `cx: &mut Context` field), so that a handler reaches the connection's
/// own controls (`cx.write`, `cx.lose_connection`, ...) directly.
macro_rules! deref_to_context {
    ($context:ident) => {
        impl<'b> std::ops::Deref for $context<'_, 'b> {
            type Target = $crate::Context<'b>;

            fn deref(&self) -> &$crate::Context<'b> {
                self.cx
            }
        }

        impl std::ops::DerefMut for $context<'_, '_> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                self.cx
            }
        }
    };
}

mod int_n;
mod line;
mod netstring;
pub mod resp;

pub use int_n::{
    Int16Parser, Int16Receiver, Int32Parser, Int32Receiver, Int8Parser, Int8Receiver, IntNFeed,
    IntNParser, IntNReceiver, StringEvent,
};
pub use line::{
    LineContext, LineControl, LineEvent, LineFeed, LineHandler, LineOnlyContext, LineOnlyHandler,
    LineOnlyReceiver, LineParser, LineReceiver, DEFAULT_DELIMITER, DEFAULT_MAX_LINE_BYTES,
};
pub use netstring::{
    NetstringError, NetstringEvent, NetstringFeed, NetstringParser, NetstringReceiver,
};
pub use resp::{RespHandler, RespReceiver};

/// Twisted's `MAX_LENGTH` for length-prefixed strings and netstrings: 99999 bytes.
/// Kept as is, so that peers written against Twisted see the same limit.
pub const DEFAULT_MAX_STRING_BYTES: usize = 99_999;

/// Capacity an emptied buffer may keep: enough for the unfinished line a chunk usually
/// ends with, so the next one needs no allocation; a rare larger burst is given back.
const RETAINED_BUFFER_BYTES: usize = 16 * 1024;

/// The bytes a parser keeps between chunks: `data[start..]` is still to be parsed.
#[derive(Default)]
pub(crate) struct Buffer {
    data: Vec<u8>,
    start: usize,
}

impl Buffer {
    /// The bytes still to be parsed.
    fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    fn is_empty(&self) -> bool {
        self.start == self.data.len()
    }

    fn len(&self) -> usize {
        self.data.len() - self.start
    }

    fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
    }

    /// Drops the consumed prefix, so appending does not grow the buffer without bound.
    fn compact(&mut self) {
        if self.start > 0 {
            self.data.drain(..self.start);
            self.start = 0;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.is_empty() {
            self.data.clear();
            self.start = 0;
        } else {
            self.compact();
        }
        self.data.extend_from_slice(bytes);
    }

    /// Empties the buffer, giving back a large allocation.
    fn reset(&mut self) {
        self.data.clear();
        self.start = 0;
        if self.data.capacity() > RETAINED_BUFFER_BYTES {
            self.data = Vec::new();
        }
    }

    /// Resets the buffer once everything in it was parsed.
    fn reset_if_consumed(&mut self) {
        if self.start > 0 && self.is_empty() {
            self.reset();
        }
    }

    /// Takes everything pending out of the buffer.
    fn take(&mut self) -> Vec<u8> {
        let out = self.pending().to_vec();
        self.reset();
        out
    }

    /// Makes the first `n` pending bytes of `buffer ++ chunk[*pos..]` contiguous in the
    /// buffer, moving only what is missing from the chunk. Returns false if fewer than
    /// `n` bytes are pending; the whole chunk is then in the buffer.
    fn fill(&mut self, n: usize, chunk: &[u8], pos: &mut usize) -> bool {
        let have = self.len();
        if have >= n {
            return true;
        }
        let take = (n - have).min(chunk.len() - *pos);
        self.extend(&chunk[*pos..*pos + take]);
        *pos += take;
        have + take >= n
    }

    /// Keeps what is left of a chunk that the parser stopped in (reading was paused).
    fn stash(&mut self, chunk: &[u8], pos: &mut usize) {
        if *pos < chunk.len() {
            self.extend(&chunk[*pos..]);
            *pos = chunk.len();
        }
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("pending_bytes", &self.len())
            .finish()
    }
}

/// Where an event's bytes are: in the parser's buffer or in the current chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    Buf,
    Chunk,
}

/// Callbacks for the string framers: [`IntNReceiver`] (`Int8Receiver`, ...) and
/// [`NetstringReceiver`] (Twisted's `IntNStringReceiver` and `NetstringReceiver`).
///
/// Only [`string_received`](StringHandler::string_received) has no default.
///
/// # Examples
///
/// ```
/// use twistor::framing::{Int32Receiver, NetstringReceiver, StringContext, StringHandler};
///
/// /// Answers every string with its length, as a string.
/// struct Lengths;
///
/// impl StringHandler for Lengths {
///     fn string_received(&mut self, cx: &mut StringContext<'_, '_>, string: &[u8]) {
///         let answer = string.len().to_string();
///         cx.send_string(answer.as_bytes()).expect("short enough for any prefix");
///     }
/// }
///
/// let int32 = Int32Receiver::new(Lengths).max_length(1 << 20);
/// let netstrings = NetstringReceiver::new(Lengths);
/// # let _ = (int32, netstrings);
/// ```
#[diagnostic::on_unimplemented(
    note = "a `StringContext`'s `call_later` and `defer_to_thread` take closures typed on the \
            handler (`|h: &mut MyHandler, cx| ...`); one typed on the receiver is set with \
            `Context::call_later(cx, ...)` or `Context::defer_to_thread(cx, ...)`"
)]
pub trait StringHandler: 'static {
    /// The connection is established.
    fn connection_made(&mut self, cx: &mut StringContext<'_, '_>) {
        let _ = cx;
    }

    /// A whole string arrived, framing removed. It may be empty.
    ///
    /// `string` borrows the framer's buffer or the reactor's read buffer: copy what you
    /// keep.
    fn string_received(&mut self, cx: &mut StringContext<'_, '_>, string: &[u8]);

    /// A length prefix over `max_length` arrived (length-prefixed framers only; a
    /// netstring error always closes the connection). Called as soon as the prefix is
    /// in, before any of the payload. The default closes the connection.
    ///
    /// If the connection stays open, the framer skips the `length` payload bytes as they
    /// arrive, without buffering them, and goes on with the next string.
    fn length_limit_exceeded(&mut self, cx: &mut StringContext<'_, '_>, length: usize) {
        let _ = length;
        cx.lose_connection();
    }

    /// The peer shut its write side. The default closes the connection, as
    /// [`Protocol::read_eof`](crate::Protocol::read_eof) does.
    fn read_eof(&mut self, cx: &mut StringContext<'_, '_>) {
        cx.lose_connection();
    }

    /// The connection is gone; called exactly once.
    fn connection_lost(&mut self, cx: &mut StringContext<'_, '_>, reason: Reason) {
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
    fn connection_failed(&mut self, cx: &mut StringContext<'_, '_>, error: io::Error) {
        let _ = cx;
        log::debug!("connection failed: {error}");
    }

    /// The write buffer passed its high watermark: stop producing.
    fn pause_producing(&mut self, cx: &mut StringContext<'_, '_>) {
        let _ = cx;
    }

    /// The write buffer drained below its low watermark: producing may go on.
    fn resume_producing(&mut self, cx: &mut StringContext<'_, '_>) {
        let _ = cx;
    }
}

/// How a string framer frames what it sends.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// A big-endian length prefix of this many bytes.
    Prefix(usize),
    /// `<len>:<payload>,`
    Netstring,
}

/// A string parser's controls, usable from inside a callback.
///
/// Handed out with every event by [`IntNFeed::next_event`] and
/// [`NetstringFeed::next_event`]; [`StringContext`] wraps it for handlers.
#[derive(Debug)]
pub struct StringControl<'a> {
    max_length: &'a mut usize,
}

impl StringControl<'_> {
    /// The largest string accepted.
    pub fn max_length(&self) -> usize {
        *self.max_length
    }

    /// Changes the largest string accepted, from the next length parsed on.
    pub fn set_max_length(&mut self, bytes: usize) {
        *self.max_length = bytes;
    }
}

/// What a [`StringHandler`] callback gets: the connection's [`Context`] (through
/// `Deref`), plus `send_string` and the framer's limit.
pub struct StringContext<'a, 'b> {
    cx: &'a mut Context<'b>,
    ctl: StringControl<'a>,
    framing: Framing,
}

impl<'a, 'b> StringContext<'a, 'b> {
    fn new(cx: &'a mut Context<'b>, ctl: StringControl<'a>, framing: Framing) -> Self {
        StringContext { cx, ctl, framing }
    }

    /// Sends `string` with this framer's framing: a big-endian length prefix, or
    /// `<len>:` before and `,` after for netstrings (Twisted's `sendString`).
    ///
    /// Returns what [`Context::write_vectored`] returns: false if the bytes were dropped
    /// because the connection is closing or gone.
    ///
    /// # Errors
    ///
    /// [`StringTooLong`] if the length does not fit the prefix (255 bytes at most for
    /// `Int8Receiver`, 65535 for `Int16Receiver`, 2³²−1 for `Int32Receiver`); nothing is
    /// sent.
    pub fn send_string(&mut self, string: &[u8]) -> Result<bool, StringTooLong> {
        match self.framing {
            Framing::Prefix(n) => send_prefixed(self.cx, n, string),
            Framing::Netstring => Ok(send_netstring(self.cx, string)),
        }
    }

    /// The largest string accepted.
    pub fn max_length(&self) -> usize {
        self.ctl.max_length()
    }

    /// Changes the largest string accepted, from the next length parsed on (Twisted's
    /// `MAX_LENGTH`).
    pub fn set_max_length(&mut self, bytes: usize) {
        self.ctl.set_max_length(bytes)
    }

    /// Runs `f` with the handler and its [`StringContext`] after `delay`, as if it were
    /// one of its callbacks; `H` is this connection's handler type. As
    /// [`LineContext::call_later`], for an [`IntNReceiver`] or a
    /// [`NetstringReceiver`]; the [`Context`] method it shadows is reached as
    /// `Context::call_later(cx, ...)`.
    ///
    /// # Panics
    ///
    /// If this connection's protocol is not this framer over `H`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twistor::framing::{NetstringReceiver, StringContext, StringHandler};
    /// use twistor::testing::Harness;
    ///
    /// /// Says "tick" a second after each string.
    /// struct Ticker;
    /// impl StringHandler for Ticker {
    ///     fn string_received(&mut self, cx: &mut StringContext<'_, '_>, _: &[u8]) {
    ///         cx.call_later(Duration::from_secs(1), |_: &mut Ticker, cx| {
    ///             let _ = cx.send_string(b"tick");
    ///         });
    ///     }
    /// }
    ///
    /// let mut h = Harness::new(NetstringReceiver::new(Ticker));
    /// h.connect();
    /// h.feed(b"0:,");
    /// h.advance(Duration::from_secs(1));
    /// assert_eq!(h.take_written(), b"4:tick,");
    /// ```
    pub fn call_later<H, F>(&mut self, delay: Duration, f: F) -> TimerId
    where
        H: StringHandler,
        F: FnOnce(&mut H, &mut StringContext<'_, '_>) + 'static,
    {
        fn on<R: StringFramer<H>, H: StringHandler>(
            cx: &mut Context<'_>,
            delay: Duration,
            f: impl FnOnce(&mut H, &mut StringContext<'_, '_>) + 'static,
        ) -> TimerId {
            cx.call_later(delay, move |p: &mut R, cx| p.run(cx, f))
        }
        match self.framing {
            Framing::Prefix(1) => on::<IntNReceiver<H, 1>, H>(self.cx, delay, f),
            Framing::Prefix(2) => on::<IntNReceiver<H, 2>, H>(self.cx, delay, f),
            Framing::Prefix(4) => on::<IntNReceiver<H, 4>, H>(self.cx, delay, f),
            Framing::Prefix(n) => unreachable!("no IntN receiver has a {n}-byte prefix"),
            Framing::Netstring => on::<NetstringReceiver<H>, H>(self.cx, delay, f),
        }
    }

    /// Runs `job` on the reactor's thread pool, then `done` with the handler, its
    /// [`StringContext`] and the result, back on the reactor thread. As
    /// [`LineContext::defer_to_thread`], for an [`IntNReceiver`] or a
    /// [`NetstringReceiver`]; the [`Context`] method it shadows is reached as
    /// `Context::defer_to_thread(cx, ...)`.
    ///
    /// # Errors
    ///
    /// [`PoolBusy`] if the pool's queue is full, the reactor is stopping, or this
    /// connection is gone; neither `job` nor `done` will run, and the refusal hands
    /// both back ([`PoolBusy::into_inner`]).
    ///
    /// # Panics
    ///
    /// If this connection's protocol is not this framer over `H`.
    pub fn defer_to_thread<H, T, J, D>(&mut self, job: J, done: D) -> Result<(), PoolBusy<(J, D)>>
    where
        H: StringHandler,
        T: Send + 'static,
        J: FnOnce() -> T + Send + 'static,
        D: FnOnce(&mut H, &mut StringContext<'_, '_>, Result<T, JobError>) + 'static,
    {
        fn on<R: StringFramer<H>, H: StringHandler, T: Send + 'static>(
            cx: &mut Context<'_>,
            job: impl FnOnce() -> T + Send + 'static,
            done: impl FnOnce(&mut H, &mut StringContext<'_, '_>, Result<T, JobError>) + 'static,
        ) {
            cx.defer_to_thread(job, move |p: &mut R, cx, result| {
                p.run(cx, |h, cx| done(h, cx, result))
            })
            .map_err(|_| ())
            .expect("the pool had room a moment ago, and only this thread submits");
        }
        // Asked first: once wrapped, `done` could not be handed back.
        if !self.cx.can_defer_to_thread() {
            return Err(PoolBusy::new((job, done)));
        }
        match self.framing {
            Framing::Prefix(1) => on::<IntNReceiver<H, 1>, H, T>(self.cx, job, done),
            Framing::Prefix(2) => on::<IntNReceiver<H, 2>, H, T>(self.cx, job, done),
            Framing::Prefix(4) => on::<IntNReceiver<H, 4>, H, T>(self.cx, job, done),
            Framing::Prefix(n) => unreachable!("no IntN receiver has a {n}-byte prefix"),
            Framing::Netstring => on::<NetstringReceiver<H>, H, T>(self.cx, job, done),
        }
        Ok(())
    }
}

/// A framer whose handler gets a [`StringContext`]: what the callbacks set from a
/// `StringContext` are typed on, so that the core's check of the protocol type holds.
trait StringFramer<H: StringHandler>: crate::Protocol {
    /// The framer's `with_handler`.
    fn run<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut H, &mut StringContext<'_, '_>) -> R,
    ) -> R;
}

impl<H: StringHandler, const N: usize> StringFramer<H> for IntNReceiver<H, N> {
    fn run<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut H, &mut StringContext<'_, '_>) -> R,
    ) -> R {
        self.with_handler(cx, f)
    }
}

impl<H: StringHandler> StringFramer<H> for NetstringReceiver<H> {
    fn run<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut H, &mut StringContext<'_, '_>) -> R,
    ) -> R {
        self.with_handler(cx, f)
    }
}

deref_to_context!(StringContext);

impl fmt::Debug for StringContext<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringContext")
            .field("cx", &self.cx)
            .field("framing", &self.framing)
            .field("max_length", &self.ctl.max_length())
            .finish()
    }
}

/// A string too long for the length prefix it would be sent with (Twisted's
/// `StringTooLongError`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringTooLong {
    string_bytes: usize,
    max_bytes: usize,
}

impl StringTooLong {
    /// The length of the string that was refused.
    pub fn string_bytes(&self) -> usize {
        self.string_bytes
    }

    /// The longest string the prefix can announce.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

impl fmt::Display for StringTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "string of {} bytes is too long for its length prefix (at most {})",
            self.string_bytes, self.max_bytes
        )
    }
}

impl std::error::Error for StringTooLong {}

/// The longest string a big-endian prefix of `prefix_bytes` can announce.
fn max_prefixed(prefix_bytes: usize) -> usize {
    if prefix_bytes >= std::mem::size_of::<usize>() {
        usize::MAX
    } else {
        (1usize << (8 * prefix_bytes)) - 1
    }
}

fn send_prefixed(
    cx: &mut Context<'_>,
    prefix_bytes: usize,
    string: &[u8],
) -> Result<bool, StringTooLong> {
    let max_bytes = max_prefixed(prefix_bytes);
    if string.len() > max_bytes {
        return Err(StringTooLong {
            string_bytes: string.len(),
            max_bytes,
        });
    }
    let prefix = (string.len() as u64).to_be_bytes();
    let prefix = &prefix[8 - prefix_bytes..];
    Ok(cx.write_vectored(&[IoSlice::new(prefix), IoSlice::new(string)]))
}

fn send_netstring(cx: &mut Context<'_>, string: &[u8]) -> bool {
    let mut digits = [0u8; 24];
    let head = netstring::length_prefix(string.len(), &mut digits);
    cx.write_vectored(&[IoSlice::new(head), IoSlice::new(string), IoSlice::new(b",")])
}

/// Helpers for the framers' tests: the chunkings every input is fed at, and a
/// [`Harness`](crate::testing::Harness) to run an adapter on as under the reactor.
#[cfg(test)]
pub(crate) mod test_util {
    use crate::testing::Harness;
    use crate::Protocol;

    /// Every way to cut `input`: whole, one byte at a time, at every split point, in
    /// packets of 2 to 9 bytes.
    pub(crate) fn chunkings(input: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut all = vec![vec![input], input.chunks(1).collect()];
        for i in 1..input.len() {
            all.push(vec![&input[..i], &input[i..]]);
        }
        for size in 2..10 {
            all.push(input.chunks(size).collect());
        }
        all
    }

    /// `protocol` on a connected harness, fed `chunks`, one readable event each.
    pub(crate) fn fed<P: Protocol>(protocol: P, chunks: &[&[u8]]) -> Harness<P> {
        let mut h = Harness::new(protocol);
        h.connect();
        for chunk in chunks {
            h.feed(chunk);
        }
        h
    }
}
