//! The `kv` example (a Redis-protocol server), tested from outside and from inside.
//!
//! From outside: the example is built once, started as a real process on
//! `127.0.0.1:0`, and driven with the `redis` crate (as an application would) and with
//! raw bytes (for exact replies, inline commands and protocol errors), in the manner of
//! mini-redis's `tests/server.rs`. Every blocking step has a watchdog, so a broken
//! server fails a test instead of hanging it, and the child is killed on drop.
//!
//! From inside: the pure parts, the RESP parser (`examples/kv/resp.rs`) and the key
//! space (`examples/kv/db.rs`), are included here with `#[path]` (tests inside an
//! example are not run by `cargo test`). The parser is fed at every split point; the
//! key space is given made-up instants, so expiry is tested without waiting.

#[path = "../examples/kv/resp.rs"]
mod resp;

// `db.rs` finds the parser's helpers at `crate::resp`, as in the example.
#[path = "../examples/kv/db.rs"]
#[allow(dead_code)]
mod db;

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use common::example::{self, read_until_closed, run_example, Listening};

/// How long any single step may block before the test fails: generous, since it only
/// catches a hung server and never decides a passing test.
const WATCHDOG: Duration = Duration::from_secs(10);

// ----- harness -----

/// A running kv server, killed on drop so that none outlives its test.
struct Server {
    ex: Listening,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts the server on a free loopback port with extra flags, and waits for its
    /// `listening on ADDR` line.
    fn start_with(extra: &[&str]) -> Server {
        let ex = example::serve("kv", "127.0.0.1:0", extra);
        let addr = ex.addr();
        Server { ex, addr }
    }

    /// A client of the `redis` crate, with the watchdog as its timeouts.
    fn redis(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.addr)).expect("redis url");
        let con = client
            .get_connection_with_timeout(WATCHDOG)
            .expect("redis connect");
        con.set_read_timeout(Some(WATCHDOG)).unwrap();
        con.set_write_timeout(Some(WATCHDOG)).unwrap();
        con
    }

    /// A raw socket, for exact bytes.
    fn raw(&self) -> Raw {
        let stream = common::connect(self.addr);
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }
}

/// A raw connection to the server.
struct Raw {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads one whole RESP2 reply and returns its bytes as they came.
    fn reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.read_value(&mut out);
        out
    }

    fn read_value(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        let n = self.reader.read_until(b'\n', out).expect("read reply");
        assert!(n > 0, "connection closed while a reply was expected");
        let line = &out[start..];
        assert!(line.ends_with(b"\r\n"), "unterminated reply line {line:?}");
        let kind = line[0];
        let len = || -> i64 {
            std::str::from_utf8(&line[1..line.len() - 2])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad length in {line:?}"))
        };
        match kind {
            b'+' | b'-' | b':' => {}
            b'$' => {
                let len = len();
                if len >= 0 {
                    let mut body = vec![0; len as usize + 2];
                    self.reader.read_exact(&mut body).expect("read bulk");
                    out.extend_from_slice(&body);
                }
            }
            b'*' => {
                for _ in 0..len().max(0) {
                    self.read_value(out);
                }
            }
            _ => panic!("not a RESP2 reply: {:?}", String::from_utf8_lossy(line)),
        }
    }

    /// Sends `request` and reads one reply.
    fn ask(&mut self, request: &[u8]) -> Vec<u8> {
        self.send(request);
        self.reply()
    }

    /// Asserts that the server closes the connection without sending anything more.
    /// A reset counts as a close: a server that closes with unread input in its socket
    /// makes the kernel send RST instead of FIN.
    fn expect_closed(&mut self) {
        let rest = read_until_closed(&mut self.reader);
        assert!(
            rest.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// Encodes a request the way client libraries do: a multibulk of bulk strings.
fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Splits a command line on spaces and encodes it as a multibulk request.
fn req(line: &str) -> Vec<u8> {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    multibulk(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` and returns its server error as `(code, detail)`.
fn server_error(con: &mut redis::Connection, cmd: &redis::Cmd) -> (String, String) {
    let err = cmd
        .query::<redis::Value>(con)
        .expect_err("the command should have failed");
    (
        err.code().unwrap_or_default().to_owned(),
        err.detail().unwrap_or_default().to_owned(),
    )
}

/// Polls `done` until it holds, failing after the watchdog. For effects that come
/// with time (expiry); the poll interval only bounds how soon they are noticed.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within the watchdog");
        thread::sleep(Duration::from_millis(5));
    }
}

// ----- the parser, from inside -----

/// Feeds `chunks` to a parser the way the server does (bytes kept from the start of
/// the pending request) and returns every request's arguments, or the first error.
fn parse_chunks(chunks: &[&[u8]]) -> Result<Vec<Vec<Vec<u8>>>, resp::ProtocolError> {
    let mut parser = resp::Parser::default();
    let mut pending = Vec::new();
    let mut requests = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(len) = parser.parse(&pending[start..])? {
            let args = parser.args(&pending[start..start + len]);
            if !args.is_empty() {
                requests.push(args.to_vec().into_iter().map(<[u8]>::to_vec).collect());
            }
            start += len;
        }
        pending.drain(..start);
    }
    Ok(requests)
}

fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, resp::ProtocolError> {
    parse_chunks(&[input])
}

fn owned(requests: &[&[&str]]) -> Vec<Vec<Vec<u8>>> {
    requests
        .iter()
        .map(|r| r.iter().map(|a| a.as_bytes().to_vec()).collect())
        .collect()
}

/// Where to split `len` bytes in two: everywhere for short inputs; for long ones
/// (where every split would cost quadratic time) both ends and a sample between.
fn split_points(len: usize) -> Vec<usize> {
    if len <= 4096 {
        return (0..=len).collect();
    }
    let mut points: Vec<usize> = (0..64).chain(len - 64..=len).collect();
    points.extend((64..len - 64).step_by(len / 61));
    points
}

/// Asserts that `input` parses to `expected`, in one piece, byte by byte, and split in
/// two at every point.
fn check(input: &[u8], expected: &[&[&str]]) {
    let expected = owned(expected);
    let shown = text(&input[..input.len().min(60)]);
    assert!(parse_all(input).unwrap() == expected, "whole: {shown:?}");
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert!(
        parse_chunks(&bytes).unwrap() == expected,
        "byte by byte: {shown:?}"
    );
    for split in split_points(input.len()) {
        let (a, b) = input.split_at(split);
        assert!(
            parse_chunks(&[a, b]).unwrap() == expected,
            "split at {split}: {shown:?}"
        );
    }
}

/// Asserts that `input` is refused with `message`, whole, byte by byte, and however
/// it is split in two.
fn check_error(input: &[u8], message: &str) {
    let shown = text(&input[..input.len().min(60)]);
    let refused = |result: Result<_, resp::ProtocolError>| match result {
        Ok(_) => "accepted".to_owned(),
        Err(e) => e.to_string(),
    };
    assert_eq!(refused(parse_all(input)), message, "whole: {shown:?}");
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        refused(parse_chunks(&bytes)),
        message,
        "byte by byte: {shown:?}"
    );
    for split in split_points(input.len()) {
        let (a, b) = input.split_at(split);
        assert_eq!(
            refused(parse_chunks(&[a, b])),
            message,
            "split at {split}: {shown:?}"
        );
    }
}

#[test]
fn parser_reads_multibulk_and_inline_requests() {
    check(b"*1\r\n$4\r\nPING\r\n", &[&["PING"]]);
    check(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", &[&["GET", "k"]]);
    check(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", &[&["ECHO", ""]]);
    // Binary-safe: CR, LF and NUL inside a bulk string are data.
    check(
        b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\n\0\r\n",
        &[&["ECHO", "a\r\n\0"]],
    );
    check(b"PING\r\n", &[&["PING"]]);
    check(b"SET  k   v\r\n", &[&["SET", "k", "v"]]);
    check(b"GET k\n", &[&["GET", "k"]]);
    // Empty requests are skipped, as Redis does.
    check(b"\r\n\n*0\r\n*-1\r\nPING\r\n", &[&["PING"]]);
}

#[test]
fn parser_gives_the_same_requests_at_every_split_point_of_a_pipeline() {
    let mut pipeline = Vec::new();
    pipeline.extend_from_slice(&req("SET key value"));
    pipeline.extend_from_slice(b"GET key\r\n");
    pipeline.extend_from_slice(&multibulk(&[b"ECHO", b"with\r\nnewline"]));
    pipeline.extend_from_slice(b"\r\n");
    pipeline.extend_from_slice(b"SET 'a b' \"c\\x41\"\r\n");
    pipeline.extend_from_slice(&multibulk(&[b"MSET", b"a", b"", b"b", &[b'x'; 300]]));
    pipeline.extend_from_slice(b"*0\r\n");
    pipeline.extend_from_slice(&req("PING"));
    let big = "x".repeat(300);
    check(
        &pipeline,
        &[
            &["SET", "key", "value"],
            &["GET", "key"],
            &["ECHO", "with\r\nnewline"],
            &["SET", "a b", "cA"],
            &["MSET", "a", "", "b", &big],
            &["PING"],
        ],
    );
}

#[test]
fn parser_follows_redis_inline_quoting() {
    check(b"SET k \"a b\"\r\n", &[&["SET", "k", "a b"]]);
    check(b"SET k 'a b'\r\n", &[&["SET", "k", "a b"]]);
    check(
        b"SET k \"\\n\\r\\t\\x41\\\"\"\r\n",
        &[&["SET", "k", "\n\r\tA\""]],
    );
    check(b"SET k 'it\\'s'\r\n", &[&["SET", "k", "it's"]]);
    check(b"SET k 'no\\nescape'\r\n", &[&["SET", "k", "no\\nescape"]]);
    check(b"SET k a\"b c\"\r\n", &[&["SET", "k", "ab c"]]);
    check(b"SET k \"\"\r\n", &[&["SET", "k", ""]]);
    check_error(
        b"SET k \"open\r\n",
        "Protocol error: unbalanced quotes in request",
    );
    check_error(
        b"SET k 'open\r\n",
        "Protocol error: unbalanced quotes in request",
    );
    check_error(
        b"SET k \"a\"b\r\n",
        "Protocol error: unbalanced quotes in request",
    );
}

#[test]
fn parser_refuses_malformed_requests_with_redis_wording() {
    check_error(b"*abc\r\n", "Protocol error: invalid multibulk length");
    check_error(b"*01\r\n", "Protocol error: invalid multibulk length");
    check_error(b"*+1\r\n", "Protocol error: invalid multibulk length");
    check_error(b"*1\n", "Protocol error: invalid multibulk length");
    check_error(b"*1\r\nx\r\n", "Protocol error: expected '$', got 'x'");
    check_error(b"*1\r\n\r\n", "Protocol error: expected '$', got ' '");
    check_error(b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length");
    check_error(b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length");
    check_error(b"*1\r\n$1\nx\r\n", "Protocol error: invalid bulk length");
    check_error(
        b"*1\r\n$3\r\nabcd\r\n",
        "Protocol error: expected '\\r\\n' after bulk string",
    );
    // The reply text quotes a non-ASCII byte raw, as Redis does.
    let err = parse_all(b"*1\r\n\xff\r\n").unwrap_err();
    assert_eq!(
        err.reply_text(),
        b"ERR Protocol error: expected '$', got '\xff'"
    );
}

#[test]
fn parser_refuses_lengths_over_the_limits_from_the_header_alone() {
    let mb = resp::MAX_MULTIBULK_LEN;
    let bulk = resp::MAX_BULK_BYTES;
    // At the limits, the header is accepted and the parser waits for the body.
    assert_eq!(parse_all(format!("*{mb}\r\n").as_bytes()), Ok(vec![]));
    let header = format!("*1\r\n${bulk}\r\n");
    assert_eq!(resp::Parser::default().parse(header.as_bytes()), Ok(None));
    // One over, the header alone is refused: nothing is buffered for the body.
    check_error(
        format!("*{}\r\n", mb + 1).as_bytes(),
        "Protocol error: invalid multibulk length",
    );
    check_error(
        format!("*1\r\n${}\r\n", bulk + 1).as_bytes(),
        "Protocol error: invalid bulk length",
    );
    check_error(
        b"*1\r\n$600000000\r\n",
        "Protocol error: invalid bulk length",
    );
    check_error(
        b"*99999999999999999999\r\n",
        "Protocol error: invalid multibulk length",
    );
    // Lines that never end are cut at 64 KiB.
    let long = vec![b'a'; resp::MAX_INLINE_BYTES + 1];
    check_error(&long, "Protocol error: too big inline request");
    let mut long_count = b"*".to_vec();
    long_count.extend_from_slice(&long);
    check_error(&long_count, "Protocol error: too big mbulk count string");
    let mut long_len = b"*1\r\n$".to_vec();
    long_len.extend_from_slice(&long);
    check_error(&long_len, "Protocol error: too big bulk count string");
    // An inline line may hold 64 KiB before its `\n`, its `\r` included.
    let mut line = vec![b'a'; resp::MAX_INLINE_BYTES - 1];
    line.extend_from_slice(b"\r\n");
    check(&line, &[&[&"a".repeat(resp::MAX_INLINE_BYTES - 1)]]);
    line.insert(0, b'a');
    check_error(&line, "Protocol error: too big inline request");
}

#[test]
fn integers_parse_as_strictly_as_redis() {
    let cases: &[(&str, Option<i64>)] = &[
        ("0", Some(0)),
        ("1", Some(1)),
        ("-1", Some(-1)),
        ("9223372036854775807", Some(i64::MAX)),
        ("-9223372036854775808", Some(i64::MIN)),
        ("9223372036854775808", None),
        ("-9223372036854775809", None),
        ("", None),
        ("-", None),
        ("-0", None),
        ("01", None),
        ("+1", None),
        (" 1", None),
        ("1 ", None),
        ("1.5", None),
        ("abc", None),
    ];
    for &(input, expected) in cases {
        assert_eq!(resp::parse_i64(input.as_bytes()), expected, "{input:?}");
    }
}

#[test]
fn replies_encode_as_resp2() {
    let mut out = Vec::new();
    resp::put_int(&mut out, i64::MIN);
    resp::put_int(&mut out, 0);
    resp::put_bulk(&mut out, b"hi");
    resp::put_array_len(&mut out, 2);
    resp::put_simple(&mut out, "PONG");
    resp::put_error(&mut out, b"ERR a\r\nb");
    assert_eq!(
        text(&out),
        ":-9223372036854775808\r\n:0\r\n$2\r\nhi\r\n*2\r\n+PONG\r\n-ERR a  b\r\n"
    );
    for n in [0, 7, 10, 99, -100, 123456789, i64::MAX, i64::MIN] {
        assert_eq!(resp::decimal(n, &mut [0; 20]), n.to_string().as_bytes());
    }
}

// ----- the key space, from inside -----

/// A key space and a made-up clock.
fn db_at_zero() -> (db::Db, Instant) {
    (db::Db::default(), Instant::now())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_key_is_gone_from_its_deadline_on() {
    let (mut db, t0) = db_at_zero();
    db.set(b"k", b"v", db::Ttl::At(t0 + ms(10)), t0);
    assert_eq!(db.get(b"k", t0 + ms(9)), Some(&b"v"[..]));
    assert_eq!(db.ttl(b"k", t0 + ms(4)), db::KeyTtl::Expires(ms(6)));
    assert_eq!(db.get(b"k", t0 + ms(10)), None);
    assert!(!db.exists(b"k", t0 + ms(10)));
    assert_eq!(db.ttl(b"k", t0 + ms(10)), db::KeyTtl::Missing);
    assert!(!db.del(b"k", t0 + ms(11)), "DEL of an expired key counts 0");
}

#[test]
fn writes_replace_keep_or_clear_the_deadline() {
    let (mut db, t0) = db_at_zero();
    db.set(b"k", b"1", db::Ttl::At(t0 + ms(10)), t0);
    db.set(b"k", b"2", db::Ttl::Keep, t0);
    assert_eq!(db.ttl(b"k", t0), db::KeyTtl::Expires(ms(10)));
    assert_eq!(db.incr_by(b"k", 5, t0), Ok(7));
    assert_eq!(
        db.ttl(b"k", t0),
        db::KeyTtl::Expires(ms(10)),
        "INCR keeps it"
    );
    db.set(b"k", b"3", db::Ttl::Persist, t0);
    assert_eq!(db.ttl(b"k", t0 + ms(20)), db::KeyTtl::Persistent);
    // A counter whose key expired starts again from zero, with no deadline.
    db.set(b"c", b"41", db::Ttl::At(t0 + ms(10)), t0);
    assert_eq!(db.incr_by(b"c", 1, t0 + ms(10)), Ok(1));
    assert_eq!(db.ttl(b"c", t0 + ms(20)), db::KeyTtl::Persistent);
}

#[test]
fn expire_conditions_follow_redis() {
    let (mut db, t0) = db_at_zero();
    let cond = |nx, xx, gt, lt| db::ExpireIf { nx, xx, gt, lt };
    db.set(b"k", b"v", db::Ttl::Persist, t0);
    let at = |n| t0 + ms(n);
    assert!(!db.expire(b"k", at(50), cond(false, true, false, false), t0));
    assert!(!db.expire(b"k", at(50), cond(false, false, true, false), t0));
    assert!(db.expire(b"k", at(50), cond(false, false, false, true), t0));
    assert!(!db.expire(b"k", at(60), cond(true, false, false, false), t0));
    assert!(!db.expire(b"k", at(40), cond(false, false, true, false), t0));
    assert!(db.expire(b"k", at(60), cond(false, true, true, false), t0));
    assert_eq!(db.ttl(b"k", t0), db::KeyTtl::Expires(ms(60)));
    assert!(!db.expire(b"missing", at(60), db::ExpireIf::default(), t0));
    // A deadline not after now deletes at once.
    assert!(db.expire(b"k", t0, db::ExpireIf::default(), t0));
    assert_eq!(db.len(), 0);
}

#[test]
fn the_sweep_reclaims_due_keys_soonest_first_within_its_budget() {
    let (mut db, t0) = db_at_zero();
    for i in 0..10u64 {
        db.set(
            format!("k{i}").as_bytes(),
            b"v",
            db::Ttl::At(t0 + ms(i)),
            t0,
        );
    }
    db.set(b"kept", b"v", db::Ttl::Persist, t0);
    assert!(db.sweep(t0 + ms(5), 4), "more keys are due");
    assert_eq!(db.len(), 7);
    assert!(!db.sweep(t0 + ms(5), 100), "k4 and k5 were the last due");
    assert_eq!(db.len(), 5);
    assert!(db.exists(b"k6", t0 + ms(5)));
    assert!(!db.sweep(t0 + ms(100), 100));
    assert_eq!(db.len(), 1);
    // A key whose deadline was moved is swept by the new one only.
    db.set(b"m", b"v", db::Ttl::At(t0 + ms(110)), t0);
    db.expire(b"m", t0 + ms(200), db::ExpireIf::default(), t0);
    db.sweep(t0 + ms(150), 100);
    assert!(db.exists(b"m", t0 + ms(150)));
    db.sweep(t0 + ms(200), 100);
    assert_eq!(db.len(), 1);
}

#[test]
fn counters_refuse_non_integers_and_overflow() {
    let (mut db, t0) = db_at_zero();
    db.set(b"s", b"abc", db::Ttl::Persist, t0);
    assert_eq!(db.incr_by(b"s", 1, t0), Err(db::IncrError::NotInteger));
    db.set(
        b"max",
        i64::MAX.to_string().as_bytes(),
        db::Ttl::Persist,
        t0,
    );
    assert_eq!(db.incr_by(b"max", 1, t0), Err(db::IncrError::Overflow));
    assert_eq!(db.get(b"max", t0), Some(i64::MAX.to_string().as_bytes()));
    assert_eq!(db.incr_by(b"new", -3, t0), Ok(-3));
    assert_eq!(db.get(b"new", t0), Some(&b"-3"[..]));
}

// ----- the server, from outside: commands -----

#[test]
fn ping_and_echo() {
    let server = Server::start();
    let mut con = server.redis();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let hi: String = redis::cmd("PING").arg("hi").query(&mut con).unwrap();
    assert_eq!(hi, "hi");
    let echoed: Vec<u8> = redis::cmd("ECHO").arg(b"a\r\n\0b").query(&mut con).unwrap();
    assert_eq!(echoed, b"a\r\n\0b");
}

#[test]
fn set_get_del_exists() {
    let server = Server::start();
    let mut con = server.redis();
    let ok: String = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut con).unwrap();
    assert_eq!(missing, None);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v2")
        .query(&mut con)
        .unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v2");
    let _: () = redis::cmd("SET")
        .arg("other")
        .arg("x")
        .query(&mut con)
        .unwrap();
    let n: i64 = redis::cmd("EXISTS")
        .arg("k")
        .arg("k")
        .arg("other")
        .arg("nope")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 3, "EXISTS counts a repeated key each time");
    let n: i64 = redis::cmd("DEL")
        .arg("k")
        .arg("nope")
        .arg("other")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 2);
    let n: i64 = redis::cmd("EXISTS").arg("k").query(&mut con).unwrap();
    assert_eq!(n, 0);
    // Keys and values are binary-safe.
    let _: () = redis::cmd("SET")
        .arg(b"\0\xff")
        .arg(b"\r\n")
        .query(&mut con)
        .unwrap();
    let v: Vec<u8> = redis::cmd("GET").arg(b"\0\xff").query(&mut con).unwrap();
    assert_eq!(v, b"\r\n");
}

#[test]
fn set_options_nx_xx_get_keepttl() {
    let server = Server::start();
    let mut con = server.redis();
    let set = |con: &mut redis::Connection, args: &[&str]| -> Option<String> {
        redis::cmd("SET").arg(args).query(con).unwrap()
    };
    assert_eq!(
        set(&mut con, &["k", "1", "XX"]),
        None,
        "XX on a missing key"
    );
    assert_eq!(set(&mut con, &["k", "1", "NX"]).as_deref(), Some("OK"));
    assert_eq!(
        set(&mut con, &["k", "2", "NX"]),
        None,
        "NX on a present key"
    );
    assert_eq!(set(&mut con, &["k", "3", "XX"]).as_deref(), Some("OK"));
    assert_eq!(set(&mut con, &["k", "4", "GET"]).as_deref(), Some("3"));
    assert_eq!(
        set(&mut con, &["k", "5", "NX", "GET"]).as_deref(),
        Some("4")
    );
    assert_eq!(set(&mut con, &["new", "1", "GET"]), None);
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "4", "SET NX GET on a present key did not set");

    // EX sets a deadline, a plain SET clears it, KEEPTTL keeps it.
    set(&mut con, &["t", "v", "EX", "100"]);
    let ttl: i64 = redis::cmd("TTL").arg("t").query(&mut con).unwrap();
    assert!((1..=100).contains(&ttl), "TTL after EX 100: {ttl}");
    set(&mut con, &["t", "v2", "KEEPTTL"]);
    let ttl: i64 = redis::cmd("TTL").arg("t").query(&mut con).unwrap();
    assert!((1..=100).contains(&ttl), "TTL after KEEPTTL: {ttl}");
    set(&mut con, &["t", "v3"]);
    let ttl: i64 = redis::cmd("TTL").arg("t").query(&mut con).unwrap();
    assert_eq!(ttl, -1);
    set(&mut con, &["t", "v", "PX", "100000"]);
    let pttl: i64 = redis::cmd("PTTL").arg("t").query(&mut con).unwrap();
    assert!(
        (1..=100_000).contains(&pttl),
        "PTTL after PX 100000: {pttl}"
    );
    // An absolute deadline in the past stores nothing.
    assert_eq!(
        set(&mut con, &["t", "v", "EXAT", "1"]).as_deref(),
        Some("OK")
    );
    let n: i64 = redis::cmd("EXISTS").arg("t").query(&mut con).unwrap();
    assert_eq!(n, 0);

    for (args, detail) in [
        (&["k", "v", "NX", "XX"][..], "syntax error"),
        (&["k", "v", "EX"], "syntax error"),
        (&["k", "v", "EX", "1", "PX", "1"], "syntax error"),
        (&["k", "v", "KEEPTTL", "EX", "1"], "syntax error"),
        (&["k", "v", "BOGUS"], "syntax error"),
        (
            &["k", "v", "EX", "0"],
            "invalid expire time in 'set' command",
        ),
        (
            &["k", "v", "PX", "-5"],
            "invalid expire time in 'set' command",
        ),
        (
            &["k", "v", "EX", "9223372036854775807"],
            "invalid expire time in 'set' command",
        ),
        (
            &["k", "v", "EX", "ten"],
            "value is not an integer or out of range",
        ),
    ] {
        let (code, got) = server_error(&mut con, redis::cmd("SET").arg(args));
        assert_eq!(
            (code.as_str(), got.as_str()),
            ("ERR", detail),
            "SET {args:?}"
        );
    }
}

#[test]
fn a_key_set_with_px_expires() {
    let server = Server::start();
    let mut con = server.redis();
    let _: () = redis::cmd("SET")
        .arg(&["short", "v", "PX", "50"])
        .query(&mut con)
        .unwrap();
    eventually("the key set with PX 50 expiring", || {
        redis::cmd("EXISTS")
            .arg("short")
            .query::<i64>(&mut con)
            .unwrap()
            == 0
    });
    let v: Option<String> = redis::cmd("GET").arg("short").query(&mut con).unwrap();
    assert_eq!(v, None);
    let ttl: i64 = redis::cmd("TTL").arg("short").query(&mut con).unwrap();
    assert_eq!(ttl, -2);
}

#[test]
fn expired_keys_are_reclaimed_without_being_read() {
    let server = Server::start();
    let mut con = server.redis();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET")
            .arg(format!("k{i}"))
            .arg("v")
            .arg("PX")
            .arg(1)
            .ignore();
    }
    pipe.cmd("SET").arg("kept").arg("v").ignore();
    pipe.exec(&mut con).unwrap();
    // DBSIZE counts expired keys until they are reclaimed, as in Redis, so only the
    // active-expiry timer can bring it down to the one key without a deadline.
    eventually("the expiry sweep reclaiming 500 keys", || {
        redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap() == 1
    });
}

#[test]
fn expire_and_ttl() {
    let server = Server::start();
    let mut con = server.redis();
    let expire = |con: &mut redis::Connection, args: &[&str]| -> i64 {
        redis::cmd("EXPIRE").arg(args).query(con).unwrap()
    };
    let ttl = |con: &mut redis::Connection, key: &str| -> i64 {
        redis::cmd("TTL").arg(key).query(con).unwrap()
    };
    assert_eq!(expire(&mut con, &["missing", "10"]), 0);
    assert_eq!(ttl(&mut con, "missing"), -2);
    let _: () = redis::cmd("SET").arg(&["k", "v"]).query(&mut con).unwrap();
    assert_eq!(ttl(&mut con, "k"), -1);
    assert_eq!(
        expire(&mut con, &["k", "100", "XX"]),
        0,
        "XX without a deadline"
    );
    assert_eq!(
        expire(&mut con, &["k", "100", "GT"]),
        0,
        "GT without a deadline"
    );
    assert_eq!(expire(&mut con, &["k", "100", "NX"]), 1);
    assert_eq!(
        expire(&mut con, &["k", "200", "NX"]),
        0,
        "NX with a deadline"
    );
    assert_eq!(
        expire(&mut con, &["k", "50", "GT"]),
        0,
        "GT with an earlier one"
    );
    assert_eq!(
        expire(&mut con, &["k", "300", "LT"]),
        0,
        "LT with a later one"
    );
    assert_eq!(expire(&mut con, &["k", "1000", "GT", "XX"]), 1);
    let t = ttl(&mut con, "k");
    assert!((901..=1000).contains(&t), "TTL after EXPIRE 1000: {t}");
    assert_eq!(expire(&mut con, &["k", "1000"]), 1);
    // A deadline that is not in the future deletes the key at once.
    assert_eq!(expire(&mut con, &["k", "0"]), 1);
    assert_eq!(ttl(&mut con, "k"), -2);

    for (args, detail) in [
        (&["k", "x"][..], "value is not an integer or out of range"),
        (
            &["k", "9223372036854775807"],
            "invalid expire time in 'expire' command",
        ),
        (
            &["k", "1", "NX", "XX"],
            "NX and XX, GT or LT options at the same time are not compatible",
        ),
        (
            &["k", "1", "GT", "LT"],
            "GT and LT options at the same time are not compatible",
        ),
        (&["k", "1", "FOO"], "Unsupported option FOO"),
    ] {
        let (code, got) = server_error(&mut con, redis::cmd("EXPIRE").arg(args));
        assert_eq!(
            (code.as_str(), got.as_str()),
            ("ERR", detail),
            "EXPIRE {args:?}"
        );
    }
}

#[test]
fn counters_and_their_errors() {
    let server = Server::start();
    let mut con = server.redis();
    let n: i64 = redis::cmd("INCR").arg("c").query(&mut con).unwrap();
    assert_eq!(n, 1, "INCR on a missing key starts at 0");
    let n: i64 = redis::cmd("INCRBY")
        .arg(&["c", "41"])
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 42);
    let n: i64 = redis::cmd("DECR").arg("c").query(&mut con).unwrap();
    assert_eq!(n, 41);
    let n: i64 = redis::cmd("DECRBY")
        .arg(&["c", "50"])
        .query(&mut con)
        .unwrap();
    assert_eq!(n, -9);
    let v: String = redis::cmd("GET").arg("c").query(&mut con).unwrap();
    assert_eq!(v, "-9", "counters are stored as decimal strings");
    // A counter keeps its deadline.
    let _: () = redis::cmd("EXPIRE")
        .arg(&["c", "100"])
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("INCR").arg("c").query(&mut con).unwrap();
    let ttl: i64 = redis::cmd("TTL").arg("c").query(&mut con).unwrap();
    assert!(ttl > 0, "INCR dropped the deadline: TTL {ttl}");

    let not_integer = "value is not an integer or out of range";
    let overflow = "increment or decrement would overflow";
    let _: () = redis::cmd("MSET")
        .arg(&[
            "text",
            "abc",
            "max",
            "9223372036854775807",
            "min",
            "-9223372036854775808",
        ])
        .arg(&["padded", " 1", "zero", "01"])
        .query(&mut con)
        .unwrap();
    for (cmd, args, detail) in [
        ("INCR", &["text"][..], not_integer),
        ("INCR", &["padded"], not_integer),
        ("INCR", &["zero"], not_integer),
        ("INCRBY", &["c", "x"], not_integer),
        ("INCRBY", &["c", "1.5"], not_integer),
        ("INCRBY", &["c", "99999999999999999999"], not_integer),
        ("INCR", &["max"], overflow),
        ("DECR", &["min"], overflow),
        ("INCRBY", &["min", "-1"], overflow),
        (
            "DECRBY",
            &["c", "-9223372036854775808"],
            "decrement would overflow",
        ),
    ] {
        let (code, got) = server_error(&mut con, redis::cmd(cmd).arg(args));
        assert_eq!(
            (code.as_str(), got.as_str()),
            ("ERR", detail),
            "{cmd} {args:?}"
        );
    }
    let v: String = redis::cmd("GET").arg("max").query(&mut con).unwrap();
    assert_eq!(v, "9223372036854775807", "a failed INCR changed the value");
}

#[test]
fn mset_and_mget() {
    let server = Server::start();
    let mut con = server.redis();
    let ok: String = redis::cmd("MSET")
        .arg(&["a", "1", "b", "2", "a", "3"])
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["a", "nope", "b"])
        .query(&mut con)
        .unwrap();
    assert_eq!(got, [Some("3".into()), None, Some("2".into())]);
    let (code, detail) = server_error(&mut con, redis::cmd("MSET").arg(&["a", "1", "b"]));
    assert_eq!(
        (code.as_str(), detail.as_str()),
        ("ERR", "wrong number of arguments for 'mset' command")
    );
}

#[test]
fn dbsize_and_flushall() {
    let server = Server::start();
    let mut con = server.redis();
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 0);
    let _: () = redis::cmd("MSET")
        .arg(&["a", "1", "b", "2", "c", "3"])
        .query(&mut con)
        .unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 3);
    let ok: String = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 0);
    let ok: String = redis::cmd("FLUSHALL").arg("ASYNC").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let (code, detail) = server_error(&mut con, redis::cmd("FLUSHALL").arg("NOW"));
    assert_eq!((code.as_str(), detail.as_str()), ("ERR", "syntax error"));
}

#[test]
fn the_key_space_is_shared_by_every_connection() {
    let server = Server::start();
    let mut a = server.redis();
    let mut b = server.redis();
    let _: () = redis::cmd("SET")
        .arg(&["shared", "yes"])
        .query(&mut a)
        .unwrap();
    let v: String = redis::cmd("GET").arg("shared").query(&mut b).unwrap();
    assert_eq!(v, "yes");
}

#[test]
fn start_up_commands_of_redis_cli_and_redis_benchmark() {
    let server = Server::start();
    let mut raw = server.raw();
    // redis-benchmark reads the second element of each.
    assert_eq!(
        text(&raw.ask(&req("CONFIG GET save"))),
        "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
    assert_eq!(
        text(&raw.ask(&req("CONFIG GET appendonly"))),
        "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    );
    assert_eq!(text(&raw.ask(&req("CONFIG GET nosuch"))), "*0\r\n");
    // Interactive redis-cli asks for COMMAND DOCS; an empty table is a valid answer.
    assert_eq!(text(&raw.ask(&req("COMMAND DOCS"))), "*0\r\n");
    assert_eq!(text(&raw.ask(&req("SELECT 0"))), "+OK\r\n");
    assert_eq!(
        text(&raw.ask(&req("SELECT 1"))),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        text(&raw.ask(&req("HELLO 3"))),
        "-NOPROTO unsupported protocol version\r\n"
    );
    let hello = text(&raw.ask(&req("HELLO 2 SETNAME me")));
    assert!(
        hello.starts_with("*14\r\n$6\r\nserver\r\n") && hello.contains("$5\r\nproto\r\n:2\r\n"),
        "HELLO 2: {hello:?}"
    );
    assert_eq!(text(&raw.ask(&req("CLIENT GETNAME"))), "$2\r\nme\r\n");
    assert_eq!(text(&raw.ask(&req("CLIENT SETNAME other"))), "+OK\r\n");
    assert_eq!(text(&raw.ask(&req("CLIENT GETNAME"))), "$5\r\nother\r\n");
    assert_eq!(
        text(&raw.ask(&req("CLIENT SETINFO LIB-NAME redis-rs"))),
        "+OK\r\n"
    );
    assert!(text(&raw.ask(&req("CLIENT ID"))).starts_with(':'));

    // COMMAND describes every command, in Redis 7's layout.
    let mut con = server.redis();
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    let all: Vec<redis::Value> = redis::cmd("COMMAND").query(&mut con).unwrap();
    assert_eq!(all.len() as i64, count);
    let info: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg(&["INFO", "get", "nosuch"])
        .query(&mut con)
        .unwrap();
    assert_eq!(info.len(), 2);
    let redis::Value::Array(get) = &info[0] else {
        panic!("COMMAND INFO get: {info:?}");
    };
    assert_eq!(get.len(), 10);
    assert_eq!(get[0], redis::Value::BulkString(b"get".to_vec()));
    assert_eq!(get[1], redis::Value::Int(2));
    assert_eq!(info[1], redis::Value::Nil);
}

#[test]
fn errors_use_redis_wording() {
    let server = Server::start();
    let mut raw = server.raw();
    let long = "x".repeat(200);
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            req("GET"),
            "-ERR wrong number of arguments for 'get' command".into(),
        ),
        (
            req("get a b"),
            "-ERR wrong number of arguments for 'get' command".into(),
        ),
        (
            req("SET k"),
            "-ERR wrong number of arguments for 'set' command".into(),
        ),
        (
            req("PING a b"),
            "-ERR wrong number of arguments for 'ping' command".into(),
        ),
        (
            req("DBSIZE x"),
            "-ERR wrong number of arguments for 'dbsize' command".into(),
        ),
        (
            req("CONFIG GET"),
            "-ERR wrong number of arguments for 'config|get' command".into(),
        ),
        (
            req("FOO"),
            "-ERR unknown command 'FOO', with args beginning with: ".into(),
        ),
        (
            req("FOO a b"),
            "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' ".into(),
        ),
        (
            multibulk(&[b"foo", b"a\r\nb"]),
            "-ERR unknown command 'foo', with args beginning with: 'a  b' ".into(),
        ),
        // The quoted arguments stop at 128 bytes in all, as in Redis.
        (
            req(&format!("foo {long} more")),
            format!(
                "-ERR unknown command 'foo', with args beginning with: '{}' ",
                &long[..128]
            ),
        ),
        (
            req("CONFIG SET save x"),
            "-ERR unknown subcommand 'SET'. Try CONFIG HELP.".into(),
        ),
        (
            req("SET k v EX 0"),
            "-ERR invalid expire time in 'set' command".into(),
        ),
        (req("SET k v XX NX"), "-ERR syntax error".into()),
        (req("SET n 1"), "+OK".into()),
        (
            req("INCRBY n x"),
            "-ERR value is not an integer or out of range".into(),
        ),
        (
            req("INCRBY n 9223372036854775807"),
            "-ERR increment or decrement would overflow".into(),
        ),
        (
            req("SELECT x"),
            "-ERR value is not an integer or out of range".into(),
        ),
        (
            req("HELLO x"),
            "-ERR Protocol version is not an integer or out of range".into(),
        ),
        (
            req("HELLO 2 BOGUS"),
            "-ERR Syntax error in HELLO option 'BOGUS'".into(),
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            text(&raw.ask(&request)),
            format!("{expected}\r\n"),
            "request {:?}",
            text(&request)
        );
    }
    // None of that closed the connection.
    assert_eq!(raw.ask(b"PING\r\n"), b"+PONG\r\n");
}

// ----- the server, from outside: the wire -----

#[test]
fn a_pipeline_of_a_thousand_commands_is_answered_in_order() {
    let server = Server::start();
    let mut con = server.redis();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        match i % 3 {
            0 => pipe.cmd("INCR").arg("counter"),
            1 => pipe.cmd("SET").arg(format!("k{i}")).arg(i),
            _ => pipe.cmd("GET").arg(format!("k{}", i - 1)),
        };
    }
    let replies: Vec<redis::Value> = pipe.query(&mut con).unwrap();
    assert_eq!(replies.len(), 1000);
    for (i, reply) in replies.iter().enumerate() {
        let expected = match i % 3 {
            0 => redis::Value::Int(i as i64 / 3 + 1),
            1 => redis::Value::Okay,
            _ => redis::Value::BulkString((i - 1).to_string().into_bytes()),
        };
        assert_eq!(reply, &expected, "reply {i}");
    }
}

#[test]
fn a_pipelined_burst_in_one_write_gets_every_reply_in_order() {
    let server = Server::start();
    let mut raw = server.raw();
    let mut burst = Vec::new();
    for i in 0..2000 {
        burst.extend_from_slice(&req(&format!("ECHO {i}")));
    }
    raw.send(&burst);
    for i in 0..2000 {
        let expected = format!("${}\r\n{i}\r\n", i.to_string().len());
        assert_eq!(text(&raw.reply()), expected);
    }
}

#[test]
fn inline_commands_work() {
    let server = Server::start();
    let mut raw = server.raw();
    assert_eq!(text(&raw.ask(b"PING\r\n")), "+PONG\r\n");
    assert_eq!(text(&raw.ask(b"ping\n")), "+PONG\r\n");
    assert_eq!(
        text(&raw.ask(b"SET greeting \"hello world\"\r\n")),
        "+OK\r\n"
    );
    assert_eq!(
        text(&raw.ask(b"GET greeting\r\n")),
        "$11\r\nhello world\r\n"
    );
    // Empty lines are skipped; inline and multibulk mix in one pipeline.
    raw.send(b"\r\n\r\nINCR n\r\n");
    raw.send(&req("INCR n"));
    raw.send(b"  INCR   n  \r\n");
    for expected in [":1\r\n", ":2\r\n", ":3\r\n"] {
        assert_eq!(text(&raw.reply()), expected);
    }
}

#[test]
fn quit_answers_ok_and_closes() {
    let server = Server::start();
    let mut raw = server.raw();
    // Requests pipelined after QUIT are not served.
    raw.send(b"PING\r\nQUIT\r\nPING\r\n");
    assert_eq!(text(&raw.reply()), "+PONG\r\n");
    assert_eq!(text(&raw.reply()), "+OK\r\n");
    raw.expect_closed();

    let mut con = server.redis();
    let ok: String = redis::cmd("QUIT").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
}

#[test]
fn a_malformed_request_gets_a_protocol_error_and_the_connection_closes() {
    let server = Server::start();
    let cases: &[(&[u8], &str)] = &[
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*1\r\nx\r\n", "expected '$', got 'x'"),
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"SET k \"open\r\n", "unbalanced quotes in request"),
        (
            b"*1\r\n$3\r\nabcd\r\n",
            "expected '\\r\\n' after bulk string",
        ),
    ];
    for &(request, message) in cases {
        let mut raw = server.raw();
        // A good request first: its reply still comes, before the error.
        raw.send(b"PING\r\n");
        raw.send(request);
        assert_eq!(text(&raw.reply()), "+PONG\r\n");
        assert_eq!(
            text(&raw.reply()),
            format!("-ERR Protocol error: {message}\r\n"),
            "request {:?}",
            text(request)
        );
        raw.expect_closed();
    }
    // The server goes on serving everyone else.
    assert_eq!(server.raw().ask(b"PING\r\n"), b"+PONG\r\n");
}

#[test]
fn an_over_limit_bulk_length_is_refused_at_once() {
    let server = Server::start();
    let mut raw = server.raw();
    // No body follows: the header alone must get the answer, before any memory is
    // taken for 600 MB.
    raw.send(b"*1\r\n$600000000\r\n");
    assert_eq!(
        text(&raw.reply()),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    raw.expect_closed();
}

#[test]
fn an_over_limit_multibulk_count_is_refused_at_once() {
    let server = Server::start();
    let mut raw = server.raw();
    raw.send(b"*1048577\r\n");
    assert_eq!(
        text(&raw.reply()),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
    raw.expect_closed();
}

#[test]
fn a_too_long_inline_request_is_refused() {
    let server = Server::start();
    let mut raw = server.raw();
    raw.send(&vec![b'a'; resp::MAX_INLINE_BYTES + 1]);
    assert_eq!(
        text(&raw.reply()),
        "-ERR Protocol error: too big inline request\r\n"
    );
    raw.expect_closed();
}

#[test]
fn an_incomplete_request_over_the_query_limit_is_refused() {
    let server = Server::start_with(&["--max-query-bytes", "1000"]);
    let mut raw = server.raw();
    // A legal header announcing more than the limit, then exactly one byte more than
    // the limit in all, so that nothing is left unread when the server closes.
    let mut request = b"*1\r\n$5000\r\n".to_vec();
    request.resize(1001, b'x');
    raw.send(&request);
    assert_eq!(
        text(&raw.reply()),
        "-ERR Protocol error: query buffer limit exceeded\r\n"
    );
    raw.expect_closed();
    server
        .ex
        .wait_for_log("incomplete request over 1000 bytes; closing");
    // A complete request of the same size is fine.
    let mut raw = server.raw();
    let value = "v".repeat(900);
    assert_eq!(text(&raw.ask(&req(&format!("SET k {value}")))), "+OK\r\n");
}

#[test]
fn a_request_split_byte_by_byte_is_served() {
    let server = Server::start();
    let mut raw = server.raw();
    let mut requests = req("SET split value");
    requests.extend_from_slice(b"GET split\r\n");
    requests.extend_from_slice(&multibulk(&[b"ECHO", b"a\r\nb"]));
    for byte in &requests {
        raw.send(std::slice::from_ref(byte));
    }
    assert_eq!(text(&raw.reply()), "+OK\r\n");
    assert_eq!(text(&raw.reply()), "$5\r\nvalue\r\n");
    assert_eq!(text(&raw.reply()), "$4\r\na\r\nb\r\n");
}

#[test]
fn large_values_round_trip() {
    let server = Server::start();
    let mut con = server.redis();
    let value: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut con)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert!(got == value, "the 3 MiB value came back different");
    let both: Vec<Vec<u8>> = redis::cmd("MGET")
        .arg(&["big", "big"])
        .query(&mut con)
        .unwrap();
    assert!(both.iter().all(|v| *v == value));
}

/// A client that pipelines many requests with large replies and reads them only
/// afterwards: the server stops reading while the replies back up, and resumes as
/// they drain, losing none and reordering none.
#[test]
fn a_client_that_reads_late_gets_every_reply_in_order() {
    let server = Server::start();
    let mut raw = server.raw();
    let small = vec![b's'; 10 * 1024];
    let large = vec![b'l'; 100 * 1024];
    assert_eq!(raw.ask(&multibulk(&[b"SET", b"small", &small])), b"+OK\r\n");
    assert_eq!(raw.ask(&multibulk(&[b"SET", b"large", &large])), b"+OK\r\n");
    // About 45 MB of replies for 12 KB of requests.
    let mut burst = Vec::new();
    for i in 0..600 {
        let key: &[u8] = if i % 3 == 0 { b"large" } else { b"small" };
        burst.extend_from_slice(&multibulk(&[b"GET", key]));
        burst.extend_from_slice(&req(&format!("ECHO {i}")));
    }
    raw.send(&burst);
    for i in 0..600 {
        let value = if i % 3 == 0 { &large } else { &small };
        let reply = raw.reply();
        let mut expected = format!("${}\r\n", value.len()).into_bytes();
        expected.extend_from_slice(value);
        expected.extend_from_slice(b"\r\n");
        assert!(reply == expected, "GET reply {i} differs");
        let echo = raw.reply();
        assert_eq!(text(&echo), format!("${}\r\n{i}\r\n", i.to_string().len()));
    }
    assert_eq!(raw.ask(b"PING\r\n"), b"+PONG\r\n");
}

// ----- the process -----

#[test]
fn help_exits_zero() {
    let out = run_example("kv", &["--help"]);
    let status = out.status;
    assert!(status.success(), "--help exited with {status}");
    let usage = String::from_utf8(out.stdout).expect("UTF-8 usage");
    assert!(usage.contains("--listen"), "usage: {usage}");
}

#[test]
fn sigterm_closes_connections_and_exits_zero() {
    let mut server = Server::start();
    let mut raw = server.raw();
    assert_eq!(raw.ask(b"PING\r\n"), b"+PONG\r\n");
    server.ex.signal("TERM");
    raw.expect_closed();
    let status = server.ex.wait();
    assert!(status.success(), "kv exited with {status} after SIGTERM");
}

#[test]
fn sigint_exits_zero() {
    let mut server = Server::start();
    server.ex.signal("INT");
    let status = server.ex.wait();
    assert!(status.success(), "kv exited with {status} after SIGINT");
}

/// Runs `redis-cli` against the server; skipped with a note when it is not installed
/// (CI installs `redis-tools`).
#[test]
fn redis_cli_smoke_test() {
    let Ok(probe) = Command::new("redis-cli").arg("--version").output() else {
        eprintln!("note: redis-cli is not installed; skipping its smoke test");
        return;
    };
    assert!(probe.status.success());
    let server = Server::start();
    let port = server.addr.port().to_string();
    let cli = |args: &[&str]| -> (ExitStatus, String) {
        let out = example::run(
            Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port])
                .args(args),
        );
        let text = String::from_utf8(out.stdout).expect("UTF-8 output");
        (out.status, text)
    };
    let ok = |args: &[&str]| -> String {
        let (status, out) = cli(args);
        assert!(status.success(), "redis-cli {args:?} exited with {status}");
        out
    };
    assert_eq!(ok(&["PING"]), "PONG\n");
    assert_eq!(ok(&["SET", "cli", "hello world"]), "OK\n");
    assert_eq!(ok(&["GET", "cli"]), "hello world\n");
    assert_eq!(ok(&["INCRBY", "n", "5"]), "5\n");
    assert_eq!(ok(&["MGET", "cli", "nope"]), "hello world\n\n");
    assert_eq!(ok(&["DBSIZE"]), "2\n");
    // Versions differ on the exit status and the blank line after an error reply.
    let (_, out) = cli(&["GET"]);
    assert!(
        out.starts_with("ERR wrong number of arguments for 'get' command\n"),
        "redis-cli GET: {out:?}"
    );
}
