//! One client's connection to the chat: a [`Session`] under a [`LineReceiver`].
//!
//! The session only turns lines into calls on the shared [`Server`], which writes to
//! the members through the session's context; the chat's rules live in the server.

use std::cell::RefCell;
use std::rc::Rc;

use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::Reason;

use crate::command::{self, Command};
use crate::server::{MemberKey, Server};

/// A chat connection: lines cut at `\n`, handled by a [`Session`].
pub type ChatProtocol = LineReceiver<Session>;

/// The protocol for one client connection, sharing `server` with every other: lines
/// end with `\n`, and a line over `max_line_bytes` (`\r\n` not counted) gets
/// `* error: line too long` and closes the connection.
pub fn protocol(server: Rc<RefCell<Server>>, max_line_bytes: usize) -> ChatProtocol {
    let session = Session {
        server,
        key: None,
        max_line_bytes,
    };
    // One byte more than the limit for the `\r` that may precede `\n`; the length
    // without it is checked in `line_received`.
    let max_length = max_line_bytes.saturating_add(1);
    LineReceiver::new(session)
        .delimiter(b"\n")
        .max_length(max_length)
}

/// One client's connection: its place in the shared [`Server`].
pub struct Session {
    server: Rc<RefCell<Server>>,
    /// `None` before `connection_made` and once the member has left.
    key: Option<MemberKey>,
    max_line_bytes: usize,
}

impl Session {
    /// Leaves the server and closes the connection, after sending what was written
    /// to it (a last notice, say).
    fn close(&mut self, cx: &mut LineContext<'_, '_>) {
        if let Some(key) = self.key.take() {
            self.server.borrow_mut().depart(cx, key);
        }
        cx.lose_connection();
    }

    fn line_too_long(&mut self, cx: &mut LineContext<'_, '_>) {
        log::warn!(
            "{} {}: line over {} bytes; closing",
            cx.id(),
            cx.peer_addr().map_or_else(String::new, |a| a.to_string()),
            self.max_line_bytes
        );
        if let Some(key) = self.key {
            self.server
                .borrow_mut()
                .notice(cx, key, b"error: line too long");
        }
        self.close(cx);
    }
}

impl LineHandler for Session {
    fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
        let id = cx.id();
        let key = self.server.borrow_mut().arrive(cx, id);
        log::debug!("{id}: member {key} arrived");
        self.key = Some(key);
    }

    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        let Some(key) = self.key else { return };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line_bytes {
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
        if let Some(key) = self.key.take() {
            self.server.borrow_mut().depart(cx, key);
        }
    }
}
