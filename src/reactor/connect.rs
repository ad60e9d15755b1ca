//! Outgoing connections: non-blocking connect, its completion or failure, and the
//! one `connection_failed` a connect that never succeeded gets.

use super::*;

impl Reactor {
    /// Connects to a Unix-domain stream socket, as [`connect_tcp`](Self::connect_tcp).
    pub fn connect_unix<P: Protocol>(
        &mut self,
        path: impl AsRef<std::path::Path>,
        protocol: P,
    ) -> ConnId {
        let path = path.as_ref();
        let stream = mio::net::UnixStream::connect(path).map(Stream::Unix);
        let timeout = self.core.config.connect_timeout;
        let peer = Addr::Unix(Some(path.to_path_buf()));
        self.core.connect(stream, peer, timeout, Box::new(protocol))
    }

    /// Connects to `addr` without blocking, with the builder's connect timeout.
    ///
    /// On success the protocol gets `connection_made`; on refusal, unreachability or
    /// timeout it gets [`Protocol::connection_failed`] instead — never both, and
    /// never inside this call.
    pub fn connect_tcp<P: Protocol>(&mut self, addr: SocketAddr, protocol: P) -> ConnId {
        let timeout = self.core.config.connect_timeout;
        self.connect_tcp_timeout(addr, timeout, protocol)
    }

    /// [`connect_tcp`](Self::connect_tcp) with its own timeout (`None`: wait as long as
    /// the kernel does).
    pub fn connect_tcp_timeout<P: Protocol>(
        &mut self,
        addr: SocketAddr,
        timeout: Option<Duration>,
        protocol: P,
    ) -> ConnId {
        let stream = mio::net::TcpStream::connect(addr).map(Stream::Tcp);
        self.core
            .connect(stream, Addr::Inet(addr), timeout, Box::new(protocol))
    }
}

impl Core {
    pub(super) fn connect(
        &mut self,
        stream: io::Result<Stream>,
        peer: Addr,
        timeout: Option<Duration>,
        protocol: Box<dyn Protocol>,
    ) -> ConnId {
        let inserted = match stream {
            Ok(stream) => self.insert_conn(stream, peer, protocol, true),
            Err(e) => Err((e, protocol)),
        };
        match inserted {
            Ok(id) => {
                if let Some(t) = timeout {
                    self.track_timer(id, Instant::now() + t, Task::ConnectTimeout(id));
                }
                id
            }
            Err((e, protocol)) => {
                let id = ConnId::detached(self.next_generation());
                self.failed.push((id, protocol, e));
                id
            }
        }
    }

    pub(super) fn finish_connect(&mut self, id: ConnId) {
        let Some(c) = self.conn_mut(id) else { return };
        match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => return self.fail_connect(id, e),
            Ok(None) => {}
        }
        match c.stream.is_connected() {
            Ok(()) => {
                c.connecting = false;
                if let Stream::Tcp(s) = &c.stream {
                    let _ = s.set_nodelay(true);
                }
                let timers = std::mem::take(&mut c.timers);
                for t in timers {
                    // Only the connect timeout can be pending yet.
                    self.timers.cancel(t);
                }
                log::debug!("{id}: connected");
                self.make(id);
            }
            // Writable before the handshake finished: a spurious event, wait.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => self.fail_connect(id, e),
        }
    }

    pub(super) fn fail_connect(&mut self, id: ConnId, error: io::Error) {
        if !self.conn(id).is_some_and(|c| c.connecting) {
            return;
        }
        let Some((protocol, peer)) = self.remove_conn(id, false) else {
            return;
        };
        log::debug!("{id} {peer}: connect failed: {error}");
        // Reported at the start of the next carried-over phase, never here: this can
        // run inside another connection's callback (`lose_connection_of` on a pending
        // connect), where calling back and settling would re-enter that connection.
        self.failed.push((id, protocol, error));
    }

    pub(super) fn report_failed(&mut self) {
        for (id, mut protocol, error) in std::mem::take(&mut self.failed) {
            self.counters.connect_failed += 1;
            let ty = protocol_type(&*protocol);
            let result = catch_unwind(AssertUnwindSafe(|| {
                let mut cx = Context::new(self, id, ty);
                protocol.connection_failed(&mut cx, error);
            }));
            if let Err(panic) = result {
                log::error!(
                    "{id}: connection_failed panicked: {}",
                    panic_message(&*panic)
                );
            }
            self.settle();
        }
    }
}
