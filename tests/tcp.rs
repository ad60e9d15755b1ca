//! The reactor's TCP data path over real loopback sockets: accepting many clients,
//! draining edge-triggered reads, fairness, flow control both ways, closing (graceful,
//! abortive, half), connecting, panics in callbacks, and stale connection ids.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use twistor::{
    Addr, ConnId, Context, DatagramContext, DatagramProtocol, Protocol, Reactor, Reason,
};

// ----- many clients, draining, fairness -----

#[test]
fn hundreds_of_clients_at_once_all_get_their_echo() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 75;
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Rec::echo(&log).no_data_log());
    // Every client is connected and answered before any of them closes.
    let all_answered = Arc::new(Barrier::new(THREADS));
    let clients = (0..THREADS)
        .map(|t| {
            let all_answered = all_answered.clone();
            std::thread::spawn(move || {
                let mut socks: Vec<_> = (0..PER_THREAD).map(|_| connect(addr)).collect();
                let lines = |i: usize| -> Vec<u8> {
                    (0..3)
                        .flat_map(|k| format!("client {t}-{i} line {k}\n").into_bytes())
                        .collect()
                };
                for (i, s) in socks.iter_mut().enumerate() {
                    for k in 0..3 {
                        s.write_all(format!("client {t}-{i} line {k}\n").as_bytes())
                            .unwrap();
                    }
                }
                for (i, s) in socks.iter_mut().enumerate() {
                    let want = lines(i);
                    assert_eq!(read_n(s, want.len()), want, "client {t}-{i}");
                }
                all_answered.wait();
            })
        })
        .collect();
    drive_all(&mut r, clients);
    run_until(&mut r, |_| log.lost_count() == THREADS * PER_THREAD);
    assert_eq!(log.peak_open(), THREADS * PER_THREAD);
    log.check_lifecycles();
}

/// A turn that takes one readiness event at a time (`Builder::events_capacity(1)`, the
/// bound an embedding host loop may want) still serves every client: the events the
/// poll did not return wait in the kernel for the next turns.
#[test]
fn one_event_per_turn_still_serves_every_client() {
    const CLIENTS: usize = 20;
    let log = Log::default();
    let mut r = Reactor::builder().events_capacity(1).build().unwrap();
    let addr = listen(&mut r, Rec::echo(&log).no_data_log());
    let client = std::thread::spawn(move || {
        let mut socks: Vec<_> = (0..CLIENTS).map(|_| connect(addr)).collect();
        for (i, s) in socks.iter_mut().enumerate() {
            s.write_all(format!("client {i}\n").as_bytes()).unwrap();
        }
        for (i, s) in socks.iter_mut().enumerate() {
            let want = format!("client {i}\n").into_bytes();
            assert_eq!(read_n(s, want.len()), want, "client {i}");
        }
    });
    drive(&mut r, client);
    run_until(&mut r, |_| log.lost_count() == CLIENTS);
    log.check_lifecycles();
}

/// Bursts of ten read buffers, then silence: edge-triggered readiness gives one event,
/// so the reactor must read to `WouldBlock` (or carry the connection over when its
/// read budget runs out) to deliver the burst whole.
#[test]
fn burst_ten_times_the_read_buffer_is_delivered_whole() {
    for (read_buf, budget) in [(4096, 256 * 1024), (4096, 8192), (1000, 1)] {
        check_burst(read_buf, budget);
    }
}

fn check_burst(read_buf: usize, budget: usize) {
    let log = Log::default();
    let mut r = Reactor::builder()
        .read_buffer_bytes(read_buf)
        .read_budget_bytes(budget)
        .build()
        .unwrap();
    let addr = listen(&mut r, Rec::new(&log));
    let burst = pattern(10 * read_buf);
    let (release, released) = mpsc::channel::<()>();
    let sent = burst.clone();
    let c = client(addr, move |mut s| {
        s.write_all(&sent).unwrap();
        // Silence (no more data, no EOF) until the server has it all.
        released.recv_timeout(WATCHDOG).unwrap();
    });
    run_until(&mut r, |_| {
        log.made()
            .first()
            .is_some_and(|id| log.received(*id).len() >= burst.len())
    });
    let id = log.made()[0];
    assert_eq!(
        log.received(id),
        burst,
        "read_buf {read_buf}, budget {budget}"
    );
    release.send(()).unwrap();
    drive(&mut r, c);
    run_until(&mut r, |_| log.lost_count() == 1);
    assert_eq!(log.lost(id), Some(Why::Done));
    log.check_lifecycles();
}

/// Client A sends without pause; client B's one request is still answered and a timer
/// set meanwhile still fires (the firehose is cut short by its read budget and carried
/// over, not read until it stops).
#[test]
fn firehose_client_does_not_starve_another_client_or_a_timer() {
    let log = Log::default();
    let received = Rc::new(Cell::new(0usize));
    let mut r = Reactor::builder()
        .read_buffer_bytes(16 * 1024)
        .read_budget_bytes(64 * 1024)
        .build()
        .unwrap();
    let count = received.clone();
    // Discards what it reads, except that every '?' is answered with a '!'.
    let server = Rec::new(&log).no_data_log().on_data(move |cx, d| {
        count.set(count.get() + d.len());
        for _ in d.iter().filter(|b| **b == b'?') {
            cx.write(b"!");
        }
    });
    let addr = listen(&mut r, server);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_a = stop.clone();
    let a = client(addr, move |mut s| {
        let chunk = vec![0u8; 64 * 1024];
        while !stop_a.load(Ordering::Relaxed) {
            s.write_all(&chunk).unwrap();
        }
    });
    // A is flowing.
    run_until(&mut r, |_| received.get() > 1 << 20);
    let fired = log.clone();
    r.call_later(Duration::from_millis(1), move |_| fired.mark("timer"));
    let b = client(addr, |mut s| {
        s.write_all(b"?").unwrap();
        assert_eq!(read_n(&mut s, 1), b"!");
    });
    run_until(&mut r, |_| b.is_finished() && log.has_mark("timer"));
    b.join().unwrap();
    assert!(!a.is_finished(), "A stopped sending before B was served");
    stop.store(true, Ordering::Relaxed);
    drive(&mut r, a);
    run_until(&mut r, |_| log.lost_count() == 2);
    log.check_lifecycles();
}

// ----- flow control -----

/// Writes `pattern` bytes while not paused, until it has been paused once and then
/// sent `after_first_pause` more bytes; then closes gracefully.
struct Producer {
    log: Log,
    /// The reactor's watermarks.
    high: usize,
    low: usize,
    sent: usize,
    paused: bool,
    limit: Option<usize>,
    after_first_pause: usize,
    pattern: Rc<Vec<u8>>,
}

impl Producer {
    fn produce(&mut self, cx: &mut Context<'_>) {
        const CHUNK: usize = 4096;
        // Safety net: a producer that is never paused stops at the pattern's end.
        let limit = self.limit.unwrap_or(self.pattern.len());
        while !self.paused && self.sent < limit {
            // A write that leaves more than `high` queued owes us a pause_producing,
            // delivered when this callback returns.
            if cx.buffered() > self.high {
                return;
            }
            let end = (self.sent + CHUNK).min(limit);
            assert!(cx.write(&self.pattern[self.sent..end]));
            self.sent = end;
        }
        if self.sent == limit {
            self.log.mark(format!("sent {}", self.sent));
            cx.lose_connection();
        }
    }
}

impl Protocol for Producer {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.log.push(Ev::Made(cx.id()));
        self.produce(cx);
    }

    fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}

    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        self.log.push(Ev::Paused(cx.id()));
        assert!(!self.paused, "pause_producing twice");
        assert!(cx.buffered() > self.high, "paused at {}", cx.buffered());
        self.paused = true;
        self.limit.get_or_insert(self.sent + self.after_first_pause);
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        self.log.push(Ev::Resumed(cx.id()));
        assert!(self.paused, "resume_producing without a pause");
        assert!(cx.buffered() <= self.low, "resumed at {}", cx.buffered());
        self.paused = false;
        self.produce(cx);
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        self.log.push(Ev::Lost(cx.id(), Why::from(&reason)));
    }
}

/// A peer that reads slowly: the producer is paused above the high watermark and
/// resumed at the low one, strictly alternately, and every byte arrives in order.
/// Watermarks far apart, equal, and both zero.
#[test]
fn slow_reader_pauses_and_resumes_producer_alternately_and_gets_every_byte() {
    for (high, low) in [(16 * 1024, 4 * 1024), (8 * 1024, 8 * 1024), (0, 0)] {
        check_slow_reader(high, low);
    }
}

fn check_slow_reader(high: usize, low: usize) {
    let log = Log::default();
    // Larger than loopback's buffers can absorb (about 4 MB here), so that the first
    // pause comes before the pattern runs out.
    let pattern = Rc::new(pattern(12 << 20));
    let mut r = Reactor::builder()
        .write_watermarks(high, low)
        .build()
        .unwrap();
    let (p_log, p) = (log.clone(), pattern.clone());
    let addr = r
        .listen_tcp(localhost(), move |_: &_| {
            Some(Producer {
                log: p_log.clone(),
                high,
                low,
                sent: 0,
                paused: false,
                limit: None,
                after_first_pause: 1 << 20,
                pattern: p.clone(),
            })
        })
        .unwrap()
        .local_addr;
    let (go, wait_for_go) = mpsc::channel::<()>();
    let c = client(addr, move |mut s| {
        // Read nothing until the producer has been paused once, then read slowly.
        wait_for_go.recv_timeout(WATCHDOG).unwrap();
        read_slowly(&mut s, 16 * 1024, Duration::from_micros(200))
    });
    run_until(&mut r, |_| log.count(|e| matches!(e, Ev::Paused(_))) > 0);
    go.send(()).unwrap();
    let got = drive(&mut r, c);
    run_until(&mut r, |_| log.lost_count() == 1);

    let sent = log
        .events()
        .iter()
        .find_map(|e| match e {
            Ev::Mark(m) => m.strip_prefix("sent ").map(|n| n.parse::<usize>().unwrap()),
            _ => None,
        })
        .expect("the producer finished");
    assert_eq!(got.len(), sent);
    assert!(
        got == pattern[..sent],
        "bytes lost, duplicated or reordered"
    );
    let flow: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| matches!(e, Ev::Paused(_) | Ev::Resumed(_)))
        .collect();
    assert!(flow.len() >= 2, "({high}, {low}): {flow:?}");
    for (i, e) in flow.iter().enumerate() {
        let want_pause = i % 2 == 0;
        assert_eq!(matches!(e, Ev::Paused(_)), want_pause, "{i}th of {flow:?}");
    }
    assert_eq!(log.lost(log.made()[0]), Some(Why::Done));
    log.check_lifecycles();
}

/// `pause_reading` inside `connection_made` (twice: it is idempotent) holds every byte
/// back, and the peer's EOF behind them, until `resume_reading`; then all arrive once,
/// after `reading_resumed`, and the EOF after them.
#[test]
fn pause_reading_in_connection_made_holds_data_until_resumed() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let server = Rec::new(&log).on_made(|cx| {
        cx.pause_reading();
        cx.pause_reading();
        assert!(!cx.is_reading());
    });
    let addr = listen(&mut r, server);
    let data = pattern(200 * 1024);
    let (written_tx, written) = mpsc::channel::<()>();
    let sent = data.clone();
    let c = client(addr, move |mut s| {
        s.write_all(&sent).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        written_tx.send(()).unwrap();
        read_to_eof(&mut s)
    });
    let mut client_wrote = false;
    run_until(&mut r, |_| {
        client_wrote |= written.try_recv().is_ok();
        client_wrote && !log.made().is_empty()
    });
    // Give the reactor turns in which it could (wrongly) deliver; the readable edge
    // for the data has come by now or comes during these.
    for _ in 0..5 {
        r.run_once(Some(Duration::from_millis(20))).unwrap();
    }
    let id = log.made()[0];
    assert_eq!(log.events(), [Ev::Made(id)], "delivered while paused");
    assert!(r.call_protocol(id, |_: &mut Rec, cx| {
        cx.resume_reading();
        cx.resume_reading();
        assert!(cx.is_reading());
    }));
    let (got, err) = drive(&mut r, c);
    assert_eq!((got, err.map(|e| e.kind())), (vec![], None));
    run_until(&mut r, |_| log.lost_count() == 1);
    assert!(log.received(id) == data, "bytes lost or duplicated");
    let events = log.events();
    assert_eq!(events[1], Ev::ReadingResumed(id));
    assert!(matches!(events[2], Ev::Data(..)));
    assert_eq!(
        events[events.len() - 2..],
        [Ev::Eof(id), Ev::Lost(id, Why::Done)]
    );
    assert_eq!(log.count(|e| matches!(e, Ev::ReadingResumed(_))), 1);
    log.check_lifecycles();
}

// ----- corked writes -----

/// Answers each read with `pieces`, written one `Context::write` each, in one callback.
#[derive(Clone)]
struct Pieces(Rc<Vec<Vec<u8>>>);

impl Protocol for Pieces {
    fn data_received(&mut self, cx: &mut Context<'_>, _: &[u8]) {
        for piece in self.0.iter() {
            assert!(cx.write(piece));
        }
    }
}

/// Serves one request with `pieces` and returns what the client read and how many
/// write system calls the reactor made for it.
fn serve_pieces(pieces: Vec<Vec<u8>>) -> (Vec<u8>, u64) {
    let want: usize = pieces.iter().map(Vec::len).sum();
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Pieces(Rc::new(pieces)));
    let c = client(addr, move |mut s| {
        s.write_all(b"go").unwrap();
        read_n(&mut s, want)
    });
    let got = drive(&mut r, c);
    (got, r.stats().write_calls)
}

#[test]
fn small_writes_in_one_callback_leave_in_one_system_call() {
    let pieces: Vec<Vec<u8>> = (0..256u32).map(|i| format!("{i},").into_bytes()).collect();
    let want = pieces.concat();
    let (got, calls) = serve_pieces(pieces);
    assert_eq!(got, want);
    assert_eq!(calls, 1, "256 small writes were gathered into one writev");
}

#[test]
fn a_large_write_after_small_ones_goes_out_at_once_in_order() {
    // Small, large (past the cork limit: sent at once, with the corked bytes in
    // front), small again (corked until the end of the turn), large.
    let pieces = vec![
        b"head,".to_vec(),
        pattern(100_000),
        b"middle,".to_vec(),
        b"more,".to_vec(),
        pattern(40_000),
        b"tail".to_vec(),
    ];
    let want = pieces.concat();
    let (got, calls) = serve_pieces(pieces);
    assert!(got == want, "bytes arrive whole and in order");
    assert!(
        calls >= 2,
        "the large writes did not wait for the end of the turn"
    );
}

// ----- coalesced writes -----

/// After a turn that wrote, a reactor with `coalesce_writes` sleeps out the window
/// before it polls again: a request sent the moment the previous reply arrived is
/// read no sooner than the window after that reply was written. (A lower bound that
/// the sleep guarantees; without the pacing the gap is one loopback round trip.)
#[test]
fn coalesce_writes_waits_the_window_after_a_turn_that_wrote() {
    let window = Duration::from_millis(200);
    let (tx, reads) = mpsc::channel();
    let builder = Reactor::builder().coalesce_writes(window);
    let (rt, addr) = spawn_reactor_with(builder, move |r| {
        listen(
            r,
            Rec::new(&Log::default()).on_data(move |cx, d| {
                tx.send(cx.now()).unwrap();
                cx.write(d);
            }),
        )
    });
    let mut s = connect(addr);
    for byte in [b"a", b"b"] {
        s.write_all(byte).unwrap();
        assert_eq!(read_n(&mut s, 1), byte);
    }
    let first = reads.recv_timeout(WATCHDOG).unwrap();
    let second = reads.recv_timeout(WATCHDOG).unwrap();
    assert!(
        second - first >= window,
        "read again {:?} after a reply, inside the {window:?} window",
        second - first
    );
    rt.stop_and_join();
}

/// `run_once` never sleeps longer than the timeout it is given, so a program that
/// turns the reactor from its own loop keeps its pace even with an hour's window.
#[test]
fn coalesce_writes_never_sleeps_past_the_run_once_timeout() {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = Reactor::builder()
            .coalesce_writes(Duration::from_secs(3600))
            .build()
            .unwrap();
        let log = Log::default();
        addr_tx.send(listen(&mut r, Rec::echo(&log))).unwrap();
        // `run_until` turns with a short timeout: each turn after the echo's write
        // may sleep that long at most.
        run_until(&mut r, |_| log.count(|e| matches!(e, Ev::Eof(_))) == 1);
        done_tx.send(()).unwrap();
    });
    let mut s = connect(addr_rx.recv_timeout(WATCHDOG).unwrap());
    s.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut s, 1), b"x");
    drop(s);
    done_rx
        .recv_timeout(WATCHDOG)
        .expect("watchdog: run_once slept past its timeout");
}

/// The window never outlasts a due timer: with an hour's window, a timer due in a
/// millisecond still fires (and here stops the reactor).
#[test]
fn coalesce_writes_never_sleeps_past_a_due_timer() {
    let builder = Reactor::builder().coalesce_writes(Duration::from_secs(3600));
    let (mut rt, addr) = spawn_reactor_with(builder, |r| {
        listen(
            r,
            Rec::new(&Log::default()).on_data(|cx, d| {
                cx.write(d);
                cx.call_later(Duration::from_millis(1), |_: &mut Rec, cx| {
                    cx.stop_reactor()
                });
            }),
        )
    });
    let mut s = connect(addr);
    s.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut s, 1), b"x");
    rt.join();
}

/// Only a turn that wrote is paced: after a turn that only read, the reactor blocks
/// in poll as usual and a stop from another thread reaches it at once (with an hour's
/// window, a pause here would outlast the watchdog).
#[test]
fn coalesce_writes_does_not_pace_a_turn_that_wrote_nothing() {
    let builder = Reactor::builder().coalesce_writes(Duration::from_secs(3600));
    let (tx, rx) = mpsc::channel();
    let (rt, addr) = spawn_reactor_with(builder, move |r| {
        listen(
            r,
            Rec::new(&Log::default()).on_data(move |_, d| tx.send(d.to_vec()).unwrap()),
        )
    });
    let mut s = connect(addr);
    s.write_all(b"quiet").unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), b"quiet");
    rt.stop_and_join();
}

/// More buffers than one `writev` takes: the kernel refuses nothing, so no writable
/// edge follows, and the buffers left over must still go out.
#[test]
fn a_vectored_write_of_more_buffers_than_one_writev_takes_arrives_whole() {
    #[derive(Clone)]
    struct ManyBufs;
    impl Protocol for ManyBufs {
        fn data_received(&mut self, cx: &mut Context<'_>, _: &[u8]) {
            let pieces: Vec<Vec<u8>> = (0..200u32)
                .map(|i| format!("{i:024},").into_bytes())
                .collect();
            let bufs: Vec<io::IoSlice<'_>> = pieces.iter().map(|p| io::IoSlice::new(p)).collect();
            assert!(cx.write_vectored(&bufs));
        }
    }
    let want: Vec<u8> = (0..200u32)
        .flat_map(|i| format!("{i:024},").into_bytes())
        .collect();
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, ManyBufs);
    let n = want.len();
    let c = client(addr, move |mut s| {
        s.write_all(b"go").unwrap();
        read_n(&mut s, n)
    });
    assert_eq!(drive(&mut r, c), want);
}

#[test]
fn corked_bytes_are_flushed_before_a_graceful_close() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(
        &mut r,
        Rec::new(&log).no_data_log().on_data(|cx, _| {
            for _ in 0..100 {
                cx.write(b"bye ");
            }
            cx.lose_connection();
        }),
    );
    let c = client(addr, |mut s| {
        s.write_all(b"go").unwrap();
        read_to_eof(&mut s)
    });
    let (got, err) = drive(&mut r, c);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"bye ".repeat(100));
    run_until(&mut r, |_| log.lost_count() == 1);
    assert_eq!(log.lost(log.made()[0]), Some(Why::Done));
}

// ----- closing -----

/// A server that answers "go" with `REPLY` bytes and then closes with `close`; it logs
/// how much was still queued when it closed.
fn big_reply_server(log: &Log, reply: Rc<Vec<u8>>, abort: bool) -> Rec {
    let l = log.clone();
    Rec::new(log).no_data_log().on_data(move |cx, _| {
        assert!(cx.write(&reply));
        l.mark(format!("queued {}", cx.buffered() > 0));
        if abort {
            cx.abort_connection();
        } else {
            cx.lose_connection();
        }
        assert!(!cx.write(b"late"), "a write after closing is dropped");
    })
}

/// More than the kernel's buffers hold on both ends (by Linux's defaults at most
/// 4 MiB sent and 6 MiB received), so that bytes are still queued at the close even
/// with the client reading as fast as it can.
const REPLY: usize = 16 << 20;

#[test]
fn lose_connection_flushes_everything_then_closes() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let reply = Rc::new(pattern(REPLY));
    let addr = listen(&mut r, big_reply_server(&log, reply.clone(), false));
    let c = client(addr, |mut s| {
        s.write_all(b"go").unwrap();
        read_to_eof(&mut s)
    });
    let (got, err) = drive(&mut r, c);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got.len(), REPLY);
    assert!(got == *reply);
    assert!(
        log.has_mark("queued true"),
        "the test needs bytes queued at close"
    );
    run_until(&mut r, |_| log.lost_count() == 1);
    assert_eq!(log.lost(log.made()[0]), Some(Why::Done));
    assert_eq!(r.timer_count(), 0, "the close deadline is cancelled");
    log.check_lifecycles();
}

#[test]
fn abort_connection_drops_queued_bytes_and_resets() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(
        &mut r,
        big_reply_server(&log, Rc::new(pattern(REPLY)), true),
    );
    let (aborted, wait_aborted) = mpsc::channel::<()>();
    let c = client(addr, move |mut s| {
        s.write_all(b"go").unwrap();
        // Read only once the server has aborted: what it had queued is gone.
        wait_aborted.recv_timeout(WATCHDOG).unwrap();
        read_to_eof(&mut s)
    });
    run_until(&mut r, |_| log.lost_count() == 1);
    assert_eq!(log.lost(log.made()[0]), Some(Why::Aborted));
    assert!(log.has_mark("queued true"));
    aborted.send(()).unwrap();
    let (got, err) = drive(&mut r, c);
    assert!(
        got.len() < REPLY,
        "got all {REPLY} bytes after an abort (error: {err:?})"
    );
    if let Some(e) = err {
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }
    log.check_lifecycles();
}

/// The client shuts its write side; the server (half-close aware) still gets its
/// whole reply out, then closes.
#[test]
fn half_close_from_client_still_gets_the_reply() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let l = log.clone();
    let server = Rec::new(&log).on_eof(move |cx| {
        let got = l.received(cx.id());
        assert!(cx.write(b"you said: "));
        assert!(cx.write(&got));
        cx.lose_connection();
    });
    let addr = listen(&mut r, server);
    let c = client(addr, |mut s| {
        s.write_all(b"hello").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        read_to_eof(&mut s)
    });
    let (got, err) = drive(&mut r, c);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"you said: hello");
    run_until(&mut r, |_| log.lost_count() == 1);
    let id = log.made()[0];
    assert!(log.has(&Ev::Eof(id)));
    assert_eq!(log.lost(id), Some(Why::Done));
    log.check_lifecycles();
}

/// The server's `lose_write_connection` gives the client EOF, while the client can
/// still send to the server; the connection ends when both sides are shut.
#[test]
fn lose_write_connection_sends_eof_but_keeps_reading() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let server = Rec::new(&log).on_made(|cx| {
        cx.write(b"bye");
        cx.lose_write_connection();
        assert!(!cx.write(b"late"), "writes after the write side is shut");
        assert!(cx.is_reading());
    });
    let addr = listen(&mut r, server);
    let c = client(addr, |mut s| {
        let (got, err) = read_to_eof(&mut s);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, b"bye");
        s.write_all(b"still here").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        s
    });
    let _s = drive(&mut r, c);
    run_until(&mut r, |_| log.lost_count() == 1);
    let id = log.made()[0];
    assert_eq!(log.received(id), b"still here");
    assert_eq!(log.lost(id), Some(Why::Done));
    log.check_lifecycles();
}

// ----- connecting -----

#[test]
fn connect_refused_reaches_connection_failed_only() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let id = r.connect_tcp(refused_addr(), Rec::new(&log));
    run_until(&mut r, |_| !log.events().is_empty());
    assert_eq!(
        log.events(),
        [Ev::Failed(id, io::ErrorKind::ConnectionRefused)]
    );
    assert!(!r.conn(id).is_open());
    assert_eq!((r.connection_count(), r.timer_count()), (0, 0));
}

#[test]
fn connect_timeout_reaches_connection_failed_only() {
    let full = full_listener();
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let id = r.connect_tcp_timeout(full.addr, Some(Duration::from_millis(50)), Rec::new(&log));
    run_until(&mut r, |_| !log.events().is_empty());
    assert_eq!(log.events(), [Ev::Failed(id, io::ErrorKind::TimedOut)]);
    assert_eq!((r.connection_count(), r.timer_count()), (0, 0));
}

/// A connect that succeeds gets `connection_made`, and data flows both ways,
/// including bytes queued with `conn(id).write` before the connection was up.
#[test]
fn connect_success_makes_the_connection_and_data_flows() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let server = Log::default();
    let addr = listen(&mut r, Rec::echo(&server));
    let id = r.connect_tcp(
        addr,
        Rec::new(&log).on_made(|cx| {
            cx.write(b" world");
        }),
    );
    assert!(r.conn(id).write(b"hello"), "queued while connecting");
    run_until(&mut r, |_| log.received(id).len() >= 11);
    assert_eq!(log.received(id), b"hello world");
    assert_eq!(log.made(), [id]);
    assert!(r.call_protocol(id, |_: &mut Rec, cx| cx.lose_connection()));
    run_until(&mut r, |_| {
        log.lost_count() == 1 && server.lost_count() == 1
    });
    assert_eq!(log.lost(id), Some(Why::Done));
    log.check_lifecycles();
    server.check_lifecycles();
}

/// Closing a connect that is still pending, from inside another connection's
/// callback, reports `connection_failed` without re-entering that callback's
/// connection.
#[test]
fn cancelling_a_pending_connect_from_another_callback() {
    let full = full_listener();
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let pending = r.connect_tcp_timeout(full.addr, None, Rec::new(&log));
    let server = Rec::new(&log).on_data(move |cx, _| {
        cx.abort_connection();
        cx.conn(pending).lose_connection();
    });
    let addr = listen(&mut r, server);
    let c = client(addr, |mut s| {
        s.write_all(b"x").unwrap();
        read_to_eof(&mut s)
    });
    drive(&mut r, c);
    run_until(&mut r, |_| {
        log.lost_count() == 1 && log.has(&Ev::Failed(pending, io::ErrorKind::Interrupted))
    });
    assert_eq!(log.lost(log.made()[0]), Some(Why::Aborted));
    assert_eq!(r.connection_count(), 0);
    log.check_lifecycles();
}

// ----- containment and ids -----

/// A `data_received` that panics on '!' closes its own connection with
/// `Reason::Panic`; the other connection is served before and after.
#[test]
fn panicking_callback_closes_only_its_connection() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let server = Rec::new(&log).on_data(|cx, d| {
        assert!(!d.contains(&b'!'), "boom");
        cx.write(d);
    });
    let addr = listen(&mut r, server);
    let (a_done, wait_a) = mpsc::channel::<()>();
    let a = client(addr, move |mut s| {
        round_trip(&mut s, b"a1");
        s.write_all(b"!").unwrap();
        let (got, _) = read_to_eof(&mut s);
        assert_eq!(got, b"", "nothing after the panic");
        a_done.send(()).unwrap();
    });
    let b = client(addr, move |mut s| {
        round_trip(&mut s, b"b1");
        wait_a.recv_timeout(WATCHDOG).unwrap();
        round_trip(&mut s, b"b2");
    });
    drive_all(&mut r, vec![a, b]);
    run_until(&mut r, |_| log.lost_count() == 2);
    let panicked = log.count(|e| matches!(e, Ev::Lost(_, Why::Panic(m)) if m.contains("boom")));
    assert_eq!(panicked, 1, "{:#?}", log.events());
    assert_eq!(log.count(|e| matches!(e, Ev::Lost(_, Why::Done))), 1);
    log.check_lifecycles();
}

/// A panic in `connection_made` closes that connection, and it still gets its one
/// `connection_lost`.
#[test]
fn panic_in_connection_made_closes_it_with_one_connection_lost() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Rec::new(&log).on_made(|_| panic!("made boom")));
    let (got, err) = drive(&mut r, client(addr, |mut s| read_to_eof(&mut s)));
    assert_eq!(got, b"");
    if let Some(e) = err {
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }
    run_until(&mut r, |_| log.lost_count() == 1);
    let id = log.made()[0];
    assert_eq!(log.lost(id), Some(Why::Panic("made boom".into())));
    log.check_lifecycles();
}

/// After a connection closes, its id reaches nothing, even once a new connection has
/// taken its slot.
#[test]
fn stale_conn_id_is_rejected_after_its_slot_is_reused() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Rec::new(&log));
    drive(&mut r, client(addr, drop));
    run_until(&mut r, |_| log.lost_count() == 1);
    let old = log.made()[0];

    let (release, released) = mpsc::channel::<()>();
    let c = client(addr, move |mut s| {
        released.recv_timeout(WATCHDOG).unwrap();
        read_to_eof(&mut s)
    });
    run_until(&mut r, |_| log.made().len() == 2);
    let new = log.made()[1];
    assert_ne!(old, new);
    assert_eq!(slot(old), slot(new), "the test wants the slot reused");

    assert!(!r.conn(old).write(b"stale"));
    assert!(!r.conn(old).is_open());
    let ran = Rc::new(RefCell::new(false));
    let ran2 = ran.clone();
    assert!(!r.call_protocol(old, move |_: &mut Rec, _| *ran2.borrow_mut() = true));
    assert!(!*ran.borrow());
    r.conn(old).lose_connection();
    r.conn(old).abort_connection();
    assert!(r.call_protocol(new, move |_: &mut Rec, cx| {
        assert!(!cx.conn(old).write(b"stale"));
        assert!(!cx.conn(old).is_open());
        assert_eq!(cx.conn(old).buffered(), 0);
    }));
    assert!(r.conn(new).is_open());

    assert!(r.conn(new).write(b"fresh"));
    r.conn(new).lose_connection();
    release.send(()).unwrap();
    let (got, err) = drive(&mut r, c);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"fresh");
    run_until(&mut r, |_| log.lost_count() == 2);
    assert_eq!(log.lost(new), Some(Why::Done));
    log.check_lifecycles();
}

/// `Reactor::conn` outside any callback: the handle has a connection's verbs, and
/// each call settles what it set off before it returns, so an abort's
/// `connection_lost` has run when `abort_connection` comes back.
#[test]
fn reactor_conn_acts_on_a_connection_and_settles_each_call() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Rec::new(&log));
    let (read, has_read) = mpsc::channel();
    let c = client(addr, move |mut s| {
        let me = s.local_addr().unwrap();
        read.send(read_n(&mut s, 9)).unwrap();
        (me, read_to_eof(&mut s))
    });
    run_until(&mut r, |_| log.made().len() == 1);
    let id = log.made()[0];

    let mut conn = r.conn(id);
    assert_eq!(conn.id(), id);
    assert!(conn.is_open() && conn.is_reading());
    assert_eq!(conn.local_addr(), Some(Addr::Inet(addr)));
    let peer = conn.peer_addr();
    assert!(conn.write(b"hello"));
    assert!(conn.write_vectored(&[IoSlice::new(b" "), IoSlice::new(b"you")]));
    assert_eq!(conn.buffered(), 9, "corked until the next turn");
    conn.pause_reading();
    assert!(!conn.is_reading());
    conn.resume_reading();
    assert!(conn.is_reading());
    run_until(&mut r, |_| has_read.try_recv().is_ok());

    r.conn(id).abort_connection();
    assert_eq!(
        log.lost(id),
        Some(Why::Aborted),
        "connection_lost ran before abort_connection returned"
    );
    let mut gone = r.conn(id);
    assert!(!gone.is_open() && !gone.is_reading());
    assert!(
        !gone.write(b"late"),
        "a handle on a gone connection drops writes"
    );
    assert_eq!((gone.buffered(), gone.peer_addr()), (0, None));

    let (me, (rest, _)) = drive(&mut r, c);
    assert_eq!(peer, Some(Addr::Inet(me)));
    assert!(rest.is_empty(), "{rest:?}");
    log.check_lifecycles();
}

/// `Context::conn` inside a callback: another connection's close waits until the
/// callback returns, as the context's own does; the bytes written before it go out.
#[test]
fn a_close_through_cx_conn_takes_effect_after_the_callback() {
    let log = Log::default();
    let lost_during = Rc::new(RefCell::new(None));
    let mut r = Reactor::new().unwrap();
    let (l, during) = (log.clone(), lost_during.clone());
    let addr = listen(
        &mut r,
        Rec::new(&log).on_data(move |cx, d| {
            let other = l.made().into_iter().find(|&id| id != cx.id()).unwrap();
            let mut out = cx.conn(other);
            assert_eq!(out.id(), other);
            out.write_vectored(&[IoSlice::new(b"from "), IoSlice::new(d)]);
            out.lose_connection();
            *during.borrow_mut() = Some((out.is_open(), l.lost(other)));
        }),
    );
    let c = thread::spawn(move || {
        let mut listener = connect(addr);
        let mut sender = connect(addr);
        sender.write_all(b"go").unwrap();
        let got = read_to_eof(&mut listener);
        drop(listener);
        sender.shutdown(Shutdown::Write).unwrap();
        (got, read_to_eof(&mut sender))
    });
    let ((got, err), (back, _)) = drive(&mut r, c);
    assert_eq!((got, err.map(|e| e.kind())), (b"from go".to_vec(), None));
    assert!(back.is_empty());
    assert_eq!(
        *lost_during.borrow(),
        Some((false, None)),
        "closing at once, lost only after the callback"
    );
    run_until(&mut r, |_| log.lost_count() == 2);
    assert!(log.made().iter().all(|&id| log.lost(id) == Some(Why::Done)));
    log.check_lifecycles();
}

/// The reactor's by-id methods and `DatagramContext::write_to` are still there,
/// deprecated, and do what the handles do (the context's are checked under the
/// testing kit, in tests/testing.rs).
#[test]
#[allow(deprecated)]
fn the_deprecated_reactor_and_datagram_by_id_methods_still_work() {
    struct Relay(ConnId, Rc<Cell<bool>>);
    impl DatagramProtocol for Relay {
        fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], _: &Addr) {
            self.1.set(cx.write_to(self.0, data));
        }
    }
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Rec::new(&log));
    let c = client(addr, |mut s| read_to_eof(&mut s));
    run_until(&mut r, |_| log.made().len() == 1);
    let aborted = client(addr, |mut s| read_to_eof(&mut s));
    run_until(&mut r, |_| log.made().len() == 2);
    let (id, other) = (log.made()[0], log.made()[1]);
    let relayed = Rc::new(Cell::new(false));
    let udp = r
        .listen_udp(localhost(), Relay(id, relayed.clone()))
        .unwrap();
    let Some(Addr::Inet(udp_addr)) = r.datagram_addr(udp) else {
        panic!("a UDP socket has an internet address")
    };
    std::net::UdpSocket::bind(localhost())
        .unwrap()
        .send_to(b"datagram ", udp_addr)
        .unwrap();
    run_until(&mut r, |_| relayed.get());

    assert!(r.is_open(id));
    assert!(r.write_to(id, b"reactor"));
    r.lose_connection(id);
    assert!(!r.is_open(id));
    r.abort_connection(other);
    assert_eq!(log.lost(other), Some(Why::Aborted));
    let (got, err) = drive(&mut r, c);
    assert_eq!(
        (got, err.map(|e| e.kind())),
        (b"datagram reactor".to_vec(), None)
    );
    drive(&mut r, aborted);
    run_until(&mut r, |_| log.lost_count() == 2);
    assert_eq!(log.lost(id), Some(Why::Done));
}

/// A relay reaches another connection's read and write sides: it pauses and resumes
/// reading it, and half-closes it while still reading its replies.
#[test]
fn a_callback_pauses_resumes_and_half_closes_another_connection() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Rec::echo(&log));
    // The control connection steers the first one by id; ids are recorded in order.
    let client = std::thread::spawn(move || {
        let mut steered = connect(addr);
        let mut control = connect(addr);
        round_trip(&mut steered, b"one");
        round_trip(&mut control, b"ready");
        (steered, control)
    });
    let (mut steered, mut control) = drive(&mut r, client);
    let ids = log.made();
    let (steered_id, control_id) = (ids[0], ids[1]);
    assert!(r.call_protocol(control_id, move |_: &mut Rec, cx| cx
        .conn(steered_id)
        .pause_reading()));
    steered.write_all(b"held").unwrap();
    // A round trip on the control connection proves a turn went by with "held" unread.
    let c = std::thread::spawn(move || {
        round_trip(&mut control, b"x");
        control
    });
    let _control = drive(&mut r, c);
    assert!(!log.received(steered_id).ends_with(b"held"));
    assert!(r.call_protocol(control_id, move |_: &mut Rec, cx| cx
        .conn(steered_id)
        .resume_reading()));
    let c = std::thread::spawn(move || {
        assert_eq!(read_n(&mut steered, 4), b"held");
        steered
    });
    let mut steered = drive(&mut r, c);
    assert!(r.call_protocol(control_id, move |_: &mut Rec, cx| cx
        .conn(steered_id)
        .lose_write_connection()));
    let c = std::thread::spawn(move || {
        let (got, err) = read_to_eof(&mut steered);
        assert!(got.is_empty() && err.is_none(), "{got:?} {err:?}");
        steered.write_all(b" after").unwrap(); // its write side is still open
        steered
    });
    let _steered = drive(&mut r, c);
    run_until(&mut r, |_| {
        log.received(steered_id).ends_with(b"held after")
    });
}
