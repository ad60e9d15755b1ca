//! The context handed to protocol callbacks, and the write buffer behind it.
//!
//! [`Context`] is a protocol's whole view of the world: its own transport (write,
//! close, pause), its timers, and the other connections of the reactor, reached by id
//! through a [`ConnRef`] with the same verbs. The same `Context` type is backed by the
//! real reactor or by the testing kit, so a protocol runs unchanged under both.
//!
//! [`WriteQueue`] is the pure part of the write path: bytes the kernel refused, kept
//! in a few large chunks and handed back as `IoSlice`s for vectored writes.

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use crate::ids::ConnId;
use crate::pool::{JobError, PoolBusy};
use crate::protocol::{Addr, PeerCredentials, Protocol};
use crate::timer::TimerId;

/// A callback bound to one connection, run with that connection's protocol.
pub(crate) type BoundCall = Box<dyn FnOnce(&mut dyn Protocol, &mut Context<'_>)>;

/// A pool job's result, its type erased until it is back on the reactor thread.
pub(crate) type JobResult = Result<Box<dyn Any + Send>, JobError>;

/// A job for the pool, its result type erased.
pub(crate) type JobFn = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// What runs on the reactor thread with a job's result, for one connection.
pub(crate) type BoundDone = Box<dyn FnOnce(&mut dyn Protocol, &mut Context<'_>, JobResult)>;

/// What a [`Context`] needs from whoever runs the protocol: the reactor, or the
/// testing kit. Every method takes the connection it acts on, so one context can reach
/// other connections too; a method on a connection that is gone does nothing.
///
/// `defer_to_thread` must accept a job whenever `can_defer_to_thread` has just said
/// yes: [`Context::defer_to_thread`] asks first so that it can hand a refused job
/// back (the boxed one cannot be unboxed to its type).
pub(crate) trait Driver: crate::producer::ProducerDriver {
    fn write(&mut self, id: ConnId, data: &[u8]) -> bool;
    fn write_vectored(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> bool;
    fn lose_connection(&mut self, id: ConnId);
    fn lose_write_connection(&mut self, id: ConnId);
    fn abort_connection(&mut self, id: ConnId);
    fn set_reading(&mut self, id: ConnId, reading: bool);
    fn is_open(&self, id: ConnId) -> bool;
    fn is_reading(&self, id: ConnId) -> bool;
    fn buffered(&self, id: ConnId) -> usize;
    fn peer_addr(&self, id: ConnId) -> Option<Addr>;
    fn local_addr(&self, id: ConnId) -> Option<Addr>;
    fn peer_credentials(&self, id: ConnId) -> Option<PeerCredentials> {
        let _ = id;
        None
    }
    fn set_nodelay(&mut self, id: ConnId, on: bool) -> io::Result<()>;
    fn set_keepalive(&mut self, id: ConnId, idle: Option<Duration>) -> io::Result<()>;
    fn call_later(&mut self, id: ConnId, delay: Duration, call: BoundCall) -> TimerId;
    fn cancel_timer(&mut self, timer: TimerId) -> bool;
    fn reset_timer(&mut self, timer: TimerId, delay: Duration) -> bool;
    fn now(&self) -> Instant;
    fn stop(&mut self);
    fn defer_to_thread(&mut self, id: ConnId, job: JobFn, done: BoundDone) -> Result<(), PoolBusy>;
    fn can_defer_to_thread(&self, id: ConnId) -> bool;
    /// What connection `id`'s TLS handshake settled; `None` on plaintext.
    #[cfg(feature = "tls")]
    fn tls_info(&self, id: ConnId) -> Option<crate::tls::TlsInfo> {
        let _ = id;
        None
    }
    /// The core as a client service sees it (a `Context` is a `client::Network`).
    fn dialer(&mut self) -> &mut dyn crate::core::Dialer;
}

/// A [`Driver`] used outside any callback (the reactor's own [`ConnRef`]s): nothing
/// settles after the call for it, so the caller does.
pub(crate) trait Settle: Driver {
    /// Carries out what the calls before asked for: closes and their
    /// `connection_lost`, owed watermark notices.
    fn settle(&mut self);
}

/// Where a [`ConnRef`] sends its calls.
enum Target<'a> {
    /// Inside a callback: the reactor settles once the callback returns.
    Callback(&'a mut dyn Driver),
    /// Outside one (`Reactor::conn`): each call settles what it set off.
    Outside(&'a mut dyn Settle),
}

/// One connection of the reactor, by id: the verbs [`Context`] has for its own
/// connection, for any connection.
///
/// [`Context::conn`] gives one inside a callback (a chat room writing to its
/// members, a relay pausing the other side), [`Reactor::conn`](crate::Reactor::conn)
/// outside any (a timer or a closure sent from another thread), and
/// [`DatagramContext::conn`](crate::DatagramContext::conn) to a datagram protocol.
/// Each method does what the `Context` method of the same name does; on a connection
/// that is gone it does nothing and, where it returns something, says so (`false`,
/// `0`, `None`), as for a stale id: ids are never reused.
///
/// Effects that call back into a protocol (a close and its `connection_lost`, a
/// watermark notice) wait, as from `Context`, until the current callback returns.
/// A `ConnRef` from [`Reactor::conn`](crate::Reactor::conn) has no callback to wait
/// for: each of its calls that acts carries them out before it returns, as
/// `Reactor::run_once` would after a callback.
///
/// # Examples
///
/// ```
/// use twistor::{ConnId, Context, Protocol};
///
/// /// Sends what it reads to another connection; stops reading while that one is
/// /// backed up, and shuts its write side when its own peer is done.
/// struct Relay {
///     to: ConnId,
/// }
///
/// impl Protocol for Relay {
///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
///         let mut out = cx.conn(self.to);
///         out.write(data);
///         let backed_up = out.buffered() > 64 * 1024;
///         if backed_up {
///             cx.pause_reading();
///         }
///     }
///
///     fn read_eof(&mut self, cx: &mut Context<'_>) {
///         cx.conn(self.to).lose_write_connection();
///         cx.lose_connection();
///     }
/// }
/// ```
pub struct ConnRef<'a> {
    target: Target<'a>,
    id: ConnId,
}

impl fmt::Debug for ConnRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnRef").field("id", &self.id).finish()
    }
}

impl<'a> ConnRef<'a> {
    /// A handle whose calls the reactor settles after its `Context`'s callback.
    pub(crate) fn in_callback(driver: &'a mut dyn Driver, id: ConnId) -> Self {
        ConnRef {
            target: Target::Callback(driver),
            id,
        }
    }

    /// A handle outside any callback, whose calls settle as they return.
    pub(crate) fn settling(driver: &'a mut dyn Settle, id: ConnId) -> Self {
        ConnRef {
            target: Target::Outside(driver),
            id,
        }
    }

    /// Runs one call that acts on the connection, then settles it if no callback
    /// will.
    fn act<R>(&mut self, call: impl FnOnce(&mut dyn Driver, ConnId) -> R) -> R {
        match &mut self.target {
            Target::Callback(d) => call(&mut **d, self.id),
            Target::Outside(d) => {
                let result = call(&mut **d, self.id);
                d.settle();
                result
            }
        }
    }

    fn driver(&self) -> &dyn Driver {
        match &self.target {
            Target::Callback(d) => &**d,
            Target::Outside(d) => &**d,
        }
    }

    /// The connection this handle acts on.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Sends `data`, as [`Context::write`]; false if the bytes were dropped (the
    /// connection is closing or gone, or this write passed its cap).
    pub fn write(&mut self, data: &[u8]) -> bool {
        self.act(|d, id| d.write(id, data))
    }

    /// Sends several buffers in order, as [`Context::write_vectored`].
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> bool {
        self.act(|d, id| d.write_vectored(id, bufs))
    }

    /// Flushes what is queued, then closes, as [`Context::lose_connection`].
    pub fn lose_connection(&mut self) {
        self.act(|d, id| d.lose_connection(id))
    }

    /// Flushes what is queued, then shuts the write side, as
    /// [`Context::lose_write_connection`] (a client that has sent everything can
    /// still read the replies).
    pub fn lose_write_connection(&mut self) {
        self.act(|d, id| d.lose_write_connection(id))
    }

    /// Closes now, dropping what is queued, as [`Context::abort_connection`].
    pub fn abort_connection(&mut self) {
        self.act(|d, id| d.abort_connection(id))
    }

    /// Stops delivering data, as [`Context::pause_reading`] (a relay whose output
    /// backs up stops taking input).
    pub fn pause_reading(&mut self) {
        self.act(|d, id| d.set_reading(id, false))
    }

    /// Delivers data again, as [`Context::resume_reading`].
    pub fn resume_reading(&mut self) {
        self.act(|d, id| d.set_reading(id, true))
    }

    /// False while reading is paused, after EOF or a close, or once the connection is
    /// gone.
    pub fn is_reading(&self) -> bool {
        self.driver().is_reading(self.id)
    }

    /// Bytes queued for the connection that the kernel has not taken yet, as
    /// [`Context::buffered`]; 0 once it is gone.
    pub fn buffered(&self) -> usize {
        self.driver().buffered(self.id)
    }

    /// False once the connection is closing or gone.
    pub fn is_open(&self) -> bool {
        self.driver().is_open(self.id)
    }

    /// The peer's address; `None` once the connection is gone.
    pub fn peer_addr(&self) -> Option<Addr> {
        self.driver().peer_addr(self.id)
    }

    /// This end's address; `None` once the connection is gone.
    pub fn local_addr(&self) -> Option<Addr> {
        self.driver().local_addr(self.id)
    }

    /// The peer's process, user and group ids, as [`Context::peer_credentials`].
    pub fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.driver().peer_credentials(self.id)
    }

    /// Sets TCP_NODELAY, as [`Context::set_nodelay`].
    ///
    /// # Errors
    /// The socket option failed, this is not a TCP connection, or it is gone.
    pub fn set_nodelay(&mut self, on: bool) -> io::Result<()> {
        self.act(|d, id| d.set_nodelay(id, on))
    }

    /// Turns TCP keepalive on or off, as [`Context::set_keepalive`].
    ///
    /// # Errors
    /// The socket option failed, this is not a TCP connection, or it is gone.
    pub fn set_keepalive(&mut self, idle: Option<Duration>) -> io::Result<()> {
        self.act(|d, id| d.set_keepalive(id, idle))
    }
}

/// A protocol callback's handle on its connection and on the reactor.
///
/// Operations on this connection (`write`, `lose_connection`, ...), and the same
/// operations on any other by [`ConnId`] through [`conn`](Self::conn)
/// (`cx.conn(id).write(..)`). Operations on a connection that is already gone do
/// nothing and, where they return something, say so.
///
/// Effects that would call back into a protocol — a close, a watermark notice, a write
/// error — take effect after the current callback returns, never inside it.
pub struct Context<'a> {
    driver: &'a mut dyn Driver,
    id: ConnId,
    protocol_type: TypeId,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("id", &self.id).finish()
    }
}

impl<'a> Context<'a> {
    pub(crate) fn new(driver: &'a mut dyn Driver, id: ConnId, protocol_type: TypeId) -> Self {
        Context {
            driver,
            id,
            protocol_type,
        }
    }

    /// The core, for a client service started or driven from a callback
    /// (src/client.rs: a `Context` is a `Network`).
    pub(crate) fn dialer(&mut self) -> &mut dyn crate::core::Dialer {
        self.driver.dialer()
    }

    /// This connection's id: stable for its whole life, never reused while it lives,
    /// and never matching a later connection.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Connection `id` of the same reactor (this one too), with the verbs this context
    /// has for its own: `cx.conn(id).write(..)`, `cx.conn(id).lose_connection()`,
    /// `cx.conn(id).buffered()`. A connection that is gone is a handle that does
    /// nothing. Closes and watermark notices it sets off take effect after the
    /// current callback returns, as for this connection's own.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::{ConnId, Context, Protocol};
    ///
    /// /// Forwards what it reads to another connection, and says whether it could.
    /// struct Forward {
    ///     to: ConnId,
    /// }
    ///
    /// impl Protocol for Forward {
    ///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
    ///         if !cx.conn(self.to).write(data) {
    ///             cx.write(b"the other side is gone\n");
    ///         }
    ///     }
    /// }
    /// ```
    pub fn conn(&mut self, id: ConnId) -> ConnRef<'_> {
        ConnRef::in_callback(&mut *self.driver, id)
    }

    /// Sends `data`.
    ///
    /// Small writes are gathered and offered to the kernel together, one system call
    /// per connection at the end of the reactor's turn, before it waits for events
    /// again; a write of 4 KiB or more, or one that would gather more than 16 KiB (or
    /// the high watermark, if lower), goes out at once, behind what was gathered. What the kernel refuses is
    /// buffered and sent when the socket is writable. Bytes always leave in the order
    /// they were written.
    ///
    /// Returns false if the bytes were dropped: the connection is closing or gone, or
    /// this write passed the write buffer's cap (the connection is then closed with
    /// [`Reason::WriteOverflow`]).
    ///
    /// [`Reason::WriteOverflow`]: crate::Reason::WriteOverflow
    pub fn write(&mut self, data: &[u8]) -> bool {
        self.conn(self.id).write(data)
    }

    /// Sends several buffers in order, with one system call where possible.
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> bool {
        self.conn(self.id).write_vectored(bufs)
    }

    /// Flushes what is queued, then closes (Twisted's `loseConnection`).
    ///
    /// Reading stops at once: nothing more reaches `data_received`. Writes after this
    /// are dropped (and logged at debug), except those of the `done` callbacks of this
    /// connection's pool jobs that are still out: the close waits for them (see
    /// [`defer_to_thread`](Self::defer_to_thread)). Once everything is flushed, the
    /// write side is shut and the close *lingers* until the peer closes its side,
    /// discarding what it still sends, so that no reset throws away the bytes the
    /// kernel has yet to deliver (bounded by `Builder::linger`). `connection_lost`
    /// then gets [`Reason::Done`](crate::Reason::Done). A peer that never reads cannot
    /// hold the connection open: after the reactor's close timeout it is aborted with
    /// [`Reason::TimedOut`](crate::Reason::TimedOut).
    pub fn lose_connection(&mut self) {
        self.conn(self.id).lose_connection()
    }

    /// Flushes what is queued, then shuts the write side (TCP half-close); reading
    /// goes on.
    pub fn lose_write_connection(&mut self) {
        self.conn(self.id).lose_write_connection()
    }

    /// Closes now, dropping queued bytes; the peer sees a reset
    /// (Twisted's `abortConnection`). `connection_lost` gets
    /// [`Reason::Aborted`](crate::Reason::Aborted).
    pub fn abort_connection(&mut self) {
        self.conn(self.id).abort_connection()
    }

    /// Stops delivering data until [`resume_reading`](Self::resume_reading); the
    /// kernel's buffers then push back on the peer. Idempotent; takes effect at once,
    /// even inside `connection_made`.
    pub fn pause_reading(&mut self) {
        self.conn(self.id).pause_reading()
    }

    /// Delivers data again after [`pause_reading`](Self::pause_reading). Idempotent.
    pub fn resume_reading(&mut self) {
        self.conn(self.id).resume_reading()
    }

    /// False while reading is paused, or after EOF or a close.
    pub fn is_reading(&self) -> bool {
        self.driver.is_reading(self.id)
    }

    /// Bytes queued for this connection that the kernel has not taken yet: small
    /// writes gathered this turn (until the end of the turn) and what the kernel
    /// refused; on TLS, plaintext not encrypted yet (held for the handshake) and
    /// ciphertext not sent.
    pub fn buffered(&self) -> usize {
        self.driver.buffered(self.id)
    }

    /// What this connection's TLS handshake settled (peer certificates, SNI name, ALPN
    /// protocol, version), or whether it is still going on; `None` on a plaintext
    /// connection. See the [`tls`](crate::tls) module.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<crate::tls::TlsInfo> {
        self.driver.tls_info(self.id)
    }

    /// False once this connection is closing or gone.
    pub fn is_open(&self) -> bool {
        self.driver.is_open(self.id)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<Addr> {
        self.driver.peer_addr(self.id)
    }

    /// This end's address.
    pub fn local_addr(&self) -> Option<Addr> {
        self.driver.local_addr(self.id)
    }

    /// The peer's process, user and group ids, for a Unix-domain connection on an OS
    /// that gives them (Linux); `None` otherwise (TCP, stdio, the testing kit).
    pub fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.driver.peer_credentials(self.id)
    }

    /// Sets TCP_NODELAY (on by default for every TCP connection, as asyncio and Go do).
    ///
    /// # Errors
    /// The socket option failed, or this is not a TCP connection.
    pub fn set_nodelay(&mut self, on: bool) -> io::Result<()> {
        self.conn(self.id).set_nodelay(on)
    }

    /// Turns TCP keepalive on with the given idle time before the first probe, or off
    /// with `None`.
    ///
    /// # Errors
    /// The socket option failed, or this is not a TCP connection.
    pub fn set_keepalive(&mut self, idle: Option<Duration>) -> io::Result<()> {
        self.conn(self.id).set_keepalive(idle)
    }

    /// Runs `f` with this connection's protocol after `delay`, on the reactor thread.
    ///
    /// The timer dies with the connection: once it is lost, `f` never runs. `P` is the
    /// connection's protocol type (for a framer, the framer: `LineReceiver<H>`).
    ///
    /// # Panics
    /// If `P` is not the type of this connection's protocol (a programming error,
    /// caught like any panic in a callback).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twistor::{Context, Protocol};
    ///
    /// struct Greeter;
    /// impl Protocol for Greeter {
    ///     fn connection_made(&mut self, cx: &mut Context<'_>) {
    ///         cx.call_later(Duration::from_secs(1), |_: &mut Greeter, cx| {
    ///             cx.write(b"still there?\n");
    ///         });
    ///     }
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    /// }
    /// ```
    pub fn call_later<P, F>(&mut self, delay: Duration, f: F) -> TimerId
    where
        P: Protocol,
        F: FnOnce(&mut P, &mut Context<'_>) + 'static,
    {
        assert!(
            self.protocol_type == TypeId::of::<P>(),
            "call_later: the closure takes {} but this connection runs another protocol type",
            std::any::type_name::<P>()
        );
        self.driver.call_later(self.id, delay, bind(f))
    }

    /// Cancels a timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.driver.cancel_timer(timer)
    }

    /// Runs `job` on the reactor's thread pool, then `done` with its result and this
    /// connection's protocol, back on the reactor thread (Twisted's `deferToThread`).
    ///
    /// Results come back in completion order; a connection that must answer in
    /// request order puts them back in order with [`InOrder`](crate::InOrder). If the
    /// connection is lost before the job ends, the result is dropped (logged at debug)
    /// and `done` never runs. A *graceful* close does not lose it: `lose_connection`
    /// (and so a framer's close and the default `read_eof` after the peer half-closes)
    /// waits for the connection's jobs still out, runs their `done` callbacks and
    /// sends what they write, then closes; the close timeout bounds that wait. A job
    /// that panics gives `done` a
    /// [`JobError::Panicked`]; a job still queued when the reactor stops never runs
    /// and gives `done` a [`JobError::Cancelled`].
    ///
    /// # Errors
    /// [`PoolBusy`] if the pool's queue is full, the reactor is stopping, or this
    /// connection is gone: answer "busy", pause reading until results drain, or retry
    /// later. Neither `job` nor `done` has run; both come back in the error
    /// ([`PoolBusy::into_inner`] gives `(job, done)`), so what the job owns is not
    /// lost and the job can be submitted again.
    ///
    /// # Panics
    /// If `P` is not the type of this connection's protocol, as
    /// [`call_later`](Self::call_later).
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::{Context, Protocol};
    ///
    /// struct Hasher;
    /// impl Protocol for Hasher {
    ///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
    ///         let data = data.to_vec();
    ///         let job = move || data.iter().map(|&b| u64::from(b)).sum::<u64>();
    ///         let queued = cx.defer_to_thread(job, |_: &mut Hasher, cx, sum| match sum {
    ///             Ok(sum) => drop(cx.write(format!("{sum}\n").as_bytes())),
    ///             Err(e) => drop(cx.write(format!("error: {e}\n").as_bytes())),
    ///         });
    ///         if queued.is_err() {
    ///             cx.write(b"busy\n");
    ///         }
    ///     }
    /// }
    /// ```
    ///
    /// A refused job comes back, to be tried again once results drain (here, under
    /// the testing kit, whose pool holds one job):
    ///
    /// ```
    /// use twistor::testing::HarnessBuilder;
    /// use twistor::{Context, Protocol};
    ///
    /// #[derive(Default)]
    /// struct Retry {
    ///     parked: Option<Box<dyn FnOnce(&mut Context<'_>)>>,
    /// }
    /// impl Protocol for Retry {
    ///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
    ///         let n = data.len();
    ///         let queued = cx.defer_to_thread(move || n * 2, |me: &mut Retry, cx, r| {
    ///             cx.write(format!("{}\n", r.unwrap()).as_bytes());
    ///             if let Some(retry) = me.parked.take() {
    ///                 retry(cx); // room again: submit the refused job
    ///             }
    ///         });
    ///         if let Err(busy) = queued {
    ///             let (job, done) = busy.into_inner();
    ///             self.parked = Some(Box::new(move |cx: &mut Context<'_>| {
    ///                 cx.defer_to_thread(job, done).unwrap();
    ///             }));
    ///         }
    ///     }
    /// }
    ///
    /// let mut h = HarnessBuilder::new().pool_queue_jobs(1).build(Retry::default());
    /// h.connect();
    /// h.feed(b"ab");
    /// h.feed(b"abc"); // refused: the one job is still out
    /// assert_eq!(h.pending_jobs(), 1);
    /// h.run_jobs(); // "4", then the parked job is submitted
    /// h.run_jobs(); // "6"
    /// assert_eq!(h.take_written(), b"4\n6\n");
    /// ```
    pub fn defer_to_thread<P, T, J, D>(&mut self, job: J, done: D) -> Result<(), PoolBusy<(J, D)>>
    where
        P: Protocol,
        T: Send + 'static,
        J: FnOnce() -> T + Send + 'static,
        D: FnOnce(&mut P, &mut Context<'_>, Result<T, JobError>) + 'static,
    {
        assert!(
            self.protocol_type == TypeId::of::<P>(),
            "defer_to_thread: the callback takes {} but this connection runs another protocol type",
            std::any::type_name::<P>()
        );
        // Asked first: once boxed, the job could not be handed back.
        if !self.driver.can_defer_to_thread(self.id) {
            return Err(PoolBusy::new((job, done)));
        }
        let job: JobFn = Box::new(move || Box::new(job()) as Box<dyn Any + Send>);
        let done: BoundDone = Box::new(move |p, cx, result| {
            let result = result.map(|r| *r.downcast::<T>().expect("job result type"));
            bind(move |p: &mut P, cx| done(p, cx, result))(p, cx)
        });
        self.driver
            .defer_to_thread(self.id, job, done)
            .expect("the pool had room a moment ago, and only this thread submits");
        Ok(())
    }

    /// Moves a pending timer to `delay` from now; false if it already fired or was
    /// cancelled (Twisted's `DelayedCall.reset`).
    pub fn reset_timer(&mut self, timer: TimerId, delay: Duration) -> bool {
        self.driver.reset_timer(timer, delay)
    }

    /// The reactor's clock (the testing kit's manual clock under test).
    pub fn now(&self) -> Instant {
        self.driver.now()
    }

    /// Asks the reactor to stop gracefully, as [`Reactor::stop`](crate::Reactor::stop).
    pub fn stop_reactor(&mut self) {
        self.driver.stop()
    }

    /// Whether [`defer_to_thread`](Self::defer_to_thread) would accept a job now. A
    /// true answer holds until this thread defers something (the pool's threads only
    /// take jobs off the queue), so a job that is costly to build can be built only
    /// once there is room for it.
    pub fn can_defer_to_thread(&self) -> bool {
        self.driver.can_defer_to_thread(self.id)
    }

    /// Sends `data` to another connection; false if it is gone or dropped the bytes.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).write(data)")]
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.conn(id).write(data)
    }

    /// Sends several buffers to another connection.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).write_vectored(bufs)")]
    pub fn write_vectored_to(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> bool {
        self.conn(id).write_vectored(bufs)
    }

    /// Flushes, then closes another connection.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).lose_connection()")]
    pub fn lose_connection_of(&mut self, id: ConnId) {
        self.conn(id).lose_connection()
    }

    /// Flushes, then shuts the write side of another connection.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).lose_write_connection()")]
    pub fn lose_write_connection_of(&mut self, id: ConnId) {
        self.conn(id).lose_write_connection()
    }

    /// Stops reading from another connection.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).pause_reading()")]
    pub fn pause_reading_of(&mut self, id: ConnId) {
        self.conn(id).pause_reading()
    }

    /// Reads from another connection again.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).resume_reading()")]
    pub fn resume_reading_of(&mut self, id: ConnId) {
        self.conn(id).resume_reading()
    }

    /// Closes another connection now, dropping what it has queued.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).abort_connection()")]
    pub fn abort_connection_of(&mut self, id: ConnId) {
        self.conn(id).abort_connection()
    }

    /// Bytes queued for another connection (0 if it is gone).
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).buffered()")]
    pub fn buffered_of(&self, id: ConnId) -> usize {
        // `&self`, as before, so not through `conn`, which needs `&mut`.
        self.driver.buffered(id)
    }

    /// False if the connection `id` is closing or gone.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).is_open()")]
    pub fn is_open_id(&self, id: ConnId) -> bool {
        self.driver.is_open(id)
    }

    /// Registers `producer` as this connection's source of data, driven by the write
    /// buffer (Twisted's `registerProducer(producer, streaming)`): a
    /// [`Pull`](crate::ProducerKind::Pull) producer is asked for more whenever the
    /// connection has room, a [`Push`](crate::ProducerKind::Push) producer is paused and
    /// resumed by the watermarks, and either gets `stop_producing` when the connection
    /// ends. See the [`producer`](crate::producer) module for the exact rules.
    ///
    /// Once the producer is unregistered ([`unregister_producer`](Self::unregister_producer),
    /// called by the producer at the end of its data or by the protocol), `done` runs
    /// with this connection's protocol and gets the producer back; if the connection
    /// ends first, `done` never runs. Nothing is called inside this call: a pull
    /// producer is first asked once the current callback has returned.
    ///
    /// # Errors
    /// The producer is given back if this connection already has one, or is closing
    /// (or half-closed) or gone.
    ///
    /// # Panics
    /// If `P` is not the type of this connection's protocol, as
    /// [`call_later`](Self::call_later).
    ///
    /// # Examples
    /// See [`Producer`](crate::Producer), and [`FileSender`](crate::FileSender) for a
    /// file.
    pub fn register_producer<P, R, F>(
        &mut self,
        producer: R,
        kind: crate::ProducerKind,
        done: F,
    ) -> Result<(), R>
    where
        P: Protocol,
        R: crate::Producer,
        F: FnOnce(&mut P, &mut Context<'_>, R) + 'static,
    {
        assert!(
            self.protocol_type == TypeId::of::<P>(),
            "register_producer: `done` takes {} but this connection runs another protocol type",
            std::any::type_name::<P>()
        );
        if !self.driver.can_register_producer(self.id) {
            return Err(producer);
        }
        let entry = crate::producer::entry(producer, done);
        self.driver.register_producer(self.id, kind, entry);
        Ok(())
    }

    /// Ends the registration of this connection's producer (Twisted's
    /// `unregisterProducer`): it is asked, paused and resumed no more, and the
    /// registration's `done` runs once the current callback returns. A producer calls
    /// it at the end of its data; the protocol may call it to cancel. No-op without a
    /// producer.
    pub fn unregister_producer(&mut self) {
        self.driver.unregister_producer(self.id)
    }
}

/// Wraps a typed per-connection callback so that it can be stored beside callbacks of
/// other protocol types. The type was checked when the callback was set.
pub(crate) fn bind<P, F>(f: F) -> BoundCall
where
    P: Protocol,
    F: FnOnce(&mut P, &mut Context<'_>) + 'static,
{
    Box::new(move |p: &mut dyn Protocol, cx: &mut Context<'_>| {
        let any: &mut dyn Any = p;
        match any.downcast_mut::<P>() {
            Some(p) => f(p, cx),
            None => log::error!(
                "{}: bound callback expects {}",
                cx.id(),
                std::any::type_name::<P>()
            ),
        }
    })
}

/// Chunk size for coalescing small queued writes: large enough that a burst of small
/// replies becomes a few iovecs, small enough not to waste memory per slow peer.
pub(crate) const CHUNK_BYTES: usize = 16 * 1024;

/// Most slices handed to one gathered write (`sendmsg`): past this a syscall is already moving plenty.
pub(crate) const MAX_IOVECS: usize = 64;

/// Bytes waiting for the kernel, in order.
///
/// Small writes are appended to the last chunk, which grows (doubling) up to 16 KiB,
/// so a burst of tiny writes costs a few allocations per 16 KiB, not one per write,
/// and a single small write costs only its own size; a large write is one chunk of
/// its own. An empty queue holds no memory and costs one pointer in the
/// connection's slot: most connections have nothing queued most of the time.
///
/// Emptied backlogs and small chunks go to a per-thread stock ([`Spares`]) that the
/// next queue on the thread takes from, so the steady state of corked writes (a
/// queue filled and emptied every turn) costs no allocation.
#[derive(Default)]
pub(crate) struct WriteQueue {
    /// `None` exactly when nothing is queued.
    backlog: Option<Box<Backlog>>,
}

/// Most emptied backlogs, and most chunks, kept per thread for reuse: one turn's
/// worth of connections (the reactor's default events capacity), so a turn that
/// corks a write for every connection it served allocates nothing.
const SPARE_BACKLOGS: usize = 1024;

/// Most bytes of chunk capacity kept per thread for reuse; only chunks of at most
/// [`SPARE_CHUNK_BYTES`] are kept.
const SPARE_BYTES: usize = 1024 * 1024;

/// Largest chunk kept for reuse: the size of the writes that are corked.
const SPARE_CHUNK_BYTES: usize = 4096;

/// Backlogs and chunks that queues on this thread emptied, for the next ones.
/// Bounded by [`SPARE_BACKLOGS`] and [`SPARE_BYTES`], so a burst leaves at most about
/// a MiB behind per reactor thread, never anything per connection.
#[derive(Default)]
struct Spares {
    // The boxes are the allocations kept for reuse: a `WriteQueue` holds a box.
    #[allow(clippy::vec_box)]
    backlogs: Vec<Box<Backlog>>,
    chunks: Vec<Vec<u8>>,
    chunk_bytes: usize,
}

thread_local! {
    static SPARES: std::cell::RefCell<Spares> = std::cell::RefCell::default();
}

impl Spares {
    fn backlog() -> Box<Backlog> {
        SPARES
            .with(|s| s.borrow_mut().backlogs.pop())
            .unwrap_or_default()
    }

    /// A chunk holding `data`: a spare one when `data` is small.
    fn chunk(data: &[u8]) -> Vec<u8> {
        let spare = if data.len() <= SPARE_CHUNK_BYTES {
            SPARES.with(|s| {
                let mut s = s.borrow_mut();
                let chunk = s.chunks.pop();
                if let Some(c) = &chunk {
                    s.chunk_bytes -= c.capacity();
                }
                chunk
            })
        } else {
            None
        };
        match spare {
            Some(mut chunk) => {
                chunk.extend_from_slice(data);
                chunk
            }
            None => data.to_vec(),
        }
    }

    fn keep_chunk(mut chunk: Vec<u8>) {
        let cap = chunk.capacity();
        if cap == 0 || cap > SPARE_CHUNK_BYTES {
            return;
        }
        chunk.clear();
        // `try_with`: a queue dropped while the thread exits finds the stock gone.
        let _ = SPARES.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.chunk_bytes + cap <= SPARE_BYTES && s.chunks.len() < SPARE_BACKLOGS {
                s.chunk_bytes += cap;
                s.chunks.push(chunk);
            }
        });
    }

    fn keep_backlog(mut backlog: Box<Backlog>) {
        for chunk in backlog.chunks.drain(..) {
            Spares::keep_chunk(chunk);
        }
        backlog.head = 0;
        backlog.len = 0;
        let _ = SPARES.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.backlogs.len() < SPARE_BACKLOGS {
                s.backlogs.push(backlog);
            }
        });
    }
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
        self.clear();
    }
}

#[derive(Default)]
struct Backlog {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already sent.
    head: usize,
    len: usize,
}

impl WriteQueue {
    pub(crate) fn len(&self) -> usize {
        self.backlog.as_ref().map_or(0, |b| b.len)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.backlog.is_none()
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let b = self.backlog.get_or_insert_with(Spares::backlog);
        b.len += data.len();
        if let Some(last) = b.chunks.back_mut() {
            if last.len() + data.len() <= last.capacity().max(CHUNK_BYTES) {
                last.extend_from_slice(data);
                return;
            }
        }
        // Exactly as large as the write: a corked 1-byte reply costs a few bytes, not
        // a chunk; small writes after it grow the chunk (doubling) up to CHUNK_BYTES.
        b.chunks.push_back(Spares::chunk(data));
    }

    /// Fills `out` with the queued bytes as slices, front first (at most `N`).
    pub(crate) fn slices<'s, const N: usize>(&'s self, out: &mut [IoSlice<'s>; N]) -> usize {
        let Some(b) = &self.backlog else { return 0 };
        let mut n = 0;
        for (i, chunk) in b.chunks.iter().take(N).enumerate() {
            let start = if i == 0 { b.head } else { 0 };
            out[i] = IoSlice::new(&chunk[start..]);
            n += 1;
        }
        n
    }

    /// Drops the first `n` bytes, which the kernel took.
    pub(crate) fn consume(&mut self, mut n: usize) {
        let Some(b) = &mut self.backlog else {
            debug_assert_eq!(n, 0);
            return;
        };
        debug_assert!(n <= b.len);
        b.len -= n;
        while n > 0 {
            let left = b.chunks[0].len() - b.head;
            if n < left {
                b.head += n;
                return;
            }
            n -= left;
            b.head = 0;
            if let Some(chunk) = b.chunks.pop_front() {
                Spares::keep_chunk(chunk);
            }
        }
        if b.len == 0 {
            self.clear();
        }
    }

    /// Drops everything; the memory goes back to the thread's stock (or to the
    /// allocator, past the stock's bounds).
    pub(crate) fn clear(&mut self) {
        if let Some(backlog) = self.backlog.take() {
            Spares::keep_backlog(backlog);
        }
    }

    /// Offers up to `N` slices of the queue to `write`: the bytes offered, and what
    /// `write` answered.
    fn offer<const N: usize>(
        &self,
        write: &mut impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> (usize, io::Result<usize>) {
        let mut slices = [IoSlice::new(&[]); N];
        let count = self.slices(&mut slices);
        let offered = slices[..count].iter().map(|s| s.len()).sum();
        (offered, write(&slices[..count]))
    }

    /// Writes as much as `write` takes, one vectored call at a time, until the queue
    /// is empty or the kernel takes less than offered. Returns the bytes written.
    pub(crate) fn drain_into(
        &mut self,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut total = 0;
        while let Some(b) = &self.backlog {
            // Most queues are one chunk (a turn's corked writes): offer it without
            // filling a full `MAX_IOVECS` array of slices first.
            let (offered, result) = if b.chunks.len() <= 2 {
                self.offer::<2>(&mut write)
            } else {
                self.offer::<MAX_IOVECS>(&mut write)
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.consume(n);
                    total += n;
                    // A short write means the socket buffer is full; epoll reports
                    // writable again when it has room.
                    if n < offered {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

/// Limits on one connection's write buffer. The reactor and the testing kit both apply
/// them through [`WriteQueue::push_limited`] and [`WriteQueue::resume_after_drain`], so
/// a protocol meets the same watermark and cap rules under both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WriteLimits {
    /// Pause the producer when more than this many bytes are queued.
    pub(crate) high_watermark_bytes: usize,
    /// Resume it once at most this many bytes are queued.
    pub(crate) low_watermark_bytes: usize,
    /// Close with `WriteOverflow` rather than queue past this many bytes.
    pub(crate) write_cap_bytes: usize,
}

/// What [`WriteQueue::push_limited`] did with the bytes it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued.
    Queued,
    /// Queued, and the queue passed the high watermark: the producer is now paused and
    /// `pause_producing` is owed once the current callback returns.
    PauseOwed,
    /// Not queued: the queue would pass the cap. The caller closes the connection
    /// with `Reason::WriteOverflow`.
    Overflow,
}

impl WriteQueue {
    /// Queues `parts` (what the kernel did not take) under `limits`: refuses them all
    /// if they would take the queue past the cap, and pauses the producer (setting
    /// `producer_paused`) when the queue goes above the high watermark.
    pub(crate) fn push_limited<B: std::ops::Deref<Target = [u8]>>(
        &mut self,
        parts: &[B],
        limits: &WriteLimits,
        producer_paused: &mut bool,
    ) -> Push {
        let adding: usize = parts.iter().map(|p| p.len()).sum();
        if self.len() + adding > limits.write_cap_bytes {
            return Push::Overflow;
        }
        for part in parts {
            self.push(part);
        }
        if !*producer_paused && self.len() > limits.high_watermark_bytes {
            *producer_paused = true;
            return Push::PauseOwed;
        }
        Push::Queued
    }

    /// After the kernel took bytes: true if `resume_producing` is due now, because a
    /// paused producer's queue is down to the low watermark. A pause notice still owed
    /// (`notify_pause`) is withdrawn instead: the protocol was never told it was
    /// paused, so it is told nothing.
    pub(crate) fn resume_after_drain(
        &self,
        limits: &WriteLimits,
        producer_paused: &mut bool,
        notify_pause: &mut bool,
    ) -> bool {
        if !*producer_paused || self.len() > limits.low_watermark_bytes {
            return false;
        }
        *producer_paused = false;
        !std::mem::take(notify_pause)
    }
}

/// The parts of `bufs` left after the kernel took the first `written` bytes of a
/// vectored write.
pub(crate) fn unwritten<'b>(bufs: &'b [IoSlice<'_>], mut written: usize) -> Vec<&'b [u8]> {
    let mut rest = Vec::new();
    for buf in bufs {
        if written >= buf.len() {
            written -= buf.len();
        } else {
            rest.push(&buf[written..]);
            written = 0;
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(q: &WriteQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = q.slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn small_writes_coalesce_into_one_chunk() {
        let mut q = WriteQueue::default();
        for _ in 0..100 {
            q.push(b"0123456789");
        }
        assert_eq!(q.len(), 1000);
        assert_eq!(q.backlog.as_ref().unwrap().chunks.len(), 1);
        assert_eq!(contents(&q), b"0123456789".repeat(100));
    }

    #[test]
    fn emptied_queues_stock_their_memory_within_bounds_and_reuse_it() {
        let stock = || {
            SPARES.with(|s| {
                let s = s.borrow();
                (s.backlogs.len(), s.chunks.len(), s.chunk_bytes)
            })
        };
        let mut queues: Vec<WriteQueue> = (0..2 * SPARE_BACKLOGS)
            .map(|_| WriteQueue::default())
            .collect();
        for q in &mut queues {
            q.push(&[7; 3000]);
        }
        drop(queues);
        let (backlogs, chunks, bytes) = stock();
        assert_eq!(backlogs, SPARE_BACKLOGS);
        assert!(
            chunks > 0 && chunks <= SPARE_BACKLOGS && bytes <= SPARE_BYTES,
            "{chunks} chunks, {bytes} bytes"
        );
        let mut q = WriteQueue::default();
        q.push(b"reused");
        assert_eq!(stock(), (backlogs - 1, chunks - 1, bytes - 3000));
        assert_eq!(contents(&q), b"reused");
        q.consume(6);
        assert!(q.is_empty());
        assert_eq!(stock(), (backlogs, chunks, bytes));
    }

    #[test]
    fn consume_across_chunks_keeps_order_and_frees_memory() {
        let mut q = WriteQueue::default();
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        q.push(b"abc");
        q.push(&big);
        q.push(b"xyz");
        q.consume(2);
        assert_eq!(contents(&q)[..2], *b"c\0");
        q.consume(1 + 50_000);
        let mut expect = big[50_000..].to_vec();
        expect.extend_from_slice(b"xyz");
        assert_eq!(contents(&q), expect);
        q.consume(expect.len());
        assert!(q.is_empty());
        assert!(q.backlog.is_none(), "an empty queue holds no memory");
    }

    #[test]
    fn limits_pause_above_high_resume_at_low_and_refuse_past_cap() {
        let limits = WriteLimits {
            high_watermark_bytes: 10,
            low_watermark_bytes: 4,
            write_cap_bytes: 20,
        };
        let (mut q, mut paused, mut owed) = (WriteQueue::default(), false, false);
        assert_eq!(
            q.push_limited(&[&b"0123456789"[..]], &limits, &mut paused),
            Push::Queued
        );
        assert_eq!(
            q.push_limited(&[&b"a"[..], b"b"], &limits, &mut paused),
            Push::PauseOwed
        );
        assert!(paused);
        assert_eq!(
            q.push_limited(&[&b"c"[..]], &limits, &mut paused),
            Push::Queued
        );
        assert_eq!(
            q.push_limited(&[&[0u8; 8][..]], &limits, &mut paused),
            Push::Overflow
        );
        assert_eq!(q.len(), 13, "an overflowing write queues nothing");
        q.consume(8);
        assert!(
            !q.resume_after_drain(&limits, &mut paused, &mut owed),
            "5 > low"
        );
        q.consume(1);
        assert!(q.resume_after_drain(&limits, &mut paused, &mut owed));
        assert!(!paused);
        assert!(
            !q.resume_after_drain(&limits, &mut paused, &mut owed),
            "only once"
        );
    }

    #[test]
    fn resume_withdraws_a_pause_notice_not_yet_delivered() {
        let limits = WriteLimits {
            high_watermark_bytes: 2,
            low_watermark_bytes: 0,
            write_cap_bytes: 100,
        };
        let (mut q, mut paused) = (WriteQueue::default(), false);
        let mut owed = q.push_limited(&[&b"abc"[..]], &limits, &mut paused) == Push::PauseOwed;
        assert!(owed);
        q.consume(3);
        assert!(!q.resume_after_drain(&limits, &mut paused, &mut owed));
        assert!(!paused && !owed);
    }

    #[test]
    fn unwritten_skips_what_the_kernel_took() {
        let bufs = [IoSlice::new(b"abc"), IoSlice::new(b""), IoSlice::new(b"de")];
        assert_eq!(unwritten(&bufs, 0), [&b"abc"[..], b"de"]);
        assert_eq!(unwritten(&bufs, 2), [&b"c"[..], b"de"]);
        assert_eq!(unwritten(&bufs, 3), [&b"de"[..]]);
        assert!(unwritten(&bufs, 5).is_empty());
    }

    #[test]
    fn drain_stops_on_short_write_and_would_block() {
        let mut q = WriteQueue::default();
        q.push(&[1; 1000]);
        // The "kernel" takes 300 bytes, then refuses.
        let n = q.drain_into(|s| Ok(s[0].len().min(300))).unwrap();
        assert_eq!((n, q.len()), (300, 700));
        let n = q
            .drain_into(|_| Err(io::ErrorKind::WouldBlock.into()))
            .unwrap();
        assert_eq!((n, q.len()), (0, 700));
        let n = q
            .drain_into(|s| Ok(s.iter().map(|s| s.len()).sum()))
            .unwrap();
        assert_eq!((n, q.len()), (700, 0));
    }
}
