//! Running totals the core keeps as it goes: closes by reason, write system calls, and
//! the reactor's accept and connect figures.

use crate::protocol::Reason;

/// Connections closed so far, by [`Reason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedByReason {
    /// [`Reason::Done`].
    pub done: u64,
    /// [`Reason::Lost`].
    pub lost: u64,
    /// [`Reason::Aborted`].
    pub aborted: u64,
    /// [`Reason::TimedOut`].
    pub timed_out: u64,
    /// [`Reason::WriteOverflow`].
    pub write_overflow: u64,
    /// [`Reason::Io`].
    pub io: u64,
    /// [`Reason::Panic`].
    pub panic: u64,
    /// [`Reason::Tls`].
    pub tls: u64,
    /// [`Reason::Truncated`].
    pub truncated: u64,
}

impl ClosedByReason {
    pub(crate) fn count(&mut self, reason: &Reason) {
        let n = match reason {
            Reason::Done => &mut self.done,
            Reason::Lost(_) => &mut self.lost,
            Reason::Aborted => &mut self.aborted,
            Reason::TimedOut => &mut self.timed_out,
            Reason::WriteOverflow => &mut self.write_overflow,
            Reason::Io(_) => &mut self.io,
            Reason::Panic(_) => &mut self.panic,
            Reason::Tls(_) => &mut self.tls,
            Reason::Truncated => &mut self.truncated,
        };
        *n += 1;
    }

    /// All closes together.
    pub fn total(&self) -> u64 {
        self.done
            + self.lost
            + self.aborted
            + self.timed_out
            + self.write_overflow
            + self.io
            + self.panic
            + self.tls
            + self.truncated
    }
}

/// Running totals kept as the reactor goes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: u64,
    pub(crate) refused: u64,
    pub(crate) accept_errors: u64,
    pub(crate) connect_failed: u64,
    pub(crate) write_calls: u64,
    pub(crate) closed: ClosedByReason,
}
