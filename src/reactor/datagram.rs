//! Datagram sockets on the reactor: UDP and Unix datagram.
//!
//! A datagram socket has one [`DatagramProtocol`] for all its peers. Datagrams are read
//! into the shared read buffer until `WouldBlock` or the per-wakeup budget; one that is
//! larger than the socket's maximum is reported to the protocol, never delivered cut.
//! Errors the kernel reports on receive (an ICMP "port unreachable" on a connected
//! socket, say) go to `error_received`; the socket stays open.

use std::any::Any;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use mio::Interest;

use super::table::datagram_token;
use super::{Core, Reactor};
use crate::ids::{ConnId, DatagramId, Source};
use crate::protocol::{panic_message, Addr};
use crate::transport::ConnRef;

/// Datagrams read from one socket per wakeup before others get their turn.
const DATAGRAM_BUDGET: usize = 64;

/// Default largest datagram accepted: socketserver's `max_packet_size`.
pub const DEFAULT_MAX_DATAGRAM_BYTES: usize = 8192;

/// A datagram socket's callbacks, in the manner of Twisted's `DatagramProtocol`.
///
/// A panic in a callback is caught and logged; the datagram that caused it is dropped
/// and the socket goes on serving (one socket serves every peer, so closing it would
/// punish them all).
///
/// # Examples
///
/// ```
/// use twistor::{Addr, DatagramContext, DatagramProtocol, Reactor};
///
/// /// Sends each datagram back to its sender.
/// struct Echo;
/// impl DatagramProtocol for Echo {
///     fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], from: &Addr) {
///         let _ = cx.send_to(data, from);
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let id = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Echo)?;
/// assert!(reactor.datagram_addr(id).is_some());
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait DatagramProtocol: Any {
    /// The socket is bound and registered.
    fn started(&mut self, cx: &mut DatagramContext<'_>) {
        let _ = cx;
    }

    /// A datagram arrived. `data` may be empty (an empty datagram is a datagram).
    fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], from: &Addr);

    /// A datagram larger than the socket's maximum arrived and was dropped. The
    /// default logs a warning.
    fn datagram_too_large(&mut self, cx: &mut DatagramContext<'_>, from: &Addr) {
        log::warn!(
            "{}: dropped a datagram from {from} over {} bytes",
            cx.id,
            cx.max_datagram_bytes()
        );
    }

    /// The kernel reported an error for this socket (for a connected socket, an ICMP
    /// error about an earlier send: Twisted's `connectionRefused`). The socket stays
    /// open. The default logs at debug.
    fn error_received(&mut self, cx: &mut DatagramContext<'_>, error: io::Error) {
        log::debug!("{}: {error}", cx.id);
    }

    /// The socket was closed (by [`DatagramContext::close`], `Reactor::close_datagram`
    /// or a stop).
    fn stopped(&mut self, cx: &mut DatagramContext<'_>) {
        let _ = cx;
    }
}

pub(crate) enum DgramSocket {
    Udp(mio::net::UdpSocket),
    Unix(mio::net::UnixDatagram),
}

impl DgramSocket {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            DgramSocket::Udp(s) => s,
            DgramSocket::Unix(s) => s,
        }
    }

    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, Addr)> {
        match self {
            DgramSocket::Udp(s) => s.recv_from(buf).map(|(n, a)| (n, Addr::Inet(a))),
            DgramSocket::Unix(s) => s
                .recv_from(buf)
                .map(|(n, a)| (n, Addr::Unix(a.as_pathname().map(Into::into)))),
        }
    }

    fn local_addr(&self) -> Option<Addr> {
        match self {
            DgramSocket::Udp(s) => s.local_addr().ok().map(Addr::Inet),
            DgramSocket::Unix(s) => s
                .local_addr()
                .ok()
                .map(|a| Addr::Unix(a.as_pathname().map(Into::into))),
        }
    }
}

pub(crate) struct Datagram {
    pub(crate) generation: u32,
    socket: DgramSocket,
    protocol: Option<Box<dyn DatagramProtocol>>,
    max_bytes: usize,
    /// The path to remove on close, for a Unix datagram socket we bound.
    path: Option<std::path::PathBuf>,
    closing: bool,
    pub(crate) in_ready: bool,
}

/// A datagram protocol's handle on its socket and on the reactor.
pub struct DatagramContext<'a> {
    core: &'a mut Core,
    id: DatagramId,
}

impl fmt::Debug for DatagramContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramContext")
            .field("id", &self.id)
            .finish()
    }
}

fn not_open() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "datagram socket is closed")
}

impl DatagramContext<'_> {
    /// This socket's id.
    pub fn id(&self) -> DatagramId {
        self.id
    }

    fn socket(&self) -> io::Result<&DgramSocket> {
        self.core
            .datagram(self.id)
            .filter(|d| !d.closing)
            .map(|d| &d.socket)
            .ok_or_else(not_open)
    }

    /// Sends one datagram to `to`. Datagrams are never queued: if the kernel's
    /// buffer is full the send fails with `WouldBlock` and the datagram is dropped,
    /// as UDP allows.
    ///
    /// # Errors
    /// The send failed (no route, message too long, buffer full, wrong address
    /// family for this socket).
    pub fn send_to(&mut self, data: &[u8], to: &Addr) -> io::Result<()> {
        let sent = match (self.socket()?, to) {
            (DgramSocket::Udp(s), Addr::Inet(a)) => s.send_to(data, *a)?,
            (DgramSocket::Unix(s), Addr::Unix(Some(path))) => s.send_to(data, path)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot send to {to} from this socket"),
                ))
            }
        };
        whole(sent, data.len())
    }

    /// Sends one datagram to the connected peer (see [`connect`](Self::connect)).
    ///
    /// # Errors
    /// Not connected, or the send failed; a refusal reported for an earlier send
    /// (ICMP) can surface here or in `error_received`.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let sent = match self.socket()? {
            DgramSocket::Udp(s) => s.send(data)?,
            DgramSocket::Unix(s) => s.send(data)?,
        };
        whole(sent, data.len())
    }

    /// Connects the socket: `send` goes to `to`, only datagrams from `to` are
    /// received, and ICMP errors for it are reported.
    ///
    /// # Errors
    /// The address does not suit this socket, or the connect failed.
    pub fn connect(&mut self, to: &Addr) -> io::Result<()> {
        match (self.socket()?, to) {
            (DgramSocket::Udp(s), Addr::Inet(a)) => s.connect(*a),
            (DgramSocket::Unix(s), Addr::Unix(Some(path))) => s.connect(path),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot connect this socket to {to}"),
            )),
        }
    }

    /// The address this socket is bound to.
    pub fn local_addr(&self) -> Option<Addr> {
        self.socket().ok().and_then(|s| s.local_addr())
    }

    /// The largest datagram this socket accepts.
    pub fn max_datagram_bytes(&self) -> usize {
        self.core.datagram(self.id).map_or(0, |d| d.max_bytes)
    }

    /// Closes the socket once the current callback returns; `stopped` follows.
    pub fn close(&mut self) {
        self.core.close_datagram(self.id);
    }

    /// Stream connection `id` of the same reactor, with the verbs a
    /// [`Context`](crate::Context) has for its own connection:
    /// `cx.conn(id).write(..)` relays a datagram to a connection. As from a
    /// `Context`, closes and watermark notices take effect after this callback
    /// returns.
    pub fn conn(&mut self, id: ConnId) -> ConnRef<'_> {
        ConnRef::in_callback(&mut *self.core, id)
    }

    /// Sends `data` to a stream connection of the same reactor.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).write(data)")]
    pub fn write_to(&mut self, conn: ConnId, data: &[u8]) -> bool {
        self.conn(conn).write(data)
    }

    /// Asks the reactor to stop gracefully.
    pub fn stop_reactor(&mut self) {
        self.core.stop();
    }
}

fn whole(sent: usize, len: usize) -> io::Result<()> {
    if sent == len {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {len} bytes"),
        ))
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
        let socket = mio::net::UdpSocket::bind(addr)?;
        self.core.add_datagram(
            DgramSocket::Udp(socket),
            None,
            max_datagram_bytes,
            Box::new(protocol),
        )
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
        let socket = bind_unix_datagram(path)?;
        self.core.add_datagram(
            DgramSocket::Unix(socket),
            Some(path.to_path_buf()),
            max_datagram_bytes,
            Box::new(protocol),
        )
    }

    /// Sends one datagram from socket `id` to `to`, as [`DatagramContext::send_to`]:
    /// for replies computed elsewhere (a pool job, another thread through a
    /// [`Handle`](crate::Handle)).
    ///
    /// # Errors
    /// The socket is closed, or the send failed.
    pub fn send_datagram(&mut self, id: DatagramId, data: &[u8], to: &Addr) -> io::Result<()> {
        if self.core.datagram(id).is_none() {
            return Err(not_open());
        }
        DatagramContext {
            core: &mut self.core,
            id,
        }
        .send_to(data, to)
    }

    /// The descriptor of datagram socket `id` (none once it is closing), for the
    /// `socketserver` module: it clones it to send replies straight from its worker
    /// threads, where a `Handle` round trip would hold a reply until the reactor's
    /// next turn. A clone shares the socket's non-blocking mode; it must only send,
    /// since receiving is the reactor's.
    pub(crate) fn datagram_fd(&self, id: DatagramId) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        let d = self.core.datagram(id).filter(|d| !d.closing)?;
        Some(match &d.socket {
            DgramSocket::Udp(s) => s.as_fd(),
            DgramSocket::Unix(s) => s.as_fd(),
        })
    }

    /// The address a datagram socket is bound to.
    pub fn datagram_addr(&self, id: DatagramId) -> Option<Addr> {
        self.core.datagram(id).and_then(|d| d.socket.local_addr())
    }

    /// Closes a datagram socket; its protocol's `stopped` runs. False if it was
    /// already closed.
    pub fn close_datagram(&mut self, id: DatagramId) -> bool {
        let open = self.core.datagram(id).is_some_and(|d| !d.closing);
        self.core.close_datagram(id);
        self.core.settle_datagrams();
        open
    }
}

impl Core {
    pub(crate) fn datagram(&self, id: DatagramId) -> Option<&Datagram> {
        self.k
            .datagrams
            .get(id.index as usize)
            .filter(|d| d.generation == id.generation)
    }

    fn datagram_mut(&mut self, id: DatagramId) -> Option<&mut Datagram> {
        self.k
            .datagrams
            .get_mut(id.index as usize)
            .filter(|d| d.generation == id.generation)
    }

    pub(crate) fn datagram_ids(&self) -> Vec<DatagramId> {
        self.k
            .datagrams
            .iter()
            .map(|(i, d)| DatagramId {
                index: i as u32,
                generation: d.generation,
            })
            .collect()
    }

    fn add_datagram(
        &mut self,
        mut socket: DgramSocket,
        path: Option<std::path::PathBuf>,
        max_bytes: usize,
        protocol: Box<dyn DatagramProtocol>,
    ) -> io::Result<DatagramId> {
        let generation = self.next_generation();
        let entry = self.k.datagrams.vacant_entry();
        let id = DatagramId {
            index: entry.key() as u32,
            generation,
        };
        let registered = self.k.poll.registry().register(
            socket.source(),
            datagram_token(id),
            Interest::READABLE,
        );
        if let Err(e) = registered {
            if let Some(p) = &path {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        entry.insert(Datagram {
            generation,
            socket,
            protocol: Some(protocol),
            max_bytes,
            path,
            closing: false,
            in_ready: false,
        });
        // One more byte than the largest datagram, to tell "too large" from "exactly
        // the maximum".
        if self.read_buf.len() < max_bytes + 1 {
            self.read_buf.resize(max_bytes + 1, 0);
        }
        self.invoke_datagram(id, |p, cx| p.started(cx));
        self.settle_datagrams();
        Ok(id)
    }

    /// Runs one datagram-protocol callback, catching a panic (logged; the socket
    /// stays open).
    fn invoke_datagram(
        &mut self,
        id: DatagramId,
        f: impl FnOnce(&mut dyn DatagramProtocol, &mut DatagramContext<'_>),
    ) {
        let Some(mut protocol) = self.datagram_mut(id).and_then(|d| d.protocol.take()) else {
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cx = DatagramContext { core: self, id };
            f(&mut *protocol, &mut cx);
        }));
        if let Err(panic) = result {
            log::error!("{id}: callback panicked: {}", panic_message(&*panic));
        }
        if let Some(d) = self.datagram_mut(id) {
            d.protocol = Some(protocol);
        }
        self.settle();
    }

    pub(crate) fn datagram_ready(&mut self, id: DatagramId) {
        for _ in 0..DATAGRAM_BUDGET {
            let mut buf = std::mem::take(&mut self.read_buf);
            let Some(d) = self.datagram_mut(id).filter(|d| !d.closing) else {
                self.read_buf = buf;
                return;
            };
            d.in_ready = false;
            let limit = d.max_bytes + 1;
            let result = d.socket.recv_from(&mut buf[..limit]);
            match result {
                Ok((n, from)) if n == limit => {
                    self.read_buf = buf;
                    self.invoke_datagram(id, |p, cx| p.datagram_too_large(cx, &from));
                }
                Ok((n, from)) => {
                    self.invoke_datagram(id, |p, cx| p.datagram_received(cx, &buf[..n], &from));
                    self.read_buf = buf;
                }
                Err(e) => {
                    self.read_buf = buf;
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => {}
                        _ => self.invoke_datagram(id, |p, cx| p.error_received(cx, e)),
                    }
                }
            }
        }
        if let Some(d) = self.datagram_mut(id) {
            if !d.in_ready {
                d.in_ready = true;
                self.ready.push(Source::Datagram(id));
            }
        }
    }

    pub(crate) fn close_datagram(&mut self, id: DatagramId) {
        if let Some(d) = self.datagram_mut(id) {
            d.closing = true;
        }
    }

    /// Removes the datagram sockets marked closing, calling `stopped` on each.
    pub(crate) fn settle_datagrams(&mut self) {
        let closing: Vec<DatagramId> = self
            .k
            .datagrams
            .iter()
            .filter(|(_, d)| d.closing && d.protocol.is_some())
            .map(|(i, d)| DatagramId {
                index: i as u32,
                generation: d.generation,
            })
            .collect();
        for id in closing {
            let mut d = self.k.datagrams.remove(id.index as usize);
            let _ = self.k.poll.registry().deregister(d.socket.source());
            if let Some(path) = &d.path {
                let _ = std::fs::remove_file(path);
            }
            drop(d.socket);
            log::debug!("{id}: closed");
            if let Some(mut protocol) = d.protocol.take() {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let mut cx = DatagramContext { core: self, id };
                    protocol.stopped(&mut cx);
                }));
                if let Err(panic) = result {
                    log::error!("{id}: stopped panicked: {}", panic_message(&*panic));
                }
                self.settle();
            }
        }
    }
}
