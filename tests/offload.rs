//! The `offload` example, driven from outside as a real process.
//!
//! As in `tests/examples.rs`: the example is built once with the `cargo` running the
//! tests, started on `127.0.0.1:0`, and spoken to with raw lines. Every blocking step
//! has a watchdog, and the child is killed on drop.
//!
//! What is asserted is what the server answers and in which order, never how fast:
//! "ping while the pool is busy" means the pong arrives while hard factorisations are
//! queued, not within some time.

mod common;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use common::example::{self, read_until_closed, run_example, Listening};

/// How long any single step may block before the test fails.
const WATCHDOG: Duration = Duration::from_secs(20);

/// Primes just below 2^32: a product of two of them is as hard as a `u64` gets for
/// Pollard's rho (milliseconds each), so a few dozen keep one pool thread busy.
const BIG_PRIMES: [u64; 4] = [4294967197, 4294967231, 4294967279, 4294967291];

// ----- harness -----

/// A running `offload` server.
struct Server {
    ex: Listening,
    addr: SocketAddr,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let ex = example::serve("offload", "127.0.0.1:0", extra);
        let addr = ex.addr();
        Server { ex, addr }
    }

    fn connect(&self) -> Client {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(WATCHDOG)).unwrap();
        s.set_write_timeout(Some(WATCHDOG)).unwrap();
        Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            stream: s,
        }
    }
}

/// One client connection, read line by line.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).expect("send");
    }

    /// Sends each of `lines` with a `\n`, all in one write.
    fn send_lines<S: AsRef<str>>(&mut self, lines: &[S]) {
        let text: String = lines.iter().map(|l| format!("{}\n", l.as_ref())).collect();
        self.send(&text);
    }

    /// The next answer, without its `\n`.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read an answer");
        assert!(n > 0, "the server closed instead of answering");
        assert!(line.ends_with('\n'), "unterminated answer {line:?}");
        line.pop();
        line
    }

    /// Everything until the server closes, as lines. A reset counts as a close: a
    /// server that closes with unread input in its socket sends RST instead of FIN.
    fn lines_until_closed(&mut self) -> Vec<String> {
        let rest = read_until_closed(&mut self.reader);
        let rest = String::from_utf8(rest).expect("UTF-8 answers");
        rest.lines().map(str::to_owned).collect()
    }

    fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

/// The answer to `factor n` given its prime factors, after checking that they do
/// multiply to `n` (so a wrong expectation fails here, not in the server).
fn answer(n: u64, primes: &[u64]) -> String {
    let product = primes.iter().try_fold(1u64, |acc, &p| acc.checked_mul(p));
    assert_eq!(product, Some(n), "the test's factors of {n} are wrong");
    assert!(primes.windows(2).all(|w| w[0] <= w[1]));
    let primes: Vec<String> = primes.iter().map(u64::to_string).collect();
    format!("{n} = {}", primes.join(" * "))
}

/// Trial division, for checking small numbers.
fn naive_factors(mut n: u64) -> Vec<u64> {
    let mut primes = Vec::new();
    let mut p = 2;
    while p * p <= n {
        while n % p == 0 {
            primes.push(p);
            n /= p;
        }
        p += 1;
    }
    if n > 1 {
        primes.push(n);
    }
    primes
}

/// `count` hard numbers (products of two primes near 2^32) and their answers.
fn hard_jobs(count: usize) -> (Vec<String>, Vec<String>) {
    (0..count)
        .map(|i| {
            let (p, q) = (BIG_PRIMES[i % 4], BIG_PRIMES[(i / 4 + i) % 4]);
            let (p, q) = (p.min(q), p.max(q));
            (format!("factor {}", p * q), answer(p * q, &[p, q]))
        })
        .unzip()
}

// ----- factoring -----

#[test]
fn factor_answers_small_prime_and_64_bit_numbers() {
    let server = Server::start(&[]);
    let cases: &[(&str, String)] = &[
        ("factor 12", answer(12, &[2, 2, 3])),
        ("factor 2", answer(2, &[2])),
        ("factor 97", answer(97, &[97])),
        ("factor 1024", answer(1024, &[2; 10])),
        ("factor 1000000007\r", answer(1000000007, &[1000000007])),
        (
            "  factor   600851475143 ",
            answer(600851475143, &[71, 839, 1471, 6857]),
        ),
        (
            "factor 18446744073709551615",
            answer(u64::MAX, &[3, 5, 17, 257, 641, 65537, 6700417]),
        ),
        (
            "factor 18446744030759878681",
            answer(18446744030759878681, &[4294967291, 4294967291]),
        ),
        (
            "factor 18446743979220271189",
            answer(18446743979220271189, &[4294967279, 4294967291]),
        ),
        (
            "factor 18446744073709551557",
            answer(18446744073709551557, &[18446744073709551557]),
        ),
        ("factor 9223372036854775808", answer(1 << 63, &[2; 63])),
    ];
    let mut c = server.connect();
    for (request, want) in cases {
        c.send_lines(&[request]);
        assert_eq!(&c.line(), want, "request {request:?}");
    }
}

/// 2..=2000 pipelined on one connection: every answer matches trial division, and
/// they come back in request order.
#[test]
fn pipelined_factors_match_trial_division_in_request_order() {
    let server = Server::start(&["--threads", "2"]);
    let mut c = server.connect();
    let requests: Vec<String> = (2..=2000u64).map(|n| format!("factor {n}")).collect();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let text: String = requests.iter().map(|r| format!("{r}\n")).collect();
        writer.write_all(text.as_bytes()).unwrap();
    });
    for n in 2..=2000u64 {
        assert_eq!(c.line(), answer(n, &naive_factors(n)));
    }
    sender.join().unwrap();
}

// ----- ping and ordering -----

/// One pool thread, kept busy by another client's hard numbers: `ping` is still
/// answered, by the reactor thread, and the busy client gets all its answers after.
#[test]
fn ping_is_answered_while_the_pool_is_saturated() {
    let server = Server::start(&["--threads", "1"]);
    let (requests, answers) = hard_jobs(60);
    let mut busy = server.connect();
    busy.send_lines(&requests);
    // The pool has started on them.
    assert_eq!(busy.line(), answers[0]);

    let mut pinger = server.connect();
    for _ in 0..3 {
        pinger.send_lines(&["ping"]);
        assert_eq!(pinger.line(), "pong");
    }
    // Other commands that need no pool are answered too.
    pinger.send_lines(&["factor 1"]);
    assert!(pinger.line().starts_with("error: "));

    for want in &answers[1..] {
        assert_eq!(&busy.line(), want);
    }
}

/// On one connection, a `ping` behind a pending `factor` waits for it: answers come
/// in request order, even when a later job finishes first.
#[test]
fn answers_on_one_connection_come_in_request_order() {
    let server = Server::start(&["--threads", "2"]);
    let (hard, hard_answers) = hard_jobs(2);
    let mut c = server.connect();
    c.send_lines(&[
        hard[0].as_str(),
        "ping",
        "factor 12",
        "ping",
        hard[1].as_str(),
        "bogus",
        "ping",
    ]);
    let want = [
        hard_answers[0].as_str(),
        "pong",
        "12 = 2 * 2 * 3",
        "pong",
        hard_answers[1].as_str(),
        "error: unknown command `bogus`",
        "pong",
    ];
    for w in want {
        assert_eq!(c.line(), w);
    }
}

/// Thousands of pings queued behind hard numbers, far more than the server keeps
/// pending per connection before it stops reading, and more than the socket buffers
/// hold: every answer still comes, in order.
#[test]
fn thousands_of_pipelined_requests_are_all_answered_in_order() {
    const PINGS: usize = 3000;
    let server = Server::start(&["--threads", "1"]);
    let (hard, hard_answers) = hard_jobs(3);
    let mut requests = Vec::new();
    let mut want = Vec::new();
    for (h, a) in hard.iter().zip(&hard_answers) {
        requests.push(h.clone());
        want.push(a.clone());
        requests.extend((0..PINGS).map(|_| "ping".to_owned()));
        want.extend((0..PINGS).map(|_| "pong".to_owned()));
    }
    let mut c = server.connect();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let text: String = requests.iter().map(|r| format!("{r}\n")).collect();
        writer.write_all(text.as_bytes()).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = c.lines_until_closed();
    sender.join().unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "answers out of order or wrong");
}

// ----- bad input -----

#[test]
fn bad_input_gets_an_error_line_and_the_connection_stays_usable() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let bad = [
        "factor 1",
        "factor 0",
        "factor -5",
        "factor +5",
        "factor abc",
        "factor 12abc",
        "factor 18446744073709551616",
        "factor 99999999999999999999999",
        "factor",
        "factor 2 3",
        "FACTOR 12",
        "hello",
        "",
        "\r",
        "ping pong",
        "factor \u{0663}", // a non-ASCII digit
    ];
    for line in bad {
        c.send_lines(&[line]);
        let got = c.line();
        assert!(
            got.starts_with("error: ") && got.len() > "error: ".len(),
            "{line:?} got {got:?}"
        );
    }
    // Bytes that are not UTF-8 are bad input too, not a crash.
    c.stream.write_all(b"factor \xff\n\xff\xfe\n").unwrap();
    assert!(c.line().starts_with("error: "));
    assert!(c.line().starts_with("error: "));
    c.send_lines(&["ping"]);
    assert_eq!(c.line(), "pong");
    // Answers give the reason.
    c.send_lines(&["factor 1", "factor 18446744073709551616", "nope"]);
    assert_eq!(c.line(), "error: N must be at least 2");
    assert_eq!(c.line(), "error: N must be below 2^64");
    assert_eq!(c.line(), "error: unknown command `nope`");
}

/// The line limit is 1 KiB: a line of exactly 1024 bytes is a command, a longer one
/// closes the connection (and nothing else).
#[test]
fn a_line_over_1_kib_closes_the_connection() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let padded = format!("factor {:0>1017}", 12);
    assert_eq!(padded.len(), 1024);
    c.send_lines(&[padded]);
    assert_eq!(c.line(), "12 = 2 * 2 * 3");
    for overlong in [format!("{}\n", "x".repeat(1025)), "y".repeat(4096)] {
        let mut c = server.connect();
        c.send_lines(&["ping"]);
        assert_eq!(c.line(), "pong");
        match c.stream.write_all(overlong.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => panic!("writing: {e}"),
        }
        assert_eq!(c.lines_until_closed(), Vec::<String>::new());
    }
    let mut c = server.connect();
    c.send_lines(&["ping"]);
    assert_eq!(c.line(), "pong");
}

// ----- the pool's queue -----

/// One thread and a queue of one: of many hard numbers sent at once, those that find
/// the queue full are answered `error: busy`, in their place; the rest are factored.
#[test]
fn a_full_pool_queue_answers_busy_in_order() {
    let server = Server::start(&["--threads", "1", "--queue", "1"]);
    let (requests, answers) = hard_jobs(50);
    let mut c = server.connect();
    c.send_lines(&requests);
    let mut busy = 0;
    for want in &answers {
        let got = c.line();
        if got == "error: busy" {
            busy += 1;
        } else {
            assert_eq!(&got, want);
        }
    }
    // Fifty jobs of milliseconds each, submitted within one read: the one thread
    // cannot have taken them all as they came.
    assert!(busy > 0, "no request was refused");
    c.send_lines(&["factor 12"]);
    assert_eq!(c.line(), "12 = 2 * 2 * 3");
}

// ----- closing -----

/// When the client shuts its write side, every pending request is still answered (a
/// last line without a newline included), then the server closes.
#[test]
fn after_the_client_shuts_its_write_side_every_answer_comes_then_eof() {
    let server = Server::start(&["--threads", "1"]);
    let (hard, hard_answers) = hard_jobs(5);
    let mut c = server.connect();
    c.send_lines(&hard);
    c.send("ping\nfactor 12");
    c.shutdown_write();
    let mut want = hard_answers;
    want.push("pong".to_owned());
    want.push("12 = 2 * 2 * 3".to_owned());
    assert_eq!(c.lines_until_closed(), want);

    // With nothing pending, the server closes at once.
    let mut idle = server.connect();
    idle.shutdown_write();
    assert_eq!(idle.lines_until_closed(), Vec::<String>::new());
}

/// SIGINT while one pool thread is busy and many jobs wait: the queued jobs are
/// dropped. The client sees correct answers (those finished before the stop), then
/// possibly `error: cancelled` for the dropped ones (if the connection could still
/// take them), then EOF; the server exits 0.
#[test]
fn sigint_drops_queued_jobs_and_exits_0() {
    // Seconds of work for the one thread: far more than the stop takes to begin.
    const JOBS: usize = 500;
    let mut server = Server::start(&["--threads", "1"]);
    let (requests, answers) = hard_jobs(JOBS);
    let mut busy = server.connect();
    busy.send_lines(&requests);
    assert_eq!(busy.line(), answers[0]);
    let mut idle = server.connect();
    idle.send_lines(&["ping"]);
    assert_eq!(idle.line(), "pong");

    server.ex.signal("INT");
    let rest = busy.lines_until_closed();
    let factored = rest
        .iter()
        .zip(&answers[1..])
        .take_while(|(got, want)| got == want);
    let factored = factored.count();
    assert!(
        rest[factored..].iter().all(|l| l == "error: cancelled"),
        "after {factored} answers: {:?}",
        &rest[factored..]
    );
    assert!(factored < JOBS - 1, "no queued job was dropped");
    assert_eq!(idle.lines_until_closed(), Vec::<String>::new());
    let status = server.ex.wait();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn sigterm_stops_an_idle_server_with_exit_0() {
    let mut server = Server::start(&[]);
    let mut c = server.connect();
    c.send_lines(&["ping"]);
    assert_eq!(c.line(), "pong");
    server.ex.signal("TERM");
    assert_eq!(c.lines_until_closed(), Vec::<String>::new());
    let status = server.ex.wait();
    assert!(status.success(), "exit status {status}");
}

// ----- the command line -----

#[test]
fn help_lists_the_flags_and_exits_0() {
    let out = run_example("offload", &["--help"]);
    assert!(out.status.success(), "exit status {}", out.status);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--threads",
        "--queue",
        "--help",
        "127.0.0.1:8002",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[test]
fn zero_threads_is_refused_with_exit_2() {
    let out = run_example("offload", &["--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
    assert!(out.stdout.is_empty());
}
