//! The reactor: one `mio::Poll`, the connection table, timers and the inbox.
//!
//! See [`Reactor`] for the contract: what one turn does, in what order, and what a
//! callback may do.

// Maintainers' notes.
//
// `Reactor` is `events` + `Core`. `Core` holds all state and implements `Driver`, so a
// `Context` is just `&mut Core` plus the connection id. A protocol is taken out of its
// slot while its callback runs, which is what lets the callback reach every other
// connection through the same `&mut Core`.
//
// Nothing that calls back into a protocol happens inside another callback. Such effects
// (a close, a `pause_producing` owed, a write error on another connection) set a flag on
// the connection and put it in `dirty`; `settle` carries them out after the callback
// returns. Only `settle`, the event handlers and the timer phase invoke callbacks.

mod accept;
mod builder;
mod connect;
mod datagram;
mod driver;
mod handle;
mod jobs;
mod stats;
mod table;

use accept::ACCEPT_BACKOFF_MIN;
pub use builder::Builder;
use builder::Config;
pub use datagram::{DatagramContext, DatagramProtocol, DEFAULT_MAX_DATAGRAM_BYTES};
pub use handle::{Handle, ReactorGone};
use jobs::{JobDone, PendingJob};
pub use stats::{ClosedByReason, Stats};
pub use table::{Accepted, ConnId, DatagramId, ListenerId};

use std::any::{Any, TypeId};
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr};
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Waker};
use slab::Slab;

use crate::net::{self, ListenOptions};
use crate::pool::{JobError, Pool, PoolBusy, Work};
use crate::protocol::{Addr, Factory, Protocol, Reason};
use crate::timer::{TimerId, TimerQueue};
use crate::transport::{
    bind, unwritten, BoundCall, BoundDone, ConnSettings, Context, Driver, JobFn, JobResult, Push,
    WriteLimits, MAX_IOVECS,
};
use handle::Shared;
use table::{
    conn_token, decode, listener_token, AnyFactory, Conn, Handoff, ListenSocket, Listener, Source,
    Stream, MAX_SLOTS, WAKER_TOKEN,
};

/// A write at least this large is not corked: it goes out at once (behind anything
/// corked before it), saving a copy. It is large enough that its system call is
/// already well used; a copy of it would cost less than a syscall, but buy nothing
/// unless more writes to the same connection followed in the turn.
const DIRECT_WRITE_BYTES: usize = 4096;

/// What the timer queue carries.
enum Task {
    Call(Box<dyn FnOnce(&mut Reactor)>),
    Bound(ConnId, BoundCall),
    Idle(ConnId),
    CloseDeadline(ConnId),
    LingerDeadline(ConnId),
    ConnectTimeout(ConnId),
    AcceptRetry(ListenerId),
    ShutdownDeadline,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stopping {
    No,
    Requested,
    Draining,
}

/// Where a listener is bound, returned by [`Reactor::listen_tcp`].
#[derive(Clone, Debug)]
pub struct Listening {
    /// The listener's id, for [`Reactor::stop_listening`].
    pub id: ListenerId,
    /// The address actually bound (the real port when port 0 was asked for).
    pub local_addr: SocketAddr,
}

/// A single-threaded event loop: listeners, connections, timers and an inbox for other
/// threads, all driven by one `mio::Poll`.
///
/// # One turn
///
/// [`run_once`](Reactor::run_once) is one turn and [`run`](Reactor::run) repeats it:
///
/// 1. Compute the poll timeout: zero if work is pending (a connection cut short by its
///    read budget, a resumed reader, a failed connect to report), else until the
///    next timer, else the caller's timeout.
/// 2. Poll, then read the clock once ("now" for idle bookkeeping).
/// 3. Handle I/O events in the order the kernel gave them. For one connection:
///    finish a pending connect, then drain queued writes, then read until the kernel
///    has no more or the read budget is spent, calling `data_received` per chunk.
///    Accept until the kernel has no more or the accept budget is spent.
/// 4. Serve the work carried over from step 1.
/// 5. Run the closures other threads sent ([`Handle::call_from_thread`]) that were
///    queued when this step began, in FIFO order.
/// 6. Read the clock again and run the timers due by then, in deadline order (FIFO for
///    equal deadlines). A timer set during this step waits for the next turn, even
///    with a zero delay.
///
/// After every callback the reactor settles what the callback asked for: closes take
/// effect, watermark notices are delivered, `connection_lost` runs. A callback never
/// sees another callback run inside it.
///
/// # What a callback may do
///
/// Anything through its [`Context`] or, for reactor-level closures, `&mut Reactor`:
/// write to any connection, close any connection, set and cancel timers, listen,
/// connect, stop. Nothing may block: a blocking call stalls every connection.
///
/// # Spurious wakeups
///
/// A readiness event with nothing behind it (`WouldBlock`) is ignored; it never reaches
/// a protocol.
///
/// # Stopping and dropping
///
/// [`stop`](Reactor::stop) closes the listeners, asks every connection to flush and
/// close, aborts what is left after the shutdown timeout, and makes `run` return once
/// every connection has had its `connection_lost`. Dropping a reactor aborts the
/// connections it still has, each getting `connection_lost` with
/// [`Reason::Aborted`].
///
/// # Examples
///
/// ```no_run
/// use twistor::{Context, Protocol, Reactor};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
///         cx.write(data);
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), |_: &_| Some(Echo))?;
/// println!("listening on {}", port.local_addr);
/// reactor.stop_on_signals()?;
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Reactor {
    events: Events,
    core: Core,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("connections", &self.core.conns.len())
            .field("listeners", &self.core.listeners.len())
            .field("timers", &self.core.timers.len())
            .finish()
    }
}

pub(crate) struct Core {
    poll: Poll,
    config: Config,
    conns: Slab<Conn>,
    listeners: Slab<Listener>,
    datagrams: Slab<datagram::Datagram>,
    timers: TimerQueue<Task>,
    /// Shared by every connection: an idle connection holds no read buffer.
    read_buf: Vec<u8>,
    shared: Arc<Shared>,
    /// Connections with effects to carry out once the current callback returns.
    dirty: Vec<ConnId>,
    /// Connections whose small writes wait for the end of the turn (`Conn::corked`).
    corked: Vec<ConnId>,
    /// Sources to serve next turn without waiting for an event.
    ready: Vec<Source>,
    /// Emptied allocations for `corked` and `ready`, swapped in while a turn walks
    /// them (see [`Spare`]), so the steady state allocates nothing for either.
    spare_corked: Spare<ConnId>,
    spare_ready: Spare<Source>,
    /// Outgoing connections that failed before getting a slot, reported next turn.
    failed: Vec<(ConnId, Box<dyn Protocol>, io::Error)>,
    now: Instant,
    next_generation: u32,
    stopping: Stopping,
    accept_backoff: Duration,
    /// The graceful stop's deadline, cancelled when the stop finishes sooner (else it
    /// would abort the connections of a later `run`).
    shutdown_deadline: Option<TimerId>,
    /// When the graceful stop in progress must be over.
    stop_deadline: Option<Instant>,
    /// Started on the first `defer_to_thread`.
    pool: Option<Pool>,
    /// Jobs handed to the pool whose results are not back yet.
    jobs: Slab<PendingJob>,
    next_job_generation: u32,
    counters: stats::Counters,
    /// When the last max_connections refusal was logged (they are rate-limited).
    refusal_logged: Option<Instant>,
    signals: Option<signal_hook::iterator::Handle>,
    /// Set by the signal thread when a signal starts a stop, cleared when the stop
    /// finishes: a signal that finds it set exits the process.
    signal_stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Reactor {
    /// A reactor with the default limits.
    ///
    /// # Errors
    /// Creating the poller failed.
    pub fn new() -> io::Result<Reactor> {
        Builder::default().build()
    }

    /// Starts configuring a reactor.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A handle for other threads: `call_from_thread` and `stop`.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.core.shared),
        }
    }

    /// Serves standard input and output as one connection with `protocol`, as
    /// Twisted's `StandardIO`: `data_received` gets what arrives on stdin, `read_eof`
    /// its end, and writes go to stdout. A chat client reads the keyboard and its
    /// socket this way on one thread, relaying with [`Context::write_to`].
    ///
    /// stdin and stdout are non-blocking while the connection lives and are put back
    /// when it closes. A regular file on either side works too (it never blocks).
    ///
    /// # Errors
    /// Duplicating or registering the descriptors failed.
    pub fn stdio<P: Protocol>(&mut self, protocol: P) -> io::Result<ConnId> {
        let stdio = crate::stdio::Stdio::new()?;
        let id = self
            .core
            .insert_conn(
                Stream::Stdio(Box::new(stdio)),
                Addr::Stdio,
                Box::new(protocol),
                false,
            )
            .map_err(|(e, _)| e)?;
        log::debug!("{id}: stdio");
        self.core.make(id);
        if let Some(Stream::Stdio(s)) = self.core.conn(id).map(|c| &c.stream) {
            if !s.input_polled() {
                // A regular file gives no readiness events: read it from the
                // carried-over list until EOF.
                self.core.mark_ready(id);
            }
        }
        self.core.settle();
        Ok(id)
    }

    /// Runs `f` on this thread after `delay`. The returned id cancels or resets it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twistor::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// reactor.call_later(Duration::from_millis(1), |r: &mut Reactor| r.stop());
    /// reactor.run()?; // returns once the timer has stopped it
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn call_later<F>(&mut self, delay: Duration, f: F) -> TimerId
    where
        F: FnOnce(&mut Reactor) + 'static,
    {
        let deadline = Instant::now() + delay;
        self.core.timers.insert(deadline, Task::Call(Box::new(f)))
    }

    /// Cancels a timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.core.cancel_timer(timer)
    }

    /// Moves a pending timer to `delay` from now; false if it already fired or was
    /// cancelled.
    pub fn reset_timer(&mut self, timer: TimerId, delay: Duration) -> bool {
        self.core.reset_timer(timer, delay)
    }

    /// Runs `f` now with connection `id`'s protocol, as if it were one of its
    /// callbacks. False if the connection is gone or runs another protocol type.
    pub fn call_protocol<P, F>(&mut self, id: ConnId, f: F) -> bool
    where
        P: Protocol,
        F: FnOnce(&mut P, &mut Context<'_>) + 'static,
    {
        let matches = self
            .core
            .conn(id)
            .and_then(|c| c.protocol.as_deref())
            .is_some_and(|p| protocol_type(p) == TypeId::of::<P>());
        if matches {
            self.core.run_bound(id, bind(f));
            self.core.settle();
        }
        matches
    }

    /// Sends `data` to connection `id`; false if it is gone or dropped the bytes.
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        let ok = self.core.write(id, data);
        self.core.settle();
        ok
    }

    /// Flushes, then closes connection `id`.
    pub fn lose_connection(&mut self, id: ConnId) {
        self.core.lose_connection(id);
        self.core.settle();
    }

    /// Closes connection `id` now, dropping what it has queued.
    pub fn abort_connection(&mut self, id: ConnId) {
        self.core.abort_connection(id);
        self.core.settle();
    }

    /// False if connection `id` is closing or gone.
    pub fn is_open(&self, id: ConnId) -> bool {
        self.core.is_open(id)
    }

    /// Open connections (including those connecting or closing).
    pub fn connection_count(&self) -> usize {
        self.core.conns.len()
    }

    /// Pending timers, the reactor's own included (idle, close and connect deadlines).
    pub fn timer_count(&self) -> usize {
        self.core.timers.len()
    }

    /// Turns until [`stop`](Self::stop) (from a callback, a timer, or a [`Handle`]) has
    /// finished: socketserver's `serve_forever`.
    ///
    /// # Errors
    /// Polling failed, which leaves the reactor unusable.
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            self.turn(None)?;
            if self.stop_finished() {
                return Ok(());
            }
        }
    }

    /// If a requested stop has run its course: joins the pool (waiting for running
    /// jobs if so configured) and runs their results' callbacks, which the jobs put in
    /// the inbox before they ended, so that none is left behind when `run` returns.
    fn stop_finished(&mut self) -> bool {
        if !self.core.stop_finished() {
            return false;
        }
        self.run_inbox();
        true
    }

    /// One turn, waiting at most `timeout` for events (`None`: until something
    /// happens): socketserver's `handle_request`. Returns true while the reactor has
    /// not finished a requested stop.
    ///
    /// # Errors
    /// Polling failed.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        self.turn(timeout)?;
        Ok(!self.stop_finished())
    }

    /// Stops gracefully: no more accepting, every connection flushes and closes
    /// (aborted after the shutdown timeout), then `run` returns. Safe to call from any
    /// callback and more than once.
    pub fn stop(&mut self) {
        self.core.stop();
    }

    /// Stops gracefully on SIGINT or SIGTERM (opt-in). A second signal while that
    /// stop is under way exits the process at once, with status 130 for SIGINT or
    /// 143 for SIGTERM (128 + the signal, as a shell reports it): what a user who
    /// presses Ctrl-C twice expects when a graceful stop is slow.
    ///
    /// # Errors
    /// The signal handlers could not be installed.
    pub fn stop_on_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use std::sync::atomic::{AtomicBool, Ordering};
        if self.core.signals.is_some() {
            return Ok(());
        }
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        self.core.signals = Some(signals.handle());
        let stopping = Arc::new(AtomicBool::new(false));
        self.core.signal_stop = Some(Arc::clone(&stopping));
        let handle = self.handle();
        std::thread::Builder::new()
            .name("twistor-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if stopping.swap(true, Ordering::SeqCst) {
                        log::warn!("signal {signal} during the graceful stop: exiting now");
                        std::process::exit(128 + signal);
                    }
                    log::info!("signal {signal}: stopping");
                    handle.stop();
                }
            })?;
        Ok(())
    }

    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.core.stopping == Stopping::Requested {
            self.cancel_queued_jobs();
            self.core.begin_shutdown();
        }
        let writes = self.core.counters.write_calls;
        // Writes made between turns (`write_to` from outside the loop) go out before
        // the poll can block.
        self.core.flush_corked();
        let wait = self.core.poll_timeout(timeout);
        self.poll(wait)?;
        let core = &mut self.core;
        core.now = Instant::now();
        let mut woken = false;
        for event in self.events.iter() {
            match decode(event.token()) {
                Source::Waker => woken = true,
                Source::Listener(id) => core.accept(id),
                Source::Datagram(id) => {
                    core.datagram_ready(id);
                    core.settle_datagrams();
                }
                Source::Conn(id) => {
                    let error = event.is_error();
                    if event.is_writable() || error {
                        core.write_ready(id);
                    }
                    if event.is_readable() || event.is_read_closed() || error {
                        // After FIN or an error no further edge will come, so read
                        // to the end rather than stopping at a short read.
                        core.read_ready(id, event.is_read_closed() || error);
                    }
                }
            }
            core.settle();
        }
        core.serve_carried_over();
        if woken {
            self.run_inbox();
        }
        self.run_timers();
        self.core.flush_corked();
        if self.core.counters.write_calls != writes {
            self.core.pace(timeout);
        }
        Ok(())
    }

    /// Polls for events, waiting at most `timeout` (`None`: until one comes), after
    /// busy-polling for up to the builder's `busy_poll`.
    fn poll(&mut self, mut timeout: Option<Duration>) -> io::Result<()> {
        let spin = self.core.config.busy_poll;
        if !spin.is_zero() && timeout != Some(Duration::ZERO) {
            let start = Instant::now();
            let spin = timeout.map_or(spin, |t| t.min(spin));
            loop {
                self.poll_once(Some(Duration::ZERO))?;
                if !self.events.is_empty() {
                    return Ok(());
                }
                if start.elapsed() >= spin {
                    break;
                }
                std::hint::spin_loop();
            }
            timeout = timeout.map(|t| t.saturating_sub(start.elapsed()));
        }
        self.poll_once(timeout)
    }

    fn poll_once(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.core.poll.poll(&mut self.events, timeout) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
            _ => Ok(()),
        }
    }

    fn run_inbox(&mut self) {
        for job in self.core.shared.take() {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| job(self))) {
                log::error!(
                    "call_from_thread closure panicked: {}",
                    panic_message(&*panic)
                );
            }
            self.core.settle();
        }
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        self.core.now = now;
        let mark = self.core.timers.seq_mark();
        while let Some((timer, task)) = self.core.timers.pop_due(now, mark) {
            match task {
                Task::Call(f) => {
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(self))) {
                        log::error!("timer callback panicked: {}", panic_message(&*panic));
                    }
                }
                Task::Bound(id, call) => {
                    self.core.untrack_timer(id, timer);
                    self.core.run_bound(id, call);
                }
                Task::Idle(id) => {
                    self.core.untrack_timer(id, timer);
                    self.core.check_idle(id);
                }
                Task::CloseDeadline(id) | Task::LingerDeadline(id) => {
                    self.core.untrack_timer(id, timer);
                    self.core.close_deadline(id);
                }
                Task::ConnectTimeout(id) => {
                    self.core.untrack_timer(id, timer);
                    let err = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    self.core.fail_connect(id, err);
                }
                Task::AcceptRetry(id) => {
                    if let Some(l) = self.core.listener_mut(id) {
                        l.backoff = None;
                    }
                    self.core.accept(id);
                }
                Task::ShutdownDeadline => self.core.abort_all(Reason::TimedOut),
            }
            self.core.settle();
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        self.core.shared.close();
        if let Some(signals) = self.core.signals.take() {
            signals.close();
        }
        let listeners: Vec<ListenerId> = self
            .core
            .listeners
            .iter()
            .map(|(i, l)| ListenerId {
                index: i as u32,
                generation: l.generation,
            })
            .collect();
        for id in listeners {
            self.core.remove_listener(id);
        }
        for id in self.core.datagram_ids() {
            self.core.close_datagram(id);
        }
        self.core.settle_datagrams();
        self.cancel_queued_jobs();
        self.core.abort_all(Reason::Aborted);
        self.core.settle();
        self.core.report_failed();
        if let Some(mut pool) = self.core.pool.take() {
            pool.join(None);
        }
    }
}

fn protocol_type(p: &dyn Protocol) -> TypeId {
    let any: &dyn Any = p;
    any.type_id()
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

impl Core {
    fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns
            .get(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    fn listener_mut(&mut self, id: ListenerId) -> Option<&mut Listener> {
        self.listeners
            .get_mut(id.index as usize)
            .filter(|l| l.generation == id.generation)
    }

    fn next_generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.conn_mut(id) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    fn mark_ready(&mut self, id: ConnId) {
        if let Some(c) = self.conn_mut(id) {
            if !c.in_ready {
                c.in_ready = true;
                self.ready.push(Source::Conn(id));
            }
        }
    }

    /// After a turn that wrote: sleeps for the builder's `coalesce_writes` window,
    /// less if a timer is due sooner or the turn's caller (`run_once`) allowed less,
    /// not at all if work is already waiting, so that the next turn gathers what
    /// arrives meanwhile.
    fn pace(&mut self, limit: Option<Duration>) {
        let window = self.config.coalesce_writes;
        if window.is_zero() {
            return;
        }
        let window = limit.map_or(window, |t| t.min(window));
        if let Some(nap) = self.poll_timeout(Some(window)).filter(|t| !t.is_zero()) {
            std::thread::sleep(nap);
        }
    }

    fn poll_timeout(&mut self, timeout: Option<Duration>) -> Option<Duration> {
        if !self.ready.is_empty()
            || !self.failed.is_empty()
            || self.stop_done()
            || self.stopping == Stopping::Requested
        {
            return Some(Duration::ZERO);
        }
        match self.timers.next_deadline() {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                Some(timeout.map_or(wait, |t| t.min(wait)))
            }
            None => timeout,
        }
    }

    // ----- reading and writing -----

    fn read_ready(&mut self, id: ConnId, to_the_end: bool) {
        let mut budget = self.config.read_budget_bytes;
        let now = self.now;
        loop {
            let mut buf = std::mem::take(&mut self.read_buf);
            let Some(c) = self.conn_mut(id) else {
                self.read_buf = buf;
                return;
            };
            c.in_ready = false;
            if c.lingering {
                self.read_buf = buf;
                return self.discard_input(id, budget);
            }
            if c.resumed && c.wants_read() {
                c.resumed = false;
                self.read_buf = buf;
                self.invoke(id, |p, cx| p.reading_resumed(cx));
                continue;
            }
            if !c.wants_read() {
                self.read_buf = buf;
                return;
            }
            let result = c.stream.read(&mut buf);
            match result {
                Ok(0) => {
                    c.read_eof = true;
                    let write_shut = c.write_shut;
                    self.read_buf = buf;
                    log::trace!("{id}: read EOF");
                    if write_shut {
                        // Both directions are closed now.
                        self.close_with(id, Reason::Done);
                    } else {
                        self.invoke(id, |p, cx| p.read_eof(cx));
                    }
                    return;
                }
                Ok(n) => {
                    c.last_read = now;
                    log::trace!("{id}: read {n} bytes");
                    self.invoke(id, |p, cx| p.data_received(cx, &buf[..n]));
                    let short = n < buf.len();
                    self.read_buf = buf;
                    budget = budget.saturating_sub(n);
                    if short && !to_the_end {
                        // The kernel had no more: a new edge comes with new data.
                        return;
                    }
                    if budget == 0 {
                        self.mark_ready(id);
                        return;
                    }
                }
                Err(e) => {
                    self.read_buf = buf;
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => {}
                        _ => return self.close_with(id, Reason::from_io(e)),
                    }
                }
            }
        }
    }

    fn write_ready(&mut self, id: ConnId) {
        if self.conn(id).is_some_and(|c| c.connecting) {
            // Bytes queued while connecting (`write_to`) go out below: this writable
            // edge is the only one an idle, newly connected socket gets.
            self.finish_connect(id);
        }
        let Some(c) = self.conn_mut(id) else { return };
        if c.connecting || c.out.is_empty() || c.close.is_some() {
            return;
        }
        let stream = &mut c.stream;
        let mut calls = 0;
        let drained = c.out.drain_into(|bufs| {
            calls += 1;
            stream.write_vectored(bufs)
        });
        self.counters.write_calls += calls;
        if let Err(e) = drained {
            return self.close_with(id, Reason::from_io(e));
        }
        self.after_drain(id);
    }

    /// The write path of every `Context::write*`.
    ///
    /// Small writes are corked: gathered in the connection's queue and offered to the
    /// kernel once, by [`flush_corked`](Self::flush_corked) at the end of the turn, so
    /// that many small writes in a turn cost one `writev` (as Redis and Twisted do).
    /// A large write (from [`DIRECT_WRITE_BYTES`]), or one that would take the corked
    /// bytes past [`cork_limit`](Config::cork_limit), goes out at once, with the
    /// corked bytes in front of it and without copying it.
    /// While the kernel is behind (bytes queued and not corked) or a connect is in
    /// progress, writes queue behind what is there and go out on the writable edge.
    fn send(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> bool {
        let cork_limit = self.config.cork_limit();
        let Some(c) = self.conn_mut(id) else {
            return false;
        };
        if !c.accepts_writes() {
            log::debug!("{id}: write after close dropped");
            return false;
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len == 0 {
            return true;
        }
        if c.connecting || (!c.out.is_empty() && !c.corked) {
            return self.enqueue(id, bufs);
        }
        if len < DIRECT_WRITE_BYTES && c.out.len() + len <= cork_limit {
            if !c.corked {
                c.corked = true;
                self.corked.push(id);
            }
            return self.enqueue(id, bufs);
        }
        // Too much to cork: the corked bytes and these, in one vectored write.
        c.corked = false;
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let queued = c.out.slices(&mut slices);
        let queued_bytes = c.out.len();
        let offered = (MAX_IOVECS - queued).min(bufs.len());
        slices[queued..queued + offered].copy_from_slice(&bufs[..offered]);
        let offered_bytes: usize = slices[..queued + offered].iter().map(|s| s.len()).sum();
        let mut calls = 0;
        let result = loop {
            calls += 1;
            match c.stream.write_vectored(&slices[..queued + offered]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(0),
                result => break result,
            }
        };
        self.counters.write_calls += calls;
        let written = match result {
            Ok(n) => n,
            Err(e) => {
                self.close_with(id, Reason::from_io(e));
                return false;
            }
        };
        let c = self.conn_mut(id).expect("checked above");
        c.out.consume(written.min(queued_bytes));
        let rest = unwritten(bufs, written.saturating_sub(queued_bytes));
        if rest.is_empty() {
            return true;
        }
        if written == offered_bytes {
            // The kernel took all it was offered: what is left is what did not fit in
            // one `writev` (too many buffers), not what it refused, so no writable
            // edge will come for it. The end-of-turn flush sends it.
            c.corked = true;
            self.corked.push(id);
        }
        self.enqueue(id, &rest)
    }

    /// Offers every corked queue to the kernel (see [`send`](Self::send)), then
    /// settles what that causes (a close that was waiting for the flush, a resumed
    /// producer, who may cork more).
    fn flush_corked(&mut self) {
        while !self.corked.is_empty() {
            let mut batch = self.spare_corked.swap(&mut self.corked);
            for id in batch.drain(..) {
                if let Some(c) = self.conn_mut(id) {
                    if std::mem::take(&mut c.corked) {
                        self.write_ready(id);
                    }
                }
            }
            self.spare_corked.keep(batch);
            self.settle();
        }
    }

    /// Bytes left the queue: resume a paused producer, finish a pending close.
    fn after_drain(&mut self, id: ConnId) {
        let limits = self.config.write_limits();
        let Some(c) = self.conn_mut(id) else { return };
        if c.out
            .resume_after_drain(&limits, &mut c.producer_paused, &mut c.notify_pause)
        {
            self.invoke(id, |p, cx| p.resume_producing(cx));
        }
        if self
            .conn(id)
            .is_some_and(|c| c.out.is_empty() && (c.losing || c.shutdown_write))
        {
            self.mark_dirty(id);
        }
    }

    /// Queues what the kernel did not take, minding the cap and the high watermark.
    fn enqueue<B: Deref<Target = [u8]>>(&mut self, id: ConnId, parts: &[B]) -> bool {
        let limits = self.config.write_limits();
        let Some(c) = self.conn_mut(id) else {
            return false;
        };
        match c.out.push_limited(parts, &limits, &mut c.producer_paused) {
            Push::Queued => {}
            Push::PauseOwed => {
                c.notify_pause = true;
                self.mark_dirty(id);
            }
            Push::Overflow => {
                log::warn!(
                    "{id} {}: write buffer would pass {} bytes; closing",
                    c.peer,
                    limits.write_cap_bytes
                );
                self.close_with(id, Reason::WriteOverflow);
                return false;
            }
        }
        true
    }

    // ----- closing -----

    /// Decides to close `id` for `reason` once the current callback returns; queued
    /// bytes are dropped. The first reason wins.
    fn close_with(&mut self, id: ConnId, reason: Reason) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.close.is_none() {
            c.close = Some(Box::new(reason));
            c.out.clear();
        }
        self.mark_dirty(id);
    }

    /// A graceful close has flushed (and its pool jobs are back): shut the write side
    /// and linger, reading and discarding input until the peer closes, so that
    /// closing over unread input cannot make the kernel reset the connection and
    /// throw away the replies it still holds (see [`Builder::linger`]). Where there is
    /// nothing to linger for (the peer's end already came, or stdio), finish now.
    fn linger(&mut self, id: ConnId) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.lingering {
            return;
        }
        if c.read_eof || !c.stream.lingers() {
            return self.finish(id, Reason::Done);
        }
        c.lingering = true;
        if !c.write_shut {
            c.write_shut = true;
            if let Err(e) = c.stream.shutdown(Shutdown::Write) {
                return self.close_with(id, Reason::from_io(e));
            }
        }
        let deadline = Instant::now() + self.config.linger_timeout;
        self.track_timer(id, deadline, Task::LingerDeadline(id));
        // Input may already wait in the kernel, and its edge has passed.
        self.mark_ready(id);
    }

    /// Reads and drops what a lingering connection's peer sends, up to `budget`
    /// bytes this time (then it is carried over) and the linger's byte bound in all.
    /// The peer's end finishes the close cleanly.
    fn discard_input(&mut self, id: ConnId, mut budget: usize) {
        let limit = self.config.linger_bytes;
        loop {
            let Some(c) = self.conns.get_mut(id.index as usize) else {
                return;
            };
            if c.generation != id.generation
                || !c.lingering
                || c.close.is_some()
                || c.discarded as usize > limit
            {
                return;
            }
            match c.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    c.read_eof = true;
                    return self.close_with(id, Reason::Done);
                }
                Ok(n) => {
                    let discarded = c.discarded as usize + n;
                    c.discarded = discarded.min(u32::MAX as usize) as u32;
                    if discarded > limit {
                        log::warn!(
                            "{id} {}: peer sent more than {limit} bytes after the close; closing",
                            c.peer
                        );
                        return self.close_with(id, Reason::TimedOut);
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return self.mark_ready(id);
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => {}
                    _ => return self.close_with(id, Reason::from_io(e)),
                },
            }
        }
    }

    /// A graceful close's deadline: the peer did not take the queued bytes in time
    /// (the close is aborted), or did not end its side while we lingered (the
    /// connection closes without a reset; the kernel goes on delivering what it
    /// holds). Either way the close was not confirmed: [`Reason::TimedOut`].
    fn close_deadline(&mut self, id: ConnId) {
        let Some(c) = self.conn(id) else { return };
        if c.lingering {
            log::debug!("{id} {}: peer did not close within the linger", c.peer);
        } else if c.jobs > 0 && c.out.is_empty() {
            log::warn!(
                "{id} {}: pool jobs did not finish before the close deadline",
                c.peer
            );
        } else {
            log::warn!("{id} {}: peer did not take queued bytes in time", c.peer);
        }
        self.close_with(id, Reason::TimedOut);
    }

    fn abort_all(&mut self, reason: Reason) {
        let ids: Vec<ConnId> = self.conn_ids();
        for id in ids {
            if self.conn(id).is_some_and(|c| c.connecting) {
                let err = io::Error::new(io::ErrorKind::Interrupted, "reactor stopped");
                self.fail_connect(id, err);
            } else {
                self.close_with(id, reason_copy(&reason));
            }
        }
    }

    fn conn_ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .map(|(i, c)| ConnId {
                index: i as u32,
                generation: c.generation,
            })
            .collect()
    }

    /// Takes a connection out of the table: deregisters it, cancels its timers and
    /// closes the socket. Returns its protocol and peer.
    fn remove_conn(&mut self, id: ConnId, reset: bool) -> Option<(Box<dyn Protocol>, Addr)> {
        self.conn(id)?;
        let mut c = self.conns.remove(id.index as usize);
        let _ = self.poll.registry().deregister(c.stream.source());
        for t in c.timers.drain(..) {
            self.timers.cancel(t);
        }
        if reset {
            if let Stream::Tcp(s) = &c.stream {
                net::set_reset_on_close(s);
            }
        }
        drop(c.stream);
        self.retry_backed_off_accepts();
        let protocol = c
            .protocol
            .expect("a connection is never removed inside its own callback");
        Some((protocol, c.peer))
    }

    /// Removes the connection and calls `connection_lost`, exactly once.
    fn finish(&mut self, id: ConnId, reason: Reason) {
        let lingering = self.conn(id).is_some_and(|c| c.lingering);
        // A connection whose bytes have all gone to the kernel and whose write side is
        // shut has nothing a reset would rightly throw away: it closes normally, after
        // reading what is pending so that the close itself does not reset.
        let reset = match reason {
            Reason::Aborted | Reason::WriteOverflow | Reason::Panic(_) => true,
            Reason::TimedOut => !lingering,
            _ => false,
        };
        if lingering && !reset {
            self.discard_input(id, self.config.read_budget_bytes);
        }
        let made = self.conn(id).is_some_and(|c| c.made);
        let Some((mut protocol, peer)) = self.remove_conn(id, reset) else {
            return;
        };
        log::debug!("{id} {peer}: {reason}");
        self.counters.closed.count(&reason);
        if !made {
            return;
        }
        let ty = protocol_type(&*protocol);
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cx = Context::new(self, id, ty);
            protocol.connection_lost(&mut cx, reason);
        }));
        if let Err(panic) = result {
            log::error!(
                "{id} {peer}: connection_lost panicked: {}",
                panic_message(&*panic)
            );
        }
    }

    /// Carries out what callbacks asked for: closes, owed `pause_producing`, the end of
    /// a graceful close or half-close. Runs until nothing is left, since settling one
    /// connection can touch others.
    fn settle(&mut self) {
        // A graceful close waits for the connection's pool results, unless a stop that
        // does not wait for jobs is under way.
        let skip_jobs = self.stopping != Stopping::No && !self.config.wait_for_jobs;
        while let Some(id) = self.dirty.pop() {
            let Some(c) = self.conn_mut(id) else { continue };
            c.dirty = false;
            if let Some(reason) = c.close.take() {
                self.finish(id, *reason);
                continue;
            }
            if c.notify_pause {
                c.notify_pause = false;
                self.invoke(id, |p, cx| p.pause_producing(cx));
            }
            let Some(c) = self.conn_mut(id) else { continue };
            if c.close.is_some() {
                self.mark_dirty(id);
                continue;
            }
            if !c.out.is_empty() {
                continue;
            }
            if c.losing {
                if c.jobs == 0 || skip_jobs {
                    self.linger(id);
                }
            } else if c.shutdown_write && !c.write_shut {
                c.write_shut = true;
                if let Err(e) = c.stream.shutdown(Shutdown::Write) {
                    self.close_with(id, Reason::from_io(e));
                } else if c.read_eof {
                    self.finish(id, Reason::Done);
                }
            }
        }
    }

    /// Runs one callback of connection `id` with its protocol taken out of the table,
    /// catching a panic (which closes that connection).
    fn invoke(&mut self, id: ConnId, f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>)) {
        let Some(mut protocol) = self.conn_mut(id).and_then(|c| c.protocol.take()) else {
            return;
        };
        let ty = protocol_type(&*protocol);
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cx = Context::new(self, id, ty);
            f(&mut *protocol, &mut cx);
        }));
        let c = self
            .conn_mut(id)
            .expect("a connection is never removed inside its own callback");
        c.protocol = Some(protocol);
        if let Err(panic) = result {
            let msg = panic_message(&*panic);
            log::error!("{id} {}: callback panicked: {msg}", c.peer);
            self.close_with(id, Reason::Panic(msg));
        }
    }

    fn run_bound(&mut self, id: ConnId, call: BoundCall) {
        if self.conn(id).is_some_and(|c| c.made && !c.connecting) {
            self.invoke(id, call);
        } else {
            log::debug!("{id}: dropping a callback for a connection that is gone");
        }
    }

    // ----- timers -----

    fn track_timer(&mut self, id: ConnId, deadline: Instant, task: Task) -> TimerId {
        let timer = self.timers.insert(deadline, task);
        if let Some(c) = self.conn_mut(id) {
            c.timers.push(timer);
        }
        timer
    }

    fn untrack_timer(&mut self, id: ConnId, timer: TimerId) {
        if let Some(c) = self.conn_mut(id) {
            if let Some(i) = c.timers.iter().position(|t| *t == timer) {
                c.timers.swap_remove(i);
            }
        }
    }

    fn check_idle(&mut self, id: ConnId) {
        let (Some(idle), Some(c)) = (self.config.idle_timeout, self.conn(id)) else {
            return;
        };
        let due = c.last_read + idle;
        if due <= self.now {
            log::debug!("{id} {}: idle for {idle:?}", c.peer);
            self.close_with(id, Reason::TimedOut);
        } else {
            // Reads only touch `last_read`; the timer re-arms lazily from it.
            self.track_timer(id, due, Task::Idle(id));
        }
    }

    // ----- stopping -----

    fn stop(&mut self) {
        if self.stopping == Stopping::No {
            self.stopping = Stopping::Requested;
        }
    }

    fn begin_shutdown(&mut self) {
        self.stopping = Stopping::Draining;
        self.stop_deadline = Some(Instant::now() + self.config.shutdown_timeout);
        let listeners: Vec<ListenerId> = self
            .listeners
            .iter()
            .map(|(i, l)| ListenerId {
                index: i as u32,
                generation: l.generation,
            })
            .collect();
        for id in listeners {
            self.remove_listener(id);
        }
        for id in self.datagram_ids() {
            self.close_datagram(id);
        }
        self.settle_datagrams();
        if !self.conns.is_empty() {
            log::info!("stopping: closing {} connections", self.conns.len());
            let deadline = Instant::now() + self.config.shutdown_timeout;
            self.shutdown_deadline = Some(self.timers.insert(deadline, Task::ShutdownDeadline));
        }
        for id in self.conn_ids() {
            if self.conn(id).is_some_and(|c| c.connecting) {
                let err = io::Error::new(io::ErrorKind::Interrupted, "reactor stopped");
                self.fail_connect(id, err);
            } else {
                self.lose_connection(id);
            }
        }
        self.settle();
    }

    /// A requested stop has run its course.
    fn stop_done(&self) -> bool {
        self.stopping == Stopping::Draining && self.conns.is_empty() && self.failed.is_empty()
    }

    /// If a requested stop has run its course, resets so that the reactor can run
    /// again and says so.
    fn stop_finished(&mut self) -> bool {
        let done = self.stop_done();
        if done {
            self.stopping = Stopping::No;
            if let Some(flag) = &self.signal_stop {
                flag.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            if let Some(t) = self.shutdown_deadline.take() {
                self.timers.cancel(t);
            }
            let deadline = self.stop_deadline.take().unwrap_or_else(Instant::now);
            if let Some(mut pool) = self.pool.take() {
                let wait = self
                    .config
                    .wait_for_jobs
                    .then(|| deadline.saturating_duration_since(Instant::now()));
                pool.join(wait);
            }
        }
        done
    }

    fn serve_carried_over(&mut self) {
        self.report_failed();
        let mut batch = self.spare_ready.swap(&mut self.ready);
        for source in batch.drain(..) {
            match source {
                Source::Conn(id) => {
                    if self.conn(id).is_some_and(|c| c.in_ready) {
                        self.read_ready(id, true);
                    }
                }
                Source::Listener(id) => {
                    if self.listener_mut(id).is_some_and(|l| l.in_ready) {
                        self.accept(id);
                    }
                }
                Source::Datagram(id) => {
                    if self.datagram(id).is_some_and(|d| d.in_ready) {
                        self.datagram_ready(id);
                        self.settle_datagrams();
                    }
                }
                Source::Waker => {}
            }
            self.settle();
        }
        self.spare_ready.keep(batch);
    }
}

/// The emptied allocation of a list that a turn walks while the walk may add to it
/// again (`Core::corked`, `Core::ready`). [`swap`](Self::swap) hands out the list's
/// items and leaves the spare allocation in its place; [`keep`](Self::keep) takes the
/// walked one back. Taking the list with `std::mem::take` instead freed it every turn
/// and grew a new one, a `malloc` and `realloc`s per turn that the echo profile
/// showed (see BENCHMARKS.md).
pub(crate) struct Spare<T>(Vec<T>);

impl<T> Default for Spare<T> {
    fn default() -> Self {
        Spare(Vec::new())
    }
}

impl<T> Spare<T> {
    /// The items of `list`, which is left empty with the spare allocation.
    fn swap(&mut self, list: &mut Vec<T>) -> Vec<T> {
        debug_assert!(self.0.is_empty());
        std::mem::replace(list, std::mem::take(&mut self.0))
    }

    /// Keeps the (walked) allocation of `list` for the next [`swap`](Self::swap).
    fn keep(&mut self, mut list: Vec<T>) {
        list.clear();
        self.0 = list;
    }
}

pub(crate) fn reason_copy(r: &Reason) -> Reason {
    match r {
        Reason::Done => Reason::Done,
        Reason::Aborted => Reason::Aborted,
        Reason::TimedOut => Reason::TimedOut,
        Reason::WriteOverflow => Reason::WriteOverflow,
        Reason::Lost(e) => Reason::Lost(io::Error::new(e.kind(), e.to_string())),
        Reason::Io(e) => Reason::Io(io::Error::new(e.kind(), e.to_string())),
        Reason::Panic(m) => Reason::Panic(m.clone()),
    }
}
