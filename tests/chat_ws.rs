//! The chat example's WebSocket listener (EXAMPLES.md, "chat in a browser
//! (WebSocket)") as a process, driven from outside.
//!
//! Each test starts `chat --listen 127.0.0.1:0 --ws-listen 127.0.0.1:0`, reads its
//! `listening on` and `ws listening on` lines, and talks to both listeners: line
//! members over plain sockets, as in tests/chat.rs; WebSocket members either with
//! Python's `websockets` (a real client, also for `wss:` with the test CA) or with a
//! raw client written here with the crate's codec (one that can stop reading, or
//! look at the close frame). Tests synchronise on the notices members receive, never
//! on sleeps.
//!
//! The Python tests need `python3` with `websockets`; if it is missing they try
//! `pip install --user websockets` once, and if it is still missing they print
//! `skipped: python websockets not found` and pass. Every wait is bounded: sockets
//! have read timeouts, processes the example helpers' watchdog.

#![cfg(all(feature = "websocket", feature = "tls"))]

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;

use common::chat::{flood_until, nick_of_welcome, LineMember};
use common::example::{self, Listening, Proc, PROCESS_WATCHDOG};
use common::python::have_websockets;
use common::tls::Certs;
use common::{connect, read_head, CLIENT_TIMEOUT};
use twistor::websocket::{Decoder, Encoder, Event, Role};

// ----- the server -----

/// A chat server with its WebSocket listener.
struct Chat {
    server: Listening,
    /// The line protocol's address.
    line: SocketAddr,
    /// The WebSocket listener's address.
    ws: SocketAddr,
}

impl Chat {
    /// Starts `chat` on port 0 with `--ws-listen 127.0.0.1:0` and `extra`, and reads
    /// both announcements: `listening on`, then `ws listening on`.
    fn start(extra: &[&str]) -> Chat {
        let mut args = vec!["--ws-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let server = example::serve("chat", "127.0.0.1:0", &args);
        let line = server.addr();
        let second = server.next_line();
        let ws = second
            .strip_prefix("ws listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected second line {second:?}"));
        assert_ne!(line, ws);
        Chat { server, line, ws }
    }

    fn line_member(&self) -> LineMember {
        LineMember::connect(self.line, CLIENT_TIMEOUT)
    }

    fn ws_member(&self) -> WsMember {
        WsMember::connect(self.ws)
    }
}

// ----- raw WebSocket members -----

/// An upgrade request for `path`.
fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// What a raw WebSocket member received.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Text(String),
    /// A close frame, with its code (`None` for an empty one).
    Close(Option<u16>),
    /// The end of the stream (or a reset).
    End,
}

/// A WebSocket member written with the crate's codec, over a plain socket.
struct WsMember {
    stream: TcpStream,
    encoder: Encoder,
    decoder: Decoder,
    got: VecDeque<Got>,
    nick: String,
}

impl WsMember {
    /// Upgrades on `/chat` and reads the welcome, which names the member.
    fn connect(addr: SocketAddr) -> WsMember {
        let mut member = WsMember::upgraded(addr);
        let welcome = member.text();
        member.nick = nick_of_welcome(&welcome);
        member
    }

    /// Upgrades on `/chat`, and reads nothing more.
    fn upgraded(addr: SocketAddr) -> WsMember {
        let mut stream = connect(addr);
        stream
            .write_all(upgrade_request("/chat").as_bytes())
            .unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        WsMember {
            stream,
            encoder: Encoder::new(Role::Client),
            decoder: Decoder::new(Role::Client),
            got: VecDeque::new(),
            nick: String::new(),
        }
    }

    /// Sends `text` as one text message.
    fn send(&mut self, text: &str) {
        let mut wire = Vec::new();
        self.encoder.text(&mut wire, text);
        self.stream.write_all(&wire).unwrap();
    }

    /// The next thing received.
    fn next(&mut self) -> Got {
        let mut buf = [0; 16 * 1024];
        while self.got.is_empty() {
            let n = match self.stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => panic!("reading a frame: {e}"),
            };
            if n == 0 {
                self.got.push_back(Got::End);
                break;
            }
            let mut feed = self.decoder.feed(&buf[..n]);
            while let Some(event) = feed.next_event().expect("valid frames") {
                self.got.push_back(match event {
                    Event::Text(text) => Got::Text(text.to_owned()),
                    Event::Close(frame) => Got::Close(frame.map(|f| f.code.0)),
                    other => panic!("unexpected {other:?}"),
                });
            }
        }
        self.got.pop_front().unwrap()
    }

    /// The next text message.
    fn text(&mut self) -> String {
        match self.next() {
            Got::Text(text) => text,
            other => panic!("{other:?} instead of a text message"),
        }
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.text(), want);
    }

    /// Expects a close frame with `code`, then the end of the stream.
    fn expect_close(&mut self, code: u16) {
        assert_eq!(self.next(), Got::Close(Some(code)));
        assert_eq!(self.next(), Got::End, "bytes after the close frame");
    }
}

// ----- Python's websockets -----

/// An interactive WebSocket member: each line of its stdin (a JSON string) is sent
/// as a text message; each message received is printed as `message JSON`; when the
/// connection ends it prints `closed CODE` (the server's close code, or `None` if
/// it sent no close frame) and exits.
const PY_MEMBER: &str = r#"
import json, os, ssl, sys, threading
from websockets.sync.client import connect

url, ca = sys.argv[1], sys.argv[2]
context = ssl.create_default_context(cafile=ca) if url.startswith("wss:") else None
ws = connect(url, ssl=context, open_timeout=10, close_timeout=10, compression=None)

def receive():
    try:
        for message in ws:
            print("message", json.dumps(message), flush=True)
    except Exception:
        pass
    rcvd = ws.protocol.close_rcvd
    print("closed", rcvd.code if rcvd else None, flush=True)
    os._exit(0)

threading.Thread(target=receive, daemon=True).start()
for line in sys.stdin:
    ws.send(json.loads(line))
ws.close()
threading.Event().wait(10)
"#;

/// A member run by Python's `websockets` (see [`PY_MEMBER`]).
struct PyMember {
    proc: Proc,
    stdin: ChildStdin,
    out: Receiver<String>,
    nick: String,
}

impl PyMember {
    /// Connects to `url` (`ws:` or `wss:` with `ca`) and reads the welcome.
    fn connect(url: &str, ca: &str) -> PyMember {
        let mut proc = Proc::spawn(
            Command::new("python3")
                .args(["-c", PY_MEMBER, url, ca])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let stdin = proc.child().stdin.take().unwrap();
        let out = proc.stdout_lines();
        let mut member = PyMember {
            proc,
            stdin,
            out,
            nick: String::new(),
        };
        member.nick = nick_of_welcome(&member.text());
        member
    }

    fn send(&mut self, text: &str) {
        let json = serde_json_string(text);
        writeln!(self.stdin, "{json}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn text(&mut self) -> String {
        let line = example::next_line(&self.out);
        let json = line
            .strip_prefix("message ")
            .unwrap_or_else(|| panic!("{line:?} instead of a message"));
        parse_json_string(json)
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.text(), want);
    }

    /// Waits for the end of the connection: the server's close code, if any.
    fn closed(&mut self) -> String {
        let line = example::next_line(&self.out);
        let code = line
            .strip_prefix("closed ")
            .unwrap_or_else(|| panic!("{line:?} instead of the close"));
        let code = code.to_owned();
        assert!(self.proc.wait().success());
        code
    }
}

/// `text` as a JSON string (ASCII, every other character escaped).
fn serde_json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// The string of a JSON string literal as Python's `json.dumps` writes it (ASCII,
/// with `\uXXXX` escapes, surrogate pairs included).
fn parse_json_string(json: &str) -> String {
    let inner = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a JSON string: {json:?}"));
    let mut units = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            units.extend(c.encode_utf16(&mut [0; 2]).iter().copied());
            continue;
        }
        let unit = match chars.next().unwrap() {
            'n' => '\n' as u16,
            'r' => '\r' as u16,
            't' => '\t' as u16,
            'b' => 8,
            'f' => 12,
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                u16::from_str_radix(&hex, 16).unwrap()
            }
            other => other as u16,
        };
        units.push(unit);
    }
    String::from_utf16(&units).unwrap()
}

// ----- the page -----

/// Sends `request` to the WebSocket listener; returns the response head and body,
/// read until the server closes.
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut s);
    let body = example::read_until_closed(&mut s);
    (head, String::from_utf8(body).unwrap())
}

fn get(addr: SocketAddr, path: &str) -> (String, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\r\n"),
    )
}

/// Checks the page: the elements the spec names, the WebSocket to `/chat` on the
/// page's own host with the scheme of the page, and nothing loaded from elsewhere.
fn check_page(page: &str) {
    assert!(page.contains(r#"id="log""#), "{page}");
    assert!(page.contains(r#"<input id="line""#), "{page}");
    assert!(page.contains("location.host"), "{page}");
    assert!(page.contains(r#""/chat""#), "{page}");
    assert!(page.contains(r#"location.protocol === "https:" ? "wss:" : "ws:""#));
    let lower = page.to_ascii_lowercase();
    for outside in [
        "src=", "href=", "http:", "https://", "url(", "@import", "//cdn", "<link",
    ] {
        assert!(!lower.contains(outside), "the page has {outside:?}");
    }
}

#[test]
fn the_page_is_at_the_root_and_other_paths_are_404() {
    let chat = Chat::start(&[]);
    let (head, page) = get(chat.ws, "/");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", page.len())),
        "{head}"
    );
    check_page(&page);
    // With a query too.
    let (head, again) = get(chat.ws, "/?x=1");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(again, page);
    for path in ["/index.html", "/favicon.ico", "/chat/x", "//"] {
        let (head, _) = get(chat.ws, path);
        assert!(head.starts_with("HTTP/1.1 404 "), "{path}: {head}");
    }
    // The members' endpoint without the upgrade; the page's path with it.
    let (head, _) = get(chat.ws, "/chat");
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    let (head, _) = http(chat.ws, &upgrade_request("/"));
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let (head, _) = http(chat.ws, "POST / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
    // None of that made a member.
    let mut line = chat.line_member();
    line.send("/who");
    line.expect(&format!("* in lobby: {}", line.nick));
}

// ----- members of both kinds -----

#[test]
fn python_websocket_and_line_members_chat_together() {
    if !have_websockets() {
        return;
    }
    let chat = Chat::start(&[]);
    let mut line = chat.line_member();
    let mut web = PyMember::connect(&format!("ws://{}/chat", chat.ws), "-");
    assert_eq!(line.nick, "guest1");
    assert_eq!(web.nick, "guest2");
    line.expect("* guest2 joined lobby");
    web.send("hi");
    line.expect("<guest2> hi");
    line.send("hello, web");
    web.expect("<guest1> hello, web");
    // A trailing \r is no part of a line; text is relayed clean both ways.
    web.send("/me waves\r");
    web.expect("* guest2 waves");
    line.expect("* guest2 waves");
    web.send("tab\tesc\x1b[31m bell\x07 é");
    line.expect("<guest2> tab\tesc\u{FFFD}[31m bell\u{FFFD} é");
    line.send("from nc\x1b]0;x\x07 ü");
    web.expect("<guest1> from nc\u{FFFD}]0;x\u{FFFD} ü");
    // Private messages and rooms, across kinds.
    web.send("/msg guest1 psst");
    line.expect("*private* <guest2> psst");
    line.send("/join kitchen");
    line.expect("* guest1 joined kitchen");
    web.expect("* guest1 left lobby");
    web.send("/rooms");
    web.expect("* rooms: kitchen (1), lobby (1)");
    web.send("/join kitchen");
    web.expect("* guest2 joined kitchen");
    line.expect("* guest2 joined kitchen");
    web.send("/bogus");
    web.expect("* error: unknown command");
    web.send("/quit");
    web.expect("* bye");
    assert_eq!(web.closed(), "1000");
    line.expect("* guest2 disconnected");
}

#[test]
fn nicks_and_rooms_are_shared_across_kinds() {
    let chat = Chat::start(&[]);
    let mut line = chat.line_member();
    let mut web = chat.ws_member();
    line.expect(&format!("* {} joined lobby", web.nick));
    line.send("/nick alice");
    line.expect("* guest1 is now alice");
    web.expect("* guest1 is now alice");
    web.send("/nick alice");
    web.expect("* error: nick alice is taken");
    web.send("/nick bob");
    web.expect("* guest2 is now bob");
    line.expect("* guest2 is now bob");
    line.send("/nick bob");
    line.expect("* error: nick bob is taken");
    // A second member of each kind.
    let mut web2 = chat.ws_member();
    let mut line2 = chat.line_member();
    web2.expect(&format!("* {} joined lobby", line2.nick));
    let (web2_nick, line2_nick) = (web2.nick.clone(), line2.nick.clone());
    for m in [&mut line as &mut dyn Member, &mut web] {
        m.expect(&format!("* {web2_nick} joined lobby"));
        m.expect(&format!("* {line2_nick} joined lobby"));
    }
    let who = "* in lobby: alice, bob, guest3, guest4";
    web.send("/who");
    web.expect(who);
    line.send("/who");
    line.expect(who);
    line2.send("hello all");
    for m in [&mut line as &mut dyn Member, &mut web, &mut web2] {
        m.expect("<guest4> hello all");
    }
    // A member that leaves is announced to both kinds.
    drop(web2);
    for m in [&mut line as &mut dyn Member, &mut web, &mut line2] {
        m.expect("* guest3 disconnected");
    }
}

/// Either kind of member, for checks that go to each.
trait Member {
    fn expect(&mut self, want: &str);
}

impl Member for LineMember {
    fn expect(&mut self, want: &str) {
        LineMember::expect(self, want);
    }
}

impl Member for WsMember {
    fn expect(&mut self, want: &str) {
        WsMember::expect(self, want);
    }
}

// ----- limits -----

#[test]
fn a_message_over_max_line_gets_the_error_then_a_close() {
    let chat = Chat::start(&["--max-line", "10"]);
    let mut line = chat.line_member();
    let mut web = chat.ws_member();
    line.expect(&format!("* {} joined lobby", web.nick));
    // At the limit, with and without a \r (not counted).
    web.send("0123456789");
    line.expect(&format!("<{}> 0123456789", web.nick));
    web.send("abcdefghij\r");
    line.expect(&format!("<{}> abcdefghij", web.nick));
    // One byte over (é is two).
    web.send("012345678é");
    web.expect("* error: line too long");
    web.expect_close(1009);
    line.expect(&format!("* {} disconnected", web.nick));
    // Far over: the same.
    let mut web = chat.ws_member();
    line.expect(&format!("* {} joined lobby", web.nick));
    web.send(&"x".repeat(5000));
    web.expect("* error: line too long");
    web.expect_close(1009);
    line.expect(&format!("* {} disconnected", web.nick));
}

/// A binary message is no chat line: closed 1003, and the room hears it left.
#[test]
fn a_binary_message_is_refused() {
    let chat = Chat::start(&[]);
    let mut line = chat.line_member();
    let mut web = chat.ws_member();
    line.expect(&format!("* {} joined lobby", web.nick));
    let mut wire = Vec::new();
    web.encoder.binary(&mut wire, b"\x00\x01");
    web.stream.write_all(&wire).unwrap();
    web.expect_close(1003);
    line.expect(&format!("* {} disconnected", web.nick));
}

/// A WebSocket member that upgrades and then never reads is cut off at
/// `--max-backlog` (64 KiB, no more than the high watermark: the cap cuts before the
/// hour-long slow timeout), while a line member floods the room and another reads
/// every line.
#[test]
fn a_websocket_member_that_never_reads_is_cut_off_at_max_backlog() {
    let chat = Chat::start(&["--max-backlog", "65536", "--slow-timeout", "3600"]);
    let mut flooder = chat.line_member();
    let mut reader = chat.line_member();
    // Upgraded, welcomed, and never read again.
    let mut stalled = WsMember::upgraded(chat.ws);
    flooder.expect(&format!("* {} joined lobby", reader.nick));
    let joined = flooder.line();
    reader.expect(&joined);
    let stalled_nick = joined
        .strip_prefix("* ")
        .and_then(|j| j.strip_suffix(" joined lobby"))
        .unwrap()
        .to_owned();
    let gone = format!("* {stalled_nick} disconnected");
    flood_until(&mut flooder, &mut reader, &gone, PROCESS_WATCHDOG);
    // The line members go on.
    reader.send("still here");
    flooder.expect(&format!("<{}> still here", reader.nick));
    // The stalled member's connection is gone: what the kernel had taken (or not,
    // after a reset), then the end; its queued output was dropped, so no close frame.
    loop {
        match stalled.next() {
            Got::Text(_) => {}
            Got::End => break,
            Got::Close(code) => panic!("a close frame ({code:?}) past the backlog"),
        }
    }
}

// ----- TLS -----

/// The TLS test's client: the page over https, two members over `wss:`, and the
/// line protocol over TLS.
const PY_TLS: &str = r#"
import socket, ssl, sys, urllib.request
from websockets.sync.client import connect

host, line_port, ws_port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=ca)
with urllib.request.urlopen(f"https://{host}:{ws_port}/", context=context, timeout=10) as r:
    print("page", r.status, r.headers["Content-Type"], 'id="log"' in r.read().decode())
with connect(f"wss://{host}:{ws_port}/chat", ssl=context, open_timeout=10) as a:
    print("a", a.recv(timeout=10))
    with connect(f"wss://{host}:{ws_port}/chat", ssl=context, open_timeout=10) as b:
        print("b", b.recv(timeout=10))
        print("a", a.recv(timeout=10))
        b.send("over wss")
        print("a", a.recv(timeout=10))
with socket.create_connection((host, line_port), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname=host) as s:
        print("line", s.makefile("rb").readline().decode().rstrip("\n"))
"#;

#[test]
fn with_tls_both_listeners_speak_it_the_page_over_https_and_members_over_wss() {
    if !have_websockets() {
        return;
    }
    let certs = Certs::new("chat_ws");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let chat = Chat::start(&[
        "--tls-cert",
        &s(&certs.server_cert),
        "--tls-key",
        &s(&certs.server_key),
    ]);
    let out = example::run(Command::new("python3").args([
        "-c",
        PY_TLS,
        // The certificate names the address too; "localhost" could try ::1 first.
        "127.0.0.1",
        &chat.line.port().to_string(),
        &chat.ws.port().to_string(),
        &s(&certs.ca),
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "page 200 text/html; charset=utf-8 True",
            "a * welcome guest1, you are in lobby",
            "b * welcome guest2, you are in lobby",
            "a * guest2 joined lobby",
            "a <guest2> over wss",
            "line * welcome guest3, you are in lobby",
        ]
    );
    // Plaintext gets no page: the port expects a TLS handshake.
    let mut plain = connect(chat.ws);
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = example::read_until_closed(&mut plain);
    assert!(!got.starts_with(b"HTTP/"), "{got:?}");
}

// ----- the process -----

#[test]
fn sigterm_with_websocket_members_exits_0_and_closes_them() {
    if !have_websockets() {
        return;
    }
    let mut chat = Chat::start(&[]);
    let mut line = chat.line_member();
    let mut web = PyMember::connect(&format!("ws://{}/chat", chat.ws), "-");
    let mut raw = chat.ws_member();
    line.expect(&format!("* {} joined lobby", web.nick));
    line.expect(&format!("* {} joined lobby", raw.nick));
    web.expect(&format!("* {} joined lobby", raw.nick));
    line.send("last words");
    web.expect(&format!("<{}> last words", line.nick));
    raw.expect(&format!("<{}> last words", line.nick));
    chat.server.signal("TERM");
    // Each member gets every line it was sent, then a close frame with 1001 "going
    // away" (`WsHandler::stopping`), then the end of the stream.
    assert_eq!(web.closed(), "1001");
    assert_eq!(raw.next(), Got::Close(Some(1001)));
    assert_eq!(raw.next(), Got::End);
    let mut rest = String::new();
    assert_eq!(line.reader.read_line(&mut rest).unwrap(), 0, "{rest:?}");
    // Their ends close, so the server need not wait out its linger.
    drop((raw, line));
    assert_eq!(chat.server.wait().code(), Some(0));
}

#[test]
fn ws_listen_is_checked_and_in_help() {
    for bad in ["nonsense", "127.0.0.1", "localhost:8080", ""] {
        let out = example::run_example("chat", &["--listen", "127.0.0.1:0", "--ws-listen", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad:?}");
        assert_eq!(stderr.lines().count(), 1, "{bad:?}: {stderr}");
        assert!(
            stderr.starts_with("chat: --ws-listen "),
            "{bad:?}: {stderr}"
        );
    }
    let out = example::run_example("chat", &["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--ws-listen"), "{help}");
    // Without the flag, one listener and one line.
    let chat = example::serve("chat", "127.0.0.1:0", &[]);
    let mut line = LineMember::connect(chat.addr(), CLIENT_TIMEOUT);
    line.send("/quit");
    line.expect("* bye");
    assert!(chat.stdout.try_recv().is_err());
}
