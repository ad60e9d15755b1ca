//! The chat over WebSocket (`--ws-listen`): the page at `/`, and members on `/chat`.
//!
//! One [`WebSocket`] adapter per connection, with a [`WsMember`] as its handler:
//!
//! - A plain `GET /` gets the chat's page (page.html: HTML and inline script, nothing
//!   from elsewhere), which opens a WebSocket to `/chat` on the host it came from
//!   (`wss:` if it came over https). Any other path gets 404 (`/chat` without the
//!   upgrade, 426); the connection closes after each answer (`Connection: close`).
//! - An upgrade on `/chat` makes a member of the shared [`Server`], as a line
//!   connection does ([`crate::session`]): each text message it sends is one line,
//!   under the same rules (a trailing `\r` stripped, `--max-line`, the commands), and
//!   each line the server sends it is one text message without the `\n`. The server
//!   sends those through the member's [`WsSender`](twistor::websocket::WsSender)
//!   (from whichever member's callback the line comes), which sends nothing before
//!   the upgrade or after a close frame; the member is in the server from `on_open`
//!   to `on_close` or `connection_lost`.
//! - Flow control and the slow timer are the line session's: `pause_producing`
//!   starts the timer, `resume_producing` tells the server the member has drained.
//!   The reactor's write cap (`--max-backlog`) closes a member that does not read.

use std::cell::RefCell;
use std::rc::Rc;

use twistor::websocket::{
    Accept, CloseCode, MessageRef, Refuse, Request, WebSocket, WsContext, WsHandler,
};
use twistor::Reason;

use crate::command::{self, Command};
use crate::server::{MemberKey, MemberKind, Server};
use crate::session::{peer, SessionLimits, SlowTimer};

/// The chat's page, served at `/`.
const PAGE: &str = include_str!("page.html");

/// The path members upgrade on.
const CHAT_PATH: &str = "/chat";

/// How far past `--max-line` (plus one byte for a `\r`) a message may go and still
/// be read whole, so that its sender gets `* error: line too long` before the close.
/// A larger one is refused from its frame header, before it is buffered, with the
/// adapter's bare close 1009: the same close, without the notice.
const MESSAGE_SLACK_BYTES: usize = 64 * 1024;

/// The protocol for one connection to the WebSocket listener, sharing `server` with
/// every other connection (line ones included), under `limits`.
pub fn protocol(server: Rc<RefCell<Server>>, limits: SessionLimits) -> WebSocket<WsMember> {
    let max_message = limits
        .max_line_bytes
        .saturating_add(1)
        .saturating_add(MESSAGE_SLACK_BYTES);
    let member = WsMember {
        server,
        key: None,
        limits,
        slow: SlowTimer::new(limits.slow_timeout),
    };
    // No extension is negotiated: the server writes each line as it composed it, and
    // chat lines are too short for permessage-deflate to pay.
    WebSocket::server(member)
        .max_message_bytes(max_message)
        .max_frame_bytes(max_message)
}

/// One WebSocket connection: the page or a member, as its first request asks.
pub struct WsMember {
    server: Rc<RefCell<Server>>,
    /// `Some` from `on_open` until the member has left.
    key: Option<MemberKey>,
    limits: SessionLimits,
    slow: SlowTimer,
}

/// `request`'s path without its query.
fn path(request: &Request) -> &str {
    let path = request.path();
    path.split_once('?').map_or(path, |(path, _)| path)
}

impl WsMember {
    /// Leaves the server, if not done yet. After this the server writes nothing more
    /// to the connection, so the adapter's close frame is its last.
    fn leave(&mut self, cx: &mut WsContext<'_, '_>) {
        self.slow.stop(cx);
        if let Some(key) = self.key.take() {
            self.server.borrow_mut().depart(cx, key);
        }
    }

    /// Leaves, then sends a close frame with `code` (the connection closes once it
    /// is flushed, after whatever the server wrote before it).
    fn close(&mut self, cx: &mut WsContext<'_, '_>, code: CloseCode, reason: &str) {
        self.leave(cx);
        let _ = cx.close(code, reason);
    }

    fn line_received(&mut self, cx: &mut WsContext<'_, '_>, key: MemberKey, line: &[u8]) {
        // As the line protocol: a trailing `\r` is not part of the line.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.limits.max_line_bytes {
            log::warn!(
                "{} {}: message over {} bytes; closing",
                cx.id(),
                peer(cx),
                self.limits.max_line_bytes
            );
            self.server
                .borrow_mut()
                .notice(cx, key, b"error: line too long");
            return self.close(cx, CloseCode::MESSAGE_TOO_BIG, "line too long");
        }
        match command::parse(line) {
            Ok(Command::Quit) => {
                self.server.borrow_mut().notice(cx, key, b"bye");
                self.close(cx, CloseCode::NORMAL, "");
            }
            Ok(command) => self.server.borrow_mut().execute(cx, key, command),
            Err(error) => self.server.borrow_mut().error(cx, key, error),
        }
    }

    /// The slow timer fired: the member's output has stayed above the high
    /// watermark for the whole slow timeout. Cut off, its queued output dropped (no
    /// close frame could get past it anyway).
    fn too_slow(&mut self, cx: &mut WsContext<'_, '_>) {
        self.slow.fired(cx);
        self.leave(cx);
        cx.abort_connection();
    }
}

impl WsHandler for WsMember {
    fn upgrade(&mut self, request: &Request) -> Result<Accept, Refuse> {
        match path(request) {
            CHAT_PATH => Ok(Accept::new()),
            _ => Err(Refuse::new(404)),
        }
    }

    fn http_request(&mut self, request: &Request) -> Refuse {
        match (request.method(), path(request)) {
            ("GET", "/") => Refuse::new(200)
                .header("Content-Type", "text/html; charset=utf-8")
                .header("Cache-Control", "no-cache")
                .body(PAGE),
            (_, "/") => Refuse::new(405).header("Allow", "GET"),
            // The members' endpoint, asked without the upgrade.
            (_, CHAT_PATH) => Refuse::upgrade_required(),
            _ => Refuse::new(404),
        }
    }

    /// The `101` is written: from now on the server may write messages here.
    fn on_open(&mut self, cx: &mut WsContext<'_, '_>) {
        let id = cx.id();
        let kind = MemberKind::WebSocket(cx.sender());
        let key = self.server.borrow_mut().arrive(cx, id, kind);
        log::debug!("{id}: member {key} arrived over WebSocket");
        self.key = Some(key);
    }

    fn message_received(&mut self, cx: &mut WsContext<'_, '_>, message: MessageRef<'_>) {
        let Some(key) = self.key else { return };
        match message {
            MessageRef::Text(text) => self.line_received(cx, key, text.as_bytes()),
            MessageRef::Binary(_) => {
                log::warn!("{} {}: a binary message; closing", cx.id(), peer(cx));
                self.close(cx, CloseCode::UNSUPPORTED_DATA, "text messages only");
            }
        }
    }

    /// The peer's close frame: leave before the adapter answers it, since nothing
    /// may follow that answer.
    fn on_close(&mut self, cx: &mut WsContext<'_, '_>, _code: CloseCode, _reason: &str) {
        self.leave(cx);
    }

    fn connection_lost(&mut self, cx: &mut WsContext<'_, '_>, reason: Reason) {
        log::debug!("{}: {reason}", cx.id());
        self.leave(cx);
    }

    /// The output passed the high watermark: the slow timer starts.
    fn pause_producing(&mut self, cx: &mut WsContext<'_, '_>) {
        self.slow.start(self.key, |timeout| {
            cx.call_later(timeout, |member: &mut WsMember, cx| member.too_slow(cx))
        });
    }

    /// The output drained to the low watermark: the slow timer stops, and the
    /// senders held back read again.
    fn resume_producing(&mut self, cx: &mut WsContext<'_, '_>) {
        self.slow.drained(cx, &self.server, self.key);
    }
}
