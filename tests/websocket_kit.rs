//! The WebSocket adapter (`WebSocket<H>`) under the testing kit: the upgrade and its
//! refusals (400, 426, 431, 408, the handler's hook), echo, fragments, ping and pong,
//! the closing handshake, violations closed with their RFC 6455 code, a paused
//! reader, the watermark notices, permessage-deflate on what each role sends, and a
//! client-role adapter talking to a server-role one through `Harness::link`.
//!
//! The test plays the peer with the codec itself: frames from an `Encoder` in the
//! client role (masked), the server's output read back with a client `Decoder`.
//! At the end, the same two adapters run on a real reactor, over a Unix socket with
//! and without TLS: the adapter composes with any transport.

#![cfg(feature = "websocket")]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use twistor::testing::{Harness, HarnessBuilder};
use twistor::websocket::handshake::accept_key;
use twistor::websocket::{
    apply_mask, Accept, ClientHandshake, CloseCode, Decoder, DeflateConfig, Encoder, Event,
    FrameHeader, MessageKind, MessageRef, OpCode, Parsed, Refuse, Request, Role, Rsv, WebSocket,
    WsContext, WsHandler, WsSender,
};
use twistor::Reason;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// What a handler saw, in order.
#[derive(Clone, Default)]
struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.borrow_mut().push(s.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// Echoes, and logs every callback.
struct Echo {
    log: Log,
    /// Pause reading after each message.
    pause: bool,
    /// Refuse an `Origin` other than this one; choose `chat` if offered.
    origin: Option<&'static str>,
}

impl Echo {
    fn new(log: &Log) -> Echo {
        Echo {
            log: log.clone(),
            pause: false,
            origin: None,
        }
    }
}

impl WsHandler for Echo {
    fn upgrade(&mut self, request: &Request) -> Result<Accept, Refuse> {
        self.log.push(format!("upgrade {}", request.path()));
        if let Some(origin) = self.origin {
            if request.origin() != Some(origin) {
                return Err(Refuse::forbidden());
            }
        }
        match request.protocols().find(|p| *p == "chat") {
            Some(p) => Ok(Accept::new().protocol(p)),
            None => Ok(Accept::new()),
        }
    }

    fn http_request(&mut self, request: &Request) -> Refuse {
        if request.path() == "/" {
            Refuse::new(200)
                .header("Content-Type", "text/html; charset=utf-8")
                .body("<p>hello</p>")
        } else {
            Refuse::upgrade_required()
        }
    }

    fn on_open(&mut self, cx: &mut WsContext<'_, '_>) {
        self.log.push(format!("open {:?}", cx.protocol()));
    }

    fn message_received(&mut self, cx: &mut WsContext<'_, '_>, message: MessageRef<'_>) {
        self.log.push(format!(
            "{:?} {} bytes",
            message.kind(),
            message.as_bytes().len()
        ));
        cx.send(message);
        if self.pause {
            cx.pause_reading();
        }
    }

    fn pong_received(&mut self, _: &mut WsContext<'_, '_>, payload: &[u8]) {
        self.log
            .push(format!("pong {}", String::from_utf8_lossy(payload)));
    }

    fn on_close(&mut self, _: &mut WsContext<'_, '_>, code: CloseCode, reason: &str) {
        self.log.push(format!("close {code} {reason:?}"));
    }

    fn handshake_failed(
        &mut self,
        _: &mut WsContext<'_, '_>,
        error: &twistor::websocket::HandshakeError,
    ) {
        self.log.push(format!("failed {}", error.status()));
    }

    fn connection_lost(&mut self, _: &mut WsContext<'_, '_>, reason: Reason) {
        self.log.push(format!("lost {}", reason.is_clean()));
    }

    fn pause_producing(&mut self, _: &mut WsContext<'_, '_>) {
        self.log.push("pause producing");
    }

    fn resume_producing(&mut self, _: &mut WsContext<'_, '_>) {
        self.log.push("resume producing");
    }
}

fn request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         {extra}\r\n"
    )
    .into_bytes()
}

/// A client's frames, masked with a fixed key.
fn client() -> Encoder<impl FnMut() -> [u8; 4]> {
    Encoder::with_mask_source(Role::Client, || [0x37, 0xfa, 0x21, 0x3d])
}

/// A server-role adapter over `Echo`, upgraded; returns the harness and its log.
fn upgraded(
    configure: impl FnOnce(WebSocket<Echo>) -> WebSocket<Echo>,
) -> (Harness<WebSocket<Echo>>, Log) {
    let log = Log::default();
    let mut h = Harness::new(configure(WebSocket::server(Echo::new(&log))));
    h.connect();
    h.feed(&request("/chat", ""));
    let head = String::from_utf8(h.take_written()).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert_eq!(log.take(), ["upgrade /chat", "open None"]);
    (h, log)
}

/// The server's frames, decoded as a client does.
fn events(bytes: &[u8]) -> Vec<String> {
    let mut decoder = Decoder::new(Role::Client);
    decoder.set_max_message_bytes(usize::MAX);
    let mut feed = decoder.feed(bytes);
    let mut out = Vec::new();
    loop {
        match feed.next_event() {
            Ok(Some(Event::Text(t))) => out.push(format!("text {t}")),
            Ok(Some(Event::Binary(b))) => out.push(format!("binary {b:?}")),
            Ok(Some(Event::Ping(p))) => out.push(format!("ping {}", String::from_utf8_lossy(p))),
            Ok(Some(Event::Pong(p))) => out.push(format!("pong {}", String::from_utf8_lossy(p))),
            Ok(Some(Event::Close(Some(f)))) => out.push(format!("close {} {}", f.code, f.reason)),
            Ok(Some(Event::Close(None))) => out.push("close".into()),
            Ok(None) => return out,
            Err(e) => panic!("the server sent a bad frame: {e}"),
        }
    }
}

/// The close code the server's output ends with.
fn close_code(bytes: &[u8]) -> String {
    let all = events(bytes);
    let last = all.last().expect("a close frame").clone();
    last.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

// ----- the upgrade -----

#[test]
fn the_upgrade_answers_101_with_the_accept_key() {
    let log = Log::default();
    let mut h = Harness::new(WebSocket::server(Echo::new(&log)));
    h.connect();
    let req = request("/room?x=1", "Sec-WebSocket-Protocol: superchat, chat\r\n");
    // Trickled in two pieces: nothing before the empty line.
    h.feed(&req[..20]);
    assert_eq!(h.take_written(), b"");
    h.feed(&req[20..]);
    let head = String::from_utf8(h.take_written()).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(head.contains(&format!("Sec-WebSocket-Accept: {}\r\n", accept_key(KEY))));
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(head.contains("Sec-WebSocket-Protocol: chat\r\n"));
    assert!(
        !head.contains("Sec-WebSocket-Extensions"),
        "no negotiator, no extension"
    );
    assert!(head.ends_with("\r\n\r\n"));
    assert_eq!(log.take(), ["upgrade /room?x=1", "open Some(\"chat\")"]);
    assert_eq!(h.protocol().protocol(), Some("chat"));
    assert!(h.is_open());
}

#[test]
fn an_extension_offer_is_not_accepted_without_a_negotiator() {
    let log = Log::default();
    let mut h = Harness::new(WebSocket::server(Echo::new(&log)));
    h.connect();
    h.feed(&request(
        "/",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    ));
    let head = String::from_utf8(h.take_written()).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"));
    assert!(!head.contains("Extensions"));
    // And a compressed frame (RSV1) is then a protocol error.
    let mut wire = Vec::new();
    client()
        .frame(
            &mut wire,
            true,
            twistor::websocket::Rsv::RSV1,
            twistor::websocket::OpCode::Text,
            b"x",
        )
        .unwrap();
    h.feed(&wire);
    assert_eq!(close_code(&h.take_written()), "close 1002");
}

/// Feeds `req` to a fresh server; returns what it answered and whether it closed.
fn respond(req: &[u8]) -> (String, Log, Harness<WebSocket<Echo>>) {
    let log = Log::default();
    let mut h = Harness::new(WebSocket::server(Echo::new(&log)));
    h.connect();
    h.feed(req);
    let written = String::from_utf8(h.take_written()).unwrap();
    (written, log, h)
}

#[test]
fn a_plain_request_gets_426_with_upgrade_websocket() {
    let (answer, log, h) = respond(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nUpgrade: websocket\r\n"));
    assert!(answer.contains("\r\nConnection: close\r\n"));
    assert!(matches!(h.lost(), Some(Reason::Done)));
    assert_eq!(log.take(), ["lost true"]);
}

#[test]
fn the_http_hook_can_answer_a_page() {
    let (answer, _, h) = respond(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(answer.contains("Content-Length: 12\r\n"));
    assert!(answer.ends_with("\r\n\r\n<p>hello</p>"));
    assert!(h.lost().is_some());
}

#[test]
fn an_invalid_upgrade_gets_400() {
    let ok = String::from_utf8(request("/", "")).unwrap();
    for (from, to) in [
        (KEY, "short"),
        ("Version: 13", "Version: 8"),
        ("GET", "PUT"),
        ("HTTP/1.1", "HTTP/1.0"),
        ("Host: localhost\r\n", ""),
    ] {
        let (answer, log, h) = respond(ok.replacen(from, to, 1).as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{to}: {answer}"
        );
        assert!(h.lost().is_some());
        assert_eq!(log.take(), ["failed 400", "lost true"]);
    }
    let (answer, ..) = respond(ok.replacen("Version: 13", "Version: 8", 1).as_bytes());
    assert!(answer.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    let (answer, ..) = respond(b"\x16\x03\x01\x02\x00 hello\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
}

#[test]
fn headers_over_8_kib_get_431_without_waiting_for_the_end() {
    let mut req = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    req.resize(8 * 1024 + 1, b'a');
    let (answer, log, h) = respond(&req);
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert!(h.lost().is_some());
    assert_eq!(log.take(), ["failed 431", "lost true"]);
    // Just under the limit is fine.
    let mut req = request("/", "X-Big: ");
    req.truncate(req.len() - 2);
    let pad = 8 * 1024 - req.len() - 4;
    req.extend(std::iter::repeat_n(b'a', pad));
    req.extend_from_slice(b"\r\n\r\n");
    assert_eq!(req.len(), 8 * 1024);
    let (answer, ..) = respond(&req);
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
}

#[test]
fn the_upgrade_hook_can_refuse_an_origin() {
    let log = Log::default();
    let mut echo = Echo::new(&log);
    echo.origin = Some("https://good.example");
    let mut h = Harness::new(WebSocket::server(echo));
    h.connect();
    h.feed(&request("/", "Origin: https://evil.example\r\n"));
    let answer = String::from_utf8(h.take_written()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(h.lost().is_some());
    assert_eq!(log.take(), ["upgrade /", "lost true"]);
}

#[test]
fn a_slow_request_gets_408_at_the_handshake_timeout() {
    let log = Log::default();
    let mut h = Harness::new(
        WebSocket::server(Echo::new(&log)).handshake_timeout(Some(Duration::from_secs(2))),
    );
    h.connect();
    let req = request("/", "");
    for b in req[..req.len() - 1].chunks(1).take(30) {
        h.feed(b);
        h.advance(Duration::from_millis(50));
    }
    assert!(h.is_open());
    h.advance(Duration::from_millis(500));
    let answer = String::from_utf8(h.take_written()).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(h.lost().is_some());
    assert_eq!(log.take(), ["failed 408", "lost true"]);
}

#[test]
fn an_upgrade_in_time_cancels_the_handshake_timer() {
    let (mut h, _) = upgraded(|ws| ws.handshake_timeout(Some(Duration::from_secs(2))));
    assert_eq!(h.pending_timers(), 0);
    h.advance(Duration::from_secs(5));
    assert!(h.is_open());
}

// ----- messages -----

#[test]
fn text_and_binary_are_echoed_as_the_same_kind() {
    let (mut h, log) = upgraded(|ws| ws);
    let mut wire = Vec::new();
    let mut c = client();
    c.text(&mut wire, "hello");
    c.binary(&mut wire, &[0, 1, 2, 255]);
    c.text(&mut wire, "");
    c.text(&mut wire, "héllo wörld");
    h.feed(&wire);
    assert_eq!(
        events(&h.take_written()),
        [
            "text hello",
            "binary [0, 1, 2, 255]",
            "text ",
            "text héllo wörld"
        ]
    );
    assert_eq!(
        log.take(),
        [
            "Text 5 bytes",
            "Binary 4 bytes",
            "Text 0 bytes",
            "Text 13 bytes"
        ]
    );
}

#[test]
fn every_chunking_gives_the_same_echo() {
    let mut wire = Vec::new();
    let mut c = client();
    c.text(&mut wire, "one");
    c.start_fragmented(&mut wire, MessageKind::Binary, &[1, 2]);
    c.ping(&mut wire, b"p").unwrap();
    c.continue_fragmented(&mut wire, &[3], true);
    let large = vec![7u8; 70_000];
    c.binary(&mut wire, &large);
    for size in [1, 2, 3, 7, 64, 1000, wire.len()] {
        let (mut h, _) = upgraded(|ws| ws);
        for chunk in wire.chunks(size) {
            h.feed(chunk);
        }
        let got = events(&h.take_written());
        assert_eq!(got.len(), 4, "chunks of {size}");
        assert_eq!(got[..3], ["text one", "pong p", "binary [1, 2, 3]"]);
        assert_eq!(got[3], format!("binary {large:?}"));
    }
}

#[test]
fn a_fragmented_text_split_inside_a_character_is_reassembled() {
    let (mut h, _) = upgraded(|ws| ws);
    let text = "añb€c";
    let bytes = text.as_bytes();
    let mut wire = Vec::new();
    let mut c = client();
    c.start_fragmented(&mut wire, MessageKind::Text, &bytes[..2]);
    c.continue_fragmented(&mut wire, &bytes[2..5], false);
    c.continue_fragmented(&mut wire, &bytes[5..], true);
    h.feed(&wire);
    assert_eq!(events(&h.take_written()), [format!("text {text}")]);
}

#[test]
fn a_large_server_message_is_sent_header_then_payload() {
    let (mut h, _) = upgraded(|ws| ws);
    let payload = vec![9u8; 100_000];
    h.call(|p: &mut WebSocket<Echo>, cx| {
        p.with_handler(cx, |_, cx| assert!(cx.send_binary(&payload)));
    });
    let out = h.take_written();
    assert_eq!(&out[..4], &[0x82, 127, 0, 0]);
    assert_eq!(out.len(), 10 + payload.len());
    assert!(out[10..].iter().all(|&b| b == 9));
}

#[test]
fn pings_are_answered_and_pongs_reach_the_handler() {
    let (mut h, log) = upgraded(|ws| ws);
    let mut wire = Vec::new();
    let mut c = client();
    c.ping(&mut wire, b"are you there").unwrap();
    c.pong(&mut wire, b"unsolicited").unwrap();
    h.feed(&wire);
    assert_eq!(events(&h.take_written()), ["pong are you there"]);
    assert_eq!(log.take(), ["pong unsolicited"]);
    // The handler pings; the pong comes back to it.
    h.call(|p: &mut WebSocket<Echo>, cx| {
        p.with_handler(cx, |_, cx| assert_eq!(cx.ping(b"hb"), Ok(true)));
    });
    assert_eq!(events(&h.take_written()), ["ping hb"]);
    let mut wire = Vec::new();
    client().pong(&mut wire, b"hb").unwrap();
    h.feed(&wire);
    assert_eq!(log.take(), ["pong hb"]);
}

// ----- closing -----

#[test]
fn a_close_is_answered_with_its_code_then_the_connection_closes() {
    let (mut h, log) = upgraded(|ws| ws);
    let mut wire = Vec::new();
    let mut c = client();
    c.close(&mut wire, CloseCode(4321), "bye").unwrap();
    c.text(&mut wire, "after the close: dropped");
    h.feed(&wire);
    assert_eq!(events(&h.take_written()), ["close 4321 "]);
    assert!(matches!(h.lost(), Some(Reason::Done)));
    assert_eq!(log.take(), ["close 4321 \"bye\"", "lost true"]);
}

#[test]
fn an_empty_close_is_answered_with_an_empty_close() {
    let (mut h, log) = upgraded(|ws| ws);
    let mut wire = Vec::new();
    client().close_empty(&mut wire);
    h.feed(&wire);
    assert_eq!(events(&h.take_written()), ["close"]);
    assert_eq!(log.take(), ["close 1005 \"\"", "lost true"]);
}

#[test]
fn the_handler_can_close_and_nothing_is_sent_after() {
    let (mut h, _) = upgraded(|ws| ws);
    h.call(|p: &mut WebSocket<Echo>, cx| {
        p.with_handler(cx, |_, cx| {
            assert!(
                cx.close(CloseCode::ABNORMAL, "").is_err(),
                "1006 is never sent"
            );
            cx.close(CloseCode::GOING_AWAY, "restart").unwrap();
            assert!(cx.is_closing());
            assert!(!cx.send_text("too late"));
        });
    });
    assert_eq!(events(&h.take_written()), ["close 1001 restart"]);
    assert!(h.lost().is_some());
}

// ----- a sender for other connections -----

/// A `WsSender` for the server-role adapter on connection `id`.
fn sender_of(h: &mut Harness<WebSocket<Echo>>, id: twistor::ConnId) -> WsSender {
    let mut sender = None;
    h.call_of(id, |p: &mut WebSocket<Echo>, cx| {
        sender = Some(p.with_handler(cx, |_, cx| cx.sender()));
    });
    sender.expect("the connection is there")
}

/// One member relays to another from its own callbacks, as a chat room does: the
/// message arrives as one unmasked frame, between the target's own frames, until the
/// target sends its close frame; then, and once the connection is gone, the sender
/// refuses.
#[test]
fn a_sender_reaches_its_connection_from_another_ones_callbacks_until_it_closes() {
    let (mut h, _) = upgraded(|ws| ws);
    let log_b = Log::default();
    let b = h.add_protocol(WebSocket::server(Echo::new(&log_b)));
    // Before the upgrade: nothing may go.
    let early = sender_of(&mut h, b);
    assert!(!early.is_open());
    h.call(|_, cx| assert!(!early.send_text(cx, "too early")));
    assert!(h.take_written_of(b).is_empty());
    h.feed_of(b, &request("/b", ""));
    let head = String::from_utf8(h.take_written_of(b)).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // The handle made before the upgrade follows it, as any other.
    assert!(early.is_open());
    let to_b = sender_of(&mut h, b);
    assert_eq!(to_b.conn_id(), b);
    // From the main connection's callback: B's own echo, then two relayed messages.
    let mut wire = Vec::new();
    client().text(&mut wire, "own");
    h.feed_of(b, &wire);
    h.call(|_, cx| {
        assert!(to_b.send_text(cx, "relayed å"));
        assert!(early.send_binary(cx, &[1, 2, 3]));
    });
    let out = h.take_written_of(b);
    assert_eq!(
        events(&out),
        ["text own", "text relayed å", "binary [1, 2, 3]"]
    );
    // Server frames are unmasked (a client's decoder refuses masked ones): the
    // relayed text's header is FIN+text and its length, 10 bytes.
    assert!(out.windows(2).any(|w| w == [0x81, 10]));
    // B's client closes: B answers, and from then on nothing more may go.
    let mut wire = Vec::new();
    client().close(&mut wire, CloseCode::NORMAL, "").unwrap();
    h.feed_of(b, &wire);
    assert_eq!(events(&h.take_written_of(b)), ["close 1000 "]);
    assert!(!to_b.is_open());
    h.call(|_, cx| assert!(!to_b.send_text(cx, "after the close")));
    assert!(h.take_written_of(b).is_empty());
    // The main connection's own sender, until its connection is lost.
    let to_main = {
        let mut s = None;
        h.call(|p: &mut WebSocket<Echo>, cx| s = Some(p.with_handler(cx, |_, cx| cx.sender())));
        s.unwrap()
    };
    struct Idle;
    impl twistor::Protocol for Idle {
        fn data_received(&mut self, _: &mut twistor::Context<'_>, _: &[u8]) {}
    }
    let c = h.add_protocol(Idle);
    h.call_of(c, |_: &mut Idle, cx| {
        assert!(to_main.send_text(cx, "from a peer"));
    });
    assert_eq!(events(&h.take_written()), ["text from a peer"]);
    h.disconnect(Reason::Aborted);
    assert!(!to_main.is_open());
}

// ----- violations -----

/// Feeds `wire` after the upgrade; returns the close code the server answered with,
/// and checks that it closed the connection.
fn violation(wire: &[u8]) -> String {
    let (mut h, _) = upgraded(|ws| ws.max_message_bytes(1000));
    h.feed(wire);
    let code = close_code(&h.take_written());
    assert!(h.lost().is_some(), "closed after {code}");
    code
}

#[test]
fn an_unmasked_client_frame_is_closed_1002() {
    let mut wire = Vec::new();
    Encoder::new(Role::Server).text(&mut wire, "unmasked");
    assert_eq!(violation(&wire), "close 1002");
}

#[test]
fn invalid_utf8_split_across_fragments_is_closed_1007() {
    let mut wire = Vec::new();
    let mut c = client();
    // A valid lead byte in the first fragment, a wrong continuation in the second.
    c.start_fragmented(&mut wire, MessageKind::Text, b"ok \xe2\x82");
    c.continue_fragmented(&mut wire, b"\x41", true);
    assert_eq!(violation(&wire), "close 1007");
}

#[test]
fn a_message_over_the_limit_is_closed_1009_from_its_header() {
    // A 1 GiB frame announced, masked; none of its payload follows.
    let header = client().header(
        true,
        twistor::websocket::Rsv::NONE,
        twistor::websocket::OpCode::Binary,
        1 << 30,
    );
    let (mut h, log) = upgraded(|ws| ws.max_message_bytes(1000));
    h.feed(header.as_bytes());
    assert_eq!(close_code(&h.take_written()), "close 1009");
    assert!(h.lost().is_some());
    assert_eq!(log.take(), ["lost true"]);
    // Fragments that add up past the limit, too.
    let mut wire = Vec::new();
    let mut c = client();
    c.start_fragmented(&mut wire, MessageKind::Binary, &[0; 600]);
    c.continue_fragmented(&mut wire, &[0; 600], true);
    assert_eq!(violation(&wire), "close 1009");
}

#[test]
fn other_violations_are_closed_1002() {
    let mut c = client();
    let mut reserved = Vec::new();
    c.frame(
        &mut reserved,
        true,
        twistor::websocket::Rsv::RSV2,
        twistor::websocket::OpCode::Binary,
        b"x",
    )
    .unwrap();
    let mut continuation = Vec::new();
    c.continue_fragmented(&mut continuation, b"x", true);
    let mut bad_code = Vec::new();
    // Close code 1005 is never sent on the wire: build its payload by hand.
    c.frame(
        &mut bad_code,
        true,
        twistor::websocket::Rsv::NONE,
        twistor::websocket::OpCode::Close,
        &[0x03, 0xed],
    )
    .unwrap();
    for wire in [reserved, continuation, bad_code] {
        assert_eq!(violation(&wire), "close 1002");
    }
}

// ----- flow control -----

#[test]
fn a_paused_reader_gets_the_rest_when_it_resumes() {
    let log = Log::default();
    let mut echo = Echo::new(&log);
    echo.pause = true;
    let mut h = Harness::new(WebSocket::server(echo));
    h.connect();
    h.feed(&request("/", ""));
    h.take_written();
    log.take();
    let mut wire = Vec::new();
    let mut c = client();
    for word in ["one", "two", "three"] {
        c.text(&mut wire, word);
    }
    h.feed(&wire);
    assert_eq!(events(&h.take_written()), ["text one"]);
    assert!(h.reading_paused());
    for expected in ["text two", "text three"] {
        h.call(|_: &mut WebSocket<Echo>, cx| cx.resume_reading());
        assert_eq!(events(&h.take_written()), [expected]);
    }
    assert_eq!(log.take(), ["Text 3 bytes", "Text 3 bytes", "Text 5 bytes"]);
}

#[test]
fn watermark_notices_reach_the_handler() {
    let log = Log::default();
    let mut h = HarnessBuilder::new()
        .write_watermarks(1000, 100)
        .build(WebSocket::server(Echo::new(&log)));
    h.connect();
    h.feed(&request("/", ""));
    h.take_written();
    log.take();
    h.set_peer_window(Some(0));
    let mut wire = Vec::new();
    client().binary(&mut wire, &[1; 5000]);
    h.feed(&wire);
    assert_eq!(log.take(), ["Binary 5000 bytes", "pause producing"]);
    h.set_peer_window(None);
    assert_eq!(log.take(), ["resume producing"]);
    assert_eq!(events(&h.take_written()).len(), 1);
}

#[test]
fn a_peer_that_does_not_read_is_closed_at_the_write_cap() {
    let log = Log::default();
    let mut h = HarnessBuilder::new()
        .write_watermarks(1000, 100)
        .write_cap_bytes(10_000)
        .build(WebSocket::server(Echo::new(&log)));
    h.connect();
    h.feed(&request("/", ""));
    h.take_written();
    h.set_peer_window(Some(0));
    let mut wire = Vec::new();
    let mut c = client();
    for _ in 0..3 {
        c.binary(&mut wire, &[1; 4000]);
    }
    h.feed(&wire);
    assert!(matches!(h.lost(), Some(Reason::WriteOverflow)));
}

// ----- timers and jobs typed on the handler -----

struct Later;

impl WsHandler for Later {
    fn message_received(&mut self, cx: &mut WsContext<'_, '_>, message: MessageRef<'_>) {
        let text = message.to_message();
        cx.call_later(Duration::from_secs(1), move |_: &mut Later, cx| {
            cx.send_text(&format!(
                "later: {}",
                String::from_utf8_lossy(text.as_bytes())
            ));
        });
        let n = message.as_bytes().len();
        cx.defer_to_thread(
            move || n * 2,
            |_: &mut Later, cx, r| {
                cx.send_text(&format!("job: {}", r.unwrap()));
            },
        )
        .unwrap();
    }
}

#[test]
fn timers_and_pool_jobs_come_back_to_the_handler() {
    let mut h = Harness::new(WebSocket::server(Later));
    h.connect();
    h.feed(&request("/", ""));
    h.take_written();
    let mut wire = Vec::new();
    client().text(&mut wire, "abc");
    h.feed(&wire);
    assert_eq!(h.run_jobs(), 1);
    h.advance(Duration::from_secs(1));
    assert_eq!(
        events(&h.take_written()),
        ["text job: 6", "text later: abc"]
    );
}

// ----- a client against a server -----

/// Sends messages once open, records what comes back, closes after the last.
struct Client {
    log: Log,
    send: Vec<&'static str>,
}

impl WsHandler for Client {
    fn on_open(&mut self, cx: &mut WsContext<'_, '_>) {
        self.log.push(format!("client open {:?}", cx.protocol()));
        for text in &self.send {
            cx.send_text(text);
        }
        cx.send_binary(&[1, 2, 3]);
    }

    fn message_received(&mut self, cx: &mut WsContext<'_, '_>, message: MessageRef<'_>) {
        self.log.push(format!("client got {message:?}"));
        if message.kind() == MessageKind::Binary {
            cx.close(CloseCode::NORMAL, "done").unwrap();
        }
    }

    fn on_close(&mut self, _: &mut WsContext<'_, '_>, code: CloseCode, _: &str) {
        self.log.push(format!("client close {code}"));
    }

    fn handshake_failed(
        &mut self,
        _: &mut WsContext<'_, '_>,
        error: &twistor::websocket::HandshakeError,
    ) {
        self.log.push(format!("client failed: {error}"));
    }

    fn connection_lost(&mut self, _: &mut WsContext<'_, '_>, reason: Reason) {
        self.log.push(format!("client lost {}", reason.is_clean()));
    }
}

#[test]
fn a_client_adapter_talks_to_a_server_adapter() {
    let log = Log::default();
    let mut h = Harness::new(WebSocket::server(Echo::new(&log)));
    h.connect();
    let client = h.add_protocol(WebSocket::client(
        Client {
            log: log.clone(),
            send: vec!["hello", "wörld"],
        },
        ClientHandshake::new("localhost", "/chat").protocol("chat"),
    ));
    h.link(h.id(), client);
    assert_eq!(
        log.take(),
        [
            "upgrade /chat",
            "open Some(\"chat\")",
            "client open Some(\"chat\")",
            "Text 5 bytes",
            "Text 6 bytes",
            "Binary 3 bytes",
            "client got Text(\"hello\")",
            "client got Text(\"wörld\")",
            "client got Binary([1, 2, 3])",
            // The kit's memory streams do not linger: the client's close ends its
            // connection once flushed, before the server reads the close frame.
            "client lost true",
            "close 1000 \"done\"",
            "lost true",
        ]
    );
    assert!(h.lost().is_some());
    assert!(h.lost_of(client).is_some());
}

/// Hands out its connection's sender once the upgrade is done.
struct Handing {
    log: Log,
    sender: Rc<RefCell<Option<WsSender>>>,
}

impl WsHandler for Handing {
    fn on_open(&mut self, cx: &mut WsContext<'_, '_>) {
        *self.sender.borrow_mut() = Some(cx.sender());
    }

    fn message_received(&mut self, _: &mut WsContext<'_, '_>, message: MessageRef<'_>) {
        self.log.push(format!("client got {message:?}"));
    }
}

/// A client's sender masks its frames (the server adapter refuses unmasked ones,
/// so the echo proves it).
#[test]
fn a_client_sender_masks_what_it_sends() {
    let log = Log::default();
    let mut h = Harness::new(WebSocket::server(Echo::new(&log)));
    h.connect();
    let sender = Rc::new(RefCell::new(None));
    let client = h.add_protocol(WebSocket::client(
        Handing {
            log: log.clone(),
            sender: sender.clone(),
        },
        ClientHandshake::new("localhost", "/chat"),
    ));
    h.link(h.id(), client);
    let sender = sender.borrow_mut().take().expect("opened");
    assert_eq!(sender.conn_id(), client);
    log.take();
    h.call(|_, cx| assert!(sender.send_text(cx, "masked")));
    assert_eq!(log.take(), ["Text 6 bytes", "client got Text(\"masked\")"]);
    assert!(h.lost().is_none());
}

#[test]
fn a_client_refuses_a_response_that_is_not_101() {
    let log = Log::default();
    let mut h = Harness::new(WebSocket::client(
        Client {
            log: log.clone(),
            send: vec![],
        },
        ClientHandshake::new("localhost", "/"),
    ));
    h.connect();
    let req = String::from_utf8(h.take_written()).unwrap();
    assert!(
        req.starts_with("GET / HTTP/1.1\r\nHost: localhost\r\n"),
        "{req}"
    );
    h.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    assert!(h.lost().is_some());
    assert_eq!(
        log.take(),
        [
            "client failed: status 404 instead of 101",
            "client lost true"
        ]
    );
}

// ----- permessage-deflate on what the adapter sends -----

/// The frames in `bytes` (all whole), unmasked: (RSV1 set, opcode, payload).
fn frames(mut bytes: &[u8]) -> Vec<(bool, OpCode, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok(Parsed::Complete(header, n)) = FrameHeader::parse(bytes) else {
            panic!("a whole frame header");
        };
        assert!(header.fin, "one frame per message");
        let end = n + header.payload_len as usize;
        let mut payload = bytes[n..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key);
        }
        out.push((header.rsv == Rsv::RSV1, header.opcode, payload));
        bytes = &bytes[end..];
    }
    out
}

/// Inflates one message's payload (the `00 00 ff ff` the sender removed put back)
/// with a raw inflater, as a peer does: zlib through flate2, not the library's own
/// `Deflate`. The output comes 64 bytes per call, so that each back-reference is
/// read from the inflater's window: one farther back than the window it was made
/// with (`Decompress::new_with_window_bits`) is refused, where a single call could
/// reach it in its own output.
fn inflate(inflater: &mut flate2::Decompress, payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut rest = &input[..];
    let mut out = Vec::new();
    loop {
        let mut step = [0u8; 64];
        let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
        inflater
            .decompress(rest, &mut step, flate2::FlushDecompress::Sync)
            .expect("a valid deflate stream, within the window agreed");
        let written = (inflater.total_out() - before_out) as usize;
        out.extend_from_slice(&step[..written]);
        rest = &rest[(inflater.total_in() - before_in) as usize..];
        if rest.is_empty() && written < step.len() {
            return out;
        }
    }
}

/// Text that compresses well, but only with back-references 600 bytes away: past a
/// 512-byte (9-bit) window.
fn far_repeats() -> String {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let block: String = (0..600)
        .map(|_| {
            // xorshift: letters with nothing for deflate to find within the block.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    block.repeat(4)
}

/// A server-role adapter with permessage-deflate, upgraded with the client's
/// `offer`; returns the harness, its log and the extension answered.
fn deflate_server(offer: &str) -> (Harness<WebSocket<Echo>>, Log, String) {
    let log = Log::default();
    let server = WebSocket::server(Echo::new(&log)).negotiator(Box::new(DeflateConfig::default()));
    let mut h = Harness::new(server);
    h.connect();
    h.feed(&request(
        "/",
        &format!("Sec-WebSocket-Extensions: {offer}\r\n"),
    ));
    let head = String::from_utf8(h.take_written()).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let answer = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .expect("deflate agreed")
        .to_owned();
    assert_eq!(log.take(), ["upgrade /", "open None"]);
    (h, log, answer)
}

#[test]
fn a_server_with_deflate_sends_compressed_frames_with_the_context_kept() {
    let (mut h, log, answer) = deflate_server("permessage-deflate; client_max_window_bits");
    assert_eq!(answer, "permessage-deflate");
    let text = far_repeats();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 7) as u8).collect();
    let mut wire = Vec::new();
    for _ in 0..3 {
        client().text(&mut wire, &text);
    }
    client().binary(&mut wire, &data);
    client().ping(&mut wire, b"p").unwrap();
    client().text(&mut wire, "hi");
    client().text(&mut wire, &text);
    h.feed(&wire);
    assert_eq!(log.take().len(), 6);

    let sent = frames(&h.take_written());
    let kinds: Vec<_> = sent.iter().map(|(rsv1, op, _)| (*rsv1, *op)).collect();
    assert_eq!(
        kinds,
        [
            (true, OpCode::Text),
            (true, OpCode::Text),
            (true, OpCode::Text),
            (true, OpCode::Binary),
            // Control frames are never compressed; a message that compressing would
            // not shrink goes out as it is.
            (false, OpCode::Pong),
            (false, OpCode::Text),
            (true, OpCode::Text),
        ]
    );
    // One inflater for the whole connection, as the context is kept.
    let mut inflater = flate2::Decompress::new(false);
    let mut messages = Vec::new();
    for (rsv1, _, payload) in &sent {
        messages.push(match rsv1 {
            true => inflate(&mut inflater, payload),
            false => payload.clone(),
        });
    }
    let expected: [&[u8]; 7] = [
        text.as_bytes(),
        text.as_bytes(),
        text.as_bytes(),
        &data,
        b"p",
        b"hi",
        text.as_bytes(),
    ];
    assert_eq!(messages, expected);
    // With the context kept, a repeat is a few back-references into the window.
    assert!(
        sent[1].2.len() * 10 < sent[0].2.len(),
        "{}",
        sent[1].2.len()
    );
    assert!(sent[0].2.len() * 2 < text.len(), "{}", sent[0].2.len());
}

/// The frames a server with deflate sends back for `text` sent three times, after
/// agreeing to `offer`; all compressed text frames.
fn three_echoes(offer: &str, answer: &str, text: &str) -> Vec<Vec<u8>> {
    let (mut h, log, answered) = deflate_server(offer);
    assert_eq!(answered, answer);
    let mut wire = Vec::new();
    for _ in 0..3 {
        client().text(&mut wire, text);
    }
    h.feed(&wire);
    assert_eq!(log.take().len(), 3);
    let sent = frames(&h.take_written());
    assert!(sent.iter().all(|&(rsv1, op, _)| rsv1 && op == OpCode::Text));
    sent.into_iter().map(|(_, _, payload)| payload).collect()
}

#[test]
fn a_server_honours_no_context_takeover_when_the_client_asks() {
    let text = far_repeats();
    let offer = "permessage-deflate; server_no_context_takeover";
    for payload in three_echoes(offer, offer, &text) {
        // Each message compressed on its own inflates with a fresh inflater (a
        // reference into an earlier message would be refused).
        let mut inflater = flate2::Decompress::new(false);
        assert_eq!(inflate(&mut inflater, &payload), text.as_bytes());
    }
}

#[test]
fn a_server_honours_the_window_the_client_asks_for() {
    let text = far_repeats();
    let offer = "permessage-deflate; server_max_window_bits=9";
    // One inflater for the connection, with a 512-byte window: it refuses the
    // references 600 bytes back that a larger window would allow.
    let mut inflater = flate2::Decompress::new_with_window_bits(false, 9);
    for payload in three_echoes(offer, offer, &text) {
        assert_eq!(inflate(&mut inflater, &payload), text.as_bytes());
    }
}

/// A client-role adapter with permessage-deflate that sends `send`, then a binary
/// message, once open; returns the harness, its log and the request it sent.
fn deflate_client(
    config: DeflateConfig,
    send: Vec<&'static str>,
) -> (Harness<WebSocket<Client>>, Log, String) {
    let log = Log::default();
    let client = WebSocket::client(
        Client {
            log: log.clone(),
            send,
        },
        ClientHandshake::new("localhost", "/"),
    )
    .negotiator(Box::new(config));
    let mut h = Harness::new(client);
    h.connect();
    let request = String::from_utf8(h.take_written()).unwrap();
    (h, log, request)
}

/// The `101` a server answers `request` with, with `extensions` if any.
fn switching(request: &str, extensions: Option<&str>) -> Vec<u8> {
    let key = request
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("a key");
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(extensions) = extensions {
        response += &format!("Sec-WebSocket-Extensions: {extensions}\r\n");
    }
    response += "\r\n";
    response.into_bytes()
}

/// The frames a client with deflate sends once the server answered `answer`: three
/// messages of `text`, then a binary one.
fn client_frames(answer: &str, text: &'static str) -> Vec<(bool, OpCode, Vec<u8>)> {
    let (mut h, log, request) = deflate_client(DeflateConfig::default(), vec![text, text, text]);
    h.feed(&switching(&request, Some(answer)));
    assert_eq!(log.take(), ["client open None"]);
    frames(&h.take_written())
}

#[test]
fn a_client_compresses_with_the_parameters_the_server_sets() {
    let text: &'static str = far_repeats().leak();
    // The context not kept: each message inflates alone.
    let sent = client_frames("permessage-deflate; client_no_context_takeover", text);
    for (_, _, payload) in &sent[..3] {
        let mut inflater = flate2::Decompress::new(false);
        assert_eq!(inflate(&mut inflater, payload), text.as_bytes());
    }
    // A 9-bit window: one inflater with that window takes them all.
    let sent = client_frames("permessage-deflate; client_max_window_bits=9", text);
    let mut inflater = flate2::Decompress::new_with_window_bits(false, 9);
    for (_, _, payload) in &sent[..3] {
        assert_eq!(inflate(&mut inflater, payload), text.as_bytes());
    }
}

#[test]
fn a_client_offers_deflate_and_sends_and_receives_compressed_messages() {
    let text: &'static str = far_repeats().leak();
    let (mut h, log, request) = deflate_client(DeflateConfig::default(), vec![text, text, text]);
    assert!(
        request.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        ),
        "{request}"
    );
    h.feed(&switching(&request, Some("permessage-deflate")));
    assert_eq!(log.take(), ["client open None"]);
    let sent = frames(&h.take_written());
    let kinds: Vec<_> = sent.iter().map(|(rsv1, op, _)| (*rsv1, *op)).collect();
    assert_eq!(
        kinds,
        [
            (true, OpCode::Text),
            (true, OpCode::Text),
            (true, OpCode::Text),
            (false, OpCode::Binary)
        ]
    );
    let mut inflater = flate2::Decompress::new(false);
    for (_, _, payload) in &sent[..3] {
        assert_eq!(inflate(&mut inflater, payload), text.as_bytes());
    }
    // The context kept: the repeats are a few back-references.
    assert!(sent[1].2.len() * 10 < sent[0].2.len());
    assert_eq!(sent[3].2, [1, 2, 3]);

    // The server's compressed frames are inflated for the handler.
    let mut server = twistor::websocket::Deflate::new(Default::default(), 6);
    let mut payload = Vec::new();
    assert_eq!(server.compress(text.as_bytes(), &mut payload), Rsv::RSV1);
    let mut wire = Vec::new();
    let mut encoder = Encoder::new(Role::Server);
    encoder
        .frame(&mut wire, true, Rsv::RSV1, OpCode::Text, &payload)
        .unwrap();
    encoder.binary(&mut wire, b"end");
    h.feed(&wire);
    assert_eq!(
        log.take(),
        [
            format!("client got Text({text:?})"),
            "client got Binary([101, 110, 100])".to_owned(),
            "client lost true".to_owned(),
        ]
    );
}

#[test]
fn a_client_whose_offer_is_declined_sends_uncompressed() {
    let (mut h, log, request) =
        deflate_client(DeflateConfig::default(), vec!["hello ".repeat(100).leak()]);
    h.feed(&switching(&request, None));
    assert_eq!(log.take(), ["client open None"]);
    let sent = frames(&h.take_written());
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(rsv1, _, _)| !rsv1));
    assert_eq!(sent[0].2, "hello ".repeat(100).as_bytes());
}

#[test]
fn a_client_refuses_an_extension_answer_that_breaks_the_rules() {
    for (answer, why) in [
        (
            "permessage-deflate; server_max_window_bits=7",
            "invalid value for server_max_window_bits",
        ),
        (
            "x-webkit-deflate-frame",
            "extension \"x-webkit-deflate-frame\" was not offered",
        ),
    ] {
        let (mut h, log, request) = deflate_client(DeflateConfig::default(), vec![]);
        h.feed(&switching(&request, Some(answer)));
        assert!(h.lost().is_some());
        assert_eq!(
            log.take(),
            [
                format!("client failed: extension refused: {why}"),
                "client lost true".to_owned()
            ]
        );
    }
    // Without a negotiator, no offer is made, and any extension is refused.
    let log = Log::default();
    let mut h = Harness::new(WebSocket::client(
        Client {
            log: log.clone(),
            send: vec![],
        },
        ClientHandshake::new("localhost", "/"),
    ));
    h.connect();
    let request = String::from_utf8(h.take_written()).unwrap();
    assert!(!request.contains("Sec-WebSocket-Extensions"));
    h.feed(&switching(&request, Some("permessage-deflate")));
    assert_eq!(
        log.take(),
        [
            "client failed: invalid upgrade response: an extension that was not offered",
            "client lost true"
        ]
    );
}

#[test]
fn a_client_and_a_server_with_deflate_both_ways() {
    let log = Log::default();
    let server = WebSocket::server(Echo::new(&log)).negotiator(Box::new(DeflateConfig::default()));
    let mut h = Harness::new(server);
    h.connect();
    let long: &'static str = "wörld ".repeat(500).leak();
    let mut client_config = DeflateConfig::default();
    client_config.request_no_context_takeover = true;
    client_config.max_window_bits = 10;
    let client = h.add_protocol(
        WebSocket::client(
            Client {
                log: log.clone(),
                send: vec![long, "hello", long],
            },
            ClientHandshake::new("localhost", "/"),
        )
        .negotiator(Box::new(client_config)),
    );
    h.link(h.id(), client);
    assert_eq!(
        log.take(),
        [
            "upgrade /".to_owned(),
            "open None".to_owned(),
            "client open None".to_owned(),
            "Text 3500 bytes".to_owned(),
            "Text 5 bytes".to_owned(),
            "Text 3500 bytes".to_owned(),
            "Binary 3 bytes".to_owned(),
            format!("client got Text({long:?})"),
            "client got Text(\"hello\")".to_owned(),
            format!("client got Text({long:?})"),
            "client got Binary([1, 2, 3])".to_owned(),
            "client lost true".to_owned(),
            "close 1000 \"done\"".to_owned(),
            "lost true".to_owned(),
        ]
    );
}

// ----- the same adapters over real sockets -----

/// A server and a client adapter on one reactor, over a Unix socket (with TLS if
/// `tls`): the client's log, then the server's, once both connections are lost.
fn over_unix(tls: bool) -> (Vec<String>, Vec<String>) {
    let certs = common::tls::Certs::new("websocket_kit");
    let path = certs.dir.path("ws.sock");
    let server_log = Log::default();
    let client_log = Log::default();
    let mut r = twistor::Reactor::new().unwrap();
    let factory = {
        let log = server_log.clone();
        move |_: &twistor::Addr| Some(WebSocket::server(Echo::new(&log)))
    };
    let client = WebSocket::client(
        Client {
            log: client_log.clone(),
            send: vec!["hello", "wörld"],
        },
        ClientHandshake::new("localhost", "/chat").protocol("chat"),
    );
    if tls {
        let acceptor =
            twistor::tls::TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
        let connector = twistor::tls::TlsConnector::from_ca_pem(&certs.ca).unwrap();
        r.listen_unix_tls(&path, &acceptor, factory).unwrap();
        r.connect_unix_tls(&path, &connector, "localhost", client);
    } else {
        r.listen_unix(&path, factory).unwrap();
        r.connect_unix(&path, client);
    }
    let lost = |log: &Log| log.0.borrow().iter().any(|l| l.contains("lost"));
    common::run_until(&mut r, |_| lost(&client_log) && lost(&server_log));
    (client_log.take(), server_log.take())
}

const CLIENT_SAW: [&str; 5] = [
    "client open Some(\"chat\")",
    "client got Text(\"hello\")",
    "client got Text(\"wörld\")",
    "client got Binary([1, 2, 3])",
    "client lost true",
];

const SERVER_SAW: [&str; 7] = [
    "upgrade /chat",
    "open Some(\"chat\")",
    "Text 5 bytes",
    "Text 6 bytes",
    "Binary 3 bytes",
    "close 1000 \"done\"",
    "lost true",
];

#[test]
fn a_client_and_a_server_over_a_unix_socket() {
    assert_eq!(
        over_unix(false),
        (
            CLIENT_SAW.map(String::from).to_vec(),
            SERVER_SAW.map(String::from).to_vec()
        )
    );
}

#[cfg(feature = "tls")]
#[test]
fn a_client_and_a_server_over_tls_on_a_unix_socket() {
    assert_eq!(
        over_unix(true),
        (
            CLIENT_SAW.map(String::from).to_vec(),
            SERVER_SAW.map(String::from).to_vec()
        )
    );
}
