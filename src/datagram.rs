//! Datagram protocols and the context handed to their callbacks.
//!
//! A datagram socket has one [`DatagramProtocol`] for all its peers. The core
//! (`core::datagram`) runs it the same way over the reactor's UDP and Unix datagram
//! sockets and over the testing kit's memory sockets: datagrams read in rounds, one
//! larger than the socket's maximum reported and never delivered cut, receive errors
//! (an ICMP "port unreachable" on a connected socket, say) handed to `error_received`
//! with the socket left open, a panic dropping only the datagram that caused it.
//!
//! [`DatagramContext`] is, like [`Context`](crate::Context), a driver (the core, as
//! `&mut dyn DatagramDriver`) plus the socket's id, so a protocol runs unchanged under
//! the reactor and under [`Harness`](crate::testing::Harness).

use std::any::Any;
use std::fmt;
use std::io;

use crate::ids::{ConnId, DatagramId};
use crate::protocol::Addr;
use crate::transport::{ConnRef, Driver};

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

/// What a [`DatagramContext`] needs from whoever runs the protocol: the core, over the
/// reactor's kernel or the testing kit's. Every method takes the socket it acts on; on
/// a socket that is closing or gone, sends and connects fail with `NotConnected`.
/// As a [`Driver`] too, it reaches the stream connections (`cx.conn(id)`).
pub(crate) trait DatagramDriver: Driver {
    fn datagram_send_to(&mut self, id: DatagramId, data: &[u8], to: &Addr) -> io::Result<()>;
    fn datagram_send(&mut self, id: DatagramId, data: &[u8]) -> io::Result<()>;
    fn datagram_connect(&mut self, id: DatagramId, to: &Addr) -> io::Result<()>;
    fn datagram_local_addr(&self, id: DatagramId) -> Option<Addr>;
    fn max_datagram_bytes(&self, id: DatagramId) -> usize;
    /// Marks the socket closing; the core removes it and calls `stopped` once the
    /// current callback returns.
    fn close_datagram(&mut self, id: DatagramId);
}

/// A datagram protocol's handle on its socket and on the reactor.
pub struct DatagramContext<'a> {
    driver: &'a mut dyn DatagramDriver,
    id: DatagramId,
}

impl fmt::Debug for DatagramContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramContext")
            .field("id", &self.id)
            .finish()
    }
}

impl<'a> DatagramContext<'a> {
    pub(crate) fn new(driver: &'a mut dyn DatagramDriver, id: DatagramId) -> Self {
        DatagramContext { driver, id }
    }

    /// This socket's id.
    pub fn id(&self) -> DatagramId {
        self.id
    }

    /// Sends one datagram to `to`. Datagrams are never queued: if the kernel's
    /// buffer is full the send fails with `WouldBlock` and the datagram is dropped,
    /// as UDP allows.
    ///
    /// # Errors
    /// The send failed (no route, message too long, buffer full, wrong address
    /// family for this socket).
    pub fn send_to(&mut self, data: &[u8], to: &Addr) -> io::Result<()> {
        self.driver.datagram_send_to(self.id, data, to)
    }

    /// Sends one datagram to the connected peer (see [`connect`](Self::connect)).
    ///
    /// # Errors
    /// Not connected, or the send failed; a refusal reported for an earlier send
    /// (ICMP) can surface here or in `error_received`.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.driver.datagram_send(self.id, data)
    }

    /// Connects the socket: `send` goes to `to`, only datagrams from `to` are
    /// received, and ICMP errors for it are reported.
    ///
    /// # Errors
    /// The address does not suit this socket, or the connect failed.
    pub fn connect(&mut self, to: &Addr) -> io::Result<()> {
        self.driver.datagram_connect(self.id, to)
    }

    /// The address this socket is bound to.
    pub fn local_addr(&self) -> Option<Addr> {
        self.driver.datagram_local_addr(self.id)
    }

    /// The largest datagram this socket accepts.
    pub fn max_datagram_bytes(&self) -> usize {
        self.driver.max_datagram_bytes(self.id)
    }

    /// Closes the socket once the current callback returns; `stopped` follows.
    pub fn close(&mut self) {
        self.driver.close_datagram(self.id);
    }

    /// Stream connection `id` of the same reactor, with the verbs a
    /// [`Context`](crate::Context) has for its own connection:
    /// `cx.conn(id).write(..)` relays a datagram to a connection. As from a
    /// `Context`, closes and watermark notices take effect after this callback
    /// returns.
    pub fn conn(&mut self, id: ConnId) -> ConnRef<'_> {
        let driver: &mut dyn Driver = &mut *self.driver;
        ConnRef::in_callback(driver, id)
    }

    /// Sends `data` to a stream connection of the same reactor.
    #[deprecated(since = "0.2.0", note = "use cx.conn(id).write(data)")]
    pub fn write_to(&mut self, conn: ConnId, data: &[u8]) -> bool {
        self.conn(conn).write(data)
    }

    /// Asks the reactor to stop gracefully.
    pub fn stop_reactor(&mut self) {
        self.driver.stop();
    }
}
