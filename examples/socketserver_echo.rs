//! The seed's `EchoRequestHandler`, written against `twistor::socketserver` in
//! threading mode: Python's `ThreadingTCPServer` echo, in Rust.
//!
//! On the wire it is the `echo` example: each line is sent back upper-cased (ASCII
//! letters only), with the same line ending; when the client shuts its write side, a
//! final line without a newline is echoed too, then the server closes; a line over
//! 64 KiB closes the connection. Each connection is served by a blocking handler on a
//! worker thread, while the reactor accepts.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example socketserver_echo -- [--listen 127.0.0.1:5641]
//! ```
//!
//! Poke it with `nc 127.0.0.1 5641` and type `hello SocketServer`: it answers
//! `HELLO SOCKETSERVER`. SIGINT or SIGTERM calls `shutdown()`; the server then closes,
//! giving running handlers a few seconds to finish, and exits 0.
//!
//! Each connection holds a worker thread while it is open, so a connection that sends
//! nothing for `--request-timeout` seconds (default 60; 0 waits for ever, as Python's
//! `StreamRequestHandler.timeout = None`) is closed: otherwise as many idle clients as
//! there are workers and queue slots would shut everyone else out.

mod common;

use std::io::{self, BufRead, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use common::echo::MAX_LINE_BYTES;
use common::{announce, exit_status, init_logging, Cli};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use twistor::socketserver::{StreamRequest, StreamRequestHandler, TcpServer};

/// Echoes each line upper-cased, as the seed's `EchoRequestHandler`.
struct EchoRequestHandler;

impl StreamRequestHandler for EchoRequestHandler {
    fn handle(&mut self, request: &mut StreamRequest) -> io::Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            // One byte past the limit tells a line that is too long from one that
            // is exactly the limit (the newline is not counted).
            let limit = MAX_LINE_BYTES as u64 + 1;
            let n = Read::by_ref(&mut request.rfile)
                .take(limit)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                return Ok(()); // the client is done; wfile is flushed after finish
            }
            let complete = line.ends_with(b"\n");
            if !complete && line.len() > MAX_LINE_BYTES {
                log::warn!(
                    "{}: line over {MAX_LINE_BYTES} bytes",
                    request.client_address
                );
                return Ok(());
            }
            line.make_ascii_uppercase();
            request.wfile.write_all(&line)?;
            if !complete {
                // A last line without a newline: read_until stopped at end of input.
                return Ok(());
            }
            // Answer once the lines that arrived together are all answered, so a
            // burst of pipelined lines goes back in one write.
            if request.rfile.buffer().is_empty() {
                request.wfile.flush()?;
            }
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new(
        "socketserver_echo",
        "Upper-casing line echo server on twistor's socketserver module (threading mode).",
        "127.0.0.1:5641",
    )
    .option(
        "request-timeout",
        "SECS",
        "60",
        "close a connection idle this long (0: never)",
    )
    .parse();
    let addr = args.listen_addr();
    let timeout = match args.number::<u64>("request-timeout", ..) {
        0 => None,
        secs => Some(Duration::from_secs(secs)),
    };
    exit_status("socketserver_echo", run(addr, timeout))
}

fn run(addr: SocketAddr, request_timeout: Option<Duration>) -> io::Result<()> {
    let mut server = TcpServer::builder(addr)
        .threading(true)
        .request_timeout(request_timeout)
        .bind(|| EchoRequestHandler)?;

    // SIGINT and SIGTERM stop serve_forever from a thread of their own, as a Python
    // program calls server.shutdown() from another thread. Installed before the
    // announcement, so that a signal sent as soon as we are listening is not lost.
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let signals_handle = signals.handle();
    let shutdown = server.shutdown_handle();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            log::info!("signal {signal}: shutting down");
            shutdown.shutdown();
        }
    });

    announce(server.server_address());
    server.serve_forever()?;
    signals_handle.close();
    server.server_close()
}
