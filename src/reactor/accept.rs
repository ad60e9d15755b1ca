//! Listening and accepting: listeners, the accept loop with its budget, EMFILE
//! back-off, and handing each accepted socket to a protocol (or to its owner).

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use mio::Interest;

use super::table::{
    listener_token, AnyFactory, Handoff, ListenSocket, Listener, Stream, MAX_SLOTS,
};
use super::{Core, Listening, Reactor, ReactorTask};
use crate::core::Task;
use crate::ids::{ListenerId, Source};
use crate::net::{self, ListenOptions};
use crate::protocol::{panic_message, Addr, Factory};
use crate::Accepted;

/// First pause after EMFILE/ENFILE on accept; doubled on each failure up to
/// [`ACCEPT_BACKOFF_MAX`]. Short enough to recover quickly, long enough not to spin.
pub(super) const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(super) const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// At most one "refusing: max_connections" warning per this interval.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or the system is out of something
    // an accept needs; retrying at once would spin.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

impl Reactor {
    /// Listens on `addr` (port 0 picks a free port) with the reactor's
    /// [`ListenOptions`]; each accepted connection gets a protocol from `factory`.
    ///
    /// # Errors
    /// Binding or listening failed (address in use, permission denied, ...).
    pub fn listen_tcp<F: Factory>(
        &mut self,
        addr: SocketAddr,
        factory: F,
    ) -> io::Result<Listening> {
        let opts = self.core.config.listen.clone();
        self.listen_tcp_with(addr, &opts, factory)
    }

    /// [`listen_tcp`](Self::listen_tcp) with explicit options (backlog, SO_REUSEPORT).
    ///
    /// # Errors
    /// Binding or listening failed.
    pub fn listen_tcp_with<F: Factory>(
        &mut self,
        addr: SocketAddr,
        opts: &ListenOptions,
        factory: F,
    ) -> io::Result<Listening> {
        let socket = net::bind_tcp(addr, opts)?;
        let local_addr = socket.local_addr()?;
        let id = self.core.add_listener(
            ListenSocket::Tcp(socket),
            Addr::Inet(local_addr),
            Box::new(factory),
        )?;
        Ok(Listening { id, local_addr })
    }

    /// Listens on a TCP socket that is already bound and listening: one made with
    /// options of your own (through `socket2`), one inherited from a supervisor
    /// (socket activation), or one bound on another thread, as a
    /// [`ReactorGroup`](crate::ReactorGroup) does.
    /// Each accepted connection gets a protocol from `factory`. The socket is made
    /// non-blocking; the reactor's [`ListenOptions`] do not apply to it.
    ///
    /// # Errors
    /// The socket is not listening (`InvalidInput`, checked on Linux and Android), or
    /// registering it with the poller failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::{Addr, Context, Protocol, Reactor};
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
    ///         cx.write(data);
    ///     }
    /// }
    ///
    /// let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let mut reactor = Reactor::new()?;
    /// let port = reactor.listen_tcp_socket(socket, |_: &Addr| Some(Echo))?;
    /// assert_ne!(port.local_addr.port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_tcp_socket<F: Factory>(
        &mut self,
        socket: std::net::TcpListener,
        factory: F,
    ) -> io::Result<Listening> {
        // A socket that is not listening would never accept a connection: say so now
        // rather than log accept errors later.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if !socket2::SockRef::from(&socket).is_listener()? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "listen_tcp_socket: the socket is not listening",
            ));
        }
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let id = self.core.add_listener(
            ListenSocket::Tcp(mio::net::TcpListener::from_std(socket)),
            Addr::Inet(local_addr),
            Box::new(factory),
        )?;
        Ok(Listening { id, local_addr })
    }

    /// Listens on a Unix-domain stream socket at `path`.
    ///
    /// A stale socket file from a dead server is replaced; a path where a live server
    /// answers is refused. The file is removed when the listener closes.
    ///
    /// # Errors
    /// A live server owns `path`, `path` is not a socket, or binding failed.
    pub fn listen_unix<F: Factory>(
        &mut self,
        path: impl AsRef<std::path::Path>,
        factory: F,
    ) -> io::Result<ListenerId> {
        let path = path.as_ref();
        let socket = net::bind_unix(path, &self.core.config.listen)?;
        let local = Addr::Unix(Some(path.to_path_buf()));
        let added = self
            .core
            .add_listener(ListenSocket::Unix(socket), local, Box::new(factory));
        if added.is_err() {
            let _ = std::fs::remove_file(path);
        }
        added
    }

    /// Listens on `addr` and hands each accepted socket, in blocking mode, to
    /// `on_accept` instead of a protocol: for code that serves connections with
    /// blocking I/O on other threads (the `socketserver` module). The reactor keeps
    /// no track of handed-over sockets; `max_connections` does not count them.
    ///
    /// # Errors
    /// Binding or listening failed.
    pub fn listen_tcp_handoff<F>(
        &mut self,
        addr: SocketAddr,
        opts: &ListenOptions,
        on_accept: F,
    ) -> io::Result<Listening>
    where
        F: FnMut(Accepted, &Addr) + 'static,
    {
        let socket = net::bind_tcp(addr, opts)?;
        let local_addr = socket.local_addr()?;
        let id = self.core.add_listener(
            ListenSocket::Tcp(socket),
            Addr::Inet(local_addr),
            Box::new(Handoff(on_accept)),
        )?;
        Ok(Listening { id, local_addr })
    }

    /// [`listen_tcp_handoff`](Self::listen_tcp_handoff) on a Unix-domain stream socket,
    /// with the stale-file rules of [`listen_unix`](Self::listen_unix).
    ///
    /// # Errors
    /// A live server owns `path`, or binding failed.
    pub fn listen_unix_handoff<F>(
        &mut self,
        path: impl AsRef<std::path::Path>,
        opts: &ListenOptions,
        on_accept: F,
    ) -> io::Result<ListenerId>
    where
        F: FnMut(Accepted, &Addr) + 'static,
    {
        let path = path.as_ref();
        let socket = net::bind_unix(path, opts)?;
        let local = Addr::Unix(Some(path.to_path_buf()));
        let added = self.core.add_listener(
            ListenSocket::Unix(socket),
            local,
            Box::new(Handoff(on_accept)),
        );
        if added.is_err() {
            let _ = std::fs::remove_file(path);
        }
        added
    }

    /// Closes a listener; its factory's `stopped` runs. Connections it accepted go on.
    /// Returns false if it was already closed.
    pub fn stop_listening(&mut self, id: ListenerId) -> bool {
        self.core.remove_listener(id)
    }
}

impl Core {
    pub(super) fn add_listener(
        &mut self,
        mut socket: ListenSocket,
        local: Addr,
        mut factory: Box<dyn AnyFactory>,
    ) -> io::Result<ListenerId> {
        if self.k.listeners.len() >= MAX_SLOTS {
            return Err(io::Error::other("too many listeners"));
        }
        let generation = self.next_generation();
        let entry = self.k.listeners.vacant_entry();
        let id = ListenerId {
            index: entry.key() as u32,
            generation,
        };
        self.k
            .poll
            .registry()
            .register(socket.source(), listener_token(id), Interest::READABLE)?;
        log::debug!("listening on {local}");
        factory.started();
        entry.insert(Listener {
            generation,
            socket,
            factory,
            local,
            backoff: None,
            in_ready: false,
            #[cfg(feature = "tls")]
            tls: None,
        });
        Ok(id)
    }

    pub(super) fn remove_listener(&mut self, id: ListenerId) -> bool {
        if self.listener_mut(id).is_none() {
            return false;
        }
        let mut l = self.k.listeners.remove(id.index as usize);
        let _ = self.k.poll.registry().deregister(l.socket.source());
        if let Some(t) = l.backoff.take() {
            self.timers.cancel(t);
        }
        log::debug!("stopped listening on {}", l.local);
        if let (ListenSocket::Unix(_), Addr::Unix(Some(path))) = (&l.socket, &l.local) {
            let _ = std::fs::remove_file(path);
        }
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| l.factory.stopped())) {
            log::error!("factory stopped() panicked: {}", panic_message(&*panic));
        }
        true
    }

    pub(super) fn accept(&mut self, id: ListenerId) {
        for _ in 0..self.config.accept_budget {
            let Some(l) = self.listener_mut(id) else {
                return;
            };
            l.in_ready = false;
            if l.backoff.is_some() {
                return;
            }
            match l.socket.accept() {
                Ok((stream, peer)) => {
                    self.counters.accepted += 1;
                    self.k.accept_backoff = ACCEPT_BACKOFF_MIN;
                    self.adopt(id, stream, peer);
                    self.settle();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if is_fd_exhaustion(&e) => {
                    self.counters.accept_errors += 1;
                    let delay = self.k.accept_backoff;
                    self.k.accept_backoff = (delay * 2).min(ACCEPT_BACKOFF_MAX);
                    log::warn!(
                        "accept on {}: {e}; pausing accepts for {delay:?}",
                        self.k.listeners[id.index as usize].local
                    );
                    let timer = self.timers.insert(
                        Instant::now() + delay,
                        Task::Kernel(ReactorTask::AcceptRetry(id)),
                    );
                    self.k.listeners[id.index as usize].backoff = Some(timer);
                    return;
                }
                Err(e) => {
                    self.counters.accept_errors += 1;
                    log::warn!(
                        "accept on {}: {e}",
                        self.k.listeners[id.index as usize].local
                    );
                    return;
                }
            }
        }
        // Budget spent with connections possibly still queued: no new edge will come
        // for them, so come back next turn.
        if let Some(l) = self.listener_mut(id) {
            if !l.in_ready {
                l.in_ready = true;
                self.ready.push(Source::Listener(id));
            }
        }
    }

    /// A descriptor was freed: listeners backing off after EMFILE may accept again.
    pub(super) fn retry_backed_off_accepts(&mut self) {
        let waiting: Vec<ListenerId> = self
            .k
            .listeners
            .iter()
            .filter(|(_, l)| l.backoff.is_some())
            .map(|(i, l)| ListenerId {
                index: i as u32,
                generation: l.generation,
            })
            .collect();
        for id in waiting {
            if let Some(t) = self.listener_mut(id).and_then(|l| l.backoff.take()) {
                self.timers.cancel(t);
            }
            if let Some(l) = self.listener_mut(id) {
                if !l.in_ready {
                    l.in_ready = true;
                    self.ready.push(Source::Listener(id));
                }
            }
        }
    }

    pub(super) fn adopt(&mut self, listener: ListenerId, stream: Stream, peer: Addr) {
        if self.conns.len() >= self.config.max_connections {
            self.counters.refused += 1;
            // A flood at the limit would log a line per connection: one a second,
            // with the count since the last one, says as much.
            let now = Instant::now();
            if self
                .k
                .refusal_logged
                .is_none_or(|t| now >= t + REFUSAL_LOG_INTERVAL)
            {
                log::warn!(
                    "refusing {peer}: max_connections ({}) reached ({} refused in all)",
                    self.config.max_connections,
                    self.counters.refused
                );
                self.k.refusal_logged = Some(now);
            }
            return; // dropping the stream closes it
        }
        let l = &mut self.k.listeners[listener.index as usize];
        let kept = catch_unwind(AssertUnwindSafe(|| l.factory.handoff(stream, &peer)));
        let stream = match kept {
            Ok(Some(stream)) => stream,
            Ok(None) => return, // handed over
            Err(panic) => {
                log::error!(
                    "accept handler panicked for {peer}: {}",
                    panic_message(&*panic)
                );
                return;
            }
        };
        let built = catch_unwind(AssertUnwindSafe(|| l.factory.build(&peer)));
        let protocol = match built {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.counters.refused += 1;
                log::debug!("factory refused {peer}");
                return;
            }
            Err(panic) => {
                log::error!("factory panicked for {peer}: {}", panic_message(&*panic));
                return;
            }
        };
        #[cfg(feature = "tls")]
        let session = match l.tls.as_ref().map(|t| t.session()) {
            None => None,
            Some(Ok(session)) => Some(session),
            Some(Err(e)) => {
                log::warn!("TLS session for {peer} failed: {e}");
                return;
            }
        };
        match self.insert_conn(stream, peer.clone(), protocol, false) {
            Ok(id) => {
                log::debug!("{id} {peer}: accepted");
                #[cfg(feature = "tls")]
                if let Some(session) = session {
                    self.start_tls(id, session);
                }
                self.make(id);
            }
            Err((e, _)) => log::warn!("registering {peer} failed: {e}"),
        }
    }
}
