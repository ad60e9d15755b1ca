//! The cross-thread handle: closures for the reactor thread, and a waker to deliver them.
//!
//! Other threads never touch reactor state. They push a closure into the inbox and wake
//! the poller; the reactor runs the closures queued when its inbox phase began, in
//! FIFO order, and leaves later ones for the next turn (Twisted's `callFromThread`).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Waker;

use super::Reactor;

/// A closure sent from another thread to run on the reactor thread.
pub(crate) type Job = Box<dyn FnOnce(&mut Reactor) + Send>;

pub(crate) struct Shared {
    waker: Waker,
    inbox: Mutex<Vec<Job>>,
    closed: AtomicBool,
}

impl Shared {
    pub(crate) fn new(waker: Waker) -> Shared {
        Shared {
            waker,
            inbox: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Job>> {
        // A panic while holding this lock can only be in Vec::push or mem::take, which
        // leave the Vec valid, so a poisoned lock is still safe to use.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, job: Job) -> Result<(), ReactorGone> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ReactorGone);
        }
        let was_empty = {
            let mut inbox = self.lock();
            let was_empty = inbox.is_empty();
            inbox.push(job);
            was_empty
        };
        // Only the push that makes the inbox non-empty has to wake the reactor: until
        // the reactor takes the batch, that wake is pending or already delivered, and
        // the batch it takes includes every later push.
        if was_empty {
            if let Err(e) = self.waker.wake() {
                log::error!("waking the reactor failed: {e}");
            }
        }
        Ok(())
    }

    pub(crate) fn take(&self) -> Vec<Job> {
        std::mem::take(&mut *self.lock())
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        drop(self.take());
    }
}

/// A `Send + Clone` handle to a reactor, for other threads.
///
/// # Examples
///
/// ```
/// use twistor::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let handle = reactor.handle();
/// std::thread::spawn(move || {
///     handle.call_from_thread(|r: &mut Reactor| println!("on the reactor thread"))?;
///     handle.stop();
///     Ok::<_, twistor::ReactorGone>(())
/// });
/// reactor.run()?; // returns once the other thread's stop() is handled
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Handle {
    /// Runs `f` on the reactor thread at its next turn (wakes it if it is waiting).
    ///
    /// Closures from one thread run in the order they were sent. A panic in `f` is
    /// caught and logged.
    ///
    /// # Errors
    /// [`ReactorGone`] if the reactor was dropped.
    pub fn call_from_thread<F>(&self, f: F) -> Result<(), ReactorGone>
    where
        F: FnOnce(&mut Reactor) + Send + 'static,
    {
        self.shared.push(Box::new(f))
    }

    /// Asks the reactor to stop gracefully, as [`Reactor::stop`]. Does nothing if the
    /// reactor is gone.
    pub fn stop(&self) {
        let _ = self.call_from_thread(Reactor::stop);
    }
}

/// The reactor behind a [`Handle`] was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReactorGone;

impl fmt::Display for ReactorGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the reactor is gone")
    }
}

impl std::error::Error for ReactorGone {}
