//! The connection table: ids, tokens, and what the reactor keeps per socket.
//!
//! Connections and listeners live in `Slab`s. Their public ids pair the slab index
//! with a generation, and so does the `mio::Token` each socket is registered with: an
//! event or a late timer for a connection that is gone can never reach a newer one in
//! the same slot.
//!
//! Invariant: nothing outside `reactor/` sees a `mio::Token`.

use std::fmt;
use std::io::{self, IoSlice, Read};
use std::net::Shutdown;

use mio::Token;

use crate::net;
use crate::protocol::{Addr, Factory, Protocol, Reason};
use crate::timer::TimerId;
use crate::transport::WriteQueue;

/// Identifies a connection for its whole life.
///
/// Ids carry a generation: once a connection is lost its id stays dead, even after a
/// new connection reuses its slot, so a late timer, pool result or `write_to` for it
/// does nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// An id that no reactor ever hands out, for connections that never got a slot.
    pub(crate) const fn detached(generation: u32) -> ConnId {
        ConnId {
            index: u32::MAX,
            generation,
        }
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({}.{})", self.index, self.generation)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {}.{}", self.index, self.generation)
    }
}

/// Identifies a listening socket.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ListenerId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// Identifies a datagram socket (UDP or Unix datagram).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DatagramId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

// Token layout: kind in the low 2 bits, slab index in the next 30, generation in the
// high 32 (tokens are 64-bit on every platform twistor targets).
const KIND_BITS: u32 = 2;
const KIND_WAKER: usize = 0;
const KIND_CONN: usize = 1;
const KIND_LISTENER: usize = 2;
const KIND_DATAGRAM: usize = 3;

/// The most slots a table can have, so that an index fits its 30 token bits.
pub(crate) const MAX_SLOTS: usize = 1 << 30;

pub(crate) const WAKER_TOKEN: Token = Token(KIND_WAKER);

fn token(kind: usize, index: u32, generation: u32) -> Token {
    Token(((generation as usize) << 32) | ((index as usize) << KIND_BITS) | kind)
}

pub(crate) fn conn_token(id: ConnId) -> Token {
    token(KIND_CONN, id.index, id.generation)
}

pub(crate) fn listener_token(id: ListenerId) -> Token {
    token(KIND_LISTENER, id.index, id.generation)
}

pub(crate) fn datagram_token(id: DatagramId) -> Token {
    token(KIND_DATAGRAM, id.index, id.generation)
}

/// What an event's token points at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Source {
    Waker,
    Conn(ConnId),
    Listener(ListenerId),
    Datagram(DatagramId),
}

pub(crate) fn decode(token: Token) -> Source {
    let index = ((token.0 & 0xFFFF_FFFF) >> KIND_BITS) as u32;
    let generation = (token.0 >> 32) as u32;
    match token.0 & ((1 << KIND_BITS) - 1) {
        KIND_CONN => Source::Conn(ConnId { index, generation }),
        KIND_LISTENER => Source::Listener(ListenerId { index, generation }),
        KIND_DATAGRAM => Source::Datagram(DatagramId { index, generation }),
        _ => Source::Waker,
    }
}

/// A connected stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
    Stdio(Box<crate::stdio::Stdio>),
}

impl Stream {
    pub(crate) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
            Stream::Stdio(s) => &mut **s,
        }
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Stdio(s) => s.read(buf),
        }
    }

    /// One write system call: for a socket, `send(2)` for one slice and `sendmsg(2)`
    /// for several (see [`net::send_slices`]).
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => net::send_slices(&*s, bufs),
            Stream::Unix(s) => net::send_slices(&*s, bufs),
            Stream::Stdio(s) => s.write_vectored(bufs),
        }
    }

    /// Whether a graceful close lingers (a socket, whose kernel would answer unread
    /// input after `close` with a reset), rather than ending once flushed (stdio).
    pub(crate) fn lingers(&self) -> bool {
        !matches!(self, Stream::Stdio(_))
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
            // stdout is the process's too: it is not closed under it.
            Stream::Stdio(_) => Ok(()),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
            Stream::Stdio(_) => Ok(None),
        }
    }

    pub(crate) fn is_connected(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(drop),
            Stream::Unix(s) => s.peer_addr().map(drop),
            Stream::Stdio(_) => Ok(()),
        }
    }

    pub(crate) fn local_addr(&self) -> Option<Addr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok().map(Addr::Inet),
            Stream::Unix(s) => s
                .local_addr()
                .ok()
                .map(|a| Addr::Unix(a.as_pathname().map(Into::into))),
            Stream::Stdio(_) => Some(Addr::Stdio),
        }
    }

    pub(crate) fn peer_credentials(&self) -> Option<crate::protocol::PeerCredentials> {
        match self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Stream::Unix(s) => rustix::net::sockopt::socket_peercred(s).ok().map(|c| {
                crate::protocol::PeerCredentials {
                    pid: c.pid.as_raw_nonzero().get() as u32,
                    uid: c.uid.as_raw(),
                    gid: c.gid.as_raw(),
                }
            }),
            _ => None,
        }
    }

    pub(crate) fn tcp(&self) -> io::Result<&mio::net::TcpStream> {
        match self {
            Stream::Tcp(s) => Ok(s),
            Stream::Unix(_) | Stream::Stdio(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a TCP connection",
            )),
        }
    }
}

/// Everything the reactor keeps for one connection.
pub(crate) struct Conn {
    pub(crate) generation: u32,
    pub(crate) stream: Stream,
    /// Taken out while one of its callbacks runs (callbacks never nest for one
    /// connection), put back after.
    pub(crate) protocol: Option<Box<dyn Protocol>>,
    pub(crate) peer: Addr,
    pub(crate) out: WriteQueue,
    /// Timers that die with this connection.
    pub(crate) timers: Vec<TimerId>,
    /// A close decided but not yet carried out (it waits for the current callback).
    pub(crate) close: Option<Box<Reason>>,
    pub(crate) last_read: std::time::Instant,
    /// `connection_made` ran, so `connection_lost` is owed.
    pub(crate) made: bool,
    pub(crate) connecting: bool,
    /// The protocol wants data (not paused).
    pub(crate) reading: bool,
    /// `reading_resumed` is owed before the next read.
    pub(crate) resumed: bool,
    pub(crate) read_eof: bool,
    /// `lose_connection` was called: close once `out` drains and `jobs` is zero.
    pub(crate) losing: bool,
    /// A graceful close flushed and shut the write side; input is read and discarded
    /// until the peer closes (see `Builder::linger`).
    pub(crate) lingering: bool,
    /// A pool job's result is being delivered: its writes are accepted even while the
    /// connection is closing (a graceful close waits for them).
    pub(crate) job_writes: bool,
    /// Pool jobs bound to this connection whose results are not back yet.
    pub(crate) jobs: u32,
    /// Bytes read and discarded while lingering.
    pub(crate) discarded: u32,
    pub(crate) shutdown_write: bool,
    pub(crate) write_shut: bool,
    /// The protocol was (or is about to be) told to pause producing.
    pub(crate) producer_paused: bool,
    /// `pause_producing` is owed once the current callback returns.
    pub(crate) notify_pause: bool,
    /// Queued in the reactor's dirty list.
    pub(crate) dirty: bool,
    /// Queued in the reactor's ready list, to read again without an event.
    pub(crate) in_ready: bool,
    /// `out` holds small writes not yet offered to the kernel; the connection is in
    /// the reactor's corked list, flushed at the end of the turn.
    pub(crate) corked: bool,
}

impl Conn {
    pub(crate) fn new(
        generation: u32,
        stream: Stream,
        peer: Addr,
        protocol: Box<dyn Protocol>,
        connecting: bool,
        now: std::time::Instant,
    ) -> Conn {
        Conn {
            generation,
            stream,
            protocol: Some(protocol),
            peer,
            out: WriteQueue::default(),
            timers: Vec::new(),
            close: None,
            last_read: now,
            made: false,
            connecting,
            reading: true,
            resumed: false,
            read_eof: false,
            losing: false,
            lingering: false,
            job_writes: false,
            jobs: 0,
            discarded: 0,
            shutdown_write: false,
            write_shut: false,
            producer_paused: false,
            notify_pause: false,
            dirty: false,
            in_ready: false,
            corked: false,
        }
    }

    /// Closing or gone, as the protocol sees it: no more writes are accepted.
    pub(crate) fn is_closing(&self) -> bool {
        self.losing || self.close.is_some()
    }

    pub(crate) fn wants_read(&self) -> bool {
        self.reading && !self.read_eof && !self.connecting && !self.is_closing()
    }

    pub(crate) fn accepts_writes(&self) -> bool {
        self.close.is_none() && (!self.losing || self.job_writes) && !self.shutdown_write
    }
}

/// A factory with its protocol type erased, so that listeners of different protocols
/// share one table.
pub(crate) trait AnyFactory {
    /// Takes an accepted socket away from the reactor; `None` if it was taken.
    fn handoff(&mut self, stream: Stream, peer: &Addr) -> Option<Stream> {
        let _ = peer;
        Some(stream)
    }
    fn build(&mut self, peer: &Addr) -> Option<Box<dyn Protocol>>;
    fn started(&mut self);
    fn stopped(&mut self);
}

/// An accepted socket handed over to its owner, out of the reactor's hands and in
/// blocking mode (see `Reactor::listen_tcp_handoff`).
#[derive(Debug)]
pub enum Accepted {
    /// A TCP connection.
    Tcp(std::net::TcpStream),
    /// A Unix-domain stream connection.
    Unix(std::os::unix::net::UnixStream),
}

/// A listener whose accepted sockets go to a closure instead of a protocol.
pub(crate) struct Handoff<F>(pub(crate) F);

impl<F: FnMut(Accepted, &Addr) + 'static> AnyFactory for Handoff<F> {
    fn handoff(&mut self, stream: Stream, peer: &Addr) -> Option<Stream> {
        let accepted = match stream {
            Stream::Tcp(s) => Accepted::Tcp(s.into()),
            Stream::Unix(s) => Accepted::Unix(s.into()),
            // Listeners accept sockets only.
            Stream::Stdio(s) => return Some(Stream::Stdio(s)),
        };
        let blocking = match &accepted {
            Accepted::Tcp(s) => s.set_nonblocking(false),
            Accepted::Unix(s) => s.set_nonblocking(false),
        };
        match blocking {
            Ok(()) => (self.0)(accepted, peer),
            Err(e) => log::warn!("handing over {peer} failed: {e}"),
        }
        None
    }

    fn build(&mut self, _: &Addr) -> Option<Box<dyn Protocol>> {
        None
    }

    fn started(&mut self) {}

    fn stopped(&mut self) {}
}

impl<F: Factory> AnyFactory for F {
    fn build(&mut self, peer: &Addr) -> Option<Box<dyn Protocol>> {
        Factory::build(self, peer).map(|p| Box::new(p) as Box<dyn Protocol>)
    }

    fn started(&mut self) {
        Factory::started(self)
    }

    fn stopped(&mut self) {
        Factory::stopped(self)
    }
}

/// A listening stream socket.
pub(crate) enum ListenSocket {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl ListenSocket {
    pub(crate) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            ListenSocket::Tcp(s) => s,
            ListenSocket::Unix(s) => s,
        }
    }

    pub(crate) fn accept(&self) -> io::Result<(Stream, Addr)> {
        match self {
            ListenSocket::Tcp(l) => {
                let (s, peer) = l.accept()?;
                // Small writes are the common case for the protocols twistor serves;
                // Nagle would hold them back for an ACK.
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), Addr::Inet(peer)))
            }
            ListenSocket::Unix(l) => {
                let (s, peer) = l.accept()?;
                Ok((
                    Stream::Unix(s),
                    Addr::Unix(peer.as_pathname().map(Into::into)),
                ))
            }
        }
    }
}

pub(crate) struct Listener {
    pub(crate) generation: u32,
    pub(crate) socket: ListenSocket,
    pub(crate) factory: Box<dyn AnyFactory>,
    pub(crate) local: Addr,
    /// Accepting is suspended after EMFILE/ENFILE until this retry timer fires or a
    /// descriptor frees up.
    pub(crate) backoff: Option<TimerId>,
    pub(crate) in_ready: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection costs in the table (the budget is 256 bytes
    /// of server memory per idle connection, all included): keep the slot small.
    #[test]
    fn a_connection_slot_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 160, "Conn is {size} bytes");
    }

    #[test]
    fn tokens_round_trip_with_generation() {
        let id = ConnId {
            index: (MAX_SLOTS - 1) as u32,
            generation: u32::MAX,
        };
        assert_eq!(decode(conn_token(id)), Source::Conn(id));
        let l = ListenerId {
            index: 7,
            generation: 3,
        };
        assert_eq!(decode(listener_token(l)), Source::Listener(l));
        assert_eq!(decode(WAKER_TOKEN), Source::Waker);
        let d = DatagramId {
            index: 7,
            generation: 3,
        };
        assert_eq!(decode(datagram_token(d)), Source::Datagram(d));
        let older = ConnId {
            index: 7,
            generation: 2,
        };
        assert_ne!(
            conn_token(older),
            conn_token(ConnId {
                index: 7,
                generation: 3
            })
        );
    }
}
