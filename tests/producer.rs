//! Producers (`Context::register_producer`, `FileSender`): under the testing kit, where
//! the peer's window and reads are the test's, and over loopback, where a small file
//! server streams a file to a client that reads slowly.
//!
//! Nothing here sleeps to synchronise: the kit is deterministic, and the loopback
//! client waits for the server's word (a channel, bounded by the watchdog) before it
//! starts reading; its pauses between reads only make it slow.

mod common;

use common::TempDir;

use std::cell::{Cell, RefCell};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{drive, pattern, read_slowly, run_until, Why, CLIENT_TIMEOUT, WATCHDOG};
use twistor::testing::{Harness, HarnessBuilder};
use twistor::{Addr, Context, FileSender, Producer, ProducerKind, Protocol, Reactor, Reason};

// ----- recording producers and a host protocol -----

/// What the producers and their protocol saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    /// A pull producer was asked, with this many bytes queued.
    Asked(usize),
    Paused,
    Resumed,
    Stopped,
    /// The protocol's own watermark notices.
    HostPaused,
    HostResumed,
    /// `done` ran, with the bytes the producer had written.
    Done(usize),
    Lost(Why),
}

type Log = Rc<RefCell<Vec<Ev>>>;

fn log() -> Log {
    Rc::default()
}

fn events(log: &Log) -> Vec<Ev> {
    log.borrow().clone()
}

fn count(log: &Log, ev: &Ev) -> usize {
    log.borrow().iter().filter(|e| *e == ev).count()
}

fn asks(log: &Log) -> Vec<usize> {
    log.borrow()
        .iter()
        .filter_map(|e| match e {
            Ev::Asked(queued) => Some(*queued),
            _ => None,
        })
        .collect()
}

/// More asks than any test here needs: a producer asked without end fails instead of
/// hanging the harness.
const MAX_ASKS: usize = 10_000;

/// A pull producer of `pattern(total)`, `chunk` bytes per ask, unregistering at the end.
struct Chunks {
    log: Log,
    data: Vec<u8>,
    chunk: usize,
    sent: usize,
}

impl Chunks {
    fn new(log: &Log, total: usize, chunk: usize) -> Chunks {
        Chunks {
            log: log.clone(),
            data: pattern(total),
            chunk,
            sent: 0,
        }
    }
}

impl Producer for Chunks {
    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        self.log.borrow_mut().push(Ev::Asked(cx.buffered()));
        assert!(asks(&self.log).len() <= MAX_ASKS, "asked without end");
        if self.sent == self.data.len() {
            cx.unregister_producer();
            return;
        }
        let end = (self.sent + self.chunk).min(self.data.len());
        assert!(cx.write(&self.data[self.sent..end]));
        self.sent = end;
    }

    fn stop_producing(&mut self, _: &mut Context<'_>) {
        self.log.borrow_mut().push(Ev::Stopped);
    }
}

/// A pull producer that writes nothing when asked.
struct Idle(Log);

impl Producer for Idle {
    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        self.0.borrow_mut().push(Ev::Asked(cx.buffered()));
        assert!(asks(&self.0).len() <= MAX_ASKS, "asked without end");
    }
}

/// A push producer: it only records what it is told (the test writes for it).
struct Tap(Log);

impl Producer for Tap {
    fn resume_producing(&mut self, _: &mut Context<'_>) {
        self.0.borrow_mut().push(Ev::Resumed);
    }

    fn pause_producing(&mut self, _: &mut Context<'_>) {
        self.0.borrow_mut().push(Ev::Paused);
    }

    fn stop_producing(&mut self, _: &mut Context<'_>) {
        self.0.borrow_mut().push(Ev::Stopped);
    }
}

/// The protocol the producers are registered with: it records its own watermark
/// notices and its end.
struct Host(Log);

impl Protocol for Host {
    fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}

    fn pause_producing(&mut self, _: &mut Context<'_>) {
        self.0.borrow_mut().push(Ev::HostPaused);
    }

    fn resume_producing(&mut self, _: &mut Context<'_>) {
        self.0.borrow_mut().push(Ev::HostResumed);
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        self.0.borrow_mut().push(Ev::Lost(Why::from(&reason)));
    }
}

/// `done` for a `Chunks` producer: records it, and closes if `close`.
fn chunks_done(close: bool) -> impl FnOnce(&mut Host, &mut Context<'_>, Chunks) {
    move |host: &mut Host, cx: &mut Context<'_>, chunks: Chunks| {
        host.0.borrow_mut().push(Ev::Done(chunks.sent));
        if close {
            cx.lose_connection();
        }
    }
}

/// A connected harness with `producer` registered (from a callback, as a protocol
/// would), under watermarks `(high, low)` and a peer window of `window`.
fn host<R: Producer>(
    log: &Log,
    (high, low): (usize, usize),
    window: Option<usize>,
    kind: ProducerKind,
    producer: R,
    done: impl FnOnce(&mut Host, &mut Context<'_>, R) + 'static,
) -> Harness<Host> {
    let mut h = HarnessBuilder::new()
        .write_watermarks(high, low)
        .build(Host(log.clone()));
    h.set_peer_window(window);
    h.connect();
    h.call(|_, cx| {
        assert!(cx.register_producer(producer, kind, done).is_ok());
    });
    h
}

// ----- pull producers under the kit -----

/// Asked once after registration, then only while the queue is at or below the low
/// watermark and the connection is not paused, so the queue stays within the low
/// watermark plus one chunk however the peer reads; every byte arrives in order.
#[test]
fn a_pull_producer_is_asked_only_while_the_connection_has_room() {
    // (high, low) watermarks, chunk, and the peer's reads.
    let cases: &[((usize, usize), usize, &[usize])] = &[
        ((100, 40), 30, &[25, 1, 1, 100, 7, 300, 0, 3000]),
        ((100, 40), 80, &[10, 20, 30, 40, 50, 1000, 1, 1, 5000]),
        (
            (64 * 1024, 16 * 1024),
            5000,
            &[4096, 70_000, 1, 30_000, 100_000],
        ),
        (
            (64 * 1024, 16 * 1024),
            60_000,
            &[4096, 70_000, 1, 30_000, 100_000],
        ),
    ];
    for &((high, low), chunk, reads) in cases {
        let total = chunk * 20 + 7;
        let log = log();
        let mut h = host(
            &log,
            (high, low),
            Some(0),
            ProducerKind::Pull,
            Chunks::new(&log, total, chunk),
            chunks_done(true),
        );
        assert!(!asks(&log).is_empty(), "asked once registered");
        let mut received = Vec::new();
        let mut check = |h: &mut Harness<Host>| {
            received.extend(h.take_written());
            assert!(
                h.buffered() <= low + chunk,
                "{} queued, low {low}, chunk {chunk}",
                h.buffered()
            );
        };
        check(&mut h);
        for &n in reads.iter().cycle().take(10_000) {
            if h.lost().is_some() {
                break;
            }
            h.peer_reads(n);
            check(&mut h);
        }
        assert!(h.lost().is_some(), "the transfer ended: {:?}", events(&log));
        let asked = asks(&log);
        assert!(
            asked.iter().all(|&q| q <= low),
            "asked with more than {low} queued: {asked:?}"
        );
        assert_eq!(received, pattern(total));
        if low + chunk <= high {
            assert_eq!(count(&log, &Ev::HostPaused), 0, "{:?}", events(&log));
        }
        assert_eq!(count(&log, &Ev::Done(total)), 1);
        assert_eq!(count(&log, &Ev::Stopped), 0, "unregistered: not stopped");
        assert_eq!(log.borrow().last(), Some(&Ev::Lost(Why::Done)));
    }
}

/// Never asked while paused: after the chunk that passed the high watermark, the next
/// ask comes only once the queue is down to the low watermark, after the protocol's
/// own `resume_producing`.
#[test]
fn a_paused_pull_producer_is_asked_again_only_at_the_low_watermark() {
    let log = log();
    let mut h = host(
        &log,
        (100, 40),
        Some(0),
        ProducerKind::Pull,
        Chunks::new(&log, 1000, 80),
        chunks_done(false),
    );
    // Asked with nothing queued; then 80 are (above the low watermark, below the high).
    assert_eq!(events(&log), [Ev::Asked(0)]);
    h.peer_reads(40); // 40 queued: room; the chunk takes the queue past the high mark
    assert_eq!(events(&log), [Ev::Asked(0), Ev::Asked(40), Ev::HostPaused]);
    assert_eq!(h.buffered(), 120);
    assert!(h.producer_paused());
    h.peer_reads(79); // 41 queued, still paused: not asked
    assert_eq!(events(&log), [Ev::Asked(0), Ev::Asked(40), Ev::HostPaused]);
    h.peer_reads(1);
    assert_eq!(
        events(&log),
        [
            Ev::Asked(0),
            Ev::Asked(40),
            Ev::HostPaused,
            Ev::HostResumed,
            Ev::Asked(40),
            Ev::HostPaused
        ]
    );
}

/// The first ask, owed from the registration, also waits for room: a producer
/// registered over a queue above the low watermark is first asked once it drained,
/// and one registered just before a close is never asked.
#[test]
fn a_pull_producer_registered_without_room_waits_for_it() {
    let log = log();
    let mut h = HarnessBuilder::new()
        .write_watermarks(100, 40)
        .build(Host(log.clone()));
    h.set_peer_window(Some(0));
    h.connect();
    let chunks = Chunks::new(&log, 1000, 30);
    h.call(move |_, cx| {
        cx.write(&[0; 50]);
        assert!(cx
            .register_producer(chunks, ProducerKind::Pull, chunks_done(false))
            .is_ok());
    });
    assert_eq!(asks(&log), []);
    h.peer_reads(9);
    assert_eq!(asks(&log), []);
    h.peer_reads(1);
    assert_eq!(asks(&log), [40]);

    let log = self::log();
    let mut h = Harness::new(Host(log.clone()));
    h.connect();
    let chunks = Chunks::new(&log, 1000, 30);
    h.call(move |_, cx| {
        assert!(cx
            .register_producer(chunks, ProducerKind::Pull, chunks_done(false))
            .is_ok());
        cx.lose_connection();
    });
    assert_eq!(events(&log), [Ev::Stopped, Ev::Lost(Why::Done)]);
}

/// When the kernel takes every byte at once (an open window), no drain follows a
/// call, yet the producer is asked again until it is done, whether its chunks go out
/// at once (4 KiB and up) or are gathered for the end of the turn.
#[test]
fn a_pull_producer_whose_bytes_all_leave_at_once_is_asked_until_it_is_done() {
    for (total, chunk) in [
        (10, 1),
        (1000, 100),
        (40_950, 4095),
        (40_960, 4096),
        (700_001, 70_000),
    ] {
        let log = log();
        let mut h = host(
            &log,
            (64 * 1024, 16 * 1024),
            None,
            ProducerKind::Pull,
            Chunks::new(&log, total, chunk),
            chunks_done(true),
        );
        assert_eq!(h.take_written(), pattern(total), "chunk {chunk}");
        assert_eq!(asks(&log).len(), total.div_ceil(chunk) + 1, "chunk {chunk}");
        assert_eq!(count(&log, &Ev::Done(total)), 1);
        assert_eq!(h.lost().map(Why::from), Some(Why::Done));
    }
}

/// A pull producer that writes nothing when asked is not asked again until something
/// else written to the connection drains (Twisted's rule): no busy loop.
#[test]
fn a_pull_producer_that_writes_nothing_waits_for_the_next_drain() {
    let log = log();
    let mut h = host(
        &log,
        (100, 40),
        None,
        ProducerKind::Pull,
        Idle(log.clone()),
        |_: &mut Host, _, _| {},
    );
    assert_eq!(asks(&log), [0]);
    h.advance(Duration::from_secs(1));
    assert_eq!(asks(&log), [0]);
    h.call(|_, cx| {
        cx.write(b"from the protocol");
    });
    assert_eq!(
        asks(&log),
        [0, 0],
        "the protocol's bytes drained: room again"
    );
}

/// A graceful close stops the asks at once (writes after it would be dropped); the
/// close flushes, then the producer is stopped, once, before `connection_lost`, and
/// `done` never runs.
#[test]
fn a_pull_producer_is_not_asked_once_the_connection_is_closing() {
    let log = log();
    let mut h = host(
        &log,
        (100, 40),
        Some(0),
        ProducerKind::Pull,
        Chunks::new(&log, 1000, 30),
        chunks_done(false),
    );
    assert_eq!(asks(&log), [0, 30]);
    h.call(|_, cx| cx.lose_connection());
    h.peer_reads(1000);
    assert_eq!(asks(&log), [0, 30]);
    assert_eq!(h.take_written(), pattern(60));
    assert_eq!(
        events(&log),
        [
            Ev::Asked(0),
            Ev::Asked(30),
            Ev::Stopped,
            Ev::Lost(Why::Done)
        ]
    );
}

// ----- push producers under the kit -----

/// A push producer is told to pause when the queue passes the high watermark and to
/// resume once it is down to the low one, after the protocol's own notices; it is
/// never asked for more, and it is stopped once when the connection ends.
#[test]
fn a_push_producer_is_paused_and_resumed_by_the_watermarks() {
    let log = log();
    let mut h = host(
        &log,
        (100, 40),
        Some(0),
        ProducerKind::Push,
        Tap(log.clone()),
        |_: &mut Host, _, _| panic!("done without an unregistration"),
    );
    assert_eq!(events(&log), [], "registered: nothing owed yet");
    h.call(|_, cx| {
        cx.write(&[1; 60]);
    });
    assert_eq!(events(&log), []);
    h.call(|_, cx| {
        cx.write(&[2; 60]);
    });
    assert_eq!(events(&log), [Ev::HostPaused, Ev::Paused]);
    h.peer_reads(79); // 41 queued
    assert_eq!(events(&log), [Ev::HostPaused, Ev::Paused]);
    h.peer_reads(1); // 40 queued
    assert_eq!(
        events(&log),
        [Ev::HostPaused, Ev::Paused, Ev::HostResumed, Ev::Resumed]
    );
    h.call(|_, cx| {
        cx.write(&[3; 70]);
    });
    h.disconnect(Reason::Lost(io::ErrorKind::ConnectionReset.into()));
    assert_eq!(
        events(&log),
        [
            Ev::HostPaused,
            Ev::Paused,
            Ev::HostResumed,
            Ev::Resumed,
            Ev::HostPaused,
            Ev::Paused,
            Ev::Stopped,
            Ev::Lost(Why::Lost)
        ]
    );
}

/// Registered while the queue is above the high watermark (the protocol was told to
/// pause already), a push producer is told to pause at once, after the registering
/// callback returns.
#[test]
fn a_push_producer_registered_above_the_high_watermark_is_paused_at_once() {
    let log = log();
    let mut h = HarnessBuilder::new()
        .write_watermarks(100, 40)
        .build(Host(log.clone()));
    h.set_peer_window(Some(0));
    h.connect();
    h.call(|_, cx| {
        cx.write(&[0; 150]);
    });
    assert_eq!(events(&log), [Ev::HostPaused]);
    h.call(|_, cx| {
        let done = |_: &mut Host, _: &mut Context<'_>, _: Tap| {};
        assert!(cx
            .register_producer(Tap(log.clone()), ProducerKind::Push, done)
            .is_ok());
        assert_eq!(log.borrow().len(), 1, "nothing inside the registering call");
    });
    assert_eq!(events(&log), [Ev::HostPaused, Ev::Paused]);
    h.peer_reads(110);
    assert_eq!(
        events(&log),
        [Ev::HostPaused, Ev::Paused, Ev::HostResumed, Ev::Resumed]
    );
}

// ----- registration, unregistration, the end -----

/// However the connection ends, a registered producer (pull or push) is stopped
/// exactly once, before `connection_lost`, and its `done` never runs.
#[test]
fn a_producer_is_stopped_once_when_the_connection_ends() {
    type End = fn(&mut Harness<Host>);
    let ends: [(End, Why); 4] = [
        (
            |h| assert!(h.call(|_, cx| cx.abort_connection())),
            Why::Aborted,
        ),
        (
            |h| h.disconnect(Reason::Lost(io::ErrorKind::BrokenPipe.into())),
            Why::Lost,
        ),
        (|h| assert!(h.call(|_, cx| cx.lose_connection())), Why::Done),
        (|h| h.eof(), Why::Done), // the default read_eof closes
    ];
    for kind in [ProducerKind::Pull, ProducerKind::Push] {
        for (end, why) in &ends {
            let log = log();
            let mut h = host(
                &log,
                (100, 40),
                Some(0),
                kind,
                Chunks::new(&log, 1000, 30),
                chunks_done(false),
            );
            end(&mut h);
            h.peer_reads(1000);
            let evs = events(&log);
            let tail = &evs[evs.len() - 2..];
            assert_eq!(
                tail,
                [Ev::Stopped, Ev::Lost(why.clone())],
                "{kind:?}: {evs:?}"
            );
            assert_eq!(count(&log, &Ev::Stopped), 1);
            assert!(!evs.iter().any(|e| matches!(e, Ev::Done(_))), "{evs:?}");
        }
    }
}

/// The protocol may unregister its producer: nothing more is asked of it, `done`
/// gets it back (after the unregistering callback), and it is not stopped when the
/// connection ends, since it is no longer the connection's.
#[test]
fn a_producer_unregistered_by_the_protocol_is_given_back_and_not_stopped() {
    let log = log();
    let mut h = host(
        &log,
        (100, 40),
        Some(0),
        ProducerKind::Pull,
        Chunks::new(&log, 1000, 30),
        chunks_done(false),
    );
    h.call(|_, cx| {
        cx.unregister_producer();
        cx.unregister_producer();
    });
    assert_eq!(events(&log), [Ev::Asked(0), Ev::Asked(30), Ev::Done(60)]);
    h.peer_reads(1000);
    h.call(|_, cx| cx.lose_connection());
    assert_eq!(
        events(&log),
        [
            Ev::Asked(0),
            Ev::Asked(30),
            Ev::Done(60),
            Ev::Lost(Why::Done)
        ]
    );
}

/// One producer at a time, and none on a closing connection: a refused producer is
/// given back untouched. Once the first is done, `done` may register the next one.
#[test]
fn a_refused_producer_is_given_back_and_done_can_register_the_next() {
    let log = log();
    let mut h = host(
        &log,
        (100, 40),
        None,
        ProducerKind::Push,
        Tap(log.clone()),
        |_: &mut Host, _, _| {},
    );
    h.call(|_, cx| {
        let second = Chunks::new(&log, 10, 10);
        let back = cx.register_producer(second, ProducerKind::Pull, chunks_done(false));
        assert!(back.is_err_and(|c| c.sent == 0 && c.data == pattern(10)));
        // Unregistering frees the place only once the callback has returned.
        cx.unregister_producer();
        let third = Chunks::new(&log, 10, 10);
        assert!(cx
            .register_producer(third, ProducerKind::Pull, chunks_done(false))
            .is_err());
    });
    // A chain: each transfer's `done` starts the next; the last one closes.
    h.call(|_, cx| {
        let first = Chunks::new(&log, 5, 5);
        let then = |host: &mut Host, cx: &mut Context<'_>, c: Chunks| {
            host.0.borrow_mut().push(Ev::Done(c.sent));
            let next = Chunks::new(&host.0, 3, 3);
            assert!(cx
                .register_producer(next, ProducerKind::Pull, chunks_done(true))
                .is_ok());
        };
        assert!(cx
            .register_producer(first, ProducerKind::Pull, then)
            .is_ok());
    });
    let mut expect = pattern(5);
    expect.extend(pattern(3));
    assert_eq!(h.take_written(), expect);
    assert_eq!(h.lost().map(Why::from), Some(Why::Done));
    assert!(!h.call(|_, _| unreachable!("the connection is gone")));
    let closing = log.clone();
    let mut h = HarnessBuilder::new().build(Host(log.clone()));
    h.connect();
    h.call(move |_, cx| {
        cx.lose_connection();
        let refused =
            cx.register_producer(Tap(closing), ProducerKind::Push, |_: &mut Host, _, _| {});
        assert!(refused.is_err());
    });
}

/// A panic in a producer's callback closes its connection as a protocol's would.
#[test]
fn a_panicking_producer_closes_its_connection() {
    struct Faulty;
    impl Producer for Faulty {
        fn resume_producing(&mut self, _: &mut Context<'_>) {
            panic!("producer failed");
        }
    }
    let log = log();
    let h = host(
        &log,
        (100, 40),
        None,
        ProducerKind::Pull,
        Faulty,
        |_: &mut Host, _, _| {},
    );
    assert_eq!(
        h.lost().map(Why::from),
        Some(Why::Panic("producer failed".into()))
    );
}

// ----- FileSender under the kit -----

/// Records the most bytes queued after each of the producer's calls, around any
/// producer.
struct Probe<R> {
    inner: R,
    max_queued: Rc<Cell<usize>>,
}

impl<R: Producer> Producer for Probe<R> {
    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        self.inner.resume_producing(cx);
        self.max_queued
            .set(self.max_queued.get().max(cx.buffered()));
    }

    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        self.inner.pause_producing(cx)
    }

    fn stop_producing(&mut self, cx: &mut Context<'_>) {
        self.inner.stop_producing(cx)
    }
}

const HIGH: usize = 64 * 1024;
const LOW: usize = 16 * 1024;
const CHUNK: usize = twistor::producer::DEFAULT_CHUNK_BYTES;

/// A file of `len` pattern bytes in a fresh directory.
fn file_of(dir: &TempDir, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    let data = pattern(len);
    let path = dir.0.join(name);
    fs::write(&path, &data).unwrap();
    (path, data)
}

/// A file streamed to a peer that reads a few KiB at a time arrives whole, with the
/// queue never above the low watermark plus one chunk; `done` gets the size.
#[test]
fn a_file_sender_streams_a_file_to_a_slow_peer_with_bounded_buffering() {
    let dir = TempDir::new("kit");
    let (path, data) = file_of(&dir, "big.bin", 3 * 1024 * 1024 + 123);
    let log = log();
    let max_queued = Rc::new(Cell::new(0));
    let result = Rc::new(RefCell::new(None));
    let mut h = HarnessBuilder::new()
        .write_watermarks(HIGH, LOW)
        .build(Host(log.clone()));
    h.set_peer_window(Some(1000));
    h.connect();
    let (probe, out) = (max_queued.clone(), result.clone());
    h.call(move |_, cx| {
        let sender = Probe {
            inner: FileSender::new(File::open(path).unwrap()),
            max_queued: probe,
        };
        let done = move |_: &mut Host, cx: &mut Context<'_>, p: Probe<FileSender>| {
            *out.borrow_mut() = Some(p.inner.into_result());
            cx.lose_connection();
        };
        assert!(cx
            .register_producer(sender, ProducerKind::Pull, done)
            .is_ok());
    });
    let mut received = h.take_written();
    let mut reads = 0;
    while h.lost().is_none() {
        reads += 1;
        assert!(reads < 10_000, "the transfer does not end");
        h.peer_reads(7 * 1024 + reads % 5000);
        assert!(h.buffered() <= LOW + CHUNK, "{} queued", h.buffered());
        received.extend(h.take_written());
    }
    assert_eq!(received.len(), data.len());
    assert!(received == data, "the bytes differ");
    assert!(matches!(&*result.borrow(), Some(Ok(n)) if *n == data.len() as u64));
    assert!(max_queued.get() <= LOW + CHUNK && max_queued.get() > LOW);
    assert_eq!(events(&log).last(), Some(&Ev::Lost(Why::Done)));
}

/// A read error ends the transfer: what came before it was sent, and `done` gets the
/// error; `Interrupted` is retried.
#[test]
fn a_file_sender_reports_a_read_error() {
    /// 10,000 bytes, an `Interrupted` in the middle, then a failure.
    struct Flaky(usize);
    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0 += 1;
            match self.0 {
                1 | 3 => {
                    let n = buf.len().min(5000);
                    buf[..n].fill(7);
                    Ok(n)
                }
                2 => Err(io::ErrorKind::Interrupted.into()),
                _ => Err(io::Error::other("disk on fire")),
            }
        }
    }
    let result = Rc::new(RefCell::new(None));
    let out = result.clone();
    let log = log();
    let mut h = Harness::new(Host(log.clone()));
    h.connect();
    h.call(move |_, cx| {
        let sender = FileSender::new(Flaky(0)).chunk_bytes(8000);
        let started = sender.begin_file_transfer(cx, move |_: &mut Host, cx, r| {
            *out.borrow_mut() = Some(r);
            cx.abort_connection();
        });
        assert!(started.is_ok());
    });
    assert_eq!(h.take_written(), vec![7; 10_000]);
    let r = result.borrow_mut().take().expect("done ran");
    assert_eq!(r.unwrap_err().to_string(), "disk on fire");
    assert_eq!(events(&log), [Ev::Lost(Why::Aborted)]);
}

// ----- FileSender over loopback -----

/// What the file server's connections share with the test.
#[derive(Clone)]
struct Shared {
    dir: PathBuf,
    /// The most bytes a connection had queued after a call of its sender.
    max_queued: Rc<Cell<usize>>,
    /// Each transfer's outcome, from its `done`.
    results: Rc<RefCell<Vec<io::Result<u64>>>>,
    lost: Rc<RefCell<Vec<Why>>>,
    /// Told when a connection's queue passes the high watermark.
    paused: mpsc::Sender<()>,
}

/// A small file server: on `GET NAME\n` it streams NAME from its directory with a
/// `FileSender` and closes; a name it cannot serve gets `error: REASON\n`.
struct FileServer {
    shared: Shared,
    request: Vec<u8>,
}

impl FileServer {
    fn serve(&mut self, cx: &mut Context<'_>, name: &str) -> io::Result<()> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad name"));
        }
        let file = File::open(self.shared.dir.join(name))?;
        let sender = Probe {
            inner: FileSender::new(file),
            max_queued: self.shared.max_queued.clone(),
        };
        let done = |server: &mut FileServer, cx: &mut Context<'_>, p: Probe<FileSender>| {
            server
                .shared
                .results
                .borrow_mut()
                .push(p.inner.into_result());
            cx.lose_connection();
        };
        cx.register_producer(sender, ProducerKind::Pull, done)
            .map_err(|_| io::Error::other("busy"))
    }
}

impl Protocol for FileServer {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        self.request.extend_from_slice(data);
        let Some(end) = self.request.iter().position(|&b| b == b'\n') else {
            if self.request.len() > 1024 {
                cx.lose_connection();
            }
            return;
        };
        // One request per connection: what follows it is ignored.
        cx.pause_reading();
        let line = String::from_utf8_lossy(&self.request[..end]).into_owned();
        let served = match line.trim_end_matches('\r').strip_prefix("GET ") {
            Some(name) => self.serve(cx, name),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unknown command",
            )),
        };
        if let Err(e) = served {
            cx.write(format!("error: {e}\n").as_bytes());
            cx.lose_connection();
        }
    }

    fn pause_producing(&mut self, _: &mut Context<'_>) {
        let _ = self.shared.paused.send(());
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        self.shared.lost.borrow_mut().push(Why::from(&reason));
    }
}

/// A reactor serving `shared.dir` on a loopback listener whose accepted sockets have
/// a small kernel send buffer, so that a client that does not read fills the
/// connection's own queue quickly.
fn file_server(shared: &Shared) -> (Reactor, std::net::SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.set_reuse_address(true).unwrap();
    // Inherited by the accepted sockets (and it turns off send-buffer autotuning).
    listener.set_send_buffer_size(16 * 1024).unwrap();
    listener.bind(&common::localhost().into()).unwrap();
    listener.listen(16).unwrap();
    let mut r = Reactor::builder()
        .write_watermarks(HIGH, LOW)
        .build()
        .unwrap();
    let shared = shared.clone();
    let addr = r
        .listen_tcp_socket(listener.into(), move |_: &Addr| {
            Some(FileServer {
                shared: shared.clone(),
                request: Vec::new(),
            })
        })
        .unwrap()
        .local_addr;
    (r, addr)
}

/// A client socket with a small receive buffer (set before connecting, so that the
/// window it advertises stays small).
fn small_client(addr: std::net::SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(16 * 1024).unwrap();
    s.connect(&addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s
}

/// The reverse of an upload: a file served over loopback to a client that first does
/// not read at all (until the server's queue has passed its high watermark) and then
/// reads slowly. It arrives whole and exact, the server's queue never held more than
/// the low watermark plus one chunk, and `done` got the file's size.
#[test]
fn a_file_served_over_loopback_to_a_slow_reader_arrives_whole_with_bounded_buffering() {
    let dir = TempDir::new("loopback");
    let (_, data) = file_of(&dir, "big.bin", 2 * 1024 * 1024 + 77);
    let (paused_tx, paused_rx) = mpsc::channel();
    let shared = Shared {
        dir: dir.0.clone(),
        max_queued: Rc::default(),
        results: Rc::default(),
        lost: Rc::default(),
        paused: paused_tx,
    };
    let (mut r, addr) = file_server(&shared);
    let client = thread::spawn(move || {
        let mut s = small_client(addr);
        s.write_all(b"GET big.bin\n").unwrap();
        paused_rx
            .recv_timeout(WATCHDOG)
            .expect("the server's queue never passed its high watermark");
        read_slowly(&mut s, 8 * 1024, Duration::from_micros(200))
    });
    let got = drive(&mut r, client);
    run_until(&mut r, |_| !shared.lost.borrow().is_empty());
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the bytes differ");
    let results = shared.results.borrow();
    assert!(
        matches!(&results[..], [Ok(n)] if *n == data.len() as u64),
        "{results:?}"
    );
    let max = shared.max_queued.get();
    assert!(max > HIGH && max <= LOW + CHUNK, "at most {max} queued");
    assert_eq!(*shared.lost.borrow(), [Why::Done]);
}

/// A fast reader gets several files at once, each whole (the kernel takes most
/// chunks at once, so each sender is asked again on the next turn); a missing file
/// gets an error line.
#[test]
fn files_served_over_loopback_to_fast_readers_arrive_whole() {
    let dir = TempDir::new("fast");
    let files: Vec<(String, Vec<u8>)> = [0, 1, 4095, 70_000, 1024 * 1024 + 1]
        .iter()
        .map(|&len| {
            let name = format!("f{len}");
            let (_, data) = file_of(&dir, &name, len);
            (name, data)
        })
        .collect();
    let (paused, _) = mpsc::channel();
    let shared = Shared {
        dir: dir.0.clone(),
        max_queued: Rc::default(),
        results: Rc::default(),
        lost: Rc::default(),
        paused,
    };
    let (mut r, addr) = file_server(&shared);
    let mut clients: Vec<_> = files
        .iter()
        .map(|(name, data)| {
            let (name, data) = (name.clone(), data.clone());
            common::client(addr, move |mut s| {
                s.write_all(format!("GET {name}\n").as_bytes()).unwrap();
                let (got, err) = common::read_to_eof(&mut s);
                assert!(err.is_none(), "{name}: {err:?}");
                assert!(
                    got == data,
                    "{name}: {} bytes, not {}",
                    got.len(),
                    data.len()
                );
            })
        })
        .collect();
    clients.push(common::client(addr, |mut s| {
        s.write_all(b"GET missing\n").unwrap();
        let (got, _) = common::read_to_eof(&mut s);
        assert!(
            got.starts_with(b"error: "),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }));
    common::drive_all(&mut r, clients);
    run_until(&mut r, |_| shared.lost.borrow().len() == files.len() + 1);
    let mut sizes: Vec<u64> = shared
        .results
        .borrow()
        .iter()
        .map(|r| *r.as_ref().unwrap())
        .collect();
    sizes.sort();
    let mut expect: Vec<u64> = files.iter().map(|(_, d)| d.len() as u64).collect();
    expect.sort();
    assert_eq!(sizes, expect);
    assert!(shared.lost.borrow().iter().all(|w| *w == Why::Done));
}

/// The same file server, unchanged, under the testing kit: a peer that reads 5,000
/// bytes at a time gets the file whole, the queue stays within the low watermark plus
/// one chunk, and the connection closes cleanly; a missing file gets an error line.
#[test]
fn the_file_server_runs_unchanged_under_the_kit() {
    let dir = TempDir::new("kit-server");
    let (_, data) = file_of(&dir, "big.bin", 1024 * 1024 + 5);
    let (paused, paused_rx) = mpsc::channel();
    let shared = Shared {
        dir: dir.0.clone(),
        max_queued: Rc::default(),
        results: Rc::default(),
        lost: Rc::default(),
        paused,
    };
    let server = || FileServer {
        shared: shared.clone(),
        request: Vec::new(),
    };
    let mut h = HarnessBuilder::new()
        .write_watermarks(HIGH, LOW)
        .build(server());
    h.set_peer_window(Some(0));
    h.connect();
    h.feed(b"GET big");
    h.feed(b".bin\r\n");
    let mut received = Vec::new();
    while h.lost().is_none() {
        assert!(received.len() <= data.len(), "more bytes than the file");
        h.peer_reads(5000);
        received.extend(h.take_written());
    }
    assert!(received == data, "the bytes differ");
    assert!(shared.max_queued.get() <= LOW + CHUNK);
    assert!(
        paused_rx.try_recv().is_ok(),
        "the queue passed the high watermark"
    );
    assert!(matches!(&shared.results.borrow()[..], [Ok(n)] if *n == data.len() as u64));
    assert_eq!(*shared.lost.borrow(), [Why::Done]);

    let mut h = Harness::new(server());
    h.connect();
    h.feed(b"GET nothing-here\n");
    assert!(h.take_written().starts_with(b"error: "));
    assert_eq!(h.lost().map(Why::from), Some(Why::Done));
}
