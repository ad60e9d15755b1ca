//! The thread-pool handoff on the reactor side: submitting jobs, delivering their
//! results (or `Cancelled`) on the reactor thread, and the stop's share of the work.

use super::*;

/// A reactor-level callback for a pool job's result.
pub(super) type ReactorDone = Box<dyn FnOnce(&mut Reactor, JobResult)>;

/// What to do with a pool job's result.
pub(super) enum JobDone {
    /// Run with this connection's protocol, if it is still there.
    Bound(ConnId, BoundDone),
    /// Run with the reactor.
    Reactor(ReactorDone),
    /// Nothing: `call_in_thread`.
    Nothing,
}

pub(super) struct PendingJob {
    generation: u32,
    done: JobDone,
}

impl Reactor {
    /// Runs `job` on the thread pool, then `done` with its result on the reactor
    /// thread. See [`Context::defer_to_thread`] for the connection-bound form.
    ///
    /// # Errors
    /// [`PoolBusy`] if the pool's queue is full; neither closure will run.
    pub fn defer_to_thread<T, J, D>(&mut self, job: J, done: D) -> Result<(), PoolBusy>
    where
        T: Send + 'static,
        J: FnOnce() -> T + Send + 'static,
        D: FnOnce(&mut Reactor, Result<T, JobError>) + 'static,
    {
        let job: JobFn = Box::new(move || Box::new(job()) as Box<dyn std::any::Any + Send>);
        let done = JobDone::Reactor(Box::new(move |r: &mut Reactor, result: JobResult| {
            done(
                r,
                result.map(|v| *v.downcast::<T>().expect("job result type")),
            )
        }));
        self.core.submit_job(job, done)
    }

    /// Runs `job` on the thread pool and forgets it (Twisted's `callInThread`). A
    /// panic in it is logged. To get back to the reactor, send a closure through a
    /// [`Handle`].
    ///
    /// # Errors
    /// [`PoolBusy`] if the pool's queue is full.
    pub fn call_in_thread<J>(&mut self, job: J) -> Result<(), PoolBusy>
    where
        J: FnOnce() + Send + 'static,
    {
        let job: JobFn = Box::new(move || {
            job();
            Box::new(()) as Box<dyn std::any::Any + Send>
        });
        self.core.submit_job(job, JobDone::Nothing)
    }

    /// Whether [`defer_to_thread`](Self::defer_to_thread) or
    /// [`call_in_thread`](Self::call_in_thread) would accept a job now (see
    /// [`Context::can_defer_to_thread`]).
    pub fn can_defer_to_thread(&self) -> bool {
        self.core.pool_has_room()
    }

    /// Pool jobs queued or running whose results are not back yet.
    pub fn pending_jobs(&self) -> usize {
        self.core.jobs.len()
    }

    /// A job's result is back (run from the inbox).
    pub(super) fn job_finished(&mut self, key: u64, result: JobResult) {
        let Some(job) = self.core.take_job(key) else {
            return;
        };
        match job.done {
            JobDone::Bound(id, done) => match self.core.conn_mut(id) {
                Some(c) if c.made => {
                    // A graceful close waits for this result and sends what it writes.
                    c.jobs -= 1;
                    c.job_writes = true;
                    self.core.invoke(id, move |p, cx| done(p, cx, result));
                    if let Some(c) = self.core.conn_mut(id) {
                        c.job_writes = false;
                    }
                    self.core.mark_dirty(id);
                }
                Some(c) => c.jobs -= 1,
                None => log::debug!("{id}: dropping a pool result: the connection is gone"),
            },
            JobDone::Reactor(done) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| done(self, result))) {
                    log::error!("pool result callback panicked: {}", panic_message(&*panic));
                }
            }
            JobDone::Nothing => {
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
        let Some(pool) = self.core.pool.as_mut() else {
            return;
        };
        for key in pool.close() {
            self.job_finished(key, Err(JobError::Cancelled));
        }
    }
}

impl Core {
    /// Whether `submit_job` would accept a job now.
    pub(super) fn pool_has_room(&self) -> bool {
        self.stopping == Stopping::No && self.pool.as_ref().is_none_or(|p| p.has_room())
    }

    pub(super) fn submit_job(&mut self, job: JobFn, done: JobDone) -> Result<(), PoolBusy> {
        if self.stopping != Stopping::No {
            return Err(PoolBusy);
        }
        let config = &self.config;
        let pool = self.pool.get_or_insert_with(|| {
            Pool::new(
                config.pool_threads,
                config.pool_queue_jobs,
                config.pool_nice,
            )
        });
        self.next_job_generation = self.next_job_generation.wrapping_add(1);
        let generation = self.next_job_generation;
        let index = self.jobs.insert(PendingJob { generation, done });
        let key = ((generation as u64) << 32) | index as u64;
        let shared = Arc::clone(&self.shared);
        let work: Work = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(job))
                .map_err(|panic| JobError::Panicked(panic_message(&*panic)));
            // Through the inbox, so the result wakes the reactor and runs on its
            // thread; a reactor that is gone simply drops it.
            let _ = shared.push(Box::new(move |r: &mut Reactor| r.job_finished(key, result)));
        });
        if let Err(busy) = pool.submit(key, work) {
            self.jobs.remove(index);
            return Err(busy);
        }
        if let JobDone::Bound(id, _) = self.jobs[index].done {
            if let Some(c) = self.conn_mut(id) {
                c.jobs += 1;
            }
        }
        Ok(())
    }

    pub(super) fn take_job(&mut self, key: u64) -> Option<PendingJob> {
        let index = (key & 0xFFFF_FFFF) as usize;
        let generation = (key >> 32) as u32;
        self.jobs
            .get(index)
            .is_some_and(|j| j.generation == generation)
            .then(|| self.jobs.remove(index))
    }
}
