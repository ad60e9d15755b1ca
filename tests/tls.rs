//! TLS through the reactor, against clients written by others: rustls's own blocking
//! `StreamOwned` (in these tests), `openssl s_client` and Python's `ssl` (in
//! tests/tls_interop.rs).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::tls::Certs;
use common::*;
use twistor::tls::rustls::{self, pki_types::ServerName};
use twistor::tls::{TlsAcceptor, TlsConnector};
use twistor::{Addr, Context, Protocol, Reactor};

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
