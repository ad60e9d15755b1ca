//! A multi-room line chat server, after the classic Twisted chat room.
//!
//! Lines end with `\n` (a trailing `\r` is stripped). Each client starts as `guestN`
//! in the room `lobby` and gets `* welcome guestN, you are in lobby`. A line that does
//! not start with `/` goes to every *other* member of the sender's room as
//! `<NICK> TEXT`; an empty line is ignored. Commands:
//!
//! | command | effect |
//! |---|---|
//! | `/nick NAME` | rename (1-32 of `A-Z a-z 0-9 _ -`, unique, case-sensitive); the room gets `* OLD is now NEW` |
//! | `/join ROOM` | move to ROOM (same charset; created on demand, gone when empty): the old room gets `* NICK left OLD`, the new one `* NICK joined ROOM` |
//! | `/who` | `* in ROOM: a, b, c` (nicks sorted by byte order) |
//! | `/rooms` | `* rooms: kitchen (1), lobby (3)` (sorted by name) |
//! | `/msg NICK TEXT` | NICK alone gets `*private* <FROM> TEXT`; the sender gets nothing back unless NICK is unknown |
//! | `/me TEXT` | the room gets `* NICK TEXT` |
//! | `/quit` | the server answers `* bye` and closes; the room gets `* NICK disconnected` |
//!
//! Server lines always start with `* ` (or `*private* `); a mistake gets
//! `* error: ...`. The actor gets the notice of its own `/nick`, `/join` and `/me` as
//! confirmation. A member that leaves in any way (quit, drop, end of input, cut off)
//! is announced to its room as `* NICK disconnected`.
//!
//! Text is relayed clean: what others receive of a line, a `/me` or a `/msg` is
//! valid UTF-8, an invalid sequence replaced by U+FFFD, and so is every control
//! character but tab (C0, DEL, C1), so that nobody can colour another member's
//! terminal or forge a `* ` notice with a bare `\r`.
//!
//! Flow control, not eviction: while a member's unsent output is above the high
//! watermark (64 KiB), the server stops reading from whoever sends to it (their
//! lines wait in their own sockets) and reads them again once it has drained to
//! 16 KiB. A member that reads, however slowly, thus slows its senders down to its
//! pace and misses nothing. A member that does not read at all is cut off, its
//! queued output dropped, once its output has stayed above the watermark for
//! `--slow-timeout` seconds (default 10; fractions allowed), or at once when a write
//! would take it past `--max-backlog` bytes (default 1 MiB; a backlog at or below
//! the watermark leaves flow control no room, and the cap cuts first). The room then
//! goes on at full speed.
//!
//! Limits: a line over `--max-line` bytes (default 4096, `\r\n` not counted) gets
//! `* error: line too long` and the connection is closed. A flag value that cannot
//! work (`--max-line 0`, `--max-backlog 0`, `--slow-timeout 0` or negative) is
//! refused at start with one line on stderr and exit status 2.
//!
//! After each round of writes the server waits `--coalesce-us` microseconds (default
//! 300; 0 turns it off) before it reads again, so each member's next write carries
//! every line that arrived meanwhile rather than one write per line: about a quarter
//! less CPU at a busy room's rates, for at most that much added latency.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example chat -- [--listen 127.0.0.1:8000] [--max-line 4096] [--max-backlog 1048576] [--slow-timeout 10] [--coalesce-us 300]
//!     [--ws-listen 127.0.0.1:8080]
//!     [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM] [--tls-handshake-timeout SECS]]
//!     [--redis HOST:PORT [--redis-prefix twistor-chat] [--node-id ID]]
//! ```
//!
//! With `--tls-cert` and `--tls-key` the port speaks TLS, the chat on top unchanged
//! (`chat_client --tls --tls-ca CA.pem`, `openssl s_client`); `--tls-client-ca` asks
//! every client for a certificate signed by that CA.
//!
//! In a browser: with `--ws-listen ADDR` the server listens there too, announced by
//! a second line `ws listening on ADDR` after the first. `GET /` there answers a
//! self-contained chat page (no outside scripts, styles or fonts) whose script opens
//! a WebSocket to `/chat` on the same host and port (`wss:` when the page came over
//! https); any other path gets 404. A WebSocket member is a member like any other,
//! sharing nicks, rooms and notices with the line members: each text message it sends
//! is one line (the same commands, notices and limits: `--max-line` applies to the
//! message, and a longer one gets `* error: line too long` and a close frame, 1009),
//! and each line it is sent comes as one text message without the `\n`. Flow
//! control, `--slow-timeout` and `--max-backlog` apply to it as to any member. With
//! the TLS flags both listeners speak TLS (`https:` and `wss:`).
//!
//! Across servers: `--redis HOST:PORT` joins this server to every other chat server
//! that uses the same redis-server and the same `--redis-prefix` (default
//! `twistor-chat`): together they are one chat (rooms, `/msg`, `/who`, `/rooms`,
//! unique nicks). `--node-id ID` names this server (default: random). If Redis goes
//! away each server goes on with its own members, who get `* federation lost`, then
//! `* federation restored`; what was said meanwhile stayed local. The design
//! (channel, keys, leases, what is at most once and why) is in `federation.rs`. With
//! `--redis` the server waits up to 3 s for Redis before it announces itself.
//!
//! Poke it with `nc 127.0.0.1 8000` in two terminals (or with `chat_client`), type a
//! line in one and see it in the other; try `/nick`, `/join kitchen`, `/who`. Or
//! start it with `--ws-listen 127.0.0.1:8080` and open `http://127.0.0.1:8080/`.
//! SIGINT or SIGTERM stops it gracefully.

mod command;
#[path = "../common/mod.rs"]
mod common;
mod federation;
mod server;
mod session;
mod text;
mod wire;
mod ws;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{exit_status, init_logging, listen_tcp, serve, serve_listeners, Cli};
use server::Server;
use session::SessionLimits;
use twistor::client::Target;
use twistor::tls::TlsAcceptor;
use twistor::{Addr, Reactor};

/// Unsent output above which a member is congested and its senders wait: the
/// reactor's default high watermark, set explicitly since the server must know it.
/// Enough for a few hundred lines of chat, so a member that reads gets whole
/// bursts before its senders wait.
const HIGH_WATERMARK_BYTES: usize = 64 * 1024;

/// Unsent output at which a congested member's senders read again: the reactor's
/// default low watermark. A quarter of the high one, so that a sender held back
/// gets a good run before it is held back again.
const LOW_WATERMARK_BYTES: usize = 16 * 1024;

/// How long a server with `--redis` waits for its link before it announces itself
/// (and then serves its own members, federated once Redis answers): long enough for a
/// local Redis, short enough that a missing one delays nobody much.
const FEDERATION_START_WAIT: Duration = Duration::from_secs(3);

/// Limits from the command line.
#[derive(Clone, Copy)]
struct Limits {
    session: SessionLimits,
    max_backlog_bytes: usize,
    coalesce: Duration,
}

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new("chat", "Multi-room line chat server.", "127.0.0.1:8000")
        .option(
            "max-line",
            "BYTES",
            "4096",
            "longest line accepted, \\r\\n not counted",
        )
        .option(
            "max-backlog",
            "BYTES",
            "1048576",
            "unsent output a write may not pass: the member is cut off at once",
        )
        .option(
            "slow-timeout",
            "SECONDS",
            "10",
            "cut off a member whose unsent output stays above 64 KiB this long",
        )
        .option(
            "coalesce-us",
            "MICROS",
            "300",
            "after writing, wait this many µs before reading again (0: off)",
        )
        .optional(
            "ws-listen",
            "ADDR",
            "also listen here for browsers: the chat page at /, WebSocket members on /chat",
        )
        .tls_flags()
        .optional(
            "redis",
            "HOST:PORT",
            "federate with the chat servers using this redis-server",
        )
        .option(
            "redis-prefix",
            "PREFIX",
            "twistor-chat",
            "the federation's channel and key prefix",
        )
        .optional(
            "node-id",
            "ID",
            "this server's name in the federation (default: random)",
        )
        .parse();
    let max_line_bytes: usize = args.value("max-line");
    if max_line_bytes == 0 {
        refuse("--max-line must be at least 1");
    }
    let max_backlog_bytes: usize = args.value("max-backlog");
    if max_backlog_bytes == 0 {
        refuse("--max-backlog must be at least 1");
    }
    // Negative, NaN, infinite and too large all fail the conversion.
    let slow_timeout = Duration::try_from_secs_f64(args.value("slow-timeout"))
        .ok()
        .filter(|t| !t.is_zero())
        .unwrap_or_else(|| refuse("--slow-timeout must be a positive number of seconds"));
    let limits = Limits {
        session: SessionLimits {
            max_line_bytes,
            slow_timeout,
        },
        max_backlog_bytes,
        coalesce: Duration::from_micros(args.value("coalesce-us")),
    };
    let federation = args.optional("redis").map(|redis| {
        let target = parse_target(redis)
            .unwrap_or_else(|| args.refuse("redis", format!("must be host:port, not `{redis}`")));
        let prefix = args.get("redis-prefix");
        if prefix.is_empty() || prefix.contains(char::is_whitespace) {
            args.refuse("redis-prefix", "must be non-empty, without blanks");
        }
        let node = args
            .optional("node-id")
            .map_or_else(random_node_id, str::to_owned);
        if !wire::valid_name(node.as_bytes(), wire::MAX_NODE_BYTES) {
            args.refuse("node-id", "must be 1-64 of A-Z a-z 0-9 _ -");
        }
        federation::Config {
            target,
            prefix: prefix.to_owned(),
            node,
            max_buffered_bytes: max_backlog_bytes / 2,
        }
    });
    let addr = args.listen_addr();
    let ws_addr = args.optional("ws-listen").map(|raw| {
        raw.parse::<SocketAddr>().unwrap_or_else(|_| {
            args.refuse(
                "ws-listen",
                format_args!("must be an IP address and port such as 127.0.0.1:8080, not {raw:?}"),
            )
        })
    });
    let tls = args.tls_acceptor();
    exit_status("chat", run(addr, ws_addr, tls, limits, federation))
}

/// `--redis`'s value: an address, or `host:port` with a host name (`[::1]:6379` for
/// an IPv6 address).
fn parse_target(raw: &str) -> Option<Target> {
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Some(Target::Tcp(addr));
    }
    let (host, port) = raw.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    if host.is_empty() || host.contains(['[', ']', ':']) || host.contains(char::is_whitespace) {
        return None;
    }
    Some(Target::host(host, port))
}

/// A node id unique enough: the process id and the standard library's per-process
/// random hash keys, over the time.
fn random_node_id() -> String {
    use std::hash::BuildHasher;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let hash = std::collections::hash_map::RandomState::new().hash_one((time, std::process::id()));
    format!("{hash:016x}")
}

/// Refuses to start: `message` on stderr, exit status 2.
fn refuse(message: &str) -> ! {
    eprintln!("chat: {message}");
    std::process::exit(2);
}

fn run(
    addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    federation: Option<federation::Config>,
) -> io::Result<()> {
    // The watermarks are the server's flow control: its senders wait while a member
    // has more than the high one unsent, and go on once it is down to the low one.
    // The write cap is the hard limit: a write that would leave more than
    // `max_backlog` bytes queued for a member closes that member's connection alone.
    // Fanout is where coalescing pays: each member gets one write per window carrying
    // every line of it, not one per line (see `Builder::coalesce_writes`).
    let mut reactor = Reactor::builder()
        .write_watermarks(HIGH_WATERMARK_BYTES, LOW_WATERMARK_BYTES)
        .write_cap_bytes(limits.max_backlog_bytes)
        .coalesce_writes(limits.coalesce)
        .build()?;
    let server = Rc::new(RefCell::new(Server::new(HIGH_WATERMARK_BYTES)));
    let federated = federation.is_some();
    if let Some(config) = federation {
        federation::start(&mut reactor, &server, config);
    }
    let line_server = Rc::clone(&server);
    let port = listen_tcp(&mut reactor, addr, tls.as_ref(), move |_: &Addr| {
        Some(session::protocol(Rc::clone(&line_server), limits.session))
    })?;
    // Browsers: the same chat, the same TLS (if any), on a port of their own.
    let ws_port = match ws_addr {
        Some(ws_addr) => {
            let ws_server = Rc::clone(&server);
            let port = listen_tcp(&mut reactor, ws_addr, tls.as_ref(), move |_: &Addr| {
                Some(ws::protocol(Rc::clone(&ws_server), limits.session))
            })?;
            Some(port.local_addr)
        }
        None => None,
    };
    if federated {
        // Members who come at once then find the other servers' members, and a
        // block of guest numbers, there.
        let deadline = Instant::now() + FEDERATION_START_WAIT;
        while !server.borrow().federation_up() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("federation: redis not up yet; serving local members meanwhile");
                break;
            }
            reactor.run_once(Some(left))?;
        }
    }
    match ws_port {
        Some(ws_port) => serve_listeners(&mut reactor, port.local_addr, &[("ws", ws_port)]),
        None => serve(&mut reactor, port.local_addr),
    }
}
