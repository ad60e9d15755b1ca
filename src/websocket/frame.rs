//! Frame headers (RFC 6455 section 5.2) and masking (section 5.3).
//!
//! [`FrameHeader::parse`] reads a header from the front of a buffer and checks the rules
//! that a header alone breaks (an unknown opcode, a 64-bit length with its top bit set,
//! a length not in its shortest form); the rules that depend on the connection (the
//! role's masking rule, reserved bits an extension allows, fragmentation) are the
//! [`Decoder`](super::Decoder)'s. [`apply_mask`] is the XOR both directions use.

use std::fmt;
use std::ops::BitOr;

use super::DecodeError;

/// The longest frame header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_BYTES: usize = 14;

/// The largest payload of a control frame (ping, pong, close): RFC 6455 section 5.5.
pub const MAX_CONTROL_PAYLOAD_BYTES: usize = 125;

/// A frame's opcode (RFC 6455 section 5.2). The reserved ones (3-7, 11-15) have no
/// variant: a frame that uses one is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0: the next frame of a fragmented message.
    Continuation,
    /// 1: the first frame of a text message.
    Text,
    /// 2: the first frame of a binary message.
    Binary,
    /// 8: a close frame.
    Close,
    /// 9: a ping.
    Ping,
    /// 10: a pong.
    Pong,
}

impl OpCode {
    /// The opcode of the 4-bit value `bits`, or `None` for a reserved one.
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            8 => OpCode::Close,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0,
            OpCode::Text => 1,
            OpCode::Binary => 2,
            OpCode::Close => 8,
            OpCode::Ping => 9,
            OpCode::Pong => 10,
        }
    }

    /// True for close, ping and pong: at most 125 bytes, never fragmented, and allowed
    /// between the frames of a fragmented message.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// The three reserved bits of a frame header (RSV1, RSV2, RSV3), as a set.
///
/// Each constant is the bit's place in the header's first byte. Without an extension
/// that gives them a meaning they must be zero; permessage-deflate (RFC 7692) sets
/// [`Rsv::RSV1`] on the first frame of a compressed message.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rsv(u8);

impl Rsv {
    /// No reserved bit.
    pub const NONE: Rsv = Rsv(0);
    /// RSV1: "compressed" under permessage-deflate.
    pub const RSV1: Rsv = Rsv(0x40);
    /// RSV2.
    pub const RSV2: Rsv = Rsv(0x20);
    /// RSV3.
    pub const RSV3: Rsv = Rsv(0x10);

    /// The reserved bits of a header's first byte.
    pub fn from_first_byte(byte: u8) -> Rsv {
        Rsv(byte & 0x70)
    }

    /// The bits, in their place in the header's first byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// True if no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True if every bit of `other` is set in `self`.
    pub fn contains(self, other: Rsv) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Rsv {
    type Output = Rsv;

    fn bitor(self, other: Rsv) -> Rsv {
        Rsv(self.0 | other.0)
    }
}

impl fmt::Debug for Rsv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Rsv::RSV1, "RSV1"),
            (Rsv::RSV2, "RSV2"),
            (Rsv::RSV3, "RSV3"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| self.contains(*bit))
            .map(|(_, name)| *name)
            .collect();
        if set.is_empty() {
            f.write_str("Rsv(NONE)")
        } else {
            write!(f, "Rsv({})", set.join(" | "))
        }
    }
}

/// A frame header: everything before the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The last frame of its message (always true for a control frame).
    pub fin: bool,
    /// The reserved bits.
    pub rsv: Rsv,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key, present on frames a client sends and only there.
    pub mask: Option<[u8; 4]>,
    /// The payload's length in bytes.
    pub payload_len: u64,
}

/// What [`FrameHeader::parse`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of this many bytes.
    Complete(FrameHeader, usize),
    /// Not enough bytes: the header is at least this long.
    Incomplete(usize),
}

impl FrameHeader {
    /// Reads a header from the front of `buf`.
    ///
    /// # Errors
    ///
    /// A reserved opcode ([`DecodeError::UnknownOpcode`]), a 64-bit length with its
    /// most significant bit set ([`DecodeError::LengthOverflow`]), or a length not
    /// written in its shortest form ([`DecodeError::NonMinimalLength`]: RFC 6455 says
    /// the minimal number of bytes MUST be used; Chromium refuses the others too).
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::websocket::{FrameHeader, OpCode, Parsed, Rsv};
    ///
    /// let header = FrameHeader::parse(&[0x81, 0x05, b'h'])?;
    /// let expected = FrameHeader {
    ///     fin: true,
    ///     rsv: Rsv::NONE,
    ///     opcode: OpCode::Text,
    ///     mask: None,
    ///     payload_len: 5,
    /// };
    /// assert_eq!(header, Parsed::Complete(expected, 2));
    /// assert_eq!(FrameHeader::parse(&[0x82, 0xFE])?, Parsed::Incomplete(8));
    /// # Ok::<(), twistor::websocket::DecodeError>(())
    /// ```
    pub fn parse(buf: &[u8]) -> Result<Parsed, DecodeError> {
        let [b0, b1, ..] = *buf else {
            return Ok(Parsed::Incomplete(2));
        };
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(DecodeError::UnknownOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        let (len_bytes, short_len) = match b1 & 0x7F {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let total = 2 + len_bytes + if masked { 4 } else { 0 };
        if buf.len() < total {
            return Ok(Parsed::Incomplete(total));
        }
        let payload_len = match (short_len, len_bytes) {
            (Some(n), _) => n,
            (None, 2) => {
                let n = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
                if n < 126 {
                    return Err(DecodeError::NonMinimalLength);
                }
                n
            }
            _ => {
                let mut be = [0; 8];
                be.copy_from_slice(&buf[2..10]);
                let n = u64::from_be_bytes(be);
                if n >> 63 != 0 {
                    return Err(DecodeError::LengthOverflow);
                }
                if n <= 0xFFFF {
                    return Err(DecodeError::NonMinimalLength);
                }
                n
            }
        };
        let mask = masked.then(|| {
            let at = 2 + len_bytes;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: Rsv::from_first_byte(b0),
            opcode,
            mask,
            payload_len,
        };
        Ok(Parsed::Complete(header, total))
    }

    /// The header's length on the wire.
    pub fn encoded_len(&self) -> usize {
        let len_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + len_bytes + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header, with the shortest length encoding, into `buf`; returns the
    /// number of bytes written.
    ///
    /// # Panics
    ///
    /// If `payload_len` has its most significant bit set (no frame is that long).
    pub fn encode(&self, buf: &mut [u8; MAX_HEADER_BYTES]) -> usize {
        assert!(
            self.payload_len >> 63 == 0,
            "a frame payload under 2^63 bytes"
        );
        buf[0] = u8::from(self.fin) << 7 | self.rsv.bits() | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            n @ 0..=125 => {
                buf[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                buf[1] = mask_bit | 126;
                buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                buf[1] = mask_bit | 127;
                buf[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            buf[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

/// XORs `buf` with the masking key `key`, repeated (RFC 6455 section 5.3): masks a
/// payload and unmasks it back.
///
/// `buf` must start at a multiple of 4 bytes into the payload; for a piece that starts
/// at `offset`, pass `key` rotated left by `offset % 4` (`key.rotate_left(offset % 4)`).
/// Eight bytes at a time, in safe code that the compiler vectorises.
///
/// # Examples
///
/// ```
/// use twistor::websocket::apply_mask;
///
/// let key = [1, 2, 3, 4];
/// let mut data = *b"hello, world";
/// apply_mask(&mut data, key);
/// assert_ne!(&data, b"hello, world");
/// apply_mask(&mut data[..5], key);
/// let mut rotated = key;
/// rotated.rotate_left(5 % 4);
/// apply_mask(&mut data[5..], rotated);
/// assert_eq!(&data, b"hello, world");
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let key8 = mask_word(key);
    // Four words per round: the compiler turns the round into two 16-byte (or one
    // 32-byte) vector XORs, where a one-word loop stays scalar.
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        for word in block.chunks_exact_mut(8) {
            xor_word(word, key8);
        }
    }
    let rest = blocks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        xor_word(word, key8);
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// Appends `src` to `dst`, masked with `key` as [`apply_mask`] would.
pub(crate) fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    let start = dst.len();
    dst.extend_from_slice(src);
    apply_mask(&mut dst[start..], key);
}

/// Copies `src` into `dst` (of the same length), masked with `key`: one pass.
pub(crate) fn copy_masked(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    debug_assert_eq!(dst.len(), src.len());
    let key8 = mask_word(key);
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let word = u64::from_ne_bytes(s.try_into().expect("8 bytes"));
        d.copy_from_slice(&(word ^ key8).to_ne_bytes());
    }
    let rest = d.into_remainder().iter_mut().zip(s.remainder());
    for (i, (d, s)) in rest.enumerate() {
        *d = s ^ key[i & 3];
    }
}

/// The key repeated over a word, in memory order.
fn mask_word(key: [u8; 4]) -> u64 {
    let [a, b, c, d] = key;
    u64::from_ne_bytes([a, b, c, d, a, b, c, d])
}

#[inline(always)]
fn xor_word(word: &mut [u8], key8: u64) {
    let value = u64::from_ne_bytes((&*word).try_into().expect("8 bytes")) ^ key8;
    word.copy_from_slice(&value.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: Rsv::NONE,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn header_round_trips_at_every_length_boundary() {
        let lens = [
            0,
            1,
            125,
            126,
            127,
            0xFFFF,
            0x1_0000,
            1 << 32,
            (1 << 63) - 1,
        ];
        for len in lens {
            for mask in [None, Some([9, 8, 7, 6])] {
                for (fin, rsv) in [(true, Rsv::NONE), (false, Rsv::RSV1 | Rsv::RSV3)] {
                    let h = FrameHeader {
                        fin,
                        rsv,
                        ..header(OpCode::Binary, len, mask)
                    };
                    let mut buf = [0; MAX_HEADER_BYTES];
                    let n = h.encode(&mut buf);
                    assert_eq!(n, h.encoded_len());
                    assert_eq!(FrameHeader::parse(&buf[..n]), Ok(Parsed::Complete(h, n)));
                    // Every prefix is incomplete, and says how long the header is once
                    // its first two bytes are in.
                    for cut in 0..n {
                        match FrameHeader::parse(&buf[..cut]) {
                            Ok(Parsed::Incomplete(need)) => {
                                assert!(need > cut);
                                assert!(cut < 2 || need == n, "{len} {cut}");
                            }
                            other => panic!("{len} cut at {cut}: {other:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn header_lengths_use_the_shortest_form() {
        let mut buf = [0; MAX_HEADER_BYTES];
        assert_eq!(header(OpCode::Text, 125, None).encode(&mut buf), 2);
        assert_eq!(header(OpCode::Text, 126, None).encode(&mut buf), 4);
        assert_eq!(header(OpCode::Text, 0xFFFF, None).encode(&mut buf), 4);
        assert_eq!(
            header(OpCode::Text, 0x1_0000, Some([0; 4])).encode(&mut buf),
            14
        );
    }

    #[test]
    fn non_minimal_lengths_are_refused() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 0, 125]),
            Err(DecodeError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
            Err(DecodeError::NonMinimalLength)
        );
        assert!(FrameHeader::parse(&[0x82, 126, 0, 126]).is_ok());
        assert!(FrameHeader::parse(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]).is_ok());
    }

    #[test]
    fn a_64_bit_length_with_its_top_bit_set_is_refused() {
        let buf = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&buf), Err(DecodeError::LengthOverflow));
    }

    #[test]
    fn reserved_opcodes_are_refused() {
        for bits in (3..=7).chain(11..=15) {
            assert_eq!(
                FrameHeader::parse(&[0x80 | bits, 0]),
                Err(DecodeError::UnknownOpcode(bits))
            );
        }
        for bits in [0, 1, 2, 8, 9, 10] {
            let op = OpCode::from_bits(bits).unwrap();
            assert_eq!(op.bits(), bits);
            assert_eq!(op.is_control(), bits >= 8);
        }
    }

    #[test]
    fn mask_matches_the_byte_loop_at_every_length_and_offset() {
        let key = [0x37, 0xFA, 0x21, 0x3D];
        let data: Vec<u8> = (0..200u8).collect();
        for len in 0..data.len() {
            for offset in 0..4 {
                let mut expected = data[..len].to_vec();
                naive_mask(&mut expected, key, offset);
                let mut rotated = key;
                rotated.rotate_left(offset);
                let mut got = data[..len].to_vec();
                apply_mask(&mut got, rotated);
                assert_eq!(got, expected, "{len} {offset}");
                let mut copied = vec![0; len];
                copy_masked(&mut copied, &data[..len], rotated);
                assert_eq!(copied, expected, "{len} {offset}");
                let mut extended = vec![1, 2, 3];
                extend_masked(&mut extended, &data[..len], rotated);
                assert_eq!(extended[3..], expected, "{len} {offset}");
            }
        }
    }

    #[test]
    fn rsv_debug_names_the_bits() {
        assert_eq!(format!("{:?}", Rsv::NONE), "Rsv(NONE)");
        assert_eq!(format!("{:?}", Rsv::RSV1 | Rsv::RSV3), "Rsv(RSV1 | RSV3)");
        assert!((Rsv::RSV1 | Rsv::RSV2).contains(Rsv::RSV2));
        assert!(!Rsv::RSV1.contains(Rsv::RSV2));
    }
}
