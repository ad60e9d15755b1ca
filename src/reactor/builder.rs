//! The `Builder` that sets the reactor's limits and tunables (`core::Config`).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Waker};
use slab::Slab;

use super::handle::Shared;
use super::table::{MAX_SLOTS, WAKER_TOKEN};
use super::{Core, Mio, Reactor, ACCEPT_BACKOFF_MIN};
use crate::core::Config;
use crate::net::ListenOptions;

/// Configures and builds a [`Reactor`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twistor::Reactor;
///
/// let reactor = Reactor::builder()
///     .max_connections(10_000)
///     .write_watermarks(32 * 1024, 8 * 1024)
///     .write_cap_bytes(1 << 20)
///     .idle_timeout(Some(Duration::from_secs(300)))
///     .build()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// Connections beyond this many are accepted and closed at once (default 65,536).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n.min(MAX_SLOTS);
        self
    }

    /// Size of the one read buffer all connections share (default 64 KiB).
    pub fn read_buffer_bytes(mut self, n: usize) -> Self {
        self.config.read_buffer_bytes = n.max(1);
        self
    }

    /// Bytes read from one connection per wakeup before the others get their turn
    /// (default 256 KiB). A connection cut short is read again on the next turn.
    pub fn read_budget_bytes(mut self, n: usize) -> Self {
        self.config.read_budget_bytes = n.max(1);
        self
    }

    /// Connections accepted from one listener per wakeup (default 128).
    pub fn accept_budget(mut self, n: usize) -> Self {
        self.config.accept_budget = n.max(1);
        self
    }

    /// Readiness events one turn handles at most (default 1,024): the capacity of the
    /// events buffer `poll` fills. Events the kernel has beyond it wait for the next
    /// turn (epoll keeps them), so nothing is lost; a smaller value bounds the work of
    /// one [`run_once`](crate::Reactor::run_once), which a host loop that embeds the
    /// reactor (a game's frame loop) may want, at the cost of more turns under load.
    pub fn events_capacity(mut self, n: usize) -> Self {
        self.config.events_capacity = n.max(1);
        self
    }

    /// Write-buffer watermarks (default 64 KiB and 16 KiB, as asyncio): a protocol is
    /// paused when more than `high` bytes are queued and resumed once at most `low`
    /// are. `low` is clamped to `high`.
    pub fn write_watermarks(mut self, high: usize, low: usize) -> Self {
        self.config.high_watermark_bytes = high;
        self.config.low_watermark_bytes = low.min(high);
        self
    }

    /// Most bytes queued for one connection (default 16 MiB). A write that would pass
    /// it drops the queue and closes the connection with
    /// [`Reason::WriteOverflow`](crate::Reason::WriteOverflow).
    pub fn write_cap_bytes(mut self, n: usize) -> Self {
        self.config.write_cap_bytes = n;
        self
    }

    /// Close connections that have received nothing for this long with
    /// [`Reason::TimedOut`](crate::Reason::TimedOut) (default: never).
    pub fn idle_timeout(mut self, t: Option<Duration>) -> Self {
        self.config.idle_timeout = t;
        self
    }

    /// How long `lose_connection` waits for the peer to take queued bytes (and for
    /// the connection's pool jobs to finish) before it aborts (default 30 s).
    pub fn close_timeout(mut self, t: Duration) -> Self {
        self.config.close_timeout = t;
        self
    }

    /// How long a graceful stop waits for queued bytes to drain before it aborts what
    /// is left (default 5 s).
    pub fn shutdown_timeout(mut self, t: Duration) -> Self {
        self.config.shutdown_timeout = t;
        self
    }

    /// Bounds on the lingering close (defaults 5 s and 16 MiB).
    ///
    /// Once a graceful close has handed every queued byte to the kernel, the reactor
    /// shuts the socket's write side and, until the peer closes its own, reads and
    /// discards what it still sends, as nginx's `lingering_close` and Apache do: closing
    /// a socket with unread input makes the kernel answer with a reset, which throws
    /// away the replies not yet delivered. The linger ends when the peer closes
    /// ([`Reason::Done`](crate::Reason::Done)), after `timeout`, or once `max_bytes`
    /// have been discarded ([`Reason::TimedOut`](crate::Reason::TimedOut) for both:
    /// the peer did not confirm the end). At the timeout, what is pending is read and
    /// discarded first and the socket is closed normally, so the kernel goes on
    /// delivering the replies it holds.
    pub fn linger(mut self, timeout: Duration, max_bytes: usize) -> Self {
        self.config.linger_timeout = timeout;
        self.config.linger_bytes = max_bytes;
        self
    }

    /// Default timeout for [`Reactor::connect_tcp`] (default 30 s, as Twisted).
    pub fn connect_timeout(mut self, t: Option<Duration>) -> Self {
        self.config.connect_timeout = t;
        self
    }

    /// Threads in the pool behind `defer_to_thread` (default: the number of CPUs).
    /// They start on first use.
    pub fn threads(mut self, n: usize) -> Self {
        self.config.pool_threads = n.max(1);
        self
    }

    /// Jobs that may wait for a pool thread before `defer_to_thread` refuses more with
    /// [`PoolBusy`](crate::PoolBusy) (default 4096).
    pub fn pool_queue_jobs(mut self, n: usize) -> Self {
        self.config.pool_queue_jobs = n.max(1);
        self
    }

    /// Adds `n` to the nice value of the pool's threads (Linux; default 0), so that
    /// when the pool's CPU-heavy jobs and the reactor compete for a core, the kernel
    /// favours the reactor, which serves every connection, over a job, which serves
    /// one request. At `n = 10` a busy pool thread sharing a core with the reactor
    /// gets about a tenth of it. Jobs lose nothing on a machine with idle cores, but
    /// they also yield to every other process of normal priority. A negative `n`
    /// needs privileges; if refused, the threads run at the process's priority and a
    /// warning is logged.
    ///
    /// ```
    /// let reactor = twistor::Reactor::builder().pool_nice(10).build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pool_nice(mut self, n: i32) -> Self {
        self.config.pool_nice = n;
        self
    }

    /// Whether a stop waits (up to the shutdown timeout) for pool jobs that are
    /// running (default true). With false, running jobs are left to finish on their
    /// own threads, like socketserver's `daemon_threads`. Queued jobs never run after
    /// a stop either way.
    pub fn wait_for_jobs_on_stop(mut self, wait: bool) -> Self {
        self.config.wait_for_jobs = wait;
        self
    }

    /// Busy-polls for up to `t` before the reactor blocks waiting for events (default
    /// zero: block at once).
    ///
    /// With a non-zero `t`, a turn that finds nothing ready polls again without
    /// blocking until something is, or `t` has passed, or the next timer is due; only
    /// then does it sleep in `epoll_wait`. Whatever arrives in that window (a pool
    /// result, a socket event) is handled without the thread being woken, which on a
    /// VM saves several microseconds per round trip. The price is CPU: up to `t` of
    /// spinning every time the reactor runs out of work. Worth it for a server that
    /// hands many short jobs to the pool and answers on their results, or that must
    /// answer a few clients with the lowest latency; not for one that idles with many
    /// connections.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let reactor = twistor::Reactor::builder()
    ///     .busy_poll(Duration::from_micros(50))
    ///     .build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn busy_poll(mut self, t: Duration) -> Self {
        self.config.busy_poll = t;
        self
    }

    /// Paces a reactor that writes so that its writes go out in fewer, larger system
    /// calls (default zero: off).
    ///
    /// After a turn that wrote to a socket, the reactor sleeps for `window` (less if
    /// a timer is due sooner; not at all if work is already waiting) before it polls
    /// again. What arrives meanwhile waits in the kernel and is read in the next turn,
    /// so each connection's output from it leaves in one write: a chat room's members
    /// get one `send` carrying several lines instead of one per line. A turn's cost is
    /// mostly one system call per connection it writes to, whatever they carry, so
    /// fewer turns cost less: at 1,000 lines/s from each of 10 senders into a
    /// 100-member room, a 300 µs window saves about a quarter of the server's CPU (see
    /// BENCHMARKS.md). This is interrupt coalescing, done in the loop.
    ///
    /// The price is latency: a message can wait up to `window` before it is read, and
    /// so can a [`Handle`](crate::Handle) call or stop; a saturated reactor loses up
    /// to `window` of every turn. An idle reactor blocks in `epoll_wait` as before, and
    /// [`Reactor::run_once`] never sleeps longer than the timeout it is given (with a
    /// zero timeout, a program that turns the reactor from its own loop paces itself).
    /// The sleep is the kernel's timer: it runs past `window` by the thread's timer
    /// slack (50 µs by default) and, on a busy VM, by whatever the hypervisor adds
    /// (BENCHMARKS.md measured a 300 µs sleep at 391 µs median, 1.5 ms at p99).
    /// Worth it for fanout, where each turn writes to many connections; not for
    /// request/response servers whose latency matters.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let reactor = twistor::Reactor::builder()
    ///     .coalesce_writes(Duration::from_micros(300))
    ///     .build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn coalesce_writes(mut self, window: Duration) -> Self {
        self.config.coalesce_writes = window;
        self
    }

    /// Options for listeners opened with [`Reactor::listen_tcp`].
    pub fn listen_options(mut self, opts: ListenOptions) -> Self {
        self.config.listen = opts;
        self
    }

    /// The listen options, for listeners bound before the reactor exists (a
    /// [`ReactorGroup`](crate::ReactorGroup)'s).
    pub(crate) fn listen_opts(&self) -> &ListenOptions {
        &self.config.listen
    }

    /// The configuration, for the testing kit: a harness built from this builder
    /// runs a protocol under the same limits as the reactor would.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Builds the reactor.
    ///
    /// # Errors
    /// Creating the poller or its waker failed (out of descriptors, say).
    pub fn build(self) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
        let config = self.config;
        let kernel = Mio {
            poll,
            listeners: Slab::new(),
            shared: Arc::new(Shared::new(waker)),
            accept_backoff: ACCEPT_BACKOFF_MIN,
            shutdown_deadline: None,
            stop_deadline: None,
            pool: None,
            refusal_logged: None,
            signals: None,
            signal_stop: None,
        };
        Ok(Reactor {
            events: Events::with_capacity(config.events_capacity),
            core: Core::new(kernel, config, Instant::now()),
        })
    }
}
