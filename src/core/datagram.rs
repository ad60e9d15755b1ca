//! Datagram sockets in the core: their table and every rule about them, once.
//!
//! A socket joins with [`Core::add_datagram`] (its protocol's `started` runs); a
//! readable event is [`Core::datagram_ready`]: datagrams are read into the shared
//! buffer, at least one byte larger than the socket's maximum so that a datagram that
//! does not fit is reported to `datagram_too_large` instead of delivered cut, at most
//! [`DATAGRAM_BUDGET`] per event, the rest carried over to the next turn. Receive
//! errors go to `error_received` and the socket stays. A panic drops that datagram
//! only: one socket serves every peer, so closing it would punish them all. A close
//! (the protocol's, the owner's or a stop's) takes effect once the current callback
//! returns ([`Core::settle_datagrams`]): the kernel releases the socket, then
//! `stopped` runs.
//!
//! The socket itself is the kernel's ([`DatagramSocket`], static dispatch): UDP and
//! Unix datagram sockets for the reactor, memory for the testing kit.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{Core, Kernel};
use crate::datagram::{DatagramContext, DatagramDriver, DatagramProtocol};
use crate::ids::{DatagramId, Source};
use crate::protocol::{panic_message, Addr};

/// Datagrams read from one socket per event before others get their turn.
const DATAGRAM_BUDGET: usize = 64;

/// One datagram socket's kernel side: a UDP or Unix datagram socket for the reactor,
/// memory for the testing kit.
pub(crate) trait DatagramSocket {
    /// Receives one datagram into `buf`, cut to its length (the core gives one byte
    /// more than the maximum, to tell "too large" from "exactly the maximum");
    /// `WouldBlock` when none is waiting.
    fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, Addr)>;
    /// Sends one datagram to `to`; `InvalidInput` if `to` does not suit the socket.
    fn send_to(&mut self, data: &[u8], to: &Addr) -> io::Result<usize>;
    /// Sends one datagram to the connected peer.
    fn send(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Connects the socket to `to`; `InvalidInput` if `to` does not suit the socket.
    fn connect(&mut self, to: &Addr) -> io::Result<()>;
    fn local_addr(&self) -> Option<Addr>;
}

/// Everything the core keeps for one datagram socket.
pub(crate) struct Datagram<S> {
    pub(crate) generation: u32,
    pub(crate) socket: S,
    /// Taken out while one of its callbacks runs, put back after.
    protocol: Option<Box<dyn DatagramProtocol>>,
    pub(crate) max_bytes: usize,
    /// Closed by someone; removed by `settle_datagrams` once its protocol is back.
    pub(crate) closing: bool,
    /// Queued in the core's carried-over list: its budget ran out with datagrams left.
    pub(crate) in_ready: bool,
}

fn not_open() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "datagram socket is closed")
}

/// A datagram is sent whole or not at all.
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

impl<K: Kernel> Core<K> {
    pub(crate) fn datagram(&self, id: DatagramId) -> Option<&Datagram<K::Datagram>> {
        self.datagrams
            .get(id.index as usize)
            .filter(|d| d.generation == id.generation)
    }

    pub(crate) fn datagram_mut(&mut self, id: DatagramId) -> Option<&mut Datagram<K::Datagram>> {
        self.datagrams
            .get_mut(id.index as usize)
            .filter(|d| d.generation == id.generation)
    }

    /// Socket `id`, unless it is closing or gone.
    fn open_datagram(&mut self, id: DatagramId) -> io::Result<&mut Datagram<K::Datagram>> {
        self.datagram_mut(id)
            .filter(|d| !d.closing)
            .ok_or_else(not_open)
    }

    /// Socket `id` is in the table and not closing.
    pub(crate) fn is_datagram_open(&self, id: DatagramId) -> bool {
        self.datagram(id).is_some_and(|d| !d.closing)
    }

    /// The protocol of socket `id`, between its callbacks.
    pub(crate) fn datagram_protocol(&self, id: DatagramId) -> Option<&dyn DatagramProtocol> {
        self.datagram(id).and_then(|d| d.protocol.as_deref())
    }

    pub(crate) fn datagram_protocol_mut(
        &mut self,
        id: DatagramId,
    ) -> Option<&mut (dyn DatagramProtocol + 'static)> {
        self.datagram_mut(id)
            .and_then(|d| d.protocol.as_deref_mut())
    }

    /// Puts a socket in the table with `protocol` and runs its `started`. On failure
    /// (the kernel could not register it) the socket is released and the protocol
    /// dropped.
    pub(crate) fn add_datagram(
        &mut self,
        mut socket: K::Datagram,
        max_bytes: usize,
        protocol: Box<dyn DatagramProtocol>,
    ) -> io::Result<DatagramId> {
        let generation = self.next_generation();
        let id = DatagramId {
            index: self.datagrams.vacant_key() as u32,
            generation,
        };
        if let Err(e) = K::register_datagram(self, id, &mut socket) {
            K::release_datagram(self, id, socket);
            return Err(e);
        }
        let index = self.datagrams.insert(Datagram {
            generation,
            socket,
            protocol: Some(protocol),
            max_bytes,
            closing: false,
            in_ready: false,
        });
        debug_assert_eq!(index, id.index as usize);
        // One more byte than the largest datagram, to tell "too large" from "exactly
        // the maximum".
        if self.read_buf.len() < max_bytes + 1 {
            self.read_buf.resize(max_bytes + 1, 0);
        }
        self.invoke_datagram(id, |p, cx| p.started(cx));
        self.settle_datagrams();
        Ok(id)
    }

    /// Runs one callback of socket `id` with its protocol taken out of the table,
    /// catching a panic (logged; the socket stays open), then settles.
    pub(crate) fn invoke_datagram(
        &mut self,
        id: DatagramId,
        f: impl FnOnce(&mut dyn DatagramProtocol, &mut DatagramContext<'_>),
    ) {
        let Some(mut protocol) = self.datagram_mut(id).and_then(|d| d.protocol.take()) else {
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cx = DatagramContext::new(self, id);
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

    /// A readable event (or carried-over work) for socket `id`: receives until the
    /// kernel has none or the budget is spent (then carried over), then carries out
    /// the closes asked for meanwhile.
    pub(crate) fn datagram_ready(&mut self, id: DatagramId) {
        self.receive_datagrams(id);
        self.settle_datagrams();
    }

    /// Serves socket `id` from the carried-over list, if it is still owed a round.
    pub(crate) fn serve_datagram(&mut self, id: DatagramId) {
        if self.datagram(id).is_some_and(|d| d.in_ready) {
            self.datagram_ready(id);
        }
    }

    fn receive_datagrams(&mut self, id: DatagramId) {
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

    /// Marks socket `id` closing: nothing more is received or sent, and
    /// [`settle_datagrams`](Self::settle_datagrams) removes it.
    pub(crate) fn close_datagram(&mut self, id: DatagramId) {
        if let Some(d) = self.datagram_mut(id) {
            d.closing = true;
        }
    }

    /// Closes every datagram socket (a stop, or the reactor's drop); each `stopped`
    /// runs.
    pub(crate) fn close_datagrams(&mut self) {
        for (_, d) in self.datagrams.iter_mut() {
            d.closing = true;
        }
        self.settle_datagrams();
    }

    /// Removes the sockets marked closing whose protocol is in its slot (one closed
    /// inside its own callback waits for that callback to return): the kernel
    /// releases the socket, then `stopped` runs (a panic is logged).
    pub(crate) fn settle_datagrams(&mut self) {
        let closing: Vec<DatagramId> = self
            .datagrams
            .iter()
            .filter(|(_, d)| d.closing && d.protocol.is_some())
            .map(|(i, d)| DatagramId {
                index: i as u32,
                generation: d.generation,
            })
            .collect();
        for id in closing {
            let mut d = self.datagrams.remove(id.index as usize);
            K::release_datagram(self, id, d.socket);
            log::debug!("{id}: closed");
            if let Some(mut protocol) = d.protocol.take() {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let mut cx = DatagramContext::new(self, id);
                    protocol.stopped(&mut cx);
                }));
                if let Err(panic) = result {
                    log::error!("{id}: stopped panicked: {}", panic_message(&*panic));
                }
                K::retire_datagram(self, id, protocol);
                self.settle();
            }
        }
    }
}

impl<K: Kernel> DatagramDriver for Core<K> {
    fn datagram_send_to(&mut self, id: DatagramId, data: &[u8], to: &Addr) -> io::Result<()> {
        let sent = self.open_datagram(id)?.socket.send_to(data, to)?;
        whole(sent, data.len())
    }

    fn datagram_send(&mut self, id: DatagramId, data: &[u8]) -> io::Result<()> {
        let sent = self.open_datagram(id)?.socket.send(data)?;
        whole(sent, data.len())
    }

    fn datagram_connect(&mut self, id: DatagramId, to: &Addr) -> io::Result<()> {
        self.open_datagram(id)?.socket.connect(to)
    }

    fn datagram_local_addr(&self, id: DatagramId) -> Option<Addr> {
        self.datagram(id)
            .filter(|d| !d.closing)
            .and_then(|d| d.socket.local_addr())
    }

    fn max_datagram_bytes(&self, id: DatagramId) -> usize {
        self.datagram(id).map_or(0, |d| d.max_bytes)
    }

    fn close_datagram(&mut self, id: DatagramId) {
        Core::close_datagram(self, id)
    }
}
