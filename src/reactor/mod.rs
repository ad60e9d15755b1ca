//! The reactor: one `mio::Poll`, the connection table, timers and the inbox.
//!
//! See [`Reactor`] for the contract: what one turn does, in what order, and what a
//! callback may do.

// Maintainers' notes.
//
// `Reactor` is `events` + `Core`, and `Core` here is the connection core
// (`crate::core::Core`) over `Mio`, the kernel that owns the poller, the listeners,
// the waker's inbox and the thread pool. Everything about a connection's or a
// datagram socket's life is the core's; this module adds the turn (poll, events, the
// inbox, timers, the end-of-turn flush), accepting, connecting and stopping. The
// sibling files are `impl Core` blocks for their part (accept.rs: listeners,
// connect.rs: outgoing connects, datagram.rs: binding datagram sockets, jobs.rs: the
// pool side, stats.rs).

mod accept;
mod builder;
mod connect;
mod datagram;
mod handle;
mod jobs;
mod stats;
mod table;
#[cfg(feature = "tls")]
mod tls;

use accept::ACCEPT_BACKOFF_MIN;
pub use builder::Builder;
pub use handle::{Handle, ReactorGone};
use jobs::ReactorDone;
pub use stats::{ClosedByReason, Stats};
pub use table::Accepted;

use std::any::TypeId;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use slab::Slab;

use crate::core::{protocol_type, Kernel, Stopping, Task};
use crate::ids::Source;
use crate::ids::{ConnId, DatagramId, ListenerId};
use crate::net;
use crate::pool::{Pool, PoolBusy};
use crate::protocol::{panic_message, Addr, Protocol, Reason};
use crate::timer::TimerId;
use crate::transport::{bind, ConnRef, Context, Driver, JobFn, Settle};
use handle::Shared;
use table::{conn_token, decode, Listener, Stream};

/// The connection core over mio: what a reactor's callbacks run on.
pub(crate) type Core = crate::core::Core<Mio>;

/// The reactor's own timers in the core's queue.
pub(crate) enum ReactorTask {
    Call(Box<dyn FnOnce(&mut Reactor)>),
    AcceptRetry(ListenerId),
    ShutdownDeadline,
}

/// The kernel the reactor's core runs over: the poller and the listeners, the inbox
/// other threads fill, the thread pool, and the stop's state.
pub(crate) struct Mio {
    poll: Poll,
    listeners: Slab<Listener>,
    shared: Arc<Shared>,
    accept_backoff: Duration,
    /// The graceful stop's deadline, cancelled when the stop finishes sooner (else it
    /// would abort the connections of a later `run`).
    shutdown_deadline: Option<TimerId>,
    /// When the graceful stop in progress must be over.
    stop_deadline: Option<Instant>,
    /// Started on the first `defer_to_thread`.
    pool: Option<Pool>,
    /// When the last max_connections refusal was logged (they are rate-limited).
    refusal_logged: Option<Instant>,
    signals: Option<signal_hook::iterator::Handle>,
    /// Set by the signal thread when a signal starts a stop, cleared when the stop
    /// finishes: a signal that finds it set exits the process.
    signal_stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Kernel for Mio {
    type Stream = Stream;
    type Task = ReactorTask;
    type JobDone = ReactorDone;

    fn now(_: &Core) -> Instant {
        Instant::now()
    }

    fn register(core: &mut Core, id: ConnId, stream: &mut Stream) -> io::Result<()> {
        // Both interests once, edge-triggered: no epoll_ctl is needed later to start
        // or stop writing, and a writable edge with nothing queued costs one check.
        core.k.poll.registry().register(
            stream.source(),
            conn_token(id),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )
    }

    fn release(core: &mut Core, _: ConnId, mut stream: Stream, reset: bool) {
        let _ = core.k.poll.registry().deregister(stream.source());
        if reset {
            if let Stream::Tcp(s) = &stream {
                net::set_reset_on_close(s);
            }
        }
        drop(stream);
        core.retry_backed_off_accepts();
    }

    fn retire(_: &mut Core, _: ConnId, protocol: Box<dyn Protocol>, _: &Reason) {
        drop(protocol);
    }

    fn submit(core: &mut Core, key: u64, job: JobFn) -> Result<(), PoolBusy> {
        core.submit_to_pool(key, job)
    }

    fn pool_has_room(core: &Core) -> bool {
        core.k.pool.as_ref().is_none_or(|p| p.has_room())
    }

    type Datagram = datagram::DgramSocket;

    fn register_datagram(
        core: &mut Core,
        id: DatagramId,
        socket: &mut datagram::DgramSocket,
    ) -> io::Result<()> {
        socket.register(core, id)
    }

    fn release_datagram(core: &mut Core, _: DatagramId, socket: datagram::DgramSocket) {
        socket.release(core);
    }
}

/// The core outside a callback, for [`Reactor::conn`]: its handle settles each call.
impl Settle for Core {
    fn settle(&mut self) {
        Core::settle(self)
    }
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
/// [`run_once`](Reactor::run_once) is one turn and [`run`](Reactor::run) repeats it
/// (ARCHITECTURE.md numbers the same steps):
///
/// 1. If a stop was requested, begin it: cancel the queued pool jobs, close the
///    listeners and datagram sockets, tell every made connection
///    ([`Protocol::stopping`](crate::Protocol::stopping)), ask each to flush and
///    close, arm the shutdown deadline.
/// 2. Flush writes made between turns, then compute the poll timeout: zero if work is
///    carried over (a read cut short by its budget, a resumed reader, a listener that
///    spent its accept budget, a failed connect to report) or a stop is to begin or
///    has finished, else until the next timer, else the caller's timeout.
/// 3. Poll (after busy-polling, with [`Builder::busy_poll`]), then read the clock once
///    ("now" for idle bookkeeping).
/// 4. Handle I/O events in the order the kernel gave them. For one connection: finish
///    a pending connect, then drain queued writes, then read until the kernel has no
///    more or the read budget is spent, calling `data_received` per chunk. Accept
///    until the kernel has no more or the accept budget is spent. Read up to 64
///    datagrams from a datagram socket.
/// 5. Serve the work carried over from earlier.
/// 6. Run the closures other threads sent ([`Handle::call_from_thread`]) that were
///    queued when this step began, in FIFO order.
/// 7. Read the clock again and run the timers due by then, in deadline order (FIFO for
///    equal deadlines). A timer set during this step waits for the next turn, even
///    with a zero delay.
/// 8. Flush the corked writes: each connection whose small writes were gathered during
///    the turn gets one gathered write.
/// 9. With [`Builder::coalesce_writes`], if the turn wrote, sleep for the window (less
///    if a timer is due sooner or the caller's timeout is shorter; not at all where
///    step 2 would not wait).
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
            .field("listeners", &self.core.k.listeners.len())
            .field("timers", &self.core.timers.len())
            .finish()
    }
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
            shared: Arc::clone(&self.core.k.shared),
        }
    }

    /// Serves standard input and output as one connection with `protocol`, as
    /// Twisted's `StandardIO`: `data_received` gets what arrives on stdin, `read_eof`
    /// its end, and writes go to stdout. A chat client reads the keyboard and its
    /// socket this way on one thread, relaying with [`Context::conn`].
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
        self.core
            .timers
            .insert(deadline, Task::Kernel(ReactorTask::Call(Box::new(f))))
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

    /// Connection `id`, with the verbs a [`Context`] has for its own connection:
    /// `reactor.conn(id).write(..)`, `reactor.conn(id).lose_connection()`,
    /// `reactor.conn(id).is_open()`. A connection that is gone is a handle that does
    /// nothing.
    ///
    /// This is for code outside any callback (a reactor-level timer, a closure sent
    /// through a [`Handle`], the code around [`run_once`](Self::run_once)), so there
    /// is no callback whose return would settle what a call sets off: each call on
    /// the handle settles before it returns. After `reactor.conn(id).abort_connection()`
    /// the connection's `connection_lost` has run; after `lose_connection()` the close
    /// has begun (it ends once flushed and confirmed, in later turns).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use twistor::{Context, Protocol, Reactor};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    /// }
    ///
    /// let server = TcpListener::bind("127.0.0.1:0")?;
    /// let mut reactor = Reactor::new()?;
    /// let id = reactor.connect_tcp(server.local_addr()?, Quiet);
    /// assert!(reactor.conn(id).write(b"hello"), "queued while connecting");
    /// reactor.conn(id).abort_connection();
    /// assert!(!reactor.conn(id).is_open());
    /// assert!(!reactor.conn(id).write(b"late"), "gone: dropped");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn conn(&mut self, id: ConnId) -> ConnRef<'_> {
        ConnRef::settling(&mut self.core, id)
    }

    /// Sends `data` to connection `id`; false if it is gone or dropped the bytes.
    #[deprecated(since = "0.2.0", note = "use reactor.conn(id).write(data)")]
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.conn(id).write(data)
    }

    /// Flushes, then closes connection `id`.
    #[deprecated(since = "0.2.0", note = "use reactor.conn(id).lose_connection()")]
    pub fn lose_connection(&mut self, id: ConnId) {
        self.conn(id).lose_connection()
    }

    /// Closes connection `id` now, dropping what it has queued.
    #[deprecated(since = "0.2.0", note = "use reactor.conn(id).abort_connection()")]
    pub fn abort_connection(&mut self, id: ConnId) {
        self.conn(id).abort_connection()
    }

    /// False if connection `id` is closing or gone.
    #[deprecated(since = "0.2.0", note = "use reactor.conn(id).is_open()")]
    pub fn is_open(&self, id: ConnId) -> bool {
        // `&self`, as before, so not through `conn`, which needs `&mut`.
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

    /// How long the reactor may wait before its next turn: zero if work is carried
    /// over (the cases of step 2 of [a turn](Reactor#one-turn), and writes made
    /// between turns), else the time until its earliest timer, else `None` (nothing
    /// is due: only an event on its file descriptor brings work).
    ///
    /// With the reactor's file descriptor ([`AsFd`](std::os::fd::AsFd)), this drives
    /// a reactor from another event loop (GTK, winit, SDL, a game's frame loop): wait
    /// until the descriptor is readable or this much time has passed, whichever
    /// comes first, then call [`run_once(Some(Duration::ZERO))`](Self::run_once).
    /// Asked again after every turn, since a turn changes it (it takes `&mut self`
    /// only to drop cancelled timers it finds on its way). The descriptor is the
    /// poller's (epoll): readable when an event is pending, a closure was sent from
    /// another thread or a pool job finished.
    ///
    /// # Examples
    ///
    /// A host loop that waits on the reactor's descriptor among its own, with a
    /// second `mio::Poll` standing in for the host's wait (a GUI toolkit's fd
    /// source), each wait capped by the frame's deadline:
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// use std::time::{Duration, Instant};
    /// use mio::unix::SourceFd;
    /// use mio::{Events, Interest, Poll, Token};
    /// use twistor::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// assert_eq!(reactor.next_timeout(), None); // nothing to do: wait for the fd
    /// let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    /// let flag = fired.clone();
    /// reactor.call_later(Duration::from_millis(5), move |_| flag.set(true));
    /// assert!(reactor.next_timeout().unwrap() <= Duration::from_millis(5));
    ///
    /// let mut host = Poll::new()?;
    /// let fd = reactor.as_raw_fd();
    /// host.registry().register(&mut SourceFd(&fd), Token(0), Interest::READABLE)?;
    /// let mut events = Events::with_capacity(8);
    /// let frame = Duration::from_millis(16);
    /// let deadline = Instant::now() + Duration::from_secs(10);
    /// while !fired.get() && Instant::now() < deadline {
    ///     let wait = reactor.next_timeout().map_or(frame, |t| t.min(frame));
    ///     host.poll(&mut events, Some(wait))?; // the host's own wait
    ///     reactor.run_once(Some(Duration::ZERO))?; // never blocks
    /// }
    /// assert!(fired.get());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn next_timeout(&mut self) -> Option<Duration> {
        let core = &mut self.core;
        if !core.ready.is_empty()
            || !core.failed.is_empty()
            || !core.corked.is_empty()
            || core.stop_done()
            || core.stopping == Stopping::Requested
        {
            return Some(Duration::ZERO);
        }
        core.timers
            .next_deadline()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// Stops gracefully: no more accepting, every connection is told
    /// ([`Protocol::stopping`], its chance to say goodbye), then flushes and closes
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
        if self.core.k.signals.is_some() {
            return Ok(());
        }
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        self.core.k.signals = Some(signals.handle());
        let stopping = Arc::new(AtomicBool::new(false));
        self.core.k.signal_stop = Some(Arc::clone(&stopping));
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
        // Writes made between turns (`reactor.conn(id).write` from outside the loop) go out before
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
                Source::Datagram(id) => core.datagram_ready(id),
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
        match self.core.k.poll.poll(&mut self.events, timeout) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
            _ => Ok(()),
        }
    }

    fn run_inbox(&mut self) {
        for job in self.core.k.shared.take() {
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
            let Some(task) = self.core.run_task(timer, task) else {
                continue;
            };
            match task {
                ReactorTask::Call(f) => {
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(self))) {
                        log::error!("timer callback panicked: {}", panic_message(&*panic));
                    }
                }
                ReactorTask::AcceptRetry(id) => {
                    if let Some(l) = self.core.listener_mut(id) {
                        l.backoff = None;
                    }
                    self.core.accept(id);
                }
                ReactorTask::ShutdownDeadline => self.core.abort_all(Reason::TimedOut),
            }
            self.core.settle();
        }
    }
}

/// The poller's file descriptor (epoll), for an outer event loop to wait on: see
/// [`Reactor::next_timeout`]. Only wait on it (poll, epoll, a GUI toolkit's fd
/// source); never read, register on or close it.
impl std::os::fd::AsFd for Reactor {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self.core.k.poll.registry())
    }
}

/// The same descriptor as [`AsFd`](std::os::fd::AsFd), as a raw number.
impl std::os::fd::AsRawFd for Reactor {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.core.k.poll)
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        self.core.k.shared.close();
        if let Some(signals) = self.core.k.signals.take() {
            signals.close();
        }
        self.core.close_sockets();
        self.cancel_queued_jobs();
        self.core.abort_all(Reason::Aborted);
        self.core.settle();
        self.core.report_failed();
        if let Some(mut pool) = self.core.k.pool.take() {
            pool.join(None);
        }
    }
}

impl Core {
    pub(super) fn listener_mut(&mut self, id: ListenerId) -> Option<&mut Listener> {
        self.k
            .listeners
            .get_mut(id.index as usize)
            .filter(|l| l.generation == id.generation)
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

    // ----- stopping -----

    /// Closes every listener and datagram socket (a stop, or the reactor's drop).
    fn close_sockets(&mut self) {
        let listeners: Vec<ListenerId> = self
            .k
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
        self.close_datagrams();
    }

    fn begin_shutdown(&mut self) {
        self.stopping = Stopping::Draining;
        self.k.stop_deadline = Some(Instant::now() + self.config.shutdown_timeout);
        self.close_sockets();
        if !self.conns.is_empty() {
            log::info!("stopping: closing {} connections", self.conns.len());
            let deadline = Instant::now() + self.config.shutdown_timeout;
            let task = Task::Kernel(ReactorTask::ShutdownDeadline);
            self.k.shutdown_deadline = Some(self.timers.insert(deadline, task));
        }
        for id in self.conn_ids() {
            // Each made connection says goodbye first (`Protocol::stopping`).
            if self
                .conn(id)
                .is_some_and(|c| c.state.is_made() && !c.state.is_connecting())
            {
                self.invoke(id, |p, cx| p.stopping(cx));
            }
            self.lose_connection(id);
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
            if let Some(flag) = &self.k.signal_stop {
                flag.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            if let Some(t) = self.k.shutdown_deadline.take() {
                self.timers.cancel(t);
            }
            let deadline = self.k.stop_deadline.take().unwrap_or_else(Instant::now);
            if let Some(mut pool) = self.k.pool.take() {
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
                Source::Datagram(id) => self.serve_datagram(id),
                Source::Waker => {}
            }
            self.settle();
        }
        self.spare_ready.keep(batch);
    }
}
