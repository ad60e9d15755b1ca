//! Close codes and close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use std::fmt;

use super::frame::MAX_CONTROL_PAYLOAD_BYTES;
use super::DecodeError;

/// The status code of a close frame (RFC 6455 section 7.4, and the IANA registry).
///
/// Any `u16` can be held; [`is_valid_on_wire`](Self::is_valid_on_wire) says which may
/// be sent and received.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (a server shutting down, a page left).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint cannot take (binary for a text-only one).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Never sent; what a receiver reports for an
    /// empty close frame.
    pub const NO_STATUS_RECEIVED: CloseCode = CloseCode(1005);
    /// 1006: the connection ended without a close frame. Never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data did not match its type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message broke the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: (from a client) the server did not negotiate an extension it needs.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting (IANA).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway got an invalid response (IANA).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: the TLS handshake failed. Never sent.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// True if the code may appear in a close frame: 1000-1003 and 1007-1014 (the
    /// codes RFC 6455 and the IANA registry define for the wire), and 3000-4999
    /// (libraries and applications). 1004 is reserved, 1005, 1006 and 1015 are only
    /// reported locally, the rest of 0-2999 is unassigned and 5000 up is out of range:
    /// a close frame carrying any of them is a protocol error (Autobahn cases 7.9.x).
    /// 1012-1014 are accepted because the IANA registry assigns them (Autobahn checks
    /// neither way).
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

/// The status code and reason of a close frame that had a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code, valid on the wire.
    pub code: CloseCode,
    /// The reason: UTF-8, at most 123 bytes, often empty.
    pub reason: &'a str,
}

impl<'a> CloseFrame<'a> {
    /// Reads a close frame's payload: `None` for an empty one.
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidClosePayload`] for a one-byte payload (1002),
    /// [`DecodeError::InvalidCloseCode`] for a code not
    /// [valid on the wire](CloseCode::is_valid_on_wire) (1002),
    /// [`DecodeError::InvalidUtf8`] for a reason that is not UTF-8 (1007), and
    /// [`DecodeError::ControlFrameTooLong`] for a payload over 125 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::websocket::{CloseCode, CloseFrame};
    ///
    /// let frame = CloseFrame::parse(b"\x03\xe8bye")?.unwrap();
    /// assert_eq!(frame.code, CloseCode::NORMAL);
    /// assert_eq!(frame.reason, "bye");
    /// assert_eq!(CloseFrame::parse(b"")?, None);
    /// assert!(CloseFrame::parse(b"\x03").is_err());
    /// # Ok::<(), twistor::websocket::DecodeError>(())
    /// ```
    pub fn parse(payload: &'a [u8]) -> Result<Option<CloseFrame<'a>>, DecodeError> {
        if payload.len() > MAX_CONTROL_PAYLOAD_BYTES {
            return Err(DecodeError::ControlFrameTooLong(payload.len() as u64));
        }
        let (code, reason) = match payload {
            [] => return Ok(None),
            [_] => return Err(DecodeError::InvalidClosePayload),
            [hi, lo, reason @ ..] => (CloseCode(u16::from_be_bytes([*hi, *lo])), reason),
        };
        if !code.is_valid_on_wire() {
            return Err(DecodeError::InvalidCloseCode(code.0));
        }
        let reason = std::str::from_utf8(reason).map_err(|_| DecodeError::InvalidUtf8)?;
        Ok(Some(CloseFrame { code, reason }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(code: u16, reason: &[u8]) -> Vec<u8> {
        [&code.to_be_bytes()[..], reason].concat()
    }

    #[test]
    fn valid_codes_are_accepted() {
        // Autobahn 7.7.x, plus the IANA's 1012-1014.
        let codes = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ];
        for code in codes {
            let p = payload(code, b"ok");
            let frame = CloseFrame::parse(&p).unwrap().unwrap();
            assert_eq!(
                frame,
                CloseFrame {
                    code: CloseCode(code),
                    reason: "ok"
                }
            );
        }
    }

    #[test]
    fn invalid_codes_are_protocol_errors() {
        // Autobahn 7.9.x, and the edges of the ranges.
        let codes = [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for code in codes {
            let p = payload(code, b"");
            let err = CloseFrame::parse(&p).unwrap_err();
            assert_eq!(err, DecodeError::InvalidCloseCode(code));
            assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn payload_shapes() {
        assert_eq!(CloseFrame::parse(b""), Ok(None));
        let err = CloseFrame::parse(b"\x03").unwrap_err();
        assert_eq!(err, DecodeError::InvalidClosePayload);
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
        let bad_reason = payload(1000, b"\xce\xba\xed\xa0\x80");
        let err = CloseFrame::parse(&bad_reason).unwrap_err();
        assert_eq!(err, DecodeError::InvalidUtf8);
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
        let longest = payload(1000, &[b'a'; 123]);
        assert_eq!(
            CloseFrame::parse(&longest).unwrap().unwrap().reason.len(),
            123
        );
        let too_long = payload(1000, &[b'a'; 124]);
        assert!(CloseFrame::parse(&too_long).is_err());
    }
}
