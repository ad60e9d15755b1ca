//! A factoring server: CPU-heavy work goes to the thread pool, answers come back on
//! the reactor thread.
//!
//! Each line is a command (a trailing `\r` is stripped):
//!
//! - `factor N` (2 ≤ N < 2^64) is factored on the pool and answered
//!   `N = p1 * p2 * ...`, primes ascending and repeated: `factor 12` gets
//!   `12 = 2 * 2 * 3`, a prime `N` gets `N = N`.
//! - `ping` is answered `pong` by the reactor thread itself, even while every pool
//!   thread is busy.
//! - Anything else gets `error: REASON`; so does a full pool queue (`error: busy`).
//!
//! Answers to one connection come in the order of its requests, so a `ping` sent
//! behind that connection's own `factor` waits for it (other connections' work does
//! not hold it up). When the client shuts its write side, everything still pending is
//! answered, then the server closes. A line over 1 KiB closes the connection. SIGINT
//! or SIGTERM stops the server: jobs not yet started are dropped (answered
//! `error: cancelled` where the connection can still take it).
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example offload -- [--listen 127.0.0.1:8002] [--threads N] [--queue JOBS]
//! ```
//!
//! Poke it with `nc 127.0.0.1 8002` and type `factor 18446744073709551615`: it answers
//! `18446744073709551615 = 3 * 5 * 17 * 257 * 641 * 65537 * 6700417`. Or, without a
//! terminal: `printf 'factor 600851475143\nping\n' | nc -N 127.0.0.1 8002`.

mod common;

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use common::{exit_status, init_logging, serve, Cli};
use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::{Addr, InOrder, JobError, Reactor};

/// The longest command line: `factor` and a 20-digit number need 27 bytes, so 1 KiB is
/// plenty for typing mistakes, and a client that never sends a newline is cut off
/// before it costs anything.
const MAX_LINE_BYTES: usize = 1024;

/// Answers one connection may have outstanding before the server stops reading from
/// it: a client that pipelines faster than the pool factors is pushed back on by the
/// kernel instead of filling our memory with queued requests.
const MAX_PENDING_ANSWERS: u64 = 1024;

/// The pool's queue bound when `--queue` is not given (the reactor's own default).
const DEFAULT_QUEUE_JOBS: &str = "4096";

fn main() -> ExitCode {
    init_logging();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let args = Cli::new(
        "offload",
        "Factoring server: work on a thread pool, answers on the reactor thread.",
        "127.0.0.1:8002",
    )
    .option("threads", "N", &cpus.to_string(), "pool threads")
    .option(
        "queue",
        "JOBS",
        DEFAULT_QUEUE_JOBS,
        "jobs that may wait for a thread",
    )
    .parse();
    let addr = args.listen_addr();
    let threads = args.number("threads", 1..);
    let queue = args.number("queue", 1..);
    exit_status("offload", run(addr, threads, queue))
}

fn run(addr: SocketAddr, threads: usize, queue: usize) -> io::Result<()> {
    let mut reactor = Reactor::builder()
        .threads(threads)
        .pool_queue_jobs(queue)
        // Factoring yields the core to the reactor, so `ping` stays quick even when
        // every pool thread is busy on a machine with few cores.
        .pool_nice(10)
        .build()?;
    let port = reactor.listen_tcp(addr, |_: &Addr| {
        Some(
            LineReceiver::new(Offload::default())
                .delimiter(b"\n")
                .max_length(MAX_LINE_BYTES),
        )
    })?;
    serve(&mut reactor, port.local_addr)
}

/// One connection: its answers in request order, and why it is not reading.
#[derive(Default)]
struct Offload {
    /// Every request takes a ticket; answers leave in ticket order.
    order: InOrder<String>,
    /// The client shut its write side: close once every answer is out.
    eof: bool,
    /// Our write buffer is over its high watermark: the client is not reading.
    write_blocked: bool,
}

impl LineHandler for Offload {
    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let ticket = self.order.ticket();
        match parse(line) {
            Ok(Command::Ping) => self.answer(cx, ticket, "pong".to_owned()),
            Ok(Command::Factor(n)) => self.factor_on_pool(cx, ticket, n),
            Err(reason) => self.answer(cx, ticket, format!("error: {reason}")),
        }
        self.throttle(cx);
    }

    /// The client is done sending: a last line without a newline is still a command.
    /// The connection closes once every answer is out (see `answer`).
    fn read_eof(&mut self, cx: &mut LineContext<'_, '_>) {
        self.eof = true;
        let rest = cx.clear_line_buffer();
        if !rest.is_empty() {
            self.line_received(cx, &rest);
        }
        if self.order.pending() == 0 {
            cx.lose_connection();
        }
    }

    fn pause_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        self.write_blocked = true;
        self.throttle(cx);
    }

    fn resume_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        self.write_blocked = false;
        self.throttle(cx);
    }
}

impl Offload {
    /// Hands `factor n` to the pool; the answer comes back to this connection on the
    /// reactor thread (or never, if the connection is gone by then).
    fn factor_on_pool(&mut self, cx: &mut LineContext<'_, '_>, ticket: u64, n: u64) {
        let queued = cx.defer_to_thread(
            move || factorize(n),
            move |me: &mut Offload, cx, result| {
                me.answer(cx, ticket, factor_answer(n, result));
                me.throttle(cx);
            },
        );
        if queued.is_err() {
            self.answer(cx, ticket, "error: busy".to_owned());
        }
    }

    /// Records the answer to request `ticket` and sends every answer whose turn has
    /// come; after EOF, closes once nothing is pending.
    fn answer(&mut self, cx: &mut LineContext<'_, '_>, ticket: u64, text: String) {
        self.order.complete(ticket, text);
        while let Some(text) = self.order.pop_ready() {
            cx.send_line(text.as_bytes());
        }
        if self.eof && self.order.pending() == 0 {
            cx.lose_connection();
        }
    }

    /// Reads only while the client reads our answers and has not too many pending.
    fn throttle(&mut self, cx: &mut LineContext<'_, '_>) {
        if self.eof {
            return;
        }
        if self.write_blocked || self.order.pending() >= MAX_PENDING_ANSWERS {
            cx.pause_reading();
        } else {
            cx.resume_reading();
        }
    }
}

fn factor_answer(n: u64, result: Result<Vec<u64>, JobError>) -> String {
    match result {
        Ok(primes) => {
            let primes: Vec<String> = primes.iter().map(u64::to_string).collect();
            format!("{n} = {}", primes.join(" * "))
        }
        Err(JobError::Cancelled) => "error: cancelled".to_owned(),
        Err(e) => format!("error: {e}"),
    }
}

// ----- commands -----

#[derive(Debug, PartialEq)]
enum Command {
    Ping,
    Factor(u64),
}

fn parse(line: &[u8]) -> Result<Command, String> {
    let line = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_owned())?;
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    match words[..] {
        [] => Err("empty line".to_owned()),
        ["ping"] => Ok(Command::Ping),
        ["factor", n] => parse_number(n).map(Command::Factor),
        ["ping", ..] => Err("usage: ping".to_owned()),
        ["factor", ..] => Err("usage: factor N".to_owned()),
        [other, ..] => Err(format!("unknown command `{other}`")),
    }
}

/// N in decimal digits only (no sign), 2 ≤ N < 2^64.
fn parse_number(text: &str) -> Result<u64, String> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a number: `{text}`"));
    }
    match text.parse::<u64>() {
        Err(_) => Err("N must be below 2^64".to_owned()),
        Ok(n) if n < 2 => Err("N must be at least 2".to_owned()),
        Ok(n) => Ok(n),
    }
}

// ----- factoring (runs on the pool) -----

/// Trial division removes factors below this; what is left is a prime or has only
/// factors above it, which Pollard's rho finds quickly. Small enough to cost
/// microseconds, large enough that rho never has to dig out tiny factors.
const TRIAL_DIVISION_LIMIT: u64 = 1 << 12;

/// The prime factors of `n` (n ≥ 2), ascending and repeated.
fn factorize(mut n: u64) -> Vec<u64> {
    let mut primes = Vec::new();
    for p in [2, 3] {
        divide_out(&mut n, p, &mut primes);
    }
    // Every prime above 3 is 6k - 1 or 6k + 1.
    let mut k = 6;
    while k - 1 <= TRIAL_DIVISION_LIMIT && (k - 1) * (k - 1) <= n {
        divide_out(&mut n, k - 1, &mut primes);
        divide_out(&mut n, k + 1, &mut primes);
        k += 6;
    }
    split(n, &mut primes);
    primes.sort_unstable();
    primes
}

fn divide_out(n: &mut u64, p: u64, primes: &mut Vec<u64>) {
    while *n % p == 0 {
        primes.push(p);
        *n /= p;
    }
}

/// Pushes the prime factors of `n`, which has no factor below the trial limit.
fn split(n: u64, primes: &mut Vec<u64>) {
    if n == 1 {
        return;
    }
    if is_prime(n) {
        primes.push(n);
        return;
    }
    let d = pollard_rho(n);
    split(d, primes);
    split(n / d, primes);
}

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    (u128::from(a) * u128::from(b) % u128::from(m)) as u64
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    result
}

/// Miller–Rabin with the first twelve primes as bases: exact for every `u64`.
fn is_prime(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    if let Some(&p) = BASES.iter().find(|&&p| n % p == 0) {
        return n == p;
    }
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    BASES.iter().all(|&a| {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            return true;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                return true;
            }
        }
        false
    })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A non-trivial factor of the odd composite `n`: Pollard's rho with Brent's cycle
/// finding, taking one gcd per batch of steps rather than one per step.
fn pollard_rho(n: u64) -> u64 {
    const BATCH: u64 = 128;
    for c in 1.. {
        let step = |x: u64| ((u128::from(x) * u128::from(x) + c) % u128::from(n)) as u64;
        let (mut y, mut x, mut saved) = (2, 2, 2);
        let (mut product, mut g, mut run) = (1, 1, 1);
        while g == 1 {
            x = y;
            for _ in 0..run {
                y = step(y);
            }
            let mut done = 0;
            while done < run && g == 1 {
                saved = y;
                for _ in 0..BATCH.min(run - done) {
                    y = step(y);
                    product = mul_mod(product, x.abs_diff(y), n);
                }
                g = gcd(product, n);
                done += BATCH;
            }
            run *= 2;
        }
        if g == n {
            // The batch overshot (or the product hit 0): redo it one step at a time.
            loop {
                saved = step(saved);
                g = gcd(x.abs_diff(saved), n);
                if g != 1 {
                    break;
                }
            }
        }
        if g != n {
            return g;
        }
        // This polynomial's cycles mod every factor coincide; try the next one.
    }
    unreachable!("some c splits every odd composite")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(mut n: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut p = 2;
        while p * p <= n {
            while n % p == 0 {
                out.push(p);
                n /= p;
            }
            p += 1;
        }
        if n > 1 {
            out.push(n);
        }
        out
    }

    #[test]
    fn small_numbers_match_trial_division() {
        for n in 2..20_000 {
            assert_eq!(factorize(n), naive(n), "{n}");
        }
    }

    #[test]
    fn hard_cases() {
        let cases: &[(u64, &[u64])] = &[
            (u64::MAX, &[3, 5, 17, 257, 641, 65537, 6700417]),
            (18446744030759878681, &[4294967291, 4294967291]),
            (18446743979220271189, &[4294967279, 4294967291]),
            (18446744073709551557, &[18446744073709551557]),
            (600851475143, &[71, 839, 1471, 6857]),
            (1 << 63, &[2; 63]),
            (4099 * 4099 * 4099, &[4099, 4099, 4099]),
        ];
        for (n, want) in cases {
            assert_eq!(factorize(*n), *want, "{n}");
        }
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse(b"ping"), Ok(Command::Ping));
        assert_eq!(parse(b" factor  12 "), Ok(Command::Factor(12)));
        for bad in [
            &b""[..],
            b"factor",
            b"factor 1",
            b"factor -3",
            b"factor +3",
            b"factor x",
            b"factor 18446744073709551616",
            b"factor 2 3",
            b"ping 1",
            b"PING",
            b"\xff",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
