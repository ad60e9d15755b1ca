//! The server: the serving loop, request dispatch, shutdown and close.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::builder::Builder;
use super::kind::{Kind, Tcp, Udp, UnixDatagram, UnixStream};
use super::{Hooks, Pending, Request, RequestError, Serve};
use crate::{DatagramId, Handle, JobError, ListenerId, Reactor};

/// Where requests come from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Source {
    Listener(ListenerId),
    Datagram(DatagramId),
}

/// A server: a reactor that takes requests in, and the handler factory that serves
/// them.
///
/// Use it through its aliases, [`TcpServer`](super::TcpServer),
/// [`UdpServer`](super::UdpServer), [`UnixStreamServer`](super::UnixStreamServer) and
/// [`UnixDatagramServer`](super::UnixDatagramServer); see the
/// [module docs](crate::socketserver) for the mapping from Python.
///
/// The server is bound and listening as soon as it is built; requests that arrive
/// before it serves wait in the kernel's queue. It is not `Send` (it owns a reactor):
/// serve on the thread that built it, and stop it from others with a
/// [`ShutdownHandle`]. Dropping it is [`server_close`](Self::server_close).
pub struct Server<K: Kind> {
    pub(super) reactor: Reactor,
    pub(super) address: K::Address,
    pub(super) source: Source,
    pub(super) pending: Pending,
    pub(super) serve: Arc<Serve>,
    pub(super) hooks: Arc<Hooks>,
    pub(super) threading: bool,
    pub(super) timeout: Option<Duration>,
    pub(super) control: Arc<Control>,
    pub(super) closed: bool,
    pub(super) kind: PhantomData<fn() -> K>,
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
pub(super) struct Control {
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
