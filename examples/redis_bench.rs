//! The Redis client's pipelined throughput, measured the way `redis-benchmark` measures
//! a server: `-c` connections, each sending `-P` commands at a time and waiting for
//! all their replies before sending the next `-P`, until `-n` requests in all; the
//! same key (`key:__rand_int__`, as redis-benchmark without `-r`) and a 3-byte value.
//!
//! ```text
//! cargo run --release --example redis_bench -- [--addr 127.0.0.1:6379] [-c 50]
//!     [-n 200000] [-P 16] [-t set,get]
//! ```
//!
//! Prints one line per test in redis-benchmark's `--csv` form: `"SET","123456.79"`
//! (requests per second), so the two can be compared line for line.

use std::cell::Cell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use twistor::redis::{RedisClient, RedisProtocol};
use twistor::{Context, Reactor};

struct Args {
    addr: SocketAddr,
    clients: usize,
    requests: usize,
    pipeline: usize,
    tests: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:6379".parse().unwrap(),
        clients: 50,
        requests: 200_000,
        pipeline: 16,
        tests: vec!["set".into(), "get".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--addr" => args.addr = value.parse().map_err(|e| format!("--addr: {e}"))?,
            "-c" => args.clients = number()?.max(1),
            "-n" => args.requests = number()?.max(1),
            "-P" => args.pipeline = number()?.max(1),
            "-t" => args.tests = value.split(',').map(str::to_ascii_lowercase).collect(),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

/// One test's progress, shared by its clients.
struct Run {
    command: Vec<&'static [u8]>,
    requests: usize,
    pipeline: usize,
    sent: Cell<usize>,
    done: Cell<usize>,
    failed: Cell<usize>,
}

/// Sends the next batch on `client`, if any request is left.
fn send_batch(run: &Rc<Run>, client: &RedisClient, cx: &mut Context<'_>, left: &Rc<Cell<usize>>) {
    let n = run.pipeline.min(run.requests - run.sent.get());
    run.sent.set(run.sent.get() + n);
    left.set(n);
    for _ in 0..n {
        let (run2, client2, left2) = (run.clone(), client.clone(), left.clone());
        let sent = client.command(cx, &run.command, move |cx, reply| {
            if reply.is_err() {
                run2.failed.set(run2.failed.get() + 1);
            }
            run2.done.set(run2.done.get() + 1);
            left2.set(left2.get() - 1);
            if run2.done.get() == run2.requests {
                cx.stop_reactor();
            } else if left2.get() == 0 && run2.sent.get() < run2.requests {
                send_batch(&run2, &client2, cx, &left2);
            }
        });
        if sent.is_err() {
            run.failed.set(run.failed.get() + 1);
            run.done.set(run.done.get() + 1);
        }
    }
}

fn bench(args: &Args, test: &str) -> std::io::Result<(f64, usize)> {
    let command: Vec<&'static [u8]> = match test {
        "set" => vec![b"SET", b"key:__rand_int__", b"xxx"],
        "get" => vec![b"GET", b"key:__rand_int__"],
        other => return Err(std::io::Error::other(format!("unknown test {other}"))),
    };
    let mut reactor = Reactor::new()?;
    let clients: Vec<RedisClient> = (0..args.clients)
        .map(|_| RedisClient::connect(&mut reactor, args.addr))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !clients.iter().all(RedisClient::is_connected) {
        if Instant::now() > deadline {
            return Err(std::io::Error::other("could not connect"));
        }
        reactor.run_once(Some(Duration::from_millis(10)))?;
    }
    let run = Rc::new(Run {
        command,
        requests: args.requests,
        pipeline: args.pipeline,
        sent: Cell::new(0),
        done: Cell::new(0),
        failed: Cell::new(0),
    });
    let start = Instant::now();
    // The first batches go out from a zero timer, so that they run in a callback
    // (where the reply callbacks send the next ones) and the clock starts with them.
    let (first, all) = (run.clone(), clients.clone());
    reactor.call_later(Duration::ZERO, move |reactor: &mut Reactor| {
        for client in all {
            let id = client.service().conn_id().expect("connected");
            let (run, left) = (first.clone(), Rc::new(Cell::new(0)));
            reactor.call_protocol(id, move |_: &mut RedisProtocol, cx| {
                if run.sent.get() < run.requests {
                    send_batch(&run, &client, cx, &left);
                }
            });
        }
    });
    reactor.run()?;
    let elapsed = start.elapsed().as_secs_f64();
    Ok((run.done.get() as f64 / elapsed, run.failed.get()))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("redis_bench: {e}");
            return ExitCode::from(2);
        }
    };
    for test in &args.tests {
        match bench(&args, test) {
            Ok((rps, 0)) => println!("\"{}\",\"{rps:.2}\"", test.to_ascii_uppercase()),
            Ok((_, failed)) => {
                eprintln!("redis_bench: {test}: {failed} requests failed");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("redis_bench: {test}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
