//! Timer insert, cancel and fire through the reactor's public API.
//!
//! `TimerQueue` is crate-private, so this measures what a user pays:
//! [`Reactor::call_later`] (a clock read, a boxed closure, a heap push),
//! [`Reactor::cancel_timer`] (a slab removal; the heap node is left stale and compacted
//! later) and firing due timers in [`Reactor::run_once`] (one `epoll_wait` per turn,
//! amortised over the batch).
//!
//! * `insert_cancel/{0,10000}_pending`: one `call_later` + one `cancel_timer`, with 0 or
//!   10,000 other timers pending (heap depth matters for the push).
//! * `insert_then_cancel_1000`: 1,000 inserts, then 1,000 cancels in insertion order.
//! * `fire_1000`: 1,000 zero-delay timers, then one `run_once` that fires all of them.
//!
//! Run: `cargo bench --bench timers -- --warm-up-time 1 --measurement-time 3`

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use twistor::{Reactor, TimerId};

/// Far enough in the future that no benchmark timer fires while being measured.
const FAR: Duration = Duration::from_secs(3600);

/// Timers per batch in the batch benchmarks: enough to amortise one `run_once`.
const BATCH: usize = 1000;

fn insert_cancel(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_cancel");
    for pending in [0usize, 10_000] {
        let mut reactor = Reactor::new().expect("reactor");
        for i in 0..pending {
            // Spread the background deadlines so the heap is a real heap.
            reactor.call_later(FAR + Duration::from_micros(i as u64), |_: &mut Reactor| {});
        }
        group.bench_function(BenchmarkId::new("pending", pending), |b| {
            b.iter(|| {
                let id = reactor.call_later(black_box(FAR), |_: &mut Reactor| {});
                assert!(reactor.cancel_timer(black_box(id)));
            })
        });
        assert_eq!(reactor.timer_count(), pending);
    }
    group.finish();
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("timers");
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut reactor = Reactor::new().expect("reactor");
    let mut ids: Vec<TimerId> = Vec::with_capacity(BATCH);
    group.bench_function("insert_then_cancel_1000", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                ids.push(reactor.call_later(FAR + Duration::from_micros(i as u64), |_| {}));
            }
            for id in ids.drain(..) {
                assert!(reactor.cancel_timer(id));
            }
        })
    });
    assert_eq!(reactor.timer_count(), 0);

    let fired = Rc::new(Cell::new(0usize));
    group.bench_function("fire_1000", |b| {
        b.iter(|| {
            fired.set(0);
            for _ in 0..BATCH {
                let fired = Rc::clone(&fired);
                reactor.call_later(Duration::ZERO, move |_| fired.set(fired.get() + 1));
            }
            // The timers are due before the turn reads the clock, so one turn (with a
            // zero poll timeout) fires them all.
            reactor.run_once(Some(Duration::ZERO)).expect("run_once");
            assert_eq!(fired.get(), BATCH);
        })
    });
    group.finish();
}

criterion_group!(benches, insert_cancel, batches);
criterion_main!(benches);
