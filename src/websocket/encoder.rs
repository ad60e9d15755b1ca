//! The encoder: messages and control frames out, as bytes.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;

use super::close::CloseCode;
use super::frame::{
    apply_mask, FrameHeader, OpCode, Rsv, MAX_CONTROL_PAYLOAD_BYTES, MAX_HEADER_BYTES,
};
use super::{Message, MessageKind, Role};

/// Where a client's masking keys come from: one key per frame.
///
/// RFC 6455 section 5.3 asks for keys an attacker cannot predict (they keep a script
/// in a browser from choosing the bytes a proxy sees). [`RandomMask`] is the default;
/// a closure `FnMut() -> [u8; 4]` is a source too, for a PRNG the reactor already has
/// or a fixed key in a test.
pub trait MaskSource {
    /// The masking key for the next frame.
    fn next_mask(&mut self) -> [u8; 4];
}

impl<F: FnMut() -> [u8; 4]> MaskSource for F {
    fn next_mask(&mut self) -> [u8; 4] {
        self()
    }
}

/// Masking keys from a keyed hash of a counter: SipHash-1-3 under the random keys of
/// std's [`RandomState`] (from the operating system's random source, once per
/// process, then varied per instance).
///
/// Without its keys the outputs cannot be predicted, which is what RFC 6455 asks of
/// masking keys, at the cost of one short hash per frame and no dependency.
#[derive(Clone, Debug)]
pub struct RandomMask {
    keys: RandomState,
    counter: u64,
}

impl RandomMask {
    /// A source with fresh keys.
    pub fn new() -> RandomMask {
        RandomMask {
            keys: RandomState::new(),
            counter: 0,
        }
    }
}

impl Default for RandomMask {
    fn default() -> RandomMask {
        RandomMask::new()
    }
}

impl MaskSource for RandomMask {
    fn next_mask(&mut self) -> [u8; 4] {
        self.counter = self.counter.wrapping_add(1);
        (self.keys.hash_one(self.counter) as u32).to_ne_bytes()
    }
}

/// A frame the [`Encoder`] refused to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A control frame payload over 125 bytes (a close reason over 123).
    ControlPayloadTooLong(usize),
    /// A control frame without FIN.
    FragmentedControlFrame,
    /// A close code that may not be sent (see [`CloseCode::is_valid_on_wire`]).
    InvalidCloseCode(CloseCode),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::ControlPayloadTooLong(n) => {
                write!(f, "control frame payload of {n} bytes (at most 125)")
            }
            EncodeError::FragmentedControlFrame => f.write_str("control frame without FIN"),
            EncodeError::InvalidCloseCode(code) => write!(f, "close code {code} cannot be sent"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// A frame header ready to be written, from [`Encoder::header`].
#[derive(Clone, Copy)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_BYTES],
    len: u8,
    mask: Option<[u8; 4]>,
}

impl EncodedHeader {
    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The masking key written in the header (client frames): the payload must be
    /// masked with it ([`apply_mask`]) before it is sent. `None` on a server: the
    /// payload goes out as it is.
    pub fn mask(&self) -> Option<[u8; 4]> {
        self.mask
    }
}

impl fmt::Debug for EncodedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedHeader")
            .field("bytes", &self.as_bytes())
            .finish()
    }
}

/// Writes frames for one side of one connection: unmasked on a server, masked with a
/// fresh key per frame on a client.
///
/// Each method appends one frame to a `Vec<u8>` (a write buffer reused from frame to
/// frame). A server that sends a large payload without copying it takes its
/// [`header`](Self::header) alone and writes the header and the payload as two
/// `IoSlice`s (`Context::write_vectored`).
///
/// # Examples
///
/// ```
/// use std::io::IoSlice;
/// use twistor::websocket::{CloseCode, Encoder, OpCode, Role, Rsv};
///
/// let mut server = Encoder::new(Role::Server);
/// let mut out = Vec::new();
/// server.text(&mut out, "hi");
/// server.close(&mut out, CloseCode::NORMAL, "bye")?;
/// assert_eq!(out, b"\x81\x02hi\x88\x05\x03\xe8bye");
///
/// // A large payload, sent without a copy: header and payload as two slices.
/// let payload = vec![7u8; 100_000];
/// let header = server.header(true, Rsv::NONE, OpCode::Binary, payload.len() as u64);
/// let slices = [IoSlice::new(header.as_bytes()), IoSlice::new(&payload)];
/// assert_eq!(slices[0].len(), 10);
///
/// // A client masks with the key of its choice (here a fixed one).
/// let mut client = Encoder::with_mask_source(Role::Client, || [1, 2, 3, 4]);
/// let mut out = Vec::new();
/// client.binary(&mut out, &[1, 2, 3, 4, 5]);
/// assert_eq!(out, [0x82, 0x85, 1, 2, 3, 4, 0, 0, 0, 0, 4]);
/// # Ok::<(), twistor::websocket::EncodeError>(())
/// ```
pub struct Encoder<M = RandomMask> {
    role: Role,
    masks: M,
}

impl Encoder {
    /// An encoder for `role`; a client's keys come from a [`RandomMask`].
    pub fn new(role: Role) -> Encoder {
        Encoder::with_mask_source(role, RandomMask::new())
    }
}

impl<M: MaskSource> Encoder<M> {
    /// An encoder for `role` whose keys (on a client) come from `masks`.
    pub fn with_mask_source(role: Role, masks: M) -> Encoder<M> {
        Encoder { role, masks }
    }

    /// Which side of the connection this encoder is on.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The header of a frame with a payload of `payload_len` bytes; on a client it
    /// carries a fresh masking key, which the payload must then be masked with (see
    /// [`EncodedHeader::mask`]).
    ///
    /// Nothing is checked: this is the raw layer under the other methods.
    pub fn header(
        &mut self,
        fin: bool,
        rsv: Rsv,
        opcode: OpCode,
        payload_len: u64,
    ) -> EncodedHeader {
        let mask = match self.role {
            Role::Client => Some(self.masks.next_mask()),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        };
        let mut bytes = [0; MAX_HEADER_BYTES];
        let len = header.encode(&mut bytes) as u8;
        EncodedHeader { bytes, len, mask }
    }

    /// Appends one frame, its payload masked on a client. The general form: reserved
    /// bits (set by an extension, as permessage-deflate sets RSV1 on the first frame of
    /// a compressed message) and fragments.
    ///
    /// # Errors
    ///
    /// A control frame ([`OpCode::is_control`]) without `fin` or with a payload over
    /// 125 bytes. Nothing is written then.
    pub fn frame(
        &mut self,
        out: &mut Vec<u8>,
        fin: bool,
        rsv: Rsv,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), EncodeError> {
        if opcode.is_control() {
            if !fin {
                return Err(EncodeError::FragmentedControlFrame);
            }
            if payload.len() > MAX_CONTROL_PAYLOAD_BYTES {
                return Err(EncodeError::ControlPayloadTooLong(payload.len()));
            }
        }
        self.write(out, fin, rsv, opcode, &[payload]);
        Ok(())
    }

    /// Appends the header, then the parts of the payload, masking them on a client.
    fn write(&mut self, out: &mut Vec<u8>, fin: bool, rsv: Rsv, opcode: OpCode, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let header = self.header(fin, rsv, opcode, len as u64);
        out.reserve(header.as_bytes().len() + len);
        out.extend_from_slice(header.as_bytes());
        let start = out.len();
        for part in parts {
            out.extend_from_slice(part);
        }
        if let Some(key) = header.mask() {
            apply_mask(&mut out[start..], key);
        }
    }

    /// Appends a text message, in one frame.
    pub fn text(&mut self, out: &mut Vec<u8>, text: &str) {
        self.write(out, true, Rsv::NONE, OpCode::Text, &[text.as_bytes()]);
    }

    /// Appends a binary message, in one frame.
    pub fn binary(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        self.write(out, true, Rsv::NONE, OpCode::Binary, &[data]);
    }

    /// Appends a message, in one frame.
    pub fn message(&mut self, out: &mut Vec<u8>, message: &Message) {
        match message {
            Message::Text(text) => self.text(out, text),
            Message::Binary(data) => self.binary(out, data),
        }
    }

    /// Appends the first frame of a fragmented message of `kind`. Follow it with
    /// [`continue_fragmented`](Self::continue_fragmented), the last one with `last`
    /// set. Control frames may go between them; other messages may not.
    ///
    /// For text, each fragment need not be valid UTF-8 on its own (a character may be
    /// split between two), but the whole message must be.
    pub fn start_fragmented(&mut self, out: &mut Vec<u8>, kind: MessageKind, payload: &[u8]) {
        let opcode = match kind {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        self.write(out, false, Rsv::NONE, opcode, &[payload]);
    }

    /// Appends the next frame of a fragmented message; `last` ends the message.
    pub fn continue_fragmented(&mut self, out: &mut Vec<u8>, payload: &[u8], last: bool) {
        self.write(out, last, Rsv::NONE, OpCode::Continuation, &[payload]);
    }

    /// Appends a ping.
    ///
    /// # Errors
    ///
    /// A payload over 125 bytes.
    pub fn ping(&mut self, out: &mut Vec<u8>, payload: &[u8]) -> Result<(), EncodeError> {
        self.frame(out, true, Rsv::NONE, OpCode::Ping, payload)
    }

    /// Appends a pong (the answer to a ping carries the ping's payload).
    ///
    /// # Errors
    ///
    /// A payload over 125 bytes.
    pub fn pong(&mut self, out: &mut Vec<u8>, payload: &[u8]) -> Result<(), EncodeError> {
        self.frame(out, true, Rsv::NONE, OpCode::Pong, payload)
    }

    /// Appends a close frame with a status code and a reason (which may be empty).
    ///
    /// # Errors
    ///
    /// A code that may not be sent (1005, 1006, 1015, ...: see
    /// [`CloseCode::is_valid_on_wire`]), or a reason over 123 bytes.
    pub fn close(
        &mut self,
        out: &mut Vec<u8>,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), EncodeError> {
        if !code.is_valid_on_wire() {
            return Err(EncodeError::InvalidCloseCode(code));
        }
        let len = 2 + reason.len();
        if len > MAX_CONTROL_PAYLOAD_BYTES {
            return Err(EncodeError::ControlPayloadTooLong(len));
        }
        let code = code.0.to_be_bytes();
        self.write(
            out,
            true,
            Rsv::NONE,
            OpCode::Close,
            &[&code, reason.as_bytes()],
        );
        Ok(())
    }

    /// Appends a close frame without a status code (the peer reports 1005).
    pub fn close_empty(&mut self, out: &mut Vec<u8>) {
        self.write(out, true, Rsv::NONE, OpCode::Close, &[]);
    }
}

impl<M> fmt::Debug for Encoder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("role", &self.role)
            .field("masks", &std::any::type_name::<M>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_masks_differ_from_frame_to_frame_and_from_source_to_source() {
        let mut a = RandomMask::new();
        let mut b = RandomMask::new();
        let from_a: Vec<[u8; 4]> = (0..64).map(|_| a.next_mask()).collect();
        let from_b: Vec<[u8; 4]> = (0..64).map(|_| b.next_mask()).collect();
        let mut distinct = from_a.clone();
        distinct.sort();
        distinct.dedup();
        // 64 draws from 2^32: a repeat would be a one in a million event.
        assert_eq!(distinct.len(), 64);
        assert_ne!(from_a, from_b);
    }

    #[test]
    fn control_frames_are_checked() {
        let mut e = Encoder::new(Role::Server);
        let mut out = Vec::new();
        assert_eq!(
            e.ping(&mut out, &[0; 126]),
            Err(EncodeError::ControlPayloadTooLong(126))
        );
        assert_eq!(
            e.frame(&mut out, false, Rsv::NONE, OpCode::Pong, b""),
            Err(EncodeError::FragmentedControlFrame)
        );
        assert_eq!(
            e.close(&mut out, CloseCode::NORMAL, &"a".repeat(124)),
            Err(EncodeError::ControlPayloadTooLong(126))
        );
        for code in [
            CloseCode::NO_STATUS_RECEIVED,
            CloseCode::ABNORMAL,
            CloseCode(1004),
        ] {
            assert_eq!(
                e.close(&mut out, code, ""),
                Err(EncodeError::InvalidCloseCode(code))
            );
        }
        assert!(out.is_empty());
        e.ping(&mut out, &[0; 125]).unwrap();
        e.close(&mut out, CloseCode(4000), &"a".repeat(123))
            .unwrap();
        assert_eq!(out.len(), 2 + 125 + 2 + 125);
    }

    #[test]
    fn a_client_masks_every_frame_with_a_fresh_key() {
        let mut keys = [[1, 2, 3, 4], [5, 6, 7, 8]].into_iter();
        let mut e = Encoder::with_mask_source(Role::Client, move || keys.next().unwrap());
        let mut out = Vec::new();
        e.text(&mut out, "ab");
        e.close_empty(&mut out);
        assert_eq!(
            out,
            [
                0x81,
                0x82,
                1,
                2,
                3,
                4,
                b'a' ^ 1,
                b'b' ^ 2,
                0x88,
                0x80,
                5,
                6,
                7,
                8
            ]
        );
    }
}
