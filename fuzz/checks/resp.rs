//! The kv example's RESP parser (`examples/kv/resp.rs`), fed the way the server feeds
//! it: a buffer that grows by fuzzer-chosen chunks, `parse` after each, a complete
//! request dropped from the front.
//!
//! Checked, for every input:
//! - the requests (arguments) and the error, if any, are the same at the fuzzer's
//!   chunking, with the whole input at once, and byte by byte (short inputs): the
//!   parser's resume state never changes the outcome;
//! - a complete request has a length within the buffer and not 0, and at most
//!   `MAX_MULTIBULK_LEN` arguments, each at most `MAX_BULK_BYTES` long;
//! - a multibulk request with arguments is byte for byte its own canonical encoding
//!   (`*N\r\n$len\r\narg\r\n...`: the parser accepts no other spelling of it);
//! - an inline request ends with its newline, and its arguments, encoded as a
//!   multibulk request, parse back the same;
//! - `Ok(None)` never comes for an inline line over `MAX_INLINE_BYTES` with no newline.

use super::fuzz_input::{cut, Input};
use super::resp::{Parser, ProtocolError, MAX_BULK_BYTES, MAX_INLINE_BYTES, MAX_MULTIBULK_LEN};

/// Inputs are cut here; past `MAX_INLINE_BYTES` so the inline limit can be reached.
const MAX_PAYLOAD: usize = MAX_INLINE_BYTES + 1024;

/// The arguments of each complete request; the error that ended the run, or how many
/// bytes were left waiting.
type Run = (Vec<Vec<Vec<u8>>>, Result<usize, ProtocolError>);

/// Feeds `chunks` to one parser as the kv server does.
fn run(chunks: &[&[u8]], strict: bool) -> Run {
    let mut parser = Parser::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut requests = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&buf) {
                Ok(Some(len)) => {
                    assert!(len > 0 && len <= buf.len(), "request of {len} bytes");
                    let request = &buf[..len];
                    let args: Vec<Vec<u8>> = parser
                        .args(request)
                        .to_vec()
                        .into_iter()
                        .map(<[u8]>::to_vec)
                        .collect();
                    assert!(args.len() as i64 <= MAX_MULTIBULK_LEN, "too many arguments");
                    for arg in &args {
                        assert!(arg.len() as i64 <= MAX_BULK_BYTES, "argument too long");
                    }
                    if strict {
                        check_request(request, &args);
                    }
                    requests.push(args);
                    buf.drain(..len);
                }
                Ok(None) => {
                    if buf.first().is_some_and(|&b| b != b'*') {
                        assert!(
                            buf.len() <= MAX_INLINE_BYTES || buf.contains(&b'\n'),
                            "an inline request over the limit is still waited for"
                        );
                    }
                    break;
                }
                Err(e) => return (requests, Err(e)),
            }
        }
    }
    (requests, Ok(buf.len()))
}

/// A multibulk request's bytes are exactly the encoding of its arguments; an inline
/// one re-parses the same once encoded as multibulk.
fn check_request(request: &[u8], args: &[Vec<u8>]) {
    let encoded = encode(args);
    if request[0] == b'*' {
        if args.is_empty() {
            // `*0`, `*-1`, ...: a count of zero or less, no arguments.
            assert!(
                request.ends_with(b"\n"),
                "an empty request not ended by a newline"
            );
            return;
        }
        // Counts and lengths take only canonical digits (no `+`, no leading zeros) and
        // every line ends in `\r\n`.
        assert!(
            request == encoded.as_slice(),
            "a multibulk request is not its encoding: {:?} vs {:?}",
            request.escape_ascii().to_string(),
            encoded.escape_ascii().to_string()
        );
    } else {
        assert!(
            request.ends_with(b"\n"),
            "an inline request not ended by a newline"
        );
        if args.is_empty() {
            return;
        }
        let mut parser = Parser::default();
        let len = parser
            .parse(&encoded)
            .expect("the encoding of an inline request parses")
            .expect("the encoding of an inline request is complete");
        assert_eq!(len, encoded.len());
        let again: Vec<&[u8]> = parser.args(&encoded).to_vec();
        assert_eq!(again, args.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }
}

fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Runs one fuzz input; panics if an invariant does not hold.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let sizes = input.list(16);
    let payload = input.rest(MAX_PAYLOAD);
    let chunks = cut(payload, sizes);
    let whole: Vec<&[u8]> = [payload].into_iter().filter(|c| !c.is_empty()).collect();
    let at_once = run(&whole, true);
    assert_eq!(
        run(&chunks, false),
        at_once,
        "the outcome depends on the chunking"
    );
    if payload.len() <= 2048 {
        let bytes: Vec<&[u8]> = payload.chunks(1).collect();
        assert_eq!(
            run(&bytes, false),
            at_once,
            "the outcome differs byte by byte"
        );
    }
}
