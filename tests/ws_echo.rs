//! The `ws_echo` example (EXAMPLES.md, "ws_echo (WebSocket)") as a process, driven
//! from outside: by Python's `websockets` library (text, binary, fragments, ping,
//! close codes, `wss://` with the test CA), and by hostile clients written here with
//! the crate's codec over plain sockets (a slowloris request, a 1 GiB message
//! announced, a deflate bomb, invalid UTF-8 split across fragments, unmasked frames,
//! ten thousand connections that upgrade and drop).
//!
//! The Python tests need `python3` with `websockets`; if it is missing they try
//! `pip install --user websockets` once, and if it is still missing they print
//! `skipped: python websockets not found` and pass. Every wait is bounded: client
//! sockets have read timeouts, processes the example helpers' watchdog.

#![cfg(all(feature = "websocket", feature = "tls"))]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::example::{self, Listening, PROCESS_WATCHDOG};
use common::python::have_websockets;
use common::tls::Certs;
use common::{connect, read_head};
use twistor::websocket::{CloseCode, Decoder, Encoder, Event, MessageKind, OpCode, Role, Rsv};

fn serve(extra: &[&str]) -> Listening {
    example::serve("ws_echo", "127.0.0.1:0", extra)
}

// ----- Python's websockets -----

/// The client every Python test runs: URL, CA file (or `-`), then a scenario name.
const CLIENT: &str = r#"
import ssl, sys
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory, PerMessageDeflate)

url, ca, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca) if url.startswith("wss:") else None
options = {}
if scenario == "deflate-no-context":
    # The server must compress each message alone: the client's inflater is made
    # afresh for each message, and fails (1007) on a reference to an earlier one.
    options["compression"] = None
    options["extensions"] = [ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True,
        client_max_window_bits=10)]
# RSV1 of each data frame received: whether the server compressed it.
rsv1 = []
decode = PerMessageDeflate.decode
def recording(self, frame, **kwargs):
    if frame.opcode.name in ("TEXT", "BINARY"):
        rsv1.append(frame.rsv1)
    return decode(self, frame, **kwargs)
PerMessageDeflate.decode = recording
with connect(url, ssl=context, open_timeout=10, close_timeout=10, max_size=None,
             **options) as ws:
    print("extensions", [e.name for e in ws.protocol.extensions])
    if scenario == "echo":
        ws.send("hello wörld")
        print("text", ws.recv(timeout=10))
        ws.send(bytes([0, 1, 2, 255]))
        print("binary", ws.recv(timeout=10).hex())
        ws.send(["frag", "mented ", "tëxt"])
        print("fragmented", ws.recv(timeout=10))
        ws.send([b"\x01", b"\x02\x03"])
        print("fragmented", ws.recv(timeout=10).hex())
        print("pong", ws.ping(b"hb").wait(10))
        ws.close(code=4000, reason="bye")
        print("close", ws.close_code)
    elif scenario.startswith("deflate"):
        import random
        rng = random.Random(7)
        block = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(600))
        text, data = block * 8, block.encode() * 8
        sent = [text, text, data, "hi", text, data]
        for message in sent:
            ws.send(message)
        echoed = [ws.recv(timeout=10) for _ in sent]
        print("echoed", sum(a == b for a, b in zip(sent, echoed)), "of", len(sent))
        print("compressed", rsv1)
        ws.close()
        print("close", ws.close_code)
    elif scenario == "too-big":
        ws.send(b"x" * 2000)
        try:
            ws.recv(timeout=10)
            print("no close")
        except ConnectionClosed as e:
            print("closed", e.rcvd.code if e.rcvd else None)
"#;

fn python(url: &str, ca: &str, scenario: &str) -> Vec<String> {
    let out = example::run(Command::new("python3").args(["-c", CLIENT, url, ca, scenario]));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

const ECHOED: [&str; 7] = [
    "extensions []",
    "text hello wörld",
    "binary 000102ff",
    "fragmented fragmented tëxt",
    "fragmented 010203",
    "pong True",
    "close 4000",
];

#[test]
fn python_websockets_gets_its_messages_back() {
    if !have_websockets() {
        return;
    }
    let server = serve(&["--no-deflate"]);
    let url = format!("ws://{}/any/path", server.addr());
    // The client offers permessage-deflate; nothing is accepted back.
    assert_eq!(python(&url, "-", "echo"), ECHOED);
}

#[test]
fn python_websockets_over_tls() {
    if !have_websockets() {
        return;
    }
    let certs = Certs::new("ws_echo");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let server = serve(&[
        "--tls-cert",
        &s(&certs.server_cert),
        "--tls-key",
        &s(&certs.server_key),
    ]);
    let url = format!("wss://localhost:{}/", server.addr().port());
    // permessage-deflate is negotiated (the client's messages arrive compressed and
    // are inflated; the echoes go back compressed).
    let mut expected = ECHOED.to_vec();
    expected[0] = "extensions ['permessage-deflate']";
    assert_eq!(python(&url, &s(&certs.ca), "echo"), expected);
}

#[test]
fn python_websockets_gets_compressed_echoes_with_deflate() {
    if !have_websockets() {
        return;
    }
    let server = serve(&[]);
    let url = format!("ws://{}/", server.addr());
    // RSV1 on every echo but the 2-byte one, which deflate would not shrink.
    let compressed = "compressed [True, True, True, False, True, True]";
    // websockets' default offer: the context kept, 32 KiB windows.
    assert_eq!(
        python(&url, "-", "deflate"),
        [
            "extensions ['permessage-deflate']",
            "echoed 6 of 6",
            compressed,
            "close 1000"
        ]
    );
    // No context takeover asked of the server (and a 1 KiB window of the client).
    assert_eq!(
        python(&url, "-", "deflate-no-context"),
        [
            "extensions ['permessage-deflate']",
            "echoed 6 of 6",
            compressed,
            "close 1000"
        ]
    );
}

#[test]
fn python_websockets_sees_1009_past_max_message() {
    if !have_websockets() {
        return;
    }
    let server = serve(&["--max-message", "1000"]);
    let url = format!("ws://{}/", server.addr());
    // Compressed or not, the limit counts the message's inflated size.
    assert_eq!(
        python(&url, "-", "too-big"),
        ["extensions ['permessage-deflate']", "closed 1009"]
    );
}

// ----- raw clients -----

const REQUEST: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A socket upgraded to WebSocket.
fn upgraded(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(REQUEST.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    s
}

/// Reads frames until the server's close frame and then its end of the stream;
/// returns the close code (`None` for an empty close) and what came before it.
fn until_close(s: &mut TcpStream) -> (Option<u16>, Vec<String>) {
    let mut decoder = Decoder::new(Role::Client);
    let mut before = Vec::new();
    let mut buf = vec![0; 65536];
    loop {
        let n = s.read(&mut buf).expect("the server closes in time");
        assert!(n > 0, "EOF before a close frame; got {before:?}");
        let mut feed = decoder.feed(&buf[..n]);
        while let Some(event) = feed.next_event().expect("valid frames") {
            match event {
                Event::Close(frame) => {
                    let code = frame.map(|f| f.code.0);
                    drop(feed);
                    // Then the server ends the stream.
                    let rest = common::example::read_until_closed(s);
                    assert!(rest.is_empty(), "bytes after the close frame");
                    return (code, before);
                }
                other => before.push(format!("{other:?}")),
            }
        }
    }
}

fn client() -> Encoder {
    Encoder::new(Role::Client)
}

#[test]
fn a_close_is_answered_with_its_code() {
    let server = serve(&[]);
    let mut s = upgraded(server.addr());
    let mut wire = Vec::new();
    let mut c = client();
    c.text(&mut wire, "hi");
    c.close(&mut wire, CloseCode(3333), "x").unwrap();
    s.write_all(&wire).unwrap();
    assert_eq!(
        until_close(&mut s),
        (Some(3333), vec![r#"Text("hi")"#.to_owned()])
    );
}

#[test]
fn unmasked_frames_are_closed_1002() {
    let server = serve(&[]);
    let mut s = upgraded(server.addr());
    let mut wire = Vec::new();
    Encoder::new(Role::Server).text(&mut wire, "not masked");
    s.write_all(&wire).unwrap();
    assert_eq!(until_close(&mut s).0, Some(1002));
}

#[test]
fn invalid_utf8_split_across_fragments_is_closed_1007() {
    let server = serve(&[]);
    let mut s = upgraded(server.addr());
    let mut c = client();
    let mut first = Vec::new();
    c.start_fragmented(&mut first, MessageKind::Text, "fine €".as_bytes());
    // The lead byte of a 3-byte character ends the first fragment...
    c.continue_fragmented(&mut first, b"\xe2", false);
    s.write_all(&first).unwrap();
    // ...and the second fragment does not continue it, in a later packet.
    let mut second = Vec::new();
    c.continue_fragmented(&mut second, b"(", true);
    s.write_all(&second).unwrap();
    assert_eq!(until_close(&mut s).0, Some(1007));
}

#[test]
fn a_1_gib_message_is_closed_1009_from_its_header() {
    let server = serve(&[]);
    let mut s = upgraded(server.addr());
    // Only the header: the server must not wait for (or buffer) the payload.
    let header = client().header(true, Rsv::NONE, OpCode::Binary, 1 << 30);
    s.write_all(header.as_bytes()).unwrap();
    assert_eq!(until_close(&mut s).0, Some(1009));
    // Fragments that add up past --max-message too.
    let server = serve(&["--max-message", "100000"]);
    let mut s = upgraded(server.addr());
    let mut wire = Vec::new();
    let mut c = client();
    c.start_fragmented(&mut wire, MessageKind::Binary, &[0; 60_000]);
    c.continue_fragmented(&mut wire, &[0; 60_000], true);
    s.write_all(&wire).unwrap();
    assert_eq!(until_close(&mut s).0, Some(1009));
}

#[test]
fn a_request_that_is_not_an_upgrade_gets_426_or_400_or_431() {
    let server = serve(&[]);
    let ask = |request: &[u8]| {
        let mut s = connect(server.addr());
        s.write_all(request).unwrap();
        let head = read_head(&mut s);
        common::example::read_until_closed(&mut s);
        head
    };
    let head = ask(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    assert!(head.contains("\r\nUpgrade: websocket\r\n"));
    let head = ask(REQUEST.replace("Version: 13", "Version: 7").as_bytes());
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let mut big = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    big.resize(9000, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let head = ask(&big);
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
}

#[test]
fn a_slowloris_request_is_cut_off_at_the_handshake_timeout() {
    let server = serve(&["--handshake-timeout", "1"]);
    let mut s = connect(server.addr());
    // A request that never ends, a byte at a time: activity does not extend the
    // deadline, which counts from the connection's start.
    let mut writer = s.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let trickle = thread::spawn(move || {
        let mut bytes = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
            .iter()
            .copied();
        let deadline = Instant::now() + PROCESS_WATCHDOG;
        while Instant::now() < deadline && !stopped.load(Ordering::Relaxed) {
            let b = bytes.next().unwrap_or(b'a');
            if writer.write_all(&[b]).is_err() {
                return;
            }
            // Pacing, not synchronisation: the slowloris's rhythm.
            thread::sleep(Duration::from_millis(50));
        }
    });
    // The answer, then the server's end of the stream, while the bytes still trickle.
    let head = read_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{head}"
    );
    common::example::read_until_closed(&mut s);
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
}

/// How many file descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends `payload` as a binary message on `s` and reads its echo back.
fn echo_once(s: &mut TcpStream, payload: &[u8]) {
    let mut wire = Vec::new();
    client().binary(&mut wire, payload);
    s.write_all(&wire).unwrap();
    let mut decoder = Decoder::new(Role::Client);
    let mut buf = vec![0; 4096];
    loop {
        let n = s.read(&mut buf).expect("the echo comes in time");
        assert!(n > 0, "EOF instead of the echo");
        let mut feed = decoder.feed(&buf[..n]);
        if let Some(event) = feed.next_event().expect("valid frames") {
            assert_eq!(event, Event::Binary(payload));
            return;
        }
    }
}

/// Ten thousand connections upgrade and drop, 250 open at a time, some leaving half
/// a frame or a whole unread message behind. A member connected all along is served
/// between the batches; the server's memory after the last batch is no more than
/// after the first few (nothing is kept per dropped connection); and every
/// descriptor comes back.
#[test]
fn ten_thousand_connections_upgrade_and_drop_and_the_server_goes_on() {
    let server = serve(&[]);
    let pid = server.proc.id();
    // Before any connection: the listener and whatever the runtime keeps.
    let baseline = open_fds(pid);
    assert!(baseline > 0, "cannot read /proc/{pid}/fd");
    let mut member = upgraded(server.addr());
    let mut rss_early = 0;
    for batch in 0..40 {
        let mut open = Vec::new();
        for i in 0..250 {
            let mut s = upgraded(server.addr());
            let mut wire = Vec::new();
            client().text(&mut wire, "dropped");
            match (batch + i) % 3 {
                0 => s.write_all(&wire[..3]).unwrap(),
                1 => s.write_all(&wire).unwrap(),
                _ => {}
            }
            open.push(s);
        }
        drop(open);
        echo_once(&mut member, format!("batch {batch}").as_bytes());
        if batch == 3 {
            rss_early = rss_kib(pid);
        }
    }
    // Memory is bounded by the connections open at once, not by how many came and
    // went: a leak of 1 KiB per connection would add about 9 MiB past this point.
    let rss_late = rss_kib(pid);
    assert!(
        rss_late <= rss_early + 4096,
        "{rss_late} KiB resident after 10,000 connections, {rss_early} KiB after 1,000"
    );
    // Still serving, and it closes cleanly.
    let mut wire = Vec::new();
    let mut c = client();
    c.binary(&mut wire, b"still here");
    c.close(&mut wire, CloseCode::NORMAL, "").unwrap();
    member.write_all(&wire).unwrap();
    let (code, before) = until_close(&mut member);
    assert_eq!(code, Some(1000));
    assert_eq!(before.len(), 1);
    drop(member);
    // And every dropped connection is gone (a bounded wait: the server closes each
    // one as it sees its end).
    let deadline = Instant::now() + PROCESS_WATCHDOG;
    while open_fds(pid) > baseline {
        assert!(
            Instant::now() < deadline,
            "{} descriptors open, {baseline} at the start",
            open_fds(pid)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A deflate stream of `mib` MiB of zeros, as permessage-deflate sends a message
/// (raw deflate, sync flushed, the final `00 00 ff ff` removed): a few hundred bytes
/// per MiB. After the first MiB the deflater's output for each further MiB of zeros
/// is the same bytes (its window is all zeros either way), so those are repeated
/// rather than compressed again.
fn zeros_bomb(mib: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut deflater = Compress::new(Compression::default(), false);
    let chunk = |deflater: &mut Compress| {
        let mut out = Vec::with_capacity(64 * 1024);
        deflater
            .compress_vec(&zeros, &mut out, FlushCompress::Sync)
            .unwrap();
        assert_eq!(deflater.total_in() % (1 << 20), 0, "took the whole MiB");
        out
    };
    let mut wire = chunk(&mut deflater);
    let steady = chunk(&mut deflater);
    assert_eq!(
        chunk(&mut deflater),
        steady,
        "each further MiB deflates the same"
    );
    for _ in 1..mib {
        wire.extend_from_slice(&steady);
    }
    assert!(wire.ends_with(&[0, 0, 0xff, 0xff]));
    wire.truncate(wire.len() - 4);
    wire
}

/// A deflate bomb: a compressed message of 1 GiB of zeros (a few hundred KiB on the
/// wire) to a server whose limit is 16 MiB. It is closed with 1009 once the inflated
/// size passes the limit, its memory stays far below the bomb's size, and a member
/// connected meanwhile is served before and after.
#[test]
fn a_deflate_bomb_is_closed_1009_at_the_limit_and_memory_stays_bounded() {
    let server = serve(&[]);
    let pid = server.proc.id();
    let mut member = upgraded(server.addr());
    echo_once(&mut member, b"before");
    let rss_before = rss_kib(pid);
    let mut s = connect(server.addr());
    let request = REQUEST.replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    );
    s.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Extensions: permessage-deflate"),
        "{head}"
    );
    let bomb = zeros_bomb(1024);
    let mut wire = Vec::new();
    client()
        .frame(&mut wire, true, Rsv::RSV1, OpCode::Binary, &bomb)
        .unwrap();
    // The server may close before it has read it all.
    let _ = s.write_all(&wire);
    let (code, before) = until_close(&mut s);
    assert_eq!(code, Some(1009));
    assert!(before.is_empty(), "{before:?}");
    // 16 MiB inflated at most, never the 1 GiB.
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "the server grew by {grown} KiB");
    echo_once(&mut member, b"after");
}

/// A graceful stop (SIGTERM) ends every upgraded connection with a close frame,
/// 1001 "going away", after the echoes already due; the server exits 0.
#[test]
fn sigterm_closes_each_websocket_with_going_away() {
    let mut server = serve(&[]);
    let mut members: Vec<TcpStream> = (0..3).map(|_| upgraded(server.addr())).collect();
    for (i, s) in members.iter_mut().enumerate() {
        echo_once(s, format!("before the stop {i}").as_bytes());
    }
    server.signal("TERM");
    for s in &mut members {
        let (code, before) = until_close(s);
        assert_eq!(code, Some(1001));
        assert!(before.is_empty(), "{before:?}");
    }
    drop(members);
    assert_eq!(server.wait().code(), Some(0));
}

// ----- the command line -----

#[test]
fn flags_that_cannot_work_are_refused_and_help_lists_them() {
    for (args, flag) in [
        (&["--max-message", "0"][..], "--max-message"),
        (&["--max-message", "16MiB"], "--max-message"),
        (&["--handshake-timeout", "0"], "--handshake-timeout"),
        (&["--handshake-timeout", "soon"], "--handshake-timeout"),
        (&["--listen", "nonsense"], "--listen"),
        (&["--no-deflate=yes"], "--no-deflate"),
        (&["--tls-cert", "cert.pem"], "--tls-cert"),
    ] {
        let out = example::run_example("ws_echo", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("ws_echo: ") && stderr.contains(flag),
            "{args:?}: {stderr}"
        );
    }
    let out = example::run_example("ws_echo", &["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--no-deflate",
        "--max-message",
        "--handshake-timeout",
        "--tls-cert",
        "--tls-key",
        "--help",
    ] {
        assert!(help.contains(flag), "{flag} missing from {help}");
    }
}
