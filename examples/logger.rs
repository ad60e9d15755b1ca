//! A connection logger, after Twisted's SimpleLogger.
//!
//! Prints `Got connection from ADDR` when a client connects, `ADDR: LINE` for each line
//! it sends, and `ADDR disconnected` when it goes, all on stdout (ADDR is the client's
//! `ip:port`). Lines end with `\n`; a trailing `\r` is stripped. Nothing is sent back.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example logger -- [--listen 127.0.0.1:5642]
//! ```
//!
//! Poke it with `nc 127.0.0.1 5642` and type a few lines; watch the server's stdout.
//! SIGINT or SIGTERM stops it gracefully.

mod common;

use std::io::{self, Write};
use std::process::ExitCode;

use common::{exit_status, init_logging, serve, Cli};
use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::{Addr, Reactor, Reason};

/// The longest line logged; a longer one closes the connection rather than letting a
/// client that never sends a newline fill our memory.
const MAX_LINE_BYTES: usize = 64 * 1024;

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new(
        "logger",
        "Logs each client's lines to stdout.",
        "127.0.0.1:5642",
    )
    .parse();
    exit_status("logger", run(args.listen_addr()))
}

fn run(addr: std::net::SocketAddr) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let port = reactor.listen_tcp(addr, |peer: &Addr| {
        let logger = Logger { peer: peer.clone() };
        Some(
            LineReceiver::new(logger)
                .delimiter(b"\n")
                .max_length(MAX_LINE_BYTES),
        )
    })?;
    serve(&mut reactor, port.local_addr)
}

/// Writes one line to stdout and flushes it, so that a reader sees it at once. An
/// error (stdout closed) is ignored: the server goes on serving.
fn say(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{args}");
    let _ = out.flush();
}

/// One client's logger.
struct Logger {
    peer: Addr,
}

impl Logger {
    fn log_line(&self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        say(format_args!(
            "{}: {}",
            self.peer,
            String::from_utf8_lossy(line)
        ));
    }
}

impl LineHandler for Logger {
    fn connection_made(&mut self, _cx: &mut LineContext<'_, '_>) {
        say(format_args!("Got connection from {}", self.peer));
    }

    fn line_received(&mut self, _cx: &mut LineContext<'_, '_>, line: &[u8]) {
        self.log_line(line);
    }

    /// The client is done sending: log a last line that had no newline, then close.
    fn read_eof(&mut self, cx: &mut LineContext<'_, '_>) {
        let rest = cx.clear_line_buffer();
        if !rest.is_empty() {
            self.log_line(&rest);
        }
        cx.lose_connection();
    }

    fn connection_lost(&mut self, _cx: &mut LineContext<'_, '_>, _reason: Reason) {
        say(format_args!("{} disconnected", self.peer));
    }
}
