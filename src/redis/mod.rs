//! A Redis client on the reactor: [`RedisClient`] for commands, [`Subscriber`] for
//! pub/sub.
//!
//! Both keep one connection up through a [`ClientService`] (reconnecting with
//! backoff) and speak RESP through the library's codec
//! ([`RespReceiver`]). The API is for twistor
//! programs: every callback runs on the reactor thread, with the Redis connection's
//! [`Context`]; nothing here is a future.
//!
//! # Commands
//!
//! [`RedisClient::command`] encodes a command and writes it at once: commands are
//! pipelined, and replies are matched to them in order (FIFO), as Redis answers in
//! order. Its callback gets the reply's [`Value`], or a [`RedisError`]: an error reply
//! ([`RedisError::Server`]), or the connection's end for every command still waiting
//! ([`RedisError::ConnectionLost`]). RESP3 pushes (`>`) are not replies: they go to
//! [`RedisClientBuilder::on_push`].
//!
//! - **Never blocking.** The write goes into the connection's queue. While that queue
//!   holds more than [`max_buffered`](RedisClientBuilder::max_buffered) bytes the
//!   kernel has not taken, or [`max_in_flight`](RedisClientBuilder::max_in_flight)
//!   commands await their replies, a new command fails fast with
//!   [`RedisError::Busy`]: nothing is queued locally, so memory stays bounded and the
//!   caller decides (drop, retry on a timer, slow its own producer).
//! - **Not connected: fail fast.** A command issued while the connection is down (at
//!   the start, or while reconnecting) fails with [`RedisError::NotConnected`]; it is
//!   not kept for later. Watch [`Event`]s ([`RedisClientBuilder::on_event`]) to know
//!   when commands can go.
//! - **A per-command timeout** ([`RedisClientBuilder::timeout`], 5 s by default): if
//!   the oldest command still waiting has waited that long, the connection is taken
//!   as broken: every waiting command fails with [`RedisError::Timeout`], the
//!   connection is aborted, and the service reconnects. One timer per connection
//!   watches the oldest command; it fires when that command's time is up (or after a
//!   timeout when nothing waits), never per command.
//! - A command refused (`Err` from `command`) never calls its callback; one accepted
//!   calls it exactly once.
//!
//! # Pub/sub
//!
//! A connection that subscribes can issue no other command (RESP2), so pub/sub has its
//! own: [`Subscriber`]. [`subscribe`](Subscriber::subscribe) and
//! [`psubscribe`](Subscriber::psubscribe) register a callback for channels or
//! patterns; messages (RESP2 `message`/`pmessage` arrays, or RESP3 pushes) are
//! delivered to it as a [`Message`]. The set of channels and patterns is the
//! subscriber's own state: after a reconnect, it is subscribed again, in full, before
//! anything else is sent.
//!
//! # Reconnection
//!
//! A lost connection (the server went away, a timeout, a protocol error) is dialled
//! again after the [`Backoff`]'s delay. [`Event::Connected`] and [`Event::Lost`] tell a
//! program when that happens (a chat prints `* federation lost` / `restored`);
//! [`Event::Subscribed`] tells a subscriber's program when each subscription is in
//! force again.
//!
//! # Where commands are written from
//!
//! `command`, `subscribe` and the like take where they are called from, a [`Reach`]:
//! the [`Reactor`] (outside any callback), a protocol callback's [`Context`] (any
//! connection's, the Redis one's own included, as in a reply callback), or the testing
//! kit's [`Harness`](crate::testing::Harness), where the test plays the server
//! ([`Harness::complete_connect`](crate::testing::Harness::complete_connect),
//! `feed_of`, `take_written_of`).
//!
//! # Examples
//!
//! Under the testing kit, the test playing Redis:
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use twistor::client::State;
//! use twistor::framing::resp::Value;
//! use twistor::redis::RedisClient;
//! use twistor::testing::Harness;
//! use twistor::{Context, Protocol};
//!
//! struct Idle;
//! impl Protocol for Idle {
//!     fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
//! }
//! let mut h = Harness::new(Idle);
//! let client = RedisClient::builder().connect(&mut h, "127.0.0.1:6379".parse::<std::net::SocketAddr>().unwrap());
//! let State::Connecting(id) = client.service().state() else { panic!() };
//! h.complete_connect(id);
//!
//! let got = Rc::new(RefCell::new(Vec::new()));
//! for key in ["a", "b"] {
//!     let got = got.clone();
//!     client
//!         .command(&mut h, &["GET", key], move |_, reply| got.borrow_mut().push(reply.unwrap()))
//!         .unwrap();
//! }
//! assert_eq!(
//!     h.take_written_of(id),
//!     b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
//! );
//! h.feed_of(id, b"$1\r\n1\r\n$-");
//! h.feed_of(id, b"1\r\n");
//! assert_eq!(*got.borrow(), [Value::Bulk(b"1".to_vec()), Value::Nil]);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::client::{ClientService, ClientServiceBuilder, Network, Target};
use crate::framing::resp::{put_command, DecodeError, Limits, RespHandler, RespReceiver, Value};
use crate::{ConnId, Context, Protocol, Reactor, Reason, TimerId};

/// The protocol in a Redis connection: the RESP framer over the client's handler.
pub type RedisProtocol = RespReceiver<Conn>;

/// Why a command got no reply value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisError {
    /// The server answered with an error (`-ERR ...`, `-WRONGTYPE ...`, or a RESP3
    /// blob error); the message, code first.
    Server(String),
    /// No connection is up: the command was not sent.
    NotConnected,
    /// The connection's queue is over `max_buffered`, or `max_in_flight` commands
    /// await replies: the command was not sent.
    Busy,
    /// The oldest command waited longer than the timeout: the connection was taken as
    /// broken and aborted; every command waiting on it gets this.
    Timeout,
    /// The connection ended before the reply came.
    ConnectionLost,
    /// The server sent something that is not RESP (or over a limit); the connection
    /// was closed.
    Protocol(DecodeError),
    /// The server sent a reply when no command was waiting; the connection was closed.
    UnexpectedReply,
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Server(m) => write!(f, "server error: {m}"),
            RedisError::NotConnected => f.write_str("not connected to redis"),
            RedisError::Busy => f.write_str("too many commands queued to redis"),
            RedisError::Timeout => f.write_str("redis reply timed out"),
            RedisError::ConnectionLost => f.write_str("redis connection lost"),
            RedisError::Protocol(e) => write!(f, "redis protocol error: {e}"),
            RedisError::UnexpectedReply => f.write_str("unexpected reply from redis"),
        }
    }
}

impl std::error::Error for RedisError {}

/// A change in a client's connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection is up (the first, or a new one after a loss); commands can go.
    /// A subscriber has already sent its subscriptions on it.
    Connected,
    /// The connection is gone, for this reason (the [`Reason`]'s text); the service
    /// will dial again (unless stopped). Commands fail with
    /// [`RedisError::NotConnected`] until [`Connected`](Event::Connected).
    Lost(String),
    /// A subscriber's `SUBSCRIBE` (or `PSUBSCRIBE`) of this channel (or pattern) is
    /// confirmed by the server: from here on, every message published to it reaches
    /// the subscriber, in the order the server took them. Comes once per channel or
    /// pattern per connection (after each reconnect's resubscription too), so a
    /// program that must not miss what it publishes itself waits for it (Redis
    /// orders one connection's commands, not two connections': a `PUBLISH` sent on
    /// another connection before this confirmation may be missed).
    Subscribed(Vec<u8>),
}

/// A pub/sub message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The channel it was published to.
    pub channel: Vec<u8>,
    /// The pattern that matched, for a `psubscribe`.
    pub pattern: Option<Vec<u8>>,
    /// What was published.
    pub payload: Vec<u8>,
}

/// Where a command is written from: the [`Reactor`], a protocol callback's
/// [`Context`], or the testing kit's [`Harness`](crate::testing::Harness). Sealed.
pub trait Reach: sealed::Writer {}

pub(crate) mod sealed {
    use std::time::Instant;

    use crate::ConnId;

    /// What a client needs of where it is called from.
    pub trait Writer {
        /// Writes `data` to connection `id`; false if it was dropped.
        fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool;
        /// Bytes queued for connection `id` that the kernel has not taken.
        fn buffered_of(&mut self, id: ConnId) -> usize;
        /// The reactor's clock.
        fn clock(&mut self) -> Instant;
    }
}

impl sealed::Writer for Reactor {
    fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.conn(id).write(data)
    }
    fn buffered_of(&mut self, id: ConnId) -> usize {
        self.conn(id).buffered()
    }
    fn clock(&mut self) -> Instant {
        crate::client::sealed::Host::dialer(self).clock_now()
    }
}
impl Reach for Reactor {}

impl sealed::Writer for Context<'_> {
    fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.conn(id).write(data)
    }
    fn buffered_of(&mut self, id: ConnId) -> usize {
        self.conn(id).buffered()
    }
    fn clock(&mut self) -> Instant {
        self.now()
    }
}
impl Reach for Context<'_> {}

impl<P: Protocol> sealed::Writer for crate::testing::Harness<P> {
    fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        let mut wrote = false;
        self.call_of::<RedisProtocol, _>(id, |_, cx| wrote = cx.write(data));
        wrote
    }
    fn buffered_of(&mut self, id: ConnId) -> usize {
        crate::testing::Harness::buffered_of(self, id)
    }
    fn clock(&mut self) -> Instant {
        self.now()
    }
}
impl<P: Protocol> Reach for crate::testing::Harness<P> {}

/// A command's reply callback.
type Callback = Box<dyn FnOnce(&mut Context<'_>, Result<Value, RedisError>)>;
/// A pub/sub message callback, shared by the channels of one `subscribe`.
type OnMessage = Rc<RefCell<dyn FnMut(&mut Context<'_>, &Message)>>;
/// An event callback.
type OnEvent = Rc<RefCell<dyn FnMut(&mut Context<'_>, &Event)>>;
/// A RESP3 push callback.
type OnPush = Rc<RefCell<dyn FnMut(&mut Context<'_>, Value)>>;

/// A command awaiting its reply.
struct Pending {
    sent: Instant,
    callback: Callback,
}

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Commands,
    Subscriber,
}

/// A client's state, shared by its handle and its connection's handler.
struct Shared {
    mode: Mode,
    /// The live connection, once made and until lost or aborted.
    conn: Option<ConnId>,
    pending: VecDeque<Pending>,
    timeout: Option<Duration>,
    max_buffered: usize,
    max_in_flight: usize,
    /// The connection's timeout watch.
    timer: Option<TimerId>,
    /// Reused to encode commands.
    scratch: Vec<u8>,
    on_event: Option<OnEvent>,
    on_push: Option<OnPush>,
    channels: BTreeMap<Vec<u8>, OnMessage>,
    patterns: BTreeMap<Vec<u8>, OnMessage>,
}

impl Shared {
    fn new(mode: Mode, b: &RedisClientBuilder) -> Shared {
        Shared {
            mode,
            conn: None,
            pending: VecDeque::new(),
            timeout: b.timeout,
            max_buffered: b.max_buffered,
            max_in_flight: b.max_in_flight,
            timer: None,
            scratch: Vec::new(),
            on_event: b.on_event.clone(),
            on_push: b.on_push.clone(),
            channels: BTreeMap::new(),
            patterns: BTreeMap::new(),
        }
    }
}

/// Configures a [`RedisClient`] or a [`Subscriber`].
#[derive(Clone)]
pub struct RedisClientBuilder {
    service: ClientServiceBuilder,
    timeout: Option<Duration>,
    max_buffered: usize,
    max_in_flight: usize,
    limits: Limits,
    on_event: Option<OnEvent>,
    on_push: Option<OnPush>,
}

impl fmt::Debug for RedisClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClientBuilder")
            .field("service", &self.service)
            .field("timeout", &self.timeout)
            .field("max_buffered", &self.max_buffered)
            .field("max_in_flight", &self.max_in_flight)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for RedisClientBuilder {
    fn default() -> Self {
        RedisClientBuilder {
            service: ClientServiceBuilder::new(),
            timeout: Some(Duration::from_secs(5)),
            max_buffered: 1 << 20,
            max_in_flight: 1 << 20,
            limits: Limits::default(),
            on_event: None,
            on_push: None,
        }
    }
}

impl RedisClientBuilder {
    /// The defaults: [`Backoff::client_service`], a 5 s timeout, 1 MiB of queued
    /// output and 1,048,576 commands in flight at most, the decoder's default
    /// [`Limits`].
    pub fn new() -> Self {
        RedisClientBuilder::default()
    }

    /// The reconnection policy.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.service = self.service.backoff(backoff);
        self
    }

    /// The whole [`ClientServiceBuilder`] (backoff, seed, reset, connect timeout).
    pub fn service(mut self, service: ClientServiceBuilder) -> Self {
        self.service = service;
        self
    }

    /// How long the oldest command may wait for its reply before the connection is
    /// taken as broken (`None`: for ever). 5 s by default. A subscriber has no
    /// commands to time.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bytes of queued output (not yet taken by the kernel) past which commands fail
    /// fast with [`RedisError::Busy`]; 1 MiB by default. Keep it under the reactor's
    /// write cap.
    pub fn max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    /// Commands awaiting replies past which commands fail fast with
    /// [`RedisError::Busy`]; 1,048,576 by default.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// The decoder's limits for replies.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Called on the reactor thread when a connection is made or lost.
    pub fn on_event(mut self, f: impl FnMut(&mut Context<'_>, &Event) + 'static) -> Self {
        self.on_event = Some(Rc::new(RefCell::new(f)));
        self
    }

    /// Called with each RESP3 push a command connection receives (client tracking's
    /// invalidations, for one); pushes are dropped without it.
    pub fn on_push(mut self, f: impl FnMut(&mut Context<'_>, Value) + 'static) -> Self {
        self.on_push = Some(Rc::new(RefCell::new(f)));
        self
    }

    fn start<N: Network>(self, mode: Mode, net: &mut N, target: Target) -> Handle {
        let shared = Rc::new(RefCell::new(Shared::new(mode, &self)));
        let limits = self.limits;
        let for_factory = shared.clone();
        let service = self.service.start(net, target, move || {
            RespReceiver::with_limits(
                Conn {
                    shared: for_factory.clone(),
                },
                limits,
            )
        });
        Handle { shared, service }
    }

    /// Starts a command client: the first connect starts now.
    pub fn connect<N: Network>(self, net: &mut N, target: impl Into<Target>) -> RedisClient {
        RedisClient {
            inner: self.start(Mode::Commands, net, target.into()),
        }
    }

    /// Starts a subscriber: the first connect starts now.
    pub fn subscriber<N: Network>(self, net: &mut N, target: impl Into<Target>) -> Subscriber {
        Subscriber {
            inner: self.start(Mode::Subscriber, net, target.into()),
        }
    }
}

/// What both handles hold.
#[derive(Clone)]
struct Handle {
    shared: Rc<RefCell<Shared>>,
    service: ClientService<RedisProtocol>,
}

impl Handle {
    fn is_connected(&self) -> bool {
        self.shared.borrow().conn.is_some()
    }

    /// Encodes `args` and writes them to the live connection.
    fn send<W: Reach + ?Sized, A: AsRef<[u8]>>(
        &self,
        via: &mut W,
        args: &[A],
    ) -> Result<ConnId, RedisError> {
        let (id, mut out) = {
            let mut shared = self.shared.borrow_mut();
            let id = shared.conn.ok_or(RedisError::NotConnected)?;
            let mut out = std::mem::take(&mut shared.scratch);
            out.clear();
            put_command(&mut out, args);
            (id, out)
        };
        // Written with nothing borrowed: the write may settle other connections.
        let wrote = via.write_to(id, &out);
        out.clear();
        if out.capacity() <= 64 * 1024 {
            self.shared.borrow_mut().scratch = out;
        }
        match wrote {
            true => Ok(id),
            false => Err(RedisError::NotConnected),
        }
    }
}

/// A Redis client for commands; see the [module docs](self). A cheap handle:
/// clones share one client.
#[derive(Clone)]
pub struct RedisClient {
    inner: Handle,
}

impl fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.inner.shared.borrow();
        f.debug_struct("RedisClient")
            .field("conn", &shared.conn)
            .field("in_flight", &shared.pending.len())
            .finish()
    }
}

impl RedisClient {
    /// A builder, to set the timeout, limits, backoff and callbacks.
    pub fn builder() -> RedisClientBuilder {
        RedisClientBuilder::new()
    }

    /// Starts a client with the defaults: see [`RedisClientBuilder::connect`].
    pub fn connect<N: Network>(net: &mut N, target: impl Into<Target>) -> RedisClient {
        RedisClientBuilder::new().connect(net, target)
    }

    /// Sends a command (`&["SET", "k", "v"]`); `callback` gets its reply, on the
    /// reactor thread, with the Redis connection's context. Commands are pipelined:
    /// this returns at once, and replies come back in the order the commands were
    /// sent.
    ///
    /// # Errors
    /// [`RedisError::NotConnected`] or [`RedisError::Busy`] (see the
    /// [module docs](self)): the command was not sent and `callback` is dropped.
    pub fn command<W, A, F>(&self, via: &mut W, args: &[A], callback: F) -> Result<(), RedisError>
    where
        W: Reach + ?Sized,
        A: AsRef<[u8]>,
        F: FnOnce(&mut Context<'_>, Result<Value, RedisError>) + 'static,
    {
        let sent = {
            let shared = self.inner.shared.borrow();
            let id = shared.conn.ok_or(RedisError::NotConnected)?;
            if shared.pending.len() >= shared.max_in_flight {
                return Err(RedisError::Busy);
            }
            let max_buffered = shared.max_buffered;
            drop(shared);
            if via.buffered_of(id) > max_buffered {
                return Err(RedisError::Busy);
            }
            via.clock()
        };
        // Queued before the write, which may settle this very connection's loss (its
        // callback then gets `ConnectionLost`).
        self.inner.shared.borrow_mut().pending.push_back(Pending {
            sent,
            callback: Box::new(callback),
        });
        if let Err(e) = self.inner.send(via, args) {
            // Not sent: take it back if the loss has not already answered it.
            let mut shared = self.inner.shared.borrow_mut();
            if shared.conn.is_some() {
                shared.pending.pop_back();
            }
            return Err(e);
        }
        Ok(())
    }

    /// True while a connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Commands sent that await their replies.
    pub fn in_flight(&self) -> usize {
        self.inner.shared.borrow().pending.len()
    }

    /// The reconnecting service under the client: its state, its connection's id,
    /// and [`stop`](ClientService::stop).
    pub fn service(&self) -> &ClientService<RedisProtocol> {
        &self.inner.service
    }

    /// Stops the client for good: the connection is closed gracefully (what was
    /// written is sent; commands still waiting for replies get
    /// [`RedisError::ConnectionLost`]).
    pub fn stop<N: Network>(&self, net: &mut N) {
        self.inner.service.stop(net);
    }
}

/// A pub/sub client; see the [module docs](self). A cheap handle: clones share one
/// subscriber.
#[derive(Clone)]
pub struct Subscriber {
    inner: Handle,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.inner.shared.borrow();
        f.debug_struct("Subscriber")
            .field("conn", &shared.conn)
            .field("channels", &shared.channels.len())
            .field("patterns", &shared.patterns.len())
            .finish()
    }
}

impl Subscriber {
    /// A builder, to set the limits, backoff and event callback.
    pub fn builder() -> RedisClientBuilder {
        RedisClientBuilder::new()
    }

    /// Starts a subscriber with the defaults: see [`RedisClientBuilder::subscriber`].
    pub fn connect<N: Network>(net: &mut N, target: impl Into<Target>) -> Subscriber {
        RedisClientBuilder::new().subscriber(net, target)
    }

    /// Subscribes to `channels`; `on_message` gets their messages. A channel already
    /// subscribed gets the new callback. Sent now if connected, else with the other
    /// subscriptions once connected; kept across reconnects.
    pub fn subscribe<W, A>(
        &self,
        via: &mut W,
        channels: &[A],
        on_message: impl FnMut(&mut Context<'_>, &Message) + 'static,
    ) where
        W: Reach + ?Sized,
        A: AsRef<[u8]>,
    {
        self.add(
            via,
            b"SUBSCRIBE",
            channels,
            Rc::new(RefCell::new(on_message)),
            false,
        )
    }

    /// Subscribes to the channels matching `patterns` (`news.*`); `on_message` gets
    /// their messages, with [`Message::pattern`] set. As [`subscribe`](Self::subscribe)
    /// otherwise.
    pub fn psubscribe<W, A>(
        &self,
        via: &mut W,
        patterns: &[A],
        on_message: impl FnMut(&mut Context<'_>, &Message) + 'static,
    ) where
        W: Reach + ?Sized,
        A: AsRef<[u8]>,
    {
        self.add(
            via,
            b"PSUBSCRIBE",
            patterns,
            Rc::new(RefCell::new(on_message)),
            true,
        )
    }

    fn add<W: Reach + ?Sized, A: AsRef<[u8]>>(
        &self,
        via: &mut W,
        verb: &[u8],
        names: &[A],
        on_message: OnMessage,
        patterns: bool,
    ) {
        if names.is_empty() {
            return;
        }
        {
            let mut shared = self.inner.shared.borrow_mut();
            let table = match patterns {
                true => &mut shared.patterns,
                false => &mut shared.channels,
            };
            for name in names {
                table.insert(name.as_ref().to_vec(), on_message.clone());
            }
        }
        let mut args: Vec<&[u8]> = vec![verb];
        args.extend(names.iter().map(AsRef::as_ref));
        // Not connected: sent with the rest on connect.
        let _ = self.inner.send(via, &args);
    }

    /// Unsubscribes from `channels`: their callbacks are dropped at once (a message
    /// already on its way is not delivered).
    pub fn unsubscribe<W: Reach + ?Sized, A: AsRef<[u8]>>(&self, via: &mut W, channels: &[A]) {
        self.remove(via, b"UNSUBSCRIBE", channels, false)
    }

    /// Unsubscribes from `patterns`, as [`unsubscribe`](Self::unsubscribe).
    pub fn punsubscribe<W: Reach + ?Sized, A: AsRef<[u8]>>(&self, via: &mut W, patterns: &[A]) {
        self.remove(via, b"PUNSUBSCRIBE", patterns, true)
    }

    fn remove<W: Reach + ?Sized, A: AsRef<[u8]>>(
        &self,
        via: &mut W,
        verb: &[u8],
        names: &[A],
        patterns: bool,
    ) {
        let mut removed: Vec<&[u8]> = vec![verb];
        {
            let mut shared = self.inner.shared.borrow_mut();
            let table = match patterns {
                true => &mut shared.patterns,
                false => &mut shared.channels,
            };
            for name in names {
                if table.remove(name.as_ref()).is_some() {
                    removed.push(name.as_ref());
                }
            }
        }
        if removed.len() > 1 {
            let _ = self.inner.send(via, &removed);
        }
    }

    /// The channels subscribed to.
    pub fn channels(&self) -> Vec<Vec<u8>> {
        self.inner
            .shared
            .borrow()
            .channels
            .keys()
            .cloned()
            .collect()
    }

    /// The patterns subscribed to.
    pub fn patterns(&self) -> Vec<Vec<u8>> {
        self.inner
            .shared
            .borrow()
            .patterns
            .keys()
            .cloned()
            .collect()
    }

    /// True while a connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// The reconnecting service under the subscriber.
    pub fn service(&self) -> &ClientService<RedisProtocol> {
        &self.inner.service
    }

    /// Stops the subscriber for good; the connection is closed gracefully.
    pub fn stop<N: Network>(&self, net: &mut N) {
        self.inner.service.stop(net);
    }
}

/// The handler of a Redis connection (inside [`RedisProtocol`]); one per attempt.
pub struct Conn {
    shared: Rc<RefCell<Shared>>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("mode", &self.shared.borrow().mode)
            .finish()
    }
}

impl Conn {
    fn notify(&self, cx: &mut Context<'_>, event: Event) {
        let on_event = self.shared.borrow().on_event.clone();
        if let Some(f) = on_event {
            (f.borrow_mut())(cx, &event);
        }
    }

    /// Fails every waiting command with `error`, oldest first.
    fn fail_all(&self, cx: &mut Context<'_>, error: RedisError) {
        loop {
            let next = self.shared.borrow_mut().pending.pop_front();
            match next {
                Some(p) => (p.callback)(cx, Err(error.clone())),
                None => break,
            }
        }
    }

    /// Arms the timeout watch: when the oldest command's time is up, or after a
    /// whole timeout if none waits.
    fn arm(&self, cx: &mut Context<'_>) {
        let (timeout, oldest) = {
            let shared = self.shared.borrow();
            match shared.timeout {
                Some(t) if shared.mode == Mode::Commands => {
                    (t, shared.pending.front().map(|p| p.sent))
                }
                _ => return,
            }
        };
        let now = cx.now();
        let delay = match oldest {
            Some(sent) => (sent + timeout).saturating_duration_since(now),
            None => timeout,
        };
        let timer = Context::call_later(cx, delay, |r: &mut RedisProtocol, cx| {
            r.handler_mut().timer_fired(cx)
        });
        self.shared.borrow_mut().timer = Some(timer);
    }

    fn timer_fired(&mut self, cx: &mut Context<'_>) {
        let late = {
            let mut shared = self.shared.borrow_mut();
            shared.timer = None;
            match (shared.timeout, shared.pending.front()) {
                (Some(t), Some(p)) => cx.now() >= p.sent + t,
                _ => false,
            }
        };
        if !late {
            return self.arm(cx);
        }
        log::warn!("{}: redis reply timed out; reconnecting", cx.id());
        self.shared.borrow_mut().conn = None;
        self.fail_all(cx, RedisError::Timeout);
        cx.abort_connection();
    }

    /// A pub/sub message, or a subscription's confirmation (dropped).
    fn pubsub(&mut self, cx: &mut Context<'_>, items: Vec<Value>) {
        let mut items = items.into_iter().map(|v| match v {
            Value::Bulk(b) | Value::Simple(b) => Some(b),
            _ => None,
        });
        let kind = items.next().flatten();
        let message = match kind.as_deref() {
            Some(b"message") => match (items.next().flatten(), items.next().flatten()) {
                (Some(channel), Some(payload)) => Message {
                    channel,
                    pattern: None,
                    payload,
                },
                _ => return,
            },
            Some(b"pmessage") => match (
                items.next().flatten(),
                items.next().flatten(),
                items.next().flatten(),
            ) {
                (Some(pattern), Some(channel), Some(payload)) => Message {
                    channel,
                    pattern: Some(pattern),
                    payload,
                },
                _ => return,
            },
            Some(b"subscribe" | b"psubscribe") => {
                if let Some(name) = items.next().flatten() {
                    self.notify(cx, Event::Subscribed(name));
                }
                return;
            }
            // unsubscribe, punsubscribe, pong: confirmations nobody waits for.
            _ => return,
        };
        let handler = {
            let shared = self.shared.borrow();
            match &message.pattern {
                Some(p) => shared.patterns.get(p).cloned(),
                None => shared.channels.get(&message.channel).cloned(),
            }
        };
        if let Some(f) = handler {
            (f.borrow_mut())(cx, &message);
        }
    }

    /// Sends the subscriptions, in full, on a new connection.
    fn resubscribe(&self, cx: &mut Context<'_>) {
        let mut out = Vec::new();
        {
            let shared = self.shared.borrow();
            for (verb, table) in [
                (&b"SUBSCRIBE"[..], &shared.channels),
                (b"PSUBSCRIBE", &shared.patterns),
            ] {
                if !table.is_empty() {
                    let mut args: Vec<&[u8]> = vec![verb];
                    args.extend(table.keys().map(Vec::as_slice));
                    put_command(&mut out, &args);
                }
            }
        }
        if !out.is_empty() {
            cx.write(&out);
        }
    }
}

impl RespHandler for Conn {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        log::debug!("{}: redis connected", cx.id());
        let mode = {
            let mut shared = self.shared.borrow_mut();
            shared.conn = Some(cx.id());
            shared.mode
        };
        match mode {
            Mode::Subscriber => self.resubscribe(cx),
            Mode::Commands => self.arm(cx),
        }
        self.notify(cx, Event::Connected);
    }

    fn value_received(&mut self, cx: &mut Context<'_>, value: Value) {
        let mode = self.shared.borrow().mode;
        if mode == Mode::Subscriber {
            if let Value::Array(items) | Value::Push(items) = value {
                self.pubsub(cx, items);
            }
            return;
        }
        if let Value::Push(_) = value {
            let on_push = self.shared.borrow().on_push.clone();
            if let Some(f) = on_push {
                (f.borrow_mut())(cx, value);
            }
            return;
        }
        let next = self.shared.borrow_mut().pending.pop_front();
        let Some(pending) = next else {
            log::warn!(
                "{}: a redis reply with no command waiting; closing",
                cx.id()
            );
            self.shared.borrow_mut().conn = None;
            cx.abort_connection();
            return;
        };
        let reply = match value {
            Value::Error(e) | Value::BlobError(e) => {
                Err(RedisError::Server(String::from_utf8_lossy(&e).into_owned()))
            }
            v => Ok(v),
        };
        (pending.callback)(cx, reply);
    }

    fn decode_error(&mut self, cx: &mut Context<'_>, error: DecodeError) {
        log::warn!("{}: redis sent bad RESP: {error}; closing", cx.id());
        self.shared.borrow_mut().conn = None;
        self.fail_all(cx, RedisError::Protocol(error));
        cx.abort_connection();
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        log::debug!("{}: redis connection lost: {reason}", cx.id());
        let timer = {
            let mut shared = self.shared.borrow_mut();
            if shared.conn == Some(cx.id()) {
                shared.conn = None;
            }
            shared.timer.take()
        };
        if let Some(timer) = timer {
            cx.cancel_timer(timer);
        }
        self.fail_all(cx, RedisError::ConnectionLost);
        self.notify(cx, Event::Lost(reason.to_string()));
    }

    fn connection_failed(&mut self, cx: &mut Context<'_>, error: io::Error) {
        let _ = cx;
        log::debug!("redis connect failed: {error}");
    }
}
