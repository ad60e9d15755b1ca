//! The connection table: ids, tokens, and what the reactor keeps per socket.
//!
//! Connections and listeners live in `Slab`s. Their public ids pair the slab index
//! with a generation, and so does the `mio::Token` each socket is registered with: an
//! event or a late timer for a connection that is gone can never reach a newer one in
//! the same slot.
//!
//! Invariant: nothing outside `reactor/` sees a `mio::Token`.

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::time::Duration;

use mio::Token;

pub(crate) use crate::core::MAX_SLOTS;
use crate::ids::{ConnId, DatagramId, ListenerId, Source};
use crate::net;
use crate::protocol::{Addr, Factory, PeerCredentials, Protocol};
use crate::timer::TimerId;

// Token layout: kind in the low 2 bits, slab index in the next 30, generation in the
// high 32 (tokens are 64-bit on every platform twistor targets).
const KIND_BITS: u32 = 2;
const KIND_WAKER: usize = 0;
const KIND_CONN: usize = 1;
const KIND_LISTENER: usize = 2;
const KIND_DATAGRAM: usize = 3;

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

impl crate::core::Stream for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Stdio(s) => s.read(buf),
        }
    }

    /// One write system call: for a socket, `send(2)` for one slice and `sendmsg(2)`
    /// for several (see [`net::send_slices`]).
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => net::send_slices(&*s, bufs),
            Stream::Unix(s) => net::send_slices(&*s, bufs),
            Stream::Stdio(s) => s.write_vectored(bufs),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            // stdout is the process's too: it is not closed under it.
            Stream::Stdio(_) => Ok(()),
        }
    }

    /// Sockets linger after a graceful close; stdio has no peer to reset it.
    fn lingers(&self) -> bool {
        !matches!(self, Stream::Stdio(_))
    }

    fn connect_result(&mut self) -> io::Result<bool> {
        let (error, connected) = match self {
            Stream::Tcp(s) => (s.take_error(), s.peer_addr().map(drop)),
            Stream::Unix(s) => (s.take_error(), s.peer_addr().map(drop)),
            Stream::Stdio(_) => return Ok(true),
        };
        if let Some(e) = error? {
            return Err(e);
        }
        match connected {
            Ok(()) => {
                if let Stream::Tcp(s) = self {
                    // As for accepted sockets: small writes are the common case.
                    let _ = s.set_nodelay(true);
                }
                Ok(true)
            }
            // Writable before the handshake finished: a spurious event, wait.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn local_addr(&self) -> Option<Addr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok().map(Addr::Inet),
            Stream::Unix(s) => s
                .local_addr()
                .ok()
                .map(|a| Addr::Unix(a.as_pathname().map(Into::into))),
            Stream::Stdio(_) => Some(Addr::Stdio),
        }
    }

    fn peer_credentials(&self) -> Option<PeerCredentials> {
        match self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Stream::Unix(s) => {
                rustix::net::sockopt::socket_peercred(s)
                    .ok()
                    .map(|c| PeerCredentials {
                        pid: c.pid.as_raw_nonzero().get() as u32,
                        uid: c.uid.as_raw(),
                        gid: c.gid.as_raw(),
                    })
            }
            _ => None,
        }
    }

    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp()?.set_nodelay(on)
    }

    fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        net::set_keepalive(self.tcp()?, idle)
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
    /// Accepted connections speak TLS with these settings.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsAcceptor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection costs in the table (the budget is 256 bytes
    /// of server memory per idle connection, all included): keep the slot small.
    #[test]
    fn a_connection_slot_stays_small() {
        let size = std::mem::size_of::<crate::core::Conn<Stream>>();
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
