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
use crate::Context;

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
            self.parser.input.reset_if_consumed();
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

receiver_impls!(impl<H: StringHandler> NetstringReceiver<H>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::test_util::{chunkings, fed};
    use crate::Reason;

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Str(Vec<u8>),
        Err(NetstringError),
    }

    fn s(x: &[u8]) -> Ev {
        Ev::Str(x.to_vec())
    }

    const MISSING_LENGTH: Ev = Ev::Err(NetstringError::MissingLength);
    const MISSING_COMMA: Ev = Ev::Err(NetstringError::MissingComma);

    fn too_long(max_length: usize) -> Ev {
        Ev::Err(NetstringError::TooLong { max_length })
    }

    /// Feeds `chunks`; the handler closes on an error, as the adapter does.
    fn run(parser: &mut NetstringParser, chunks: &[&[u8]]) -> Vec<Ev> {
        let mut events = Vec::new();
        for chunk in chunks {
            let mut feed = parser.feed(chunk);
            while let Some((event, _)) = feed.next_event() {
                match event {
                    NetstringEvent::String(x) => events.push(s(x)),
                    NetstringEvent::Error(e) => {
                        events.push(Ev::Err(e));
                        feed.discard();
                        return events;
                    }
                }
            }
        }
        events
    }

    /// Every chunking of `input` gives `expected`.
    fn check(max: usize, input: &[u8], expected: &[Ev]) {
        for chunks in chunkings(input) {
            let mut parser = NetstringParser::new(max);
            assert_eq!(run(&mut parser, &chunks), expected, "chunks: {chunks:?}");
        }
    }

    fn netstrings(strings: &[&[u8]]) -> Vec<u8> {
        strings
            .iter()
            .flat_map(|x| [format!("{}:", x.len()).as_bytes(), x, b","].concat())
            .collect()
    }

    #[test]
    fn strings_at_every_chunking() {
        // NetstringReceiverTests.test_buffer, with MAX 699.
        let a515 = [b'a'; 515];
        let strings: [&[u8]; 7] = [
            b"hello", b"world", b"how", b"are", b"you123", b":today", &a515,
        ];
        let expected: Vec<Ev> = strings.iter().map(|x| s(x)).collect();
        check(699, &netstrings(&strings), &expected);
    }

    #[test]
    fn small_and_nested_netstrings() {
        check(50, b"0:,", &[s(b"")]);
        check(50, b"1:a,", &[s(b"a")]);
        check(50, b"2:ab,", &[s(b"ab")]);
        check(50, b"4:1:a,,", &[s(b"1:a,")]);
        check(50, b"10:0123456789,", &[s(b"0123456789")]);
        check(50, b"1:a,1:b,", &[s(b"a"), s(b"b")]);
    }

    #[test]
    fn payload_must_end_with_a_comma() {
        // test_moreDataThanSpecified, ...BorderCase; the error comes at the byte where
        // the comma belongs.
        check(50, b"2:aaa,", &[MISSING_COMMA]);
        check(50, b"0:a,", &[MISSING_COMMA]);
        check(50, b"4:abcde", &[MISSING_COMMA]);
        check(50, b"1:a,2:aaa", &[s(b"a"), MISSING_COMMA]);
    }

    #[test]
    fn length_must_be_digits_then_a_colon() {
        // test_missingNumber, test_missingColon, test_missingNumberAndColon,
        // test_onlyData, and what the length regex refuses.
        for bad in [
            &b":aaa,"[..],
            b"3aaa,",
            b"aaa,",
            b"aaa",
            b"abc",
            b"01:a,",
            b"00:,",
            b"+1:a,",
            b"-1:a,",
            b" 1:a,",
            b"1 :a,",
        ] {
            check(50, bad, &[MISSING_LENGTH]);
        }
    }

    #[test]
    fn length_over_max_is_refused_before_the_colon() {
        // test_consumeLengthBorderCase1-3, test_maxReceiveLimit (as intended).
        check(12, b"12:aaaaaaaaaaaa,", &[s(&[b'a'; 12])]);
        check(11, b"12:", &[too_long(11)]);
        check(11, b"1000:", &[too_long(11)]);
        check(50, b"51", &[too_long(50)]);
        check(99_999, b"100000", &[too_long(99_999)]);
        check(99_999, b"9999999999999999999999", &[too_long(99_999)]);
        check(
            usize::MAX,
            b"99999999999999999999999999:",
            &[too_long(usize::MAX)],
        );
        let mut input = b"51:".to_vec();
        input.extend_from_slice(&[b'a'; 50]);
        input.extend_from_slice(b"b,");
        check(50, &input, &[too_long(50)]);
    }

    #[test]
    fn portions() {
        // test_receiveNetstringPortions_1..3, test_receiveTwoNetstrings.
        let mut p = NetstringParser::new(50);
        assert_eq!(run(&mut p, &[b"4:aa", b"aa,"]), [s(b"aaaa")]);
        let mut p = NetstringParser::new(50);
        assert_eq!(
            run(&mut p, &[b"1", b"0:01234", b"56789", b","]),
            [s(b"0123456789")]
        );
        let mut p = NetstringParser::new(50);
        assert_eq!(run(&mut p, &[b"2", b":", b"a", b"b", b","]), [s(b"ab")]);
        let mut p = NetstringParser::new(50);
        assert_eq!(run(&mut p, &[b"1:a,1"]), [s(b"a")]);
        assert_eq!(run(&mut p, &[b":b,"]), [s(b"b")]);
    }

    #[test]
    fn nothing_after_an_error() {
        let mut p = NetstringParser::new(50);
        let mut feed = p.feed(b"x1:a,");
        assert_eq!(
            feed.next_event().unwrap().0,
            NetstringEvent::Error(NetstringError::MissingLength)
        );
        assert!(feed.next_event().is_none());
        drop(feed);
        assert!(p.is_broken());
        assert!(p.feed(b"1:a,").next_event().is_none());
    }

    #[test]
    fn length_prefix_formats_decimal() {
        let mut buf = [0; 24];
        assert_eq!(length_prefix(0, &mut buf), b"0:");
        assert_eq!(length_prefix(515, &mut buf), b"515:");
        assert_eq!(
            length_prefix(usize::MAX, &mut buf),
            format!("{}:", usize::MAX).as_bytes()
        );
    }

    // ----- the adapter -----

    #[derive(Default)]
    struct Echo {
        strings: Vec<Vec<u8>>,
    }

    impl StringHandler for Echo {
        fn string_received(&mut self, cx: &mut StringContext<'_, '_>, string: &[u8]) {
            self.strings.push(string.to_vec());
            assert_eq!(cx.send_string(string), Ok(true));
            if string == b"pause" {
                cx.pause_reading();
            }
        }
    }

    #[test]
    fn adapter_echoes_netstrings() {
        let input = b"5:hello,0:,3:abc,";
        for chunks in chunkings(input) {
            let mut h = fed(NetstringReceiver::new(Echo::default()), &chunks);
            assert_eq!(h.take_written(), input, "{chunks:?}");
            assert_eq!(h.protocol().handler().strings, [&b"hello"[..], b"", b"abc"]);
        }
    }

    #[test]
    fn adapter_error_closes_the_connection() {
        // test_illegal, at every chunking (byte by byte among them).
        for bad in [
            &b"9999999999999999999999"[..],
            b"abc",
            b"4:abcde",
            b"51:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab,",
        ] {
            for chunks in chunkings(bad) {
                let h = fed(
                    NetstringReceiver::new(Echo::default()).max_length(50),
                    &chunks,
                );
                assert!(matches!(h.lost(), Some(Reason::Done)), "{chunks:?}");
                assert!(h.protocol().is_broken(), "{chunks:?}");
            }
        }
    }

    #[test]
    fn adapter_pause_and_resume() {
        for chunks in chunkings(b"5:pause,1:a,1:b,") {
            let mut h = fed(NetstringReceiver::new(Echo::default()), &chunks);
            assert_eq!(h.protocol().handler().strings, [b"pause"], "{chunks:?}");
            assert!(h.reading_paused());
            h.call(|_, cx| cx.resume_reading());
            let strings = &h.protocol().handler().strings;
            assert_eq!(strings, &[&b"pause"[..], b"a", b"b"], "{chunks:?}");
            assert_eq!(h.take_written(), b"5:pause,1:a,1:b,");
        }
    }
}
