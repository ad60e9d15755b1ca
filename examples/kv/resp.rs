//! RESP2 request parser and reply encoder, with the limits Redis applies.
//!
//! [`Parser`] turns buffered bytes into requests, one at a time: multibulk requests
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what every client library sends) and inline
//! ones (`GET k\r\n`, what a person types into `nc`). It is incremental in the manner
//! of mini-redis's `Connection::parse_frame` (check, parse, advance), but it also
//! remembers how far it got in a request that is not complete yet, so a big request
//! arriving in many small reads is scanned once, not once per read.
//!
//! "Need more bytes" is `Ok(None)`, never an error. A request that can never be valid
//! is a [`ProtocolError`] whose text is Redis's own (`Protocol error: invalid bulk
//! length`); the server then answers it and closes. Every length is checked against
//! its limit as soon as its header is read, before any memory is taken for it.
//!
//! Arguments are not copied: a parsed request is a list of ranges into the caller's
//! buffer. Only inline requests, which may contain quotes and escapes, are unescaped
//! into a small buffer that the parser reuses.
//!
//! The `put_*` functions encode replies into a caller's `Vec`, digits included, with
//! no allocation beyond the `Vec`'s growth.
//!
//! This file depends on `std` only, so that the integration tests can include it
//! with `#[path]` and test it directly.

// The server and the tests each use a different part of this file.
#![allow(dead_code)]

use std::fmt;
use std::ops::Range;

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
pub enum ProtocolError {
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

impl fmt::Display for ProtocolError {
    /// The message Redis sends (after `-ERR `) for the same fault.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            ProtocolError::TooBigInline => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::TooBigMultibulkCount => f.write_str("too big mbulk count string"),
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::TooBigBulkCount => f.write_str("too big bulk count string"),
            ProtocolError::ExpectedDollar(got) => {
                // Redis turns CR and LF into spaces so that the error stays one line.
                let got = match got {
                    b'\r' | b'\n' => ' ',
                    c => char::from(*c),
                };
                write!(f, "expected '$', got '{got}'")
            }
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::MissingBulkTerminator => {
                f.write_str("expected '\\r\\n' after bulk string")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

impl ProtocolError {
    /// The error reply's text, `ERR Protocol error: ...`, byte for byte as Redis
    /// sends it: the offending byte of [`ExpectedDollar`](Self::ExpectedDollar) is
    /// quoted raw, not as UTF-8 (CR and LF aside, which become spaces).
    pub fn reply_text(&self) -> Vec<u8> {
        match *self {
            ProtocolError::ExpectedDollar(got) if !got.is_ascii() => {
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
enum State {
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
/// Call [`parse`](Parser::parse) with the buffered bytes of the connection, starting
/// at the first byte of the current request. `Ok(Some(len))` means a whole request
/// occupies `buf[..len]`: read it with [`args`](Parser::args) (before the next
/// `parse`), then drop those bytes and call again for the next request. `Ok(None)`
/// means more bytes are needed: keep `buf` (from the same first byte) and call again
/// with more appended; the parser resumes where it stopped.
///
/// A request with no arguments (an empty line, `*0\r\n`) parses with zero
/// arguments; the caller skips it, as Redis does.
///
/// # Examples
///
/// ```ignore
/// let mut parser = Parser::default();
/// let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
/// let n = parser.parse(buf).unwrap().unwrap();
/// assert_eq!(parser.args(&buf[..n]).to_vec(), [b"GET".as_slice(), b"k"]);
/// let m = parser.parse(&buf[n..]).unwrap().unwrap();
/// assert_eq!(parser.args(&buf[n..n + m]).to_vec(), [b"PING".as_slice()]);
/// ```
#[derive(Debug)]
pub struct Parser {
    state: State,
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

impl Default for Parser {
    fn default() -> Self {
        Parser {
            state: State::Start,
            pos: 0,
            args: Vec::new(),
            is_inline: false,
            inline: Vec::new(),
            scanned: 0,
        }
    }
}

impl Parser {
    /// Parses the request at the start of `buf`: `Ok(Some(len))` once it is complete,
    /// `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// The request is malformed or over a limit. The parser is then reset, but the
    /// connection's framing is lost: answer the error and close.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let result = self.parse_inner(buf);
        if !matches!(result, Ok(None)) {
            self.state = State::Start;
            self.pos = 0;
            self.scanned = 0;
        }
        result
    }

    fn parse_inner(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if self.state == State::Start {
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
                Line::TooLong => return Err(ProtocolError::TooBigMultibulkCount),
                Line::Complete { digits, next } => (digits, next),
            };
            let count = match digits.and_then(parse_i64) {
                Some(n) if n <= MAX_MULTIBULK_LEN => n,
                _ => return Err(ProtocolError::InvalidMultibulkLength),
            };
            if count <= 0 {
                return Ok(Some(next));
            }
            let count = count as usize;
            self.args.reserve(count.min(RESERVE_ARGS));
            self.pos = next;
            self.state = State::Multibulk {
                remaining: count,
                bulk_len: None,
            };
        }
        while let State::Multibulk {
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
                        return Err(ProtocolError::ExpectedDollar(first));
                    }
                    let (digits, next) = match length_line(&mut self.scanned, buf, self.pos) {
                        Line::Incomplete => return Ok(None),
                        Line::TooLong => return Err(ProtocolError::TooBigBulkCount),
                        Line::Complete { digits, next } => (digits, next),
                    };
                    let len = match digits.and_then(parse_i64) {
                        Some(n) if (0..=MAX_BULK_BYTES).contains(&n) => n as usize,
                        _ => return Err(ProtocolError::InvalidBulkLength),
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
                return Err(ProtocolError::MissingBulkTerminator);
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
    fn parse_inline(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let Some(newline) = find_newline(&mut self.scanned, buf, 0) else {
            return match buf.len() > MAX_INLINE_BYTES {
                true => Err(ProtocolError::TooBigInline),
                false => Ok(None),
            };
        };
        // Refused even though complete, so that the outcome never depends on how the
        // bytes were split into reads.
        if newline > MAX_INLINE_BYTES {
            return Err(ProtocolError::TooBigInline);
        }
        let line = &buf[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.is_inline = true;
        split_args(line, &mut self.inline, &mut self.args)?;
        Ok(Some(newline + 1))
    }

    /// The arguments of the request just parsed; `request` is the `buf[..len]` that
    /// [`parse`](Parser::parse) reported.
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
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True for a request with no arguments at all.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (0 is the command name).
    ///
    /// # Panics
    /// If `i >= self.len()`.
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
fn find_newline(scanned: &mut usize, buf: &[u8], start: usize) -> Option<usize> {
    let from = (*scanned).max(start);
    match buf.get(from..)?.iter().position(|&b| b == b'\n') {
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
/// ```ignore
/// assert_eq!(parse_i64(b"-42"), Some(-42));
/// assert_eq!(parse_i64(b"042"), None);
/// assert_eq!(parse_i64(b"9223372036854775808"), None);
/// ```
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
) -> Result<(), ProtocolError> {
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
                    None => return Err(ProtocolError::UnbalancedQuotes),
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
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        in_double = false;
                        i += 1;
                        break;
                    }
                    Some(b) => out.push(b),
                }
            } else if in_single {
                match c {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        out.push(b'\'');
                        i += 1;
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|&b| !is_blank(b)) {
                            return Err(ProtocolError::UnbalancedQuotes);
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

// ----- replies -----

/// `+OK\r\n`, the reply to most writes.
pub const OK: &[u8] = b"+OK\r\n";

/// `$-1\r\n`, RESP2's null bulk string (a missing key).
pub const NIL: &[u8] = b"$-1\r\n";

/// Appends `+TEXT\r\n`. `text` must not contain CR or LF.
pub fn put_simple(out: &mut Vec<u8>, text: &str) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends an error reply `-MESSAGE\r\n` (the message starts with its code, `ERR`).
/// CR and LF become spaces, as Redis does, so that the reply stays one line.
pub fn put_error(out: &mut Vec<u8>, message: &[u8]) {
    out.push(b'-');
    out.extend(message.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
    out.extend_from_slice(b"\r\n");
}

/// Appends `:N\r\n`.
pub fn put_int(out: &mut Vec<u8>, n: i64) {
    put_prefixed(out, b':', n);
}

/// Appends the header of an array of `len` elements, `*LEN\r\n`.
pub fn put_array_len(out: &mut Vec<u8>, len: usize) {
    put_prefixed(out, b'*', len as i64);
}

/// Appends the header of a bulk string of `len` bytes, `$LEN\r\n`.
pub fn put_bulk_len(out: &mut Vec<u8>, len: usize) {
    put_prefixed(out, b'$', len as i64);
}

/// Appends a bulk string, `$LEN\r\nBYTES\r\n`.
pub fn put_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    put_bulk_len(out, bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends `PREFIX N \r\n`.
fn put_prefixed(out: &mut Vec<u8>, prefix: u8, n: i64) {
    out.push(prefix);
    put_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub fn put_decimal(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

/// Formats `n` in decimal into `buf` without going through `fmt` (the itoa approach:
/// digits from the right into a stack buffer) and returns the digits. Twenty bytes
/// hold every `i64`, sign included.
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
