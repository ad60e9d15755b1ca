//! Timers, closures from other threads, and stopping: the non-I/O half of a turn.
//!
//! Timer tests assert order and outcome, never lateness: a test that must know that a
//! deadline has passed waits for a later timer to fire (timers fire in deadline order).

mod common;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use twistor::{Reactor, ReactorGone};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Names of fired timers, in firing order.
type Fired = Rc<RefCell<Vec<&'static str>>>;

fn record(fired: &Fired, name: &'static str) -> impl FnOnce(&mut Reactor) + 'static {
    let fired = fired.clone();
    move |_| fired.borrow_mut().push(name)
}

fn has(fired: &Fired, name: &str) -> bool {
    fired.borrow().contains(&name)
}

#[test]
fn timers_fire_in_deadline_order() {
    let mut r = Reactor::new().unwrap();
    let fired = Fired::default();
    for (delay, name) in [
        (30, "d30"),
        (10, "d10"),
        (20, "d20"),
        (0, "d0"),
        (10, "d10b"),
    ] {
        r.call_later(ms(delay), record(&fired, name));
    }
    run_until(&mut r, |_| fired.borrow().len() == 5);
    assert_eq!(*fired.borrow(), ["d0", "d10", "d10b", "d20", "d30"]);
    assert_eq!(r.timer_count(), 0);
}

#[test]
fn cancelled_timers_never_fire_and_reset_ones_move() {
    let mut r = Reactor::new().unwrap();
    let fired = Fired::default();
    let cancelled = r.call_later(ms(5), record(&fired, "cancelled"));
    let later = r.call_later(Duration::from_secs(3600), record(&fired, "moved"));
    let sooner = r.call_later(ms(1), record(&fired, "postponed"));
    assert!(r.cancel_timer(cancelled));
    assert!(!r.cancel_timer(cancelled), "cancel twice");
    assert!(r.reset_timer(later, Duration::ZERO));
    assert!(r.reset_timer(sooner, ms(20)));
    // Fires after every deadline above, so its firing shows the cancelled one is dead.
    r.call_later(ms(30), record(&fired, "end"));
    run_until(&mut r, |_| has(&fired, "end"));
    assert_eq!(*fired.borrow(), ["moved", "postponed", "end"]);
    assert!(!r.reset_timer(later, ms(1)), "reset after firing");
    assert!(!r.cancel_timer(sooner), "cancel after firing");
    assert_eq!(r.timer_count(), 0);
}

/// A `call_later(0)` made inside a timer runs on a later pass, while a timer already
/// due when the pass began runs in it.
#[test]
fn zero_delay_timer_set_inside_a_timer_runs_on_a_later_pass() {
    let mut r = Reactor::new().unwrap();
    let pass = Rc::new(Cell::new(0u32));
    let seen: Rc<RefCell<Vec<(&str, u32)>>> = Rc::default();
    let at = |name: &'static str| {
        let (pass, seen) = (pass.clone(), seen.clone());
        move |_: &mut Reactor| seen.borrow_mut().push((name, pass.get()))
    };
    let inner = at("inner");
    let outer = at("outer");
    r.call_later(Duration::ZERO, move |r| {
        outer(r);
        r.call_later(Duration::ZERO, inner);
    });
    r.call_later(Duration::ZERO, at("sibling"));
    run_until(&mut r, |_| {
        pass.set(pass.get() + 1);
        seen.borrow().len() == 3
    });
    let seen = seen.borrow();
    assert_eq!(seen[0].0, "outer");
    assert_eq!(seen[1], ("sibling", seen[0].1), "{seen:?}");
    assert_eq!(seen[2].0, "inner");
    assert!(
        seen[2].1 > seen[0].1,
        "inner ran in the same pass: {seen:?}"
    );
}

/// Timers set with `Context::call_later` fire while their connection lives and never
/// after it is lost, even when due in the very turn it closes; the reactor's own
/// per-connection timers (idle, close deadline) go too, so `timer_count` is 0.
#[test]
fn connection_timers_die_with_their_connection() {
    let log = Log::default();
    let mut r = Reactor::builder()
        .idle_timeout(Some(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let server = Rec::new(&log)
        .on_made(|cx| {
            cx.call_later(Duration::from_secs(3600), |p: &mut Rec, _| {
                p.log.mark("hour")
            });
            cx.call_later(Duration::ZERO, |p: &mut Rec, cx| {
                assert!(cx.is_open());
                p.log.mark("alive");
                cx.write(b"tick");
            });
        })
        .on_data(|cx, _| {
            // Due in the same turn as the close: must still never fire.
            cx.call_later(Duration::ZERO, |p: &mut Rec, _| p.log.mark("after close"));
            let t = cx.call_later(Duration::ZERO, |p: &mut Rec, _| p.log.mark("cancelled"));
            assert!(cx.cancel_timer(t));
            cx.lose_connection();
        });
    let addr = listen(&mut r, server);
    let c = client(addr, |mut s| {
        assert_eq!(read_n(&mut s, 4), b"tick");
        s.write_all(b"close").unwrap();
        read_to_eof(&mut s)
    });
    drive(&mut r, c);
    run_until(&mut r, |_| log.lost_count() == 1);
    let fired = Fired::default();
    r.call_later(ms(10), record(&fired, "end"));
    run_until(&mut r, |_| has(&fired, "end"));
    assert!(log.has_mark("alive"));
    for dead in ["after close", "cancelled", "hour"] {
        assert!(!log.has_mark(dead), "{dead} fired");
    }
    assert_eq!(r.timer_count(), 0);
    log.check_lifecycles();
}

/// Eight threads send a thousand closures each while the reactor blocks in `run()`
/// between them: every closure runs exactly once, each thread's in order.
#[test]
fn call_from_thread_from_many_threads_runs_each_closure_once_in_order() {
    const THREADS: usize = 8;
    const EACH: usize = 1000;
    let (rt, ()) = spawn_reactor(|_| ());
    let (tx, rx) = mpsc::channel::<(usize, usize)>();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (handle, tx) = (rt.handle.clone(), tx.clone());
            thread::spawn(move || {
                for i in 0..EACH {
                    let tx = tx.clone();
                    handle
                        .call_from_thread(move |_| tx.send((t, i)).unwrap())
                        .unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut next = [0usize; THREADS];
    for _ in 0..THREADS * EACH {
        let (t, i) = rx
            .recv_timeout(WATCHDOG)
            .expect("watchdog: a closure never ran (lost wakeup?)");
        assert_eq!(i, next[t], "thread {t} out of order");
        next[t] += 1;
    }
    for s in senders {
        s.join().unwrap();
    }
    rt.stop_and_join();
    assert!(rx.try_recv().is_err(), "a closure ran twice");
    assert_eq!(next, [EACH; THREADS]);
}

/// `Handle::stop` from another thread wakes a reactor blocked in `run()` with nothing
/// registered; `run()` works again afterwards, and stops again the same way.
#[test]
fn stop_from_another_thread_wakes_a_blocked_run_and_run_works_again() {
    let (ready_tx, ready) = mpsc::channel();
    let (returned_tx, returned) = mpsc::channel();
    let reactor = thread::spawn(move || {
        let mut r = Reactor::new().unwrap();
        let handle = r.handle();
        ready_tx.send(handle.clone()).unwrap();
        for run in 1..=2 {
            // Says "running" from inside run(), which then blocks in poll.
            let tx = returned_tx.clone();
            handle
                .call_from_thread(move |_| tx.send(("running", run)).unwrap())
                .unwrap();
            r.run().unwrap();
            returned_tx.send(("returned", run)).unwrap();
        }
    });
    let handle = ready.recv_timeout(WATCHDOG).unwrap();
    for run in 1..=2 {
        assert_eq!(returned.recv_timeout(WATCHDOG), Ok(("running", run)));
        handle.stop();
        assert_eq!(
            returned.recv_timeout(WATCHDOG),
            Ok(("returned", run)),
            "watchdog: run() did not return after stop()"
        );
    }
    reactor.join().unwrap();
    assert_eq!(handle.call_from_thread(|_| ()), Err(ReactorGone));
    handle.stop(); // does nothing once the reactor is gone
}

/// A panic in a reactor timer or a `call_from_thread` closure is contained, and a
/// panic in a connection's own timer closes only that connection; the reactor goes on
/// serving.
#[test]
fn panics_in_timers_and_thread_closures_are_contained() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let fired = Fired::default();
    r.call_later(Duration::ZERO, |_| panic!("timer boom"));
    r.call_later(ms(1), record(&fired, "after timer panic"));
    let (tx, rx) = mpsc::channel();
    r.handle()
        .call_from_thread(|_| panic!("closure boom"))
        .unwrap();
    r.handle()
        .call_from_thread(move |_| tx.send("after closure panic").unwrap())
        .unwrap();
    run_until(&mut r, |_| has(&fired, "after timer panic"));
    run_until(&mut r, |_| rx.try_recv().is_ok());

    // Connections whose first byte is 'p' set a timer that panics.
    let server = Rec::new(&log).on_data(|cx, d| {
        cx.write(d);
        if d[0] == b'p' {
            cx.call_later(Duration::ZERO, |_: &mut Rec, _| panic!("bound boom"));
        }
    });
    let addr = listen(&mut r, server);
    let (a_gone, wait_a) = mpsc::channel::<()>();
    let a = client(addr, move |mut s| {
        s.write_all(b"panic").unwrap();
        // The echo may or may not beat the reset.
        let (got, _) = read_to_eof(&mut s);
        assert!(b"panic".starts_with(&got), "{got:?}");
        a_gone.send(()).unwrap();
    });
    let b = client(addr, move |mut s| {
        round_trip(&mut s, b"b1");
        wait_a.recv_timeout(WATCHDOG).unwrap();
        round_trip(&mut s, b"b2");
    });
    drive_all(&mut r, vec![a, b]);
    run_until(&mut r, |_| log.lost_count() == 2);
    let panicked = log.count(|e| matches!(e, Ev::Lost(_, Why::Panic(m)) if m == "bound boom"));
    assert_eq!(panicked, 1, "{:#?}", log.events());
    assert_eq!(r.timer_count(), 0);
    log.check_lifecycles();
}
