//! The connection core: every rule about a connection's life, once, with no I/O.
//!
//! [`Core`] holds the connection table and what a turn walks (the dirty, corked and
//! carried-over lists), the timer queue, the pool jobs out and the counters, and
//! carries out everything a [`Context`] can ask: reads in rounds with their budgets,
//! the write path with corking, the watermarks and the cap, graceful and abortive
//! closes with the linger after them, half-closes, per-connection timers and the idle
//! timeout, callbacks run with panic isolation, and `settle`, which carries out what a
//! callback asked for once it has returned. Datagram sockets are the core's too
//! (datagram.rs): their table, reading rounds, the too-large rule and closes.
//!
//! It touches no socket and reads no clock itself: it is generic over a [`Kernel`]
//! (static dispatch), which owns the streams' and datagram sockets' kernel side and
//! the clock. The reactor is the core over mio (`reactor::Mio`: poll, listeners, the
//! waker, the thread pool); the testing kit is the same core over memory streams and
//! sockets and a manual clock (`testing::Mem`). So a protocol, a framer or a layer on
//! top behaves the same under both, by construction.

// Maintainers' notes.
//
// A protocol is taken out of its slot while its callback runs, which is what lets the
// callback reach every other connection through the same `&mut Core`: a `Context` is
// `&mut Core<K>` (as `&mut dyn Driver`) plus the connection's id.
//
// Nothing that calls back into a protocol happens inside another callback. Such effects
// (a close, a `pause_producing` owed, a write error on another connection) are noted
// in the connection's `State` and the connection goes on the dirty list; `settle`
// carries them out after the callback returns. Only `settle`, the event handlers
// (`read_ready`, `write_ready`, `flush_corked`), timers and pool results invoke
// callbacks.

mod config;
mod counters;
mod datagram;
mod dial;
mod driver;
mod state;
#[cfg(feature = "tls")]
mod tls;

pub(crate) use config::Config;
pub use counters::ClosedByReason;
pub(crate) use counters::Counters;
pub(crate) use datagram::{Datagram, DatagramSocket};
pub(crate) use dial::{Dial, Dialer, Ending, Watcher};
pub(crate) use state::State;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::datagram::DatagramProtocol;
use crate::ids::{ConnId, DatagramId, Source};
use crate::pool::{JobError, PoolBusy};
use crate::producer::{ProducerDriver, ProducerKind, Registered, Slot};
use crate::protocol::{panic_message, Addr, PeerCredentials, Protocol, Reason};
use crate::timer::{TimerId, TimerQueue};
use crate::transport::{
    unwritten, BoundCall, BoundDone, Context, JobFn, JobResult, Push, WriteQueue, MAX_IOVECS,
};

/// A write at least this large is not corked: it goes out at once (behind anything
/// corked before it), saving a copy. It is large enough that its system call is
/// already well used; a copy of it would cost less than a syscall, but buy nothing
/// unless more writes to the same connection followed in the turn.
const DIRECT_WRITE_BYTES: usize = 4096;

/// The most slots a table can have, so that an index fits the reactor's 30 token bits.
pub(crate) const MAX_SLOTS: usize = 1 << 30;

/// One connection's kernel side: a socket for the reactor, memory for the testing kit.
pub(crate) trait Stream {
    /// Reads into `buf`; `Ok(0)` is the peer's end, `WouldBlock` means nothing now.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// One gathered write; `WouldBlock` when the kernel takes nothing now.
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Shuts the write side (the peer reads EOF after what was sent).
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Whether a graceful close lingers after shutting the write side (see
    /// `Builder::linger`): a socket's kernel would answer unread input after `close`
    /// with a reset.
    fn lingers(&self) -> bool;
    /// An outgoing connect's outcome, on its first writable event: `Ok(true)` made,
    /// `Ok(false)` not yet (a spurious event), `Err` failed.
    fn connect_result(&mut self) -> io::Result<bool>;
    fn local_addr(&self) -> Option<Addr>;
    fn peer_credentials(&self) -> Option<PeerCredentials> {
        None
    }
    fn set_nodelay(&self, on: bool) -> io::Result<()>;
    fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()>;
}

/// What the core needs from its environment, with static dispatch: the streams' type,
/// the clock, what happens to a stream that joins or leaves the table, and the thread
/// pool. Hooks take the whole core, since a kernel's bookkeeping may need it (the
/// reactor re-arms accepts when a descriptor frees up).
/// `Dial` (dial.rs) is how it starts an outgoing connect for a client service.
pub(crate) trait Kernel: Sized + 'static + Dial {
    type Stream: Stream;
    /// The kernel's own timers in the core's queue (the reactor's `call_later`
    /// closures, accept back-off, connect and shutdown deadlines).
    type Task;
    /// Callbacks of pool jobs that are not a connection's (the reactor's
    /// `defer_to_thread`).
    type JobDone;

    /// The clock: "now" for deadlines and `Context::now`.
    fn now(core: &Core<Self>) -> Instant;
    /// A stream joins the table as connection `id` (the reactor registers it).
    fn register(core: &mut Core<Self>, id: ConnId, stream: &mut Self::Stream) -> io::Result<()>;
    /// Connection `id` left the table: close its stream, with a reset if `reset`.
    fn release(core: &mut Core<Self>, id: ConnId, stream: Self::Stream, reset: bool);
    /// Connection `id`'s protocol after its last callback, with the reason it ended.
    fn retire(core: &mut Core<Self>, id: ConnId, protocol: Box<dyn Protocol>, reason: &Reason);
    /// Hands a pool job to the threads; its result comes back through
    /// [`Core::job_finished`] under `key`.
    fn submit(core: &mut Core<Self>, key: u64, job: JobFn) -> Result<(), PoolBusy>;
    /// Whether [`submit`](Self::submit) would take a job now.
    fn pool_has_room(core: &Core<Self>) -> bool;

    // ----- datagram sockets (datagram.rs) -----

    /// A datagram socket's kernel side.
    type Datagram: DatagramSocket;
    /// A socket joins the datagram table as `id` (the reactor registers it).
    fn register_datagram(
        core: &mut Core<Self>,
        id: DatagramId,
        socket: &mut Self::Datagram,
    ) -> io::Result<()>;
    /// Socket `id` left the table (or never joined it: its registration failed).
    fn release_datagram(core: &mut Core<Self>, id: DatagramId, socket: Self::Datagram);
    /// Socket `id`'s protocol after its `stopped`.
    fn retire_datagram(core: &mut Core<Self>, id: DatagramId, protocol: Box<dyn DatagramProtocol>) {
        let _ = (core, id);
        drop(protocol);
    }
}

/// What the timer queue carries.
pub(crate) enum Task<X> {
    Bound(ConnId, BoundCall),
    Idle(ConnId),
    CloseDeadline(ConnId),
    LingerDeadline(ConnId),
    ConnectTimeout(ConnId),
    #[cfg(feature = "tls")]
    TlsHandshake(ConnId),
    /// A client service's timer (dial.rs).
    Watch(Rc<dyn Watcher>),
    Kernel(X),
}

/// What to do with a pool job's result.
pub(crate) enum JobDone<X> {
    /// Run with this connection's protocol, if it is still there.
    Bound(ConnId, BoundDone),
    /// The kernel's.
    Kernel(X),
}

pub(crate) struct PendingJob<X> {
    generation: u32,
    done: JobDone<X>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stopping {
    No,
    Requested,
    Draining,
}

/// Everything the core keeps for one connection.
pub(crate) struct Conn<S> {
    pub(crate) generation: u32,
    pub(crate) stream: S,
    /// Taken out while one of its callbacks runs (callbacks never nest for one
    /// connection), put back after.
    pub(crate) protocol: Option<Box<dyn Protocol>>,
    pub(crate) peer: Addr,
    pub(crate) out: WriteQueue,
    /// Timers that die with this connection.
    pub(crate) timers: Vec<TimerId>,
    pub(crate) state: State,
    pub(crate) last_read: Instant,
    /// Bytes read and discarded while lingering.
    pub(crate) discarded: u32,
    /// Queued in the core's dirty list.
    pub(crate) dirty: bool,
    /// Queued in the core's carried-over list, to read again without an event.
    pub(crate) in_ready: bool,
    /// `out` holds small writes not yet offered to the kernel; the connection is in
    /// the core's corked list, flushed at the end of the turn.
    pub(crate) corked: bool,
    /// The connection's TLS session: 0 for none, else its key in `Core::sessions`
    /// plus one (a key, not a box, keeps `Conn` in its size budget).
    #[cfg(feature = "tls")]
    pub(crate) tls: u32,
}

/// The connection core over kernel `K`; see the [module docs](self).
pub(crate) struct Core<K: Kernel> {
    pub(crate) k: K,
    pub(crate) config: Config,
    pub(crate) conns: Slab<Conn<K::Stream>>,
    pub(crate) timers: TimerQueue<Task<K::Task>>,
    /// Shared by every connection: an idle connection holds no read buffer.
    pub(crate) read_buf: Vec<u8>,
    /// Connections with effects to carry out once the current callback returns.
    pub(crate) dirty: Vec<ConnId>,
    /// Connections whose small writes wait for the end of the turn (`Conn::corked`).
    pub(crate) corked: Vec<ConnId>,
    /// Sources to serve next turn without waiting for an event.
    pub(crate) ready: Vec<Source>,
    /// Emptied allocations for `corked` and `ready`, swapped in while a turn walks
    /// them (see [`Spare`]), so the steady state allocates nothing for either.
    pub(crate) spare_corked: Spare<ConnId>,
    pub(crate) spare_ready: Spare<Source>,
    /// Outgoing connections that failed, reported at the next carried-over phase.
    pub(crate) failed: Vec<(ConnId, Box<dyn Protocol>, io::Error)>,
    /// The turn's clock reading (the idle bookkeeping uses it).
    pub(crate) now: Instant,
    next_generation: u32,
    pub(crate) stopping: Stopping,
    /// Pool jobs whose results are not back yet.
    pub(crate) jobs: Slab<PendingJob<K::JobDone>>,
    next_job_generation: u32,
    pub(crate) counters: Counters,
    /// Registered producers (src/producer.rs), beside the table: few connections have
    /// one, and `Conn` stays small.
    producers: HashMap<ConnId, Slot>,
    /// TLS sessions (src/core/tls.rs), by `Conn::tls`.
    #[cfg(feature = "tls")]
    pub(crate) sessions: Slab<crate::tls::session::Session>,
    /// Where a TLS connection's plaintext is decrypted to, shared like `read_buf`
    /// (allocated on the first TLS read).
    #[cfg(feature = "tls")]
    pub(crate) tls_buf: Vec<u8>,
    /// The datagram sockets (datagram.rs).
    pub(crate) datagrams: Slab<Datagram<K::Datagram>>,
    /// The watchers of connections a client service started (dial.rs), beside the
    /// table as `producers` are.
    pub(crate) watchers: HashMap<ConnId, Rc<dyn Watcher>>,
}

/// The `TypeId` of the protocol behind `p`, for typed callbacks.
pub(crate) fn protocol_type(p: &dyn Protocol) -> TypeId {
    let any: &dyn Any = p;
    any.type_id()
}

impl<K: Kernel> Core<K> {
    pub(crate) fn new(k: K, config: Config, now: Instant) -> Core<K> {
        Core {
            k,
            read_buf: vec![0; config.read_buffer_bytes],
            config,
            conns: Slab::new(),
            timers: TimerQueue::new(),
            dirty: Vec::new(),
            corked: Vec::new(),
            ready: Vec::new(),
            spare_corked: Spare::default(),
            spare_ready: Spare::default(),
            failed: Vec::new(),
            now,
            next_generation: 0,
            stopping: Stopping::No,
            jobs: Slab::new(),
            next_job_generation: 0,
            counters: Counters::default(),
            producers: HashMap::new(),
            #[cfg(feature = "tls")]
            sessions: Slab::new(),
            #[cfg(feature = "tls")]
            tls_buf: Vec::new(),
            datagrams: Slab::new(),
            watchers: HashMap::new(),
        }
    }

    pub(crate) fn clock(&self) -> Instant {
        K::now(self)
    }

    pub(crate) fn conn(&self, id: ConnId) -> Option<&Conn<K::Stream>> {
        self.conns
            .get(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    pub(crate) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn<K::Stream>> {
        self.conns
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    pub(crate) fn next_generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    pub(crate) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.conn_mut(id) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    pub(crate) fn mark_ready(&mut self, id: ConnId) {
        if let Some(c) = self.conn_mut(id) {
            if !c.in_ready {
                c.in_ready = true;
                self.ready.push(Source::Conn(id));
            }
        }
    }

    pub(crate) fn conn_ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .map(|(i, c)| ConnId {
                index: i as u32,
                generation: c.generation,
            })
            .collect()
    }

    // ----- joining the table -----

    /// Puts a stream in the table (not made yet: see [`make`](Self::make)). On
    /// failure the protocol comes back with the error.
    pub(crate) fn insert_conn(
        &mut self,
        mut stream: K::Stream,
        peer: Addr,
        protocol: Box<dyn Protocol>,
        connecting: bool,
    ) -> Result<ConnId, (io::Error, Box<dyn Protocol>)> {
        if self.conns.len() >= MAX_SLOTS {
            return Err((io::Error::other("connection table full"), protocol));
        }
        let generation = self.next_generation();
        let id = ConnId {
            index: self.conns.vacant_key() as u32,
            generation,
        };
        if let Err(e) = K::register(self, id, &mut stream) {
            return Err((e, protocol));
        }
        let now = self.now;
        let index = self.conns.insert(Conn {
            generation,
            stream,
            protocol: Some(protocol),
            peer,
            out: WriteQueue::default(),
            timers: Vec::new(),
            state: State::new(connecting),
            last_read: now,
            discarded: 0,
            dirty: false,
            in_ready: false,
            corked: false,
            #[cfg(feature = "tls")]
            tls: 0,
        });
        debug_assert_eq!(index, id.index as usize);
        Ok(id)
    }

    /// The connection is up: `connection_made`, and the idle timer if configured.
    pub(crate) fn make(&mut self, id: ConnId) {
        let now = self.now;
        let idle = self.config.idle_timeout;
        let Some(c) = self.conn_mut(id) else { return };
        c.state.make();
        c.last_read = now;
        if let Some(idle) = idle {
            let due = self.clock() + idle;
            self.track_timer(id, due, Task::Idle(id));
        }
        self.invoke(id, |p, cx| p.connection_made(cx));
        #[cfg(feature = "tls")]
        self.tls_made(id); // tls hook: the handshake's deadline, a client's hello
        self.watch_made(id); // dial hook: a client service's connection is up
    }

    /// An outgoing connection's first writable event: made, failed, or not yet.
    pub(crate) fn finish_connect(&mut self, id: ConnId) {
        let Some(c) = self.conn_mut(id) else { return };
        match c.stream.connect_result() {
            Ok(true) => {
                c.state.connected();
                let timers = std::mem::take(&mut c.timers);
                for t in timers {
                    // Only the connect timeout can be pending yet.
                    self.timers.cancel(t);
                }
                log::debug!("{id}: connected");
                self.make(id);
            }
            Ok(false) => {}
            Err(e) => self.fail_connect(id, e),
        }
    }

    pub(crate) fn fail_connect(&mut self, id: ConnId, error: io::Error) {
        if !self.conn(id).is_some_and(|c| c.state.is_connecting()) {
            return;
        }
        let Some((protocol, peer)) = self.remove_conn(id, false) else {
            return;
        };
        log::debug!("{id} {peer}: connect failed: {error}");
        // Reported at the start of the next carried-over phase, never here: this can
        // run inside another connection's callback (`cx.conn(id).lose_connection()` on a pending
        // connect), where calling back and settling would re-enter that connection.
        self.failed.push((id, protocol, error));
    }

    /// Calls `connection_failed` for the connects that failed.
    pub(crate) fn report_failed(&mut self) {
        for (id, mut protocol, error) in std::mem::take(&mut self.failed) {
            self.counters.connect_failed += 1;
            let copy = self
                .watchers
                .contains_key(&id)
                .then(|| io::Error::new(error.kind(), error.to_string()));
            let ty = protocol_type(&*protocol);
            let result = catch_unwind(AssertUnwindSafe(|| {
                let mut cx = Context::new(self, id, ty);
                protocol.connection_failed(&mut cx, error);
            }));
            if let Err(panic) = result {
                log::error!(
                    "{id}: connection_failed panicked: {}",
                    panic_message(&*panic)
                );
            }
            K::retire(self, id, protocol, &Reason::Aborted);
            if let Some(copy) = copy {
                self.watch_ended(id, Ending::Failed(copy)); // dial hook
            }
            self.settle();
        }
    }

    // ----- reading -----

    /// A readable event (or carried-over work) for connection `id`: `reading_resumed`
    /// if owed, then reads into the shared buffer, `data_received` per chunk, until the
    /// kernel has no more or the read budget is spent (then it is carried over). After
    /// a FIN or an error (`to_the_end`) it reads on past a short read, because no
    /// further edge will come.
    pub(crate) fn read_ready(&mut self, id: ConnId, to_the_end: bool) {
        self.serve_pull(id); // producer hook: an owed pull is carried over to here
        let mut budget = self.config.read_budget_bytes;
        let now = self.now;
        loop {
            let mut buf = std::mem::take(&mut self.read_buf);
            let Some(c) = self.conn_mut(id) else {
                self.read_buf = buf;
                return;
            };
            c.in_ready = false;
            if c.state.is_lingering() {
                self.read_buf = buf;
                return self.discard_input(id, budget);
            }
            if c.state.take_resumed() {
                self.read_buf = buf;
                self.invoke(id, |p, cx| p.reading_resumed(cx));
                continue;
            }
            #[cfg(feature = "tls")]
            let handshake_reads = c.tls != 0 && c.state.is_losing() && self.tls_close_waits(id);
            #[cfg(not(feature = "tls"))]
            let handshake_reads = false;
            let Some(c) = self.conn_mut(id) else {
                self.read_buf = buf;
                return;
            };
            if !c.state.wants_read() && !handshake_reads {
                self.read_buf = buf;
                return;
            }
            let result = c.stream.read(&mut buf);
            match result {
                Ok(0) => {
                    #[cfg(feature = "tls")]
                    if c.tls != 0 {
                        self.read_buf = buf;
                        if self.tls_eof(id) {
                            return; // tls hook: a truncation or a failed handshake
                        }
                        buf = std::mem::take(&mut self.read_buf);
                    }
                    let Some(c) = self.conn_mut(id) else {
                        self.read_buf = buf;
                        return;
                    };
                    c.state.saw_eof();
                    let write_shut = c.state.write_shut();
                    self.read_buf = buf;
                    log::trace!("{id}: read EOF");
                    if write_shut {
                        // Both directions are closed now.
                        self.close_with(id, Reason::Done);
                    } else {
                        self.invoke(id, |p, cx| p.read_eof(cx));
                    }
                    return;
                }
                Ok(n) => {
                    c.last_read = now;
                    log::trace!("{id}: read {n} bytes");
                    #[cfg(feature = "tls")]
                    if c.tls != 0 {
                        // tls hook: decrypt, deliver, answer the handshake
                        if !self.tls_received(id, &buf[..n]) {
                            self.read_buf = buf;
                            return;
                        }
                    } else {
                        self.invoke(id, |p, cx| p.data_received(cx, &buf[..n]));
                    }
                    #[cfg(not(feature = "tls"))]
                    self.invoke(id, |p, cx| p.data_received(cx, &buf[..n]));
                    let short = n < buf.len();
                    self.read_buf = buf;
                    budget = budget.saturating_sub(n);
                    if short && !to_the_end {
                        // The kernel had no more: a new edge comes with new data.
                        return;
                    }
                    if budget == 0 {
                        self.mark_ready(id);
                        return;
                    }
                }
                Err(e) => {
                    self.read_buf = buf;
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => {}
                        _ => return self.close_with(id, Reason::from_io(e)),
                    }
                }
            }
        }
    }

    /// Reads and drops what a lingering connection's peer sends, up to `budget`
    /// bytes this time (then it is carried over) and the linger's byte bound in all.
    /// The peer's end finishes the close cleanly.
    fn discard_input(&mut self, id: ConnId, mut budget: usize) {
        let limit = self.config.linger_bytes;
        loop {
            let Some(c) = self.conns.get_mut(id.index as usize) else {
                return;
            };
            if c.generation != id.generation
                || !c.state.is_lingering()
                || c.state.close_decided()
                || c.discarded as usize > limit
            {
                return;
            }
            match c.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    c.state.saw_eof();
                    return self.close_with(id, Reason::Done);
                }
                Ok(n) => {
                    let discarded = c.discarded as usize + n;
                    c.discarded = discarded.min(u32::MAX as usize) as u32;
                    if discarded > limit {
                        log::warn!(
                            "{id} {}: peer sent more than {limit} bytes after the close; closing",
                            c.peer
                        );
                        return self.close_with(id, Reason::TimedOut);
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return self.mark_ready(id);
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => {}
                    _ => return self.close_with(id, Reason::from_io(e)),
                },
            }
        }
    }

    // ----- writing -----

    /// A writable event: finishes a pending connect, then drains the queue.
    pub(crate) fn write_ready(&mut self, id: ConnId) {
        if self.conn(id).is_some_and(|c| c.state.is_connecting()) {
            // Bytes queued while connecting (`cx.conn(id).write`) go out below: this writable
            // edge is the only one an idle, newly connected socket gets.
            self.finish_connect(id);
        }
        let Some(c) = self.conn_mut(id) else { return };
        #[cfg(feature = "tls")]
        if c.tls != 0 && !c.state.is_connecting() && !c.state.close_decided() {
            return self.tls_write_ready(id); // tls hook: encrypt, then drain
        }
        if c.state.is_connecting() || c.out.is_empty() || c.state.close_decided() {
            return;
        }
        let stream = &mut c.stream;
        let mut calls = 0;
        let drained = c.out.drain_into(|bufs| {
            calls += 1;
            stream.send(bufs)
        });
        self.counters.write_calls += calls;
        if let Err(e) = drained {
            return self.close_with(id, Reason::from_io(e));
        }
        self.after_drain(id);
    }

    /// The write path of every `Context::write*`.
    ///
    /// Small writes are corked: gathered in the connection's queue and offered to the
    /// kernel once, by [`flush_corked`](Self::flush_corked) at the end of the turn, so
    /// that many small writes in a turn cost one gathered write (as Redis and Twisted
    /// do). A large write (from [`DIRECT_WRITE_BYTES`]), or one that would take the
    /// corked bytes past [`cork_limit`](Config::cork_limit), goes out at once, with the
    /// corked bytes in front of it and without copying it.
    /// While the kernel is behind (bytes queued and not corked) or a connect is in
    /// progress, writes queue behind what is there and go out on the writable edge.
    pub(crate) fn send(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> bool {
        let cork_limit = self.config.cork_limit();
        let Some(c) = self.conn_mut(id) else {
            return false;
        };
        if !c.state.accepts_writes() {
            log::debug!("{id}: write after close dropped");
            return false;
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len == 0 {
            return true;
        }
        #[cfg(feature = "tls")]
        if c.tls != 0 {
            return self.tls_send(id, bufs); // tls hook: plaintext waits to be encrypted
        }
        if c.state.is_connecting() || (!c.out.is_empty() && !c.corked) {
            return self.enqueue(id, bufs);
        }
        if len < DIRECT_WRITE_BYTES && c.out.len() + len <= cork_limit {
            if !c.corked {
                c.corked = true;
                self.corked.push(id);
            }
            return self.enqueue(id, bufs);
        }
        // Too much to cork: the corked bytes and these, in one vectored write.
        c.corked = false;
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let queued = c.out.slices(&mut slices);
        let queued_bytes = c.out.len();
        let offered = (MAX_IOVECS - queued).min(bufs.len());
        slices[queued..queued + offered].copy_from_slice(&bufs[..offered]);
        let offered_bytes: usize = slices[..queued + offered].iter().map(|s| s.len()).sum();
        let mut calls = 0;
        let result = loop {
            calls += 1;
            match c.stream.send(&slices[..queued + offered]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(0),
                result => break result,
            }
        };
        self.counters.write_calls += calls;
        let written = match result {
            Ok(n) => n,
            Err(e) => {
                self.close_with(id, Reason::from_io(e));
                return false;
            }
        };
        let c = self.conn_mut(id).expect("checked above");
        c.out.consume(written.min(queued_bytes));
        let rest = unwritten(bufs, written.saturating_sub(queued_bytes));
        if rest.is_empty() {
            return true;
        }
        if written == offered_bytes {
            // The kernel took all it was offered: what is left is what did not fit in
            // one gathered write (too many buffers), not what it refused, so no
            // writable edge will come for it. The end-of-turn flush sends it.
            c.corked = true;
            self.corked.push(id);
        }
        self.enqueue(id, &rest)
    }

    /// Offers every corked queue to the kernel (see [`send`](Self::send)), then
    /// settles what that causes (a close that was waiting for the flush, a resumed
    /// producer, who may cork more).
    pub(crate) fn flush_corked(&mut self) {
        while !self.corked.is_empty() {
            let mut batch = self.spare_corked.swap(&mut self.corked);
            for id in batch.drain(..) {
                if let Some(c) = self.conn_mut(id) {
                    if std::mem::take(&mut c.corked) {
                        self.write_ready(id);
                    }
                }
            }
            self.spare_corked.keep(batch);
            self.settle();
        }
    }

    /// Bytes left the queue: resume a paused producer, finish a pending close.
    fn after_drain(&mut self, id: ConnId) {
        let limits = self.config.write_limits();
        let Some(c) = self.conn_mut(id) else { return };
        let state = &mut c.state;
        if c.out
            .resume_after_drain(&limits, &mut state.producer_paused, &mut state.notify_pause)
        {
            self.invoke(id, |p, cx| p.resume_producing(cx));
        }
        self.producer_drained(id); // producer hook
        if self
            .conn(id)
            .is_some_and(|c| c.out.is_empty() && c.state.waits_for_drain())
        {
            self.mark_dirty(id);
        }
    }

    /// Queues what the kernel did not take, minding the cap and the high watermark.
    fn enqueue<B: Deref<Target = [u8]>>(&mut self, id: ConnId, parts: &[B]) -> bool {
        let limits = self.config.write_limits();
        let Some(c) = self.conn_mut(id) else {
            return false;
        };
        let push = c
            .out
            .push_limited(parts, &limits, &mut c.state.producer_paused);
        self.after_push(id, push)
    }

    /// Carries out what a push onto one of connection `id`'s queues calls for: a
    /// `pause_producing` owed, or the close past the cap. False if the bytes were not
    /// taken.
    pub(crate) fn after_push(&mut self, id: ConnId, push: Push) -> bool {
        match push {
            Push::Queued => true,
            Push::PauseOwed => {
                if let Some(c) = self.conn_mut(id) {
                    c.state.notify_pause = true;
                }
                self.mark_dirty(id);
                true
            }
            Push::Overflow => {
                self.overflow(id);
                false
            }
        }
    }

    /// Connection `id`'s queue would pass the write cap: it closes, its queue dropped.
    pub(crate) fn overflow(&mut self, id: ConnId) {
        if let Some(c) = self.conn(id) {
            log::warn!(
                "{id} {}: write buffer would pass {} bytes; closing",
                c.peer,
                self.config.write_cap_bytes
            );
        }
        self.close_with(id, Reason::WriteOverflow);
    }

    // ----- closing -----

    /// `lose_connection`: flush, wait for the connection's pool jobs, linger, close.
    pub(crate) fn lose_connection(&mut self, id: ConnId) {
        let close_timeout = self.config.close_timeout;
        let Some(c) = self.conn_mut(id) else { return };
        if c.state.is_connecting() {
            let err = io::Error::new(io::ErrorKind::Interrupted, "connect cancelled");
            return self.fail_connect(id, err);
        }
        #[cfg(feature = "tls")]
        if c.tls != 0 && !c.state.is_closing() && self.tls_close_aborts(id) {
            // tls hook: during the handshake, with nothing written, a close aborts
            return self.abort_connection(id);
        }
        let Some(c) = self.conn_mut(id) else { return };
        if !c.state.lose() {
            return;
        }
        #[cfg(feature = "tls")]
        let held = c.tls != 0 && self.tls_held(id) > 0;
        #[cfg(not(feature = "tls"))]
        let held = false;
        let Some(c) = self.conn_mut(id) else { return };
        if !c.out.is_empty() || held || c.state.jobs_out() {
            let due = self.clock() + close_timeout;
            self.track_timer(id, due, Task::CloseDeadline(id));
        }
        self.mark_dirty(id);
    }

    /// `abort_connection`: close now, dropping what is queued.
    pub(crate) fn abort_connection(&mut self, id: ConnId) {
        if self.conn(id).is_some_and(|c| c.state.is_connecting()) {
            let err = io::Error::new(io::ErrorKind::Interrupted, "connect aborted");
            return self.fail_connect(id, err);
        }
        self.close_with(id, Reason::Aborted);
    }

    /// Decides to close `id` for `reason` once the current callback returns; queued
    /// bytes are dropped. The first reason wins.
    pub(crate) fn close_with(&mut self, id: ConnId, reason: Reason) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.state.decide_close(reason) {
            c.out.clear();
        }
        self.mark_dirty(id);
    }

    /// A graceful close has flushed (and its pool jobs are back): shut the write side
    /// and linger, reading and discarding input until the peer closes, so that
    /// closing over unread input cannot make the kernel reset the connection and
    /// throw away the replies it still holds (see `Builder::linger`). Where there is
    /// nothing to linger for (the peer's end already came, or a stream that does not
    /// linger), finish now.
    fn linger(&mut self, id: ConnId) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.state.is_lingering() {
            return;
        }
        #[cfg(feature = "tls")]
        if c.tls != 0 && self.tls_close_notify(id) {
            return; // tls hook: close_notify first, once it has drained
        }
        let Some(c) = self.conn_mut(id) else { return };
        if c.state.read_eof() || !c.stream.lingers() {
            return self.finish(id, Reason::Done);
        }
        let shut_already = c.state.write_shut();
        c.state.linger();
        if !shut_already {
            if let Err(e) = c.stream.shutdown_write() {
                return self.close_with(id, Reason::from_io(e));
            }
        }
        // The protocol's part is over: its timers (and the close deadline, which the
        // linger's own replaces) go now, as they would with the connection.
        for t in std::mem::take(&mut c.timers) {
            self.timers.cancel(t);
        }
        let deadline = self.clock() + self.config.linger_timeout;
        self.track_timer(id, deadline, Task::LingerDeadline(id));
        // Input may already wait in the kernel, and its edge has passed.
        self.mark_ready(id);
    }

    /// A graceful close's deadline: the peer did not take the queued bytes in time
    /// (the close is aborted), or did not end its side while we lingered (the
    /// connection closes without a reset; the kernel goes on delivering what it
    /// holds). Either way the close was not confirmed: [`Reason::TimedOut`].
    fn close_deadline(&mut self, id: ConnId) {
        let Some(c) = self.conn(id) else { return };
        if c.state.is_lingering() {
            log::debug!("{id} {}: peer did not close within the linger", c.peer);
        } else if c.state.jobs_out() && c.out.is_empty() {
            log::warn!(
                "{id} {}: pool jobs did not finish before the close deadline",
                c.peer
            );
        } else {
            log::warn!("{id} {}: peer did not take queued bytes in time", c.peer);
        }
        self.close_with(id, Reason::TimedOut);
    }

    /// Closes every connection for `reason` (a connect in progress fails instead).
    pub(crate) fn abort_all(&mut self, reason: Reason) {
        for id in self.conn_ids() {
            if self.conn(id).is_some_and(|c| c.state.is_connecting()) {
                let err = io::Error::new(io::ErrorKind::Interrupted, "reactor stopped");
                self.fail_connect(id, err);
            } else {
                self.close_with(id, reason.duplicate());
            }
        }
    }

    /// Takes a connection out of the table: cancels its timers and hands its stream
    /// to the kernel to close. Returns its protocol and peer.
    pub(crate) fn remove_conn(
        &mut self,
        id: ConnId,
        reset: bool,
    ) -> Option<(Box<dyn Protocol>, Addr)> {
        self.conn(id)?;
        let mut c = self.conns.remove(id.index as usize);
        for t in c.timers.drain(..) {
            self.timers.cancel(t);
        }
        #[cfg(feature = "tls")]
        self.drop_session(c.tls); // tls hook
        K::release(self, id, c.stream, reset);
        let protocol = c
            .protocol
            .expect("a connection is never removed inside its own callback");
        Some((protocol, c.peer))
    }

    /// Removes the connection and calls `connection_lost`, exactly once.
    fn finish(&mut self, id: ConnId, reason: Reason) {
        let lingering = self.conn(id).is_some_and(|c| c.state.is_lingering());
        // A connection whose bytes have all gone to the kernel and whose write side is
        // shut has nothing a reset would rightly throw away: it closes normally, after
        // reading what is pending so that the close itself does not reset.
        let reset = match reason {
            Reason::Aborted | Reason::WriteOverflow | Reason::Panic(_) => true,
            Reason::TimedOut => !lingering,
            _ => false,
        };
        if lingering && !reset {
            self.discard_input(id, self.config.read_budget_bytes);
        }
        let made = self.conn(id).is_some_and(|c| c.state.is_made());
        let producer = self.producers.remove(&id); // producer hook
        let Some((mut protocol, peer)) = self.remove_conn(id, reset) else {
            return;
        };
        log::debug!("{id} {peer}: {reason}");
        self.counters.closed.count(&reason);
        if made {
            let ty = protocol_type(&*protocol);
            self.stop_producer(id, ty, producer); // producer hook
            let result = catch_unwind(AssertUnwindSafe(|| {
                let mut cx = Context::new(self, id, ty);
                protocol.connection_lost(&mut cx, reason.duplicate());
            }));
            if let Err(panic) = result {
                log::error!(
                    "{id} {peer}: connection_lost panicked: {}",
                    panic_message(&*panic)
                );
            }
        }
        K::retire(self, id, protocol, &reason);
        self.watch_ended(id, Ending::Lost(&reason)); // dial hook: after connection_lost
    }

    /// Carries out what callbacks asked for: closes, owed `pause_producing`, the end of
    /// a graceful close or half-close. Runs until nothing is left, since settling one
    /// connection can touch others.
    pub(crate) fn settle(&mut self) {
        // A graceful close waits for the connection's pool results, unless a stop that
        // does not wait for jobs is under way.
        let skip_jobs = self.stopping != Stopping::No && !self.config.wait_for_jobs;
        while let Some(id) = self.dirty.pop() {
            let Some(c) = self.conn_mut(id) else { continue };
            c.dirty = false;
            if let Some(reason) = c.state.take_close() {
                self.finish(id, reason);
                continue;
            }
            if std::mem::take(&mut c.state.notify_pause) {
                self.invoke(id, |p, cx| p.pause_producing(cx));
            }
            self.settle_producer(id); // producer hook
            let Some(c) = self.conn_mut(id) else { continue };
            if c.state.close_decided() {
                self.mark_dirty(id);
                continue;
            }
            if !c.out.is_empty() {
                continue;
            }
            #[cfg(feature = "tls")]
            if c.tls != 0 && self.tls_held(id) > 0 {
                continue; // tls hook: plaintext still to encrypt and send
            }
            #[cfg(feature = "tls")]
            if self
                .conn(id)
                .is_some_and(|c| c.tls != 0 && c.state.shutdown_pending())
                && self.tls_half_close_waits(id)
            {
                continue; // tls hook: the handshake, then close_notify, then the shutdown
            }
            let Some(c) = self.conn_mut(id) else { continue };
            if c.state.is_losing() {
                if !c.state.jobs_out() || skip_jobs {
                    self.linger(id);
                }
            } else if c.state.take_shutdown_due() {
                if let Err(e) = c.stream.shutdown_write() {
                    self.close_with(id, Reason::from_io(e));
                } else if c.state.read_eof() {
                    self.finish(id, Reason::Done);
                }
            }
        }
    }

    /// Runs one callback of connection `id` with its protocol taken out of the table,
    /// catching a panic (which closes that connection).
    pub(crate) fn invoke(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        let Some(mut protocol) = self.conn_mut(id).and_then(|c| c.protocol.take()) else {
            return;
        };
        let ty = protocol_type(&*protocol);
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cx = Context::new(self, id, ty);
            f(&mut *protocol, &mut cx);
        }));
        let c = self
            .conn_mut(id)
            .expect("a connection is never removed inside its own callback");
        c.protocol = Some(protocol);
        if let Err(panic) = result {
            let msg = panic_message(&*panic);
            log::error!("{id} {}: callback panicked: {msg}", c.peer);
            self.close_with(id, Reason::Panic(msg));
        }
    }

    /// Runs a typed callback for connection `id` if it is made and not connecting.
    pub(crate) fn run_bound(&mut self, id: ConnId, call: BoundCall) {
        if self
            .conn(id)
            .is_some_and(|c| c.state.is_made() && !c.state.is_connecting())
        {
            self.invoke(id, call);
        } else {
            log::debug!("{id}: dropping a callback for a connection that is gone");
        }
    }

    // ----- timers -----

    pub(crate) fn track_timer(
        &mut self,
        id: ConnId,
        deadline: Instant,
        task: Task<K::Task>,
    ) -> TimerId {
        let timer = self.timers.insert(deadline, task);
        if let Some(c) = self.conn_mut(id) {
            c.timers.push(timer);
        }
        timer
    }

    pub(crate) fn untrack_timer(&mut self, id: ConnId, timer: TimerId) {
        if let Some(c) = self.conn_mut(id) {
            if let Some(i) = c.timers.iter().position(|t| *t == timer) {
                c.timers.swap_remove(i);
            }
        }
    }

    fn check_idle(&mut self, id: ConnId) {
        let (Some(idle), Some(c)) = (self.config.idle_timeout, self.conn(id)) else {
            return;
        };
        let due = c.last_read + idle;
        if due <= self.now {
            log::debug!("{id} {}: idle for {idle:?}", c.peer);
            self.close_with(id, Reason::TimedOut);
        } else {
            // Reads only touch `last_read`; the timer re-arms lazily from it.
            self.track_timer(id, due, Task::Idle(id));
        }
    }

    /// Runs one due timer of the core's own kinds (then settles); a kernel timer is
    /// handed back for the kernel to run.
    pub(crate) fn run_task(&mut self, timer: TimerId, task: Task<K::Task>) -> Option<K::Task> {
        match task {
            Task::Bound(id, call) => {
                self.untrack_timer(id, timer);
                self.run_bound(id, call);
            }
            Task::Idle(id) => {
                self.untrack_timer(id, timer);
                self.check_idle(id);
            }
            Task::CloseDeadline(id) | Task::LingerDeadline(id) => {
                self.untrack_timer(id, timer);
                self.close_deadline(id);
            }
            Task::ConnectTimeout(id) => {
                self.untrack_timer(id, timer);
                let err = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                self.fail_connect(id, err);
            }
            #[cfg(feature = "tls")]
            Task::TlsHandshake(id) => {
                self.untrack_timer(id, timer);
                self.tls_handshake_deadline(id);
            }
            Task::Watch(w) => w.timer(self, timer), // dial hook
            Task::Kernel(x) => return Some(x),
        }
        self.settle();
        None
    }

    pub(crate) fn cancel_timer(&mut self, timer: TimerId) -> bool {
        match self.timers.cancel(timer) {
            Some(Task::Bound(id, _)) | Some(Task::Idle(id)) => {
                self.untrack_timer(id, timer);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    pub(crate) fn reset_timer(&mut self, timer: TimerId, delay: Duration) -> bool {
        let deadline = self.clock() + delay;
        self.timers.reset(timer, deadline)
    }

    // ----- the thread pool -----

    /// Whether `submit_job` would accept a job now.
    pub(crate) fn pool_has_room(&self) -> bool {
        self.stopping == Stopping::No && K::pool_has_room(self)
    }

    /// Hands `job` to the pool; its result goes to `done` on this thread.
    pub(crate) fn submit_job(
        &mut self,
        job: JobFn,
        done: JobDone<K::JobDone>,
    ) -> Result<(), PoolBusy> {
        if self.stopping != Stopping::No {
            return Err(PoolBusy);
        }
        self.next_job_generation = self.next_job_generation.wrapping_add(1);
        let generation = self.next_job_generation;
        let bound = match &done {
            JobDone::Bound(id, _) => Some(*id),
            JobDone::Kernel(_) => None,
        };
        let index = self.jobs.insert(PendingJob { generation, done });
        let key = ((generation as u64) << 32) | index as u64;
        if let Err(busy) = K::submit(self, key, job) {
            self.jobs.remove(index);
            return Err(busy);
        }
        if let Some(c) = bound.and_then(|id| self.conn_mut(id)) {
            c.state.job_out();
        }
        Ok(())
    }

    /// A job's result is back: a connection's `done` runs with its protocol (writes
    /// accepted even while a graceful close waits for it); a kernel's is handed back.
    pub(crate) fn job_finished(
        &mut self,
        key: u64,
        result: JobResult,
    ) -> Option<(K::JobDone, JobResult)> {
        let index = (key & 0xFFFF_FFFF) as usize;
        let generation = (key >> 32) as u32;
        if self
            .jobs
            .get(index)
            .is_none_or(|j| j.generation != generation)
        {
            return None;
        }
        match self.jobs.remove(index).done {
            JobDone::Bound(id, done) => {
                match self.conn_mut(id) {
                    Some(c) if c.state.is_made() => {
                        c.state.job_back();
                        self.invoke(id, move |p, cx| done(p, cx, result));
                        if let Some(c) = self.conn_mut(id) {
                            c.state.job_delivered();
                        }
                        self.mark_dirty(id);
                    }
                    Some(c) => c.state.job_back(),
                    None => log::debug!("{id}: dropping a pool result: the connection is gone"),
                }
                self.settle();
                None
            }
            JobDone::Kernel(x) => Some((x, result)),
        }
    }

    /// Delivers [`JobError::Cancelled`] for the jobs under `keys` (a stop dropped
    /// them before they started); kernel jobs' callbacks are handed back.
    pub(crate) fn cancel_jobs(&mut self, keys: Vec<u64>) -> Vec<(K::JobDone, JobResult)> {
        keys.into_iter()
            .filter_map(|key| self.job_finished(key, Err(JobError::Cancelled)))
            .collect()
    }

    // ----- stopping -----

    pub(crate) fn stop(&mut self) {
        if self.stopping == Stopping::No {
            self.stopping = Stopping::Requested;
        }
    }

    // ----- producers (src/producer.rs) -----
    //
    // `Slot` decides what a registered producer is owed; these carry it out, from the
    // hooks marked "producer hook" above. A pull is never made from `settle` or a drain
    // directly: they put the connection on the ready list and the pull is made from
    // `read_ready`, in the carried-over phase, so a producer whose bytes the kernel
    // takes at once is asked once per turn, not in a loop that holds the reactor.

    /// Whether a pull producer of connection `id` may be asked now: the connection
    /// takes writes, is not paused, and has at most the low watermark queued.
    fn pull_room(&self, id: ConnId) -> bool {
        self.conn(id).is_some_and(|c| {
            c.state.is_made()
                && c.state.accepts_writes()
                && !c.state.producer_paused
                && c.out.len() <= self.config.low_watermark_bytes
        })
    }

    /// Makes the pull owed to connection `id`'s producer, if there is room, and owes
    /// the next one (next turn) if the kernel took all it wrote.
    fn serve_pull(&mut self, id: ConnId) {
        if self.producers.is_empty() {
            return;
        }
        let room = self.pull_room(id);
        if !self
            .producers
            .get_mut(&id)
            .is_some_and(|s| s.take_pull(room))
        {
            return;
        }
        // A call that wrote and left nothing queued made a write system call: the
        // kernel took it all, and no drain will come to owe the next pull.
        let writes = self.counters.write_calls;
        self.call_producer(id, |p, cx| p.resume(cx));
        let wrote = self.counters.write_calls != writes;
        let room = self.pull_room(id);
        let empty = self.conn(id).is_some_and(|c| c.out.is_empty());
        if self
            .producers
            .get_mut(&id)
            .is_some_and(|s| s.after_pull(room, empty, wrote))
        {
            self.mark_dirty(id);
        }
    }

    /// Bytes left connection `id`'s queue: resume a paused push producer, or owe a
    /// pull producer a call if there is room now.
    fn producer_drained(&mut self, id: ConnId) {
        if self.producers.is_empty() {
            return;
        }
        let paused = self.conn(id).is_some_and(|c| c.state.producer_paused);
        let room = self.pull_room(id);
        let Some(slot) = self.producers.get_mut(&id) else {
            return;
        };
        if slot.take_resume(paused) {
            self.call_producer(id, |p, cx| p.resume(cx));
        } else if room && slot.want() {
            self.mark_dirty(id);
        }
    }

    /// What `settle` owes connection `id`'s producer: `done` once unregistered, a
    /// pause, or a place on the ready list for an owed pull.
    fn settle_producer(&mut self, id: ConnId) {
        if self.producers.is_empty() {
            return;
        }
        let paused = self.conn(id).is_some_and(|c| c.state.producer_paused);
        let Some(slot) = self.producers.get_mut(&id) else {
            return;
        };
        if slot.done_due() {
            if let Some(entry) = self.producers.remove(&id).and_then(|s| s.entry) {
                self.invoke(id, entry.into_done());
            }
        } else if slot.take_pause(paused) {
            self.call_producer(id, |p, cx| p.pause(cx));
        } else if slot.wanted() {
            self.mark_ready(id);
        }
    }

    /// Runs one of connection `id`'s producer callbacks with the producer taken out of
    /// its slot, catching a panic (which closes the connection), as `invoke` does for
    /// the protocol.
    fn call_producer(&mut self, id: ConnId, f: impl FnOnce(&mut dyn Registered, &mut Context<'_>)) {
        let Some(ty) = self
            .conn(id)
            .and_then(|c| c.protocol.as_deref())
            .map(protocol_type)
        else {
            return;
        };
        let Some(mut entry) = self.producers.get_mut(&id).and_then(|s| s.entry.take()) else {
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cx = Context::new(self, id, ty);
            f(&mut *entry, &mut cx);
        }));
        // The registration stays while its producer runs: only `settle` and `finish`
        // remove it, and neither runs inside a callback.
        if let Some(slot) = self.producers.get_mut(&id) {
            slot.entry = Some(entry);
        }
        if let Err(panic) = result {
            let msg = panic_message(&*panic);
            if let Some(c) = self.conn(id) {
                log::error!("{id} {}: producer panicked: {msg}", c.peer);
            }
            self.close_with(id, Reason::Panic(msg));
        }
    }

    /// The connection ended: its producer, if still registered, gets `stop_producing`
    /// (a panic is logged) and is dropped.
    fn stop_producer(&mut self, id: ConnId, ty: TypeId, producer: Option<Slot>) {
        let Some(mut entry) = producer.and_then(|s| s.into_stoppable()) else {
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cx = Context::new(self, id, ty);
            entry.stop(&mut cx);
        }));
        if let Err(panic) = result {
            log::error!("{id}: stop_producing panicked: {}", panic_message(&*panic));
        }
    }
}

impl<K: Kernel> ProducerDriver for Core<K> {
    fn can_register_producer(&self, id: ConnId) -> bool {
        self.conn(id)
            .is_some_and(|c| c.state.is_made() && c.state.accepts_writes())
            && !self.producers.contains_key(&id)
    }

    fn register_producer(&mut self, id: ConnId, kind: ProducerKind, entry: Box<dyn Registered>) {
        if self.conn(id).is_none() {
            return;
        }
        let old = self.producers.insert(id, Slot::new(kind, entry));
        debug_assert!(old.is_none(), "checked by can_register_producer");
        self.mark_dirty(id);
    }

    fn unregister_producer(&mut self, id: ConnId) {
        if self.producers.get_mut(&id).is_some_and(|s| s.unregister()) {
            self.mark_dirty(id);
        }
    }
}

/// The emptied allocation of a list that a turn walks while the walk may add to it
/// again (`Core::corked`, `Core::ready`). [`swap`](Self::swap) hands out the list's
/// items and leaves the spare allocation in its place; [`keep`](Self::keep) takes the
/// walked one back. Taking the list with `std::mem::take` instead freed it every turn
/// and grew a new one, a `malloc` and `realloc`s per turn that the echo profile
/// showed (see BENCHMARKS.md).
pub(crate) struct Spare<T>(Vec<T>);

impl<T> Default for Spare<T> {
    fn default() -> Self {
        Spare(Vec::new())
    }
}

impl<T> Spare<T> {
    /// The items of `list`, which is left empty with the spare allocation.
    pub(crate) fn swap(&mut self, list: &mut Vec<T>) -> Vec<T> {
        debug_assert!(self.0.is_empty());
        std::mem::replace(list, std::mem::take(&mut self.0))
    }

    /// Keeps the (walked) allocation of `list` for the next [`swap`](Self::swap).
    pub(crate) fn keep(&mut self, mut list: Vec<T>) {
        list.clear();
        self.0 = list;
    }
}
