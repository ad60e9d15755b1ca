//! Producers: data sources that a connection asks for more while it has room.
//!
//! Twisted's `registerProducer`, `IPullProducer`, `IPushProducer` and `FileSender`. A
//! protocol registers a [`Producer`] with its connection
//! ([`Context::register_producer`]); the connection then drives it by its write
//! buffer's watermarks, so a large or endless stream goes out at the pace the peer
//! reads, with bounded memory:
//!
//! - A **pull** producer ([`ProducerKind::Pull`], Twisted's `streaming=False`) is asked
//!   for more, [`resume_producing`](Producer::resume_producing), each time the
//!   connection has room: at most the low watermark queued, the producer not paused,
//!   the connection neither closing nor half-closed. It is asked once after it is
//!   registered, then after each drain that leaves room, and again on the next turn of
//!   the reactor when the kernel took everything it wrote (no drain would come then).
//!   Each time, it writes something (typically one chunk) or unregisters; one that
//!   writes nothing is not asked again until something else written to the connection
//!   drains, as in Twisted. Asks are made with the connection's carried-over work
//!   (step 5 of a reactor turn, see ARCHITECTURE.md), and the one that follows bytes
//!   the kernel took at once waits for the next turn, so a fast reader cannot hold
//!   the loop: other connections, timers and the inbox are served between two chunks.
//! - A **push** producer ([`ProducerKind::Push`], `streaming=True`) writes at its own
//!   pace (from other connections' callbacks, timers, pool results) and is told
//!   [`pause_producing`](Producer::pause_producing) when the queue passes the high
//!   watermark and [`resume_producing`](Producer::resume_producing) once it is down to
//!   the low one; one registered while the queue is above the high watermark is told
//!   to pause at once. A proxy is the classic case: the producer pauses and resumes
//!   reading the other side (`cx.conn(other).pause_reading()`, see [`Context::conn`]).
//! - When the connection ends, the producer gets
//!   [`stop_producing`](Producer::stop_producing), once, before the protocol's
//!   `connection_lost`, and is dropped.
//! - The producer, or the protocol, ends the registration with
//!   [`Context::unregister_producer`] (a pull producer does so at the end of its data).
//!   The `done` closure given at registration then runs with the protocol, as a typed
//!   callback like [`Context::call_later`]'s, and gets the producer back: Twisted's
//!   Deferred from `beginFileTransfer`, and how the protocol learns that the stream
//!   has ended (to write a trailer, close, or start the next one). If the connection
//!   ends first, `done` never runs: `stop_producing` and `connection_lost` say so.
//!
//! [`FileSender`] is a pull producer that streams a file (any [`Read`]) in chunks.
//!
//! Every producer callback runs on the reactor thread with a [`Context`] for its
//! connection, like a protocol callback: its writes, closes and timers act on that
//! connection, and a panic in it closes the connection with
//! [`Reason::Panic`](crate::Reason::Panic). The producer's callbacks and `done` never
//! run inside another callback: a registration or an unregistration takes effect once
//! the callback that made it returns. All of this works the same under the
//! [`Reactor`](crate::Reactor) and the [testing kit](crate::testing), which run one
//! connection core.
//!
//! # Where twistor differs from Twisted
//!
//! - A pull producer is asked when the queue is down to the low watermark, not only
//!   once it is empty, so the socket never runs dry between chunks; and after the
//!   registering callback returns, never inside `register_producer`.
//! - Writes after `lose_connection` are dropped (see [`Context::lose_connection`]), so
//!   a protocol closes from `done`, once the producer has finished, not right after
//!   registering it; a registered producer does not hold a close open.
//! - The protocol's own [`Protocol::pause_producing`] and
//!   [`Protocol::resume_producing`] still run; a push producer is told after them.
//! - One producer at a time: registering a second one gives it back (Twisted raises).
//! - If the connection ends before the producer is done, `done` does not run (Twisted's
//!   `FileSender` fails its Deferred): `connection_lost` is the protocol's news.

// Maintainers' notes.
//
// The core keeps registrations in `Core::producers`, a side table by `ConnId` (few
// connections have one, and `Conn` must stay small). The decisions (whether a pull is
// owed, whether a push producer must be paused or resumed, whether `done` is owed) are
// `Slot` methods, tested below; the core (its "producers" section, and one-line hooks
// marked "producer hook") calls the producer when they say so: pulls from
// `read_ready` (reached through the ready list, where `settle` puts a connection owed
// a pull), pause from `settle`, resume from `after_drain`, stop from `finish`, `done`
// from `settle`. `Context` reaches the core through `ProducerDriver`, a supertrait of
// `Driver`.

use std::fs::File;
use std::io::{self, Read};
use std::marker::PhantomData;

use crate::ids::ConnId;
use crate::protocol::Protocol;
use crate::transport::{bind, BoundCall, Context};

/// A source of data for one connection, driven by its write buffer (Twisted's
/// `IPullProducer` and `IPushProducer`); see the [module docs](self).
///
/// Register it with [`Context::register_producer`], saying which kind it is.
///
/// # Examples
///
/// A pull producer that counts to 3, one line each time it is asked, then unregisters;
/// the protocol closes once it is done.
///
/// ```
/// use twistor::testing::Harness;
/// use twistor::{Context, Producer, ProducerKind, Protocol};
///
/// struct Count(u32);
///
/// impl Producer for Count {
///     fn resume_producing(&mut self, cx: &mut Context<'_>) {
///         if self.0 == 3 {
///             cx.unregister_producer();
///             return;
///         }
///         self.0 += 1;
///         cx.write(format!("{}\n", self.0).as_bytes());
///     }
/// }
///
/// struct Counter;
///
/// impl Protocol for Counter {
///     fn connection_made(&mut self, cx: &mut Context<'_>) {
///         let done = |_: &mut Counter, cx: &mut Context<'_>, count: Count| {
///             assert_eq!(count.0, 3);
///             cx.lose_connection();
///         };
///         assert!(cx.register_producer(Count(0), ProducerKind::Pull, done).is_ok());
///     }
///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
/// }
///
/// let mut h = Harness::new(Counter);
/// h.connect();
/// assert_eq!(h.take_written(), b"1\n2\n3\n");
/// assert!(h.lost().is_some_and(|r| r.is_clean()));
/// ```
pub trait Producer: 'static {
    /// Pull: produce once now (typically one chunk) with `cx.write`, or unregister at
    /// the end of the data. Push: producing may go on (after
    /// [`pause_producing`](Self::pause_producing)).
    fn resume_producing(&mut self, cx: &mut Context<'_>);

    /// Push only: the connection's queue passed the high watermark; stop writing until
    /// [`resume_producing`](Self::resume_producing). The default does nothing.
    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// The connection ended: called once, before the protocol's `connection_lost`;
    /// the producer is dropped after it. Writes through `cx` are dropped (the
    /// connection is gone), but `cx` still reaches other connections. The default
    /// does nothing.
    fn stop_producing(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }
}

/// How a registered [`Producer`] is driven: Twisted's `streaming` flag of
/// `registerProducer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerKind {
    /// Asked for more each time the connection has room (`IPullProducer`,
    /// `streaming=False`).
    Pull,
    /// Writes at its own pace; paused and resumed by the watermarks
    /// (`IPushProducer`, `streaming=True`).
    Push,
}

// ----- the registration, type-erased -----

/// A registered producer with its `done` closure, its types erased so that the core
/// can keep any of them.
pub(crate) trait Registered {
    fn resume(&mut self, cx: &mut Context<'_>);
    fn pause(&mut self, cx: &mut Context<'_>);
    fn stop(&mut self, cx: &mut Context<'_>);
    /// The `done` closure, bound to the producer it gets back, to run with the
    /// protocol.
    fn into_done(self: Box<Self>) -> BoundCall;
}

struct Entry<P, R, F> {
    producer: R,
    done: F,
    _protocol: PhantomData<fn(&mut P)>,
}

impl<P, R, F> Registered for Entry<P, R, F>
where
    P: Protocol,
    R: Producer,
    F: FnOnce(&mut P, &mut Context<'_>, R) + 'static,
{
    fn resume(&mut self, cx: &mut Context<'_>) {
        self.producer.resume_producing(cx)
    }

    fn pause(&mut self, cx: &mut Context<'_>) {
        self.producer.pause_producing(cx)
    }

    fn stop(&mut self, cx: &mut Context<'_>) {
        self.producer.stop_producing(cx)
    }

    fn into_done(self: Box<Self>) -> BoundCall {
        let Entry { producer, done, .. } = *self;
        bind(move |p: &mut P, cx| done(p, cx, producer))
    }
}

/// Erases `producer` and `done` for the core; `P` was checked against the
/// connection's protocol type by the caller.
pub(crate) fn entry<P, R, F>(producer: R, done: F) -> Box<dyn Registered>
where
    P: Protocol,
    R: Producer,
    F: FnOnce(&mut P, &mut Context<'_>, R) + 'static,
{
    Box::new(Entry {
        producer,
        done,
        _protocol: PhantomData::<fn(&mut P)>,
    })
}

/// What a [`Context`] needs from the core to register producers: the core implements
/// it, and `Driver` requires it.
pub(crate) trait ProducerDriver {
    /// Whether connection `id` takes a producer now: made, taking writes, and without
    /// one.
    fn can_register_producer(&self, id: ConnId) -> bool;
    /// Registers `entry` (checked with `can_register_producer` first).
    fn register_producer(&mut self, id: ConnId, kind: ProducerKind, entry: Box<dyn Registered>);
    fn unregister_producer(&mut self, id: ConnId);
}

// ----- the core's bookkeeping -----

/// A connection's registered producer and what is owed to it, kept by the core in
/// `Conn::producer`. Pure: the core asks it what to do and does it.
pub(crate) struct Slot {
    kind: ProducerKind,
    /// `None` while one of the producer's callbacks runs.
    pub(crate) entry: Option<Box<dyn Registered>>,
    /// Push: told to pause and not told to resume since.
    paused: bool,
    /// Pull: asked for more at the connection's next carried-over read.
    wanted: bool,
    /// Unregistered (by itself or the protocol): `done` is owed, and nothing more is.
    unregistered: bool,
}

impl Slot {
    /// A new registration; a pull producer is owed its first call.
    pub(crate) fn new(kind: ProducerKind, entry: Box<dyn Registered>) -> Slot {
        Slot {
            kind,
            entry: Some(entry),
            paused: false,
            wanted: kind == ProducerKind::Pull,
            unregistered: false,
        }
    }

    /// The registration ends: `done` is owed. True if it is new.
    pub(crate) fn unregister(&mut self) -> bool {
        !std::mem::replace(&mut self.unregistered, true)
    }

    /// `done` is owed now: unregistered, and not in the middle of one of its calls.
    pub(crate) fn done_due(&self) -> bool {
        self.unregistered && self.entry.is_some()
    }

    /// A pull producer has room again (a drain, or a call whose bytes the kernel took
    /// at once): owe it a call. True if the connection must go on the ready list.
    pub(crate) fn want(&mut self) -> bool {
        if self.kind != ProducerKind::Pull || self.unregistered {
            return false;
        }
        self.wanted = true;
        true
    }

    /// Whether a pull is owed (the connection belongs on the ready list).
    pub(crate) fn wanted(&self) -> bool {
        self.wanted && !self.unregistered
    }

    /// The owed pull, taken: true if the producer is to be asked now, given whether
    /// the connection has room.
    pub(crate) fn take_pull(&mut self, room: bool) -> bool {
        let owed = std::mem::take(&mut self.wanted) && !self.unregistered;
        owed && room && self.entry.is_some()
    }

    /// After a pull: ask again next turn if it is still registered, the connection
    /// still has room and nothing waits in the queue for a drain, and the call wrote
    /// (the kernel took it all). True if the connection must go on the ready list.
    pub(crate) fn after_pull(&mut self, room: bool, queue_empty: bool, wrote: bool) -> bool {
        room && queue_empty && wrote && self.want()
    }

    /// The connection ended: the producer to stop, unless it was unregistered (then
    /// it is no longer the connection's, as in Twisted, and is only dropped).
    pub(crate) fn into_stoppable(self) -> Option<Box<dyn Registered>> {
        self.entry.filter(|_| !self.unregistered)
    }

    /// A push producer must be told to pause: the connection is paused and it has not
    /// been told. Marks it told.
    pub(crate) fn take_pause(&mut self, connection_paused: bool) -> bool {
        let due = self.kind == ProducerKind::Push
            && connection_paused
            && !self.paused
            && !self.unregistered
            && self.entry.is_some();
        self.paused |= due;
        due
    }

    /// A push producer must be told to resume: it was told to pause and the connection
    /// no longer is. Marks it told.
    pub(crate) fn take_resume(&mut self, connection_paused: bool) -> bool {
        let due = self.kind == ProducerKind::Push
            && self.paused
            && !connection_paused
            && !self.unregistered
            && self.entry.is_some();
        self.paused &= !due;
        due
    }
}

// ----- FileSender -----

/// How much [`FileSender`] reads and writes per call by default: large enough that a
/// fast peer costs one system call per 64 KiB each way, small enough that the
/// connection's memory stays near the watermarks (the defaults are 64 KiB high,
/// 16 KiB low).
pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;

/// Streams a file (or any [`Read`]) to a connection as a pull [`Producer`]: Twisted's
/// `FileSender`.
///
/// Each time the connection has room (at most the low watermark queued), it reads one
/// chunk (64 KiB unless [`chunk_bytes`](Self::chunk_bytes) says otherwise) and writes
/// it; at the end of the file it unregisters, and the `done` closure of
/// [`begin_file_transfer`](Self::begin_file_transfer) gets the bytes sent, or the read
/// error that ended the transfer. Memory stays bounded by the low watermark plus one
/// chunk queued, plus its own chunk buffer, whatever the file's size and however slowly
/// the peer reads.
///
/// The reads are plain blocking reads on the reactor thread, as Twisted's `FileSender`
/// does: a read of a regular file is fast and bounded by the chunk, and the page cache
/// usually has the data. A reader that can block for long (a pipe, a socket, a file on
/// a slow network share) would stall every connection of the reactor: give such a
/// source to a push producer fed from the thread pool instead. A reader that answers
/// `WouldBlock` ends the transfer with that error.
///
/// # Examples
///
/// Serving a file to a peer that reads 10 bytes at a time, under the testing kit:
///
/// ```
/// use std::io::{self, Cursor};
/// use twistor::testing::HarnessBuilder;
/// use twistor::{Context, FileSender, Protocol};
///
/// #[derive(Default)]
/// struct Serve {
///     result: Option<io::Result<u64>>,
/// }
///
/// impl Protocol for Serve {
///     fn connection_made(&mut self, cx: &mut Context<'_>) {
///         let file = Cursor::new(b"0123456789".repeat(5)); // a File in real life
///         let sender = FileSender::new(file).chunk_bytes(16);
///         let started = sender.begin_file_transfer(cx, |p: &mut Serve, cx, result| {
///             p.result = Some(result);
///             cx.lose_connection();
///         });
///         assert!(started.is_ok());
///     }
///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
/// }
///
/// let mut h = HarnessBuilder::new().write_watermarks(16, 4).build(Serve::default());
/// h.set_peer_window(Some(10));
/// h.connect();
/// assert_eq!(h.take_written(), b"0123456789");
/// assert_eq!(h.buffered(), 6, "one chunk asked for, the rest of it queued");
/// while h.protocol().result.is_none() {
///     h.peer_reads(10);
/// }
/// h.peer_reads(10);
/// assert_eq!(h.take_written(), b"0123456789".repeat(4));
/// assert_eq!(h.protocol().result.as_ref().unwrap().as_ref().unwrap(), &50);
/// assert!(h.lost().is_some_and(|r| r.is_clean()));
/// ```
pub struct FileSender<R = File> {
    reader: R,
    chunk: Vec<u8>,
    chunk_bytes: usize,
    sent: u64,
    error: Option<io::Error>,
}

impl<R> std::fmt::Debug for FileSender<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSender")
            .field("chunk_bytes", &self.chunk_bytes)
            .field("sent", &self.sent)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<R: Read + 'static> FileSender<R> {
    /// A sender of what `reader` holds, from where it stands to its end, in chunks of
    /// [`DEFAULT_CHUNK_BYTES`].
    pub fn new(reader: R) -> FileSender<R> {
        FileSender {
            reader,
            chunk: Vec::new(),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            sent: 0,
            error: None,
        }
    }

    /// Reads and writes at most `n` bytes per call (at least 1). A chunk of 4 KiB or
    /// more goes to the kernel at once; smaller ones are gathered until the end of the
    /// reactor's turn, so a tiny chunk costs a turn each.
    pub fn chunk_bytes(mut self, n: usize) -> FileSender<R> {
        self.chunk_bytes = n.max(1);
        self
    }

    /// Registers this sender as the connection's pull producer (Twisted's
    /// `beginFileTransfer`). `done` runs with the protocol once the end of the file
    /// is reached and everything before it was handed to the connection (at most the
    /// low watermark is still queued: close with `lose_connection` to flush it), with
    /// the bytes sent; or once a read fails, with that error. If the connection ends
    /// first, `done` never runs.
    ///
    /// # Errors
    /// The sender is given back if the connection is closing or gone, or already has
    /// a producer.
    ///
    /// # Panics
    /// If `P` is not the type of this connection's protocol, as
    /// [`Context::call_later`].
    pub fn begin_file_transfer<P, F>(self, cx: &mut Context<'_>, done: F) -> Result<(), Self>
    where
        P: Protocol,
        F: FnOnce(&mut P, &mut Context<'_>, io::Result<u64>) + 'static,
    {
        cx.register_producer(
            self,
            ProducerKind::Pull,
            move |p: &mut P, cx, sender: Self| done(p, cx, sender.into_result()),
        )
    }

    /// Bytes handed to the connection so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// The bytes sent, or the read error that ended the transfer.
    ///
    /// # Errors
    /// The read error, if one ended the transfer.
    pub fn into_result(self) -> io::Result<u64> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.sent),
        }
    }

    /// The reader, for what is left in it (after an error, say).
    pub fn into_inner(self) -> R {
        self.reader
    }
}

impl<R: Read + 'static> Producer for FileSender<R> {
    /// Reads one chunk and writes it; at the end of the file, or on a read error,
    /// unregisters.
    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        // Kept between calls: one allocation per transfer, not per chunk.
        self.chunk.resize(self.chunk_bytes, 0);
        loop {
            match self.reader.read(&mut self.chunk) {
                Ok(0) => break cx.unregister_producer(),
                Ok(n) => {
                    if cx.write(&self.chunk[..n]) {
                        self.sent += n as u64;
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("{}: file transfer: read failed: {e}", cx.id());
                    self.error = Some(e);
                    break cx.unregister_producer();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Producer for Nothing {
        fn resume_producing(&mut self, _: &mut Context<'_>) {}
    }

    struct Proto;
    impl Protocol for Proto {
        fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    }

    fn slot(kind: ProducerKind) -> Slot {
        Slot::new(kind, entry(Nothing, |_: &mut Proto, _, _| {}))
    }

    #[test]
    fn a_pull_is_owed_at_registration_and_taken_once_only_with_room() {
        let mut s = slot(ProducerKind::Pull);
        assert!(s.wanted());
        assert!(!s.take_pull(false), "no room: not asked");
        assert!(!s.wanted(), "and not owed any more: a drain owes it again");
        assert!(s.want());
        assert!(s.take_pull(true));
        assert!(!s.take_pull(true), "once");
    }

    #[test]
    fn a_pull_is_owed_again_only_when_its_bytes_left_at_once() {
        let mut s = slot(ProducerKind::Pull);
        assert!(s.take_pull(true));
        assert!(
            !s.after_pull(true, false, true),
            "queued: the drain owes it"
        );
        assert!(
            !s.after_pull(true, true, false),
            "wrote nothing: not asked again"
        );
        assert!(!s.after_pull(false, true, true), "no room");
        assert!(s.after_pull(true, true, true));
        assert!(s.wanted());
    }

    #[test]
    fn a_pull_is_not_asked_while_its_call_runs_or_once_unregistered() {
        let mut s = slot(ProducerKind::Pull);
        let e = s.entry.take();
        assert!(!s.take_pull(true), "its call is running");
        s.entry = e;
        assert!(s.unregister());
        assert!(!s.unregister(), "once");
        assert!(!s.want() && !s.wanted() && !s.take_pull(true));
        assert!(s.done_due());
    }

    #[test]
    fn done_waits_for_the_running_call() {
        let mut s = slot(ProducerKind::Pull);
        let e = s.entry.take();
        s.unregister();
        assert!(!s.done_due());
        s.entry = e;
        assert!(s.done_due());
    }

    #[test]
    fn a_push_producer_is_never_pulled_and_alternates_pause_and_resume() {
        let mut s = slot(ProducerKind::Push);
        assert!(!s.wanted() && !s.want() && !s.take_pull(true));
        assert!(!s.take_resume(false), "never paused: no resume");
        assert!(s.take_pause(true));
        assert!(!s.take_pause(true), "told once");
        assert!(!s.take_resume(true), "still paused");
        assert!(s.take_resume(false));
        assert!(!s.take_resume(false));
        s.unregister();
        assert!(!s.take_pause(true), "nothing once unregistered");
    }

    #[test]
    fn a_pull_producer_gets_no_pause_or_resume() {
        let mut s = slot(ProducerKind::Pull);
        assert!(!s.take_pause(true) && !s.take_resume(false));
    }
}
