//! The upload example's header line (`NAME|SIZE\n`), parsed by the example's own
//! `parse_header` (extracted from `examples/upload.rs` by `fuzz/build.rs`) and framed
//! the way the example frames it: a `LineParser` cutting at `\n` with the example's
//! 4 KiB limit, raw mode for the file's bytes, the bytes after the file handed back
//! with `set_line_mode(rest)`, and reading paused while each file is finished.
//!
//! Checked, for every input:
//! - `parse_header` agrees with a reference written from the example's documentation
//!   (a trailing `\r` stripped; NAME before the first `|`, 1 to 255 bytes of valid
//!   UTF-8, without `/`, `\` or control characters (C0, DEL, C1), not starting with `.`
//!   or `-`, not starting or ending with a space; SIZE all ASCII digits, fitting in a
//!   u64, at most `max_size`), on arbitrary bytes and on every line of the input; a
//!   refusal's reason is one of the documented ones, and plain ASCII (it is sent to the
//!   client, so it never echoes the name);
//! - the stream of headers and file bytes, framed as the example frames it, is the
//!   same at the fuzzer's chunking, byte by byte (short inputs) and as the reference
//!   reads the whole input: no header is lost, split or read from inside a file.

use twistor::framing::{LineEvent, LineParser};

use super::fuzz_input::{cut, Input};
use super::upload_header::{parse, MAX_HEADER_BYTES, MAX_NAME_BYTES};

const MAX_PAYLOAD: usize = 3 * MAX_HEADER_BYTES;

/// What the connection sees: a header (its NAME and SIZE, or refused), file bytes
/// (consecutive pieces merged), an overlong header line.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Header(Option<(Vec<u8>, u64)>),
    File(usize),
    TooLong,
}

fn push_file(seen: &mut Vec<Seen>, n: usize) {
    if n == 0 {
        return;
    }
    if let Some(Seen::File(m)) = seen.last_mut() {
        *m += n;
    } else {
        seen.push(Seen::File(n));
    }
}

/// The header rules, written from the example's documentation.
fn reference(line: &[u8], max_size: u64) -> Option<(Vec<u8>, u64)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bar = line.iter().position(|&b| b == b'|')?;
    let (name, size) = (&line[..bar], &line[bar + 1..]);
    if !plain_name(name) || size.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &c in size {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    (value <= max_size).then(|| (name.to_vec(), value))
}

/// NAME is a plain file name, as EXAMPLES.md defines one.
fn plain_name(name: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(name) else {
        return false;
    };
    // C0 controls, DEL, and the C1 controls U+0080 to U+009F.
    let control = |c: char| matches!(u32::from(c), 0..=0x1f | 0x7f..=0x9f);
    !text.is_empty()
        && text.len() <= MAX_NAME_BYTES
        && !text.chars().any(|c| control(c) || matches!(c, '/' | '\\' | '|'))
        && !text.starts_with(['.', '-', ' '])
        && !text.ends_with(' ')
}

/// The example's parser, checked against the reference.
fn parse_checked(line: &[u8], max_size: u64) -> Option<(Vec<u8>, u64)> {
    let expected = reference(line, max_size);
    match parse(line, max_size) {
        Ok(header) => {
            assert_eq!(Some(&header), expected.as_ref(), "accepted {line:?}");
            Some(header)
        }
        Err(reason) => {
            assert_eq!(expected, None, "refused {line:?}: {reason}");
            assert!(
                [
                    "bad header: expected NAME|SIZE",
                    "bad name: ",
                    "size is not a number",
                    "size is over the limit of ",
                ]
                .iter()
                .any(|known| reason.starts_with(known)),
                "an undocumented reason: {reason}"
            );
            assert!(
                reason.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                "a reason that is not plain ASCII: {reason:?}"
            );
            None
        }
    }
}

/// The stream, framed by a `LineParser` as the example's `LineReceiver` frames it.
fn framed(chunks: &[&[u8]], max_size: u64) -> Vec<Seen> {
    let mut parser = LineParser::new(b"\n", MAX_HEADER_BYTES);
    let mut seen = Vec::new();
    // Bytes of the current file still to come; `None` between files.
    let mut file: Option<u64> = None;
    for chunk in chunks.iter().copied().chain([&[][..]]) {
        let mut next = chunk;
        // Each pass is one feed; a pause (a file finished) ends it, and the next pass
        // is the resume (an empty feed), as `reading_resumed` does.
        loop {
            let mut paused = false;
            let mut feed = parser.feed(next);
            next = &[];
            while let Some((event, mut ctl)) = feed.next_event() {
                match event {
                    LineEvent::Line(line) => {
                        assert!(file.is_none(), "a line in the middle of a file");
                        let Some((name, size)) = parse_checked(line, max_size) else {
                            seen.push(Seen::Header(None));
                            return seen; // `error: ...` and closed
                        };
                        seen.push(Seen::Header(Some((name, size))));
                        if size > 0 {
                            ctl.set_raw_mode();
                            file = Some(size);
                        } else {
                            paused = true; // the empty file is finished on the pool
                        }
                    }
                    LineEvent::Raw(data) => {
                        let wanted = file.expect("raw data between files");
                        let mine =
                            usize::try_from(wanted).map_or(data.len(), |w| w.min(data.len()));
                        push_file(&mut seen, mine);
                        let left = wanted - mine as u64;
                        if left == 0 {
                            ctl.set_line_mode(&data[mine..]);
                            file = None;
                            paused = true;
                        } else {
                            file = Some(left);
                        }
                    }
                    LineEvent::LineTooLong(_) => {
                        seen.push(Seen::TooLong);
                        return seen;
                    }
                }
                if paused {
                    break;
                }
            }
            drop(feed);
            if !paused {
                break;
            }
        }
    }
    seen
}

/// The same stream read from the whole input at once.
fn whole(payload: &[u8], max_size: u64) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut rest = payload;
    loop {
        let line = match rest.iter().position(|&b| b == b'\n') {
            Some(i) if i <= MAX_HEADER_BYTES => &rest[..i],
            None if rest.len() <= MAX_HEADER_BYTES => return seen,
            _ => {
                seen.push(Seen::TooLong);
                return seen;
            }
        };
        rest = &rest[line.len() + 1..];
        let Some((name, size)) = reference(line, max_size) else {
            seen.push(Seen::Header(None));
            return seen;
        };
        seen.push(Seen::Header(Some((name, size))));
        let mine = usize::try_from(size).map_or(rest.len(), |s| s.min(rest.len()));
        push_file(&mut seen, mine);
        if (mine as u64) < size {
            return seen;
        }
        rest = &rest[mine..];
    }
}

/// Runs one fuzz input; panics if an invariant does not hold.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let max_size = match input.byte() % 8 {
        0 => 0,
        1 => 1,
        2 => 1000,
        3 => 1 << 30,
        4 => u64::MAX,
        _ => {
            let mut bytes = [0; 8];
            let got = input.bytes(8);
            bytes[..got.len()].copy_from_slice(got);
            u64::from_be_bytes(bytes)
        }
    };
    let sizes = input.list(16);
    let payload = input.rest(MAX_PAYLOAD);
    // The parser alone, on arbitrary bytes (a `\n` included) and on each line.
    parse_checked(payload, max_size);
    for line in payload.split(|&b| b == b'\n').take(64) {
        parse_checked(line, max_size);
    }
    let expected = whole(payload, max_size);
    assert_eq!(framed(&cut(payload, sizes), max_size), expected, "chunked");
    if payload.len() <= 1024 {
        let bytes: Vec<&[u8]> = payload.chunks(1).collect();
        assert_eq!(framed(&bytes, max_size), expected, "byte by byte");
    }
}
