//! Writing to a peer that has gone away gives the connection an error, never a
//! `SIGPIPE`: a program embedding the reactor need not ignore the signal (Rust's
//! runtime does, a C host or a Rust program built to restore it may not).
//!
//! The test process catches `SIGPIPE` with a flag (so a regression fails the test
//! instead of killing it), then has a protocol that does not read keep writing to
//! clients that have closed, over TCP and over a Unix socket, until the reactor
//! reports each connection lost; and writes through the socketserver module's
//! blocking `Connection` to closed peers until the write fails. The flag must still be
//! clear. Its own binary: the signal disposition is process-wide, so the two checks
//! are one test.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::{ErrorKind, IoSlice, Write};

use twistor::socketserver::Connection;
use twistor::{Addr, Context, Protocol, Reactor, Reason};

/// Pauses reading (so the peer's close is not seen as end of input) and writes every
/// millisecond until the connection is lost: once the peer's socket is gone, a write
/// fails with `EPIPE` or `ECONNRESET`.
struct Writer {
    made: Rc<Cell<usize>>,
    lost: Rc<Cell<usize>>,
}

fn write_again(_: &mut Writer, cx: &mut Context<'_>) {
    cx.write(b"are you there?\n");
    cx.call_later(Duration::from_millis(1), write_again);
}

impl Protocol for Writer {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.made.set(self.made.get() + 1);
        cx.pause_reading();
        write_again(self, cx);
    }

    fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        assert!(
            !matches!(reason, Reason::Done),
            "a write to a closed peer must fail: {reason:?}"
        );
        self.lost.set(self.lost.get() + 1);
    }
}

fn run_until(reactor: &mut Reactor, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
}

#[test]
fn writes_to_a_closed_peer_raise_no_sigpipe() {
    let sigpipe = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGPIPE, Arc::clone(&sigpipe)).unwrap();

    let made = Rc::new(Cell::new(0));
    let lost = Rc::new(Cell::new(0));
    let mut reactor = Reactor::new().unwrap();
    let factory = {
        let (made, lost) = (Rc::clone(&made), Rc::clone(&lost));
        move |_: &Addr| {
            Some(Writer {
                made: Rc::clone(&made),
                lost: Rc::clone(&lost),
            })
        }
    };
    let tcp = reactor
        .listen_tcp("127.0.0.1:0".parse().unwrap(), factory.clone())
        .unwrap();
    let dir = std::env::temp_dir().join(format!("twistor-sigpipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s");
    reactor.listen_unix(&path, factory).unwrap();

    let tcp_client = std::net::TcpStream::connect(tcp.local_addr).unwrap();
    let unix_client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    // Both accepted, so both are being written to; then the clients go away.
    run_until(&mut reactor, || made.get() == 2);
    drop(tcp_client);
    drop(unix_client);

    run_until(&mut reactor, || lost.get() == 2);
    assert!(
        !sigpipe.load(Ordering::SeqCst),
        "a reactor write to a closed peer raised SIGPIPE"
    );

    // The socketserver module's blocking connections, over both kinds of socket.
    let tcp_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_peer = std::net::TcpStream::connect(tcp_listener.local_addr().unwrap()).unwrap();
    let tcp_conn = Connection::Tcp(tcp_listener.accept().unwrap().0);
    let (unix_conn, unix_peer) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(tcp_peer);
    drop(unix_peer);
    for mut conn in [tcp_conn, Connection::Unix(unix_conn)] {
        // Both kinds of write: std's own `write` already avoids the signal, its
        // `write_vectored` (`writev(2)`) does not.
        let error = (0..1000)
            .find_map(|_| {
                let slices = [IoSlice::new(b"are you "), IoSlice::new(b"there?\n")];
                let vectored = conn.write_vectored(&slices).err();
                vectored.or_else(|| conn.write(b"hello?\n").err())
            })
            .expect("writes to a closed peer kept succeeding");
        assert!(
            matches!(
                error.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
            ),
            "{error}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !sigpipe.load(Ordering::SeqCst),
        "a socketserver write to a closed peer raised SIGPIPE"
    );
}
