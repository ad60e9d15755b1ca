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
use crate::Context;

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
        self.parser.input.reset_if_consumed();
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
    /// code that holds the receiver (a handler's own timers use
    /// [`StringContext::call_later`]).
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

receiver_impls!(
    impl<H: StringHandler, const N: usize> IntNReceiver<H, N>,
    debug { prefix_bytes: N }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::test_util::{chunkings, fed};
    use crate::Reason;

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Str(Vec<u8>),
        TooLong(usize),
    }

    fn s(x: &[u8]) -> Ev {
        Ev::Str(x.to_vec())
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Flow {
        Go,
        Pause,
        Close,
    }

    /// Feeds `chunks` to `parser`; `script` says what the handler does after each event.
    /// While paused, chunks are only kept; `resume` is simulated before each chunk when
    /// `resume_each` is set.
    fn run<const N: usize>(
        parser: &mut IntNParser<N>,
        chunks: &[&[u8]],
        mut script: impl FnMut(&Ev) -> Flow,
    ) -> (Vec<Ev>, bool) {
        let mut events = Vec::new();
        for chunk in chunks {
            let mut feed = parser.feed(chunk);
            while let Some((event, _)) = feed.next_event() {
                let ev = match event {
                    StringEvent::String(x) => s(x),
                    StringEvent::LengthLimitExceeded(n) => Ev::TooLong(n),
                };
                events.push(ev.clone());
                match script(&ev) {
                    Flow::Go => {}
                    Flow::Pause => break,
                    Flow::Close => {
                        feed.discard();
                        return (events, true);
                    }
                }
            }
        }
        (events, false)
    }

    fn framed<const N: usize>(strings: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for x in strings {
            out.extend_from_slice(&(x.len() as u64).to_be_bytes()[8 - N..]);
            out.extend_from_slice(x);
        }
        out
    }

    /// Every chunking of `input` gives `expected`, with a handler that closes on an
    /// overlong prefix (the default) or not.
    fn check<const N: usize>(max: usize, input: &[u8], close: bool, expected: &[Ev]) {
        for chunks in chunkings(input) {
            let mut parser = IntNParser::<N>::new(max);
            let (events, closed) = run(&mut parser, &chunks, |ev| match ev {
                Ev::TooLong(_) if close => Flow::Close,
                _ => Flow::Go,
            });
            assert_eq!(events, expected, "chunks: {chunks:?}");
            assert_eq!(
                closed,
                close && expected.iter().any(|e| matches!(e, Ev::TooLong(_)))
            );
        }
    }

    fn check_all_prefixes(max: usize, strings: &[&[u8]]) {
        let expected: Vec<Ev> = strings.iter().map(|x| s(x)).collect();
        check::<1>(max, &framed::<1>(strings), true, &expected);
        check::<2>(max, &framed::<2>(strings), true, &expected);
        check::<4>(max, &framed::<4>(strings), true, &expected);
    }

    #[test]
    fn strings_at_every_chunking() {
        // IntNTestCaseMixin.test_receive, and more.
        check_all_prefixes(50, &[b"a", &[b'b'; 16]]);
        check_all_prefixes(50, &[b"", b"x", b"", b"", b"yz"]);
    }

    #[test]
    fn max_length_itself_is_accepted() {
        check_all_prefixes(5, &[b"12345", b"", b"1"]);
    }

    #[test]
    fn partial_strings_deliver_nothing() {
        // test_partial (the "hello there" cases announce huge lengths: see below).
        for input in [&b"\x00\x00\x00"[..], b"", b"\x00\x00\x00\x05abcd"] {
            check::<4>(50, input, true, &[]);
        }
        check::<2>(50, b"\x00", true, &[]);
        check::<1>(50, b"\x08", true, &[]);
        check::<1>(50, b"\x05abcd", true, &[]);
    }

    #[test]
    fn length_limit_is_checked_on_the_prefix_alone() {
        // test_lengthLimitExceeded: just the prefix, no payload yet.
        check::<4>(10, &[0, 0, 0, 11], true, &[Ev::TooLong(11)]);
        check::<2>(10, &[0, 11], true, &[Ev::TooLong(11)]);
        check::<1>(10, &[11], true, &[Ev::TooLong(11)]);
        // test_longStringNotDelivered.
        check::<4>(
            10,
            &[&[0, 0, 0, 11][..], &[b'x'; 11]].concat(),
            true,
            &[Ev::TooLong(11)],
        );
    }

    #[test]
    fn illegal_strings_close() {
        // test_illegal, MAX 50.
        check::<4>(
            50,
            b"\x10\x00\x00\x00aaaaaa",
            true,
            &[Ev::TooLong(0x1000_0000)],
        );
        check::<2>(50, b"\x10\x00aaaaaa", true, &[Ev::TooLong(0x1000)]);
        check::<1>(
            50,
            b"\x00\x00aaaaaa",
            true,
            &[s(b""), s(b""), Ev::TooLong(97)],
        );
        check::<4>(50, b"hello there", true, &[Ev::TooLong(0x6865_6c6c)]);
        check::<1>(50, b"dzadz", true, &[Ev::TooLong(usize::from(b'd'))]);
    }

    #[test]
    fn overlong_string_is_skipped_when_the_handler_keeps_the_connection() {
        // Twisted re-delivers `ok` here (`exceeded_then_more`); twistor skips the
        // overlong payload and goes on.
        let input = [
            framed::<1>(&[b"ok"]),
            framed::<1>(&[b"too long"]),
            framed::<1>(&[b"next"]),
        ]
        .concat();
        check::<1>(5, &input, false, &[s(b"ok"), Ev::TooLong(8), s(b"next")]);
        let mut parser = Int8Parser::new(5);
        let (_, _) = run(&mut parser, &[&input[..5]], |_| Flow::Go);
        assert!(
            parser.buffered().is_empty(),
            "a skipped payload is not buffered"
        );
    }

    #[test]
    fn pause_keeps_the_rest_for_later() {
        let input = framed::<2>(&[b"a", b"pause", b"b", b"c"]);
        for chunks in chunkings(&input) {
            let mut parser = Int16Parser::new(50);
            let mut events = Vec::new();
            let script = |ev: &Ev| {
                if *ev == s(b"pause") {
                    Flow::Pause
                } else {
                    Flow::Go
                }
            };
            for chunk in &chunks {
                // Resume (an empty feed) before each new chunk, as the reactor does.
                for c in [&[][..], chunk] {
                    let (evs, _) = run(&mut parser, &[c], script);
                    events.extend(evs);
                }
            }
            let (evs, _) = run(&mut parser, &[&[]], script);
            events.extend(evs);
            assert_eq!(
                events,
                [s(b"a"), s(b"pause"), s(b"b"), s(b"c")],
                "{chunks:?}"
            );
        }
    }

    #[test]
    fn close_stops_delivery() {
        let input = framed::<4>(&[b"a", b"quit", b"b"]);
        for chunks in chunkings(&input) {
            let mut parser = Int32Parser::new(50);
            let (events, closed) = run(&mut parser, &chunks, |ev| {
                if *ev == s(b"quit") {
                    Flow::Close
                } else {
                    Flow::Go
                }
            });
            assert!(closed);
            assert_eq!(events, [s(b"a"), s(b"quit")]);
            assert!(parser.buffered().is_empty());
        }
    }

    // ----- the adapter -----

    #[derive(Default)]
    struct Rec {
        strings: Vec<Vec<u8>>,
        exceeded: Vec<usize>,
        keep_open: bool,
    }

    impl StringHandler for Rec {
        fn string_received(&mut self, cx: &mut StringContext<'_, '_>, string: &[u8]) {
            self.strings.push(string.to_vec());
            if string == b"pause" {
                cx.pause_reading();
            }
        }

        fn length_limit_exceeded(&mut self, cx: &mut StringContext<'_, '_>, length: usize) {
            self.exceeded.push(length);
            if !self.keep_open {
                cx.lose_connection();
            }
        }
    }

    /// What `f` sends through a connected `IntNReceiver`'s handler.
    fn sent_by<const N: usize, R>(f: impl FnOnce(&mut StringContext<'_, '_>) -> R) -> (R, Vec<u8>) {
        let mut h = fed(IntNReceiver::<Rec, N>::new(Rec::default()), &[]);
        let mut result = None;
        assert!(h.call(|p, cx| result = Some(p.with_handler(cx, |_, cx| f(cx)))));
        (result.expect("ran"), h.take_written())
    }

    #[test]
    fn send_string_adds_the_prefix() {
        // test_data and test_send.
        fn sent<const N: usize>(string: &[u8]) -> Vec<u8> {
            sent_by::<N, _>(|cx| cx.send_string(string).unwrap()).1
        }
        assert_eq!(sent::<4>(b"foo"), b"\x00\x00\x00\x03foo");
        assert_eq!(sent::<2>(b"foo"), b"\x00\x03foo");
        assert_eq!(sent::<1>(b"foo"), b"\x03foo");
        assert_eq!(sent::<1>(&[b'b'; 16]), [&[16][..], &[b'b'; 16]].concat());
        assert_eq!(sent::<1>(&[7; 255]).len(), 256);
    }

    #[test]
    fn send_string_refuses_a_string_too_long_for_the_prefix() {
        // test_tooLongSend: Int8 takes 255 bytes at most, Int16 65535.
        let (err, written) = sent_by::<1, _>(|cx| cx.send_string(&[0; 256]).unwrap_err());
        assert_eq!((err.string_bytes(), err.max_bytes()), (256, 255));
        assert!(written.is_empty());
        let ((long, max), written) = sent_by::<2, _>(|cx| {
            (
                cx.send_string(&vec![0; 65536]),
                cx.send_string(&vec![0; 65535]),
            )
        });
        assert!(long.is_err());
        assert_eq!(max, Ok(true));
        assert_eq!(written.len(), 2 + 65535);
        assert_eq!(Int8Receiver::<Rec>::max_sendable(), 255);
        assert_eq!(Int32Receiver::<Rec>::max_sendable(), u32::MAX as usize);
    }

    #[test]
    fn adapter_receives_pauses_and_resumes() {
        let input = framed::<4>(&[b"ubar", b"pause", b"", b"x"]);
        let (most, last) = input.split_at(input.len() - 1);
        for chunks in chunkings(most) {
            let mut h = fed(Int32Receiver::new(Rec::default()), &chunks);
            assert_eq!(h.protocol().handler().strings, [&b"ubar"[..], b"pause"]);
            assert!(h.reading_paused(), "{chunks:?}");
            h.call(|_, cx| cx.resume_reading());
            let strings = &h.protocol().handler().strings;
            assert_eq!(strings, &[&b"ubar"[..], b"pause", b""], "{chunks:?}");
            h.feed(last);
            assert_eq!(h.protocol().handler().strings.last().unwrap(), b"x");
        }
    }

    #[test]
    fn adapter_default_limit_closes_and_drops_the_rest() {
        for chunks in chunkings(b"\x01a\x04abcd\x01b") {
            let h = fed(Int8Receiver::new(Rec::default()).max_length(3), &chunks);
            assert_eq!(h.protocol().handler().strings, [b"a"], "{chunks:?}");
            assert_eq!(h.protocol().handler().exceeded, [4]);
            assert!(matches!(h.lost(), Some(Reason::Done)), "{chunks:?}");
        }
    }

    #[test]
    fn adapter_limit_kept_open_skips_the_payload() {
        for chunks in chunkings(b"\x01a\x04abcd\x01b") {
            let rec = Rec {
                keep_open: true,
                ..Rec::default()
            };
            let h = fed(Int8Receiver::new(rec).max_length(3), &chunks);
            assert_eq!(h.protocol().handler().strings, [b"a", b"b"], "{chunks:?}");
            assert_eq!(h.protocol().handler().exceeded, [4]);
            assert!(h.is_open());
        }
    }
}
