//! The WebSocket protocol (RFC 6455): a sans-I/O codec, the HTTP/1.1 upgrade, and a
//! protocol adapter that runs them over any connection.
//!
//! - [`WebSocket`] is a [`Protocol`](crate::Protocol), in the style of the framers:
//!   it does the upgrade (server or client), then hands whole messages to a
//!   [`WsHandler`] (`message_received(cx, message)`), whose [`WsContext`] derefs to
//!   [`Context`](crate::Context) and adds `send_text`, `send_binary`, `ping` and
//!   `close(code, reason)`. It answers pings, completes the closing handshake and
//!   closes with the right code on a violation. Since TLS belongs to the connection,
//!   `wss://` is the same adapter on a TLS listener; Unix sockets and the testing kit
//!   work the same way.
//! - [`handshake`] is the upgrade as pure functions: the request read with `httparse`
//!   into a [`Request`] for the handler's check (`Origin`, path, subprotocols), the
//!   answer an [`Accept`] or a [`Refuse`] (any HTTP response), the accept key with
//!   `sha1` and `base64`, a [`ClientHandshake`] for the client, and the
//!   [`ExtensionNegotiator`] seam where permessage-deflate plugs in.
//! - [`Decoder`] takes the bytes the peer sent, in chunks of any size, and yields
//!   [`Event`]s: whole messages (fragments reassembled, text validated as UTF-8 as it
//!   arrives), pings, pongs and the close frame; or a [`DecodeError`] that names the
//!   close code to answer with (1002 protocol error, 1007 invalid UTF-8, 1009 too big).
//! - [`Encoder`] writes messages, fragments and control frames, masked on a client
//!   (with keys from a [`MaskSource`]) and unmasked on a server.
//! - [`FrameHeader`], [`apply_mask`], [`CloseCode`] and [`CloseFrame`] are the pieces
//!   under both, for other uses (a proxy, a fuzzer, a benchmark).
//! - [`Extension`] is the seam for permessage-deflate (RFC 7692): the decoder hands it
//!   the payload of messages whose first frame sets the reserved bits it claims.
//! - [`Deflate`] is permessage-deflate on that seam: [`DeflateConfig`] negotiates it
//!   (a server's [`negotiate`](DeflateConfig::negotiate), a client's
//!   [`offer`](DeflateConfig::offer) and [`accept`](DeflateConfig::accept), with the
//!   window and context-takeover parameters), the decoder inflates through it within
//!   `max_message_bytes` (a deflate bomb is refused, 1009, before it is inflated), and
//!   [`Deflate::compress`] makes a message's payload to send with RSV1: the adapter
//!   compresses what it sends through [`Extension::encode`], with the parameters
//!   agreed for its direction, on a server and on a client alike.
//!
//! The codec and the handshake are pure; only the adapter touches a connection, and
//! only through its [`Context`](crate::Context).
//!
//! # Example: encode frames, decode them back
//!
//! ```
//! use twistor::websocket::{CloseCode, Decoder, Encoder, Event, MessageKind, Role};
//!
//! // A client sends (masked), a server receives.
//! let mut client = Encoder::new(Role::Client);
//! let mut wire = Vec::new();
//! client.text(&mut wire, "hello");
//! client.start_fragmented(&mut wire, MessageKind::Binary, &[1, 2]);
//! client.ping(&mut wire, b"are you there?")?;
//! client.continue_fragmented(&mut wire, &[3], true);
//! client.close(&mut wire, CloseCode::NORMAL, "done")?;
//!
//! let mut server = Decoder::new(Role::Server);
//! let mut feed = server.feed(&wire);
//! assert_eq!(feed.next_event()?, Some(Event::Text("hello")));
//! assert_eq!(feed.next_event()?, Some(Event::Ping(b"are you there?")));
//! assert_eq!(feed.next_event()?, Some(Event::Binary(&[1, 2, 3])));
//! let Some(Event::Close(Some(close))) = feed.next_event()? else { panic!() };
//! assert_eq!((close.code, close.reason), (CloseCode::NORMAL, "done"));
//! assert_eq!(feed.next_event()?, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Rules kept, and the choices made
//!
//! - A server refuses unmasked frames and a client masked ones (1002), as RFC 6455
//!   section 5.1 requires.
//! - Lengths must use their shortest form and a 64-bit length must have its top bit
//!   clear (1002). RFC 6455 says MUST; Chromium refuses them too; Autobahn has no case.
//! - Close codes: 1000-1003, 1007-1014 and 3000-4999 are accepted; the rest, 1005,
//!   1006 and 1015 included, are refused (1002). 1012-1014 are registered with IANA,
//!   and Autobahn does not count them invalid.
//! - After a close frame the decoder drops its input: the peer may send nothing more.

// Maintainers: frame.rs is the wire format (headers, masking), close.rs the close
// payload, utf8.rs the incremental validation, decoder.rs the state machine (the rules
// that depend on the connection: role, fragmentation, limits, the extension),
// encoder.rs the sending side, deflate.rs permessage-deflate (its negotiation and its
// `Extension`); handshake.rs the HTTP upgrade (pure), protocol.rs the adapter
// (`WebSocket<H>`), the only file that sees a `Context`. The decoder's events borrow
// either its buffers or the chunk; a step returns where the bytes are (`Found`) and the
// `Feed` makes the borrow, as the framers' parsers do.

mod close;
mod decoder;
mod deflate;
mod encoder;
mod extension;
mod frame;
pub mod handshake;
mod protocol;
mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use decoder::{
    DecodeError, Decoder, Event, Feed, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_MESSAGE_BYTES,
};
pub use deflate::{Deflate, DeflateConfig, DeflateParams, NegotiationError};
pub use encoder::{EncodeError, EncodedHeader, Encoder, MaskSource, RandomMask};
pub use extension::{Extension, NoExtension};
pub use frame::{
    apply_mask, FrameHeader, OpCode, Parsed, Rsv, MAX_CONTROL_PAYLOAD_BYTES, MAX_HEADER_BYTES,
};
pub use handshake::{
    Accept, ClientHandshake, ExtensionNegotiator, ExtensionOffer, HandshakeError, Negotiated,
    Refuse, Request, Upgraded, MAX_HEAD_BYTES,
};
pub use protocol::{
    MessageRef, WebSocket, WsContext, WsHandler, WsSender, DEFAULT_HANDSHAKE_TIMEOUT,
};

/// Which end of the connection a codec serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that accepted: receives masked frames, sends unmasked ones.
    Server,
    /// The end that connected: sends masked frames, receives unmasked ones.
    Client,
}

/// The two kinds of data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (opcode 1).
    Text,
    /// Bytes (opcode 2).
    Binary,
}

/// An owned data message, for code that keeps messages (an [`Event`] borrows).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// Which kind of message this is.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// The payload's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }
}

#[cfg(test)]
mod tests;
