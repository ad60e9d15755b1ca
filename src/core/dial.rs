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
//! `report_failed`, `run_task`), never inside a protocol callback, so it may call
//! back into protocols through [`Dialer::run_bound`].

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Core, Kernel, Stopping, Task};
use crate::ids::ConnId;
use crate::protocol::{Addr, Protocol, Reason};
use crate::timer::TimerId;
use crate::transport::BoundCall;

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
    /// Connection `id` ended, after its `connection_lost` or `connection_failed`.
    fn ended(&self, core: &mut dyn Dialer, id: ConnId, ending: Ending<'_>);
    /// The watcher's timer `timer` is due.
    fn timer(&self, core: &mut dyn Dialer, timer: TimerId);
}

/// Starting a connect: the kernel's part (a non-blocking socket for the reactor, a
/// memory stream that waits for the test for the kit).
pub(crate) trait Dial: Sized {
    /// A stream that is connecting to `peer`.
    fn connect_stream(core: &mut Core<Self>, peer: &Addr) -> io::Result<Self::Stream>
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
    /// Runs `call` with connection `id`'s protocol if it is made; false if it is not.
    fn run_bound(&mut self, id: ConnId, call: BoundCall) -> bool;
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

    fn run_bound(&mut self, id: ConnId, call: BoundCall) -> bool {
        let made = self
            .conn(id)
            .is_some_and(|c| c.state.is_made() && !c.state.is_connecting());
        if made {
            self.invoke(id, call);
        }
        made
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
