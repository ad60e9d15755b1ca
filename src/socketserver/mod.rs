//! Blocking request handlers in the manner of Python's `socketserver`.
//!
//! A server here is a [`Reactor`](crate::Reactor) that does the accepting (or, for datagrams, the
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
//! | `ForkingMixIn`, `ForkingTCPServer`, ... | not provided (threads; for several cores, a [`ReactorGroup`](crate::ReactorGroup): one reactor per thread, each with its own SO_REUSEPORT listener) |
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

mod builder;
mod datagram;
mod server;
mod stream;

pub use builder::Builder;
pub use datagram::{DatagramRequest, DatagramRequestHandler};
pub use server::{Server, ShutdownHandle};
pub use stream::{Connection, StreamRequest, StreamRequestHandler, LINGER_BYTES, LINGER_TIMEOUT};

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use crate::protocol::panic_message;
use crate::Addr;

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

use kind::{Tcp, Udp, UnixDatagram, UnixStream};

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
            // A blocking socket says EAGAIN when its timeout passes.
            RequestError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                write!(f, "timed out: nothing moved for request_timeout ({e})")
            }
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
