//! Protocols, factories and the reason a connection ended.
//!
//! A [`Protocol`] is one connection's state machine: the reactor calls it when the
//! connection is made, when bytes arrive, when the peer shuts its write side, when the
//! write buffer crosses a watermark and, exactly once, when the connection is lost.
//! A [`Factory`] builds one protocol per accepted connection and may refuse a peer.

use std::any::Any;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::transport::Context;

/// One connection's callbacks, in the manner of Twisted's `Protocol`.
///
/// Every callback runs on the reactor thread and gets a [`Context`] through which it
/// writes, closes, pauses, sets timers and reaches other connections. Callbacks never
/// run concurrently and never re-enter each other: a close or a watermark notice caused
/// inside a callback is delivered after that callback returns.
///
/// Only [`data_received`](Protocol::data_received) has no default.
///
/// A panic in any callback is caught at the connection boundary: it is logged with the
/// peer address, the connection is closed with [`Reason::Panic`], and the reactor goes
/// on serving everyone else.
///
/// # Examples
///
/// ```
/// use twistor::{Context, Protocol};
///
/// /// Echoes every byte back, as Twisted's `Echo`.
/// struct Echo;
///
/// impl Protocol for Echo {
///     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
///         cx.write(data);
///     }
/// }
/// ```
pub trait Protocol: Any {
    /// The connection is established. Called once, before any other callback.
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// Bytes arrived. `data` is never empty; its chunking is arbitrary.
    ///
    /// `data` borrows the reactor's shared read buffer: copy what you keep.
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]);

    /// The peer shut its write side (TCP half-close); no more data will arrive.
    ///
    /// The default flushes what is queued and then closes, which is what a protocol
    /// that does not care about half-close wants. A half-close aware protocol overrides
    /// this, keeps writing, and calls [`Context::lose_connection`] when it is done.
    fn read_eof(&mut self, cx: &mut Context<'_>) {
        cx.lose_connection();
    }

    /// The connection is gone; called exactly once per connection that was made.
    ///
    /// The socket is already closed: writes through `cx` to this connection are
    /// dropped, but `cx` still reaches other connections (to tell a chat room that a
    /// member left, say).
    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        let _ = (cx, reason);
    }

    /// An outgoing connection (see [`Reactor::connect_tcp`](crate::Reactor::connect_tcp))
    /// could not be made: refused, unreachable or timed out.
    ///
    /// `connection_made` and `connection_lost` are not called for such a connection.
    fn connection_failed(&mut self, cx: &mut Context<'_>, error: io::Error) {
        let _ = cx;
        log::debug!("connection failed: {error}");
    }

    /// Reading was resumed after [`Context::pause_reading`]; called on the reactor's
    /// next turn, before any new data is read.
    ///
    /// A framer that kept part of a chunk back while paused delivers it here (what
    /// Twisted's `resumeProducing` does with `dataReceived(b"")`). The default does
    /// nothing.
    fn reading_resumed(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// The write buffer passed the high watermark: stop producing until
    /// [`resume_producing`](Protocol::resume_producing).
    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// The write buffer drained to the low watermark: producing may go on.
    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// The reactor is stopping gracefully ([`Reactor::stop`](crate::Reactor::stop),
    /// or a signal with `stop_on_signals`): this connection is closed gracefully as
    /// soon as this returns, after what it writes here. A protocol with a goodbye of
    /// its own sends it here: a WebSocket's close frame with 1001 "going away" (what
    /// [`WebSocket`](crate::websocket::WebSocket) does), a "server shutting down"
    /// line. Called once per made connection, in no particular order; not for
    /// connects still in progress. The default does nothing.
    fn stopping(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }
}

/// Builds one [`Protocol`] per accepted connection, as Twisted's `Factory`.
///
/// A closure `FnMut(&Addr) -> Option<P>` is a factory.
///
/// # Examples
///
/// ```
/// use twistor::{Addr, Context, Protocol, Reactor};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, cx: &mut Context<'_>) {
///         cx.write(b"hello\n");
///         cx.lose_connection();
///     }
///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
/// }
///
/// let mut reactor = Reactor::new()?;
/// // Refuse peers outside loopback, as socketserver's verify_request would.
/// let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), |peer: &Addr| {
///     peer.is_loopback().then_some(Hello)
/// })?;
/// assert_ne!(port.local_addr.port(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Factory: 'static {
    /// The protocol this factory builds.
    type Protocol: Protocol;

    /// Builds the protocol for a new connection from `peer`, or refuses it with `None`
    /// (the socket is then closed at once; socketserver's `verify_request`).
    fn build(&mut self, peer: &Addr) -> Option<Self::Protocol>;

    /// The factory's listener started listening.
    fn started(&mut self) {}

    /// The factory's listener stopped listening (closed, or the reactor stopped).
    fn stopped(&mut self) {}
}

impl<F, P> Factory for F
where
    F: FnMut(&Addr) -> Option<P> + 'static,
    P: Protocol,
{
    type Protocol = P;

    fn build(&mut self, peer: &Addr) -> Option<P> {
        self(peer)
    }
}

/// A socket address: an internet address, or a Unix-domain path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix-domain socket path; `None` for an unnamed socket.
    Unix(Option<PathBuf>),
    /// The process's standard input and output (see [`Reactor::stdio`](crate::Reactor::stdio)).
    Stdio,
}

impl Addr {
    /// The internet address, if this is one.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Addr::Inet(a) => Some(*a),
            Addr::Unix(_) | Addr::Stdio => None,
        }
    }

    /// True for a loopback internet address and for every local one (Unix-domain,
    /// stdio).
    pub fn is_loopback(&self) -> bool {
        match self {
            Addr::Inet(a) => a.ip().is_loopback(),
            Addr::Unix(_) | Addr::Stdio => true,
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Self {
        Addr::Inet(a)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Inet(a) => a.fmt(f),
            Addr::Unix(Some(p)) => p.display().fmt(f),
            Addr::Unix(None) => f.write_str("(unnamed)"),
            Addr::Stdio => f.write_str("stdio"),
        }
    }
}

/// Who is on the other end of a Unix-domain connection, as the kernel saw it at
/// connect time (SO_PEERCRED). See [`Context::peer_credentials`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    /// The peer's process id.
    pub pid: u32,
    /// The peer's user id.
    pub uid: u32,
    /// The peer's group id.
    pub gid: u32,
}

/// Why a connection ended, handed to [`Protocol::connection_lost`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Reason {
    /// A clean close: we called `lose_connection`, everything queued went to the
    /// kernel, and the peer then ended its side (see `Builder::linger`); or the peer
    /// closed cleanly (Twisted's `ConnectionDone`).
    Done,
    /// The peer went away uncleanly: reset, broken pipe (Twisted's `ConnectionLost`).
    Lost(io::Error),
    /// We called `abort_connection`; queued bytes were dropped and the peer saw a reset.
    Aborted,
    /// A deadline or bound passed: the idle timeout, or a graceful close or shutdown
    /// that the peer did not let finish in time (it did not take the queued bytes,
    /// or, while we lingered after our end, did not end its own within the linger's
    /// time or byte bound), or pool jobs the close waited for that did not finish.
    TimedOut,
    /// The write buffer would have passed its cap (a peer that does not read); queued
    /// bytes were dropped.
    WriteOverflow,
    /// Another I/O error on the socket.
    Io(io::Error),
    /// A callback of this connection panicked; the message is the panic's.
    Panic(String),
    /// TLS failed: the handshake (a certificate not trusted, no version or cipher
    /// suite in common, bytes that are not TLS, the handshake's timeout or byte
    /// bound), or a record that did not decrypt. For rustls's own errors the
    /// `io::Error` wraps the `rustls::Error` (`get_ref()` and `downcast_ref`); the
    /// alert it calls for was sent before the close.
    Tls(io::Error),
    /// The peer ended a TLS connection without `close_notify` (a TCP close after the
    /// handshake): what it sent may have been cut short by an attacker or a crash.
    Truncated,
}

impl Reason {
    /// True for [`Reason::Done`].
    pub fn is_clean(&self) -> bool {
        matches!(self, Reason::Done)
    }

    /// A copy (`io::Error` is not `Clone`: its kind and message are kept).
    pub(crate) fn duplicate(&self) -> Reason {
        match self {
            Reason::Done => Reason::Done,
            Reason::Aborted => Reason::Aborted,
            Reason::TimedOut => Reason::TimedOut,
            Reason::WriteOverflow => Reason::WriteOverflow,
            Reason::Lost(e) => Reason::Lost(io::Error::new(e.kind(), e.to_string())),
            Reason::Io(e) => Reason::Io(io::Error::new(e.kind(), e.to_string())),
            Reason::Panic(m) => Reason::Panic(m.clone()),
            Reason::Tls(e) => Reason::Tls(duplicate_tls_error(e)),
            Reason::Truncated => Reason::Truncated,
        }
    }

    /// Sorts an I/O error into [`Reason::Lost`] (the peer's doing) or [`Reason::Io`].
    pub(crate) fn from_io(e: io::Error) -> Reason {
        use io::ErrorKind::*;
        match e.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Reason::Lost(e),
            TimedOut => Reason::TimedOut,
            _ => Reason::Io(e),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Done => f.write_str("closed cleanly"),
            Reason::Lost(e) => write!(f, "connection lost: {e}"),
            Reason::Aborted => f.write_str("aborted"),
            Reason::TimedOut => f.write_str("timed out"),
            Reason::WriteOverflow => f.write_str("write buffer overflow"),
            Reason::Io(e) => write!(f, "I/O error: {e}"),
            Reason::Panic(m) => write!(f, "callback panicked: {m}"),
            Reason::Tls(e) => write!(f, "TLS error: {e}"),
            Reason::Truncated => f.write_str("TLS connection closed without close_notify"),
        }
    }
}

/// A copy of a TLS error that keeps the `rustls::Error` inside it, if any.
fn duplicate_tls_error(e: &io::Error) -> io::Error {
    #[cfg(feature = "tls")]
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return io::Error::new(e.kind(), inner.clone());
    }
    io::Error::new(e.kind(), e.to_string())
}

/// The message of a caught panic, for logs and `Reason::Panic`.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}
