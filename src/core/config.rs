//! Limits and tunables: what a `Builder` sets and the core and the reactor read.

use std::time::Duration;

use crate::net::ListenOptions;
use crate::transport::WriteLimits;

/// Default bound on jobs waiting for a pool thread: deep enough to absorb a burst,
/// shallow enough that a flood of work is refused (`PoolBusy`) within milliseconds of
/// work rather than queued for minutes.
const DEFAULT_POOL_QUEUE_JOBS: usize = 4096;

/// Default cap on open connections: well above what one thread serves well, low enough
/// that a connection flood meets a limit before it meets the descriptor table.
const DEFAULT_MAX_CONNECTIONS: usize = 65_536;

/// Default bound on the wait for the peer's end after a graceful close has flushed and
/// shut the write side: nginx's `lingering_timeout`. A peer that has sent nothing for
/// this long after our FIN has nothing in flight that could still turn our close
/// into a reset.
const DEFAULT_LINGER_TIMEOUT: Duration = Duration::from_secs(5);

/// Default bound on the input discarded while lingering: more than a peer can have in
/// flight when the close begins (Linux's largest default receive buffer, 6 MiB, plus
/// its send buffer, 4 MiB), so only a peer that keeps sending after our FIN reaches it.
const DEFAULT_LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Limits and tunables, set through `Builder`.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) max_connections: usize,
    pub(crate) read_buffer_bytes: usize,
    pub(crate) read_budget_bytes: usize,
    pub(crate) accept_budget: usize,
    pub(crate) high_watermark_bytes: usize,
    pub(crate) low_watermark_bytes: usize,
    pub(crate) write_cap_bytes: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) close_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) linger_timeout: Duration,
    pub(crate) linger_bytes: usize,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) listen: ListenOptions,
    pub(crate) events_capacity: usize,
    pub(crate) pool_threads: usize,
    pub(crate) pool_queue_jobs: usize,
    pub(crate) wait_for_jobs: bool,
    pub(crate) busy_poll: Duration,
    pub(crate) coalesce_writes: Duration,
    pub(crate) pool_nice: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            read_buffer_bytes: 64 * 1024,
            read_budget_bytes: 256 * 1024,
            accept_budget: 128,
            high_watermark_bytes: 64 * 1024,
            low_watermark_bytes: 16 * 1024,
            write_cap_bytes: 16 * 1024 * 1024,
            idle_timeout: None,
            close_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            linger_timeout: DEFAULT_LINGER_TIMEOUT,
            linger_bytes: DEFAULT_LINGER_BYTES,
            connect_timeout: Some(Duration::from_secs(30)),
            listen: ListenOptions::default(),
            events_capacity: 1024,
            pool_threads: std::thread::available_parallelism().map_or(4, |n| n.get()),
            pool_queue_jobs: DEFAULT_POOL_QUEUE_JOBS,
            wait_for_jobs: true,
            busy_poll: Duration::ZERO,
            coalesce_writes: Duration::ZERO,
            pool_nice: 0,
        }
    }
}

impl Config {
    /// Most bytes a connection's small writes gather before going out (see
    /// `Core::send`): one queue chunk, and never so much that corking alone would
    /// pass the high watermark and pause a producer the kernel would have kept up with.
    pub(crate) fn cork_limit(&self) -> usize {
        crate::transport::CHUNK_BYTES.min(self.high_watermark_bytes)
    }

    pub(crate) fn write_limits(&self) -> WriteLimits {
        WriteLimits {
            high_watermark_bytes: self.high_watermark_bytes,
            low_watermark_bytes: self.low_watermark_bytes,
            write_cap_bytes: self.write_cap_bytes,
        }
    }
}
