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
//!         cx.call_later(Duration::from_secs(10), |_: &mut Ping, cx| {
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
//! # The same core as the reactor
//!
//! The harness is not a model of the reactor: it is the reactor's connection core
//! (the same code: the table, `settle`, reading rounds, the write path with corking,
//! watermarks, closes, timers) over an in-memory kernel and a manual clock. What
//! differs is only what the kernel does: the test plays the peer and the clock. So:
//!
//! - **Deferred effects.** A close, an owed `pause_producing` or the end of a flush
//!   requested inside a callback is carried out after that callback returns, in the
//!   same order as the reactor's `settle`. Exactly one `connection_lost` runs per
//!   connection that was made, and never inside another callback.
//! - **Panics.** A panic in a callback is caught, logged, and closes the connection with
//!   [`Reason::Panic`]; the harness goes on. A panic in `connection_lost` is logged.
//! - **Reading.** [`feed`](Harness::feed) is one readable event: the bytes are delivered
//!   in chunks of at most the read buffer size (64 KiB unless configured), in rounds of
//!   at most the read budget, so a test chooses the chunking by how it calls `feed`. While the protocol has paused reading
//!   (or after it asked to close) the bytes wait in the fake kernel; on resume the
//!   protocol gets `reading_resumed` first and then everything that waited, coalesced,
//!   as a real kernel would hand it over. [`eof`](Harness::eof) is seen after the data
//!   before it.
//! - **Writing.** Small writes are corked until the end of the harness call (the end of
//!   the reactor's turn), so [`Context::buffered`] counts them inside a callback just as
//!   under the reactor; large ones go to the fake kernel at once. What the peer window
//!   refuses stays queued under the same watermark and cap rules: `pause_producing`
//!   when more than the high watermark is queued, `resume_producing` once at most the
//!   low watermark is, and [`Reason::WriteOverflow`] past the cap.
//! - **Closing.** `lose_connection` flushes, waits for the connection's pool jobs, and
//!   then closes with [`Reason::Done`], or times out with [`Reason::TimedOut`] after the
//!   close timeout on the manual clock. The memory kernel never answers unread input
//!   with a reset, so it does not linger after the flush as a socket does;
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
//! protocol of their own: the protocol reaches them with [`Context::conn`]
//! (`cx.conn(id).write(..)`, as a chat room broadcasts), and the test
//! reads what they got with [`take_written_of`](Harness::take_written_of).
//! [`add_protocol`](Harness::add_protocol) adds a connection that runs a protocol of
//! its own, of any type: a chat room's members each run their real session, and the
//! test plays each one's peer with the `..._of` methods. [`link`](Harness::link) joins
//! two connections as the two ends of one stream, so a client protocol and a server
//! protocol talk to each other through the core on both sides, with no sockets.
//!
//! # Outgoing connects
//!
//! [`connect_pending`](Harness::connect_pending) starts a connect as
//! [`Reactor::connect_tcp`](crate::Reactor::connect_tcp) does, through the core's real
//! connecting state; it stays connecting until the test decides:
//! [`complete_connect`](Harness::complete_connect) (`connection_made`) or
//! [`refuse_connect`](Harness::refuse_connect) (`connection_failed`, reported after
//! the call's callbacks as the reactor reports it in its next turn). A
//! [`ClientService`](crate::client::ClientService) started on a harness connects this
//! way, and its retries run on the manual clock.
//!
//! # Datagram sockets
//!
//! [`add_datagram`](Harness::add_datagram) adds a datagram socket that runs a
//! [`DatagramProtocol`] on the same core, as [`Reactor::listen_udp`] does: the test
//! plays its peers ([`feed_datagram`](Harness::feed_datagram), a receive error with
//! [`feed_datagram_error`](Harness::feed_datagram_error)) and takes what the protocol
//! sent, with where to, with [`take_sent_datagrams`](Harness::take_sent_datagrams).
//! The core's receive path runs as under the reactor: rounds of 64 datagrams per event
//! (the rest carried over), a datagram over the socket's maximum reported to
//! `datagram_too_large` and never delivered cut, a panic dropping only that datagram,
//! a close followed by `stopped`. The protocol reaches the harness's stream connections
//! with [`DatagramContext::conn`], as on one reactor.
//!
//! [`Reactor::listen_udp`]: crate::Reactor::listen_udp
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
//! - Kernel coalescing of bytes that arrive while reading is active, and socket errors
//!   other than the ones a test injects with [`disconnect`](Harness::disconnect).
//! - The linger after a graceful close (see above).
//! - [`Context::stop_reactor`] is recorded ([`stop_requested`](Harness::stop_requested))
//!   but does not close the connection; the reactor would `lose_connection` it (and
//!   close the datagram sockets).
//! - Socket options succeed and do nothing. Dropping a harness calls no callback.

// Maintainers' notes.
//
// `Harness` is `Core<Mem>`: the reactor's connection core over `Mem`, a kernel of
// memory streams (`MemStream`: what the peer fed, what the protocol sent, the peer's
// window) and a manual clock. Each harness method plays the kernel's part (bytes
// arrive, the window opens, the clock moves, a job ends) by changing a stream and
// calling the core's handler for it (`read_ready`, `write_ready`, `run_task`,
// `job_finished`), then `pump`s as the reactor's turn would: settle, serve what was
// carried over, flush the corked writes, until nothing is left. No connection logic
// lives here. Datagram sockets are the same: `MemDatagram` is a queue of what the test
// fed and a list of what the protocol sent, and `feed_datagram` calls the core's
// `datagram_ready`.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::{self, Config, Core, Dial, Dialer, Kernel};
use crate::datagram::{DatagramContext, DatagramProtocol, DEFAULT_MAX_DATAGRAM_BYTES};
use crate::ids::{ConnId, DatagramId, Source};
use crate::pool::{JobError, PoolBusy};
use crate::protocol::{panic_message, Addr, Protocol, Reason};
use crate::reactor::Builder;
use crate::transport::Context;
use crate::transport::{JobFn, JobResult};

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
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsAcceptor>,
}

impl Default for HarnessBuilder {
    fn default() -> Self {
        HarnessBuilder::from(Builder::default())
    }
}

impl From<Builder> for HarnessBuilder {
    /// Takes the per-connection settings of a reactor [`Builder`]: watermarks, write
    /// cap, read buffer size and budget, idle and close timeouts, the pool's queue.
    /// The others do not apply.
    fn from(settings: Builder) -> Self {
        HarnessBuilder {
            settings,
            peer_addr: Addr::Inet(DEFAULT_PEER_ADDR.parse().expect("valid address")),
            local_addr: Addr::Inet(DEFAULT_LOCAL_ADDR.parse().expect("valid address")),
            #[cfg(feature = "tls")]
            tls: None,
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

    /// The protocol's connection speaks TLS as a server with `tls`'s settings, as on
    /// a [`Reactor::listen_tls`](crate::Reactor::listen_tls) listener: what the test
    /// feeds is ciphertext, and what it takes is ciphertext. To talk to it, link it
    /// to a TLS client on the same harness ([`Harness::add_tls_client`] and
    /// [`Harness::link`]); the manual clock drives the handshake's timeout.
    #[cfg(feature = "tls")]
    pub fn tls_server(mut self, tls: &crate::tls::TlsAcceptor) -> Self {
        self.tls = Some(tls.clone());
        self
    }

    /// Builds a harness around `protocol`, not yet connected: call
    /// [`Harness::connect`].
    pub fn build<P: Protocol>(self, protocol: P) -> Harness<P> {
        let now = Instant::now();
        let config: Config = self.settings.config().clone();
        let kernel = Mem {
            now,
            start: now,
            jobs: VecDeque::new(),
            pool_queue_jobs: config.pool_queue_jobs,
            ended: HashMap::new(),
            ended_datagrams: HashMap::new(),
            local: self.local_addr.clone(),
            resolver: Arc::new(crate::client::resolve_blocking),
        };
        let mut core = Core::new(kernel, config, now);
        let stream = MemStream::new(self.local_addr.clone());
        let main = core
            .insert_conn(stream, self.peer_addr.clone(), Box::new(protocol), false)
            .unwrap_or_else(|_| unreachable!("memory streams always register"));
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let session = tls.session().expect("a TLS server session");
            core.start_tls(main, session);
        }
        Harness {
            core,
            main,
            peer_addr: self.peer_addr,
            local_addr: self.local_addr,
            peers: 0,
            links: Vec::new(),
            _protocol: std::marker::PhantomData,
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
    core: Core<Mem>,
    /// The protocol's own connection.
    main: ConnId,
    peer_addr: Addr,
    local_addr: Addr,
    /// Connections added with `add_peer` or `add_protocol`, for their addresses.
    peers: u16,
    /// Pairs of connections joined by [`link`](Self::link): what one sends, the other
    /// receives.
    links: Vec<(ConnId, ConnId)>,
    _protocol: std::marker::PhantomData<P>,
}

impl<P: Protocol> fmt::Debug for Harness<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let main = self.core.conn(self.main);
        f.debug_struct("Harness")
            .field("protocol", &std::any::type_name::<P>())
            .field("elapsed", &self.elapsed())
            .field("made", &main.is_some_and(|c| c.state.is_made()))
            .field("lost", &self.lost())
            .field("buffered", &self.buffered())
            .field("connections", &self.core.conns.len())
            .field("datagram_sockets", &self.core.datagrams.len())
            .field("timers", &self.core.timers.len())
            .field("jobs", &self.core.k.jobs.len())
            .finish()
    }
}

/// `protocol` as the concrete type `Q`, if it is one.
fn downcast_ref<Q: Protocol>(protocol: &dyn Protocol) -> Option<&Q> {
    let any: &dyn Any = protocol;
    any.downcast_ref::<Q>()
}

fn downcast_mut<Q: Protocol>(protocol: &mut dyn Protocol) -> Option<&mut Q> {
    let any: &mut dyn Any = protocol;
    any.downcast_mut::<Q>()
}

/// A datagram `protocol` as the concrete type `D`, if it is one.
fn downcast_datagram_ref<D: DatagramProtocol>(protocol: &dyn DatagramProtocol) -> Option<&D> {
    let any: &dyn Any = protocol;
    any.downcast_ref::<D>()
}

fn downcast_datagram_mut<D: DatagramProtocol>(
    protocol: &mut dyn DatagramProtocol,
) -> Option<&mut D> {
    let any: &mut dyn Any = protocol;
    any.downcast_mut::<D>()
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
        let made = self.core.conn(self.main).is_none_or(|c| c.state.is_made());
        assert!(!made, "Harness::connect called twice");
        self.core.make(self.main);
        self.pump();
    }

    /// The protocol's connection id (what [`Context::id`] returns).
    pub fn id(&self) -> ConnId {
        self.main
    }

    /// The protocol, to inspect its state.
    pub fn protocol(&self) -> &P {
        self.protocol_of(self.main)
            .expect("the harness's protocol has its type")
    }

    /// The protocol, to change its state directly (no callback runs; to act through a
    /// [`Context`], use [`call`](Self::call)).
    pub fn protocol_mut(&mut self) -> &mut P {
        self.protocol_mut_of(self.main)
            .expect("the harness's protocol has its type")
    }

    /// Gives the protocol back.
    pub fn into_protocol(mut self) -> P {
        let main = self.main;
        let boxed = match self.core.conn_mut(main) {
            Some(c) => c.protocol.take(),
            None => self
                .core
                .k
                .ended
                .get_mut(&main)
                .and_then(|e| e.protocol.take()),
        }
        .expect("the protocol is in its slot between calls");
        let any: Box<dyn Any> = boxed;
        *any.downcast::<P>()
            .expect("the harness's protocol has its type")
    }

    /// Runs `f` with the protocol and its [`Context`] as if it were one of its
    /// callbacks (a panic is caught and closes the connection; effects are deferred),
    /// as [`Reactor::call_protocol`](crate::Reactor::call_protocol). False, without
    /// running `f`, if the connection is not made or already lost.
    pub fn call<F>(&mut self, f: F) -> bool
    where
        F: FnOnce(&mut P, &mut Context<'_>),
    {
        self.call_of(self.main, f)
    }

    /// [`call`](Self::call) for connection `id`, which runs a protocol of type `Q`.
    /// False, without running `f`, if the connection is not made, already lost, or
    /// runs another type.
    pub fn call_of<Q, F>(&mut self, id: ConnId, f: F) -> bool
    where
        Q: Protocol,
        F: FnOnce(&mut Q, &mut Context<'_>),
    {
        let runs_q = self.core.conn(id).is_some_and(|c| {
            c.state.is_made() && c.protocol.as_deref().and_then(downcast_ref::<Q>).is_some()
        });
        if !runs_q {
            return false;
        }
        self.core.invoke(id, |p, cx| {
            f(downcast_mut::<Q>(p).expect("checked above"), cx)
        });
        self.pump();
        true
    }

    // ----- the peer's side: inbound -----

    /// The peer sends `data`: one readable event.
    ///
    /// Delivered at once to `data_received` in chunks of at most the read buffer size,
    /// or kept in the fake kernel while the protocol has paused reading (see the
    /// [module docs](self)). Not delivered once the connection is closing or lost, as
    /// the reactor stops reading then.
    ///
    /// # Panics
    /// Before [`connect`](Self::connect) or after [`eof`](Self::eof).
    pub fn feed(&mut self, data: &[u8]) {
        self.feed_of(self.main, data)
    }

    /// The peer shuts its write side (TCP half-close): once the bytes fed before it are
    /// delivered, `read_eof` runs (or, if this end's write side is already shut, the
    /// connection ends with [`Reason::Done`]).
    ///
    /// # Panics
    /// Before [`connect`](Self::connect).
    pub fn eof(&mut self) {
        self.eof_of(self.main)
    }

    /// The connection is lost from the peer's side or the network's, for `reason`: what
    /// queued is dropped and `connection_lost(reason)` runs. No-op once lost.
    ///
    /// A clean close by the peer is [`eof`](Self::eof); this is for resets
    /// (`Reason::Lost`), I/O errors and the like.
    pub fn disconnect(&mut self, reason: Reason) {
        self.disconnect_of(self.main, reason)
    }

    // ----- the peer's side: outbound -----

    /// Takes what the protocol wrote and the fake kernel accepted so far.
    pub fn take_written(&mut self) -> Vec<u8> {
        self.take_written_of(self.main)
    }

    /// What the protocol wrote and the fake kernel accepted, not yet taken.
    pub fn written(&self) -> &[u8] {
        &self.stream(self.main).sent
    }

    /// Bytes queued in the transport that the peer window has not let through
    /// (what [`Context::buffered`] returns).
    pub fn buffered(&self) -> usize {
        self.buffered_of(self.main)
    }

    /// How much more the fake kernel accepts: `Some(n)` takes at most `n` more bytes
    /// (the rest queues, under the watermarks and cap), `None` (the default) takes
    /// everything. Queued bytes move into the newly allowed room at once, which may
    /// call `resume_producing` or finish a close.
    pub fn set_peer_window(&mut self, window: Option<usize>) {
        self.set_peer_window_of(self.main, window)
    }

    /// The peer reads `n` bytes, making room for `n` more: queued bytes move on, which
    /// may call `resume_producing` or finish a close. No-op with an unlimited window.
    pub fn peer_reads(&mut self, n: usize) {
        self.peer_reads_of(self.main, n)
    }

    // ----- what the protocol did -----

    /// Made, and neither closing nor lost (what [`Context::is_open`] returns inside).
    pub fn is_open(&self) -> bool {
        self.is_open_of(self.main)
    }

    /// The protocol asked to close (`lose_connection`) and the transport is still
    /// flushing what is queued; `connection_lost` has not run yet.
    pub fn is_closing(&self) -> bool {
        self.core
            .conn(self.main)
            .is_some_and(|c| c.state.is_closing())
    }

    /// The write side is shut (after `lose_write_connection` and a flush): the peer has
    /// seen EOF. The connection may still be reading.
    pub fn is_write_shut(&self) -> bool {
        self.stream(self.main).write_shut
    }

    /// The protocol paused reading ([`Context::pause_reading`]) and has not resumed.
    pub fn reading_paused(&self) -> bool {
        self.reading_paused_of(self.main)
    }

    /// The protocol was told to pause producing and has not been told to resume.
    pub fn producer_paused(&self) -> bool {
        self.producer_paused_of(self.main)
    }

    /// [`reading_paused`](Self::reading_paused) for connection `id`.
    pub fn reading_paused_of(&self, id: ConnId) -> bool {
        self.core.conn(id).is_some_and(|c| c.state.reading_paused())
    }

    /// [`producer_paused`](Self::producer_paused) for connection `id`.
    pub fn producer_paused_of(&self, id: ConnId) -> bool {
        self.core.conn(id).is_some_and(|c| c.state.producer_paused)
    }

    /// The reason handed to `connection_lost`, once it has run.
    pub fn lost(&self) -> Option<&Reason> {
        self.lost_of(self.main)
    }

    /// The protocol called [`Context::stop_reactor`].
    pub fn stop_requested(&self) -> bool {
        self.core.stopping != core::Stopping::No
    }

    // ----- other connections -----

    /// Adds a fake connection with no protocol of its own, open and with an unlimited
    /// window, for the protocol to reach by id ([`Context::conn`]).
    pub fn add_peer(&mut self) -> ConnId {
        self.add_protocol(Peer)
    }

    /// Adds a connection that runs `protocol` (of any type) and makes it at once
    /// (`connection_made`). The test plays its peer with the `..._of` methods
    /// ([`feed_of`](Self::feed_of), [`take_written_of`](Self::take_written_of), ...)
    /// and looks at it with [`protocol_of`](Self::protocol_of): several protocols
    /// talking to each other through their contexts, on one core, as on one reactor.
    pub fn add_protocol<Q: Protocol>(&mut self, protocol: Q) -> ConnId {
        self.add_with(
            protocol,
            #[cfg(feature = "tls")]
            None,
        )
    }

    fn add_with<Q: Protocol>(
        &mut self,
        protocol: Q,
        #[cfg(feature = "tls")] tls: Option<crate::tls::session::Session>,
    ) -> ConnId {
        self.peers = self.peers.wrapping_add(1);
        let peer = match &self.peer_addr {
            Addr::Inet(a) => Addr::Inet(SocketAddr::new(a.ip(), a.port().wrapping_add(self.peers))),
            other => other.clone(),
        };
        let stream = MemStream::new(self.local_addr.clone());
        let id = self
            .core
            .insert_conn(stream, peer, Box::new(protocol), false)
            .unwrap_or_else(|_| unreachable!("memory streams always register"));
        #[cfg(feature = "tls")]
        if let Some(session) = tls {
            self.core.start_tls(id, session);
        }
        self.core.make(id);
        self.pump();
        id
    }

    /// Adds a connection that runs `protocol` over TLS as a client of `server_name`
    /// with `tls`'s settings (as [`Reactor::connect_tls`](crate::Reactor::connect_tls)
    /// would), and makes it at once: its first handshake flight is written. Link it
    /// to a TLS server ([`HarnessBuilder::tls_server`]) with [`link`](Self::link):
    /// both ends then run rustls through the core, with no sockets.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use twistor::testing::HarnessBuilder;
    /// use twistor::tls::{TlsAcceptor, TlsConnector};
    /// use twistor::{Context, Protocol};
    ///
    /// struct Upper;
    /// impl Protocol for Upper {
    ///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
    ///         cx.write(&data.to_ascii_uppercase());
    ///     }
    /// }
    ///
    /// #[derive(Default)]
    /// struct Client(Vec<u8>);
    /// impl Protocol for Client {
    ///     fn connection_made(&mut self, cx: &mut Context<'_>) {
    ///         cx.write(b"hello"); // held until the handshake is done
    ///     }
    ///     fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
    ///         self.0.extend_from_slice(data);
    ///     }
    /// }
    ///
    /// let server = TlsAcceptor::from_pem("cert.pem", "key.pem")?;
    /// let client = TlsConnector::from_ca_pem("ca.pem")?;
    /// let mut h = HarnessBuilder::new().tls_server(&server).build(Upper);
    /// h.connect();
    /// let c = h.add_tls_client(Client::default(), &client, "localhost");
    /// h.link(h.id(), c);
    /// assert_eq!(h.protocol_of::<Client>(c).unwrap().0, b"HELLO");
    /// # Ok::<(), twistor::tls::ConfigError>(())
    /// ```
    ///
    /// # Panics
    /// If `server_name` is not a valid DNS name or IP address.
    #[cfg(feature = "tls")]
    pub fn add_tls_client<Q: Protocol>(
        &mut self,
        protocol: Q,
        tls: &crate::tls::TlsConnector,
        server_name: &str,
    ) -> ConnId {
        let session = tls.session(server_name).expect("a valid server name");
        self.add_with(protocol, Some(session))
    }

    /// Joins connections `a` and `b` as the two ends of one stream, as two peers on one
    /// machine: from now on what either sends (and what it sent already) is what the
    /// other receives, and the end of one's write side (a half-close, or its close) is
    /// the other's EOF. A client protocol and a server protocol then talk through the
    /// real core on both sides, with no sockets: a TLS client and server, say.
    /// `take_written_of` sees nothing of a linked connection's output (it went to the
    /// other end); the peer window does not apply.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::testing::Harness;
    /// use twistor::{Context, Protocol};
    ///
    /// /// Says hello, then prints what comes back.
    /// #[derive(Default)]
    /// struct Client(Vec<u8>);
    /// impl Protocol for Client {
    ///     fn connection_made(&mut self, cx: &mut Context<'_>) {
    ///         cx.write(b"hello");
    ///         cx.lose_write_connection();
    ///     }
    ///     fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
    ///         self.0.extend_from_slice(data);
    ///     }
    /// }
    ///
    /// /// Echoes upper-cased.
    /// struct Upper;
    /// impl Protocol for Upper {
    ///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
    ///         cx.write(&data.to_ascii_uppercase());
    ///     }
    /// }
    ///
    /// let mut h = Harness::new(Upper);
    /// h.connect();
    /// let client = h.add_protocol(Client::default());
    /// h.link(h.id(), client);
    /// assert_eq!(h.protocol_of::<Client>(client).unwrap().0, b"HELLO");
    /// assert!(h.lost().is_some(), "the server saw EOF and closed; so did the client");
    /// ```
    ///
    /// # Panics
    /// If either id is not from this harness, or is linked already.
    pub fn link(&mut self, a: ConnId, b: ConnId) {
        for id in [a, b] {
            self.stream(id);
            assert!(
                !self.links.iter().any(|&(x, y)| x == id || y == id),
                "{id:?} is linked already"
            );
        }
        self.links.push((a, b));
        self.pump();
    }

    /// Connection `id`'s protocol, if it runs one of type `Q` (also after it ended).
    pub fn protocol_of<Q: Protocol>(&self, id: ConnId) -> Option<&Q> {
        let boxed = match self.core.conn(id) {
            Some(c) => c.protocol.as_deref(),
            None => self.core.k.ended.get(&id)?.protocol.as_deref(),
        };
        boxed.and_then(downcast_ref::<Q>)
    }

    /// Connection `id`'s protocol, mutably, if it runs one of type `Q`.
    pub fn protocol_mut_of<Q: Protocol>(&mut self, id: ConnId) -> Option<&mut Q> {
        let boxed = if self.core.conn(id).is_some() {
            self.core.conn_mut(id)?.protocol.as_deref_mut()
        } else {
            self.core.k.ended.get_mut(&id)?.protocol.as_deref_mut()
        };
        boxed.and_then(downcast_mut::<Q>)
    }

    /// [`feed`](Self::feed) for connection `id`.
    ///
    /// # Panics
    /// Before the connection is made, after [`eof_of`](Self::eof_of), or if `id` is not
    /// from this harness.
    pub fn feed_of(&mut self, id: ConnId, data: &[u8]) {
        let made = self.core.conn(id).map(|c| c.state.is_made());
        assert!(made != Some(false), "Harness::feed before connect()");
        let stream = self.stream_mut(id);
        assert!(!stream.peer_eof, "Harness::feed after eof()");
        if made.is_none() {
            log::trace!("{id}: {} bytes fed to a closed connection", data.len());
            return;
        }
        stream.inbound.extend(data);
        self.core.read_ready(id, true);
        self.pump();
    }

    /// [`eof`](Self::eof) for connection `id`.
    ///
    /// # Panics
    /// Before the connection is made, or if `id` is not from this harness.
    pub fn eof_of(&mut self, id: ConnId) {
        let made = self.core.conn(id).map(|c| c.state.is_made());
        assert!(made != Some(false), "Harness::eof before connect()");
        self.stream_mut(id).peer_eof = true;
        self.core.read_ready(id, true);
        self.pump();
    }

    /// Takes what connection `id` was sent and its fake kernel accepted so far.
    ///
    /// # Panics
    /// If `id` is not from this harness.
    pub fn take_written_of(&mut self, id: ConnId) -> Vec<u8> {
        std::mem::take(&mut self.stream_mut(id).sent)
    }

    /// Bytes queued for connection `id` that its peer window has not let through.
    pub fn buffered_of(&self, id: ConnId) -> usize {
        // What `Context::buffered` says (on TLS, the held plaintext too).
        crate::transport::Driver::buffered(&self.core, id)
    }

    /// [`set_peer_window`](Self::set_peer_window) for connection `id`.
    pub fn set_peer_window_of(&mut self, id: ConnId, window: Option<usize>) {
        self.stream_mut(id).window = window;
        self.core.write_ready(id);
        self.pump();
    }

    /// [`peer_reads`](Self::peer_reads) for connection `id`.
    pub fn peer_reads_of(&mut self, id: ConnId, n: usize) {
        if let Some(w) = &mut self.stream_mut(id).window {
            *w = w.saturating_add(n);
        }
        self.core.write_ready(id);
        self.pump();
    }

    /// Connection `id` is open: neither closing nor lost.
    pub fn is_open_of(&self, id: ConnId) -> bool {
        self.core
            .conn(id)
            .is_some_and(|c| c.state.is_made() && !c.state.is_closing())
    }

    /// Why connection `id` ended, once it has.
    pub fn lost_of(&self, id: ConnId) -> Option<&Reason> {
        self.core.k.ended.get(&id).and_then(|e| e.reason.as_ref())
    }

    /// [`disconnect`](Self::disconnect) for connection `id`.
    pub fn disconnect_of(&mut self, id: ConnId, reason: Reason) {
        if self.core.conn(id).is_some_and(|c| c.state.is_made()) {
            self.core.close_with(id, reason);
            self.pump();
        }
    }

    // ----- outgoing connects -----

    /// Starts an outgoing connect that runs `protocol` (of any type), as
    /// [`Reactor::connect_tcp`](crate::Reactor::connect_tcp) does, whose outcome the
    /// test decides: [`complete_connect`](Self::complete_connect) makes it
    /// (`connection_made`), [`refuse_connect`](Self::refuse_connect) fails it
    /// (`connection_failed`). Until then it is connecting
    /// ([`is_connecting_of`](Self::is_connecting_of)): writes to it queue, and the
    /// builder's connect timeout runs on the manual clock. A
    /// [`ClientService`](crate::client::ClientService) started on the harness
    /// connects this way.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use twistor::testing::Harness;
    /// use twistor::{Context, Protocol};
    ///
    /// #[derive(Default)]
    /// struct Client {
    ///     failed: Option<io::ErrorKind>,
    /// }
    /// impl Protocol for Client {
    ///     fn connection_made(&mut self, cx: &mut Context<'_>) {
    ///         cx.write(b"hello");
    ///     }
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    ///     fn connection_failed(&mut self, _: &mut Context<'_>, e: io::Error) {
    ///         self.failed = Some(e.kind());
    ///     }
    /// }
    ///
    /// let mut h = Harness::new(Client::default());
    /// let up = h.connect_pending(Client::default());
    /// assert!(h.is_connecting_of(up));
    /// h.complete_connect(up);
    /// assert_eq!(h.take_written_of(up), b"hello");
    ///
    /// let refused = h.connect_pending(Client::default());
    /// h.refuse_connect(refused, io::ErrorKind::ConnectionRefused.into());
    /// let client: &Client = h.protocol_of(refused).unwrap();
    /// assert_eq!(client.failed, Some(io::ErrorKind::ConnectionRefused));
    /// ```
    pub fn connect_pending<Q: Protocol>(&mut self, protocol: Q) -> ConnId {
        self.peers = self.peers.wrapping_add(1);
        let peer = match &self.peer_addr {
            Addr::Inet(a) => Addr::Inet(SocketAddr::new(a.ip(), a.port().wrapping_add(self.peers))),
            other => other.clone(),
        };
        let timeout = self.core.config.connect_timeout;
        let id = self.core.dial_unwatched(&peer, timeout, Box::new(protocol));
        self.pump();
        id
    }

    /// Connection `id`'s outgoing connect succeeds: `connection_made`, then what was
    /// written while connecting goes out.
    ///
    /// # Panics
    /// If `id` is not connecting.
    pub fn complete_connect(&mut self, id: ConnId) {
        assert!(
            self.is_connecting_of(id),
            "Harness::complete_connect: {id:?} is not connecting"
        );
        // The reactor's writable event on a connecting socket.
        self.core.write_ready(id);
        self.pump();
    }

    /// Connection `id`'s outgoing connect fails with `error`: `connection_failed`.
    ///
    /// # Panics
    /// If `id` is not connecting.
    pub fn refuse_connect(&mut self, id: ConnId, error: io::Error) {
        assert!(
            self.is_connecting_of(id),
            "Harness::refuse_connect: {id:?} is not connecting"
        );
        self.core.fail_connect(id, error);
        self.pump();
    }

    /// Starts a connect to `host:port` by name that runs `protocol`, as
    /// [`Reactor::connect_host`](crate::Reactor::connect_host) does: the name is
    /// resolved by a pool job, which waits for the test ([`run_jobs`](Self::run_jobs);
    /// the resolver is the system's unless [`set_resolver`](Self::set_resolver) gave
    /// another), then each address is tried in order as an outgoing connect the test
    /// decides ([`connecting`](Self::connecting) lists them;
    /// [`complete_connect`](Self::complete_connect),
    /// [`refuse_connect`](Self::refuse_connect)). `protocol` sees only the outcome.
    ///
    /// # Examples
    ///
    /// The first address refuses, the second connects: the protocol sees only
    /// `connection_made`.
    ///
    /// ```
    /// use std::io;
    /// use std::net::SocketAddr;
    /// use twistor::testing::Harness;
    /// use twistor::{Context, Protocol};
    ///
    /// #[derive(Default)]
    /// struct Client {
    ///     seen: Vec<String>,
    /// }
    /// impl Protocol for Client {
    ///     fn connection_made(&mut self, _: &mut Context<'_>) {
    ///         self.seen.push("made".into());
    ///     }
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    ///     fn connection_failed(&mut self, _: &mut Context<'_>, e: io::Error) {
    ///         self.seen.push(format!("failed: {e}"));
    ///     }
    /// }
    ///
    /// let mut h = Harness::new(Client::default());
    /// let addrs: Vec<SocketAddr> = vec!["[::1]:7000".parse().unwrap(), "127.0.0.1:7000".parse().unwrap()];
    /// h.set_resolver(move |_, _| Ok(addrs.clone()));
    /// h.connect_host("db.example", 7000, Client::default());
    /// assert_eq!(h.pending_jobs(), 1); // the resolution, until the test runs it
    /// h.run_jobs();
    /// let first = h.connecting()[0];
    /// h.refuse_connect(first, io::ErrorKind::ConnectionRefused.into());
    /// let second = h.connecting()[0];
    /// h.complete_connect(second);
    /// let client: &Client = h.protocol_of(second).unwrap();
    /// assert_eq!(client.seen, ["made"]);
    /// ```
    pub fn connect_host<Q: Protocol>(&mut self, host: &str, port: u16, protocol: Q) {
        let timeout = self.core.config.connect_timeout;
        crate::client::HostDial::start(
            &mut self.core,
            host,
            port,
            timeout,
            Box::new(protocol),
            None,
            None,
        );
        self.pump();
    }

    /// Resolves host names with `resolver` from now on, instead of the system's
    /// resolver: it gets the name and the port, and runs when the test runs the pool
    /// jobs. An error it returns reaches the protocol as a
    /// [`ResolveError`](crate::client::ResolveError), as the system's does.
    pub fn set_resolver(
        &mut self,
        resolver: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) {
        self.core.k.resolver = Arc::new(resolver);
    }

    /// The outgoing connects in progress (not made or failed yet), oldest first.
    pub fn connecting(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self
            .core
            .conn_ids()
            .into_iter()
            .filter(|&id| self.is_connecting_of(id))
            .collect();
        ids.sort_by_key(|id| id.generation);
        ids
    }

    /// Whether connection `id` is an outgoing connect not yet made or failed.
    pub fn is_connecting_of(&self, id: ConnId) -> bool {
        self.core.conn(id).is_some_and(|c| c.state.is_connecting())
    }

    // ----- datagram sockets -----

    /// Adds a datagram socket that runs `protocol` (of any type), accepting datagrams
    /// up to [`DEFAULT_MAX_DATAGRAM_BYTES`] as [`Reactor::listen_udp`] does, and runs
    /// its `started`. Its address ([`DatagramContext::local_addr`]) is the harness's
    /// local address. The test plays its peers with
    /// [`feed_datagram`](Self::feed_datagram) and takes what it sent with
    /// [`take_sent_datagrams`](Self::take_sent_datagrams).
    ///
    /// [`Reactor::listen_udp`]: crate::Reactor::listen_udp
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::testing::Harness;
    /// use twistor::{Addr, Context, DatagramContext, DatagramProtocol, Protocol};
    ///
    /// /// Sends each datagram back to its sender, upper-cased.
    /// struct Upper;
    /// impl DatagramProtocol for Upper {
    ///     fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], from: &Addr) {
    ///         cx.send_to(&data.to_ascii_uppercase(), from).unwrap();
    ///     }
    /// }
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    /// }
    ///
    /// let mut h = Harness::new(Quiet);
    /// let udp = h.add_datagram(Upper);
    /// let peer: Addr = "127.0.0.1:4000".parse::<std::net::SocketAddr>().unwrap().into();
    /// h.feed_datagram(udp, b"hi", peer.clone());
    /// h.feed_datagram(udp, b"", peer.clone()); // an empty datagram is a datagram
    /// assert_eq!(
    ///     h.take_sent_datagrams(udp),
    ///     [(b"HI".to_vec(), Some(peer.clone())), (vec![], Some(peer))]
    /// );
    /// ```
    pub fn add_datagram<D: DatagramProtocol>(&mut self, protocol: D) -> DatagramId {
        self.add_datagram_max(DEFAULT_MAX_DATAGRAM_BYTES, protocol)
    }

    /// [`add_datagram`](Self::add_datagram) with its own largest datagram, as
    /// [`Reactor::listen_udp_max`](crate::Reactor::listen_udp_max): a larger one goes
    /// to `datagram_too_large`.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::testing::Harness;
    /// use twistor::{Addr, Context, DatagramContext, DatagramProtocol, Protocol};
    ///
    /// #[derive(Default)]
    /// struct Count {
    ///     fitted: usize,
    ///     too_large: usize,
    /// }
    /// impl DatagramProtocol for Count {
    ///     fn datagram_received(&mut self, _: &mut DatagramContext<'_>, _: &[u8], _: &Addr) {
    ///         self.fitted += 1;
    ///     }
    ///     fn datagram_too_large(&mut self, _: &mut DatagramContext<'_>, _: &Addr) {
    ///         self.too_large += 1;
    ///     }
    /// }
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    /// }
    ///
    /// let mut h = Harness::new(Quiet);
    /// let udp = h.add_datagram_max(4, Count::default());
    /// let peer: Addr = "127.0.0.1:4000".parse::<std::net::SocketAddr>().unwrap().into();
    /// h.feed_datagram(udp, b"1234", peer.clone());
    /// h.feed_datagram(udp, b"12345", peer);
    /// let count = h.datagram_protocol_of::<Count>(udp).unwrap();
    /// assert_eq!((count.fitted, count.too_large), (1, 1));
    /// ```
    pub fn add_datagram_max<D: DatagramProtocol>(
        &mut self,
        max_datagram_bytes: usize,
        protocol: D,
    ) -> DatagramId {
        let socket = MemDatagram::new(self.local_addr.clone());
        let id = self
            .core
            .add_datagram(socket, max_datagram_bytes, Box::new(protocol))
            .unwrap_or_else(|_| unreachable!("memory sockets always register"));
        self.pump();
        id
    }

    /// A peer at `from` sends `data` to datagram socket `id`: one readable event, run
    /// through the core's receive path (the too-large rule, a panic dropping only this
    /// datagram). A socket connected to another address drops it, as the kernel does;
    /// so does a closed one.
    ///
    /// # Panics
    /// If `id` is not a datagram socket of this harness.
    pub fn feed_datagram(&mut self, id: DatagramId, data: &[u8], from: impl Into<Addr>) {
        self.feed_datagrams(id, [(data, from.into())]);
    }

    /// Several datagrams arrive at socket `id` before it is served: one readable
    /// event. They are read in rounds of at most 64, as under the reactor, the rest
    /// carried over to the next round (the harness serves carried-over work before it
    /// returns, so every one is delivered, in order).
    ///
    /// # Panics
    /// If `id` is not a datagram socket of this harness.
    pub fn feed_datagrams<'d>(
        &mut self,
        id: DatagramId,
        datagrams: impl IntoIterator<Item = (&'d [u8], Addr)>,
    ) {
        let socket = self.datagram_socket_mut(id);
        for (data, from) in datagrams {
            match &socket.connected {
                Some(peer) if *peer != from => {
                    log::trace!("{id}: a datagram from {from} dropped: connected to {peer}");
                }
                _ => socket.inbound.push_back(Ok((data.to_vec(), from))),
            }
        }
        self.datagram_event(id);
    }

    /// The kernel reports `error` on socket `id`'s next receive (an ICMP refusal of an
    /// earlier send, say), after the datagrams fed before it: `error_received` runs
    /// and the socket stays open.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use twistor::testing::Harness;
    /// use twistor::{Addr, Context, DatagramContext, DatagramProtocol, Protocol};
    ///
    /// #[derive(Default)]
    /// struct Refusals(usize);
    /// impl DatagramProtocol for Refusals {
    ///     fn datagram_received(&mut self, _: &mut DatagramContext<'_>, _: &[u8], _: &Addr) {}
    ///     fn error_received(&mut self, _: &mut DatagramContext<'_>, e: io::Error) {
    ///         assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    ///         self.0 += 1;
    ///     }
    /// }
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    /// }
    ///
    /// let mut h = Harness::new(Quiet);
    /// let udp = h.add_datagram(Refusals::default());
    /// h.feed_datagram_error(udp, io::ErrorKind::ConnectionRefused.into());
    /// assert_eq!(h.datagram_protocol_of::<Refusals>(udp).unwrap().0, 1);
    /// assert!(h.is_datagram_open(udp));
    /// ```
    ///
    /// # Panics
    /// If `id` is not a datagram socket of this harness.
    pub fn feed_datagram_error(&mut self, id: DatagramId, error: io::Error) {
        self.datagram_socket_mut(id).inbound.push_back(Err(error));
        self.datagram_event(id);
    }

    /// Takes what datagram socket `id` sent so far, in order, each with its
    /// destination: `Some(to)` for [`send_to`](DatagramContext::send_to), `None` for
    /// [`send`](DatagramContext::send) on a connected socket. Works after the socket
    /// closed too.
    ///
    /// # Panics
    /// If `id` is not a datagram socket of this harness.
    pub fn take_sent_datagrams(&mut self, id: DatagramId) -> Vec<(Vec<u8>, Option<Addr>)> {
        std::mem::take(&mut self.datagram_socket_mut(id).sent)
    }

    /// Where datagram socket `id` is connected ([`DatagramContext::connect`]), if it
    /// is.
    ///
    /// # Panics
    /// If `id` is not a datagram socket of this harness.
    pub fn datagram_connected_to(&self, id: DatagramId) -> Option<Addr> {
        let socket = match self.core.datagram(id) {
            Some(d) => &d.socket,
            None => match self.core.k.ended_datagrams.get(&id) {
                Some(e) => &e.socket,
                None => panic!("{id:?} is not a datagram socket of this harness"),
            },
        };
        socket.connected.clone()
    }

    /// Datagram socket `id`'s protocol, if it runs one of type `D` (also after it
    /// closed).
    pub fn datagram_protocol_of<D: DatagramProtocol>(&self, id: DatagramId) -> Option<&D> {
        let boxed = match self.core.datagram(id) {
            Some(_) => self.core.datagram_protocol(id),
            None => self.core.k.ended_datagrams.get(&id)?.protocol.as_deref(),
        };
        boxed.and_then(downcast_datagram_ref::<D>)
    }

    /// Datagram socket `id`'s protocol, mutably, if it runs one of type `D`.
    pub fn datagram_protocol_mut_of<D: DatagramProtocol>(
        &mut self,
        id: DatagramId,
    ) -> Option<&mut D> {
        let boxed = if self.core.datagram(id).is_some() {
            self.core.datagram_protocol_mut(id)
        } else {
            self.core
                .k
                .ended_datagrams
                .get_mut(&id)?
                .protocol
                .as_deref_mut()
        };
        boxed.and_then(downcast_datagram_mut::<D>)
    }

    /// Runs `f` with datagram socket `id`'s protocol and its [`DatagramContext`] as if
    /// it were one of its callbacks (a panic is caught and logged; a close takes effect
    /// after `f` returns): a reply computed elsewhere, say. False, without running `f`,
    /// if the socket is closing or closed, or runs another type.
    pub fn call_datagram<D, F>(&mut self, id: DatagramId, f: F) -> bool
    where
        D: DatagramProtocol,
        F: FnOnce(&mut D, &mut DatagramContext<'_>),
    {
        let runs_d = self.core.is_datagram_open(id)
            && self
                .core
                .datagram_protocol(id)
                .and_then(downcast_datagram_ref::<D>)
                .is_some();
        if !runs_d {
            return false;
        }
        self.core.invoke_datagram(id, |p, cx| {
            f(downcast_datagram_mut::<D>(p).expect("checked above"), cx)
        });
        self.core.settle_datagrams();
        self.pump();
        true
    }

    /// Closes datagram socket `id`, as
    /// [`Reactor::close_datagram`](crate::Reactor::close_datagram): its protocol's
    /// `stopped` runs. False if it was already closed.
    pub fn close_datagram(&mut self, id: DatagramId) -> bool {
        let open = self.core.is_datagram_open(id);
        self.core.close_datagram(id);
        self.core.settle_datagrams();
        self.pump();
        open
    }

    /// Datagram socket `id` is open: neither closed by anyone nor stopped.
    pub fn is_datagram_open(&self, id: DatagramId) -> bool {
        self.core.is_datagram_open(id)
    }

    // ----- the clock -----

    /// Moves the manual clock forward by `by`, running the timers that fall due on the
    /// way (see the [module docs](self) for the exact rule).
    ///
    /// # Panics
    /// If timers keep setting zero-delay timers at one instant without end.
    pub fn advance(&mut self, by: Duration) {
        let target = self.core.k.now + by;
        let mut passes_here = 0;
        // Instants before the target: pass until nothing is due, as an idle reactor's
        // next turns would before it reaches a later deadline.
        while let Some(deadline) = self.core.timers.next_deadline().filter(|d| *d < target) {
            if deadline > self.core.k.now {
                self.core.k.now = deadline;
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
        self.core.k.now = target;
        self.run_timers();
    }

    /// The manual clock (what [`Context::now`] returns).
    pub fn now(&self) -> Instant {
        self.core.k.now
    }

    /// How far the manual clock has moved since the harness was built.
    pub fn elapsed(&self) -> Duration {
        self.core.k.now - self.core.k.start
    }

    /// Pending timers, the harness's own included (idle and close deadlines), as
    /// [`Reactor::timer_count`](crate::Reactor::timer_count). Zero at the end of a test
    /// means nothing was left scheduled.
    pub fn pending_timers(&self) -> usize {
        self.core.timers.len()
    }

    /// Asserts that nothing is left scheduled: no pending timer and no pending pool job
    /// (Twisted trial's dirty-reactor check). Call it at the end of a test, after the
    /// connection is lost or once the protocol should be idle.
    ///
    /// # Panics
    /// If a timer (the harness's own idle or close deadline included) or a pool job is
    /// pending.
    pub fn assert_clean(&mut self) {
        let (timers, jobs) = (self.core.timers.len(), self.core.k.jobs.len());
        assert!(
            timers == 0 && jobs == 0,
            "harness not clean: {timers} timer(s) pending (next in {:?}), {jobs} pool job(s) pending",
            self.next_timer_in()
        );
    }

    /// Time until the earliest pending timer, if any: `advance` by it to fire it.
    pub fn next_timer_in(&mut self) -> Option<Duration> {
        let now = self.core.k.now;
        self.core
            .timers
            .next_deadline()
            .map(|d| d.saturating_duration_since(now))
    }

    // ----- the thread pool -----

    /// Pool jobs submitted with [`Context::defer_to_thread`] whose results are not
    /// delivered yet, as [`Reactor::pending_jobs`](crate::Reactor::pending_jobs).
    pub fn pending_jobs(&self) -> usize {
        self.core.k.jobs.len()
    }

    /// Runs the pool jobs pending now, oldest first, on this thread, delivering each
    /// result to its `done` callback before the next job runs. Jobs submitted by those
    /// callbacks wait for a later call. Returns how many ran.
    pub fn run_jobs(&mut self) -> usize {
        let n = self.core.k.jobs.len();
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
        let pending = self.core.k.jobs.len();
        let Some((key, work)) = self.core.k.jobs.remove(n) else {
            panic!("Harness::run_job({n}) with {pending} jobs pending");
        };
        let result = catch_unwind(AssertUnwindSafe(work))
            .map_err(|panic| JobError::Panicked(panic_message(&*panic)));
        if let Some((done, result)) = self.core.job_finished(key, result) {
            done(&mut self.core, result);
        }
        self.pump();
    }

    /// Drops every pending pool job without running it; each `done` callback gets
    /// [`JobError::Cancelled`], as when the reactor stops.
    pub fn cancel_jobs(&mut self) {
        let keys = std::mem::take(&mut self.core.k.jobs)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        for (done, result) in self.core.cancel_jobs(keys) {
            done(&mut self.core, result);
        }
        self.pump();
    }

    // ----- the kernel's side -----

    /// Connection `id`'s memory stream, also after it ended.
    fn stream(&self, id: ConnId) -> &MemStream {
        match self.core.conn(id) {
            Some(c) => &c.stream,
            None => match self.core.k.ended.get(&id) {
                Some(e) => &e.stream,
                None => panic!("{id:?} is not a connection of this harness"),
            },
        }
    }

    /// Datagram socket `id`'s memory socket, also after it closed.
    fn datagram_socket_mut(&mut self, id: DatagramId) -> &mut MemDatagram {
        if self.core.datagram(id).is_some() {
            return &mut self.core.datagram_mut(id).expect("checked").socket;
        }
        match self.core.k.ended_datagrams.get_mut(&id) {
            Some(e) => &mut e.socket,
            None => panic!("{id:?} is not a datagram socket of this harness"),
        }
    }

    /// A readable event on datagram socket `id` (a closed one drops what was fed), and
    /// the rest of the turn.
    fn datagram_event(&mut self, id: DatagramId) {
        if self.core.datagram(id).is_some() {
            self.core.datagram_ready(id);
            self.pump();
        } else {
            let socket = self.datagram_socket_mut(id);
            log::trace!(
                "{id}: {} datagrams fed to a closed socket",
                socket.inbound.len()
            );
            socket.inbound.clear();
        }
    }

    fn stream_mut(&mut self, id: ConnId) -> &mut MemStream {
        match self.core.conns.get(id.index as usize) {
            Some(c) if c.generation == id.generation => {
                &mut self.core.conn_mut(id).expect("checked").stream
            }
            _ => match self.core.k.ended.get_mut(&id) {
                Some(e) => &mut e.stream,
                None => panic!("{id:?} is not a connection of this harness"),
            },
        }
    }

    /// What the rest of a reactor turn does after an event: settle, serve what was
    /// carried over (a read cut short by its budget, a resumed reader, input waiting
    /// for a lingering close), flush the corked writes; until nothing is left.
    fn pump(&mut self) {
        loop {
            self.core.settle();
            if !self.core.failed.is_empty() {
                self.core.report_failed();
                continue;
            }
            if !self.core.ready.is_empty() {
                let mut batch = self.core.spare_ready.swap(&mut self.core.ready);
                for source in batch.drain(..) {
                    match source {
                        Source::Conn(id) => {
                            if self.core.conn(id).is_some_and(|c| c.in_ready) {
                                self.core.read_ready(id, true);
                            }
                        }
                        Source::Datagram(id) => self.core.serve_datagram(id),
                        Source::Listener(_) | Source::Waker => {}
                    }
                    self.core.settle();
                }
                self.core.spare_ready.keep(batch);
                continue;
            }
            if !self.core.corked.is_empty() {
                self.core.flush_corked();
                continue;
            }
            if self.carry_over_links() {
                continue;
            }
            break;
        }
    }

    /// Moves what linked connections sent to the other end, and the end of a write
    /// side to the other's EOF, as a kernel between two peers does; true if anything
    /// moved (the other end then has a readable event).
    fn carry_over_links(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.links.len() {
            let (a, b) = self.links[i];
            for (from, to) in [(a, b), (b, a)] {
                let sender = self.stream_mut(from);
                let data = std::mem::take(&mut sender.sent);
                // An end that is shut or gone sends EOF.
                let ended = sender.write_shut || self.core.conn(from).is_none();
                let receiver = self.stream_mut(to);
                if data.is_empty() && (!ended || receiver.peer_eof) {
                    continue;
                }
                receiver.inbound.extend(data);
                receiver.peer_eof |= ended;
                if self.core.conn(to).is_some() {
                    self.core.read_ready(to, true);
                }
                moved = true;
            }
        }
        moved
    }

    /// Runs the timers due now that were set before this pass began, settling after
    /// each (`Reactor::run_timers`), then pumps.
    fn run_timers(&mut self) {
        let now = self.core.k.now;
        self.core.now = now;
        let mark = self.core.timers.seq_mark();
        while let Some((timer, task)) = self.core.timers.pop_due(now, mark) {
            if let Some(never) = self.core.run_task(timer, task) {
                match never {}
            }
        }
        self.pump();
    }
}

impl<P: Protocol> crate::client::sealed::Host for Harness<P> {
    fn dialer(&mut self) -> &mut dyn Dialer {
        &mut self.core
    }

    fn settle(&mut self) {
        self.pump();
    }
}

impl<P: Protocol> crate::client::Network for Harness<P> {}

/// An outgoing connect under the kit: a memory stream that stays connecting until the
/// test decides ([`Harness::complete_connect`], [`Harness::refuse_connect`]).
impl Dial for Mem {
    fn connect_stream(core: &mut Core<Mem>, _: &Addr) -> io::Result<MemStream> {
        Ok(MemStream::new(core.k.local.clone()))
    }

    fn resolve(
        core: &mut Core<Mem>,
        host: String,
        port: u16,
        done: Box<dyn FnOnce(&mut Core<Mem>, io::Result<Vec<SocketAddr>>)>,
    ) -> Result<(), PoolBusy> {
        let resolver = Arc::clone(&core.k.resolver);
        let job: JobFn = Box::new(move || Box::new(resolver(&host, port)) as Box<dyn Any + Send>);
        let done: MemJobDone =
            Box::new(move |core, result| done(core, crate::client::resolved(result)));
        core.submit_job(job, core::JobDone::Kernel(done))
    }
}

/// The kit's own pool jobs' callbacks (a host name's resolution).
pub(crate) type MemJobDone = Box<dyn FnOnce(&mut Core<Mem>, JobResult)>;

/// A host-name resolver: the system's, or the test's ([`Harness::set_resolver`]).
type Resolver = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The protocol of a connection added with [`Harness::add_peer`]: it does nothing.
struct Peer;

impl Protocol for Peer {
    fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
}

/// The testing kit's kernel: memory streams, a manual clock, pool jobs that wait for
/// the test, and what is left of connections that ended.
pub(crate) struct Mem {
    now: Instant,
    start: Instant,
    /// Pool jobs in submission order, with their keys.
    jobs: VecDeque<(u64, JobFn)>,
    pool_queue_jobs: usize,
    ended: HashMap<ConnId, Ended>,
    ended_datagrams: HashMap<DatagramId, EndedDatagram>,
    /// This end's address, for the streams of outgoing connects.
    local: Addr,
    resolver: Resolver,
}

/// What the harness keeps of a datagram socket that closed.
struct EndedDatagram {
    socket: MemDatagram,
    protocol: Option<Box<dyn DatagramProtocol>>,
}

/// What the harness keeps of a connection that ended, for the test's questions.
struct Ended {
    stream: MemStream,
    protocol: Option<Box<dyn Protocol>>,
    reason: Option<Reason>,
}

/// The kit has no kernel timers of its own.
pub(crate) enum Never {}

impl Kernel for Mem {
    type Stream = MemStream;
    type Task = Never;
    type JobDone = MemJobDone;

    fn now(core: &Core<Self>) -> Instant {
        core.k.now
    }

    fn register(_: &mut Core<Self>, _: ConnId, _: &mut MemStream) -> io::Result<()> {
        Ok(())
    }

    fn release(core: &mut Core<Self>, id: ConnId, stream: MemStream, _reset: bool) {
        core.k.ended.insert(
            id,
            Ended {
                stream,
                protocol: None,
                reason: None,
            },
        );
    }

    fn retire(core: &mut Core<Self>, id: ConnId, protocol: Box<dyn Protocol>, reason: &Reason) {
        if let Some(e) = core.k.ended.get_mut(&id) {
            e.protocol = Some(protocol);
            e.reason = Some(reason.duplicate());
        }
    }

    fn submit(core: &mut Core<Self>, key: u64, job: JobFn) -> Result<(), PoolBusy> {
        // Every pending job is queued here (a reactor's threads take jobs off its
        // queue as they start them, so it may accept a few more).
        if core.k.jobs.len() >= core.k.pool_queue_jobs {
            return Err(PoolBusy);
        }
        core.k.jobs.push_back((key, job));
        Ok(())
    }

    fn pool_has_room(core: &Core<Self>) -> bool {
        core.k.jobs.len() < core.k.pool_queue_jobs
    }

    type Datagram = MemDatagram;

    fn register_datagram(_: &mut Core<Self>, _: DatagramId, _: &mut MemDatagram) -> io::Result<()> {
        Ok(())
    }

    fn release_datagram(core: &mut Core<Self>, id: DatagramId, socket: MemDatagram) {
        let ended = EndedDatagram {
            socket,
            protocol: None,
        };
        core.k.ended_datagrams.insert(id, ended);
    }

    fn retire_datagram(core: &mut Core<Self>, id: DatagramId, protocol: Box<dyn DatagramProtocol>) {
        if let Some(e) = core.k.ended_datagrams.get_mut(&id) {
            e.protocol = Some(protocol);
        }
    }
}

/// One datagram socket's memory kernel: what the test fed and what the protocol sent.
pub(crate) struct MemDatagram {
    /// Datagrams (and receive errors) fed by the test and not yet received.
    inbound: VecDeque<io::Result<(Vec<u8>, Addr)>>,
    /// What the protocol sent, with the destination (`None`: the connected peer).
    sent: Vec<(Vec<u8>, Option<Addr>)>,
    connected: Option<Addr>,
    local: Addr,
}

impl MemDatagram {
    fn new(local: Addr) -> MemDatagram {
        MemDatagram {
            inbound: VecDeque::new(),
            sent: Vec::new(),
            connected: None,
            local,
        }
    }

    /// Whether this socket can send to (or connect to) `to`: the address family of a
    /// UDP or Unix datagram socket, as the reactor's sockets check it.
    fn suits(&self, to: &Addr) -> bool {
        matches!(
            (&self.local, to),
            (Addr::Inet(_), Addr::Inet(_)) | (Addr::Unix(_), Addr::Unix(Some(_)))
        )
    }
}

impl core::DatagramSocket for MemDatagram {
    /// The oldest datagram fed, cut to `buf` as a kernel cuts it.
    fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, Addr)> {
        let (data, from) = self
            .inbound
            .pop_front()
            .unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into()))?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok((n, from))
    }

    fn send_to(&mut self, data: &[u8], to: &Addr) -> io::Result<usize> {
        if !self.suits(to) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot send to {to} from this socket"),
            ));
        }
        self.sent.push((data.to_vec(), Some(to.clone())));
        Ok(data.len())
    }

    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.connected.is_none() {
            // What the kernel answers for a socket that is not connected.
            return Err(match self.local {
                Addr::Inet(_) => rustix::io::Errno::DESTADDRREQ.into(),
                _ => io::ErrorKind::NotConnected.into(),
            });
        }
        self.sent.push((data.to_vec(), None));
        Ok(data.len())
    }

    fn connect(&mut self, to: &Addr) -> io::Result<()> {
        if !self.suits(to) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot connect this socket to {to}"),
            ));
        }
        self.connected = Some(to.clone());
        Ok(())
    }

    fn local_addr(&self) -> Option<Addr> {
        Some(self.local.clone())
    }
}

/// One connection's memory kernel: what the peer fed and what the protocol sent.
pub(crate) struct MemStream {
    /// Bytes fed by the test and not yet read.
    inbound: VecDeque<u8>,
    /// The test called `eof`.
    peer_eof: bool,
    /// Bytes the fake kernel accepted and the test has not taken.
    sent: Vec<u8>,
    /// How many more bytes the fake kernel accepts; `None`: any number.
    window: Option<usize>,
    write_shut: bool,
    local: Addr,
}

impl MemStream {
    fn new(local: Addr) -> MemStream {
        MemStream {
            inbound: VecDeque::new(),
            peer_eof: false,
            sent: Vec::new(),
            window: None,
            write_shut: false,
            local,
        }
    }
}

impl core::Stream for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return match self.peer_eof {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = self.inbound.len().min(buf.len());
        for (to, from) in buf.iter_mut().zip(self.inbound.drain(..n)) {
            *to = from;
        }
        Ok(n)
    }

    /// Takes what the window allows from `bufs`, in order.
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut room = self.window.unwrap_or(usize::MAX);
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(room);
            self.sent.extend_from_slice(&buf[..n]);
            taken += n;
            room -= n;
            if room == 0 {
                break;
            }
        }
        if let Some(w) = &mut self.window {
            *w -= taken;
        }
        match taken {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.write_shut = true;
        Ok(())
    }

    /// The memory kernel never resets over unread input: nothing to linger for.
    fn lingers(&self) -> bool {
        false
    }

    fn connect_result(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn local_addr(&self) -> Option<Addr> {
        Some(self.local.clone())
    }

    fn set_nodelay(&self, _: bool) -> io::Result<()> {
        Ok(())
    }

    fn set_keepalive(&self, _: Option<Duration>) -> io::Result<()> {
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
    fn the_memory_kernel_takes_what_the_window_allows_in_order() {
        use crate::core::Stream;
        let bufs = [IoSlice::new(b"abc"), IoSlice::new(b"def")];
        let mut s = MemStream::new(Addr::Stdio);
        s.window = Some(4);
        assert_eq!(s.send(&bufs).unwrap(), 4);
        assert_eq!((s.window, &s.sent[..]), (Some(0), &b"abcd"[..]));
        let refused = s.send(&bufs).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        s.window = None;
        assert_eq!(s.send(&bufs).unwrap(), 6);
        assert_eq!(s.window, None);
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
        let limits = s.core.config.write_limits();
        assert_eq!(
            (limits.high_watermark_bytes, limits.low_watermark_bytes),
            (10, 10),
            "low is clamped to high, as the reactor does"
        );
        assert_eq!(limits.write_cap_bytes, 99);
        assert_eq!(s.core.config.read_buffer_bytes, 1);
    }
}
