//! An upper-casing echo server, after Python's socketserver echo example.
//!
//! Each line received is sent back upper-cased (ASCII letters only; every other byte
//! passes through), with the same line ending. When the client shuts its write side,
//! a final line without a newline is echoed too, then the server closes. A line over
//! 64 KiB closes the connection.
//!
//! With `--raw` there is no framing: bytes are echoed upper-cased as they arrive, as
//! Twisted's `Echo` protocol does. This is the server the load rig measures.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example echo -- [--listen 127.0.0.1:5639] [--raw]
//! ```
//!
//! Poke it with `nc 127.0.0.1 5639` and type `hello SocketServer`: it answers
//! `HELLO SOCKETSERVER`. SIGINT or SIGTERM stops it gracefully.

mod common;

use std::process::ExitCode;

use common::echo::{line_echo, RawEcho};
use common::{exit_status, init_logging, serve, Cli};
use twistor::{Addr, Reactor};

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new("echo", "Upper-casing echo server.", "127.0.0.1:5639")
        .switch("raw", "echo bytes as they arrive, without line framing")
        .parse();
    exit_status("echo", run(args.listen_addr(), args.switch("raw")))
}

fn run(addr: std::net::SocketAddr, raw: bool) -> std::io::Result<()> {
    let mut reactor = Reactor::new()?;
    let port = if raw {
        reactor.listen_tcp(addr, |_: &Addr| Some(RawEcho::default()))?
    } else {
        reactor.listen_tcp(addr, |_: &Addr| Some(line_echo()))?
    };
    serve(&mut reactor, port.local_addr)
}
