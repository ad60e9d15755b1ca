//! A WebSocket echo server (RFC 6455): the server the Autobahn test suite runs
//! against.
//!
//! It accepts an HTTP/1.1 upgrade on any path; then every text or binary message is
//! sent back unchanged, as one message of the same type. Pings are answered with
//! pongs; a close frame is answered with a close frame echoing its code, then the
//! connection is closed.
//!
//! - A protocol violation closes with the RFC 6455 code for it (1002 protocol error,
//!   1007 invalid UTF-8 in a text message); a message over `--max-message` bytes
//!   (default 16 MiB) closes with 1009 as soon as a frame header announces it, before
//!   its payload is buffered.
//! - A request that is not a valid upgrade gets an HTTP error (400, or 426 with
//!   `Upgrade: websocket` when the upgrade headers are missing) and is closed; request
//!   headers over 8 KiB get 431. A request not complete within `--handshake-timeout`
//!   seconds (default 10) gets 408 and is closed, so a client that trickles its
//!   request (slowloris) holds a connection for that long at most.
//! - A client that does not read its echoes fills the write buffer: past the high
//!   watermark the server stops reading from it until it catches up. The write cap
//!   is twice `--max-message` plus 1 MiB (at least 16 MiB), room for a whole echo
//!   behind one still queued; past it the client is disconnected.
//! - permessage-deflate (RFC 7692) is negotiated when the client offers it (every
//!   parameter: context takeover, window bits); compressed messages are inflated
//!   within `--max-message`, so a deflate bomb is refused (1009) before it is
//!   inflated. Echoes go out compressed with the parameters agreed (RSV1 set),
//!   except those that deflate would not make smaller. `--no-deflate` accepts no
//!   extension.
//! - With `--tls-cert PEM --tls-key PEM` the port speaks TLS: `wss://`.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example ws_echo -- [--listen 127.0.0.1:9001] [--no-deflate]
//!     [--max-message BYTES] [--handshake-timeout SECS]
//!     [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM] [--tls-handshake-timeout SECS]]
//! ```
//!
//! Try it with Python's `websockets`:
//! `python3 -m websockets ws://127.0.0.1:9001/` and type a line. SIGINT or SIGTERM
//! stops it gracefully.

mod common;

use std::process::ExitCode;
use std::time::Duration;

use common::{exit_status, init_logging, listen_tcp, serve, Cli};
use twistor::websocket::{DeflateConfig, MessageRef, WebSocket, WsContext, WsHandler};
use twistor::{Addr, Reactor};

/// Sends every message back.
struct Echo;

impl WsHandler for Echo {
    fn message_received(&mut self, cx: &mut WsContext<'_, '_>, message: MessageRef<'_>) {
        cx.send(message);
    }

    fn pause_producing(&mut self, cx: &mut WsContext<'_, '_>) {
        cx.pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut WsContext<'_, '_>) {
        cx.resume_reading();
    }
}

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new("ws_echo", "WebSocket echo server.", "127.0.0.1:9001")
        .switch("no-deflate", "do not negotiate permessage-deflate")
        .option(
            "max-message",
            "BYTES",
            "16777216",
            "close with 1009 on a message over this size",
        )
        .option(
            "handshake-timeout",
            "SECS",
            "10",
            "answer 408 and close when the upgrade request is not in by then",
        )
        .tls_flags()
        .parse();
    let addr = args.listen_addr();
    let max_message = args.number::<usize>("max-message", 1..);
    let handshake_timeout = Duration::try_from_secs_f64(args.value::<f64>("handshake-timeout"))
        .ok()
        .filter(|t| !t.is_zero())
        .unwrap_or_else(|| {
            args.refuse("handshake-timeout", "must be a positive number of seconds")
        });
    let deflate = !args.switch("no-deflate");
    let tls = args.tls_acceptor();
    let result = (|| {
        // Room for a whole echo behind one still queued: a peer that reads slowly is
        // paused, not cut off, unless it stops reading altogether.
        let write_cap = (2 * max_message).saturating_add(1 << 20).max(16 << 20);
        let mut reactor = Reactor::builder().write_cap_bytes(write_cap).build()?;
        let port = listen_tcp(&mut reactor, addr, tls.as_ref(), move |_: &Addr| {
            let ws = WebSocket::server(Echo)
                .max_message_bytes(max_message)
                .max_frame_bytes(max_message)
                .handshake_timeout(Some(handshake_timeout));
            Some(if deflate {
                ws.negotiator(Box::new(DeflateConfig::default()))
            } else {
                ws
            })
        })?;
        serve(&mut reactor, port.local_addr)
    })();
    exit_status("ws_echo", result)
}
