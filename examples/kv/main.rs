//! A Redis-protocol key-value server: strings, counters and expiry over RESP2.
//!
//! It speaks enough of Redis for `redis-cli`, `redis-benchmark` and client libraries
//! to work against it unchanged: multibulk and inline requests; PING, ECHO, GET, SET
//! (EX, PX, EXAT, PXAT, NX, XX, KEEPTTL, GET), DEL, EXISTS, INCR, DECR, INCRBY,
//! DECRBY, MGET, MSET, EXPIRE (NX, XX, GT, LT), TTL, PTTL, DBSIZE, FLUSHALL, QUIT; and
//! the commands clients send when they connect (COMMAND, CONFIG GET, HELLO, CLIENT
//! SETNAME/GETNAME/SETINFO/ID, SELECT 0). Replies and error messages are Redis's own.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example kv -- [--listen 127.0.0.1:6380]
//!     [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM] [--tls-handshake-timeout SECS]]
//! ```
//!
//! Poke it with `redis-cli -p 6380`, or by hand with `nc 127.0.0.1 6380` and inline
//! commands (`SET greeting hello`, `GET greeting`). With `--tls-cert` and
//! `--tls-key` the port speaks TLS: `redis-cli --tls --cacert CA.pem -p 6380`.
//! SIGINT or SIGTERM stops it gracefully.
//!
//! Limits, checked before memory is taken: a bulk string of at most 512 MiB, at most
//! 1,048,576 arguments per request, 64 KiB for an inline request or a length line,
//! and `--max-query-bytes` (default 1 GiB, as Redis) for one incomplete request. A
//! request over a limit gets `-ERR Protocol error: ...` and the connection is closed.
//!
//! How a connection is served: every complete request in a chunk of input is parsed
//! straight out of the reactor's read buffer (no copy unless a request straddles two
//! reads), executed, and its reply appended to one per-connection output buffer;
//! the whole batch then goes out with one write. A pipelining client (`redis-benchmark
//! -P 16`) thus costs one read and one write per batch, not per request. If a client
//! sends faster than it reads its replies, the server stops reading from it until
//! the replies have drained, rather than buffering without bound.

#[path = "../common/mod.rs"]
mod common;
mod db;
mod resp;

use std::cell::RefCell;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{exit_status, init_logging, listen_tcp, serve, Cli};
use db::{Db, ExpireIf, IncrError, KeyTtl, Ttl};
use resp::{Args, Parser};
use twistor::tls::TlsAcceptor;
use twistor::{Addr, Context, Protocol, Reactor, Reason};

/// Above this many queued reply bytes a connection stops being read (and stops
/// executing requests it already has) until they drain to [`LOW_WATERMARK_BYTES`].
/// The reactor is built with the same watermarks, so crossing this one is what makes
/// it call `pause_producing` and, later, `resume_producing`.
const HIGH_WATERMARK_BYTES: usize = 256 * 1024;

/// See [`HIGH_WATERMARK_BYTES`].
const LOW_WATERMARK_BYTES: usize = 64 * 1024;

/// Most reply bytes queued for one connection. The watermarks keep a well-behaved
/// connection far below it; it must still hold one reply carrying a bulk string of
/// the largest size we accept (512 MiB). A single reply larger than this (an MGET of
/// many huge values) closes the connection instead of exhausting memory.
const WRITE_CAP_BYTES: usize = 1024 * 1024 * 1024;

/// Replies are written out mid-batch once this many bytes are waiting, so that a long
/// batch neither grows the output buffer much nor runs past the watermarks unchecked.
const FLUSH_BYTES: usize = 64 * 1024;

/// A bulk value at least this large is written straight from the key space (one
/// vectored write) instead of being copied into the output buffer first.
const BIG_BULK_BYTES: usize = 32 * 1024;

/// Capacity an idle connection keeps in its input and output buffers; larger ones are
/// given back once drained, so one big request does not pin memory for good.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

/// Default for `--max-query-bytes`: Redis's `client-query-buffer-limit` (1 GiB). It
/// must exceed the largest bulk string (512 MiB), or a legal SET could never arrive.
const DEFAULT_MAX_QUERY_BYTES: usize = 1024 * 1024 * 1024;

/// How often the active-expiry sweep runs: Redis's default `hz` of 10.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Expired keys reclaimed per sweep. Keeps one sweep well under a millisecond; when
/// more are due the next sweep comes after [`SWEEP_AGAIN`] instead of the interval.
const SWEEP_BUDGET: usize = 2000;

/// Delay before the next sweep when the last one ran out of budget: short, but long
/// enough to let the connections have the loop in between.
const SWEEP_AGAIN: Duration = Duration::from_millis(1);

/// The version reported by HELLO: the Redis release whose replies we follow, which is
/// what clients look at to decide what they may send.
const REDIS_VERSION: &str = "7.2.0";

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new(
        "kv",
        "A Redis-protocol (RESP2) key-value server.",
        "127.0.0.1:6380",
    )
    .option(
        "max-query-bytes",
        "BYTES",
        &DEFAULT_MAX_QUERY_BYTES.to_string(),
        "most bytes buffered for one incomplete request before the client is dropped",
    )
    .tls_flags()
    .parse();
    let addr = args.listen_addr();
    // Zero would drop every client whose request arrives in more than one read.
    let max_query_bytes = args.number("max-query-bytes", 1..);
    let tls = args.tls_acceptor();
    let result = run(addr, tls, max_query_bytes);
    exit_status("kv", result)
}

fn run(addr: SocketAddr, tls: Option<TlsAcceptor>, max_query_bytes: usize) -> std::io::Result<()> {
    let mut reactor = Reactor::builder()
        .write_watermarks(HIGH_WATERMARK_BYTES, LOW_WATERMARK_BYTES)
        .write_cap_bytes(WRITE_CAP_BYTES)
        .build()?;
    let db = Rc::new(RefCell::new(Db::default()));
    schedule_sweep(&mut reactor, Rc::clone(&db), SWEEP_INTERVAL);
    let mut next_client_id = 0;
    let port = listen_tcp(&mut reactor, addr, tls.as_ref(), move |_: &Addr| {
        next_client_id += 1;
        Some(Client::new(Rc::clone(&db), next_client_id, max_query_bytes))
    })?;
    serve(&mut reactor, port.local_addr)
}

/// Active expiry: reclaims due keys now and then, so that expired keys nobody reads
/// again do not hold memory. Lazy expiry (in [`Db`]) already hides them from commands.
fn schedule_sweep(reactor: &mut Reactor, db: Rc<RefCell<Db>>, delay: Duration) {
    reactor.call_later(delay, move |reactor: &mut Reactor| {
        let more = db.borrow_mut().sweep(Instant::now(), SWEEP_BUDGET);
        let next = if more { SWEEP_AGAIN } else { SWEEP_INTERVAL };
        schedule_sweep(reactor, db, next);
    });
}

// ----- the connection -----

/// One client connection.
struct Client {
    db: Rc<RefCell<Db>>,
    session: Session,
    parser: Parser,
    /// Bytes of requests not served yet, starting at the first byte of one: a request
    /// cut by the end of a read, or the rest of a batch while stalled.
    inbuf: Vec<u8>,
    /// Replies not written yet; written once per batch.
    out: Vec<u8>,
    max_query_bytes: usize,
    /// Not reading nor executing, until queued replies drain (`resume_producing`).
    stalled: bool,
    /// The peer shut its write side while we were stalled: close once caught up.
    eof: bool,
    /// We are closing (QUIT, a protocol error): ignore anything more.
    closing: bool,
}

/// Per-connection state that commands see.
struct Session {
    id: u64,
    name: Option<Vec<u8>>,
}

impl Client {
    fn new(db: Rc<RefCell<Db>>, id: u64, max_query_bytes: usize) -> Client {
        Client {
            db,
            session: Session { id, name: None },
            parser: Parser::default(),
            inbuf: Vec::new(),
            out: Vec::new(),
            max_query_bytes,
            stalled: false,
            eof: false,
            closing: false,
        }
    }

    /// Executes the complete requests at the start of `buf`, appending their replies;
    /// returns how many bytes they took. Stops early at a request that is not
    /// complete, when the connection is closing, or when it stalls.
    fn serve(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> usize {
        // One clock read per batch: every request in it sees the same "now".
        let now = Instant::now();
        let mut db = self.db.borrow_mut();
        let mut reply = Reply {
            out: &mut self.out,
            cx,
            wrote: false,
        };
        let mut start = 0;
        while !self.closing && !self.stalled {
            let request = &buf[start..];
            match self.parser.parse(request) {
                Ok(None) => break,
                Ok(Some(len)) => {
                    start += len;
                    let args = self.parser.args(&request[..len]);
                    if args.is_empty() {
                        continue;
                    }
                    match execute(&mut db, &mut self.session, &mut reply, args, now) {
                        Flow::Continue => {}
                        Flow::Close => {
                            reply.flush();
                            reply.cx.lose_connection();
                            self.closing = true;
                        }
                    }
                    if reply.out.len() >= FLUSH_BYTES {
                        reply.flush();
                    }
                    // Only a write can have queued bytes; look only after one.
                    if std::mem::take(&mut reply.wrote)
                        && reply.cx.buffered() > HIGH_WATERMARK_BYTES
                    {
                        stall(&mut self.stalled, reply.cx);
                    }
                }
                Err(e) => {
                    log::debug!("{} {:?}: {e}", reply.cx.id(), reply.cx.peer_addr());
                    reply.error(&e.reply_text());
                    reply.flush();
                    reply.cx.lose_connection();
                    self.closing = true;
                }
            }
        }
        start
    }

    /// Serves what `inbuf` holds and keeps the rest there.
    fn serve_buffered(&mut self, cx: &mut Context<'_>) {
        let mut buf = std::mem::take(&mut self.inbuf);
        let used = self.serve(cx, &buf);
        buf.drain(..used);
        if buf.is_empty() && buf.capacity() > KEEP_BUFFER_BYTES {
            buf = Vec::new();
        }
        self.inbuf = buf;
    }

    /// Ends a batch: writes the replies, refuses an incomplete request that has grown
    /// past the limit, and stops reading if the client is not taking its replies.
    fn end_batch(&mut self, cx: &mut Context<'_>) {
        if !self.stalled && !self.closing && self.inbuf.len() > self.max_query_bytes {
            log::warn!(
                "{} {:?}: incomplete request over {} bytes; closing",
                cx.id(),
                cx.peer_addr(),
                self.max_query_bytes
            );
            resp::put_error(
                &mut self.out,
                b"ERR Protocol error: query buffer limit exceeded",
            );
            self.inbuf = Vec::new();
            self.closing = true;
            cx.write(&self.out);
            cx.lose_connection();
        } else if !self.out.is_empty() {
            cx.write(&self.out);
        }
        self.out.clear();
        if self.out.capacity() > KEEP_BUFFER_BYTES {
            self.out = Vec::new();
        }
        if !self.stalled && !self.closing && cx.buffered() > HIGH_WATERMARK_BYTES {
            stall(&mut self.stalled, cx);
        }
    }
}

/// Stops reading from a client that is not taking its replies; `resume_producing`
/// undoes it once they have drained.
fn stall(stalled: &mut bool, cx: &mut Context<'_>) {
    log::trace!("{}: {} reply bytes queued; pausing", cx.id(), cx.buffered());
    *stalled = true;
    cx.pause_reading();
}

impl Protocol for Client {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        log::debug!("{} {:?}: connected", cx.id(), cx.peer_addr());
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        if self.closing {
            return;
        }
        if self.inbuf.is_empty() && !self.stalled {
            // The common case: parse straight from the reactor's buffer, and copy
            // only the tail that is not a complete request.
            let used = self.serve(cx, data);
            if !self.closing {
                self.inbuf.extend_from_slice(&data[used..]);
            }
        } else {
            self.inbuf.extend_from_slice(data);
            if !self.stalled {
                self.serve_buffered(cx);
            }
        }
        self.end_batch(cx);
    }

    fn read_eof(&mut self, cx: &mut Context<'_>) {
        if self.stalled {
            self.eof = true;
        } else {
            cx.lose_connection();
        }
    }

    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        if !self.stalled && !self.closing {
            stall(&mut self.stalled, cx);
        }
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        if !self.stalled || self.closing {
            return;
        }
        log::trace!("{}: replies drained; serving again", cx.id());
        self.stalled = false;
        self.serve_buffered(cx);
        self.end_batch(cx);
        if !self.stalled && !self.closing {
            match self.eof {
                true => cx.lose_connection(),
                false => cx.resume_reading(),
            }
        }
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        log::debug!("{} client {}: {reason}", cx.id(), self.session.id);
    }
}

// ----- replies -----

/// Where replies go: the connection's output buffer, written out at the end of the
/// batch (or earlier, for big values and long batches).
struct Reply<'a, 'cx> {
    out: &'a mut Vec<u8>,
    cx: &'a mut Context<'cx>,
    /// Something was written since the caller last looked (and reset this).
    wrote: bool,
}

impl Reply<'_, '_> {
    fn ok(&mut self) {
        self.out.extend_from_slice(resp::OK);
    }

    fn simple(&mut self, text: &str) {
        resp::put_simple(self.out, text);
    }

    fn error(&mut self, message: &[u8]) {
        resp::put_error(self.out, message);
    }

    fn int(&mut self, n: i64) {
        resp::put_int(self.out, n);
    }

    fn nil(&mut self) {
        self.out.extend_from_slice(resp::NIL);
    }

    fn array(&mut self, len: usize) {
        resp::put_array_len(self.out, len);
    }

    fn bulk(&mut self, bytes: &[u8]) {
        if bytes.len() < BIG_BULK_BYTES {
            resp::put_bulk(self.out, bytes);
            return;
        }
        resp::put_bulk_len(self.out, bytes.len());
        let parts = [
            IoSlice::new(&self.out[..]),
            IoSlice::new(bytes),
            IoSlice::new(b"\r\n"),
        ];
        self.cx.write_vectored(&parts);
        self.out.clear();
        self.wrote = true;
    }

    fn bulk_or_nil(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => self.bulk(bytes),
            None => self.nil(),
        }
    }

    /// Writes what is waiting.
    fn flush(&mut self) {
        if !self.out.is_empty() {
            self.cx.write(self.out);
            self.out.clear();
            self.wrote = true;
        }
    }

    fn wrong_arity(&mut self, name: &str) {
        let message = format!("ERR wrong number of arguments for '{name}' command");
        self.error(message.as_bytes());
    }

    fn not_integer(&mut self) {
        self.error(b"ERR value is not an integer or out of range");
    }

    fn syntax_error(&mut self) {
        self.error(b"ERR syntax error");
    }
}

// ----- commands -----

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Flush the replies so far, then close (QUIT, a cross-protocol attack).
    Close,
}

/// The commands we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Set,
    Ping,
    Echo,
    Del,
    Exists,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    MGet,
    MSet,
    Expire,
    Ttl,
    PTtl,
    DbSize,
    FlushAll,
    Quit,
    Select,
    Hello,
    Client,
    Config,
    Command,
    /// `POST` and `Host:`: an HTTP request sent to us by a browser tricked into it.
    SecurityWarning,
}

/// A command's name, arity and key positions, as `COMMAND` reports them.
struct Spec {
    /// Lower case, as Redis reports it.
    name: &'static str,
    /// Redis's convention: `n` means exactly `n` arguments (name included), `-n`
    /// means at least `n`.
    arity: i64,
    flags: &'static [&'static str],
    first_key: i64,
    last_key: i64,
    step: i64,
    kind: Kind,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    kind: Kind,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        kind,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command, the hot ones first (lookup is a short linear scan).
static COMMANDS: &[Spec] = &[
    spec("get", 2, &["readonly", "fast"], ONE_KEY, Kind::Get),
    spec("set", -3, &["write", "denyoom"], ONE_KEY, Kind::Set),
    spec("ping", -1, &["fast"], NO_KEYS, Kind::Ping),
    spec(
        "incr",
        2,
        &["write", "denyoom", "fast"],
        ONE_KEY,
        Kind::Incr,
    ),
    spec("mget", -2, &["readonly", "fast"], ALL_KEYS, Kind::MGet),
    spec("mset", -3, &["write", "denyoom"], (1, -1, 2), Kind::MSet),
    spec("del", -2, &["write"], ALL_KEYS, Kind::Del),
    spec("exists", -2, &["readonly", "fast"], ALL_KEYS, Kind::Exists),
    spec(
        "decr",
        2,
        &["write", "denyoom", "fast"],
        ONE_KEY,
        Kind::Decr,
    ),
    spec(
        "incrby",
        3,
        &["write", "denyoom", "fast"],
        ONE_KEY,
        Kind::IncrBy,
    ),
    spec(
        "decrby",
        3,
        &["write", "denyoom", "fast"],
        ONE_KEY,
        Kind::DecrBy,
    ),
    spec("echo", 2, &["fast"], NO_KEYS, Kind::Echo),
    spec("expire", -3, &["write", "fast"], ONE_KEY, Kind::Expire),
    spec("ttl", 2, &["readonly", "fast"], ONE_KEY, Kind::Ttl),
    spec("pttl", 2, &["readonly", "fast"], ONE_KEY, Kind::PTtl),
    spec("dbsize", 1, &["readonly", "fast"], NO_KEYS, Kind::DbSize),
    spec("flushall", -1, &["write"], NO_KEYS, Kind::FlushAll),
    spec("quit", -1, &["fast", "no_auth"], NO_KEYS, Kind::Quit),
    spec(
        "select",
        2,
        &["loading", "stale", "fast"],
        NO_KEYS,
        Kind::Select,
    ),
    spec("hello", -1, &["fast", "no_auth"], NO_KEYS, Kind::Hello),
    spec("client", -2, &[], NO_KEYS, Kind::Client),
    spec("config", -2, &[], NO_KEYS, Kind::Config),
    spec("command", -1, &["loading", "stale"], NO_KEYS, Kind::Command),
    spec(
        "post",
        -1,
        &["loading", "stale"],
        NO_KEYS,
        Kind::SecurityWarning,
    ),
    spec(
        "host:",
        -1,
        &["loading", "stale"],
        NO_KEYS,
        Kind::SecurityWarning,
    ),
];

fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|c| c.name.len() == name.len() && c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// True if `args` has the number of arguments `arity` asks for.
fn arity_ok(arity: i64, args: &Args<'_>) -> bool {
    let n = args.len() as i64;
    if arity >= 0 {
        n == arity
    } else {
        n >= -arity
    }
}

/// Runs one request and appends its reply.
fn execute(
    db: &mut Db,
    session: &mut Session,
    reply: &mut Reply<'_, '_>,
    args: Args<'_>,
    now: Instant,
) -> Flow {
    let Some(spec) = lookup(args.get(0)) else {
        unknown_command(reply, &args);
        return Flow::Continue;
    };
    if !arity_ok(spec.arity, &args) {
        reply.wrong_arity(spec.name);
        return Flow::Continue;
    }
    match spec.kind {
        Kind::Get => reply.bulk_or_nil(db.get(args.get(1), now)),
        Kind::Set => set(db, reply, &args, now),
        Kind::Ping => match args.len() {
            1 => reply.simple("PONG"),
            2 => reply.bulk(args.get(1)),
            _ => reply.wrong_arity("ping"),
        },
        Kind::Echo => reply.bulk(args.get(1)),
        Kind::Del => {
            let n = args.iter_from(1).filter(|k| db.del(k, now)).count();
            reply.int(n as i64);
        }
        Kind::Exists => {
            let n = args.iter_from(1).filter(|k| db.exists(k, now)).count();
            reply.int(n as i64);
        }
        Kind::Incr => incr_by(db, reply, args.get(1), 1, now),
        Kind::Decr => incr_by(db, reply, args.get(1), -1, now),
        Kind::IncrBy => match resp::parse_i64(args.get(2)) {
            Some(delta) => incr_by(db, reply, args.get(1), delta, now),
            None => reply.not_integer(),
        },
        Kind::DecrBy => match resp::parse_i64(args.get(2)) {
            // Negating i64::MIN would overflow before the addition could.
            Some(i64::MIN) => reply.error(b"ERR decrement would overflow"),
            Some(delta) => incr_by(db, reply, args.get(1), -delta, now),
            None => reply.not_integer(),
        },
        Kind::MGet => {
            reply.array(args.len() - 1);
            for key in args.iter_from(1) {
                reply.bulk_or_nil(db.get(key, now));
                if reply.out.len() >= FLUSH_BYTES {
                    reply.flush();
                }
            }
        }
        Kind::MSet => {
            if args.len() % 2 == 0 {
                reply.wrong_arity("mset");
            } else {
                for i in (1..args.len()).step_by(2) {
                    db.set(args.get(i), args.get(i + 1), Ttl::Persist, now);
                }
                reply.ok();
            }
        }
        Kind::Expire => expire(db, reply, &args, now),
        Kind::Ttl | Kind::PTtl => match db.ttl(args.get(1), now) {
            KeyTtl::Missing => reply.int(-2),
            KeyTtl::Persistent => reply.int(-1),
            KeyTtl::Expires(left) => {
                let ms = left.as_millis().min(i64::MAX as u128) as i64;
                // Redis rounds to the nearest second.
                reply.int(match spec.kind {
                    Kind::Ttl => (ms + 500) / 1000,
                    _ => ms,
                });
            }
        },
        Kind::DbSize => reply.int(db.len() as i64),
        Kind::FlushAll => match args.len() {
            1 => {
                db.clear();
                reply.ok();
            }
            2 if [&b"sync"[..], b"async"]
                .iter()
                .any(|m| m.eq_ignore_ascii_case(args.get(1))) =>
            {
                db.clear();
                reply.ok();
            }
            _ => reply.syntax_error(),
        },
        Kind::Quit => {
            reply.ok();
            return Flow::Close;
        }
        Kind::Select => match resp::parse_i64(args.get(1)) {
            Some(0) => reply.ok(),
            Some(n) if i32::try_from(n).is_ok() => reply.error(b"ERR DB index is out of range"),
            Some(_) => reply
                .error(b"ERR value is out of range, value must between -2147483648 and 2147483647"),
            None => reply.not_integer(),
        },
        Kind::Hello => hello(session, reply, &args),
        Kind::Client => client(session, reply, &args),
        Kind::Config => config(reply, &args),
        Kind::Command => command(reply, &args),
        Kind::SecurityWarning => {
            log::warn!(
                "possible security attack: a client sent an HTTP-looking request ({}); closing",
                String::from_utf8_lossy(args.get(0))
            );
            return Flow::Close;
        }
    }
    Flow::Continue
}

/// Redis's reply to a command it does not know, quoting the name and the start of the
/// arguments (each cut at 128 bytes in all, as Redis does).
fn unknown_command(reply: &mut Reply<'_, '_>, args: &Args<'_>) {
    let mut message = b"ERR unknown command '".to_vec();
    message.extend_from_slice(c_prefix(args.get(0), 128));
    message.extend_from_slice(b"', with args beginning with: ");
    let mut quoted = Vec::new();
    for arg in args.iter_from(1) {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(c_prefix(arg, room));
        quoted.extend_from_slice(b"' ");
    }
    message.extend_from_slice(&quoted);
    reply.error(&message);
}

/// At most `max` bytes of `bytes`, stopping at a NUL: what C's `%.*s` prints.
fn c_prefix(bytes: &[u8], max: usize) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end.min(max)]
}

fn incr_by(db: &mut Db, reply: &mut Reply<'_, '_>, key: &[u8], delta: i64, now: Instant) {
    match db.incr_by(key, delta, now) {
        Ok(n) => reply.int(n),
        Err(IncrError::NotInteger) => reply.not_integer(),
        Err(IncrError::Overflow) => reply.error(b"ERR increment or decrement would overflow"),
    }
}

/// The current Unix time in milliseconds, for EXAT/PXAT and Redis's overflow checks.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

/// `now` moved by a signed number of milliseconds; `None` if the clock cannot
/// represent it.
fn instant_after(now: Instant, ms: i64) -> Option<Instant> {
    match ms >= 0 {
        true => now.checked_add(Duration::from_millis(ms as u64)),
        false => Some(
            now.checked_sub(Duration::from_millis(ms.unsigned_abs()))
                .unwrap_or(now),
        ),
    }
}

/// How an expiry argument is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeArg {
    /// EX: seconds from now.
    Seconds,
    /// PX: milliseconds from now.
    Millis,
    /// EXAT: a Unix time in seconds.
    UnixSeconds,
    /// PXAT: a Unix time in milliseconds.
    UnixMillis,
}

/// Turns an expiry argument into a deadline with Redis's checks and wording:
/// `Err` carries the error message to reply with.
fn deadline(raw: &[u8], unit: TimeArg, command: &str, now: Instant) -> Result<Instant, String> {
    let invalid = || format!("ERR invalid expire time in '{command}' command");
    let Some(value) = resp::parse_i64(raw) else {
        return Err("ERR value is not an integer or out of range".into());
    };
    let seconds = matches!(unit, TimeArg::Seconds | TimeArg::UnixSeconds);
    if command == "set" && value <= 0 {
        return Err(invalid());
    }
    let ms = match seconds {
        true => value.checked_mul(1000).ok_or_else(invalid)?,
        false => value,
    };
    let base = unix_ms();
    let from_now = match unit {
        TimeArg::Seconds | TimeArg::Millis => {
            // Redis refuses a deadline whose Unix time would overflow.
            ms.checked_add(base).ok_or_else(invalid)?;
            ms
        }
        TimeArg::UnixSeconds | TimeArg::UnixMillis => ms.saturating_sub(base),
    };
    instant_after(now, from_now).ok_or_else(invalid)
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT t | PXAT t | KEEPTTL]
fn set(db: &mut Db, reply: &mut Reply<'_, '_>, args: &Args<'_>, now: Instant) {
    let (key, value) = (args.get(1), args.get(2));
    let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
    let mut expiry: Option<(TimeArg, &[u8])> = None;
    let mut i = 3;
    while i < args.len() {
        let opt = args.get(i);
        let next = (i + 1 < args.len()).then(|| args.get(i + 1));
        let is = |name: &str| opt.eq_ignore_ascii_case(name.as_bytes());
        let unit = match () {
            _ if is("EX") => Some(TimeArg::Seconds),
            _ if is("PX") => Some(TimeArg::Millis),
            _ if is("EXAT") => Some(TimeArg::UnixSeconds),
            _ if is("PXAT") => Some(TimeArg::UnixMillis),
            _ => None,
        };
        if is("NX") && !xx {
            nx = true;
        } else if is("XX") && !nx {
            xx = true;
        } else if is("GET") {
            get = true;
        } else if is("KEEPTTL") && expiry.is_none() {
            keep_ttl = true;
        } else if let (Some(unit), Some(next)) = (unit, next) {
            // Only one kind of expiry; the same one twice is allowed, the last wins.
            if keep_ttl || expiry.is_some_and(|(u, _)| u != unit) {
                return reply.syntax_error();
            }
            expiry = Some((unit, next));
            i += 1;
        } else {
            return reply.syntax_error();
        }
        i += 1;
    }
    let ttl = match expiry {
        Some((unit, raw)) => match deadline(raw, unit, "set", now) {
            Ok(at) => Ttl::At(at),
            Err(message) => return reply.error(message.as_bytes()),
        },
        None if keep_ttl => Ttl::Keep,
        None => Ttl::Persist,
    };
    if get {
        reply.bulk_or_nil(db.get(key, now));
    }
    // A plain SET needs no lookup before the write.
    let found = (nx || xx) && db.exists(key, now);
    if (nx && found) || (xx && !found) {
        if !get {
            reply.nil();
        }
        return;
    }
    match ttl {
        // A deadline already past (EXAT/PXAT in the past) stores nothing: the key is
        // as good as gone, as Redis deletes it at once.
        Ttl::At(at) if at <= now => {
            db.del(key, now);
        }
        ttl => db.set(key, value, ttl, now),
    }
    if !get {
        reply.ok();
    }
}

/// EXPIRE key seconds [NX | XX | GT | LT]
fn expire(db: &mut Db, reply: &mut Reply<'_, '_>, args: &Args<'_>, now: Instant) {
    let mut condition = ExpireIf::default();
    for opt in args.iter_from(3) {
        match opt.to_ascii_uppercase().as_slice() {
            b"NX" => condition.nx = true,
            b"XX" => condition.xx = true,
            b"GT" => condition.gt = true,
            b"LT" => condition.lt = true,
            _ => {
                let mut message = b"ERR Unsupported option ".to_vec();
                message.extend_from_slice(c_prefix(opt, usize::MAX));
                return reply.error(&message);
            }
        }
    }
    let ExpireIf { nx, xx, gt, lt } = condition;
    if nx && (xx || gt || lt) {
        return reply.error(b"ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return reply.error(b"ERR GT and LT options at the same time are not compatible");
    }
    match deadline(args.get(2), TimeArg::Seconds, "expire", now) {
        Ok(at) => reply.int(i64::from(db.expire(args.get(1), at, condition, now))),
        Err(message) => reply.error(message.as_bytes()),
    }
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]: we speak RESP2
/// only, so version 3 is refused the way Redis refuses a version it does not know.
fn hello(session: &mut Session, reply: &mut Reply<'_, '_>, args: &Args<'_>) {
    let mut i = 1;
    if args.len() >= 2 {
        match resp::parse_i64(args.get(1)) {
            Some(2) => {}
            Some(_) => return reply.error(b"NOPROTO unsupported protocol version"),
            None => return reply.error(b"ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let mut name = None;
    while i < args.len() {
        let opt = args.get(i);
        let more = args.len() - 1 - i;
        if opt.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            // No passwords are configured: the default user takes any, as in Redis.
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            name = Some(args.get(i + 1));
            i += 2;
        } else {
            let mut message = b"ERR Syntax error in HELLO option '".to_vec();
            message.extend_from_slice(c_prefix(opt, usize::MAX));
            message.push(b'\'');
            return reply.error(&message);
        }
    }
    if let Some(name) = name {
        if !set_name(session, reply, name) {
            return;
        }
    }
    reply.array(14);
    for (field, value) in [("server", "redis"), ("version", REDIS_VERSION)] {
        reply.bulk(field.as_bytes());
        reply.bulk(value.as_bytes());
    }
    reply.bulk(b"proto");
    reply.int(2);
    reply.bulk(b"id");
    reply.int(session.id as i64);
    for (field, value) in [("mode", "standalone"), ("role", "master")] {
        reply.bulk(field.as_bytes());
        reply.bulk(value.as_bytes());
    }
    reply.bulk(b"modules");
    reply.array(0);
}

/// True if `value` may be a client name or library name: printable ASCII, no spaces.
fn printable_token(value: &[u8]) -> bool {
    value.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// Sets the client's name (an empty one clears it); false after replying an error.
fn set_name(session: &mut Session, reply: &mut Reply<'_, '_>, name: &[u8]) -> bool {
    if !printable_token(name) {
        reply.error(b"ERR Client names cannot contain spaces, newlines or special characters.");
        return false;
    }
    session.name = (!name.is_empty()).then(|| name.to_vec());
    true
}

/// `-ERR unknown subcommand 'x'. Try CONFIG HELP.`
fn unknown_subcommand(reply: &mut Reply<'_, '_>, args: &Args<'_>, container: &str) {
    let mut message = b"ERR unknown subcommand '".to_vec();
    message.extend_from_slice(c_prefix(args.get(1), 128));
    message.extend_from_slice(format!("'. Try {container} HELP.").as_bytes());
    reply.error(&message);
}

/// CLIENT SETNAME | GETNAME | SETINFO | ID
fn client(session: &mut Session, reply: &mut Reply<'_, '_>, args: &Args<'_>) {
    let sub = args.get(1).to_ascii_uppercase();
    let (arity, name) = match sub.as_slice() {
        b"SETNAME" => (3, "client|setname"),
        b"GETNAME" => (2, "client|getname"),
        b"SETINFO" => (4, "client|setinfo"),
        b"ID" => (2, "client|id"),
        _ => return unknown_subcommand(reply, args, "CLIENT"),
    };
    if !arity_ok(arity, args) {
        return reply.wrong_arity(name);
    }
    match sub.as_slice() {
        b"SETNAME" => {
            if set_name(session, reply, args.get(2)) {
                reply.ok();
            }
        }
        b"GETNAME" => reply.bulk_or_nil(session.name.as_deref()),
        b"SETINFO" => {
            let attr = args.get(2);
            let known = [&b"lib-name"[..], b"lib-ver"]
                .into_iter()
                .find(|a| a.eq_ignore_ascii_case(attr));
            match known {
                None => {
                    let mut message = b"ERR Unrecognized option '".to_vec();
                    message.extend_from_slice(c_prefix(attr, usize::MAX));
                    message.push(b'\'');
                    reply.error(&message);
                }
                Some(a) if !printable_token(args.get(3)) => {
                    let mut message = b"ERR ".to_vec();
                    message.extend_from_slice(a);
                    message.extend_from_slice(
                        b" cannot contain spaces, newlines or special characters.",
                    );
                    reply.error(&message);
                }
                Some(_) => reply.ok(),
            }
        }
        _ => reply.int(session.id as i64),
    }
}

/// The configuration CONFIG GET reports: what `redis-benchmark` asks about at start-up
/// (`save`, `appendonly`), plus a few that describe this server truthfully.
const CONFIG: &[(&str, &str)] = &[
    ("appendonly", "no"),
    ("databases", "1"),
    ("maxmemory", "0"),
    ("proto-max-bulk-len", "536870912"),
    ("save", ""),
    ("timeout", "0"),
];

/// CONFIG GET parameter [parameter ...] (glob patterns, as in Redis 7)
fn config(reply: &mut Reply<'_, '_>, args: &Args<'_>) {
    if !args.get(1).eq_ignore_ascii_case(b"GET") {
        return unknown_subcommand(reply, args, "CONFIG");
    }
    if args.len() < 3 {
        return reply.wrong_arity("config|get");
    }
    let matched: Vec<&(&str, &str)> = CONFIG
        .iter()
        .filter(|(name, _)| args.iter_from(2).any(|p| glob_match(p, name.as_bytes())))
        .collect();
    reply.array(matched.len() * 2);
    for (name, value) in matched {
        reply.bulk(name.as_bytes());
        reply.bulk(value.as_bytes());
    }
}

/// Case-insensitive glob match with `*` and `?` (enough for config names).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        Some((&p, rest)) => match text.split_first() {
            Some((&t, text_rest)) if p == b'?' || p.eq_ignore_ascii_case(&t) => {
                glob_match(rest, text_rest)
            }
            _ => false,
        },
    }
}

/// COMMAND, COMMAND COUNT | LIST | INFO name... | DOCS [name...]
fn command(reply: &mut Reply<'_, '_>, args: &Args<'_>) {
    if args.len() == 1 {
        reply.array(COMMANDS.len());
        for spec in COMMANDS {
            command_info(reply, spec);
        }
        return;
    }
    let sub = args.get(1).to_ascii_uppercase();
    match sub.as_slice() {
        b"COUNT" if args.len() == 2 => reply.int(COMMANDS.len() as i64),
        b"LIST" if args.len() == 2 => {
            reply.array(COMMANDS.len());
            for spec in COMMANDS {
                reply.bulk(spec.name.as_bytes());
            }
        }
        b"INFO" if args.len() == 2 => command(reply, &args.first(1)),
        b"INFO" => {
            reply.array(args.len() - 2);
            for name in args.iter_from(2) {
                match lookup(name) {
                    Some(spec) => command_info(reply, spec),
                    None => reply.nil(),
                }
            }
        }
        // We have no documentation to give. redis-cli (7.x) asks for it to build
        // its interactive hints; an empty table only leaves it without hints.
        b"DOCS" => reply.array(0),
        b"COUNT" => reply.wrong_arity("command|count"),
        b"LIST" => reply.wrong_arity("command|list"),
        _ => unknown_subcommand(reply, args, "COMMAND"),
    }
}

/// One command's entry in COMMAND's reply, in Redis 7's ten-field layout.
fn command_info(reply: &mut Reply<'_, '_>, spec: &Spec) {
    reply.array(10);
    reply.bulk(spec.name.as_bytes());
    reply.int(spec.arity);
    reply.array(spec.flags.len());
    for flag in spec.flags {
        reply.simple(flag);
    }
    reply.int(spec.first_key);
    reply.int(spec.last_key);
    reply.int(spec.step);
    // ACL categories, tips, key specifications, subcommands: none to report.
    for _ in 0..4 {
        reply.array(0);
    }
}
