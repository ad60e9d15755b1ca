//! The example servers, driven from outside as real processes.
//!
//! Each test builds the example once (with the same `cargo` that runs the tests),
//! starts it on `127.0.0.1:0`, reads its `listening on ADDR` line, and talks to it with
//! raw bytes, as EXAMPLES.md promises users can. Every blocking step has a watchdog, so
//! a broken server fails a test instead of hanging it, and the child is killed on drop.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use common::example::{self, read_until_closed, run_example, Listening};

/// How long a client socket may block before the test fails: generous, since it only
/// catches a hung server and never decides a passing test.
const WATCHDOG: Duration = Duration::from_secs(10);

// ----- harness -----

/// A running example server on a loopback port.
struct Server {
    ex: Listening,
    addr: SocketAddr,
}

impl Server {
    /// Starts example `name` on a free loopback port and waits until it listens.
    fn start(name: &str, extra: &[&str]) -> Server {
        let ex = example::serve(name, "127.0.0.1:0", extra);
        let addr = ex.addr();
        Server { ex, addr }
    }

    /// A client whose reads and writes fail after [`common::CLIENT_TIMEOUT`].
    fn connect(&self) -> TcpStream {
        common::connect(self.addr)
    }
}

/// Writes `data` while the server may be closing on us: an error from a peer that
/// already hung up is expected, anything else is not.
fn write_tolerating_close(s: &mut TcpStream, data: &[u8]) {
    match s.write_all(data) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ) => {}
        Err(e) => panic!("writing: {e}"),
    }
}

/// Sends `input`, shuts the write side, and returns everything the server sends back
/// before it closes.
fn exchange(server: &Server, input: &[u8]) -> Vec<u8> {
    let mut s = server.connect();
    s.write_all(input).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    read_until_closed(&mut s)
}

/// Writes `input` from a thread of its own while this thread reads the reply, so that
/// a payload larger than the socket buffers cannot deadlock the two directions.
fn exchange_large(server: &Server, input: Vec<u8>) -> Vec<u8> {
    let mut s = server.connect();
    let mut writer = s.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&input).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let reply = read_until_closed(&mut s);
    sender.join().expect("writer thread");
    reply
}

/// Asserts two large byte strings are equal without printing megabytes on failure.
fn assert_same_bytes(got: &[u8], want: &[u8]) {
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && first_diff.is_none(),
        "got {} bytes, want {}; first difference at {first_diff:?}",
        got.len(),
        want.len()
    );
}

/// Expects exactly `want` next from `s`.
fn expect_reply(s: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got).expect("read reply");
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

// ----- echo -----

/// Each case is sent on a fresh connection, followed by a shut write side; the server
/// must answer exactly `want` and then close.
fn check_line_echo(cases: &[(&[u8], &[u8])]) {
    let server = Server::start("echo", &[]);
    for (input, want) in cases {
        let got = exchange(&server, input);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn echo_upper_cases_the_seed_line() {
    let server = Server::start("echo", &[]);
    let mut s = server.connect();
    s.write_all(b"hello SocketServer\n").unwrap();
    expect_reply(&mut s, b"HELLO SOCKETSERVER\n");
    // The connection stays open for more lines.
    s.write_all(b"again\n").unwrap();
    expect_reply(&mut s, b"AGAIN\n");
}

#[test]
fn echo_keeps_each_line_ending() {
    check_line_echo(&[
        (b"one\r\ntwo\r\n", b"ONE\r\nTWO\r\n"),
        (b"mixed\r\nendings\n", b"MIXED\r\nENDINGS\n"),
        (b"\n\r\n\n", b"\n\r\n\n"),
    ]);
}

#[test]
fn echo_changes_only_ascii_letters() {
    check_line_echo(&[
        (b"az AZ 09 !?-_@[`{~\n", b"AZ AZ 09 !?-_@[`{~\n"),
        // UTF-8 and arbitrary bytes pass through untouched.
        (
            "caf\u{e9} \u{fc}ber\n".as_bytes(),
            "CAF\u{e9} \u{fc}BER\n".as_bytes(),
        ),
        (b"\x00\x7f\x80\xff\tx\n", b"\x00\x7f\x80\xff\tX\n"),
    ]);
}

#[test]
fn echo_sends_a_final_line_without_newline_then_closes() {
    check_line_echo(&[
        (b"last line", b"LAST LINE"),
        (b"a\nb", b"A\nB"),
        (b"crlf then\r\nrest\r", b"CRLF THEN\r\nREST\r"),
        (b"", b""),
    ]);
}

#[test]
fn echo_accepts_a_line_of_exactly_64_kib() {
    let server = Server::start("echo", &[]);
    let mut line = vec![b'q'; 64 * 1024];
    line.push(b'\n');
    let got = exchange_large(&server, line.clone());
    assert_same_bytes(&got, &line.to_ascii_uppercase());
}

#[test]
fn echo_closes_a_line_over_64_kib() {
    let server = Server::start("echo", &[]);
    let with_newline = [vec![b'a'; 64 * 1024 + 1], b"\n".to_vec()].concat();
    let without_newline = vec![b'b'; 100 * 1024];
    for input in [with_newline, without_newline] {
        let mut s = server.connect();
        // Start with a short line to see that only the long one is refused.
        s.write_all(b"ok\n").unwrap();
        expect_reply(&mut s, b"OK\n");
        write_tolerating_close(&mut s, &input);
        let got = read_until_closed(&mut s);
        assert!(got.is_empty(), "got {} bytes back", got.len());
    }
    // The server itself is unharmed.
    assert_eq!(exchange(&server, b"still here\n"), b"STILL HERE\n");
}

#[test]
fn echo_returns_many_lines_byte_exact() {
    let server = Server::start("echo", &[]);
    // Lines of varied lengths and endings, 2 MiB in all: far more than the socket
    // buffers and the write watermarks, so the server must pause and resume.
    let mut payload = Vec::new();
    for i in 0..40_000u32 {
        let ending: &[u8] = if i % 3 == 0 { b"\r\n" } else { b"\n" };
        payload.extend_from_slice(
            format!("line {i} of many: {}", "xY".repeat((i % 20) as usize)).as_bytes(),
        );
        payload.extend_from_slice(ending);
    }
    let got = exchange_large(&server, payload.clone());
    assert_same_bytes(&got, &payload.to_ascii_uppercase());
}

#[test]
fn echo_raw_returns_a_large_payload_upper_cased_byte_exact() {
    let server = Server::start("echo", &["--raw"]);
    // Every byte value, in a pattern that does not line up with any buffer size.
    let payload: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(7) % 251) as u8)
        .collect();
    let got = exchange_large(&server, payload.clone());
    assert_same_bytes(&got, &payload.to_ascii_uppercase());
}

#[test]
fn echo_raw_has_no_line_framing() {
    let server = Server::start("echo", &["--raw"]);
    let mut s = server.connect();
    // No newline: the line echo would wait, the raw echo answers at once.
    s.write_all(b"no newline \r here").unwrap();
    expect_reply(&mut s, b"NO NEWLINE \r HERE");
}

/// Several clients connected at once are served independently, in any order.
fn check_concurrent_clients(extra: &[&str]) {
    let server = Server::start("echo", extra);
    let mut clients: Vec<TcpStream> = (0..8).map(|_| server.connect()).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        s.write_all(format!("client {i} says hi\n").as_bytes())
            .unwrap();
    }
    for (i, s) in clients.iter_mut().enumerate().rev() {
        expect_reply(s, format!("CLIENT {i} SAYS HI\n").as_bytes());
    }
}

#[test]
fn echo_serves_several_clients_at_once() {
    check_concurrent_clients(&[]);
}

#[test]
fn echo_raw_serves_several_clients_at_once() {
    check_concurrent_clients(&["--raw"]);
}

/// `signal` stops the server gracefully: connected clients get EOF, exit status 0.
fn check_graceful_stop(extra: &[&str], signal: &str) {
    let mut server = Server::start("echo", extra);
    let mut clients: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    // A round trip on each proves the server has accepted it before the signal.
    for s in &mut clients {
        s.write_all(b"ping\n").unwrap();
        expect_reply(s, b"PING\n");
    }
    stop_expecting_eof(&mut server, &mut clients, signal);
}

/// Sends `signal` to the server; every client must get a clean EOF and the server
/// must exit with status 0.
fn stop_expecting_eof(server: &mut Server, clients: &mut [TcpStream], signal: &str) {
    server.ex.signal(signal);
    for s in clients {
        let mut buf = [0; 16];
        assert_eq!(s.read(&mut buf).expect("clean EOF"), 0);
    }
    let status = server.ex.wait();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn echo_stops_gracefully_on_sigint() {
    check_graceful_stop(&[], "INT");
}

#[test]
fn echo_stops_gracefully_on_sigterm() {
    check_graceful_stop(&[], "TERM");
}

#[test]
fn echo_raw_stops_gracefully_on_sigterm() {
    check_graceful_stop(&["--raw"], "TERM");
}

/// `--threads 2`: two reactors share the port; every client is served whichever
/// reactor the kernel gave it to, and one SIGTERM stops both gracefully.
#[test]
fn echo_with_two_threads_serves_clients_and_stops_gracefully_on_sigterm() {
    let mut server = Server::start("echo", &["--threads", "2"]);
    let mut clients: Vec<TcpStream> = (0..16).map(|_| server.connect()).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        s.write_all(format!("client {i} says hi\n").as_bytes())
            .unwrap();
        expect_reply(s, format!("CLIENT {i} SAYS HI\n").as_bytes());
    }
    stop_expecting_eof(&mut server, &mut clients, "TERM");
}

/// Runs `example` with `args`, which must be refused at start as EXAMPLES.md says:
/// exit status 2, nothing on stdout, and exactly one line on stderr that names `flag`
/// (and no wording of Rust's own parse errors).
fn check_flag_refused(example: &str, args: &[&str], flag: &str) {
    let out = run_example(example, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("{example} {args:?}");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: status; stderr {stderr:?}"
    );
    assert!(out.stdout.is_empty(), "{what}: nothing may reach stdout");
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1,
        "{what}: stderr must be one line, got {stderr:?}"
    );
    assert!(
        stderr.starts_with(&format!("{example}: ")) && stderr.contains(flag),
        "{what}: the line must name the program and {flag}: {stderr:?}"
    );
    assert!(
        !stderr.contains("non-zero type") && !stderr.contains("invalid digit"),
        "{what}: Rust's internal wording: {stderr:?}"
    );
}

#[test]
fn echo_refuses_zero_threads() {
    check_flag_refused("echo", &["--threads", "0"], "--threads");
    check_flag_refused("echo", &["--threads", "many"], "--threads");
    check_flag_refused("echo", &["--raw", "--threads=0"], "--threads");
}

#[test]
fn udp_echo_refuses_a_zero_or_impossible_max_datagram() {
    check_flag_refused("udp_echo", &["--max-datagram", "0"], "--max-datagram");
    check_flag_refused("udp_echo", &["--max-datagram", "65536"], "--max-datagram");
    check_flag_refused("udp_echo", &["--max-datagram", "-1"], "--max-datagram");
}

/// Every TCP or UDP example refuses a `--listen` that is not an IP address and port;
/// the Unix-socket one refuses an empty path and one too long for a socket address.
#[test]
fn every_example_refuses_a_malformed_listen_address() {
    for example in [
        "echo",
        "logger",
        "udp_echo",
        "offload",
        "kv",
        "upload",
        "socketserver_echo",
    ] {
        for bad in ["nonsense", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:", ""] {
            check_flag_refused(example, &["--listen", bad], "--listen");
        }
        check_flag_refused(example, &["--listen"], "--listen");
    }
    check_flag_refused("unix_echo", &["--listen", ""], "--listen");
    let long = std::env::temp_dir().join("s".repeat(200));
    check_flag_refused(
        "unix_echo",
        &["--listen", long.to_str().unwrap()],
        "--listen",
    );
}

/// Zero sizes, counts and queues that no server could work with, and numbers that
/// are not numbers, in the examples' own flags.
#[test]
fn examples_refuse_flag_values_that_cannot_work() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("offload", &["--threads", "0"], "--threads"),
        ("offload", &["--queue", "0"], "--queue"),
        ("offload", &["--threads", "1.5"], "--threads"),
        ("kv", &["--max-query-bytes", "0"], "--max-query-bytes"),
        ("upload", &["--max-size", "0"], "--max-size"),
        ("upload", &["--max-size", "1GiB"], "--max-size"),
        ("upload", &["--dir", ""], "--dir"),
        (
            "socketserver_echo",
            &["--request-timeout", "soon"],
            "--request-timeout",
        ),
        ("echo", &["--bogus"], "--bogus"),
        ("echo", &["--raw=yes"], "--raw"),
    ];
    for (example, args, flag) in cases {
        check_flag_refused(example, args, flag);
    }
}

#[test]
fn echo_help_lists_flags_and_exits_0() {
    let out = run_example("echo", &["--help"]);
    assert!(out.status.success(), "exit status {}", out.status);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--listen", "--raw", "--threads", "--help"] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

// ----- logger -----

#[test]
fn logger_prints_connection_lines_and_disconnect() {
    let server = Server::start("logger", &[]);
    let mut s = server.connect();
    let addr = s.local_addr().unwrap();
    assert_eq!(server.ex.next_line(), format!("Got connection from {addr}"));
    s.write_all(b"first line\r\nsecond: line\n").unwrap();
    assert_eq!(server.ex.next_line(), format!("{addr}: first line"));
    assert_eq!(server.ex.next_line(), format!("{addr}: second: line"));
    s.shutdown(Shutdown::Write).unwrap();
    // The logger sends nothing back, and closes once the client is done.
    assert!(read_until_closed(&mut s).is_empty());
    assert_eq!(server.ex.next_line(), format!("{addr} disconnected"));
}

#[test]
fn logger_keeps_clients_apart() {
    let server = Server::start("logger", &[]);
    let mut a = server.connect();
    let a_addr = a.local_addr().unwrap();
    assert_eq!(
        server.ex.next_line(),
        format!("Got connection from {a_addr}")
    );
    let b = server.connect();
    let b_addr = b.local_addr().unwrap();
    assert_eq!(
        server.ex.next_line(),
        format!("Got connection from {b_addr}")
    );
    a.write_all(b"from a\n").unwrap();
    assert_eq!(server.ex.next_line(), format!("{a_addr}: from a"));
    drop(b);
    assert_eq!(server.ex.next_line(), format!("{b_addr} disconnected"));
    // A last line without a newline is still logged when the client leaves.
    a.write_all(b"bye").unwrap();
    a.shutdown(Shutdown::Write).unwrap();
    assert_eq!(server.ex.next_line(), format!("{a_addr}: bye"));
    assert_eq!(server.ex.next_line(), format!("{a_addr} disconnected"));
}

#[test]
fn logger_stops_gracefully_on_sigint() {
    let mut server = Server::start("logger", &[]);
    let mut s = server.connect();
    let addr = s.local_addr().unwrap();
    assert_eq!(server.ex.next_line(), format!("Got connection from {addr}"));
    server.ex.signal("INT");
    assert!(read_until_closed(&mut s).is_empty());
    assert_eq!(server.ex.next_line(), format!("{addr} disconnected"));
    let status = server.ex.wait();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn logger_help_exits_0() {
    let out = run_example("logger", &["--help"]);
    assert!(out.status.success(), "exit status {}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--listen"));
}

// ----- unix_echo -----

/// A fresh, empty directory for socket files, unique to this test.
fn socket_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twistor-ex-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn unix_client(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect to unix_echo");
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s
}

#[test]
fn unix_echo_echoes_lines_replaces_a_stale_file_and_removes_it_on_exit() {
    let dir = socket_dir("unix-echo");
    let path = dir.join("echo.sock");
    // A stale socket file: bound by a listener that is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let mut ex = example::serve("unix_echo", path.to_str().unwrap(), &[]);
    assert_eq!(ex.announced, path.to_str().unwrap());

    let mut s = unix_client(&path);
    s.write_all(b"hello SocketServer\nover unix\r\nlast")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"HELLO SOCKETSERVER\nOVER UNIX\r\nLAST");

    // A second server on the same path finds a live one and refuses, exit status 1.
    let out = run_example("unix_echo", &["--listen", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "second server on a live path");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));

    ex.signal("INT");
    assert!(ex.wait().success());
    assert!(!path.exists(), "the socket file is removed on exit");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ----- udp_echo -----

#[test]
fn udp_echo_upper_cases_datagrams_and_drops_oversized_ones() {
    let mut ex = example::serve("udp_echo", "127.0.0.1:0", &["--max-datagram", "1000"]);
    let server: SocketAddr = ex.addr();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut buf = [0; 2048];

    c.send_to(b"hello SocketServer", server).unwrap();
    let (n, from) = c.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"HELLO SOCKETSERVER"[..], server));

    // Over the maximum: dropped, never echoed cut. The next datagram's answer is the
    // first thing to come back.
    c.send_to(&[b'a'; 1001], server).unwrap();
    c.send_to(&[b'b'; 1000], server).unwrap();
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[b'B'; 1000][..]);
    ex.wait_for_log("dropped a datagram");

    ex.signal("TERM");
    assert!(ex.wait().success());
}

// ----- README -----

/// The README's code is what a user pastes: rustdoc compiles each Rust block as a
/// doctest (`src/lib.rs` includes the README), but a line it hides (`# ...`) would be
/// missing from the copy, so there must be none. The server runs until Ctrl-C, so it
/// is compiled, not run (`no_run`), and nothing in it stops it early.
#[test]
fn readme_code_is_what_a_user_pastes() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push((info.to_owned(), body));
    }
    let rust: Vec<_> = blocks
        .iter()
        .filter(|(info, _)| info.split([' ', ',']).next() == Some("rust"))
        .collect();
    assert!(!rust.is_empty(), "the README has no Rust block");
    for (info, body) in &rust {
        let attrs: Vec<&str> = info.split([' ', ',']).skip(1).collect();
        assert!(
            !attrs.iter().any(|a| matches!(*a, "ignore" | "text")),
            "a Rust block rustdoc does not compile: {info:?}"
        );
        for line in body {
            let code = line.trim_start();
            assert!(
                code != "#" && !code.starts_with("# "),
                "a line rustdoc hides, which a user would not copy: {line:?}"
            );
        }
        let code = body.join("\n");
        if code.contains("reactor.run()") {
            assert!(code.contains("fn main()"), "a whole program");
            assert!(code.contains("stop_on_signals()"), "Ctrl-C stops it");
            assert!(!code.contains(".stop()"), "nothing stops it before Ctrl-C");
            assert!(
                attrs.contains(&"no_run"),
                "it serves until Ctrl-C: {info:?}"
            );
        }
    }
    for command in ["cargo run --release --example echo", "cargo test"] {
        assert!(
            blocks
                .iter()
                .any(|(_, body)| body.iter().any(|l| l.starts_with(command))),
            "the README shows `{command}`"
        );
    }
}
