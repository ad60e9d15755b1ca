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
//! Run it:
//!
//! ```text
//! cargo run --release --example chat -- [--listen 127.0.0.1:8000] [--max-line 4096] [--max-backlog 1048576]
//! ```
//!
//! Poke it with `nc 127.0.0.1 8000` in two terminals (or with `chat_client`), type a
//! line in one and see it in the other; try `/nick`, `/join kitchen`, `/who`.
//! SIGINT or SIGTERM stops it gracefully.

mod command;
#[path = "../common/mod.rs"]
mod common;
mod server;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use command::Command;
use common::{announce, exit_status, init_logging, serve, Cli};
use server::{MemberKey, Server};
use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::{Addr, Reactor, Reason};

/// A chat connection: lines cut at `\n`, handled by a [`Session`].
type ChatProtocol = LineReceiver<Session>;

/// Limits from the command line.
#[derive(Clone, Copy)]
struct Limits {
    max_line_bytes: usize,
    max_backlog_bytes: usize,
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
        .parse();
    let limits = Limits {
        max_line_bytes: args.value("max-line"),
        max_backlog_bytes: args.value("max-backlog"),
    };
    exit_status("chat", run(args.listen_addr(), limits))
}

fn run(addr: SocketAddr, limits: Limits) -> io::Result<()> {
    // The write cap is the slow-consumer rule: a write that would leave more than
    // `max_backlog` bytes queued for a member closes that member's connection alone.
    let mut reactor = Reactor::builder()
        .write_cap_bytes(limits.max_backlog_bytes)
        .build()?;
    let server = Rc::new(RefCell::new(Server::default()));
    let port = reactor.listen_tcp(addr, move |_: &Addr| {
        let session = Session {
            server: Rc::clone(&server),
            key: None,
            max_line_bytes: limits.max_line_bytes,
        };
        // One byte more than the limit for the `\r` that may precede `\n`; the
        // length without it is checked in `line_received`.
        let max_length = limits.max_line_bytes.saturating_add(1);
        Some(
            LineReceiver::new(session)
                .delimiter(b"\n")
                .max_length(max_length),
        )
    })?;
    announce(port.local_addr);
    serve(&mut reactor)
}

/// One client's connection: its place in the shared [`Server`].
struct Session {
    server: Rc<RefCell<Server>>,
    /// `None` before `connection_made` and once the member has left.
    key: Option<MemberKey>,
    max_line_bytes: usize,
}

impl Session {
    /// Leaves the server and closes the connection, after sending what is queued
    /// for it (a last notice, say).
    fn close(&mut self, cx: &mut LineContext<'_, '_>) {
        if let Some(key) = self.key.take() {
            let mut server = self.server.borrow_mut();
            server.write_out(key, cx);
            server.depart(key);
        }
        cx.lose_connection();
    }

    fn line_too_long(&mut self, cx: &mut LineContext<'_, '_>) {
        log::warn!(
            "{} {}: line over {} bytes; closing",
            cx.id(),
            cx.peer_addr().map_or_else(String::new, |a| a.to_string()),
            self.max_line_bytes
        );
        if let Some(key) = self.key {
            self.server
                .borrow_mut()
                .notice(key, b"error: line too long");
        }
        self.close(cx);
    }

    /// After every callback: writes out members with a lot queued, and makes sure
    /// the rest goes out at the end of this turn of the reactor.
    fn settle(&self, cx: &mut LineContext<'_, '_>) {
        if self.server.borrow_mut().write_urgent(cx) {
            // A zero delay runs in this turn's timer phase, after every connection
            // with input has had its say: lines from several senders then reach
            // each member in one write.
            cx.call_later(Duration::ZERO, |p: &mut ChatProtocol, cx| {
                p.handler().server.borrow_mut().flush(cx)
            });
        }
    }
}

impl LineHandler for Session {
    fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
        let key = self.server.borrow_mut().arrive(cx.id());
        log::debug!("{}: member {key} arrived", cx.id());
        self.key = Some(key);
        self.settle(cx);
    }

    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        let Some(key) = self.key else { return };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line_bytes {
            return self.line_too_long(cx);
        }
        match command::parse(line) {
            Ok(Command::Quit) => {
                self.server.borrow_mut().notice(key, b"bye");
                self.close(cx);
            }
            Ok(command) => self.server.borrow_mut().execute(key, command),
            Err(error) => self.server.borrow_mut().error(key, error),
        }
        self.settle(cx);
    }

    fn line_length_exceeded(&mut self, cx: &mut LineContext<'_, '_>, _line: &[u8]) {
        self.line_too_long(cx);
    }

    /// The client is done sending: it has had the answers to everything it sent
    /// (they are queued before this), so leave and close.
    fn read_eof(&mut self, cx: &mut LineContext<'_, '_>) {
        self.close(cx);
        self.settle(cx);
    }

    fn connection_lost(&mut self, cx: &mut LineContext<'_, '_>, reason: Reason) {
        log::debug!("{}: {reason}", cx.id());
        let mut server = self.server.borrow_mut();
        if let Some(key) = self.key.take() {
            server.depart(key);
        }
        // The end-of-turn flush may have been this connection's timer, which died
        // with it: flush now.
        server.flush(cx);
    }
}
