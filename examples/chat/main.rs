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
//! Limits: a line over `--max-line` bytes (default 4096, `\r\n` not counted) gets
//! `* error: line too long` and the connection is closed. A member that does not
//! read, so that more than `--max-backlog` bytes (default 1 MiB) wait for it, is
//! disconnected (its queued output dropped) without slowing the rest of the room.
//!
//! After each round of writes the server waits `--coalesce-us` microseconds (default
//! 300; 0 turns it off) before it reads again, so each member's next write carries
//! every line that arrived meanwhile rather than one write per line: about a quarter
//! less CPU at a busy room's rates, for at most that much added latency.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example chat -- [--listen 127.0.0.1:8000] [--max-line 4096] [--max-backlog 1048576] [--coalesce-us 300]
//! ```
//!
//! Poke it with `nc 127.0.0.1 8000` in two terminals (or with `chat_client`), type a
//! line in one and see it in the other; try `/nick`, `/join kitchen`, `/who`.
//! SIGINT or SIGTERM stops it gracefully.

mod command;
#[path = "../common/mod.rs"]
mod common;
mod server;
mod session;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use common::{exit_status, init_logging, serve, Cli};
use server::Server;
use twistor::{Addr, Reactor};

/// Limits from the command line.
#[derive(Clone, Copy)]
struct Limits {
    max_line_bytes: usize,
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
            "unsent output after which a member that does not read is cut off",
        )
        .option(
            "coalesce-us",
            "MICROS",
            "300",
            "after writing, wait this many µs before reading again (0: off)",
        )
        .parse();
    let limits = Limits {
        max_line_bytes: args.value("max-line"),
        max_backlog_bytes: args.value("max-backlog"),
        coalesce: Duration::from_micros(args.value("coalesce-us")),
    };
    exit_status("chat", run(args.listen_addr(), limits))
}

fn run(addr: SocketAddr, limits: Limits) -> io::Result<()> {
    // The write cap is the slow-consumer rule: a write that would leave more than
    // `max_backlog` bytes queued for a member closes that member's connection alone.
    // Fanout is where coalescing pays: each member gets one write per window carrying
    // every line of it, not one per line (see `Builder::coalesce_writes`).
    let mut reactor = Reactor::builder()
        .write_cap_bytes(limits.max_backlog_bytes)
        .coalesce_writes(limits.coalesce)
        .build()?;
    let server = Rc::new(RefCell::new(Server::default()));
    let port = reactor.listen_tcp(addr, move |_: &Addr| {
        Some(session::protocol(Rc::clone(&server), limits.max_line_bytes))
    })?;
    serve(&mut reactor, port.local_addr)
}
