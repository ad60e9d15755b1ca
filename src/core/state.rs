//! A connection's lifecycle, as one value whose transitions are methods.
//!
//! A connection is `Connecting` (an outgoing connect in progress), then `New` (in the
//! table, `connection_made` not run yet), `Open`, and, once the protocol asks for a
//! graceful close, `Losing` (flushing, and waiting for its pool jobs) and `Lingering`
//! (write side shut, discarding input until the peer's end). Beside the phase: an
//! abortive close decided but not carried out yet (it waits for the running callback
//! and wins over everything else), the read side (paused by the protocol, `reading_resumed`
//! owed, EOF seen), the write side's half-close (asked, done), the producer's watermark
//! state, and the pool jobs out. Every rule the core keeps about which combinations
//! are legal lives here, and is tested here, without sockets.

use crate::protocol::Reason;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connecting,
    New,
    Open,
    Losing,
    Lingering,
}

/// Where a connection is in its life; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct State {
    phase: Phase,
    /// An abortive close decided but not yet carried out (it waits for the current
    /// callback); the first reason wins.
    close: Option<Box<Reason>>,
    /// The protocol wants data (not paused).
    reading: bool,
    /// `reading_resumed` is owed before the next read.
    resumed: bool,
    read_eof: bool,
    /// `lose_write_connection` was called: shut the write side once flushed.
    shutdown_asked: bool,
    write_shut: bool,
    /// A pool result is being delivered: its writes are accepted while `Losing`.
    job_writes: bool,
    /// Pool jobs bound to the connection whose results are not back yet.
    jobs: u32,
    /// The protocol was (or is about to be) told to pause producing. Public to the
    /// crate for `WriteQueue::push_limited` and `resume_after_drain`, which keep the
    /// watermark rule.
    pub(crate) producer_paused: bool,
    /// `pause_producing` is owed once the current callback returns.
    pub(crate) notify_pause: bool,
}

impl State {
    /// An accepted connection (`connecting` false) or an outgoing one.
    pub(crate) fn new(connecting: bool) -> State {
        State {
            phase: if connecting {
                Phase::Connecting
            } else {
                Phase::New
            },
            close: None,
            reading: true,
            resumed: false,
            read_eof: false,
            shutdown_asked: false,
            write_shut: false,
            job_writes: false,
            jobs: 0,
            producer_paused: false,
            notify_pause: false,
        }
    }

    // ----- phases -----

    pub(crate) fn is_connecting(&self) -> bool {
        self.phase == Phase::Connecting
    }

    /// The outgoing connect succeeded.
    pub(crate) fn connected(&mut self) {
        debug_assert_eq!(self.phase, Phase::Connecting);
        self.phase = Phase::New;
    }

    /// `connection_made` is about to run: from now on `connection_lost` is owed.
    pub(crate) fn make(&mut self) {
        debug_assert_eq!(self.phase, Phase::New);
        self.phase = Phase::Open;
    }

    /// `connection_made` ran (so `connection_lost` is owed).
    pub(crate) fn is_made(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Losing | Phase::Lingering)
    }

    /// Closing or gone, as the protocol sees it: no more writes are accepted.
    pub(crate) fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Losing | Phase::Lingering) || self.close.is_some()
    }

    /// A graceful close begins (`lose_connection`); false if one already had, or an
    /// abortive close is decided.
    pub(crate) fn lose(&mut self) -> bool {
        if self.is_closing() {
            return false;
        }
        self.phase = Phase::Losing;
        true
    }

    pub(crate) fn is_losing(&self) -> bool {
        self.phase == Phase::Losing
    }

    /// The graceful close has flushed and its jobs are back: the write side is shut
    /// and input is discarded until the peer's end. False if it already lingers.
    pub(crate) fn linger(&mut self) -> bool {
        if self.phase == Phase::Lingering {
            return false;
        }
        debug_assert_eq!(self.phase, Phase::Losing);
        self.phase = Phase::Lingering;
        self.write_shut = true;
        true
    }

    pub(crate) fn is_lingering(&self) -> bool {
        self.phase == Phase::Lingering
    }

    /// Decides an abortive close for `reason`, carried out once the current callback
    /// returns; the first reason wins. True if this one did.
    pub(crate) fn decide_close(&mut self, reason: Reason) -> bool {
        if self.close.is_some() {
            return false;
        }
        self.close = Some(Box::new(reason));
        true
    }

    pub(crate) fn close_decided(&self) -> bool {
        self.close.is_some()
    }

    /// The decided close, to carry out now.
    pub(crate) fn take_close(&mut self) -> Option<Reason> {
        self.close.take().map(|r| *r)
    }

    // ----- reading -----

    /// Whether the protocol gets what arrives.
    pub(crate) fn wants_read(&self) -> bool {
        self.reading
            && !self.read_eof
            && matches!(self.phase, Phase::New | Phase::Open)
            && self.close.is_none()
    }

    /// The protocol paused or resumed reading; true when it resumed (the reader must
    /// be served without waiting for an edge, which passed while it was paused).
    pub(crate) fn set_reading(&mut self, reading: bool) -> bool {
        let resumed = reading && !self.reading;
        self.reading = reading;
        self.resumed |= resumed;
        resumed
    }

    /// `reading_resumed` is owed and reading is on: the owed call, taken.
    pub(crate) fn take_resumed(&mut self) -> bool {
        let owed = self.resumed && self.wants_read();
        if owed {
            self.resumed = false;
        }
        owed
    }

    /// The protocol paused reading and has not resumed.
    pub(crate) fn reading_paused(&self) -> bool {
        !self.reading
    }

    /// The peer's end arrived.
    pub(crate) fn saw_eof(&mut self) {
        self.read_eof = true;
    }

    pub(crate) fn read_eof(&self) -> bool {
        self.read_eof
    }

    // ----- writing -----

    /// Whether a write is taken. A graceful close refuses writes, except those of a
    /// pool result it waits for.
    pub(crate) fn accepts_writes(&self) -> bool {
        self.close.is_none()
            && !self.shutdown_asked
            && match self.phase {
                Phase::Losing => self.job_writes,
                Phase::Lingering => false,
                _ => true,
            }
    }

    /// `lose_write_connection`: true if it is new.
    pub(crate) fn ask_shutdown_write(&mut self) -> bool {
        if self.is_closing() || self.shutdown_asked {
            return false;
        }
        self.shutdown_asked = true;
        true
    }

    /// Whether a graceful close or a half-close waits for the queue to drain.
    pub(crate) fn waits_for_drain(&self) -> bool {
        self.phase == Phase::Losing || self.shutdown_asked
    }

    /// A half-close was asked for and has not happened yet.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn shutdown_pending(&self) -> bool {
        self.shutdown_asked && !self.write_shut && self.phase != Phase::Losing
    }

    /// The half-close is due now that the queue is empty: true once, when the write
    /// side must be shut.
    pub(crate) fn take_shutdown_due(&mut self) -> bool {
        let due = self.shutdown_asked && !self.write_shut && self.phase != Phase::Losing;
        if due {
            self.write_shut = true;
        }
        due
    }

    pub(crate) fn write_shut(&self) -> bool {
        self.write_shut
    }

    // ----- pool jobs -----

    pub(crate) fn job_out(&mut self) {
        self.jobs += 1;
    }

    /// A job's result is back; its callback's writes are accepted until
    /// [`job_delivered`](Self::job_delivered).
    pub(crate) fn job_back(&mut self) {
        self.jobs = self.jobs.saturating_sub(1);
        self.job_writes = true;
    }

    pub(crate) fn job_delivered(&mut self) {
        self.job_writes = false;
    }

    pub(crate) fn jobs_out(&self) -> bool {
        self.jobs > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> State {
        let mut s = State::new(false);
        s.make();
        s
    }

    #[test]
    fn a_connect_becomes_new_then_open() {
        let mut s = State::new(true);
        assert!(s.is_connecting() && !s.is_made() && !s.wants_read());
        s.connected();
        assert!(!s.is_connecting() && !s.is_made() && s.wants_read());
        s.make();
        assert!(s.is_made() && s.wants_read() && s.accepts_writes() && !s.is_closing());
    }

    #[test]
    fn a_graceful_close_stops_reads_and_writes_once_and_then_lingers() {
        let mut s = open();
        assert!(s.lose());
        assert!(!s.lose(), "a second lose is a no-op");
        assert!(s.is_closing() && s.is_losing() && s.waits_for_drain());
        assert!(!s.wants_read() && !s.accepts_writes());
        assert!(s.linger());
        assert!(!s.linger());
        assert!(s.is_lingering() && s.write_shut() && s.is_made() && !s.accepts_writes());
        assert!(!s.ask_shutdown_write(), "no half-close once closing");
    }

    #[test]
    fn an_abortive_close_wins_over_everything_and_the_first_reason_stays() {
        let mut s = open();
        assert!(s.decide_close(Reason::Aborted));
        assert!(!s.decide_close(Reason::TimedOut));
        assert!(s.is_closing() && !s.wants_read() && !s.accepts_writes() && !s.lose());
        assert!(matches!(s.take_close(), Some(Reason::Aborted)));
        assert!(s.take_close().is_none());
    }

    #[test]
    fn pause_and_resume_owe_one_reading_resumed_while_reading() {
        let mut s = open();
        assert!(!s.set_reading(true), "already reading: no resume");
        assert!(!s.set_reading(false));
        assert!(!s.wants_read() && !s.take_resumed());
        assert!(s.set_reading(true));
        assert!(s.take_resumed());
        assert!(!s.take_resumed(), "owed once");
        s.set_reading(false);
        s.set_reading(true);
        s.saw_eof();
        assert!(!s.take_resumed(), "nothing to resume after EOF");
    }

    #[test]
    fn a_half_close_shuts_once_when_drained_and_refuses_writes() {
        let mut s = open();
        assert!(s.ask_shutdown_write());
        assert!(!s.ask_shutdown_write());
        assert!(!s.accepts_writes() && s.wants_read() && s.waits_for_drain());
        assert!(s.take_shutdown_due());
        assert!(!s.take_shutdown_due());
        assert!(s.write_shut() && s.wants_read());
    }

    #[test]
    fn a_losing_connection_takes_the_writes_of_pool_results_only() {
        let mut s = open();
        s.job_out();
        s.job_out();
        assert!(s.lose());
        assert!(s.jobs_out() && !s.accepts_writes());
        s.job_back();
        assert!(s.accepts_writes(), "the result's callback writes");
        s.job_delivered();
        assert!(!s.accepts_writes() && s.jobs_out());
        s.job_back();
        s.job_delivered();
        assert!(!s.jobs_out());
        s.decide_close(Reason::TimedOut);
        s.job_out();
        s.job_back();
        assert!(!s.accepts_writes(), "not once an abortive close is decided");
    }
}
