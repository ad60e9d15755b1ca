//! The write path on real loopback sockets, one reactor driven by `run_once`.
//!
//! Everything runs on the bench thread: a blocking (or non-blocking) `std` client
//! talks to a reactor over 127.0.0.1, and the bench turns the reactor by hand, so a
//! measurement is syscalls + reactor code, with no thread hand-offs or wake-ups in it.
//!
//! * `echo_round_trip/{64,16384}`: the client writes one message, the reactor turns
//!   until the echo protocol has seen all of it (it writes each chunk straight back
//!   with `Context::write`), and the client reads the echo back.
//! * `burst/256x64B`: one trigger byte makes the protocol call `Context::write` 256
//!   times with 64 bytes each; the client reads the 16 KiB back while the reactor
//!   turns (anything the kernel refused is drained from the `WriteQueue` with
//!   `writev`).
//! * `burst/1x16KiB`: the same 16 KiB in one `Context::write`, for comparison: the
//!   difference is the cost of 255 more small writes (each one a `write(2)` while the
//!   queue is empty).
//!
//! Run: `cargo bench --bench write_path -- --warm-up-time 1 --measurement-time 3`

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use twistor::{Addr, Context, Protocol, Reactor};

/// Small writes per burst, and the size of each: a pipelined batch of short replies.
const BURST_WRITES: usize = 256;
const BURST_WRITE_BYTES: usize = 64;

/// How long one `run_once` may wait for the event the bench is sure is coming.
const TURN: Duration = Duration::from_secs(1);

/// Echoes every chunk straight back and counts the bytes it saw.
struct Echo {
    seen: Rc<Cell<usize>>,
}

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        self.seen.set(self.seen.get() + data.len());
        cx.write(data);
    }
}

/// On every byte received, writes `writes` messages of `size` bytes, one
/// `Context::write` each.
struct Burst {
    writes: usize,
    message: Vec<u8>,
}

impl Protocol for Burst {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        for _ in data {
            for _ in 0..self.writes {
                cx.write(&self.message);
            }
        }
    }
}

/// A reactor listening on 127.0.0.1 with `factory`, a client connected to it, and the
/// connection accepted.
fn setup<P: Protocol>(factory: impl FnMut(&Addr) -> Option<P> + 'static) -> (Reactor, TcpStream) {
    let mut reactor = Reactor::new().expect("reactor");
    let port = reactor
        .listen_tcp("127.0.0.1:0".parse().unwrap(), factory)
        .expect("listen");
    let client = TcpStream::connect(port.local_addr).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    while reactor.connection_count() == 0 {
        reactor.run_once(Some(TURN)).expect("run_once");
    }
    (reactor, client)
}

fn echo_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo_round_trip");
    for size in [64usize, 16384] {
        let seen = Rc::new(Cell::new(0usize));
        let counter = Rc::clone(&seen);
        let (mut reactor, mut client) = setup(move |_: &Addr| {
            Some(Echo {
                seen: Rc::clone(&counter),
            })
        });
        let message = vec![b'x'; size];
        let mut reply = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                let target = seen.get() + size;
                client.write_all(&message).expect("client write");
                while seen.get() < target {
                    reactor.run_once(Some(TURN)).expect("run_once");
                }
                // The echo went out with direct writes inside `data_received`; a
                // 16 KiB echo fits the loopback socket buffer, so nothing is queued.
                client.read_exact(&mut reply).expect("client read");
            })
        });
        drop(client);
        reactor.run_once(Some(Duration::ZERO)).expect("run_once");
    }
    group.finish();
}

/// Triggers one burst and reads `total` bytes back, turning the reactor whenever the
/// client finds nothing to read.
fn burst_once(reactor: &mut Reactor, client: &mut TcpStream, buf: &mut [u8], total: usize) {
    client.write_all(b"!").expect("client write");
    let mut got = 0;
    while got < total {
        match client.read(buf) {
            Ok(0) => panic!("server closed"),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                reactor.run_once(Some(TURN)).expect("run_once");
            }
            Err(e) => panic!("client read: {e}"),
        }
    }
    assert_eq!(got, total);
}

fn burst(c: &mut Criterion) {
    let mut group = c.benchmark_group("burst");
    let total = BURST_WRITES * BURST_WRITE_BYTES;
    group.throughput(Throughput::Bytes(total as u64));
    let shapes = [
        (
            format!("{BURST_WRITES}x{BURST_WRITE_BYTES}B"),
            BURST_WRITES,
            BURST_WRITE_BYTES,
        ),
        ("1x16KiB".to_owned(), 1, total),
    ];
    for (name, writes, size) in shapes {
        let (mut reactor, mut client) = setup(move |_: &Addr| {
            Some(Burst {
                writes,
                message: vec![b'y'; size],
            })
        });
        client.set_nonblocking(true).expect("nonblocking");
        let mut buf = vec![0u8; 64 * 1024];
        group.bench_function(name, |b| {
            b.iter(|| burst_once(&mut reactor, &mut client, &mut buf, total))
        });
    }
    group.finish();
}

criterion_group!(benches, echo_round_trip, burst);
criterion_main!(benches);
