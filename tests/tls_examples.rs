//! The examples with TLS (EXAMPLES.md, "TLS on the TCP examples"), driven from outside
//! as real processes, by clients written by others: `openssl s_client`, Python's `ssl`
//! module, `redis-cli --tls`, rustls's blocking `StreamOwned`, and `chat_client --tls`.
//!
//! Certificates are made for each test by tests/common/tls.rs. A test that needs
//! `openssl`, `python3` or `redis-cli` says `skipped: TOOL not found` and passes where
//! the tool is missing (CI installs them). Every wait is bounded by a watchdog: a
//! client socket's read timeout, or the example helpers' process watchdog.

mod common;

use std::cell::RefCell;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::rc::Rc;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use common::example::{self, next_line, run_example, Listening, Proc, PROCESS_WATCHDOG};
use common::tls::Certs;
use common::CLIENT_TIMEOUT;
use sha2::{Digest, Sha256};
use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::tls::rustls::{self, pki_types::ServerName};
use twistor::tls::{TlsAcceptor, TlsConnector};
use twistor::{Addr, Context, Protocol, Reactor, Reason};

// ----- helpers -----

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Whether `tool` runs (`tool ARG` exits 0); if not, says the test is skipped.
fn have(tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !ok {
        eprintln!("skipped: {tool} not found");
    }
    ok
}

/// Example `name` on a free port with the test server certificate and `extra` flags.
fn serve_tls(name: &str, certs: &Certs, extra: &[&str]) -> Listening {
    let mut args = vec![
        "--tls-cert",
        s(&certs.server_cert),
        "--tls-key",
        s(&certs.server_key),
    ];
    args.extend_from_slice(extra);
    example::serve(name, "127.0.0.1:0", &args)
}

/// A rustls client (blocking, reads bounded by [`CLIENT_TIMEOUT`]) trusting the test CA.
fn rustls_client(
    addr: SocketAddr,
    certs: &Certs,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = TlsConnector::from_ca_pem(&certs.ca)
        .unwrap()
        .config()
        .clone();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Sends `line` to an echo server over TLS (rustls) and returns the reply line.
fn rustls_echo(addr: SocketAddr, certs: &Certs, line: &str) -> String {
    let mut c = rustls_client(addr, certs);
    c.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while reply.last() != Some(&b'\n') {
        match c.read(&mut byte) {
            Ok(1) => reply.push(byte[0]),
            other => panic!("echo over TLS: {other:?} after {reply:?}"),
        }
    }
    String::from_utf8(reply).unwrap()
}

/// A client of ours for one exchange: what Python's `ssl` does in these tests.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys

def connect(port, ca, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    # A TCP close without close_notify raises SSLEOFError instead of reading b"".
    return ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)

PENDING = {}

def read_line(t):
    # One line at a time: a read may bring several (a banner and a reply together).
    buf = PENDING.get(id(t), b"")
    while b"\n" not in buf:
        chunk = t.recv(4096)
        if not chunk:
            raise EOFError("end of stream after %r" % buf)
        buf += chunk
    line, _, PENDING[id(t)] = buf.partition(b"\n")
    return line.decode().rstrip("\r")

mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
args = sys.argv[4:]

if mode == "echo-unwrap":
    # We close first: unwrap() sends our close_notify and waits for the server's.
    t = connect(port, ca)
    t.sendall(b"hello python\n")
    print(read_line(t))
    raw = t.unwrap()
    print("unwrapped")
    print("tcp eof" if raw.recv(1) == b"" else "more data")
elif mode == "server-closes":
    # The server closes first: args[0] is the request that makes it, args[1] its last
    # reply. The read after that ends cleanly only if close_notify came before the TCP
    # close.
    t = connect(port, ca)
    t.sendall(args[0].encode() + b"\r\n")
    while True:
        line = read_line(t)
        if line == args[1]:
            break
    print(line)
    try:
        print("clean eof" if t.recv(1) == b"" else "more data")
    except ssl.SSLEOFError:
        print("ragged eof")
elif mode == "mutual":
    cert, key = (args[0], args[1]) if args else (None, None)
    try:
        t = connect(port, ca, cert, key)
        t.sendall(b"hello mtls\n")
        print(read_line(t))
    except (ssl.SSLError, OSError, EOFError) as e:
        print("refused", type(e).__name__)
elif mode == "upload":
    name, size = args[0], int(args[1])
    data = bytes((i * 7) % 251 for i in range(size))
    t = connect(port, ca)
    t.sendall(("%s|%d\n" % (name, size)).encode() + data)
    print(read_line(t))
    t.unwrap()
    print("unwrapped")
else:
    sys.exit("unknown mode " + mode)
"#;

/// Runs the Python client in `mode` against `port`, and returns its stdout lines.
fn python(certs: &Certs, mode: &str, port: u16, args: &[&str]) -> Vec<String> {
    let script = certs.dir.path("client.py");
    fs::write(&script, PYTHON_CLIENT).unwrap();
    let out = example::run(
        Command::new("python3")
            .arg(&script)
            .args([mode, &port.to_string(), s(&certs.ca)])
            .args(args),
    );
    lines(&out, "python3")
}

fn lines(out: &Output, what: &str) -> Vec<String> {
    assert!(
        out.status.success(),
        "{what} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits for the line `want` among `lines`, skipping others; fails after the watchdog.
fn wait_for(lines: &Receiver<String>, want: &str) {
    let deadline = Instant::now() + PROCESS_WATCHDOG;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let line = next_line(lines);
        if line == want {
            return;
        }
        seen.push(line);
    }
    panic!("no line {want:?}; saw {seen:?}");
}

/// Reads until the peer closes or the read times out (the watchdog): true if it closed.
fn closed_before_watchdog(sock: &mut TcpStream) -> bool {
    sock.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // a TLS alert, perhaps
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

// ----- openssl s_client -----

/// `openssl s_client VERSION` sends a line to echo and gets it back upper-cased.
fn s_client_echo(version: &str) {
    if !have("openssl", "version") {
        return;
    }
    let certs = Certs::new("s-client");
    let server = serve_tls("echo", &certs, &[]);
    let mut client = Proc::spawn(
        Command::new("openssl")
            .args(["s_client", "-connect", &server.announced, version])
            .args(["-CAfile", s(&certs.ca), "-verify_return_error", "-quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let out = client.stdout_lines();
    let stdin = client.child().stdin.as_mut().unwrap();
    stdin.write_all(b"hello openssl\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(next_line(&out), "HELLO OPENSSL");
}

#[test]
fn openssl_s_client_tls12_gets_its_line_upper_cased() {
    s_client_echo("-tls1_2");
}

#[test]
fn openssl_s_client_tls13_gets_its_line_upper_cased() {
    s_client_echo("-tls1_3");
}

// ----- Python's ssl: close_notify both ways -----

#[test]
fn python_unwraps_first_and_the_server_answers_close_notify() {
    if !have("python3", "--version") {
        return;
    }
    let certs = Certs::new("py-unwrap");
    let server = serve_tls("echo", &certs, &[]);
    let got = python(&certs, "echo-unwrap", server.addr().port(), &[]);
    assert_eq!(got, ["HELLO PYTHON", "unwrapped", "tcp eof"]);
}

#[test]
fn kv_quit_sends_close_notify_before_closing() {
    if !have("python3", "--version") {
        return;
    }
    let certs = Certs::new("py-quit");
    let server = serve_tls("kv", &certs, &[]);
    let got = python(
        &certs,
        "server-closes",
        server.addr().port(),
        &["QUIT", "+OK"],
    );
    assert_eq!(got, ["+OK", "clean eof"]);
}

#[test]
fn chat_quit_sends_close_notify_before_closing() {
    if !have("python3", "--version") {
        return;
    }
    let certs = Certs::new("py-chat-quit");
    let server = serve_tls("chat", &certs, &[]);
    let args = ["/quit", "* bye"];
    let got = python(&certs, "server-closes", server.addr().port(), &args);
    assert_eq!(got, ["* bye", "clean eof"]);
}

// ----- redis-cli --tls -----

#[test]
fn redis_cli_over_tls() {
    if !have("redis-cli", "--version") {
        return;
    }
    let certs = Certs::new("redis-cli");
    let server = serve_tls("kv", &certs, &[]);
    let port = server.addr().port().to_string();
    let cli = |args: &[&str]| -> String {
        let out = example::run(
            Command::new("redis-cli")
                .args(["--tls", "--cacert", s(&certs.ca)])
                .args(["-h", "127.0.0.1", "-p", &port])
                .args(args),
        );
        lines(&out, "redis-cli").join("\n")
    };
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["SET", "secret", "over tls"]), "OK");
    assert_eq!(cli(&["GET", "secret"]), "over tls");
}

// ----- mutual TLS -----

#[test]
fn mutual_tls_accepts_the_cas_clients_only() {
    if !have("python3", "--version") {
        return;
    }
    let certs = Certs::new("mtls");
    let server = serve_tls("echo", &certs, &["--tls-client-ca", s(&certs.ca)]);
    let port = server.addr().port();
    let signed = [s(&certs.client_cert), s(&certs.client_key)];
    assert_eq!(python(&certs, "mutual", port, &signed), ["HELLO MTLS"]);
    let none = python(&certs, "mutual", port, &[]);
    assert_eq!(none.len(), 1, "{none:?}");
    assert!(none[0].starts_with("refused "), "no certificate: {none:?}");
    let other = [s(&certs.other_client_cert), s(&certs.other_client_key)];
    let other = python(&certs, "mutual", port, &other);
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(other[0].starts_with("refused "), "another CA: {other:?}");
    // The refusals did not disturb the server.
    assert_eq!(python(&certs, "mutual", port, &signed), ["HELLO MTLS"]);
}

// ----- chat and upload over TLS -----

/// A `chat_client --tls` with its stdin and stdout piped.
struct ChatClient {
    proc: Proc,
    out: Receiver<String>,
}

impl ChatClient {
    /// Connects to `addr` and verifies the server for the host in `addr`, or for
    /// `extra`'s `--tls-server-name`.
    fn start(addr: &str, certs: &Certs, extra: &[&str]) -> ChatClient {
        let mut proc = Proc::spawn(
            example::command("chat_client")
                .args(["--connect", addr, "--tls", "--tls-ca", s(&certs.ca)])
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let out = proc.stdout_lines();
        ChatClient { proc, out }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.proc.child().stdin.as_mut().expect("piped stdin");
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
}

#[test]
fn two_chat_clients_talk_over_tls() {
    let certs = Certs::new("chat");
    let server = serve_tls("chat", &certs, &[]);
    // Verified by name (`localhost` might resolve to ::1, where nobody listens).
    let addr = &server.announced;
    let name = ["--tls-server-name", "localhost"];
    let mut alice = ChatClient::start(addr, &certs, &name);
    assert!(next_line(&alice.out).starts_with("* welcome "));
    alice.say("/nick alice");
    wait_for(&alice.out, "* guest1 is now alice");
    let mut bob = ChatClient::start(addr, &certs, &name);
    assert!(next_line(&bob.out).starts_with("* welcome "));
    bob.say("/nick bob");
    wait_for(&bob.out, "* guest2 is now bob");
    wait_for(&alice.out, "* guest2 is now bob");
    bob.say("hello alice");
    wait_for(&alice.out, "<bob> hello alice");
    alice.say("hi bob");
    wait_for(&bob.out, "<alice> hi bob");
    // /quit: the server says goodbye and closes with close_notify; bob exits 0.
    bob.say("/quit");
    wait_for(&bob.out, "* bye");
    let status = bob.proc.wait();
    assert!(status.success(), "chat_client after /quit: {status}");
    wait_for(&alice.out, "* bob disconnected");
    // The end of alice's input: close_notify out, the server's back, exit 0.
    drop(alice.proc.child().stdin.take());
    let status = alice.proc.wait();
    assert!(
        status.success(),
        "chat_client at the end of stdin: {status}"
    );
}

/// Input that ends at once (a script piped in): what it had goes out after the
/// handshake, then the half-close; the server answers and closes; exit 0.
#[test]
fn chat_client_sends_piped_input_over_tls() {
    let certs = Certs::new("chat-piped");
    let server = serve_tls("chat", &certs, &[]);
    // Verified for 127.0.0.1, the host in --connect (the certificate names it).
    let mut client = ChatClient::start(&server.announced, &certs, &[]);
    client.say("/nick piper");
    client.say("/who");
    drop(client.proc.child().stdin.take());
    assert!(next_line(&client.out).starts_with("* welcome "));
    assert_eq!(next_line(&client.out), "* guest1 is now piper");
    assert_eq!(next_line(&client.out), "* in lobby: piper");
    let status = client.proc.wait();
    assert!(status.success(), "chat_client: {status}");
}

#[test]
fn chat_client_refuses_a_server_it_cannot_verify() {
    let certs = Certs::new("chat-untrusted");
    let server = serve_tls("chat", &certs, &[]);
    let out = example::run(example::command("chat_client").args([
        "--connect",
        &server.announced,
        "--tls",
        "--tls-ca",
        s(&certs.other_ca),
    ]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TLS"), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // The right CA, but a name the certificate does not carry.
    let out = example::run(example::command("chat_client").args([
        "--connect",
        &server.announced,
        "--tls",
        "--tls-ca",
        s(&certs.ca),
        "--tls-server-name",
        "elsewhere.test",
    ]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn upload_over_tls_arrives_intact() {
    if !have("python3", "--version") {
        return;
    }
    let certs = Certs::new("upload");
    let dir = certs.dir.path("files");
    let server = serve_tls("upload", &certs, &["--dir", s(&dir)]);
    let size = 300_000;
    let data: Vec<u8> = (0..size).map(|i| ((i * 7) % 251) as u8).collect();
    let sha: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let got = python(
        &certs,
        "upload",
        server.addr().port(),
        &["data.bin", &size.to_string()],
    );
    assert_eq!(got, [format!("ok {size} {sha}"), "unwrapped".to_owned()]);
    assert!(fs::read(dir.join("data.bin")).unwrap() == data, "content");
}

// ----- what is not TLS, or not in time -----

#[test]
fn a_plaintext_client_is_closed_at_once_and_others_go_on() {
    let certs = Certs::new("plaintext");
    // A handshake timeout far past the client's watchdog: the close must come from
    // the bytes not being TLS, not from the timeout.
    let server = serve_tls("echo", &certs, &["--tls-handshake-timeout", "3600"]);
    let mut plain = TcpStream::connect(server.addr()).unwrap();
    plain.write_all(b"hello\n").unwrap();
    assert!(
        closed_before_watchdog(&mut plain),
        "a plaintext client was not closed"
    );
    assert_eq!(
        rustls_echo(server.addr(), &certs, "still here"),
        "STILL HERE\n"
    );
}

#[test]
fn a_silent_client_is_closed_at_the_handshake_timeout() {
    let certs = Certs::new("silent");
    let server = serve_tls("echo", &certs, &["--tls-handshake-timeout", "1"]);
    let mut silent = TcpStream::connect(server.addr()).unwrap();
    // Others are served meanwhile.
    assert_eq!(
        rustls_echo(server.addr(), &certs, "meanwhile"),
        "MEANWHILE\n"
    );
    assert!(
        closed_before_watchdog(&mut silent),
        "a client that never started its handshake was not closed"
    );
}

#[test]
fn echo_with_threads_speaks_tls_on_every_reactor() {
    let certs = Certs::new("threads");
    let server = serve_tls("echo", &certs, &["--threads", "2"]);
    // Connections from several ports: the kernel spreads them over both listeners.
    for i in 0..8 {
        let line = format!("hello {i}");
        assert_eq!(
            rustls_echo(server.addr(), &certs, &line),
            format!("HELLO {i}\n")
        );
    }
    // And nothing answers in plaintext on any of them.
    for _ in 0..4 {
        let mut plain = TcpStream::connect(server.addr()).unwrap();
        plain.write_all(b"hello\n").unwrap();
        assert!(closed_before_watchdog(&mut plain));
    }
}

// ----- bad command lines and files -----

/// Runs `name` with `args`; checks the exit status and that stderr is one line
/// containing each of `needles`.
fn refused(name: &str, args: &[&str], code: i32, needles: &[&str]) {
    let out = run_example(name, &[&["--listen", "127.0.0.1:0"], args].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{name} {args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{name} {args:?}: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{name} {args:?}: {stderr}");
    }
    assert!(
        out.stdout.is_empty(),
        "{name} {args:?} printed {:?}",
        out.stdout
    );
}

#[test]
fn a_missing_certificate_file_exits_1_naming_flag_and_file() {
    let certs = Certs::new("missing");
    let missing = certs.dir.path("no-such-cert.pem");
    for name in ["echo", "chat", "kv", "upload"] {
        let args = ["--tls-cert", s(&missing), "--tls-key", s(&certs.server_key)];
        refused(name, &args, 1, &["--tls-cert", s(&missing)]);
    }
    let missing_key = certs.dir.path("no-such-key.pem");
    let args = [
        "--tls-cert",
        s(&certs.server_cert),
        "--tls-key",
        s(&missing_key),
    ];
    refused("echo", &args, 1, &["--tls-key", s(&missing_key)]);
    let missing_ca = certs.dir.path("no-such-ca.pem");
    let args = [
        "--tls-cert",
        s(&certs.server_cert),
        "--tls-key",
        s(&certs.server_key),
        "--tls-client-ca",
        s(&missing_ca),
    ];
    refused("echo", &args, 1, &["--tls-client-ca", s(&missing_ca)]);
}

#[test]
fn a_key_that_does_not_match_the_certificate_exits_1() {
    let certs = Certs::new("mismatch");
    let args = [
        "--tls-cert",
        s(&certs.server_cert),
        "--tls-key",
        s(&certs.client_key),
    ];
    for name in ["echo", "kv"] {
        refused(name, &args, 1, &["--tls-key", s(&certs.client_key)]);
    }
    // Files swapped: the certificate file holds no certificate.
    let args = [
        "--tls-cert",
        s(&certs.server_key),
        "--tls-key",
        s(&certs.server_cert),
    ];
    refused("echo", &args, 1, &["--tls-cert", s(&certs.server_key)]);
}

#[test]
fn half_the_tls_flags_is_a_usage_error() {
    let certs = Certs::new("usage");
    let cert = s(&certs.server_cert);
    let key = s(&certs.server_key);
    refused("echo", &["--tls-cert", cert], 2, &["--tls-cert"]);
    refused("chat", &["--tls-key", key], 2, &["--tls-key"]);
    refused(
        "kv",
        &["--tls-client-ca", s(&certs.ca)],
        2,
        &["--tls-client-ca"],
    );
    let zero = [
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--tls-handshake-timeout",
        "0",
    ];
    refused("upload", &zero, 2, &["--tls-handshake-timeout"]);
    // chat_client: --tls needs its CA.
    let out = run_example("chat_client", &["--tls"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn help_shows_the_tls_flags() {
    for name in ["echo", "chat", "kv", "upload"] {
        let out = run_example(name, &["--help"]);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in [
            "--tls-cert PEM",
            "--tls-key PEM",
            "--tls-client-ca PEM",
            "--tls-handshake-timeout SECS",
        ] {
            assert!(help.contains(flag), "{name} --help lacks {flag}:\n{help}");
        }
    }
    let out = run_example("chat_client", &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--tls ", "--tls-ca PEM", "--tls-server-name NAME"] {
        assert!(
            help.contains(flag),
            "chat_client --help lacks {flag}:\n{help}"
        );
    }
}

// ----- a half-close during the handshake -----

/// A client that writes a line and half-closes in `connection_made`, before its TLS
/// handshake is done; it keeps what comes back and how it ended.
struct HalfCloser {
    got: Rc<RefCell<Vec<u8>>>,
    end: Rc<RefCell<Option<String>>>,
}

impl Protocol for HalfCloser {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        cx.write(b"hello\r\n");
        cx.lose_write_connection();
    }

    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        *self.end.borrow_mut() = Some(reason.to_string());
    }

    fn connection_failed(&mut self, _: &mut Context<'_>, error: io::Error) {
        *self.end.borrow_mut() = Some(format!("failed: {error}"));
    }
}

/// On plaintext, a write followed by `lose_write_connection` sends the bytes, then
/// FIN. On TLS, before the handshake is done, both wait for it: the line goes out
/// after the handshake, then `close_notify`, then FIN (this once dropped the line and
/// sent `close_notify` in the middle of the handshake).
#[test]
fn half_close_during_the_handshake_keeps_what_was_written() {
    let certs = Certs::new("half-close");
    let tls = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let connector = TlsConnector::from_ca_pem(&certs.ca).unwrap();
    let mut r = Reactor::new().unwrap();
    let addr = r
        .listen_tls(common::localhost(), &tls, |_: &Addr| {
            Some(LineReceiver::new(Shout))
        })
        .unwrap()
        .local_addr;
    let got = Rc::new(RefCell::new(Vec::new()));
    let end = Rc::new(RefCell::new(None));
    let client = HalfCloser {
        got: Rc::clone(&got),
        end: Rc::clone(&end),
    };
    r.connect_tls(addr, &connector, "localhost", client);
    common::run_until(&mut r, |_| end.borrow().is_some());
    assert_eq!(&*got.borrow(), b"HELLO\r\n", "ended: {:?}", end.borrow());
    assert_eq!(
        end.borrow().as_deref(),
        Some(Reason::Done.to_string().as_str())
    );
}

/// The line echo: each line back upper-cased.
struct Shout;

impl LineHandler for Shout {
    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        cx.send_line(&line.to_ascii_uppercase());
    }
}
