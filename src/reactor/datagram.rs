//! Datagram sockets on the reactor: binding UDP and Unix datagram sockets and the
//! mio side of them.
//!
//! Everything about a datagram socket's life (reading rounds, the too-large rule,
//! receive errors, panics, closing) is the core's (`core::datagram`); here is only
//! what is mio's: the socket types, their registration, binding (a Unix path that a
//! stale socket file holds is replaced) and removing a Unix socket's file on close.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mio::Interest;

use super::table::datagram_token;
use super::{Core, Reactor};
use crate::core::DatagramSocket;
use crate::datagram::{DatagramDriver, DatagramProtocol, DEFAULT_MAX_DATAGRAM_BYTES};
use crate::ids::DatagramId;
use crate::protocol::Addr;

/// A bound datagram socket: the reactor's `core::DatagramSocket`.
pub(crate) struct DgramSocket {
    kind: Kind,
    /// The path to remove on close, for a Unix datagram socket we bound.
    path: Option<PathBuf>,
}

enum Kind {
    Udp(mio::net::UdpSocket),
    Unix(mio::net::UnixDatagram),
}

impl DgramSocket {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match &mut self.kind {
            Kind::Udp(s) => s,
            Kind::Unix(s) => s,
        }
    }

    /// Registers the socket with the poller as `id` (`Kernel::register_datagram`).
    pub(crate) fn register(&mut self, core: &Core, id: DatagramId) -> io::Result<()> {
        core.k
            .poll
            .registry()
            .register(self.source(), datagram_token(id), Interest::READABLE)
    }

    /// Deregisters and closes the socket, removing its file if we bound one
    /// (`Kernel::release_datagram`).
    pub(crate) fn release(mut self, core: &Core) {
        let _ = core.k.poll.registry().deregister(self.source());
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn cannot(verb: &str, to: &Addr) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("cannot {verb} {to} from this socket"),
    )
}

impl DatagramSocket for DgramSocket {
    fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, Addr)> {
        match &self.kind {
            Kind::Udp(s) => s.recv_from(buf).map(|(n, a)| (n, Addr::Inet(a))),
            Kind::Unix(s) => s
                .recv_from(buf)
                .map(|(n, a)| (n, Addr::Unix(a.as_pathname().map(Into::into)))),
        }
    }

    fn send_to(&mut self, data: &[u8], to: &Addr) -> io::Result<usize> {
        match (&self.kind, to) {
            (Kind::Udp(s), Addr::Inet(a)) => s.send_to(data, *a),
            (Kind::Unix(s), Addr::Unix(Some(path))) => s.send_to(data, path),
            _ => Err(cannot("send to", to)),
        }
    }

    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        match &self.kind {
            Kind::Udp(s) => s.send(data),
            Kind::Unix(s) => s.send(data),
        }
    }

    fn connect(&mut self, to: &Addr) -> io::Result<()> {
        match (&self.kind, to) {
            (Kind::Udp(s), Addr::Inet(a)) => s.connect(*a),
            (Kind::Unix(s), Addr::Unix(Some(path))) => s.connect(path),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot connect this socket to {to}"),
            )),
        }
    }

    fn local_addr(&self) -> Option<Addr> {
        match &self.kind {
            Kind::Udp(s) => s.local_addr().ok().map(Addr::Inet),
            Kind::Unix(s) => s
                .local_addr()
                .ok()
                .map(|a| Addr::Unix(a.as_pathname().map(Into::into))),
        }
    }
}

/// Binds a Unix datagram socket at `path`, replacing a stale socket file but refusing
/// a path where a live socket answers.
fn bind_unix_datagram(path: &Path) -> io::Result<mio::net::UnixDatagram> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        let probe = std::os::unix::net::UnixDatagram::unbound()?;
        match probe.connect(path) {
            Ok(()) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("a socket is already bound at {}", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log::info!("removing stale socket file {}", path.display());
                std::fs::remove_file(path)?;
            }
            Err(e) => return Err(e),
        }
    }
    mio::net::UnixDatagram::bind(path)
}

impl Reactor {
    /// Binds a UDP socket at `addr` (port 0 picks a free port) served by `protocol`,
    /// accepting datagrams up to [`DEFAULT_MAX_DATAGRAM_BYTES`].
    ///
    /// # Errors
    /// Binding failed.
    pub fn listen_udp<P: DatagramProtocol>(
        &mut self,
        addr: SocketAddr,
        protocol: P,
    ) -> io::Result<DatagramId> {
        self.listen_udp_max(addr, DEFAULT_MAX_DATAGRAM_BYTES, protocol)
    }

    /// [`listen_udp`](Self::listen_udp) with its own largest datagram (socketserver's
    /// `max_packet_size`).
    ///
    /// # Errors
    /// Binding failed.
    pub fn listen_udp_max<P: DatagramProtocol>(
        &mut self,
        addr: SocketAddr,
        max_datagram_bytes: usize,
        protocol: P,
    ) -> io::Result<DatagramId> {
        let socket = DgramSocket {
            kind: Kind::Udp(mio::net::UdpSocket::bind(addr)?),
            path: None,
        };
        self.core
            .add_datagram(socket, max_datagram_bytes, Box::new(protocol))
    }

    /// Binds a Unix datagram socket at `path`. A stale socket file is replaced; a path
    /// where a live socket answers is refused. The file is removed on close.
    ///
    /// # Errors
    /// A live socket owns `path`, `path` is not a socket, or binding failed.
    pub fn bind_unix_datagram<P: DatagramProtocol>(
        &mut self,
        path: impl AsRef<Path>,
        max_datagram_bytes: usize,
        protocol: P,
    ) -> io::Result<DatagramId> {
        let path = path.as_ref();
        let socket = DgramSocket {
            kind: Kind::Unix(bind_unix_datagram(path)?),
            path: Some(path.to_path_buf()),
        };
        self.core
            .add_datagram(socket, max_datagram_bytes, Box::new(protocol))
    }

    /// Sends one datagram from socket `id` to `to`, as
    /// [`DatagramContext::send_to`](crate::DatagramContext::send_to): for replies
    /// computed elsewhere (a pool job, another thread through a
    /// [`Handle`](crate::Handle)).
    ///
    /// # Errors
    /// The socket is closed, or the send failed.
    pub fn send_datagram(&mut self, id: DatagramId, data: &[u8], to: &Addr) -> io::Result<()> {
        self.core.datagram_send_to(id, data, to)
    }

    /// The descriptor of datagram socket `id` (none once it is closing), for the
    /// `socketserver` module: it clones it to send replies straight from its worker
    /// threads, where a `Handle` round trip would hold a reply until the reactor's
    /// next turn. A clone shares the socket's non-blocking mode; it must only send,
    /// since receiving is the reactor's.
    pub(crate) fn datagram_fd(&self, id: DatagramId) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        let d = self.core.datagram(id).filter(|d| !d.closing)?;
        Some(match &d.socket.kind {
            Kind::Udp(s) => s.as_fd(),
            Kind::Unix(s) => s.as_fd(),
        })
    }

    /// The address a datagram socket is bound to.
    pub fn datagram_addr(&self, id: DatagramId) -> Option<Addr> {
        self.core.datagram(id).and_then(|d| d.socket.local_addr())
    }

    /// Closes a datagram socket; its protocol's `stopped` runs. False if it was
    /// already closed.
    pub fn close_datagram(&mut self, id: DatagramId) -> bool {
        let open = self.core.is_datagram_open(id);
        self.core.close_datagram(id);
        self.core.settle_datagrams();
        open
    }
}
