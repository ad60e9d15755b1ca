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
//! With `--tls-cert PEM --tls-key PEM` the port speaks TLS (1.2 and 1.3) and the
//! protocol on top is the same; `--tls-client-ca PEM` asks every client for a
//! certificate signed by that CA, and `--tls-handshake-timeout SECS` (default 10)
//! closes a handshake that takes longer.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example echo -- [--listen 127.0.0.1:5639] [--raw] [--threads N]
//!     [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM] [--tls-handshake-timeout SECS]]
//! ```
//!
//! Poke it with `nc 127.0.0.1 5639` and type `hello SocketServer`: it answers
//! `HELLO SOCKETSERVER`. With TLS, `openssl s_client -quiet -connect 127.0.0.1:5639`
//! does the same. SIGINT or SIGTERM stops it gracefully.

mod common;

use std::net::SocketAddr;
use std::process::ExitCode;

use common::echo::{line_echo, RawEcho};
use common::{
    exit_status, init_logging, listen_tcp, prepare_group_member, serve, serve_group, Cli,
};
use twistor::tls::TlsAcceptor;
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
        .tls_flags()
        .parse();
    let addr = args.listen_addr();
    let raw = args.switch("raw");
    let threads = args.number::<usize>("threads", 1..);
    let tls = args.tls_acceptor();
    let result = match threads {
        1 => run(addr, raw, tls),
        n if raw => run_group(addr, n, tls, RawEcho::default),
        n => run_group(addr, n, tls, line_echo),
    };
    exit_status("echo", result)
}

fn run(addr: SocketAddr, raw: bool, tls: Option<TlsAcceptor>) -> std::io::Result<()> {
    let mut reactor = Reactor::new()?;
    let tls = tls.as_ref();
    let port = if raw {
        listen_tcp(&mut reactor, addr, tls, |_: &Addr| Some(RawEcho::default()))?
    } else {
        listen_tcp(&mut reactor, addr, tls, |_: &Addr| Some(line_echo()))?
    };
    serve(&mut reactor, port.local_addr)
}

/// `--threads N`: N reactors, each serving its share of the connections with
/// protocols from `protocol`, all with TLS if `tls` is given.
fn run_group<P: Protocol>(
    addr: SocketAddr,
    threads: usize,
    tls: Option<TlsAcceptor>,
    protocol: fn() -> P,
) -> std::io::Result<()> {
    let mut builder = ReactorGroup::builder().threads(threads);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    let group = builder.spawn(addr, move |_, reactor| {
        prepare_group_member(reactor)?;
        Ok(move |_: &Addr| Some(protocol()))
    })?;
    serve_group(group)
}
