//! Testing kit: run a protocol against an in-memory transport and a manual clock.
//!
//! A [`Harness`] owns one protocol and plays both the reactor and the peer, as Twisted's
//! `StringTransport` and `task.Clock` do: the test feeds bytes, reads what the protocol
//! wrote, moves time forward and watches the connection close. There are no sockets,
//! no threads and no sleeps, so a test is deterministic and fast. The protocol sees the
//! same [`Context`] as under the [`Reactor`](crate::Reactor) and runs unchanged.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use twistor::framing::{LineContext, LineHandler, LineReceiver};
//! use twistor::testing::Harness;
//! use twistor::Reason;
//!
//! /// Answers `ping` with `pong`; a session lasts 10 s.
//! struct Ping;
//!
//! impl LineHandler for Ping {
//!     fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
//!         cx.call_later(Duration::from_secs(10), |_: &mut LineReceiver<Ping>, cx| {
//!             cx.lose_connection()
//!         });
//!     }
//!     fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
//!         if line == b"ping" {
//!             cx.send_line(b"pong");
//!         }
//!     }
//! }
//!
//! let mut h = Harness::new(LineReceiver::new(Ping).delimiter(b"\n"));
//! h.connect();
//! h.feed(b"pi"); // half a line: no answer yet
//! assert_eq!(h.take_written(), b"");
//! h.feed(b"ng\nping\n");
//! assert_eq!(h.take_written(), b"pong\npong\n");
//!
//! h.advance(Duration::from_secs(9));
//! assert!(h.is_open());
//! h.advance(Duration::from_secs(1)); // on the manual clock: nothing sleeps
//! assert!(matches!(h.lost(), Some(Reason::Done)));
//! ```
//!
//! # What the harness does as the reactor does
//!
//! - **Deferred effects.** A close, an owed `pause_producing` or the end of a flush
//!   requested inside a callback is carried out after that callback returns, in the
//!   same order as the reactor's `settle`. Exactly one `connection_lost` runs per
//!   connection that was made, and never inside another callback.
//! - **Panics.** A panic in a callback is caught, logged, and closes the connection with
//!   [`Reason::Panic`]; the harness goes on. A panic in `connection_lost` is logged.
//! - **Reading.** [`feed`](Harness::feed) is one readable event: the bytes are delivered
//!   in chunks of at most the read buffer size (64 KiB unless configured), so a test
//!   chooses the chunking by how it calls `feed`. While the protocol has paused reading
//!   (or after it asked to close) the bytes wait in the fake kernel; on resume the
//!   protocol gets `reading_resumed` first and then everything that waited, coalesced,
//!   as a real kernel would hand it over. [`eof`](Harness::eof) is seen after the data
//!   before it.
//! - **Writing.** A write goes to the fake kernel while nothing is queued; what the peer
//!   window refuses is queued in the reactor's own write queue under the same
//!   watermark and cap rules (the code is shared, not copied): `pause_producing` when
//!   more than the high watermark is queued, `resume_producing` once at most the low
//!   watermark is, and [`Reason::WriteOverflow`] past the cap.
//! - **Closing.** `lose_connection` flushes and then closes with [`Reason::Done`], or
//!   times out with [`Reason::TimedOut`] after the close timeout on the manual clock;
//!   `lose_write_connection` flushes and then shuts the write side, and the connection
//!   ends once both sides are shut; `abort_connection` drops what is queued.
//! - **Settings.** [`HarnessBuilder`] takes the same options as the reactor's
//!   [`Builder`] (watermarks, write cap, read buffer size, idle and close timeouts) and
//!   can be made from a `Builder`, so a test runs under the limits production uses.
//!
//! # The manual clock
//!
//! Timers run on a clock that only [`advance`](Harness::advance) moves;
//! [`Context::now`] returns it. `advance(d)` behaves as a reactor left idle for `d`: it
//! wakes at each timer deadline on the way and runs the timers due, in deadline order
//! and FIFO for equal deadlines, each seeing `now()` equal to its deadline. A timer set
//! or reset while timers run waits for a later pass, even with a zero delay, as in the
//! reactor's timer phase. At an instant before the end, passes repeat until no timer is
//! due then (an idle reactor gets to such timers on its next turns, before later
//! deadlines); at the final instant exactly one pass runs. So `advance(Duration::ZERO)`
//! is one turn's worth of timers, and a zero-delay timer set during it waits for the
//! next `advance`.
//!
//! This deliberately differs from Twisted's `task.Clock.advance`, which runs calls that
//! are scheduled during the advance in that same advance, so a chain of zero-delay
//! calls all runs in one `advance(0)` — something no real reactor turn does (see
//! twisted PR #11680). A chain of zero-delay timers that never ends makes `advance`
//! panic rather than hang.
//!
//! # Other connections
//!
//! [`add_peer`](Harness::add_peer) creates further fake connections that have no
//! protocol of their own: the protocol reaches them with [`Context::write_to`],
//! [`Context::lose_connection_of`] and friends (a chat room broadcasting), and the test
//! reads what they got with [`take_written_of`](Harness::take_written_of).
//!
//! # Pool jobs
//!
//! [`Context::defer_to_thread`] starts no thread under the harness: the job waits until
//! the test runs it, on the test's own thread, with [`run_jobs`](Harness::run_jobs)
//! (every pending job, oldest first) or [`run_job`](Harness::run_job) (one of them, to
//! finish jobs out of order as a real pool may). Its `done` callback then runs as under
//! the reactor: with the connection's protocol, effects settled after it returns, a
//! panic in the job handed over as [`JobError::Panicked`](crate::JobError), and the
//! result dropped if the connection is gone by then.
//! [`cancel_jobs`](Harness::cancel_jobs) gives every pending job
//! [`JobError::Cancelled`](crate::JobError), as a stopping reactor does.
//! `defer_to_thread` answers [`PoolBusy`] once the builder's `pool_queue_jobs` jobs are
//! pending (a reactor's threads take jobs off its queue as they start them, so it may
//! accept a few more), after [`Context::stop_reactor`], and for a connection that is
//! gone.
//!
//! # What the harness does not model
//!
//! - Kernel coalescing of bytes that arrive while reading is active, read budgets and
//!   socket errors other than the ones a test injects with
//!   [`disconnect`](Harness::disconnect).
//! - [`Context::stop_reactor`] is recorded ([`stop_requested`](Harness::stop_requested))
//!   but does not close the connection; the reactor would `lose_connection` it.
//! - Socket options succeed and do nothing. Dropping a harness calls no callback.

// Maintainers' notes.
//
// `Harness` is the protocol plus `Kit`, and `Kit` implements `Driver`: a callback gets
// `Context::new(&mut kit, ..)` while the harness holds `&mut protocol` beside it, so no
// take-out is needed. `Kit` mirrors the reactor's `Core` without sockets: `FakeConn`
// carries the flags of `reactor::table::Conn`, and `settle`, `read_round`, `drain` and
// the timer pass follow `Core::settle`, `Core::read_ready`, `Core::write_ready` and
// `Reactor::run_timers` step for step. The pure rules are shared rather than copied:
// `WriteQueue` with `push_limited` / `resume_after_drain` (watermarks and cap),
// `unwritten`, `TimerQueue` (ordering and the seq mark), `Builder::conn_settings`
// (defaults and clamping), `panic_message`. When the reactor's behaviour changes, the
// loopback test in tests/testing.rs, which runs one protocol both ways and compares
// transcripts, is the tripwire.

use std::any::TypeId;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::pool::{JobError, PoolBusy};
use crate::protocol::{Addr, Protocol, Reason};
use crate::reactor::{panic_message, reason_copy, Builder, ConnId};
use crate::timer::{TimerId, TimerQueue};
use crate::transport::{
    unwritten, BoundCall, BoundDone, ConnSettings, Context, Driver, JobFn, Push, WriteQueue,
};

/// The protocol's own connection: always the first slot.
const MAIN: ConnId = ConnId {
    index: 0,
    generation: 1,
};

/// Timer passes allowed at one instant of the manual clock before `advance` decides
/// that zero-delay timers keep re-arming forever. Far above what any sane chain needs,
/// low enough that a runaway test fails in well under a second instead of hanging.
const MAX_PASSES_PER_INSTANT: usize = 10_000;

/// Default address of the fake peer (the protocol's `peer_addr`); peers added with
/// [`Harness::add_peer`] get the following ports.
const DEFAULT_PEER_ADDR: &str = "127.0.0.1:54321";

/// Default address of this end (the protocol's `local_addr`).
const DEFAULT_LOCAL_ADDR: &str = "127.0.0.1:8000";

/// Configures a [`Harness`]: the reactor's per-connection limits, and the fake
/// addresses.
///
/// The limits are those of the reactor's [`Builder`], with the same defaults and the
/// same clamping; `HarnessBuilder::from(builder)` takes them from a `Builder` you
/// already have.
///
/// # Examples
///
/// ```
/// use twistor::testing::HarnessBuilder;
/// use twistor::{Context, Protocol, Reactor};
///
/// struct Sink;
/// impl Protocol for Sink {
///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
/// }
///
/// let h = HarnessBuilder::new()
///     .write_watermarks(1024, 256)
///     .write_cap_bytes(4096)
///     .build(Sink);
/// // Or exactly the settings the server is built with:
/// let settings = Reactor::builder().write_watermarks(32 * 1024, 8 * 1024);
/// let h2 = HarnessBuilder::from(settings).build(Sink);
/// # let _ = (h, h2);
/// ```
#[derive(Clone, Debug)]
pub struct HarnessBuilder {
    settings: Builder,
    peer_addr: Addr,
    local_addr: Addr,
}

impl Default for HarnessBuilder {
    fn default() -> Self {
        HarnessBuilder::from(Builder::default())
    }
}

impl From<Builder> for HarnessBuilder {
    /// Takes the per-connection settings of a reactor [`Builder`]: watermarks, write
    /// cap, read buffer size, idle and close timeouts. The others do not apply.
    fn from(settings: Builder) -> Self {
        HarnessBuilder {
            settings,
            peer_addr: Addr::Inet(DEFAULT_PEER_ADDR.parse().expect("valid address")),
            local_addr: Addr::Inet(DEFAULT_LOCAL_ADDR.parse().expect("valid address")),
        }
    }
}

impl HarnessBuilder {
    /// Starts configuring a harness, with the reactor's defaults.
    pub fn new() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// Write-buffer watermarks, as [`Builder::write_watermarks`].
    pub fn write_watermarks(mut self, high: usize, low: usize) -> Self {
        self.settings = self.settings.write_watermarks(high, low);
        self
    }

    /// Most bytes queued for one connection, as [`Builder::write_cap_bytes`].
    pub fn write_cap_bytes(mut self, n: usize) -> Self {
        self.settings = self.settings.write_cap_bytes(n);
        self
    }

    /// Largest chunk handed to one `data_received`, as [`Builder::read_buffer_bytes`].
    pub fn read_buffer_bytes(mut self, n: usize) -> Self {
        self.settings = self.settings.read_buffer_bytes(n);
        self
    }

    /// Idle timeout on the manual clock, as [`Builder::idle_timeout`].
    pub fn idle_timeout(mut self, t: Option<Duration>) -> Self {
        self.settings = self.settings.idle_timeout(t);
        self
    }

    /// How long `lose_connection` waits for the peer on the manual clock, as
    /// [`Builder::close_timeout`].
    pub fn close_timeout(mut self, t: Duration) -> Self {
        self.settings = self.settings.close_timeout(t);
        self
    }

    /// Pool jobs that may be pending before `defer_to_thread` answers [`PoolBusy`], as
    /// [`Builder::pool_queue_jobs`].
    pub fn pool_queue_jobs(mut self, n: usize) -> Self {
        self.settings = self.settings.pool_queue_jobs(n);
        self
    }

    /// The address [`Context::peer_addr`] returns (default `127.0.0.1:54321`).
    pub fn peer_addr(mut self, addr: impl Into<Addr>) -> Self {
        self.peer_addr = addr.into();
        self
    }

    /// The address [`Context::local_addr`] returns (default `127.0.0.1:8000`).
    pub fn local_addr(mut self, addr: impl Into<Addr>) -> Self {
        self.local_addr = addr.into();
        self
    }

    /// Builds a harness around `protocol`, not yet connected: call
    /// [`Harness::connect`].
    pub fn build<P: Protocol>(self, protocol: P) -> Harness<P> {
        let now = Instant::now();
        let main = FakeConn::new(MAIN, self.peer_addr, self.local_addr, now);
        Harness {
            protocol,
            kit: Kit {
                settings: self.settings.conn_settings(),
                conns: vec![main],
                dirty: Vec::new(),
                timers: TimerQueue::new(),
                start: now,
                now,
                stop_requested: false,
                jobs: VecDeque::new(),
            },
        }
    }
}

/// One protocol on a fake transport with a manual clock; see the [module
/// docs](self).
///
/// The test acts as the peer (`feed`, `eof`, `disconnect`, the peer window) and as the
/// clock (`advance`), and observes what the protocol did (`take_written`, `lost`,
/// `is_closing`, `reading_paused`, ...). Every method that runs callbacks returns once
/// their deferred effects are carried out.
///
/// Methods that take a [`ConnId`] (`..._of`) act on a connection made with
/// [`add_peer`](Self::add_peer), or on [`id`](Self::id) itself.
///
/// # Panics
///
/// Methods panic on misuse by the test: feeding before [`connect`](Self::connect) or
/// after [`eof`](Self::eof), connecting twice, or passing a `ConnId` that is not from
/// this harness. The protocol can make only [`advance`](Self::advance) panic, with
/// timers that re-arm with zero delay forever, and
/// [`assert_clean`](Self::assert_clean), by leaving work behind. A panic inside a
/// callback is the protocol's and is caught, as under the reactor.
///
/// # Examples
///
/// A plain [`Protocol`], a peer that reads slowly, and the watermark notices:
///
/// ```
/// use twistor::testing::{Harness, HarnessBuilder};
/// use twistor::{Context, Protocol};
///
/// #[derive(Default)]
/// struct Echo {
///     paused: bool,
/// }
///
/// impl Protocol for Echo {
///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
///         cx.write(data);
///     }
///     fn pause_producing(&mut self, _: &mut Context<'_>) {
///         self.paused = true;
///     }
///     fn resume_producing(&mut self, _: &mut Context<'_>) {
///         self.paused = false;
///     }
/// }
///
/// let mut h = HarnessBuilder::new().write_watermarks(8, 2).build(Echo::default());
/// h.connect();
/// h.set_peer_window(Some(4)); // the peer takes 4 bytes, then stops reading
/// h.feed(b"0123456789abcdef");
/// assert_eq!(h.take_written(), b"0123");
/// assert_eq!(h.buffered(), 12);
/// assert!(h.protocol().paused);
///
/// h.peer_reads(10); // down to 2 queued: at the low watermark
/// assert!(!h.protocol().paused);
/// assert_eq!(h.take_written(), b"456789abcd");
/// ```
pub struct Harness<P: Protocol> {
    protocol: P,
    kit: Kit,
}

impl<P: Protocol> fmt::Debug for Harness<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let main = &self.kit.conns[0];
        f.debug_struct("Harness")
            .field("protocol", &std::any::type_name::<P>())
            .field("elapsed", &self.elapsed())
            .field("made", &main.made)
            .field("lost", &main.lost)
            .field("buffered", &main.out.len())
            .field("peers", &(self.kit.conns.len() - 1))
            .field("timers", &self.kit.timers.len())
            .field("jobs", &self.kit.jobs.len())
            .finish()
    }
}

impl<P: Protocol> Harness<P> {
    /// A harness with the reactor's default settings, not yet connected.
    pub fn new(protocol: P) -> Harness<P> {
        HarnessBuilder::default().build(protocol)
    }

    /// Makes the connection: `connection_made` (and the idle timer, if configured).
    ///
    /// # Panics
    /// If called twice.
    pub fn connect(&mut self) {
        let main = &mut self.kit.conns[0];
        assert!(!main.made, "Harness::connect called twice");
        main.made = true;
        main.last_read = self.kit.now;
        if let Some(idle) = self.kit.settings.idle_timeout {
            let due = self.kit.now + idle;
            self.kit.track_timer(MAIN, due, Task::Idle(MAIN));
        }
        self.invoke(MAIN, |p, cx| p.connection_made(cx));
        self.settle_and_pump();
    }

    /// The protocol's connection id (what [`Context::id`] returns).
    pub fn id(&self) -> ConnId {
        MAIN
    }

    /// The protocol, to inspect its state.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// The protocol, to change its state directly (no callback runs; to act through a
    /// [`Context`], use [`call`](Self::call)).
    pub fn protocol_mut(&mut self) -> &mut P {
        &mut self.protocol
    }

    /// Gives the protocol back.
    pub fn into_protocol(self) -> P {
        self.protocol
    }

    /// Runs `f` with the protocol and its [`Context`] as if it were one of its
    /// callbacks (a panic is caught and closes the connection; effects are deferred),
    /// as [`Reactor::call_protocol`](crate::Reactor::call_protocol). False, without
    /// running `f`, if the connection is not made or already lost.
    pub fn call<F>(&mut self, f: F) -> bool
    where
        F: FnOnce(&mut P, &mut Context<'_>),
    {
        if !self.kit.live(MAIN).is_some_and(|c| c.made) {
            return false;
        }
        self.invoke(MAIN, f);
        self.settle_and_pump();
        true
    }

    // ----- the peer's side: inbound -----

    /// The peer sends `data`: one readable event.
    ///
    /// Delivered at once to `data_received` in chunks of at most the read buffer size,
    /// or kept in the fake kernel while the protocol has paused reading (see the
    /// [module docs](self)). Dropped once the connection is closing or lost, as the
    /// reactor stops reading then.
    ///
    /// # Panics
    /// Before [`connect`](Self::connect) or after [`eof`](Self::eof).
    pub fn feed(&mut self, data: &[u8]) {
        let main = &mut self.kit.conns[0];
        assert!(main.made, "Harness::feed before connect()");
        assert!(!main.peer_eof, "Harness::feed after eof()");
        if main.lost.is_some() || main.is_closing() {
            log::trace!("{MAIN}: {} bytes fed to a closed connection", data.len());
            return;
        }
        main.inbound.extend_from_slice(data);
        self.settle_and_pump();
    }

    /// The peer shuts its write side (TCP half-close): once the bytes fed before it are
    /// delivered, `read_eof` runs (or, if this end's write side is already shut, the
    /// connection ends with [`Reason::Done`]).
    ///
    /// # Panics
    /// Before [`connect`](Self::connect).
    pub fn eof(&mut self) {
        let main = &mut self.kit.conns[0];
        assert!(main.made, "Harness::eof before connect()");
        main.peer_eof = true;
        self.settle_and_pump();
    }

    /// The connection is lost from the peer's side or the network's, for `reason`: what
    /// queued is dropped and `connection_lost(reason)` runs. No-op once lost.
    ///
    /// A clean close by the peer is [`eof`](Self::eof); this is for resets
    /// (`Reason::Lost`), I/O errors and the like.
    pub fn disconnect(&mut self, reason: Reason) {
        self.disconnect_of(MAIN, reason)
    }

    // ----- the peer's side: outbound -----

    /// Takes what the protocol wrote and the fake kernel accepted so far.
    pub fn take_written(&mut self) -> Vec<u8> {
        self.take_written_of(MAIN)
    }

    /// What the protocol wrote and the fake kernel accepted, not yet taken.
    pub fn written(&self) -> &[u8] {
        &self.kit.conns[0].sent
    }

    /// Bytes queued in the transport that the peer window has not let through
    /// (what [`Context::buffered`] returns).
    pub fn buffered(&self) -> usize {
        self.buffered_of(MAIN)
    }

    /// How much more the fake kernel accepts: `Some(n)` takes at most `n` more bytes
    /// (the rest queues, under the watermarks and cap), `None` (the default) takes
    /// everything. Queued bytes move into the newly allowed room at once, which may
    /// call `resume_producing` or finish a close.
    pub fn set_peer_window(&mut self, window: Option<usize>) {
        self.set_peer_window_of(MAIN, window)
    }

    /// The peer reads `n` bytes, making room for `n` more: queued bytes move on, which
    /// may call `resume_producing` or finish a close. No-op with an unlimited window.
    pub fn peer_reads(&mut self, n: usize) {
        self.peer_reads_of(MAIN, n)
    }

    // ----- what the protocol did -----

    /// Made, and neither closing nor lost (what [`Context::is_open`] returns inside).
    pub fn is_open(&self) -> bool {
        self.is_open_of(MAIN)
    }

    /// The protocol asked to close (`lose_connection`) and the transport is still
    /// flushing what is queued; `connection_lost` has not run yet.
    pub fn is_closing(&self) -> bool {
        self.kit.live(MAIN).is_some_and(|c| c.is_closing())
    }

    /// The write side is shut (after `lose_write_connection` and a flush): the peer has
    /// seen EOF. The connection may still be reading.
    pub fn is_write_shut(&self) -> bool {
        self.kit.conns[0].write_shut
    }

    /// The protocol paused reading ([`Context::pause_reading`]) and has not resumed.
    pub fn reading_paused(&self) -> bool {
        !self.kit.conns[0].reading
    }

    /// The protocol was told to pause producing and has not been told to resume.
    pub fn producer_paused(&self) -> bool {
        self.kit.conns[0].producer_paused
    }

    /// The reason handed to `connection_lost`, once it has run.
    pub fn lost(&self) -> Option<&Reason> {
        self.lost_of(MAIN)
    }

    /// The protocol called [`Context::stop_reactor`].
    pub fn stop_requested(&self) -> bool {
        self.kit.stop_requested
    }

    // ----- other connections -----

    /// Adds a fake connection with no protocol, open and with an unlimited window, for
    /// the protocol to reach by id ([`Context::write_to`] and friends).
    pub fn add_peer(&mut self) -> ConnId {
        let index = u32::try_from(self.kit.conns.len()).expect("fewer than 2^32 peers");
        let id = ConnId {
            index,
            generation: index + 1,
        };
        let peer = match &self.kit.conns[0].peer {
            Addr::Inet(a) => {
                Addr::Inet(SocketAddr::new(a.ip(), a.port().wrapping_add(index as u16)))
            }
            other => other.clone(),
        };
        let local = self.kit.conns[0].local.clone();
        let mut conn = FakeConn::new(id, peer, local, self.kit.now);
        conn.made = true;
        self.kit.conns.push(conn);
        id
    }

    /// Takes what connection `id` was sent and its fake kernel accepted so far.
    ///
    /// # Panics
    /// If `id` is not from this harness.
    pub fn take_written_of(&mut self, id: ConnId) -> Vec<u8> {
        std::mem::take(&mut self.kit.record_mut(id).sent)
    }

    /// Bytes queued for connection `id` that its peer window has not let through.
    pub fn buffered_of(&self, id: ConnId) -> usize {
        self.kit.record(id).out.len()
    }

    /// [`set_peer_window`](Self::set_peer_window) for connection `id`.
    pub fn set_peer_window_of(&mut self, id: ConnId, window: Option<usize>) {
        self.kit.record_mut(id).window = window;
        self.drain(id);
        self.settle_and_pump();
    }

    /// [`peer_reads`](Self::peer_reads) for connection `id`.
    pub fn peer_reads_of(&mut self, id: ConnId, n: usize) {
        let c = self.kit.record_mut(id);
        if let Some(w) = &mut c.window {
            *w = w.saturating_add(n);
        }
        self.drain(id);
        self.settle_and_pump();
    }

    /// Connection `id` is open: neither closing nor lost.
    pub fn is_open_of(&self, id: ConnId) -> bool {
        self.kit.live(id).is_some_and(|c| c.made && !c.is_closing())
    }

    /// Why connection `id` ended, once it has.
    pub fn lost_of(&self, id: ConnId) -> Option<&Reason> {
        self.kit.record(id).lost.as_ref()
    }

    /// [`disconnect`](Self::disconnect) for connection `id`.
    pub fn disconnect_of(&mut self, id: ConnId, reason: Reason) {
        if self.kit.record(id).made {
            self.kit.close_with(id, reason);
            self.settle_and_pump();
        }
    }

    // ----- the clock -----

    /// Moves the manual clock forward by `by`, running the timers that fall due on the
    /// way (see the [module docs](self) for the exact rule).
    ///
    /// # Panics
    /// If timers keep setting zero-delay timers at one instant without end.
    pub fn advance(&mut self, by: Duration) {
        let target = self.kit.now + by;
        let mut passes_here = 0;
        // Instants before the target: pass until nothing is due, as an idle reactor's
        // next turns would before it reaches a later deadline.
        while let Some(deadline) = self.kit.timers.next_deadline().filter(|d| *d < target) {
            if deadline > self.kit.now {
                self.kit.now = deadline;
                passes_here = 0;
            }
            passes_here += 1;
            assert!(
                passes_here <= MAX_PASSES_PER_INSTANT,
                "Harness::advance: timers keep re-arming with zero delay at {:?}",
                self.elapsed()
            );
            self.run_timers();
        }
        // The target instant: exactly one pass, like one turn of the reactor.
        self.kit.now = target;
        self.run_timers();
    }

    /// The manual clock (what [`Context::now`] returns).
    pub fn now(&self) -> Instant {
        self.kit.now
    }

    /// How far the manual clock has moved since the harness was built.
    pub fn elapsed(&self) -> Duration {
        self.kit.now - self.kit.start
    }

    /// Pending timers, the harness's own included (idle and close deadlines), as
    /// [`Reactor::timer_count`](crate::Reactor::timer_count). Zero at the end of a test
    /// means nothing was left scheduled.
    pub fn pending_timers(&self) -> usize {
        self.kit.timers.len()
    }

    /// Asserts that nothing is left scheduled: no pending timer and no pending pool job
    /// (Twisted trial's dirty-reactor check). Call it at the end of a test, after the
    /// connection is lost or once the protocol should be idle.
    ///
    /// # Panics
    /// If a timer (the harness's own idle or close deadline included) or a pool job is
    /// pending.
    pub fn assert_clean(&mut self) {
        let (timers, jobs) = (self.kit.timers.len(), self.kit.jobs.len());
        assert!(
            timers == 0 && jobs == 0,
            "harness not clean: {timers} timer(s) pending (next in {:?}), {jobs} pool job(s) pending",
            self.next_timer_in()
        );
    }

    /// Time until the earliest pending timer, if any: `advance` by it to fire it.
    pub fn next_timer_in(&mut self) -> Option<Duration> {
        let now = self.kit.now;
        self.kit
            .timers
            .next_deadline()
            .map(|d| d.saturating_duration_since(now))
    }

    // ----- the thread pool -----

    /// Pool jobs submitted with [`Context::defer_to_thread`] whose results are not
    /// delivered yet, as [`Reactor::pending_jobs`](crate::Reactor::pending_jobs).
    pub fn pending_jobs(&self) -> usize {
        self.kit.jobs.len()
    }

    /// Runs the pool jobs pending now, oldest first, on this thread, delivering each
    /// result to its `done` callback before the next job runs. Jobs submitted by those
    /// callbacks wait for the next call. Returns how many ran.
    pub fn run_jobs(&mut self) -> usize {
        let n = self.kit.jobs.len();
        for _ in 0..n {
            self.run_job(0);
        }
        n
    }

    /// Runs the `n`-th pending pool job (0 is the oldest) on this thread and delivers
    /// its result: a test picks the order in which jobs finish.
    ///
    /// # Panics
    /// If fewer than `n + 1` jobs are pending.
    pub fn run_job(&mut self, n: usize) {
        let pending = self.kit.jobs.len();
        let Some(job) = self.kit.jobs.remove(n) else {
            panic!("Harness::run_job({n}) with {pending} jobs pending");
        };
        let result = catch_unwind(AssertUnwindSafe(job.work))
            .map_err(|panic| JobError::Panicked(panic_message(&*panic)));
        self.deliver(job.id, job.done, result);
    }

    /// Drops every pending pool job without running it; each `done` callback gets
    /// [`JobError::Cancelled`], as when the reactor stops.
    pub fn cancel_jobs(&mut self) {
        for job in std::mem::take(&mut self.kit.jobs) {
            self.deliver(job.id, job.done, Err(JobError::Cancelled));
        }
    }

    // ----- the reactor's side -----

    /// A pool job's result is back: `done` runs with the protocol if the connection is
    /// still there (`Reactor::job_finished`).
    fn deliver(&mut self, id: ConnId, done: BoundDone, result: crate::transport::JobResult) {
        if let Some(c) = self.kit.live_mut(id).filter(|c| c.made) {
            c.jobs -= 1;
            c.job_writes = true;
            self.invoke(id, move |p, cx| done(p, cx, result));
            if let Some(c) = self.kit.live_mut(id) {
                c.job_writes = false;
            }
            self.kit.mark_dirty(id);
        } else {
            log::debug!("{id}: dropping a pool result: the connection is gone");
        }
        self.settle_and_pump();
    }

    /// Runs one callback of connection `id` (only the protocol's own has one), catching
    /// a panic, which closes the connection (`Core::invoke`).
    fn invoke(&mut self, id: ConnId, f: impl FnOnce(&mut P, &mut Context<'_>)) {
        if id != MAIN || self.kit.live(id).is_none() {
            return;
        }
        let Harness { protocol, kit } = self;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cx = Context::new(kit, id, TypeId::of::<P>());
            f(protocol, &mut cx);
        }));
        if let Err(panic) = result {
            let msg = panic_message(&*panic);
            log::error!("{id} {}: callback panicked: {msg}", kit.conns[0].peer);
            kit.close_with(id, Reason::Panic(msg));
        }
    }

    /// Carries out what callbacks asked for, until nothing is dirty (`Core::settle`).
    fn settle(&mut self) {
        while let Some(id) = self.kit.dirty.pop() {
            let Some(c) = self.kit.live_mut(id) else {
                continue;
            };
            c.dirty = false;
            if let Some(reason) = c.close.take() {
                self.finish(id, reason);
                continue;
            }
            if c.notify_pause {
                c.notify_pause = false;
                self.invoke(id, |p, cx| p.pause_producing(cx));
            }
            let Some(c) = self.kit.live_mut(id) else {
                continue;
            };
            if c.close.is_some() {
                self.kit.mark_dirty(id);
                continue;
            }
            if !c.out.is_empty() {
                continue;
            }
            if c.losing {
                // The kit's kernel never resets, so nothing to linger for: a graceful
                // close ends once flushed and the connection's pool results are in.
                if c.jobs == 0 {
                    self.finish(id, Reason::Done);
                }
            } else if c.shutdown_write && !c.write_shut {
                c.write_shut = true;
                log::trace!("{id}: write side shut");
                if c.read_eof {
                    self.finish(id, Reason::Done);
                }
            }
        }
    }

    /// Ends connection `id`: cancels its timers, drops what it queued, and calls
    /// `connection_lost` exactly once if it was made (`Core::finish`).
    fn finish(&mut self, id: ConnId, reason: Reason) {
        let Some(c) = self.kit.live_mut(id) else {
            return;
        };
        c.out.clear();
        c.inbound.clear();
        c.lost = Some(reason_copy(&reason));
        let timers = std::mem::take(&mut c.timers);
        log::debug!("{id} {}: {reason}", c.peer);
        for t in timers {
            self.kit.timers.cancel(t);
        }
        if id != MAIN {
            return;
        }
        let Harness { protocol, kit } = self;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cx = Context::new(kit, id, TypeId::of::<P>());
            protocol.connection_lost(&mut cx, reason);
        }));
        if let Err(panic) = result {
            log::error!(
                "{id} {}: connection_lost panicked: {}",
                kit.conns[0].peer,
                panic_message(&*panic)
            );
        }
    }

    /// Settles, then serves reads that became possible: data and EOF waiting in the
    /// fake kernel, a resumed reader (the reactor's carried-over work).
    fn settle_and_pump(&mut self) {
        self.settle();
        while self.kit.live(MAIN).is_some_and(FakeConn::read_pending) {
            self.read_round();
            self.settle();
        }
    }

    /// One readable event for the protocol's connection (`Core::read_ready`, reading
    /// to the end): `reading_resumed` if owed, then the waiting bytes in chunks, then
    /// EOF, stopping as soon as the protocol no longer wants to read.
    fn read_round(&mut self) {
        let chunk_bytes = self.kit.settings.read_buffer_bytes;
        loop {
            let now = self.kit.now;
            let Some(c) = self.kit.live_mut(MAIN) else {
                return;
            };
            if c.resumed && c.wants_read() {
                c.resumed = false;
                self.invoke(MAIN, |p, cx| p.reading_resumed(cx));
                continue;
            }
            if !c.wants_read() {
                return;
            }
            if !c.inbound.is_empty() {
                let n = c.inbound.len().min(chunk_bytes);
                let chunk: Vec<u8> = c.inbound.drain(..n).collect();
                c.last_read = now;
                log::trace!("{MAIN}: read {n} bytes");
                self.invoke(MAIN, |p, cx| p.data_received(cx, &chunk));
                continue;
            }
            if c.peer_eof {
                c.read_eof = true;
                log::trace!("{MAIN}: read EOF");
                if c.write_shut {
                    // Both directions are closed now.
                    self.kit.close_with(MAIN, Reason::Done);
                } else {
                    self.invoke(MAIN, |p, cx| p.read_eof(cx));
                }
            }
            return;
        }
    }

    /// One writable event for connection `id` (`Core::write_ready` and
    /// `Core::after_drain`): queued bytes move into the peer window; a paused producer
    /// may resume; a pending close may finish.
    fn drain(&mut self, id: ConnId) {
        let limits = self.kit.settings.limits;
        let Some(c) = self.kit.live_mut(id) else {
            return;
        };
        if c.out.is_empty() || c.close.is_some() {
            return;
        }
        let (window, sent) = (&mut c.window, &mut c.sent);
        let drained = c
            .out
            .drain_into(|bufs| match kernel_take(window, sent, bufs) {
                0 => Err(io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            });
        debug_assert!(drained.is_ok(), "the fake kernel never fails");
        if c.out
            .resume_after_drain(&limits, &mut c.producer_paused, &mut c.notify_pause)
        {
            self.invoke(id, |p, cx| p.resume_producing(cx));
        }
        if self
            .kit
            .live(id)
            .is_some_and(|c| c.out.is_empty() && (c.losing || c.shutdown_write))
        {
            self.kit.mark_dirty(id);
        }
    }

    /// Runs the timers due now that were set before this pass began, settling after
    /// each (`Reactor::run_timers`), then serves reads that became possible.
    fn run_timers(&mut self) {
        let now = self.kit.now;
        let mark = self.kit.timers.seq_mark();
        while let Some((timer, task)) = self.kit.timers.pop_due(now, mark) {
            match task {
                Task::Bound(id, call) => {
                    self.kit.untrack_timer(id, timer);
                    if self.kit.live(id).is_some_and(|c| c.made) {
                        self.invoke(id, |p, cx| call(p, cx));
                    }
                }
                Task::Idle(id) => {
                    self.kit.untrack_timer(id, timer);
                    self.kit.check_idle(id);
                }
                Task::CloseDeadline(id) => {
                    self.kit.untrack_timer(id, timer);
                    if let Some(c) = self.kit.live(id) {
                        log::warn!("{id} {}: peer did not take queued bytes in time", c.peer);
                    }
                    self.kit.close_with(id, Reason::TimedOut);
                }
            }
            self.settle();
        }
        self.settle_and_pump();
    }
}

/// What the harness's timer queue carries (the reactor's `Task`, less what needs
/// sockets or listeners).
enum Task {
    Bound(ConnId, BoundCall),
    Idle(ConnId),
    CloseDeadline(ConnId),
}

/// One fake connection: the flags of the reactor's `Conn`, a fake kernel on each side,
/// and, once it ended, why.
struct FakeConn {
    id: ConnId,
    peer: Addr,
    local: Addr,
    out: WriteQueue,
    /// Bytes the fake kernel accepted and the test has not taken.
    sent: Vec<u8>,
    /// How many more bytes the fake kernel accepts; `None`: any number.
    window: Option<usize>,
    /// Bytes fed by the test and not yet delivered.
    inbound: Vec<u8>,
    /// The test called `eof`.
    peer_eof: bool,
    timers: Vec<TimerId>,
    close: Option<Reason>,
    /// Set when the connection ended: it is gone for every `Driver` method.
    lost: Option<Reason>,
    last_read: Instant,
    made: bool,
    reading: bool,
    resumed: bool,
    read_eof: bool,
    losing: bool,
    /// Pool jobs of this connection not delivered yet: a graceful close waits for them.
    jobs: u32,
    /// A pool result is being delivered: its writes are accepted while closing.
    job_writes: bool,
    shutdown_write: bool,
    write_shut: bool,
    producer_paused: bool,
    notify_pause: bool,
    dirty: bool,
}

impl FakeConn {
    fn new(id: ConnId, peer: Addr, local: Addr, now: Instant) -> FakeConn {
        FakeConn {
            id,
            peer,
            local,
            out: WriteQueue::default(),
            sent: Vec::new(),
            window: None,
            inbound: Vec::new(),
            peer_eof: false,
            timers: Vec::new(),
            close: None,
            lost: None,
            last_read: now,
            made: false,
            reading: true,
            resumed: false,
            read_eof: false,
            losing: false,
            jobs: 0,
            job_writes: false,
            shutdown_write: false,
            write_shut: false,
            producer_paused: false,
            notify_pause: false,
            dirty: false,
        }
    }

    fn is_closing(&self) -> bool {
        self.losing || self.close.is_some()
    }

    fn wants_read(&self) -> bool {
        self.made && self.reading && !self.read_eof && !self.is_closing()
    }

    fn accepts_writes(&self) -> bool {
        self.close.is_none() && (!self.losing || self.job_writes) && !self.shutdown_write
    }

    /// A readable event would do something now.
    fn read_pending(&self) -> bool {
        self.wants_read() && (self.resumed || !self.inbound.is_empty() || self.peer_eof)
    }
}

/// The fake kernel's send side: takes what the window allows from `bufs`, in order.
fn kernel_take(window: &mut Option<usize>, sent: &mut Vec<u8>, bufs: &[IoSlice<'_>]) -> usize {
    let mut room = window.unwrap_or(usize::MAX);
    let mut taken = 0;
    for buf in bufs {
        let n = buf.len().min(room);
        sent.extend_from_slice(&buf[..n]);
        taken += n;
        room -= n;
        if room == 0 {
            break;
        }
    }
    if let Some(w) = window {
        *w -= taken;
    }
    taken
}

/// A pool job waiting for the test to run it.
struct Job {
    id: ConnId,
    work: JobFn,
    done: BoundDone,
}

/// The reactor's side of the harness: the fake connections, the timers and the clock.
/// It implements `Driver`, so a `Context` over it is what a protocol sees.
struct Kit {
    settings: ConnSettings,
    /// Slot `i` holds the connection with index `i`; slots are never reused.
    conns: Vec<FakeConn>,
    dirty: Vec<ConnId>,
    timers: TimerQueue<Task>,
    start: Instant,
    now: Instant,
    stop_requested: bool,
    /// Pool jobs in submission order.
    jobs: VecDeque<Job>,
}

impl Kit {
    /// The connection `id` even after it ended, for the test's questions.
    fn record(&self, id: ConnId) -> &FakeConn {
        match self.conns.get(id.index as usize) {
            Some(c) if c.id == id => c,
            _ => panic!("{id:?} is not a connection of this harness"),
        }
    }

    fn record_mut(&mut self, id: ConnId) -> &mut FakeConn {
        match self.conns.get_mut(id.index as usize) {
            Some(c) if c.id == id => c,
            _ => panic!("{id:?} is not a connection of this harness"),
        }
    }

    /// The connection `id` while it exists for the protocol (not yet ended).
    fn live(&self, id: ConnId) -> Option<&FakeConn> {
        self.conns
            .get(id.index as usize)
            .filter(|c| c.id == id && c.lost.is_none())
    }

    fn live_mut(&mut self, id: ConnId) -> Option<&mut FakeConn> {
        self.conns
            .get_mut(id.index as usize)
            .filter(|c| c.id == id && c.lost.is_none())
    }

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.live_mut(id) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Decides to close `id` once the current callback returns; queued bytes are
    /// dropped; the first reason wins (`Core::close_with`).
    fn close_with(&mut self, id: ConnId, reason: Reason) {
        let Some(c) = self.live_mut(id) else { return };
        if c.close.is_none() {
            c.close = Some(reason);
            c.out.clear();
        }
        self.mark_dirty(id);
    }

    /// Queues what the fake kernel did not take, under the shared watermark and cap
    /// rules (`Core::enqueue`).
    fn enqueue(&mut self, id: ConnId, parts: &[&[u8]]) -> bool {
        let limits = self.settings.limits;
        let Some(c) = self.live_mut(id) else {
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

    fn track_timer(&mut self, id: ConnId, deadline: Instant, task: Task) -> TimerId {
        let timer = self.timers.insert(deadline, task);
        if let Some(c) = self.live_mut(id) {
            c.timers.push(timer);
        }
        timer
    }

    fn untrack_timer(&mut self, id: ConnId, timer: TimerId) {
        if let Some(c) = self.live_mut(id) {
            if let Some(i) = c.timers.iter().position(|t| *t == timer) {
                c.timers.swap_remove(i);
            }
        }
    }

    /// The idle timer fired: close if nothing arrived for the idle timeout, else re-arm
    /// from the last read (`Core::check_idle`).
    fn check_idle(&mut self, id: ConnId) {
        let (Some(idle), Some(c)) = (self.settings.idle_timeout, self.live(id)) else {
            return;
        };
        let due = c.last_read + idle;
        if due <= self.now {
            log::debug!("{id} {}: idle for {idle:?}", c.peer);
            self.close_with(id, Reason::TimedOut);
        } else {
            self.track_timer(id, due, Task::Idle(id));
        }
    }
}

impl Driver for Kit {
    fn write(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.write_vectored(id, &[IoSlice::new(data)])
    }

    fn write_vectored(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> bool {
        let Some(c) = self.live_mut(id) else {
            return false;
        };
        if !c.accepts_writes() {
            log::debug!("{id}: write after close dropped");
            return false;
        }
        // As the reactor: straight to the kernel only when nothing is queued, so
        // bytes never overtake what waits.
        let written = if c.out.is_empty() {
            kernel_take(&mut c.window, &mut c.sent, bufs)
        } else {
            0
        };
        let rest = unwritten(bufs, written);
        rest.is_empty() || self.enqueue(id, &rest)
    }

    fn lose_connection(&mut self, id: ConnId) {
        let deadline = self.now + self.settings.close_timeout;
        let Some(c) = self.live_mut(id) else { return };
        if c.is_closing() {
            return;
        }
        c.losing = true;
        if !c.out.is_empty() || c.jobs > 0 {
            self.track_timer(id, deadline, Task::CloseDeadline(id));
        }
        self.mark_dirty(id);
    }

    fn lose_write_connection(&mut self, id: ConnId) {
        let Some(c) = self.live_mut(id) else { return };
        if !c.is_closing() && !c.shutdown_write {
            c.shutdown_write = true;
            self.mark_dirty(id);
        }
    }

    fn abort_connection(&mut self, id: ConnId) {
        self.close_with(id, Reason::Aborted);
    }

    fn set_reading(&mut self, id: ConnId, reading: bool) {
        let Some(c) = self.live_mut(id) else { return };
        let resumed = reading && !c.reading;
        c.reading = reading;
        c.resumed |= resumed;
    }

    fn is_open(&self, id: ConnId) -> bool {
        self.live(id).is_some_and(|c| !c.is_closing())
    }

    fn is_reading(&self, id: ConnId) -> bool {
        self.live(id).is_some_and(|c| c.wants_read())
    }

    fn buffered(&self, id: ConnId) -> usize {
        self.live(id).map_or(0, |c| c.out.len())
    }

    fn peer_addr(&self, id: ConnId) -> Option<Addr> {
        self.live(id).map(|c| c.peer.clone())
    }

    fn local_addr(&self, id: ConnId) -> Option<Addr> {
        self.live(id).map(|c| c.local.clone())
    }

    fn set_nodelay(&mut self, id: ConnId, _on: bool) -> io::Result<()> {
        self.live(id)
            .map(drop)
            .ok_or(io::ErrorKind::NotConnected.into())
    }

    fn set_keepalive(&mut self, id: ConnId, _idle: Option<Duration>) -> io::Result<()> {
        self.live(id)
            .map(drop)
            .ok_or(io::ErrorKind::NotConnected.into())
    }

    fn call_later(&mut self, id: ConnId, delay: Duration, call: BoundCall) -> TimerId {
        let deadline = self.now + delay;
        if self.live(id).is_none() {
            // Gone already: hand back an id that is dead from the start.
            let t = self.timers.insert(deadline, Task::Bound(id, call));
            self.timers.cancel(t);
            return t;
        }
        self.track_timer(id, deadline, Task::Bound(id, call))
    }

    fn cancel_timer(&mut self, timer: TimerId) -> bool {
        match self.timers.cancel(timer) {
            Some(Task::Bound(id, _) | Task::Idle(id) | Task::CloseDeadline(id)) => {
                self.untrack_timer(id, timer);
                true
            }
            None => false,
        }
    }

    fn reset_timer(&mut self, timer: TimerId, delay: Duration) -> bool {
        self.timers.reset(timer, self.now + delay)
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn stop(&mut self) {
        self.stop_requested = true;
    }

    fn can_defer_to_thread(&self, id: ConnId) -> bool {
        !self.stop_requested
            && self.live(id).is_some()
            && self.jobs.len() < self.settings.pool_queue_jobs
    }

    fn defer_to_thread(&mut self, id: ConnId, job: JobFn, done: BoundDone) -> Result<(), PoolBusy> {
        // As `Core::submit_job`: refused while stopping, for a connection that is gone,
        // and when the queue is full (here every pending job is queued).
        if self.stop_requested
            || self.live(id).is_none()
            || self.jobs.len() >= self.settings.pool_queue_jobs
        {
            return Err(PoolBusy);
        }
        if let Some(c) = self.live_mut(id) {
            c.jobs += 1;
        }
        self.jobs.push_back(Job {
            id,
            work: job,
            done,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Timer firings: (label, elapsed at firing).
    type Fired = Rc<RefCell<Vec<(&'static str, Duration)>>>;

    /// Records timer firings into a shared log.
    struct Clocked {
        log: Fired,
        start: Option<Instant>,
    }

    impl Protocol for Clocked {
        fn connection_made(&mut self, cx: &mut Context<'_>) {
            self.start = Some(cx.now());
        }
        fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    }

    fn clocked() -> (Harness<Clocked>, Fired) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut h = Harness::new(Clocked {
            log: Rc::clone(&log),
            start: None,
        });
        h.connect();
        (h, log)
    }

    fn at(label: &'static str, delay: Duration) -> impl FnOnce(&mut Clocked, &mut Context<'_>) {
        move |_: &mut Clocked, cx: &mut Context<'_>| {
            cx.call_later(delay, move |p: &mut Clocked, cx| {
                let t = cx.now() - p.start.unwrap();
                p.log.borrow_mut().push((label, t));
            });
        }
    }

    fn labels(log: &Fired) -> Vec<&'static str> {
        log.borrow_mut().drain(..).map(|(l, _)| l).collect()
    }

    #[test]
    fn kernel_takes_what_the_window_allows_in_order() {
        let bufs = [IoSlice::new(b"abc"), IoSlice::new(b"def")];
        let (mut window, mut sent) = (Some(4), Vec::new());
        assert_eq!(kernel_take(&mut window, &mut sent, &bufs), 4);
        assert_eq!((window, &sent[..]), (Some(0), &b"abcd"[..]));
        assert_eq!(kernel_take(&mut window, &mut sent, &bufs), 0);
        let mut unlimited = None;
        assert_eq!(kernel_take(&mut unlimited, &mut sent, &bufs), 6);
        assert_eq!(unlimited, None);
    }

    #[test]
    fn callbacks_see_their_own_deadline_as_now() {
        let (mut h, log) = clocked();
        h.call(at("a", ms(30)));
        h.call(at("b", ms(10)));
        h.advance(ms(100));
        assert_eq!(*log.borrow(), [("b", ms(10)), ("a", ms(30))]);
        assert_eq!(h.elapsed(), ms(100));
    }

    #[test]
    fn advance_zero_is_exactly_one_pass() {
        let (mut h, log) = clocked();
        h.call(|_: &mut Clocked, cx: &mut Context<'_>| {
            cx.call_later(Duration::ZERO, |p: &mut Clocked, cx| {
                p.log.borrow_mut().push(("first", Duration::ZERO));
                at("chained", Duration::ZERO)(p, cx);
            });
        });
        h.call(at("second", Duration::ZERO));
        h.advance(Duration::ZERO);
        assert_eq!(labels(&log), ["first", "second"]);
        assert_eq!(
            h.pending_timers(),
            1,
            "the chained timer waits for the next pass"
        );
        h.advance(Duration::ZERO);
        assert_eq!(labels(&log), ["chained"]);
    }

    #[test]
    fn zero_delay_chains_before_the_target_finish_before_later_deadlines() {
        let (mut h, log) = clocked();
        h.call(|_: &mut Clocked, cx: &mut Context<'_>| {
            cx.call_later(ms(10), |p: &mut Clocked, cx| {
                p.log.borrow_mut().push(("ten", ms(10)));
                at("ten-chained", Duration::ZERO)(p, cx);
            });
        });
        h.call(at("twenty", ms(20)));
        h.advance(ms(50));
        assert_eq!(
            *log.borrow(),
            [("ten", ms(10)), ("ten-chained", ms(10)), ("twenty", ms(20))]
        );
    }

    #[test]
    #[should_panic(expected = "re-arming with zero delay")]
    fn an_endless_zero_delay_chain_panics_instead_of_hanging() {
        fn again(_: &mut Clocked, cx: &mut Context<'_>) {
            cx.call_later(Duration::ZERO, again);
        }
        let (mut h, _log) = clocked();
        h.call(|_: &mut Clocked, cx: &mut Context<'_>| {
            cx.call_later(ms(1), again);
        });
        h.advance(ms(2));
    }

    #[test]
    #[should_panic(expected = "not a connection of this harness")]
    fn an_id_from_elsewhere_is_refused() {
        let (mut h, _log) = clocked();
        h.take_written_of(ConnId {
            index: 7,
            generation: 8,
        });
    }

    #[test]
    fn builder_takes_the_reactor_settings_and_clamping() {
        let b = HarnessBuilder::from(Builder::default().write_watermarks(10, 50))
            .write_cap_bytes(99)
            .read_buffer_bytes(0);
        let s = b.build(Clocked {
            log: Rc::default(),
            start: None,
        });
        let limits = s.kit.settings.limits;
        assert_eq!(
            (limits.high_watermark_bytes, limits.low_watermark_bytes),
            (10, 10),
            "low is clamped to high, as the reactor does"
        );
        assert_eq!(limits.write_cap_bytes, 99);
        assert_eq!(s.kit.settings.read_buffer_bytes, 1);
    }
}
