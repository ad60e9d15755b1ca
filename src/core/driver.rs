//! `Driver` for the core: what a `Context` does, under the reactor and the kit alike.

use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use super::{Core, JobDone, Kernel, Stream, Task};
use crate::ids::ConnId;
use crate::pool::PoolBusy;
use crate::protocol::{Addr, PeerCredentials};
use crate::timer::TimerId;
use crate::transport::{BoundCall, BoundDone, Driver, JobFn};

impl<K: Kernel> Driver for Core<K> {
    fn write(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.send(id, &[IoSlice::new(data)])
    }

    fn write_vectored(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> bool {
        self.send(id, bufs)
    }

    fn lose_connection(&mut self, id: ConnId) {
        Core::lose_connection(self, id)
    }

    fn lose_write_connection(&mut self, id: ConnId) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.state.ask_shutdown_write() {
            self.mark_dirty(id);
        }
    }

    fn abort_connection(&mut self, id: ConnId) {
        Core::abort_connection(self, id)
    }

    fn set_reading(&mut self, id: ConnId, reading: bool) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.state.set_reading(reading) {
            // The edge for data that arrived while paused has passed: read next turn.
            self.mark_ready(id);
        }
    }

    fn is_open(&self, id: ConnId) -> bool {
        self.conn(id).is_some_and(|c| !c.state.is_closing())
    }

    fn is_reading(&self, id: ConnId) -> bool {
        self.conn(id).is_some_and(|c| c.state.wants_read())
    }

    fn buffered(&self, id: ConnId) -> usize {
        let held = {
            #[cfg(feature = "tls")]
            {
                self.tls_held(id)
            }
            #[cfg(not(feature = "tls"))]
            {
                0
            }
        };
        self.conn(id).map_or(0, |c| c.out.len()) + held
    }

    #[cfg(feature = "tls")]
    fn tls_info(&self, id: ConnId) -> Option<crate::tls::TlsInfo> {
        self.session(id).map(|s| s.info())
    }

    fn peer_addr(&self, id: ConnId) -> Option<Addr> {
        self.conn(id).map(|c| c.peer.clone())
    }

    fn peer_credentials(&self, id: ConnId) -> Option<PeerCredentials> {
        self.conn(id).and_then(|c| c.stream.peer_credentials())
    }

    fn local_addr(&self, id: ConnId) -> Option<Addr> {
        self.conn(id).and_then(|c| c.stream.local_addr())
    }

    fn set_nodelay(&mut self, id: ConnId, on: bool) -> io::Result<()> {
        let c = self.conn(id).ok_or(io::ErrorKind::NotConnected)?;
        c.stream.set_nodelay(on)
    }

    fn set_keepalive(&mut self, id: ConnId, idle: Option<Duration>) -> io::Result<()> {
        let c = self.conn(id).ok_or(io::ErrorKind::NotConnected)?;
        c.stream.set_keepalive(idle)
    }

    fn call_later(&mut self, id: ConnId, delay: Duration, call: BoundCall) -> TimerId {
        let deadline = self.clock() + delay;
        if self.conn(id).is_none() {
            // Gone already: hand back an id that is dead from the start.
            let t = self.timers.insert(deadline, Task::Bound(id, call));
            self.timers.cancel(t);
            return t;
        }
        self.track_timer(id, deadline, Task::Bound(id, call))
    }

    fn cancel_timer(&mut self, timer: TimerId) -> bool {
        Core::cancel_timer(self, timer)
    }

    fn reset_timer(&mut self, timer: TimerId, delay: Duration) -> bool {
        Core::reset_timer(self, timer, delay)
    }

    fn now(&self) -> Instant {
        self.clock()
    }

    fn stop(&mut self) {
        Core::stop(self)
    }

    fn defer_to_thread(&mut self, id: ConnId, job: JobFn, done: BoundDone) -> Result<(), PoolBusy> {
        if self.conn(id).is_none() {
            return Err(PoolBusy);
        }
        self.submit_job(job, JobDone::Bound(id, done))
    }

    fn can_defer_to_thread(&self, id: ConnId) -> bool {
        self.conn(id).is_some() && self.pool_has_room()
    }

    fn dialer(&mut self) -> &mut dyn super::Dialer {
        self
    }
}
