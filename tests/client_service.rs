//! The reconnecting client service under the testing kit: the test decides each
//! connect's outcome and runs the retries on the manual clock, with a seeded jitter
//! source, so every delay is asserted exactly.

use std::cell::RefCell;
use std::f64::consts::E;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use twistor::backoff::{Backoff, Jitter, Rng};
use twistor::client::{ClientService, ClientServiceBuilder, NotConnected, State};
use twistor::testing::{Harness, HarnessBuilder};
use twistor::{ConnId, Context, Protocol, Reason};

/// What the protocols of one service saw, in order, each tagged with its attempt
/// number (the factory's count).
type Events = Rc<RefCell<Vec<String>>>;

struct Probe {
    n: u32,
    events: Events,
}

impl Probe {
    fn log(&self, what: String) {
        self.events.borrow_mut().push(format!("{} {what}", self.n));
    }
}

impl Protocol for Probe {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.log("made".into());
        cx.write(format!("hello from {}\n", self.n).as_bytes());
    }

    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        self.log(format!("data {}", String::from_utf8_lossy(data)));
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        // The variant's name only: "Done", "Lost", ...
        let name = format!("{reason:?}");
        self.log(format!(
            "lost {}",
            name.split('(').next().unwrap_or_default()
        ));
    }

    fn connection_failed(&mut self, _: &mut Context<'_>, error: io::Error) {
        self.log(format!("failed {:?}", error.kind()));
    }
}

/// The harness's own connection is not used: the service's connections are others.
struct Unused;

impl Protocol for Unused {
    fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
}

fn target() -> SocketAddr {
    "127.0.0.1:7000".parse().unwrap()
}

/// A harness and a service on it with `builder`, and what its protocols see.
fn start(builder: ClientServiceBuilder) -> (Harness<Unused>, ClientService<Probe>, Events) {
    start_on(Harness::new(Unused), builder)
}

fn start_on(
    mut h: Harness<Unused>,
    builder: ClientServiceBuilder,
) -> (Harness<Unused>, ClientService<Probe>, Events) {
    let events = Events::default();
    let log = events.clone();
    let mut n = 0;
    let client = builder.start(&mut h, target(), move || {
        n += 1;
        Probe {
            n,
            events: log.clone(),
        }
    });
    (h, client, events)
}

fn no_jitter(policy: Backoff) -> ClientServiceBuilder {
    ClientServiceBuilder::new().backoff(policy.jitter(Jitter::None))
}

fn connecting(client: &ClientService<Probe>) -> ConnId {
    match client.state() {
        State::Connecting(id) => id,
        other => panic!("not connecting: {other:?}"),
    }
}

fn refused() -> io::Error {
    io::ErrorKind::ConnectionRefused.into()
}

/// Refuses the connect in progress; returns the delay until the retry, and runs it.
fn refuse_and_wait(h: &mut Harness<Unused>, client: &ClientService<Probe>) -> Duration {
    h.refuse_connect(connecting(client), refused());
    let State::Waiting { until } = client.state() else {
        panic!("not waiting: {:?}", client.state());
    };
    let delay = until - h.now();
    assert_eq!(h.next_timer_in(), Some(delay));
    h.advance(delay);
    delay
}

fn reset() -> io::Error {
    io::ErrorKind::ConnectionReset.into()
}

fn taken(events: &Events) -> Vec<String> {
    std::mem::take(&mut *events.borrow_mut())
}

#[test]
fn the_twisted_factory_preset_without_jitter_waits_one_then_powers_of_e() {
    let (mut h, client, events) = start(no_jitter(Backoff::reconnecting_client_factory()));
    let got: Vec<f64> = (0..11)
        .map(|_| refuse_and_wait(&mut h, &client).as_secs_f64())
        .collect();
    let mut want: Vec<f64> = (0..9).map(|n| E.powi(n)).collect();
    want.extend([3600.0, 3600.0]);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
    }
    // A fresh protocol per attempt, each told once.
    let seen = taken(&events);
    assert_eq!(seen.len(), 11);
    assert_eq!(seen[0], "1 failed ConnectionRefused");
    assert_eq!(seen[10], "11 failed ConnectionRefused");
    assert_eq!(client.failures(), 11);
}

#[test]
fn the_default_policy_with_a_seeded_source_gives_exactly_its_sequence() {
    let builder = ClientServiceBuilder::new().seed(42);
    let (mut h, client, _) = start(builder);
    let got: Vec<Duration> = (0..12).map(|_| refuse_and_wait(&mut h, &client)).collect();
    let want: Vec<Duration> = Backoff::client_service()
        .delays(Rng::seeded(42))
        .take(12)
        .collect();
    assert_eq!(got, want);
    assert!(got[0] >= Duration::from_secs(1) && got[0] < Duration::from_secs(2));
}

/// graphite-carbon #102/#110, pymodbus #266: the delay must reset after a good
/// connection, or it stays at its maximum for ever.
#[test]
fn a_good_connection_resets_the_delay() {
    let (mut h, client, events) = start(no_jitter(Backoff::client_service()));
    let delays: Vec<f64> = (0..3)
        .map(|_| refuse_and_wait(&mut h, &client).as_secs_f64())
        .collect();
    assert_eq!(delays, [1.0, 1.5, 2.25]);

    let id = connecting(&client);
    h.complete_connect(id);
    assert_eq!(client.state(), State::Connected(id));
    assert_eq!(client.conn_id(), Some(id));
    assert_eq!(client.failures(), 0);
    assert_eq!(h.take_written_of(id), b"hello from 4\n");
    h.feed_of(id, b"welcome");

    h.disconnect_of(id, Reason::Lost(reset()));
    let State::Waiting { until } = client.state() else {
        panic!("{:?}", client.state())
    };
    assert_eq!(
        until - h.now(),
        Duration::from_secs(1),
        "reset to the initial delay"
    );
    assert_eq!(
        taken(&events)[3..],
        ["4 made", "4 data welcome", "4 lost Lost"]
    );

    // The next connection is a fresh protocol that sees its own connection_made.
    h.advance(Duration::from_secs(1));
    let again = connecting(&client);
    assert_ne!(again, id);
    h.complete_connect(again);
    assert_eq!(taken(&events), ["5 made"]);
    assert_eq!(h.take_written_of(again), b"hello from 5\n");
}

#[test]
fn with_reset_after_a_connection_must_stay_up_to_reset_the_delay() {
    let builder = no_jitter(Backoff::client_service()).reset_after(Duration::from_secs(10));
    let (mut h, client, _) = start(builder);
    assert_eq!(refuse_and_wait(&mut h, &client), Duration::from_secs(1));

    // Up for 9 s only: the next delay goes on growing.
    let id = connecting(&client);
    h.complete_connect(id);
    h.advance(Duration::from_secs(9));
    h.disconnect_of(id, Reason::Lost(reset()));
    assert_eq!(h.next_timer_in(), Some(Duration::from_secs_f64(1.5)));
    h.advance(Duration::from_secs_f64(1.5));

    // Up for 10 s: reset.
    let id = connecting(&client);
    h.complete_connect(id);
    h.advance(Duration::from_secs(10));
    assert_eq!(client.retries(), 0);
    h.disconnect_of(id, Reason::Lost(reset()));
    assert_eq!(h.next_timer_in(), Some(Duration::from_secs(1)));
}

#[test]
fn max_retries_gives_up_and_leaves_nothing_scheduled() {
    let policy = Backoff::reconnecting_client_factory().max_retries(Some(2));
    let (mut h, client, events) = start(no_jitter(policy));
    let failed: Rc<RefCell<Option<NotConnected>>> = Rc::default();
    let f = failed.clone();
    client.when_connected(&mut h, None, move |r| {
        *f.borrow_mut() = r.err();
    });
    refuse_and_wait(&mut h, &client);
    refuse_and_wait(&mut h, &client);
    h.refuse_connect(connecting(&client), refused()); // the third attempt, second retry
    assert_eq!(client.state(), State::Stopped);
    assert_eq!(taken(&events).len(), 3);
    h.assert_clean();
    let outcome = failed.borrow_mut().take();
    match outcome {
        Some(NotConnected::GaveUp(Some(e))) => {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stop_during_a_wait_cancels_the_retry() {
    let (mut h, client, events) = start(no_jitter(Backoff::client_service()));
    h.refuse_connect(connecting(&client), refused());
    assert!(matches!(client.state(), State::Waiting { .. }));
    let failed: Rc<RefCell<Option<NotConnected>>> = Rc::default();
    let f = failed.clone();
    client.when_connected(&mut h, None, move |r| *f.borrow_mut() = r.err());

    client.stop(&mut h);
    assert_eq!(client.state(), State::Stopped);
    assert!(matches!(*failed.borrow(), Some(NotConnected::Stopped)));
    h.assert_clean();
    h.advance(Duration::from_secs(3600));
    assert_eq!(taken(&events), ["1 failed ConnectionRefused"]);
}

#[test]
fn stop_during_a_connect_cancels_it() {
    let (mut h, client, events) = start(no_jitter(Backoff::client_service()));
    let id = connecting(&client);
    client.stop(&mut h);
    assert_eq!(client.state(), State::Stopped);
    assert!(!h.is_connecting_of(id));
    assert_eq!(taken(&events), ["1 failed Interrupted"]);
    h.assert_clean();
}

#[test]
fn stop_during_a_connection_closes_it_gracefully() {
    let (mut h, client, events) = start(no_jitter(Backoff::client_service()));
    let id = connecting(&client);
    h.complete_connect(id);
    h.set_peer_window_of(id, Some(0)); // the greeting waits in the queue
    h.call_of(id, |_: &mut Probe, cx| {
        cx.write(b"last words\n");
    });
    client.stop(&mut h);
    assert_eq!(client.state(), State::Stopping);
    h.peer_reads_of(id, 1000); // the queue drains, then the close completes
    assert_eq!(h.take_written_of(id), b"hello from 1\nlast words\n");
    assert_eq!(client.state(), State::Stopped);
    assert_eq!(taken(&events), ["1 made", "1 lost Done"]);
    h.assert_clean();
}

#[test]
fn when_connected_runs_on_the_live_connection_or_the_next_one() {
    let (mut h, client, events) = start(no_jitter(Backoff::client_service()));
    // Before a connection: runs after the next connection_made.
    client.when_connected(&mut h, None, |r| {
        let (p, cx) = r.expect("connected");
        p.log("ready".into());
        cx.write(b"first\n");
    });
    refuse_and_wait(&mut h, &client);
    let id = connecting(&client);
    h.complete_connect(id);
    assert_eq!(
        taken(&events),
        ["1 failed ConnectionRefused", "2 made", "2 ready"]
    );
    // While connected: runs now.
    client.when_connected(&mut h, Some(1), |r| {
        let (p, cx) = r.expect("connected");
        p.log("now".into());
        cx.write(b"second\n");
    });
    assert_eq!(taken(&events), ["2 now"]);
    assert_eq!(h.take_written_of(id), b"hello from 2\nfirst\nsecond\n");
}

#[test]
fn when_connected_with_fail_after_gives_up_after_that_many_failures() {
    let (mut h, client, _) = start(no_jitter(Backoff::client_service()));
    let outcomes: Rc<RefCell<Vec<String>>> = Rc::default();
    for (name, fail_after) in [("one", Some(1)), ("two", Some(2)), ("none", None)] {
        let o = outcomes.clone();
        client.when_connected(&mut h, fail_after, move |r| {
            let what = match r {
                Ok((p, _)) => format!("{name}: connected to {}", p.n),
                Err(NotConnected::Failed(e)) => format!("{name}: {:?}", e.kind()),
                Err(e) => format!("{name}: {e}"),
            };
            o.borrow_mut().push(what);
        });
    }
    refuse_and_wait(&mut h, &client);
    assert_eq!(*outcomes.borrow(), ["one: ConnectionRefused"]);
    h.refuse_connect(connecting(&client), io::ErrorKind::TimedOut.into());
    assert_eq!(
        *outcomes.borrow(),
        ["one: ConnectionRefused", "two: TimedOut"]
    );
    let wait = h.next_timer_in().unwrap();
    h.advance(wait);
    h.complete_connect(connecting(&client));
    assert_eq!(outcomes.borrow()[2], "none: connected to 3");
}

#[test]
fn when_connected_after_stop_fails_at_once() {
    let (mut h, client, _) = start(no_jitter(Backoff::client_service()));
    client.stop(&mut h);
    let failed = Rc::new(RefCell::new(false));
    let f = failed.clone();
    client.when_connected(&mut h, None, move |r| {
        *f.borrow_mut() = matches!(r, Err(NotConnected::Stopped));
    });
    assert!(*failed.borrow());
}

/// The protocol in the connection is the factory's own: typed callbacks and
/// `call_of::<Probe>` reach it.
#[test]
fn the_protocol_is_not_wrapped() {
    let (mut h, client, events) = start(no_jitter(Backoff::client_service()));
    let id = connecting(&client);
    h.complete_connect(id);
    h.call_of(id, |_: &mut Probe, cx| {
        cx.call_later(Duration::from_secs(2), |p: &mut Probe, _| {
            p.log("typed timer".into())
        });
    });
    h.advance(Duration::from_secs(2));
    assert_eq!(taken(&events), ["1 made", "1 typed timer"]);
    assert_eq!(h.protocol_of::<Probe>(id).map(|p| p.n), Some(1));
}

#[test]
fn a_connect_timeout_is_a_failed_attempt() {
    let builder =
        no_jitter(Backoff::client_service()).connect_timeout(Some(Duration::from_secs(5)));
    let (mut h, client, events) = start(builder);
    h.advance(Duration::from_secs(5));
    assert_eq!(taken(&events), ["1 failed TimedOut"]);
    assert_eq!(h.next_timer_in(), Some(Duration::from_secs(1)));
    assert_eq!(client.failures(), 1);
}

/// The harness builder's connect timeout is the service's default, as the reactor's
/// builder's is.
#[test]
fn the_network_connect_timeout_is_the_default() {
    let settings = twistor::Reactor::builder().connect_timeout(Some(Duration::from_secs(3)));
    let h = HarnessBuilder::from(settings).build(Unused);
    let (mut h, _client, events) = start_on(h, no_jitter(Backoff::client_service()));
    h.advance(Duration::from_secs(3));
    assert_eq!(taken(&events), ["1 failed TimedOut"]);
}

/// A connection lost while the reactor is stopping is not retried.
#[test]
fn no_retry_while_the_reactor_stops() {
    let (mut h, client, _) = start(no_jitter(Backoff::client_service()));
    let id = connecting(&client);
    h.complete_connect(id);
    h.call_of(id, |_: &mut Probe, cx| cx.stop_reactor());
    h.disconnect_of(id, Reason::Lost(reset()));
    assert_eq!(client.state(), State::Stopped);
    h.assert_clean();
}

// ----- from inside a protocol callback (a `Context` is a `Network`) -----

/// The service a protocol reaches from its callbacks.
type Slot = Rc<RefCell<Option<ClientService<Ctl>>>>;

/// A protocol that drives the service from its callbacks, on commands fed to it:
/// `stop` calls `stop(cx)`, `stop later` does it from a timer callback, `when`
/// registers a `when_connected` callback that writes on the live connection.
struct Ctl {
    n: u32,
    service: Slot,
    events: Events,
}

impl Ctl {
    fn log(&self, what: String) {
        self.events.borrow_mut().push(format!("{} {what}", self.n));
    }

    fn service(&self) -> ClientService<Ctl> {
        self.service
            .borrow()
            .clone()
            .expect("the service is started")
    }
}

impl Protocol for Ctl {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        self.log("made".into());
        cx.write(format!("hello from {}\n", self.n).as_bytes());
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        let service = self.service();
        match data {
            b"stop" => {
                cx.write(b"bye\n");
                service.stop(cx);
                self.log(format!("stop: {:?}", service.state()));
            }
            b"stop later" => {
                cx.call_later(Duration::from_secs(1), |p: &mut Ctl, cx| {
                    p.service().stop(cx);
                    p.log("stopped from a timer".into());
                });
            }
            b"when" => {
                // Never run inside this callback: "registered" is logged first.
                service.when_connected(cx, None, move |r| {
                    let (p, cx) = r.expect("connected");
                    p.log("ready".into());
                    cx.write(b"from when_connected\n");
                });
                self.log("registered".into());
            }
            other => self.log(format!("data {}", String::from_utf8_lossy(other))),
        }
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        let name = format!("{reason:?}");
        self.log(format!(
            "lost {}",
            name.split('(').next().unwrap_or_default()
        ));
    }

    fn connection_failed(&mut self, _: &mut Context<'_>, error: io::Error) {
        self.log(format!("failed {:?}", error.kind()));
    }
}

/// A harness whose own connection is a `Ctl` numbered 0 (made), and a service of
/// `Ctl`s on it, which both reach through the slot.
fn start_ctl() -> (Harness<Ctl>, ClientService<Ctl>, Events) {
    let events = Events::default();
    let slot = Slot::default();
    let mut h = Harness::new(Ctl {
        n: 0,
        service: slot.clone(),
        events: events.clone(),
    });
    h.connect();
    let (log, s) = (events.clone(), slot.clone());
    let mut n = 0;
    let client = no_jitter(Backoff::client_service()).start(&mut h, target(), move || {
        n += 1;
        Ctl {
            n,
            service: s.clone(),
            events: log.clone(),
        }
    });
    *slot.borrow_mut() = Some(client.clone());
    taken(&events); // "0 made"
    (h, client, events)
}

fn connecting_ctl(client: &ClientService<Ctl>) -> ConnId {
    match client.state() {
        State::Connecting(id) => id,
        other => panic!("not connecting: {other:?}"),
    }
}

#[test]
fn stop_from_the_live_connections_data_received_closes_it_gracefully() {
    let (mut h, client, events) = start_ctl();
    let id = connecting_ctl(&client);
    h.complete_connect(id);
    h.feed_of(id, b"stop");
    // Inside the callback the service was stopping; the close came once it returned,
    // after what it wrote.
    assert_eq!(
        taken(&events),
        ["1 made", "1 stop: Stopping", "1 lost Done"]
    );
    assert_eq!(h.take_written_of(id), b"hello from 1\nbye\n");
    assert_eq!(client.state(), State::Stopped);
    assert_eq!(h.next_timer_in(), None, "no retry scheduled");
    h.advance(Duration::from_secs(3600));
    assert!(h.connecting().is_empty());
    assert!(taken(&events).is_empty());
}

#[test]
fn stop_from_a_timer_callback_and_from_another_connection() {
    // From a timer callback of the live connection.
    let (mut h, client, events) = start_ctl();
    let id = connecting_ctl(&client);
    h.complete_connect(id);
    h.feed_of(id, b"stop later");
    h.advance(Duration::from_secs(1));
    assert_eq!(
        taken(&events),
        ["1 made", "1 stopped from a timer", "1 lost Done"]
    );
    assert_eq!(client.state(), State::Stopped);
    assert_eq!(h.next_timer_in(), None);

    // From another connection's callback, during a wait: the retry is cancelled.
    let (mut h, client, events) = start_ctl();
    h.refuse_connect(connecting_ctl(&client), refused());
    assert!(matches!(client.state(), State::Waiting { .. }));
    h.feed(b"stop");
    assert_eq!(
        taken(&events),
        ["1 failed ConnectionRefused", "0 stop: Stopped"]
    );
    assert_eq!(h.next_timer_in(), None, "the retry is cancelled");
    assert!(h.is_open(), "the other connection is not the service's");
}

#[test]
fn when_connected_from_inside_a_callback_runs_after_it() {
    let (mut h, client, events) = start_ctl();
    // From another connection's callback while connecting: after the next
    // connection_made.
    h.feed(b"when");
    let id = connecting_ctl(&client);
    h.complete_connect(id);
    assert_eq!(taken(&events), ["0 registered", "1 made", "1 ready"]);

    // From another connection's callback while connected: at the next turn.
    h.feed(b"when");
    assert_eq!(taken(&events), ["0 registered"]);
    h.advance(Duration::ZERO);
    assert_eq!(taken(&events), ["1 ready"]);

    // From the live connection's own callback: at the next turn too.
    h.feed_of(id, b"when");
    assert_eq!(taken(&events), ["1 registered"]);
    h.advance(Duration::ZERO);
    assert_eq!(taken(&events), ["1 ready"]);
    assert_eq!(
        h.take_written_of(id),
        b"hello from 1\nfrom when_connected\nfrom when_connected\nfrom when_connected\n"
    );

    // Registered, then the connection is lost before the next turn: the callback
    // waits for the next connection.
    h.feed(b"when");
    h.disconnect_of(id, Reason::Lost(reset()));
    h.advance(Duration::ZERO);
    assert_eq!(taken(&events), ["0 registered", "1 lost Lost"]);
    h.advance(Duration::from_secs(1));
    let second = connecting_ctl(&client);
    h.complete_connect(second);
    assert_eq!(taken(&events), ["2 made", "2 ready"]);
    assert_eq!(
        h.take_written_of(second),
        b"hello from 2\nfrom when_connected\n"
    );

    client.stop(&mut h);
    h.assert_clean();
}
