//! Connects by host name: `Reactor::connect_host` and a client service with a
//! `Target::Host`, over loopback (`localhost`, and a name that does not resolve) and
//! under the testing kit, where the test runs the resolution and decides each
//! address's connect.

mod common;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::{listen, refused_addr, run_until};
use twistor::backoff::{Backoff, Jitter};
use twistor::client::{
    ClientService, ClientServiceBuilder, NotConnected, ResolveError, RetryCause, State, Target,
};
use twistor::testing::Harness;
use twistor::{ConnId, Context, Protocol, Reactor, Reason};

/// A name that never resolves (RFC 6761 reserves `.invalid`).
const NO_SUCH_HOST: &str = "no-such-host.invalid";

/// What a client protocol saw.
type Events = Rc<RefCell<Vec<String>>>;

struct Client {
    events: Events,
}

impl Protocol for Client {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.events.borrow_mut().push(format!("made {:?}", cx.id()));
        cx.write(b"ping\n");
    }

    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        self.events
            .borrow_mut()
            .push(format!("got {}", text.trim_end()));
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, _: Reason) {
        self.events.borrow_mut().push("lost".into());
    }

    fn connection_failed(&mut self, _: &mut Context<'_>, e: io::Error) {
        let what = match ResolveError::of(&e) {
            Some(r) => format!("failed to resolve {}", r.host()),
            None => format!("failed {:?}", e.kind()),
        };
        self.events.borrow_mut().push(what);
    }
}

fn client(events: &Events) -> Client {
    Client {
        events: events.clone(),
    }
}

fn taken(events: &Events) -> Vec<String> {
    std::mem::take(&mut *events.borrow_mut())
}

/// Answers every read with "pong".
#[derive(Clone)]
struct Pong;

impl Protocol for Pong {
    fn data_received(&mut self, cx: &mut Context<'_>, _: &[u8]) {
        cx.write(b"pong\n");
    }
}

// ----- over loopback -----

#[test]
fn localhost_resolves_on_the_pool_and_connects() {
    let mut r = Reactor::new().unwrap();
    let port = listen(&mut r, Pong).port();
    let events = Events::default();
    r.connect_host("localhost", port, client(&events));
    assert!(events.borrow().is_empty(), "no callback inside the call");
    assert_eq!(r.pending_jobs(), 1, "the resolution runs on the pool");
    run_until(&mut r, |_| events.borrow().iter().any(|e| e == "got pong"));
    let seen = taken(&events);
    assert!(seen[0].starts_with("made "), "{seen:?}");
    assert_eq!(seen[1..], ["got pong"]);
}

#[test]
fn a_name_that_does_not_resolve_fails_with_a_resolve_error() {
    let mut r = Reactor::new().unwrap();
    let events = Events::default();
    r.connect_host(NO_SUCH_HOST, 7, client(&events));
    run_until(&mut r, |_| !events.borrow().is_empty());
    assert_eq!(
        taken(&events),
        [format!("failed to resolve {NO_SUCH_HOST}")]
    );
}

/// The error itself: kind `NotFound`, the name and the port inside.
#[test]
fn the_resolve_error_names_the_host_and_port() {
    let mut r = Reactor::new().unwrap();
    let got: Rc<RefCell<Option<io::Error>>> = Rc::default();
    struct Keep(Rc<RefCell<Option<io::Error>>>);
    impl Protocol for Keep {
        fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
        fn connection_failed(&mut self, _: &mut Context<'_>, e: io::Error) {
            *self.0.borrow_mut() = Some(e);
        }
    }
    r.connect_host(NO_SUCH_HOST, 4242, Keep(got.clone()));
    run_until(&mut r, |_| got.borrow().is_some());
    let e = got.borrow_mut().take().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    let inner = ResolveError::of(&e).expect("a resolve error inside");
    assert_eq!((inner.host(), inner.port()), (NO_SUCH_HOST, 4242));
    assert!(e
        .to_string()
        .starts_with(&format!("cannot resolve {NO_SUCH_HOST}: ")));
}

/// A refused connect to a name that resolves is an ordinary failure, not a
/// resolution failure.
#[test]
fn a_refused_connect_by_name_is_not_a_resolve_error() {
    let mut r = Reactor::new().unwrap();
    let events = Events::default();
    r.connect_host("localhost", refused_addr().port(), client(&events));
    run_until(&mut r, |_| !events.borrow().is_empty());
    assert_eq!(taken(&events), ["failed ConnectionRefused"]);
}

fn fast(builder: ClientServiceBuilder) -> ClientServiceBuilder {
    // Short delays keep the test quick; nothing depends on their length.
    builder.backoff(Backoff::constant(Duration::from_millis(20)))
}

#[test]
fn a_service_with_a_host_target_connects_once_the_server_listens() {
    let mut r = Reactor::new().unwrap();
    let addr = refused_addr();
    let events = Events::default();
    let log = events.clone();
    let retries: Rc<RefCell<Vec<String>>> = Rc::default();
    let seen_retry = retries.clone();
    let service = fast(ClientServiceBuilder::new())
        .on_retry(move |retry| {
            let what = match retry.cause {
                RetryCause::Failed(e) => format!("{:?}", e.kind()),
                _ => "lost".into(),
            };
            seen_retry.borrow_mut().push(what);
        })
        .start(&mut r, Target::host("localhost", addr.port()), move || {
            client(&log)
        });
    assert_eq!(service.state(), State::Resolving);
    run_until(&mut r, |_| service.failures() >= 2);
    assert!(retries.borrow().iter().all(|w| w == "ConnectionRefused"));

    let _listening = r
        .listen_tcp(addr, |_: &twistor::Addr| Some(Pong))
        .expect("listen on the client's port");
    run_until(&mut r, |_| events.borrow().iter().any(|e| e == "got pong"));
    let State::Connected(id) = service.state() else {
        panic!("{:?}", service.state())
    };
    assert_eq!(service.conn_id(), Some(id));
    assert!(events.borrow().contains(&format!("made {id:?}")));
    service.stop(&mut r);
    run_until(&mut r, |_| service.state() == State::Stopped);
}

#[test]
fn a_service_whose_name_does_not_resolve_retries_and_says_why() {
    let mut r = Reactor::new().unwrap();
    let events = Events::default();
    let log = events.clone();
    let service =
        fast(ClientServiceBuilder::new())
            .start(&mut r, Target::host(NO_SUCH_HOST, 7), move || client(&log));
    let why: Rc<RefCell<Option<String>>> = Rc::default();
    let keep = why.clone();
    service.when_connected(&mut r, Some(1), move |result| {
        let Err(NotConnected::Failed(e)) = result else {
            panic!("expected a failure")
        };
        *keep.borrow_mut() = ResolveError::of(&e).map(|r| r.host().to_owned());
    });
    run_until(&mut r, |_| service.failures() >= 2);
    assert_eq!(why.borrow().as_deref(), Some(NO_SUCH_HOST));
    let seen = events.borrow().clone();
    assert!(
        seen.iter()
            .all(|e| e == &format!("failed to resolve {NO_SUCH_HOST}")),
        "{seen:?}"
    );
    service.stop(&mut r);
    run_until(&mut r, |_| service.state() == State::Stopped);
}

// ----- under the testing kit -----

fn addrs() -> Vec<SocketAddr> {
    vec![
        "[::1]:7000".parse().unwrap(),
        "127.0.0.1:7000".parse().unwrap(),
    ]
}

/// A harness whose resolver knows `db.test` (two addresses) and nothing else.
fn harness() -> Harness<Pong> {
    let mut h = Harness::new(Pong);
    h.set_resolver(|host, _| match host {
        "db.test" => Ok(addrs()),
        _ => Err(io::Error::new(io::ErrorKind::NotFound, "unknown host")),
    });
    h
}

#[test]
fn the_kit_resolves_when_the_test_runs_the_jobs_then_tries_each_address_in_order() {
    let mut h = harness();
    let events = Events::default();
    h.connect_host("db.test", 7000, client(&events));
    assert!(h.connecting().is_empty(), "nothing before the resolution");
    assert_eq!(h.run_jobs(), 1);
    let first = h.connecting();
    assert_eq!(first.len(), 1, "one address at a time");
    h.refuse_connect(first[0], io::ErrorKind::ConnectionRefused.into());
    assert!(
        events.borrow().is_empty(),
        "a refused address is not reported"
    );
    let second = h.connecting();
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    h.complete_connect(second[0]);
    assert_eq!(taken(&events), [format!("made {:?}", second[0])]);
    assert_eq!(h.take_written_of(second[0]), b"ping\n");
}

#[test]
fn the_kit_reports_the_last_error_once_every_address_failed() {
    let mut h = harness();
    let events = Events::default();
    h.connect_host("db.test", 7000, client(&events));
    h.run_jobs();
    let first = h.connecting()[0];
    h.refuse_connect(first, io::ErrorKind::ConnectionRefused.into());
    let second = h.connecting()[0];
    h.refuse_connect(second, io::ErrorKind::TimedOut.into());
    assert_eq!(taken(&events), ["failed TimedOut"]);
    assert!(h.connecting().is_empty());
}

#[test]
fn the_kit_reports_a_resolver_error_as_a_resolve_error() {
    let mut h = harness();
    let events = Events::default();
    h.connect_host("elsewhere.test", 7000, client(&events));
    h.run_jobs();
    assert_eq!(taken(&events), ["failed to resolve elsewhere.test"]);
}

#[test]
fn a_resolution_cancelled_by_a_stop_fails_the_connect() {
    let mut h = harness();
    let events = Events::default();
    h.connect_host("db.test", 7000, client(&events));
    h.cancel_jobs();
    assert_eq!(taken(&events), ["failed Interrupted"]);
    assert!(h.connecting().is_empty());
}

fn service(h: &mut Harness<Pong>, events: &Events) -> ClientService<Client> {
    let log = events.clone();
    ClientServiceBuilder::new()
        .backoff(Backoff::client_service().jitter(Jitter::None))
        .start(h, Target::host("db.test", 7000), move || client(&log))
}

fn connecting(service: &ClientService<Client>) -> ConnId {
    match service.state() {
        State::Connecting(id) => id,
        other => panic!("not connecting: {other:?}"),
    }
}

/// Every address of one resolution is one attempt for the backoff; each retry
/// resolves again.
#[test]
fn a_service_tries_every_address_before_it_backs_off() {
    let mut h = harness();
    let events = Events::default();
    let service = service(&mut h, &events);
    assert_eq!(service.state(), State::Resolving);
    h.run_jobs();
    let first = connecting(&service);
    h.refuse_connect(first, io::ErrorKind::ConnectionRefused.into());
    let second = connecting(&service);
    assert_ne!(first, second);
    assert_eq!(service.failures(), 0);
    h.refuse_connect(second, io::ErrorKind::ConnectionRefused.into());
    assert_eq!(service.failures(), 1);
    assert!(matches!(service.state(), State::Waiting { .. }));
    assert_eq!(h.next_timer_in(), Some(Duration::from_secs(1)));
    assert_eq!(taken(&events), ["failed ConnectionRefused"]);

    h.advance(Duration::from_secs(1));
    assert_eq!(service.state(), State::Resolving);
    h.run_jobs();
    let again = connecting(&service);
    h.complete_connect(again);
    assert_eq!(service.state(), State::Connected(again));
    assert_eq!(service.conn_id(), Some(again));
    assert_eq!(taken(&events), [format!("made {again:?}")]);
}

#[test]
fn a_service_stopped_while_resolving_stops_and_connects_nowhere() {
    let mut h = harness();
    let events = Events::default();
    let service = service(&mut h, &events);
    service.stop(&mut h);
    assert_eq!(service.state(), State::Stopped);
    assert_eq!(taken(&events), ["failed Interrupted"]);
    h.run_jobs();
    assert!(h.connecting().is_empty());
    assert_eq!(h.next_timer_in(), None);
}

#[test]
fn a_service_stopped_while_trying_an_address_cancels_it() {
    let mut h = harness();
    let events = Events::default();
    let service = service(&mut h, &events);
    h.run_jobs();
    let first = connecting(&service);
    service.stop(&mut h);
    assert_eq!(service.state(), State::Stopped);
    assert!(!h.is_connecting_of(first));
    assert!(h.connecting().is_empty(), "the second address is not tried");
    assert_eq!(taken(&events), ["failed Interrupted"]);
}

/// A connection made by name is watched like any other: its loss is retried.
#[test]
fn a_service_connection_made_by_name_is_retried_when_lost() {
    let mut h = harness();
    let events = Events::default();
    let service = service(&mut h, &events);
    h.run_jobs();
    let id = connecting(&service);
    h.complete_connect(id);
    h.disconnect_of(id, Reason::Lost(io::ErrorKind::ConnectionReset.into()));
    assert!(matches!(service.state(), State::Waiting { .. }));
    assert_eq!(taken(&events), [format!("made {id:?}"), "lost".to_owned()]);
}
