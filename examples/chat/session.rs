//! One client's connection to the chat: a [`Session`] under a [`LineReceiver`].
//!
//! The session turns lines into calls on the shared [`Server`], which writes to the
//! members through the session's context; the chat's rules live in the server. The
//! session also watches its own output: while it stays above the high watermark (from
//! `pause_producing` to `resume_producing`) a slow timer runs, and a member whose
//! output has not drained when it fires does not read and is cut off. That rule is
//! [`SlowTimer`]'s, which the WebSocket members (`ws.rs`) follow as well.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::{Context, Reason, TimerId};

use crate::command::{self, Command};
use crate::server::{MemberKey, MemberKind, Server};

/// A chat connection: lines cut at `\n`, handled by a [`Session`].
pub type ChatProtocol = LineReceiver<Session>;

/// The limits of one connection.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// The longest line accepted, `\r\n` not counted: a longer one gets
    /// `* error: line too long` and closes the connection.
    pub max_line_bytes: usize,
    /// How long the member's unsent output may stay above the high watermark before
    /// the member is cut off.
    pub slow_timeout: Duration,
}

/// The protocol for one client connection, sharing `server` with every other: lines
/// end with `\n`, under `limits`.
pub fn protocol(server: Rc<RefCell<Server>>, limits: SessionLimits) -> ChatProtocol {
    let session = Session {
        server,
        key: None,
        limits,
        slow: SlowTimer::new(limits.slow_timeout),
    };
    // One byte more than the limit for the `\r` that may precede `\n`; the length
    // without it is checked in `line_received`.
    let max_length = limits.max_line_bytes.saturating_add(1);
    LineReceiver::new(session)
        .delimiter(b"\n")
        .max_length(max_length)
}

/// One client's connection: its place in the shared [`Server`].
pub struct Session {
    server: Rc<RefCell<Server>>,
    /// `None` before `connection_made` and once the member has left.
    key: Option<MemberKey>,
    limits: SessionLimits,
    slow: SlowTimer,
}

impl Session {
    /// Leaves the server and closes the connection, after sending what was written
    /// to it (a last notice, say).
    fn close(&mut self, cx: &mut LineContext<'_, '_>) {
        self.leave(cx);
        cx.lose_connection();
    }

    /// Leaves the server, if not done yet.
    fn leave(&mut self, cx: &mut LineContext<'_, '_>) {
        if let Some(key) = self.key.take() {
            self.server.borrow_mut().depart(cx, key);
        }
    }

    fn line_too_long(&mut self, cx: &mut LineContext<'_, '_>) {
        log::warn!(
            "{} {}: line over {} bytes; closing",
            cx.id(),
            peer(cx),
            self.limits.max_line_bytes
        );
        if let Some(key) = self.key {
            self.server
                .borrow_mut()
                .notice(cx, key, b"error: line too long");
        }
        self.close(cx);
    }

    /// The slow timer fired: the output has stayed above the high watermark for the
    /// whole slow timeout, so the member is not reading. Its queued output is
    /// dropped; the room hears `* NICK disconnected` and the senders it held back
    /// read again.
    fn too_slow(&mut self, cx: &mut LineContext<'_, '_>) {
        self.slow.fired(cx);
        self.leave(cx);
        cx.abort_connection();
    }
}

/// The peer's address for the log, or nothing.
pub fn peer(cx: &Context<'_>) -> String {
    cx.peer_addr().map_or_else(String::new, |a| a.to_string())
}

/// A member's slow timer, and the flow-control rule of every kind of member
/// connection: the timer runs while the connection's output is above the high
/// watermark (from `pause_producing` to `resume_producing`); when the output drains,
/// the senders held back by the member read again; a member whose output is still
/// above it when the timer fires does not read, and is cut off.
#[derive(Debug)]
pub struct SlowTimer {
    /// How long the output may stay above the high watermark.
    timeout: Duration,
    /// Runs while the output is above the high watermark.
    timer: Option<TimerId>,
}

impl SlowTimer {
    /// A timer of `timeout`, not running.
    pub fn new(timeout: Duration) -> SlowTimer {
        SlowTimer {
            timeout,
            timer: None,
        }
    }

    /// For `pause_producing`: the output passed the high watermark, so the timer
    /// starts, armed by `arm` (which calls the protocol's cut-off after the delay it
    /// is given), unless `member` has left or the timer runs already. (The senders
    /// that wrote to this member were held back already, as they wrote.)
    pub fn start(&mut self, member: Option<MemberKey>, arm: impl FnOnce(Duration) -> TimerId) {
        if member.is_none() || self.timer.is_some() {
            return;
        }
        self.timer = Some(arm(self.timeout));
    }

    /// For `resume_producing`: the output drained to the low watermark, so the
    /// timer stops, and the senders `member` held back in `server` read again.
    pub fn drained(
        &mut self,
        cx: &mut Context<'_>,
        server: &RefCell<Server>,
        member: Option<MemberKey>,
    ) {
        self.stop(cx);
        if let Some(key) = member {
            server.borrow_mut().drained(cx, key);
        }
    }

    /// Stops the timer, if it runs.
    pub fn stop(&mut self, cx: &mut Context<'_>) {
        if let Some(timer) = self.timer.take() {
            cx.cancel_timer(timer);
        }
    }

    /// The timer fired: the output has stayed above the high watermark for the
    /// whole timeout, so the member is not reading. Says so in the log; the caller
    /// then cuts the member off (leaves the server and aborts the connection,
    /// dropping its queued output).
    pub fn fired(&mut self, cx: &Context<'_>) {
        self.timer = None;
        log::warn!(
            "{} {}: output above the watermark for {:?} ({} bytes unsent); closing",
            cx.id(),
            peer(cx),
            self.timeout,
            cx.buffered()
        );
    }
}

impl LineHandler for Session {
    fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
        let id = cx.id();
        let key = self.server.borrow_mut().arrive(cx, id, MemberKind::Line);
        log::debug!("{id}: member {key} arrived");
        self.key = Some(key);
    }

    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        let Some(key) = self.key else { return };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.limits.max_line_bytes {
            return self.line_too_long(cx);
        }
        match command::parse(line) {
            Ok(Command::Quit) => {
                self.server.borrow_mut().notice(cx, key, b"bye");
                self.close(cx);
            }
            Ok(command) => self.server.borrow_mut().execute(cx, key, command),
            Err(error) => self.server.borrow_mut().error(cx, key, error),
        }
    }

    fn line_length_exceeded(&mut self, cx: &mut LineContext<'_, '_>, _line: &[u8]) {
        self.line_too_long(cx);
    }

    /// The client is done sending: it has had the answers to everything it sent
    /// (they are written before this), so leave and close.
    fn read_eof(&mut self, cx: &mut LineContext<'_, '_>) {
        self.close(cx);
    }

    fn connection_lost(&mut self, cx: &mut LineContext<'_, '_>, reason: Reason) {
        log::debug!("{}: {reason}", cx.id());
        self.leave(cx);
    }

    /// The output passed the high watermark: the slow timer starts.
    fn pause_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        self.slow.start(self.key, |timeout| {
            cx.call_later(timeout, |session: &mut Session, cx| session.too_slow(cx))
        });
    }

    /// The output drained to the low watermark: the slow timer stops, and the
    /// senders held back read again.
    fn resume_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        self.slow.drained(cx, &self.server, self.key);
    }
}
