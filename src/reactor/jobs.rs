//! The thread-pool handoff on the reactor side: submitting jobs, delivering their
//! results (or `Cancelled`) on the reactor thread, and the stop's share of the work.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::{Core, Reactor};
use crate::core::JobDone;
use crate::pool::{JobError, Pool, PoolBusy, Work};
use crate::protocol::panic_message;
use crate::transport::{JobFn, JobResult};

/// A reactor-level callback for a pool job's result.
type ReactorCallback = Box<dyn FnOnce(&mut Reactor, JobResult)>;

/// What to do with the result of a pool job that is not a connection's.
pub(crate) enum ReactorDone {
    /// Run with the reactor (`Reactor::defer_to_thread`).
    Reactor(ReactorCallback),
    /// Nothing: `call_in_thread`.
    Nothing,
}

impl Reactor {
    /// Runs `job` on the thread pool, then `done` with its result on the reactor
    /// thread. See [`Context::defer_to_thread`](crate::Context::defer_to_thread) for the connection-bound form.
    ///
    /// # Errors
    /// [`PoolBusy`] if the pool's queue is full or the reactor is stopping; neither
    /// closure has run, and both come back in it ([`PoolBusy::into_inner`] gives
    /// `(job, done)`).
    pub fn defer_to_thread<T, J, D>(&mut self, job: J, done: D) -> Result<(), PoolBusy<(J, D)>>
    where
        T: Send + 'static,
        J: FnOnce() -> T + Send + 'static,
        D: FnOnce(&mut Reactor, Result<T, JobError>) + 'static,
    {
        if !self.core.pool_has_room() {
            return Err(PoolBusy::new((job, done)));
        }
        let job: JobFn = Box::new(move || Box::new(job()) as Box<dyn std::any::Any + Send>);
        let done: ReactorCallback = Box::new(move |r: &mut Reactor, result: JobResult| {
            done(
                r,
                result.map(|v| *v.downcast::<T>().expect("job result type")),
            )
        });
        self.submit_with_room(job, ReactorDone::Reactor(done));
        Ok(())
    }

    /// Runs `job` on the thread pool and forgets it (Twisted's `callInThread`). A
    /// panic in it is logged. To get back to the reactor, send a closure through a
    /// [`Handle`](crate::Handle).
    ///
    /// # Errors
    /// [`PoolBusy`] if the pool's queue is full or the reactor is stopping; the job
    /// has not run, and comes back in it ([`PoolBusy::into_inner`]).
    pub fn call_in_thread<J>(&mut self, job: J) -> Result<(), PoolBusy<J>>
    where
        J: FnOnce() + Send + 'static,
    {
        if !self.core.pool_has_room() {
            return Err(PoolBusy::new(job));
        }
        let job: JobFn = Box::new(move || {
            job();
            Box::new(()) as Box<dyn std::any::Any + Send>
        });
        self.submit_with_room(job, ReactorDone::Nothing);
        Ok(())
    }

    /// Submits a job once [`Core::pool_has_room`] has said yes: asked first because a
    /// refused job goes back to the caller, which it cannot once boxed.
    fn submit_with_room(&mut self, job: JobFn, done: ReactorDone) {
        self.core
            .submit_job(job, JobDone::Kernel(done))
            .expect("the pool had room a moment ago, and only this thread submits");
    }

    /// Whether [`defer_to_thread`](Self::defer_to_thread) or
    /// [`call_in_thread`](Self::call_in_thread) would accept a job now (see
    /// [`Context::can_defer_to_thread`](crate::Context::can_defer_to_thread)).
    pub fn can_defer_to_thread(&self) -> bool {
        self.core.pool_has_room()
    }

    /// Pool jobs queued or running whose results are not back yet.
    pub fn pending_jobs(&self) -> usize {
        self.core.jobs.len()
    }

    /// A job's result is back (run from the inbox).
    pub(super) fn job_finished(&mut self, key: u64, result: JobResult) {
        if let Some((done, result)) = self.core.job_finished(key, result) {
            self.run_reactor_done(done, result);
        }
    }

    fn run_reactor_done(&mut self, done: ReactorDone, result: JobResult) {
        match done {
            ReactorDone::Reactor(done) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| done(self, result))) {
                    log::error!("pool result callback panicked: {}", panic_message(&*panic));
                }
            }
            ReactorDone::Nothing => {
                if let Err(e) = result {
                    log::error!("call_in_thread: {e}");
                }
            }
        }
        self.core.settle();
    }

    /// A stop begins: jobs that have not started never will; their callbacks get
    /// `Cancelled` now, while their connections are still open.
    pub(super) fn cancel_queued_jobs(&mut self) {
        let Some(pool) = self.core.k.pool.as_mut() else {
            return;
        };
        let keys = pool.close();
        for (done, result) in self.core.cancel_jobs(keys) {
            self.run_reactor_done(done, result);
        }
    }
}

impl Core {
    /// Hands a job to the pool (started on first use); its result comes back through
    /// the inbox and runs on the reactor thread.
    pub(super) fn submit_to_pool(&mut self, key: u64, job: JobFn) -> Result<(), PoolBusy> {
        let config = &self.config;
        let pool = self.k.pool.get_or_insert_with(|| {
            Pool::new(
                config.pool_threads,
                config.pool_queue_jobs,
                config.pool_nice,
            )
        });
        let shared = Arc::clone(&self.k.shared);
        let work: Work = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(job))
                .map_err(|panic| JobError::Panicked(panic_message(&*panic)));
            // Through the inbox, so the result wakes the reactor and runs on its
            // thread; a reactor that is gone simply drops it.
            let _ = shared.push(Box::new(move |r: &mut Reactor| r.job_finished(key, result)));
        });
        pool.submit(key, work)
    }
}
