//! The incremental decoder: bytes in, messages and control frames out.

use std::borrow::Cow;
use std::fmt;

use super::close::{CloseCode, CloseFrame};
use super::extension::{Extension, NoExtension};
use super::frame::{
    copy_masked, extend_masked, FrameHeader, OpCode, Parsed, Rsv, MAX_CONTROL_PAYLOAD_BYTES,
    MAX_HEADER_BYTES,
};
use super::utf8::{validate, Utf8Carry};
use super::{Message, MessageKind, Role};

/// The default largest frame payload: 16 MiB, tungstenite's default, and as large as
/// the largest single frame of the Autobahn suite (case 9.1.6).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;

/// The default largest message, after reassembly (and decompression): 64 MiB,
/// tungstenite's default, four times the largest message of the Autobahn suite.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Capacity a message buffer keeps once its message is handed out: a stream of
/// messages of up to this size allocates nothing, and one large message does not pin
/// its memory for the life of the connection.
const RETAINED_BUFFER_BYTES: usize = 64 * 1024;

/// Bytes unmasked at a time into a stack buffer on their way to UTF-8 validation or an
/// extension: small enough to stay in L1 between the two passes.
const BLOCK_BYTES: usize = 4096;

/// Why the peer's input was refused, and the close code to send for it
/// ([`close_code`](Self::close_code)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Reserved bits set that no extension allows, or set on a control or continuation
    /// frame (1002).
    ReservedBits(Rsv),
    /// A reserved opcode (1002).
    UnknownOpcode(u8),
    /// A control frame with a payload over 125 bytes (1002).
    ControlFrameTooLong(u64),
    /// A control frame without FIN (1002).
    FragmentedControlFrame,
    /// A continuation frame with no fragmented message to continue (1002).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished (1002).
    ExpectedContinuation,
    /// A server got an unmasked frame (1002).
    UnmaskedFrame,
    /// A client got a masked frame (1002).
    MaskedFrame,
    /// A length not written in its shortest form (1002).
    NonMinimalLength,
    /// A 64-bit length with its most significant bit set (1002).
    LengthOverflow,
    /// A close frame with a one-byte payload (1002).
    InvalidClosePayload,
    /// A close frame with a code not valid on the wire (1002).
    InvalidCloseCode(u16),
    /// Invalid UTF-8 in a text message or a close reason (1007).
    InvalidUtf8,
    /// A frame longer than `max_frame_bytes`, refused from its header (1009).
    FrameTooLarge(u64),
    /// A message that would pass `max_message_bytes` (1009).
    MessageTooLarge,
    /// An extension refused its input (permessage-deflate: a corrupt stream).
    Extension {
        /// The close code to send.
        code: CloseCode,
        /// What went wrong.
        reason: &'static str,
    },
}

impl DecodeError {
    /// The close code to send the peer for this error (RFC 6455 section 7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            DecodeError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            DecodeError::FrameTooLarge(_) | DecodeError::MessageTooLarge => {
                CloseCode::MESSAGE_TOO_BIG
            }
            DecodeError::Extension { code, .. } => *code,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::ReservedBits(rsv) => write!(f, "reserved bits set: {rsv:?}"),
            DecodeError::UnknownOpcode(op) => write!(f, "reserved opcode {op}"),
            DecodeError::ControlFrameTooLong(n) => write!(f, "control frame of {n} bytes"),
            DecodeError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            DecodeError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message to continue")
            }
            DecodeError::ExpectedContinuation => {
                f.write_str("new data frame inside a fragmented message")
            }
            DecodeError::UnmaskedFrame => f.write_str("unmasked frame from a client"),
            DecodeError::MaskedFrame => f.write_str("masked frame from a server"),
            DecodeError::NonMinimalLength => f.write_str("length not in its shortest form"),
            DecodeError::LengthOverflow => f.write_str("64-bit length with its top bit set"),
            DecodeError::InvalidClosePayload => f.write_str("close frame with a 1-byte payload"),
            DecodeError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            DecodeError::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            DecodeError::FrameTooLarge(n) => write!(f, "frame of {n} bytes is too large"),
            DecodeError::MessageTooLarge => f.write_str("message too large"),
            DecodeError::Extension { reason, .. } => write!(f, "extension: {reason}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// What the [`Decoder`] found: a whole message or a control frame.
///
/// The slices borrow the decoder (a reassembled message) or the chunk being fed (a
/// whole unmasked frame within it): copy what you keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A text message, reassembled, validated UTF-8.
    Text(&'a str),
    /// A binary message, reassembled.
    Binary(&'a [u8]),
    /// A ping: answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame, with its code and reason if it had a payload. The decoder drops
    /// everything after it: answer with a close (echoing the code) if you did not send
    /// one first, then close the connection.
    Close(Option<CloseFrame<'a>>),
}

impl Event<'_> {
    /// An owned copy of a text or binary message; `None` for a control frame.
    pub fn to_message(&self) -> Option<Message> {
        match *self {
            Event::Text(text) => Some(Message::Text(text.to_owned())),
            Event::Binary(data) => Some(Message::Binary(data.to_vec())),
            _ => None,
        }
    }
}

/// Where the decoder is in the byte stream.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Reading a frame header (possibly partly in `Decoder::header`).
    Header,
    /// Reading the payload of `Decoder::frame`.
    Payload,
    /// A close frame was received: input is discarded.
    Closed,
    /// The input broke the protocol: input is discarded, the error is returned again.
    Failed(DecodeError),
}

/// The frame whose payload is being read.
#[derive(Clone, Copy, Debug)]
struct Frame {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    /// Payload bytes read so far, modulo 4: how far to rotate the masking key.
    phase: usize,
    /// The message a data frame belongs to.
    message: Option<MessageState>,
}

/// A data message being received.
#[derive(Clone, Copy, Debug)]
struct MessageState {
    kind: MessageKind,
    /// The reserved bits of its first frame: non-empty means the extension decodes it.
    rsv: Rsv,
}

/// What a step found; the [`Feed`] turns it into an [`Event`] that borrows.
enum Found {
    /// The message in `Decoder::text` / `Decoder::binary`.
    Message(MessageKind),
    /// A whole message in this range of the input.
    InInput(MessageKind, std::ops::Range<usize>),
    /// The control frame in `Decoder::control`.
    Control(OpCode),
}

/// An incremental, sans-I/O WebSocket decoder (RFC 6455), for one side of one
/// connection.
///
/// Feed it the bytes the peer sent, in chunks of any size, with [`feed`](Self::feed),
/// and pull [`Event`]s: whole messages (fragments reassembled) and control frames,
/// which may arrive between the fragments of a message. Every rule of RFC 6455 on
/// frames is checked, and a broken one is a [`DecodeError`] that says which close code
/// to send; after an error, or after a close frame, the rest of the input is
/// discarded.
///
/// # Guarantees
///
/// - The events do not depend on how the input is cut into chunks.
/// - Limits are checked from the header, before any of the payload is buffered:
///   a frame over [`max_frame_bytes`](Self::max_frame_bytes) or a message that would
///   pass [`max_message_bytes`](Self::max_message_bytes) is refused (1009) as soon as
///   its header is in. A control frame over 125 bytes is refused (1002) likewise.
/// - Text is validated as it arrives, each byte once: invalid UTF-8 is refused (1007)
///   as soon as the byte that makes it invalid is in, not at the end of the message.
/// - Copies: a server unmasks binary payload on its way into the message buffer (one
///   copy), and text through a 4 KiB stack block into the message's `String` (two,
///   the first in L1), which spares a second validation pass to make a `&str`. A
///   client gets a whole unfragmented frame that is in one chunk as a slice of that
///   chunk, without copying it; other frames are copied once.
/// - Memory: the message being reassembled (bounded by `max_message_bytes`), a
///   header of at most 14 bytes, a control payload of at most 125 bytes, and what a
///   [`Feed`] dropped early left unparsed.
///
/// # Extensions
///
/// A decoder built [`with_extension`](Self::with_extension) hands the messages whose
/// first frame sets the reserved bits that extension claims to it, for decoding
/// (decompression) before UTF-8 validation; see [`Extension`].
///
/// # Examples
///
/// ```
/// use twistor::websocket::{CloseCode, DecodeError, Decoder, Event, Role};
///
/// let mut decoder = Decoder::new(Role::Client);
/// // A text message in two fragments, with a ping between them, then a close frame.
/// let wire = b"\x01\x03hel\x89\x02hi\x80\x02lo\x88\x02\x03\xe8";
/// let mut events = Vec::new();
/// for chunk in wire.chunks(5) {
///     let mut feed = decoder.feed(chunk);
///     while let Some(event) = feed.next_event()? {
///         events.push(format!("{event:?}"));
///     }
/// }
/// assert_eq!(
///     events,
///     [
///         r#"Ping([104, 105])"#,
///         r#"Text("hello")"#,
///         r#"Close(Some(CloseFrame { code: CloseCode(1000), reason: "" }))"#,
///     ]
/// );
///
/// // A server refuses that first frame: it is not masked.
/// let mut server = Decoder::new(Role::Server);
/// let error = server.feed(wire).next_event().unwrap_err();
/// assert_eq!(error, DecodeError::UnmaskedFrame);
/// assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR);
/// # Ok::<(), DecodeError>(())
/// ```
pub struct Decoder<X = NoExtension> {
    role: Role,
    max_frame_bytes: u64,
    max_message_bytes: usize,
    extension: X,
    state: State,
    header: [u8; MAX_HEADER_BYTES],
    header_len: usize,
    frame: Frame,
    /// The fragmented message in progress, if any.
    message: Option<MessageState>,
    /// The text message being reassembled: validated characters only.
    text: String,
    /// The unfinished character at the end of `text`'s input.
    carry: Utf8Carry,
    /// The binary message being reassembled.
    binary: Vec<u8>,
    /// An extension's output for a text message, before validation.
    decoded: Vec<u8>,
    control: [u8; MAX_CONTROL_PAYLOAD_BYTES],
    control_len: usize,
    /// A message was handed out of `text` or `binary`: empty them before going on.
    delivered: bool,
    /// Input a [`Feed`] was dropped before parsing.
    pending: Vec<u8>,
}

impl Decoder {
    /// A decoder for `role` without extensions, with the default limits
    /// ([`DEFAULT_MAX_FRAME_BYTES`], [`DEFAULT_MAX_MESSAGE_BYTES`]).
    pub fn new(role: Role) -> Decoder {
        Decoder::with_extension(role, NoExtension)
    }
}

impl<X: Extension> Decoder<X> {
    /// A decoder for `role` that hands the messages `extension` claims to it.
    pub fn with_extension(role: Role, extension: X) -> Decoder<X> {
        Decoder {
            role,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES as u64,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            extension,
            state: State::Header,
            header: [0; MAX_HEADER_BYTES],
            header_len: 0,
            frame: Frame {
                opcode: OpCode::Continuation,
                fin: false,
                mask: None,
                remaining: 0,
                phase: 0,
                message: None,
            },
            message: None,
            text: String::new(),
            carry: Utf8Carry::default(),
            binary: Vec::new(),
            decoded: Vec::new(),
            control: [0; MAX_CONTROL_PAYLOAD_BYTES],
            control_len: 0,
            delivered: false,
            pending: Vec::new(),
        }
    }

    /// Which side of the connection this decoder is on: a server wants masked frames,
    /// a client unmasked ones.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The largest frame payload accepted, in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        usize::try_from(self.max_frame_bytes).unwrap_or(usize::MAX)
    }

    /// Changes the largest frame payload accepted; applies from the next frame header.
    pub fn set_max_frame_bytes(&mut self, bytes: usize) {
        self.max_frame_bytes = bytes as u64;
    }

    /// The largest message accepted, after reassembly and decoding, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Changes the largest message accepted; applies from the next frame header.
    pub fn set_max_message_bytes(&mut self, bytes: usize) {
        self.max_message_bytes = bytes;
    }

    /// The extension.
    pub fn extension(&self) -> &X {
        &self.extension
    }

    /// The extension, to change its settings.
    pub fn extension_mut(&mut self) -> &mut X {
        &mut self.extension
    }

    /// True once a close frame was received (and handed out): later input is dropped.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The error the input was refused with, if it was.
    pub fn error(&self) -> Option<DecodeError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// True while a fragmented message has begun and not ended.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Bytes held: the message being reassembled, a partial header, and input a
    /// [`Feed`] left unparsed.
    pub fn buffered_bytes(&self) -> usize {
        let message = if self.delivered {
            0
        } else {
            self.text.len() + self.carry.len() + self.binary.len()
        };
        message + self.header_len + self.pending.len()
    }

    /// Starts decoding `chunk`, after whatever an earlier [`Feed`] left unparsed; pull
    /// the events from the returned [`Feed`].
    ///
    /// Dropping the feed before it returns `Ok(None)` (to pause reading) keeps the
    /// unparsed rest of `chunk` for the next `feed` (an empty chunk will do).
    pub fn feed<'d, 'c>(&'d mut self, chunk: &'c [u8]) -> Feed<'d, 'c, X> {
        let src = if self.pending.is_empty() {
            Cow::Borrowed(chunk)
        } else {
            let mut owned = std::mem::take(&mut self.pending);
            owned.extend_from_slice(chunk);
            Cow::Owned(owned)
        };
        Feed {
            decoder: self,
            src,
            pos: 0,
        }
    }

    /// Parses `input[*pos..]` up to the next event.
    fn step(&mut self, input: &[u8], pos: &mut usize) -> Result<Option<Found>, DecodeError> {
        if self.delivered {
            self.delivered = false;
            reset(&mut self.text, String::new, String::capacity, String::clear);
            reset(&mut self.binary, Vec::new, Vec::capacity, Vec::clear);
        }
        loop {
            match self.state {
                State::Failed(e) => {
                    *pos = input.len();
                    return Err(e);
                }
                State::Closed => {
                    *pos = input.len();
                    return Ok(None);
                }
                State::Header => {
                    let Some(header) = self.read_header(input, pos)? else {
                        return Ok(None);
                    };
                    if let Some(found) = self.start_frame(header, input, pos)? {
                        return Ok(Some(found));
                    }
                }
                State::Payload => {
                    let available = (input.len() - *pos) as u64;
                    if available == 0 {
                        return Ok(None);
                    }
                    let n = self.frame.remaining.min(available) as usize;
                    let piece = &input[*pos..*pos + n];
                    *pos += n;
                    self.payload(piece)?;
                    if self.frame.remaining == 0 {
                        self.state = State::Header;
                        if let Some(found) = self.end_frame()? {
                            return Ok(Some(found));
                        }
                    }
                }
            }
        }
    }

    /// Reads a whole header, straight from the input when it is all there, else
    /// through `self.header`.
    fn read_header(
        &mut self,
        input: &[u8],
        pos: &mut usize,
    ) -> Result<Option<FrameHeader>, DecodeError> {
        if self.header_len == 0 {
            if let Parsed::Complete(header, n) = FrameHeader::parse(&input[*pos..])? {
                *pos += n;
                return Ok(Some(header));
            }
        }
        loop {
            let need = match FrameHeader::parse(&self.header[..self.header_len])? {
                Parsed::Complete(header, _) => {
                    self.header_len = 0;
                    return Ok(Some(header));
                }
                Parsed::Incomplete(need) => need,
            };
            let take = (need - self.header_len).min(input.len() - *pos);
            if take == 0 {
                return Ok(None);
            }
            self.header[self.header_len..self.header_len + take]
                .copy_from_slice(&input[*pos..*pos + take]);
            self.header_len += take;
            *pos += take;
        }
    }

    /// Checks a header against the connection's rules and the limits, and sets up the
    /// payload's reading. A whole unmasked message in the input is returned at once.
    fn start_frame(
        &mut self,
        h: FrameHeader,
        input: &[u8],
        pos: &mut usize,
    ) -> Result<Option<Found>, DecodeError> {
        match (self.role, h.mask) {
            (Role::Server, None) => return Err(DecodeError::UnmaskedFrame),
            (Role::Client, Some(_)) => return Err(DecodeError::MaskedFrame),
            _ => {}
        }
        let message = if h.opcode.is_control() {
            if !h.rsv.is_empty() {
                return Err(DecodeError::ReservedBits(h.rsv));
            }
            if !h.fin {
                return Err(DecodeError::FragmentedControlFrame);
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD_BYTES as u64 {
                return Err(DecodeError::ControlFrameTooLong(h.payload_len));
            }
            self.control_len = 0;
            None
        } else {
            let (message, buffered) = match (h.opcode, self.message) {
                (OpCode::Continuation, None) => return Err(DecodeError::UnexpectedContinuation),
                (OpCode::Continuation, Some(message)) => {
                    if !h.rsv.is_empty() {
                        return Err(DecodeError::ReservedBits(h.rsv));
                    }
                    let buffered = match message.kind {
                        MessageKind::Text => self.text.len() + self.carry.len(),
                        MessageKind::Binary => self.binary.len(),
                    };
                    (message, buffered)
                }
                (_, Some(_)) => return Err(DecodeError::ExpectedContinuation),
                (opcode, None) => {
                    if !self.extension.rsv_bits().contains(h.rsv) {
                        return Err(DecodeError::ReservedBits(h.rsv));
                    }
                    let kind = if opcode == OpCode::Text {
                        MessageKind::Text
                    } else {
                        MessageKind::Binary
                    };
                    (MessageState { kind, rsv: h.rsv }, 0)
                }
            };
            if h.payload_len > self.max_frame_bytes {
                return Err(DecodeError::FrameTooLarge(h.payload_len));
            }
            // An extension's output is checked as it is made; plain payload is checked
            // here, before any of it is buffered.
            if message.rsv.is_empty()
                && h.payload_len > self.max_message_bytes.saturating_sub(buffered) as u64
            {
                return Err(DecodeError::MessageTooLarge);
            }
            let whole_in_input = (input.len() - *pos) as u64 >= h.payload_len;
            if h.opcode != OpCode::Continuation
                && h.fin
                && h.mask.is_none()
                && h.rsv.is_empty()
                && whole_in_input
            {
                let range = *pos..*pos + h.payload_len as usize;
                *pos = range.end;
                return Ok(Some(Found::InInput(message.kind, range)));
            }
            if h.opcode != OpCode::Continuation {
                self.message = Some(message);
                self.carry.clear();
            }
            Some(message)
        };
        self.frame = Frame {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask,
            remaining: h.payload_len,
            phase: 0,
            message,
        };
        if h.payload_len == 0 {
            return self.end_frame();
        }
        self.state = State::Payload;
        Ok(None)
    }

    /// Takes the next piece of the current frame's payload.
    fn payload(&mut self, piece: &[u8]) -> Result<(), DecodeError> {
        let key = self.frame.mask.map(|mut key| {
            key.rotate_left(self.frame.phase);
            key
        });
        self.frame.phase = (self.frame.phase + piece.len()) % 4;
        self.frame.remaining -= piece.len() as u64;
        let Some(message) = self.frame.message else {
            let dst = &mut self.control[self.control_len..self.control_len + piece.len()];
            match key {
                Some(key) => copy_masked(dst, piece, key),
                None => dst.copy_from_slice(piece),
            }
            self.control_len += piece.len();
            return Ok(());
        };
        match (message.kind, message.rsv.is_empty(), key) {
            (MessageKind::Binary, true, Some(key)) => extend_masked(&mut self.binary, piece, key),
            (MessageKind::Binary, true, None) => self.binary.extend_from_slice(piece),
            (MessageKind::Text, true, None) => self.push_text(piece)?,
            // Unmasked a block at a time; blocks are multiples of 4 bytes, so each
            // starts at the same phase of the key.
            (_, _, Some(key)) => {
                let mut block = [0; BLOCK_BYTES];
                for part in piece.chunks(BLOCK_BYTES) {
                    let block = &mut block[..part.len()];
                    copy_masked(block, part, key);
                    self.take_unmasked(message, block)?;
                }
            }
            (_, false, None) => self.take_unmasked(message, piece)?,
        }
        Ok(())
    }

    /// Takes unmasked payload of a text message, or of a message for the extension.
    fn take_unmasked(&mut self, message: MessageState, bytes: &[u8]) -> Result<(), DecodeError> {
        if message.rsv.is_empty() {
            return self.push_text(bytes);
        }
        match message.kind {
            MessageKind::Binary => {
                let limit = self.max_message_bytes.saturating_sub(self.binary.len());
                self.extension
                    .decode(message.rsv, bytes, &mut self.binary, limit)
            }
            MessageKind::Text => {
                let limit = self
                    .max_message_bytes
                    .saturating_sub(self.text.len() + self.carry.len());
                let result = self
                    .extension
                    .decode(message.rsv, bytes, &mut self.decoded, limit);
                self.push_decoded(result)
            }
        }
    }

    /// Validates what an extension decoded into `self.decoded` and moves it to the
    /// text, once the extension's `result` is known to be good.
    fn push_decoded(&mut self, result: Result<(), DecodeError>) -> Result<(), DecodeError> {
        result?;
        let decoded = std::mem::take(&mut self.decoded);
        let pushed = self.push_text(&decoded);
        self.decoded = decoded;
        self.decoded.clear();
        pushed
    }

    fn push_text(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        self.carry
            .push(&mut self.text, bytes)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    /// The current frame's payload is all in.
    fn end_frame(&mut self) -> Result<Option<Found>, DecodeError> {
        let Some(message) = self.frame.message else {
            if self.frame.opcode == OpCode::Close {
                // Checked here so that a bad close frame is an error, not an event.
                CloseFrame::parse(&self.control[..self.control_len])?;
                self.state = State::Closed;
            }
            return Ok(Some(Found::Control(self.frame.opcode)));
        };
        if !self.frame.fin {
            return Ok(None);
        }
        self.message = None;
        if !message.rsv.is_empty() {
            match message.kind {
                MessageKind::Binary => {
                    let limit = self.max_message_bytes.saturating_sub(self.binary.len());
                    self.extension
                        .finish_message(message.rsv, &mut self.binary, limit)?;
                }
                MessageKind::Text => {
                    let limit = self
                        .max_message_bytes
                        .saturating_sub(self.text.len() + self.carry.len());
                    let result =
                        self.extension
                            .finish_message(message.rsv, &mut self.decoded, limit);
                    self.push_decoded(result)?;
                }
            }
        }
        if message.kind == MessageKind::Text {
            self.carry.finish().map_err(|_| DecodeError::InvalidUtf8)?;
        }
        self.delivered = true;
        Ok(Some(Found::Message(message.kind)))
    }
}

/// Empties a message buffer, giving back a large allocation.
fn reset<T>(buf: &mut T, new: fn() -> T, capacity: fn(&T) -> usize, clear: fn(&mut T)) {
    if capacity(buf) > RETAINED_BUFFER_BYTES {
        *buf = new();
    } else {
        clear(buf);
    }
}

impl<X> fmt::Debug for Decoder<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("in_message", &self.message.is_some())
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("extension", &std::any::type_name::<X>())
            .finish()
    }
}

/// One chunk being decoded: pull its events with [`next_event`](Self::next_event).
///
/// Made by [`Decoder::feed`]. Dropped before `next_event` returned `Ok(None)`, it
/// hands the unparsed rest of the chunk back to the decoder.
pub struct Feed<'d, 'c, X: Extension = NoExtension> {
    decoder: &'d mut Decoder<X>,
    src: Cow<'c, [u8]>,
    pos: usize,
}

impl<X: Extension> Feed<'_, '_, X> {
    /// The next event, or `Ok(None)` once the chunk is used up (what is left of an
    /// unfinished frame is kept for the next chunk).
    ///
    /// # Errors
    ///
    /// The input broke a rule of RFC 6455, or a limit; send a close frame with the
    /// error's [`close_code`](DecodeError::close_code) and close the connection. The
    /// error is sticky: every later call returns it again and all input is dropped.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, DecodeError> {
        let found = match self.decoder.step(&self.src, &mut self.pos) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.decoder.state = State::Failed(e);
                return Err(e);
            }
        };
        Ok(Some(match found {
            Found::Message(MessageKind::Text) => Event::Text(&self.decoder.text),
            Found::Message(MessageKind::Binary) => Event::Binary(&self.decoder.binary),
            Found::InInput(MessageKind::Binary, range) => Event::Binary(&self.src[range]),
            Found::InInput(MessageKind::Text, range) => match validate(&self.src[range]) {
                Ok(text) => Event::Text(text),
                Err(_) => {
                    self.decoder.state = State::Failed(DecodeError::InvalidUtf8);
                    self.pos = self.src.len();
                    return Err(DecodeError::InvalidUtf8);
                }
            },
            Found::Control(opcode) => {
                let payload = &self.decoder.control[..self.decoder.control_len];
                match opcode {
                    OpCode::Ping => Event::Ping(payload),
                    OpCode::Pong => Event::Pong(payload),
                    // Already checked by `end_frame`.
                    _ => Event::Close(CloseFrame::parse(payload).unwrap_or(None)),
                }
            }
        }))
    }
}

impl<X: Extension> Drop for Feed<'_, '_, X> {
    fn drop(&mut self) {
        // After a close or an error, input is dropped, not kept.
        let done = matches!(self.decoder.state, State::Closed | State::Failed(_));
        let pos = if done { self.src.len() } else { self.pos };
        match std::mem::take(&mut self.src) {
            Cow::Owned(mut rest) => {
                rest.drain(..pos);
                if rest.is_empty() && rest.capacity() > RETAINED_BUFFER_BYTES {
                    rest = Vec::new();
                }
                self.decoder.pending = rest;
            }
            Cow::Borrowed(chunk) => self.decoder.pending.extend_from_slice(&chunk[pos..]),
        }
    }
}

impl<X: Extension> fmt::Debug for Feed<'_, '_, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("decoder", &self.decoder)
            .field("unparsed_bytes", &(self.src.len() - self.pos))
            .finish()
    }
}
