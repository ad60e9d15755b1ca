//! The chat example and its client, driven from outside as real processes.
//!
//! Each test starts the `chat` server on `127.0.0.1:0`, reads its `listening on ADDR`
//! line and talks to it with plain sockets, as `nc` users would. Tests synchronise on
//! the notices every client receives (a client that has seen `* bob joined lobby`
//! knows bob is in the room), never on sleeps. Every read has a socket timeout as a
//! watchdog, so a broken server fails a test instead of hanging it, and every child
//! process is killed on drop.
//!
//! The pure command parser, `examples/chat/command.rs`, is included here with
//! `#[path]` (tests inside an example are not run by `cargo test`).

#[path = "../examples/chat/command.rs"]
#[allow(dead_code)]
mod command;
mod common;

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::chat::{flood_until, LineMember};

/// How long any single step may block before the test fails: generous, since it only
/// catches a hung server and never decides a passing test.
const WATCHDOG: Duration = Duration::from_secs(20);

// ----- harness -----

/// The path of an example binary, building `chat` and `chat_client` on first use.
///
/// Cargo does not build examples for integration tests, so the tests build them with
/// the `cargo` that is running them, into the same target directory.
fn example_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "chat"])
            .args(["--example", "chat_client"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    });
    if let Err(e) = built {
        panic!("building the examples failed:\n{e}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("debug").join("examples").join(name)
}

/// Kills the child on drop, so that no process outlives its test, even one that
/// panicked.
struct Proc(Child);

impl Proc {
    /// Waits for the child to exit, failing the test if it takes longer than the
    /// watchdog. `Child` has no timed wait, so this polls; the interval only bounds
    /// how soon an exit is noticed.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit in time"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `out` line by line on a thread of its own, so that the test can wait for a
/// line with a timeout.
fn lines_of(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A running chat server.
struct Server {
    proc: Proc,
    addr: SocketAddr,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::spawn(
            Command::new(example_bin("chat"))
                // Warnings and errors still reach the test output; info chatter does not.
                .env("RUST_LOG", "error")
                .stderr(Stdio::inherit()),
            extra,
        )
    }

    /// A server whose log (info level) the test reads, through [`Server::stop_log`].
    fn start_logged(extra: &[&str]) -> Server {
        Server::spawn(
            Command::new(example_bin("chat"))
                .env("RUST_LOG", "info")
                .stderr(Stdio::piped()),
            extra,
        )
    }

    /// Stops a server started with [`Server::start_logged`] (SIGTERM) and returns its
    /// log.
    fn stop_log(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.proc.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let mut log = String::new();
        let mut stderr = self.proc.0.stderr.take().expect("piped stderr");
        stderr.read_to_string(&mut log).expect("read the log");
        assert!(self.proc.wait().success(), "exit status 0");
        log
    }

    fn spawn(cmd: &mut Command, extra: &[&str]) -> Server {
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn chat");
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        let proc = Proc(child);
        let first = stdout
            .recv_timeout(WATCHDOG)
            .expect("the server printed no line in time");
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Server { proc, addr }
    }

    /// A new client, welcomed (its nick read from the welcome).
    fn join(&self) -> LineMember {
        LineMember::connect(self.addr, WATCHDOG)
    }

    /// `n` clients in the lobby, each having seen the others arrive after it.
    fn join_many(&self, n: usize) -> Vec<LineMember> {
        let mut clients: Vec<LineMember> = Vec::new();
        for _ in 0..n {
            let newcomer = self.join();
            for c in &mut clients {
                c.expect(&format!("* {} joined lobby", newcomer.nick));
            }
            clients.push(newcomer);
        }
        clients
    }
}

/// What the tests here ask of a client beyond the shared [`LineMember`].
impl LineMember {
    /// Reads until the server closes; a reset counts as a close (a server that closes
    /// with unread input in its socket makes the kernel send RST instead of FIN).
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{}: waiting for the close: {e}", self.nick),
        }
        assert!(
            rest.is_empty(),
            "{}: unexpected {:?} before the close",
            self.nick,
            String::from_utf8_lossy(&rest)
        );
    }

    /// Proves that nothing else is waiting for this client: `/who` is answered in
    /// order, so if its answer comes next, no line was queued before it.
    fn expect_nothing_else(&mut self, room: &str) {
        self.send("/who");
        let got = self.line();
        assert!(
            got.starts_with(&format!("* in {room}: ")),
            "{}: unexpected line {got:?}",
            self.nick
        );
    }
}

/// Expects `line` on each of `clients`.
fn all_expect(clients: &mut [LineMember], line: &str) {
    for c in clients {
        c.expect(line);
    }
}

// ----- the command parser -----

#[test]
fn parser_accepts_every_command_and_names_its_errors() {
    use command::{parse, Command, CommandError};
    let cases: &[(&str, Result<Command<'_>, CommandError>)] = &[
        ("hello", Ok(Command::Say(b"hello"))),
        ("", Ok(Command::Nothing)),
        ("/nick  bob ", Ok(Command::Nick("bob"))),
        ("/join kitchen", Ok(Command::Join("kitchen"))),
        ("/who", Ok(Command::Who)),
        ("/rooms", Ok(Command::Rooms)),
        (
            "/msg bob hi there",
            Ok(Command::Msg {
                to: b"bob",
                text: b"hi there",
            }),
        ),
        ("/me waves", Ok(Command::Me(b"waves"))),
        ("/quit", Ok(Command::Quit)),
        ("/nick bad name", Err(CommandError::BadNick)),
        ("/join", Err(CommandError::BadRoom)),
        ("/msg bob", Err(CommandError::MsgUsage)),
        ("/me", Err(CommandError::MeUsage)),
        ("/dance", Err(CommandError::Unknown)),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line.as_bytes()), *want, "parsing {line:?}");
    }
    assert!(command::valid_name(&[b'x'; command::MAX_NAME_BYTES]));
    assert!(!command::valid_name(&[b'x'; command::MAX_NAME_BYTES + 1]));
}

// ----- talking -----

#[test]
fn a_line_reaches_everyone_in_the_room_but_the_sender() {
    let server = Server::start(&[]);
    let mut c = server.join_many(3);
    let nick = c[0].nick.clone();
    c[0].send("hello, world\r");
    c[1].expect(&format!("<{nick}> hello, world"));
    c[2].expect(&format!("<{nick}> hello, world"));
    c[0].expect_nothing_else("lobby");
    // UTF-8 text passes unchanged; an empty line is ignored.
    c[1].send("");
    c[1].send("caf\u{e9} \u{1f600}");
    let from = c[1].nick.clone();
    c[0].expect(&format!("<{from}> caf\u{e9} \u{1f600}"));
    c[2].expect(&format!("<{from}> caf\u{e9} \u{1f600}"));
}

#[test]
fn guests_get_increasing_unique_numbers() {
    let server = Server::start(&[]);
    let mut c = server.join_many(2);
    assert_eq!(c[0].nick, "guest1");
    assert_eq!(c[1].nick, "guest2");
    // A guest nick taken by /nick is skipped when guests are numbered.
    c[0].rename("guest3");
    c[1].expect("* guest1 is now guest3");
    let newcomer = server.join();
    assert_eq!(newcomer.nick, "guest4");
}

#[test]
fn nick_join_who_and_rooms() {
    let server = Server::start(&[]);
    let mut c = server.join_many(3);
    c[0].rename("carol");
    all_expect(&mut c[1..], "* guest1 is now carol");
    c[1].rename("Bob");
    c[0].expect("* guest2 is now Bob");
    c[2].expect("* guest2 is now Bob");
    // /who sorts nicks by byte order: upper case first.
    c[2].send("/who");
    c[2].expect("* in lobby: Bob, carol, guest3");

    // Joining: the old room hears `left`, the new room (the actor too) `joined`.
    c[0].send("/join kitchen");
    c[0].expect("* carol joined kitchen");
    all_expect(&mut c[1..], "* carol left lobby");
    c[1].send("/join kitchen");
    c[0].expect("* Bob joined kitchen");
    c[1].expect("* Bob joined kitchen");
    c[2].expect("* Bob left lobby");
    c[2].send("/rooms");
    c[2].expect("* rooms: kitchen (2), lobby (1)");
    c[0].send("/who");
    c[0].expect("* in kitchen: Bob, carol");

    // Lines and renames stay in their room.
    c[0].send("anyone here?");
    c[1].expect("<carol> anyone here?");
    c[0].rename("Carol2");
    c[1].expect("* carol is now Carol2");
    c[2].expect_nothing_else("lobby");

    // An emptied room is gone.
    c[2].send("/join kitchen");
    c[2].expect("* guest3 joined kitchen");
    all_expect(&mut c[..2], "* guest3 joined kitchen");
    c[2].send("/rooms");
    c[2].expect("* rooms: kitchen (3)");
}

#[test]
fn msg_is_private_and_me_goes_to_the_whole_room() {
    let server = Server::start(&[]);
    let mut c = server.join_many(3);
    c[0].rename("ann");
    all_expect(&mut c[1..], "* guest1 is now ann");
    c[1].rename("ben");
    c[0].expect("* guest2 is now ben");
    c[2].expect("* guest2 is now ben");

    c[0].send("/msg ben  psst, over here ");
    c[1].expect("*private* <ann> psst, over here ");
    c[0].expect_nothing_else("lobby");
    c[2].expect_nothing_else("lobby");
    // Across rooms too.
    c[1].send("/join attic");
    c[1].expect("* ben joined attic");
    c[0].expect("* ben left lobby");
    c[2].expect("* ben left lobby");
    c[2].send("/msg ben still there?");
    let line = format!("*private* <{}> still there?", c[2].nick);
    c[1].expect(&line);
    c[0].send("/msg nobody hello");
    c[0].expect("* error: no such nick: nobody");

    c[0].send("/me waves");
    c[0].expect("* ann waves");
    c[2].expect("* ann waves");
    c[1].expect_nothing_else("attic");
}

#[test]
fn quit_says_bye_closes_and_tells_the_room() {
    let server = Server::start(&[]);
    let mut c = server.join_many(3);
    c[1].send("/quit");
    c[1].expect("* bye");
    c[1].expect_closed();
    let gone = c[1].nick.clone();
    c[0].expect(&format!("* {gone} disconnected"));
    c[2].expect(&format!("* {gone} disconnected"));
    c[0].send("/who");
    let line = format!("* in lobby: {}, {}", c[0].nick, c[2].nick);
    c[0].expect(&line);
    // The nick is free again.
    c[2].rename(&gone);
    c[0].expect(&format!("* guest3 is now {gone}"));
}

#[test]
fn invalid_names_duplicate_nicks_and_unknown_commands_get_errors() {
    let server = Server::start(&[]);
    let mut c = server.join_many(2);
    c[1].rename("taken");
    c[0].expect("* guest2 is now taken");
    let bad_nick = "* error: invalid nick: use 1-32 of A-Z a-z 0-9 _ -";
    let bad_room = "* error: invalid room name: use 1-32 of A-Z a-z 0-9 _ -";
    let long = "x".repeat(33);
    let cases = [
        ("/nick".to_owned(), bad_nick.to_owned()),
        ("/nick two words".into(), bad_nick.into()),
        ("/nick dot.ted".into(), bad_nick.into()),
        (format!("/nick {long}"), bad_nick.into()),
        ("/nick taken".into(), "* error: nick taken is taken".into()),
        (
            "/nick guest1".into(),
            "* error: you are already guest1".into(),
        ),
        ("/join".into(), bad_room.into()),
        ("/join a/b".into(), bad_room.into()),
        (format!("/join {long}"), bad_room.into()),
        (
            "/join lobby".into(),
            "* error: you are already in lobby".into(),
        ),
        ("/msg taken".into(), "* error: usage: /msg NICK TEXT".into()),
        ("/me".into(), "* error: usage: /me TEXT".into()),
        ("/dance".into(), "* error: unknown command".into()),
        ("/".into(), "* error: unknown command".into()),
    ];
    for (line, want) in &cases {
        c[0].send(line);
        c[0].expect(want);
    }
    // Nothing of that reached the other member, and nothing changed.
    c[1].expect_nothing_else("lobby");
    c[0].send("/who");
    c[0].expect("* in lobby: guest1, taken");
    // The longest valid names are fine.
    let longest = "y".repeat(32);
    c[0].rename(&longest);
    c[1].expect(&format!("* guest1 is now {longest}"));
}

// ----- limits and departures -----

#[test]
fn a_line_over_max_line_gets_an_error_and_is_closed() {
    let server = Server::start(&["--max-line", "100"]);
    let mut c = server.join_many(2);
    // Exactly 100 bytes, with or without `\r`, is fine.
    let longest = "a".repeat(100);
    c[0].send(&format!("{longest}\r"));
    c[1].expect(&format!("<guest1> {longest}"));
    c[0].send(&longest);
    c[1].expect(&format!("<guest1> {longest}"));
    // 101 bytes is not.
    c[0].send(&"b".repeat(101));
    c[0].expect("* error: line too long");
    c[0].expect_closed();
    c[1].expect("* guest1 disconnected");

    // Nor is an endless line that never ends with a newline.
    let mut endless = server.join();
    c[1].expect(&format!("* {} joined lobby", endless.nick));
    endless.stream.write_all(&[b'c'; 1000]).unwrap();
    endless.expect("* error: line too long");
    endless.expect_closed();
    c[1].expect(&format!("* {} disconnected", endless.nick));
    c[1].expect_nothing_else("lobby");
}

#[test]
fn abrupt_departures_are_announced() {
    let server = Server::start(&[]);
    let mut c = server.join_many(4);
    let [dropped, reset, half_closed] = [1, 2, 3].map(|i| c[i].nick.clone());

    // A plain close.
    c.remove(1);
    all_expect(&mut c, &format!("* {dropped} disconnected"));
    // A reset (SO_LINGER 0).
    let victim = c.remove(1);
    socket2::SockRef::from(&victim.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(victim);
    all_expect(&mut c, &format!("* {reset} disconnected"));
    // A half-close: the server answers what it got, then closes.
    c[1].send("/rooms");
    c[1].stream.shutdown(Shutdown::Write).unwrap();
    c[1].expect("* rooms: lobby (2)");
    c[1].expect_closed();
    c[0].expect(&format!("* {half_closed} disconnected"));
    c[0].send("/who");
    let line = format!("* in lobby: {}", c[0].nick);
    c[0].expect(&line);
}

/// `--max-backlog` is a hard cap: a write that would pass it cuts the member off at
/// once. At 64 KiB, no more than the high watermark, it leaves flow control no room
/// (a member is congested only above the watermark), so the cap cuts the member that
/// does not read long before the (here, hour-long) slow timeout.
#[test]
fn a_member_that_does_not_read_is_cut_off_at_max_backlog_and_the_room_goes_on() {
    let server = Server::start_logged(&["--max-backlog", "65536", "--slow-timeout", "3600"]);
    let mut c = server.join_many(3);
    let slow = c.pop().unwrap();
    let mut reader = c.pop().unwrap();
    let mut flooder = c.pop().unwrap();
    // `slow` never reads again. The flooder sends numbered 1 KB lines, at most a
    // window ahead of the reader, until the reader (which checks that none is lost)
    // has seen `slow` cut off; then it sends `done`.
    let gone = format!("* {} disconnected", slow.nick);
    flood_until(&mut flooder, &mut reader, &gone, WATCHDOG);
    reader.send("/who");
    reader.expect(&format!("* in lobby: {}, {}", flooder.nick, reader.nick));
    // The slow member's connection was closed: what it reads now ends.
    let mut slow = slow;
    let mut sink = Vec::new();
    match slow.reader.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the slow member's connection did not end: {e}"),
    }
    let log = server.stop_log();
    let cut: Vec<&str> = log.lines().filter(|l| l.ends_with("; closing")).collect();
    assert_eq!(cut.len(), 1, "one member cut off: {cut:?}");
    assert!(
        cut[0].contains("write buffer would pass 65536 bytes"),
        "{}",
        cut[0]
    );
}

// ----- clean text -----

/// What a member types reaches the others as valid UTF-8 without control characters:
/// no terminal escapes, no bare `\r` to forge a server notice, no invalid bytes.
#[test]
fn text_is_relayed_as_clean_utf8() {
    let server = Server::start(&[]);
    let mut c = server.join_many(2);
    let (from, to) = (c[0].nick.clone(), c[1].nick.clone());
    let r = "\u{FFFD}";
    let cases: [(Vec<u8>, String); 5] = [
        (
            b"\x1b[31mred\x1b[0m".to_vec(),
            format!("<{from}> {r}[31mred{r}[0m"),
        ),
        (
            b"hi\r* root is now admin".to_vec(),
            format!("<{from}> hi{r}* root is now admin"),
        ),
        (
            b"caf\xe9 \xff\tend\x7f".to_vec(),
            format!("<{from}> caf{r} {r}\tend{r}"),
        ),
        (
            b"/me \xc2\x9b2J waves".to_vec(),
            format!("* {from} {r}2J waves"),
        ),
        (
            format!("/msg {to} \x07bell\x08").into_bytes(),
            format!("*private* <{from}> {r}bell{r}"),
        ),
    ];
    for (line, want) in &cases {
        let mut bytes = line.clone();
        bytes.push(b'\n');
        c[0].stream.write_all(&bytes).expect("send");
        c[1].expect(want);
    }
    // The sender's own /me confirmation is cleaned too.
    c[0].expect(&format!("* {from} {r}2J waves"));
    c[0].expect_nothing_else("lobby");
}

// ----- flags -----

/// A flag value that cannot work stops the server before it listens: one line on
/// stderr naming the flag, exit status 2.
#[test]
fn flags_that_cannot_work_are_refused_at_start() {
    let cases: [&[&str]; 6] = [
        &["--max-line", "0"],
        &["--max-backlog", "0"],
        &["--slow-timeout", "0"],
        &["--slow-timeout", "-1"],
        &["--slow-timeout", "nan"],
        &["--slow-timeout", "inf"],
    ];
    for args in cases {
        let mut child = Command::new(example_bin("chat"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat");
        let stderr = lines_of(child.stderr.take().expect("piped stderr"));
        let mut proc = Proc(child);
        let status = proc.wait();
        let lines: Vec<String> = stderr.iter().collect();
        assert_eq!(status.code(), Some(2), "{args:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(
            lines[0].starts_with("chat: ") && lines[0].contains(args[0]),
            "{args:?}: {lines:?}"
        );
    }
}

#[test]
fn two_hundred_members_each_hear_the_199_others() {
    const N: usize = 200;
    let server = Server::start(&[]);
    let mut clients: Vec<LineMember> = (0..N).map(|_| server.join()).collect();
    // Client i hears the N - 1 - i that came after it.
    for (i, c) in clients.iter_mut().enumerate() {
        for later in i + 2..=N {
            c.expect(&format!("* guest{later} joined lobby"));
        }
    }
    for c in &mut clients {
        let nick = c.nick.clone();
        c.send(&format!("from {nick}"));
    }
    let everyone: BTreeSet<String> = clients.iter().map(|c| c.nick.clone()).collect();
    for c in &mut clients {
        let mut heard = BTreeSet::new();
        for _ in 0..N - 1 {
            let line = c.line();
            let (from, text) = line
                .strip_prefix('<')
                .and_then(|l| l.split_once("> "))
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            assert_eq!(text, format!("from {from}"));
            assert!(heard.insert(from.to_owned()), "{from} heard twice");
        }
        let mut others = everyone.clone();
        others.remove(&c.nick);
        assert_eq!(heard, others, "{} heard the others exactly once", c.nick);
    }
    clients[0].expect_nothing_else("lobby");
}

/// The reactor's count of write system calls, from the statistics the server logs
/// when it stops (`stopped; stats: ... write calls N; ...`).
fn write_calls_in(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("stopped; stats:"))
        .find_map(|l| l.split("write calls ").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no write count in the server's log:\n{log}"))
}

#[test]
fn lines_that_arrive_together_reach_each_member_in_few_writes() {
    const LINES: usize = 100;
    let server = Server::start_logged(&[]);
    let mut c = server.join_many(3);
    // One send, so the lines reach the server together (one segment on loopback).
    let burst: String = (0..LINES).map(|i| format!("line {i}\n")).collect();
    c[0].stream.write_all(burst.as_bytes()).expect("send");
    let from = c[0].nick.clone();
    for r in &mut c[1..] {
        for i in 0..LINES {
            r.expect(&format!("<{from}> line {i}"));
        }
    }
    c[1].expect_nothing_else("lobby");
    // Every write the server made, joins and shutdown included. A write per delivery
    // would be more than 2 x 100; the reactor gathers a turn's lines into one write
    // per member. The bound leaves room for the joins (a few writes each), the burst
    // being read in several turns, and the notices at shutdown.
    let calls = write_calls_in(&server.stop_log());
    assert!(
        calls <= 40,
        "{} deliveries took {calls} write system calls in all",
        2 * LINES
    );
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let mut server = Server::start(&[]);
    let mut c = server.join_many(2);
    let status = Command::new("kill")
        .args(["-TERM", &server.proc.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert!(server.proc.wait().success(), "exit status 0");
    for client in &mut c {
        client.expect_closed();
    }
}

#[test]
fn help_lists_the_flags() {
    for name in ["chat", "chat_client"] {
        let out = Command::new(example_bin(name))
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .expect("run --help");
        assert!(out.status.success(), "{name} --help exits 0");
        let text = String::from_utf8_lossy(&out.stdout);
        let flags: &[&str] = match name {
            "chat" => &["--listen", "--max-line", "--max-backlog", "--slow-timeout"],
            _ => &["--connect"],
        };
        for flag in flags {
            assert!(
                text.contains(flag),
                "{name} --help mentions {flag}:\n{text}"
            );
        }
    }
}

// ----- chat_client -----

/// A running `chat_client`: its stdin, and its stdout line by line.
struct ChatClient {
    proc: Proc,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
}

impl ChatClient {
    fn start(addr: SocketAddr) -> ChatClient {
        let mut child = Command::new(example_bin("chat_client"))
            .args(["--connect", &addr.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chat_client");
        let stdin = child.stdin.take();
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        ChatClient {
            proc: Proc(child),
            stdin,
            stdout,
        }
    }

    fn type_in(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).expect("typing");
        stdin.flush().unwrap();
    }

    fn printed(&self) -> String {
        self.stdout
            .recv_timeout(WATCHDOG)
            .expect("chat_client printed no line in time")
    }

    /// Its nick, from the welcome it printed.
    fn welcome(&self) -> String {
        let line = self.printed();
        line.strip_prefix("* welcome ")
            .and_then(|rest| rest.strip_suffix(", you are in lobby"))
            .unwrap_or_else(|| panic!("not a welcome: {line:?}"))
            .to_owned()
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }
}

#[test]
fn chat_client_relays_stdin_and_the_socket_until_quit() {
    let server = Server::start(&[]);
    let mut peer = server.join();
    let mut client = ChatClient::start(server.addr);
    let me = client.welcome();
    peer.expect(&format!("* {me} joined lobby"));

    client.type_in("hello from the keyboard\n");
    peer.expect(&format!("<{me}> hello from the keyboard"));
    peer.send("hello, keyboard");
    assert_eq!(client.printed(), format!("<{}> hello, keyboard", peer.nick));
    // A line typed in pieces goes out whole.
    client.type_in("/nick ");
    client.type_in("typist\n");
    assert_eq!(client.printed(), format!("* {me} is now typist"));
    peer.expect(&format!("* {me} is now typist"));

    client.type_in("/quit\n");
    assert_eq!(client.printed(), "* bye");
    assert!(client.proc.wait().success(), "exit status 0 after /quit");
    peer.expect("* typist disconnected");
}

#[test]
fn chat_client_sends_what_is_typed_then_exits_at_end_of_input() {
    let server = Server::start(&[]);
    let mut peer = server.join();
    let mut client = ChatClient::start(server.addr);
    let me = client.welcome();
    peer.expect(&format!("* {me} joined lobby"));
    // The last line has no newline: the client adds one.
    client.type_in("one\ntwo");
    client.close_stdin();
    peer.expect(&format!("<{me}> one"));
    peer.expect(&format!("<{me}> two"));
    peer.expect(&format!("* {me} disconnected"));
    assert!(
        client.proc.wait().success(),
        "exit status 0 at end of input"
    );
}

/// Piped input (`printf '/who\n' | chat_client`): the client half-closes at the end of
/// its input, so the answer to the last command still reaches stdout before it exits.
#[test]
fn chat_client_prints_the_answers_to_piped_input_before_exiting() {
    let server = Server::start(&[]);
    let mut client = ChatClient::start(server.addr);
    let me = client.welcome();
    client.type_in("/who\n");
    client.close_stdin();
    assert_eq!(client.printed(), format!("* in lobby: {me}"));
    assert!(client.proc.wait().success(), "exit status 0");
}

#[test]
fn chat_client_input_that_ends_before_the_connection_is_up_is_still_sent() {
    let server = Server::start(&[]);
    let mut peer = server.join();
    let mut child = Command::new(example_bin("chat_client"))
        .args(["--connect", &server.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn chat_client");
    // Written and closed at once: stdin usually ends before the connect completes.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/nick early\nearly bird\n")
        .unwrap();
    let mut proc = Proc(child);
    let joined = peer.line();
    let nick = joined
        .strip_prefix("* ")
        .and_then(|l| l.strip_suffix(" joined lobby"))
        .unwrap_or_else(|| panic!("unexpected line {joined:?}"))
        .to_owned();
    peer.expect(&format!("* {nick} is now early"));
    peer.expect("<early> early bird");
    peer.expect("* early disconnected");
    assert!(proc.wait().success());
}

#[test]
fn chat_client_fails_when_it_cannot_connect() {
    // A port that was just free: nothing listens there now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let mut child = Command::new(example_bin("chat_client"))
        .args(["--connect", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat_client");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut proc = Proc(child);
    assert_eq!(proc.wait().code(), Some(1));
    // What the user sees, captured (so that a passing run reads clean) and checked.
    let mut said = String::new();
    BufReader::new(stderr).read_to_string(&mut said).unwrap();
    assert!(
        said.contains(&format!("cannot connect to {addr}")) && said.contains("refused"),
        "chat_client said {said:?}"
    );
}
