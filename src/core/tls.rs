//! TLS in the core: a connection's rustls session sits between its protocol and its
//! stream. The core's hooks (marked "tls hook" in mod.rs) call these.
//!
//! Where the bytes are:
//! - plaintext the protocol wrote and that is not encrypted yet is in the session's
//!   `plain` queue: held until the handshake is done, or corked until the end of the
//!   turn (the connection is on the corked list, as a plaintext one would be);
//! - ciphertext never stays inside rustls: each step that makes some (a handshake
//!   flight, encrypting `plain`, an alert, `close_notify`) moves it to the socket at
//!   once if the connection's queue is empty, and what the kernel does not take to
//!   the queue (`Conn::out`), which drains on writable edges as on plaintext.
//!
//! So `buffered()` is `out` plus `plain`, and both count against the watermarks and the
//! cap; rustls's own buffer limit is off and can never stall a connection.

use std::io::{self, IoSlice};

use slab::Slab;

use super::{Conn, Core, Kernel, Stream, Task};
use crate::ids::ConnId;
use crate::protocol::Reason;
use crate::tls::session::{SendWriter, Session};
use crate::transport::WriteLimits;

/// Room for the plaintext of one read: what one read can hold, plus one record whose
/// start came with the read before.
const RECORD_ROOM: usize = 16 * 1024 + 1024;

/// Connection and session, borrowed together.
fn parts<'a, S>(
    conns: &'a mut Slab<Conn<S>>,
    sessions: &'a mut Slab<Session>,
    id: ConnId,
) -> Option<(&'a mut Conn<S>, &'a mut Session)> {
    let c = conns
        .get_mut(id.index as usize)
        .filter(|c| c.generation == id.generation && c.tls != 0)?;
    let s = sessions.get_mut(c.tls as usize - 1)?;
    Some((c, s))
}

impl<K: Kernel> Core<K> {
    /// Connection `id` (in the table, not made yet) speaks TLS through `session`.
    pub(crate) fn start_tls(&mut self, id: ConnId, session: Session) {
        let key = self.sessions.insert(session);
        match self.conn_mut(id) {
            Some(c) if key < u32::MAX as usize => c.tls = key as u32 + 1,
            _ => {
                self.sessions.remove(key);
            }
        }
    }

    pub(crate) fn session(&self, id: ConnId) -> Option<&Session> {
        let c = self.conn(id).filter(|c| c.tls != 0)?;
        self.sessions.get(c.tls as usize - 1)
    }

    /// The connection left the table: its session goes too.
    pub(crate) fn drop_session(&mut self, tls: u32) {
        if tls != 0 {
            self.sessions.try_remove(tls as usize - 1);
        }
    }

    /// The connection is made: the handshake's deadline, and a client's first flight.
    pub(crate) fn tls_made(&mut self, id: ConnId) {
        let Some(timeout) = self.session(id).map(|s| s.handshake_timeout) else {
            return;
        };
        let due = self.clock() + timeout;
        self.track_timer(id, due, Task::TlsHandshake(id));
        self.tls_write_out(id);
    }

    /// The handshake's deadline passed.
    pub(crate) fn tls_handshake_deadline(&mut self, id: ConnId) {
        let Some(s) = self.session(id) else { return };
        if !s.is_handshaking() {
            return;
        }
        let timeout = s.handshake_timeout;
        if let Some(c) = self.conn(id) {
            log::debug!("{id} {}: TLS handshake not done within {timeout:?}", c.peer);
        }
        let e = io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TLS handshake not done within {timeout:?}"),
        );
        self.close_with(id, Reason::Tls(e));
    }

    /// `send` for a TLS connection: the plaintext joins `plain` (minding the cap and
    /// the high watermark over `plain` and `out` together), corked for the end of the
    /// turn, or encrypted and sent now if it is a lot.
    pub(crate) fn tls_send(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> bool {
        let limits = self.config.write_limits();
        let flush_at = self.config.cork_limit().min(super::DIRECT_WRITE_BYTES);
        let Some((c, s)) = parts(&mut self.conns, &mut self.sessions, id) else {
            return false;
        };
        if s.close_notify_sent {
            log::debug!("{id}: write after close_notify dropped");
            return false;
        }
        let queued = c.out.len();
        let room = WriteLimits {
            write_cap_bytes: limits.write_cap_bytes.saturating_sub(queued),
            high_watermark_bytes: limits.high_watermark_bytes.saturating_sub(queued),
            ..limits
        };
        let push = s
            .plain
            .push_limited(bufs, &room, &mut c.state.producer_paused);
        if !self.after_push(id, push) {
            return false;
        }
        let Some((c, s)) = parts(&mut self.conns, &mut self.sessions, id) else {
            return false;
        };
        if s.is_handshaking() || c.state.is_connecting() {
            // Held: the handshake's end sends it.
            return true;
        }
        if s.plain.len() >= flush_at && (c.out.is_empty() || c.corked) {
            c.corked = false;
            self.tls_write_ready(id);
        } else if !c.corked {
            c.corked = true;
            self.corked.push(id);
        }
        true
    }

    /// Encrypts what may be, and moves rustls's ciphertext to the socket or to the
    /// queue. A write error closes the connection.
    pub(crate) fn tls_write_out(&mut self, id: ConnId) {
        let mut calls = 0;
        let Some((c, s)) = parts(&mut self.conns, &mut self.sessions, id) else {
            return;
        };
        if c.state.is_connecting() {
            return;
        }
        s.encrypt_held();
        let stream = &mut c.stream;
        let direct = c.out.is_empty().then_some(SendWriter {
            send: |bufs: &[IoSlice<'_>]| stream.send(bufs),
            calls: &mut calls,
        });
        let result = s.write_out(direct, &mut c.out);
        self.counters.write_calls += calls;
        if let Err(e) = result {
            return self.close_with(id, Reason::from_io(e));
        }
        // The cap was checked on the plaintext; what encryption adds (a record's
        // header and tag, a handshake flight, an alert) is checked here, so the
        // queue never passes it.
        if c.out.len() + s.plain.len() > self.config.write_cap_bytes {
            self.overflow(id);
        }
    }

    /// `write_ready` for a TLS connection: encrypt, send, drain the queue, then what a
    /// drain sets off.
    pub(crate) fn tls_write_ready(&mut self, id: ConnId) {
        self.tls_write_out(id);
        let Some(c) = self.conn_mut(id) else { return };
        if c.state.close_decided() {
            return;
        }
        if !c.out.is_empty() {
            let stream = &mut c.stream;
            let mut calls = 0;
            let drained = c.out.drain_into(|bufs| {
                calls += 1;
                stream.send(bufs)
            });
            self.counters.write_calls += calls;
            if let Err(e) = drained {
                return self.close_with(id, Reason::from_io(e));
            }
        }
        self.after_drain(id);
    }

    /// Ciphertext read from connection `id`: decrypt, deliver the plaintext in one
    /// `data_received`, send what the handshake calls for. Returns false if the
    /// connection is done reading (closed, failed, or the peer's `close_notify`).
    pub(crate) fn tls_received(&mut self, id: ConnId, cipher: &[u8]) -> bool {
        let mut plain = std::mem::take(&mut self.tls_buf);
        let need = self.read_buf.len().max(cipher.len()) + RECORD_ROOM;
        if plain.len() < need {
            plain.resize(need, 0);
        }
        let Some((_, s)) = parts(&mut self.conns, &mut self.sessions, id) else {
            self.tls_buf = plain;
            return false;
        };
        let got = s.receive(cipher, &mut plain);
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                self.tls_buf = plain;
                self.tls_fail(id, e);
                return false;
            }
        };
        if got.handshake_done {
            if let Some(c) = self.conn(id) {
                log::debug!("{id} {}: TLS handshake done", c.peer);
            }
            // dial hook: a client service's connection is up once it is secured
            // (before the first data_received).
            self.watch_secured(id);
        }
        // The handshake's next flight, session tickets, a key update, or the held
        // plaintext once the handshake is done: sent with the turn's corked writes, so
        // that what the protocol answers to this read goes in the same system call.
        if got.handshake_done || self.session(id).is_some_and(|s| s.wants_write()) {
            if let Some(c) = self.conn_mut(id) {
                if !c.corked {
                    c.corked = true;
                    self.corked.push(id);
                }
            }
        }
        // Plaintext that comes while a close waits for the handshake is not
        // delivered, as input after `lose_connection` is not on plaintext.
        if got.plain > 0 && self.conn(id).is_some_and(|c| c.state.wants_read()) {
            self.invoke(id, |p, cx| p.data_received(cx, &plain[..got.plain]));
        }
        self.tls_buf = plain;
        if got.closed {
            // The peer's close_notify: its side is over, as a FIN is on plaintext.
            let Some(c) = self.conn_mut(id) else {
                return false;
            };
            c.state.saw_eof();
            if c.state.write_shut() {
                self.close_with(id, Reason::Done);
            } else {
                self.invoke(id, |p, cx| p.read_eof(cx));
            }
            return false;
        }
        self.conn(id).is_some_and(|c| !c.state.close_decided())
    }

    /// The stream's end came on a TLS connection: without the peer's `close_notify`,
    /// that is a truncation (or a failed handshake); true if it was handled here.
    pub(crate) fn tls_eof(&mut self, id: ConnId) -> bool {
        let Some(s) = self.session(id) else {
            return false;
        };
        if s.peer_closed {
            return false;
        }
        if s.is_handshaking() {
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed the connection during the TLS handshake",
            );
            self.close_with(id, Reason::Tls(e));
        } else {
            if let Some(c) = self.conn(id) {
                log::debug!("{id} {}: TCP closed without close_notify", c.peer);
            }
            self.close_with(id, Reason::Truncated);
        }
        true
    }

    /// A fatal TLS error: send the alert rustls queued for it (behind what the kernel
    /// has not taken yet, best effort), then close for [`Reason::Tls`].
    fn tls_fail(&mut self, id: ConnId, e: io::Error) {
        if let Some((c, s)) = parts(&mut self.conns, &mut self.sessions, id) {
            log::debug!("{id} {}: TLS error: {e}", c.peer);
            let stream = &mut c.stream;
            let _ = c.out.drain_into(|bufs| stream.send(bufs));
            let mut calls = 0;
            if c.out.is_empty() {
                let direct = Some(SendWriter {
                    send: |bufs: &[IoSlice<'_>]| stream.send(bufs),
                    calls: &mut calls,
                });
                let mut rest = crate::transport::WriteQueue::default();
                let _ = s.write_out(direct, &mut rest);
            }
            self.counters.write_calls += calls;
        }
        self.close_with(id, Reason::Tls(e));
    }

    /// A graceful close has flushed (or a half-close was asked for): queue
    /// `close_notify` and send it. True if the close must wait for it to drain
    /// (`settle` comes back when it has); a close (not a half-close, which goes on
    /// reading) is then bounded by the close timeout, as its flush was.
    pub(crate) fn tls_close_notify(&mut self, id: ConnId) -> bool {
        let close_timeout = self.config.close_timeout;
        let Some((_, s)) = parts(&mut self.conns, &mut self.sessions, id) else {
            return false;
        };
        if s.close_notify_sent || s.failed {
            return false;
        }
        s.encrypt_held();
        s.close_notify();
        self.tls_write_out(id);
        let Some(c) = self.conn(id) else { return false };
        if c.out.is_empty() || c.state.close_decided() {
            return false;
        }
        if !c.state.is_losing() {
            return true;
        }
        // Bounded like the flush before it (a second deadline is harmless: the
        // first to fire closes).
        let due = self.clock() + close_timeout;
        self.track_timer(id, due, Task::CloseDeadline(id));
        true
    }

    /// Whether a `lose_connection` now should abort (Twisted: a close during the
    /// handshake with nothing written has nothing to deliver).
    pub(crate) fn tls_close_aborts(&self, id: ConnId) -> bool {
        self.session(id)
            .is_some_and(|s| s.is_handshaking() && s.plain.is_empty())
    }

    /// Whether a graceful close waits for the handshake (it holds plaintext): the
    /// connection must go on reading for the handshake's sake.
    pub(crate) fn tls_close_waits(&self, id: ConnId) -> bool {
        self.session(id)
            .is_some_and(|s| s.is_handshaking() && !s.failed && !s.plain.is_empty())
    }

    /// A half-close is due on a TLS connection: it waits for the handshake (what was
    /// held is sent after it), then for `close_notify` to drain. True while it waits.
    pub(crate) fn tls_half_close_waits(&mut self, id: ConnId) -> bool {
        match self.session(id) {
            Some(s) if s.is_handshaking() && !s.failed => true,
            Some(_) => self.tls_close_notify(id),
            None => false,
        }
    }

    /// Plaintext written and not encrypted yet.
    pub(crate) fn tls_held(&self, id: ConnId) -> usize {
        self.session(id).map_or(0, |s| s.plain.len())
    }
}
