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
//! With `--threads N` (N > 1) it runs N reactors, one per thread, each with its own
//! SO_REUSEPORT listener on the same address (a `ReactorGroup`): the kernel spreads
//! connections over them. The default, 1, is the plain single-reactor server.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example echo -- [--listen 127.0.0.1:5639] [--raw] [--threads N]
//! ```
//!
//! Poke it with `nc 127.0.0.1 5639` and type `hello SocketServer`: it answers
//! `HELLO SOCKETSERVER`. SIGINT or SIGTERM stops it gracefully.

mod common;

use std::net::SocketAddr;
use std::process::ExitCode;

use common::echo::{line_echo, RawEcho};
use common::{exit_status, init_logging, prepare_group_member, serve, serve_group, Cli};
use twistor::{Addr, Protocol, Reactor, ReactorGroup};

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new("echo", "Upper-casing echo server.", "127.0.0.1:5639")
        .switch("raw", "echo bytes as they arrive, without line framing")
        .option(
            "threads",
            "N",
            "1",
            "reactors, one per thread, sharing the address with SO_REUSEPORT",
        )
        .parse();
    let addr = args.listen_addr();
    let raw = args.switch("raw");
    let result = match args.number::<usize>("threads", 1..) {
        1 => run(addr, raw),
        n if raw => run_group(addr, n, RawEcho::default),
        n => run_group(addr, n, line_echo),
    };
    exit_status("echo", result)
}

fn run(addr: SocketAddr, raw: bool) -> std::io::Result<()> {
    let mut reactor = Reactor::new()?;
    let port = if raw {
        reactor.listen_tcp(addr, |_: &Addr| Some(RawEcho::default()))?
    } else {
        reactor.listen_tcp(addr, |_: &Addr| Some(line_echo()))?
    };
    serve(&mut reactor, port.local_addr)
}

/// `--threads N`: N reactors, each serving its share of the connections with
/// protocols from `protocol`.
fn run_group<P: Protocol>(
    addr: SocketAddr,
    threads: usize,
    protocol: fn() -> P,
) -> std::io::Result<()> {
    let group = ReactorGroup::builder()
        .threads(threads)
        .spawn(addr, move |_, reactor| {
            prepare_group_member(reactor)?;
            Ok(move |_: &Addr| Some(protocol()))
        })?;
    serve_group(group)
}
