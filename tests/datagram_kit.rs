//! Datagram protocols under the testing kit: the core's datagram path (rounds, the
//! too-large rule, panics, receive errors, closing) over memory sockets, relaying to
//! the harness's stream connections, and the same protocol run over UDP loopback and
//! on the kit, with the transcripts compared.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use common::{localhost, CLIENT_TIMEOUT, WATCHDOG};
use twistor::testing::Harness;
use twistor::{
    Addr, ConnId, Context, DatagramContext, DatagramId, DatagramProtocol, Protocol, Reactor,
    DEFAULT_MAX_DATAGRAM_BYTES,
};

/// What a datagram protocol saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Started,
    Datagram(Vec<u8>),
    TooLarge,
    Error(io::ErrorKind),
    Stopped,
}

type Log = Rc<RefCell<Vec<Seen>>>;

/// Records everything and echoes each datagram back upper-cased; panics on `boom`,
/// closes on `close`.
struct Upper(Log);

impl DatagramProtocol for Upper {
    fn started(&mut self, _: &mut DatagramContext<'_>) {
        self.0.borrow_mut().push(Seen::Started);
    }
    fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], from: &Addr) {
        self.0.borrow_mut().push(Seen::Datagram(data.to_vec()));
        assert_ne!(data, b"boom", "asked to panic");
        cx.send_to(&data.to_ascii_uppercase(), from).unwrap();
        if data == b"close" {
            cx.close();
        }
    }
    fn datagram_too_large(&mut self, _: &mut DatagramContext<'_>, _: &Addr) {
        self.0.borrow_mut().push(Seen::TooLarge);
    }
    fn error_received(&mut self, _: &mut DatagramContext<'_>, error: io::Error) {
        self.0.borrow_mut().push(Seen::Error(error.kind()));
    }
    fn stopped(&mut self, cx: &mut DatagramContext<'_>) {
        self.0.borrow_mut().push(Seen::Stopped);
        let late = cx.send_to(b"late", &peer(1)).unwrap_err();
        assert_eq!(late.kind(), io::ErrorKind::NotConnected, "closed: no sends");
    }
}

/// The harness's own (stream) protocol, which these tests do not use.
struct Quiet;

impl Protocol for Quiet {
    fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
}

fn peer(n: u16) -> Addr {
    Addr::Inet(SocketAddr::from(([127, 0, 0, 1], 4000 + n)))
}

fn kit_with(max: usize) -> (Harness<Quiet>, DatagramId, Log) {
    let mut h = Harness::new(Quiet);
    h.connect();
    let log = Log::default();
    let id = h.add_datagram_max(max, Upper(log.clone()));
    (h, id, log)
}

fn kit() -> (Harness<Quiet>, DatagramId, Log) {
    kit_with(DEFAULT_MAX_DATAGRAM_BYTES)
}

#[test]
fn echo_round_trip_with_destinations() {
    let (mut h, id, log) = kit();
    h.feed_datagram(id, b"hello", peer(1));
    h.feed_datagram(id, b"", peer(2));
    h.feed_datagram(id, b"a b c", peer(1));
    assert_eq!(
        h.take_sent_datagrams(id),
        [
            (b"HELLO".to_vec(), Some(peer(1))),
            (vec![], Some(peer(2))),
            (b"A B C".to_vec(), Some(peer(1))),
        ]
    );
    assert!(h.take_sent_datagrams(id).is_empty(), "taken");
    assert_eq!(
        *log.borrow(),
        [
            Seen::Started,
            Seen::Datagram(b"hello".to_vec()),
            Seen::Datagram(vec![]),
            Seen::Datagram(b"a b c".to_vec()),
        ]
    );
    assert!(h.is_datagram_open(id));
}

#[test]
fn a_datagram_over_the_maximum_is_reported_not_cut() {
    let (mut h, id, log) = kit_with(100);
    h.feed_datagram(id, &[b'x'; 101], peer(1));
    h.feed_datagram(id, &[b'y'; 100], peer(1));
    assert_eq!(
        log.borrow()[1..],
        [Seen::TooLarge, Seen::Datagram(vec![b'y'; 100])]
    );
    assert_eq!(
        h.take_sent_datagrams(id),
        [(vec![b'Y'; 100], Some(peer(1)))]
    );
}

#[test]
fn the_default_maximum_is_the_reactors() {
    let (mut h, id, log) = kit();
    let max = DEFAULT_MAX_DATAGRAM_BYTES;
    h.feed_datagram(id, &vec![b'a'; max + 1], peer(1));
    h.feed_datagram(id, &vec![b'a'; max], peer(1));
    assert_eq!(
        log.borrow()[1..],
        [Seen::TooLarge, Seen::Datagram(vec![b'a'; max])]
    );
    let mut seen = 0;
    assert!(h.call_datagram(id, |_: &mut Upper, cx| seen = cx.max_datagram_bytes()));
    assert_eq!(seen, max);
}

#[test]
fn a_panicking_callback_drops_that_datagram_only() {
    let (mut h, id, log) = kit();
    h.feed_datagram(id, b"boom", peer(1));
    h.feed_datagram(id, b"fine", peer(1));
    assert_eq!(
        h.take_sent_datagrams(id),
        [(b"FINE".to_vec(), Some(peer(1)))]
    );
    assert!(h.is_datagram_open(id), "the socket is still open");
    assert_eq!(log.borrow().len(), 3);
    assert!(h.is_open(), "the stream connection is untouched");
}

#[test]
fn close_inside_a_callback_then_stopped_once_and_later_datagrams_dropped() {
    let (mut h, id, log) = kit();
    h.feed_datagram(id, b"close", peer(1));
    assert!(!h.is_datagram_open(id));
    // The reply sent in the same callback, before the close took effect, went out.
    assert_eq!(
        h.take_sent_datagrams(id),
        [(b"CLOSE".to_vec(), Some(peer(1)))]
    );
    h.feed_datagram(id, b"after", peer(1));
    assert!(!h.close_datagram(id), "closed already");
    assert_eq!(
        *log.borrow(),
        [
            Seen::Started,
            Seen::Datagram(b"close".to_vec()),
            Seen::Stopped
        ]
    );
    assert!(
        h.datagram_protocol_of::<Upper>(id).is_some(),
        "kept after the close"
    );
    assert!(!h.call_datagram(id, |_: &mut Upper, _| unreachable!("closed")));
}

#[test]
fn close_from_outside_runs_stopped() {
    let (mut h, id, log) = kit();
    assert!(h.close_datagram(id));
    assert!(!h.close_datagram(id));
    assert_eq!(*log.borrow(), [Seen::Started, Seen::Stopped]);
}

#[test]
fn a_receive_error_reaches_error_received_in_order_and_the_socket_stays_open() {
    let (mut h, id, log) = kit();
    h.feed_datagram_error(id, io::ErrorKind::ConnectionRefused.into());
    h.feed_datagram(id, b"still here", peer(1));
    assert_eq!(
        log.borrow()[1..],
        [
            Seen::Error(io::ErrorKind::ConnectionRefused),
            Seen::Datagram(b"still here".to_vec())
        ]
    );
    assert!(h.is_datagram_open(id));
}

#[test]
fn many_datagrams_in_one_event_are_all_read_in_order_across_rounds() {
    // 200 is more than three rounds' budget: the rest of each round is carried over.
    let (mut h, id, log) = kit();
    let data: Vec<[u8; 4]> = (0..200u32).map(u32::to_be_bytes).collect();
    h.feed_datagrams(id, data.iter().map(|d| (&d[..], peer(1))));
    let got: Vec<u32> = log.borrow()[1..]
        .iter()
        .map(|s| match s {
            Seen::Datagram(d) => u32::from_be_bytes(d[..].try_into().unwrap()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    assert_eq!(h.take_sent_datagrams(id).len(), 200);
}

/// Connects to the first peer it hears from and answers with `send`.
struct Connected(Vec<Vec<u8>>);

impl DatagramProtocol for Connected {
    fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], from: &Addr) {
        self.0.push(data.to_vec());
        if self.0.len() > 1 {
            cx.send(data).unwrap();
            return;
        }
        assert!(cx.send(b"not yet").is_err(), "not connected yet");
        cx.connect(from).unwrap();
        cx.send(b"connected").unwrap();
        let wrong = cx.send_to(b"x", &Addr::Unix(Some("/nowhere".into())));
        assert_eq!(wrong.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}

#[test]
fn a_connected_socket_sends_to_its_peer_and_hears_only_from_it() {
    let mut h = Harness::new(Quiet);
    let id = h.add_datagram(Connected(Vec::new()));
    h.feed_datagram(id, b"first", peer(1));
    h.feed_datagram(id, b"stranger", peer(2));
    h.feed_datagram(id, b"again", peer(1));
    assert_eq!(
        h.take_sent_datagrams(id),
        [(b"connected".to_vec(), None), (b"again".to_vec(), None)]
    );
    assert_eq!(h.datagram_connected_to(id), Some(peer(1)));
    assert_eq!(
        h.datagram_protocol_of::<Connected>(id).unwrap().0,
        [b"first".to_vec(), b"again".to_vec()],
        "the stranger's datagram was dropped, as the kernel does"
    );
}

/// Relays each datagram to a stream connection of the same harness.
struct Relay {
    to: ConnId,
    relayed: Vec<bool>,
}

impl DatagramProtocol for Relay {
    fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], _: &Addr) {
        let ok = cx.conn(self.to).write(data);
        self.relayed.push(ok);
        if data == b"last" {
            cx.conn(self.to).lose_connection();
        }
    }
}

#[test]
fn a_datagram_is_relayed_to_a_stream_connection_of_the_same_harness() {
    let mut h = Harness::new(Quiet);
    h.connect();
    let stream = h.add_peer();
    let id = h.add_datagram(Relay {
        to: stream,
        relayed: Vec::new(),
    });
    h.feed_datagram(id, b"one ", peer(1));
    h.feed_datagram(id, b"two ", peer(2));
    h.feed_datagram(id, b"last", peer(1));
    assert_eq!(h.take_written_of(stream), b"one two last");
    assert!(
        h.lost_of(stream).is_some(),
        "the close took effect after the callback"
    );
    h.feed_datagram(id, b"gone", peer(1));
    assert_eq!(
        h.datagram_protocol_of::<Relay>(id).unwrap().relayed,
        [true, true, true, false]
    );
}

#[test]
fn stop_reactor_from_a_datagram_protocol_is_recorded() {
    let mut h = Harness::new(Quiet);
    let id = h.add_datagram(Upper(Log::default()));
    assert!(h.call_datagram(id, |_: &mut Upper, cx| cx.stop_reactor()));
    assert!(h.stop_requested());
}

#[test]
#[should_panic(expected = "not a datagram socket of this harness")]
fn a_datagram_id_from_elsewhere_is_refused() {
    let mut other = Harness::new(Quiet);
    let _ = other.add_datagram(Upper(Log::default()));
    let foreign = other.add_datagram(Upper(Log::default()));
    let mut h = Harness::new(Quiet);
    h.feed_datagram(foreign, b"x", peer(1));
}

// ----- the same protocol over UDP loopback and on the kit -----

/// A command protocol whose replies and log depend only on the datagrams it gets:
/// what the transcript comparison runs both ways.
struct Script {
    events: Rc<RefCell<Vec<String>>>,
    /// Connected (by `connect`): replies go with `send`.
    connected: bool,
}

impl Script {
    fn new(events: &Rc<RefCell<Vec<String>>>) -> Script {
        Script {
            events: Rc::clone(events),
            connected: false,
        }
    }

    fn log(&self, event: String) {
        self.events.borrow_mut().push(event);
    }
}

impl DatagramProtocol for Script {
    fn started(&mut self, cx: &mut DatagramContext<'_>) {
        self.log(format!("started, max {}", cx.max_datagram_bytes()));
    }

    fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], from: &Addr) {
        let text = String::from_utf8_lossy(data).into_owned();
        self.log(format!("got {text:?}"));
        let (cmd, arg) = text.split_once(' ').unwrap_or((&text, ""));
        let connected = self.connected;
        let reply = |cx: &mut DatagramContext<'_>, what: &[u8]| {
            if connected {
                cx.send(what)
            } else {
                cx.send_to(what, from)
            }
        };
        let sent = match cmd {
            "" => reply(cx, b"empty"),
            "echo" => reply(cx, arg.as_bytes()),
            "upper" => reply(cx, arg.to_uppercase().as_bytes()),
            "twice" => reply(cx, arg.as_bytes()).and_then(|()| reply(cx, arg.as_bytes())),
            "max" => reply(cx, cx.max_datagram_bytes().to_string().as_bytes()),
            "boom" => panic!("asked to panic"),
            "connect" => {
                cx.connect(from).unwrap();
                self.connected = true;
                cx.send(b"connected")
            }
            "close" => {
                let bye = reply(cx, b"bye");
                cx.close();
                let late = cx.send_to(b"late", from).unwrap_err();
                self.log(format!("send after close: {:?}", late.kind()));
                bye
            }
            _ => reply(cx, b"?"),
        };
        if let Err(e) = sent {
            self.log(format!("send failed: {:?}", e.kind()));
        }
    }

    fn datagram_too_large(&mut self, cx: &mut DatagramContext<'_>, from: &Addr) {
        self.log("too large".into());
        cx.send_to(b"too large", from).unwrap();
    }

    fn error_received(&mut self, _: &mut DatagramContext<'_>, error: io::Error) {
        self.log(format!("error {:?}", error.kind()));
    }

    fn stopped(&mut self, cx: &mut DatagramContext<'_>) {
        self.log(format!(
            "stopped, local address gone: {}",
            cx.local_addr().is_none()
        ));
    }
}

/// The largest datagram the script's socket takes, on both runs.
const SCRIPT_MAX: usize = 16;

/// One of the two peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    A,
    B,
}

/// What the peers do, in order.
enum Step {
    /// The peer sends a datagram.
    Send(Who, &'static [u8]),
    /// The peer waits for this reply (reading and keeping every reply before it):
    /// orders the loopback run where the kernel would otherwise race.
    Wait(Who, &'static [u8]),
}

/// The protocol's log, and the replies each peer got, in order.
type Transcript = (Vec<String>, HashMap<Who, Vec<Vec<u8>>>);

fn on_kit(steps: &[Step]) -> Transcript {
    let events = Rc::new(RefCell::new(Vec::new()));
    let mut h = Harness::new(Quiet);
    let id = h.add_datagram_max(SCRIPT_MAX, Script::new(&events));
    let addr = |who| match who {
        Who::A => peer(1),
        Who::B => peer(2),
    };
    let mut replies: HashMap<Who, Vec<Vec<u8>>> = HashMap::new();
    for step in steps {
        if let Step::Send(who, data) = step {
            h.feed_datagram(id, data, addr(*who));
        }
        let connected = h.datagram_connected_to(id);
        for (data, to) in h.take_sent_datagrams(id) {
            let to = to.or_else(|| connected.clone()).expect("sent somewhere");
            let who = if to == addr(Who::A) { Who::A } else { Who::B };
            replies.entry(who).or_default().push(data);
        }
    }
    assert!(!h.is_datagram_open(id), "the script ends with a close");
    (events.take(), replies)
}

fn over_loopback(steps: &'static [Step]) -> Transcript {
    let events = Rc::new(RefCell::new(Vec::new()));
    let mut reactor = Reactor::new().unwrap();
    let id = reactor
        .listen_udp_max(localhost(), SCRIPT_MAX, Script::new(&events))
        .unwrap();
    let server = reactor.datagram_addr(id).unwrap().inet().unwrap();
    let peers = thread::spawn(move || -> io::Result<HashMap<Who, Vec<Vec<u8>>>> {
        let mut sockets = HashMap::new();
        for who in [Who::A, Who::B] {
            let s = UdpSocket::bind(localhost())?;
            s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
            sockets.insert(who, s);
        }
        let mut replies: HashMap<Who, Vec<Vec<u8>>> = HashMap::new();
        for step in steps {
            match step {
                Step::Send(who, data) => {
                    sockets[who].send_to(data, server)?;
                }
                Step::Wait(who, until) => loop {
                    let mut buf = [0; 64];
                    let (n, from) = sockets[who].recv_from(&mut buf)?;
                    assert_eq!(from, server);
                    replies.entry(*who).or_default().push(buf[..n].to_vec());
                    if &buf[..n] == *until {
                        break;
                    }
                },
            }
        }
        Ok(replies)
    });
    let deadline = Instant::now() + WATCHDOG;
    while !events.borrow().iter().any(|e| e.starts_with("stopped")) || !peers.is_finished() {
        assert!(Instant::now() < deadline, "loopback run hung: {events:?}");
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    let replies = peers.join().unwrap().expect("peer I/O");
    (events.take(), replies)
}

/// Runs `steps` over UDP loopback and on the kit; asserts both transcripts are the
/// same and are `expect`.
fn check_same_both_ways(steps: &'static [Step], expect: (&[&str], &[&[u8]], &[&[u8]])) {
    let real = over_loopback(steps);
    let kit = on_kit(steps);
    let replies = |t: &Transcript, who| t.1.get(&who).cloned().unwrap_or_default();
    let events: Vec<&str> = real.0.iter().map(String::as_str).collect();
    assert_eq!(
        (&events[..], replies(&real, Who::A), replies(&real, Who::B)),
        (
            expect.0,
            expect.1.iter().map(|r| r.to_vec()).collect(),
            expect.2.iter().map(|r| r.to_vec()).collect()
        ),
        "loopback transcript"
    );
    assert_eq!(kit, real, "kit vs loopback");
}

#[test]
fn same_transcript_over_udp_loopback_and_on_the_kit() {
    const STEPS: &[Step] = &[
        Step::Send(Who::A, b"echo one"),
        Step::Send(Who::B, b"upper two"),
        Step::Send(Who::A, b""),
        Step::Send(Who::A, b"xxxxxxxxxxxxxxxxx"), // 17 bytes: over the maximum
        Step::Send(Who::B, b"yyyyyyyyyyyyyyyy"),  // 16: fits
        Step::Send(Who::A, b"boom"),
        Step::Send(Who::A, b"max"),
        Step::Send(Who::B, b"twice hi"),
        Step::Send(Who::B, b"echo end"),
        Step::Send(Who::A, b"close"),
        Step::Send(Who::A, b"echo lost"),
        Step::Wait(Who::A, b"bye"),
        Step::Wait(Who::B, b"end"),
    ];
    check_same_both_ways(
        STEPS,
        (
            &[
                "started, max 16",
                "got \"echo one\"",
                "got \"upper two\"",
                "got \"\"",
                "too large",
                "got \"yyyyyyyyyyyyyyyy\"",
                "got \"boom\"",
                "got \"max\"",
                "got \"twice hi\"",
                "got \"echo end\"",
                "got \"close\"",
                "send after close: NotConnected",
                "stopped, local address gone: true",
            ],
            &[b"one", b"empty", b"too large", b"16", b"bye"],
            &[b"TWO", b"?", b"hi", b"hi", b"end"],
        ),
    );
}

#[test]
fn same_transcript_with_a_connected_socket() {
    const STEPS: &[Step] = &[
        Step::Send(Who::A, b"connect"),
        Step::Wait(Who::A, b"connected"),
        // Once connected to A, the socket hears nothing from B.
        Step::Send(Who::B, b"echo dropped"),
        Step::Send(Who::A, b"echo a"),
        Step::Wait(Who::A, b"a"),
        Step::Send(Who::A, b"close"),
        Step::Wait(Who::A, b"bye"),
    ];
    check_same_both_ways(
        STEPS,
        (
            &[
                "started, max 16",
                "got \"connect\"",
                "got \"echo a\"",
                "got \"close\"",
                "send after close: NotConnected",
                "stopped, local address gone: true",
            ],
            &[b"connected", b"a", b"bye"],
            &[],
        ),
    );
}
