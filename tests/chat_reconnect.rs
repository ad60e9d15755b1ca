//! `chat_client` against a chat server that goes away and comes back, as processes:
//! `--reconnect` restores the nick and the room, delivers the lines typed meanwhile
//! in order, drops the 101st with a notice; without it the client ends with
//! `* connection closed`. `--connect` takes a host name (`localhost:PORT`).
//!
//! Every wait is bounded by the watchdogs of `common::example` and the sockets'
//! timeouts. The one ordering the test needs (a peer in the room before the client
//! comes back) is made with SIGSTOP/SIGCONT on the client, not with a delay.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use common::example::{command, next_line, serve, Listening, Proc, PROCESS_WATCHDOG};
use common::CLIENT_TIMEOUT;

/// A raw TCP member of the chat, as `nc` would be.
struct Peer {
    out: TcpStream,
    lines: BufReader<TcpStream>,
}

impl Peer {
    fn join(addr: SocketAddr) -> Peer {
        let out = TcpStream::connect(addr).expect("connect to chat");
        out.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let lines = BufReader::new(out.try_clone().unwrap());
        let mut peer = Peer { out, lines };
        let welcome = peer.line();
        assert!(welcome.starts_with("* welcome "), "{welcome:?}");
        peer
    }

    fn send(&mut self, line: &str) {
        self.out.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.lines.read_line(&mut line).expect("a line from chat");
        line.trim_end_matches('\n').to_owned()
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want);
    }
}

/// A running `chat_client`: its stdin, and its stdout line by line.
struct Client {
    proc: Proc,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
}

impl Client {
    fn start(args: &[&str]) -> Client {
        let mut proc = Proc::spawn(
            command("chat_client")
                .env("RUST_LOG", "warn")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let stdin = proc.child().stdin.take();
        let stdout = proc.stdout_lines();
        Client {
            proc,
            stdin,
            stdout,
        }
    }

    fn type_in(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn printed(&self) -> String {
        next_line(&self.stdout)
    }

    /// The next line that is not a `* connection refused, reconnecting in` notice
    /// (a retry may print any number of them, depending on timing).
    fn printed_past_retries(&self) -> String {
        let deadline = Instant::now() + PROCESS_WATCHDOG;
        loop {
            assert!(
                Instant::now() < deadline,
                "only retry notices until the watchdog"
            );
            let line = self.printed();
            if !line.starts_with("* connection refused, reconnecting in ") {
                return line;
            }
            assert_retry_notice(&line, "refused");
        }
    }

    /// The welcome line, and the guest nick in it.
    fn welcome(&self) -> String {
        let line = self.printed_past_retries();
        let rest = line
            .strip_prefix("* welcome ")
            .unwrap_or_else(|| panic!("not a welcome: {line:?}"));
        let (nick, _) = rest.split_once(", you are in ").expect("welcome's room");
        nick.to_owned()
    }
}

/// `* connection WHAT, reconnecting in N.Ns`, with N.N a number of seconds.
fn assert_retry_notice(line: &str, what: &str) {
    let prefix = format!("* connection {what}, reconnecting in ");
    let secs = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix('s'))
        .unwrap_or_else(|| panic!("not a {what} notice: {line:?}"));
    assert!(
        secs.parse::<f64>().is_ok() && secs.split_once('.').is_some_and(|(_, d)| d.len() == 1),
        "{line:?}"
    );
}

fn chat(listen: &str) -> Listening {
    serve("chat", listen, &[])
}

#[test]
fn reconnect_restores_nick_and_room_and_delivers_held_lines_in_order() {
    let mut server = chat("127.0.0.1:0");
    let addr = server.addr();
    let connect = format!("localhost:{}", addr.port());
    let mut client = Client::start(&[
        "--connect",
        &connect,
        "--reconnect",
        "--reconnect-initial-ms",
        "50",
        "--reconnect-max-ms",
        "200",
    ]);
    let guest = client.welcome();
    client.type_in("/nick alice\n");
    assert_eq!(client.printed(), format!("* {guest} is now alice"));
    client.type_in("/join kitchen\n");
    assert_eq!(client.printed(), "* alice joined kitchen");

    // The server goes away.
    server.signal("TERM");
    assert!(server.wait().success());
    assert_retry_notice(&client.printed(), "lost");

    // 101 lines while disconnected: 100 held, the last dropped with a notice.
    let typed: String = (1..=101).map(|i| format!("held {i}\n")).collect();
    client.type_in(&typed);
    assert_eq!(
        client.printed_past_retries(),
        "* not connected, line dropped"
    );

    // The server comes back on the same port; a member waits in the kitchen before
    // the client may reconnect (it is stopped meanwhile).
    client.proc.signal("STOP");
    let server = chat(&addr.to_string());
    assert_eq!(server.addr(), addr);
    let mut peer = Peer::join(addr);
    peer.send("/join kitchen");
    let me = peer.line();
    assert!(me.ends_with(" joined kitchen"), "{me:?}");
    client.proc.signal("CONT");

    peer.expect("* alice joined kitchen");
    for i in 1..=100 {
        peer.expect(&format!("<alice> held {i}"));
    }
    client.type_in("after\n");
    peer.expect("<alice> after");

    // What the client printed meanwhile: the notice, then the server's answers to
    // the restoring commands.
    assert_eq!(client.printed_past_retries(), "* reconnected");
    let guest = client.welcome();
    assert_eq!(client.printed(), format!("* {guest} is now alice"));
    assert_eq!(client.printed(), "* alice joined kitchen");

    // At the end of its input the client closes and exits 0, without reconnecting.
    drop(client.stdin.take());
    peer.expect("* alice disconnected");
    assert!(client.proc.wait().success(), "exit status 0");
}

#[test]
fn without_reconnect_a_lost_connection_ends_the_client_with_a_notice() {
    let mut server = chat("127.0.0.1:0");
    let connect = format!("localhost:{}", server.addr().port());
    let mut client = Client::start(&["--connect", &connect]);
    let guest = client.welcome();
    client.type_in("/who\n");
    assert_eq!(client.printed(), format!("* in lobby: {guest}"));
    server.signal("TERM");
    assert!(server.wait().success());
    assert_eq!(client.printed(), "* connection closed");
    assert!(client.proc.wait().success(), "exit status 0");
}

#[test]
fn a_host_name_that_does_not_resolve_is_refused_and_retried() {
    let mut client = Client::start(&[
        "--connect",
        "no-such-host.invalid:8000",
        "--reconnect",
        "--reconnect-initial-ms",
        "10",
        "--reconnect-max-ms",
        "20",
    ]);
    assert_retry_notice(&client.printed(), "refused");
    assert_retry_notice(&client.printed(), "refused");
    drop(client.stdin.take());
    client.proc.signal("TERM");
    assert!(client.proc.wait().success(), "exit status 0 on SIGTERM");
}

#[test]
fn reconnect_flags_that_cannot_work_are_refused() {
    for args in [
        &["--reconnect-initial-ms", "10"][..],
        &["--reconnect", "--reconnect-initial-ms", "soon"],
        &[
            "--reconnect",
            "--reconnect-initial-ms",
            "500",
            "--reconnect-max-ms",
            "100",
        ],
        &["--connect", "localhost"],
        &["--connect", "localhost:port"],
    ] {
        let out = common::example::run(command("chat_client").args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

// ----- with TLS -----

#[cfg(feature = "tls")]
fn chat_tls(listen: &str, certs: &common::tls::Certs) -> Listening {
    let (cert, key) = (certs.server_cert.to_str(), certs.server_key.to_str());
    serve(
        "chat",
        listen,
        &["--tls-cert", cert.unwrap(), "--tls-key", key.unwrap()],
    )
}

/// `--reconnect --tls`: a TLS chat server killed and restarted on the same port gets
/// the client back, with its nick and room restored over the new handshake, and the
/// line typed meanwhile sent after them. `localhost` is resolved at each connect, and
/// is the name the certificate is verified for.
#[cfg(feature = "tls")]
#[test]
fn reconnect_over_tls_restores_nick_and_room() {
    let certs = common::tls::Certs::new("chat-reconnect-tls");
    let mut server = chat_tls("127.0.0.1:0", &certs);
    let addr = server.addr();
    let connect = format!("localhost:{}", addr.port());
    let mut client = Client::start(&[
        "--connect",
        &connect,
        "--reconnect",
        "--reconnect-initial-ms",
        "50",
        "--reconnect-max-ms",
        "200",
        "--tls",
        "--tls-ca",
        certs.ca.to_str().unwrap(),
    ]);
    let guest = client.welcome();
    client.type_in("/nick alice\n");
    assert_eq!(client.printed(), format!("* {guest} is now alice"));
    client.type_in("/join kitchen\n");
    assert_eq!(client.printed(), "* alice joined kitchen");

    // The server goes away; a line typed meanwhile is held.
    server.signal("TERM");
    assert!(server.wait().success());
    assert_retry_notice(&client.printed(), "lost");
    client.type_in("/who\n");

    // It comes back on the same port, with TLS.
    let server = chat_tls(&addr.to_string(), &certs);
    assert_eq!(server.addr(), addr);
    assert_eq!(client.printed_past_retries(), "* reconnected");
    let guest = client.welcome();
    assert_eq!(client.printed(), format!("* {guest} is now alice"));
    assert_eq!(client.printed(), "* alice joined kitchen");
    assert_eq!(client.printed(), "* in kitchen: alice");

    drop(client.stdin.take());
    assert!(client.proc.wait().success(), "exit status 0");
}

/// `--reconnect --tls` against a server it cannot verify (its certificate is for
/// another name): each handshake that fails is a refused connect, retried with
/// backoff, and the reason is logged on stderr.
#[cfg(feature = "tls")]
#[test]
fn reconnect_over_tls_retries_a_server_it_cannot_verify() {
    let certs = common::tls::Certs::new("chat-reconnect-tls-name");
    let server = chat_tls("127.0.0.1:0", &certs);
    let mut proc = Proc::spawn(
        command("chat_client")
            .env("RUST_LOG", "warn")
            .args(["--connect", &server.announced, "--reconnect"])
            .args(["--reconnect-initial-ms", "10", "--reconnect-max-ms", "20"])
            .args(["--tls", "--tls-ca", certs.ca.to_str().unwrap()])
            .args(["--tls-server-name", "elsewhere.test"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = proc.stdout_lines();
    let stderr = common::example::lines_of(proc.child().stderr.take().unwrap());
    assert_retry_notice(&next_line(&stdout), "refused");
    assert_retry_notice(&next_line(&stdout), "refused");
    let log = next_line(&stderr);
    assert!(
        log.contains("connect failed: TLS error: ") && log.contains("certificate"),
        "{log:?}"
    );
    proc.signal("TERM");
    assert!(proc.wait().success(), "exit status 0 on SIGTERM");
}
