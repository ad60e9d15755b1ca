//! Unix-domain stream sockets, and listeners that hand accepted sockets over.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::thread;

use common::{drive, localhost, run_until, Log, Rec, CLIENT_TIMEOUT};
use twistor::{Accepted, Addr, ListenOptions, Reactor};

/// A fresh directory under the system temp dir, unique to this process and test.
fn tempdir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("twistor-unix-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn unix_listener_echoes_replaces_stale_refuses_live_and_removes_on_close() {
    let dir = tempdir("listen");
    let path = dir.join("s.sock");
    drop(UnixListener::bind(&path).unwrap()); // stale: nobody listens
    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let id = r.listen_unix(&path, Rec::echo(&log).factory()).unwrap();
    let err = r.listen_unix(&path, Rec::echo(&log).factory()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

    let p = path.clone();
    let client = thread::spawn(move || {
        let mut s = UnixStream::connect(&p).unwrap();
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        s.write_all(b"over a unix socket").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    assert_eq!(drive(&mut r, client), b"over a unix socket");
    run_until(&mut r, |r| r.connection_count() == 0);
    assert!(r.stop_listening(id));
    assert!(
        !path.exists(),
        "the socket file is removed when the listener closes"
    );
    log.check_lifecycles();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connect_unix_reaches_a_listener_and_a_missing_path_fails() {
    let dir = tempdir("connect");
    let path = dir.join("s.sock");
    let mut r = Reactor::new().unwrap();
    let server_log = Log::default();
    r.listen_unix(&path, Rec::echo(&server_log).factory())
        .unwrap();
    let client_log = Log::default();
    let sender = Rec::new(&client_log).on_made(|cx| {
        cx.write(b"ping");
    });
    let id = r.connect_unix(&path, sender);
    run_until(&mut r, |_| client_log.received(id) == b"ping");

    let failed_log = Log::default();
    r.connect_unix(dir.join("missing.sock"), Rec::new(&failed_log));
    run_until(&mut r, |_| !failed_log.events().is_empty());
    assert!(
        failed_log.made().is_empty(),
        "a failed connect is never made"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn handoff_listeners_give_away_blocking_sockets() {
    let dir = tempdir("handoff");
    let path = dir.join("h.sock");
    let mut r = Reactor::new().unwrap();
    let (tx, rx) = mpsc::channel::<(Accepted, Addr)>();
    let tcp_tx = tx.clone();
    let port = r
        .listen_tcp_handoff(localhost(), &ListenOptions::default(), move |s, peer| {
            tcp_tx.send((s, peer.clone())).unwrap()
        })
        .unwrap();
    r.listen_unix_handoff(&path, &ListenOptions::default(), move |s, peer| {
        tx.send((s, peer.clone())).unwrap()
    })
    .unwrap();

    // A blocking handler on another thread, as socketserver's threading mode does.
    let handler = thread::spawn(move || {
        for _ in 0..2 {
            let (accepted, _peer) = rx.recv_timeout(CLIENT_TIMEOUT).unwrap();
            match accepted {
                Accepted::Tcp(mut s) => {
                    let mut buf = [0; 3];
                    s.read_exact(&mut buf).unwrap(); // blocking read: no WouldBlock
                    s.write_all(&buf.to_ascii_uppercase()).unwrap();
                }
                Accepted::Unix(mut s) => {
                    let mut buf = [0; 3];
                    s.read_exact(&mut buf).unwrap();
                    s.write_all(&buf.to_ascii_uppercase()).unwrap();
                }
            }
        }
    });
    let p = path.clone();
    let clients = thread::spawn(move || {
        let mut t = TcpStream::connect(port.local_addr).unwrap();
        t.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        t.write_all(b"tcp").unwrap();
        let mut u = UnixStream::connect(&p).unwrap();
        u.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        u.write_all(b"uds").unwrap();
        let (mut a, mut b) = ([0; 3], [0; 3]);
        t.read_exact(&mut a).unwrap();
        u.read_exact(&mut b).unwrap();
        (a, b)
    });
    assert_eq!(drive(&mut r, clients), (*b"TCP", *b"UDS"));
    handler.join().unwrap();
    assert_eq!(
        r.connection_count(),
        0,
        "handed-over sockets are not the reactor's"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The real user id of this process, from /proc (no libc needed).
fn my_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn unix_connections_know_their_peer_credentials_and_tcp_ones_do_not() {
    let dir = tempdir("creds");
    let path = dir.join("c.sock");
    let mut r = Reactor::new().unwrap();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = Log::default();
    let recording = || {
        let record = seen.clone();
        Rec::new(&log).on_made(move |cx| record.borrow_mut().push(cx.peer_credentials()))
    };
    r.listen_unix(&path, recording().factory()).unwrap();
    let tcp = r
        .listen_tcp(localhost(), recording().factory())
        .unwrap()
        .local_addr;
    let p = path.clone();
    // The sockets live in the thread's result, so they stay open until the join.
    let clients = thread::spawn(move || (UnixStream::connect(&p), TcpStream::connect(tcp)));
    run_until(&mut r, |_| seen.borrow().len() == 2);
    drop(clients.join().unwrap());
    let seen = seen.borrow();
    let unix = seen
        .iter()
        .flatten()
        .next()
        .expect("the Unix peer's credentials");
    assert_eq!((unix.pid, unix.uid), (std::process::id(), my_uid()));
    assert_eq!(
        seen.iter().filter(|c| c.is_none()).count(),
        1,
        "TCP has none"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
