//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! Each byte is validated once, as soon as it arrives (by `simdutf8`, which is several
//! times faster than `std::str::from_utf8` on non-ASCII text, std for the few bytes of
//! a character cut between two pieces, where the error's detail is needed): a
//! piece is cut before an unfinished character at its end, the whole characters go
//! into the message's `String` (so no second pass is needed to hand out a `&str`), and
//! the unfinished one (at most 3 bytes) is kept and checked as a prefix at once, so an
//! invalid sequence is refused at the byte that makes it invalid, whichever piece holds
//! it (Autobahn's "fail fast" cases, 6.4.x).

use std::str;

/// The bytes of a character that a piece ended in the middle of.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Utf8Carry {
    bytes: [u8; 4],
    len: u8,
}

/// Invalid UTF-8 was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

impl Utf8Carry {
    /// Bytes held back: the start of an unfinished character.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Forgets the unfinished character (a new message begins).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Validates `bytes`, the next piece of a text message, and appends its whole
    /// characters to `out`.
    pub(crate) fn push(&mut self, out: &mut String, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.len > 0 {
            let have = self.len();
            let need = char_width(self.bytes[0]) - have;
            let take = need.min(bytes.len());
            self.bytes[have..have + take].copy_from_slice(&bytes[..take]);
            self.len += take as u8;
            bytes = &bytes[take..];
            match str::from_utf8(&self.bytes[..self.len()]) {
                Ok(c) => {
                    out.push_str(c);
                    self.len = 0;
                }
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        let (whole, tail) = bytes.split_at(unfinished_tail_start(bytes));
        out.push_str(validate(whole)?);
        if !tail.is_empty() {
            // `tail` is shorter than its first byte says: only a valid prefix may wait.
            match str::from_utf8(tail) {
                Err(e) if e.error_len().is_none() => {
                    self.bytes[..tail.len()].copy_from_slice(tail);
                    self.len = tail.len() as u8;
                }
                _ => return Err(InvalidUtf8),
            }
        }
        Ok(())
    }

    /// The message ended: an unfinished character is an error.
    pub(crate) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        if self.len == 0 {
            Ok(())
        } else {
            self.len = 0;
            Err(InvalidUtf8)
        }
    }
}

/// `bytes` as a `&str`, if they are whole, valid UTF-8.
pub(crate) fn validate(bytes: &[u8]) -> Result<&str, InvalidUtf8> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| InvalidUtf8)
}

/// The length of the character `lead` starts; 1 for a byte that starts none (the
/// validation refuses it).
fn char_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// Where the unfinished character at the end of `bytes` starts, or `bytes.len()` if
/// the last character is whole (or the bytes are invalid anyway).
fn unfinished_tail_start(bytes: &[u8]) -> usize {
    let n = bytes.len();
    // An unfinished character has at most 3 of its bytes here.
    for back in 1..=n.min(3) {
        let byte = bytes[n - back];
        if byte & 0xC0 != 0x80 {
            return if char_width(byte) > back { n - back } else { n };
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` cut at `cuts` and returns the text, or the error.
    fn run(input: &[u8], cuts: &[usize]) -> Result<String, InvalidUtf8> {
        let mut carry = Utf8Carry::default();
        let mut out = String::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&input.len()]) {
            carry.push(&mut out, &input[from..cut])?;
            from = cut;
        }
        carry.finish()?;
        Ok(out)
    }

    #[test]
    fn valid_text_at_every_two_and_three_way_split() {
        let text = "aé€𝄞z κόσμε";
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                assert_eq!(run(bytes, &[i, j]).as_deref(), Ok(text), "{i} {j}");
            }
        }
    }

    #[test]
    fn invalid_text_is_refused_at_every_split() {
        let cases: &[&[u8]] = &[
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\x80",
            b"a\xc0\xaf",
            b"\xf4\x90\x80\x80",
            b"\xf8\x88\x80\x80\x80",
            b"\xe2\x82",
            b"\xfe",
        ];
        for &input in cases {
            for i in 0..=input.len() {
                assert_eq!(run(input, &[i]), Err(InvalidUtf8), "{input:?} {i}");
            }
        }
    }

    #[test]
    fn an_invalid_prefix_fails_before_the_character_could_end() {
        let mut carry = Utf8Carry::default();
        let mut out = String::new();
        // F4 90 can begin no character (above U+10FFFF): refused with two bytes in.
        assert_eq!(carry.push(&mut out, b"ok\xf4"), Ok(()));
        assert_eq!(carry.len(), 1);
        assert_eq!(carry.push(&mut out, b"\x90"), Err(InvalidUtf8));
        // ED A0 would be a surrogate: refused in the same piece.
        let mut carry = Utf8Carry::default();
        assert_eq!(carry.push(&mut out, b"\xed\xa0"), Err(InvalidUtf8));
    }
}
