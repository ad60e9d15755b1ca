//! Watched outgoing connections: the core's side of a client service (src/client.rs).
//!
//! A [`Watcher`] is told, after the protocol's own callback, when a connection it
//! started is made, lost or failed, and when one of its timers is due, each time with
//! the core as a [`Dialer`], through which it can start the next connect, set a timer
//! or run code on the connection. The protocol in the connection's slot is the user's
//! own (no wrapper), so its typed callbacks (`Context::call_later`,
//! `Reactor::call_protocol`) keep working. Watchers live beside the table, as
//! producers do: few connections have one.
//!
//! A watcher is only called from the core's own steps (`make`, `finish`,
//! `report_failed`, `run_task`, a pool result), never inside a protocol callback, so
//! it may call back into protocols through [`Dialer::run_bound`].
//!
//! A connect to a host name is a watcher too (`client::HostDial`): it asks
//! [`Dialer::resolve`] for the addresses (a pool job, never on the loop thread), tries
//! them in order with [`Dialer::dial`], and hands the user's protocol to the first
//! connection made with [`Dialer::adopt`], or its failure to [`Dialer::fail_later`].

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Core, Kernel, Stopping, Task};
use crate::ids::ConnId;
use crate::pool::PoolBusy;
use crate::protocol::{Addr, Protocol, Reason};
use crate::timer::TimerId;
use crate::transport::{BoundCall, Driver};

// `Dialer`, `Watcher` and `Ending` are `pub` in this private module only because the
// sealed `client::Network` trait names `Dialer`: no path reaches them from outside the
// crate.

/// How a watched connection ended.
#[derive(Debug)]
pub enum Ending<'a> {
    /// It was made, then lost (after `connection_lost`).
    Lost(&'a Reason),
    /// It was never made (after `connection_failed`): a copy of the error.
    Failed(io::Error),
}

/// What a client service is told about the connections it started.
pub trait Watcher {
    /// Connection `id` is made, after its `connection_made`.
    fn made(&self, core: &mut dyn Dialer, id: ConnId);
    /// TLS connection `id` finished its handshake (after `made`; its first
    /// `data_received` comes after this).
    fn secured(&self, core: &mut dyn Dialer, id: ConnId) {
        let _ = (core, id);
    }
    /// Connection `id` ended, after its `connection_lost` or `connection_failed`.
    fn ended(&self, core: &mut dyn Dialer, id: ConnId, ending: Ending<'_>);
    /// The watcher's timer `timer` is due.
    fn timer(&self, core: &mut dyn Dialer, timer: TimerId);
    /// The name the watcher asked [`Dialer::resolve`] for is resolved (or not).
    fn resolved(&self, core: &mut dyn Dialer, result: io::Result<Vec<SocketAddr>>) {
        let _ = (core, result);
    }
}

/// What runs with a resolution's outcome, on the loop thread.
pub(crate) type ResolveDone<K> = Box<dyn FnOnce(&mut Core<K>, io::Result<Vec<SocketAddr>>)>;

/// Starting a connect: the kernel's part (a non-blocking socket for the reactor, a
/// memory stream that waits for the test for the kit).
pub(crate) trait Dial: Sized {
    /// A stream that is connecting to `peer`.
    fn connect_stream(core: &mut Core<Self>, peer: &Addr) -> io::Result<Self::Stream>
    where
        Self: Kernel;
    /// Resolves `host:port` off the loop thread (the reactor's pool; the kit's pool
    /// jobs, which the test runs), then runs `done` with the outcome.
    fn resolve(
        core: &mut Core<Self>,
        host: String,
        port: u16,
        done: ResolveDone<Self>,
    ) -> Result<(), PoolBusy>
    where
        Self: Kernel;
}

/// What a [`Watcher`] may do with the core: the core over any kernel, type-erased.
pub trait Dialer {
    /// Starts connecting to `peer` with `protocol`, watched by `watcher`; the outcome
    /// comes to the protocol (`connection_made` or `connection_failed`) and then to
    /// the watcher, never inside this call.
    fn dial(
        &mut self,
        peer: &Addr,
        timeout: Option<Duration>,
        protocol: Box<dyn Protocol>,
        watcher: Rc<dyn Watcher>,
    ) -> ConnId;
    /// Calls `watcher.timer` after `delay`.
    fn watch_timer(&mut self, delay: Duration, watcher: Rc<dyn Watcher>) -> TimerId;
    /// Cancels a timer; false if it already fired or was cancelled.
    fn cancel(&mut self, timer: TimerId) -> bool;
    /// The clock.
    fn clock_now(&self) -> Instant;
    /// Whether the reactor is stopping (no new connections should start).
    fn is_stopping(&self) -> bool;
    /// A graceful close of connection `id`, or the cancel of its pending connect.
    fn close(&mut self, id: ConnId);
    /// An abortive close of connection `id` (what is queued is dropped), or the
    /// cancel of its pending connect.
    fn abort(&mut self, id: ConnId);
    /// Runs `call` with connection `id`'s protocol if it is made; false if it is not.
    fn run_bound(&mut self, id: ConnId, call: BoundCall) -> bool;
    /// Starts resolving `host:port`; the outcome goes to `watcher.resolved`, never
    /// inside this call.
    ///
    /// # Errors
    /// The pool is busy or the reactor is stopping: nothing was started.
    fn resolve(&mut self, host: &str, port: u16, watcher: Rc<dyn Watcher>) -> io::Result<()>;
    /// Puts `protocol` in made connection `id` in place of the one there (a
    /// stand-in, `client::Probe`) and runs its `connection_made`; `watcher` watches the connection
    /// from now on.
    fn adopt(&mut self, id: ConnId, protocol: Box<dyn Protocol>, watcher: Option<Rc<dyn Watcher>>);
    /// A connect that never got a connection: `protocol` gets `connection_failed`
    /// with `error` at the next report (never inside this call), then `watcher`, if
    /// any, is told. Returns the (detached) id the failure is reported under.
    fn fail_later(
        &mut self,
        protocol: Box<dyn Protocol>,
        error: io::Error,
        watcher: Option<Rc<dyn Watcher>>,
    ) -> ConnId;
    /// Writes to connection `id`, as `Context::write_to`; the core's step that
    /// called the watcher settles it.
    fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool;
    /// The network's connect timeout (`Builder::connect_timeout`).
    fn connect_timeout(&self) -> Option<Duration>;
    /// Connection `id`, just dialed and not made yet, speaks TLS through `session`
    /// (dropped if `id` is a connect that already failed). `Session` is the crate's
    /// own, as this trait is in fact (see above).
    #[cfg(feature = "tls")]
    #[allow(private_interfaces)]
    fn start_tls(&mut self, id: ConnId, session: crate::tls::session::Session);
}

impl<K: Kernel> Dialer for Core<K> {
    fn dial(
        &mut self,
        peer: &Addr,
        timeout: Option<Duration>,
        protocol: Box<dyn Protocol>,
        watcher: Rc<dyn Watcher>,
    ) -> ConnId {
        let id = self.dial_unwatched(peer, timeout, protocol);
        self.watchers.insert(id, watcher);
        id
    }

    fn watch_timer(&mut self, delay: Duration, watcher: Rc<dyn Watcher>) -> TimerId {
        let due = self.clock() + delay;
        self.timers.insert(due, Task::Watch(watcher))
    }

    fn cancel(&mut self, timer: TimerId) -> bool {
        self.cancel_timer(timer)
    }

    fn clock_now(&self) -> Instant {
        self.clock()
    }

    fn is_stopping(&self) -> bool {
        self.stopping != Stopping::No
    }

    fn close(&mut self, id: ConnId) {
        self.lose_connection(id);
    }

    fn abort(&mut self, id: ConnId) {
        self.abort_connection(id);
    }

    fn run_bound(&mut self, id: ConnId, call: BoundCall) -> bool {
        let made = self
            .conn(id)
            .is_some_and(|c| c.state.is_made() && !c.state.is_connecting());
        if made {
            self.invoke(id, call);
        }
        made
    }

    fn resolve(&mut self, host: &str, port: u16, watcher: Rc<dyn Watcher>) -> io::Result<()> {
        let done: ResolveDone<K> = Box::new(move |core: &mut Core<K>, result| {
            watcher.resolved(core, result);
        });
        K::resolve(self, host.to_owned(), port, done)
            .map_err(|_| io::Error::other("the thread pool is busy or the reactor is stopping"))
    }

    fn adopt(&mut self, id: ConnId, protocol: Box<dyn Protocol>, watcher: Option<Rc<dyn Watcher>>) {
        let Some(c) = self.conn_mut(id) else { return };
        c.protocol = Some(protocol);
        match watcher {
            Some(w) => self.watchers.insert(id, w),
            None => self.watchers.remove(&id),
        };
        self.invoke(id, |p, cx| p.connection_made(cx));
    }

    fn fail_later(
        &mut self,
        protocol: Box<dyn Protocol>,
        error: io::Error,
        watcher: Option<Rc<dyn Watcher>>,
    ) -> ConnId {
        let id = ConnId::detached(self.next_generation());
        log::debug!("{id}: connect failed: {error}");
        self.failed.push((id, protocol, error));
        if let Some(w) = watcher {
            self.watchers.insert(id, w);
        }
        id
    }

    fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        Driver::write(self, id, data)
    }

    fn connect_timeout(&self) -> Option<Duration> {
        self.config.connect_timeout
    }

    #[cfg(feature = "tls")]
    fn start_tls(&mut self, id: ConnId, session: crate::tls::session::Session) {
        Core::start_tls(self, id, session);
    }
}

impl<K: Kernel> Core<K> {
    /// Starts connecting to `peer` with `protocol`: the connection joins the table as
    /// connecting (made on its first writable event, or failed then, by its timeout or
    /// by a close); a stream that cannot even start fails at the next report.
    pub(crate) fn dial_unwatched(
        &mut self,
        peer: &Addr,
        timeout: Option<Duration>,
        protocol: Box<dyn Protocol>,
    ) -> ConnId {
        let inserted = match K::connect_stream(self, peer) {
            Ok(stream) => self.insert_conn(stream, peer.clone(), protocol, true),
            Err(e) => Err((e, protocol)),
        };
        match inserted {
            Ok(id) => {
                if let Some(t) = timeout {
                    let due = self.clock() + t;
                    self.track_timer(id, due, Task::ConnectTimeout(id));
                }
                id
            }
            Err((e, protocol)) => {
                // Reported with the other failed connects, never inside this call.
                let id = ConnId::detached(self.next_generation());
                log::debug!("{id} {peer}: connect failed: {e}");
                self.failed.push((id, protocol, e));
                id
            }
        }
    }

    /// Connection `id` is made: tell its watcher.
    pub(crate) fn watch_made(&mut self, id: ConnId) {
        if self.watchers.is_empty() {
            return;
        }
        if let Some(w) = self.watchers.get(&id).cloned() {
            w.made(self, id);
        }
    }

    /// TLS connection `id`'s handshake is done: tell its watcher.
    #[cfg(feature = "tls")]
    pub(crate) fn watch_secured(&mut self, id: ConnId) {
        if self.watchers.is_empty() {
            return;
        }
        if let Some(w) = self.watchers.get(&id).cloned() {
            w.secured(self, id);
        }
    }

    /// Connection `id` ended: tell its watcher, which then forgets it.
    pub(crate) fn watch_ended(&mut self, id: ConnId, ending: Ending<'_>) {
        if self.watchers.is_empty() {
            return;
        }
        if let Some(w) = self.watchers.remove(&id) {
            w.ended(self, id, ending);
        }
    }
}
