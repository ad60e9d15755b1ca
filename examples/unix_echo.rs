//! The line echo of `echo`, on a Unix-domain stream socket.
//!
//! Each line received is sent back upper-cased, with the same line ending. A stale
//! socket file left by a dead server is replaced; if a live server answers on the path,
//! this one exits 1 with an error. The socket file is removed on exit.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example unix_echo -- --listen twistor-echo.sock
//! ```
//!
//! Poke it with `nc -U twistor-echo.sock`. SIGINT or SIGTERM stops it gracefully.

mod common;

use std::process::ExitCode;

use common::echo::line_echo;
use common::{exit_status, init_logging, serve, Cli};
use twistor::{Addr, Reactor};

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new(
        "unix_echo",
        "Upper-casing line echo server on a Unix socket.",
        "twistor-echo.sock",
    )
    .parse();
    exit_status("unix_echo", run(args.listen_path()))
}

fn run(path: &str) -> std::io::Result<()> {
    let mut reactor = Reactor::new()?;
    // The listener replaces a stale file, refuses a live server's path, and removes
    // the file when it closes (on a graceful stop, or when the reactor is dropped).
    reactor.listen_unix(path, |_: &Addr| Some(line_echo()))?;
    serve(&mut reactor, path)
}
