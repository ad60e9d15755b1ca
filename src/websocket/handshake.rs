//! The HTTP/1.1 upgrade that opens a WebSocket connection (RFC 6455 section 4), as
//! pure functions: request and response heads are parsed with `httparse`, the accept
//! key is SHA-1 and base64 (`sha1`, `base64`), and nothing touches a socket.
//!
//! Server side: [`find_head_end`] tells when a whole head is in, [`parse_request`]
//! reads it into a [`Request`], [`check_upgrade`] applies RFC 6455's rules, and the
//! answer is an [`Accept`] (written with [`Accept::response`]) or a [`Refuse`] (any
//! other HTTP response, written with [`Refuse::to_bytes`]). Client side: a
//! [`ClientHandshake`] writes the request with a fresh key and checks the `101`.
//!
//! Extensions (`Sec-WebSocket-Extensions`) are parsed into [`ExtensionOffer`]s and
//! handed to an [`ExtensionNegotiator`], which is where permessage-deflate plugs in;
//! without one the server accepts no extension, and a client offers none.

use std::fmt;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::encoder::{MaskSource, RandomMask};
use super::extension::Extension;

/// The largest request (or response) head accepted, request line and headers with
/// their line ends: 8 KiB, nginx's `large_client_header_buffers` size and what most
/// servers allow. A larger one is answered 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The most header lines accepted in a head (a request with more is answered 431).
pub const MAX_HEADERS: usize = 64;

/// The GUID RFC 6455 section 1.3 appends to the key before hashing it.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of the SHA-1 of the key
/// followed by RFC 6455's GUID.
///
/// # Examples
///
/// ```
/// use twistor::websocket::handshake::accept_key;
///
/// // RFC 6455 section 1.3's example.
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Why a handshake failed. On a server, [`status`](Self::status) is the HTTP status
/// to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head passed [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`] (431).
    HeadTooLarge,
    /// Not HTTP: what `httparse` said (400).
    Malformed(String),
    /// The request is not an upgrade to WebSocket: no `Upgrade: websocket` or no
    /// `Connection: upgrade` (426).
    NotUpgrade,
    /// An upgrade with a method other than GET (400).
    NotGet,
    /// An upgrade over HTTP/1.0 (400).
    NotHttp11,
    /// No `Host` header (400).
    NoHost,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes in base64 (400).
    BadKey,
    /// `Sec-WebSocket-Version` missing or not 13 (400, with
    /// `Sec-WebSocket-Version: 13`).
    BadVersion,
    /// The head did not come in time (408 on a server).
    TimedOut,
    /// Client: the response's status was not 101.
    Status(u16),
    /// Client: `Upgrade`, `Connection` or `Sec-WebSocket-Accept` missing or wrong.
    BadResponse(&'static str),
    /// Client: the server's `Sec-WebSocket-Extensions` answer was refused by the
    /// [`ExtensionNegotiator`] (what it said), so the connection is failed (RFC 6455
    /// section 9.1).
    Extension(String),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge => 431,
            HandshakeError::NotUpgrade => 426,
            HandshakeError::TimedOut => 408,
            _ => 400,
        }
    }

    /// The response a server sends for this error, then closes.
    pub fn response(&self) -> Refuse {
        let response = match self {
            HandshakeError::NotUpgrade => Refuse::upgrade_required(),
            HandshakeError::BadVersion => Refuse::new(400).header("Sec-WebSocket-Version", "13"),
            e => Refuse::new(e.status()),
        };
        response.body(format!("{self}\n"))
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::HeadTooLarge => write!(
                f,
                "head over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} header lines"
            ),
            HandshakeError::Malformed(why) => write!(f, "malformed HTTP: {why}"),
            HandshakeError::NotUpgrade => f.write_str("not a WebSocket upgrade"),
            HandshakeError::NotGet => f.write_str("a WebSocket upgrade must be a GET"),
            HandshakeError::NotHttp11 => f.write_str("a WebSocket upgrade needs HTTP/1.1"),
            HandshakeError::NoHost => f.write_str("no Host header"),
            HandshakeError::BadKey => f.write_str("missing or invalid Sec-WebSocket-Key"),
            HandshakeError::BadVersion => f.write_str("Sec-WebSocket-Version must be 13"),
            HandshakeError::TimedOut => f.write_str("handshake timed out"),
            HandshakeError::Status(code) => write!(f, "status {code} instead of 101"),
            HandshakeError::BadResponse(why) => write!(f, "invalid upgrade response: {why}"),
            HandshakeError::Extension(why) => write!(f, "extension refused: {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Where the head that begins `buf` ends (the index just past its empty line), if
/// it is all there. `from` is how much of `buf` was searched already (the previous
/// length), so that bytes trickled in one at a time are searched once, not again on
/// every call.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    for nl in memchr::memchr_iter(b'\n', &buf[start..]) {
        let at = start + nl + 1;
        match &buf[at..] {
            [b'\n', ..] => return Some(at + 1),
            [b'\r', b'\n', ..] => return Some(at + 2),
            _ => {}
        }
    }
    None
}

/// A request's head, as the server's upgrade hook sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: String,
    path: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The method (`GET` for an upgrade).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: `/chat?room=1`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub fn http_minor_version(&self) -> u8 {
        self.version
    }

    /// Every header line, in order: its name as sent and its value's bytes.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The first header named `name` (case-insensitive), if its value is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .find_map(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Every value of the headers named `name` (case-insensitive) that is UTF-8.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The comma-separated elements of every header named `name`, trimmed.
    fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.all(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// The `Origin` header (sent by browsers): check it to keep other sites' pages
    /// from opening connections with the user's cookies.
    pub fn origin(&self) -> Option<&str> {
        self.header("Origin")
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.header("Host")
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`), in its order of
    /// preference.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.tokens("Sec-WebSocket-Protocol")
    }

    /// The `Sec-WebSocket-Key`.
    pub fn key(&self) -> Option<&str> {
        self.header("Sec-WebSocket-Key")
    }

    /// The extensions the client offers (`Sec-WebSocket-Extensions`), in its order of
    /// preference; elements that do not parse are left out.
    pub fn extension_offers(&self) -> Vec<ExtensionOffer> {
        self.all("Sec-WebSocket-Extensions")
            .flat_map(parse_extensions)
            .collect()
    }

    /// True if the headers ask for a WebSocket upgrade: `Upgrade` lists `websocket`
    /// and `Connection` lists `upgrade`.
    pub fn is_upgrade(&self) -> bool {
        self.tokens("Upgrade")
            .any(|t| t.eq_ignore_ascii_case("websocket"))
            && self
                .tokens("Connection")
                .any(|t| t.eq_ignore_ascii_case("upgrade"))
    }
}

/// Parses the request head at the start of `buf` (which [`find_head_end`] found
/// whole, or which is longer than [`MAX_HEAD_BYTES`]): the request and the length of
/// its head. What follows the head is the peer's first frames.
///
/// # Errors
///
/// [`HandshakeError::HeadTooLarge`] for a head over [`MAX_HEAD_BYTES`] or with more
/// than [`MAX_HEADERS`] lines; [`HandshakeError::Malformed`] for what is not HTTP.
pub fn parse_request(buf: &[u8]) -> Result<(Request, usize), HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let limit = buf.len().min(MAX_HEAD_BYTES);
    match req.parse(&buf[..limit]) {
        Ok(httparse::Status::Complete(n)) => {
            let request = Request {
                method: req.method.unwrap_or_default().to_owned(),
                path: req.path.unwrap_or_default().to_owned(),
                version: req.version.unwrap_or_default(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_owned()))
                    .collect(),
            };
            Ok((request, n))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            Err(HandshakeError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => {
            Err(HandshakeError::Malformed("incomplete head".to_owned()))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::HeadTooLarge),
        Err(e) => Err(HandshakeError::Malformed(e.to_string())),
    }
}

/// Checks a request against RFC 6455 section 4.2.1: an upgrade to WebSocket, by GET
/// over HTTP/1.1, with a `Host`, a key of 16 bytes and version 13.
///
/// # Errors
///
/// [`HandshakeError::NotUpgrade`] if it does not ask for an upgrade (a plain HTTP
/// request), the other variants for an upgrade that breaks a rule.
pub fn check_upgrade(request: &Request) -> Result<(), HandshakeError> {
    if !request.is_upgrade() {
        return Err(HandshakeError::NotUpgrade);
    }
    if request.method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if request.version < 1 {
        return Err(HandshakeError::NotHttp11);
    }
    if request.host().is_none() {
        return Err(HandshakeError::NoHost);
    }
    let mut keys = request.all("Sec-WebSocket-Key");
    let key = keys.next().ok_or(HandshakeError::BadKey)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| HandshakeError::BadKey)?;
    if decoded.len() != 16 || keys.next().is_some() {
        return Err(HandshakeError::BadKey);
    }
    let mut versions = request.all("Sec-WebSocket-Version");
    if versions.next() != Some("13") || versions.next().is_some() {
        return Err(HandshakeError::BadVersion);
    }
    Ok(())
}

/// The server's yes to an upgrade, from the handler's hook: the subprotocol chosen
/// and extra response headers (a cookie, say).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accept {
    protocol: Option<String>,
    headers: Vec<(String, String)>,
}

impl Accept {
    /// Accepts with no subprotocol and no extra header.
    pub fn new() -> Accept {
        Accept::default()
    }

    /// Chooses subprotocol `protocol`, which must be one the client offered
    /// ([`Request::protocols`]): a client fails a connection whose protocol it did
    /// not offer.
    pub fn protocol(mut self, protocol: &str) -> Accept {
        self.protocol = Some(protocol.to_owned());
        self
    }

    /// Adds a header to the `101` response.
    ///
    /// # Panics
    ///
    /// If `name` or `value` holds a CR or LF (a header injection).
    pub fn header(mut self, name: &str, value: &str) -> Accept {
        check_header(name, value);
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The subprotocol chosen, if any.
    pub fn chosen_protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The `101 Switching Protocols` response for a request with key `key` (checked
    /// by [`check_upgrade`]), with the answer of the extension negotiation if there
    /// was one (the value of `Sec-WebSocket-Extensions`).
    pub fn response(&self, key: &str, extensions: Option<&str>) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            accept_key(key)
        );
        if let Some(protocol) = &self.protocol {
            out += &format!("Sec-WebSocket-Protocol: {protocol}\r\n");
        }
        if let Some(extensions) = extensions {
            out += &format!("Sec-WebSocket-Extensions: {extensions}\r\n");
        }
        for (name, value) in &self.headers {
            out += &format!("{name}: {value}\r\n");
        }
        out += "\r\n";
        out.into_bytes()
    }
}

/// An HTTP response instead of the upgrade: a refusal (403 for an `Origin` not
/// allowed, 404 for an unknown path) or, for a plain HTTP request, any answer at all
/// (a page with status 200). The connection is closed after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refuse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Refuse {
    /// A response with `status` and, for a body, the status's reason phrase and a
    /// newline, as plain text.
    pub fn new(status: u16) -> Refuse {
        Refuse {
            status,
            headers: Vec::new(),
            body: format!("{}\n", reason_phrase(status)).into_bytes(),
        }
    }

    /// 403 Forbidden: for an `Origin`, a path or a subprotocol refused.
    pub fn forbidden() -> Refuse {
        Refuse::new(403)
    }

    /// 426 Upgrade Required, with `Upgrade: websocket` and `Sec-WebSocket-Version:
    /// 13`: the answer to a plain HTTP request on a WebSocket endpoint.
    pub fn upgrade_required() -> Refuse {
        Refuse::new(426)
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
    }

    /// Adds a header (`Content-Type` replaces the default `text/plain`).
    ///
    /// # Panics
    ///
    /// If `name` or `value` holds a CR or LF (a header injection).
    pub fn header(mut self, name: &str, value: &str) -> Refuse {
        check_header(name, value);
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Refuse {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The whole response, with `Content-Length` and `Connection: close`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
        {
            out += "Content-Type: text/plain; charset=utf-8\r\n";
        }
        for (name, value) in &self.headers {
            out += &format!("{name}: {value}\r\n");
        }
        out += &format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        );
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn check_header(name: &str, value: &str) {
    assert!(
        !name.contains(['\r', '\n', ':']) && !value.contains(['\r', '\n']),
        "a header name or value with a line break (or a colon in the name): {name:?}"
    );
}

/// The reason phrase of the statuses a WebSocket endpoint answers with.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// One extension the client offers in `Sec-WebSocket-Extensions`: its name and
/// parameters (`permessage-deflate; client_max_window_bits` is the name
/// `permessage-deflate` with the parameter `client_max_window_bits` and no value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension's name.
    pub name: String,
    /// Its parameters in order: a name, and a value if one was given (quotes
    /// removed).
    pub params: Vec<(String, Option<String>)>,
}

/// Parses one `Sec-WebSocket-Extensions` value (RFC 6455 section 9.1): extensions
/// separated by commas, parameters by semicolons, values tokens or quoted strings.
/// An element that does not parse is skipped.
///
/// # Examples
///
/// ```
/// use twistor::websocket::handshake::parse_extensions;
///
/// let offers = parse_extensions(
///     "permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\"",
/// );
/// assert_eq!(offers.len(), 2);
/// assert_eq!(offers[0].params, [("client_max_window_bits".to_owned(), None)]);
/// assert_eq!(offers[1].params[0].1.as_deref(), Some("10"));
/// ```
pub fn parse_extensions(value: &str) -> Vec<ExtensionOffer> {
    split_outside_quotes(value, ',')
        .into_iter()
        .filter_map(|element| {
            let mut parts = split_outside_quotes(element, ';').into_iter();
            let name = parts.next()?.trim();
            if !is_token(name) {
                return None;
            }
            let mut params = Vec::new();
            for part in parts {
                let (key, value) = match part.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
                    None => (part.trim(), None),
                };
                if !is_token(key) {
                    return None;
                }
                params.push((key.to_owned(), value));
            }
            Some(ExtensionOffer {
                name: name.to_owned(),
                params,
            })
        })
        .collect()
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

fn unquote(v: &str) -> Option<String> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    is_token(inner).then(|| inner.to_owned())
}

/// An HTTP token (RFC 7230 section 3.2.6).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What a negotiation settled: the extension that decodes incoming messages and the
/// `Sec-WebSocket-Extensions` value the server answers with.
pub struct Negotiated {
    /// Handed to the connection's decoder.
    pub extension: Box<dyn Extension>,
    /// The response header's value (`permessage-deflate; server_no_context_takeover`).
    pub response: String,
}

impl fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Negotiated")
            .field("response", &self.response)
            .finish_non_exhaustive()
    }
}

/// An extension negotiation (RFC 6455 section 9): the seam for permessage-deflate
/// (RFC 7692), on both ends. A server, given what the client offers, picks at most one
/// offer and makes the extension for it ([`negotiate`](Self::negotiate)); a client
/// makes its offer ([`offer`](Self::offer)) and checks the server's answer
/// ([`accept`](Self::accept)). An adapter without a negotiator offers and accepts no
/// extension.
///
/// The extension made decodes the peer's messages and encodes ours
/// ([`Extension::encode`]): with permessage-deflate, each message the adapter sends
/// is compressed with the parameters agreed for its direction.
pub trait ExtensionNegotiator: 'static {
    /// Server: the client's offers, in its order of preference: `None` to accept
    /// none.
    fn negotiate(&mut self, offers: &[ExtensionOffer]) -> Option<Negotiated>;

    /// Client: the `Sec-WebSocket-Extensions` value of the request, or `None` (the
    /// default) to offer nothing.
    fn offer(&mut self) -> Option<String> {
        None
    }

    /// Client: the server's `Sec-WebSocket-Extensions` answer to [`offer`](Self::offer)
    /// (header lines joined with `, `): the extension agreed, or why the answer is
    /// refused ([`HandshakeError::Extension`]); the connection then fails. The default
    /// refuses any answer, as a client that offered nothing must.
    ///
    /// # Errors
    ///
    /// An answer that accepts something not offered, or breaks the extension's rules.
    fn accept(&mut self, response: &str) -> Result<Box<dyn Extension>, HandshakeError> {
        let _ = response;
        Err(HandshakeError::BadResponse(
            "an extension that was not offered",
        ))
    }
}

/// A client's side of the handshake: the request, with a fresh key, and the check of
/// the server's `101` (RFC 6455 section 4.1).
///
/// # Examples
///
/// ```
/// use twistor::websocket::handshake::{accept_key, ClientHandshake};
///
/// let mut client = ClientHandshake::new("example.com", "/chat").protocol("chat.v1");
/// let request = String::from_utf8(client.request()).unwrap();
/// assert!(request.starts_with("GET /chat HTTP/1.1\r\nHost: example.com\r\n"));
///
/// let response = format!(
///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///      Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: chat.v1\r\n\r\n",
///     accept_key(client.key()),
/// );
/// let (protocol, head_len) = client.check_response(response.as_bytes())?;
/// assert_eq!(protocol.as_deref(), Some("chat.v1"));
/// assert_eq!(head_len, response.len());
/// # Ok::<(), twistor::websocket::handshake::HandshakeError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    host: String,
    path: String,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    extensions: Option<String>,
    key: String,
}

/// What a client's check of the server's `101` found ([`ClientHandshake::check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Upgraded {
    /// The subprotocol the server chose, if any (one offered).
    pub protocol: Option<String>,
    /// The server's `Sec-WebSocket-Extensions` (header lines joined with `, `), if
    /// any: possible only when extensions were offered, and to be checked against
    /// the offer.
    pub extensions: Option<String>,
    /// The head's length: what follows it is the server's first frames.
    pub head_bytes: usize,
}

impl ClientHandshake {
    /// A request for `path` (`/` or `/chat?room=1`) on `host` (the `Host` header:
    /// `example.com` or `127.0.0.1:9001`).
    ///
    /// # Panics
    ///
    /// If `host` or `path` holds a CR, LF or space.
    pub fn new(host: &str, path: &str) -> ClientHandshake {
        assert!(
            !host.contains(['\r', '\n', ' ']) && !path.contains(['\r', '\n', ' ']),
            "a host or path with a space or a line break"
        );
        ClientHandshake {
            host: host.to_owned(),
            path: path.to_owned(),
            protocols: Vec::new(),
            headers: Vec::new(),
            extensions: None,
            key: String::new(),
        }
    }

    /// Offers subprotocol `protocol` (call again to offer more, in order of
    /// preference).
    pub fn protocol(mut self, protocol: &str) -> ClientHandshake {
        assert!(is_token(protocol), "a subprotocol must be an HTTP token");
        self.protocols.push(protocol.to_owned());
        self
    }

    /// Adds a header to the request (`Origin`, `Authorization`, ...).
    ///
    /// # Panics
    ///
    /// If `name` or `value` holds a CR or LF.
    pub fn header(mut self, name: &str, value: &str) -> ClientHandshake {
        check_header(name, value);
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Offers extensions: `offer` is the `Sec-WebSocket-Extensions` value of the
    /// request (`permessage-deflate; client_max_window_bits`, say). The server's
    /// answer then comes back from [`check`](Self::check), to be checked against the
    /// offer (the [`WebSocket`](super::WebSocket) adapter does this with its
    /// [negotiator](super::WebSocket::negotiator), which makes the offer too).
    ///
    /// # Panics
    ///
    /// If `offer` holds a CR or LF.
    pub fn extensions(mut self, offer: &str) -> ClientHandshake {
        check_header("Sec-WebSocket-Extensions", offer);
        self.extensions = Some(offer.to_owned());
        self
    }

    /// The key of the last request made.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request, with a fresh random key.
    pub fn request(&mut self) -> Vec<u8> {
        let mut masks = RandomMask::new();
        let mut nonce = [0u8; 16];
        for chunk in nonce.chunks_mut(4) {
            chunk.copy_from_slice(&masks.next_mask());
        }
        self.key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let mut out = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host, self.key
        );
        if !self.protocols.is_empty() {
            out += &format!("Sec-WebSocket-Protocol: {}\r\n", self.protocols.join(", "));
        }
        if let Some(offer) = &self.extensions {
            out += &format!("Sec-WebSocket-Extensions: {offer}\r\n");
        }
        for (name, value) in &self.headers {
            out += &format!("{name}: {value}\r\n");
        }
        out += "\r\n";
        out.into_bytes()
    }

    /// Checks the response head at the start of `buf` (found whole by
    /// [`find_head_end`]): the subprotocol the server chose, and the head's length
    /// (what follows is the server's first frames). When extensions were offered, use
    /// [`check`](Self::check), which returns the server's answer to them as well.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check); and any extension in the answer.
    pub fn check_response(&self, buf: &[u8]) -> Result<(Option<String>, usize), HandshakeError> {
        let upgraded = self.check(buf)?;
        if upgraded.extensions.is_some() {
            return Err(HandshakeError::BadResponse(
                "an extension that was not offered",
            ));
        }
        Ok((upgraded.protocol, upgraded.head_bytes))
    }

    /// Checks the response head at the start of `buf` (found whole by
    /// [`find_head_end`]), as [`check_response`](Self::check_response), and returns
    /// the server's extensions too.
    ///
    /// # Errors
    ///
    /// A status other than 101, a missing or wrong `Upgrade`, `Connection` or
    /// `Sec-WebSocket-Accept`, a subprotocol not offered, or an extension when none
    /// was offered.
    pub fn check(&self, buf: &[u8]) -> Result<Upgraded, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(&buf[..buf.len().min(MAX_HEAD_BYTES)]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(HandshakeError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => {
                return Err(HandshakeError::Malformed("incomplete head".to_owned()))
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadTooLarge),
            Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
        };
        let code = resp.code.unwrap_or_default();
        if code != 101 {
            return Err(HandshakeError::Status(code));
        }
        let response = Request {
            method: String::new(),
            path: String::new(),
            version: resp.version.unwrap_or_default(),
            headers: resp
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_owned()))
                .collect(),
        };
        if !response.is_upgrade() {
            return Err(HandshakeError::BadResponse("no Upgrade or Connection"));
        }
        if response.header("Sec-WebSocket-Accept") != Some(accept_key(&self.key).as_str()) {
            return Err(HandshakeError::BadResponse("wrong Sec-WebSocket-Accept"));
        }
        let extensions: Vec<&str> = response.all("Sec-WebSocket-Extensions").collect();
        let extensions = (!extensions.is_empty()).then(|| extensions.join(", "));
        if extensions.is_some() && self.extensions.is_none() {
            return Err(HandshakeError::BadResponse(
                "an extension that was not offered",
            ));
        }
        let protocol = response.header("Sec-WebSocket-Protocol").map(str::to_owned);
        if let Some(p) = &protocol {
            if !self.protocols.contains(p) {
                return Err(HandshakeError::BadResponse(
                    "a subprotocol that was not offered",
                ));
            }
        }
        Ok(Upgraded {
            protocol,
            extensions,
            head_bytes: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\n\
        Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn the_rfc_request_is_an_upgrade() {
        assert_eq!(find_head_end(REQUEST, 0), Some(REQUEST.len()));
        let (req, n) = parse_request(REQUEST).unwrap();
        assert_eq!(n, REQUEST.len());
        assert_eq!(check_upgrade(&req), Ok(()));
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.origin(), Some("http://example.com"));
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["chat", "superchat"]);
        let response = String::from_utf8(
            Accept::new()
                .protocol("chat")
                .response(req.key().unwrap(), None),
        )
        .unwrap();
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(response.ends_with("\r\n\r\n"));
    }

    #[test]
    fn the_head_end_is_found_however_the_bytes_come() {
        for end in [&b"\r\n\r\n"[..], b"\n\n", b"\r\n\n"] {
            let mut head = b"GET / HTTP/1.1\r\nHost: x".to_vec();
            head.extend_from_slice(end);
            for i in 0..head.len() {
                // Searched up to i already, then the rest arrives.
                let found = find_head_end(&head[..i], 0).or_else(|| find_head_end(&head, i));
                assert_eq!(found, Some(head.len()), "split at {i}");
            }
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }

    fn check(request: &str) -> Result<(), HandshakeError> {
        let (req, _) = parse_request(request.as_bytes())?;
        check_upgrade(&req)
    }

    #[test]
    fn each_rule_has_its_error() {
        let ok = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(check(ok), Ok(()));
        let cases = [
            (
                "Upgrade: WebSocket",
                "Upgrade: h2c",
                HandshakeError::NotUpgrade,
            ),
            (
                "Connection: upgrade",
                "Connection: close",
                HandshakeError::NotUpgrade,
            ),
            ("GET", "POST", HandshakeError::NotGet),
            ("HTTP/1.1", "HTTP/1.0", HandshakeError::NotHttp11),
            ("Host: h", "X-Host: h", HandshakeError::NoHost),
            (
                "dGhlIHNhbXBsZSBub25jZQ==",
                "c2hvcnQ=",
                HandshakeError::BadKey,
            ),
            (
                "dGhlIHNhbXBsZSBub25jZQ==",
                "not base64!",
                HandshakeError::BadKey,
            ),
            ("Version: 13", "Version: 8", HandshakeError::BadVersion),
        ];
        for (from, to, error) in cases {
            assert_eq!(check(&ok.replacen(from, to, 1)), Err(error.clone()), "{to}");
        }
        assert_eq!(HandshakeError::NotUpgrade.status(), 426);
        assert_eq!(HandshakeError::BadKey.status(), 400);
        let refused = String::from_utf8(HandshakeError::NotUpgrade.response().to_bytes()).unwrap();
        assert!(refused.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(refused.contains("\r\nUpgrade: websocket\r\n"));
    }

    #[test]
    fn a_large_head_is_refused_431() {
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(MAX_HEAD_BYTES + 10, b'a');
        assert_eq!(parse_request(&head), Err(HandshakeError::HeadTooLarge));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many += &format!("X-{i}: 1\r\n");
        }
        many += "\r\n";
        assert_eq!(
            parse_request(many.as_bytes()),
            Err(HandshakeError::HeadTooLarge)
        );
        assert!(matches!(
            parse_request(b"\x16\x03\x01 not http\r\n\r\n"),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn extension_offers_are_parsed() {
        let offers = parse_extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
             x-webkit-deflate-frame, bad name, foo; a=\"b\"",
        );
        let names: Vec<_> = offers.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            ["permessage-deflate", "x-webkit-deflate-frame", "foo"]
        );
        assert_eq!(
            offers[0].params,
            [
                ("client_max_window_bits".to_owned(), None),
                ("server_max_window_bits".to_owned(), Some("10".to_owned()))
            ]
        );
        assert_eq!(offers[2].params, [("a".to_owned(), Some("b".to_owned()))]);
    }

    #[test]
    fn a_client_checks_the_response() {
        let mut client = ClientHandshake::new("h", "/");
        let first = client.request();
        let key = client.key().to_owned();
        client.request();
        assert_ne!(client.key(), key, "a fresh key per request");
        assert!(String::from_utf8(first).unwrap().contains(&key));
        let good = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(client.key())
        );
        assert_eq!(
            client.check_response(good.as_bytes()),
            Ok((None, good.len()))
        );
        let wrong = good.replace(&accept_key(client.key()), &accept_key(&key));
        assert_eq!(
            client.check_response(wrong.as_bytes()),
            Err(HandshakeError::BadResponse("wrong Sec-WebSocket-Accept"))
        );
        let unoffered = good.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: x\r\n\r\n");
        assert!(client.check_response(unoffered.as_bytes()).is_err());
        assert_eq!(
            client.check_response(b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Err(HandshakeError::Status(403))
        );
    }

    #[test]
    fn a_client_that_offers_extensions_gets_the_answer() {
        let mut client = ClientHandshake::new("h", "/").extensions("permessage-deflate");
        let request = String::from_utf8(client.request()).unwrap();
        assert!(request.contains("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"));
        let head = |extensions: &str| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extensions}\r\n",
                accept_key(client.key())
            )
        };
        let none = head("");
        let upgraded = client.check(none.as_bytes()).unwrap();
        assert_eq!(
            (upgraded.extensions, upgraded.head_bytes),
            (None, none.len())
        );
        // Header lines are joined, as a list.
        let two = head(
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\
             Sec-WebSocket-Extensions: x\r\n",
        );
        assert_eq!(
            client.check(two.as_bytes()).unwrap().extensions.as_deref(),
            Some("permessage-deflate, x")
        );
        // check_response, which has no way to return them, refuses them.
        assert!(client.check_response(two.as_bytes()).is_err());
        // Without an offer, none is made, and any extension is refused.
        let mut plain = ClientHandshake::new("h", "/");
        let request = String::from_utf8(plain.request()).unwrap();
        assert!(!request.contains("Extensions"));
        let answer = two.replace(&accept_key(client.key()), &accept_key(plain.key()));
        assert_eq!(
            plain.check(answer.as_bytes()),
            Err(HandshakeError::BadResponse(
                "an extension that was not offered"
            ))
        );
    }
}
