//! One connection's TLS state: rustls's sans-IO connection and the plaintext held for
//! it. Pure: the core moves the bytes (src/core/tls.rs).

use std::io::{self, IoSlice, Read, Write};
use std::time::Duration;

use rustls::Connection;

use super::{TlsInfo, TlsVersion};
use crate::transport::WriteQueue;

/// What feeding ciphertext gave.
#[derive(Default)]
pub(crate) struct Received {
    /// Plaintext bytes written at the start of the buffer given.
    pub(crate) plain: usize,
    /// The peer sent `close_notify`: its side is over.
    pub(crate) closed: bool,
    /// The handshake finished during this call.
    pub(crate) handshake_done: bool,
}

/// One connection's TLS session.
pub(crate) struct Session {
    conn: Connection,
    /// Plaintext written and not yet encrypted: held until the handshake is done, or
    /// corked until the end of the turn.
    pub(crate) plain: WriteQueue,
    /// Ciphertext received while handshaking, against `max_handshake_bytes`.
    handshake_bytes: usize,
    max_handshake_bytes: usize,
    pub(crate) handshake_timeout: Duration,
    /// `close_notify` has been queued.
    pub(crate) close_notify_sent: bool,
    /// The peer's `close_notify` came.
    pub(crate) peer_closed: bool,
    /// A fatal TLS error was seen (its alert may be queued).
    pub(crate) failed: bool,
}

/// An `io::Write` that appends to a [`WriteQueue`]: where ciphertext goes when the
/// kernel is behind.
struct QueueWriter<'a>(&'a mut WriteQueue);

impl Write for QueueWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut n = 0;
        for b in bufs {
            self.0.push(b);
            n += b.len();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An `io::Write` over a gathered-send function (the connection's stream), counting
/// its system calls.
pub(crate) struct SendWriter<'a, F: FnMut(&[IoSlice<'_>]) -> io::Result<usize>> {
    pub(crate) send: F,
    pub(crate) calls: &'a mut u64,
}

impl<F: FnMut(&[IoSlice<'_>]) -> io::Result<usize>> Write for SendWriter<'_, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        *self.calls += 1;
        (self.send)(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Session {
    pub(crate) fn new(
        mut conn: Connection,
        handshake_timeout: Duration,
        max_handshake_bytes: usize,
    ) -> Session {
        // Ciphertext never stays in rustls: each operation that makes some is followed
        // by moving it to the socket or to the connection's queue, where the
        // watermarks and the cap see it. So rustls's own limit (which would turn into
        // short writes) is not needed.
        conn.set_buffer_limit(None);
        Session {
            conn,
            plain: WriteQueue::default(),
            handshake_bytes: 0,
            max_handshake_bytes,
            handshake_timeout,
            close_notify_sent: false,
            peer_closed: false,
            failed: false,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether rustls has ciphertext to send (a handshake flight, a ticket, an alert).
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Encrypts the held plaintext, if the handshake is done.
    pub(crate) fn encrypt_held(&mut self) {
        if self.conn.is_handshaking() || self.plain.is_empty() || self.close_notify_sent {
            return;
        }
        let conn = &mut self.conn;
        // Unlimited: the writer takes everything.
        let _ = self
            .plain
            .drain_into(|bufs| conn.writer().write_vectored(bufs));
        self.plain.clear();
    }

    /// Queues `close_notify`; later writes are dropped.
    pub(crate) fn close_notify(&mut self) {
        if !self.close_notify_sent {
            self.close_notify_sent = true;
            self.plain.clear();
            self.conn.send_close_notify();
        }
    }

    /// Moves rustls's pending ciphertext out: first to `send` (the socket) while it
    /// takes it, if `direct`, then the rest to `queue`.
    pub(crate) fn write_out<F: FnMut(&[IoSlice<'_>]) -> io::Result<usize>>(
        &mut self,
        direct: Option<SendWriter<'_, F>>,
        queue: &mut WriteQueue,
    ) -> io::Result<()> {
        if let Some(mut w) = direct {
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut w) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        let mut q = QueueWriter(queue);
        while self.conn.wants_write() {
            self.conn.write_tls(&mut q)?;
        }
        Ok(())
    }

    /// Feeds ciphertext and takes out the plaintext it gives into `plain` (which must
    /// have room for `cipher.len()` plus one record). Errors are fatal to the session:
    /// the alert, if any, is left to [`write_out`](Self::write_out).
    pub(crate) fn receive(&mut self, mut cipher: &[u8], plain: &mut [u8]) -> io::Result<Received> {
        let mut got = Received::default();
        let handshaking = self.conn.is_handshaking();
        if handshaking {
            self.handshake_bytes += cipher.len();
            if self.handshake_bytes > self.max_handshake_bytes {
                self.failed = true;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS handshake over {} bytes", self.max_handshake_bytes),
                ));
            }
        }
        loop {
            if !cipher.is_empty() && !self.peer_closed {
                match self.conn.read_tls(&mut cipher) {
                    Ok(_) => {}
                    Err(e) => {
                        self.failed = true;
                        return Err(e);
                    }
                }
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.failed = true;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            loop {
                match self.conn.reader().read(&mut plain[got.plain..]) {
                    Ok(0) if got.plain < plain.len() => {
                        got.closed = true;
                        self.peer_closed = true;
                        break;
                    }
                    Ok(n) => {
                        got.plain += n;
                        if got.plain == plain.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        // UnexpectedEof: the peer closed without close_notify.
                        self.failed = true;
                        return Err(e);
                    }
                }
            }
            if cipher.is_empty() || self.peer_closed || got.plain == plain.len() {
                break;
            }
        }
        if handshaking && !self.conn.is_handshaking() {
            got.handshake_done = true;
        }
        if !cipher.is_empty() && !self.peer_closed {
            // Only if `plain` had no room: the caller sizes it so that it cannot.
            self.failed = true;
            return Err(io::Error::other("TLS plaintext buffer too small"));
        }
        Ok(got)
    }

    /// What the handshake settled.
    pub(crate) fn info(&self) -> TlsInfo {
        let (server_name, is_server) = match &self.conn {
            Connection::Server(s) => (s.server_name().map(str::to_owned), true),
            Connection::Client(_) => (None, false),
        };
        TlsInfo {
            handshaking: self.conn.is_handshaking(),
            is_server,
            server_name,
            peer_certificates: self
                .conn
                .peer_certificates()
                .map(|c| c.to_vec())
                .unwrap_or_default(),
            alpn_protocol: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            version: match self.conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_2) => Some(TlsVersion::Tls12),
                Some(rustls::ProtocolVersion::TLSv1_3) => Some(TlsVersion::Tls13),
                _ => None,
            },
            cipher_suite: self
                .conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
        }
    }
}
