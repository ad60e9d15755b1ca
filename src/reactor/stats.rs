//! Introspection: what the reactor holds now, and what it has done so far.

use std::fmt;

use super::{Core, Reactor};
pub use crate::core::ClosedByReason;

/// A snapshot of a reactor, from [`Reactor::stats`]: cheap enough to take every
/// second (one pass over the connection table).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Open connections, including those connecting or closing.
    pub connections: usize,
    /// Listening sockets.
    pub listeners: usize,
    /// Datagram sockets.
    pub datagram_sockets: usize,
    /// Pending timers, the reactor's own included.
    pub timers: usize,
    /// Bytes queued for writing, over all connections.
    pub buffered_bytes: usize,
    /// Pool jobs waiting for a thread.
    pub pool_queued: usize,
    /// Pool jobs queued or running whose results are not back yet.
    pub pending_jobs: usize,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Accepted connections closed at once: over `max_connections`, or refused by
    /// their factory.
    pub refused: u64,
    /// `accept` calls that failed (out of descriptors, say).
    pub accept_errors: u64,
    /// Outgoing connections that failed.
    pub connect_failed: u64,
    /// `write`/`writev` system calls made on connections so far. Small writes made
    /// during one turn are gathered into one call per connection, so under load this
    /// grows more slowly than the number of `Context::write` calls.
    pub write_calls: u64,
    /// Connections closed so far, by reason.
    pub closed: ClosedByReason,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.closed;
        write!(
            f,
            "{} connections, {} listeners, {} datagram sockets, {} timers, {} bytes buffered, \
             {} jobs queued / {} pending; accepted {}, refused {}, accept errors {}, \
             connects failed {}, write calls {}; closed {} (done {}, lost {}, aborted {}, timed out {}, \
             overflow {}, io {}, panic {})",
            self.connections,
            self.listeners,
            self.datagram_sockets,
            self.timers,
            self.buffered_bytes,
            self.pool_queued,
            self.pending_jobs,
            self.accepted,
            self.refused,
            self.accept_errors,
            self.connect_failed,
            self.write_calls,
            c.total(),
            c.done,
            c.lost,
            c.aborted,
            c.timed_out,
            c.write_overflow,
            c.io,
            c.panic,
        )
    }
}

impl Reactor {
    /// What the reactor holds now and has done so far.
    ///
    /// # Examples
    ///
    /// ```
    /// let reactor = twistor::Reactor::new()?;
    /// let stats = reactor.stats();
    /// assert_eq!((stats.connections, stats.closed.total()), (0, 0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }
}

impl Core {
    fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            connections: self.conns.len(),
            listeners: self.k.listeners.len(),
            datagram_sockets: self.datagrams.len(),
            timers: self.timers.len(),
            buffered_bytes: self.conns.iter().map(|(_, c)| c.out.len()).sum(),
            pool_queued: self.k.pool.as_ref().map_or(0, |p| p.queued()),
            pending_jobs: self.jobs.len(),
            accepted: c.accepted,
            refused: c.refused,
            accept_errors: c.accept_errors,
            connect_failed: c.connect_failed,
            write_calls: c.write_calls,
            closed: c.closed,
        }
    }
}
