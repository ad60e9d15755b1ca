//! The steady state of a busy reactor allocates nothing: once warmed up, a turn that
//! reads, echoes (a corked write) and flushes takes its memory from what earlier turns
//! left behind (the shared read buffer, the per-thread stock of write queues, the
//! reactor's own lists), never from the allocator.
//!
//! A counting global allocator counts the allocations made on this test's thread while
//! `run_once` runs; the clients are non-blocking sockets on the same thread, served
//! between turns into buffers allocated up front.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use twistor::{Addr, Context, Protocol, Reactor};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Count allocations made by this thread (only while the reactor turns).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only an atomic and a const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Twisted's Echo: every chunk written straight back (a small, corked write).
struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        cx.write(data);
    }
}

/// More connections than the per-thread stock of write queues once held (256), all
/// corking a write in the same turn.
const CLIENTS: usize = 300;
const MESSAGE: [u8; 64] = [b'x'; 64];

/// One round: every client sends a message and reads its echo back, the reactor
/// turning in between. Returns the allocations made inside `run_once`.
fn round(reactor: &mut Reactor, clients: &mut [TcpStream], reply: &mut [u8; 64]) -> usize {
    for c in clients.iter_mut() {
        c.write_all(&MESSAGE).expect("client write");
    }
    let mut got = [0usize; CLIENTS];
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    while got.iter().any(|&n| n < MESSAGE.len()) {
        assert!(
            Instant::now() < deadline,
            "echoes did not come back: {got:?}"
        );
        COUNTING.with(|c| c.set(true));
        let turned = reactor.run_once(Some(Duration::from_millis(10)));
        COUNTING.with(|c| c.set(false));
        turned.expect("run_once");
        for (c, n) in clients.iter_mut().zip(got.iter_mut()) {
            match c.read(&mut reply[..MESSAGE.len() - *n]) {
                Ok(0) => panic!("server closed a client"),
                Ok(k) => *n += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("client read: {e}"),
            }
        }
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn echo_turns_allocate_nothing_once_warm() {
    let mut reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_tcp("127.0.0.1:0".parse().unwrap(), |_: &Addr| Some(Echo))
        .unwrap();
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let c = TcpStream::connect(port.local_addr).expect("connect");
            c.set_nodelay(true).unwrap();
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    let mut reply = [0u8; 64];
    // Warm-up: accepts, connection slots, the first queues and lists.
    for _ in 0..5 {
        round(&mut reactor, &mut clients, &mut reply);
    }
    let calls_before = reactor.stats().write_calls;
    let allocations: Vec<usize> = (0..20)
        .map(|_| round(&mut reactor, &mut clients, &mut reply))
        .collect();
    // The rounds did go through the corked write path.
    assert!(reactor.stats().write_calls - calls_before >= 20 * CLIENTS as u64);
    assert!(
        allocations.iter().all(|&n| n == 0),
        "allocations per round in the steady state: {allocations:?}"
    );
}
