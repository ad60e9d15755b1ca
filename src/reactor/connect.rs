//! Outgoing connections: the non-blocking connect. Its completion or failure, and
//! the one `connection_failed` a connect that never succeeded gets, are the core's
//! (`Core::finish_connect`, `fail_connect`, `report_failed`). The reactor's side of a
//! client service is here too: `Dial` for `Mio` (a connect, and a host name resolved
//! on the pool) and `Network` for `Reactor`.

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::jobs::ReactorDone;
use super::table::Stream;
use super::{Core, Mio, Reactor};
use crate::client::{resolve_blocking, resolved, HostDial};
use crate::core::{Dial, Dialer, JobDone, Task};
use crate::ids::ConnId;
use crate::pool::PoolBusy;
use crate::protocol::{Addr, Protocol};
use crate::transport::{JobFn, JobResult};

impl Reactor {
    /// Connects to a Unix-domain stream socket, as [`connect_tcp`](Self::connect_tcp).
    pub fn connect_unix<P: Protocol>(
        &mut self,
        path: impl AsRef<std::path::Path>,
        protocol: P,
    ) -> ConnId {
        let path = path.as_ref();
        let stream = mio::net::UnixStream::connect(path).map(Stream::Unix);
        let timeout = self.core.config.connect_timeout;
        let peer = Addr::Unix(Some(path.to_path_buf()));
        self.core.connect(stream, peer, timeout, Box::new(protocol))
    }

    /// Connects to `addr` without blocking, with the builder's connect timeout.
    ///
    /// On success the protocol gets `connection_made`; on refusal, unreachability or
    /// timeout it gets [`Protocol::connection_failed`] instead — never both, and
    /// never inside this call. A framer's handler gets both callbacks too
    /// ([`LineHandler::connection_failed`](crate::framing::LineHandler::connection_failed)
    /// and its siblings). A client should override `connection_failed`: the default
    /// only logs at debug level, so a client that waits for a reply would wait for
    /// ever.
    ///
    /// # Examples
    ///
    /// A line client: it sends one line and stops the reactor once the reply is in,
    /// or once it knows none will come (the connect failed, or the server closed).
    ///
    /// ```
    /// use std::io::{self, BufRead, BufReader, Write};
    /// use std::net::{SocketAddr, TcpListener};
    /// use std::sync::mpsc;
    ///
    /// use twistor::framing::{LineContext, LineHandler, LineReceiver};
    /// use twistor::{Reactor, Reason};
    ///
    /// /// Asks one question and hands back the answer, or why there is none.
    /// struct Ask {
    ///     question: String,
    ///     answer: Option<mpsc::Sender<io::Result<String>>>,
    /// }
    ///
    /// impl Ask {
    ///     /// Hands over the first outcome, and stops the reactor.
    ///     fn done(&mut self, cx: &mut LineContext<'_, '_>, outcome: io::Result<String>) {
    ///         if let Some(answer) = self.answer.take() {
    ///             let _ = answer.send(outcome);
    ///         }
    ///         cx.stop_reactor();
    ///     }
    /// }
    ///
    /// impl LineHandler for Ask {
    ///     fn connection_made(&mut self, cx: &mut LineContext<'_, '_>) {
    ///         cx.send_line(self.question.as_bytes());
    ///     }
    ///
    ///     fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
    ///         self.done(cx, Ok(String::from_utf8_lossy(line).into_owned()));
    ///     }
    ///
    ///     fn connection_lost(&mut self, cx: &mut LineContext<'_, '_>, _: Reason) {
    ///         self.done(cx, Err(io::ErrorKind::UnexpectedEof.into()));
    ///     }
    ///
    ///     fn connection_failed(&mut self, cx: &mut LineContext<'_, '_>, error: io::Error) {
    ///         self.done(cx, Err(error));
    ///     }
    /// }
    ///
    /// /// Asks the line server at `addr` one question.
    /// fn ask(addr: SocketAddr, question: &str) -> io::Result<String> {
    ///     let mut reactor = Reactor::new()?;
    ///     let (answer, outcome) = mpsc::channel();
    ///     let question = question.to_owned();
    ///     let client = Ask { question, answer: Some(answer) };
    ///     reactor.connect_tcp(addr, LineReceiver::new(client).delimiter(b"\n"));
    ///     reactor.run()?;
    ///     outcome.try_recv().expect("the client stops the reactor only when done")
    /// }
    ///
    /// // A server to ask, on a thread of its own: it answers one line upper-cased.
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let server = std::thread::spawn(move || -> io::Result<()> {
    ///     let (stream, _) = listener.accept()?;
    ///     let mut line = String::new();
    ///     BufReader::new(&stream).read_line(&mut line)?;
    ///     (&stream).write_all(line.to_uppercase().as_bytes())
    /// });
    /// let reply = ask(addr, "hello")?;
    /// println!("{reply}");
    /// assert_eq!(reply, "HELLO");
    ///
    /// // The server is gone and nothing listens on its port: the connect is refused,
    /// // `connection_failed` says so, and `ask` returns instead of waiting for ever.
    /// server.join().unwrap()?;
    /// let refused = ask(addr, "anyone there?").unwrap_err();
    /// assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    /// # Ok::<(), io::Error>(())
    /// ```
    pub fn connect_tcp<P: Protocol>(&mut self, addr: SocketAddr, protocol: P) -> ConnId {
        let timeout = self.core.config.connect_timeout;
        self.connect_tcp_timeout(addr, timeout, protocol)
    }

    /// Connects to `host:port` by name, without blocking, with the builder's connect
    /// timeout for each address.
    ///
    /// The name is resolved on the thread pool ([`Builder::threads`]; a
    /// resolver can take seconds, and the loop never waits for it), then the
    /// addresses are tried one after the other, in the resolver's order, until one
    /// connects. The protocol sees only the outcome: `connection_made` on the
    /// connection that was made (its id is `cx.id()` there), or one
    /// [`connection_failed`](Protocol::connection_failed), with the last address's
    /// error, or, if the name has no address, an error of kind `NotFound` that holds
    /// a [`ResolveError`](crate::client::ResolveError) (tell it apart with
    /// [`ResolveError::of`](crate::client::ResolveError::of)). Never inside this
    /// call. An IP address in text works as a name. To cancel a connect in progress,
    /// or to connect again after a failure, use a
    /// [`ClientService`](crate::client::ClientService) with a
    /// [`Target::Host`](crate::client::Target::Host).
    ///
    /// A stop cancels a resolution still queued; one already running on a pool
    /// thread is waited for like any job (see
    /// [`Builder::wait_for_jobs_on_stop`]). Addresses are tried in order, not raced
    /// (no "happy eyeballs").
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use std::net::TcpListener;
    /// use std::sync::mpsc;
    /// use twistor::client::ResolveError;
    /// use twistor::{Context, Protocol, Reactor, Reason};
    ///
    /// /// Says whether it connected, then stops the reactor.
    /// struct Check(mpsc::Sender<io::Result<()>>);
    /// impl Protocol for Check {
    ///     fn connection_made(&mut self, cx: &mut Context<'_>) {
    ///         let _ = self.0.send(Ok(()));
    ///         cx.stop_reactor();
    ///     }
    ///     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    ///     fn connection_failed(&mut self, cx: &mut Context<'_>, e: io::Error) {
    ///         let _ = self.0.send(Err(e));
    ///         cx.stop_reactor();
    ///     }
    /// }
    ///
    /// fn connect(host: &str, port: u16) -> io::Result<()> {
    ///     let mut reactor = Reactor::new()?;
    ///     let (tx, rx) = mpsc::channel();
    ///     reactor.connect_host(host, port, Check(tx));
    ///     reactor.run()?;
    ///     rx.try_recv().expect("the protocol stops the reactor once it knows")
    /// }
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let port = listener.local_addr()?.port();
    /// connect("localhost", port)?;
    ///
    /// let error = connect("no-such-host.invalid", port).unwrap_err();
    /// assert_eq!(ResolveError::of(&error).unwrap().host(), "no-such-host.invalid");
    /// # Ok::<(), io::Error>(())
    /// ```
    ///
    /// [`Builder::threads`]: crate::Builder::threads
    /// [`Builder::wait_for_jobs_on_stop`]: crate::Builder::wait_for_jobs_on_stop
    pub fn connect_host<P: Protocol>(&mut self, host: &str, port: u16, protocol: P) {
        let timeout = self.core.config.connect_timeout;
        HostDial::start(
            &mut self.core,
            host,
            port,
            timeout,
            Box::new(protocol),
            None,
            None,
        );
    }

    /// [`connect_tcp`](Self::connect_tcp) with its own timeout (`None`: wait as long as
    /// the kernel does).
    pub fn connect_tcp_timeout<P: Protocol>(
        &mut self,
        addr: SocketAddr,
        timeout: Option<Duration>,
        protocol: P,
    ) -> ConnId {
        let stream = mio::net::TcpStream::connect(addr).map(Stream::Tcp);
        self.core
            .connect(stream, Addr::Inet(addr), timeout, Box::new(protocol))
    }
}

impl Core {
    pub(super) fn connect(
        &mut self,
        stream: io::Result<Stream>,
        peer: Addr,
        timeout: Option<Duration>,
        protocol: Box<dyn Protocol>,
    ) -> ConnId {
        let inserted = match stream {
            Ok(stream) => self.insert_conn(stream, peer, protocol, true),
            Err(e) => Err((e, protocol)),
        };
        match inserted {
            Ok(id) => {
                if let Some(t) = timeout {
                    self.track_timer(id, Instant::now() + t, Task::ConnectTimeout(id));
                }
                id
            }
            Err((e, protocol)) => {
                let id = ConnId::detached(self.next_generation());
                self.failed.push((id, protocol, e));
                id
            }
        }
    }
}

impl Dial for Mio {
    fn connect_stream(_: &mut Core, peer: &Addr) -> io::Result<Stream> {
        match peer {
            Addr::Inet(addr) => mio::net::TcpStream::connect(*addr).map(Stream::Tcp),
            Addr::Unix(Some(path)) => mio::net::UnixStream::connect(path).map(Stream::Unix),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot connect to {other}"),
            )),
        }
    }

    fn resolve(
        core: &mut Core,
        host: String,
        port: u16,
        done: Box<dyn FnOnce(&mut Core, io::Result<Vec<SocketAddr>>)>,
    ) -> Result<(), PoolBusy> {
        if !core.pool_has_room() {
            return Err(PoolBusy);
        }
        let job: JobFn =
            Box::new(move || Box::new(resolve_blocking(&host, port)) as Box<dyn Any + Send>);
        let done = ReactorDone::Reactor(Box::new(move |r: &mut Reactor, result: JobResult| {
            done(&mut r.core, resolved(result))
        }));
        core.submit_job(job, JobDone::Kernel(done))
    }
}

impl crate::client::sealed::Host for Reactor {
    fn dialer(&mut self) -> &mut dyn Dialer {
        &mut self.core
    }

    fn settle(&mut self) {
        self.core.settle();
    }
}

impl crate::client::Network for Reactor {}
