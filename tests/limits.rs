//! Limits and shutdown: max connections, idle timeout, write cap, graceful stop.

mod common;

use std::cell::Cell;
use std::io::{self, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;
use twistor::Reactor;

/// EOF or a reset: the server closed the connection (a read timeout is neither).
fn assert_closed_by_server(s: &mut std::net::TcpStream) {
    let (got, err) = read_to_eof(s);
    assert_eq!(got, b"");
    if let Some(e) = err {
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    }
}

/// With `max_connections(N)` the N+1th client is closed by the server (it reads EOF or
/// a reset) and never reaches a protocol; the first N are served before and after.
#[test]
fn max_connections_refuses_the_excess_and_serves_the_rest() {
    const N: usize = 3;
    let log = Log::default();
    let mut r = Reactor::builder().max_connections(N).build().unwrap();
    let addr = listen(&mut r, Rec::echo(&log));
    let c = std::thread::spawn(move || {
        let mut admitted: Vec<_> = (0..N).map(|_| connect(addr)).collect();
        for s in &mut admitted {
            round_trip(s, b"before");
        }
        assert_closed_by_server(&mut connect(addr));
        for s in &mut admitted {
            round_trip(s, b"after");
        }
    });
    drive(&mut r, c);
    run_until(&mut r, |_| log.lost_count() == N);
    assert_eq!(log.made().len(), N);
    log.check_lifecycles();
}

/// Only the connection that stays silent is closed by the idle timeout; one that keeps
/// talking (until the other has been closed) stays open.
#[test]
fn idle_timeout_closes_only_the_idle_connection() {
    let log = Log::default();
    let mut r = Reactor::builder()
        .idle_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let addr = listen(&mut r, Rec::echo(&log).no_data_log());
    let mut idle = connect(addr);
    run_until(&mut r, |_| log.made().len() == 1);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_chatty = stop.clone();
    let chatty = client(addr, move |mut s| {
        while !stop_chatty.load(Ordering::Relaxed) {
            round_trip(&mut s, b"x");
        }
    });
    let idle_id = log.made()[0];
    run_until(&mut r, |_| log.lost(idle_id).is_some());
    let chatty_id = log.made()[1];
    assert_eq!(log.lost(idle_id), Some(Why::TimedOut));
    assert!(
        r.conn(chatty_id).is_open(),
        "the chatty connection was closed too"
    );
    assert_eq!(log.lost(chatty_id), None);
    stop.store(true, Ordering::Relaxed);
    drive(&mut r, chatty);
    run_until(&mut r, |_| log.lost_count() == 2);
    assert_eq!(log.lost(chatty_id), Some(Why::Done));
    assert_closed_by_server(&mut idle);
    assert_eq!(r.timer_count(), 0);
    log.check_lifecycles();
}

/// A peer that never reads, while the server keeps writing: the connection is closed
/// with `WriteOverflow` once the queue would pass the cap, and the queue never holds
/// more than the cap.
#[test]
fn write_cap_closes_a_peer_that_never_reads() {
    const CAP: usize = 256 * 1024;
    let log = Log::default();
    let most_queued = Rc::new(Cell::new(0));
    let mut r = Reactor::builder().write_cap_bytes(CAP).build().unwrap();
    let queued = most_queued.clone();
    let server = Rec::new(&log).on_made(move |cx| {
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0;
        while cx.write(&chunk) {
            queued.set(queued.get().max(cx.buffered()));
            written += chunk.len();
            assert!(written < 64 << 20, "64 MB written and still no overflow");
        }
        assert_eq!(cx.buffered(), 0, "the queue is dropped at the overflow");
    });
    let addr = listen(&mut r, server);
    let (release, released) = mpsc::channel::<()>();
    let c = client(addr, move |s| {
        released.recv_timeout(WATCHDOG).unwrap();
        drop(s);
    });
    run_until(&mut r, |_| log.lost_count() == 1);
    assert_eq!(log.lost(log.made()[0]), Some(Why::WriteOverflow));
    assert!(most_queued.get() <= CAP, "{} queued", most_queued.get());
    assert!(most_queued.get() > 0, "the test wants the queue used");
    release.send(()).unwrap();
    drive(&mut r, c);
    log.check_lifecycles();
}

/// `stop()` with bytes queued for a slow reader lets them drain: the reader gets them
/// all and then EOF, every connection gets exactly one `connection_lost` (Done), and
/// the reactor is left with no timers.
#[test]
fn graceful_stop_drains_queued_bytes_to_a_slow_reader() {
    const BIG: usize = 6 << 20;
    let log = Log::default();
    let mut r = Reactor::builder()
        .shutdown_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let l = log.clone();
    let server = Rec::new(&log).on_data(move |cx, d| {
        if d == b"big" {
            assert!(cx.write(&pattern(BIG)));
            l.mark(format!("queued {}", cx.buffered() > 0));
        }
    });
    let addr = listen(&mut r, server);
    let (go_tx, go) = mpsc::channel::<()>();
    let (go_tx2, go2) = mpsc::channel::<()>();
    let slow = client(addr, move |mut s| {
        s.write_all(b"big").unwrap();
        go.recv_timeout(WATCHDOG).unwrap();
        read_slowly(&mut s, 64 * 1024, Duration::from_micros(100))
    });
    let quiet = client(addr, move |mut s| {
        s.write_all(b"quiet").unwrap();
        go2.recv_timeout(WATCHDOG).unwrap();
        read_to_eof(&mut s).0
    });
    run_until(&mut r, |_| log.count(|e| matches!(e, Ev::Data(..))) == 2);
    assert!(log.has_mark("queued true"), "the test wants bytes queued");
    r.stop();
    go_tx.send(()).unwrap();
    go_tx2.send(()).unwrap();
    run_until_stopped(&mut r);
    let got = drive_all(&mut r, vec![slow, quiet]);
    assert_eq!(got[0].len(), BIG);
    assert!(got[0] == pattern(BIG));
    assert_eq!(got[1], b"");
    assert_eq!(log.lost_count(), 2);
    assert_eq!(log.count(|e| matches!(e, Ev::Lost(_, Why::Done))), 2);
    assert_eq!(r.timer_count(), 0, "a timer outlived the stop");
    assert_eq!(r.connection_count(), 0);
    log.check_lifecycles();
}

/// A reactor run again after a stop is not cut short by the first stop's shutdown
/// deadline.
#[test]
fn run_after_stop_is_not_aborted_by_the_old_shutdown_deadline() {
    let log = Log::default();
    let mut r = Reactor::builder()
        .shutdown_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let addr = listen(&mut r, Rec::echo(&log));
    let mut first = connect(addr);
    run_until(&mut r, |_| log.made().len() == 1);
    r.stop();
    run_until_stopped(&mut r);
    assert_closed_by_server(&mut first);
    assert_eq!(
        r.timer_count(),
        0,
        "the shutdown deadline outlived the stop"
    );

    let addr = listen(&mut r, Rec::echo(&log));
    let (release, released) = mpsc::channel::<()>();
    let c = client(addr, move |mut s| {
        round_trip(&mut s, b"one");
        released.recv_timeout(WATCHDOG).unwrap();
        round_trip(&mut s, b"two");
    });
    run_until(&mut r, |_| log.made().len() == 2);
    // Past where the old deadline would have been.
    let passed = Rc::new(Cell::new(false));
    let p = passed.clone();
    r.call_later(Duration::from_millis(100), move |_| p.set(true));
    run_until(&mut r, |_| passed.get());
    assert!(r.conn(log.made()[1]).is_open());
    release.send(()).unwrap();
    drive(&mut r, c);
    run_until(&mut r, |_| log.lost_count() == 2);
    assert_eq!(log.lost(log.made()[1]), Some(Why::Done));
    log.check_lifecycles();
}

/// A stop while an outgoing connect is still pending reports `connection_failed` for
/// it (never `connection_made`) and then finishes.
#[test]
fn stop_with_a_pending_connect_reports_it_failed_and_finishes() {
    let full = full_listener();
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let id = r.connect_tcp_timeout(full.addr, None, Rec::new(&log));
    r.run_once(Some(Duration::ZERO)).unwrap();
    assert!(log.events().is_empty(), "{:?}", log.events());
    r.stop();
    run_until_stopped(&mut r);
    assert_eq!(log.events(), [Ev::Failed(id, io::ErrorKind::Interrupted)]);
    assert_eq!((r.connection_count(), r.timer_count()), (0, 0));
}

/// Dropping a reactor that still has connections aborts them, each with exactly one
/// `connection_lost`; their peers see the connection end.
#[test]
fn dropping_the_reactor_aborts_each_connection_once() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Rec::echo(&log));
    let mut clients: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    run_until(&mut r, |_| log.made().len() == 3);
    drop(r);
    assert_eq!(log.count(|e| matches!(e, Ev::Lost(_, Why::Aborted))), 3);
    log.check_lifecycles();
    for s in &mut clients {
        assert_closed_by_server(s);
    }
}

/// `Reactor::stats` counts accepts, refusals and closes by reason, and what the reactor
/// holds returns to zero once everyone has gone.
#[test]
fn stats_count_what_happened_and_return_to_zero() {
    let log = Log::default();
    let mut r = Reactor::builder()
        .max_connections(1)
        .write_cap_bytes(64 * 1024)
        .build()
        .unwrap();
    let addr = listen(
        &mut r,
        // Commands are matched at the end of what arrived: `first` sends "x" and later
        // "bye", which the server may read together.
        Rec::new(&log).on_data(|cx, d| {
            if d.ends_with(b"bye") {
                cx.lose_connection();
            } else if d.ends_with(b"abort") {
                cx.abort_connection();
            } else if d.ends_with(b"panic") {
                panic!("asked to");
            } else if d.ends_with(b"flood") {
                // The peer never reads: the kernel's buffers fill, then the cap is passed.
                let chunk = [0; 4096];
                for _ in 0..16 * 1024 {
                    if !cx.write(&chunk) {
                        break;
                    }
                }
            }
        }),
    );
    let clients = std::thread::spawn(move || {
        let mut first = connect(addr);
        first.write_all(b"x").unwrap();
        // Accepted after `first` (the backlog is FIFO), so over max_connections(1).
        assert_closed_by_server(&mut connect(addr));
        first.write_all(b"bye").unwrap();
        let _ = read_to_eof(&mut first);
        // Closing our end ends the server's lingering close and frees its slot.
        drop(first);
        for command in [&b"abort"[..], b"panic", b"flood"] {
            let mut s = connect(addr);
            s.write_all(command).unwrap();
            // Only after the server has closed it: for `flood`, that is after the
            // kernel's buffers and the write cap have filled, so reading cannot stop it.
            let _ = read_to_eof(&mut s);
        }
    });
    drive(&mut r, clients);
    run_until(&mut r, |r| r.stats().closed.total() == 4);
    let stats = r.stats();
    assert_eq!((stats.accepted, stats.refused), (5, 1), "{stats}");
    let closed = stats.closed;
    assert_eq!(
        (
            closed.done,
            closed.aborted,
            closed.panic,
            closed.write_overflow
        ),
        (1, 1, 1, 1),
        "{stats}"
    );
    assert_eq!(
        (stats.connections, stats.timers, stats.buffered_bytes),
        (0, 0, 0),
        "{stats}"
    );
    log.check_lifecycles();
}
