//! The reconnecting client service over TLS ([`ClientServiceBuilder::tls`]): under the
//! testing kit (a handshake that fails is a failed connect, the retry gets through
//! to a linked TLS server), and over loopback (a TLS server closed and re-opened, a
//! server the client cannot verify retried with a growing delay, each kind of
//! target). Certificates are made for each test by tests/common/tls.rs; every wait
//! is bounded by the watchdog.
#![cfg(feature = "tls")]

mod common;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::tls::Certs;
use common::{localhost, run_until, TempDir};
use twistor::backoff::{Backoff, Jitter};
use twistor::client::{
    ClientService, ClientServiceBuilder, NotConnected, RetryCause, State, Target,
};
use twistor::testing::HarnessBuilder;
use twistor::tls::rustls::pki_types::ServerName;
use twistor::tls::{TlsAcceptor, TlsConnector};
use twistor::{Addr, ConnId, Context, ListenerId, Protocol, Reactor, Reason};

/// What the client's protocols saw, each tagged with its attempt number.
type Events = Rc<RefCell<Vec<String>>>;

struct Client {
    n: u32,
    events: Events,
}

impl Client {
    fn log(&self, what: String) {
        self.events.borrow_mut().push(format!("{} {what}", self.n));
    }
}

impl Protocol for Client {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.log("made".into());
        // Held until the handshake is done.
        cx.write(format!("ping {}\n", self.n).as_bytes());
    }

    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        self.log(format!("got {}", String::from_utf8_lossy(data).trim_end()));
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        // The variant's name only: "Done", "Tls", ...
        let name = format!("{reason:?}");
        self.log(format!(
            "lost {}",
            name.split('(').next().unwrap_or_default()
        ));
    }

    fn connection_failed(&mut self, _: &mut Context<'_>, e: io::Error) {
        self.log(format!("failed {:?}", e.kind()));
    }
}

/// Answers each read with "pong" (upper-cased under the kit: "PING n") and
/// remembers its connections, so the test can kill them.
#[derive(Clone, Default)]
struct Server {
    conns: Rc<RefCell<Vec<ConnId>>>,
}

impl Protocol for Server {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.conns.borrow_mut().push(cx.id());
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        if data.starts_with(b"ping") {
            cx.write(b"pong\n");
        } else {
            cx.write(&data.to_ascii_uppercase());
        }
    }
}

fn localhost_name() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// A builder with TLS trusting `ca` for `localhost`, and `backoff`.
fn tls_builder(ca: &std::path::Path, backoff: Backoff) -> ClientServiceBuilder {
    let connector = TlsConnector::from_ca_pem(ca).expect("the test CA");
    ClientServiceBuilder::new()
        .backoff(backoff)
        .tls(connector, localhost_name())
}

/// Starts `builder` on `net` towards `target`, with a fresh `Client` per attempt.
fn start<N: twistor::client::Network>(
    net: &mut N,
    builder: ClientServiceBuilder,
    target: impl Into<Target>,
) -> (ClientService<Client>, Events) {
    let events = Events::default();
    let log = events.clone();
    let mut n = 0;
    let client = builder.start(net, target, move || {
        n += 1;
        Client {
            n,
            events: log.clone(),
        }
    });
    (client, events)
}

fn taken(events: &Events) -> Vec<String> {
    std::mem::take(&mut *events.borrow_mut())
}

fn saw(events: &Events, what: &str) -> bool {
    events.borrow().iter().any(|e| e.ends_with(what))
}

// ----- under the testing kit -----

/// The first attempt's TCP is up but its handshake fails (the "server" answers in
/// plaintext): that is a failed connect, not a connection lost; the retry's
/// connection, linked to the harness's TLS server, is up once its handshake is done.
#[test]
fn kit_a_failed_handshake_is_a_failed_connect_and_the_retry_gets_through() {
    let certs = Certs::new("client-tls-kit");
    let acceptor = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let mut h = HarnessBuilder::new()
        .tls_server(&acceptor)
        .build(Server::default());
    h.connect();
    let policy = Backoff::client_service().jitter(Jitter::None);
    let target: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let (client, events) = start(&mut h, tls_builder(&certs.ca, policy), target);
    let outcomes: Rc<RefCell<Vec<String>>> = Rc::default();
    for (name, fail_after) in [("one", Some(1)), ("none", None)] {
        let o = outcomes.clone();
        client.when_connected(&mut h, fail_after, move |r| {
            let what = match r {
                Ok((p, cx)) => {
                    let tls = cx.tls().expect("a TLS connection");
                    format!("{name}: {} up, handshaking {}", p.n, tls.handshaking)
                }
                Err(NotConnected::Failed(e)) => format!("{name}: {:?}", e.kind()),
                Err(e) => format!("{name}: {e}"),
            };
            o.borrow_mut().push(what);
        });
    }

    // TCP up: the protocol is made, the service still connecting (handshaking).
    let State::Connecting(first) = client.state() else {
        panic!("{:?}", client.state())
    };
    h.complete_connect(first);
    assert_eq!(client.state(), State::Connecting(first));
    assert_eq!(client.conn_id(), None);
    assert!(
        !h.take_written_of(first).is_empty(),
        "the client hello went out"
    );
    h.feed_of(first, b"HTTP/1.1 400 Bad Request\r\n\r\n");
    assert_eq!(taken(&events), ["1 made", "1 lost Tls"]);
    assert_eq!(client.failures(), 1);
    assert_eq!(*outcomes.borrow(), ["one: InvalidData"]);
    assert!(matches!(client.state(), State::Waiting { .. }));
    assert_eq!(h.next_timer_in(), Some(Duration::from_secs(1)));

    // The retry reaches the TLS server: up after the handshake, with a fresh protocol
    // whose held ping goes out then.
    h.advance(Duration::from_secs(1));
    let State::Connecting(second) = client.state() else {
        panic!("{:?}", client.state())
    };
    h.complete_connect(second);
    assert_eq!(client.state(), State::Connecting(second));
    h.link(h.id(), second);
    assert_eq!(client.state(), State::Connected(second));
    assert_eq!(client.failures(), 0);
    assert_eq!(
        outcomes.borrow()[1..],
        ["none: 2 up, handshaking false".to_owned()]
    );
    assert_eq!(taken(&events), ["2 made", "2 got pong"]);

    client.stop(&mut h);
    assert_eq!(client.state(), State::Stopped);
    assert_eq!(taken(&events), ["2 lost Done"]);
    h.advance(Duration::from_secs(3600));
    assert!(h.connecting().is_empty(), "no retry after stop");
}

/// A stop during the handshake cancels the attempt: the protocol, which was made,
/// gets `connection_lost`, and nothing is retried.
#[test]
fn kit_stop_during_the_handshake_ends_the_attempt() {
    let certs = Certs::new("client-tls-kit-stop");
    let mut h = HarnessBuilder::new().build(Server::default());
    let policy = Backoff::client_service().jitter(Jitter::None);
    let target: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let (client, events) = start(&mut h, tls_builder(&certs.ca, policy), target);
    let State::Connecting(id) = client.state() else {
        panic!("{:?}", client.state())
    };
    h.complete_connect(id);
    client.stop(&mut h);
    assert_eq!(client.state(), State::Stopped);
    assert_eq!(taken(&events), ["1 made", "1 lost Aborted"]);
    h.advance(Duration::from_secs(3600));
    assert!(h.connecting().is_empty(), "no retry after stop");
}

// ----- over loopback -----

/// Listens with TLS on `addr` with `server`: the listener and its address.
fn serve_tls(
    r: &mut Reactor,
    addr: SocketAddr,
    acceptor: &TlsAcceptor,
    server: &Server,
) -> (ListenerId, SocketAddr) {
    let server = server.clone();
    let listening = r
        .listen_tls(addr, acceptor, move |_: &Addr| Some(server.clone()))
        .expect("listen on the client's port");
    (listening.id, listening.local_addr)
}

#[test]
fn a_tls_server_closed_and_reopened_gets_the_client_back_with_a_fresh_protocol() {
    let certs = Certs::new("client-tls-restart");
    let acceptor = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let mut r = Reactor::new().unwrap();
    let server = Server::default();
    let (listener, addr) = serve_tls(&mut r, localhost(), &acceptor, &server);
    // Short delays keep the test quick; nothing depends on their length.
    let builder = tls_builder(&certs.ca, Backoff::constant(Duration::from_millis(20)));
    let (client, events) = start(&mut r, builder, addr);
    run_until(&mut r, |_| saw(&events, "1 got pong"));
    assert_eq!(*events.borrow(), ["1 made", "1 got pong"]);
    let State::Connected(first) = client.state() else {
        panic!("{:?}", client.state())
    };
    assert!(r.conn(first).is_open());

    // Close the server: no more listener, and its connection closed (close_notify).
    assert!(r.stop_listening(listener));
    let conn = server.conns.borrow()[0];
    r.conn(conn).lose_connection();
    run_until(&mut r, |_| client.failures() >= 1);
    assert_eq!(events.borrow()[2], "1 lost Done");
    assert!(saw(&events, "failed ConnectionRefused"));

    // Re-open it on the same port: a new connection, a new protocol, a new handshake.
    serve_tls(&mut r, addr, &acceptor, &server);
    run_until(&mut r, |_| {
        let seen = events.borrow();
        seen.last()
            .is_some_and(|e| e.ends_with("got pong") && !e.starts_with("1 "))
    });
    let seen = events.borrow().clone();
    let last = seen.len();
    let n: u32 = seen[last - 1].split(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3, "{seen:?}");
    assert_eq!(
        seen[last - 2..],
        [format!("{n} made"), format!("{n} got pong")]
    );
    assert_eq!(server.conns.borrow().len(), 2);
    let State::Connected(second) = client.state() else {
        panic!("{:?}", client.state())
    };
    assert_ne!(second, first);
    assert_eq!(client.failures(), 0);

    client.stop(&mut r);
    run_until(&mut r, |_| client.state() == State::Stopped);
    assert_eq!(r.timer_count(), 0);
}

/// A server whose certificate the client does not trust: each attempt's TCP is up,
/// its handshake fails, and that is a failed connect: the delay grows (it is not
/// reset by the TCP connection), `when_connected` gives up after its budget.
#[test]
fn a_server_the_client_cannot_verify_is_retried_with_a_growing_delay() {
    let certs = Certs::new("client-tls-untrusted");
    let acceptor = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let mut r = Reactor::new().unwrap();
    let (_, addr) = serve_tls(&mut r, localhost(), &acceptor, &Server::default());
    let retries: Rc<RefCell<Vec<(Duration, String)>>> = Rc::default();
    let seen = retries.clone();
    let policy = Backoff::client_service()
        .initial(Duration::from_millis(5))
        .factor(2.0)
        .max(Duration::from_secs(1))
        .jitter(Jitter::None);
    // Trusts the other CA only.
    let builder = tls_builder(&certs.other_ca, policy).on_retry(move |retry| {
        let cause = match retry.cause {
            RetryCause::Failed(e) => format!("failed {:?}: {e}", e.kind()),
            RetryCause::Lost(reason) => format!("lost {reason}"),
            _ => "?".into(),
        };
        seen.borrow_mut().push((retry.delay, cause));
    });
    let (client, events) = start(&mut r, builder, addr);
    let gave_up: Rc<RefCell<Option<String>>> = Rc::default();
    let g = gave_up.clone();
    client.when_connected(&mut r, Some(3), move |r| {
        *g.borrow_mut() = Some(match r {
            Ok(_) => "connected".into(),
            Err(e) => e.to_string(),
        });
    });
    run_until(&mut r, |_| client.failures() >= 3);
    let retries = retries.borrow().clone();
    let delays: Vec<Duration> = retries.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        delays[..3],
        [5, 10, 20].map(Duration::from_millis),
        "{retries:?}"
    );
    for (_, cause) in &retries {
        assert!(
            cause.starts_with("failed InvalidData: TLS error: ") && cause.contains("certificate"),
            "{cause:?}"
        );
    }
    assert_eq!(
        events.borrow()[..4],
        ["1 made", "1 lost Tls", "2 made", "2 lost Tls"]
    );
    let gave_up = gave_up.borrow().clone().expect("when_connected gave up");
    assert!(
        gave_up.starts_with("connect failed: TLS error: "),
        "{gave_up:?}"
    );

    client.stop(&mut r);
    run_until(&mut r, |_| client.state() == State::Stopped);
    // Nothing left once the server's side of the last attempt has closed too.
    run_until(&mut r, |r| r.timer_count() == 0);
}

/// A host name (resolved on the pool, the certificate checked for the builder's
/// name) and a Unix socket work as a TCP address does.
#[test]
fn a_host_name_and_a_unix_socket_connect_with_tls() {
    let certs = Certs::new("client-tls-targets");
    let acceptor = TlsAcceptor::from_pem(&certs.server_cert, &certs.server_key).unwrap();
    let mut r = Reactor::new().unwrap();
    let (_, addr) = serve_tls(&mut r, localhost(), &acceptor, &Server::default());
    let dir = TempDir::new("client-tls-unix");
    let path = dir.path("chat.sock");
    let server = Server::default();
    r.listen_unix_tls(&path, &acceptor, move |_: &Addr| Some(server.clone()))
        .expect("listen on a Unix socket");

    for target in [Target::host("localhost", addr.port()), Target::Unix(path)] {
        let builder = tls_builder(&certs.ca, Backoff::constant(Duration::from_millis(20)));
        let (client, events) = start(&mut r, builder, target.clone());
        run_until(&mut r, |_| saw(&events, "got pong"));
        assert_eq!(*events.borrow(), ["1 made", "1 got pong"], "{target}");
        assert!(matches!(client.state(), State::Connected(_)), "{target}");
        client.stop(&mut r);
        run_until(&mut r, |_| client.state() == State::Stopped);
    }
    assert_eq!(r.timer_count(), 0);
}
