//! permessage-deflate (RFC 7692): the negotiation of its parameters, and an
//! [`Extension`] that inflates the peer's messages and compresses ours.
//!
//! Guarantees: a message is inflated a piece at a time straight into the decoder's
//! buffer, and no more than the decoder's limit is ever produced (a deflate bomb costs
//! its compressed size, not its inflated one); a corrupt stream is refused with 1007;
//! an offer that breaks RFC 7692's rules is declined, never half-accepted.

// Maintainers: the header syntax (RFC 6455 section 9.1) is parsed by `elements` and
// `parse_element`, the parameters by `Params::parse`; the server's choices are in
// `DeflateConfig::negotiate`, the client's in `offer` and `accept`. `Deflate::inflate`
// is the only place output is produced for the decoder: its loop is what bounds a
// bomb.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::close::CloseCode;
use super::decoder::DecodeError;
use super::extension::Extension;
use super::frame::Rsv;
use super::handshake::{ExtensionNegotiator, ExtensionOffer, HandshakeError, Negotiated};
use super::MessageKind;

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The four bytes a sync flush ends with, which the sender strips from each message
/// and the receiver appends again (RFC 7692 section 7.2.1 and 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest LZ77 window, 32 KiB (RFC 1951), and the default on both sides.
const MAX_WINDOW_BITS: u8 = 15;

/// The smallest window RFC 7692 lets a peer ask for. zlib (and zlib-rs) cannot make a
/// raw deflate stream with it: see [`DeflateConfig::max_window_bits`].
const MIN_WINDOW_BITS: u8 = 8;

/// Most output the inflater writes per call: large enough that a big message takes few
/// calls, small enough that the zeroing of fresh buffer space stays cheap.
const INFLATE_STEP_BYTES: usize = 64 * 1024;

/// Least output room offered to the inflater per call, whatever the input's size.
const MIN_INFLATE_STEP_BYTES: usize = 1024;

/// What an endpoint allows and asks for in permessage-deflate's negotiation, and how
/// hard it compresses.
///
/// The same configuration serves a server ([`negotiate`](Self::negotiate)) and a
/// client ([`offer`](Self::offer), then [`accept`](Self::accept)). "We" are the
/// endpoint configured, "the peer" the other end.
///
/// # Examples
///
/// ```
/// use twistor::websocket::DeflateConfig;
///
/// let mut config = DeflateConfig::default();
/// config.level = 1;
/// let (_deflate, response) = config
///     .negotiate("permessage-deflate; client_max_window_bits")
///     .expect("a valid offer is accepted");
/// assert_eq!(response, "permessage-deflate");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The largest window (base-2 logarithm of its size, 8 to 15) we compress with;
    /// the peer may ask for a smaller one. Default 15, a 32 KiB window.
    ///
    /// zlib cannot compress raw deflate with a 256-byte window, so when the window
    /// agreed is 8 bits (a peer may ask for it), we accept and send every message
    /// uncompressed (RSV1 clear), which RFC 7692 allows; the peer's messages are
    /// still inflated. Other implementations decline such offers, or answer 9, which
    /// breaks the RFC's rule that the answer be no larger than the request.
    pub max_window_bits: u8,
    /// The largest window (8 to 15) we ask the peer to compress with, where it lets us
    /// ask: a server, when the offer has `client_max_window_bits`; a client, always
    /// (`server_max_window_bits`). Default 15: we do not ask. This saves the peer's
    /// memory; ours is a 32 KiB inflater window whatever is agreed.
    pub peer_max_window_bits: u8,
    /// Whether we agree to compress each message on its own when the peer asks
    /// (`server_no_context_takeover` in a client's offer, `client_no_context_takeover`
    /// in a server's response). Default true. When false, a server declines such
    /// offers and a client refuses such a response.
    pub accept_no_context_takeover: bool,
    /// Whether we ask the peer to compress each message on its own (it then cannot
    /// refer back to earlier messages, which costs ratio). Default false. Then our
    /// inflater lives only while a message is being received (about 40 KiB), instead
    /// of for the whole connection.
    pub request_no_context_takeover: bool,
    /// Whether we compress each message on its own whatever the peer asks, and say
    /// so: a client in its offer (`client_no_context_takeover`, RFC 7692 section
    /// 7.1.1.2; some servers, Autobahn's among them, ask a client for no context
    /// takeover only when its offer says this), a server in its answer
    /// (`server_no_context_takeover`, which section 7.1.1.1 lets it add unasked).
    /// Default false: the context is kept unless the peer asks otherwise.
    ///
    /// This is the memory setting: a compressor that keeps its context is about
    /// 300 KiB per connection (zlib's window, hash chains and buffers), from its first
    /// message compressed to the connection's end. Without context takeover no
    /// compressor is kept per connection: one per thread serves every connection,
    /// reset after each message. With [`request_no_context_takeover`](Self::request_no_context_takeover)
    /// too, an idle connection holds no zlib state at all.
    pub send_no_context_takeover: bool,
    /// The compression level, 0 (store) to 9 (smallest, slowest); larger values count
    /// as 9. Default 6, zlib's default.
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> DeflateConfig {
        DeflateConfig {
            max_window_bits: MAX_WINDOW_BITS,
            peer_max_window_bits: MAX_WINDOW_BITS,
            accept_no_context_takeover: true,
            request_no_context_takeover: false,
            send_no_context_takeover: false,
            level: 6,
        }
    }
}

/// The parameters agreed, seen from one endpoint: what it sends, what it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// We compress each message on its own (the deflater is reset after each one).
    pub send_no_context_takeover: bool,
    /// The window we compress with, 8 to 15; 8 means we send uncompressed.
    pub send_max_window_bits: u8,
    /// The peer compresses each message on its own (our inflater is reset after each
    /// one).
    pub receive_no_context_takeover: bool,
    /// The largest window the peer compresses with, 8 to 15.
    pub receive_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// permessage-deflate without parameters: context kept, 32 KiB windows both ways.
    fn default() -> DeflateParams {
        DeflateParams {
            send_no_context_takeover: false,
            send_max_window_bits: MAX_WINDOW_BITS,
            receive_no_context_takeover: false,
            receive_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// Why a client refused a server's `Sec-WebSocket-Extensions` response: it must then
/// fail the connection (RFC 7692 section 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NegotiationError {
    /// The header is not a list of extensions with parameters (RFC 6455 section 9.1),
    /// or is empty.
    Syntax,
    /// The response names an extension that was not offered.
    UnexpectedExtension(String),
    /// The response accepts permessage-deflate more than once.
    Repeated,
    /// A parameter RFC 7692 does not define for a response.
    UnknownParameter(String),
    /// A parameter given twice.
    DuplicateParameter(&'static str),
    /// A parameter with a value missing, unexpected, or out of 8 to 15.
    InvalidValue(&'static str),
    /// A parameter the configuration does not agree to
    /// (`client_no_context_takeover` without
    /// [`accept_no_context_takeover`](DeflateConfig::accept_no_context_takeover)).
    Refused(&'static str),
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::Syntax => f.write_str("malformed Sec-WebSocket-Extensions"),
            NegotiationError::UnexpectedExtension(name) => {
                write!(f, "extension {name:?} was not offered")
            }
            NegotiationError::Repeated => f.write_str("permessage-deflate accepted twice"),
            NegotiationError::UnknownParameter(name) => write!(f, "unknown parameter {name:?}"),
            NegotiationError::DuplicateParameter(name) => write!(f, "parameter {name} repeated"),
            NegotiationError::InvalidValue(name) => write!(f, "invalid value for {name}"),
            NegotiationError::Refused(name) => write!(f, "{name} not agreed to"),
        }
    }
}

impl std::error::Error for NegotiationError {}

impl DeflateConfig {
    /// A server's side: picks the first offer of permessage-deflate in the client's
    /// `Sec-WebSocket-Extensions` that this configuration can accept, and returns the
    /// extension and the value of the response's `Sec-WebSocket-Extensions`; `None`
    /// if no offer fits (answer without the header: no extension).
    ///
    /// `offers` is the header's value; several header lines are joined with `,`.
    /// Offers of other extensions are skipped, and so is an offer that breaks RFC
    /// 7692 section 7 (an unknown parameter, one given twice, a bad value, broken
    /// syntax), so the next one in the list is tried, as the RFC requires.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::websocket::DeflateConfig;
    ///
    /// let config = DeflateConfig::default();
    /// let offers = "permessage-deflate; server_max_window_bits=8; foo, \
    ///               permessage-deflate; server_no_context_takeover; client_max_window_bits";
    /// // The first offer has an unknown parameter: the second is taken.
    /// let (deflate, response) = config.negotiate(offers).unwrap();
    /// assert_eq!(response, "permessage-deflate; server_no_context_takeover");
    /// assert!(deflate.params().send_no_context_takeover);
    /// assert!(config.negotiate("x-webkit-deflate-frame").is_none());
    /// ```
    pub fn negotiate(&self, offers: &str) -> Option<(Deflate, String)> {
        for raw in elements(offers) {
            let Ok(element) = parse_element(raw) else {
                continue;
            };
            if !element.name.eq_ignore_ascii_case(NAME) {
                continue;
            }
            let Ok(offer) = Params::parse(&element.params, Side::Offer) else {
                continue;
            };
            if let Some(accepted) = self.answer(&offer) {
                return Some(accepted);
            }
        }
        None
    }

    /// The server's answer to one valid offer, if it can accept it.
    fn answer(&self, offer: &Params) -> Option<(Deflate, String)> {
        if offer.server_no_context_takeover && !self.accept_no_context_takeover {
            return None;
        }
        let ours = window_bits_setting(self.max_window_bits);
        let send_max_window_bits = offer.server_max_window_bits.map_or(ours, |b| b.min(ours));
        let peers = window_bits_setting(self.peer_max_window_bits);
        // The client's own limit (`client_max_window_bits=N`) is only a hint: it will
        // not use more. We may lower it only if it offered the parameter at all.
        let (receive_max_window_bits, ask_client) = match offer.client_max_window_bits {
            Some(hint) => {
                let hint = hint.unwrap_or(MAX_WINDOW_BITS);
                (hint.min(peers), peers < hint)
            }
            None => (MAX_WINDOW_BITS, false),
        };
        let params = DeflateParams {
            send_no_context_takeover: offer.server_no_context_takeover
                || self.send_no_context_takeover,
            send_max_window_bits,
            // A client that offers `client_no_context_takeover` keeps no context;
            // saying so back lets us keep none either (RFC 7692 section 7.1.1.2).
            receive_no_context_takeover: self.request_no_context_takeover
                || offer.client_no_context_takeover,
            receive_max_window_bits,
        };
        let mut response = String::from(NAME);
        if params.send_no_context_takeover {
            response.push_str("; ");
            response.push_str(SERVER_NO_CONTEXT_TAKEOVER);
        }
        if params.receive_no_context_takeover {
            response.push_str("; ");
            response.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
        }
        // RFC 7692 section 7.1.2.1: an offer with server_max_window_bits is accepted
        // by answering it with the same value or a smaller one.
        if offer.server_max_window_bits.is_some() {
            let _ = write!(
                response,
                "; {SERVER_MAX_WINDOW_BITS}={send_max_window_bits}"
            );
        }
        if ask_client {
            let _ = write!(
                response,
                "; {CLIENT_MAX_WINDOW_BITS}={receive_max_window_bits}"
            );
        }
        Some((Deflate::new(params, self.level), response))
    }

    /// A client's side: the value of `Sec-WebSocket-Extensions` to send, one offer of
    /// permessage-deflate.
    ///
    /// It always says `client_max_window_bits` (the server may then choose our
    /// window), with our [`max_window_bits`](Self::max_window_bits) as its value when
    /// under 15; `server_max_window_bits` when
    /// [`peer_max_window_bits`](Self::peer_max_window_bits) is under 15;
    /// `server_no_context_takeover` when we
    /// [request it](Self::request_no_context_takeover);
    /// `client_no_context_takeover` when we
    /// [keep no context](Self::send_no_context_takeover).
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::websocket::DeflateConfig;
    ///
    /// let mut config = DeflateConfig::default();
    /// assert_eq!(config.offer(), "permessage-deflate; client_max_window_bits");
    /// config.request_no_context_takeover = true;
    /// config.peer_max_window_bits = 10;
    /// assert_eq!(
    ///     config.offer(),
    ///     "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; \
    ///      client_max_window_bits"
    /// );
    /// ```
    pub fn offer(&self) -> String {
        let mut offer = String::from(NAME);
        if self.request_no_context_takeover {
            offer.push_str("; ");
            offer.push_str(SERVER_NO_CONTEXT_TAKEOVER);
        }
        let peers = window_bits_setting(self.peer_max_window_bits);
        if peers < MAX_WINDOW_BITS {
            let _ = write!(offer, "; {SERVER_MAX_WINDOW_BITS}={peers}");
        }
        if self.send_no_context_takeover {
            offer.push_str("; ");
            offer.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
        }
        offer.push_str("; ");
        offer.push_str(CLIENT_MAX_WINDOW_BITS);
        let ours = window_bits_setting(self.max_window_bits);
        if ours < MAX_WINDOW_BITS {
            let _ = write!(offer, "={ours}");
        }
        offer
    }

    /// A client's side: checks the server's `Sec-WebSocket-Extensions` response to
    /// our [`offer`](Self::offer) and returns the extension it sets up. Call it only
    /// when the response has the header (without it, no extension is in use).
    ///
    /// Strict about the syntax and about what we cannot honour; lenient about what we
    /// only asked: a server that ignored our `server_no_context_takeover` or answered
    /// a larger `server_max_window_bits` is accepted, since our inflater decodes any
    /// window and keeps its context only as long as the server's stream refers to it.
    ///
    /// # Errors
    ///
    /// A [`NegotiationError`] when the response breaks RFC 7692 section 7 (an
    /// extension not offered, an unknown or repeated parameter, a bad value) or asks
    /// what the configuration refuses. The client must then fail the connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::websocket::{DeflateConfig, NegotiationError};
    ///
    /// let config = DeflateConfig::default();
    /// let deflate = config.accept("permessage-deflate; client_max_window_bits=10")?;
    /// assert_eq!(deflate.params().send_max_window_bits, 10);
    /// assert_eq!(
    ///     config.accept("permessage-deflate; client_max_window_bits").unwrap_err(),
    ///     NegotiationError::InvalidValue("client_max_window_bits"),
    /// );
    /// # Ok::<(), NegotiationError>(())
    /// ```
    pub fn accept(&self, response: &str) -> Result<Deflate, NegotiationError> {
        let mut found = None;
        for raw in elements(response) {
            let element = parse_element(raw)?;
            if !element.name.eq_ignore_ascii_case(NAME) {
                return Err(NegotiationError::UnexpectedExtension(
                    element.name.to_owned(),
                ));
            }
            if found.is_some() {
                return Err(NegotiationError::Repeated);
            }
            found = Some(Params::parse(&element.params, Side::Response)?);
        }
        let response = found.ok_or(NegotiationError::Syntax)?;
        if response.client_no_context_takeover && !self.accept_no_context_takeover {
            return Err(NegotiationError::Refused(CLIENT_NO_CONTEXT_TAKEOVER));
        }
        let ours = window_bits_setting(self.max_window_bits);
        let params = DeflateParams {
            // Our offer's hint binds us as much as the server's answer.
            send_no_context_takeover: response.client_no_context_takeover
                || self.send_no_context_takeover,
            send_max_window_bits: response
                .client_max_window_bits
                .flatten()
                .map_or(ours, |b| b.min(ours)),
            receive_no_context_takeover: response.server_no_context_takeover,
            receive_max_window_bits: response.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        };
        Ok(Deflate::new(params, self.level))
    }
}

/// A window-bits setting brought into RFC 7692's range.
fn window_bits_setting(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// permessage-deflate for one connection, agreed at the handshake: inflates the peer's
/// compressed messages as the decoder's [`Extension`] (RSV1), and compresses ours
/// ([`compress`](Self::compress)).
///
/// # Receiving
///
/// Give it to the decoder: `Decoder::with_extension(role, Some(deflate))`, or `None`
/// when nothing was agreed. A message whose first frame sets RSV1 is inflated as it
/// arrives, frame after frame, into the message buffer, and text is validated as
/// UTF-8 after inflation. The decoder's
/// [`max_message_bytes`](super::Decoder::max_message_bytes) bounds the *inflated*
/// size: inflation stops, with [`DecodeError::MessageTooLarge`] (1009), before one
/// byte more than that is produced. A corrupt stream is refused with
/// [`DecodeError::Extension`] and 1007 (invalid payload data), as the `ws` library for
/// Node does; RFC 7692 says only "fail the connection", and Autobahn has no case for
/// it.
///
/// A peer may end a message with a final block (BFINAL, RFC 7692 section 7.2.3.4); the
/// blocks after it are inflated as a new stream. What came before it is then no longer
/// in the window: a later back-reference to it is refused as corrupt (1007), where
/// zlib's own decoder would need the dictionary set back. Senders flush with empty
/// stored blocks in practice (zlib's sync flush, as the RFC describes).
///
/// # Sending
///
/// [`compress`](Self::compress) turns one message's payload into what goes on the
/// wire; send it with RSV1 on the message's first frame only (`Encoder::frame`), in
/// one frame or several. The [`WebSocket`](super::WebSocket) adapter does this for
/// each message it sends, through [`Extension::encode`].
///
/// # Memory
///
/// With context takeover (the RFC's default), per connection: an inflater (about
/// 40 KiB with its 32 KiB window) from the first compressed message received, and a
/// deflater (about 300 KiB at the default window and level, measured; zlib's hash
/// chains and buffers do not shrink with the window) from the first message
/// compressed, both kept until the connection ends. Without context takeover in a
/// direction, nothing is kept for it between messages: the deflater is one per
/// thread and per (level, window), shared by every connection and reset after each
/// message, and the inflater exists only while a message is being received. So a
/// server that wants idle connections cheap sets
/// [`DeflateConfig::send_no_context_takeover`] and
/// [`DeflateConfig::request_no_context_takeover`]: about 1 KiB per idle
/// connection, as without compression, at some cost in ratio.
pub struct Deflate {
    params: DeflateParams,
    level: Compression,
    /// Made at the first compressed message received; dropped after each message
    /// when the peer keeps no context.
    inflater: Option<Decompress>,
    /// Made by the first [`compress`](Self::compress): an endpoint that only receives
    /// never pays for it. Never made when the agreed window is 8 bits.
    deflater: Option<Compress>,
    /// A final block ended the stream during the current message: the inflater is
    /// reset again after the message, whatever the tail left in it.
    final_block_seen: bool,
}

impl Deflate {
    /// permessage-deflate with the given parameters (usually from the negotiation)
    /// and compression `level` (0 to 9).
    pub fn new(params: DeflateParams, level: u32) -> Deflate {
        Deflate {
            params,
            level: Compression::new(level.min(9)),
            inflater: None,
            deflater: None,
            final_block_seen: false,
        }
    }

    /// The parameters agreed.
    pub fn params(&self) -> DeflateParams {
        self.params
    }

    /// Compresses one message's `payload`: appends what to send to `out` and returns
    /// the reserved bits for the message's first frame.
    ///
    /// [`Rsv::RSV1`]: `out` has the compressed payload (RFC 7692 section 7.2.1: sync
    /// flushed, the final `00 00 ff ff` removed). [`Rsv::NONE`]: `out` is unchanged;
    /// send `payload` itself, uncompressed. That happens when compressing would not
    /// make the message smaller (short or incompressible messages; the deflater is
    /// then reset, since the peer will not see these bytes in its window), and always
    /// when the agreed window is 8 bits.
    ///
    /// # Examples
    ///
    /// ```
    /// use twistor::websocket::{Deflate, DeflateParams, Rsv};
    ///
    /// let mut deflate = Deflate::new(DeflateParams::default(), 6);
    /// let mut out = Vec::new();
    /// assert_eq!(deflate.compress(b"Hello", &mut out), Rsv::NONE); // 7 bytes compressed
    /// assert!(out.is_empty());
    /// let text = "hello ".repeat(100);
    /// assert_eq!(deflate.compress(text.as_bytes(), &mut out), Rsv::RSV1);
    /// assert!(out.len() < 30);
    /// ```
    #[must_use = "the reserved bits say whether `out` or the payload itself is sent"]
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Rsv {
        let bits = window_bits_setting(self.params.send_max_window_bits);
        if bits == MIN_WINDOW_BITS {
            return Rsv::NONE;
        }
        let level = self.level;
        if self.params.send_no_context_takeover {
            return SHARED_DEFLATERS.with(|shared| {
                let mut shared = shared.borrow_mut();
                let i = match shared
                    .iter()
                    .position(|(l, b, _)| *l == level.level() && *b == bits)
                {
                    Some(i) => i,
                    None => {
                        let deflater = Compress::new_with_window_bits(level, false, bits);
                        shared.push((level.level(), bits, deflater));
                        shared.len() - 1
                    }
                };
                let deflater = &mut shared[i].2;
                let rsv = compress_message(deflater, payload, out);
                deflater.reset();
                rsv
            });
        }
        let deflater = self
            .deflater
            .get_or_insert_with(|| Compress::new_with_window_bits(level, false, bits));
        let rsv = compress_message(deflater, payload, out);
        if rsv == Rsv::NONE {
            // The peer will not see these bytes in its window.
            deflater.reset();
        }
        rsv
    }

    /// Inflates `input` into `out`, producing at most `limit` bytes.
    fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        let start = out.len();
        let mut step = input
            .len()
            .saturating_mul(4)
            .clamp(MIN_INFLATE_STEP_BYTES, INFLATE_STEP_BYTES);
        loop {
            let room = step.min(limit - (out.len() - start));
            let (consumed, written, status, offered) = if room == 0 {
                // At the limit: one more byte of output is one too many.
                let mut probe = [0u8; 1];
                let (consumed, written, status) = self.inflate_into(input, &mut probe);
                if written > 0 {
                    return Err(DecodeError::MessageTooLarge);
                }
                (consumed, written, status, 1)
            } else {
                // The room is zeroed, then cut back to what was written: writing
                // into spare capacity would need `unsafe`.
                let len = out.len();
                out.resize(len + room, 0);
                let (consumed, written, status) = self.inflate_into(input, &mut out[len..]);
                out.truncate(len + written);
                (consumed, written, status, room)
            };
            input = &input[consumed..];
            match status {
                Err(()) => return Err(corrupt("invalid deflate data")),
                Ok(Status::StreamEnd) => {
                    // A final block: what follows, if anything, is a new stream.
                    if let Some(inflater) = &mut self.inflater {
                        inflater.reset(false);
                    }
                    self.final_block_seen = true;
                    if input.is_empty() {
                        return Ok(());
                    }
                }
                Ok(_) if written < offered => {
                    // Output room left over: the inflater took all it could.
                    if input.is_empty() {
                        return Ok(());
                    }
                    if consumed == 0 {
                        return Err(corrupt("deflate data the inflater cannot take"));
                    }
                }
                Ok(_) => step = (step * 2).min(INFLATE_STEP_BYTES),
            }
        }
    }

    /// One call of the inflater: bytes consumed, bytes written, status.
    fn inflate_into(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> (usize, usize, Result<Status, ()>) {
        // The largest window decodes whatever window the peer uses.
        let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let status = inflater
            .decompress(input, output, FlushDecompress::None)
            .map_err(|_| ());
        let consumed = (inflater.total_in() - in_before) as usize;
        let written = (inflater.total_out() - out_before) as usize;
        (consumed, written, status)
    }
}

thread_local! {
    /// The deflaters of the connections that keep no context, by (level, window
    /// bits): reset after each message, so any connection on the thread can use them.
    static SHARED_DEFLATERS: std::cell::RefCell<Vec<(u32, u8, Compress)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Compresses one message with `deflater`: appends it to `out` without the final
/// `00 00 ff ff` and returns RSV1, or leaves `out` as it was and returns no bits when
/// compressing would not make the message smaller (the caller then resets the
/// deflater, whose window has bytes the peer will not see).
fn compress_message(deflater: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> Rsv {
    let start = out.len();
    let compressed = sync_flush(deflater, payload, out)
        && out[start..].ends_with(&TAIL)
        && out.len() - start - TAIL.len() < payload.len();
    if compressed {
        out.truncate(out.len() - TAIL.len());
        Rsv::RSV1
    } else {
        out.truncate(start);
        Rsv::NONE
    }
}

/// Compresses `input` into `out` with a sync flush; false if the deflater failed.
fn sync_flush(deflater: &mut Compress, mut input: &[u8], out: &mut Vec<u8>) -> bool {
    loop {
        // Deflate's worst case is a few bytes per 16 KiB block over the input's size.
        out.reserve(input.len() + 64);
        let spare = out.capacity() - out.len();
        let (in_before, out_before) = (deflater.total_in(), deflater.total_out());
        if deflater
            .compress_vec(input, out, FlushCompress::Sync)
            .is_err()
        {
            return false;
        }
        input = &input[(deflater.total_in() - in_before) as usize..];
        let written = (deflater.total_out() - out_before) as usize;
        // Done when all input is in and the flush did not fill the space it had.
        if input.is_empty() && written < spare {
            return true;
        }
    }
}

fn corrupt(reason: &'static str) -> DecodeError {
    DecodeError::Extension {
        code: CloseCode::INVALID_PAYLOAD,
        reason,
    }
}

impl Extension for Deflate {
    fn rsv_bits(&self) -> Rsv {
        Rsv::RSV1
    }

    fn decode(
        &mut self,
        _: Rsv,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        self.inflate(input, out, limit)
    }

    fn finish_message(
        &mut self,
        _: Rsv,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        let result = self.inflate(&TAIL, out, limit);
        if self.params.receive_no_context_takeover {
            // Nothing to keep for the next message: no memory either.
            self.inflater = None;
        } else if self.final_block_seen {
            if let Some(inflater) = &mut self.inflater {
                inflater.reset(false);
            }
        }
        self.final_block_seen = false;
        result
    }
    /// [`compress`](Deflate::compress): the adapter sends what it makes with RSV1.
    fn encode(&mut self, _: MessageKind, payload: &[u8], out: &mut Vec<u8>) -> Rsv {
        self.compress(payload, out)
    }
}

impl fmt::Debug for Deflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflate")
            .field("params", &self.params)
            .field("level", &self.level.level())
            .finish_non_exhaustive()
    }
}

/// Which message of the handshake parameters come from: their rules differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Offer,
    Response,
}

/// permessage-deflate's parameters, as one offer or response gives them.
#[derive(Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: given without a value, which only an offer may do.
    client_max_window_bits: Option<Option<u8>>,
}

impl Params {
    /// Checks an offer's or a response's parameters against RFC 7692 section 7.
    fn parse(params: &[Param<'_>], side: Side) -> Result<Params, NegotiationError> {
        let mut parsed = Params::default();
        let mut seen = [false; 4];
        for param in params {
            let (index, name) = [
                SERVER_NO_CONTEXT_TAKEOVER,
                CLIENT_NO_CONTEXT_TAKEOVER,
                SERVER_MAX_WINDOW_BITS,
                CLIENT_MAX_WINDOW_BITS,
            ]
            .into_iter()
            .enumerate()
            .find(|(_, known)| param.name.eq_ignore_ascii_case(known))
            .ok_or_else(|| NegotiationError::UnknownParameter(param.name.to_owned()))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(NegotiationError::DuplicateParameter(name));
            }
            let value = param.value.as_deref();
            let invalid = NegotiationError::InvalidValue(name);
            match name {
                SERVER_NO_CONTEXT_TAKEOVER | CLIENT_NO_CONTEXT_TAKEOVER => {
                    if value.is_some() {
                        return Err(invalid);
                    }
                    if name == SERVER_NO_CONTEXT_TAKEOVER {
                        parsed.server_no_context_takeover = true;
                    } else {
                        parsed.client_no_context_takeover = true;
                    }
                }
                SERVER_MAX_WINDOW_BITS => {
                    let bits = value.and_then(parse_window_bits).ok_or(invalid)?;
                    parsed.server_max_window_bits = Some(bits);
                }
                _ => {
                    let bits = match value {
                        Some(value) => Some(parse_window_bits(value).ok_or(invalid)?),
                        // Without a value it means "you may choose my window", which
                        // only an offer can say.
                        None if side == Side::Offer => None,
                        None => return Err(invalid),
                    };
                    parsed.client_max_window_bits = Some(bits);
                }
            }
        }
        Ok(parsed)
    }
}

/// A window size as RFC 7692 section 7.1.2 writes it: 8 to 15, no leading zero.
fn parse_window_bits(value: &str) -> Option<u8> {
    let bits: u8 = match value.as_bytes() {
        [d @ b'8'..=b'9'] => d - b'0',
        [b'1', d @ b'0'..=b'5'] => 10 + d - b'0',
        _ => return None,
    };
    Some(bits)
}

/// One extension of a `Sec-WebSocket-Extensions` list.
struct Element<'a> {
    name: &'a str,
    params: Vec<Param<'a>>,
}

/// One parameter, its value unquoted.
struct Param<'a> {
    name: &'a str,
    value: Option<Cow<'a, str>>,
}

/// The list's elements: the header split at commas outside quoted strings, empty
/// elements skipped (RFC 7230 section 7 allows them).
fn elements(header: &str) -> impl Iterator<Item = &str> {
    split_outside_quotes(header, b',')
        .into_iter()
        .filter(|element| !trim_ows(element).is_empty())
}

/// Parses `extension-token *( ";" extension-param )` (RFC 6455 section 9.1), where
/// `extension-param = token [ "=" (token | quoted-string) ]`. A quoted value must be
/// a token once unquoted (RFC 7692 section 7).
fn parse_element(raw: &str) -> Result<Element<'_>, NegotiationError> {
    let mut parts = split_outside_quotes(raw, b';').into_iter();
    let name = trim_ows(parts.next().unwrap_or_default());
    if !is_token(name) {
        return Err(NegotiationError::Syntax);
    }
    let mut params = Vec::new();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => {
                let value = unquote(trim_ows(value)).ok_or(NegotiationError::Syntax)?;
                (trim_ows(name), Some(value))
            }
            None => (trim_ows(part), None),
        };
        if !is_token(name) || value.as_deref().is_some_and(|v| !is_token(v)) {
            return Err(NegotiationError::Syntax);
        }
        params.push(Param { name, value });
    }
    Ok(Element { name, params })
}

/// Splits `s` at each `sep` that is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == sep {
            // `sep` is ASCII, so `i` is on a character boundary.
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A token as it is, or a quoted string with its escapes undone; `None` for an
/// unterminated quoted string or text after its closing quote.
fn unquote(value: &str) -> Option<Cow<'_, str>> {
    let Some(body) = value.strip_prefix('"') else {
        return Some(Cow::Borrowed(value));
    };
    let mut unquoted = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => unquoted.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(Cow::Owned(unquoted)),
            c => unquoted.push(c),
        }
    }
    None
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// RFC 7230 section 3.2.6's `token`: one or more `tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An adapter negotiates permessage-deflate with this configuration:
/// `WebSocket::server(handler).negotiator(Box::new(DeflateConfig::default()))`, and
/// the same on `WebSocket::client`. A server gets the client's offers parsed; they are
/// put back into header form for [`negotiate`](DeflateConfig::negotiate), which takes
/// the first acceptable one. A client offers [`offer`](DeflateConfig::offer) and
/// checks the answer with [`accept`](DeflateConfig::accept). Once agreed, the adapter
/// inflates what it receives (within the message limit) and compresses what it sends
/// with the parameters agreed for its own direction.
impl ExtensionNegotiator for DeflateConfig {
    fn negotiate(&mut self, offers: &[ExtensionOffer]) -> Option<Negotiated> {
        let mut header = String::new();
        for offer in offers {
            if !header.is_empty() {
                header.push_str(", ");
            }
            header.push_str(&offer.name);
            for (name, value) in &offer.params {
                let _ = match value {
                    Some(v) => write!(header, "; {name}={v}"),
                    None => write!(header, "; {name}"),
                };
            }
        }
        let (deflate, response) = DeflateConfig::negotiate(self, &header)?;
        Some(Negotiated {
            extension: Box::new(deflate),
            response,
        })
    }

    fn offer(&mut self) -> Option<String> {
        Some(DeflateConfig::offer(self))
    }

    fn accept(&mut self, response: &str) -> Result<Box<dyn Extension>, HandshakeError> {
        match DeflateConfig::accept(self, response) {
            Ok(deflate) => Ok(Box::new(deflate)),
            Err(e) => Err(HandshakeError::Extension(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Decoder, Encoder, Message, OpCode, Role};
    use super::*;

    // ---- negotiation ----

    /// The server's response to `offers` under `config`, or `None` if declined.
    fn answer(config: &DeflateConfig, offers: &str) -> Option<(DeflateParams, String)> {
        config
            .negotiate(offers)
            .map(|(deflate, response)| (deflate.params(), response))
    }

    fn response(offers: &str) -> Option<String> {
        answer(&DeflateConfig::default(), offers).map(|(_, response)| response)
    }

    #[test]
    fn server_accepts_valid_offers_and_answers_them() {
        let cases = [
            ("permessage-deflate", "permessage-deflate"),
            ("PerMessage-Deflate", "permessage-deflate"),
            ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
            ("permessage-deflate; client_max_window_bits=10", "permessage-deflate"),
            // The client keeps no context: said back, so we keep none either.
            (
                "permessage-deflate; client_no_context_takeover",
                "permessage-deflate; client_no_context_takeover",
            ),
            (
                "permessage-deflate; server_no_context_takeover",
                "permessage-deflate; server_no_context_takeover",
            ),
            (
                "permessage-deflate; server_max_window_bits=10",
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=8",
            ),
            // Quoted values (RFC 7692 section 7.1), with an escape, and spacing.
            (
                "permessage-deflate ;server_max_window_bits = \"1\\2\" ; client_max_window_bits=\"9\"",
                "permessage-deflate; server_max_window_bits=12",
            ),
            // Autobahn's offers (its PerMessageDeflateOffer).
            (
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                 server_no_context_takeover; server_max_window_bits=8",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=8",
            ),
        ];
        for (offer, expected) in cases {
            assert_eq!(response(offer).as_deref(), Some(expected), "{offer}");
        }
    }

    #[test]
    fn server_declines_invalid_offers() {
        for offer in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            "permessage-deflate; client_max_window_bits=\"10",
            "permessage-deflate; client_max_window_bits=\"10\"x",
            "permessage-deflate; =10",
            "permessage-deflate;",
            "permessage deflate",
            "x-webkit-deflate-frame",
            "",
            " , ",
        ] {
            assert_eq!(response(offer), None, "{offer:?}");
        }
    }

    #[test]
    fn server_tries_offers_in_order() {
        // A bad offer, another extension, then two good ones: the first good one wins.
        let offers = "permessage-deflate; server_max_window_bits=99, foo; a=\"x,y\", \
                      permessage-deflate; server_max_window_bits=11, permessage-deflate";
        assert_eq!(
            response(offers).as_deref(),
            Some("permessage-deflate; server_max_window_bits=11")
        );
        // Several header lines, joined.
        let joined = ["foo", "permessage-deflate; client_max_window_bits"].join(", ");
        assert_eq!(response(&joined).as_deref(), Some("permessage-deflate"));
    }

    #[test]
    fn server_applies_its_configuration() {
        let mut config = DeflateConfig {
            max_window_bits: 12,
            peer_max_window_bits: 10,
            request_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        // Our window is the smaller of ours and the client's request.
        let (params, response) = answer(
            &config,
            "permessage-deflate; server_max_window_bits=14; client_max_window_bits",
        )
        .unwrap();
        assert_eq!(
            response,
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; \
             client_max_window_bits=10"
        );
        assert_eq!(
            params,
            DeflateParams {
                send_no_context_takeover: false,
                send_max_window_bits: 12,
                receive_no_context_takeover: true,
                receive_max_window_bits: 10,
            }
        );
        // Without client_max_window_bits in the offer, the client's window is not ours
        // to choose; a client hint smaller than our wish is left as it is.
        let (params, response) = answer(&config, "permessage-deflate").unwrap();
        assert_eq!(response, "permessage-deflate; client_no_context_takeover");
        assert_eq!(params.receive_max_window_bits, 15);
        assert_eq!(params.send_max_window_bits, 12);
        let (params, response) =
            answer(&config, "permessage-deflate; client_max_window_bits=9").unwrap();
        assert_eq!(response, "permessage-deflate; client_no_context_takeover");
        assert_eq!(params.receive_max_window_bits, 9);

        // Refusing no_context_takeover declines the offers that ask for it.
        config.accept_no_context_takeover = false;
        let offers = "permessage-deflate; server_no_context_takeover, permessage-deflate";
        let (params, _) = answer(&config, offers).unwrap();
        assert!(!params.send_no_context_takeover);
        assert!(answer(&config, "permessage-deflate; server_no_context_takeover").is_none());
    }

    #[test]
    fn client_offer_and_accept() {
        let config = DeflateConfig::default();
        assert_eq!(config.offer(), "permessage-deflate; client_max_window_bits");
        let mut small = config;
        small.max_window_bits = 9;
        assert_eq!(
            small.offer(),
            "permessage-deflate; client_max_window_bits=9"
        );

        let accepted = |response: &str| config.accept(response).map(|d| d.params());
        assert_eq!(accepted("permessage-deflate"), Ok(DeflateParams::default()));
        assert_eq!(
            accepted(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=\"11\""
            ),
            Ok(DeflateParams {
                send_no_context_takeover: true,
                send_max_window_bits: 11,
                receive_no_context_takeover: true,
                receive_max_window_bits: 9,
            })
        );
        // The hint in our offer binds us, whatever the answer.
        let mut hinting = config;
        hinting.send_no_context_takeover = true;
        assert_eq!(
            hinting.offer(),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits"
        );
        assert!(
            hinting
                .accept("permessage-deflate")
                .unwrap()
                .params()
                .send_no_context_takeover
        );
        // Our own limit stays ours.
        assert_eq!(
            small
                .accept("permessage-deflate; client_max_window_bits=12")
                .map(|d| d.params().send_max_window_bits),
            Ok(9)
        );
    }

    #[test]
    fn client_refuses_bad_responses() {
        let config = DeflateConfig::default();
        let cases = [
            ("", NegotiationError::Syntax),
            ("permessage-deflate; x=\"", NegotiationError::Syntax),
            ("foo", NegotiationError::UnexpectedExtension("foo".into())),
            (
                "permessage-deflate, permessage-deflate",
                NegotiationError::Repeated,
            ),
            (
                "permessage-deflate; bar",
                NegotiationError::UnknownParameter("bar".into()),
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                NegotiationError::DuplicateParameter(SERVER_NO_CONTEXT_TAKEOVER),
            ),
            (
                "permessage-deflate; client_max_window_bits",
                NegotiationError::InvalidValue(CLIENT_MAX_WINDOW_BITS),
            ),
            (
                "permessage-deflate; server_max_window_bits=7",
                NegotiationError::InvalidValue(SERVER_MAX_WINDOW_BITS),
            ),
        ];
        for (response, error) in cases {
            assert_eq!(
                config.accept(response).map(|_| ()),
                Err(error),
                "{response:?}"
            );
        }
        let mut strict = config;
        strict.accept_no_context_takeover = false;
        assert_eq!(
            strict
                .accept("permessage-deflate; client_no_context_takeover")
                .map(|_| ()),
            Err(NegotiationError::Refused(CLIENT_NO_CONTEXT_TAKEOVER))
        );
    }

    #[test]
    fn client_and_server_agree() {
        let client = DeflateConfig {
            request_no_context_takeover: true,
            peer_max_window_bits: 10,
            max_window_bits: 11,
            ..DeflateConfig::default()
        };
        let server = DeflateConfig::default();
        let (server_side, response) = server.negotiate(&client.offer()).unwrap();
        let client_side = client.accept(&response).unwrap();
        let (s, c) = (server_side.params(), client_side.params());
        assert_eq!(s.send_no_context_takeover, c.receive_no_context_takeover);
        assert_eq!(s.receive_no_context_takeover, c.send_no_context_takeover);
        assert_eq!(
            (s.send_max_window_bits, c.receive_max_window_bits),
            (10, 10)
        );
        assert_eq!(
            (s.receive_max_window_bits, c.send_max_window_bits),
            (11, 11)
        );
        assert!(s.send_no_context_takeover);
    }

    // ---- compression and inflation ----

    /// Inflates one message's payload, given in `pieces`, with `limit`.
    fn inflate_message(
        deflate: &mut Deflate,
        pieces: &[&[u8]],
        limit: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        for piece in pieces {
            let room = limit - out.len();
            deflate.decode(Rsv::RSV1, piece, &mut out, room)?;
        }
        let room = limit - out.len();
        deflate.finish_message(Rsv::RSV1, &mut out, room)?;
        Ok(out)
    }

    fn inflate_one(deflate: &mut Deflate, payload: &[u8]) -> Vec<u8> {
        inflate_message(deflate, &[payload], usize::MAX).unwrap()
    }

    /// Compresses `payload`, or returns it as is if it went out uncompressed.
    fn compress(deflate: &mut Deflate, payload: &[u8]) -> (Rsv, Vec<u8>) {
        let mut out = Vec::new();
        match deflate.compress(payload, &mut out) {
            Rsv::NONE => (Rsv::NONE, payload.to_vec()),
            rsv => (rsv, out),
        }
    }

    /// Words picked by a small generator: compresses about 3:1, without the period
    /// that would let deflate shrink any message to nothing.
    fn sample(seed: u64, len: usize) -> Vec<u8> {
        const WORDS: [&str; 16] = [
            "reactor",
            "protocol",
            "transport",
            "deflate",
            "window",
            "frame",
            "message",
            "the",
            "of",
            "connection",
            "timer",
            "pool",
            "socket",
            "and",
            "écrit",
            "bytes",
        ];
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            out.extend_from_slice(WORDS[(state >> 60) as usize].as_bytes());
            out.push(b' ');
        }
        out.truncate(len);
        // Cut back to a character boundary: callers make text of it.
        while std::str::from_utf8(&out).is_err() {
            out.pop();
        }
        out
    }

    #[test]
    fn rfc_7692_examples_inflate() {
        let mut deflate = Deflate::new(DeflateParams::default(), 6);
        // 7.2.3.1: "Hello" in one block; then split at any point.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        for split in 0..=hello.len() {
            let mut fresh = Deflate::new(DeflateParams::default(), 6);
            let (a, b) = hello.split_at(split);
            assert_eq!(inflate_message(&mut fresh, &[a, b], 100).unwrap(), b"Hello");
        }
        // 7.2.3.2: the second "Hello" refers back to the first.
        assert_eq!(inflate_one(&mut deflate, &hello), b"Hello");
        assert_eq!(
            inflate_one(&mut deflate, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            b"Hello"
        );
        // 7.2.3.3: a stored block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_one(&mut deflate, &stored), b"Hello");
        // 7.2.3.4: a final block, then an empty stored one; the stream goes on.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_one(&mut deflate, &bfinal), b"Hello");
        assert_eq!(inflate_one(&mut deflate, &hello), b"Hello");
        // ... and without the trailing empty block.
        assert_eq!(inflate_one(&mut deflate, &bfinal[..7]), b"Hello");
        assert_eq!(inflate_one(&mut deflate, &hello), b"Hello");
        // 7.2.3.5: two blocks in one message.
        let two = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate_one(&mut deflate, &two), b"Hello");
    }

    #[test]
    fn compress_makes_rfc_7692_hello_and_shares_the_window() {
        // With a large enough message to be worth it, and then "Hello" sent after it.
        let mut sender = Deflate::new(DeflateParams::default(), 6);
        let mut receiver = Deflate::new(DeflateParams::default(), 6);
        let mut out = Vec::new();
        assert_eq!(sender.compress(b"Hello", &mut out), Rsv::NONE);
        // The compressed form of a fresh "Hello" is RFC 7692 section 7.2.3.1's.
        let mut fresh = Compress::new(Compression::new(6), false);
        let mut raw = Vec::new();
        assert!(sync_flush(&mut fresh, b"Hello", &mut raw));
        assert_eq!(
            raw,
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff]
        );

        let long = sample(0, 2000);
        let (rsv, wire) = compress(&mut sender, &long);
        assert_eq!(rsv, Rsv::RSV1);
        assert_eq!(inflate_one(&mut receiver, &wire), long);
        // The same text again is a few back-references: far smaller than the first.
        let (rsv, again) = compress(&mut sender, &long);
        assert_eq!(rsv, Rsv::RSV1);
        assert!(
            again.len() * 10 < wire.len(),
            "{} then {}",
            wire.len(),
            again.len()
        );
        assert_eq!(inflate_one(&mut receiver, &again), long);
    }

    /// Inflates each payload (tail appended) with a raw inflater whose window is
    /// exactly `bits`: it refuses a back-reference farther than that.
    fn inflate_with_window(bits: u8, inflater: &mut Decompress, payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        let before = inflater.total_in();
        let status = inflater.decompress_vec(&input, &mut out, FlushDecompress::Sync);
        assert!(status.is_ok(), "window of {bits} bits exceeded");
        assert_eq!(inflater.total_in() - before, input.len() as u64);
        out
    }

    #[test]
    fn round_trips_every_window_with_and_without_context_takeover() {
        for bits in 8..=15 {
            for no_context_takeover in [false, true] {
                let params = DeflateParams {
                    send_no_context_takeover: no_context_takeover,
                    send_max_window_bits: bits,
                    receive_no_context_takeover: no_context_takeover,
                    receive_max_window_bits: bits,
                };
                let mut sender = Deflate::new(params, 6);
                let mut receiver = Deflate::new(params, 6);
                let mut strict = Decompress::new_with_window_bits(false, bits.max(9));
                let mut sizes = Vec::new();
                let messages = [0, 1, 100, 5000, 5000, 70_000, 300].map(|len| sample(7, len));
                for (i, message) in messages.iter().enumerate() {
                    let (rsv, wire) = compress(&mut sender, message);
                    if rsv == Rsv::RSV1 {
                        assert_eq!(&inflate_one(&mut receiver, &wire), message);
                        if no_context_takeover {
                            strict.reset(false);
                        }
                        let back = inflate_with_window(bits, &mut strict, &wire);
                        assert_eq!(&back, message, "bits {bits}, message {i}");
                    } else {
                        assert_eq!(&wire, message);
                        // The sender reset its deflater: the strict receiver's window
                        // keeps what it had, which is never referred to.
                    }
                    sizes.push((rsv, wire.len()));
                }
                if bits == 8 {
                    assert!(sizes.iter().all(|&(rsv, _)| rsv == Rsv::NONE));
                    continue;
                }
                assert_eq!(sizes[3].0, Rsv::RSV1, "bits {bits}");
                if bits == 15 {
                    // The fifth message repeats the fourth: with the context kept,
                    // it is a few back-references.
                    let repeat_is_tiny = sizes[4].1 < sizes[3].1 / 10;
                    assert_eq!(repeat_is_tiny, !no_context_takeover, "{sizes:?}");
                }
            }
        }
    }

    #[test]
    fn incompressible_messages_go_out_as_they_are_and_the_streams_stay_in_step() {
        let mut sender = Deflate::new(DeflateParams::default(), 6);
        let mut receiver = Deflate::new(DeflateParams::default(), 6);
        // A xorshift sequence: nothing for deflate to find.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text = sample(3, 3000);
        let (rsv, wire) = compress(&mut sender, &text);
        assert_eq!(rsv, Rsv::RSV1);
        assert_eq!(inflate_one(&mut receiver, &wire), text);
        // The noise goes out as it is: the receiver never inflates it, so the
        // sender must not refer to it (nor to what came before) afterwards.
        let mut out = Vec::new();
        assert_eq!(sender.compress(&noise, &mut out), Rsv::NONE);
        assert!(out.is_empty());
        let (rsv, wire) = compress(&mut sender, &text);
        assert_eq!(rsv, Rsv::RSV1);
        assert_eq!(inflate_one(&mut receiver, &wire), text);
    }

    #[test]
    fn corrupt_stream_is_refused_with_1007() {
        let mut deflate = Deflate::new(DeflateParams::default(), 6);
        // BTYPE 11 is reserved.
        let error = inflate_message(&mut deflate, &[&[0xff, 0xff, 0xff]], 1000).unwrap_err();
        assert_eq!(error.close_code(), CloseCode::INVALID_PAYLOAD);
        assert!(matches!(error, DecodeError::Extension { .. }));
        // A back-reference before the start of the stream.
        let mut deflate = Deflate::new(DeflateParams::default(), 6);
        let error =
            inflate_message(&mut deflate, &[&[0xf2, 0x00, 0x11, 0x00, 0x00]], 1000).unwrap_err();
        assert_eq!(error.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    /// A deflate stream of `total` zeros, built from repeated sync-flushed blocks so
    /// that it costs little to make: deflate cannot do better than about 1:1000.
    fn zeros_bomb(total: usize) -> Vec<u8> {
        const BLOCK: usize = 1 << 20;
        let mut deflater = Compress::new(Compression::new(9), false);
        let zeros = vec![0u8; BLOCK];
        let mut first = Vec::new();
        let mut second = Vec::new();
        let mut third = Vec::new();
        assert!(sync_flush(&mut deflater, &zeros, &mut first));
        assert!(sync_flush(&mut deflater, &zeros, &mut second));
        assert!(sync_flush(&mut deflater, &zeros, &mut third));
        // Once the window is all zeros, every block compresses the same way.
        assert_eq!(second, third);
        let mut bomb = first;
        for _ in 1..total / BLOCK {
            bomb.extend_from_slice(&second);
        }
        bomb
    }

    #[test]
    fn deflate_bomb_is_refused_at_the_limit() {
        let bomb = zeros_bomb(1 << 30);
        assert!(bomb.len() < 2 << 20, "{}", bomb.len());
        let limit = 1 << 20;
        let mut deflate = Deflate::new(DeflateParams::default(), 6);
        let mut out = Vec::new();
        let mut fed = 0;
        let mut result = Ok(());
        for piece in bomb.chunks(4096) {
            let room = limit - out.len();
            result = deflate.decode(Rsv::RSV1, piece, &mut out, room);
            fed += piece.len();
            assert!(out.len() <= limit);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(DecodeError::MessageTooLarge));
        assert_eq!(out.len(), limit);
        // Refused after about a thousandth of the bomb: its inflated rest never made.
        assert!(fed < 8 * 4096, "{fed}");
        // Exactly at the limit is allowed.
        let exact = zeros_bomb(2 << 20);
        let mut deflate = Deflate::new(DeflateParams::default(), 6);
        assert_eq!(
            inflate_message(&mut deflate, &[&exact], 2 << 20)
                .unwrap()
                .len(),
            2 << 20
        );
        let mut deflate = Deflate::new(DeflateParams::default(), 6);
        assert_eq!(
            inflate_message(&mut deflate, &[&exact], (2 << 20) - 1),
            Err(DecodeError::MessageTooLarge)
        );
    }

    // ---- through the codec ----

    /// Both ends of a negotiation with default configurations: (client, server).
    fn negotiated() -> (Deflate, Deflate) {
        let config = DeflateConfig::default();
        let (server, response) = config.negotiate(&config.offer()).unwrap();
        (config.accept(&response).unwrap(), server)
    }

    /// The messages (control frames skipped) `decoder` makes of `wire`, fed in chunks
    /// of `chunk` bytes, up to the first error.
    fn decode_all(
        decoder: &mut Decoder<Option<Deflate>>,
        wire: &[u8],
        chunk: usize,
    ) -> Vec<Result<Message, DecodeError>> {
        let mut messages = Vec::new();
        for piece in wire.chunks(chunk) {
            let mut feed = decoder.feed(piece);
            loop {
                match feed.next_event() {
                    Ok(Some(event)) => messages.extend(event.to_message().map(Ok)),
                    Ok(None) => break,
                    Err(e) => {
                        messages.push(Err(e));
                        return messages;
                    }
                }
            }
        }
        messages
    }

    #[test]
    fn codec_decodes_compressed_fragmented_messages() {
        let (mut client, _) = negotiated();
        let mut encoder = Encoder::with_mask_source(Role::Client, || [1, 2, 3, 4]);
        let text = "héllo wörld, ".repeat(200);
        let mut compressed = Vec::new();
        assert_eq!(client.compress(text.as_bytes(), &mut compressed), Rsv::RSV1);
        // Three fragments, RSV1 on the first only, a ping between them; then an
        // uncompressed message (RSV1 clear) and a compressed binary one.
        let (a, rest) = compressed.split_at(compressed.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        let mut wire = Vec::new();
        encoder
            .frame(&mut wire, false, Rsv::RSV1, OpCode::Text, a)
            .unwrap();
        encoder
            .frame(&mut wire, false, Rsv::NONE, OpCode::Continuation, b)
            .unwrap();
        encoder.ping(&mut wire, b"p").unwrap();
        encoder
            .frame(&mut wire, true, Rsv::NONE, OpCode::Continuation, c)
            .unwrap();
        encoder.text(&mut wire, "plain");
        let data = sample(1, 10_000);
        let mut out = Vec::new();
        assert_eq!(client.compress(&data, &mut out), Rsv::RSV1);
        encoder
            .frame(&mut wire, true, Rsv::RSV1, OpCode::Binary, &out)
            .unwrap();

        for chunk in [1, 3, 1000, wire.len()] {
            let (_, server) = negotiated();
            let mut decoder = Decoder::with_extension(Role::Server, Some(server));
            assert_eq!(
                decode_all(&mut decoder, &wire, chunk),
                [
                    Ok(Message::Text(text.clone())),
                    Ok(Message::Text("plain".into())),
                    Ok(Message::Binary(data.clone())),
                ],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn codec_round_trips_from_server_to_client() {
        let (client, mut server) = negotiated();
        let mut encoder = Encoder::new(Role::Server);
        let mut decoder = Decoder::with_extension(Role::Client, Some(client));
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for i in 0..20 {
            let text = String::from_utf8(sample(i % 3, 100 + 1000 * i as usize)).unwrap();
            let mut out = Vec::new();
            let rsv = server.compress(text.as_bytes(), &mut out);
            let payload = if rsv.is_empty() {
                text.as_bytes()
            } else {
                &out[..]
            };
            encoder
                .frame(&mut wire, true, rsv, OpCode::Text, payload)
                .unwrap();
            expected.push(Ok(Message::Text(text)));
        }
        assert_eq!(decode_all(&mut decoder, &wire, 4096), expected);
    }

    #[test]
    fn codec_validates_text_after_inflation() {
        let (mut client, server) = negotiated();
        let mut encoder = Encoder::with_mask_source(Role::Client, || [9, 8, 7, 6]);
        let mut decoder = Decoder::with_extension(Role::Server, Some(server));
        let mut bad = "ok ".repeat(100).into_bytes();
        bad.extend_from_slice(&[0xc3, 0x28]);
        bad.extend("ok ".repeat(100).bytes());
        let mut out = Vec::new();
        assert_eq!(client.compress(&bad, &mut out), Rsv::RSV1);
        let mut wire = Vec::new();
        encoder
            .frame(&mut wire, true, Rsv::RSV1, OpCode::Text, &out)
            .unwrap();
        assert_eq!(
            decode_all(&mut decoder, &wire, 7),
            [Err(DecodeError::InvalidUtf8)]
        );
    }

    #[test]
    fn codec_refuses_a_bomb_at_max_message_bytes() {
        let (_, server) = negotiated();
        let bomb = zeros_bomb(1 << 30);
        let mut encoder = Encoder::with_mask_source(Role::Client, || [1, 1, 1, 1]);
        let mut wire = Vec::new();
        encoder
            .frame(&mut wire, true, Rsv::RSV1, OpCode::Binary, &bomb)
            .unwrap();
        let mut decoder = Decoder::with_extension(Role::Server, Some(server));
        decoder.set_max_message_bytes(1 << 20);
        let mut result = Ok(None);
        for piece in wire.chunks(4096) {
            let mut feed = decoder.feed(piece);
            result = feed.next_event().map(|e| e.map(|_| ()));
            drop(feed);
            assert!(decoder.buffered_bytes() <= (1 << 20) + 14);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(DecodeError::MessageTooLarge));
        assert_eq!(
            DecodeError::MessageTooLarge.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
    }

    #[test]
    fn codec_refuses_a_corrupt_compressed_message_with_1007() {
        let (_, server) = negotiated();
        let mut encoder = Encoder::with_mask_source(Role::Client, || [1, 2, 3, 4]);
        let mut decoder = Decoder::with_extension(Role::Server, Some(server));
        let mut wire = Vec::new();
        encoder
            .frame(&mut wire, true, Rsv::RSV1, OpCode::Text, &[0xff; 10])
            .unwrap();
        let result = decode_all(&mut decoder, &wire, 100);
        assert_eq!(result.len(), 1);
        let error = result[0].clone().unwrap_err();
        assert_eq!(error.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    /// No context kept in either direction: nothing stays per connection between
    /// messages (no deflater, no inflater), and connections that take turns with the
    /// thread's shared deflater each get messages that inflate on their own.
    #[test]
    fn without_context_takeover_nothing_is_kept_between_messages() {
        let config = DeflateConfig {
            send_no_context_takeover: true,
            request_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        let (mut a, response) = config.negotiate("permessage-deflate").unwrap();
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let (mut b, _) = config.negotiate("permessage-deflate").unwrap();
        let text = "the same words again and again, ".repeat(20);
        for round in 0..3 {
            for (name, deflate) in [("a", &mut a), ("b", &mut b)] {
                let message = format!("{name} {round} {text}");
                let (rsv, wire) = compress(deflate, message.as_bytes());
                assert_eq!(rsv, Rsv::RSV1);
                assert!(deflate.deflater.is_none(), "a deflater kept per connection");
                // A fresh inflater decodes it: it refers to no earlier message.
                let mut fresh = Decompress::new(false);
                let got = inflate_with_window(15, &mut fresh, &wire);
                assert_eq!(got, message.as_bytes());
                // Received: the inflater goes once the message is in.
                assert_eq!(inflate_one(deflate, &wire), message.as_bytes());
                assert!(
                    deflate.inflater.is_none(),
                    "an inflater kept per connection"
                );
            }
        }
        // With context takeover both stay, and the second message refers to the
        // first (it comes out smaller).
        let (mut kept, _) = DeflateConfig::default()
            .negotiate("permessage-deflate")
            .unwrap();
        let (_, first) = compress(&mut kept, text.as_bytes());
        let (_, second) = compress(&mut kept, text.as_bytes());
        assert!(kept.deflater.is_some());
        assert!(
            second.len() < first.len(),
            "{} vs {}",
            second.len(),
            first.len()
        );
        let _ = inflate_one(&mut kept, &first);
        assert!(kept.inflater.is_some());
    }
}
