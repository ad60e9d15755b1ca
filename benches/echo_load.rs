//! Load test: twistor's raw echo on one reactor thread, driven over loopback by N
//! client threads, printing msgs/s, MB/s, latency percentiles and the reactor
//! thread's CPU time per message.
//!
//! The server is the protocol `examples/echo.rs --raw` runs (upper-case each chunk,
//! write it back, pause reading when the write buffer passes the high watermark),
//! started in this process on its own thread. Each client thread owns one blocking
//! connection and loops: write `depth` messages of `size` bytes in one `write`, read
//! them all back, so with depth 1 it is ping-pong. Counting starts after the warm-up.
//! Latency is per round trip of a batch (every message of the batch gets it), from just
//! before the write to the last byte read back.
//!
//! Reactor CPU comes from `/proc/thread-self/stat` of the reactor thread (utime+stime,
//! 10 ms ticks), read at the start and the end of the measured window.
//!
//! Run all default configurations (4 clients; 64 B ping-pong, 64 B × 16 pipelined,
//! 16 KiB ping-pong; 3 s each):
//!
//! ```text
//! cargo bench --bench echo_load
//! ```
//!
//! or one configuration:
//!
//! ```text
//! cargo bench --bench echo_load -- --clients 8 --size 64 --depth 16 --secs 5 --warmup 1
//! ```
//!
//! With `--busy-pool N`, N pool threads spin on CPU work for the whole run, to compare
//! echo latency with a saturated pool against an idle one (`--busy-pool 0`):
//!
//! ```text
//! cargo bench --bench echo_load -- --clients 50 --busy-pool 0
//! cargo bench --bench echo_load -- --clients 50 --busy-pool 1
//! ```
//!
//! `--pool-nice N` builds the server with `Builder::pool_nice(N)`, so the busy pool
//! threads yield to the reactor:
//!
//! ```text
//! cargo bench --bench echo_load -- --clients 50 --busy-pool 1 --pool-nice 10
//! ```
//!
//! With `--listen ADDR` there are no client threads: the same server (with the same
//! `--busy-pool` and `--pool-nice`) listens on ADDR, prints `listening on ADDR` and
//! serves until it is killed, so the load rig's loadgen, a separate process, can drive
//! it (BENCHMARKS.md, "Echo latency with the pool saturated"):
//!
//! ```text
//! cargo bench --bench echo_load -- --listen 127.0.0.1:7000 --busy-pool 2 --pool-nice 19
//! ```
//!
//! Otherwise this is a quick in-process check, not a comparison with other servers: for
//! that use the load rig (a separate loadgen process, the same scenarios for every
//! server).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use twistor::{Addr, Context, Handle, Protocol, Reactor};

/// Clock ticks per second of utime/stime in `/proc/*/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// The `--raw` protocol of `examples/echo.rs` (from `examples/common/echo.rs`).
#[derive(Default)]
struct RawEcho {
    scratch: Vec<u8>,
}

impl Protocol for RawEcho {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        self.scratch.clear();
        self.scratch.extend_from_slice(data);
        self.scratch.make_ascii_uppercase();
        cx.write(&self.scratch);
    }

    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        cx.pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        cx.resume_reading();
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    clients: usize,
    size: usize,
    depth: usize,
    secs: f64,
    warmup: f64,
    /// Pool threads kept busy with CPU work for the whole run (0: an idle pool).
    busy_pool: usize,
    /// `Builder::pool_nice` for the server's pool.
    pool_nice: i32,
    /// Pool threads (0: as many as `--busy-pool`, at least one).
    threads: usize,
    /// `Builder::busy_poll` for the reactor, in microseconds (0: off).
    busy_poll_us: u64,
    /// Serve on this address for an outside load generator instead of running clients.
    listen: Option<SocketAddr>,
}

/// utime + stime of the calling thread, in seconds.
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
    ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)
}

/// Reads the reactor thread's CPU time from the reactor thread itself.
fn reactor_cpu_secs(handle: &Handle) -> f64 {
    let (tx, rx) = mpsc::channel();
    handle
        .call_from_thread(move |_: &mut Reactor| {
            let _ = tx.send(thread_cpu_secs());
        })
        .expect("reactor alive");
    rx.recv().expect("reactor answered") / TICKS_PER_SEC
}

/// Starts the echo server on its own thread; returns its address, a handle and the
/// thread.
fn start_server(
    cfg: Config,
    listen: SocketAddr,
    done: Arc<AtomicBool>,
) -> (SocketAddr, Handle, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let threads = if cfg.threads > 0 {
        cfg.threads
    } else {
        cfg.busy_pool.max(1)
    };
    let server = thread::spawn(move || {
        let mut reactor = Reactor::builder()
            .threads(threads)
            .pool_nice(cfg.pool_nice)
            .busy_poll(Duration::from_micros(cfg.busy_poll_us))
            .build()
            .expect("reactor");
        // Saturate the pool: each job spins on CPU work until the run ends, as a
        // server offloading hashing or compression would keep it.
        for _ in 0..cfg.busy_pool {
            let done = Arc::clone(&done);
            reactor
                .call_in_thread(move || {
                    let mut x = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        for i in 0..10_000u64 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                        }
                    }
                })
                .expect("pool job");
        }
        let port = reactor
            .listen_tcp(listen, |_: &Addr| Some(RawEcho::default()))
            .expect("listen");
        tx.send((port.local_addr, reactor.handle())).unwrap();
        reactor.run().expect("reactor run");
    });
    let (addr, handle) = rx.recv().expect("server started");
    (addr, handle, server)
}

/// What one client thread measured: messages echoed and per-round-trip latencies (ns)
/// inside the measured window.
struct ClientResult {
    messages: u64,
    latencies_ns: Vec<u64>,
}

fn client(addr: SocketAddr, cfg: Config, start: Instant, end: Instant) -> ClientResult {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let batch = vec![b'a'; cfg.size * cfg.depth];
    let mut reply = vec![0u8; batch.len()];
    let mut result = ClientResult {
        messages: 0,
        latencies_ns: Vec::with_capacity(1 << 16),
    };
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        stream.write_all(&batch).expect("client write");
        stream.read_exact(&mut reply).expect("client read");
        if sent >= start {
            result.messages += cfg.depth as u64;
            result.latencies_ns.push(sent.elapsed().as_nanos() as u64);
        }
    }
    result
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank] as f64 / 1000.0
}

/// Serves on `listen` until the process is killed.
fn serve(cfg: Config, listen: SocketAddr) {
    let done = Arc::new(AtomicBool::new(false));
    let (addr, _handle, server) = start_server(cfg, listen, done);
    println!("listening on {addr}");
    std::io::stdout().flush().expect("stdout");
    server.join().expect("server thread");
}

fn run(cfg: Config) {
    let done = Arc::new(AtomicBool::new(false));
    let any_port = "127.0.0.1:0".parse().expect("address");
    let (addr, handle, server) = start_server(cfg, any_port, Arc::clone(&done));
    let begin = Instant::now();
    let start = begin + Duration::from_secs_f64(cfg.warmup);
    let end = start + Duration::from_secs_f64(cfg.secs);
    let clients: Vec<_> = (0..cfg.clients)
        .map(|_| thread::spawn(move || client(addr, cfg, start, end)))
        .collect();
    thread::sleep(start.saturating_duration_since(Instant::now()));
    let cpu_before = reactor_cpu_secs(&handle);
    let results: Vec<ClientResult> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    let cpu = reactor_cpu_secs(&handle) - cpu_before;
    done.store(true, Ordering::Relaxed);
    handle.stop();
    server.join().expect("server thread");

    let messages: u64 = results.iter().map(|r| r.messages).sum();
    let mut latencies: Vec<u64> = results.into_iter().flat_map(|r| r.latencies_ns).collect();
    latencies.sort_unstable();
    let msgs_per_sec = messages as f64 / cfg.secs;
    println!(
        "echo_load clients={} size={} depth={} secs={} busy_pool={} pool_nice={}: {:.0} msgs/s, \
         {:.1} MB/s, p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, \
         reactor CPU {:.0} % = {:.2} µs/msg",
        cfg.clients,
        cfg.size,
        cfg.depth,
        cfg.secs,
        cfg.busy_pool,
        cfg.pool_nice,
        msgs_per_sec,
        msgs_per_sec * cfg.size as f64 / 1e6,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        100.0 * cpu / cfg.secs,
        if messages > 0 {
            cpu * 1e6 / messages as f64
        } else {
            0.0
        },
    );
}

/// Parses `--name value` flags; `cargo bench` adds `--bench`, which is ignored.
fn parse_args() -> (Config, bool) {
    let mut cfg = Config {
        clients: 4,
        size: 64,
        depth: 1,
        secs: 3.0,
        warmup: 1.0,
        busy_pool: 0,
        pool_nice: 0,
        threads: 0,
        busy_poll_us: 0,
        listen: None,
    };
    let mut custom = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> f64 {
            let v = args.next().unwrap_or_default();
            v.parse()
                .unwrap_or_else(|_| panic!("--{name} needs a number, got `{v}`"))
        };
        match arg.as_str() {
            "--clients" => cfg.clients = value("clients") as usize,
            "--size" => {
                cfg.size = value("size") as usize;
                custom = true;
            }
            "--depth" => {
                cfg.depth = value("depth") as usize;
                custom = true;
            }
            "--secs" => cfg.secs = value("secs"),
            "--warmup" => cfg.warmup = value("warmup"),
            "--busy-pool" => {
                cfg.busy_pool = value("busy-pool") as usize;
                custom = true;
            }
            "--pool-nice" => cfg.pool_nice = value("pool-nice") as i32,
            "--threads" => cfg.threads = value("threads") as usize,
            "--busy-poll-us" => cfg.busy_poll_us = value("busy-poll-us") as u64,
            "--listen" => {
                let v = args.next().unwrap_or_default();
                let addr = v
                    .parse()
                    .unwrap_or_else(|_| panic!("--listen needs an address, got `{v}`"));
                cfg.listen = Some(addr);
            }
            _ => {} // `--bench` and criterion-style filters
        }
    }
    assert!(cfg.clients > 0 && cfg.size > 0 && cfg.depth > 0 && cfg.secs > 0.0);
    (cfg, custom)
}

fn main() {
    let (cfg, custom) = parse_args();
    if let Some(listen) = cfg.listen {
        serve(cfg, listen);
        return;
    }
    if custom {
        run(cfg);
        return;
    }
    for (size, depth) in [(64, 1), (64, 16), (16384, 1)] {
        run(Config { size, depth, ..cfg });
    }
}
