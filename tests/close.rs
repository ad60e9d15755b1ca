//! Graceful closes with the peer's input still in flight (issue 15, parts 1 and 2).
//!
//! Closing a socket whose receive queue holds unread bytes makes Linux send a reset
//! and throw away its send queue, so a server that closes "cleanly" while the client
//! still has requests in flight can lose replies it already wrote. Every test here
//! sets that up on purpose: the client writes without reading until the kernel
//! refuses more (a non-blocking write returns `WouldBlock`, or a byte bound is
//! reached), so the server's socket holds unread input when it closes; the stop
//! repros send more once the stop has begun, input the server will surely never
//! read. Only then does the client read. It must get every reply the server wrote,
//! whole, then a clean EOF (a read that returns 0), never a reset, and its writes must
//! never fail: a lingering close, as nginx and Apache do it. The last tests are part
//! 2: a pool result in flight when the client half-closes is written before the
//! connection closes.
//!
//! The repros run [`REPS`] times each, since a reset loses bytes in most runs, not in
//! all. Every wait is bounded (client socket timeouts, the reactor helpers' watchdog,
//! the process watchdog); nothing waits on a fixed sleep (the one poll, for a server's
//! listener to close, paces itself as `Proc::wait` does) and no assertion is about
//! timing.

mod common;

use common::TempDir;

use std::cell::Cell;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::example::{self, Listening};
use common::{
    drive, localhost, run_until, run_until_stopped, Log, Rec, Why, CLIENT_TIMEOUT, WATCHDOG,
};
use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::socketserver::{StreamRequest, StreamRequestHandler, TcpServer, UnixStreamServer};
use twistor::{Addr, ConnId, JobError, Protocol, Reactor};

/// How many times each repro runs: the "five times each".
const REPS: usize = 5;

/// Bytes of one request line of the echo repros, newline included (the issue's).
const LINE_BYTES: usize = 100;

/// Most bytes a client offers before it reads, when the kernel keeps taking them: more
/// than loopback socket buffers hold (at most 6 MiB received plus 4 MiB sent, by
/// Linux's defaults), so the bound is reached only by a server that keeps reading (and
/// discarding), which is what a lingering close does; and less than the linger's
/// default byte bound (16 MiB), past which the server rightly gives up on a peer that
/// will not stop sending.
const MAX_SEND_BYTES: usize = 12 * 1024 * 1024;

/// Most bytes a client sends once the server has begun to stop, when the kernel keeps
/// taking them: enough that the server holds input it will never read, few enough
/// for a lingering close to discard in a moment.
const AFTER_STOP_BYTES: usize = 1024 * 1024;

/// Bytes offered per write call while filling the kernel's buffers.
const SEND_CHUNK_BYTES: usize = 64 * 1024;

// ----- client sockets of either kind -----

/// A client socket, TCP or Unix.
trait Client: Read + Write + Send {
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Client for TcpStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Client for UnixStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// Where a server listens.
#[derive(Clone, Debug)]
enum Peer {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Peer {
    /// A blocking client whose reads and writes fail after [`CLIENT_TIMEOUT`].
    fn connect(&self) -> Box<dyn Client> {
        match self {
            Peer::Tcp(addr) => Box::new(common::connect(*addr)),
            Peer::Unix(path) => {
                let s = UnixStream::connect(path).expect("connect to the unix socket");
                s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
                Box::new(s)
            }
        }
    }
}

/// The two stream transports every library repro runs over.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Tcp,
    Unix,
}

/// What the client managed to write before it stopped.
#[derive(Debug)]
struct Sent {
    bytes: usize,
    /// A write that failed (a reset, a broken pipe): the server closed on us while we
    /// were still sending, which a lingering close never does.
    error: Option<io::Error>,
}

/// Writes `stream` from its start without reading, until the kernel refuses more
/// (`WouldBlock` on a non-blocking write) or all of it is taken, and says how much it
/// took. When the kernel refuses, the server's socket holds input it has not read.
fn send_until_refused(s: &mut dyn Client, stream: &[u8]) -> Sent {
    let mut sent = Sent {
        bytes: 0,
        error: None,
    };
    sent.more(s, stream);
    sent
}

impl Sent {
    /// [`send_until_refused`] again, from where the last call stopped (unless it
    /// failed).
    fn more(&mut self, s: &mut dyn Client, stream: &[u8]) {
        if self.error.is_some() {
            return;
        }
        s.set_nonblocking(true).unwrap();
        while self.bytes < stream.len() {
            let end = (self.bytes + SEND_CHUNK_BYTES).min(stream.len());
            match s.write(&stream[self.bytes..end]) {
                Ok(n) => self.bytes += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        s.set_nonblocking(false).unwrap();
    }
}

/// Reads until EOF (`Ok`) or an error such as a reset (`Err`), and returns what came
/// before it either way.
fn read_to_end(s: &mut (impl Read + ?Sized)) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (got, Err(e)),
        }
    }
}

/// One client's run: what it sent, what it received, and how its reading ended.
struct Outcome {
    sent: Sent,
    got: Vec<u8>,
    end: io::Result<()>,
}

impl Outcome {
    /// Fails unless the client's writes all succeeded and its reading ended in a clean
    /// EOF; `what` names the run in the message.
    fn assert_clean(&self, what: &str) {
        if let Some(e) = &self.sent.error {
            panic!(
                "{what}: writing failed with {e} ({:?}) after {} bytes sent: the server \
                 closed while requests were in flight instead of reading and discarding \
                 them (received {} bytes)",
                e.kind(),
                self.sent.bytes,
                self.got.len()
            );
        }
        if let Err(e) = &self.end {
            panic!(
                "{what}: got {} ({:?}) after {} bytes instead of a clean EOF \
                 ({} bytes sent before reading; last bytes received: {:?})",
                e,
                e.kind(),
                self.got.len(),
                self.sent.bytes,
                tail(&self.got)
            );
        }
    }
}

/// The last few bytes of `data`, for messages.
fn tail(data: &[u8]) -> String {
    let from = data.len().saturating_sub(40);
    String::from_utf8_lossy(&data[from..]).into_owned()
}

/// Asserts that `got` is exactly `want`, without printing megabytes when it is not.
fn assert_same_bytes(what: &str, got: &[u8], want: &[u8]) {
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && first_diff.is_none(),
        "{what}: received {} bytes, want {}; first difference at {first_diff:?}; \
         last bytes received: {:?}",
        got.len(),
        want.len(),
        tail(got)
    );
}

/// The echo repros' request stream: [`MAX_SEND_BYTES`] of lines of [`LINE_BYTES`],
/// each numbered and otherwise lower-case letters, so that the upper-cased echo
/// differs from the request and a lost, cut or reordered line shows.
fn request_lines() -> &'static [u8] {
    static LINES: OnceLock<Vec<u8>> = OnceLock::new();
    LINES.get_or_init(|| {
        let letters = b"abcdefghijklmnopqrstuvwxyz";
        let mut all = Vec::with_capacity(MAX_SEND_BYTES);
        let mut i = 0usize;
        while all.len() + LINE_BYTES <= MAX_SEND_BYTES {
            let start = all.len();
            all.extend_from_slice(format!("{i:010} ").as_bytes());
            while all.len() < start + LINE_BYTES - 1 {
                all.push(letters[(all.len() - start + i) % letters.len()]);
            }
            all.push(b'\n');
            i += 1;
        }
        all
    })
}

/// Checks an echo run: the client got whole echoed lines, a prefix of what it sent
/// (the server stops reading at the stop), then a clean EOF.
fn check_echo(what: &str, out: &Outcome, stream: &[u8], upper: bool, whole_lines: bool) {
    out.assert_clean(what);
    let sent = &stream[..out.sent.bytes];
    assert!(
        out.got.len() <= sent.len(),
        "{what}: received {} bytes, more than the {} sent",
        out.got.len(),
        sent.len()
    );
    if whole_lines {
        assert!(
            out.got.len() % LINE_BYTES == 0,
            "{what}: received {} bytes, ending in a partial line {:?}",
            out.got.len(),
            tail(&out.got)
        );
    }
    let want = &sent[..out.got.len()];
    let want = if upper {
        want.to_ascii_uppercase()
    } else {
        want.to_vec()
    };
    assert_same_bytes(what, &out.got, &want);
}

// ----- A. the example servers, as processes -----

/// Waits until `peer` refuses new connections: the server has begun its stop (it
/// closes its listeners first) and reads nothing more. Polls, since a refusal sends
/// no event; the interval only bounds how soon it is seen.
fn wait_until_refusing(peer: &Peer) {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let connected = match peer {
            Peer::Tcp(addr) => TcpStream::connect(addr).is_ok(),
            Peer::Unix(path) => UnixStream::connect(path).is_ok(),
        };
        if !connected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "watchdog: the server still accepts after SIGTERM"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Starts `name` on `listen`; after one round trip, sends echo lines until refused,
/// sends SIGTERM, and once the server has begun its stop sends more until refused
/// (so that it surely holds input it will never read), then reads to the end. The
/// server must exit 0.
fn echo_example_stop(name: &str, listen: &str, connect: impl Fn(&Listening) -> Peer) {
    let lines = &request_lines()[LINE_BYTES..];
    let first = &request_lines()[..LINE_BYTES];
    for rep in 1..=REPS {
        let what = format!("{name}, run {rep} of {REPS}");
        let mut server = example::serve(name, listen, &[]);
        let peer = connect(&server);
        let mut s = peer.connect();
        // The round trip proves the server has accepted us before the signal.
        s.write_all(first).unwrap();
        let mut echo = vec![0; LINE_BYTES];
        s.read_exact(&mut echo).expect("the first line's echo");
        assert_eq!(echo, first.to_ascii_uppercase(), "{what}");

        let mut sent = send_until_refused(&mut *s, lines);
        server.signal("TERM");
        wait_until_refusing(&peer);
        let bound = (sent.bytes + AFTER_STOP_BYTES).min(lines.len());
        sent.more(&mut *s, &lines[..bound]);
        let (got, end) = read_to_end(&mut *s);
        drop(s);
        let out = Outcome { sent, got, end };
        check_echo(&what, &out, lines, true, true);
        let status = server.wait();
        assert!(status.success(), "{what}: exit status {status}");
    }
}

/// Issue 15 part 1, the echo repro: lines sent without reading until the kernel
/// refuses more, then SIGTERM, then the client reads: every echoed line arrives
/// whole, then a clean EOF, and the server exits 0.
#[test]
fn echo_stopped_with_unread_input_delivers_whole_lines_then_eof() {
    echo_example_stop("echo", "127.0.0.1:0", |server| Peer::Tcp(server.addr()));
}

/// The echo repro over the Unix socket of `unix_echo`.
#[test]
fn unix_echo_stopped_with_unread_input_delivers_whole_lines_then_eof() {
    let dir = TempDir::new("unix-echo");
    let path = dir.path("echo.sock");
    echo_example_stop("unix_echo", path.to_str().unwrap(), |server| {
        Peer::Unix(PathBuf::from(&server.announced))
    });
}

/// A RESP bulk string.
fn bulk(data: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat()
}

/// A RESP request (a multibulk of bulk strings).
fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(bulk(arg));
    }
    out
}

/// The kv repro: `GET big` ×20 pipelined, `QUIT`, then megabytes of `PING`s, all
/// written before reading: the client gets the 20 values and `+OK`, then a clean EOF.
#[test]
fn kv_quit_with_requests_in_flight_delivers_every_reply_then_eof() {
    const GETS: usize = 20;
    let server = example::serve("kv", "127.0.0.1:0", &[]);
    let addr = server.addr();
    let value: Vec<u8> = (0..100 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let pings = b"PING\r\n".repeat(4 * 1024 * 1024 / 6);
    let mut want = bulk(&value).repeat(GETS);
    want.extend_from_slice(b"+OK\r\n");
    for rep in 1..=REPS {
        let what = format!("kv, run {rep} of {REPS}");
        let mut s = common::connect(addr);
        s.write_all(&request(&[b"SET", b"big", &value])).unwrap();
        let mut ok = [0; 5];
        s.read_exact(&mut ok).expect("the SET's reply");
        assert_eq!(&ok, b"+OK\r\n", "{what}: SET");

        let mut pipeline = request(&[b"GET", b"big"]).repeat(GETS);
        pipeline.extend(request(&[b"QUIT"]));
        s.write_all(&pipeline).unwrap();
        let sent = send_until_refused(&mut s, &pings);
        let (got, end) = read_to_end(&mut s);
        drop(s);
        let out = Outcome { sent, got, end };
        out.assert_clean(&what);
        assert_same_bytes(&what, &out.got, &want);
    }
}

/// Reads `\n`-terminated lines (without their `\n`) from `data`; a last piece with
/// no newline is returned as it is.
fn lines_of(data: &[u8]) -> Vec<String> {
    data.split_inclusive(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\n").unwrap_or(l)).into_owned())
        .collect()
}

/// Reads one line without consuming anything after it.
fn read_line(s: &mut (impl Read + ?Sized)) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while !line.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(0) => panic!("EOF in the middle of a line ({line:?})"),
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("reading a line: {e} (got {line:?})"),
        }
    }
    line.pop();
    String::from_utf8(line).unwrap()
}

/// Chat lines a member keeps sending after `/quit` (or floods the room with), from
/// `first`, until `bytes`.
fn chat_lines(prefix: &str, bytes: usize) -> Vec<u8> {
    let mut all = Vec::with_capacity(bytes + 100);
    let mut i = 0;
    while all.len() < bytes {
        all.extend_from_slice(format!("{prefix} {i:08} and some more text to read\n").as_bytes());
        i += 1;
    }
    all
}

/// The chat repro: a member sends `/quit` and then keeps sending, a few hundred KB
/// written before it reads anything; it must receive its welcome, `* bye`, then a
/// clean EOF.
#[test]
fn chat_quit_with_input_in_flight_gets_welcome_bye_then_eof() {
    let server = example::serve("chat", "127.0.0.1:0", &[]);
    let addr = server.addr();
    let mut input = b"/quit\n".to_vec();
    input.extend(chat_lines("after quit", 512 * 1024));
    for rep in 1..=REPS {
        let what = format!("chat /quit, run {rep} of {REPS}");
        let mut s = common::connect(addr);
        let sent = send_until_refused(&mut s, &input);
        let (got, end) = read_to_end(&mut s);
        drop(s);
        let out = Outcome { sent, got, end };
        out.assert_clean(&what);
        let lines = lines_of(&out.got);
        assert!(
            lines.len() == 2
                && lines[0].starts_with("* welcome guest")
                && lines[0].ends_with(", you are in lobby")
                && lines[1] == "* bye",
            "{what}: want the welcome notice and `* bye`, got {lines:?}"
        );
    }
}

/// The chat repro with output queued: another member floods the room first, so the
/// quitting member has lines it has not read yet when it sends `/quit` and more. It
/// must receive every relayed line, in order and whole, then `* bye`, then a clean
/// EOF.
#[test]
fn chat_quit_with_unread_output_and_input_in_flight_gets_every_line_then_bye() {
    let mut input = b"/quit\n".to_vec();
    input.extend(chat_lines("after quit", 512 * 1024));
    let flood = chat_lines("flood", 8 * 1024 * 1024);
    let flood_lines = lines_of(&flood);
    for rep in 1..=REPS {
        let what = format!("chat /quit with a backlog, run {rep} of {REPS}");
        // A server per run, so that no notice of an earlier run's members reaches
        // this one's. The member reads only after sending: a backlog cap that never
        // cuts it off.
        let server = example::serve("chat", "127.0.0.1:0", &["--max-backlog", "268435456"]);
        let addr = server.addr();
        let mut quitter = common::connect(addr);
        let welcome = read_line(&mut quitter);
        assert!(welcome.starts_with("* welcome "), "{what}: {welcome:?}");
        let mut flooder = common::connect(addr);
        let flooder_welcome = read_line(&mut flooder);
        let flooder_nick = flooder_welcome
            .strip_prefix("* welcome ")
            .and_then(|rest| rest.strip_suffix(", you are in lobby"))
            .unwrap_or_else(|| panic!("{what}: {flooder_welcome:?}"))
            .to_owned();
        // Once the quitter has heard of the flooder, both are in the lobby.
        assert_eq!(
            read_line(&mut quitter),
            format!("* {flooder_nick} joined lobby"),
            "{what}"
        );
        let flooded = send_until_refused(&mut flooder, &flood);
        assert!(flooded.error.is_none(), "{what}: flooding: {flooded:?}");

        let sent = send_until_refused(&mut quitter, &input);
        let (got, end) = read_to_end(&mut quitter);
        drop(quitter);
        let out = Outcome { sent, got, end };
        out.assert_clean(&what);
        let lines = lines_of(&out.got);
        let (last, relayed) = lines.split_last().expect("nothing received");
        for (i, line) in relayed.iter().enumerate() {
            let want = match flood_lines.get(i) {
                Some(text) => format!("<{flooder_nick}> {text}"),
                None => "(nothing: more lines than the flood had)".to_owned(),
            };
            assert!(
                *line == want,
                "{what}: line {i} of {} is {line:?}, want {want:?} (a lost or cut line)",
                relayed.len()
            );
        }
        assert_eq!(
            last,
            "* bye",
            "{what}: the last line after {} relayed ones",
            relayed.len()
        );
        drop(flooder);
    }
}

// ----- B. the library, on a reactor in the test thread -----

/// Listens on `over` with a protocol from `make` for each connection.
fn listen<P: Protocol>(
    r: &mut Reactor,
    over: Transport,
    dir: &TempDir,
    make: impl Fn() -> P + 'static,
) -> Peer {
    let factory = move |_: &Addr| Some(make());
    match over {
        Transport::Tcp => Peer::Tcp(r.listen_tcp(localhost(), factory).unwrap().local_addr),
        Transport::Unix => {
            let path = dir.path("s.sock");
            r.listen_unix(&path, factory).unwrap();
            Peer::Unix(path)
        }
    }
}

/// A client in a thread: it sends `input` until refused, then reads to the end.
fn send_then_read(peer: &Peer, input: &'static [u8]) -> JoinHandle<Outcome> {
    let peer = peer.clone();
    thread::spawn(move || {
        let mut s = peer.connect();
        let sent = send_until_refused(&mut *s, input);
        let (got, end) = read_to_end(&mut *s);
        Outcome { sent, got, end }
    })
}

/// The reply of the `lose_connection` repros: 4 MB, far more than the socket
/// buffers hold while the client is not reading, in a pattern that shows a lost or
/// reordered chunk.
fn big_reply() -> &'static [u8] {
    static REPLY: OnceLock<Vec<u8>> = OnceLock::new();
    REPLY.get_or_init(|| common::pattern(4 * 1024 * 1024))
}

/// On its first input, a protocol writes [`big_reply`] and calls `lose_connection`
/// while the client keeps sending; the client must get all of the reply, then EOF.
fn lose_connection_with_input_in_flight(over: Transport) {
    for rep in 1..=REPS {
        let what = format!("lose_connection over {over:?}, run {rep} of {REPS}");
        let dir = TempDir::new("lose");
        let mut r = Reactor::new().unwrap();
        let log = Log::default();
        let l = log.clone();
        let peer = listen(&mut r, over, &dir, move || {
            Rec::new(&l).no_data_log().on_data(|cx, _| {
                cx.write(big_reply());
                cx.lose_connection();
            })
        });
        let out = drive(&mut r, send_then_read(&peer, request_lines()));
        out.assert_clean(&what);
        assert_same_bytes(&what, &out.got, big_reply());
        run_until(&mut r, |_| log.lost_count() == 1);
        let id = log.made()[0];
        assert_eq!(log.lost(id), Some(Why::Done), "{what}");
        log.check_lifecycles();
    }
}

#[test]
fn lose_connection_with_input_in_flight_sends_everything_then_eof_over_tcp() {
    lose_connection_with_input_in_flight(Transport::Tcp);
}

#[test]
fn lose_connection_with_input_in_flight_sends_everything_then_eof_over_unix() {
    lose_connection_with_input_in_flight(Transport::Unix);
}

/// A raw echo that stops reading while its output is above the high watermark, as
/// the examples' echo does, and counts the bytes it echoed in `echoed`.
fn paused_echo(log: &Log, echoed: Rc<Cell<usize>>) -> Rec {
    Rec::new(log)
        .no_data_log()
        .on_data(move |cx, d| {
            cx.write(d);
            echoed.set(echoed.get() + d.len());
        })
        .on_pause(|cx| cx.pause_reading())
        .on_resume(|cx| cx.resume_reading())
}

/// The echo repro in process: the client sends until refused without reading, the
/// reactor is stopped, the client sends more until refused (input the reactor will
/// never read), then reads: a prefix of what it sent, then EOF.
fn stop_with_queued_output_and_unread_input(over: Transport) {
    for rep in 1..=REPS {
        let what = format!("stop over {over:?}, run {rep} of {REPS}");
        let dir = TempDir::new("stop");
        let mut r = Reactor::new().unwrap();
        let log = Log::default();
        let echoed = Rc::new(Cell::new(0));
        let (l, e) = (log.clone(), echoed.clone());
        let peer = listen(&mut r, over, &dir, move || paused_echo(&l, e.clone()));
        let (sent_tx, sent_rx) = mpsc::channel();
        let (stopping_tx, stopping_rx) = mpsc::channel::<()>();
        let client = thread::spawn(move || {
            let mut s = peer.connect();
            let mut sent = send_until_refused(&mut *s, request_lines());
            sent_tx.send(()).unwrap();
            stopping_rx
                .recv_timeout(WATCHDOG)
                .expect("told of the stop");
            let lines = request_lines();
            let bound = (sent.bytes + AFTER_STOP_BYTES).min(lines.len());
            sent.more(&mut *s, &lines[..bound]);
            let (got, end) = read_to_end(&mut *s);
            Outcome { sent, got, end }
        });
        let mut sent = false;
        run_until(&mut r, |_| {
            sent = sent || sent_rx.try_recv().is_ok();
            (sent && echoed.get() > 0) || client.is_finished()
        });
        r.stop();
        // This turn begins the stop: nothing is read from now on. It may also end it,
        // if nothing was left to flush.
        let stopping = r.run_once(Some(Duration::ZERO)).unwrap();
        let _ = stopping_tx.send(());
        if stopping {
            run_until_stopped(&mut r);
        }
        let out = client
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        check_echo(&what, &out, request_lines(), false, false);
        assert!(!out.got.is_empty(), "{what}: nothing was echoed");
        log.check_lifecycles();
    }
}

#[test]
fn stop_with_queued_output_and_unread_input_ends_in_eof_over_tcp() {
    stop_with_queued_output_and_unread_input(Transport::Tcp);
}

#[test]
fn stop_with_queued_output_and_unread_input_ends_in_eof_over_unix() {
    stop_with_queued_output_and_unread_input(Transport::Unix);
}

/// Lines of the framer repro's answer: 2 MB, far more than the socket buffers hold
/// while the client is not reading.
fn answer_lines() -> &'static [u8] {
    static ANSWER: OnceLock<Vec<u8>> = OnceLock::new();
    ANSWER.get_or_init(|| chat_lines("answer", 2 * 1024 * 1024))
}

/// Answers the first line with [`answer_lines`] and closes, whatever follows it.
struct AnswerOnce;

impl LineHandler for AnswerOnce {
    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, _line: &[u8]) {
        cx.write(answer_lines());
        cx.lose_connection();
    }
}

/// The framers' close: a `LineReceiver` handler answers one line and calls
/// `lose_connection` while the client keeps sending lines.
fn line_receiver_close_with_lines_in_flight(over: Transport) {
    for rep in 1..=REPS {
        let what = format!("LineReceiver close over {over:?}, run {rep} of {REPS}");
        let dir = TempDir::new("lines");
        let mut r = Reactor::new().unwrap();
        let peer = listen(&mut r, over, &dir, || {
            LineReceiver::new(AnswerOnce).delimiter(b"\n")
        });
        let out = drive(&mut r, send_then_read(&peer, request_lines()));
        out.assert_clean(&what);
        assert_same_bytes(&what, &out.got, answer_lines());
        run_until(&mut r, |r| r.connection_count() == 0);
    }
}

#[test]
fn line_receiver_close_with_lines_in_flight_sends_the_answer_then_eof_over_tcp() {
    line_receiver_close_with_lines_in_flight(Transport::Tcp);
}

#[test]
fn line_receiver_close_with_lines_in_flight_sends_the_answer_then_eof_over_unix() {
    line_receiver_close_with_lines_in_flight(Transport::Unix);
}

// ----- the socketserver module -----

/// Reads one line, answers it with [`answer_lines`] and returns, leaving whatever
/// else the client sent unread.
struct OneLine;

impl StreamRequestHandler for OneLine {
    fn handle(&mut self, request: &mut StreamRequest) -> io::Result<()> {
        let mut line = Vec::new();
        request.rfile.read_until(b'\n', &mut line)?;
        request.wfile.write_all(answer_lines())?;
        Ok(())
    }
}

/// A socketserver server serving forever on a thread of its own; shut down and
/// closed on drop.
struct Background {
    shutdown: twistor::socketserver::ShutdownHandle,
    done: mpsc::Receiver<io::Result<()>>,
}

fn background<K: twistor::socketserver::kind::Kind>(
    build: impl FnOnce() -> io::Result<twistor::socketserver::Server<K>> + Send + 'static,
) -> (Background, K::Address) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        let run = || {
            let mut server = build()?;
            let _ = ready_tx.send((server.server_address(), server.shutdown_handle()));
            server.serve_forever()?;
            server.server_close()
        };
        let _ = done_tx.send(run());
    });
    let (addr, shutdown) = ready_rx
        .recv_timeout(WATCHDOG)
        .unwrap_or_else(|_| panic!("the server did not start: {:?}", done.try_recv()));
    (Background { shutdown, done }, addr)
}

impl Drop for Background {
    fn drop(&mut self) {
        let shutdown = self.shutdown.clone();
        thread::spawn(move || shutdown.shutdown());
        if !thread::panicking() {
            self.done
                .recv_timeout(WATCHDOG)
                .expect("the server did not stop in time")
                .expect("serve_forever or server_close failed");
        }
    }
}

/// A socketserver handler that returns with the client's input unread: the client
/// gets the whole answer, then a clean EOF.
fn socketserver_handler_returns_with_input_unread(over: Transport) {
    let dir = TempDir::new("socketserver");
    let (server, peer) = match over {
        Transport::Tcp => {
            let (server, addr) = background(|| {
                TcpServer::builder(localhost())
                    .threading(true)
                    .bind(|| OneLine)
            });
            (server, Peer::Tcp(addr))
        }
        Transport::Unix => {
            let path = dir.path("s.sock");
            let (server, path) = background(move || {
                UnixStreamServer::builder(&path)
                    .threading(true)
                    .bind(|| OneLine)
            });
            (server, Peer::Unix(path))
        }
    };
    for rep in 1..=REPS {
        let what = format!("socketserver over {over:?}, run {rep} of {REPS}");
        let out = send_then_read(&peer, request_lines())
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        out.assert_clean(&what);
        assert_same_bytes(&what, &out.got, answer_lines());
    }
    drop(server);
}

#[test]
fn socketserver_handler_returning_with_input_unread_sends_the_answer_then_eof_over_tcp() {
    socketserver_handler_returns_with_input_unread(Transport::Tcp);
}

#[test]
fn socketserver_handler_returning_with_input_unread_sends_the_answer_then_eof_over_unix() {
    socketserver_handler_returns_with_input_unread(Transport::Unix);
}

// ----- part 2: a pool result in flight at a half-close -----

/// Keeps a pool job waiting until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    /// Blocks the pool thread until `open`; panics (failing the job) at the watchdog.
    fn wait(&self) {
        let deadline = Instant::now() + WATCHDOG;
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "watchdog: the gate never opened");
            open = self.0 .1.wait_timeout(open, left).unwrap().0;
        }
    }
}

/// FNV-1a: the small computation the pool does for `HASH`.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Answers `HASH x` from the pool, after the gate opens. `read_eof` is the default.
struct Hasher {
    gate: Gate,
    made: Rc<Cell<Option<ConnId>>>,
}

impl LineHandler for Hasher {
    fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
        self.made.set(Some(cx.id()));
    }

    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        let Some(arg) = line.strip_prefix(b"HASH ") else {
            cx.send_line(b"error: unknown command");
            return;
        };
        let (arg, gate) = (arg.to_vec(), self.gate.clone());
        let job = move || {
            gate.wait();
            fnv1a(&arg)
        };
        let done = |_: &mut Hasher, cx: &mut LineContext<'_, '_>, r: Result<u64, JobError>| {
            match r {
                Ok(hash) => cx.send_line(format!("{hash:016x}").as_bytes()),
                Err(e) => cx.send_line(format!("error: {e}").as_bytes()),
            };
        };
        if cx.defer_to_thread(job, done).is_err() {
            cx.send_line(b"error: busy");
        }
    }
}

/// `printf 'HASH abc\n' | nc -q1`: the request and the half-close at once. The job
/// is held until the server has read the EOF (its default `read_eof` has run and the
/// connection is closing or gone), so the result is certain to come after it; the
/// client must still get the answer, then EOF.
fn pool_result_after_half_close(over: Transport) {
    let dir = TempDir::new("pool");
    let mut r = Reactor::builder().threads(1).build().unwrap();
    let gate = Gate::default();
    let made = Rc::new(Cell::new(None));
    let (g, m) = (gate.clone(), made.clone());
    let peer = listen(&mut r, over, &dir, move || {
        LineReceiver::new(Hasher {
            gate: g.clone(),
            made: m.clone(),
        })
        .delimiter(b"\n")
    });
    let client = thread::spawn(move || {
        let mut s = peer.connect();
        s.write_all(b"HASH abc\n").unwrap();
        s.shutdown_write().unwrap();
        read_to_end(&mut *s)
    });
    run_until(&mut r, |r| {
        made.get().is_some_and(|id| !r.conn(id).is_open()) || client.is_finished()
    });
    let what = format!("HASH over {over:?}");
    assert_eq!(
        r.pending_jobs(),
        1,
        "{what}: the job is in flight at the EOF"
    );
    gate.open();
    let (got, end) = drive(&mut r, client);
    run_until(&mut r, |r| r.pending_jobs() == 0);
    if let Err(e) = &end {
        panic!(
            "{what}: got {e} ({:?}) after {:?} instead of the answer and EOF",
            e.kind(),
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("{:016x}\n", fnv1a(b"abc")),
        "{what}: the answer, before EOF (nothing means the pool's result was dropped \
         when the half-closed connection closed)"
    );
}

#[test]
fn pool_result_in_flight_at_a_half_close_is_written_before_eof_over_tcp() {
    pool_result_after_half_close(Transport::Tcp);
}

#[test]
fn pool_result_in_flight_at_a_half_close_is_written_before_eof_over_unix() {
    pool_result_after_half_close(Transport::Unix);
}
