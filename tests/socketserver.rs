//! The `socketserver` module: the seed's echo on every server kind and mode, the hooks
//! (`verify_request`, `handle_error`, `handle_timeout`), shutdown, the listening
//! options, Unix socket files, oversized datagrams, and the `socketserver_echo`
//! example driven as a process.
//!
//! Every blocking step is bounded: client sockets carry read timeouts and every wait on
//! a channel has a deadline ([`WATCHDOG`]), which only catches a hung test and never
//! decides a passing one. Nothing waits on a sleep; no assertion is about timing.

mod common;

use common::TempDir;

use std::collections::HashSet;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use twistor::socketserver::kind::Kind;
use twistor::socketserver::{
    Connection, DatagramRequest, DatagramRequestHandler, RequestError, Server, ShutdownHandle,
    StreamRequest, StreamRequestHandler, TcpServer, UdpServer, UnixDatagramServer,
    UnixStreamServer,
};
use twistor::Addr;

use common::example::{self, read_until_closed, Listening};

/// How long any single wait may take before the test fails.
const WATCHDOG: Duration = Duration::from_secs(20);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ----- handlers -----

/// The seed's echo: each line back upper-cased, until the client is done.
struct LineEcho;

impl StreamRequestHandler for LineEcho {
    fn handle(&mut self, request: &mut StreamRequest) -> io::Result<()> {
        let mut line = Vec::new();
        while request.rfile.read_until(b'\n', &mut line)? > 0 {
            line.make_ascii_uppercase();
            request.wfile.write_all(&line)?;
            request.wfile.flush()?;
            line.clear();
        }
        Ok(())
    }
}

/// Each datagram back upper-cased.
struct Upper;

impl DatagramRequestHandler for Upper {
    fn handle(&mut self, request: &mut DatagramRequest) -> io::Result<()> {
        let upper = request.packet().to_ascii_uppercase();
        request.wfile.write_all(&upper)
    }
}

/// What a handler or hook saw, sent to the test thread.
#[derive(Debug)]
enum Seen {
    Setup(Addr),
    Finished(Addr),
    Error(Addr, RequestError),
}

/// A channel the hooks and handlers report on, with a bounded receive.
struct Events {
    tx: Sender<Seen>,
    rx: Receiver<Seen>,
}

impl Events {
    fn new() -> Events {
        let (tx, rx) = mpsc::channel();
        Events { tx, rx }
    }

    fn sender(&self) -> Sender<Seen> {
        self.tx.clone()
    }

    fn next(&self) -> Seen {
        self.rx
            .recv_timeout(WATCHDOG)
            .expect("no event in time from the server")
    }

    /// Events already sent, without waiting.
    fn drain(&self) -> Vec<Seen> {
        self.rx.try_iter().collect()
    }

    /// The next error reported to `handle_error`, skipping other events.
    fn next_error(&self) -> (Addr, RequestError) {
        loop {
            if let Seen::Error(addr, e) = self.next() {
                return (addr, e);
            }
        }
    }
}

/// Line echo that reports setup and finish, and fails on request: `panic` panics,
/// `fail` returns an error.
struct Scripted {
    events: Sender<Seen>,
}

impl StreamRequestHandler for Scripted {
    fn setup(&mut self, request: &mut StreamRequest) -> io::Result<()> {
        let _ = self
            .events
            .send(Seen::Setup(request.client_address.clone()));
        Ok(())
    }

    fn handle(&mut self, request: &mut StreamRequest) -> io::Result<()> {
        let mut line = Vec::new();
        while request.rfile.read_until(b'\n', &mut line)? > 0 {
            match &line[..] {
                b"panic\n" => panic!("boom"),
                b"fail\n" => return Err(io::Error::other("failed on purpose")),
                _ => {}
            }
            line.make_ascii_uppercase();
            request.wfile.write_all(&line)?;
            request.wfile.flush()?;
            line.clear();
        }
        Ok(())
    }

    fn finish(&mut self, request: &mut StreamRequest) -> io::Result<()> {
        let _ = self
            .events
            .send(Seen::Finished(request.client_address.clone()));
        Ok(())
    }
}

/// Datagram echo that reports each datagram it is given.
struct ScriptedUpper {
    events: Sender<Seen>,
}

impl DatagramRequestHandler for ScriptedUpper {
    fn handle(&mut self, request: &mut DatagramRequest) -> io::Result<()> {
        let _ = self
            .events
            .send(Seen::Setup(request.client_address.clone()));
        let upper = request.packet().to_ascii_uppercase();
        request.wfile.write_all(&upper)
    }
}

fn report_errors(events: Sender<Seen>) -> impl Fn(&Addr, RequestError) + Send + Sync {
    let events = Mutex::new(events);
    move |addr: &Addr, e: RequestError| {
        let _ = events.lock().unwrap().send(Seen::Error(addr.clone(), e));
    }
}

// ----- a server on its own thread -----

/// A server serving forever on a thread of its own, as a Python program runs
/// `serve_forever` in a thread and calls `shutdown` from another.
struct Background<A> {
    addr: A,
    shutdown: ShutdownHandle,
    /// What `serve_forever` then `server_close` returned.
    done: Receiver<io::Result<()>>,
    stopped: bool,
}

fn background<K, B>(build: B) -> Background<K::Address>
where
    K: Kind,
    B: FnOnce() -> io::Result<Server<K>> + Send + 'static,
{
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let run = || {
            let mut server = build()?;
            let _ = ready_tx.send((server.server_address(), server.shutdown_handle()));
            server.serve_forever()?;
            server.server_close()
        };
        let _ = done_tx.send(run());
    });
    match ready_rx.recv_timeout(WATCHDOG) {
        Ok((addr, shutdown)) => Background {
            addr,
            shutdown,
            done: done_rx,
            stopped: false,
        },
        Err(_) => panic!("the server did not start: {:?}", done_rx.try_recv()),
    }
}

impl<A> Background<A> {
    /// Shuts the server down and closes it; every handler must be able to finish.
    fn stop(mut self) {
        self.stopped = true;
        let shutdown = self.shutdown.clone();
        thread::spawn(move || shutdown.shutdown());
        self.done
            .recv_timeout(WATCHDOG)
            .expect("the server did not stop in time")
            .expect("serve_forever or server_close failed");
    }
}

impl<A> Drop for Background<A> {
    fn drop(&mut self) {
        if !self.stopped {
            // A failed test must not leave a server serving; do not wait for it.
            let shutdown = self.shutdown.clone();
            thread::spawn(move || shutdown.shutdown());
        }
    }
}

// ----- clients -----

fn tcp_client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s.set_write_timeout(Some(WATCHDOG)).unwrap();
    s
}

fn unix_client(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s.set_write_timeout(Some(WATCHDOG)).unwrap();
    s
}

fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind(localhost()).unwrap();
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s
}

/// Reads one line, byte by byte so that nothing after it is consumed.
fn read_line(s: &mut impl Read) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while !line.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("reading a line: {e} (got {line:?})"),
        }
    }
    line
}

/// Sends a line and returns the answer line.
fn exchange(s: &mut (impl Read + Write), line: &[u8]) -> Vec<u8> {
    s.write_all(line).expect("write");
    read_line(s)
}

// ----- the echo on every kind, in both modes -----

fn tcp_echo(threading: bool) {
    let server = background(move || {
        TcpServer::builder(localhost())
            .threading(threading)
            .bind(|| LineEcho)
    });
    assert_ne!(server.addr.port(), 0, "server_address has the real port");
    if threading {
        // Two clients at once, answered in turn: only concurrent handlers can.
        let mut a = tcp_client(server.addr);
        let mut b = tcp_client(server.addr);
        assert_eq!(
            exchange(&mut a, b"hello SocketServer\n"),
            b"HELLO SOCKETSERVER\n"
        );
        assert_eq!(exchange(&mut b, b"second client\n"), b"SECOND CLIENT\n");
        assert_eq!(exchange(&mut a, b"again\r\n"), b"AGAIN\r\n");
    } else {
        for _ in 0..2 {
            let mut a = tcp_client(server.addr);
            assert_eq!(
                exchange(&mut a, b"hello SocketServer\n"),
                b"HELLO SOCKETSERVER\n"
            );
            a.shutdown(Shutdown::Write).unwrap();
            assert_eq!(read_until_closed(&mut a), b"");
        }
    }
    server.stop();
}

#[test]
fn tcp_echo_synchronous() {
    tcp_echo(false);
}

#[test]
fn tcp_echo_threading() {
    tcp_echo(true);
}

fn unix_stream_echo(threading: bool) {
    let dir = TempDir::new("unix-stream-echo");
    let path = dir.path("echo.sock");
    let bind_path = path.clone();
    let server = background(move || {
        UnixStreamServer::builder(&bind_path)
            .threading(threading)
            .bind(|| LineEcho)
    });
    assert_eq!(server.addr, path);
    let mut a = unix_client(&path);
    assert_eq!(
        exchange(&mut a, b"hello SocketServer\n"),
        b"HELLO SOCKETSERVER\n"
    );
    if threading {
        let mut b = unix_client(&path);
        assert_eq!(exchange(&mut b, b"second\n"), b"SECOND\n");
        assert_eq!(exchange(&mut a, b"first again\n"), b"FIRST AGAIN\n");
    }
    a.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_closed(&mut a), b"");
    server.stop();
    assert!(!path.exists(), "the socket file is removed on close");
}

#[test]
fn unix_stream_echo_synchronous() {
    unix_stream_echo(false);
}

#[test]
fn unix_stream_echo_threading() {
    unix_stream_echo(true);
}

fn udp_echo(threading: bool) {
    let server = background(move || {
        UdpServer::builder(localhost())
            .threading(threading)
            .bind(|| Upper)
    });
    assert_ne!(server.addr.port(), 0);
    let client = udp_client();
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        client.send_to(b"hello SocketServer", server.addr).unwrap();
        let (n, from) = client.recv_from(&mut buf).expect("a reply");
        assert_eq!(&buf[..n], b"HELLO SOCKETSERVER");
        assert_eq!(
            from, server.addr,
            "the reply comes from the server's address"
        );
    }
    server.stop();
}

#[test]
fn udp_echo_synchronous() {
    udp_echo(false);
}

#[test]
fn udp_echo_threading() {
    udp_echo(true);
}

fn unix_datagram_echo(threading: bool) {
    let dir = TempDir::new("unix-dgram-echo");
    let path = dir.path("server.sock");
    let bind_path = path.clone();
    let server = background(move || {
        UnixDatagramServer::builder(&bind_path)
            .threading(threading)
            .bind(|| Upper)
    });
    // A client must bind a path of its own to be answered.
    let client = UnixDatagram::bind(dir.path("client.sock")).unwrap();
    client.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        client.send_to(b"hello SocketServer", &path).unwrap();
        let n = client.recv(&mut buf).expect("a reply");
        assert_eq!(&buf[..n], b"HELLO SOCKETSERVER");
    }
    server.stop();
    assert!(!path.exists(), "the socket file is removed on close");
}

#[test]
fn unix_datagram_echo_synchronous() {
    unix_datagram_echo(false);
}

#[test]
fn unix_datagram_echo_threading() {
    unix_datagram_echo(true);
}

/// A reply to a client whose socket has no path cannot be sent: reported, not lost
/// silently.
#[test]
fn unix_datagram_reply_to_unnamed_client_is_reported() {
    let dir = TempDir::new("unix-dgram-unnamed");
    let path = dir.path("server.sock");
    let events = Events::new();
    let mut server = UnixDatagramServer::builder(&path)
        .handle_error(report_errors(events.sender()))
        .bind(|| Upper)
        .unwrap();
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"hi", &path).unwrap();
    assert!(server.handle_request().unwrap());
    match events.next_error() {
        (Addr::Unix(None), RequestError::Io(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput)
        }
        other => panic!("unexpected report {other:?}"),
    }
}

/// In threading mode a datagram's reply leaves from the worker: it arrives even
/// though the serving thread turns the reactor no more.
#[test]
fn threaded_udp_reply_needs_no_further_turn() {
    let mut server = UdpServer::builder(localhost())
        .threading(true)
        .bind(|| Upper)
        .unwrap();
    let client = udp_client();
    client.send_to(b"once", server.server_address()).unwrap();
    assert!(server.handle_request().unwrap());
    let mut buf = [0u8; 16];
    let (n, _) = client.recv_from(&mut buf).expect("a reply");
    assert_eq!(&buf[..n], b"ONCE");
    server.server_close().unwrap();
}

// ----- verify_request -----

#[test]
fn verify_request_refuses_before_any_handler() {
    let refused: Arc<Mutex<HashSet<u16>>> = Arc::default();
    let events = Events::new();
    let tx = events.sender();
    let verify = Arc::clone(&refused);
    let mut server = TcpServer::builder(localhost())
        .verify_request(move |client| {
            let port = client.inet().expect("a TCP client").port();
            !verify.lock().unwrap().contains(&port)
        })
        .bind(move || Scripted { events: tx.clone() })
        .unwrap();
    let addr = server.server_address();

    // Both connect before the server accepts (the kernel completes the handshake), so
    // the refused port is known by the time verify_request runs.
    let mut bad = tcp_client(addr);
    refused
        .lock()
        .unwrap()
        .insert(bad.local_addr().unwrap().port());
    let mut good = tcp_client(addr);
    good.write_all(b"let me in\n").unwrap();
    good.shutdown(Shutdown::Write).unwrap();

    assert!(server.handle_request().unwrap());
    assert!(server.handle_request().unwrap());
    assert_eq!(
        read_until_closed(&mut bad),
        b"",
        "refused: closed unanswered"
    );
    assert_eq!(read_until_closed(&mut good), b"LET ME IN\n");

    let good_addr = Addr::Inet(good.local_addr().unwrap());
    let seen = events.drain();
    assert!(
        matches!(&seen[..], [Seen::Setup(a), Seen::Finished(b)] if *a == good_addr && *b == good_addr),
        "only the verified client got a handler: {seen:?}"
    );
}

#[test]
fn verify_request_drops_datagrams_from_refused_senders() {
    let refused: Arc<Mutex<HashSet<u16>>> = Arc::default();
    let events = Events::new();
    let tx = events.sender();
    let verify = Arc::clone(&refused);
    let mut server = UdpServer::builder(localhost())
        .verify_request(move |client| {
            !verify
                .lock()
                .unwrap()
                .contains(&client.inet().unwrap().port())
        })
        .bind(move || ScriptedUpper { events: tx.clone() })
        .unwrap();
    let addr = server.server_address();
    let bad = udp_client();
    refused
        .lock()
        .unwrap()
        .insert(bad.local_addr().unwrap().port());
    let good = udp_client();
    bad.send_to(b"bad", addr).unwrap();
    good.send_to(b"good", addr).unwrap();
    assert!(server.handle_request().unwrap());
    assert!(server.handle_request().unwrap());
    let mut buf = [0u8; 16];
    let (n, _) = good.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"GOOD");
    let good_addr = Addr::Inet(good.local_addr().unwrap());
    let seen = events.drain();
    assert!(
        matches!(&seen[..], [Seen::Setup(a)] if *a == good_addr),
        "only the verified sender was handled: {seen:?}"
    );
}

// ----- handle_error -----

/// A handler that panics or fails is reported to handle_error with its client, its
/// `finish` still runs, and the server serves the next client.
fn handler_failures_are_reported(threading: bool) {
    let events = Events::new();
    let tx = events.sender();
    let server = background({
        let errors = report_errors(events.sender());
        move || {
            TcpServer::builder(localhost())
                .threading(threading)
                .handle_error(errors)
                .bind(move || Scripted { events: tx.clone() })
        }
    });

    for (line, expect) in [(&b"panic\n"[..], "panic"), (b"fail\n", "io")] {
        let mut c = tcp_client(server.addr);
        let me = Addr::Inet(c.local_addr().unwrap());
        c.write_all(line).unwrap();
        assert_eq!(read_until_closed(&mut c), b"", "closed without an answer");
        let mut finished = false;
        let (who, error) = loop {
            match events.next() {
                Seen::Finished(a) => finished |= a == me,
                Seen::Error(a, e) => break (a, e),
                _ => {}
            }
        };
        assert_eq!(who, me);
        match (expect, &error) {
            ("panic", RequestError::Panic(m)) => assert!(m.contains("boom"), "{m}"),
            ("io", RequestError::Io(e)) => assert_eq!(e.to_string(), "failed on purpose"),
            _ => panic!("unexpected error for {line:?}: {error:?}"),
        }
        assert!(finished, "finish ran before the error was reported");
    }

    let mut next = tcp_client(server.addr);
    assert_eq!(exchange(&mut next, b"still there?\n"), b"STILL THERE?\n");
    drop(next);
    server.stop();
}

#[test]
fn handler_failures_are_reported_synchronous() {
    handler_failures_are_reported(false);
}

#[test]
fn handler_failures_are_reported_threading() {
    handler_failures_are_reported(true);
}

/// socketserver's StreamRequestHandler.timeout: a client that sends nothing makes the
/// handler's read fail, reported to handle_error.
#[test]
fn request_timeout_bounds_a_silent_client() {
    let events = Events::new();
    let mut server = TcpServer::builder(localhost())
        .request_timeout(Some(Duration::from_millis(50)))
        .handle_error(report_errors(events.sender()))
        .bind(|| LineEcho)
        .unwrap();
    let silent = tcp_client(server.server_address());
    assert!(server.handle_request().unwrap());
    match events.next_error() {
        (_, RequestError::Io(e)) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e:?}"
        ),
        other => panic!("unexpected report {other:?}"),
    }
    drop(silent);
}

// ----- handle_request and timeouts -----

#[test]
fn handle_request_times_out_once_then_serves() {
    let timeouts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&timeouts);
    let mut server = TcpServer::builder(localhost())
        .timeout(Some(Duration::from_millis(50)))
        .handle_timeout(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .bind(|| LineEcho)
        .unwrap();
    assert!(!server.handle_request().unwrap(), "no request came");
    assert_eq!(
        timeouts.load(Ordering::SeqCst),
        1,
        "handle_timeout ran once"
    );

    let mut c = tcp_client(server.server_address());
    c.write_all(b"late\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert!(server.handle_request().unwrap());
    assert_eq!(read_until_closed(&mut c), b"LATE\n");
    assert_eq!(timeouts.load(Ordering::SeqCst), 1, "no timeout when served");
}

// ----- shutdown -----

/// shutdown() from another thread returns once serve_forever has; handlers still
/// running go on, and server_close waits for them.
#[test]
fn shutdown_from_another_thread_while_handlers_run() {
    let events = Events::new();
    let tx = events.sender();
    let (serving_tx, serving_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut server = TcpServer::builder(localhost())
            .threading(true)
            .bind(move || Scripted { events: tx.clone() })
            .unwrap();
        ready_tx
            .send((server.server_address(), server.shutdown_handle()))
            .unwrap();
        let served = server.serve_forever();
        let _ = serving_tx.send(("serve_forever", served));
        let closed = server.server_close();
        let _ = serving_tx.send(("server_close", closed));
    });
    let (addr, shutdown) = ready_rx.recv_timeout(WATCHDOG).unwrap();

    let mut a = tcp_client(addr);
    let mut b = tcp_client(addr);
    assert_eq!(exchange(&mut a, b"one\n"), b"ONE\n");
    assert_eq!(exchange(&mut b, b"one\n"), b"ONE\n");

    let (returned_tx, returned_rx) = mpsc::channel();
    thread::spawn(move || {
        shutdown.shutdown();
        let _ = returned_tx.send(());
    });
    returned_rx
        .recv_timeout(WATCHDOG)
        .expect("shutdown() returned");
    let (what, result) = serving_rx.recv_timeout(WATCHDOG).unwrap();
    assert_eq!(what, "serve_forever");
    result.expect("serve_forever returned Ok");

    // The handlers were not cut off by the shutdown.
    assert_eq!(exchange(&mut a, b"two\n"), b"TWO\n");
    assert_eq!(exchange(&mut b, b"two\n"), b"TWO\n");
    drop(a);
    drop(b);
    let (what, result) = serving_rx.recv_timeout(WATCHDOG).unwrap();
    assert_eq!(what, "server_close");
    result.expect("server_close returned Ok");
    let finished = events
        .drain()
        .into_iter()
        .filter(|e| matches!(e, Seen::Finished(_)))
        .count();
    assert_eq!(finished, 2, "server_close waited for both handlers");
}

/// As in Python, a shutdown asked for while nothing serves makes the next
/// serve_forever return at once.
#[test]
fn shutdown_before_serve_forever_returns_at_once() {
    let mut server = TcpServer::builder(localhost()).bind(|| LineEcho).unwrap();
    server.shutdown_handle().shutdown();
    server.serve_forever().unwrap();
}

/// A synchronous handler may call shutdown() on its own serving thread: it does not
/// wait for itself, and serve_forever returns after that request.
#[test]
fn shutdown_from_a_synchronous_handler() {
    struct Stopper(Arc<OnceLock<ShutdownHandle>>);
    impl StreamRequestHandler for Stopper {
        fn handle(&mut self, request: &mut StreamRequest) -> io::Result<()> {
            self.0.get().expect("handle set").shutdown();
            request.wfile.write_all(b"bye\n")
        }
    }
    let slot: Arc<OnceLock<ShutdownHandle>> = Arc::default();
    let factory_slot = Arc::clone(&slot);
    let mut server = TcpServer::builder(localhost())
        .bind(move || Stopper(Arc::clone(&factory_slot)))
        .unwrap();
    slot.set(server.shutdown_handle()).unwrap();
    let addr = server.server_address();
    let client = thread::spawn(move || read_until_closed(&mut tcp_client(addr)));
    server.serve_forever().unwrap();
    assert_eq!(client.join().unwrap(), b"bye\n");
}

// ----- threading limits -----

/// With every worker busy and the queue full, a request is refused and reported as
/// Busy; the queued one is served once a worker is free.
#[test]
fn busy_workers_refuse_beyond_the_queue() {
    let events = Events::new();
    let server = background({
        let errors = report_errors(events.sender());
        move || {
            TcpServer::builder(localhost())
                .threading(true)
                .threads(1)
                .max_queued_requests(1)
                .handle_error(errors)
                .bind(|| LineEcho)
        }
    });
    let mut first = tcp_client(server.addr);
    assert_eq!(exchange(&mut first, b"a\n"), b"A\n"); // holds the only worker
    let mut queued = tcp_client(server.addr);
    let mut refused = tcp_client(server.addr);
    let refused_addr = Addr::Inet(refused.local_addr().unwrap());

    let (who, error) = events.next_error();
    assert!(matches!(error, RequestError::Busy), "{error:?}");
    assert_eq!(who, refused_addr);
    assert_eq!(read_until_closed(&mut refused), b"");

    drop(first); // frees the worker for the queued connection
    assert_eq!(exchange(&mut queued, b"b\n"), b"B\n");
    drop(queued);
    server.stop();
}

// ----- listening options -----

/// Binds, serves a client that the server closes first (leaving the server's end in
/// TIME_WAIT), closes, and binds the same port again.
fn rebind_after_time_wait(reuse: bool) -> io::Result<TcpServer> {
    struct Bye;
    impl StreamRequestHandler for Bye {
        fn handle(&mut self, request: &mut StreamRequest) -> io::Result<()> {
            request.wfile.write_all(b"bye\n")
        }
    }
    let mut server = TcpServer::builder(localhost())
        .allow_reuse_address(reuse)
        .bind(|| Bye)
        .unwrap();
    let addr = server.server_address();
    let mut c = tcp_client(addr);
    assert!(server.handle_request().unwrap());
    // The server closed first: its end of the connection lingers after ours closes.
    assert_eq!(read_until_closed(&mut c), b"bye\n");
    drop(c);
    server.server_close().unwrap();
    TcpServer::builder(addr)
        .allow_reuse_address(reuse)
        .bind(|| LineEcho)
}

#[test]
fn allow_reuse_address_binds_over_time_wait() {
    let again = rebind_after_time_wait(true).expect("rebinding with SO_REUSEADDR");
    assert_ne!(again.server_address().port(), 0);
}

#[test]
fn without_reuse_address_time_wait_blocks_the_port() {
    match rebind_after_time_wait(false) {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}"),
        Ok(_) => panic!("bound over TIME_WAIT without SO_REUSEADDR"),
    }
}

/// request_queue_size reaches listen(): a Unix listener refuses a non-blocking
/// connect (EAGAIN) once its backlog is full, deterministically, while nothing
/// accepts.
#[test]
fn request_queue_size_is_the_listen_backlog() {
    fn connects_until_full(path: &Path) -> (usize, Vec<socket2::Socket>) {
        let mut held = Vec::new();
        loop {
            let s =
                socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            match s.connect(&socket2::SockAddr::unix(path).unwrap()) {
                Ok(()) => held.push(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (held.len(), held),
                Err(e) => panic!("connect: {e}"),
            }
            assert!(held.len() < 1000, "the backlog never filled");
        }
    }
    let dir = TempDir::new("backlog");
    for backlog in [2, 5] {
        let path = dir.path(&format!("backlog-{backlog}.sock"));
        // Synchronous and never asked to serve: nothing accepts.
        let server = UnixStreamServer::builder(&path)
            .request_queue_size(backlog)
            .bind(|| LineEcho)
            .unwrap();
        let (queued, _held) = connects_until_full(&path);
        // Linux queues backlog + 1 connections on a Unix listener.
        assert_eq!(queued, backlog as usize + 1, "backlog {backlog}");
        server.server_close().unwrap();
    }
}

/// disable_nagle_algorithm sets TCP_NODELAY on accepted connections, and leaving it
/// off leaves Nagle on (the reactor itself turns Nagle off on what it accepts).
#[test]
fn disable_nagle_algorithm_reaches_accepted_sockets() {
    struct Report(Sender<bool>);
    impl StreamRequestHandler for Report {
        fn handle(&mut self, request: &mut StreamRequest) -> io::Result<()> {
            if let Connection::Tcp(s) = request.connection() {
                let _ = self.0.send(s.nodelay()?);
            }
            Ok(())
        }
    }
    for nodelay in [true, false] {
        let (tx, rx) = mpsc::channel();
        let mut server = TcpServer::builder(localhost())
            .disable_nagle_algorithm(nodelay)
            .bind(move || Report(tx.clone()))
            .unwrap();
        let _c = tcp_client(server.server_address());
        assert!(server.handle_request().unwrap());
        assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), nodelay);
    }
}

// ----- Unix socket files -----

#[test]
fn unix_stream_socket_file_stale_replaced_live_refused_removed_on_close() {
    let dir = TempDir::new("unix-stream-file");
    let path = dir.path("s.sock");
    drop(UnixListener::bind(&path).unwrap()); // a dead server's file
    assert!(path.exists());

    let mut server = UnixStreamServer::builder(&path).bind(|| LineEcho).unwrap();
    let mut c = unix_client(&path);
    c.write_all(b"fresh\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert!(server.handle_request().unwrap());
    assert_eq!(read_until_closed(&mut c), b"FRESH\n");

    let err = UnixStreamServer::builder(&path)
        .bind(|| LineEcho)
        .expect_err("a live server's path is refused");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(path.exists(), "the refused bind left the live file alone");

    server.server_close().unwrap();
    assert!(!path.exists(), "the file is removed on close");
}

#[test]
fn unix_datagram_socket_file_stale_replaced_live_refused_removed_on_close() {
    let dir = TempDir::new("unix-dgram-file");
    let path = dir.path("d.sock");
    drop(UnixDatagram::bind(&path).unwrap());
    assert!(path.exists());

    let mut server = UnixDatagramServer::builder(&path).bind(|| Upper).unwrap();
    let client = UnixDatagram::bind(dir.path("client.sock")).unwrap();
    client.set_read_timeout(Some(WATCHDOG)).unwrap();
    client.send_to(b"fresh", &path).unwrap();
    assert!(server.handle_request().unwrap());
    let mut buf = [0u8; 16];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"FRESH");

    let err = UnixDatagramServer::builder(&path)
        .bind(|| Upper)
        .expect_err("a live socket's path is refused");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

    drop(server); // dropping is server_close
    assert!(!path.exists(), "the file is removed on close");
}

// ----- datagram size -----

/// A datagram over max_packet_size is reported, never handed to a handler cut short;
/// one of exactly max_packet_size is served whole.
fn oversized_datagram_is_reported(threading: bool) {
    let events = Events::new();
    let tx = events.sender();
    let mut server = UdpServer::builder(localhost())
        .threading(threading)
        .max_packet_size(16)
        .handle_error(report_errors(events.sender()))
        .bind(move || ScriptedUpper { events: tx.clone() })
        .unwrap();
    let addr = server.server_address();
    let client = udp_client();
    let me = Addr::Inet(client.local_addr().unwrap());

    client.send_to(&[b'x'; 17], addr).unwrap();
    assert!(server.handle_request().unwrap());
    match events.next() {
        Seen::Error(who, RequestError::TooLarge { max_packet_size }) => {
            assert_eq!(who, me);
            assert_eq!(max_packet_size, 16);
        }
        other => panic!("expected a TooLarge report, got {other:?}"),
    }

    client.send_to(&[b'y'; 16], addr).unwrap();
    assert!(server.handle_request().unwrap());
    let mut buf = [0u8; 64];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[b'Y'; 16]);
    assert!(matches!(events.next(), Seen::Setup(a) if a == me));
    server.server_close().unwrap();
    assert!(
        events.drain().is_empty(),
        "the oversized one was never handled"
    );
}

#[test]
fn oversized_datagram_is_reported_synchronous() {
    oversized_datagram_is_reported(false);
}

#[test]
fn oversized_datagram_is_reported_threading() {
    oversized_datagram_is_reported(true);
}

// ----- the socketserver_echo example -----

/// The example running as a process; killed on drop.
struct Example {
    ex: Listening,
    addr: SocketAddr,
}

impl Example {
    fn start() -> Example {
        Example::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Example {
        let ex = example::serve("socketserver_echo", "127.0.0.1:0", extra);
        let addr = ex.addr();
        Example { ex, addr }
    }
}

#[test]
fn example_closes_idle_connections_after_the_request_timeout() {
    let server = Example::start_with(&["--request-timeout", "1"]);
    // Idle clients: each holds a worker until its timeout closes it. The client
    // socket's own timeout (the watchdog) is far longer than the server's.
    let mut idle: Vec<TcpStream> = (0..3).map(|_| tcp_client(server.addr)).collect();
    for c in &mut idle {
        assert_eq!(read_until_closed(c), b"", "an idle connection is closed");
    }
    let mut c = tcp_client(server.addr);
    assert_eq!(exchange(&mut c, b"still here\n"), b"STILL HERE\n");
}

#[test]
fn example_echoes_hello_socketserver() {
    let server = Example::start();
    let mut c = tcp_client(server.addr);
    assert_eq!(
        exchange(&mut c, b"hello SocketServer\n"),
        b"HELLO SOCKETSERVER\n"
    );
    assert_eq!(
        exchange(&mut c, b"caf\xc3\xa9 & co\r\n"),
        b"CAF\xc3\xa9 & CO\r\n"
    );
    // A final line without a newline is echoed when the client shuts its write side.
    c.write_all(b"one\ntwo").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_closed(&mut c), b"ONE\nTWO");
}

#[test]
fn example_serves_several_clients_at_once() {
    let server = Example::start();
    let mut clients: Vec<TcpStream> = (0..4).map(|_| tcp_client(server.addr)).collect();
    // Every client stays connected while the others are answered, last one first.
    for (i, c) in clients.iter_mut().enumerate().rev() {
        let line = format!("client {i}\n");
        assert_eq!(exchange(c, line.as_bytes()), line.to_uppercase().as_bytes());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let line = format!("again {i}\n");
        assert_eq!(exchange(c, line.as_bytes()), line.to_uppercase().as_bytes());
    }
}

#[test]
fn example_line_limit() {
    const MAX: usize = 64 * 1024;
    let server = Example::start();
    let mut c = tcp_client(server.addr);
    let mut line = vec![b'a'; MAX];
    line.push(b'\n');
    c.write_all(&line).unwrap();
    let mut back = vec![0u8; line.len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(
        back,
        line.to_ascii_uppercase(),
        "a line of exactly 64 KiB is echoed"
    );

    let mut long = tcp_client(server.addr);
    // Either the write completes or the server has hung up on us already.
    let _ = long.write_all(&vec![b'b'; MAX + 1]);
    assert_eq!(
        read_until_closed(&mut long),
        b"",
        "over 64 KiB: closed, nothing echoed"
    );
    server.ex.wait_for_log("line over 65536 bytes");
}

/// `signal` makes the example call shutdown() and exit 0, whether it comes after a
/// client was served or as soon as the server announced itself.
fn example_stops_on(signal: &str, serve_first: bool) {
    let mut server = Example::start();
    if serve_first {
        let mut c = tcp_client(server.addr);
        assert_eq!(exchange(&mut c, b"hi\n"), b"HI\n");
    }
    server.ex.signal(signal);
    let status = server.ex.wait();
    assert!(status.success(), "exit status after SIG{signal}: {status}");
}

#[test]
fn example_exits_0_on_sigint() {
    example_stops_on("INT", true);
}

#[test]
fn example_exits_0_on_sigterm() {
    example_stops_on("TERM", true);
}

#[test]
fn example_exits_0_on_sigint_right_after_announcing() {
    example_stops_on("INT", false);
}
