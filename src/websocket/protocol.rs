//! The WebSocket protocol adapter: the upgrade, then messages, over any connection.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::time::Duration;

use super::close::CloseCode;
use super::decoder::{DecodeError, Decoder, Event, DEFAULT_MAX_MESSAGE_BYTES};
use super::encoder::{EncodeError, Encoder};
use super::extension::Extension;
use super::frame::{apply_mask, OpCode, Rsv};
use super::handshake::{
    check_upgrade, find_head_end, parse_request, Accept, ClientHandshake, ExtensionNegotiator,
    HandshakeError, Refuse, Request, MAX_HEAD_BYTES,
};
use super::{Message, MessageKind, Role};
use crate::{ConnId, Context, JobError, PoolBusy, Protocol, Reason, TimerId};

/// The default time a peer has to complete the upgrade: 10 s, as the examples'
/// TLS handshake timeout. A slow peer (slowloris) is answered 408 and closed then.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Capacity the buffers for masked (client) frames, control frames and encoded
/// (compressed) payloads keep between sends: enough for the usual message without
/// holding on to the memory of a rare large one.
const RETAINED_OUT_BYTES: usize = 64 * 1024;

/// The extension agreed at the upgrade, shared by the decoder (which decodes the
/// peer's messages through it) and the [`Sender`] (which encodes ours). Each borrow
/// lasts one call: the decoder's ends before an event reaches the handler, so a send
/// from a callback never meets it.
#[derive(Clone)]
struct SharedExtension(Rc<RefCell<Box<dyn Extension>>>);

impl Extension for SharedExtension {
    fn rsv_bits(&self) -> Rsv {
        self.0.borrow().rsv_bits()
    }

    fn decode(
        &mut self,
        rsv: Rsv,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        self.0.borrow_mut().decode(rsv, input, out, limit)
    }

    fn finish_message(
        &mut self,
        rsv: Rsv,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        self.0.borrow_mut().finish_message(rsv, out, limit)
    }

    fn encode(&mut self, kind: MessageKind, payload: &[u8], out: &mut Vec<u8>) -> Rsv {
        self.0.borrow_mut().encode(kind, payload, out)
    }
}

/// A data message as a handler receives it: borrowed from the decoder or from the
/// read buffer (copy what you keep; [`to_message`](Self::to_message) makes an owned
/// [`Message`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// A text message: validated UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl MessageRef<'_> {
    /// Which kind of message this is.
    pub fn kind(&self) -> MessageKind {
        match self {
            MessageRef::Text(_) => MessageKind::Text,
            MessageRef::Binary(_) => MessageKind::Binary,
        }
    }

    /// The payload's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            MessageRef::Text(text) => text.as_bytes(),
            MessageRef::Binary(data) => data,
        }
    }

    /// An owned copy.
    pub fn to_message(&self) -> Message {
        match *self {
            MessageRef::Text(text) => Message::Text(text.to_owned()),
            MessageRef::Binary(data) => Message::Binary(data.to_vec()),
        }
    }
}

/// Callbacks for a [`WebSocket`] connection, server or client.
///
/// Only [`message_received`](Self::message_received) has no default. The adapter
/// does the protocol's chores: it answers pings with pongs, answers a close frame
/// with a close frame echoing its code and then closes the connection, and closes
/// with the right code (1002, 1007, 1009) when the peer breaks a rule or a limit.
///
/// # Examples
///
/// ```
/// use twistor::websocket::{MessageRef, WebSocket, WsContext, WsHandler};
/// use twistor::Reactor;
///
/// /// Sends every message back.
/// struct Echo;
///
/// impl WsHandler for Echo {
///     fn message_received(&mut self, cx: &mut WsContext<'_, '_>, message: MessageRef<'_>) {
///         cx.send(message);
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), |_: &_| {
///     Some(WebSocket::server(Echo))
/// })?;
/// # let _ = port;
/// # Ok::<(), std::io::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    note = "a `WsContext`'s `call_later` and `defer_to_thread` take closures typed on the \
            handler (`|h: &mut MyHandler, cx| ...`)"
)]
pub trait WsHandler: 'static {
    /// Server: a valid upgrade request arrived. Check what matters here (`Origin`,
    /// the path, the subprotocols offered) and accept, choosing a subprotocol if
    /// any, or refuse with an HTTP response (a [`Refuse`]: 403, 404, ...). The
    /// default accepts with no subprotocol.
    fn upgrade(&mut self, request: &Request) -> Result<Accept, Refuse> {
        let _ = request;
        Ok(Accept::new())
    }

    /// Server: a well-formed HTTP request that is not a WebSocket upgrade (no
    /// `Upgrade: websocket` or no `Connection: upgrade`). The answer is sent and the
    /// connection closed; it can be a page (status 200). The default is 426 Upgrade
    /// Required, with `Upgrade: websocket`.
    fn http_request(&mut self, request: &Request) -> Refuse {
        let _ = request;
        Refuse::upgrade_required()
    }

    /// The upgrade is done (the `101` sent, or received on a client): messages may
    /// flow.
    fn on_open(&mut self, cx: &mut WsContext<'_, '_>) {
        let _ = cx;
    }

    /// A whole message arrived (fragments reassembled, text validated).
    fn message_received(&mut self, cx: &mut WsContext<'_, '_>, message: MessageRef<'_>);

    /// A pong arrived (pings are answered by the adapter).
    fn pong_received(&mut self, cx: &mut WsContext<'_, '_>, payload: &[u8]) {
        let _ = (cx, payload);
    }

    /// The peer's close frame arrived, with its code and reason
    /// ([`CloseCode::NO_STATUS_RECEIVED`] and `""` for an empty one). After this
    /// returns, the adapter answers with a close frame echoing the code (unless one
    /// was sent already) and closes the connection.
    fn on_close(&mut self, cx: &mut WsContext<'_, '_>, code: CloseCode, reason: &str) {
        let _ = (cx, code, reason);
    }

    /// The upgrade failed: a server got a request it answered with an error (400,
    /// 426, 431) or none in time (408); a client got a response that is not a valid
    /// `101`. The connection closes after this. The default logs at debug level.
    fn handshake_failed(&mut self, cx: &mut WsContext<'_, '_>, error: &HandshakeError) {
        log::debug!("{}: WebSocket handshake failed: {error}", cx.id());
    }

    /// The connection is gone; called exactly once, whether it was opened or not.
    fn connection_lost(&mut self, cx: &mut WsContext<'_, '_>, reason: Reason) {
        let _ = (cx, reason);
    }

    /// An outgoing connection could not be made (a client): see
    /// [`Protocol::connection_failed`]. The default logs at debug level.
    fn connection_failed(&mut self, cx: &mut WsContext<'_, '_>, error: io::Error) {
        let _ = cx;
        log::debug!("connection failed: {error}");
    }

    /// The write buffer passed its high watermark: stop producing.
    fn pause_producing(&mut self, cx: &mut WsContext<'_, '_>) {
        let _ = cx;
    }

    /// The write buffer drained to its low watermark: producing may go on.
    fn resume_producing(&mut self, cx: &mut WsContext<'_, '_>) {
        let _ = cx;
    }

    /// The reactor is stopping gracefully ([`Protocol::stopping`]): the connection is
    /// closed as soon as this returns. The default starts the closing handshake with
    /// 1001 "going away" (RFC 6455 section 7.4.1: "a server going down"), once the
    /// upgrade is done and no close frame was sent yet.
    fn stopping(&mut self, cx: &mut WsContext<'_, '_>) {
        if cx.is_websocket_open() && !cx.is_closing() {
            let _ = cx.close(CloseCode::GOING_AWAY, "");
        }
    }
}

/// The sending side of a connection, which a [`WsContext`] borrows.
struct Sender {
    role: Role,
    encoder: Encoder,
    /// Frames that are copied before they are written: masked ones, control ones.
    out: Vec<u8>,
    /// The extension agreed, if any: it encodes each data message.
    extension: Option<SharedExtension>,
    /// A message's payload as the extension encoded it.
    encoded: Vec<u8>,
    /// The upgrade is done.
    open: bool,
    /// A close frame was sent: no more frames may be.
    close_sent: bool,
    /// Whether data frames may be sent (`open && !close_sent`, and the connection
    /// not lost), for the [`WsSender`]s handed out; made by the first one.
    handle: Option<Rc<Cell<bool>>>,
    /// The subprotocol settled by the upgrade.
    protocol: Option<String>,
}

impl Sender {
    fn data(&mut self, cx: &mut Context<'_>, kind: MessageKind, payload: &[u8]) -> bool {
        if !self.open || self.close_sent {
            return false;
        }
        let opcode = match kind {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        let Some(extension) = &mut self.extension else {
            return self.frame(cx, Rsv::NONE, opcode, payload);
        };
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        let rsv = extension.encode(kind, payload, &mut encoded);
        let sent = if rsv.is_empty() {
            self.frame(cx, rsv, opcode, payload)
        } else {
            self.frame(cx, rsv, opcode, &encoded)
        };
        encoded.clear();
        if encoded.capacity() <= RETAINED_OUT_BYTES {
            self.encoded = encoded;
        }
        sent
    }

    /// Writes a data message as one frame: on a server the header and `payload` as
    /// two slices, without a copy; on a client, masked in `self.out`.
    fn frame(&mut self, cx: &mut Context<'_>, rsv: Rsv, opcode: OpCode, payload: &[u8]) -> bool {
        let header = self.encoder.header(true, rsv, opcode, payload.len() as u64);
        match header.mask() {
            None => cx.write_vectored(&[IoSlice::new(header.as_bytes()), IoSlice::new(payload)]),
            Some(key) => {
                self.out.clear();
                self.out.extend_from_slice(header.as_bytes());
                let start = self.out.len();
                self.out.extend_from_slice(payload);
                apply_mask(&mut self.out[start..], key);
                self.flush(cx)
            }
        }
    }

    /// Writes a control frame that `encode` appends to `self.out`.
    fn control(
        &mut self,
        cx: &mut Context<'_>,
        encode: impl FnOnce(&mut Encoder, &mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<bool, EncodeError> {
        if !self.open || self.close_sent {
            return Ok(false);
        }
        self.out.clear();
        encode(&mut self.encoder, &mut self.out)?;
        Ok(self.flush(cx))
    }

    /// Tells the [`WsSender`]s whether data frames may be sent.
    fn publish(&self) {
        if let Some(handle) = &self.handle {
            handle.set(self.open && !self.close_sent);
        }
    }

    fn flush(&mut self, cx: &mut Context<'_>) -> bool {
        let sent = cx.write(&self.out);
        self.out.clear();
        if self.out.capacity() > RETAINED_OUT_BYTES {
            self.out = Vec::new();
        }
        sent
    }

    /// Sends a close frame (an empty one for `None`) and closes the connection once
    /// it is flushed.
    fn close(
        &mut self,
        cx: &mut Context<'_>,
        code: Option<CloseCode>,
        reason: &str,
    ) -> Result<(), EncodeError> {
        let sent = self.control(cx, |e, out| match code {
            Some(code) => e.close(out, code, reason),
            None => {
                e.close_empty(out);
                Ok(())
            }
        });
        if sent.is_ok() {
            self.close_sent = true;
            self.publish();
            cx.lose_connection();
        }
        sent.map(drop)
    }

    /// The peer broke a rule: close with the error's code, then close the connection
    /// (RFC 6455 section 7.1.7, "Fail the WebSocket Connection").
    fn fail(&mut self, cx: &mut Context<'_>, error: DecodeError) {
        let code = error.close_code();
        log::debug!("{}: {error}: closing with {code}", cx.id());
        let mut reason = error.to_string();
        truncate_at_char(&mut reason, 123);
        if self.close(cx, Some(code), &reason).is_err() {
            let _ = self.close(cx, None, "");
        }
        cx.lose_connection();
    }
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// What a [`WsHandler`] callback gets: the connection's [`Context`] (through
/// `Deref`: `cx.id()`, `cx.peer_addr()`, `cx.pause_reading()`, `cx.buffered()`...)
/// plus the WebSocket's own controls.
pub struct WsContext<'a, 'b> {
    cx: &'a mut Context<'b>,
    ws: &'a mut Sender,
}

impl WsContext<'_, '_> {
    /// Sends a text message, in one frame. On a server the payload is not copied:
    /// the frame header and `text` go out as two slices. With an extension agreed
    /// (permessage-deflate), what goes out is what it encodes (compressed, RSV1 set).
    ///
    /// Returns false if it was dropped: before the upgrade, after a close frame was
    /// sent, or when the connection is closing, gone, or passed its write cap (then
    /// closed with [`Reason::WriteOverflow`]).
    pub fn send_text(&mut self, text: &str) -> bool {
        self.ws.data(self.cx, MessageKind::Text, text.as_bytes())
    }

    /// Sends a binary message, in one frame; as [`send_text`](Self::send_text).
    pub fn send_binary(&mut self, data: &[u8]) -> bool {
        self.ws.data(self.cx, MessageKind::Binary, data)
    }

    /// Sends a message of either kind; as [`send_text`](Self::send_text).
    pub fn send(&mut self, message: MessageRef<'_>) -> bool {
        match message {
            MessageRef::Text(text) => self.send_text(text),
            MessageRef::Binary(data) => self.send_binary(data),
        }
    }

    /// Sends a ping; the peer's pong comes to
    /// [`WsHandler::pong_received`]. Returns false if it was dropped, as
    /// [`send_text`](Self::send_text).
    ///
    /// # Errors
    ///
    /// A payload over 125 bytes; nothing is sent.
    pub fn ping(&mut self, payload: &[u8]) -> Result<bool, EncodeError> {
        self.ws.control(self.cx, |e, out| e.ping(out, payload))
    }

    /// Starts the closing handshake: sends a close frame with `code` and `reason`,
    /// then closes the connection once it is flushed (the peer's answering close
    /// frame, which the connection's linger waits for, is not delivered). Nothing
    /// more can be sent. A second call does nothing.
    ///
    /// # Errors
    ///
    /// A code that may not be sent (1005, 1006, 1015, ...) or a reason over 123
    /// bytes; nothing is sent and the connection stays open.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), EncodeError> {
        if !self.ws.open {
            self.cx.lose_connection();
            return Ok(());
        }
        self.ws.close(self.cx, Some(code), reason)
    }

    /// True once a close frame was sent (by [`close`](Self::close), or in answer to
    /// the peer's, or for an error).
    pub fn is_closing(&self) -> bool {
        self.ws.close_sent
    }

    /// True once the upgrade is done.
    pub fn is_websocket_open(&self) -> bool {
        self.ws.open
    }

    /// A handle that sends messages on this connection from anywhere on the reactor
    /// thread: another connection's callback (a chat room relaying a line to its
    /// members), a timer. See [`WsSender`].
    pub fn sender(&mut self) -> WsSender {
        let ws = &mut *self.ws;
        let open = ws.open && !ws.close_sent;
        let handle = ws
            .handle
            .get_or_insert_with(|| Rc::new(Cell::new(open)))
            .clone();
        WsSender {
            id: self.cx.id(),
            open: handle,
            encoder: Rc::new(RefCell::new(Encoder::new(ws.role))),
        }
    }

    /// The subprotocol the upgrade settled, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.ws.protocol.as_deref()
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.ws.role
    }

    /// Runs `f` with the handler and its [`WsContext`] after `delay`, as if it were
    /// one of its callbacks; `H` is this connection's handler type, named on the
    /// closure's first argument. This shadows [`Context::call_later`], whose closure
    /// gets the `WebSocket<H>` and a plain `Context` (still reached as
    /// `Context::call_later(cx, ...)`).
    ///
    /// # Panics
    ///
    /// If this connection's protocol is not a `WebSocket<H>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twistor::websocket::{MessageRef, WsContext, WsHandler};
    ///
    /// /// Pings every 30 s once open.
    /// struct KeepAlive;
    ///
    /// impl WsHandler for KeepAlive {
    ///     fn on_open(&mut self, cx: &mut WsContext<'_, '_>) {
    ///         cx.call_later(Duration::from_secs(30), |me: &mut KeepAlive, cx| {
    ///             let _ = cx.ping(b"");
    ///             me.on_open(cx);
    ///         });
    ///     }
    ///     fn message_received(&mut self, _: &mut WsContext<'_, '_>, _: MessageRef<'_>) {}
    /// }
    /// ```
    pub fn call_later<H, F>(&mut self, delay: Duration, f: F) -> TimerId
    where
        H: WsHandler,
        F: FnOnce(&mut H, &mut WsContext<'_, '_>) + 'static,
    {
        self.cx
            .call_later(delay, move |p: &mut WebSocket<H>, cx| p.with_handler(cx, f))
    }

    /// Runs `job` on the reactor's thread pool, then `done` with the handler, its
    /// [`WsContext`] and the result, back on the reactor thread; as
    /// [`Context::defer_to_thread`] (which this shadows), typed on the handler.
    ///
    /// # Errors
    ///
    /// [`PoolBusy`] if the pool's queue is full, the reactor is stopping, or this
    /// connection is gone; neither `job` nor `done` will run, and the refusal hands
    /// both back.
    ///
    /// # Panics
    ///
    /// If this connection's protocol is not a `WebSocket<H>`.
    pub fn defer_to_thread<H, T, J, D>(&mut self, job: J, done: D) -> Result<(), PoolBusy<(J, D)>>
    where
        H: WsHandler,
        T: Send + 'static,
        J: FnOnce() -> T + Send + 'static,
        D: FnOnce(&mut H, &mut WsContext<'_, '_>, Result<T, JobError>) + 'static,
    {
        // Asked first: once wrapped, `done` could not be handed back.
        if !self.cx.can_defer_to_thread() {
            return Err(PoolBusy::new((job, done)));
        }
        self.cx
            .defer_to_thread(job, move |p: &mut WebSocket<H>, cx, result| {
                p.with_handler(cx, |h, cx| done(h, cx, result))
            })
            .map_err(|_| ())
            .expect("the pool had room a moment ago, and only this thread submits");
        Ok(())
    }
}

impl<'b> std::ops::Deref for WsContext<'_, 'b> {
    type Target = Context<'b>;

    fn deref(&self) -> &Context<'b> {
        self.cx
    }
}

impl std::ops::DerefMut for WsContext<'_, '_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.cx
    }
}

impl fmt::Debug for WsContext<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsContext")
            .field("cx", &self.cx)
            .field("role", &self.ws.role)
            .field("open", &self.ws.open)
            .field("close_sent", &self.ws.close_sent)
            .finish()
    }
}

/// Sends messages on a WebSocket connection from outside its own callbacks: from
/// another connection's (a chat room relaying one line to all its members), or a
/// timer's. Made by [`WsContext::sender`]; clones share one connection.
///
/// Each message goes as one frame, written whole to the connection by id (through
/// [`Context::conn`]), so it never interleaves with the adapter's own frames. Nothing
/// is sent before the upgrade, after a close frame, or once the connection is gone
/// (each send then returns false). Messages sent this way are not compressed, even
/// when permessage-deflate was agreed (RFC 7692 lets any message go uncompressed,
/// RSV1 clear): the compressor's context belongs to the adapter's own sends.
///
/// # Examples
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use twistor::websocket::{MessageRef, WsContext, WsHandler, WsSender};
///
/// /// Every member hears every other member's messages.
/// struct Member {
///     room: Rc<RefCell<Vec<WsSender>>>,
/// }
///
/// impl WsHandler for Member {
///     fn on_open(&mut self, cx: &mut WsContext<'_, '_>) {
///         self.room.borrow_mut().push(cx.sender());
///     }
///     fn message_received(&mut self, cx: &mut WsContext<'_, '_>, message: MessageRef<'_>) {
///         let MessageRef::Text(text) = message else { return };
///         let me = cx.id();
///         // Gone members answer false; drop them.
///         self.room
///             .borrow_mut()
///             .retain(|m| m.conn_id() == me || m.send_text(cx, text));
///     }
/// }
/// ```
#[derive(Clone)]
pub struct WsSender {
    id: ConnId,
    open: Rc<Cell<bool>>,
    encoder: Rc<RefCell<Encoder>>,
}

impl WsSender {
    /// The connection this sends on.
    pub fn conn_id(&self) -> ConnId {
        self.id
    }

    /// True while messages can be sent: the upgrade is done, no close frame was
    /// sent, and the connection is not gone.
    pub fn is_open(&self) -> bool {
        self.open.get()
    }

    /// Sends a text message, in one frame; false if it was dropped (see the type's
    /// docs), or refused as any write to a closing connection or one past its
    /// write cap is.
    pub fn send_text(&self, cx: &mut Context<'_>, text: &str) -> bool {
        self.send(cx, OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message, in one frame; as [`send_text`](Self::send_text).
    pub fn send_binary(&self, cx: &mut Context<'_>, data: &[u8]) -> bool {
        self.send(cx, OpCode::Binary, data)
    }

    fn send(&self, cx: &mut Context<'_>, opcode: OpCode, payload: &[u8]) -> bool {
        if !self.open.get() {
            return false;
        }
        let header =
            self.encoder
                .borrow_mut()
                .header(true, Rsv::NONE, opcode, payload.len() as u64);
        match header.mask() {
            // A server's frame: the header and the payload as they are, one write.
            None => cx
                .conn(self.id)
                .write_vectored(&[IoSlice::new(header.as_bytes()), IoSlice::new(payload)]),
            Some(key) => {
                let mut frame = Vec::with_capacity(header.as_bytes().len() + payload.len());
                frame.extend_from_slice(header.as_bytes());
                frame.extend_from_slice(payload);
                apply_mask(&mut frame[header.as_bytes().len()..], key);
                cx.conn(self.id).write(&frame)
            }
        }
    }
}

impl fmt::Debug for WsSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsSender")
            .field("conn", &self.id)
            .field("open", &self.open.get())
            .finish()
    }
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the request (server) or the response (client) head.
    Handshake,
    /// Frames flow.
    Open,
    /// The upgrade failed or was refused: input is dropped.
    Done,
}

/// The WebSocket protocol (RFC 6455) as a [`Protocol`]: the HTTP/1.1 upgrade, then
/// messages, for a [`WsHandler`]. A server is made with [`server`](Self::server) and
/// given to any listener (TCP, TLS for `wss://`, Unix); a client with
/// [`client`](Self::client) and given to a connect.
///
/// # The upgrade
///
/// A server reads the request head (at most [`MAX_HEAD_BYTES`], else 431), parsed by
/// `httparse`, within the [handshake timeout](Self::handshake_timeout) (else 408).
/// A plain HTTP request goes to [`WsHandler::http_request`] (426 by default); an
/// upgrade that breaks RFC 6455 section 4.2.1 gets 400; a valid one goes to
/// [`WsHandler::upgrade`], which accepts (`101`) or refuses. After an HTTP response
/// other than `101` the connection is closed. A `Sec-WebSocket-Extensions` offer goes
/// to the [negotiator](Self::negotiator), if there is one; otherwise no extension is
/// accepted.
///
/// A client sends its request on `connection_made` and checks the `101` (status,
/// `Sec-WebSocket-Accept`, subprotocol) before anything else is delivered.
///
/// # Messages and limits
///
/// Frames are decoded by a [`Decoder`]: a frame or message over the limits
/// ([`max_message_bytes`](Self::max_message_bytes),
/// [`max_frame_bytes`](Self::max_frame_bytes)) is refused from its header, before
/// its payload is buffered, with close code 1009; other violations close with 1002
/// (unmasked client frames, reserved bits...) or 1007 (invalid UTF-8, also split
/// across fragments). Messages are sent in one frame; a server writes the frame
/// header and the payload as two slices (`write_vectored`), so the payload is not
/// copied. When permessage-deflate was agreed (see [`negotiator`](Self::negotiator)),
/// each message is compressed first and the frame carries RSV1; control frames never
/// are. The write watermarks and cap apply as to any connection:
/// [`WsHandler::pause_producing`] and [`WsHandler::resume_producing`] are forwarded,
/// and a peer that does not read is closed at the cap.
///
/// # Reading pauses
///
/// [`Context::pause_reading`] inside a callback takes effect before the next message:
/// the rest of the chunk waits in the decoder and is delivered when reading resumes.
pub struct WebSocket<H: WsHandler> {
    handler: H,
    decoder: Decoder<Option<SharedExtension>>,
    sender: Sender,
    phase: Phase,
    /// The head read so far, during the handshake.
    head: Vec<u8>,
    negotiator: Option<Box<dyn ExtensionNegotiator>>,
    client: Option<ClientHandshake>,
    handshake_timeout: Option<Duration>,
    handshake_timer: Option<TimerId>,
}

impl<H: WsHandler> WebSocket<H> {
    fn new(handler: H, role: Role, client: Option<ClientHandshake>) -> WebSocket<H> {
        let mut decoder = Decoder::with_extension(role, None);
        decoder.set_max_message_bytes(DEFAULT_MAX_MESSAGE_BYTES);
        WebSocket {
            handler,
            decoder,
            sender: Sender {
                role,
                encoder: Encoder::new(role),
                out: Vec::new(),
                extension: None,
                encoded: Vec::new(),
                open: false,
                close_sent: false,
                handle: None,
                protocol: None,
            },
            phase: Phase::Handshake,
            head: Vec::new(),
            negotiator: None,
            client,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            handshake_timer: None,
        }
    }

    /// The server end of a connection: it waits for the upgrade request.
    pub fn server(handler: H) -> WebSocket<H> {
        WebSocket::new(handler, Role::Server, None)
    }

    /// The client end of a connection: it sends `request` once connected.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::websocket::handshake::ClientHandshake;
    /// use twistor::websocket::{MessageRef, WebSocket, WsContext, WsHandler};
    ///
    /// struct Hello;
    /// impl WsHandler for Hello {
    ///     fn on_open(&mut self, cx: &mut WsContext<'_, '_>) {
    ///         cx.send_text("hello");
    ///     }
    ///     fn message_received(&mut self, cx: &mut WsContext<'_, '_>, m: MessageRef<'_>) {
    ///         println!("{m:?}");
    ///         let _ = cx.close(twistor::websocket::CloseCode::NORMAL, "");
    ///     }
    /// }
    ///
    /// let client = WebSocket::client(Hello, ClientHandshake::new("127.0.0.1:9001", "/"));
    /// # let _ = client;
    /// ```
    pub fn client(handler: H, request: ClientHandshake) -> WebSocket<H> {
        WebSocket::new(handler, Role::Client, Some(request))
    }

    /// Sets the largest message accepted, after reassembly (and decoding by an
    /// extension); a larger one closes the connection with 1009 as soon as its
    /// frame header says so. Default [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.decoder.set_max_message_bytes(bytes);
        self
    }

    /// Sets the largest frame payload accepted (1009 past it). Default
    /// [`DEFAULT_MAX_FRAME_BYTES`](super::DEFAULT_MAX_FRAME_BYTES).
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.decoder.set_max_frame_bytes(bytes);
        self
    }

    /// Sets how long the peer has to complete the upgrade (`None`: no limit).
    /// Default [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the extension negotiator (permessage-deflate plugs in here:
    /// `.negotiator(Box::new(DeflateConfig::default()))`). A server answers the
    /// client's offers with it; a client makes its offer with it and checks the
    /// server's answer (a refused answer fails the connection, as
    /// [`WsHandler::handshake_failed`]). Once an extension is agreed, it decodes
    /// what arrives and encodes what [`WsContext::send_text`] and
    /// [`send_binary`](WsContext::send_binary) send: with permessage-deflate, each
    /// message is compressed and goes out with RSV1, unless compressing would not
    /// make it smaller.
    pub fn negotiator(mut self, negotiator: Box<dyn ExtensionNegotiator>) -> Self {
        self.negotiator = Some(negotiator);
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// True once the upgrade is done (and until the connection is lost).
    pub fn is_open(&self) -> bool {
        self.sender.open
    }

    /// The subprotocol the upgrade settled, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.sender.protocol.as_deref()
    }

    /// Runs `f` with the handler and a [`WsContext`], as if it were a callback: for
    /// code that holds the `WebSocket` (a timer typed on it,
    /// [`Reactor::call_protocol`](crate::Reactor::call_protocol), the testing kit's
    /// `Harness::call`).
    pub fn with_handler<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut H, &mut WsContext<'_, '_>) -> R,
    ) -> R {
        f(
            &mut self.handler,
            &mut WsContext {
                cx,
                ws: &mut self.sender,
            },
        )
    }

    fn handshake_data(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        let searched = self.head.len();
        self.head.extend_from_slice(data);
        if find_head_end(&self.head, searched).is_none() && self.head.len() < MAX_HEAD_BYTES {
            return;
        }
        let head = std::mem::take(&mut self.head);
        match self.sender.role {
            Role::Server => self.server_handshake(cx, &head),
            Role::Client => self.client_handshake(cx, &head),
        }
    }

    fn server_handshake(&mut self, cx: &mut Context<'_>, head: &[u8]) {
        let (request, n) = match parse_request(head) {
            Ok(parsed) => parsed,
            Err(e) => return self.refuse(cx, Some(e)),
        };
        let accept = match check_upgrade(&request) {
            Ok(()) => match self.handler.upgrade(&request) {
                Ok(accept) => accept,
                Err(refusal) => return self.answer(cx, refusal),
            },
            Err(HandshakeError::NotUpgrade) => {
                let answer = self.handler.http_request(&request);
                return self.answer(cx, answer);
            }
            Err(e) => return self.refuse(cx, Some(e)),
        };
        let negotiated = match &mut self.negotiator {
            Some(negotiator) => negotiator.negotiate(&request.extension_offers()),
            None => None,
        };
        let key = request.key().expect("checked by check_upgrade");
        let response = accept.response(key, negotiated.as_ref().map(|n| n.response.as_str()));
        if let Some(negotiated) = negotiated {
            self.install(negotiated.extension);
        }
        cx.write(&response);
        self.sender.protocol = accept.chosen_protocol().map(str::to_owned);
        self.opened(cx, &head[n..]);
    }

    fn client_handshake(&mut self, cx: &mut Context<'_>, head: &[u8]) {
        let client = self.client.as_ref().expect("a client has its request");
        let upgraded = match client.check(head) {
            Ok(upgraded) => upgraded,
            Err(e) => return self.refuse(cx, Some(e)),
        };
        if let Some(answer) = &upgraded.extensions {
            // `check` refuses extensions when none were offered, and only a
            // negotiator makes an offer.
            let negotiator = self.negotiator.as_mut().expect("an offer was made");
            match negotiator.accept(answer) {
                Ok(extension) => self.install(extension),
                Err(e) => return self.refuse(cx, Some(e)),
            }
        }
        self.sender.protocol = upgraded.protocol;
        self.opened(cx, &head[upgraded.head_bytes..]);
    }

    /// Puts the extension agreed between the decoder and the sender.
    fn install(&mut self, extension: Box<dyn Extension>) {
        let shared = SharedExtension(Rc::new(RefCell::new(extension)));
        self.sender.extension = Some(shared.clone());
        *self.decoder.extension_mut() = Some(shared);
    }

    /// The upgrade failed with `error` (a server answers it), or, with `None`, timed
    /// out: tell the handler, then close.
    fn refuse(&mut self, cx: &mut Context<'_>, error: Option<HandshakeError>) {
        let error = error.unwrap_or(HandshakeError::TimedOut);
        self.with_handler(cx, |h, cx| h.handshake_failed(cx, &error));
        match self.sender.role {
            Role::Server => self.answer(cx, error.response()),
            Role::Client => self.done(cx),
        }
    }

    /// Sends an HTTP response other than `101`, then closes.
    fn answer(&mut self, cx: &mut Context<'_>, response: Refuse) {
        log::debug!("{}: answered {} to the upgrade", cx.id(), response.status());
        cx.write(&response.to_bytes());
        self.done(cx);
    }

    fn done(&mut self, cx: &mut Context<'_>) {
        self.phase = Phase::Done;
        self.head = Vec::new();
        if let Some(timer) = self.handshake_timer.take() {
            cx.cancel_timer(timer);
        }
        cx.lose_connection();
    }

    fn opened(&mut self, cx: &mut Context<'_>, rest: &[u8]) {
        if let Some(timer) = self.handshake_timer.take() {
            cx.cancel_timer(timer);
        }
        self.phase = Phase::Open;
        self.sender.open = true;
        self.sender.publish();
        self.with_handler(cx, |h, cx| h.on_open(cx));
        self.frames(cx, rest);
    }

    /// Delivers the events in `chunk` (after what the decoder kept) while the
    /// connection reads.
    fn frames(&mut self, cx: &mut Context<'_>, chunk: &[u8]) {
        let WebSocket {
            handler,
            decoder,
            sender,
            ..
        } = self;
        let mut feed = decoder.feed(chunk);
        while cx.is_reading() {
            let event = match feed.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    sender.fail(cx, e);
                    break;
                }
            };
            let cx = &mut WsContext {
                cx: &mut *cx,
                ws: &mut *sender,
            };
            match event {
                Event::Text(text) => handler.message_received(cx, MessageRef::Text(text)),
                Event::Binary(data) => handler.message_received(cx, MessageRef::Binary(data)),
                Event::Ping(payload) => {
                    let _ = cx.ws.control(cx.cx, |e, out| e.pong(out, payload));
                }
                Event::Pong(payload) => handler.pong_received(cx, payload),
                Event::Close(frame) => {
                    let (code, reason) = match frame {
                        Some(f) => (Some(f.code), f.reason),
                        None => (None, ""),
                    };
                    handler.on_close(cx, code.unwrap_or(CloseCode::NO_STATUS_RECEIVED), reason);
                    if !cx.ws.close_sent {
                        let _ = cx.ws.close(cx.cx, code, "");
                    }
                    cx.lose_connection();
                    break;
                }
            }
        }
    }

    fn handshake_timed_out(&mut self, cx: &mut Context<'_>) {
        self.handshake_timer = None;
        if self.phase == Phase::Handshake {
            log::debug!("{}: WebSocket handshake timed out", cx.id());
            self.refuse(cx, None);
        }
    }
}

impl<H: WsHandler> Protocol for WebSocket<H> {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        if let Some(timeout) = self.handshake_timeout {
            self.handshake_timer = Some(Context::call_later(
                cx,
                timeout,
                |p: &mut WebSocket<H>, cx| p.handshake_timed_out(cx),
            ));
        }
        if let Some(mut client) = self.client.take() {
            if let Some(offer) = self.negotiator.as_mut().and_then(|n| n.offer()) {
                client = client.extensions(&offer);
            }
            cx.write(&client.request());
            self.client = Some(client);
        }
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        match self.phase {
            Phase::Handshake => self.handshake_data(cx, data),
            Phase::Open => self.frames(cx, data),
            Phase::Done => {}
        }
    }

    fn reading_resumed(&mut self, cx: &mut Context<'_>) {
        if self.phase == Phase::Open {
            self.frames(cx, &[]);
        }
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        self.head = Vec::new();
        self.sender.open = false;
        self.sender.publish();
        self.with_handler(cx, |h, cx| h.connection_lost(cx, reason));
    }

    fn connection_failed(&mut self, cx: &mut Context<'_>, error: io::Error) {
        self.with_handler(cx, |h, cx| h.connection_failed(cx, error));
    }

    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        self.with_handler(cx, |h, cx| h.pause_producing(cx));
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        self.with_handler(cx, |h, cx| h.resume_producing(cx));
    }

    fn stopping(&mut self, cx: &mut Context<'_>) {
        self.with_handler(cx, |h, cx| h.stopping(cx));
    }
}

impl<H: WsHandler> fmt::Debug for WebSocket<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.sender.role)
            .field("phase", &self.phase)
            .field("handler", &std::any::type_name::<H>())
            .field("decoder", &self.decoder)
            .finish()
    }
}
