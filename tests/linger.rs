//! The lingering close's bounds and its reasons, and a graceful close that waits for
//! the connection's pool jobs: what `Builder::linger` and `close_timeout` promise.
//! (`tests/close.rs` has the repros of lost replies that lingering fixes.)

mod common;

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use twistor::testing::Harness;
use twistor::{Context, JobError, Protocol, Reactor, Reason};

/// A reactor whose linger ends after `time` or `bytes` discarded.
fn lingering(time: Duration, bytes: usize) -> Reactor {
    Reactor::builder().linger(time, bytes).build().unwrap()
}

/// Answers its first data with `reply` and closes gracefully.
fn answer_and_close(log: &Log, reply: Vec<u8>) -> Rec {
    Rec::new(log).no_data_log().on_data(move |cx, _| {
        if cx.is_open() {
            cx.write(&reply);
            cx.lose_connection();
        }
    })
}

/// The peer reads every byte, then closes: the close ends cleanly, with `Done`.
#[test]
fn a_peer_that_closes_after_reading_confirms_a_clean_close() {
    let log = Log::default();
    let mut r = lingering(WATCHDOG * 2, 1 << 20);
    let reply = pattern(1 << 20);
    let addr = listen(&mut r, answer_and_close(&log, reply.clone()));
    let c = client(addr, |mut s| {
        s.write_all(b"go").unwrap();
        read_to_eof(&mut s)
    });
    let (got, err) = drive(&mut r, c);
    assert!(err.is_none(), "{err:?} after {} bytes", got.len());
    assert!(got == reply, "got {} of {} bytes", got.len(), reply.len());
    run_until(&mut r, |_| log.lost_count() == 1);
    assert_eq!(log.lost(log.made()[0]), Some(Why::Done));
}

/// A peer that reads everything but never closes is let go after the linger's time:
/// `TimedOut` (the end was not confirmed), without a reset, so the peer still reads a
/// clean EOF afterwards.
#[test]
fn a_peer_that_never_closes_is_let_go_after_the_linger_without_a_reset() {
    let log = Log::default();
    let mut r = lingering(Duration::from_millis(50), 1 << 20);
    let addr = listen(&mut r, answer_and_close(&log, b"bye\n".to_vec()));
    let (read_tx, read) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel::<()>();
    let c = client(addr, move |mut s| {
        s.write_all(b"go").unwrap();
        read_tx.send(read_to_eof(&mut s)).unwrap();
        // Keep the socket open until the server has let go, then read again.
        closed.recv_timeout(WATCHDOG).expect("the server let go");
        let mut buf = [0; 16];
        s.read(&mut buf).map_err(|e| e.kind())
    });
    run_until(&mut r, |_| log.lost_count() == 1);
    let (got, err) = read.recv_timeout(WATCHDOG).unwrap();
    assert_eq!((got, err.map(|e| e.kind())), (b"bye\n".to_vec(), None));
    assert_eq!(log.lost(log.made()[0]), Some(Why::TimedOut));
    closed_tx.send(()).unwrap();
    assert_eq!(drive(&mut r, c), Ok(0), "a reset after the linger");
}

/// A peer that goes on sending after the close is cut off once the linger's byte
/// bound is passed, with `TimedOut`, while the reactor serves another client.
#[test]
fn a_peer_that_keeps_sending_is_cut_off_at_the_linger_byte_bound() {
    let log = Log::default();
    let mut r = lingering(WATCHDOG * 2, 256 * 1024);
    let addr = listen(&mut r, answer_and_close(&log, b"bye\n".to_vec()));
    let hose = client(addr, |mut s| {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        loop {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => return (sent, e.kind()),
            }
        }
    });
    let (sent, err) = drive(&mut r, hose);
    assert!(
        matches!(
            err,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ),
        "the hose ended with {err:?} after {sent} bytes"
    );
    run_until(&mut r, |_| log.lost_count() == 1);
    assert_eq!(log.lost(log.made()[0]), Some(Why::TimedOut));
    // The reactor goes on serving.
    let c = client(addr, |mut s| {
        s.write_all(b"hi").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        read_to_eof(&mut s)
    });
    let (got, err) = drive(&mut r, c);
    assert_eq!((got, err.map(|e| e.kind())), (b"bye\n".to_vec(), None));
}

/// `abort_connection` stays a reset, even with the peer's input unread.
#[test]
fn abort_connection_still_resets() {
    let log = Log::default();
    let mut r = Reactor::new().unwrap();
    let addr = listen(
        &mut r,
        Rec::new(&log).on_data(|cx, _| {
            cx.write(b"never sent in full");
            cx.abort_connection();
        }),
    );
    let c = client(addr, |mut s| {
        s.write_all(b"go").unwrap();
        read_to_eof(&mut s).1.map(|e| e.kind())
    });
    assert_eq!(drive(&mut r, c), Some(io::ErrorKind::ConnectionReset));
    run_until(&mut r, |_| log.lost_count() == 1);
    assert_eq!(log.lost(log.made()[0]), Some(Why::Aborted));
}

/// Answers `job` from the pool with a value the test sends through `release`, and
/// closes gracefully as soon as the job is out.
struct Deferred {
    release: Option<mpsc::Receiver<u32>>,
    lost: Rc<RefCell<Option<Why>>>,
}

impl Protocol for Deferred {
    fn data_received(&mut self, cx: &mut Context<'_>, _: &[u8]) {
        let Some(release) = self.release.take() else {
            return;
        };
        let job = move || release.recv_timeout(WATCHDOG).expect("released");
        cx.defer_to_thread(job, |_: &mut Deferred, cx, n: Result<u32, JobError>| {
            cx.write(format!("{}\n", n.unwrap()).as_bytes());
        })
        .expect("pool");
        cx.lose_connection();
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        *self.lost.borrow_mut() = Some(Why::from(&reason));
    }
}

/// `lose_connection` right after `defer_to_thread`: the close waits for the job and
/// sends what its callback writes, then ends cleanly.
#[test]
fn a_graceful_close_waits_for_the_connections_pool_job_and_sends_its_result() {
    let mut r = Reactor::new().unwrap();
    let (release_tx, release) = mpsc::channel();
    let lost = Rc::new(RefCell::new(None));
    let mut protocol = Some(Deferred {
        release: Some(release),
        lost: lost.clone(),
    });
    let addr = r
        .listen_tcp(localhost(), move |_: &_| protocol.take())
        .unwrap()
        .local_addr;
    let c = client(addr, |mut s| {
        s.write_all(b"go").unwrap();
        read_to_eof(&mut s)
    });
    run_until(&mut r, |r| r.pending_jobs() == 1);
    release_tx.send(42).unwrap();
    let (got, err) = drive(&mut r, c);
    assert_eq!((got, err.map(|e| e.kind())), (b"42\n".to_vec(), None));
    run_until(&mut r, |_| lost.borrow().is_some());
    assert_eq!(*lost.borrow(), Some(Why::Done));
}

/// A job that does not end within the close timeout: the close gives up with
/// `TimedOut`, and the late result is dropped.
#[test]
fn a_pool_job_that_outlasts_the_close_timeout_ends_the_close_with_timed_out() {
    let mut r = Reactor::builder()
        .close_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let (release_tx, release) = mpsc::channel();
    let lost = Rc::new(RefCell::new(None));
    let mut protocol = Some(Deferred {
        release: Some(release),
        lost: lost.clone(),
    });
    let addr = r
        .listen_tcp(localhost(), move |_: &_| protocol.take())
        .unwrap()
        .local_addr;
    let c = client(addr, |mut s| {
        s.write_all(b"go").unwrap();
        read_to_eof(&mut s)
    });
    let (got, _) = drive(&mut r, c);
    assert_eq!(got, b"", "nothing was written before the deadline");
    run_until(&mut r, |_| lost.borrow().is_some());
    assert_eq!(*lost.borrow(), Some(Why::TimedOut));
    release_tx.send(1).unwrap();
    run_until(&mut r, |r| r.pending_jobs() == 0);
}

/// The same under the testing kit: the close waits for the job the test runs.
#[test]
fn the_kit_waits_for_pool_jobs_before_a_graceful_close_ends() {
    struct Sum;
    impl Protocol for Sum {
        fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
            let n = data.len();
            cx.defer_to_thread(
                move || n * 2,
                |_: &mut Sum, cx, r: Result<usize, _>| {
                    cx.write(format!("{}\n", r.unwrap()).as_bytes());
                },
            )
            .unwrap();
        }
    }
    let mut h = Harness::new(Sum);
    h.connect();
    h.feed(b"abc");
    h.eof();
    assert!(h.lost().is_none(), "closed with a job out");
    assert_eq!(h.run_jobs(), 1);
    assert_eq!(h.take_written(), b"6\n");
    assert!(matches!(h.lost(), Some(Reason::Done)), "{:?}", h.lost());
}
