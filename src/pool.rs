//! Worker threads that take CPU-heavy or blocking work off the reactor thread.
//!
//! The pool knows nothing about the reactor: it runs boxed closures on std threads from
//! a bounded FIFO queue. The reactor wraps each job so that its result (or its panic)
//! comes back through the reactor's inbox and wakes the poller; see
//! `Context::defer_to_thread`.
//!
//! Guarantees: a full queue refuses new work instead of growing; threads start on first
//! use; shutdown drops the jobs not yet started (returning their keys so that their
//! owners can be told) and waits, up to a deadline, for the running ones.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A job as the pool sees it.
pub(crate) type Work = Box<dyn FnOnce() + Send>;

/// Why a job handed to the pool produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobError {
    /// The job panicked; the message is the panic's. The worker thread survives.
    Panicked(String),
    /// The reactor stopped before the job started; it never ran.
    Cancelled,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Panicked(m) => write!(f, "job panicked: {m}"),
            JobError::Cancelled => f.write_str("job cancelled: the reactor stopped"),
        }
    }
}

impl std::error::Error for JobError {}

/// The pool refused a job: its queue is full, the reactor is stopping, or the
/// connection the job was for is gone.
///
/// The refused job is handed back, never dropped: `defer_to_thread` refuses with
/// `PoolBusy<(J, D)>` (the job and its `done` callback) and
/// [`Reactor::call_in_thread`](crate::Reactor::call_in_thread) with `PoolBusy<J>`;
/// [`into_inner`](Self::into_inner) takes them back, to submit again later or to
/// recover what the job owns (an open file, say). The caller decides what to do:
/// answer "busy", pause reading until results drain, or retry later.
///
/// `PoolBusy` with nothing handed back is `PoolBusy<()>`, and written alone as a
/// value it is still that value (`Err(PoolBusy)`), so code written before jobs came
/// back compiles unchanged.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// use twistor::{PoolBusy, Reactor};
///
/// let mut reactor = Reactor::new()?;
/// reactor.stop(); // a stopping reactor refuses every job
/// let (tx, rx) = mpsc::channel();
/// let refused = reactor.call_in_thread(move || tx.send("ran").unwrap()).unwrap_err();
/// let job = refused.into_inner(); // the job itself, with what it owns
/// job();
/// assert_eq!(rx.recv().unwrap(), "ran");
/// assert_eq!(PoolBusy::new(()), PoolBusy);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PoolBusy<T = ()> {
    job: T,
}

/// `PoolBusy` as a value, as it was when it carried nothing: `Err(PoolBusy)` builds
/// and matches a refusal with nothing handed back. Hidden from the docs, where it
/// would make every link to the type ambiguous.
#[doc(hidden)]
#[allow(non_upper_case_globals)]
pub const PoolBusy: PoolBusy = PoolBusy::new(());

impl<T> PoolBusy<T> {
    /// A refusal that hands `job` back.
    pub const fn new(job: T) -> PoolBusy<T> {
        PoolBusy { job }
    }

    /// The refused job, to submit again or to take apart.
    pub fn into_inner(self) -> T {
        self.job
    }
}

// By hand, not derived: the job is usually a closure, which is not `Debug`, and
// `unwrap` on a refusal must still compile.
impl<T> fmt::Debug for PoolBusy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PoolBusy")
    }
}

impl<T> fmt::Display for PoolBusy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the thread pool's queue is full")
    }
}

impl<T> std::error::Error for PoolBusy<T> {}

/// How long a worker that has just finished a job watches for the next one before it
/// parks. A job submitted in that window starts without a wake-up (a futex wake and a
/// context switch, ~8 µs on a VM): what a reactor handing out a stream of short jobs,
/// one per result, meets. One worker at a time spins, so a small machine keeps a core
/// for the reactor; it costs at most this much CPU per burst of jobs, never while the
/// pool is idle.
const SPIN: Duration = Duration::from_micros(50);

struct State {
    queue: VecDeque<(u64, Work)>,
    running: usize,
    /// Workers parked on `work`: the only ones a new job has to wake.
    parked: usize,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    /// `state.queue.len()`, readable without the lock by spinning workers.
    queued: AtomicUsize,
    /// A worker is spinning (at most one does).
    spinning: AtomicBool,
    /// Signalled when work is queued for a parked worker, or shutdown begins.
    work: Condvar,
    /// Signalled when a job finishes during shutdown (`join` waits on it).
    finished: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock, so a poisoned lock only means a panic in our own
        // short critical sections, which leave the state consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A fixed set of worker threads over one bounded queue.
pub(crate) struct Pool {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
    size: usize,
    capacity: usize,
    /// Added to each worker's nice value when it starts (`Builder::pool_nice`).
    nice: i32,
}

impl Pool {
    /// A pool of `size` threads (started on first use, `nice` added to their nice
    /// value) and a queue of `capacity` jobs.
    pub(crate) fn new(size: usize, capacity: usize, nice: i32) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    running: 0,
                    parked: 0,
                    shutdown: false,
                }),
                queued: AtomicUsize::new(0),
                spinning: AtomicBool::new(false),
                work: Condvar::new(),
                finished: Condvar::new(),
            }),
            threads: Vec::new(),
            size: size.max(1),
            capacity: capacity.max(1),
            nice,
        }
    }

    /// Jobs waiting for a thread.
    pub(crate) fn queued(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Jobs running now.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.inner.lock().running
    }

    /// Whether a `submit` now would be accepted. Only the owner submits and workers
    /// only take jobs off, so a true answer holds until the owner's next submit.
    pub(crate) fn has_room(&self) -> bool {
        let state = self.inner.lock();
        !state.shutdown && state.queue.len() < self.capacity
    }

    /// Queues `work`, tagged with `key`.
    pub(crate) fn submit(&mut self, key: u64, work: Work) -> Result<(), PoolBusy> {
        let wake = {
            let mut state = self.inner.lock();
            if state.shutdown || state.queue.len() >= self.capacity {
                return Err(PoolBusy);
            }
            state.queue.push_back((key, work));
            self.inner
                .queued
                .store(state.queue.len(), Ordering::Release);
            // A worker that is running or spinning takes the job without being woken.
            state.parked > 0
        };
        if wake {
            self.inner.work.notify_one();
        }
        self.start_threads();
        Ok(())
    }

    fn start_threads(&mut self) {
        while self.threads.len() < self.size {
            let inner = Arc::clone(&self.inner);
            let name = format!("twistor-pool-{}", self.threads.len());
            let nice = self.nice;
            match std::thread::Builder::new().name(name).spawn(move || {
                renice(nice);
                worker(&inner)
            }) {
                Ok(t) => self.threads.push(t),
                Err(e) => {
                    // Fewer threads than asked still run every job; none at all is
                    // caught by the caller when no result ever comes.
                    log::error!("starting a pool thread failed: {e}");
                    break;
                }
            }
        }
    }

    /// Stops the pool: drops the queued jobs and returns their keys, then waits up to
    /// `wait` for running jobs (see [`join`](Self::join)).
    pub(crate) fn shutdown(&mut self, wait: Option<Duration>) -> Vec<u64> {
        let keys = self.close();
        self.join(wait);
        keys
    }

    /// Refuses new work and drops the queued jobs, returning their keys. Running jobs
    /// go on.
    pub(crate) fn close(&mut self) -> Vec<u64> {
        let dropped: Vec<(u64, Work)> = {
            let mut state = self.inner.lock();
            state.shutdown = true;
            self.inner.queued.store(0, Ordering::Release);
            state.queue.drain(..).collect()
        };
        self.inner.work.notify_all();
        dropped.into_iter().map(|(k, _)| k).collect()
    }

    /// After [`close`](Self::close): waits up to `wait` for running jobs (not at all
    /// with `None`) and joins the threads. Threads still busy after the deadline are
    /// left to finish on their own.
    pub(crate) fn join(&mut self, wait: Option<Duration>) {
        if let Some(wait) = wait {
            let deadline = Instant::now() + wait;
            let mut state = self.inner.lock();
            while state.running > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    log::warn!("{} pool jobs still running at shutdown", state.running);
                    break;
                }
                state = self
                    .inner
                    .finished
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let all_done = state.running == 0;
            drop(state);
            if all_done {
                for t in self.threads.drain(..) {
                    let _ = t.join();
                }
            }
        }
        // Threads not joined are detached: they exit once their job ends.
        self.threads.clear();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.inner.lock().shutdown {
            self.shutdown(None);
        }
    }
}

fn worker(inner: &Inner) {
    let mut state = inner.lock();
    loop {
        if let Some((_, work)) = state.queue.pop_front() {
            inner.queued.store(state.queue.len(), Ordering::Release);
            state.running += 1;
            drop(state);
            // The reactor's wrapper catches the job's panic; this guards against a
            // panic in the wrapper itself so that the thread and the count survive.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            state = inner.lock();
            state.running -= 1;
            if state.shutdown {
                inner.finished.notify_all();
            } else if state.queue.is_empty() {
                drop(state);
                spin_for_work(inner);
                state = inner.lock();
            }
        } else if state.shutdown {
            return;
        } else {
            state.parked += 1;
            state = inner.work.wait(state).unwrap_or_else(|e| e.into_inner());
            state.parked -= 1;
        }
    }
}

/// Adds `by` to the calling thread's nice value. On Linux `setpriority(PRIO_PROCESS,
/// 0)` applies to the calling thread alone; elsewhere it would renice the process, so
/// it is not attempted. Lowering the nice value (a negative `by`) needs privileges; a
/// refusal is logged and the thread runs as it is.
fn renice(by: i32) {
    if by == 0 || !cfg!(any(target_os = "linux", target_os = "android")) {
        return;
    }
    let result = rustix::process::getpriority_process(None)
        .and_then(|now| rustix::process::setpriority_process(None, now.saturating_add(by)));
    if let Err(e) = result {
        log::warn!("changing a pool thread's nice value by {by} failed: {e}");
    }
}

/// Watches for a queued job for up to [`SPIN`], without the lock, unless another
/// worker is already watching.
fn spin_for_work(inner: &Inner) {
    if inner.spinning.swap(true, Ordering::AcqRel) {
        return;
    }
    let start = Instant::now();
    while inner.queued.load(Ordering::Acquire) == 0 && start.elapsed() < SPIN {
        for _ in 0..32 {
            std::hint::spin_loop();
        }
    }
    inner.spinning.store(false, Ordering::Release);
}

/// Puts results that complete out of order back into request order.
///
/// Pool jobs finish in completion order. A connection that must answer in request
/// order (a pipelined protocol) takes a ticket per request with [`ticket`](Self::ticket),
/// hands each result to [`complete`](Self::complete), and writes what
/// [`pop_ready`](Self::pop_ready) returns. Replies that need no job (`ping`) take a
/// ticket too and complete at once, so they wait their turn.
///
/// # Examples
///
/// ```
/// use twistor::InOrder;
///
/// let mut order = InOrder::new();
/// let a = order.ticket();
/// let b = order.ticket();
/// order.complete(b, "second");
/// assert_eq!(order.pop_ready(), None); // `a` is not back yet
/// order.complete(a, "first");
/// assert_eq!(order.pop_ready(), Some("first"));
/// assert_eq!(order.pop_ready(), Some("second"));
/// ```
#[derive(Debug)]
pub struct InOrder<T> {
    next_ticket: u64,
    next_out: u64,
    done: BTreeMap<u64, T>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> InOrder<T> {
    /// An empty sequence.
    pub fn new() -> Self {
        InOrder {
            next_ticket: 0,
            next_out: 0,
            done: BTreeMap::new(),
        }
    }

    /// A ticket for the next request.
    pub fn ticket(&mut self) -> u64 {
        let t = self.next_ticket;
        self.next_ticket += 1;
        t
    }

    /// Records the result for `ticket`.
    pub fn complete(&mut self, ticket: u64, value: T) {
        self.done.insert(ticket, value);
    }

    /// The next result in request order, if it is back.
    pub fn pop_ready(&mut self) -> Option<T> {
        let v = self.done.remove(&self.next_out)?;
        self.next_out += 1;
        Some(v)
    }

    /// Requests ticketed but not yet handed out by `pop_ready`.
    pub fn pending(&self) -> u64 {
        self.next_ticket - self.next_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_jobs_on_worker_threads() {
        let mut pool = Pool::new(2, 16, 0);
        let (tx, rx) = mpsc::channel();
        for i in 0..10u64 {
            let tx = tx.clone();
            pool.submit(i, Box::new(move || tx.send(i).unwrap()))
                .unwrap();
        }
        let mut got: Vec<u64> = (0..10).map(|_| rx.recv().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert!(pool.shutdown(Some(Duration::from_secs(10))).is_empty());
    }

    #[test]
    fn full_queue_refuses_work() {
        let mut pool = Pool::new(1, 2, 0);
        let (block_tx, block_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel();
        pool.submit(
            0,
            Box::new(move || {
                started_tx.send(()).unwrap();
                let _ = block_rx.recv();
            }),
        )
        .unwrap();
        started_rx.recv().unwrap(); // the one thread is now busy
        pool.submit(1, Box::new(|| {})).unwrap();
        pool.submit(2, Box::new(|| {})).unwrap();
        assert_eq!(pool.submit(3, Box::new(|| {})), Err(PoolBusy));
        assert_eq!(pool.queued(), 2);
        drop(block_tx);
        pool.shutdown(Some(Duration::from_secs(10)));
    }

    #[test]
    fn shutdown_drops_queued_and_waits_for_running() {
        let mut pool = Pool::new(1, 8, 0);
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        pool.submit(
            7,
            Box::new(move || {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                done_tx.send(()).unwrap();
            }),
        )
        .unwrap();
        started_rx.recv().unwrap();
        pool.submit(8, Box::new(|| panic!("must never run")))
            .unwrap();
        pool.submit(9, Box::new(|| panic!("must never run")))
            .unwrap();
        // Let the running job finish only once shutdown has dropped the queue, so the
        // worker cannot pick up the queued jobs first.
        let inner = Arc::clone(&pool.inner);
        let stopper = std::thread::spawn(move || {
            let dropped = pool.shutdown(Some(Duration::from_secs(30)));
            (pool, dropped)
        });
        while !inner.lock().shutdown {
            std::thread::yield_now();
        }
        go_tx.send(()).unwrap();
        let (mut pool, dropped) = stopper.join().unwrap();
        assert_eq!(dropped, [8, 9]);
        done_rx.recv().unwrap();
        assert_eq!(pool.running(), 0);
        assert_eq!(pool.submit(10, Box::new(|| {})), Err(PoolBusy));
    }

    #[test]
    fn a_panicking_wrapper_does_not_kill_the_thread() {
        let mut pool = Pool::new(1, 8, 0);
        let (tx, rx) = mpsc::channel();
        pool.submit(0, Box::new(|| panic!("boom"))).unwrap();
        pool.submit(1, Box::new(move || tx.send(()).unwrap()))
            .unwrap();
        rx.recv().unwrap();
        pool.shutdown(Some(Duration::from_secs(10)));
    }

    #[test]
    fn in_order_releases_in_request_order() {
        let mut o = InOrder::new();
        let t: Vec<u64> = (0..4).map(|_| o.ticket()).collect();
        o.complete(t[2], 'c');
        o.complete(t[1], 'b');
        assert_eq!(o.pop_ready(), None);
        o.complete(t[0], 'a');
        assert_eq!(o.pop_ready(), Some('a'));
        assert_eq!(o.pop_ready(), Some('b'));
        assert_eq!(o.pop_ready(), Some('c'));
        assert_eq!(o.pop_ready(), None);
        assert_eq!(o.pending(), 1);
    }
}
