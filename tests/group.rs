//! `ReactorGroup`: N reactors on N threads, each with its own SO_REUSEPORT listener on
//! one loopback address. Echo through the group, connections spread by the kernel,
//! port 0, stopping and releasing the port, and a reactor that fails to start taking
//! the others down with it.
//!
//! Every wait is bounded: client sockets time out after `CLIENT_TIMEOUT`, and calls
//! that wait for the group's threads run under [`within`] and its watchdog.

mod common;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, ThreadId};

use common::{connect, localhost, read_to_eof, round_trip, WATCHDOG};
use twistor::{Addr, Context, Protocol, Reactor, ReactorGroup};

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        cx.write(data);
    }
}

/// Runs `f` on a thread of its own and returns its result, failing the test if it
/// takes longer than the watchdog (a group that never stops, say).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WATCHDOG)
        .unwrap_or_else(|_| panic!("watchdog: {what} did not return"))
}

fn join(group: ReactorGroup) -> io::Result<()> {
    within("join", move || group.join())
}

/// A two-reactor echo group on a free loopback port.
fn echo_group() -> ReactorGroup {
    ReactorGroup::builder()
        .threads(2)
        .spawn(localhost(), |_, _| Ok(|_: &Addr| Some(Echo)))
        .expect("spawn")
}

/// Counts its drops: a factory holding one is dropped when its reactor closes its
/// listener.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn two_reactors_echo_on_the_port_picked_for_port_0() {
    let group = echo_group();
    let addr = group.local_addr();
    assert_eq!(addr.ip(), localhost().ip());
    assert_ne!(addr.port(), 0, "the real port, not 0");
    assert_eq!(group.handles().len(), 2);
    let mut clients: Vec<_> = (0..8).map(|_| connect(addr)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        round_trip(s, format!("client {i}").as_bytes());
    }
    group.stop();
    join(group).expect("join");
}

#[test]
fn connections_are_spread_over_both_reactors_each_on_its_own_thread() {
    const CONNECTIONS: usize = 64;
    let accepted: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let threads: Arc<Mutex<Vec<(usize, ThreadId)>>> = Arc::default();
    let (counts, seen) = (Arc::clone(&accepted), Arc::clone(&threads));
    let group = ReactorGroup::builder()
        .threads(2)
        .spawn(localhost(), move |index, _| {
            seen.lock().unwrap().push((index, thread::current().id()));
            let counts = Arc::clone(&counts);
            Ok(move |_: &Addr| {
                counts[index].fetch_add(1, Ordering::SeqCst);
                Some(Echo)
            })
        })
        .expect("spawn");
    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        let mut s = connect(group.local_addr());
        // The echo proves the connection was accepted, so it has been counted.
        round_trip(&mut s, format!("connection {i}").as_bytes());
        clients.push(s);
    }
    let per_reactor = [0, 1].map(|i| accepted[i].load(Ordering::SeqCst));
    assert_eq!(
        per_reactor.iter().sum::<usize>(),
        CONNECTIONS,
        "{per_reactor:?}"
    );
    // The kernel picks the listener by a hash of each connection's addresses and
    // ports, and every connection has a source port of its own: treating each choice
    // as a fair coin, all 64 land on the same listener with probability 2 * 2^-64 =
    // 2^-63. So both reactors getting at least one is certain for any practical
    // purpose, and a failure means the listeners are not sharing the address.
    assert!(
        per_reactor.iter().all(|&n| n > 0),
        "one reactor got every connection: {per_reactor:?}"
    );
    let mut threads = threads.lock().unwrap().clone();
    threads.sort_by_key(|&(index, _)| index);
    assert_eq!(threads.len(), 2);
    assert_eq!([threads[0].0, threads[1].0], [0, 1]);
    assert_ne!(
        threads[0].1, threads[1].1,
        "each reactor has its own thread"
    );
    assert_ne!(threads[0].1, thread::current().id());
    drop(clients);
    group.stop();
    join(group).expect("join");
}

#[test]
fn each_handle_reaches_the_reactor_of_its_index() {
    let group = echo_group();
    for (index, handle) in group.handles().iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        handle
            .call_from_thread(move |_: &mut Reactor| {
                let _ = tx.send(thread::current().name().map(str::to_owned));
            })
            .expect("the reactor is running");
        let name = rx.recv_timeout(WATCHDOG).expect("the closure ran");
        assert_eq!(
            name.as_deref(),
            Some(format!("twistor-group-{index}").as_str())
        );
    }
}

#[test]
fn stop_then_join_closes_connections_and_releases_the_port() {
    let group = echo_group();
    let addr = group.local_addr();
    let mut clients: Vec<_> = (0..4).map(|_| connect(addr)).collect();
    for s in &mut clients {
        round_trip(s, b"before the stop");
    }
    group.stop();
    join(group).expect("a stopped group joins with Ok");
    for s in &mut clients {
        let (rest, err) = read_to_eof(s);
        assert!(
            rest.is_empty() && err.is_none(),
            "a clean EOF: {rest:?} {err:?}"
        );
    }
    // A listener without SO_REUSEPORT cannot share the port with any of the group's:
    // binding one proves they are all closed.
    TcpListener::bind(addr).expect("the port is free again");
}

#[test]
fn one_reactor_stopping_stops_the_group() {
    let group = echo_group();
    let mut s = connect(group.local_addr());
    round_trip(&mut s, b"hello");
    group.handles()[1].stop();
    join(group).expect("join");
    let (rest, err) = read_to_eof(&mut s);
    assert!(
        rest.is_empty() && err.is_none(),
        "a clean EOF: {rest:?} {err:?}"
    );
}

#[test]
fn dropping_the_group_stops_and_joins_it() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&dropped);
    let group = ReactorGroup::builder()
        .threads(2)
        .spawn(localhost(), move |_, _| {
            let guard = DropCount(Arc::clone(&count));
            Ok(move |_: &Addr| {
                let _ = &guard;
                Some(Echo)
            })
        })
        .expect("spawn");
    within("drop", move || drop(group));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "both reactors have ended"
    );
}

#[test]
fn a_failed_setup_stops_the_others_and_spawn_returns_its_error() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&dropped);
    let spawned = within("spawn", move || {
        ReactorGroup::builder()
            .threads(2)
            .spawn(localhost(), move |index, _| {
                if index == 1 {
                    return Err(io::Error::other("setup 1 refuses"));
                }
                let guard = DropCount(Arc::clone(&count));
                Ok(move |_: &Addr| {
                    let _ = &guard;
                    Some(Echo)
                })
            })
    });
    let err = spawned.expect_err("spawn must fail");
    assert_eq!(err.to_string(), "setup 1 refuses");
    // spawn joined every thread before returning: reactor 0, which set up fine, has
    // closed its listener and dropped its factory.
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panic_in_setup_is_returned_as_an_error() {
    let spawned = within("spawn", || {
        ReactorGroup::builder()
            .threads(2)
            .spawn(localhost(), |index, _| {
                if index == 0 {
                    panic!("setup 0 panics");
                }
                Ok(|_: &Addr| Some(Echo))
            })
    });
    let err = spawned.expect_err("spawn must fail").to_string();
    assert!(
        err.contains("reactor 0") && err.contains("panicked") && err.contains("setup 0 panics"),
        "{err}"
    );
}

#[test]
fn an_address_in_use_is_returned_by_spawn() {
    // A plain listener (no SO_REUSEPORT) owns the port: the group may not join it.
    let taken = TcpListener::bind(localhost()).unwrap();
    let addr: SocketAddr = taken.local_addr().unwrap();
    let err = ReactorGroup::builder()
        .threads(2)
        .spawn(addr, |_, _| Ok(|_: &Addr| Some(Echo)))
        .expect_err("the address is taken");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
}

#[test]
fn zero_threads_is_invalid_input() {
    let err = ReactorGroup::builder()
        .threads(0)
        .spawn(localhost(), |_, _| Ok(|_: &Addr| Some(Echo)))
        .expect_err("no reactors");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn a_group_of_one_serves() {
    let group = ReactorGroup::builder()
        .threads(1)
        .spawn(localhost(), |_, _| Ok(|_: &Addr| Some(Echo)))
        .expect("spawn");
    round_trip(&mut connect(group.local_addr()), b"alone");
    group.stop();
    join(group).expect("join");
}

// The check is made where the kernel tells whether a socket listens.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn listen_tcp_socket_refuses_a_socket_that_is_not_listening() {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&localhost().into()).unwrap();
    let mut r = Reactor::new().unwrap();
    let err = r
        .listen_tcp_socket(socket.into(), |_: &Addr| Some(Echo))
        .expect_err("not listening");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
