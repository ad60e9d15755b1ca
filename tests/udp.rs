//! Datagram sockets on the reactor: UDP and Unix datagram, over loopback.

mod common;

use std::cell::RefCell;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::rc::Rc;
use std::thread;

use common::{drive, localhost, run_until, CLIENT_TIMEOUT};
use twistor::{Addr, DatagramContext, DatagramProtocol, Reactor};

/// What a datagram protocol saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Started,
    Datagram(Vec<u8>),
    TooLarge,
    Error(std::io::ErrorKind),
    Stopped,
}

type Log = Rc<RefCell<Vec<Seen>>>;

/// Records everything and echoes each datagram back upper-cased; panics on `boom`.
struct Upper(Log);

impl DatagramProtocol for Upper {
    fn started(&mut self, _: &mut DatagramContext<'_>) {
        self.0.borrow_mut().push(Seen::Started);
    }
    fn datagram_received(&mut self, cx: &mut DatagramContext<'_>, data: &[u8], from: &Addr) {
        self.0.borrow_mut().push(Seen::Datagram(data.to_vec()));
        assert_ne!(data, b"boom", "asked to panic");
        cx.send_to(&data.to_ascii_uppercase(), from).unwrap();
    }
    fn datagram_too_large(&mut self, _: &mut DatagramContext<'_>, _: &Addr) {
        self.0.borrow_mut().push(Seen::TooLarge);
    }
    fn error_received(&mut self, _: &mut DatagramContext<'_>, error: std::io::Error) {
        self.0.borrow_mut().push(Seen::Error(error.kind()));
    }
    fn stopped(&mut self, _: &mut DatagramContext<'_>) {
        self.0.borrow_mut().push(Seen::Stopped);
    }
}

fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind(localhost()).unwrap();
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s
}

#[test]
fn udp_echo_round_trip_and_close() {
    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let id = r.listen_udp(localhost(), Upper(log.clone())).unwrap();
    let addr = r.datagram_addr(id).unwrap().inet().unwrap();
    let client = thread::spawn(move || {
        let c = udp_client();
        let mut buf = [0; 64];
        for msg in [&b"hello"[..], b"", b"a b c"] {
            c.send_to(msg, addr).unwrap();
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&msg.to_ascii_uppercase()[..], addr));
        }
    });
    drive(&mut r, client);
    assert!(r.close_datagram(id));
    assert!(!r.close_datagram(id), "closing twice");
    assert_eq!(
        *log.borrow(),
        [
            Seen::Started,
            Seen::Datagram(b"hello".to_vec()),
            Seen::Datagram(vec![]),
            Seen::Datagram(b"a b c".to_vec()),
            Seen::Stopped
        ]
    );
}

#[test]
fn a_datagram_over_the_maximum_is_reported_not_cut() {
    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let id = r
        .listen_udp_max(localhost(), 100, Upper(log.clone()))
        .unwrap();
    let addr = r.datagram_addr(id).unwrap().inet().unwrap();
    let client = thread::spawn(move || {
        let c = udp_client();
        c.send_to(&[b'x'; 101], addr).unwrap();
        c.send_to(&[b'y'; 100], addr).unwrap();
        let mut buf = [0; 200];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &[b'Y'; 100][..],
            "only the one that fits comes back"
        );
    });
    drive(&mut r, client);
    assert_eq!(
        log.borrow()[1..],
        [Seen::TooLarge, Seen::Datagram(vec![b'y'; 100])]
    );
}

#[test]
fn a_queue_of_datagrams_is_drained_by_one_wakeup_or_more() {
    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let id = r.listen_udp(localhost(), Upper(log.clone())).unwrap();
    let addr = r.datagram_addr(id).unwrap().inet().unwrap();
    // Queue 200 datagrams (three wakeups' budget; few enough that the kernel's default
    // receive buffer keeps them all) before the reactor turns.
    let c = udp_client();
    for i in 0..200u32 {
        c.send_to(&i.to_be_bytes(), addr).unwrap();
    }
    run_until(&mut r, |_| log.borrow().len() == 201);
    let got: Vec<u32> = log.borrow()[1..]
        .iter()
        .map(|s| match s {
            Seen::Datagram(d) => u32::from_be_bytes(d[..].try_into().unwrap()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
}

#[test]
fn a_panicking_callback_drops_that_datagram_only() {
    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let id = r.listen_udp(localhost(), Upper(log.clone())).unwrap();
    let addr = r.datagram_addr(id).unwrap().inet().unwrap();
    let client = thread::spawn(move || {
        let c = udp_client();
        c.send_to(b"boom", addr).unwrap();
        c.send_to(b"fine", addr).unwrap();
        let mut buf = [0; 16];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"FINE");
    });
    drive(&mut r, client);
    assert!(r.datagram_addr(id).is_some(), "the socket is still open");
}

/// Sends to `peer` from a connected socket whose peer does not exist, so the kernel
/// reports the ICMP refusal on the next receive.
struct Refused(Log, Addr);

impl DatagramProtocol for Refused {
    fn started(&mut self, cx: &mut DatagramContext<'_>) {
        cx.connect(&self.1).unwrap();
        cx.send(b"anyone?").unwrap();
    }
    fn datagram_received(&mut self, _: &mut DatagramContext<'_>, d: &[u8], _: &Addr) {
        self.0.borrow_mut().push(Seen::Datagram(d.to_vec()));
    }
    fn error_received(&mut self, _: &mut DatagramContext<'_>, error: std::io::Error) {
        self.0.borrow_mut().push(Seen::Error(error.kind()));
    }
}

#[test]
fn icmp_refusal_reaches_error_received_and_the_socket_stays_open() {
    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let gone = udp_client().local_addr().unwrap(); // bound, then dropped: nobody there
    let id = r
        .listen_udp(localhost(), Refused(log.clone(), Addr::Inet(gone)))
        .unwrap();
    run_until(&mut r, |_| !log.borrow().is_empty());
    assert_eq!(
        log.borrow()[0],
        Seen::Error(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(r.datagram_addr(id).is_some());
}

#[test]
fn unix_datagram_echo_stale_file_replaced_live_refused_removed_on_close() {
    let dir = tempdir();
    let path = dir.join("dgram.sock");
    // A stale file: bound by a socket that is gone.
    drop(UnixDatagram::bind(&path).unwrap());
    assert!(path.exists());

    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let id = r
        .bind_unix_datagram(&path, 8192, Upper(log.clone()))
        .unwrap();
    let err = r
        .bind_unix_datagram(&path, 8192, Upper(Log::default()))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

    let server = path.clone();
    let client_path = dir.join("client.sock");
    let client = thread::spawn(move || {
        let c = UnixDatagram::bind(&client_path).unwrap();
        c.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        c.send_to(b"over unix", &server).unwrap();
        let mut buf = [0; 32];
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"OVER UNIX");
    });
    drive(&mut r, client);
    assert!(r.close_datagram(id));
    assert!(!path.exists(), "the socket file is removed on close");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh directory under the system temp dir, unique to this process and test.
fn tempdir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("twistor-udp-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
