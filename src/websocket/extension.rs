//! The seam for extensions that transform message payloads (permessage-deflate).

use super::{DecodeError, MessageKind, Rsv};

/// A transformation of data messages, keyed on reserved bits: the hook
/// permessage-deflate (RFC 7692) plugs into. Incoming messages go through
/// [`decode`](Self::decode) and [`finish_message`](Self::finish_message); outgoing
/// ones through [`encode`](Self::encode), which by default leaves them as they are.
///
/// An extension claims some reserved bits ([`rsv_bits`](Self::rsv_bits)). A data
/// message whose first frame sets some of them is handed to the extension: its payload,
/// unmasked, in pieces as it arrives, frame after frame ([`decode`](Self::decode)),
/// then [`finish_message`](Self::finish_message) once its last frame is in. The
/// extension appends what it makes of them to `out`; for a text message, the
/// [`Decoder`](super::Decoder) validates that output as UTF-8 as it comes, so the
/// message fails as soon as its decompressed bytes do. A message whose first frame
/// sets no reserved bit bypasses the extension.
///
/// The decoder refuses, with 1002, reserved bits the extension does not claim, any
/// reserved bit on a control frame or on a continuation frame (RFC 7692 section 6:
/// RSV1 is set on the first frame only), so the extension sees only what it claimed.
///
/// # Limits
///
/// `limit` is how many more bytes the message may grow by: the decoder's
/// `max_message_bytes` less what the message already holds. An extension must refuse
/// (with [`DecodeError::MessageTooLarge`]) as soon as its output would pass it, without
/// producing the rest first: that is the bound on a decompression bomb.
///
/// # A permessage-deflate sketch
///
/// `rsv_bits` returns [`Rsv::RSV1`]; `decode` runs a raw inflater over `input`,
/// writing into `out` until the input is used up or `limit` is passed; `finish_message`
/// feeds the four bytes `00 00 ff ff` that the sender removed (RFC 7692 section
/// 7.2.2), flushes, and resets the inflater if the peer negotiated
/// `no_context_takeover`. Its errors map to [`DecodeError::Extension`] with
/// [`CloseCode::INVALID_PAYLOAD`](super::CloseCode::INVALID_PAYLOAD) or
/// [`CloseCode::PROTOCOL_ERROR`](super::CloseCode::PROTOCOL_ERROR).
///
/// # Examples
///
/// A toy extension that sends text upside down (each byte XORed with 0x20, which
/// swaps the case of ASCII letters) and flags it with RSV3:
///
/// ```
/// use twistor::websocket::{
///     DecodeError, Decoder, Encoder, Event, Extension, OpCode, Role, Rsv,
/// };
///
/// struct SwapCase;
///
/// impl Extension for SwapCase {
///     fn rsv_bits(&self) -> Rsv {
///         Rsv::RSV3
///     }
///
///     fn decode(&mut self, _: Rsv, input: &[u8], out: &mut Vec<u8>, limit: usize)
///         -> Result<(), DecodeError>
///     {
///         if input.len() > limit {
///             return Err(DecodeError::MessageTooLarge);
///         }
///         out.extend(input.iter().map(|b| b ^ 0x20));
///         Ok(())
///     }
///
///     fn finish_message(&mut self, _: Rsv, _: &mut Vec<u8>, _: usize)
///         -> Result<(), DecodeError>
///     {
///         Ok(())
///     }
/// }
///
/// let mut wire = Vec::new();
/// Encoder::new(Role::Server).frame(&mut wire, true, Rsv::RSV3, OpCode::Text, b"HELLO")?;
/// let mut decoder = Decoder::with_extension(Role::Client, SwapCase);
/// let mut feed = decoder.feed(&wire);
/// assert_eq!(feed.next_event()?, Some(Event::Text("hello")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Extension {
    /// The reserved bits this extension gives a meaning to on the first frame of a
    /// data message.
    fn rsv_bits(&self) -> Rsv;

    /// Transforms the next piece of a message whose first frame set `rsv` (a non-empty
    /// subset of [`rsv_bits`](Self::rsv_bits)), appending at most `limit` bytes to
    /// `out`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::MessageTooLarge`] past `limit`; [`DecodeError::Extension`] for
    /// input it cannot decode. Either ends the connection with the error's close code.
    fn decode(
        &mut self,
        rsv: Rsv,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError>;

    /// The message's last frame is in: appends what is left (at most `limit` bytes)
    /// and gets ready for the next message.
    ///
    /// # Errors
    ///
    /// As for [`decode`](Self::decode).
    fn finish_message(
        &mut self,
        rsv: Rsv,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError>;

    /// Transforms one outgoing data message, whole: appends what goes on the wire to
    /// `out` and returns the reserved bits for the message's first frame. Returning
    /// [`Rsv::NONE`] (the default), with `out` unchanged, sends `payload` as it is:
    /// the [`WebSocket`](super::WebSocket) adapter then writes it without a copy.
    ///
    /// The adapter calls this for each text and binary message it sends (in one
    /// frame), never for control frames. The codec does not: a user of the
    /// [`Encoder`](super::Encoder) calls it, then writes the frame with the bits
    /// returned.
    fn encode(&mut self, kind: MessageKind, payload: &[u8], out: &mut Vec<u8>) -> Rsv {
        let _ = (kind, payload, out);
        Rsv::NONE
    }
}

/// No extension: every reserved bit is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoExtension;

impl Extension for NoExtension {
    fn rsv_bits(&self) -> Rsv {
        Rsv::NONE
    }

    fn decode(&mut self, rsv: Rsv, _: &[u8], _: &mut Vec<u8>, _: usize) -> Result<(), DecodeError> {
        // Unreachable through the decoder, which refuses bits not claimed.
        Err(DecodeError::ReservedBits(rsv))
    }

    fn finish_message(&mut self, rsv: Rsv, _: &mut Vec<u8>, _: usize) -> Result<(), DecodeError> {
        Err(DecodeError::ReservedBits(rsv))
    }
}

/// An extension negotiated or not, decided at the handshake: `None` claims no bit.
impl<E: Extension> Extension for Option<E> {
    fn rsv_bits(&self) -> Rsv {
        self.as_ref().map_or(Rsv::NONE, E::rsv_bits)
    }

    fn decode(
        &mut self,
        rsv: Rsv,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        match self {
            Some(e) => e.decode(rsv, input, out, limit),
            None => NoExtension.decode(rsv, input, out, limit),
        }
    }

    fn finish_message(
        &mut self,
        rsv: Rsv,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        match self {
            Some(e) => e.finish_message(rsv, out, limit),
            None => NoExtension.finish_message(rsv, out, limit),
        }
    }

    fn encode(&mut self, kind: MessageKind, payload: &[u8], out: &mut Vec<u8>) -> Rsv {
        self.as_mut()
            .map_or(Rsv::NONE, |e| e.encode(kind, payload, out))
    }
}

impl<E: Extension + ?Sized> Extension for Box<E> {
    fn rsv_bits(&self) -> Rsv {
        (**self).rsv_bits()
    }

    fn decode(
        &mut self,
        rsv: Rsv,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        (**self).decode(rsv, input, out, limit)
    }

    fn finish_message(
        &mut self,
        rsv: Rsv,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        (**self).finish_message(rsv, out, limit)
    }

    fn encode(&mut self, kind: MessageKind, payload: &[u8], out: &mut Vec<u8>) -> Rsv {
        (**self).encode(kind, payload, out)
    }
}
