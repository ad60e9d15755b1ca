//! The thread-pool handoff: work leaves the reactor thread, results come back on it.
//!
//! Jobs that must stay busy wait on a [`Gate`] that the test opens, so every "while
//! the pool is busy" and every completion order is set up with channels, never with
//! sleeps. Each gate wait, like every other wait here, ends at the watchdog.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::*;
use twistor::{Addr, ConnId, Context, InOrder, JobError, Protocol, Reactor, Reason};

// ----- fixtures -----

/// Keeps pool jobs waiting until the test opens their key.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<HashSet<u64>>, Condvar)>);

impl Gate {
    fn open(&self, key: u64) {
        self.0 .0.lock().unwrap().insert(key);
        self.0 .1.notify_all();
    }

    /// Blocks the calling pool thread until `open(key)`; after the watchdog it panics,
    /// which fails the job (and so the test) instead of hanging it.
    fn wait(&self, key: u64) {
        let deadline = Instant::now() + WATCHDOG;
        let mut open = self.0 .0.lock().unwrap();
        while !open.contains(&key) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "watchdog: gate {key} never opened");
            open = self.0 .1.wait_timeout(open, left).unwrap().0;
        }
    }
}

type LineHook = Rc<dyn Fn(&mut Lines, &mut Context<'_>, &str)>;

/// A line protocol for pool tests: each `\n`-terminated line goes to the test's hook,
/// which usually defers work. Done callbacks get this type, and answer in request
/// order through `order` when a test asks for it.
struct Lines {
    log: Log,
    buf: Vec<u8>,
    order: InOrder<String>,
    on_line: LineHook,
    /// Told the id of the connection when it is lost, for threads that wait for that.
    lost: Option<mpsc::Sender<ConnId>>,
}

impl Lines {
    /// Records `text` as the answer to `ticket` and writes every answer whose turn
    /// has come, one per line.
    fn answer(&mut self, cx: &mut Context<'_>, ticket: u64, text: String) {
        self.order.complete(ticket, text);
        while let Some(text) = self.order.pop_ready() {
            cx.write(format!("{text}\n").as_bytes());
        }
    }
}

impl Protocol for Lines {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.log.push(Ev::Made(cx.id()));
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            let hook = Rc::clone(&self.on_line);
            hook(self, cx, &line);
        }
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        self.log.push(Ev::Lost(cx.id(), Why::from(&reason)));
        if let Some(lost) = &self.lost {
            let _ = lost.send(cx.id());
        }
    }
}

/// Listens with a fresh [`Lines`] per connection running `hook`.
fn listen_lines(
    r: &mut Reactor,
    log: &Log,
    lost: Option<mpsc::Sender<ConnId>>,
    hook: impl Fn(&mut Lines, &mut Context<'_>, &str) + 'static,
) -> std::net::SocketAddr {
    let (log, hook): (Log, LineHook) = (log.clone(), Rc::new(hook));
    let factory = move |_: &Addr| {
        Some(Lines {
            log: log.clone(),
            buf: Vec::new(),
            order: InOrder::new(),
            on_line: Rc::clone(&hook),
            lost: lost.clone(),
        })
    };
    r.listen_tcp(localhost(), factory).unwrap().local_addr
}

/// Turns the reactor until `n` messages have come through `rx` (sent by pool jobs or
/// other threads), and returns them.
fn recv_turning<T>(r: &mut Reactor, rx: &mpsc::Receiver<T>, n: usize) -> Vec<T> {
    let mut got = Vec::new();
    run_until(r, |_| {
        got.extend(rx.try_iter());
        got.len() >= n
    });
    got
}

/// Reads one `\n`-terminated line (blocking, bounded by the client timeout).
fn read_line(s: &mut std::net::TcpStream) -> String {
    let mut line = Vec::new();
    while line.last() != Some(&b'\n') {
        line.extend(read_n(s, 1));
    }
    String::from_utf8(line).unwrap()
}

/// Done callbacks of reactor-level jobs record here, on the reactor thread.
type Record = Rc<std::cell::RefCell<Vec<String>>>;

fn recorded(rec: &Record) -> Vec<String> {
    rec.borrow().clone()
}

/// A `done` for `Reactor::defer_to_thread` that records `name` and the result.
fn record<T: std::fmt::Debug>(
    rec: &Record,
    name: &str,
) -> impl FnOnce(&mut Reactor, Result<T, JobError>) + 'static {
    let (rec, name) = (rec.clone(), name.to_owned());
    move |_, result| rec.borrow_mut().push(format!("{name} {result:?}"))
}

// ----- results reach the right connection -----

/// Four connections each ask for a square; the jobs are released in reverse order,
/// so results come back in the opposite order to the requests, and each still
/// reaches the connection that asked, with that connection's protocol.
#[test]
fn each_result_reaches_the_connection_that_asked() {
    let mut r = Reactor::builder().threads(4).build().unwrap();
    let log = Log::default();
    let gate = Gate::default();
    let (started_tx, started) = mpsc::channel();
    let hook = {
        let gate = gate.clone();
        move |_: &mut Lines, cx: &mut Context<'_>, line: &str| {
            let n: u64 = line.parse().unwrap();
            let (gate, started_tx, asker) = (gate.clone(), started_tx.clone(), cx.id());
            let job = move || {
                started_tx.send(n).unwrap();
                gate.wait(n);
                n * n
            };
            let done = move |p: &mut Lines, cx: &mut Context<'_>, sq: Result<u64, JobError>| {
                p.log
                    .mark(format!("done {n} asked by {asker:?} ran for {:?}", cx.id()));
                cx.write(format!("{n} squared is {}\n", sq.unwrap()).as_bytes());
            };
            cx.defer_to_thread(job, done).unwrap();
        }
    };
    let addr = listen_lines(&mut r, &log, None, hook);
    let clients: Vec<_> = (1..=4u64)
        .map(|n| {
            client(addr, move |mut s| {
                s.write_all(format!("{n}\n").as_bytes()).unwrap();
                read_line(&mut s)
            })
        })
        .collect();
    recv_turning(&mut r, &started, 4);
    for n in (1..=4u64).rev() {
        gate.open(n);
        run_until(&mut r, |_| {
            log.count(|e| matches!(e, Ev::Mark(m) if m.starts_with(&format!("done {n} ")))) == 1
        });
    }
    for (n, answer) in (1..=4u64).zip(drive_all(&mut r, clients)) {
        assert_eq!(answer, format!("{n} squared is {}\n", n * n));
    }
    for e in log.events() {
        if let Ev::Mark(m) = e {
            let (asked, ran) = m.split_once(" ran for ").unwrap();
            assert!(asked.ends_with(ran), "{m}");
        }
    }
    assert_eq!(r.pending_jobs(), 0);
    run_until(&mut r, |_| log.lost_count() == 4);
    log.check_lifecycles();
}

/// A connection lost while its job runs never gets the result; a newer connection in
/// the same slot gets nothing either (the result carries the old id's generation).
#[test]
fn a_result_for_a_lost_connection_is_dropped_not_given_to_the_slots_next_owner() {
    let mut r = Reactor::builder().threads(1).build().unwrap();
    let log = Log::default();
    let gate = Gate::default();
    let (started_tx, started) = mpsc::channel();
    let hook = {
        let gate = gate.clone();
        move |_: &mut Lines, cx: &mut Context<'_>, line: &str| match line {
            "work" => {
                let (gate, started_tx) = (gate.clone(), started_tx.clone());
                let job = move || {
                    started_tx.send(()).unwrap();
                    gate.wait(0);
                    "stale result"
                };
                let done = |p: &mut Lines, cx: &mut Context<'_>, res: Result<&str, JobError>| {
                    p.log.mark(format!("done ran for {:?}", cx.id()));
                    cx.write(format!("{}\n", res.unwrap()).as_bytes());
                };
                cx.defer_to_thread(job, done).unwrap();
            }
            "abort" => cx.abort_connection(),
            _ => {
                cx.write(b"pong\n");
            }
        }
    };
    let addr = listen_lines(&mut r, &log, None, hook);

    // Lost by an abort: a graceful close (the peer's end, say) would wait for the job.
    let mut old = connect(addr);
    old.write_all(b"work\n").unwrap();
    recv_turning(&mut r, &started, 1);
    old.write_all(b"abort\n").unwrap();
    run_until(&mut r, |_| log.lost_count() == 1);
    drop(old);
    assert_eq!(r.pending_jobs(), 1, "the job still runs");

    let mut new = connect(addr);
    run_until(&mut r, |_| log.made().len() == 2);
    let (old_id, new_id) = (log.made()[0], log.made()[1]);
    assert_ne!(old_id, new_id);
    assert_eq!(slot(old_id), slot(new_id), "the test needs the slot reused");

    gate.open(0);
    run_until(&mut r, |r| r.pending_jobs() == 0);
    // The first bytes the new connection sees are its own answer.
    new.write_all(b"ping\n").unwrap();
    let reader = thread::spawn(move || read_line(&mut new));
    assert_eq!(drive(&mut r, reader), "pong\n");
    assert_eq!(
        log.count(|e| matches!(e, Ev::Mark(_))),
        0,
        "{:?}",
        log.events()
    );
    run_until(&mut r, |_| log.lost_count() == 2);
    log.check_lifecycles();
}

// ----- a full queue -----

/// One thread and a queue of two: with the thread blocked, two jobs queue and the
/// third is refused with `PoolBusy`, from the reactor and from a connection alike.
/// Refused jobs never run but come back; the rest run in order once the thread is
/// free, and the pool accepts work again, the refused job included.
#[test]
fn a_full_queue_refuses_jobs_with_pool_busy() {
    let mut r = Reactor::builder()
        .threads(1)
        .pool_queue_jobs(2)
        .build()
        .unwrap();
    let rec = Record::default();
    let gate = Gate::default();
    let (started_tx, started) = mpsc::channel();
    let g = gate.clone();
    let blocker = move || {
        started_tx.send(()).unwrap();
        g.wait(0);
        "blocker"
    };
    r.defer_to_thread(blocker, record(&rec, "blocker")).unwrap();
    started.recv_timeout(WATCHDOG).expect("the blocker started");

    r.defer_to_thread(|| 1, record(&rec, "q1")).unwrap();
    r.defer_to_thread(|| 2, record(&rec, "q2")).unwrap();
    let refused = r
        .defer_to_thread(|| 3, record(&rec, "refused, then resubmitted"))
        .expect_err("the queue is full");
    assert!(r.call_in_thread(|| panic!("refused, never runs")).is_err());
    assert_eq!(r.pending_jobs(), 3, "queued and running, not refused");

    // A connection meets the same full queue.
    let log = Log::default();
    let addr = listen_lines(&mut r, &log, None, |_, cx, _| {
        let reply: &[u8] = match cx.defer_to_thread(|| (), |_: &mut Lines, _, _| {}) {
            Ok(()) => b"queued\n",
            Err(_) => b"busy\n",
        };
        cx.write(reply);
    });
    let c = client(addr, |mut s| {
        s.write_all(b"try\n").unwrap();
        read_line(&mut s)
    });
    assert_eq!(drive(&mut r, c), "busy\n");
    assert_eq!(r.pending_jobs(), 3);

    gate.open(0);
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert_eq!(
        recorded(&rec),
        ["blocker Ok(\"blocker\")", "q1 Ok(1)", "q2 Ok(2)"]
    );
    let (job, done) = refused.into_inner();
    r.defer_to_thread(job, done).unwrap();
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert_eq!(
        recorded(&rec).last().unwrap(),
        "refused, then resubmitted Ok(3)"
    );
}

// ----- panics -----

/// A job that panics gives its `done` `JobError::Panicked` with the panic's message;
/// the one pool thread survives and runs the next job.
#[test]
fn a_panicking_job_reports_panicked_and_its_thread_runs_the_next_job() {
    let mut r = Reactor::builder().threads(1).build().unwrap();
    let rec = Record::default();
    let (tid_tx, tids) = mpsc::channel::<ThreadId>();
    let tx = tid_tx.clone();
    let boom = move || -> u32 {
        tx.send(thread::current().id()).unwrap();
        panic!("boom {}", 42)
    };
    r.defer_to_thread(boom, record(&rec, "boom")).unwrap();
    let later = move || tid_tx.send(thread::current().id()).unwrap();
    r.defer_to_thread(later, record(&rec, "later")).unwrap();
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert_eq!(
        recorded(&rec),
        [
            format!(
                "boom {:?}",
                Err::<u32, _>(JobError::Panicked("boom 42".into()))
            ),
            "later Ok(())".to_owned()
        ]
    );
    let tids: Vec<ThreadId> = tids.try_iter().collect();
    assert_eq!(tids.len(), 2);
    assert_eq!(tids[0], tids[1], "the same pool thread ran both jobs");
    assert_ne!(tids[0], thread::current().id());
}

/// A connection whose job panics gets the error in its `done` and stays open: the
/// panic was the job's, not a callback's.
#[test]
fn a_connection_whose_job_panics_gets_the_error_and_stays_open() {
    let mut r = Reactor::builder().threads(1).build().unwrap();
    let log = Log::default();
    let addr = listen_lines(&mut r, &log, None, |_, cx, line| {
        if line == "ping" {
            cx.write(b"pong\n");
            return;
        }
        let job = || -> u8 { panic!("bad input") };
        let done = |_: &mut Lines, cx: &mut Context<'_>, res: Result<u8, JobError>| {
            cx.write(format!("{}\n", res.unwrap_err()).as_bytes());
        };
        cx.defer_to_thread(job, done).unwrap();
    });
    let c = client(addr, |mut s| {
        s.write_all(b"crash\n").unwrap();
        let first = read_line(&mut s);
        s.write_all(b"ping\n").unwrap();
        (first, read_line(&mut s))
    });
    let (first, second) = drive(&mut r, c);
    assert_eq!(first, "job panicked: bad input\n");
    assert_eq!(second, "pong\n");
    run_until(&mut r, |_| log.lost_count() == 1);
    assert_eq!(log.lost(log.made()[0]), Some(Why::Done));
    log.check_lifecycles();
}

/// `defer_to_thread` with a callback for another protocol type is a programming
/// error: it panics in the calling callback, which closes that connection, and no
/// job is queued.
#[test]
fn defer_to_thread_with_the_wrong_protocol_type_closes_the_connection() {
    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let addr = listen_lines(&mut r, &log, None, |_, cx, _| {
        let _ = cx.defer_to_thread(|| 1, |_: &mut Rec, _, _: Result<i32, JobError>| {});
    });
    let c = client(addr, |mut s| {
        s.write_all(b"go\n").unwrap();
        read_to_eof(&mut s)
    });
    drive(&mut r, c);
    run_until(&mut r, |_| log.lost_count() == 1);
    match log.lost(log.made()[0]) {
        Some(Why::Panic(m)) => assert!(m.contains("defer_to_thread"), "{m}"),
        other => panic!("lost with {other:?}"),
    }
    assert_eq!(r.pending_jobs(), 0);
}

// ----- stopping -----

/// The shared set-up of the stop tests: one pool thread, blocked in a job of
/// connection `conn`, with two more of its jobs and one reactor-level job queued.
struct StopScene {
    r: Reactor,
    log: Log,
    rec: Record,
    gate: Gate,
    /// Set by the blocked job as its last act.
    finished: Arc<AtomicBool>,
    lost: mpsc::Receiver<ConnId>,
    client: std::net::TcpStream,
}

fn stop_scene(wait_for_jobs: bool) -> StopScene {
    let mut r = Reactor::builder()
        .threads(1)
        .wait_for_jobs_on_stop(wait_for_jobs)
        // Long enough never to be what ends a stop in these tests.
        .shutdown_timeout(WATCHDOG * 2)
        .build()
        .unwrap();
    let (log, rec, gate) = (Log::default(), Record::default(), Gate::default());
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = mpsc::channel();
    let (lost_tx, lost) = mpsc::channel();
    let hook = {
        let (gate, finished) = (gate.clone(), finished.clone());
        move |_: &mut Lines, cx: &mut Context<'_>, line: &str| {
            let name = line.to_owned();
            let done = move |p: &mut Lines, cx: &mut Context<'_>, res: Result<(), JobError>| {
                p.log.mark(format!("{name} {res:?}"));
                cx.write(format!("{name} {res:?}\n").as_bytes());
            };
            if line == "block" {
                let (gate, finished, started_tx) =
                    (gate.clone(), finished.clone(), started_tx.clone());
                let job = move || {
                    started_tx.send(()).unwrap();
                    gate.wait(0);
                    finished.store(true, Ordering::SeqCst);
                };
                cx.defer_to_thread(job, done).unwrap();
            } else {
                cx.defer_to_thread(|| (), done).unwrap();
            }
        }
    };
    let addr = listen_lines(&mut r, &log, Some(lost_tx), hook);
    let mut client = connect(addr);
    client.write_all(b"block\n").unwrap();
    recv_turning(&mut r, &started, 1);
    client.write_all(b"q1\nq2\n").unwrap();
    run_until(&mut r, |r| r.pending_jobs() == 3);
    r.defer_to_thread(|| (), record(&rec, "reactor job"))
        .unwrap();
    StopScene {
        r,
        log,
        rec,
        gate,
        finished,
        lost,
        client,
    }
}

/// A stop drops the queued jobs: their `done`s get `Cancelled` before the
/// connection's `connection_lost`, and what they write still reaches the client. With
/// `wait_for_jobs_on_stop(true)`, the connection's graceful close waits for the
/// running job and sends what its `done` writes, so `run()` returns only after it.
#[test]
fn stop_cancels_queued_jobs_before_connection_lost_and_waits_for_the_running_one() {
    let StopScene {
        mut r,
        log,
        rec,
        gate,
        finished,
        lost: _lost,
        mut client,
    } = stop_scene(true);
    let cancelled = format!("{:?}", Err::<(), _>(JobError::Cancelled));
    // The client lets the running job end only once the stop has cancelled the
    // queued ones, so that the stop has to wait for it; then it reads to the end and
    // closes, which ends the server's lingering close.
    let reader = thread::spawn(move || {
        let mut got = read_line(&mut client) + &read_line(&mut client);
        gate.open(0);
        let (rest, err) = read_to_eof(&mut client);
        assert!(err.is_none(), "{err:?}");
        got += std::str::from_utf8(&rest).unwrap();
        got
    });
    r.stop();
    r.run().unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "run() returned before the running job finished"
    );
    let got = reader.join().unwrap();
    assert_eq!(
        got,
        format!("q1 {cancelled}\nq2 {cancelled}\nblock Ok(())\n")
    );

    let conn = log.made()[0];
    assert_eq!(
        log.events(),
        [
            Ev::Made(conn),
            Ev::Mark(format!("q1 {cancelled}")),
            Ev::Mark(format!("q2 {cancelled}")),
            Ev::Mark("block Ok(())".to_owned()),
            Ev::Lost(conn, Why::Done),
        ]
    );
    assert_eq!(recorded(&rec), [format!("reactor job {cancelled}")]);
    assert_eq!(r.pending_jobs(), 0);
    log.check_lifecycles();
}

/// With `wait_for_jobs_on_stop(false)`, `run()` returns while a job still runs; the
/// job finishes later on its own thread, and a reactor that turns again gets its
/// result (here, dropped: its connection is gone).
#[test]
fn stop_without_waiting_returns_while_a_job_runs_and_leaves_it_to_finish() {
    let StopScene {
        mut r,
        log,
        rec,
        gate,
        finished,
        lost: _lost,
        mut client,
    } = stop_scene(false);
    // The client reads to the end and closes, ending the server's lingering close.
    let reader = thread::spawn(move || read_to_eof(&mut client));
    // Opens the gate if run() has not returned by the watchdog, so that a stop that
    // wrongly waits fails this test instead of hanging it.
    let (returned_tx, returned) = mpsc::channel::<()>();
    let watchdog = {
        let gate = gate.clone();
        thread::spawn(move || {
            let fired = returned.recv_timeout(WATCHDOG).is_err();
            if fired {
                gate.open(0);
            }
            fired
        })
    };
    r.stop();
    r.run().unwrap();
    returned_tx.send(()).unwrap();
    assert!(
        !watchdog.join().unwrap(),
        "run() waited for the running job"
    );
    assert!(!finished.load(Ordering::SeqCst), "the gate is still shut");
    assert_eq!(r.pending_jobs(), 1);
    gate.open(0);

    let cancelled = format!("{:?}", Err::<(), _>(JobError::Cancelled));
    assert_eq!(recorded(&rec), [format!("reactor job {cancelled}")]);
    assert_eq!(log.lost_count(), 1);
    let (got, _) = reader.join().unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        format!("q1 {cancelled}\nq2 {cancelled}\n")
    );
    // The job now finishes on its own; its result comes in on a later turn.
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert!(finished.load(Ordering::SeqCst));
    assert!(!log.has_mark("block Ok(())"));
    log.check_lifecycles();
}

/// A stop with nothing but reactor-level jobs: the queued one's `done` gets
/// `Cancelled` (and here releases the running one), the running one's `done` runs
/// once, and the pool takes work again after the stop.
#[test]
fn after_a_stop_the_reactor_runs_jobs_again() {
    let mut r = Reactor::builder().threads(1).build().unwrap();
    let rec = Record::default();
    let gate = Gate::default();
    let (started_tx, started) = mpsc::channel();
    let g = gate.clone();
    let running = move || {
        started_tx.send(()).unwrap();
        g.wait(0);
    };
    r.defer_to_thread(running, record(&rec, "running")).unwrap();
    started.recv_timeout(WATCHDOG).unwrap();
    let (rec2, g) = (rec.clone(), gate.clone());
    let release = move |_: &mut Reactor, res: Result<(), JobError>| {
        rec2.borrow_mut().push(format!("queued {res:?}"));
        g.open(0);
    };
    r.defer_to_thread(|| (), release).unwrap();
    r.stop();
    r.run().unwrap();
    // Whether the running job's `done` ran before `run()` returned depends on when
    // its result woke the reactor; either way it runs once, after the cancelled one.
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert_eq!(
        recorded(&rec),
        [
            format!("queued {:?}", Err::<(), _>(JobError::Cancelled)),
            "running Ok(())".to_owned()
        ]
    );
    r.defer_to_thread(|| 5, record(&rec, "next run")).unwrap();
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert_eq!(recorded(&rec)[2], "next run Ok(5)");
}

/// A stop that waits for a running reactor-level job also runs its `done` before
/// `run()` returns, so that nothing is lost when the reactor is dropped right after
/// (as every server's `main` does). The job is released from another thread just
/// after the stop begins, so its result arrives while the stop joins the pool.
#[test]
fn a_stop_that_waits_for_a_job_runs_its_done_before_run_returns() {
    let mut r = Reactor::builder()
        .threads(1)
        .wait_for_jobs_on_stop(true)
        .shutdown_timeout(WATCHDOG)
        .build()
        .unwrap();
    let rec = Record::default();
    let gate = Gate::default();
    let (started_tx, started) = mpsc::channel();
    let g = gate.clone();
    let running = move || {
        started_tx.send(()).unwrap();
        g.wait(0);
    };
    r.defer_to_thread(running, record(&rec, "running")).unwrap();
    started.recv_timeout(WATCHDOG).unwrap();
    let (cancelled_tx, cancelled) = mpsc::channel();
    r.defer_to_thread(
        || (),
        move |_, res: Result<(), JobError>| cancelled_tx.send(res).unwrap(),
    )
    .unwrap();
    let releaser = thread::spawn(move || {
        let res = cancelled.recv_timeout(WATCHDOG).unwrap();
        gate.open(0);
        res
    });
    r.stop();
    r.run().unwrap();
    assert_eq!(releaser.join().unwrap(), Err(JobError::Cancelled));
    assert_eq!(
        recorded(&rec),
        ["running Ok(())"],
        "run() returned without running the done of the job it waited for"
    );
}

/// Dropping a reactor cancels its queued jobs too: their `done`s run with
/// `Cancelled` during the drop, and the running job is left to finish on its own.
#[test]
fn dropping_the_reactor_cancels_queued_jobs() {
    let mut r = Reactor::builder().threads(1).build().unwrap();
    let rec = Record::default();
    let gate = Gate::default();
    let (started_tx, started) = mpsc::channel();
    let (finished_tx, finished) = mpsc::channel();
    let g = gate.clone();
    r.defer_to_thread(
        move || {
            started_tx.send(()).unwrap();
            g.wait(0);
            finished_tx.send(()).unwrap();
        },
        record(&rec, "running"),
    )
    .unwrap();
    started.recv_timeout(WATCHDOG).unwrap();
    r.defer_to_thread(|| (), record(&rec, "queued")).unwrap();
    drop(r);
    assert_eq!(
        recorded(&rec),
        [format!("queued {:?}", Err::<(), _>(JobError::Cancelled))]
    );
    gate.open(0);
    finished
        .recv_timeout(WATCHDOG)
        .expect("the running job finished");
}

// ----- many threads at once -----

/// Eight threads hammer `call_from_thread` while 400 pool jobs finish (each of which
/// also sends a closure from its pool thread): every closure and every `done` runs
/// once, each sending thread's closures in order.
#[test]
fn call_from_thread_from_many_threads_while_pool_results_flow() {
    const SENDERS: usize = 8;
    const EACH: usize = 250;
    const JOBS: usize = 400;
    let mut r = Reactor::builder().threads(2).build().unwrap();
    let handle = r.handle();
    let seen: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let from_pool = Arc::new(AtomicUsize::new(0));
    let dones = Rc::new(std::cell::Cell::new(0));
    let start = Arc::new(Barrier::new(SENDERS + 1));
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let (handle, seen, start) = (handle.clone(), seen.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..EACH {
                    let seen = seen.clone();
                    handle
                        .call_from_thread(move |_| seen.lock().unwrap().push((t, i)))
                        .unwrap();
                }
            })
        })
        .collect();
    for k in 0..JOBS {
        let (handle, from_pool) = (handle.clone(), from_pool.clone());
        let job = move || {
            handle
                .call_from_thread(move |_| {
                    from_pool.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            k * 2
        };
        let dones = dones.clone();
        let done = move |_: &mut Reactor, v: Result<usize, JobError>| {
            assert_eq!(v, Ok(k * 2));
            dones.set(dones.get() + 1);
        };
        r.defer_to_thread(job, done).unwrap();
        if k == 0 {
            start.wait();
        }
    }
    run_until(&mut r, |r| {
        r.pending_jobs() == 0
            && dones.get() == JOBS
            && from_pool.load(Ordering::SeqCst) == JOBS
            && seen.lock().unwrap().len() == SENDERS * EACH
    });
    for s in senders {
        s.join().unwrap();
    }
    let mut next = [0; SENDERS];
    for &(t, i) in seen.lock().unwrap().iter() {
        assert_eq!(i, next[t], "sender {t} out of order");
        next[t] += 1;
    }
    assert_eq!(next, [EACH; SENDERS]);
}

// ----- the reactor thread stays free -----

/// Both pool threads spin on CPU work and more jobs wait in the queue; meanwhile the
/// reactor thread still answers clients and fires timers. What is asserted is that
/// they are answered, not how fast.
#[test]
fn the_reactor_answers_clients_while_every_pool_thread_is_busy() {
    const THREADS: usize = 2;
    let mut r = Reactor::builder().threads(THREADS).build().unwrap();
    let stop_spinning = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = mpsc::channel();
    let finished = Rc::new(std::cell::Cell::new(0));
    for _ in 0..THREADS + 4 {
        let (stop, started_tx) = (stop_spinning.clone(), started_tx.clone());
        let spin = move || {
            let _ = started_tx.send(());
            let deadline = Instant::now() + WATCHDOG;
            let mut x = 1u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            x
        };
        let finished = finished.clone();
        r.defer_to_thread(spin, move |_, res| {
            assert!(res.is_ok());
            finished.set(finished.get() + 1);
        })
        .unwrap();
    }
    started.recv_timeout(WATCHDOG).unwrap();
    started.recv_timeout(WATCHDOG).unwrap();

    let log = Log::default();
    let addr = listen(&mut r, Rec::echo(&log));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            client(addr, move |mut s| {
                for round in 0..3 {
                    round_trip(&mut s, format!("client {i} round {round}").as_bytes());
                }
            })
        })
        .collect();
    drive_all(&mut r, clients);
    let fired = Rc::new(std::cell::Cell::new(false));
    let f = fired.clone();
    r.call_later(Duration::ZERO, move |_| f.set(true));
    run_until(&mut r, |_| fired.get());
    assert_eq!(finished.get(), 0, "the spinners were busy all along");
    assert_eq!(r.pending_jobs(), THREADS + 4);

    stop_spinning.store(true, Ordering::Relaxed);
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert_eq!(finished.get(), THREADS + 4);
    run_until(&mut r, |_| log.lost_count() == 3);
    log.check_lifecycles();
}

// ----- reactor-level jobs -----

/// `Reactor::defer_to_thread` runs the job on a pool thread and `done` on the
/// reactor thread, where it may queue the next job.
#[test]
fn reactor_defer_to_thread_runs_the_job_off_thread_and_done_on_it() {
    let mut r = Reactor::new().unwrap();
    let here = thread::current().id();
    let rec = Record::default();
    let rec2 = rec.clone();
    let job = || (thread::current().id(), 6 * 7);
    let done = move |r: &mut Reactor, res: Result<(ThreadId, i32), JobError>| {
        let (worker, value) = res.unwrap();
        assert_ne!(worker, thread::current().id(), "the job ran on the reactor");
        assert_eq!(thread::current().id(), here, "done ran off the reactor");
        rec2.borrow_mut().push(format!("first {value}"));
        // Chained: a done may hand out the next job.
        r.defer_to_thread(move || value + 1, record(&rec2, "second"))
            .unwrap();
    };
    r.defer_to_thread(job, done).unwrap();
    assert_eq!(r.pending_jobs(), 1);
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert_eq!(recorded(&rec), ["first 42", "second Ok(43)"]);
}

/// With `busy_poll`, a chain of jobs each handed out by the previous one's result
/// still runs to the end, and a timer due long before the busy-poll window ends
/// still fires: the spin never outlasts the next timer.
#[test]
fn busy_poll_delivers_results_and_timers() {
    let mut r = Reactor::builder().busy_poll(WATCHDOG * 2).build().unwrap();
    fn chain(r: &mut Reactor, left: u32, done: Rc<std::cell::Cell<bool>>) {
        r.defer_to_thread(
            move || left,
            move |r: &mut Reactor, res: Result<u32, JobError>| match res.unwrap() {
                0 => done.set(true),
                n => chain(r, n - 1, done),
            },
        )
        .unwrap();
    }
    let done = Rc::new(std::cell::Cell::new(false));
    chain(&mut r, 100, done.clone());
    run_until(&mut r, |_| done.get());
    let fired = Rc::new(std::cell::Cell::new(false));
    let f = fired.clone();
    r.call_later(Duration::from_millis(1), move |_| f.set(true));
    // One turn: the timer is due long before the busy-poll window ends, and must
    // end the spin (else this turn would take twice the watchdog).
    let start = Instant::now();
    r.run_once(Some(WATCHDOG * 4)).unwrap();
    assert!(fired.get());
    assert!(
        start.elapsed() < WATCHDOG,
        "watchdog: the busy poll outlived a due timer"
    );
}

/// The calling thread's nice value, from `/proc/thread-self/stat` (field 19).
fn thread_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after = &stat[stat.rfind(')').expect("a stat line") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[16].parse().expect("a nice value")
}

#[test]
fn pool_nice_lowers_the_priority_of_pool_threads_only() {
    let mut r = Reactor::builder().pool_nice(5).build().unwrap();
    let base = thread_nice();
    let (tx, rx) = mpsc::channel();
    r.defer_to_thread(thread_nice, move |_: &mut Reactor, nice| {
        tx.send((nice.unwrap(), thread_nice())).unwrap();
    })
    .unwrap();
    let got = recv_turning(&mut r, &rx, 1);
    assert_eq!(got, [((base + 5).min(19), base)]);
}

/// `call_in_thread` runs the job on the pool and forgets it: the way back is a
/// `Handle`. It counts as pending until it is back, and a panic in it is logged
/// without harming the thread.
#[test]
fn call_in_thread_runs_the_job_and_reports_back_through_a_handle() {
    let mut r = Reactor::builder().threads(1).build().unwrap();
    let handle = r.handle();
    let (tx, rx) = mpsc::channel::<ThreadId>();
    r.call_in_thread(|| panic!("forgotten")).unwrap();
    r.call_in_thread(move || {
        let worker = thread::current().id();
        handle
            .call_from_thread(move |_| tx.send(worker).unwrap())
            .unwrap();
    })
    .unwrap();
    assert_eq!(r.pending_jobs(), 2);
    let worker = recv_turning(&mut r, &rx, 1)[0];
    assert_ne!(worker, thread::current().id());
    run_until(&mut r, |r| r.pending_jobs() == 0);
}

// ----- bursts -----

/// 500 reactor-level jobs: every `done` runs once and `pending_jobs` returns to 0.
#[test]
fn a_burst_of_500_results_is_drained() {
    const JOBS: u64 = 500;
    let mut r = Reactor::builder().threads(2).build().unwrap();
    let sum = Rc::new(std::cell::Cell::new(0u64));
    let count = Rc::new(std::cell::Cell::new(0u64));
    for i in 0..JOBS {
        let (sum, count) = (sum.clone(), count.clone());
        r.defer_to_thread(
            move || i * i,
            move |_, v| {
                sum.set(sum.get() + v.unwrap());
                count.set(count.get() + 1);
            },
        )
        .unwrap();
    }
    assert_eq!(r.pending_jobs(), JOBS as usize);
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert_eq!(count.get(), JOBS);
    assert_eq!(sum.get(), (0..JOBS).map(|i| i * i).sum::<u64>());
}

/// One line starts 500 jobs on one connection; their results finish in any order and
/// `InOrder` puts them back in request order on the wire.
#[test]
fn a_burst_of_500_results_on_one_connection_is_answered_in_request_order() {
    const JOBS: u64 = 500;
    let mut r = Reactor::builder().threads(2).build().unwrap();
    let log = Log::default();
    let addr = listen_lines(&mut r, &log, None, |p, cx, _| {
        for i in 0..JOBS {
            let ticket = p.order.ticket();
            // Uneven work, so that the two threads finish out of order.
            let job = move || (0..(i % 7) * 10_000).fold(i, |a, b| std::hint::black_box(a ^ b));
            let done = move |p: &mut Lines, cx: &mut Context<'_>, v: Result<u64, JobError>| {
                v.unwrap();
                p.answer(cx, ticket, i.to_string());
            };
            cx.defer_to_thread(job, done).unwrap();
        }
    });
    let want: String = (0..JOBS).map(|i| format!("{i}\n")).collect();
    let len = want.len();
    let c = client(addr, move |mut s| {
        s.write_all(b"burst\n").unwrap();
        String::from_utf8(read_n(&mut s, len)).unwrap()
    });
    assert_eq!(drive(&mut r, c), want);
    run_until(&mut r, |r| r.pending_jobs() == 0);
    run_until(&mut r, |_| log.lost_count() == 1);
    log.check_lifecycles();
}

/// `can_defer_to_thread` tells, before anything is built, whether a job would be
/// accepted: false once the queue is full, true again when it drains.
#[test]
fn can_defer_to_thread_answers_before_the_job_is_built() {
    let mut r = Reactor::builder()
        .threads(1)
        .pool_queue_jobs(1)
        .build()
        .unwrap();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    assert!(r.can_defer_to_thread());
    r.call_in_thread(move || {
        started_tx.send(()).unwrap();
        let _ = gate_rx.recv();
    })
    .unwrap();
    started_rx.recv_timeout(WATCHDOG).unwrap(); // the one thread is busy
    assert!(r.can_defer_to_thread(), "the queue is still empty");
    r.call_in_thread(|| {}).unwrap();
    assert!(!r.can_defer_to_thread(), "the queue is full");
    assert!(r.call_in_thread(|| {}).is_err());
    drop(gate_tx);
    run_until(&mut r, |r| r.pending_jobs() == 0);
    assert!(r.can_defer_to_thread());
    r.stop();
    run_until_stopped(&mut r);
}
