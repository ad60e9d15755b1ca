//! Several reactors, one per thread, each with its own listener on one address: the
//! opt-in way to use more than one core.
//!
//! A [`ReactorGroup`] binds N TCP listeners to the same address with SO_REUSEPORT and
//! runs N reactors, one per thread, each accepting on its own listener. It is the
//! modern answer to socketserver's forking mode: the kernel spreads new connections
//! over the listeners, and each connection then lives on one reactor, and one thread,
//! for its whole life. A program that fits on one core needs none of this.
//!
//! # Semantics
//!
//! - **The kernel picks the reactor.** A new connection goes to one of the listeners
//!   by a hash of its addresses and ports. There is no balancing by load and no
//!   migration: a reactor with busy connections keeps them while another idles.
//! - **Nothing is shared.** Each reactor has its own connections, timers, thread pool
//!   and statistics, and its own limits from the [`Builder`] (`max_connections` is per
//!   reactor). What the reactors share is yours to share: `Send + Sync` state behind
//!   an `Arc`, or state owned by one reactor that the others reach with
//!   [`Handle::call_from_thread`] (see [`ReactorGroup::handles`]). A chat room whose
//!   members must all see each other is simplest as a one-reactor program.
//! - **Each reactor is built on its own thread**, from a clone of the group's
//!   [`Builder`], and the `setup` closure runs there too: factories and protocols need
//!   not be `Send`.
//! - **One ends, all end.** When a reactor's thread ends for any reason (a stop, a
//!   setup that failed, an error from `run`, a panic), the others are stopped
//!   gracefully. So a callback's `stop_reactor` stops the whole group, and
//!   [`ReactorGroup::join`] reports the first failure.
//! - **Linux.** Spreading connections over SO_REUSEPORT listeners is Linux behaviour;
//!   the listeners must belong to one user, as they do here. Other systems that accept
//!   SO_REUSEPORT may hand every connection to one listener.
//!
//! # Examples
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use twistor::{Addr, Context, Protocol, Reactor, ReactorGroup};
//!
//! struct Upper;
//!
//! impl Protocol for Upper {
//!     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
//!         cx.write(&data.to_ascii_uppercase());
//!     }
//! }
//!
//! let group = ReactorGroup::builder()
//!     .threads(2)
//!     .reactor(Reactor::builder().max_connections(10_000))
//!     .spawn("127.0.0.1:0".parse().unwrap(), |index, reactor| {
//!         // On reactor `index`'s own thread: timers, other listeners, ...
//!         reactor.call_later(Duration::from_secs(60), move |r: &mut Reactor| {
//!             eprintln!("reactor {index}: {} connections", r.connection_count());
//!         });
//!         // The factory for this reactor's listener.
//!         Ok(|_: &Addr| Some(Upper))
//!     })?;
//!
//! let mut client = std::net::TcpStream::connect(group.local_addr())?;
//! client.write_all(b"hello")?;
//! let mut reply = [0; 5];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"HELLO");
//!
//! group.stop();
//! group.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use crate::net;
use crate::protocol::panic_message;
use crate::{Builder, Factory, Handle, Reactor};

/// N reactors, one per thread, each accepting on its own SO_REUSEPORT listener bound
/// to one address. See the [module docs](self) for what is and is not shared, and for
/// an example.
///
/// Made by [`GroupBuilder::spawn`]. Dropping the group stops every reactor and waits
/// for their threads.
pub struct ReactorGroup {
    local_addr: SocketAddr,
    /// One per reactor, in thread-index order; empty until every reactor has started.
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for ReactorGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorGroup")
            .field("local_addr", &self.local_addr)
            .field("reactors", &self.handles.len())
            .finish()
    }
}

/// Configures and starts a [`ReactorGroup`]: how many reactors, and the [`Builder`]
/// each is built from.
#[derive(Clone, Debug)]
pub struct GroupBuilder {
    threads: usize,
    reactor: Builder,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsAcceptor>,
}

impl ReactorGroup {
    /// Starts configuring a group: one reactor per CPU, each built from
    /// [`Reactor::builder`], until told otherwise.
    pub fn builder() -> GroupBuilder {
        GroupBuilder {
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            reactor: Reactor::builder(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The address every listener is bound to (the real port when port 0 was asked
    /// for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// One handle per reactor, indexed by the thread index `setup` was given: to run a
    /// closure on a given reactor, or to stop one (which stops them all).
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Asks every reactor to stop gracefully ([`Handle::stop`]) and returns at once;
    /// [`join`](Self::join) waits for them. Safe to call more than once.
    pub fn stop(&self) {
        for handle in &self.handles {
            handle.stop();
        }
    }

    /// Waits until every reactor has ended (after [`stop`](Self::stop), a signal, or
    /// one reactor ending, which stops the others).
    ///
    /// # Errors
    /// The error of the first reactor that failed: its setup, its `run`, or a panic
    /// on its thread (as an error naming the reactor).
    pub fn join(mut self) -> io::Result<()> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> io::Result<()> {
        let mut results: Vec<io::Result<()>> = std::mem::take(&mut self.threads)
            .into_iter()
            .enumerate()
            .map(|(index, thread)| {
                thread
                    .join()
                    .unwrap_or_else(|panic| Err(panicked(index, &*panic)))
            })
            .collect();
        // The reactor that failed first explains the rest, which it stopped.
        if let Some(first) = self.shared.lock().first_failure {
            if results.get(first).is_some_and(Result::is_err) {
                return results.swap_remove(first);
            }
        }
        results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }
}

impl Drop for ReactorGroup {
    fn drop(&mut self) {
        self.stop();
        let _ = self.join_threads();
    }
}

impl GroupBuilder {
    /// How many reactors, each on a thread of its own (default: the number of CPUs).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// The configuration each reactor is built from (default: [`Reactor::builder`]).
    /// Its [`listen_options`](Builder::listen_options) (backlog, SO_REUSEADDR) apply to
    /// the group's listeners, with SO_REUSEPORT always on.
    ///
    /// Each reactor starts its own thread pool on its first `defer_to_thread`; with
    /// several reactors, [`Builder::threads`] may want lowering.
    pub fn reactor(mut self, builder: Builder) -> Self {
        self.reactor = builder;
        self
    }

    /// Speaks TLS with `acceptor`'s settings on every connection the group's listeners
    /// accept ([`Reactor::set_listener_tls`] on each reactor's listener, before it
    /// accepts anything). Other listeners opened in `setup` are the setup's business.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, acceptor: crate::tls::TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Binds one listener per reactor to `addr` with SO_REUSEPORT, then starts the
    /// reactors, each on its own thread, and returns once every one has run its
    /// setup and taken its listener. Connections that arrive before a reactor runs
    /// wait in its listener's backlog.
    ///
    /// On thread `index`, the reactor is built and `setup(index, &mut reactor)` runs;
    /// it may set timers, open other listeners or connections, and returns the factory
    /// for that reactor's share of `addr`.
    ///
    /// With port 0 the first listener gets a free port and the others bind to the same
    /// one; [`ReactorGroup::local_addr`] tells which.
    ///
    /// # Errors
    /// `threads` is 0 (`InvalidInput`); binding failed (address in use, ...); or a
    /// reactor could not start (building it, `setup`, or a panic in either). In the
    /// last case the reactors already running are stopped and joined first, and the
    /// error is the first failure's.
    pub fn spawn<S, F>(self, addr: SocketAddr, setup: S) -> io::Result<ReactorGroup>
    where
        S: Fn(usize, &mut Reactor) -> io::Result<F> + Send + Sync + 'static,
        F: Factory,
    {
        if self.threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a reactor group needs at least one thread",
            ));
        }
        let sockets = bind_all(addr, self.threads, &self.reactor)?;
        let local_addr = sockets[0].local_addr()?;
        let setup = Arc::new(setup);
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut group = ReactorGroup {
            local_addr,
            handles: Vec::new(),
            threads: Vec::new(),
            shared: Arc::new(Shared::default()),
        };
        for (index, socket) in sockets.into_iter().enumerate() {
            let member = Member {
                index,
                socket,
                builder: self.reactor.clone(),
                #[cfg(feature = "tls")]
                tls: self.tls.clone(),
                shared: Arc::clone(&group.shared),
                ready: ready_tx.clone(),
            };
            let setup = Arc::clone(&setup);
            let spawned = thread::Builder::new()
                .name(format!("twistor-group-{index}"))
                .spawn(move || member.run(&*setup));
            match spawned {
                Ok(thread) => group.threads.push(thread),
                Err(e) => {
                    group.shared.end(None);
                    let _ = group.join_threads();
                    return Err(e);
                }
            }
        }
        drop(ready_tx);
        let mut handles: Vec<Option<Handle>> = vec![None; self.threads];
        for _ in 0..self.threads {
            match ready_rx.recv() {
                Ok((index, handle)) => handles[index] = Some(handle),
                // Every thread that has not reported is gone: a reactor ended before
                // all had started, and it stopped the others.
                Err(mpsc::RecvError) => {
                    return Err(group.join_threads().err().unwrap_or_else(|| {
                        io::Error::other("a reactor of the group stopped before all had started")
                    }));
                }
            }
        }
        group.handles = handles.into_iter().flatten().collect();
        Ok(group)
    }
}

/// Binds `n` listeners to `addr` with SO_REUSEPORT; with port 0, the first one's port
/// for the others.
fn bind_all(addr: SocketAddr, n: usize, builder: &Builder) -> io::Result<Vec<TcpListener>> {
    let mut opts = builder.listen_opts().clone();
    opts.reuse_port = true;
    let first = net::bind_tcp_std(addr, &opts)?;
    let mut addr = addr;
    addr.set_port(first.local_addr()?.port());
    let mut sockets = vec![first];
    for _ in 1..n {
        sockets.push(net::bind_tcp_std(addr, &opts)?);
    }
    Ok(sockets)
}

/// What one reactor's thread is given.
struct Member {
    index: usize,
    socket: TcpListener,
    builder: Builder,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsAcceptor>,
    shared: Arc<Shared>,
    ready: mpsc::Sender<(usize, Handle)>,
}

impl Member {
    /// The thread's body: start, serve until stopped, and stop the others on the way
    /// out, whatever the way.
    fn run<S, F>(self, setup: &S) -> io::Result<()>
    where
        S: Fn(usize, &mut Reactor) -> io::Result<F>,
        F: Factory,
    {
        let index = self.index;
        let shared = Arc::clone(&self.shared);
        let result = catch_unwind(AssertUnwindSafe(|| self.serve(setup)))
            .unwrap_or_else(|panic| Err(panicked(index, &*panic)));
        if let Err(e) = &result {
            log::error!("reactor {index} of the group failed: {e}");
        }
        shared.end(result.is_err().then_some(index));
        result
    }

    fn serve<S, F>(self, setup: &S) -> io::Result<()>
    where
        S: Fn(usize, &mut Reactor) -> io::Result<F>,
        F: Factory,
    {
        let mut reactor = self.builder.build()?;
        let factory = setup(self.index, &mut reactor)?;
        let listening = reactor.listen_tcp_socket(self.socket, factory)?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            reactor.set_listener_tls(listening.id, tls);
        }
        #[cfg(not(feature = "tls"))]
        let _ = listening;
        let handle = reactor.handle();
        if !self.shared.enlist(handle.clone()) {
            return Ok(()); // another reactor has ended already: this one never starts
        }
        let _ = self.ready.send((self.index, handle));
        drop(self.ready);
        reactor.run()
    }
}

fn panicked(index: usize, panic: &(dyn std::any::Any + Send)) -> io::Error {
    io::Error::other(format!(
        "reactor {index} of the group panicked: {}",
        panic_message(panic)
    ))
}

/// What the reactors' threads share: who is running, so that the first to end can
/// stop the others.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Handles of the reactors that have started.
    running: Vec<Handle>,
    /// A reactor has ended: the others are being stopped, and one that has not
    /// started yet never will.
    ended: bool,
    /// The index of the first reactor that failed.
    first_failure: Option<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a reactor about to run; false if the group is ending, in which case it
    /// must not run.
    fn enlist(&self, handle: Handle) -> bool {
        let mut state = self.lock();
        if state.ended {
            return false;
        }
        state.running.push(handle);
        true
    }

    /// A reactor's thread is ending (`failed` names it if with an error): stop every
    /// reactor that started, and keep the others from starting.
    fn end(&self, failed: Option<usize>) {
        let running = {
            let mut state = self.lock();
            state.ended = true;
            if state.first_failure.is_none() {
                state.first_failure = failed;
            }
            std::mem::take(&mut state.running)
        };
        for handle in running {
            handle.stop();
        }
    }
}
