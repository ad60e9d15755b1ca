//! Helpers shared by the reactor's integration tests, in the manner of mio's
//! `tests/util`: reactors on `127.0.0.1:0`, a recording protocol, blocking clients in
//! threads, and waits that end in a panic at a deadline instead of hanging.
//!
//! Two ways to run a reactor:
//! - in the test thread, turned by [`run_until`] (or [`drive`], until a client thread
//!   finishes) while clients block in their own threads. The test can then look at the
//!   reactor (`timer_count`, `is_open`) and at the [`Log`] between turns.
//! - in its own thread with `run()`, through [`spawn_reactor`], for what must reach a
//!   reactor blocked in `poll`: `Handle::stop` and `call_from_thread`.
//!
//! Every wait here is bounded by [`WATCHDOG`], which only catches a hung test and never
//! decides a passing one: nothing waits on a sleep, and no assertion is about timing.

#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use twistor::{Addr, ConnId, Context, Handle, Protocol, Reactor, Reason};

pub mod chat;
pub mod example;
pub mod python;
pub mod redis;
pub mod tls;

/// How long any wait may take before the test fails.
pub const WATCHDOG: Duration = Duration::from_secs(20);

/// Read and write timeout of client sockets: a client blocked this long fails.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait in one reactor turn while a test polls a condition.
const TURN: Duration = Duration::from_millis(10);

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ----- events -----

/// A [`Reason`] reduced to what tests compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    Done,
    Lost,
    Aborted,
    TimedOut,
    WriteOverflow,
    Io,
    Panic(String),
    Other,
}

impl From<&Reason> for Why {
    fn from(r: &Reason) -> Why {
        match r {
            Reason::Done => Why::Done,
            Reason::Lost(_) => Why::Lost,
            Reason::Aborted => Why::Aborted,
            Reason::TimedOut => Why::TimedOut,
            Reason::WriteOverflow => Why::WriteOverflow,
            Reason::Io(_) => Why::Io,
            Reason::Panic(m) => Why::Panic(m.clone()),
            _ => Why::Other,
        }
    }
}

/// What a recording protocol saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Made(ConnId),
    Data(ConnId, Vec<u8>),
    Eof(ConnId),
    Lost(ConnId, Why),
    Failed(ConnId, io::ErrorKind),
    Paused(ConnId),
    Resumed(ConnId),
    ReadingResumed(ConnId),
    /// Whatever else a test wants to put in the sequence (a timer fired, say).
    Mark(String),
}

impl Ev {
    pub fn id(&self) -> Option<ConnId> {
        match self {
            Ev::Made(id)
            | Ev::Data(id, _)
            | Ev::Eof(id)
            | Ev::Lost(id, _)
            | Ev::Failed(id, _)
            | Ev::Paused(id)
            | Ev::Resumed(id)
            | Ev::ReadingResumed(id) => Some(*id),
            Ev::Mark(_) => None,
        }
    }
}

/// The events of one reactor, shared by its protocols and the test.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<Ev>>>);

impl Log {
    pub fn push(&self, e: Ev) {
        self.0.borrow_mut().push(e);
    }

    pub fn mark(&self, what: impl Into<String>) {
        self.push(Ev::Mark(what.into()));
    }

    pub fn events(&self) -> Vec<Ev> {
        self.0.borrow().clone()
    }

    pub fn count(&self, f: impl Fn(&Ev) -> bool) -> usize {
        self.0.borrow().iter().filter(|e| f(e)).count()
    }

    pub fn has(&self, e: &Ev) -> bool {
        self.0.borrow().contains(e)
    }

    pub fn has_mark(&self, what: &str) -> bool {
        self.has(&Ev::Mark(what.into()))
    }

    /// Ids of the connections made, in order.
    pub fn made(&self) -> Vec<ConnId> {
        let events = self.0.borrow();
        events
            .iter()
            .filter_map(|e| match e {
                Ev::Made(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    pub fn lost_count(&self) -> usize {
        self.count(|e| matches!(e, Ev::Lost(..)))
    }

    /// The reason connection `id` was lost, if it was.
    pub fn lost(&self, id: ConnId) -> Option<Why> {
        self.0.borrow().iter().find_map(|e| match e {
            Ev::Lost(i, why) if *i == id => Some(why.clone()),
            _ => None,
        })
    }

    /// Everything `data_received` got for `id`, concatenated.
    pub fn received(&self, id: ConnId) -> Vec<u8> {
        let events = self.0.borrow();
        let mut all = Vec::new();
        for e in events.iter() {
            if let Ev::Data(i, d) = e {
                if *i == id {
                    all.extend_from_slice(d);
                }
            }
        }
        all
    }

    /// Most connections open at once, counting `Made` up and `Lost` down.
    pub fn peak_open(&self) -> usize {
        let (mut open, mut peak) = (0usize, 0usize);
        for e in self.0.borrow().iter() {
            match e {
                Ev::Made(_) => open += 1,
                Ev::Lost(..) => open -= 1,
                _ => {}
            }
            peak = peak.max(open);
        }
        peak
    }

    /// The invariant every test checks at its end: each connection was made once, lost
    /// exactly once, and saw no callback after it was lost; a failed connect got
    /// neither `connection_made` nor `connection_lost`.
    pub fn check_lifecycles(&self) {
        use std::collections::HashMap;
        #[derive(PartialEq)]
        enum St {
            Open,
            Gone,
            Failed,
        }
        let mut state: HashMap<ConnId, St> = HashMap::new();
        for e in self.0.borrow().iter() {
            let Some(id) = e.id() else { continue };
            match (e, state.get(&id)) {
                (Ev::Made(_), None) => {
                    state.insert(id, St::Open);
                }
                (Ev::Failed(..), None) => {
                    state.insert(id, St::Failed);
                }
                (Ev::Lost(..), Some(St::Open)) => {
                    state.insert(id, St::Gone);
                }
                (_, Some(St::Open)) if !matches!(e, Ev::Made(_) | Ev::Failed(..)) => {}
                (e, _) => panic!("{e:?} out of order in {:#?}", self.events()),
            }
        }
        let open: Vec<_> = state.iter().filter(|(_, s)| **s == St::Open).collect();
        assert!(
            open.is_empty(),
            "never lost: {:?}",
            open.iter().map(|(id, _)| id).collect::<Vec<_>>()
        );
    }
}

// ----- a recording protocol -----

type Hook = Rc<dyn Fn(&mut Context<'_>)>;
type DataHook = Rc<dyn Fn(&mut Context<'_>, &[u8])>;

/// A protocol that records every callback in a [`Log`], then runs the test's hook.
///
/// Cloned for each connection by [`Rec::factory`], hooks included.
#[derive(Clone)]
pub struct Rec {
    pub log: Log,
    record_data: bool,
    made: Option<Hook>,
    data: Option<DataHook>,
    eof: Option<Hook>,
    pause: Option<Hook>,
    resume: Option<Hook>,
    reading_resumed: Option<Hook>,
}

impl Rec {
    /// Records, and otherwise keeps the defaults (`read_eof` closes).
    pub fn new(log: &Log) -> Rec {
        Rec {
            log: log.clone(),
            record_data: true,
            made: None,
            data: None,
            eof: None,
            pause: None,
            resume: None,
            reading_resumed: None,
        }
    }

    /// Records and writes every byte back.
    pub fn echo(log: &Log) -> Rec {
        Rec::new(log).on_data(|cx, d| {
            cx.write(d);
        })
    }

    /// Does not put the bytes in `Ev::Data` (for streams too long to keep).
    pub fn no_data_log(mut self) -> Rec {
        self.record_data = false;
        self
    }

    pub fn on_made(mut self, f: impl Fn(&mut Context<'_>) + 'static) -> Rec {
        self.made = Some(Rc::new(f));
        self
    }

    pub fn on_data(mut self, f: impl Fn(&mut Context<'_>, &[u8]) + 'static) -> Rec {
        self.data = Some(Rc::new(f));
        self
    }

    pub fn on_eof(mut self, f: impl Fn(&mut Context<'_>) + 'static) -> Rec {
        self.eof = Some(Rc::new(f));
        self
    }

    pub fn on_pause(mut self, f: impl Fn(&mut Context<'_>) + 'static) -> Rec {
        self.pause = Some(Rc::new(f));
        self
    }

    pub fn on_resume(mut self, f: impl Fn(&mut Context<'_>) + 'static) -> Rec {
        self.resume = Some(Rc::new(f));
        self
    }

    pub fn on_reading_resumed(mut self, f: impl Fn(&mut Context<'_>) + 'static) -> Rec {
        self.reading_resumed = Some(Rc::new(f));
        self
    }

    /// A factory that gives every connection a clone of this protocol.
    pub fn factory(self) -> impl FnMut(&Addr) -> Option<Rec> + 'static {
        move |_: &Addr| Some(self.clone())
    }
}

impl Protocol for Rec {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.log.push(Ev::Made(cx.id()));
        if let Some(f) = self.made.clone() {
            f(cx);
        }
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        if self.record_data {
            self.log.push(Ev::Data(cx.id(), data.to_vec()));
        }
        if let Some(f) = self.data.clone() {
            f(cx, data);
        }
    }

    fn read_eof(&mut self, cx: &mut Context<'_>) {
        self.log.push(Ev::Eof(cx.id()));
        match self.eof.clone() {
            Some(f) => f(cx),
            None => cx.lose_connection(),
        }
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        self.log.push(Ev::Lost(cx.id(), Why::from(&reason)));
    }

    fn connection_failed(&mut self, cx: &mut Context<'_>, error: io::Error) {
        self.log.push(Ev::Failed(cx.id(), error.kind()));
    }

    fn reading_resumed(&mut self, cx: &mut Context<'_>) {
        self.log.push(Ev::ReadingResumed(cx.id()));
        if let Some(f) = self.reading_resumed.clone() {
            f(cx);
        }
    }

    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        self.log.push(Ev::Paused(cx.id()));
        if let Some(f) = self.pause.clone() {
            f(cx);
        }
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        self.log.push(Ev::Resumed(cx.id()));
        if let Some(f) = self.resume.clone() {
            f(cx);
        }
    }
}

// ----- reactors -----

/// A reactor with `protocol` listening on a free loopback port; returns its address.
pub fn listen<P: Protocol + Clone>(r: &mut Reactor, protocol: P) -> SocketAddr {
    r.listen_tcp(localhost(), move |_: &Addr| Some(protocol.clone()))
        .expect("listen on 127.0.0.1:0")
        .local_addr
}

/// Turns `r` until `done` says so; panics after [`WATCHDOG`].
pub fn run_until(r: &mut Reactor, mut done: impl FnMut(&mut Reactor) -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !done(r) {
        assert!(
            Instant::now() < deadline,
            "watchdog: condition not reached in {WATCHDOG:?} ({r:?})"
        );
        r.run_once(Some(TURN)).expect("run_once");
    }
}

/// Turns `r` until a requested stop has finished.
pub fn run_until_stopped(r: &mut Reactor) {
    let deadline = Instant::now() + WATCHDOG;
    while r.run_once(Some(TURN)).expect("run_once") {
        assert!(Instant::now() < deadline, "watchdog: stop did not finish");
    }
}

/// Turns `r` until the client thread `t` has finished, and returns what it returned
/// (a panic in the client fails the test with the client's message).
pub fn drive<T>(r: &mut Reactor, t: JoinHandle<T>) -> T {
    run_until(r, |_| t.is_finished());
    t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// [`drive`] for several client threads.
pub fn drive_all<T>(r: &mut Reactor, ts: Vec<JoinHandle<T>>) -> Vec<T> {
    run_until(r, |_| ts.iter().all(|t| t.is_finished()));
    ts.into_iter()
        .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        .collect()
}

/// A reactor running `run()` in its own thread.
pub struct ReactorThread {
    pub handle: Handle,
    done: mpsc::Receiver<io::Result<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Builds a reactor in a new thread, runs `setup` on it (its result comes back to the
/// caller), then `run()`s it until stopped.
pub fn spawn_reactor<T: Send + 'static>(
    setup: impl FnOnce(&mut Reactor) -> T + Send + 'static,
) -> (ReactorThread, T) {
    spawn_reactor_with(Reactor::builder(), setup)
}

/// [`spawn_reactor`] for a reactor built by `builder`.
pub fn spawn_reactor_with<T: Send + 'static>(
    builder: twistor::Builder,
    setup: impl FnOnce(&mut Reactor) -> T + Send + 'static,
) -> (ReactorThread, T) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let thread = thread::spawn(move || {
        let mut r = builder.build().expect("reactor");
        let value = setup(&mut r);
        ready_tx.send((r.handle(), value)).unwrap();
        let _ = done_tx.send(r.run());
    });
    let (handle, value) = ready_rx
        .recv_timeout(WATCHDOG)
        .expect("reactor thread did not start");
    let rt = ReactorThread {
        handle,
        done,
        thread: Some(thread),
    };
    (rt, value)
}

impl ReactorThread {
    /// Stops the reactor through its handle and waits for `run()` to return.
    pub fn stop_and_join(mut self) {
        self.handle.stop();
        self.join();
    }

    /// Waits for `run()` to return (someone else stopped it) and joins the thread.
    pub fn join(&mut self) {
        let result = self
            .done
            .recv_timeout(WATCHDOG)
            .expect("watchdog: the reactor thread's run() did not return");
        result.expect("run() failed");
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

// ----- clients -----

/// A blocking client socket whose reads and writes fail after [`CLIENT_TIMEOUT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s
}

/// Reads an HTTP response head, a byte at a time so that nothing after it is taken.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("the head ended early ({other:?}): {head:?}"),
        }
    }
    String::from_utf8(head).unwrap()
}

/// Runs `f` with a socket connected to `addr`, in a new thread.
pub fn client<T: Send + 'static>(
    addr: SocketAddr,
    f: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> JoinHandle<T> {
    thread::spawn(move || f(connect(addr)))
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Reads until EOF; an error (a reset) ends it too and is returned with what came
/// before it.
pub fn read_to_eof(s: &mut TcpStream) -> (Vec<u8>, Option<io::Error>) {
    let mut all = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (all, None),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (all, Some(e)),
        }
    }
}

/// Reads until EOF, `chunk` bytes at a time, sleeping `pause` between reads: a peer
/// that reads slowly. (The sleep paces the reader; nothing waits on it.)
pub fn read_slowly(s: &mut TcpStream, chunk: usize, pause: Duration) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = vec![0; chunk];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => panic!("slow reader: {e} after {} bytes", all.len()),
        }
        thread::sleep(pause);
    }
}

/// Writes `data` and expects exactly it back.
pub fn round_trip(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).expect("write");
    assert_eq!(read_n(s, data.len()), data);
}

/// `len` bytes of a stream whose every byte depends on its position, so that a lost,
/// duplicated or reordered chunk shows up in a comparison.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8).collect()
}

/// The slab index of a connection id, from its `Debug` form (`ConnId(3.17)`): tells a
/// test that a new connection reused an old one's slot.
pub fn slot(id: ConnId) -> String {
    let s = format!("{id:?}");
    s.trim_start_matches("ConnId(")
        .split('.')
        .next()
        .unwrap()
        .to_owned()
}

/// A loopback address that refuses connections: a port that was bound, then freed.
pub fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind(localhost()).unwrap();
    l.local_addr().unwrap()
}

/// A listener whose accept queue is full and never drained, so that a further
/// connect to it hangs (the kernel drops its SYNs) until the connector gives up.
/// Keep the returned value alive while it must stay full.
pub struct FullListener {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

pub fn full_listener() -> FullListener {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.bind(&localhost().into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    // Connect until one hangs: from then on the queue is full.
    for _ in 0..32 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => queued.push(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return FullListener {
                    addr,
                    _listener: listener,
                    _queued: queued,
                }
            }
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue of a backlog-0 listener never filled");
}

// ----- files -----

/// A temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("twistor-test-{}-{test}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
