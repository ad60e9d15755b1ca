//! The library's RESP codec (`twistor::framing::resp`), both sides of it, fed the way
//! a connection feeds it: a buffer that grows by fuzzer-chosen chunks, a parse after
//! each, a complete message dropped from the front.
//!
//! The server side, `RequestParser` (what the kv example serves with). Checked, for
//! every input:
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
//!
//! The client side, `Decoder`, on the same bytes and chunking, with the default limits
//! and with small ones the fuzzer can reach:
//! - the values and the error, if any, are the same at the fuzzer's chunking, whole,
//!   and byte by byte (short inputs);
//! - a value took at least one byte and at most `max_value_bytes`; its nesting, its
//!   aggregates and its strings are within the limits;
//! - a value's encoding decodes, whole, to a value with the same encoding (values are
//!   compared by encoding: a double may be NaN).

use super::fuzz_input::{cut, Input};
use twistor::framing::resp::{
    DecodeError, Decoder, Limits, RequestError as ProtocolError, RequestParser as Parser, Value,
    MAX_BULK_BYTES, MAX_INLINE_BYTES, MAX_MULTIBULK_LEN,
};

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

/// The encoding of each value decoded; the error that ended the run, or how many
/// bytes were left waiting.
type ValueRun = (Vec<Vec<u8>>, Result<usize, DecodeError>);

/// Limits small enough for the fuzzer to reach each of them.
const SMALL: Limits = Limits {
    max_bulk_bytes: 64,
    max_elements: 8,
    max_depth: 4,
    max_line_bytes: 32,
    max_value_bytes: 512,
};

/// Feeds `chunks` to one decoder as the `RespReceiver` does.
fn run_values(chunks: &[&[u8]], limits: Limits) -> ValueRun {
    let mut decoder = Decoder::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut values = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&buf) {
                Ok(Some((value, len))) => {
                    assert!(len > 0 && len <= buf.len(), "value of {len} bytes");
                    assert!(len <= limits.max_value_bytes, "value over max_value_bytes");
                    check_value(&value, &limits);
                    values.push(value.to_bytes());
                    buf.drain(..len);
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= limits.max_value_bytes,
                        "a value over the limit is waited for"
                    );
                    break;
                }
                Err(e) => return (values, Err(e)),
            }
        }
    }
    (values, Ok(buf.len()))
}

/// The nesting of `value`: frames the decoder opened for it.
fn depth(value: &Value) -> usize {
    let items: Vec<&Value> = match value {
        Value::Array(v) | Value::Set(v) | Value::Push(v) => v.iter().collect(),
        Value::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Attribute { attributes, value } => {
            let inner = attributes.iter().flat_map(|(k, v)| [k, v]);
            return 1 + inner.chain([&**value]).map(depth).max().unwrap_or(0);
        }
        _ => return 0,
    };
    match items.iter().map(|v| depth(v)).max() {
        Some(d) => 1 + d,
        None => 0,
    }
}

/// Within the limits, and its encoding decodes back to the same encoding.
fn check_value(value: &Value, limits: &Limits) {
    assert!(
        depth(value) <= limits.max_depth,
        "nested too deep: {value:?}"
    );
    fn sizes(v: &Value, limits: &Limits) {
        match v {
            Value::Bulk(b) | Value::BlobError(b) => assert!(b.len() <= limits.max_bulk_bytes),
            Value::Verbatim { text, .. } => assert!(text.len() + 4 <= limits.max_bulk_bytes),
            Value::Array(items) | Value::Set(items) | Value::Push(items) => {
                assert!(items.len() <= limits.max_elements);
                items.iter().for_each(|i| sizes(i, limits));
            }
            Value::Map(pairs) => {
                assert!(pairs.len() <= limits.max_elements);
                pairs.iter().for_each(|(k, v)| {
                    sizes(k, limits);
                    sizes(v, limits)
                });
            }
            Value::Attribute { attributes, value } => {
                assert!(attributes.len() <= limits.max_elements);
                attributes.iter().for_each(|(k, v)| {
                    sizes(k, limits);
                    sizes(v, limits)
                });
                sizes(value, limits);
            }
            _ => {}
        }
    }
    sizes(value, limits);
    let encoded = value.to_bytes();
    // Re-encoding may lengthen a line (a double's digits), so decode it unbounded.
    let mut decoder = Decoder::new(Limits {
        max_line_bytes: usize::MAX,
        max_value_bytes: usize::MAX,
        ..*limits
    });
    let (again, len) = decoder
        .decode(&encoded)
        .expect("a value's encoding decodes")
        .expect("a value's encoding is whole");
    assert_eq!(len, encoded.len(), "a value's encoding has bytes left");
    assert_eq!(again.to_bytes(), encoded, "encode and decode disagree");
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
    for limits in [Limits::default(), SMALL] {
        let at_once = run_values(&whole, limits);
        assert_eq!(
            run_values(&chunks, limits),
            at_once,
            "the decoded values depend on the chunking"
        );
        if payload.len() <= 2048 {
            let bytes: Vec<&[u8]> = payload.chunks(1).collect();
            assert_eq!(
                run_values(&bytes, limits),
                at_once,
                "the decoded values differ byte by byte"
            );
        }
    }
}
