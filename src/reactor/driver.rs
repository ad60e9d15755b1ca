//! `Driver` for `Core`: what a `Context` does, on the real reactor.

use super::*;

impl Driver for Core {
    fn write(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.send(id, &[IoSlice::new(data)])
    }

    fn write_vectored(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> bool {
        self.send(id, bufs)
    }

    fn lose_connection(&mut self, id: ConnId) {
        let close_timeout = self.config.close_timeout;
        let Some(c) = self.conn_mut(id) else { return };
        if c.is_closing() {
            return;
        }
        if c.connecting {
            let err = io::Error::new(io::ErrorKind::Interrupted, "connect cancelled");
            return self.fail_connect(id, err);
        }
        c.losing = true;
        if !c.out.is_empty() || c.jobs > 0 {
            self.track_timer(id, Instant::now() + close_timeout, Task::CloseDeadline(id));
        }
        self.mark_dirty(id);
    }

    fn lose_write_connection(&mut self, id: ConnId) {
        let Some(c) = self.conn_mut(id) else { return };
        if !c.is_closing() && !c.shutdown_write {
            c.shutdown_write = true;
            self.mark_dirty(id);
        }
    }

    fn abort_connection(&mut self, id: ConnId) {
        if self.conn(id).is_some_and(|c| c.connecting) {
            let err = io::Error::new(io::ErrorKind::Interrupted, "connect aborted");
            return self.fail_connect(id, err);
        }
        self.close_with(id, Reason::Aborted);
    }

    fn set_reading(&mut self, id: ConnId, reading: bool) {
        let Some(c) = self.conn_mut(id) else { return };
        let resumed = reading && !c.reading;
        c.reading = reading;
        c.resumed |= resumed;
        if resumed {
            // The edge for data that arrived while paused has passed: read next turn.
            self.mark_ready(id);
        }
    }

    fn is_open(&self, id: ConnId) -> bool {
        self.conn(id).is_some_and(|c| !c.is_closing())
    }

    fn is_reading(&self, id: ConnId) -> bool {
        self.conn(id).is_some_and(|c| c.wants_read())
    }

    fn buffered(&self, id: ConnId) -> usize {
        self.conn(id).map_or(0, |c| c.out.len())
    }

    fn peer_addr(&self, id: ConnId) -> Option<Addr> {
        self.conn(id).map(|c| c.peer.clone())
    }

    fn peer_credentials(&self, id: ConnId) -> Option<crate::protocol::PeerCredentials> {
        self.conn(id).and_then(|c| c.stream.peer_credentials())
    }

    fn local_addr(&self, id: ConnId) -> Option<Addr> {
        self.conn(id).and_then(|c| c.stream.local_addr())
    }

    fn set_nodelay(&mut self, id: ConnId, on: bool) -> io::Result<()> {
        let c = self.conn(id).ok_or(io::ErrorKind::NotConnected)?;
        c.stream.tcp()?.set_nodelay(on)
    }

    fn set_keepalive(&mut self, id: ConnId, idle: Option<Duration>) -> io::Result<()> {
        let c = self.conn(id).ok_or(io::ErrorKind::NotConnected)?;
        net::set_keepalive(c.stream.tcp()?, idle)
    }

    fn call_later(&mut self, id: ConnId, delay: Duration, call: BoundCall) -> TimerId {
        let deadline = Instant::now() + delay;
        if self.conn(id).is_none() {
            // Gone already: hand back an id that is dead from the start.
            let t = self.timers.insert(deadline, Task::Bound(id, call));
            self.timers.cancel(t);
            return t;
        }
        self.track_timer(id, deadline, Task::Bound(id, call))
    }

    fn cancel_timer(&mut self, timer: TimerId) -> bool {
        match self.timers.cancel(timer) {
            Some(Task::Bound(id, _)) | Some(Task::Idle(id)) => {
                self.untrack_timer(id, timer);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    fn reset_timer(&mut self, timer: TimerId, delay: Duration) -> bool {
        self.timers.reset(timer, Instant::now() + delay)
    }

    fn now(&self) -> Instant {
        Instant::now()
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
}
