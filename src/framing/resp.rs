//! RESP, the Redis protocol: RESP2 and RESP3, sans-I/O, with limits checked from
//! headers before anything is allocated.
//!
//! Two parsers, for the two sides of a connection:
//!
//! - [`RequestParser`] is a server's: it reads *requests*, which Redis accepts in two
//!   forms only, multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what every client
//!   library sends) and inline (`GET k\r\n`, what a person types into `nc`). It does
//!   not copy: a request's arguments are ranges into the caller's buffer. Its errors
//!   ([`RequestError`]) carry Redis's own messages, and its limits are Redis's
//!   (`proto-max-bulk-len`, `PROTO_INLINE_MAX_SIZE`). The kv example serves with it.
//! - [`Decoder`] is a client's: it reads any [`Value`] a server sends, every RESP2
//!   and RESP3 type (attributes and out-of-band pushes included), into owned values.
//!   Its limits ([`Limits`]: bulk length, elements per aggregate, nesting depth, line
//!   length, bytes of one value) are checked as soon as a header is read.
//!
//! Both are incremental in the manner of mini-redis's `Connection::parse_frame`
//! (check, parse, advance), and both remember how far they got in a message that is not
//! complete yet, so a big message arriving in many small reads is scanned once, not
//! once per read. "Need more bytes" is `Ok(None)`, never an error; the outcome never
//! depends on how the input was cut into reads.
//!
//! Encoding: [`put_command`] writes a command (an array of bulk strings),
//! [`Value::encode`] any value, and the `put_*` functions the pieces of a reply, all
//! into a caller's `Vec` with no allocation beyond its growth.
//!
//! [`RespReceiver`] is the framer: a [`Protocol`](crate::Protocol) that decodes
//! values and hands each to a [`RespHandler`], as [`LineReceiver`](super::LineReceiver)
//! hands lines. The Redis client ([`crate::redis`]) is built on it.
//!
//! # Examples
//!
//! ```
//! use twistor::framing::resp::{put_command, Decoder, Value};
//!
//! let mut out = Vec::new();
//! put_command(&mut out, &["SET", "k", "v"]);
//! assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
//!
//! let mut decoder = Decoder::default();
//! let reply = b"*2\r\n:1\r\n$-1\r\n";
//! assert_eq!(decoder.decode(&reply[..5]), Ok(None)); // cut anywhere: wait for more
//! let (value, len) = decoder.decode(reply).unwrap().unwrap();
//! assert_eq!(value, Value::Array(vec![Value::Integer(1), Value::Nil]));
//! assert_eq!(len, reply.len());
//! ```

use std::fmt;
use std::io;
use std::ops::Range;

use crate::{Context, Reason};

/// Longest bulk string accepted: Redis's default `proto-max-bulk-len` (512 MiB).
pub const MAX_BULK_BYTES: i64 = 512 * 1024 * 1024;

/// Most arguments in one multibulk request. Redis accepts up to `INT_MAX`; we are
/// stricter on purpose, so that a count alone can never ask for a large argument table.
pub const MAX_MULTIBULK_LEN: i64 = 1024 * 1024;

/// Longest inline request, and longest length line of a multibulk request, that is
/// buffered while waiting for its newline: Redis's `PROTO_INLINE_MAX_SIZE` (64 KiB).
pub const MAX_INLINE_BYTES: usize = 64 * 1024;

/// Argument slots reserved up front for a multibulk request, whatever its count says
/// (Redis reserves at most 1024 too): the table grows only as arguments really arrive.
/// A table grown past this is given back once its request is done.
const RESERVE_ARGS: usize = 1024;

/// A request that can never become valid, however many bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// An inline request passed [`MAX_INLINE_BYTES`] without a newline.
    TooBigInline,
    /// An inline request has a quote that is not closed, or a closing quote that is
    /// not followed by a space.
    UnbalancedQuotes,
    /// A multibulk count line passed [`MAX_INLINE_BYTES`] without a newline.
    TooBigMultibulkCount,
    /// The count after `*` is not an integer, or is over [`MAX_MULTIBULK_LEN`].
    InvalidMultibulkLength,
    /// A bulk length line passed [`MAX_INLINE_BYTES`] without a newline.
    TooBigBulkCount,
    /// An argument of a multibulk request does not start with `$`; holds the byte found.
    ExpectedDollar(u8),
    /// The length after `$` is not an integer, is negative, or is over
    /// [`MAX_BULK_BYTES`].
    InvalidBulkLength,
    /// A bulk string is not followed by `\r\n` (Redis skips these two bytes unchecked;
    /// we refuse, since the framing is lost).
    MissingBulkTerminator,
}

impl fmt::Display for RequestError {
    /// The message Redis sends (after `-ERR `) for the same fault.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            RequestError::TooBigInline => f.write_str("too big inline request"),
            RequestError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            RequestError::TooBigMultibulkCount => f.write_str("too big mbulk count string"),
            RequestError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            RequestError::TooBigBulkCount => f.write_str("too big bulk count string"),
            RequestError::ExpectedDollar(got) => {
                // Redis turns CR and LF into spaces so that the error stays one line.
                let got = match got {
                    b'\r' | b'\n' => ' ',
                    c => char::from(*c),
                };
                write!(f, "expected '$', got '{got}'")
            }
            RequestError::InvalidBulkLength => f.write_str("invalid bulk length"),
            RequestError::MissingBulkTerminator => {
                f.write_str("expected '\\r\\n' after bulk string")
            }
        }
    }
}

impl std::error::Error for RequestError {}

impl RequestError {
    /// The error reply's text, `ERR Protocol error: ...`, byte for byte as Redis
    /// sends it: the offending byte of [`ExpectedDollar`](Self::ExpectedDollar) is
    /// quoted raw, not as UTF-8 (CR and LF aside, which become spaces).
    pub fn reply_text(&self) -> Vec<u8> {
        match *self {
            RequestError::ExpectedDollar(got) if !got.is_ascii() => {
                let mut text = b"ERR Protocol error: expected '$', got '".to_vec();
                text.extend_from_slice(&[got, b'\'']);
                text
            }
            _ => format!("ERR {self}").into_bytes(),
        }
    }
}

/// Where the parser stands inside the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestState {
    /// Between requests.
    Start,
    /// Inside a multibulk request: `remaining` arguments to go, and the length of the
    /// next one once its `$LEN` line has been read.
    Multibulk {
        remaining: usize,
        bulk_len: Option<usize>,
    },
}

/// An incremental RESP2 request parser; one per connection.
///
/// Call [`parse`](RequestParser::parse) with the buffered bytes of the connection, starting
/// at the first byte of the current request. `Ok(Some(len))` means a whole request
/// occupies `buf[..len]`: read it with [`args`](RequestParser::args) (before the next
/// `parse`), then drop those bytes and call again for the next request. `Ok(None)`
/// means more bytes are needed: keep `buf` (from the same first byte) and call again
/// with more appended; the parser resumes where it stopped.
///
/// A request with no arguments (an empty line, `*0\r\n`) parses with zero
/// arguments; the caller skips it, as Redis does.
///
/// # Examples
///
/// ```
/// use twistor::framing::resp::RequestParser;
///
/// let mut parser = RequestParser::default();
/// let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
/// let n = parser.parse(buf).unwrap().unwrap();
/// assert_eq!(parser.args(&buf[..n]).to_vec(), [b"GET".as_slice(), b"k"]);
/// let m = parser.parse(&buf[n..]).unwrap().unwrap();
/// assert_eq!(parser.args(&buf[n..n + m]).to_vec(), [b"PING".as_slice()]);
/// ```
#[derive(Debug)]
pub struct RequestParser {
    state: RequestState,
    /// Bytes of the current request already parsed.
    pos: usize,
    /// The arguments parsed so far: ranges into the request (multibulk) or into
    /// `inline` (inline requests).
    args: Vec<Range<usize>>,
    /// True if `args` points into `inline`.
    is_inline: bool,
    /// Unescaped arguments of the last inline request.
    inline: Vec<u8>,
    /// Offset up to which the line being read (inline, or a length line) is known to
    /// hold no `\n`, so that a line arriving a byte at a time is scanned once.
    scanned: usize,
}

impl Default for RequestParser {
    fn default() -> Self {
        RequestParser {
            state: RequestState::Start,
            pos: 0,
            args: Vec::new(),
            is_inline: false,
            inline: Vec::new(),
            scanned: 0,
        }
    }
}

impl RequestParser {
    /// Parses the request at the start of `buf`: `Ok(Some(len))` once it is complete,
    /// `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// The request is malformed or over a limit. The parser is then reset, but the
    /// connection's framing is lost: answer the error and close.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, RequestError> {
        let result = self.parse_inner(buf);
        if !matches!(result, Ok(None)) {
            self.state = RequestState::Start;
            self.pos = 0;
            self.scanned = 0;
        }
        result
    }

    fn parse_inner(&mut self, buf: &[u8]) -> Result<Option<usize>, RequestError> {
        if self.state == RequestState::Start {
            self.args.clear();
            if self.args.capacity() > RESERVE_ARGS {
                // Give back the table of a huge request; a later one regrows it.
                self.args = Vec::new();
            }
            self.is_inline = false;
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => {}
                Some(_) => return self.parse_inline(buf),
            }
            let (digits, next) = match length_line(&mut self.scanned, buf, 0) {
                Line::Incomplete => return Ok(None),
                Line::TooLong => return Err(RequestError::TooBigMultibulkCount),
                Line::Complete { digits, next } => (digits, next),
            };
            let count = match digits.and_then(parse_i64) {
                Some(n) if n <= MAX_MULTIBULK_LEN => n,
                _ => return Err(RequestError::InvalidMultibulkLength),
            };
            if count <= 0 {
                return Ok(Some(next));
            }
            let count = count as usize;
            self.args.reserve(count.min(RESERVE_ARGS));
            self.pos = next;
            self.state = RequestState::Multibulk {
                remaining: count,
                bulk_len: None,
            };
        }
        while let RequestState::Multibulk {
            remaining,
            bulk_len,
        } = &mut self.state
        {
            let len = match *bulk_len {
                Some(len) => len,
                None => {
                    let Some(&first) = buf.get(self.pos) else {
                        return Ok(None);
                    };
                    if first != b'$' {
                        return Err(RequestError::ExpectedDollar(first));
                    }
                    let (digits, next) = match length_line(&mut self.scanned, buf, self.pos) {
                        Line::Incomplete => return Ok(None),
                        Line::TooLong => return Err(RequestError::TooBigBulkCount),
                        Line::Complete { digits, next } => (digits, next),
                    };
                    let len = match digits.and_then(parse_i64) {
                        Some(n) if (0..=MAX_BULK_BYTES).contains(&n) => n as usize,
                        _ => return Err(RequestError::InvalidBulkLength),
                    };
                    self.pos = next;
                    *bulk_len = Some(len);
                    len
                }
            };
            let end = self.pos + len;
            let Some(terminator) = buf.get(end..end + 2) else {
                return Ok(None);
            };
            if terminator != b"\r\n" {
                return Err(RequestError::MissingBulkTerminator);
            }
            self.args.push(self.pos..end);
            self.pos = end + 2;
            *bulk_len = None;
            *remaining -= 1;
            if *remaining == 0 {
                return Ok(Some(self.pos));
            }
        }
        unreachable!("the multibulk loop returns when the request is complete")
    }

    /// An inline request: one line, split into arguments as `redis-cli` would
    /// (Redis's `sdssplitargs`). `\n` alone ends the line too.
    fn parse_inline(&mut self, buf: &[u8]) -> Result<Option<usize>, RequestError> {
        let Some(newline) = find_newline(&mut self.scanned, buf, 0) else {
            return match buf.len() > MAX_INLINE_BYTES {
                true => Err(RequestError::TooBigInline),
                false => Ok(None),
            };
        };
        // Refused even though complete, so that the outcome never depends on how the
        // bytes were split into reads.
        if newline > MAX_INLINE_BYTES {
            return Err(RequestError::TooBigInline);
        }
        let line = &buf[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.is_inline = true;
        split_args(line, &mut self.inline, &mut self.args)?;
        Ok(Some(newline + 1))
    }

    /// The arguments of the request just parsed; `request` is the `buf[..len]` that
    /// [`parse`](RequestParser::parse) reported.
    pub fn args<'a>(&'a self, request: &'a [u8]) -> Args<'a> {
        let base = match self.is_inline {
            true => &self.inline[..],
            false => request,
        };
        Args {
            base,
            ranges: &self.args,
        }
    }
}

/// The arguments of one request, borrowed from the connection's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a> {
    base: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// Number of arguments, the command name included.
    #[inline]
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True for a request with no arguments at all.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (0 is the command name).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.base[self.ranges[i].clone()]
    }

    /// Arguments from `from` on.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
        let base = self.base;
        self.ranges[from.min(self.ranges.len())..]
            .iter()
            .map(move |r| &base[r.clone()])
    }

    /// The first `n` arguments only.
    pub fn first(&self, n: usize) -> Args<'a> {
        Args {
            base: self.base,
            ranges: &self.ranges[..n.min(self.ranges.len())],
        }
    }

    /// All arguments, copied into a `Vec` of slices (for tests and logs).
    pub fn to_vec(self) -> Vec<&'a [u8]> {
        self.iter_from(0).collect()
    }
}

/// Finds the `\n` ending the line that starts at `start`, resuming where the last
/// search for the same line stopped (`scanned`), so that a line arriving a byte at a
/// time is scanned once rather than once per byte.
#[inline]
fn find_newline(scanned: &mut usize, buf: &[u8], start: usize) -> Option<usize> {
    let from = (*scanned).max(start);
    match memchr::memchr(b'\n', buf.get(from..)?) {
        Some(i) => {
            *scanned = 0;
            Some(from + i)
        }
        None => {
            *scanned = buf.len();
            None
        }
    }
}

/// A length line (`*COUNT` or `$LEN`), as far as it has arrived.
enum Line<'b> {
    Incomplete,
    /// Its newline comes more than [`MAX_INLINE_BYTES`] after its start, or has not
    /// come within that many bytes. (Refused even when complete, so that the outcome
    /// never depends on how the bytes were split into reads.)
    TooLong,
    /// The digits after the type byte (`None` if the line ends in a bare `\n`, which
    /// no length can), and the offset just past the line.
    Complete {
        digits: Option<&'b [u8]>,
        next: usize,
    },
}

fn length_line<'b>(scanned: &mut usize, buf: &'b [u8], start: usize) -> Line<'b> {
    match find_newline(scanned, buf, start + 1) {
        None if buf.len() - start > MAX_INLINE_BYTES => Line::TooLong,
        None => Line::Incomplete,
        Some(newline) if newline - start > MAX_INLINE_BYTES => Line::TooLong,
        Some(newline) => Line::Complete {
            digits: buf[start + 1..newline].strip_suffix(b"\r"),
            next: newline + 1,
        },
    }
}

/// Parses a decimal `i64` as strictly as Redis's `string2ll`: an optional `-`, no `+`,
/// no spaces, no leading zeros, at most 20 characters.
///
/// # Examples
///
/// ```
/// use twistor::framing::resp::parse_i64;
///
/// assert_eq!(parse_i64(b"-42"), Some(-42));
/// assert_eq!(parse_i64(b"042"), None);
/// assert_eq!(parse_i64(b"9223372036854775808"), None);
/// ```
#[inline]
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut value: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if negative {
        // i64::MIN's magnitude is one more than i64::MAX's.
        (value <= i64::MAX as u64 + 1).then(|| (value as i64).wrapping_neg())
    } else {
        i64::try_from(value).ok()
    }
}

/// Splits an inline request into arguments the way Redis's `sdssplitargs` does:
/// blanks separate arguments; `"..."` understands `\n`, `\r`, `\t`, `\b`, `\a`,
/// `\xHH` and `\<char>`; `'...'` understands only `\'`; a closing quote must be
/// followed by a blank or the end. The unescaped bytes go to `out`, their ranges to
/// `args`. A NUL byte ends the request, as it ends Redis's C string.
fn split_args(
    line: &[u8],
    out: &mut Vec<u8>,
    args: &mut Vec<Range<usize>>,
) -> Result<(), RequestError> {
    out.clear();
    args.clear();
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let is_blank = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c);
    let mut i = 0;
    loop {
        while i < line.len() && is_blank(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        let start = out.len();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = line.get(i).copied();
            if in_double {
                match c {
                    None => return Err(RequestError::UnbalancedQuotes),
                    Some(b'\\') => {
                        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                        match (line.get(i + 1), hex(line.get(i + 2)), hex(line.get(i + 3))) {
                            (Some(b'x'), Some(hi), Some(lo)) => {
                                out.push((hi * 16 + lo) as u8);
                                i += 3;
                            }
                            (Some(&e), _, _) => {
                                out.push(match e {
                                    b'n' => b'\n',
                                    b'r' => b'\r',
                                    b't' => b'\t',
                                    b'b' => 0x08,
                                    b'a' => 0x07,
                                    other => other,
                                });
                                i += 1;
                            }
                            (None, _, _) => out.push(b'\\'),
                        }
                    }
                    Some(b'"') => {
                        if line.get(i + 1).is_some_and(|&b| !is_blank(b)) {
                            return Err(RequestError::UnbalancedQuotes);
                        }
                        in_double = false;
                        i += 1;
                        break;
                    }
                    Some(b) => out.push(b),
                }
            } else if in_single {
                match c {
                    None => return Err(RequestError::UnbalancedQuotes),
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        out.push(b'\'');
                        i += 1;
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|&b| !is_blank(b)) {
                            return Err(RequestError::UnbalancedQuotes);
                        }
                        in_single = false;
                        i += 1;
                        break;
                    }
                    Some(b) => out.push(b),
                }
            } else {
                match c {
                    // Redis ends an unquoted argument at these four only (not at \v, \f).
                    None | Some(b' ' | b'\n' | b'\r' | b'\t') => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(b) => out.push(b),
                }
            }
            i += 1;
        }
        debug_assert!(!in_double && !in_single);
        args.push(start..out.len());
    }
}

// ----- replies: the server side -----

/// `+OK\r\n`, the reply to most writes.
pub const OK: &[u8] = b"+OK\r\n";

/// `$-1\r\n`, RESP2's null bulk string (a missing key).
pub const NIL: &[u8] = b"$-1\r\n";

/// Appends `+TEXT\r\n`. `text` must not contain CR or LF.
#[inline]
pub fn put_simple(out: &mut Vec<u8>, text: &str) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends an error reply `-MESSAGE\r\n` (the message starts with its code, `ERR`).
/// CR and LF become spaces, as Redis does, so that the reply stays one line.
#[inline]
pub fn put_error(out: &mut Vec<u8>, message: &[u8]) {
    out.push(b'-');
    out.extend(message.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
    out.extend_from_slice(b"\r\n");
}

/// Appends `:N\r\n`.
#[inline]
pub fn put_int(out: &mut Vec<u8>, n: i64) {
    put_prefixed(out, b':', n);
}

/// Appends the header of an array of `len` elements, `*LEN\r\n`.
#[inline]
pub fn put_array_len(out: &mut Vec<u8>, len: usize) {
    put_prefixed(out, b'*', len as i64);
}

/// Appends the header of a bulk string of `len` bytes, `$LEN\r\n`.
#[inline]
pub fn put_bulk_len(out: &mut Vec<u8>, len: usize) {
    put_prefixed(out, b'$', len as i64);
}

/// Appends a bulk string, `$LEN\r\nBYTES\r\n`.
#[inline]
pub fn put_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    put_bulk_len(out, bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends `PREFIX N \r\n`.
#[inline]
fn put_prefixed(out: &mut Vec<u8>, prefix: u8, n: i64) {
    out.push(prefix);
    put_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
#[inline]
pub fn put_decimal(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

/// Formats `n` in decimal into `buf` without going through `fmt` (the itoa approach:
/// digits from the right into a stack buffer) and returns the digits. Twenty bytes
/// hold every `i64`, sign included.
#[inline]
pub fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

// ----- values: the client side -----

/// A RESP value: what a server sends (RESP2 and RESP3).
///
/// The three nulls of the protocol stay apart, so that encoding a decoded value gives
/// back the same bytes: [`Nil`](Value::Nil) (RESP2's `$-1`, a missing key),
/// [`NilArray`](Value::NilArray) (`*-1`, a timed-out `BLPOP`) and
/// [`Null`](Value::Null) (RESP3's `_`). [`is_nil`](Value::is_nil) is true for all three.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `+OK`: a simple string (not binary-safe: no CR or LF).
    Simple(Vec<u8>),
    /// `-ERR message`: an error reply, its code first.
    Error(Vec<u8>),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`: a bulk string, binary-safe.
    Bulk(Vec<u8>),
    /// `$-1`: RESP2's null bulk string.
    Nil,
    /// `*N`: an array.
    Array(Vec<Value>),
    /// `*-1`: RESP2's null array.
    NilArray,
    /// `_`: RESP3's null.
    Null,
    /// `#t`, `#f` (RESP3).
    Boolean(bool),
    /// `,3.14`, `,inf`, `,-inf`, `,nan` (RESP3).
    Double(f64),
    /// `(3492890328409238509324850943850943825024385`: the digits, with their sign
    /// (RESP3).
    BigNumber(Vec<u8>),
    /// `!21\r\nSYNTAX invalid syntax`: a binary-safe error (RESP3).
    BlobError(Vec<u8>),
    /// `=15\r\ntxt:Some string`: text with its three-letter format (RESP3).
    Verbatim {
        /// `txt` or `mkd`.
        format: [u8; 3],
        /// The text, after `format:`.
        text: Vec<u8>,
    },
    /// `%N`: key-value pairs, in the order sent (RESP3).
    Map(Vec<(Value, Value)>),
    /// `~N`: an unordered collection, in the order sent (RESP3).
    Set(Vec<Value>),
    /// `|N`: attributes, and the value they annotate (RESP3).
    Attribute {
        /// The attributes' key-value pairs.
        attributes: Vec<(Value, Value)>,
        /// The value that followed them.
        value: Box<Value>,
    },
    /// `>N`: an out-of-band message, not a reply (RESP3: pub/sub messages, client
    /// tracking invalidations).
    Push(Vec<Value>),
}

impl Value {
    /// True for the three nulls: [`Nil`](Value::Nil), [`NilArray`](Value::NilArray),
    /// [`Null`](Value::Null).
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil | Value::NilArray | Value::Null)
    }

    /// The bytes of a [`Bulk`](Value::Bulk), [`Simple`](Value::Simple) or
    /// [`Verbatim`](Value::Verbatim) string (its text); `None` for any other value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) | Value::Simple(b) => Some(b),
            Value::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The number of an [`Integer`](Value::Integer); `None` for any other value.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The elements of an [`Array`](Value::Array), [`Set`](Value::Set) or
    /// [`Push`](Value::Push); `None` for any other value.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) | Value::Set(v) | Value::Push(v) => Some(v),
            _ => None,
        }
    }

    /// The message of an [`Error`](Value::Error) or [`BlobError`](Value::BlobError);
    /// `None` for any other value.
    pub fn as_error(&self) -> Option<&[u8]> {
        match self {
            Value::Error(e) | Value::BlobError(e) => Some(e),
            _ => None,
        }
    }

    /// Appends this value's encoding to `out`. Simple strings and errors are one line:
    /// a CR or LF in them becomes a space, as Redis does. Decoding the output gives
    /// this value back, those bytes aside.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(s) => put_line(out, b'+', s),
            Value::Error(e) => put_line(out, b'-', e),
            Value::Integer(n) => put_int(out, *n),
            Value::Bulk(b) => put_bulk(out, b),
            Value::Nil => out.extend_from_slice(NIL),
            Value::Array(items) => put_items(out, b'*', items),
            Value::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Value::Null => out.extend_from_slice(b"_\r\n"),
            Value::Boolean(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Value::Double(d) => {
                out.push(b',');
                if d.is_nan() {
                    out.extend_from_slice(b"nan");
                } else if d.is_infinite() {
                    out.extend_from_slice(if *d > 0.0 { b"inf" } else { b"-inf" });
                } else {
                    use std::io::Write;
                    let _ = write!(out, "{d}");
                }
                out.extend_from_slice(b"\r\n");
            }
            Value::BigNumber(digits) => put_line(out, b'(', digits),
            Value::BlobError(e) => put_blob(out, b'!', &[e]),
            Value::Verbatim { format, text } => put_blob(out, b'=', &[format, b":", text]),
            Value::Map(pairs) => put_pairs(out, b'%', pairs),
            Value::Set(items) => put_items(out, b'~', items),
            Value::Attribute { attributes, value } => {
                put_pairs(out, b'|', attributes);
                value.encode(out);
            }
            Value::Push(items) => put_items(out, b'>', items),
        }
    }

    /// This value's encoding, in a new `Vec`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// `PREFIX TEXT \r\n`, CR and LF in `text` made spaces.
fn put_line(out: &mut Vec<u8>, prefix: u8, text: &[u8]) {
    out.push(prefix);
    out.extend(text.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
    out.extend_from_slice(b"\r\n");
}

/// `PREFIX LEN \r\n PARTS... \r\n`.
fn put_blob(out: &mut Vec<u8>, prefix: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    put_prefixed(out, prefix, len as i64);
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

fn put_items(out: &mut Vec<u8>, prefix: u8, items: &[Value]) {
    put_prefixed(out, prefix, items.len() as i64);
    for item in items {
        item.encode(out);
    }
}

fn put_pairs(out: &mut Vec<u8>, prefix: u8, pairs: &[(Value, Value)]) {
    put_prefixed(out, prefix, pairs.len() as i64);
    for (k, v) in pairs {
        k.encode(out);
        v.encode(out);
    }
}

/// Appends a command: an array of bulk strings, `*N\r\n$LEN\r\nARG\r\n...`, the one
/// form in which clients send requests.
///
/// # Examples
///
/// ```
/// use twistor::framing::resp::put_command;
///
/// let mut out = Vec::new();
/// put_command(&mut out, &[b"GET".as_slice(), b"key"]);
/// assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
/// ```
pub fn put_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    put_array_len(out, args.len());
    for arg in args {
        put_bulk(out, arg.as_ref());
    }
}

/// What a [`Decoder`] accepts. Each limit is checked as soon as the header that
/// announces a size is read, before memory is taken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, blob error or verbatim string: 512 MiB by default
    /// (Redis's `proto-max-bulk-len`).
    pub max_bulk_bytes: usize,
    /// Most elements in one array, set or push, and most pairs in one map or
    /// attribute: 1,048,576 by default. An aggregate's table is reserved for at most
    /// 1024 elements up front, whatever its header says, and grows as they arrive.
    pub max_elements: usize,
    /// Deepest nesting of aggregates: 64 by default (a Redis reply nests a handful).
    pub max_depth: usize,
    /// Longest line (a simple string, an error, a number, a header), CRLF included:
    /// 64 KiB by default (Redis's `PROTO_INLINE_MAX_SIZE`).
    pub max_line_bytes: usize,
    /// Most bytes of one value, whole or still arriving: 1 GiB by default (Redis's
    /// `client-query-buffer-limit`). It bounds what the other limits do not: many
    /// big elements.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_bytes: MAX_BULK_BYTES as usize,
            max_elements: MAX_MULTIBULK_LEN as usize,
            max_depth: 64,
            max_line_bytes: MAX_INLINE_BYTES,
            max_value_bytes: 1 << 30,
        }
    }
}

/// Why a [`Decoder`] refused its input: the stream can never become valid, however
/// many bytes follow, and the connection's framing is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A value starts with this byte, which is no RESP type (inline replies do not
    /// exist).
    UnknownType(u8),
    /// A line passed [`Limits::max_line_bytes`] (with or without its newline).
    LineTooLong,
    /// A line ends in a bare `\n`: RESP lines end in `\r\n`.
    BadLineEnd,
    /// A length or count is not an integer, or is negative (but `-1` where a null
    /// is allowed: `$-1`, `*-1`).
    InvalidLength(u8),
    /// A bulk string, blob error or verbatim string over
    /// [`Limits::max_bulk_bytes`]; holds the length announced.
    BulkTooLong(u64),
    /// An aggregate over [`Limits::max_elements`]; holds the count announced.
    TooManyElements(u64),
    /// Aggregates nested deeper than [`Limits::max_depth`].
    TooDeep,
    /// A value over [`Limits::max_value_bytes`].
    ValueTooLong,
    /// A bulk string, blob error or verbatim string not followed by `\r\n`.
    MissingTerminator,
    /// The body of a value of this type is not valid: an integer that is not one, a
    /// boolean other than `t` or `f`, a null with a body, a double or big number that
    /// is not a number, a verbatim string without its `xxx:` format.
    InvalidValue(u8),
    /// A streamed string or aggregate (`$?`, `*?`, ...: RESP3's unknown lengths),
    /// which Redis never sends and this decoder does not read.
    Streamed(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |b: &u8| char::from(*b).escape_default().to_string();
        match self {
            DecodeError::UnknownType(b) => write!(f, "unknown RESP type byte '{}'", c(b)),
            DecodeError::LineTooLong => f.write_str("RESP line too long"),
            DecodeError::BadLineEnd => f.write_str("RESP line not ended by CRLF"),
            DecodeError::InvalidLength(t) => write!(f, "invalid length after '{}'", c(t)),
            DecodeError::BulkTooLong(n) => write!(f, "bulk string of {n} bytes over the limit"),
            DecodeError::TooManyElements(n) => {
                write!(f, "aggregate of {n} elements over the limit")
            }
            DecodeError::TooDeep => f.write_str("RESP aggregates nested too deep"),
            DecodeError::ValueTooLong => f.write_str("RESP value over the size limit"),
            DecodeError::MissingTerminator => f.write_str("expected CRLF after a bulk string"),
            DecodeError::InvalidValue(t) => write!(f, "invalid value of type '{}'", c(t)),
            DecodeError::Streamed(t) => write!(f, "streamed RESP3 type '{}' not supported", c(t)),
        }
    }
}

impl std::error::Error for DecodeError {}

/// An aggregate being filled.
#[derive(Debug)]
struct Frame {
    kind: FrameKind,
    /// Elements still to come (two per pair).
    remaining: usize,
    items: Vec<Value>,
}

#[derive(Debug)]
enum FrameKind {
    Array,
    Set,
    Push,
    Map,
    /// The pairs of an attribute.
    Attribute,
    /// The value that attributes annotate; holds them.
    Annotated(Vec<(Value, Value)>),
}

/// What one element read did.
enum Step {
    /// A whole value.
    Value(Value),
    /// An aggregate was opened (its elements follow).
    Opened,
}

/// An incremental decoder of RESP values (RESP2 and RESP3); one per connection.
///
/// Call [`decode`](Decoder::decode) with the connection's buffered bytes, starting at
/// the first byte of the current value. `Ok(Some((value, len)))`: a whole value took
/// `buf[..len]`; drop those bytes and call again for the next one. `Ok(None)`: more
/// bytes are needed; keep `buf` (from the same first byte) and call again with more
/// appended: the decoder resumes where it stopped (what it has decoded of the value
/// so far is kept, so each byte is looked at once).
///
/// # Examples
///
/// ```
/// use twistor::framing::resp::{Decoder, DecodeError, Limits, Value};
///
/// let mut decoder = Decoder::new(Limits { max_bulk_bytes: 10, ..Limits::default() });
/// let (v, _) = decoder.decode(b"%1\r\n+k\r\n#t\r\n").unwrap().unwrap();
/// assert_eq!(v, Value::Map(vec![(Value::Simple(b"k".to_vec()), Value::Boolean(true))]));
/// // Refused from the header alone, before any of the 11 bytes arrive.
/// assert_eq!(decoder.decode(b"$11\r\n"), Err(DecodeError::BulkTooLong(11)));
/// ```
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    /// The aggregates open around the current position, outermost first.
    stack: Vec<Frame>,
    /// Bytes of the current value already decoded.
    pos: usize,
    /// Offset up to which the current line is known to hold no `\n`.
    scanned: usize,
    /// The type byte and length of a string whose header was read but whose body has
    /// not arrived yet.
    pending_blob: Option<(u8, usize)>,
}

impl Decoder {
    /// A decoder with these limits.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            ..Decoder::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Changes the limits, from the next header read on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// True between values (nothing of a value decoded yet).
    pub fn is_idle(&self) -> bool {
        self.pos == 0
    }

    /// Forgets the value in progress: the next call starts a new one.
    pub fn reset(&mut self) {
        self.stack.clear();
        self.pos = 0;
        self.scanned = 0;
        self.pending_blob = None;
    }

    /// Decodes the value at the start of `buf`: `Ok(Some((value, len)))` once it is
    /// whole, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// The input is not RESP, or is over a limit. The decoder is then reset, but the
    /// stream's framing is lost: close the connection.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Value, usize)>, DecodeError> {
        let result = self.decode_inner(buf);
        match result {
            Ok(None) if buf.len() > self.limits.max_value_bytes => {
                self.reset();
                Err(DecodeError::ValueTooLong)
            }
            Ok(None) => Ok(None),
            Ok(Some((_, len))) if len > self.limits.max_value_bytes => {
                // Refused even though whole, so that the outcome never depends on how
                // the bytes were cut into reads.
                self.reset();
                Err(DecodeError::ValueTooLong)
            }
            _ => {
                self.reset();
                result
            }
        }
    }

    fn decode_inner(&mut self, buf: &[u8]) -> Result<Option<(Value, usize)>, DecodeError> {
        loop {
            let mut value = match self.element(buf)? {
                None => return Ok(None),
                Some(Step::Opened) => continue,
                Some(Step::Value(v)) => v,
            };
            // Put the value in its aggregate, closing those it completes.
            loop {
                let Some(frame) = self.stack.last_mut() else {
                    return Ok(Some((value, self.pos)));
                };
                frame.items.push(value);
                frame.remaining -= 1;
                if frame.remaining > 0 {
                    break;
                }
                let frame = self.stack.pop().expect("the frame just filled");
                value = match frame.kind {
                    FrameKind::Array => Value::Array(frame.items),
                    FrameKind::Set => Value::Set(frame.items),
                    FrameKind::Push => Value::Push(frame.items),
                    FrameKind::Map => Value::Map(pairs(frame.items)),
                    FrameKind::Attribute => {
                        // The attributes are whole: the value they annotate follows.
                        self.stack.push(Frame {
                            kind: FrameKind::Annotated(pairs(frame.items)),
                            remaining: 1,
                            items: Vec::with_capacity(1),
                        });
                        break;
                    }
                    FrameKind::Annotated(attributes) => Value::Attribute {
                        attributes,
                        value: Box::new(frame.items.into_iter().next().expect("one value")),
                    },
                };
            }
        }
    }

    /// Reads one element at `self.pos`: a whole scalar, or an aggregate's header.
    fn element(&mut self, buf: &[u8]) -> Result<Option<Step>, DecodeError> {
        if let Some((kind, len)) = self.pending_blob {
            return self.blob_body(buf, kind, len);
        }
        let Some(&kind) = buf.get(self.pos) else {
            return Ok(None);
        };
        if !b"+-:_#,($!=*~>%|".contains(&kind) {
            // Refused at its first byte, not once its line is whole.
            return Err(DecodeError::UnknownType(kind));
        }
        let start = self.pos;
        let Some(newline) = find_newline(&mut self.scanned, buf, start + 1) else {
            return match buf.len() - start > self.limits.max_line_bytes {
                true => Err(DecodeError::LineTooLong),
                false => Ok(None),
            };
        };
        if newline + 1 - start > self.limits.max_line_bytes {
            return Err(DecodeError::LineTooLong);
        }
        let line = buf[start + 1..newline]
            .strip_suffix(b"\r")
            .ok_or(DecodeError::BadLineEnd)?;
        let next = newline + 1;
        let scalar = |v: Option<Value>| v.map(Step::Value).ok_or(DecodeError::InvalidValue(kind));
        let step = match kind {
            b'+' => Step::Value(Value::Simple(line.to_vec())),
            b'-' => Step::Value(Value::Error(line.to_vec())),
            b':' => scalar(parse_i64(line).map(Value::Integer))?,
            b'_' => scalar(line.is_empty().then_some(Value::Null))?,
            b'#' => scalar(match line {
                b"t" => Some(Value::Boolean(true)),
                b"f" => Some(Value::Boolean(false)),
                _ => None,
            })?,
            b',' => scalar(parse_double(line).map(Value::Double))?,
            b'(' => scalar(is_big_number(line).then(|| Value::BigNumber(line.to_vec())))?,
            b'$' | b'!' | b'=' => {
                if line == b"?" {
                    return Err(DecodeError::Streamed(kind));
                }
                let len = parse_i64(line).ok_or(DecodeError::InvalidLength(kind))?;
                if len == -1 && kind == b'$' {
                    Step::Value(Value::Nil)
                } else if len < 0 {
                    return Err(DecodeError::InvalidLength(kind));
                } else if len as u64 > self.limits.max_bulk_bytes as u64 {
                    return Err(DecodeError::BulkTooLong(len as u64));
                } else {
                    self.pos = next;
                    return self.blob_body(buf, kind, len as usize);
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                if line == b"?" {
                    return Err(DecodeError::Streamed(kind));
                }
                let count = parse_i64(line).ok_or(DecodeError::InvalidLength(kind))?;
                if count == -1 && kind == b'*' {
                    Step::Value(Value::NilArray)
                } else if count < 0 {
                    return Err(DecodeError::InvalidLength(kind));
                } else if count as u64 > self.limits.max_elements as u64 {
                    return Err(DecodeError::TooManyElements(count as u64));
                } else {
                    self.open(kind, count as usize)?
                }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        self.pos = next;
        Ok(Some(step))
    }

    /// The body of a string whose header said `len` bytes; `self.pos` is its start.
    fn blob_body(&mut self, buf: &[u8], kind: u8, len: usize) -> Result<Option<Step>, DecodeError> {
        let end = self.pos + len;
        let Some(terminator) = buf.get(end..end + 2) else {
            self.pending_blob = Some((kind, len));
            return Ok(None);
        };
        if terminator != b"\r\n" {
            return Err(DecodeError::MissingTerminator);
        }
        let body = &buf[self.pos..end];
        let value = match kind {
            b'$' => Value::Bulk(body.to_vec()),
            b'!' => Value::BlobError(body.to_vec()),
            _ => match body {
                [a, b, c, b':', text @ ..] => Value::Verbatim {
                    format: [*a, *b, *c],
                    text: text.to_vec(),
                },
                _ => return Err(DecodeError::InvalidValue(kind)),
            },
        };
        self.pending_blob = None;
        self.pos = end + 2;
        Ok(Some(Step::Value(value)))
    }

    /// Opens an aggregate of `count` elements (pairs for maps and attributes); an
    /// empty one is a whole value at once (but an attribute, which annotates the
    /// value that follows).
    fn open(&mut self, kind: u8, count: usize) -> Result<Step, DecodeError> {
        let (frame_kind, remaining) = match kind {
            b'*' => (FrameKind::Array, count),
            b'~' => (FrameKind::Set, count),
            b'>' => (FrameKind::Push, count),
            b'%' => (FrameKind::Map, count * 2),
            _ => (FrameKind::Attribute, count * 2),
        };
        if remaining == 0 {
            match frame_kind {
                FrameKind::Array => return Ok(Step::Value(Value::Array(Vec::new()))),
                FrameKind::Set => return Ok(Step::Value(Value::Set(Vec::new()))),
                FrameKind::Push => return Ok(Step::Value(Value::Push(Vec::new()))),
                FrameKind::Map => return Ok(Step::Value(Value::Map(Vec::new()))),
                _ => {}
            }
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(DecodeError::TooDeep);
        }
        let (frame_kind, remaining) = match (frame_kind, remaining) {
            (FrameKind::Attribute, 0) => (FrameKind::Annotated(Vec::new()), 1),
            other => other,
        };
        self.stack.push(Frame {
            kind: frame_kind,
            remaining,
            items: Vec::with_capacity(remaining.min(RESERVE_ARGS)),
        });
        Ok(Step::Opened)
    }
}

/// `[k1, v1, k2, v2, ...]` as pairs.
fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        out.push((k, v));
    }
    out
}

/// A RESP3 double: `inf`, `-inf`, `nan`, or a decimal number (with an optional
/// exponent).
fn parse_double(s: &[u8]) -> Option<f64> {
    match s {
        b"inf" | b"+inf" => return Some(f64::INFINITY),
        b"-inf" => return Some(f64::NEG_INFINITY),
        b"nan" | b"-nan" => return Some(f64::NAN),
        _ => {}
    }
    // Rust's parser also takes "infinity" and "NaN": only digits, signs, '.', 'e'.
    if s.is_empty()
        || !s
            .iter()
            .all(|&b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// An optional `-` (or `+`) and at least one digit.
fn is_big_number(s: &[u8]) -> bool {
    let digits = s.strip_prefix(b"-").or(s.strip_prefix(b"+")).unwrap_or(s);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

// ----- the framer -----

/// Callbacks for a [`RespReceiver`]: [`value_received`](RespHandler::value_received)
/// for each value decoded, and the connection's life as a plain protocol sees it.
///
/// The handler gets the connection's own [`Context`]. Timers and pool jobs set on it
/// are typed on the framer (`|r: &mut RespReceiver<MyHandler>, cx| ...`), whose
/// [`handler_mut`](RespReceiver::handler_mut) reaches the handler.
pub trait RespHandler: 'static {
    /// The connection is established.
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// A whole value arrived.
    fn value_received(&mut self, cx: &mut Context<'_>, value: Value);

    /// The peer sent something that is not RESP, or is over a limit: nothing more is
    /// delivered. The default logs it (debug) and closes the connection.
    fn decode_error(&mut self, cx: &mut Context<'_>, error: DecodeError) {
        log::debug!("{}: {error}; closing", cx.id());
        cx.lose_connection();
    }

    /// The peer shut its write side. The default closes the connection.
    fn read_eof(&mut self, cx: &mut Context<'_>) {
        cx.lose_connection();
    }

    /// The connection is gone; called exactly once.
    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        let _ = (cx, reason);
    }

    /// An outgoing connection could not be made (see
    /// [`Protocol::connection_failed`](crate::Protocol::connection_failed)). The
    /// default logs the error at debug level.
    fn connection_failed(&mut self, cx: &mut Context<'_>, error: io::Error) {
        let _ = cx;
        log::debug!("connection failed: {error}");
    }

    /// The write buffer passed its high watermark: stop producing.
    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// The write buffer drained below its low watermark: producing may go on.
    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }
}

/// A protocol that decodes RESP values (a [`Decoder`]) and hands each to its
/// [`RespHandler`].
///
/// Values are decoded straight from the reactor's read buffer; only the unfinished
/// tail of a read is copied, and it is bounded by the decoder's [`Limits`]. As in the
/// other framers, pausing and closing take effect between two values: after each one
/// the receiver checks [`Context::is_reading`]; a paused receiver keeps the rest and
/// delivers it once reading resumes, a closed one drops it. After a
/// [`DecodeError`] nothing more is delivered.
///
/// # Examples
///
/// ```
/// use twistor::framing::resp::{RespHandler, RespReceiver, Value};
/// use twistor::testing::Harness;
/// use twistor::Context;
///
/// /// Answers every value with its encoding's length.
/// struct Sizes;
/// impl RespHandler for Sizes {
///     fn value_received(&mut self, cx: &mut Context<'_>, value: Value) {
///         let n = value.to_bytes().len() as i64;
///         cx.write(&Value::Integer(n).to_bytes());
///     }
/// }
///
/// let mut h = Harness::new(RespReceiver::new(Sizes));
/// h.connect();
/// h.feed(b"+OK\r\n$3\r\nab");
/// h.feed(b"c\r\n");
/// assert_eq!(h.take_written(), b":5\r\n:9\r\n");
/// ```
pub struct RespReceiver<H: RespHandler> {
    handler: H,
    decoder: Decoder,
    /// The start of a value cut by the end of a read, or values kept while paused.
    buf: Vec<u8>,
    /// A decode error was reported: nothing more is delivered.
    broken: bool,
}

impl<H: RespHandler> RespReceiver<H> {
    /// A receiver with the default [`Limits`].
    pub fn new(handler: H) -> Self {
        RespReceiver::with_limits(handler, Limits::default())
    }

    /// A receiver with these limits.
    pub fn with_limits(handler: H, limits: Limits) -> Self {
        RespReceiver {
            handler,
            decoder: Decoder::new(limits),
            buf: Vec::new(),
            broken: false,
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably (for timers and jobs typed on the receiver).
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// True once the peer sent something that is not RESP, or is over a limit.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Bytes kept: an unfinished value, or what arrived while reading was paused.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Delivers what is whole in `buf ++ chunk`, while the connection reads.
    fn deliver(&mut self, cx: &mut Context<'_>, chunk: &[u8]) {
        if self.broken || !cx.is_open() {
            return;
        }
        if self.buf.is_empty() {
            let used = self.run(cx, chunk);
            if !self.broken && cx.is_open() {
                self.buf.extend_from_slice(&chunk[used..]);
            }
        } else {
            self.buf.extend_from_slice(chunk);
            let mut buf = std::mem::take(&mut self.buf);
            let used = self.run(cx, &buf);
            if self.broken || !cx.is_open() {
                return;
            }
            buf.drain(..used);
            if buf.is_empty() && buf.capacity() > RETAINED_BYTES {
                buf = Vec::new();
            }
            self.buf = buf;
        }
    }

    /// Decodes and delivers the values at the start of `data`; returns the bytes
    /// they took.
    fn run(&mut self, cx: &mut Context<'_>, data: &[u8]) -> usize {
        let mut start = 0;
        while cx.is_reading() && start < data.len() {
            match self.decoder.decode(&data[start..]) {
                Ok(Some((value, len))) => {
                    start += len;
                    self.handler.value_received(cx, value);
                }
                Ok(None) => break,
                Err(error) => {
                    self.broken = true;
                    self.buf = Vec::new();
                    self.handler.decode_error(cx, error);
                    return data.len();
                }
            }
        }
        start
    }
}

/// Capacity an emptied buffer may keep.
const RETAINED_BYTES: usize = 16 * 1024;

impl<H: RespHandler> crate::Protocol for RespReceiver<H> {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.handler.connection_made(cx);
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        self.deliver(cx, data);
    }

    fn read_eof(&mut self, cx: &mut Context<'_>) {
        self.handler.read_eof(cx);
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        self.buf = Vec::new();
        self.decoder.reset();
        self.handler.connection_lost(cx, reason);
    }

    fn connection_failed(&mut self, cx: &mut Context<'_>, error: io::Error) {
        self.handler.connection_failed(cx, error);
    }

    fn reading_resumed(&mut self, cx: &mut Context<'_>) {
        self.deliver(cx, &[]);
    }

    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        self.handler.pause_producing(cx);
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        self.handler.resume_producing(cx);
    }
}

impl<H: RespHandler> fmt::Debug for RespReceiver<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RespReceiver")
            .field("handler", &std::any::type_name::<H>())
            .field("buffered", &self.buf.len())
            .field("broken", &self.broken)
            .finish()
    }
}
