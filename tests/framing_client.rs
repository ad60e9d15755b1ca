//! Framers on the client side: a connect that fails reaches the handler's
//! `connection_failed` (once, with the connection's id, and nothing else), for every
//! framer, over loopback; a connect that succeeds talks lines as a server would.

mod common;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use common::{full_listener, localhost, refused_addr, run_until, run_until_stopped};
use twistor::framing::{
    Int16Receiver, Int32Receiver, Int8Receiver, LineContext, LineHandler, LineOnlyContext,
    LineOnlyHandler, LineOnlyReceiver, LineReceiver, NetstringReceiver, StringContext,
    StringHandler,
};
use twistor::{Addr, ConnId, Context, Protocol, Reactor, Reason};

/// What a client's handler saw.
#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Made,
    Got(Vec<u8>),
    Lost,
    Failed(ConnId, io::ErrorKind),
}

/// One client handler for every framer: records its callbacks, and stops the reactor
/// when its connect fails, as a one-shot client would.
#[derive(Clone, Default)]
struct Client {
    events: Rc<RefCell<Vec<Ev>>>,
}

impl Client {
    fn events(&self) -> Vec<Ev> {
        self.events.borrow().clone()
    }

    fn push(&self, e: Ev) {
        self.events.borrow_mut().push(e);
    }

    fn failed(&self, cx: &mut Context<'_>, error: io::Error) {
        self.push(Ev::Failed(cx.id(), error.kind()));
        cx.stop_reactor();
    }
}

impl LineHandler for Client {
    fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
        self.push(Ev::Made);
        cx.send_line(b"hello");
    }

    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        self.push(Ev::Got(line.to_vec()));
        cx.lose_connection();
    }

    fn connection_lost(&mut self, _: &mut LineContext<'_, '_>, _: Reason) {
        self.push(Ev::Lost);
    }

    fn connection_failed(&mut self, cx: &mut LineContext<'_, '_>, error: io::Error) {
        self.failed(cx, error);
    }
}

impl LineOnlyHandler for Client {
    fn line_received(&mut self, _: &mut LineOnlyContext<'_, '_>, line: &[u8]) {
        self.push(Ev::Got(line.to_vec()));
    }

    fn connection_lost(&mut self, _: &mut LineOnlyContext<'_, '_>, _: Reason) {
        self.push(Ev::Lost);
    }

    fn connection_failed(&mut self, cx: &mut LineOnlyContext<'_, '_>, error: io::Error) {
        self.failed(cx, error);
    }
}

impl StringHandler for Client {
    fn string_received(&mut self, _: &mut StringContext<'_, '_>, string: &[u8]) {
        self.push(Ev::Got(string.to_vec()));
    }

    fn connection_lost(&mut self, _: &mut StringContext<'_, '_>, _: Reason) {
        self.push(Ev::Lost);
    }

    fn connection_failed(&mut self, cx: &mut StringContext<'_, '_>, error: io::Error) {
        self.failed(cx, error);
    }
}

/// Connects `protocol` (a framer around `client`) with `connect`, runs the reactor
/// until the handler has heard something and the stop it asked for has finished, and
/// checks that what it heard is one `connection_failed` of `kind` for this connect.
fn check_fails_once<P: Protocol>(
    client: &Client,
    protocol: P,
    kind: io::ErrorKind,
    connect: impl FnOnce(&mut Reactor, P) -> ConnId,
) {
    let mut r = Reactor::new().unwrap();
    let id = connect(&mut r, protocol);
    run_until(&mut r, |_| !client.events().is_empty());
    // The handler stopped the reactor: the stop finishes, and nothing more arrives.
    run_until_stopped(&mut r);
    assert_eq!(client.events(), [Ev::Failed(id, kind)]);
    assert!(!r.conn(id).is_open());
    assert_eq!((r.connection_count(), r.timer_count()), (0, 0));
}

fn check_refused<P: Protocol>(client: &Client, protocol: P) {
    let addr = refused_addr();
    check_fails_once(
        client,
        protocol,
        io::ErrorKind::ConnectionRefused,
        |r, p| r.connect_tcp(addr, p),
    );
}

/// The case: `connect_tcp(addr, LineReceiver::new(h))` against a closed port
/// reaches `h.connection_failed`, which can stop the reactor.
#[test]
fn a_line_receiver_client_to_a_closed_port_gets_connection_failed_once() {
    let client = Client::default();
    check_refused(&client, LineReceiver::new(client.clone()));
}

#[test]
fn a_line_only_receiver_client_to_a_closed_port_gets_connection_failed_once() {
    let client = Client::default();
    check_refused(&client, LineOnlyReceiver::new(client.clone()));
}

#[test]
fn length_prefixed_clients_to_a_closed_port_get_connection_failed_once() {
    let client = Client::default();
    check_refused(&client, Int8Receiver::new(client.clone()));
    let client = Client::default();
    check_refused(&client, Int16Receiver::new(client.clone()));
    let client = Client::default();
    check_refused(&client, Int32Receiver::new(client.clone()));
}

#[test]
fn a_netstring_client_to_a_closed_port_gets_connection_failed_once() {
    let client = Client::default();
    check_refused(&client, NetstringReceiver::new(client.clone()));
}

/// A connect that times out is a failure too.
#[test]
fn a_line_receiver_client_whose_connect_times_out_gets_connection_failed_once() {
    let full = full_listener();
    let client = Client::default();
    let protocol = LineReceiver::new(client.clone());
    check_fails_once(&client, protocol, io::ErrorKind::TimedOut, |r, p| {
        r.connect_tcp_timeout(full.addr, Some(Duration::from_millis(50)), p)
    });
}

/// So is a Unix-socket connect to a path where nothing listens.
#[test]
fn a_netstring_client_to_a_missing_unix_socket_gets_connection_failed_once() {
    let path = std::env::temp_dir().join(format!(
        "twistor-framing-client-{}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let client = Client::default();
    let protocol = NetstringReceiver::new(client.clone());
    check_fails_once(&client, protocol, io::ErrorKind::NotFound, |r, p| {
        r.connect_unix(&path, p)
    });
}

/// An echo server's side, for the client that does connect.
struct Echo;

impl LineHandler for Echo {
    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        cx.send_line(&line.to_ascii_uppercase());
    }
}

/// A framer client that connects gets `connection_made`, a reply and
/// `connection_lost`, and never `connection_failed`.
#[test]
fn a_line_receiver_client_that_connects_never_gets_connection_failed() {
    let mut r = Reactor::new().unwrap();
    let addr = r
        .listen_tcp(localhost(), |_: &Addr| Some(LineReceiver::new(Echo)))
        .unwrap()
        .local_addr;
    let client = Client::default();
    r.connect_tcp(addr, LineReceiver::new(client.clone()));
    run_until(&mut r, |_| client.events().contains(&Ev::Lost));
    assert_eq!(
        client.events(),
        [Ev::Made, Ev::Got(b"HELLO".to_vec()), Ev::Lost]
    );
}
