//! An upper-casing UDP echo server, after socketserver's UDP echo handler.
//!
//! Each datagram is sent back upper-cased (ASCII letters only) to its sender. A
//! datagram over `--max-datagram` bytes (1 to 65535) is dropped with a warning, never
//! echoed cut.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example udp_echo -- [--listen 127.0.0.1:5640] [--max-datagram 8192]
//! ```
//!
//! Poke it with `nc -u 127.0.0.1 5640`. SIGINT or SIGTERM stops it gracefully.

mod common;

use std::process::ExitCode;

use common::echo::upper;
use common::{exit_status, init_logging, serve, Cli};
use twistor::{Addr, DatagramContext, DatagramProtocol, Reactor, DEFAULT_MAX_DATAGRAM_BYTES};

/// The largest `--max-datagram`: a UDP length field cannot announce more, so a
/// larger maximum would only make the receive buffer bigger (and an absurd one would
/// fail to allocate). Zero would drop every datagram.
const MAX_UDP_DATAGRAM_BYTES: usize = 65_535;

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new(
        "udp_echo",
        "Upper-casing UDP echo server.",
        "127.0.0.1:5640",
    )
    .option(
        "max-datagram",
        "BYTES",
        &DEFAULT_MAX_DATAGRAM_BYTES.to_string(),
        "largest datagram echoed; larger ones are dropped",
    )
    .parse();
    let addr = args.listen_addr();
    let max = args.number::<usize>("max-datagram", 1..=MAX_UDP_DATAGRAM_BYTES);
    exit_status("udp_echo", run(addr, max))
}

fn run(addr: std::net::SocketAddr, max_datagram_bytes: usize) -> std::io::Result<()> {
    let mut reactor = Reactor::new()?;
    let id = reactor.listen_udp_max(addr, max_datagram_bytes, UdpEcho::default())?;
    let addr = reactor.datagram_addr(id).expect("just bound");
    serve(&mut reactor, addr)
}

#[derive(Default)]
struct UdpEcho {
    scratch: Vec<u8>,
}

impl DatagramProtocol for UdpEcho {
    fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], from: &Addr) {
        // UDP gives no delivery promise: a full socket buffer drops the reply.
        if let Err(e) = cx.send_to(upper(&mut self.scratch, data), from) {
            log::debug!("reply to {from} dropped: {e}");
        }
    }

    fn datagram_too_large(&mut self, cx: &mut DatagramContext<'_>, from: &Addr) {
        log::warn!(
            "dropped a datagram from {from}: over {} bytes",
            cx.max_datagram_bytes()
        );
    }
}
