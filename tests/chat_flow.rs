//! The chat example's flow control, driven from outside as a real process.
//!
//! A member that reads, however slowly, holds back the members sending to it rather
//! than being cut off; a member that does not read at all is cut off after
//! `--slow-timeout` (or at `--max-backlog`), and the room then goes on. Each test
//! floods a room from one sender thread while reader threads check every line they
//! get, in order, and the server's log (read at the end) says who was cut off.
//!
//! Every read and write has a socket timeout as a watchdog and every thread is joined
//! with one, so a hung server fails a test rather than hanging it; no assertion is
//! about how long anything took.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc::Receiver;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::chat::LineMember;
use common::example::{self, lines_of, Proc};

/// How long one step (a line, a write, a thread) may take before the test fails:
/// generous, since it only catches a hung server and never decides a passing test.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Bytes of each flooded line, `\n` included: the size the repro used.
const LINE_BYTES: usize = 100;

/// Lines per write of the sender, as in the repro.
const LINES_PER_WRITE: usize = 16;

// ----- harness -----

/// A running chat server whose log the test reads.
struct Server {
    proc: Proc,
    addr: SocketAddr,
    log: Receiver<String>,
}

impl Server {
    /// Starts the server with `extra` flags, its log at `info` on a pipe the test
    /// drains as it goes (so the server never blocks on it).
    fn start(extra: &[&str]) -> Server {
        let mut proc = Proc::spawn(
            example::command("chat")
                .env("RUST_LOG", "info")
                .args(["--listen", "127.0.0.1:0"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let log = lines_of(proc.child().stderr.take().expect("piped stderr"));
        let stdout = proc.stdout_lines();
        let first = example::next_line(&stdout);
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Server { proc, addr, log }
    }

    /// A new member, welcomed.
    fn join(&self) -> LineMember {
        LineMember::connect(self.addr, WATCHDOG)
    }

    /// `n` members in the lobby, each having seen the others arrive after it.
    fn join_many(&self, n: usize) -> Vec<LineMember> {
        let mut members: Vec<LineMember> = Vec::new();
        for _ in 0..n {
            let newcomer = self.join();
            for m in &mut members {
                m.expect(&format!("* {} joined lobby", newcomer.nick));
            }
            members.push(newcomer);
        }
        members
    }

    /// Stops the server (SIGTERM), checks that it exits 0, and returns its log.
    fn stop(mut self) -> Vec<String> {
        self.proc.signal("TERM");
        assert!(self.proc.wait().success(), "exit status 0");
        // The process is gone: the log ends once its pipe is drained.
        let mut log = Vec::new();
        while let Ok(line) = self.log.recv_timeout(WATCHDOG) {
            log.push(line);
        }
        log
    }
}

/// What the tests here ask of a member beyond the shared [`LineMember`].
impl LineMember {
    /// Proves that nothing else is waiting for this member, and who is in the lobby:
    /// `/who` is answered in order, so its answer comes next only if nothing was
    /// queued before it.
    fn expect_lobby(&mut self, nicks: &[&str]) {
        let mut nicks = nicks.to_vec();
        nicks.sort_unstable();
        self.send("/who");
        self.expect(&format!("* in lobby: {}", nicks.join(", ")));
    }
}

/// Line `i` of the flood: `LINE_BYTES` bytes with its `\n`, numbered so that a reader
/// can tell a lost, repeated or reordered line.
fn flood_line(i: usize) -> String {
    let number = format!("{i:08} ");
    let filler = "x".repeat(LINE_BYTES - number.len() - 1);
    format!("{number}{filler}\n")
}

/// Sends lines `0..lines` from `member`'s socket, `LINES_PER_WRITE` to a write, as
/// fast as the server takes them, on a thread of its own.
fn flood(member: &LineMember, lines: usize) -> JoinHandle<()> {
    let mut stream = member.stream.try_clone().expect("clone the socket");
    thread::spawn(move || {
        let mut batch = String::with_capacity(LINES_PER_WRITE * LINE_BYTES);
        for first in (0..lines).step_by(LINES_PER_WRITE) {
            batch.clear();
            for i in first..lines.min(first + LINES_PER_WRITE) {
                batch.push_str(&flood_line(i));
            }
            stream.write_all(batch.as_bytes()).expect("flooding");
        }
    })
}

/// What a reader got: the notices among the flood, each with the number of flood
/// lines read before it.
type Notices = Vec<(usize, String)>;

/// Reads, on a thread of its own, the `lines` lines `from` floods, checking each one
/// as it comes (every line once, in order), and any notices in between. Reads in
/// `chunk`-byte reads, pausing `pause` after each: a slower reader for a non-zero
/// pause. (The pause paces the reader; nothing waits on it.)
fn read_flood(
    member: LineMember,
    from: &str,
    lines: usize,
    chunk: usize,
    pause: Duration,
) -> JoinHandle<(LineMember, Notices)> {
    let prefix = format!("<{from}> ");
    thread::spawn(move || {
        let stream = member.stream.try_clone().expect("clone the socket");
        let mut reader = BufReader::with_capacity(chunk, Paced { stream, pause });
        let mut notices = Vec::new();
        let mut next = 0;
        let mut line = String::new();
        while next < lines {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => panic!("{}: cut off after {next} lines", member.nick),
                Ok(_) => {}
                Err(e) => panic!("{}: no line after {next} lines: {e}", member.nick),
            }
            match line.strip_prefix(&prefix) {
                Some(text) => {
                    let want = flood_line(next);
                    assert!(
                        text == want,
                        "{}: line {next} is {text:?}, not {want:?}",
                        member.nick
                    );
                    next += 1;
                }
                None => notices.push((next, line.trim_end().to_owned())),
            }
        }
        assert!(
            reader.buffer().is_empty(),
            "{}: more after the flood",
            member.nick
        );
        // The member's own buffered reader saw nothing of the flood.
        assert!(member.reader.buffer().is_empty());
        (member, notices)
    })
}

/// A socket read through with a pause after each read.
struct Paced {
    stream: TcpStream,
    pause: Duration,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        if !self.pause.is_zero() {
            thread::sleep(self.pause);
        }
        Ok(n)
    }
}

/// Joins `thread`, failing the test if it has not ended within the watchdog (the
/// threads here end on their own or fail on a socket timeout; this only bounds the
/// wait for one that is stuck anyway).
fn join<T>(thread: JoinHandle<T>, what: &str) -> T {
    let deadline = Instant::now() + WATCHDOG;
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "{what} did not finish in time");
        thread::sleep(Duration::from_millis(10));
    }
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Log lines that tell of a connection the server cut off (the write cap, a line too
/// long, a member too slow all end in `; closing`).
fn cut_offs(log: &[String]) -> Vec<&String> {
    log.iter().filter(|l| l.ends_with("; closing")).collect()
}

// ----- the tests -----

/// The repro, bounded: one member sends as fast as it can, 16 lines to a
/// write, to three members who read all the time, one of them slowly. Before flow
/// control, whoever read slower than the sender sent was cut off at `--max-backlog`;
/// now the sender is held back instead, and every reader gets every line in order.
#[test]
fn readers_slower_than_the_sender_hold_it_back_and_miss_nothing() {
    const LINES: usize = 100_000;
    let server = Server::start(&[]);
    let mut members = server.join_many(4);
    let nicks: Vec<String> = members.iter().map(|m| m.nick.clone()).collect();
    let nick_refs: Vec<&str> = nicks.iter().map(String::as_str).collect();
    let readers: Vec<LineMember> = members.drain(1..).collect();
    let mut sender = members.pop().unwrap();
    // Two read as fast as they can; the third reads 4 KiB a millisecond at most,
    // well below what the sender sends.
    let paces = [
        (64 * 1024, Duration::ZERO),
        (64 * 1024, Duration::ZERO),
        (4 * 1024, Duration::from_millis(1)),
    ];
    let reading: Vec<_> = readers
        .into_iter()
        .zip(paces)
        .map(|(r, (chunk, pause))| read_flood(r, &sender.nick, LINES, chunk, pause))
        .collect();
    join(flood(&sender, LINES), "the sender");
    // Each reader is kept until all have checked that everyone is still there.
    let mut readers = Vec::new();
    for r in reading {
        let (mut reader, notices) = join(r, "a reader");
        assert_eq!(notices, [], "{} got notices", reader.nick);
        reader.expect_lobby(&nick_refs);
        readers.push(reader);
    }
    sender.expect_lobby(&nick_refs);
    let log = server.stop();
    assert_eq!(cut_offs(&log), Vec::<&String>::new(), "nobody was cut off");
}

/// A member that keeps its socket open and reads nothing is cut off once its output
/// has stayed above the watermark for `--slow-timeout`; the others, held back until
/// then, get its departure and every line.
#[test]
fn a_member_that_never_reads_is_cut_off_after_the_slow_timeout() {
    // 11 MB for each member: far more than the kernel's socket buffers take for a
    // member that does not read (the sender's buffer grows to 4 MiB on Linux by
    // default, the receiver's does not grow unless it reads), so that the stalled
    // member's output must back up in the server while the flood goes on.
    const LINES: usize = 100_000;
    let server = Server::start(&["--slow-timeout", "0.5"]);
    let mut members = server.join_many(4);
    let stalled = members.pop().unwrap();
    let readers: Vec<LineMember> = members.drain(1..).collect();
    let mut sender = members.pop().unwrap();
    let reading: Vec<_> = readers
        .into_iter()
        .map(|r| read_flood(r, &sender.nick, LINES, 64 * 1024, Duration::ZERO))
        .collect();
    join(flood(&sender, LINES), "the sender");
    let gone = format!("* {} disconnected", stalled.nick);
    let mut nicks = vec![sender.nick.clone()];
    let mut readers = Vec::new();
    for r in reading {
        let (reader, notices) = join(r, "a reader");
        // The departure came once, among the lines (a notice after the last one
        // is not read here, and `/who` below would meet it): the flood could not
        // end while the stalled member held it back.
        let gone_among_the_lines: Vec<String> = notices.into_iter().map(|(_, n)| n).collect();
        assert_eq!(
            gone_among_the_lines,
            std::slice::from_ref(&gone),
            "{}",
            reader.nick
        );
        nicks.push(reader.nick.clone());
        readers.push(reader);
    }
    sender.expect(&gone);
    let nicks: Vec<&str> = nicks.iter().map(String::as_str).collect();
    sender.expect_lobby(&nicks);
    for r in &mut readers {
        r.expect_lobby(&nicks);
    }
    let mut stalled = stalled;
    example::read_until_closed(&mut stalled.stream);
    let log = server.stop();
    let cut = cut_offs(&log);
    assert_eq!(cut.len(), 1, "one member cut off: {cut:?}");
    assert!(
        !cut[0].contains("write buffer"),
        "cut off by the timeout, not the cap: {}",
        cut[0]
    );
}
