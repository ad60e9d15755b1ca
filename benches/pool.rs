//! Round trip of an empty job through the thread pool.
//!
//! `Reactor::defer_to_thread(|| (), done)`, then `run_once` until `done` has run on the
//! reactor thread: queue push + condvar wake-up of a worker, the job, the result pushed
//! into the inbox + the `mio::Waker` write, `epoll_wait` returning, and the inbox drained.
//! Target: median below 10 µs.
//!
//! * `empty_job_round_trip`: one job at a time (latency).
//! * `empty_jobs_64_in_flight`: 64 jobs submitted at once, all results back
//!   (throughput; the waker is written once per batch that finds the inbox empty).
//! * `empty_job_round_trip_busy_poll_50us`: the same on a reactor built with
//!   `busy_poll(50 µs)`: the reactor spins instead of sleeping in `epoll_wait`, so the
//!   result needs no wake-up of the reactor thread (and the worker, spinning after its
//!   last job, none either).
//! * `baseline_std_channel_ping_pong`: no twistor at all: a message to a parked thread
//!   and back over two `std::sync::mpsc` channels. Two thread wake-ups, as in the
//!   pool's round trip, so this is the floor the machine sets for it.
//!
//! Run: `cargo bench --bench pool -- --warm-up-time 1 --measurement-time 3`

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use twistor::Reactor;

/// How long one `run_once` may wait for a result the bench is sure is coming.
const TURN: Duration = Duration::from_secs(1);

/// Jobs in flight in the throughput variant.
const IN_FLIGHT: usize = 64;

/// Submits `jobs` empty jobs and turns the reactor until all their results are back.
fn round_trip(reactor: &mut Reactor, done: &Rc<Cell<usize>>, jobs: usize) {
    done.set(0);
    for _ in 0..jobs {
        let done = Rc::clone(done);
        reactor
            .defer_to_thread(
                || (),
                move |_: &mut Reactor, r: Result<(), _>| {
                    r.expect("job ran");
                    done.set(done.get() + 1);
                },
            )
            .expect("pool queue has room");
    }
    while done.get() < jobs {
        reactor.run_once(Some(TURN)).expect("run_once");
    }
}

fn pool(c: &mut Criterion) {
    let mut reactor = Reactor::new().expect("reactor");
    let done = Rc::new(Cell::new(0usize));
    // The pool's threads start on first use: start them before measuring.
    round_trip(&mut reactor, &done, 1);

    let mut group = c.benchmark_group("pool");
    group.bench_function("empty_job_round_trip", |b| {
        b.iter(|| round_trip(&mut reactor, &done, 1))
    });
    let mut spinning = Reactor::builder()
        .busy_poll(Duration::from_micros(50))
        .build()
        .expect("reactor");
    round_trip(&mut spinning, &done, 1);
    group.bench_function("empty_job_round_trip_busy_poll_50us", |b| {
        b.iter(|| round_trip(&mut spinning, &done, 1))
    });
    drop(spinning);
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("empty_jobs_64_in_flight", |b| {
        b.iter(|| round_trip(&mut reactor, &done, IN_FLIGHT))
    });

    let (to_worker, work) = mpsc::channel::<()>();
    let (to_bench, back) = mpsc::channel::<()>();
    let echo = thread::spawn(move || {
        while work.recv().is_ok() {
            if to_bench.send(()).is_err() {
                break;
            }
        }
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_std_channel_ping_pong", |b| {
        b.iter(|| {
            to_worker.send(()).expect("worker alive");
            back.recv().expect("worker answered");
        })
    });
    drop(to_worker);
    echo.join().expect("worker thread");
    group.finish();
}

criterion_group!(benches, pool);
criterion_main!(benches);
