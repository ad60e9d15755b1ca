//! Driving a reactor from another event loop: its file descriptor, the time until
//! its next turn is due (`Reactor::next_timeout`), and the `embed` example (a 60 Hz
//! frame loop that serves a line echo) as a process.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::example::serve;
use common::{listen, localhost, CLIENT_TIMEOUT, WATCHDOG};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use twistor::{Context, Protocol, Reactor};

#[derive(Clone)]
struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        cx.write(data);
    }
}

#[test]
fn next_timeout_is_none_with_nothing_to_do_and_the_next_timer_otherwise() {
    let mut r = Reactor::new().unwrap();
    assert_eq!(r.next_timeout(), None);
    let far = r.call_later(Duration::from_secs(3600), |_| {});
    let wait = r.next_timeout().expect("a timer is pending");
    assert!(
        wait <= Duration::from_secs(3600) && !wait.is_zero(),
        "{wait:?}"
    );
    r.cancel_timer(far);
    assert_eq!(r.next_timeout(), None);
}

/// Work carried over (here a write made between turns, and a stop to begin) makes
/// the next turn due at once: a host loop must not wait on the descriptor for it.
#[test]
fn next_timeout_is_zero_when_work_is_carried_over() {
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Echo);
    let id = r.connect_tcp(addr, Echo);
    let deadline = Instant::now() + WATCHDOG;
    while !r.conn(id).is_open() {
        assert!(Instant::now() < deadline, "watchdog: no connection");
        r.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    r.run_once(Some(Duration::ZERO)).unwrap();
    r.conn(id).write(b"between turns");
    assert_eq!(r.next_timeout(), Some(Duration::ZERO));
    r.run_once(Some(Duration::ZERO)).unwrap();
    r.stop();
    assert_eq!(r.next_timeout(), Some(Duration::ZERO));
}

/// The descriptor, watched by a host loop's own poller, becomes readable when a
/// client connects; a turn that does not block then serves it.
#[test]
fn the_descriptor_wakes_a_host_loop_that_then_runs_a_turn() {
    let mut r = Reactor::new().unwrap();
    let addr = listen(&mut r, Echo);
    let mut host = Poll::new().unwrap();
    host.registry()
        .register(&mut SourceFd(&r.as_raw_fd()), Token(7), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);

    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        s.write_all(b"hello\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    });
    let deadline = Instant::now() + WATCHDOG;
    let mut woken = 0;
    while !client.is_finished() {
        assert!(
            Instant::now() < deadline,
            "watchdog: the client got no answer"
        );
        let wait = r.next_timeout().map_or(Duration::from_millis(100), |t| {
            t.min(Duration::from_millis(100))
        });
        host.poll(&mut events, Some(wait)).unwrap();
        woken += events.iter().filter(|e| e.token() == Token(7)).count();
        r.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(client.join().unwrap(), "hello\n");
    assert!(woken > 0, "the host's poller saw the reactor's descriptor");
}

/// The frame counter of a stats line: `frames 60, late ..., connections C, lines L`.
fn field(line: &str, name: &str) -> u64 {
    let at = line
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {line:?}"));
    line[at + name.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad {name} in {line:?}"))
}

#[test]
fn the_embed_example_serves_clients_while_its_frames_advance() {
    let mut server = serve("embed", &localhost().to_string(), &[]);
    let addr = server.addr();
    let mut clients: Vec<(TcpStream, BufReader<TcpStream>)> = (0..20)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            let r = BufReader::new(s.try_clone().unwrap());
            (s, r)
        })
        .collect();
    for round in 0..3 {
        for (i, (s, r)) in clients.iter_mut().enumerate() {
            s.write_all(format!("line {i} of round {round}\n").as_bytes())
                .unwrap();
            let mut got = String::new();
            r.read_line(&mut got).unwrap();
            assert_eq!(got, format!("LINE {i} OF ROUND {round}\n"));
        }
    }
    // A stats line printed once the clients are served: the frames went on (one
    // such line a second), and the server counted them all.
    let line = server.wait_for_log("connections 20, messages 60");
    assert!(line.starts_with("frames 60, late p50 "), "{line:?}");
    drop(clients);
    server.signal("TERM");
    assert!(server.wait().success(), "exit status 0");
    let total = server.wait_for_log("total: frames");
    assert!(field(&total, "total: frames") >= 60, "{total:?}");
}

#[test]
fn embed_stops_after_the_frames_asked_for() {
    let mut server = serve("embed", &localhost().to_string(), &["--frames", "30"]);
    assert!(server.wait().success(), "exit status 0");
    let total = server.wait_for_log("total: frames");
    assert_eq!(field(&total, "total: frames"), 30, "{total:?}");
}
