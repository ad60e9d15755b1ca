//! TLS through the reactor, against clients written by others: rustls's own blocking
//! `StreamOwned` (in these tests), `openssl s_client` and Python's `ssl` (in
//! tests/tls_examples.rs, against the examples).

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;

use common::tls::Certs;
use common::*;
use twistor::tls::rustls::{self, pki_types::ServerName};
use twistor::tls::{TlsAcceptor, TlsConnector};
use twistor::{Addr, Context, Protocol, Reactor, Reason};

#[derive(Clone)]
struct Upper;
impl Protocol for Upper {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        cx.write(&data.to_ascii_uppercase());
    }
}

fn client_config(certs: &Certs) -> Arc<rustls::ClientConfig> {
    TlsConnector::from_ca_pem(&certs.ca)
        .unwrap()
        .config()
        .clone()
}

fn tls_client(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

#[test]
fn echo_over_tls_with_a_rustls_client() {
    let certs = Certs::new("echo");
    let tls = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let mut r = Reactor::new().unwrap();
    let addr = r
        .listen_tls(localhost(), &tls, |_: &Addr| Some(Upper))
        .unwrap()
        .local_addr;
    let config = client_config(&certs);
    let t = std::thread::spawn(move || {
        let mut c = tls_client(addr, config);
        c.write_all(b"hello tls\n").unwrap();
        let mut buf = [0u8; 10];
        c.read_exact(&mut buf).unwrap();
        c.conn.send_close_notify();
        c.flush().unwrap();
        let mut rest = Vec::new();
        // The server answers close_notify with its own, then closes: a clean end.
        c.read_to_end(&mut rest).unwrap();
        (buf.to_vec(), rest)
    });
    let (got, rest) = drive(&mut r, t);
    assert_eq!(got, b"HELLO TLS\n");
    assert!(rest.is_empty());
}

/// Records how its connection ended and what the handshake settled.
#[derive(Default)]
struct Rec {
    send: Vec<u8>,
    got: Rc<RefCell<Vec<u8>>>,
    lost: Rc<RefCell<Option<String>>>,
    peer_certs: Rc<RefCell<Option<usize>>>,
}

impl Protocol for Rec {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        if !self.send.is_empty() {
            cx.write(&self.send);
        }
    }
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        *self.peer_certs.borrow_mut() = cx.tls().map(|t| t.peer_certificates.len());
        self.got.borrow_mut().extend_from_slice(data);
        if data.ends_with(b"\n") && self.send.is_empty() {
            cx.write(&data.to_ascii_uppercase());
        }
    }
    fn read_eof(&mut self, cx: &mut Context<'_>) {
        cx.lose_connection();
    }
    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        *self.lost.borrow_mut() = Some(format!("{reason:?}"));
    }
}

fn mtls_server(certs: &Certs, r: &mut Reactor, server: &Rec) -> std::net::SocketAddr {
    let tls = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key)
        .unwrap()
        .require_client_cert(&certs.ca)
        .unwrap();
    let (got, lost, peer_certs) = (
        server.got.clone(),
        server.lost.clone(),
        server.peer_certs.clone(),
    );
    r.listen_tls(localhost(), &tls, move |_: &Addr| {
        Some(Rec {
            got: got.clone(),
            lost: lost.clone(),
            peer_certs: peer_certs.clone(),
            ..Rec::default()
        })
    })
    .unwrap()
    .local_addr
}

#[test]
fn mutual_tls_accepts_the_right_client_certificate_and_refuses_others() {
    let certs = Certs::new("mtls");
    // Accepted: a certificate from the CA the server trusts.
    let mut r = Reactor::new().unwrap();
    let server = Rec::default();
    let addr = mtls_server(&certs, &mut r, &server);
    let good =
        TlsConnector::from_pem_with_client_cert(&certs.ca, &certs.client_cert, &certs.client_key)
            .unwrap();
    let client = Rec {
        send: b"let me in\n".to_vec(),
        ..Rec::default()
    };
    let client_got = client.got.clone();
    r.connect_tls(addr, &good, "localhost", client);
    run_until(&mut r, |_| client_got.borrow().as_slice() == b"LET ME IN\n");
    assert_eq!(
        *server.peer_certs.borrow(),
        Some(1),
        "the server sees the client's chain"
    );

    // Refused: no certificate, and one from another CA. Each fails its handshake on
    // both sides, and nothing the client wrote reaches the server's protocol.
    for (name, connector) in [
        ("none", TlsConnector::from_ca_pem(&certs.ca).unwrap()),
        (
            "other CA",
            TlsConnector::from_pem_with_client_cert(
                &certs.ca,
                &certs.other_client_cert,
                &certs.other_client_key,
            )
            .unwrap(),
        ),
    ] {
        let mut r = Reactor::new().unwrap();
        let server = Rec::default();
        let addr = mtls_server(&certs, &mut r, &server);
        let client = Rec {
            send: b"let me in\n".to_vec(),
            ..Rec::default()
        };
        let client_lost = client.lost.clone();
        r.connect_tls(addr, &connector, "localhost", client);
        run_until(&mut r, |_| {
            client_lost.borrow().is_some() && server.lost.borrow().is_some()
        });
        let server_lost = server.lost.borrow().clone().unwrap();
        assert!(
            server_lost.starts_with("Tls"),
            "{name}: server {server_lost}"
        );
        assert!(server.got.borrow().is_empty(), "{name}");
        assert_eq!(r.connection_count(), 0, "{name}");
    }
}

#[test]
fn a_client_checks_the_server_name() {
    let certs = Certs::new("name");
    let tls = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let mut r = Reactor::new().unwrap();
    let addr = r
        .listen_tls(localhost(), &tls, |_: &Addr| Some(Upper))
        .unwrap()
        .local_addr;
    let client = Rec {
        send: b"hi\n".to_vec(),
        ..Rec::default()
    };
    let lost = client.lost.clone();
    let connector = TlsConnector::from_ca_pem(&certs.ca).unwrap();
    r.connect_tls(addr, &connector, "not-the-server.test", client);
    run_until(&mut r, |_| lost.borrow().is_some());
    let lost = lost.borrow().clone().unwrap();
    assert!(
        lost.contains("Tls") && lost.contains("NotValidForName"),
        "{lost}"
    );
}

#[test]
fn tls_over_unix_sockets_both_ways() {
    let certs = Certs::new("unix");
    let path = certs.dir.path("tls.sock");
    let tls = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let mut r = Reactor::new().unwrap();
    r.listen_unix_tls(&path, &tls, |_: &Addr| Some(Upper))
        .unwrap();
    let client = Rec {
        send: b"over unix\n".to_vec(),
        ..Rec::default()
    };
    let got = client.got.clone();
    let connector = TlsConnector::from_ca_pem(&certs.ca).unwrap();
    r.connect_unix_tls(&path, &connector, "localhost", client);
    run_until(&mut r, |_| got.borrow().as_slice() == b"OVER UNIX\n");
}

#[test]
fn a_stop_flushes_then_sends_close_notify() {
    let certs = Certs::new("stop");
    let tls = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let (rt, addr) = spawn_reactor(move |r| {
        #[derive(Clone)]
        struct Big;
        impl Protocol for Big {
            fn data_received(&mut self, cx: &mut Context<'_>, _: &[u8]) {
                // 4 MiB, far more than the socket buffers hold: most of it is still
                // queued when the stop comes.
                for _ in 0..64 {
                    cx.write(&[b'x'; 64 * 1024]);
                }
                cx.conn(cx.id()).lose_connection();
            }
        }
        r.listen_tls(localhost(), &tls, |_: &Addr| Some(Big))
            .unwrap()
            .local_addr
    });
    let mut c = tls_client(addr, client_config(&certs));
    c.write_all(b"go\n").unwrap();
    let mut first = [0u8; 1];
    c.read_exact(&mut first).unwrap();
    rt.handle.stop();
    let mut rest = Vec::new();
    // read_to_end fails with UnexpectedEof if the TCP close comes without close_notify.
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len() + 1, 4 * 1024 * 1024);
    rt.stop_and_join();
}

#[test]
fn a_thousand_abandoned_handshakes_leave_nothing_behind() {
    let certs = Certs::new("abandon");
    let tls = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let mut r = Reactor::new().unwrap();
    let addr = r
        .listen_tls(localhost(), &tls, |_: &Addr| Some(Upper))
        .unwrap()
        .local_addr;
    // A real ClientHello's first bytes, then nothing: each client stops
    // mid-handshake, or sends plaintext, or garbage, and goes away.
    let mut hello = Vec::new();
    {
        let mut conn = rustls::ClientConnection::new(
            client_config(&certs),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        conn.write_tls(&mut hello).unwrap();
    }
    let t = std::thread::spawn(move || {
        for i in 0..1000 {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = match i % 3 {
                0 => s.write_all(&hello[..hello.len() / 2]),
                1 => s.write_all(b"GET / HTTP/1.0\r\n\r\n"),
                _ => s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0]),
            };
        }
    });
    drive(&mut r, t);
    run_until(&mut r, |r| r.connection_count() == 0);
    let stats = r.stats();
    assert_eq!(stats.closed.total(), 1000);
    assert_eq!(stats.closed.done, 0, "{:?}", stats.closed);
    // And a real client is served as before.
    let config = client_config(&certs);
    let t = std::thread::spawn(move || {
        let mut c = tls_client(addr, config);
        c.write_all(b"still here\n").unwrap();
        let mut buf = [0u8; 11];
        c.read_exact(&mut buf).unwrap();
        buf
    });
    assert_eq!(&drive(&mut r, t), b"STILL HERE\n");
}
