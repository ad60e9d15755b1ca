//! The server builder: socketserver's class attributes and hooks, then `bind`.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::kind::{DatagramKind, Kind, StreamKind, Tcp, Udp, UnixDatagram, UnixStream};
use super::server::{Control, Source};
use super::{
    datagram, stream, Connection, DatagramRequestHandler, Hooks, Pending, Request, RequestError,
    Serve, Server, StreamRequestHandler, TcpServer, UdpServer, UnixDatagramServer,
    UnixStreamServer, DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_QUEUED_REQUESTS, DEFAULT_THREADS,
};
use crate::{Addr, ListenOptions, Reactor};

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
    pub(super) fn new(address: K::Address) -> Self {
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
