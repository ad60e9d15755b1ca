//! A reconnecting client: [`ClientService`] keeps one outgoing connection up.
//!
//! Given a [`Target`], a protocol factory (`FnMut() -> P`, one protocol per attempt)
//! and a [`Backoff`] policy, the service connects at once; when the connect fails or
//! the connection is lost, it waits the policy's next delay and connects again, with
//! a fresh protocol. Each protocol sees its callbacks as usual: `connection_made`
//! and `connection_lost`, or `connection_failed`, exactly once each. The service is
//! Twisted's `ClientService` (and, with [`Backoff::reconnecting_client_factory`], its
//! `ReconnectingClientFactory`), with these rules:
//!
//! - **The delay resets on a good connection**, by itself: at once when a connection
//!   is made, or, with [`reset_after`](ClientServiceBuilder::reset_after), once it has
//!   stayed up that long (a server that accepts and drops at once then still backs
//!   off). `ReconnectingClientFactory` leaves the reset to the protocol, and users
//!   forget it (graphite-carbon #102/#110, pymodbus #266).
//! - **The first retry waits the initial delay**, and delays stay within [0, max] (see
//!   [`crate::backoff`]).
//! - **One live connection at most**; its [`State`] is connecting, connected, waiting
//!   until an instant, stopping or stopped.
//! - **[`when_connected`](ClientService::when_connected)** runs code on the live
//!   connection, or on the next one made; with `fail_after: Some(n)` it gives up
//!   after `n` failed connects in a row, with the last one's error.
//! - **[`stop`](ClientService::stop)** cancels a pending retry, or a connect in
//!   progress (its protocol gets `connection_failed`), or closes the live connection
//!   gracefully (its protocol gets `connection_lost`); then the service is stopped for
//!   good. A reactor that stops closes the live connection as any other, and the
//!   service makes no new attempt while it is stopping.
//! - **Host names**: with [`Target::Host`], each connect resolves the name on the
//!   thread pool ([`State::Resolving`]), then tries its addresses in order, and
//!   counts as one attempt for the backoff; a name that does not resolve is a failed
//!   connect whose error holds a [`ResolveError`].
//! - **TLS**: with [`tls`](ClientServiceBuilder::tls), every connection speaks TLS
//!   (to any kind of target, and under the testing kit), and the service counts a
//!   connection as made once its handshake is done: a handshake that fails (a
//!   certificate it cannot verify) is a failed connect, retried with backoff.
//! - **[`on_retry`](ClientServiceBuilder::on_retry)** tells the application each
//!   retry's delay and cause ("reconnecting in 2.3 s").
//! - **No wrapper**: the protocol in the connection is the factory's own, so
//!   [`Reactor::call_protocol`](crate::Reactor::call_protocol), typed
//!   [`Context::call_later`](crate::Context::call_later) callbacks and
//!   [`Reactor::conn`](crate::Reactor::conn) with [`ClientService::conn_id`] work
//!   on it as on any connection. The core tells the service about the connection
//!   after the protocol's own callback.
//!
//! The service runs on a [`Reactor`](crate::Reactor) or on the testing kit's
//! [`Harness`](crate::testing::Harness) (both are a [`Network`]; so is a protocol
//! callback's [`Context`], to start, stop or use a service from a callback), where the test
//! decides each connect's outcome
//! ([`complete_connect`](crate::testing::Harness::complete_connect),
//! [`refuse_connect`](crate::testing::Harness::refuse_connect)) and the manual clock
//! runs the retries. It is `!Send`: it lives on its reactor's thread; a
//! [`ClientService`] is a cheap handle (`Clone`) to it.
//!
//! # Examples
//!
//! Under the testing kit: the first connect is refused, the retry waits the initial
//! delay, and the second attempt gets through.
//!
//! ```
//! use std::io;
//! use std::time::Duration;
//! use twistor::backoff::{Backoff, Jitter};
//! use twistor::client::{ClientServiceBuilder, State};
//! use twistor::testing::Harness;
//! use twistor::{Context, Protocol};
//!
//! struct Hello;
//! impl Protocol for Hello {
//!     fn connection_made(&mut self, cx: &mut Context<'_>) {
//!         cx.write(b"hello\n");
//!     }
//!     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
//! }
//!
//! let mut h = Harness::new(Hello); // the harness's own connection stays unused
//! let policy = Backoff::client_service().jitter(Jitter::None);
//! let client = ClientServiceBuilder::new()
//!     .backoff(policy)
//!     .start(&mut h, "127.0.0.1:7000".parse::<std::net::SocketAddr>().unwrap(), || Hello);
//!
//! let State::Connecting(first) = client.state() else { panic!() };
//! h.refuse_connect(first, io::ErrorKind::ConnectionRefused.into());
//! assert!(matches!(client.state(), State::Waiting { .. }));
//! assert_eq!(h.next_timer_in(), Some(Duration::from_secs(1)));
//!
//! h.advance(Duration::from_secs(1));
//! let State::Connecting(second) = client.state() else { panic!() };
//! h.complete_connect(second);
//! assert_eq!(client.conn_id(), Some(second));
//! assert_eq!(h.take_written_of(second), b"hello\n");
//!
//! client.stop(&mut h);
//! assert_eq!(client.state(), State::Stopped);
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, Delays, Rng};
use crate::core::{Dialer, Ending, Watcher};
use crate::ids::ConnId;
use crate::pool::JobError;
use crate::protocol::{panic_message, Addr, Protocol, Reason};
use crate::timer::TimerId;
#[cfg(feature = "tls")]
use crate::tls::{rustls::pki_types::ServerName, TlsConnector};
use crate::transport::{BoundCall, Context, JobResult};

/// Where a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain stream socket's path.
    Unix(PathBuf),
    /// A host name and a TCP port: each connect resolves the name again, on the
    /// thread pool, and tries its addresses in order (see
    /// [`Reactor::connect_host`](crate::Reactor::connect_host)). A name that does not
    /// resolve is a failed connect whose error holds a [`ResolveError`].
    Host {
        /// The name (an IP address in text works too).
        host: String,
        /// The TCP port.
        port: u16,
    },
}

impl Target {
    /// A host name and port ([`Target::Host`]).
    pub fn host(host: impl Into<String>, port: u16) -> Target {
        Target::Host {
            host: host.into(),
            port,
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target::Tcp(addr)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "{a}"),
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Host { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Where a client service runs: a [`Reactor`](crate::Reactor), the testing kit's
/// [`Harness`](crate::testing::Harness), or a protocol callback's
/// [`Context`] (to start, stop or use a service from inside a callback, on the
/// reactor or the harness that runs it). Sealed: implemented by those three only.
pub trait Network: sealed::Host {}

pub(crate) mod sealed {
    /// What a client service needs of its network (see [`super::Network`]).
    pub trait Host {
        /// The core, to connect, set timers and reach connections.
        fn dialer(&mut self) -> &mut dyn crate::core::Dialer;
        /// Carries out what the calls before asked for (closes and their callbacks);
        /// inside a callback, nothing: the core does it once the callback returns.
        fn settle(&mut self);
        /// Whether a protocol callback is running: no other protocol may be called
        /// now (see [`super::ClientService::when_connected`]).
        fn in_callback(&self) -> bool {
            false
        }
    }
}

/// Inside a callback: the core settles once the callback returns, and no protocol
/// callback may run before then.
impl sealed::Host for Context<'_> {
    fn dialer(&mut self) -> &mut dyn Dialer {
        Context::dialer(self)
    }

    fn settle(&mut self) {}

    fn in_callback(&self) -> bool {
        true
    }
}

impl Network for Context<'_> {}

/// What a [`ClientService`] is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A [`Target::Host`]'s name is being resolved; connecting comes next.
    Resolving,
    /// A connect is in progress, as this connection (made or failed next). For a
    /// [`Target::Host`], the attempt on the address being tried. With TLS, until
    /// the handshake is done (the protocol has had `connection_made` meanwhile).
    Connecting(ConnId),
    /// This connection is up.
    Connected(ConnId),
    /// Waiting to retry, at `until` (on the network's clock).
    Waiting {
        /// When the next connect starts.
        until: Instant,
    },
    /// [`stop`](ClientService::stop) was called; the connect in progress or the live
    /// connection is closing.
    Stopping,
    /// Stopped for good: by [`stop`](ClientService::stop), by the reactor's stop, or
    /// after the backoff's last retry failed.
    Stopped,
}

/// Why [`ClientService::when_connected`] has no connection to give.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotConnected {
    /// The number of failed connects in a row given as `fail_after` was reached;
    /// this is the last one's error.
    Failed(io::Error),
    /// The service stopped ([`ClientService::stop`], or the reactor's stop) before a
    /// connection was made.
    Stopped,
    /// The backoff's [`max_retries`](Backoff::max_retries) were spent: the service
    /// gave up. The last connect's error, if the last attempt was a connect that
    /// failed.
    GaveUp(Option<io::Error>),
}

impl fmt::Display for NotConnected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotConnected::Failed(e) => write!(f, "connect failed: {e}"),
            NotConnected::Stopped => f.write_str("the client service stopped"),
            NotConnected::GaveUp(Some(e)) => write!(f, "gave up reconnecting: {e}"),
            NotConnected::GaveUp(None) => f.write_str("gave up reconnecting"),
        }
    }
}

impl std::error::Error for NotConnected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NotConnected::Failed(e) | NotConnected::GaveUp(Some(e)) => Some(e),
            _ => None,
        }
    }
}

/// A retry the service has just scheduled, for
/// [`ClientServiceBuilder::on_retry`].
#[non_exhaustive]
pub struct Retry<'a> {
    /// How long until the next connect starts.
    pub delay: Duration,
    /// Retries taken since the delay was last reset, this one included.
    pub retries: u32,
    /// Why the service retries.
    pub cause: RetryCause<'a>,
    core: &'a mut dyn Dialer,
}

impl Retry<'_> {
    /// Writes `data` to connection `id` of the network, as [`Context::write_to`]:
    /// to tell the user on a connection of theirs (a terminal's). False if the bytes
    /// were dropped (no such connection, or it is closing).
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.core.write_to(id, data)
    }
}

impl fmt::Debug for Retry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("delay", &self.delay)
            .field("retries", &self.retries)
            .field("cause", &self.cause)
            .finish()
    }
}

/// Why a [`ClientService`] retries.
#[derive(Debug)]
#[non_exhaustive]
pub enum RetryCause<'a> {
    /// A connect failed with this error (after its protocol's `connection_failed`);
    /// a name that did not resolve holds a [`ResolveError`].
    Failed(&'a io::Error),
    /// The live connection was lost for this reason (after its protocol's
    /// `connection_lost`).
    Lost(&'a Reason),
}

/// The [`ClientServiceBuilder::on_retry`] callback.
#[derive(Clone)]
struct OnRetry(Rc<RefCell<RetryFn>>);

/// What [`ClientServiceBuilder::on_retry`] takes.
type RetryFn = dyn FnMut(&mut Retry<'_>);

impl fmt::Debug for OnRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnRetry")
    }
}

/// Configures a [`ClientService`]: the backoff policy, its random source, when the
/// delay resets, the connect timeout.
#[derive(Clone, Debug, Default)]
pub struct ClientServiceBuilder {
    backoff: Backoff,
    rng: Option<Rng>,
    reset_after: Option<Duration>,
    connect_timeout: Option<Option<Duration>>,
    on_retry: Option<OnRetry>,
    tls: Option<ClientTls>,
}

impl ClientServiceBuilder {
    /// The defaults: [`Backoff::client_service`], a random source seeded from the
    /// clock, the delay reset as soon as a connection is made, the network's connect
    /// timeout.
    pub fn new() -> ClientServiceBuilder {
        ClientServiceBuilder::default()
    }

    /// The backoff policy; [`Backoff::client_service`] by default.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Seeds the jitter's random source, so that the delays are reproducible (tests);
    /// by default it is seeded from the clock and the process id
    /// ([`Rng::from_entropy`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = Some(Rng::seeded(seed));
        self
    }

    /// Resets the delay only once a connection has stayed up for `up` (default: as
    /// soon as one is made). A connection lost sooner counts as a failed attempt for
    /// the delay and for [`max_retries`](Backoff::max_retries).
    pub fn reset_after(mut self, up: Duration) -> Self {
        self.reset_after = Some(up);
        self
    }

    /// Each connect's timeout (`None`: as long as the kernel takes); by default the
    /// network's ([`Builder::connect_timeout`](crate::Builder::connect_timeout)).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Calls `f` each time the service schedules a retry, with the delay and the
    /// cause: to tell a user "reconnecting in 2.3 s" (on a connection of theirs:
    /// [`Retry::write_to`]). It runs after the protocol's `connection_failed` or
    /// `connection_lost`, from the reactor's own step (no protocol callback is
    /// running); it must not call the service's methods that take the network.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::io;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use twistor::backoff::{Backoff, Jitter};
    /// use twistor::client::{ClientServiceBuilder, RetryCause, State};
    /// use twistor::testing::Harness;
    /// use twistor::{Context, Protocol};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    /// }
    ///
    /// let said = Rc::new(RefCell::new(Vec::new()));
    /// let log = said.clone();
    /// let mut h = Harness::new(Quiet);
    /// let client = ClientServiceBuilder::new()
    ///     .backoff(Backoff::client_service().jitter(Jitter::None))
    ///     .on_retry(move |retry| {
    ///         let why = match retry.cause {
    ///             RetryCause::Failed(_) => "refused",
    ///             RetryCause::Lost(_) => "lost",
    ///             _ => "?",
    ///         };
    ///         log.borrow_mut().push(format!("{why}, retry in {:.1}s", retry.delay.as_secs_f64()));
    ///     })
    ///     .start(&mut h, "127.0.0.1:7000".parse::<std::net::SocketAddr>().unwrap(), || Quiet);
    /// let State::Connecting(id) = client.state() else { panic!() };
    /// h.refuse_connect(id, io::ErrorKind::ConnectionRefused.into());
    /// assert_eq!(*said.borrow(), ["refused, retry in 1.0s"]);
    /// ```
    pub fn on_retry(mut self, f: impl FnMut(&mut Retry<'_>) + 'static) -> Self {
        self.on_retry = Some(OnRetry(Rc::new(RefCell::new(f))));
        self
    }

    /// Speaks TLS on every connection, as
    /// [`Reactor::connect_tls`](crate::Reactor::connect_tls) does: the server's
    /// certificate is verified for `server_name` (a DNS name or an IP address) with
    /// `connector`'s roots, whatever the [`Target`] (a [`Target::Host`]'s name is
    /// only resolved; the name verified is this one). Over the testing kit too: a
    /// connection the test completes sends its client hello, for a TLS server
    /// connection [`link`](crate::testing::Harness::link)ed to it.
    ///
    /// The protocol's `connection_made` comes once TCP is up, before the handshake
    /// (what it writes waits for the handshake). The service counts the connection
    /// as made only once the handshake is done: until then it is
    /// [`State::Connecting`]; then it is [`State::Connected`], the delay resets and
    /// [`when_connected`](ClientService::when_connected) callbacks run. A handshake
    /// that fails (a certificate that is not trusted or not for `server_name`, a
    /// server that closes or does not finish within the connector's handshake
    /// timeout) is a failed connect: the protocol gets `connection_lost` with
    /// [`Reason::Tls`], the failure counts ([`ClientService::failures`], `fail_after`),
    /// is logged as a warning with its reason, and the service retries with backoff
    /// ([`RetryCause::Failed`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use twistor::client::{ClientServiceBuilder, Target};
    /// use twistor::tls::rustls::pki_types::ServerName;
    /// use twistor::tls::TlsConnector;
    /// use twistor::{Context, Protocol, Reactor};
    ///
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, cx: &mut Context<'_>) {
    ///         cx.write(b"hello\n"); // sent once the handshake is done
    ///     }
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let tls = TlsConnector::from_ca_pem("ca.pem")?;
    /// let name = ServerName::try_from("chat.example")?;
    /// let _client = ClientServiceBuilder::new()
    ///     .tls(tls, name)
    ///     .start(&mut reactor, Target::host("chat.example", 8443), || Hello);
    /// reactor.run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, connector: TlsConnector, server_name: ServerName<'static>) -> Self {
        self.tls = Some(ClientTls {
            connector,
            server_name: server_name.to_str().into_owned(),
        });
        self
    }

    /// Starts the service on `net`: the first connect starts now (its outcome comes
    /// later, never inside this call).
    pub fn start<N, P, F>(
        self,
        net: &mut N,
        target: impl Into<Target>,
        factory: F,
    ) -> ClientService<P>
    where
        N: Network,
        P: Protocol,
        F: FnMut() -> P + 'static,
    {
        let target = target.into();
        let connect_timeout = self
            .connect_timeout
            .unwrap_or_else(|| net.dialer().connect_timeout());
        let rng = self.rng.unwrap_or_else(Rng::from_entropy);
        let shared = Rc::new_cyclic(|me| Shared {
            me: me.clone(),
            factory: RefCell::new(Box::new(factory)),
            on_retry: self.on_retry,
            tls: self.tls,
            inner: RefCell::new(Inner {
                target,
                delays: self.backoff.delays(rng),
                phase: Phase::Stopped,
                reset_after: self.reset_after,
                reset_timer: None,
                flush_timer: None,
                connect_timeout,
                waiters: Vec::new(),
                failures: 0,
                last_error: None,
            }),
        });
        shared.connect(net.dialer());
        net.settle();
        ClientService { shared }
    }
}

/// A reconnecting client (Twisted's `ClientService`); see the [module docs](self).
///
/// A handle: clones share the one service. It is dropped with its last handle and
/// its last pending connection or timer; drop does not stop it (call
/// [`stop`](Self::stop)).
pub struct ClientService<P: Protocol> {
    shared: Rc<Shared<P>>,
}

impl<P: Protocol> Clone for ClientService<P> {
    fn clone(&self) -> Self {
        ClientService {
            shared: self.shared.clone(),
        }
    }
}

impl<P: Protocol> fmt::Debug for ClientService<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.shared.inner.borrow();
        f.debug_struct("ClientService")
            .field("target", &inner.target)
            .field("state", &inner.phase.state())
            .field("failures", &inner.failures)
            .finish()
    }
}

/// A callback of [`ClientService::when_connected`], with its failure budget.
type WhenConnected<P> = Box<dyn FnOnce(Result<(&mut P, &mut Context<'_>), NotConnected>)>;

struct Waiter<P> {
    /// Failed connects still allowed before the callback gets the failure.
    fail_after: Option<u32>,
    f: WhenConnected<P>,
}

impl<P: Protocol> ClientService<P> {
    /// Starts a service with the default policy ([`Backoff::client_service`]): see
    /// [`ClientServiceBuilder::start`].
    pub fn start<N, F>(net: &mut N, target: impl Into<Target>, factory: F) -> ClientService<P>
    where
        N: Network,
        F: FnMut() -> P + 'static,
    {
        ClientServiceBuilder::default().start(net, target, factory)
    }

    /// What the service is doing now.
    pub fn state(&self) -> State {
        self.shared.inner.borrow().phase.state()
    }

    /// The live connection, if one is up: for
    /// [`Reactor::conn`](crate::Reactor::conn) and
    /// [`Reactor::call_protocol`](crate::Reactor::call_protocol).
    pub fn conn_id(&self) -> Option<ConnId> {
        match self.shared.inner.borrow().phase {
            Phase::Connected(id) => Some(id),
            _ => None,
        }
    }

    /// Failed connects in a row since the last connection was made (or since the
    /// start).
    pub fn failures(&self) -> u32 {
        self.shared.inner.borrow().failures
    }

    /// Retries taken since the delay was last reset: the backoff's position.
    pub fn retries(&self) -> u32 {
        self.shared.inner.borrow().delays.retries()
    }

    /// Where the service connects.
    pub fn target(&self) -> Target {
        self.shared.inner.borrow().target.clone()
    }

    /// Runs `f` with the live connection's protocol and context, now if one is up,
    /// else once the next one is made (after its `connection_made`), as Twisted's
    /// `whenConnected` fires its `Deferred`. `f` gets an error instead if the service
    /// stops first ([`NotConnected::Stopped`], [`NotConnected::GaveUp`]), or, with
    /// `fail_after: Some(n)`, once `n` connects in a row have failed from now
    /// ([`NotConnected::Failed`] with the last one's error; `Some(1)`: the very next
    /// failure). A connection lost is not a failed connect.
    ///
    /// A panic in `f` is caught: with a connection, it closes that connection, as a
    /// panic in a callback does; without, it is logged.
    ///
    /// `net` may be a protocol callback's [`Context`] (another connection's, or the
    /// live connection's own): `f` never runs inside that callback. While connected
    /// it runs at the next turn (a zero-delay timer: under the kit, the next
    /// [`advance`](crate::testing::Harness::advance)), or with the next connection
    /// if this one is lost first; else as above.
    pub fn when_connected<N, F>(&self, net: &mut N, fail_after: Option<u32>, f: F)
    where
        N: Network,
        F: FnOnce(Result<(&mut P, &mut Context<'_>), NotConnected>) + 'static,
    {
        let f: WhenConnected<P> = Box::new(f);
        let phase = self.shared.inner.borrow().phase.clone();
        match phase {
            Phase::Connected(_) if net.in_callback() => {
                // No protocol runs inside another's callback: `f` waits for the
                // next turn (or for the next connection, if this one is lost first).
                let waiter = Waiter { fail_after, f };
                self.shared.inner.borrow_mut().waiters.push(waiter);
                self.shared.flush_soon(net.dialer());
            }
            Phase::Connected(id) => {
                net.dialer().run_bound(id, bound(f));
                net.settle();
            }
            Phase::Stopping(_) | Phase::Stopped => fail(f, NotConnected::Stopped),
            Phase::Connecting(_) | Phase::Waiting { .. } => {
                let waiter = Waiter { fail_after, f };
                self.shared.inner.borrow_mut().waiters.push(waiter);
            }
        }
    }

    /// Stops the service: a pending retry is cancelled, a connect in progress is
    /// cancelled (its protocol gets `connection_failed`; during a TLS handshake,
    /// `connection_lost` with [`Reason::Aborted`], what it wrote dropped), the live
    /// connection is closed gracefully (its protocol gets `connection_lost` once its
    /// queue is flushed). The service is [`State::Stopping`] until then, and
    /// [`State::Stopped`] after; waiting [`when_connected`](Self::when_connected)
    /// callbacks get [`NotConnected::Stopped`]. No-op once stopping.
    ///
    /// `net` may be a protocol callback's [`Context`] (the live connection's own
    /// `data_received`, say): the close then happens once the callback returns, as
    /// `cx.lose_connection()` does.
    pub fn stop<N: Network>(&self, net: &mut N) {
        let connected = self.conn_id().is_some();
        let (close, reset_timer, retry_timer, flush_timer) = {
            let mut inner = self.shared.inner.borrow_mut();
            let reset_timer = inner.reset_timer.take();
            let flush_timer = inner.flush_timer.take();
            match inner.phase.clone() {
                Phase::Waiting { timer, .. } => {
                    inner.phase = Phase::Stopped;
                    (None, reset_timer, Some(timer), flush_timer)
                }
                Phase::Connecting(attempt) => {
                    inner.phase = Phase::Stopping(attempt.clone());
                    (Some(attempt), reset_timer, None, flush_timer)
                }
                Phase::Connected(id) => {
                    inner.phase = Phase::Stopping(Attempt::Conn(id));
                    (Some(Attempt::Conn(id)), reset_timer, None, flush_timer)
                }
                Phase::Stopping(_) | Phase::Stopped => (None, reset_timer, None, flush_timer),
            }
        };
        log::debug!("client {}: stopping", self.shared.inner.borrow().target);
        let dialer = net.dialer();
        for timer in [reset_timer, retry_timer, flush_timer]
            .into_iter()
            .flatten()
        {
            dialer.cancel(timer);
        }
        match close {
            Some(Attempt::Conn(id)) if connected => dialer.close(id),
            Some(Attempt::Conn(id)) => dialer.abort(id),
            Some(Attempt::Host(dial)) => dial.cancel(dialer),
            None => {}
        }
        if retry_timer.is_some() {
            self.shared.fail_waiters(|_| NotConnected::Stopped);
        }
        net.settle();
    }
}

/// A client's TLS settings ([`ClientServiceBuilder::tls`]): the connector and the
/// name the server's certificate must carry. Without the `tls` feature there is
/// none (the type has no value).
#[cfg(feature = "tls")]
#[derive(Clone, Debug)]
pub(crate) struct ClientTls {
    connector: TlsConnector,
    server_name: String,
}

/// Without the `tls` feature, no client speaks TLS.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug)]
pub(crate) enum ClientTls {}

/// Starts a connect to `peer` with `protocol`, watched by `watcher`, speaking TLS if
/// `tls` says so: as [`Dialer::dial`], with the session put on the connection before
/// it is made. A session that cannot be made fails the connect (`InvalidInput`, at
/// the next report).
fn dial(
    core: &mut dyn Dialer,
    peer: &Addr,
    timeout: Option<Duration>,
    protocol: Box<dyn Protocol>,
    watcher: Rc<dyn Watcher>,
    tls: Option<&ClientTls>,
) -> ConnId {
    let Some(tls) = tls else {
        return core.dial(peer, timeout, protocol, watcher);
    };
    #[cfg(feature = "tls")]
    match tls.connector.session(&tls.server_name) {
        Ok(session) => {
            let id = core.dial(peer, timeout, protocol, watcher);
            core.start_tls(id, session);
            id
        }
        Err(e) => {
            let e = io::Error::new(io::ErrorKind::InvalidInput, e);
            core.fail_later(protocol, e, Some(watcher))
        }
    }
    #[cfg(not(feature = "tls"))]
    match *tls {}
}

/// `f` as a connection callback: it gets the protocol as a `P`.
fn bound<P: Protocol>(f: WhenConnected<P>) -> BoundCall {
    Box::new(move |p: &mut dyn Protocol, cx: &mut Context<'_>| {
        let any: &mut dyn Any = p;
        match any.downcast_mut::<P>() {
            Some(p) => f(Ok((p, cx))),
            None => log::error!(
                "{}: a client service's connection runs another type",
                cx.id()
            ),
        }
    })
}

/// Hands `f` its failure, catching a panic.
fn fail<P: Protocol>(f: WhenConnected<P>, why: NotConnected) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(Err(why)))) {
        log::error!(
            "when_connected callback panicked: {}",
            panic_message(&*panic)
        );
    }
}

/// A connect in progress: to an address, or to a host name.
#[derive(Clone)]
enum Attempt {
    Conn(ConnId),
    Host(Rc<HostDial>),
}

impl Attempt {
    /// Whether the core's news about connection `id` is about this attempt.
    fn is(&self, id: ConnId) -> bool {
        match self {
            Attempt::Conn(c) => *c == id,
            Attempt::Host(dial) => dial.is(id),
        }
    }
}

/// Where a service is, with what the [`State`] does not show.
#[derive(Clone)]
enum Phase {
    Connecting(Attempt),
    Connected(ConnId),
    Waiting { timer: TimerId, until: Instant },
    Stopping(Attempt),
    Stopped,
}

impl Phase {
    fn state(&self) -> State {
        match self {
            Phase::Connecting(Attempt::Conn(id)) => State::Connecting(*id),
            Phase::Connecting(Attempt::Host(dial)) => match dial.current() {
                Some(id) => State::Connecting(id),
                None => State::Resolving,
            },
            Phase::Connected(id) => State::Connected(*id),
            Phase::Waiting { until, .. } => State::Waiting { until: *until },
            Phase::Stopping(_) => State::Stopping,
            Phase::Stopped => State::Stopped,
        }
    }
}

/// The service: the factory apart, so that the factory may ask the service its
/// state while it runs.
struct Shared<P: Protocol> {
    /// This, for the core's watcher table and timers.
    me: Weak<Shared<P>>,
    factory: RefCell<Box<dyn FnMut() -> P>>,
    on_retry: Option<OnRetry>,
    /// TLS on every connection ([`ClientServiceBuilder::tls`]).
    tls: Option<ClientTls>,
    inner: RefCell<Inner<P>>,
}

struct Inner<P> {
    target: Target,
    delays: Delays,
    phase: Phase,
    reset_after: Option<Duration>,
    /// The timer that resets the delay once the connection has stayed up.
    reset_timer: Option<TimerId>,
    /// The zero-delay timer that runs the `when_connected` callbacks registered
    /// inside a protocol callback while connected.
    flush_timer: Option<TimerId>,
    connect_timeout: Option<Duration>,
    waiters: Vec<Waiter<P>>,
    failures: u32,
    /// The last failed connect's error, for [`NotConnected::GaveUp`].
    last_error: Option<io::Error>,
}

impl<P: Protocol> Shared<P> {
    fn watcher(&self) -> Rc<dyn Watcher> {
        self.me
            .upgrade()
            .expect("a service is alive while the core calls it")
    }

    /// Starts a connect with a fresh protocol. The factory runs without the state
    /// borrowed; a panic in it stops the service.
    fn connect(&self, core: &mut dyn Dialer) {
        let made = catch_unwind(AssertUnwindSafe(|| (self.factory.borrow_mut())()));
        let protocol = match made {
            Ok(p) => p,
            Err(panic) => {
                let target = self.inner.borrow().target.clone();
                log::error!(
                    "client {target}: the protocol factory panicked: {}; stopping",
                    panic_message(&*panic)
                );
                self.inner.borrow_mut().phase = Phase::Stopped;
                return self.fail_waiters(|_| NotConnected::Stopped);
            }
        };
        let (target, timeout) = {
            let inner = self.inner.borrow();
            (inner.target.clone(), inner.connect_timeout)
        };
        let peer = match target {
            Target::Tcp(a) => Addr::Inet(a),
            Target::Unix(p) => Addr::Unix(Some(p)),
            Target::Host { host, port } => {
                // The phase is set before the dial starts: it reports nothing inside
                // this call, but its state is the service's from now on.
                let watcher = Some(self.watcher());
                let tls = self.tls.clone();
                let protocol = Box::new(protocol);
                let dial = HostDial::start(core, &host, port, timeout, protocol, watcher, tls);
                self.inner.borrow_mut().phase = Phase::Connecting(Attempt::Host(dial));
                return;
            }
        };
        let protocol = Box::new(protocol);
        let id = dial(
            core,
            &peer,
            timeout,
            protocol,
            self.watcher(),
            self.tls.as_ref(),
        );
        log::debug!("{id} {peer}: client connecting");
        self.inner.borrow_mut().phase = Phase::Connecting(Attempt::Conn(id));
    }

    /// Waits the policy's next delay before connecting again; stops instead if the
    /// reactor is stopping or the policy's retries are spent. Returns whether it
    /// stopped.
    fn schedule_retry(&self, core: &mut dyn Dialer, cause: RetryCause<'_>) -> bool {
        let mut inner = self.inner.borrow_mut();
        if core.is_stopping() {
            log::debug!("client {}: the reactor is stopping; no retry", inner.target);
            inner.phase = Phase::Stopped;
            return true;
        }
        match inner.delays.next() {
            Some(delay) => {
                let timer = core.watch_timer(delay, self.watcher());
                let until = core.clock_now() + delay;
                log::debug!(
                    "client {}: retry {} in {delay:?}",
                    inner.target,
                    inner.delays.retries()
                );
                inner.phase = Phase::Waiting { timer, until };
                let retries = inner.delays.retries();
                drop(inner);
                if let Some(OnRetry(f)) = &self.on_retry {
                    let mut retry = Retry {
                        delay,
                        retries,
                        cause,
                        core,
                    };
                    match f.try_borrow_mut() {
                        Ok(mut f) => {
                            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(&mut retry))) {
                                log::error!("on_retry panicked: {}", panic_message(&*panic));
                            }
                        }
                        Err(_) => log::error!("on_retry called inside itself"),
                    }
                }
                false
            }
            None => {
                log::warn!(
                    "client {}: giving up after {} retries",
                    inner.target,
                    inner.delays.retries()
                );
                inner.phase = Phase::Stopped;
                true
            }
        }
    }

    /// Hands every waiting `when_connected` callback its failure.
    fn fail_waiters(&self, why: impl Fn(&Inner<P>) -> NotConnected) {
        let (waiters, whys): (Vec<_>, Vec<_>) = {
            let mut inner = self.inner.borrow_mut();
            let waiters = std::mem::take(&mut inner.waiters);
            let whys = waiters.iter().map(|_| why(&inner)).collect();
            (waiters, whys)
        };
        for (w, why) in waiters.into_iter().zip(whys) {
            fail(w.f, why);
        }
    }

    /// The service stopped or gave up: why, for its waiters.
    fn stopped_why(inner: &Inner<P>) -> NotConnected {
        if inner
            .delays
            .policy()
            .retry_limit()
            .is_some_and(|n| inner.delays.retries() >= n)
        {
            NotConnected::GaveUp(inner.last_error.as_ref().map(copy_error))
        } else {
            NotConnected::Stopped
        }
    }
}

impl<P: Protocol> Shared<P> {
    /// Connection `id` of the attempt in progress is up (secured, with TLS): the
    /// failures and, unless `reset_after` says otherwise, the delay reset; the
    /// waiting `when_connected` callbacks run.
    fn up(&self, core: &mut dyn Dialer, id: ConnId) {
        let waiters = {
            let mut inner = self.inner.borrow_mut();
            if !matches!(&inner.phase, Phase::Connecting(a) if a.is(id)) {
                return;
            }
            log::debug!("{id} {}: client connected", inner.target);
            inner.phase = Phase::Connected(id);
            inner.failures = 0;
            inner.last_error = None;
            match inner.reset_after {
                None => inner.delays.reset(),
                Some(up) => inner.reset_timer = Some(core.watch_timer(up, self.watcher())),
            }
            std::mem::take(&mut inner.waiters)
        };
        for w in waiters {
            core.run_bound(id, bound(w.f));
        }
    }

    /// Arms the zero-delay timer that runs the waiting `when_connected` callbacks
    /// on the live connection (see [`ClientService::when_connected`]).
    fn flush_soon(&self, core: &mut dyn Dialer) {
        let mut inner = self.inner.borrow_mut();
        if inner.flush_timer.is_none() {
            inner.flush_timer = Some(core.watch_timer(Duration::ZERO, self.watcher()));
        }
    }
}

impl<P: Protocol> Watcher for Shared<P> {
    fn made(&self, core: &mut dyn Dialer, id: ConnId) {
        if self.tls.is_some() {
            // Up once the handshake is done (`secured`); until then a failure is a
            // failed connect.
            log::debug!("{id}: client connected, TLS handshake under way");
            return;
        }
        self.up(core, id);
    }

    fn secured(&self, core: &mut dyn Dialer, id: ConnId) {
        if self.tls.is_some() {
            self.up(core, id);
        }
    }

    fn ended(&self, core: &mut dyn Dialer, id: ConnId, ending: Ending<'_>) {
        let phase = self.inner.borrow().phase.clone();
        match phase {
            Phase::Connecting(a) if a.is(id) => {
                let error = match (ending, &a) {
                    // The host dial's copy keeps a resolution failure's inner error.
                    (Ending::Failed(e), Attempt::Host(dial)) => dial.error().unwrap_or(e),
                    (Ending::Failed(e), _) => e,
                    // Made, then lost before the service counted it up: a TLS
                    // handshake that failed (or a protocol that closed first).
                    (Ending::Lost(reason), _) => {
                        let target = self.inner.borrow().target.clone();
                        log::warn!("{id} client {target}: connect failed: {reason}");
                        match reason {
                            Reason::Tls(e) => io::Error::new(e.kind(), reason.to_string()),
                            _ => io::Error::other(reason.to_string()),
                        }
                    }
                };
                // The failures budgets of the callbacks waiting.
                let due: Vec<Waiter<P>> = {
                    let mut inner = self.inner.borrow_mut();
                    inner.failures = inner.failures.saturating_add(1);
                    let (due, left) = std::mem::take(&mut inner.waiters)
                        .into_iter()
                        .partition(|w| w.fail_after.is_some_and(|n| n <= 1));
                    inner.waiters = left;
                    for w in &mut inner.waiters {
                        if let Some(n) = &mut w.fail_after {
                            *n -= 1;
                        }
                    }
                    inner.last_error = Some(copy_error(&error));
                    due
                };
                for w in due {
                    fail(w.f, NotConnected::Failed(copy_error(&error)));
                }
                if self.schedule_retry(core, RetryCause::Failed(&error)) {
                    self.fail_waiters(Self::stopped_why);
                }
            }
            Phase::Connected(c) if c == id => {
                if let Some(t) = self.inner.borrow_mut().reset_timer.take() {
                    core.cancel(t);
                }
                let reason = match ending {
                    Ending::Lost(reason) => reason.duplicate(),
                    Ending::Failed(e) => Reason::Io(e),
                };
                log::debug!("{id}: client connection lost: {reason}");
                if self.schedule_retry(core, RetryCause::Lost(&reason)) {
                    self.fail_waiters(Self::stopped_why);
                }
            }
            Phase::Stopping(a) if a.is(id) => {
                log::debug!("{id}: client stopped");
                self.inner.borrow_mut().phase = Phase::Stopped;
                self.fail_waiters(|_| NotConnected::Stopped);
            }
            _ => {}
        }
    }

    fn timer(&self, core: &mut dyn Dialer, timer: TimerId) {
        let phase = {
            let mut inner = self.inner.borrow_mut();
            if inner.flush_timer == Some(timer) {
                inner.flush_timer = None;
                // Not connected any more: the callbacks wait for the next connection.
                let Phase::Connected(id) = inner.phase else {
                    return;
                };
                let waiters = std::mem::take(&mut inner.waiters);
                drop(inner);
                for w in waiters {
                    core.run_bound(id, bound(w.f));
                }
                return;
            }
            if inner.reset_timer == Some(timer) {
                inner.reset_timer = None;
                if matches!(inner.phase, Phase::Connected(_)) {
                    inner.delays.reset();
                }
                return;
            }
            inner.phase.clone()
        };
        match phase {
            Phase::Waiting { timer: t, .. } if t == timer => {
                if core.is_stopping() {
                    self.inner.borrow_mut().phase = Phase::Stopped;
                    self.fail_waiters(|_| NotConnected::Stopped);
                } else {
                    self.connect(core);
                }
            }
            _ => {}
        }
    }
}

// ----- host names -----
//
// A connect to a host name (`Reactor::connect_host`, `Harness::connect_host`, a service
// with a `Target::Host`) is a watcher, `HostDial`: it asks the core to resolve the
// name (a pool job, never on the loop thread), then tries the addresses in order, each
// as an ordinary connect that runs a stand-in protocol (`Probe`), so that a refused
// address costs the user's protocol nothing. The first attempt made adopts the user's
// protocol (`Dialer::adopt`: it sees `connection_made` as on any connect); if none is,
// the user's protocol gets one `connection_failed`, with the last attempt's error or a
// `ResolveError` (`Dialer::fail_later`). A service that runs it is told after the
// protocol, as for its other connects.

/// A host name that did not resolve: the inner error of the `io::Error` (of kind
/// `NotFound`) that a connect to a host name fails with when the name has no address
/// ([`Protocol::connection_failed`], the service's [`NotConnected::Failed`] and
/// [`RetryCause::Failed`]), so that it can be told apart from a connect that was
/// refused or timed out: [`ResolveError::of`] finds it. No [`Reason`] is needed: a
/// name that does not resolve never makes a connection to lose.
///
/// # Examples
///
/// ```
/// use std::io;
/// use twistor::client::ResolveError;
///
/// fn why(error: &io::Error) -> String {
///     match ResolveError::of(error) {
///         Some(e) => format!("no such host: {}", e.host()),
///         None => format!("connect failed: {error}"),
///     }
/// }
/// assert_eq!(why(&io::ErrorKind::ConnectionRefused.into()), "connect failed: connection refused");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveError {
    host: String,
    port: u16,
    message: String,
}

impl ResolveError {
    fn new(host: &str, port: u16, message: impl Into<String>) -> ResolveError {
        ResolveError {
            host: host.to_owned(),
            port,
            message: message.into(),
        }
    }

    /// The name that did not resolve.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port the connect was for.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The resolver's own words (`getaddrinfo`'s message, say).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The resolution failure inside `error`, if that is what it is.
    pub fn of(error: &io::Error) -> Option<&ResolveError> {
        error.get_ref()?.downcast_ref::<ResolveError>()
    }

    /// `self` as an `io::Error` (of kind `NotFound`) with `self` inside.
    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, self)
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot resolve {}: {}", self.host, self.message)
    }
}

impl std::error::Error for ResolveError {}

/// A copy of an `io::Error` (it is not `Clone`): its kind and message, and the
/// [`ResolveError`] inside, if any.
fn copy_error(e: &io::Error) -> io::Error {
    match ResolveError::of(e) {
        Some(r) => r.clone().into_io(),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// Resolves `host:port` with the system's resolver (`getaddrinfo`): blocking, so it
/// runs on a pool thread. No address is a [`ResolveError`] too.
pub(crate) fn resolve_blocking(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    match (host, port).to_socket_addrs() {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) => Err(ResolveError::new(host, port, e.to_string()).into_io()),
    }
}

/// A resolution job's result, back on the loop thread.
pub(crate) fn resolved(result: JobResult) -> io::Result<Vec<SocketAddr>> {
    match result {
        Ok(value) => *value
            .downcast::<io::Result<Vec<SocketAddr>>>()
            .expect("a resolution job returns addresses"),
        Err(JobError::Cancelled) => Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "resolution cancelled",
        )),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// The stand-in protocol of a host connect's attempts: it does nothing, and is
/// replaced by the user's protocol once an attempt is made.
struct Probe;

impl Protocol for Probe {
    fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
}

/// A connect to a host name: resolve, then try each address in order (see the
/// [module docs](self)).
pub(crate) struct HostDial {
    me: Weak<HostDial>,
    host: String,
    port: u16,
    timeout: Option<Duration>,
    /// TLS on each attempt (a client service's).
    tls: Option<ClientTls>,
    inner: RefCell<HostState>,
}

struct HostState {
    /// The user's protocol, until it is adopted or reported failed.
    protocol: Option<Box<dyn Protocol>>,
    /// Told once the connect is made or has failed (a client service).
    outer: Option<Rc<dyn Watcher>>,
    /// The addresses not tried yet.
    addrs: VecDeque<SocketAddr>,
    /// The attempt in progress.
    attempt: Option<ConnId>,
    /// The connection made, or the id its failure is reported under.
    done: Option<ConnId>,
    /// The last attempt's error (a [`ResolveError`] if the name did not resolve).
    error: Option<io::Error>,
}

impl HostDial {
    /// Starts connecting to `host:port` with `protocol`, each attempt with `tls` if
    /// any; `outer` is told the outcome after the protocol's own callback.
    pub(crate) fn start(
        core: &mut dyn Dialer,
        host: &str,
        port: u16,
        timeout: Option<Duration>,
        protocol: Box<dyn Protocol>,
        outer: Option<Rc<dyn Watcher>>,
        tls: Option<ClientTls>,
    ) -> Rc<HostDial> {
        let dial = Rc::new_cyclic(|me| HostDial {
            me: me.clone(),
            host: host.to_owned(),
            port,
            timeout,
            tls,
            inner: RefCell::new(HostState {
                protocol: Some(protocol),
                outer,
                addrs: VecDeque::new(),
                attempt: None,
                done: None,
                error: None,
            }),
        });
        log::debug!("{host}:{port}: resolving");
        if let Err(e) = core.resolve(host, port, dial.watcher()) {
            dial.fail(core, e);
        }
        dial
    }

    fn watcher(&self) -> Rc<dyn Watcher> {
        self.me
            .upgrade()
            .expect("a host dial is alive while called")
    }

    /// The attempt in progress, or the connection made or failed; `None` while the
    /// name is being resolved.
    pub(crate) fn current(&self) -> Option<ConnId> {
        let inner = self.inner.borrow();
        inner.attempt.or(inner.done)
    }

    /// Whether `id` is this dial's outcome: the connection made, or its failure.
    pub(crate) fn is(&self, id: ConnId) -> bool {
        self.inner.borrow().done == Some(id)
    }

    /// A copy of the error the dial failed with (a [`ResolveError`] kept inside).
    pub(crate) fn error(&self) -> Option<io::Error> {
        self.inner.borrow().error.as_ref().map(copy_error)
    }

    /// Cancels the dial: a resolution or attempt in progress ends in
    /// `connection_failed` (`Interrupted`); a connection made (that its watcher does
    /// not count as up yet: a TLS handshake under way) is aborted.
    pub(crate) fn cancel(&self, core: &mut dyn Dialer) {
        let (attempt, done) = {
            let inner = self.inner.borrow();
            (inner.attempt, inner.done)
        };
        match (attempt, done) {
            (Some(id), _) | (None, Some(id)) => core.abort(id),
            (None, None) => {
                let e = io::Error::new(io::ErrorKind::Interrupted, "connect cancelled");
                self.fail(core, e);
            }
        }
    }

    /// Tries the next address, or fails with the last error if none is left.
    fn try_next(&self, core: &mut dyn Dialer) {
        let next = self.inner.borrow_mut().addrs.pop_front();
        let Some(addr) = next else {
            let e = self.inner.borrow_mut().error.take().unwrap_or_else(|| {
                ResolveError::new(&self.host, self.port, "no address").into_io()
            });
            return self.fail(core, e);
        };
        log::debug!("{}:{}: trying {addr}", self.host, self.port);
        let id = dial(
            core,
            &Addr::Inet(addr),
            self.timeout,
            Box::new(Probe),
            self.watcher(),
            self.tls.as_ref(),
        );
        self.inner.borrow_mut().attempt = Some(id);
    }

    /// Hands the user's protocol its `connection_failed` (at the next report).
    fn fail(&self, core: &mut dyn Dialer, error: io::Error) {
        let (protocol, outer) = {
            let mut inner = self.inner.borrow_mut();
            inner.attempt = None;
            inner.error = Some(copy_error(&error));
            (inner.protocol.take(), inner.outer.clone())
        };
        if let Some(protocol) = protocol {
            log::debug!("{}:{}: connect failed: {error}", self.host, self.port);
            let id = core.fail_later(protocol, error, outer);
            self.inner.borrow_mut().done = Some(id);
        }
    }
}

impl Watcher for HostDial {
    fn resolved(&self, core: &mut dyn Dialer, result: io::Result<Vec<SocketAddr>>) {
        if self.inner.borrow().protocol.is_none() {
            return; // cancelled meanwhile
        }
        if core.is_stopping() {
            let e = io::Error::new(io::ErrorKind::Interrupted, "the reactor is stopping");
            return self.fail(core, e);
        }
        match result {
            Ok(addrs) => {
                log::debug!("{}:{}: resolved to {addrs:?}", self.host, self.port);
                self.inner.borrow_mut().addrs = addrs.into();
                self.try_next(core);
            }
            Err(e) if ResolveError::of(&e).is_some() || e.kind() == io::ErrorKind::Interrupted => {
                self.fail(core, e)
            }
            // A resolver's error that is not one yet (the kit's own resolver).
            Err(e) => self.fail(
                core,
                ResolveError::new(&self.host, self.port, e.to_string()).into_io(),
            ),
        }
    }

    fn made(&self, core: &mut dyn Dialer, id: ConnId) {
        let (protocol, outer) = {
            let mut inner = self.inner.borrow_mut();
            if inner.attempt != Some(id) {
                return;
            }
            inner.attempt = None;
            inner.done = Some(id);
            inner.error = None;
            (inner.protocol.take(), inner.outer.clone())
        };
        let Some(protocol) = protocol else { return };
        log::debug!("{id}: connected to {}:{}", self.host, self.port);
        core.adopt(id, protocol, outer.clone());
        if let Some(outer) = outer {
            outer.made(core, id);
        }
    }

    fn ended(&self, core: &mut dyn Dialer, id: ConnId, ending: Ending<'_>) {
        if self.inner.borrow().attempt != Some(id) {
            return;
        }
        let error = match ending {
            Ending::Failed(e) => e,
            Ending::Lost(reason) => io::Error::other(reason.to_string()),
        };
        let give_up = error.kind() == io::ErrorKind::Interrupted || core.is_stopping();
        {
            let mut inner = self.inner.borrow_mut();
            inner.attempt = None;
            inner.error = Some(copy_error(&error));
        }
        if give_up {
            self.fail(core, error);
        } else {
            self.try_next(core);
        }
    }

    fn timer(&self, _: &mut dyn Dialer, _: TimerId) {}
}
