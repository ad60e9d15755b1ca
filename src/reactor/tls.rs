//! Listening and connecting with TLS (the session itself is the core's: core/tls.rs).

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use super::table::Stream;
use super::{Listening, Reactor};
use crate::ids::{ConnId, ListenerId};
use crate::protocol::{Addr, Factory, Protocol};
use crate::tls::{TlsAcceptor, TlsConnector};

fn tls_io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

impl Reactor {
    /// Listens on `addr` as [`listen_tcp`](Self::listen_tcp) does, and speaks TLS on
    /// every accepted connection with `tls`'s settings: each protocol from `factory`
    /// sees plaintext (see the [`tls`](crate::tls) module).
    ///
    /// # Errors
    /// Binding or listening failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use twistor::framing::{LineContext, LineHandler, LineReceiver};
    /// use twistor::tls::TlsAcceptor;
    /// use twistor::{Addr, Reactor};
    ///
    /// struct Shout;
    /// impl LineHandler for Shout {
    ///     fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
    ///         cx.send_line(&line.to_ascii_uppercase());
    ///     }
    /// }
    ///
    /// let tls = TlsAcceptor::from_pem("cert.pem", "key.pem")?;
    /// let mut reactor = Reactor::new()?;
    /// reactor.listen_tls("127.0.0.1:8443".parse()?, &tls, |_: &Addr| {
    ///     Some(LineReceiver::new(Shout))
    /// })?;
    /// reactor.run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listen_tls<F: Factory>(
        &mut self,
        addr: SocketAddr,
        tls: &TlsAcceptor,
        factory: F,
    ) -> io::Result<Listening> {
        let listening = self.listen_tcp(addr, factory)?;
        self.set_listener_tls(listening.id, tls);
        Ok(listening)
    }

    /// [`listen_unix`](Self::listen_unix) with TLS on every accepted connection.
    ///
    /// # Errors
    /// As `listen_unix`.
    pub fn listen_unix_tls<F: Factory>(
        &mut self,
        path: impl AsRef<Path>,
        tls: &TlsAcceptor,
        factory: F,
    ) -> io::Result<ListenerId> {
        let id = self.listen_unix(path, factory)?;
        self.set_listener_tls(id, tls);
        Ok(id)
    }

    /// Speaks TLS on the connections listener `id` accepts from now on, with `tls`'s
    /// settings (for a listener adopted by [`listen_tcp_socket`](Self::listen_tcp_socket)).
    /// False if there is no such listener.
    pub fn set_listener_tls(&mut self, id: ListenerId, tls: &TlsAcceptor) -> bool {
        match self.core.listener_mut(id) {
            Some(l) => {
                l.tls = Some(tls.clone());
                true
            }
            None => false,
        }
    }

    /// Connects to `addr` as [`connect_tcp`](Self::connect_tcp) does and speaks TLS
    /// over the connection, verifying the server's certificate for `server_name` (a
    /// DNS name or an IP address) with `tls`'s roots. `connection_made` comes once
    /// TCP is up; what the protocol writes waits for the handshake. A failed
    /// handshake (an untrusted certificate, a name that does not match) ends the
    /// connection with [`Reason::Tls`](crate::Reason::Tls).
    ///
    /// A `server_name` that is not a valid DNS name or IP address fails the connect
    /// (`connection_failed`, `InvalidInput`).
    pub fn connect_tls<P: Protocol>(
        &mut self,
        addr: SocketAddr,
        tls: &TlsConnector,
        server_name: &str,
        protocol: P,
    ) -> ConnId {
        let stream = mio::net::TcpStream::connect(addr).map(Stream::Tcp);
        self.connect_with_tls(stream, Addr::Inet(addr), tls, server_name, protocol)
    }

    /// [`connect_unix`](Self::connect_unix) with TLS, as [`connect_tls`](Self::connect_tls).
    pub fn connect_unix_tls<P: Protocol>(
        &mut self,
        path: impl AsRef<Path>,
        tls: &TlsConnector,
        server_name: &str,
        protocol: P,
    ) -> ConnId {
        let path = path.as_ref();
        let stream = mio::net::UnixStream::connect(path).map(Stream::Unix);
        let peer = Addr::Unix(Some(path.to_path_buf()));
        self.connect_with_tls(stream, peer, tls, server_name, protocol)
    }

    fn connect_with_tls<P: Protocol>(
        &mut self,
        stream: io::Result<Stream>,
        peer: Addr,
        tls: &TlsConnector,
        server_name: &str,
        protocol: P,
    ) -> ConnId {
        let timeout = self.core.config.connect_timeout;
        let (stream, session) = match tls.session(server_name) {
            Ok(session) => (stream, Some(session)),
            Err(e) => (Err(tls_io_error(e)), None),
        };
        let id = self.core.connect(stream, peer, timeout, Box::new(protocol));
        if let Some(session) = session {
            self.core.start_tls(id, session);
        }
        id
    }
}
