//! Blocking request handlers in the manner of Python's `socketserver`.
//!
//! A server here is a [`Reactor`] that does the accepting (or, for datagrams, the
//! receiving) and hands each request to a handler written with plain blocking I/O:
//! `setup`, then `handle`, then `finish`, with a buffered reader and writer over the
//! connection. Four servers, one per socket kind: [`TcpServer`], [`UdpServer`],
//! [`UnixStreamServer`] and [`UnixDatagramServer`]; two handler traits:
//! [`StreamRequestHandler`] and [`DatagramRequestHandler`].
//!
//! # Two modes
//!
//! - **Synchronous** (the default, as socketserver's base servers): the handler runs on
//!   the thread that calls [`serve_forever`](Server::serve_forever) or
//!   [`handle_request`](Server::handle_request). While it runs, no other request is
//!   served: a slow client holds up everyone else.
//! - **Threading** ([`Builder::threading`], socketserver's `ThreadingMixIn`): handlers
//!   run on the reactor's thread pool, and the serving thread only accepts and
//!   dispatches. A handler holds its pool thread for its whole life, so
//!   [`Builder::threads`] is the number of requests served at once. A request that
//!   finds every thread busy waits in a bounded queue ([`Builder::max_queued_requests`]);
//!   when that is full too, the request is refused (the connection closed, the datagram
//!   dropped) and reported to `handle_error` as [`RequestError::Busy`]. Nothing is
//!   queued without bound.
//!
//! A handler never runs on the reactor thread in threading mode, and the reactor never
//! waits for one: it stays free to accept while every worker is busy.
//!
//! # From Python
//!
//! | Python `socketserver` | twistor |
//! |---|---|
//! | `TCPServer((host, port), Handler)` | `TcpServer::builder(addr).bind(\|\| Handler)?` |
//! | `UDPServer`, `UnixStreamServer`, `UnixDatagramServer` | [`UdpServer`], [`UnixStreamServer`], [`UnixDatagramServer`], built the same way |
//! | `ThreadingMixIn`, `ThreadingTCPServer`, `ThreadingUDPServer`, ... | [`Builder::threading`]`(true)`; [`Builder::threads`] bounds the handlers running at once |
//! | `ForkingMixIn`, `ForkingTCPServer`, ... | not provided (threads only) |
//! | `bind_and_activate=False` | the [`Builder`]: nothing is bound before [`bind`](Builder::bind) |
//! | `BaseRequestHandler`, `StreamRequestHandler` | [`StreamRequestHandler`] (a trait; one handler value per request, made by the factory given to `bind`) |
//! | `DatagramRequestHandler` | [`DatagramRequestHandler`] |
//! | `setup()`, `handle()`, `finish()` | the same names, each given `&mut` the request and returning `io::Result<()>`; `finish` runs even if `handle` fails or panics |
//! | `self.request` | [`StreamRequest::connection`] (the socket, a [`Connection`]); [`DatagramRequest::packet`] |
//! | `self.client_address` | `request.client_address` (an [`Addr`]) |
//! | `self.rfile`, `self.wfile` (stream) | `request.rfile` (`BufReader<Connection>`), `request.wfile` (`BufWriter<Connection>`, flushed after `finish`) |
//! | `self.rfile`, `self.wfile` (datagram) | `request.rfile` (`Cursor<Vec<u8>>` over the packet), `request.wfile` (`Vec<u8>`, sent back to the client after `finish` if not empty) |
//! | `self.server` | not passed: share state through what the handler factory captures (an `Arc`) |
//! | `StreamRequestHandler.timeout` | [`Builder::request_timeout`] |
//! | `rbufsize`, `wbufsize` | not provided: both files are buffered (8 KiB) |
//! | `server_address` | [`Server::server_address`] (the real address: port 0 works) |
//! | `request_queue_size` | [`Builder::request_queue_size`] (the listen backlog; default 1024, not Python's 5) |
//! | `allow_reuse_address`, `allow_reuse_port` | [`Builder::allow_reuse_address`] (default **true**, unlike Python), [`Builder::allow_reuse_port`] |
//! | `disable_nagle_algorithm` | [`Builder::disable_nagle_algorithm`] (default false, as Python) |
//! | `max_packet_size` | [`Builder::max_packet_size`] (default 8192); a larger datagram is reported, never handled cut |
//! | `timeout`, `handle_timeout()` | [`Builder::timeout`], [`Builder::handle_timeout`] |
//! | `handle_request()` | [`Server::handle_request`] |
//! | `serve_forever(poll_interval)` | [`Server::serve_forever`] (no poll interval: a shutdown wakes the reactor) |
//! | `shutdown()` | [`ShutdownHandle::shutdown`], from [`Server::shutdown_handle`] (the server itself is not `Send`) |
//! | `server_close()`, `with server:` | [`Server::server_close`], or dropping the server |
//! | `verify_request(request, client_address)` | [`Builder::verify_request`] |
//! | `handle_error(request, client_address)` | [`Builder::handle_error`], given a [`RequestError`] |
//! | `block_on_close`, `daemon_threads` | [`Builder::block_on_close`], bounded by [`Builder::close_timeout`] |
//! | `get_request`, `process_request`, `finish_request`, `close_request`, `shutdown_request`, `server_bind`, `server_activate`, `service_actions`, `fileno`, `socket` | internal: the reactor accepts, verifies and dispatches |
//!
//! # Threads
//!
//! A [`Server`] owns a reactor, which is not `Send`: build the server on the thread that
//! will serve with it (the [`Builder`] is `Send`), and hand other threads its
//! [`ShutdownHandle`]. Hooks (`verify_request`, `handle_error`, `handle_timeout`) and the
//! handler factory must be `Send + Sync`, since in threading mode they run on the
//! workers; `verify_request` and `handle_timeout` always run on the serving thread.
//!
//! # Examples
//!
//! Serving in the background and shutting down from the main thread:
//!
//! ```
//! use std::io::{BufRead, Read, Write};
//! use std::sync::mpsc;
//! use twistor::socketserver::{StreamRequest, StreamRequestHandler, TcpServer};
//!
//! struct Upper;
//! impl StreamRequestHandler for Upper {
//!     fn handle(&mut self, request: &mut StreamRequest) -> std::io::Result<()> {
//!         let mut line = Vec::new();
//!         request.rfile.read_until(b'\n', &mut line)?;
//!         request.wfile.write_all(&line.to_ascii_uppercase())
//!     }
//! }
//!
//! let builder = TcpServer::builder("127.0.0.1:0".parse().unwrap()).threading(true);
//! let (tx, rx) = mpsc::channel();
//! let serving = std::thread::spawn(move || -> std::io::Result<()> {
//!     let mut server = builder.bind(|| Upper)?;
//!     tx.send((server.server_address(), server.shutdown_handle())).unwrap();
//!     server.serve_forever()?;
//!     server.server_close()
//! });
//! let (addr, shutdown) = rx.recv().unwrap();
//!
//! let mut client = std::net::TcpStream::connect(addr)?;
//! client.write_all(b"hello SocketServer\n")?;
//! let mut reply = String::new();
//! client.read_to_string(&mut reply)?;
//! assert_eq!(reply, "HELLO SOCKETSERVER\n");
//!
//! shutdown.shutdown(); // returns once serve_forever has
//! serving.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```

// Maintainers' notes.
//
// The reactor's callbacks (a handoff listener, a datagram protocol) only push requests
// onto `pending`; the serving loop takes them off between turns, runs `verify_request`,
// and serves each one on this thread or hands it to the pool. So a handler never runs
// inside a reactor callback, and the reactor's accept budget of one per turn keeps
// `pending` short. Replies to datagrams go out through a clone of the reactor's socket
// (`Reactor::datagram_fd`), straight from the thread that computed them.

mod datagram;
mod stream;

pub use datagram::{DatagramRequest, DatagramRequestHandler};
pub use stream::{Connection, StreamRequest, StreamRequestHandler};

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::reactor::panic_message;
use crate::{Addr, DatagramId, Handle, JobError, ListenOptions, ListenerId, Reactor};

/// Default worker threads in threading mode: handlers block on their clients, so this
/// is how many clients are served at once. Python's `ThreadingMixIn` has no limit;
/// 32 serves a small service's concurrent clients while an idle thread costs little.
pub const DEFAULT_THREADS: usize = 32;

/// Default requests that may wait for a busy worker before new ones are refused:
/// enough to absorb a burst of short requests, few enough that a waiting client is not
/// kept for long behind long-lived connections.
pub const DEFAULT_MAX_QUEUED_REQUESTS: usize = 32;

/// Default wait in [`Server::server_close`] for handlers still running (socketserver's
/// `block_on_close` waits without end; a server should stop in bounded time).
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The socket kinds, as type parameters of [`Server`] and [`Builder`].
///
/// Use the aliases ([`TcpServer`] and friends) rather than these names.
pub mod kind {
    use std::fmt::Debug;
    use std::net::SocketAddr;
    use std::path::PathBuf;

    mod sealed {
        pub trait Sealed {}
    }

    /// A socket kind a [`Server`](super::Server) can serve.
    pub trait Kind: sealed::Sealed + 'static {
        /// What the server is bound to: a `SocketAddr` or a path.
        type Address: Clone + Debug + Send;
    }

    /// A connection-oriented kind: handlers implement
    /// [`StreamRequestHandler`](super::StreamRequestHandler).
    pub trait StreamKind: Kind {}

    /// A datagram kind: handlers implement
    /// [`DatagramRequestHandler`](super::DatagramRequestHandler).
    pub trait DatagramKind: Kind {}

    /// TCP: [`TcpServer`](super::TcpServer).
    #[derive(Debug)]
    pub enum Tcp {}
    /// UDP: [`UdpServer`](super::UdpServer).
    #[derive(Debug)]
    pub enum Udp {}
    /// Unix-domain stream: [`UnixStreamServer`](super::UnixStreamServer).
    #[derive(Debug)]
    pub enum UnixStream {}
    /// Unix-domain datagram: [`UnixDatagramServer`](super::UnixDatagramServer).
    #[derive(Debug)]
    pub enum UnixDatagram {}

    impl sealed::Sealed for Tcp {}
    impl sealed::Sealed for Udp {}
    impl sealed::Sealed for UnixStream {}
    impl sealed::Sealed for UnixDatagram {}

    impl Kind for Tcp {
        type Address = SocketAddr;
    }
    impl Kind for Udp {
        type Address = SocketAddr;
    }
    impl Kind for UnixStream {
        type Address = PathBuf;
    }
    impl Kind for UnixDatagram {
        type Address = PathBuf;
    }

    impl StreamKind for Tcp {}
    impl StreamKind for UnixStream {}
    impl DatagramKind for Udp {}
    impl DatagramKind for UnixDatagram {}
}

use kind::{DatagramKind, Kind, StreamKind, Tcp, Udp, UnixDatagram, UnixStream};

/// A TCP server: socketserver's `TCPServer` (and, with
/// [`threading`](Builder::threading), `ThreadingTCPServer`).
///
/// # Examples
///
/// One request, served on this thread by [`handle_request`](Server::handle_request):
///
/// ```
/// use std::io::{BufRead, Read, Write};
/// use twistor::socketserver::{StreamRequest, StreamRequestHandler, TcpServer};
///
/// struct Upper;
/// impl StreamRequestHandler for Upper {
///     fn handle(&mut self, request: &mut StreamRequest) -> std::io::Result<()> {
///         let mut line = Vec::new();
///         request.rfile.read_until(b'\n', &mut line)?;
///         request.wfile.write_all(&line.to_ascii_uppercase())
///     }
/// }
///
/// let mut server = TcpServer::builder("127.0.0.1:0".parse().unwrap()).bind(|| Upper)?;
/// let addr = server.server_address();
/// assert_ne!(addr.port(), 0);
///
/// let client = std::thread::spawn(move || -> std::io::Result<String> {
///     let mut s = std::net::TcpStream::connect(addr)?;
///     s.write_all(b"hello SocketServer\n")?;
///     let mut reply = String::new();
///     s.read_to_string(&mut reply)?; // the server closes after `finish`
///     Ok(reply)
/// });
///
/// assert!(server.handle_request()?); // accepts, then runs the handler right here
/// assert_eq!(client.join().unwrap()?, "HELLO SOCKETSERVER\n");
/// server.server_close()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub type TcpServer = Server<Tcp>;

/// A UDP server: socketserver's `UDPServer` (and `ThreadingUDPServer`). Each datagram
/// is one request, handled by a [`DatagramRequestHandler`].
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use twistor::socketserver::{DatagramRequest, DatagramRequestHandler, UdpServer};
///
/// struct Upper;
/// impl DatagramRequestHandler for Upper {
///     fn handle(&mut self, request: &mut DatagramRequest) -> std::io::Result<()> {
///         let upper = request.packet().to_ascii_uppercase();
///         request.wfile.write_all(&upper) // sent back after `finish`
///     }
/// }
///
/// let mut server = UdpServer::builder("127.0.0.1:0".parse().unwrap()).bind(|| Upper)?;
/// let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"ping", server.server_address())?;
/// assert!(server.handle_request()?);
/// let mut reply = [0; 16];
/// let (n, _) = client.recv_from(&mut reply)?;
/// assert_eq!(&reply[..n], b"PING");
/// # Ok::<(), std::io::Error>(())
/// ```
pub type UdpServer = Server<Udp>;

/// A Unix-domain stream server: socketserver's `UnixStreamServer`.
///
/// A stale socket file left by a dead server is replaced; a path where a live server
/// answers is refused (`AddrInUse`); the file is removed when the server closes.
pub type UnixStreamServer = Server<UnixStream>;

/// A Unix-domain datagram server: socketserver's `UnixDatagramServer`.
///
/// The socket file follows the rules of [`UnixStreamServer`]. A reply can only reach a
/// client whose socket is bound to a path; for an unnamed client a non-empty `wfile`
/// is reported to `handle_error`.
pub type UnixDatagramServer = Server<UnixDatagram>;

/// Why a request was not served to the end, handed to the `handle_error` hook.
#[derive(Debug)]
#[non_exhaustive]
pub enum RequestError {
    /// `setup`, `handle` or `finish` returned this error, or flushing `wfile` or
    /// sending the datagram reply failed.
    Io(io::Error),
    /// The handler (or its factory, or `verify_request`) panicked; the message is
    /// the panic's.
    Panic(String),
    /// A datagram larger than `max_packet_size` arrived. It was dropped, never handed
    /// to a handler cut short.
    TooLarge {
        /// The server's `max_packet_size`.
        max_packet_size: usize,
    },
    /// Threading mode: every worker was busy and the queue of waiting requests was
    /// full, so the request was refused (the connection closed, the datagram dropped).
    Busy,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Io(e) => write!(f, "{e}"),
            RequestError::Panic(m) => write!(f, "handler panicked: {m}"),
            RequestError::TooLarge { max_packet_size } => {
                write!(
                    f,
                    "datagram over max_packet_size ({max_packet_size} bytes) dropped"
                )
            }
            RequestError::Busy => f.write_str("every worker thread is busy: request refused"),
        }
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RequestError::Io(e) => Some(e),
            _ => None,
        }
    }
}

type VerifyFn = dyn Fn(&Addr) -> bool + Send + Sync;
type ErrorFn = dyn Fn(&Addr, RequestError) + Send + Sync;
type TimeoutFn = dyn Fn() + Send + Sync;

/// The user's hooks, shared by the serving thread and the workers.
#[derive(Default)]
pub(crate) struct Hooks {
    verify_request: Option<Box<VerifyFn>>,
    handle_error: Option<Box<ErrorFn>>,
    handle_timeout: Option<Box<TimeoutFn>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("verify_request", &self.verify_request.is_some())
            .field("handle_error", &self.handle_error.is_some())
            .field("handle_timeout", &self.handle_timeout.is_some())
            .finish()
    }
}

impl Hooks {
    /// `verify_request`; a panic in it is reported and refuses the request.
    fn verify_request(&self, client: &Addr) -> bool {
        let Some(verify) = &self.verify_request else {
            return true;
        };
        match catch_unwind(AssertUnwindSafe(|| verify(client))) {
            Ok(ok) => ok,
            Err(panic) => {
                self.handle_error(client, RequestError::Panic(panic_message(&*panic)));
                false
            }
        }
    }

    /// `handle_error`, by default a `log::error!`. A panic in the hook is logged.
    pub(crate) fn handle_error(&self, client: &Addr, error: RequestError) {
        let Some(hook) = &self.handle_error else {
            log::error!("error while handling a request from {client}: {error}");
            return;
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| hook(client, error))) {
            log::error!("handle_error panicked: {}", panic_message(&*panic));
        }
    }

    fn handle_timeout(&self) {
        if let Some(hook) = &self.handle_timeout {
            hook();
        }
    }
}

/// Runs `step`, turning an error or a panic into a [`RequestError`].
pub(crate) fn run_step<T>(step: impl FnOnce() -> io::Result<T>) -> Result<T, RequestError> {
    match catch_unwind(AssertUnwindSafe(step)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RequestError::Io(e)),
        Err(panic) => Err(RequestError::Panic(panic_message(&*panic))),
    }
}

/// The first failure of a request's steps; later ones are only logged, since they
/// usually follow from the first (a flush after the client reset, say).
pub(crate) fn first_failure<const N: usize>(
    client: &Addr,
    steps: [Result<(), RequestError>; N],
) -> Result<(), RequestError> {
    let mut outcome = Ok(());
    for step in steps {
        match (step, &outcome) {
            (Err(e), Ok(())) => outcome = Err(e),
            (Err(later), Err(_)) => log::debug!("{client}: after an earlier failure: {later}"),
            (Ok(()), _) => {}
        }
    }
    outcome
}

/// One request taken from the reactor, waiting to be verified and served.
pub(crate) enum Request {
    Stream(Connection, Addr),
    Datagram(Vec<u8>, Addr),
    TooLarge(Addr, usize),
}

impl Request {
    fn client_address(&self) -> &Addr {
        match self {
            Request::Stream(_, a) | Request::Datagram(_, a) | Request::TooLarge(a, _) => a,
        }
    }
}

/// Serves one request from start to end: handler, reply, errors to `handle_error`.
pub(crate) type Serve = dyn Fn(Request) + Send + Sync;

/// Requests the reactor's callbacks have taken in, in arrival order.
pub(crate) type Pending = Rc<RefCell<VecDeque<Request>>>;

#[derive(Clone, Debug)]
struct Config {
    threading: bool,
    threads: usize,
    max_queued_requests: usize,
    timeout: Option<Duration>,
    listen: ListenOptions,
    nodelay: bool,
    request_timeout: Option<Duration>,
    max_packet_size: usize,
    block_on_close: bool,
    close_timeout: Duration,
}

/// Configures a server before it binds: socketserver's class attributes and hooks.
///
/// Get one from `TcpServer::builder(addr)` (and the other kinds' `builder`); finish it
/// with [`bind`](Builder::bind), which takes the handler factory: a closure called once
/// per request for a fresh handler, as socketserver instantiates its handler class per
/// request. The builder is `Send`, so it can be made on one thread and bound on the
/// serving one.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twistor::socketserver::TcpServer;
///
/// let builder = TcpServer::builder("127.0.0.1:0".parse().unwrap())
///     .threading(true)
///     .threads(8)
///     .request_queue_size(64)
///     .allow_reuse_address(true)
///     .disable_nagle_algorithm(true)
///     .timeout(Some(Duration::from_secs(1)))
///     .verify_request(|client| client.is_loopback())
///     .handle_error(|client, error| eprintln!("{client}: {error}"));
/// ```
pub struct Builder<K: Kind> {
    address: K::Address,
    config: Config,
    hooks: Hooks,
}

impl<K: Kind> fmt::Debug for Builder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("address", &self.address)
            .field("config", &self.config)
            .field("hooks", &self.hooks)
            .finish()
    }
}

impl<K: Kind> Builder<K> {
    fn new(address: K::Address) -> Self {
        Builder {
            address,
            config: Config {
                threading: false,
                threads: DEFAULT_THREADS,
                max_queued_requests: DEFAULT_MAX_QUEUED_REQUESTS,
                timeout: None,
                listen: ListenOptions::default(),
                nodelay: false,
                request_timeout: None,
                max_packet_size: crate::DEFAULT_MAX_DATAGRAM_BYTES,
                block_on_close: true,
                close_timeout: DEFAULT_CLOSE_TIMEOUT,
            },
            hooks: Hooks::default(),
        }
    }

    /// Runs handlers on worker threads (socketserver's `ThreadingMixIn`) instead of on
    /// the serving thread (default false: synchronous, one request at a time).
    pub fn threading(mut self, on: bool) -> Self {
        self.config.threading = on;
        self
    }

    /// Worker threads in threading mode (default [`DEFAULT_THREADS`]): the most
    /// requests handled at once, since a handler holds its thread until it returns.
    /// Threads start with the first request.
    pub fn threads(mut self, n: usize) -> Self {
        self.config.threads = n.max(1);
        self
    }

    /// Requests that may wait for a worker while all are busy (default
    /// [`DEFAULT_MAX_QUEUED_REQUESTS`], at least 1). A request beyond them is refused
    /// and reported as [`RequestError::Busy`].
    pub fn max_queued_requests(mut self, n: usize) -> Self {
        self.config.max_queued_requests = n.max(1);
        self
    }

    /// How long [`handle_request`](Server::handle_request) waits for a request before
    /// it calls `handle_timeout` (default `None`: wait as long as it takes).
    /// [`serve_forever`](Server::serve_forever) ignores it.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Decides, before any handler is made, whether to serve a client (default: all).
    /// Returning false closes the connection (or drops the datagram) at once. Runs on
    /// the serving thread; a panic counts as false and is reported to `handle_error`.
    pub fn verify_request<F>(mut self, f: F) -> Self
    where
        F: Fn(&Addr) -> bool + Send + Sync + 'static,
    {
        self.hooks.verify_request = Some(Box::new(f));
        self
    }

    /// Receives every request that failed: a handler step returned an error or
    /// panicked, the reply could not be sent, a datagram was too large, the workers
    /// were busy. The default logs with `log::error!`. Each request is reported at
    /// most once (with its first failure), and the server goes on serving. Runs on the
    /// thread that saw the failure: a worker, in threading mode.
    pub fn handle_error<F>(mut self, f: F) -> Self
    where
        F: Fn(&Addr, RequestError) + Send + Sync + 'static,
    {
        self.hooks.handle_error = Some(Box::new(f));
        self
    }

    /// Called by [`handle_request`](Server::handle_request) when its
    /// [`timeout`](Self::timeout) passes with no request (default: nothing).
    pub fn handle_timeout<F>(mut self, f: F) -> Self
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.hooks.handle_timeout = Some(Box::new(f));
        self
    }

    /// Whether [`server_close`](Server::server_close) waits for handlers still
    /// running (default true, as `ThreadingMixIn.block_on_close`), at most
    /// [`close_timeout`](Self::close_timeout). With false they are left to finish on
    /// their own threads, like `daemon_threads`. Requests still queued for a worker are
    /// dropped at close either way.
    pub fn block_on_close(mut self, block: bool) -> Self {
        self.config.block_on_close = block;
        self
    }

    /// The longest [`server_close`](Server::server_close) waits for running handlers
    /// (default [`DEFAULT_CLOSE_TIMEOUT`]).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    fn reactor(&self) -> io::Result<Reactor> {
        Reactor::builder()
            .threads(self.config.threads)
            .pool_queue_jobs(self.config.max_queued_requests)
            .wait_for_jobs_on_stop(self.config.block_on_close)
            .shutdown_timeout(self.config.close_timeout)
            // One accept per turn: what is accepted waits in `pending` rather than in
            // the kernel's backlog, so take no more than the loop serves next.
            .accept_budget(1)
            .build()
    }

    fn finish(
        self,
        reactor: Reactor,
        address: K::Address,
        source: Source,
        pending: Pending,
        serve: Arc<Serve>,
        hooks: Arc<Hooks>,
    ) -> Server<K> {
        Server {
            reactor,
            address,
            source,
            pending,
            serve,
            hooks,
            threading: self.config.threading,
            timeout: self.config.timeout,
            control: Arc::new(Control::default()),
            closed: false,
            kind: PhantomData,
        }
    }
}

impl<K: StreamKind> Builder<K> {
    /// The listen backlog: connections the kernel queues before the server accepts
    /// them (socketserver's `request_queue_size`; default 1024, capped by the kernel's
    /// `somaxconn`).
    pub fn request_queue_size(mut self, n: i32) -> Self {
        self.config.listen.backlog = n;
        self
    }

    /// Read and write timeout on each connection's socket (socketserver's
    /// `StreamRequestHandler.timeout`; default none). A handler blocked longer gets an
    /// error from `rfile` or `wfile`.
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.request_timeout = timeout;
        self
    }
}

impl<K: DatagramKind> Builder<K> {
    /// The largest datagram served (socketserver's `max_packet_size`; default 8192).
    /// A larger one is dropped and reported as [`RequestError::TooLarge`], never
    /// handled cut short.
    pub fn max_packet_size(mut self, bytes: usize) -> Self {
        self.config.max_packet_size = bytes;
        self
    }
}

impl Builder<Tcp> {
    /// SO_REUSEADDR on the listening socket, so that a restarted server can bind while
    /// connections of the previous one linger in TIME_WAIT (socketserver's
    /// `allow_reuse_address`). Default **true**, unlike Python's `TCPServer`.
    pub fn allow_reuse_address(mut self, on: bool) -> Self {
        self.config.listen.reuse_address = on;
        self
    }

    /// SO_REUSEPORT on the listening socket, so that several servers can share the
    /// address (socketserver's `allow_reuse_port`; default false).
    pub fn allow_reuse_port(mut self, on: bool) -> Self {
        self.config.listen.reuse_port = on;
        self
    }

    /// TCP_NODELAY on each accepted connection (socketserver's
    /// `disable_nagle_algorithm`; default false, as Python). With it, each flush of
    /// `wfile` goes out at once instead of waiting for the previous segment's ACK.
    pub fn disable_nagle_algorithm(mut self, on: bool) -> Self {
        self.config.nodelay = on;
        self
    }

    /// Binds and listens, ready to serve; `handler_factory` makes one handler per
    /// connection.
    ///
    /// # Errors
    /// Binding or listening failed (address in use, permission denied, ...), or the
    /// reactor could not be created.
    pub fn bind<F, H>(mut self, handler_factory: F) -> io::Result<TcpServer>
    where
        F: Fn() -> H + Send + Sync + 'static,
        H: StreamRequestHandler,
    {
        let mut reactor = self.reactor()?;
        let hooks = Arc::new(std::mem::take(&mut self.hooks));
        let serve = stream::serve_fn(
            handler_factory,
            Arc::clone(&hooks),
            self.config.request_timeout,
        );
        let pending = Pending::default();
        let queue = Rc::clone(&pending);
        let nodelay = self.config.nodelay;
        let listening = reactor.listen_tcp_handoff(
            self.address,
            &self.config.listen,
            move |accepted, peer| {
                let connection = Connection::from(accepted);
                if let Connection::Tcp(s) = &connection {
                    // The reactor turns Nagle off on everything it accepts; socketserver's
                    // default leaves it on.
                    if let Err(e) = s.set_nodelay(nodelay) {
                        log::debug!("{peer}: setting TCP_NODELAY failed: {e}");
                    }
                }
                queue
                    .borrow_mut()
                    .push_back(Request::Stream(connection, peer.clone()));
            },
        )?;
        let source = Source::Listener(listening.id);
        Ok(self.finish(reactor, listening.local_addr, source, pending, serve, hooks))
    }
}

impl Builder<UnixStream> {
    /// Binds and listens on the path, ready to serve; `handler_factory` makes one
    /// handler per connection. A stale socket file is replaced.
    ///
    /// # Errors
    /// A live server answers on the path (`AddrInUse`), the path exists and is not a
    /// socket, or binding failed.
    pub fn bind<F, H>(mut self, handler_factory: F) -> io::Result<UnixStreamServer>
    where
        F: Fn() -> H + Send + Sync + 'static,
        H: StreamRequestHandler,
    {
        let mut reactor = self.reactor()?;
        let hooks = Arc::new(std::mem::take(&mut self.hooks));
        let serve = stream::serve_fn(
            handler_factory,
            Arc::clone(&hooks),
            self.config.request_timeout,
        );
        let pending = Pending::default();
        let queue = Rc::clone(&pending);
        let id = reactor.listen_unix_handoff(
            &self.address,
            &self.config.listen,
            move |accepted, peer| {
                queue
                    .borrow_mut()
                    .push_back(Request::Stream(Connection::from(accepted), peer.clone()));
            },
        )?;
        let address = self.address.clone();
        Ok(self.finish(
            reactor,
            address,
            Source::Listener(id),
            pending,
            serve,
            hooks,
        ))
    }
}

impl Builder<Udp> {
    /// Binds the socket, ready to serve; `handler_factory` makes one handler per
    /// datagram.
    ///
    /// # Errors
    /// Binding failed, or the reactor could not be created.
    pub fn bind<F, H>(mut self, handler_factory: F) -> io::Result<UdpServer>
    where
        F: Fn() -> H + Send + Sync + 'static,
        H: DatagramRequestHandler,
    {
        let mut reactor = self.reactor()?;
        let pending = Pending::default();
        let collect = datagram::Collect::new(Rc::clone(&pending));
        let id = reactor.listen_udp_max(self.address, self.config.max_packet_size, collect)?;
        let address = match reactor.datagram_addr(id) {
            Some(Addr::Inet(a)) => a,
            _ => return Err(io::Error::other("the UDP socket has no address")),
        };
        let hooks = Arc::new(std::mem::take(&mut self.hooks));
        let serve = datagram::serve_fn(handler_factory, Arc::clone(&hooks), &reactor, id)?;
        Ok(self.finish(
            reactor,
            address,
            Source::Datagram(id),
            pending,
            serve,
            hooks,
        ))
    }
}

impl Builder<UnixDatagram> {
    /// Binds the socket at the path, ready to serve; `handler_factory` makes one
    /// handler per datagram. A stale socket file is replaced.
    ///
    /// # Errors
    /// A live socket answers on the path (`AddrInUse`), the path exists and is not a
    /// socket, or binding failed.
    pub fn bind<F, H>(mut self, handler_factory: F) -> io::Result<UnixDatagramServer>
    where
        F: Fn() -> H + Send + Sync + 'static,
        H: DatagramRequestHandler,
    {
        let mut reactor = self.reactor()?;
        let pending = Pending::default();
        let collect = datagram::Collect::new(Rc::clone(&pending));
        let id = reactor.bind_unix_datagram(&self.address, self.config.max_packet_size, collect)?;
        let hooks = Arc::new(std::mem::take(&mut self.hooks));
        let serve = datagram::serve_fn(handler_factory, Arc::clone(&hooks), &reactor, id)?;
        let address = self.address.clone();
        Ok(self.finish(
            reactor,
            address,
            Source::Datagram(id),
            pending,
            serve,
            hooks,
        ))
    }
}

/// Where requests come from.
#[derive(Clone, Copy, Debug)]
enum Source {
    Listener(ListenerId),
    Datagram(DatagramId),
}

/// A server: a reactor that takes requests in, and the handler factory that serves
/// them. Use it through its aliases, [`TcpServer`], [`UdpServer`],
/// [`UnixStreamServer`] and [`UnixDatagramServer`]; see the
/// [module docs](self) for the mapping from Python.
///
/// The server is bound and listening as soon as it is built; requests that arrive
/// before it serves wait in the kernel's queue. It is not `Send` (it owns a reactor):
/// serve on the thread that built it, and stop it from others with a
/// [`ShutdownHandle`]. Dropping it is [`server_close`](Self::server_close).
pub struct Server<K: Kind> {
    reactor: Reactor,
    address: K::Address,
    source: Source,
    pending: Pending,
    serve: Arc<Serve>,
    hooks: Arc<Hooks>,
    threading: bool,
    timeout: Option<Duration>,
    control: Arc<Control>,
    closed: bool,
    kind: PhantomData<fn() -> K>,
}

impl<K: Kind> fmt::Debug for Server<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .field("threading", &self.threading)
            .field("timeout", &self.timeout)
            .field("pending", &self.pending.borrow().len())
            .finish()
    }
}

impl Server<Tcp> {
    /// Starts configuring a TCP server on `addr` (port 0 picks a free port).
    pub fn builder(addr: SocketAddr) -> Builder<Tcp> {
        Builder::new(addr)
    }
}

impl Server<Udp> {
    /// Starts configuring a UDP server on `addr` (port 0 picks a free port).
    pub fn builder(addr: SocketAddr) -> Builder<Udp> {
        Builder::new(addr)
    }
}

impl Server<UnixStream> {
    /// Starts configuring a Unix-domain stream server at `path`.
    pub fn builder(path: impl AsRef<Path>) -> Builder<UnixStream> {
        Builder::new(path.as_ref().to_path_buf())
    }
}

impl Server<UnixDatagram> {
    /// Starts configuring a Unix-domain datagram server at `path`.
    pub fn builder(path: impl AsRef<Path>) -> Builder<UnixDatagram> {
        Builder::new(path.as_ref().to_path_buf())
    }
}

impl<K: Kind> Server<K> {
    /// The address the server is bound to: for TCP and UDP the real one (with the
    /// port the kernel picked for port 0), for Unix sockets the path.
    pub fn server_address(&self) -> K::Address {
        self.address.clone()
    }

    /// A `Send + Clone` handle that stops [`serve_forever`](Self::serve_forever) from
    /// another thread (socketserver's `shutdown`).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            control: Arc::clone(&self.control),
            reactor: self.reactor.handle(),
        }
    }

    /// Serves one request (socketserver's `handle_request`): waits for one, at most
    /// the builder's [`timeout`](Builder::timeout), and serves it: on this thread in
    /// synchronous mode, on a worker in threading mode (then it returns without
    /// waiting for the handler). If the timeout passes first, calls `handle_timeout`
    /// once. A request refused by `verify_request` counts as served.
    ///
    /// Returns true if a request was taken, false if the timeout passed.
    ///
    /// # Errors
    /// Polling failed, which leaves the server unusable.
    pub fn handle_request(&mut self) -> io::Result<bool> {
        if let Some(request) = self.next_request() {
            self.process(request);
            return Ok(true);
        }
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            self.reactor.run_once(wait)?;
            if let Some(request) = self.next_request() {
                self.process(request);
                return Ok(true);
            }
            // Wakeups that bring no request (a finished worker, a shutdown call) go
            // round again with what is left of the timeout.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.hooks.handle_timeout();
                return Ok(false);
            }
        }
    }

    /// Serves requests until a [`ShutdownHandle::shutdown`] (socketserver's
    /// `serve_forever`). Requests already taken in when the shutdown comes stay for a
    /// later `handle_request` or `serve_forever`, or are dropped by `server_close`;
    /// handlers running on workers go on. The listening socket stays open until
    /// [`server_close`](Self::server_close), so serving can resume.
    ///
    /// A shutdown requested while no `serve_forever` runs makes the next one return at
    /// once, as in Python.
    ///
    /// # Errors
    /// Polling failed, which leaves the server unusable.
    pub fn serve_forever(&mut self) -> io::Result<()> {
        let control = Arc::clone(&self.control);
        let _serving = Serving::enter(&control);
        loop {
            if control.requested() {
                return Ok(());
            }
            self.reactor.run_once(None)?;
            while !control.requested() {
                let Some(request) = self.next_request() else {
                    break;
                };
                self.process(request);
            }
        }
    }

    /// Stops listening and releases the server (socketserver's `server_close`):
    /// requests taken in but not yet served are dropped (connections closed), and
    /// with [`block_on_close`](Builder::block_on_close) it waits for running handlers,
    /// at most [`close_timeout`](Builder::close_timeout). A Unix socket's file is
    /// removed. Dropping the server does the same.
    ///
    /// # Errors
    /// Polling failed while closing; the server is released all the same.
    pub fn server_close(mut self) -> io::Result<()> {
        self.close()
    }

    fn close(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        match self.source {
            Source::Listener(id) => {
                self.reactor.stop_listening(id);
            }
            Source::Datagram(id) => {
                self.reactor.close_datagram(id);
            }
        }
        self.pending.borrow_mut().clear();
        // The reactor's graceful stop drops queued jobs and waits (per the builder)
        // for running ones: block_on_close and close_timeout.
        self.reactor.stop();
        self.reactor.run()
    }

    fn next_request(&self) -> Option<Request> {
        self.pending.borrow_mut().pop_front()
    }

    /// Verifies one request and serves it, here or on the pool.
    fn process(&mut self, request: Request) {
        let client = request.client_address().clone();
        if !self.hooks.verify_request(&client) {
            log::debug!("verify_request refused {client}");
            return; // dropping the request closes its connection
        }
        if let Request::TooLarge(_, max_packet_size) = request {
            self.hooks
                .handle_error(&client, RequestError::TooLarge { max_packet_size });
            return;
        }
        if !self.threading {
            (self.serve)(request);
            return;
        }
        let serve = Arc::clone(&self.serve);
        let hooks = Arc::clone(&self.hooks);
        let who = client.clone();
        let submitted = self.reactor.defer_to_thread(
            move || serve(request),
            move |_: &mut Reactor, result: Result<(), JobError>| match result {
                Ok(()) => {}
                Err(JobError::Cancelled) => {
                    log::debug!(
                        "request from {who} dropped: the server closed before a worker took it"
                    )
                }
                Err(e) => hooks.handle_error(&who, RequestError::Panic(e.to_string())),
            },
        );
        if submitted.is_err() {
            // The job, and with it the connection, is already dropped.
            self.hooks.handle_error(&client, RequestError::Busy);
        }
    }
}

impl<K: Kind> Drop for Server<K> {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("closing the server failed: {e}");
        }
    }
}

/// Shutdown requests and who is serving, shared with [`ShutdownHandle`]s.
#[derive(Debug, Default)]
struct Control {
    state: Mutex<ControlState>,
    /// Signalled when a `serve_forever` returns.
    stopped: Condvar,
}

#[derive(Debug, Default)]
struct ControlState {
    requested: bool,
    /// The thread in `serve_forever`, if one is.
    serving: Option<ThreadId>,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, ControlState> {
        // Nothing panics while holding this lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requested(&self) -> bool {
        self.lock().requested
    }
}

/// Marks a `serve_forever` as running; on drop (return, error or panic) clears the
/// request it answered and wakes the threads waiting in `shutdown`.
struct Serving<'a>(&'a Control);

impl<'a> Serving<'a> {
    fn enter(control: &'a Control) -> Self {
        control.lock().serving = Some(std::thread::current().id());
        Serving(control)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.requested = false;
        state.serving = None;
        drop(state);
        self.0.stopped.notify_all();
    }
}

/// Stops a server's [`serve_forever`](Server::serve_forever) from any thread
/// (socketserver's `shutdown`). `Send + Sync + Clone`.
///
/// # Examples
///
/// ```
/// use twistor::socketserver::{StreamRequest, StreamRequestHandler, TcpServer};
///
/// struct Nothing;
/// impl StreamRequestHandler for Nothing {
///     fn handle(&mut self, _: &mut StreamRequest) -> std::io::Result<()> {
///         Ok(())
///     }
/// }
///
/// let mut server = TcpServer::builder("127.0.0.1:0".parse().unwrap()).bind(|| Nothing)?;
/// let shutdown = server.shutdown_handle();
/// let stopper = std::thread::spawn(move || shutdown.shutdown());
/// server.serve_forever()?; // returns once the other thread has asked
/// stopper.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    control: Arc<Control>,
    reactor: Handle,
}

impl ShutdownHandle {
    /// Tells `serve_forever` to stop and waits until it has returned.
    ///
    /// Returns at once if no `serve_forever` is running (the next one will then
    /// return at once), or if called from the serving thread itself (a handler in
    /// synchronous mode, say), where waiting would never end; `serve_forever` returns
    /// after the current request.
    pub fn shutdown(&self) {
        let mut state = self.control.lock();
        state.requested = true;
        // Wake the loop if it waits in poll; a reactor that is gone needs no waking.
        let _ = self.reactor.call_from_thread(|_: &mut Reactor| {});
        let me = std::thread::current().id();
        while state.serving.is_some_and(|t| t != me) {
            state = self
                .control
                .stopped
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}
