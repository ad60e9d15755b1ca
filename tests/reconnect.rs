//! The reconnecting client service over loopback: a client started before its
//! server, and a server killed and restarted. Client and server run on one reactor,
//! turned by the test; every wait is bounded by the watchdog.

mod common;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::{localhost, refused_addr, run_until};
use twistor::backoff::Backoff;
use twistor::client::{ClientService, ClientServiceBuilder, State, Target};
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
        cx.write(format!("ping {}\n", self.n).as_bytes());
    }

    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        self.log(format!("got {}", String::from_utf8_lossy(data).trim_end()));
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, _: Reason) {
        self.log("lost".into());
    }

    fn connection_failed(&mut self, _: &mut Context<'_>, e: io::Error) {
        self.log(format!("failed {:?}", e.kind()));
    }
}

/// Answers each read with "pong" and remembers its connections, so the test can
/// kill them.
#[derive(Clone, Default)]
struct Server {
    conns: Rc<RefCell<Vec<ConnId>>>,
}

impl Protocol for Server {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.conns.borrow_mut().push(cx.id());
    }

    fn data_received(&mut self, cx: &mut Context<'_>, _: &[u8]) {
        cx.write(b"pong\n");
    }
}

/// Listens on `addr` with `server`: the listener and its address.
fn serve(r: &mut Reactor, addr: SocketAddr, server: &Server) -> (ListenerId, SocketAddr) {
    let server = server.clone();
    let listening = r
        .listen_tcp(addr, move |_: &Addr| Some(server.clone()))
        .expect("listen on the client's port");
    (listening.id, listening.local_addr)
}

fn start(r: &mut Reactor, addr: SocketAddr) -> (ClientService<Client>, Events) {
    let events = Events::default();
    let log = events.clone();
    let mut n = 0;
    // Short delays keep the test quick; nothing depends on their length.
    let builder = ClientServiceBuilder::new().backoff(Backoff::constant(Duration::from_millis(20)));
    let client = builder.start(r, addr, move || {
        n += 1;
        Client {
            n,
            events: log.clone(),
        }
    });
    (client, events)
}

fn saw(events: &Events, what: &str) -> bool {
    events.borrow().iter().any(|e| e.ends_with(what))
}

#[test]
fn a_client_started_before_its_server_connects_once_it_listens() {
    let mut r = Reactor::new().unwrap();
    let addr = refused_addr();
    let (client, events) = start(&mut r, addr);
    run_until(&mut r, |_| client.failures() >= 2);
    assert!(events
        .borrow()
        .iter()
        .all(|e| e.ends_with("failed ConnectionRefused")));

    let server = Server::default();
    serve(&mut r, addr, &server);
    run_until(&mut r, |_| saw(&events, "got pong"));
    let State::Connected(id) = client.state() else {
        panic!("{:?}", client.state())
    };
    assert_eq!(client.conn_id(), Some(id));
    assert!(r.conn(id).is_open());
    // Each refused attempt, then the one that got through.
    let seen = events.borrow().clone();
    let n = seen.len() - 1;
    assert_eq!(
        seen[n - 1..],
        [format!("{n} made"), format!("{n} got pong")]
    );

    client.stop(&mut r);
    run_until(&mut r, |_| client.state() == State::Stopped);
    assert!(saw(&events, "lost"));
    assert_eq!(r.timer_count(), 0);
}

#[test]
fn a_server_killed_and_restarted_gets_the_client_back_with_a_fresh_protocol() {
    let mut r = Reactor::new().unwrap();
    let server = Server::default();
    let (listener, addr) = serve(&mut r, localhost(), &server);
    let (client, events) = start(&mut r, addr);
    run_until(&mut r, |_| saw(&events, "1 got pong"));
    assert_eq!(*events.borrow(), ["1 made", "1 got pong"]);

    // Kill the server: no more listener, and its connection reset.
    assert!(r.stop_listening(listener));
    let conn = server.conns.borrow()[0];
    r.conn(conn).abort_connection();
    run_until(&mut r, |_| client.failures() >= 1);
    assert_eq!(events.borrow()[2], "1 lost");
    assert!(saw(&events, "failed ConnectionRefused"));

    // Restart it on the same port: the client reconnects with a new protocol.
    serve(&mut r, addr, &server);
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

    client.stop(&mut r);
    run_until(&mut r, |_| client.state() == State::Stopped);
}

/// A connect that fails before it starts (no such Unix socket) is reported in a later
/// turn, never inside the call, and retried like any other.
#[test]
fn a_unix_target_that_does_not_exist_is_retried() {
    let mut r = Reactor::new().unwrap();
    let path = std::env::temp_dir().join(format!("twistor-absent-{}.sock", std::process::id()));
    let events = Events::default();
    let log = events.clone();
    let mut n = 0;
    let builder = ClientServiceBuilder::new().backoff(Backoff::constant(Duration::from_millis(5)));
    let client = builder.start(&mut r, Target::Unix(path), move || {
        n += 1;
        Client {
            n,
            events: log.clone(),
        }
    });
    assert!(events.borrow().is_empty(), "no callback inside start");
    run_until(&mut r, |_| client.failures() >= 3);
    assert_eq!(
        events.borrow()[..2],
        ["1 failed NotFound", "2 failed NotFound"]
    );
    client.stop(&mut r); // during a wait or a connect whose failure is not yet reported
    run_until(&mut r, |_| client.state() == State::Stopped);
    assert_eq!(r.timer_count(), 0);
}

/// Stops its service from its own `data_received` (a `Context` is a `Network`),
/// after a last write.
struct Quitter {
    service: Rc<RefCell<Option<ClientService<Quitter>>>>,
}

impl Protocol for Quitter {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        cx.write(b"ping\n");
    }

    fn data_received(&mut self, cx: &mut Context<'_>, _: &[u8]) {
        cx.write(b"bye\n");
        let service = self.service.borrow().clone().expect("started");
        service.stop(cx);
    }
}

/// What a server connection read, and whether it saw the end.
#[derive(Clone, Default)]
struct Reader {
    got: Rc<RefCell<Vec<u8>>>,
    ended: Rc<RefCell<Option<String>>>,
}

impl Protocol for Reader {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
        if data.starts_with(b"ping") {
            cx.write(b"pong\n");
        }
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        *self.ended.borrow_mut() = Some(format!("{reason:?}"));
    }
}

/// On a reactor: the close comes once the callback has returned, gracefully (the
/// server reads what was written before the stop, then the end), and no retry is
/// scheduled.
#[test]
fn stop_from_the_connections_own_callback_on_a_reactor() {
    let mut r = Reactor::new().unwrap();
    let server = Reader::default();
    let s = server.clone();
    let addr = r
        .listen_tcp(localhost(), move |_: &Addr| Some(s.clone()))
        .unwrap()
        .local_addr;
    let slot: Rc<RefCell<Option<ClientService<Quitter>>>> = Rc::default();
    let s = slot.clone();
    let client = ClientService::start(&mut r, addr, move || Quitter { service: s.clone() });
    *slot.borrow_mut() = Some(client.clone());
    run_until(&mut r, |_| server.ended.borrow().is_some());
    assert_eq!(*server.got.borrow(), b"ping\nbye\n");
    assert_eq!(server.ended.borrow().as_deref(), Some("Done"));
    run_until(&mut r, |_| client.state() == State::Stopped);
    slot.borrow_mut().take();
    run_until(&mut r, |r| r.timer_count() == 0);
}
