//! TLS through the connection core, under the testing kit: no sockets, the manual clock.
//! Either both ends run through the core (`add_tls_client` + `link`), or the test plays
//! the client with a rustls `ClientConnection` of its own and moves the bytes by hand,
//! so that it can hold them back, cut them short or replace them.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::tls::Certs;
use twistor::testing::{Harness, HarnessBuilder};
use twistor::tls::rustls::{self, pki_types::ServerName};
use twistor::tls::{TlsAcceptor, TlsConnector, TlsVersion};
use twistor::{Context, Protocol, Reason};

/// Records what it gets; optionally writes a banner in `connection_made`, closes
/// there, or upper-cases what comes.
#[derive(Default)]
struct Server {
    banner: Option<&'static [u8]>,
    close_at_once: bool,
    echo: bool,
    got: Vec<u8>,
    reads: usize,
    eof: bool,
    paused: usize,
    resumed: usize,
    pause_reading_after: Option<usize>,
    made_handshaking: Option<bool>,
    info_on_data: Option<twistor::tls::TlsInfo>,
}

impl Protocol for Server {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.made_handshaking = cx.tls().map(|t| t.handshaking);
        if let Some(b) = self.banner {
            cx.write(b);
        }
        if self.close_at_once {
            cx.lose_connection();
        }
    }
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        self.reads += 1;
        self.got.extend_from_slice(data);
        if self.info_on_data.is_none() {
            self.info_on_data = cx.tls();
        }
        if self.echo {
            cx.write(&data.to_ascii_uppercase());
        }
        if self
            .pause_reading_after
            .is_some_and(|n| self.got.len() >= n)
        {
            cx.pause_reading();
        }
    }
    fn read_eof(&mut self, cx: &mut Context<'_>) {
        self.eof = true;
        cx.lose_connection();
    }
    fn pause_producing(&mut self, _: &mut Context<'_>) {
        self.paused += 1;
    }
    fn resume_producing(&mut self, _: &mut Context<'_>) {
        self.resumed += 1;
    }
}

#[derive(Default)]
struct Client {
    send: Vec<u8>,
    got: Vec<u8>,
    lost: Option<String>,
    eof: bool,
}

impl Protocol for Client {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        if !self.send.is_empty() {
            cx.write(&self.send);
        }
    }
    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
    }
    fn read_eof(&mut self, cx: &mut Context<'_>) {
        self.eof = true;
        cx.lose_connection();
    }
    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        self.lost = Some(format!("{reason:?}"));
    }
}

fn acceptor(certs: &Certs) -> TlsAcceptor {
    TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap()
}

fn connector(certs: &Certs) -> TlsConnector {
    TlsConnector::from_ca_pem(&certs.ca).unwrap()
}

fn tls_harness(certs: &Certs, server: Server) -> Harness<Server> {
    let mut h = HarnessBuilder::new()
        .tls_server(&acceptor(certs))
        .build(server);
    h.connect();
    h
}

/// A rustls client that the test drives by hand against the harness's connection.
struct ManualClient {
    conn: rustls::ClientConnection,
}

impl ManualClient {
    fn new(config: Arc<rustls::ClientConfig>) -> ManualClient {
        let mut conn =
            rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
                .unwrap();
        conn.set_buffer_limit(None);
        ManualClient { conn }
    }

    /// Sends what rustls has to the server.
    fn flush(&mut self, h: &mut Harness<Server>) {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out).unwrap();
        }
        if !out.is_empty() {
            h.feed(&out);
        }
    }

    /// Takes what the server wrote into rustls; returns the plaintext, or rustls's
    /// error.
    fn receive(&mut self, h: &mut Harness<Server>) -> Result<Vec<u8>, rustls::Error> {
        let bytes = h.take_written();
        let mut rest = &bytes[..];
        let mut plain = Vec::new();
        while !rest.is_empty() {
            self.conn.read_tls(&mut rest).unwrap();
            self.conn.process_new_packets()?;
            let _ = self.conn.reader().read_to_end(&mut plain);
        }
        self.conn.process_new_packets()?;
        let _ = self.conn.reader().read_to_end(&mut plain);
        Ok(plain)
    }

    /// Runs the handshake to its end.
    fn handshake(&mut self, h: &mut Harness<Server>) {
        for _ in 0..10 {
            self.flush(h);
            self.receive(h).unwrap();
            if !self.conn.is_handshaking() {
                self.flush(h);
                return;
            }
        }
        panic!("handshake did not finish");
    }
}

fn lost_kind(h: &Harness<Server>) -> String {
    format!("{:?}", h.lost().expect("the connection ended"))
}

#[test]
fn both_ends_through_the_core_with_writes_held_for_the_handshake() {
    let certs = Certs::new("kit-both");
    let mut h = tls_harness(
        &certs,
        Server {
            banner: Some(b"welcome\n"),
            echo: true,
            ..Server::default()
        },
    );
    assert_eq!(h.protocol().made_handshaking, Some(true));
    // The banner written in connection_made is held: nothing but the handshake
    // could have gone out yet, and no client has spoken.
    assert_eq!(h.buffered(), b"welcome\n".len());
    let c = h.add_tls_client(
        Client {
            send: b"hello\n".to_vec(),
            ..Client::default()
        },
        &connector(&certs),
        "localhost",
    );
    h.link(h.id(), c);
    let client = h.protocol_of::<Client>(c).unwrap();
    assert_eq!(client.got, b"welcome\nHELLO\n");
    assert_eq!(h.protocol().got, b"hello\n");
    let info = h.protocol().info_on_data.clone().unwrap();
    assert!(!info.handshaking);
    assert!(info.is_server);
    assert_eq!(info.server_name.as_deref(), Some("localhost"));
    assert_eq!(info.version, Some(TlsVersion::Tls13));
    assert!(
        info.peer_certificates.is_empty(),
        "no client certificate asked for"
    );
    assert_eq!(h.buffered(), 0);

    // The client closes: close_notify, which the server reads as EOF and answers
    // with its own close; both ends are clean.
    h.call_of(c, |_: &mut Client, cx| cx.lose_connection());
    assert!(h.protocol().eof);
    assert!(matches!(h.lost(), Some(Reason::Done)), "{:?}", h.lost());
    assert!(
        matches!(h.lost_of(c), Some(Reason::Done)),
        "{:?}",
        h.lost_of(c)
    );
}

#[test]
fn lose_connection_during_the_handshake_aborts_when_nothing_was_written() {
    let certs = Certs::new("kit-abort");
    let h = tls_harness(
        &certs,
        Server {
            close_at_once: true,
            ..Server::default()
        },
    );
    assert!(matches!(h.lost(), Some(Reason::Aborted)), "{:?}", h.lost());
}

#[test]
fn lose_connection_during_the_handshake_flushes_what_was_written_then_closes() {
    let certs = Certs::new("kit-flush");
    let mut h = tls_harness(
        &certs,
        Server {
            banner: Some(b"bye\n"),
            close_at_once: true,
            ..Server::default()
        },
    );
    assert!(
        h.is_open_of(h.id()) || h.lost().is_none(),
        "waits for the handshake"
    );
    let c = h.add_tls_client(Client::default(), &connector(&certs), "localhost");
    h.link(h.id(), c);
    let client = h.protocol_of::<Client>(c).unwrap();
    assert_eq!(client.got, b"bye\n");
    assert!(client.eof, "the server's close_notify is the client's EOF");
    assert!(matches!(h.lost(), Some(Reason::Done)), "{:?}", h.lost());
}

#[test]
fn the_handshake_timeout_runs_on_the_manual_clock() {
    let certs = Certs::new("kit-timeout");
    let mut h = HarnessBuilder::new()
        .tls_server(&acceptor(&certs).handshake_timeout(Duration::from_secs(5)))
        .build(Server::default());
    h.connect();
    h.advance(Duration::from_secs(4));
    assert!(h.lost().is_none());
    h.advance(Duration::from_secs(1));
    match h.lost() {
        Some(Reason::Tls(e)) => assert_eq!(e.kind(), ErrorKind::TimedOut),
        other => panic!("{other:?}"),
    }
    h.assert_clean();
}

#[test]
fn plaintext_bytes_fail_the_handshake_with_an_alert_sent_first() {
    let certs = Certs::new("kit-plain");
    let mut h = tls_harness(&certs, Server::default());
    h.feed(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        matches!(h.lost(), Some(Reason::Tls(_))),
        "{}",
        lost_kind(&h)
    );
    let alert = h.take_written();
    assert_eq!(
        alert.first(),
        Some(&0x15),
        "an alert record went out: {alert:?}"
    );
    assert_eq!(h.protocol().reads, 0);
}

#[test]
fn the_handshake_byte_bound_closes_a_peer_that_sends_too_much() {
    let certs = Certs::new("kit-bound");
    let mut h = HarnessBuilder::new()
        .tls_server(&acceptor(&certs).max_handshake_bytes(100))
        .build(Server::default());
    h.connect();
    let mut client = ManualClient::new(connector(&certs).config().clone());
    client.flush(&mut h); // a ClientHello is well over 100 bytes
    match h.lost() {
        Some(Reason::Tls(e)) => assert!(e.to_string().contains("100 bytes"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_untrusted_server_fails_the_clients_handshake() {
    let certs = Certs::new("kit-untrusted");
    let mut h = tls_harness(&certs, Server::default());
    // A client that trusts only the other CA.
    let wrong = TlsConnector::from_ca_pem(&certs.other_ca).unwrap();
    let c = h.add_tls_client(Client::default(), &wrong, "localhost");
    h.link(h.id(), c);
    let lost = h.protocol_of::<Client>(c).unwrap().lost.clone();
    let lost = lost.expect("the client gave up");
    assert!(lost.contains("Tls"), "{lost}");
    // The client's alert reached the server, which failed its handshake too.
    assert!(
        matches!(h.lost(), Some(Reason::Tls(_))),
        "{}",
        lost_kind(&h)
    );
}

#[test]
fn a_tcp_close_without_close_notify_is_a_truncation() {
    let certs = Certs::new("kit-trunc");
    let mut h = tls_harness(&certs, Server::default());
    let mut client = ManualClient::new(connector(&certs).config().clone());
    client.handshake(&mut h);
    client.conn.writer().write_all(b"partial").unwrap();
    client.flush(&mut h);
    assert_eq!(h.protocol().got, b"partial");
    h.eof();
    assert!(
        matches!(h.lost(), Some(Reason::Truncated)),
        "{}",
        lost_kind(&h)
    );
    assert!(!h.protocol().eof, "a truncation is not an EOF");
}

#[test]
fn close_notify_then_eof_is_a_clean_end_and_is_answered() {
    let certs = Certs::new("kit-notify");
    let mut h = tls_harness(&certs, Server::default());
    let mut client = ManualClient::new(connector(&certs).config().clone());
    client.handshake(&mut h);
    client.conn.send_close_notify();
    client.flush(&mut h);
    assert!(h.protocol().eof);
    // The server's close_notify came back before its write side was shut.
    client.receive(&mut h).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        client.conn.reader().read(&mut buf).unwrap(),
        0,
        "close_notify received"
    );
    h.eof();
    assert!(matches!(h.lost(), Some(Reason::Done)), "{}", lost_kind(&h));
}

#[test]
fn garbage_after_the_handshake_closes_with_an_alert() {
    let certs = Certs::new("kit-garbage");
    let mut h = tls_harness(&certs, Server::default());
    let mut client = ManualClient::new(connector(&certs).config().clone());
    client.handshake(&mut h);
    client.receive(&mut h).unwrap(); // the session tickets
                                     // An application-data record whose ciphertext does not decrypt.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend(std::iter::repeat_n(0xAB, 0x40));
    h.feed(&record);
    assert!(
        matches!(h.lost(), Some(Reason::Tls(_))),
        "{}",
        lost_kind(&h)
    );
    let out = h.take_written();
    // An encrypted alert: one TLS 1.3 record (outer type application data).
    assert_eq!(
        out.first(),
        Some(&0x17),
        "the alert went out before the close: {out:?}"
    );
    let mut rest = &out[..];
    client.conn.read_tls(&mut rest).unwrap();
    let err = client.conn.process_new_packets().unwrap_err();
    assert!(matches!(err, rustls::Error::AlertReceived(_)), "{err:?}");
}

#[test]
fn every_byte_of_a_large_stream_is_decrypted_and_a_paused_reader_stops_tls_reads() {
    let certs = Certs::new("kit-large");
    let mut h = HarnessBuilder::new()
        .read_buffer_bytes(4096)
        .tls_server(&acceptor(&certs))
        .build(Server {
            pause_reading_after: Some(100_000),
            ..Server::default()
        });
    h.connect();
    let mut client = ManualClient::new(connector(&certs).config().clone());
    client.handshake(&mut h);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    client.conn.writer().write_all(&data).unwrap();
    client.flush(&mut h);
    let got = h.protocol().got.len();
    assert!(
        (100_000..300_000).contains(&got),
        "paused after 100 000: got {got}"
    );
    assert!(h.reading_paused());
    h.call(|p: &mut Server, cx| {
        p.pause_reading_after = None;
        cx.resume_reading();
    });
    assert_eq!(h.protocol().got, data);
}

#[test]
fn plaintext_and_ciphertext_count_against_the_watermarks_and_the_cap() {
    let certs = Certs::new("kit-marks");
    let mut h = HarnessBuilder::new()
        .write_watermarks(64 * 1024, 16 * 1024)
        .write_cap_bytes(1024 * 1024)
        .tls_server(&acceptor(&certs))
        .build(Server::default());
    h.connect();
    let mut client = ManualClient::new(connector(&certs).config().clone());
    client.handshake(&mut h);
    h.set_peer_window(Some(0)); // the client stops reading
    h.call(|_: &mut Server, cx| {
        cx.write(&vec![b'x'; 40 * 1024]);
    });
    assert_eq!(h.protocol().paused, 0);
    let queued = h.buffered();
    assert!(queued > 40 * 1024, "ciphertext is queued: {queued}");
    h.call(|_: &mut Server, cx| {
        cx.write(&vec![b'y'; 40 * 1024]);
    });
    assert_eq!(h.protocol().paused, 1, "past the high watermark");
    h.set_peer_window(None);
    h.peer_reads(usize::MAX / 2);
    assert_eq!(h.protocol().resumed, 1);
    assert_eq!(h.buffered(), 0);
    let plain = client.receive(&mut h).unwrap();
    assert_eq!(plain.len(), 80 * 1024);

    // And the cap: 2 MiB to a peer that reads nothing.
    h.set_peer_window(Some(0));
    h.call(|_: &mut Server, cx| {
        for _ in 0..32 {
            cx.write(&vec![b'z'; 64 * 1024]);
        }
    });
    assert!(
        matches!(h.lost(), Some(Reason::WriteOverflow)),
        "{}",
        lost_kind(&h)
    );
}

/// Half-closes at once; records what comes after.
#[derive(Default)]
struct HalfCloser {
    got: Vec<u8>,
    eof: bool,
}

impl Protocol for HalfCloser {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        if self.got.is_empty() {
            cx.write(b"last words\n");
            cx.lose_write_connection();
        }
        self.got.extend_from_slice(data);
    }
    fn read_eof(&mut self, cx: &mut Context<'_>) {
        self.eof = true;
        cx.lose_connection();
    }
}

/// Sends a line, and one more after the server's side has ended.
#[derive(Default)]
struct Talker {
    got: Vec<u8>,
    eof: bool,
}

impl Protocol for Talker {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        cx.write(b"first\n");
    }
    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
    }
    fn read_eof(&mut self, cx: &mut Context<'_>) {
        self.eof = true;
        cx.write(b"second\n");
        cx.lose_connection();
    }
}

#[test]
fn a_half_close_sends_close_notify_and_goes_on_reading() {
    let certs = Certs::new("kit-half");
    let mut h = HarnessBuilder::new()
        .tls_server(&acceptor(&certs))
        .build(HalfCloser::default());
    h.connect();
    let c = h.add_tls_client(Talker::default(), &connector(&certs), "localhost");
    h.link(h.id(), c);
    let talker = h.protocol_of::<Talker>(c).unwrap();
    assert_eq!(talker.got, b"last words\n");
    assert!(talker.eof, "the server's close_notify is the client's EOF");
    assert_eq!(h.protocol().got, b"first\nsecond\n", "the server read on");
    // Both sides have ended: a clean close, with no read_eof (as on plaintext, the
    // peer's end after our half-close closes the connection).
    assert!(matches!(h.lost(), Some(Reason::Done)), "{:?}", h.lost());
    assert!(
        matches!(h.lost_of(c), Some(Reason::Done)),
        "{:?}",
        h.lost_of(c)
    );
}

/// Writes a line and half-closes in `connection_made`, before the handshake.
#[derive(Default)]
struct EagerHalfCloser {
    got: Vec<u8>,
}

impl Protocol for EagerHalfCloser {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        cx.write(b"hello\n");
        cx.lose_write_connection();
    }
    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
    }
}

#[test]
fn a_half_close_during_the_handshake_waits_for_it_and_keeps_what_was_written() {
    let certs = Certs::new("kit-early-half");
    let mut h = tls_harness(
        &certs,
        Server {
            echo: true,
            ..Server::default()
        },
    );
    let c = h.add_tls_client(EagerHalfCloser::default(), &connector(&certs), "localhost");
    h.link(h.id(), c);
    assert_eq!(h.protocol().got, b"hello\n");
    assert!(h.protocol().eof, "close_notify after the line");
    assert_eq!(h.protocol_of::<EagerHalfCloser>(c).unwrap().got, b"HELLO\n");
    assert!(matches!(h.lost(), Some(Reason::Done)), "{:?}", h.lost());
    assert!(
        matches!(h.lost_of(c), Some(Reason::Done)),
        "{:?}",
        h.lost_of(c)
    );
}

#[test]
fn alpn_is_agreed_and_shown_to_both_ends() {
    let certs = Certs::new("kit-alpn");
    let server_tls = acceptor(&certs).alpn(&[b"chat/2", b"chat/1"]);
    let mut h = HarnessBuilder::new().tls_server(&server_tls).build(Server {
        echo: true,
        ..Server::default()
    });
    h.connect();
    let client_tls = connector(&certs).alpn(&[b"chat/1"]);
    let c = h.add_tls_client(
        Client {
            send: b"hi\n".to_vec(),
            ..Client::default()
        },
        &client_tls,
        "localhost",
    );
    h.link(h.id(), c);
    let info = h.protocol().info_on_data.clone().expect("data came");
    assert_eq!(info.alpn_protocol.as_deref(), Some(&b"chat/1"[..]));
    assert_eq!(h.protocol_of::<Client>(c).unwrap().got, b"HI\n");

    // A client that offers only protocols the server does not speak is refused.
    let mut h = HarnessBuilder::new()
        .tls_server(&server_tls)
        .build(Server::default());
    h.connect();
    let other = connector(&certs).alpn(&[b"smtp"]);
    let c = h.add_tls_client(Client::default(), &other, "localhost");
    h.link(h.id(), c);
    assert!(matches!(h.lost(), Some(Reason::Tls(_))), "{:?}", h.lost());
}
