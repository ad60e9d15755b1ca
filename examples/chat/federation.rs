//! Chat servers federated through Redis: `chat --redis HOST:PORT`.
//!
//! Every server that uses the same redis-server and the same `--redis-prefix`
//! (PREFIX below, `twistor-chat` by default) is part of one chat. This module is
//! the design as built. The server tells it each member's [`Event`] after the local delivery
//! (through the [`Federate`] trait, so that `server.rs` knows nothing of Redis); when
//! Redis answers, the federation is taken out of the server for the callback and
//! calls back into it (`deliver_room`, `rename_now`, `notice_all`...), writing to
//! members through the server's one write path.
//!
//! # Channel
//!
//! One pub/sub channel, `PREFIX:events`. Every server publishes its [`Event`]s there
//! (the payloads are in [`crate::wire`]), each carrying the origin's node id
//! (`--node-id`, random by default), and subscribes to it. A server ignores its own
//! events (it has delivered them locally already) except as an echo that proves its
//! link works end to end. Each server publishes on **one** command connection, so
//! Redis takes its events in the order they were sent and hands them to every
//! subscriber in that order: the lines of one sender reach every member in the order
//! sent, wherever the member is.
//!
//! # At most once, never twice
//!
//! Redis pub/sub keeps nothing: a message reaches the subscribers connected when it is
//! published, once each, and is never replayed. So nothing is delivered twice, and a
//! server whose link is down misses what was published meanwhile. The link is *up*
//! once the command connection is connected and the subscriber's `SUBSCRIBE` is
//! confirmed ([`twistor::redis::Event::Subscribed`]) and the server has claimed its
//! nicks again (below). While it is not up the server publishes nothing (events are
//! dropped, not queued for later: they have reached the local members, and nobody
//! else could hear them in order) and ignores what it receives; its members got
//! `* federation lost` when it went down, and get `* federation restored` once it is
//! up again. Lines sent meanwhile thus reach local members only.
//!
//! # Roster
//!
//! Each server keeps a replica of the other servers' members (nick and room), fed by
//! the events themselves (`join`, `left`, `gone`, `nick`), so that `/who`, `/rooms`
//! and `/msg` are answered at once, without a round trip to Redis. When its link
//! comes up a server publishes `sync` with its own roster, and every server that
//! hears it answers with `roster`, its own; each replaces what the hearer knew of
//! that server. Every server publishes `hb` every [`HEARTBEAT`]; a server not heard
//! from for [`PEER_TIMEOUT`] is taken as dead: its members are dropped from the
//! roster and their rooms hear `* NICK disconnected`. While a server's own link is
//! down it forgets the others' members (its `/who` shows its own). Staleness: the
//! roster is behind by the time an event takes through Redis (the same for every
//! line), or by [`PEER_TIMEOUT`] for a server that died. A `/msg` to a member who has
//! just left is lost silently.
//!
//! # Nicks: leases
//!
//! A nick is held with a key `PREFIX:nick:NICK` whose value is the node id, set with
//! a lease of [`LEASE`] (`PX`). A `/nick` that is free locally and not known to be
//! taken elsewhere claims the key with a script ([`CLAIM`]: set it if it is free or
//! already ours) and is answered when Redis answers: the member's reading is paused
//! meanwhile (as flow control pauses it), so its later lines come after the rename. A
//! refused claim gets the same `* error: nick NICK is taken` as a local clash. Every
//! [`REFRESH_TICKS`] heartbeats, the server renews all its keys in one pipelined
//! script call; a rename or a departure deletes the old key if it is still ours
//! ([`RELEASE`], compare-and-delete). A server that dies stops renewing: its nicks are
//! free again within [`LEASE`] (25 s, under the spec's 30).
//!
//! Guests: the counter `PREFIX:guest` hands out blocks of [`GUEST_BLOCK`] numbers
//! ([`RESERVE`], which also claims each `guestN` of the block and never goes below
//! the highest number this server has used, so that a Redis that lost its data does
//! not hand out numbers in use again); a new member takes the lowest number of the
//! pool at once, and the pool is topped up when it runs low (the first block is
//! reserved before the link is up, and `chat` waits up to 3 s for that before it
//! announces itself). If the pool runs out while the link is down, the server counts
//! on from its highest number, skipping nicks it knows to be taken, and claims those
//! nicks at once if it can, else when the link is back (below).
//!
//! While the command connection is down a `/nick` is checked locally only. When the
//! link comes back the server claims all its nicks again before it is up; a nick
//! found taken by another server meanwhile is replaced by a fresh guest nick, its
//! member told `* nick NICK is taken on another server` and the room the usual
//! `* OLD is now NEW`. The same happens if a renewal finds a key taken (a lease that
//! lapsed, or a Redis restarted empty that another server reached first). A claim
//! that gets no answer (the link broke meanwhile) is decided locally the same way.
//! The scripts leave keys of another type alone (taken, not an error).
//!
//! # Never blocking, never crashing
//!
//! All Redis I/O goes through the reactor ([`RedisClient`], [`Subscriber`]), which
//! reconnect with backoff. Commands are pipelined and never queued while
//! disconnected. A reply that is not what the command returns (or an error reply,
//! such as `-OOM`) is logged and the link restarted: both connections are aborted
//! and dialled again (with backoff, so a Redis that keeps refusing is retried less
//! and less often). So is a link whose own heartbeat has not come back through
//! Redis for [`ECHO_TIMEOUT`]. The link's timers live on the command connection and
//! die with it. Remote lines to a congested local member cannot hold back their
//! sender on another server: they are written all the same, and the write cap
//! (`--max-backlog`) cuts off a member that does not read. Local senders are held
//! back while more than [`HOLD_IN_FLIGHT`] published events await Redis's answer,
//! until [`RESUME_IN_FLIGHT`] do, so that a slow Redis slows the senders instead of
//! dropping their events.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use twistor::backoff::{Backoff, Jitter};
use twistor::client::{ClientServiceBuilder, Target};
use twistor::framing::resp::Value;
use twistor::redis::{Event as LinkEvent, RedisClient, RedisError, RedisProtocol, Subscriber};
use twistor::{ConnId, Context, Reactor};

use crate::server::{Federate, MemberKey, Server};
use crate::wire::{decode, encode, Entry, Event};

/// How often a server publishes its heartbeat (and does its housekeeping).
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// A server not heard from for this long is taken as dead: five heartbeats, so that
/// a Redis that stalls for a few seconds (`CLIENT PAUSE`) kills nobody.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// A link whose own heartbeat has not come back for this long is restarted: the
/// subscription is silently dead.
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a nick's key lives without renewal: a dead server's nicks must be free
/// again within 30 s; 25 s leaves room for the claim's own round trips.
pub const LEASE: Duration = Duration::from_secs(25);

/// Keys are renewed every this many heartbeats (8 s): three chances per lease.
pub const REFRESH_TICKS: u64 = 4;

/// Guest numbers reserved at a time: one round trip per 64 arrivals.
pub const GUEST_BLOCK: u64 = 64;

/// The pool of guest numbers is topped up below this many: a burst of arrivals
/// within one round trip rarely empties it.
pub const GUEST_LOW: usize = 16;

/// Local senders are held back while this many published events await Redis's
/// answer: about a second of a busy server's lines.
pub const HOLD_IN_FLIGHT: usize = 1024;

/// Held-back senders read again once this many await it.
pub const RESUME_IN_FLIGHT: usize = 256;

/// How long a command may wait for its reply before the link is taken as broken.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Claims (or renews) keys for this node: `KEYS` the nick keys, `ARGV` the node id and
/// the lease in ms. Returns 1 per key now ours, 0 per key another node holds (or
/// that is not a string: someone else's data, left alone).
const CLAIM: &str = "local out = {}
for i, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' or (t == 'string' and redis.call('GET', k) == ARGV[1]) then
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out";

/// Deletes the keys that are still this node's: `KEYS` the nick keys, `ARGV[1]` the
/// node id. Returns how many were deleted.
const RELEASE: &str = "local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k)['ok'] == 'string' and redis.call('GET', k) == ARGV[1] then
    n = n + redis.call('DEL', k)
  end
end
return n";

/// Reserves a block of guest numbers and claims each guest nick of it: `KEYS[1]` the
/// counter; `ARGV` the block size, the lowest the counter may start from, the nick
/// key prefix, the node id and the lease in ms. Returns the numbers claimed.
const RESERVE: &str = "local n = 0
if redis.call('TYPE', KEYS[1])['ok'] == 'string' then
  n = tonumber(redis.call('GET', KEYS[1])) or 0
end
local floor = tonumber(ARGV[2])
if n < floor then n = floor end
local first = n + 1
n = n + tonumber(ARGV[1])
redis.call('SET', KEYS[1], n)
local got = {}
for i = first, n do
  local k = ARGV[3] .. 'guest' .. i
  if redis.call('TYPE', k)['ok'] == 'none' then
    redis.call('SET', k, ARGV[4], 'PX', ARGV[5])
    got[#got + 1] = i
  end
end
return got";

/// What `chat --redis` was given.
pub struct Config {
    /// The redis-server.
    pub target: Target,
    /// `--redis-prefix`: the channel's and the keys' prefix.
    pub prefix: String,
    /// `--node-id`.
    pub node: String,
    /// Unsent bytes to Redis past which events are dropped: under the reactor's write
    /// cap, which would close the connection.
    pub max_buffered_bytes: usize,
}

/// The state of the link to the other servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Not both connections are up (or the subscription is not confirmed).
    Down,
    /// Both are; the nicks are being claimed again.
    Joining,
    /// Events go out and come in.
    Up,
}

/// What this server knows of another.
struct Peer {
    last_seen: Instant,
    /// Its members: nick to room.
    members: HashMap<String, String>,
}

/// This server's part in the federation; owned by the [`Server`].
pub struct Federation {
    node: String,
    channel: String,
    /// `PREFIX:nick:`
    nick_key: String,
    /// `PREFIX:guest`
    guest_key: String,
    client: RedisClient,
    sub: Subscriber,
    /// The server, for the callbacks.
    server: Weak<RefCell<Server>>,
    client_up: bool,
    subscribed: bool,
    link: Link,
    /// Counts the times the link went down, so that a late answer to a link that is
    /// gone is ignored.
    epoch: u64,
    /// The members have been told `* federation lost`, not yet `restored`.
    told_lost: bool,
    peers: HashMap<String, Peer>,
    /// Every remote member's nick, to its node.
    remote: HashMap<String, String>,
    /// Guest numbers claimed and not handed out yet.
    pool: BTreeSet<u64>,
    reserving: bool,
    /// `/nick` claims awaiting Redis: the nick, to the member (its reading paused).
    claims: HashMap<String, (MemberKey, ConnId)>,
    /// Senders held back while too many events await Redis.
    held: Vec<(MemberKey, ConnId)>,
    /// Nicks to release once the command connection is back.
    releases: Vec<String>,
    /// Guest nicks handed out while the pool was empty, not claimed yet.
    unclaimed: Vec<String>,
    /// When this server's own last event came back through Redis.
    last_echo: Instant,
    ticks: u64,
    /// Reused to encode events.
    payload: Vec<u8>,
}

/// The backoff of both connections: quick at first (a restarted Redis is back in a
/// moment), at most 5 s apart, with jitter so that many servers do not dial at once.
fn backoff() -> ClientServiceBuilder {
    ClientServiceBuilder::new()
        .backoff(
            Backoff::client_service()
                .initial(Duration::from_millis(200))
                .factor(2.0)
                .max(Duration::from_secs(5))
                .jitter(Jitter::Uniform(Duration::from_millis(200))),
        )
        // A link that drops at once (a Redis that cuts its subscribers off) backs off.
        .reset_after(Duration::from_secs(2))
}

/// Runs `f` on the server and its federation, the federation taken out of the server
/// meanwhile (so that `f` has both). A server that is gone, or busy (a bug: Redis
/// callbacks never run inside the server's own), is left alone, logged.
fn with(weak: &Weak<RefCell<Server>>, f: impl FnOnce(&mut Server, &mut Federation)) {
    let Some(server) = weak.upgrade() else { return };
    let Ok(mut server) = server.try_borrow_mut() else {
        log::error!("federation: the server is busy; a Redis callback was dropped");
        return;
    };
    let Some(mut fed) = server.take_federation() else {
        return;
    };
    if let Some(federation) = fed.as_any().downcast_mut::<Federation>() {
        f(&mut server, federation);
    }
    server.put_federation(fed);
}

/// Starts the federation of `server`: both connections dial now.
pub fn start(reactor: &mut Reactor, server: &Rc<RefCell<Server>>, config: Config) {
    let weak = Rc::downgrade(server);
    let on_client = weak.clone();
    let client = RedisClient::builder()
        .service(backoff())
        .timeout(Some(COMMAND_TIMEOUT))
        .max_buffered(config.max_buffered_bytes)
        .on_event(move |cx, e| with(&on_client, |s, f| f.client_event(cx, s, e)))
        .connect(reactor, config.target.clone());
    let on_sub = weak.clone();
    let sub = Subscriber::builder()
        .service(backoff())
        .on_event(move |cx, e| with(&on_sub, |s, f| f.sub_event(cx, s, e)))
        .subscriber(reactor, config.target);
    let channel = format!("{}:events", config.prefix);
    let on_message = weak.clone();
    sub.subscribe(reactor, &[&channel], move |cx, m| {
        with(&on_message, |s, f| f.message(cx, s, &m.payload))
    });
    log::info!(
        "federation: node {} on {} (prefix {})",
        config.node,
        client.service().target(),
        config.prefix
    );
    let fed = Federation {
        node: config.node,
        channel,
        nick_key: format!("{}:nick:", config.prefix),
        guest_key: format!("{}:guest", config.prefix),
        client,
        sub,
        server: weak,
        client_up: false,
        subscribed: false,
        link: Link::Down,
        epoch: 0,
        told_lost: false,
        peers: HashMap::new(),
        remote: HashMap::new(),
        pool: BTreeSet::new(),
        reserving: false,
        claims: HashMap::new(),
        held: Vec::new(),
        releases: Vec::new(),
        unclaimed: Vec::new(),
        last_echo: Instant::now(),
        ticks: 0,
        payload: Vec::new(),
    };
    server.borrow_mut().put_federation(Box::new(fed));
}

/// Runs [`Federation::tick`] every [`HEARTBEAT`] on the command connection, until it
/// is lost (its timers go with it; the next connection starts its own).
fn schedule_tick(cx: &mut Context<'_>, weak: Weak<RefCell<Server>>) {
    cx.call_later(HEARTBEAT, move |_: &mut RedisProtocol, cx| {
        with(&weak, |s, f| f.tick(cx, s));
        schedule_tick(cx, weak);
    });
}

/// The arguments of an `EVAL` of `script` over `keys`, then `args`.
fn eval_args(script: &str, keys: &[String], args: &[&str]) -> Vec<Vec<u8>> {
    let mut all = vec![
        b"EVAL".to_vec(),
        script.as_bytes().to_vec(),
        keys.len().to_string().into_bytes(),
    ];
    all.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
    all.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    all
}

/// The lease in milliseconds, as `PX` takes it.
fn lease_ms() -> String {
    LEASE.as_millis().to_string()
}

/// What a claim's answer says of each key: `Some(granted)` per key, or `None` if the
/// reply is not the script's.
fn claim_results(reply: &Value, keys: usize) -> Option<Vec<bool>> {
    match reply {
        Value::Array(items) if items.len() == keys => items
            .iter()
            .map(|v| match v {
                Value::Integer(1) => Some(true),
                Value::Integer(0) => Some(false),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

impl Federate for Federation {
    /// Publishes `event` (if the link is up); a rename releases the old nick too.
    /// `sender`, the member whose action it is, is held back while too many events
    /// await Redis.
    fn tell(
        &mut self,
        cx: &mut Context<'_>,
        sender: Option<(MemberKey, ConnId)>,
        event: &Event<'_>,
    ) {
        if let Event::Renamed { old, .. } = *event {
            self.release(cx, old);
        }
        self.publish(cx, sender, event);
    }

    /// Tops up the guest pool, and claims the new member's nick if it did not come
    /// from the pool.
    fn arrived(&mut self, cx: &mut Context<'_>, last_guest: u64) -> bool {
        self.top_up(cx, last_guest);
        if self.client_up && !self.unclaimed.is_empty() {
            let nicks = std::mem::take(&mut self.unclaimed);
            self.claim_all(cx, nicks, |_, _, _| {});
        }
        if self.link == Link::Up {
            return false;
        }
        self.told_lost = true;
        true
    }

    /// Releases the nick.
    fn departed(&mut self, cx: &mut Context<'_>, key: MemberKey, nick: &str) {
        self.held.retain(|&(k, _)| k != key);
        self.release(cx, nick);
    }

    /// Asks Redis ([`CLAIM`]) if the command connection is up; the answer goes to
    /// [`claim_answered`](Federation::claim_answered).
    fn claim(&mut self, cx: &mut Context<'_>, key: MemberKey, conn: ConnId, nick: &str) -> bool {
        if !self.client_up {
            return false;
        }
        let args = eval_args(
            CLAIM,
            &[format!("{}{nick}", self.nick_key)],
            &[&self.node, &lease_ms()],
        );
        let weak = self.server.clone();
        let owned = nick.to_owned();
        let sent = self.client.command(cx, &args, move |cx, reply| {
            with(&weak, |s, f| {
                f.claim_answered(cx, s, key, conn, owned, reply)
            })
        });
        match sent {
            Ok(()) => {
                self.claims.insert(nick.to_owned(), (key, conn));
                cx.conn(conn).pause_reading();
                true
            }
            Err(e) => {
                log::debug!("federation: /nick {nick} not claimed: {e}");
                false
            }
        }
    }

    /// The lowest of the pool, else the server's next number (claimed when the
    /// member has arrived, [`arrived`](Federate::arrived)).
    fn guest_nick(&mut self, server: &mut Server) -> String {
        while let Some(n) = self.pool.pop_first() {
            server.note_guest_number(n);
            let nick = format!("guest{n}");
            if self.free_here(server, &nick) {
                return nick;
            }
        }
        loop {
            let nick = format!("guest{}", server.next_guest_number());
            if self.free_here(server, &nick) {
                self.unclaimed.push(nick.clone());
                return nick;
            }
        }
    }

    fn is_up(&self) -> bool {
        self.link == Link::Up
    }

    fn is_taken(&self, nick: &str) -> bool {
        self.remote.contains_key(nick) || self.claims.contains_key(nick)
    }

    fn is_remote(&self, nick: &str) -> bool {
        self.remote.contains_key(nick)
    }

    /// Held while a `/nick` claim is in flight, or while too many events await
    /// Redis.
    fn lets_read(&self, key: MemberKey) -> bool {
        !self.held.iter().any(|&(k, _)| k == key) && !self.claims.values().any(|&(k, _)| k == key)
    }

    fn members_in<'a>(&'a self, room: &str, nicks: &mut Vec<&'a str>) {
        for peer in self.peers.values() {
            let here = peer.members.iter().filter(|(_, r)| r.as_str() == room);
            nicks.extend(here.map(|(n, _)| n.as_str()));
        }
    }

    fn count_rooms<'a>(&'a self, rooms: &mut BTreeMap<&'a str, usize>) {
        for peer in self.peers.values() {
            for room in peer.members.values() {
                *rooms.entry(room.as_str()).or_default() += 1;
            }
        }
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

impl Federation {
    fn free_here(&self, server: &Server, nick: &str) -> bool {
        !server.has_nick(nick) && !self.is_taken(nick)
    }

    /// Publishes `event` (if the link is up), holding `sender` back while too many
    /// events await Redis.
    fn publish(
        &mut self,
        cx: &mut Context<'_>,
        sender: Option<(MemberKey, ConnId)>,
        event: &Event<'_>,
    ) {
        if self.link != Link::Up {
            return;
        }
        encode(&mut self.payload, &self.node, event);
        let weak = self.server.clone();
        let args: [&[u8]; 3] = [b"PUBLISH", self.channel.as_bytes(), &self.payload];
        let sent = self.client.command(cx, &args, move |cx, reply| {
            with(&weak, |s, f| f.published(cx, s, reply))
        });
        if let Err(e) = sent {
            log::warn!("federation: an event was not published: {e}");
            return;
        }
        let Some((key, conn)) = sender else { return };
        if self.client.in_flight() >= HOLD_IN_FLIGHT && !self.held.iter().any(|&(k, _)| k == key) {
            cx.conn(conn).pause_reading();
            self.held.push((key, conn));
        }
    }

    // ----- answers from Redis -----

    fn claim_answered(
        &mut self,
        cx: &mut Context<'_>,
        server: &mut Server,
        key: MemberKey,
        conn: ConnId,
        nick: String,
        reply: Result<Value, RedisError>,
    ) {
        self.claims.remove(&nick);
        let granted = match reply {
            Ok(value) => match claim_results(&value, 1).as_deref() {
                Some(&[granted]) => Some(granted),
                _ => {
                    self.unexpected(cx, "a claim", &format!("{value:?}"));
                    None
                }
            },
            Err(RedisError::Server(e)) => {
                self.unexpected(cx, "a claim", &e);
                None
            }
            Err(_) => None,
        };
        if server.member_conn(key) != Some(conn) {
            // Gone meanwhile: nobody uses the nick.
            if granted == Some(true) {
                self.release(cx, &nick);
            }
            return;
        }
        // No answer (the link broke): checked locally only, claimed again once the
        // link is back.
        let free = match granted {
            Some(granted) => granted && !server.has_nick(&nick),
            None => self.free_here(server, &nick),
        };
        if free {
            if let Some(n) = guest_number(&nick) {
                self.pool.remove(&n);
            }
            let (old, room) = server.rename_now(cx, key, &nick);
            let (new, room) = (nick.as_str(), room.as_str());
            self.tell(
                cx,
                Some((key, conn)),
                &Event::Renamed {
                    old: &old,
                    new,
                    room,
                },
            );
        } else {
            server.nick_taken(cx, key, &nick);
        }
        if self.lets_read(key) {
            server.resume_if_free(cx, key);
        }
    }

    fn published(
        &mut self,
        cx: &mut Context<'_>,
        server: &mut Server,
        reply: Result<Value, RedisError>,
    ) {
        match reply {
            Ok(Value::Integer(_)) => {}
            Ok(other) => self.unexpected(cx, "PUBLISH", &format!("{other:?}")),
            Err(RedisError::Server(e)) => self.unexpected(cx, "PUBLISH", &e),
            Err(_) => {}
        }
        if !self.held.is_empty() && self.client.in_flight() <= RESUME_IN_FLIGHT {
            self.resume_held(cx, server);
        }
    }

    /// Lets the senders held back read again (those nothing else holds back).
    fn resume_held(&mut self, cx: &mut Context<'_>, server: &mut Server) {
        for (key, conn) in std::mem::take(&mut self.held) {
            if server.member_conn(key) == Some(conn) && self.lets_read(key) {
                server.resume_if_free(cx, key);
            }
        }
    }

    /// Claims (or renews) `nicks`; each found taken elsewhere is dealt with by
    /// [`lost_nick`](Self::lost_nick). `then` runs after, if the answer came.
    fn claim_all(
        &mut self,
        cx: &mut Context<'_>,
        nicks: Vec<String>,
        then: impl FnOnce(&mut Federation, &mut Context<'_>, &mut Server) + 'static,
    ) {
        let keys: Vec<String> = nicks
            .iter()
            .map(|n| format!("{}{n}", self.nick_key))
            .collect();
        let args = eval_args(CLAIM, &keys, &[&self.node, &lease_ms()]);
        let weak = self.server.clone();
        let sent = self.client.command(cx, &args, move |cx, reply| {
            with(&weak, |s, f| {
                if f.claims_answered(cx, s, &nicks, reply) {
                    then(f, cx, s);
                }
            })
        });
        if let Err(e) = sent {
            log::debug!("federation: nicks not claimed: {e}");
        }
    }

    /// True if the answer came and was the script's.
    fn claims_answered(
        &mut self,
        cx: &mut Context<'_>,
        server: &mut Server,
        nicks: &[String],
        reply: Result<Value, RedisError>,
    ) -> bool {
        let results = match reply {
            Ok(value) => match claim_results(&value, nicks.len()) {
                Some(results) => results,
                None => {
                    self.unexpected(cx, "a claim", &format!("{value:?}"));
                    return false;
                }
            },
            Err(RedisError::Server(e)) => {
                self.unexpected(cx, "a claim", &e);
                return false;
            }
            Err(_) => return false,
        };
        let mut renamed = Vec::new();
        for (nick, granted) in nicks.iter().zip(results) {
            if !granted {
                renamed.extend(self.lost_nick(cx, server, nick));
            }
        }
        if !renamed.is_empty() {
            // The fresh guest nicks not from the pool are not ours yet.
            self.claim_all(cx, renamed, |_, _, _| {});
        }
        true
    }

    /// `nick`, this server's, is another's in Redis: out of the pool, or its member
    /// gets a fresh guest nick (returned, to be claimed).
    fn lost_nick(
        &mut self,
        cx: &mut Context<'_>,
        server: &mut Server,
        nick: &str,
    ) -> Option<String> {
        if let Some(n) = guest_number(nick) {
            if self.pool.remove(&n) {
                return None;
            }
        }
        let key = server.member_named(nick)?;
        log::info!("federation: nick {nick} is taken on another server");
        let fresh = self.guest_nick(server);
        let text = format!("nick {nick} is taken on another server");
        server.notice(cx, key, text.as_bytes());
        let (old, room) = server.rename_now(cx, key, &fresh);
        self.publish(
            cx,
            None,
            &Event::Renamed {
                old: &old,
                new: &fresh,
                room: &room,
            },
        );
        Some(fresh)
    }

    /// Releases `nick` if its key is still this node's; later if the command
    /// connection is down.
    fn release(&mut self, cx: &mut Context<'_>, nick: &str) {
        if !self.client_up {
            self.releases.push(nick.to_owned());
            return;
        }
        self.release_all(cx, vec![nick.to_owned()]);
    }

    fn release_all(&mut self, cx: &mut Context<'_>, nicks: Vec<String>) {
        if nicks.is_empty() {
            return;
        }
        let keys: Vec<String> = nicks
            .iter()
            .map(|n| format!("{}{n}", self.nick_key))
            .collect();
        let args = eval_args(RELEASE, &keys, &[&self.node]);
        let weak = self.server.clone();
        let sent = self
            .client
            .command(cx, &args, move |cx, reply| match reply {
                Ok(Value::Integer(_)) | Err(RedisError::ConnectionLost | RedisError::Timeout) => {}
                Ok(other) => with(&weak, |_, f| {
                    f.unexpected(cx, "a release", &format!("{other:?}"))
                }),
                Err(e) => with(&weak, |_, f| f.unexpected(cx, "a release", &e.to_string())),
            });
        if sent.is_err() {
            self.releases.extend(nicks);
        }
    }

    /// Reserves another block of guest numbers if the pool is low.
    fn top_up(&mut self, cx: &mut Context<'_>, last_guest: u64) {
        if !self.client_up || self.reserving || self.pool.len() >= GUEST_LOW {
            return;
        }
        let block = GUEST_BLOCK.to_string();
        let floor = last_guest.to_string();
        let args = eval_args(
            RESERVE,
            std::slice::from_ref(&self.guest_key),
            &[&block, &floor, &self.nick_key, &self.node, &lease_ms()],
        );
        let weak = self.server.clone();
        let sent = self.client.command(cx, &args, move |cx, reply| {
            with(&weak, |_, f| f.reserved(cx, reply))
        });
        self.reserving = sent.is_ok();
    }

    fn reserved(&mut self, cx: &mut Context<'_>, reply: Result<Value, RedisError>) {
        self.reserving = false;
        match reply {
            Ok(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::Integer(n) if n > 0 => {
                            self.pool.insert(n as u64);
                        }
                        other => {
                            return self.unexpected(cx, "a reservation", &format!("{other:?}"))
                        }
                    }
                }
            }
            Ok(other) => self.unexpected(cx, "a reservation", &format!("{other:?}")),
            Err(RedisError::Server(e)) => self.unexpected(cx, "a reservation", &e),
            Err(_) => {}
        }
    }

    /// An answer that is not what the command returns: logged, and the link
    /// restarted.
    fn unexpected(&mut self, cx: &mut Context<'_>, what: &str, got: &str) {
        log::warn!(
            "federation: unexpected answer to {what} from redis: {got}; restarting the link"
        );
        self.restart(cx);
    }

    /// Aborts both connections; they dial again with backoff.
    fn restart(&mut self, cx: &mut Context<'_>) {
        for id in [
            self.client.service().conn_id(),
            self.sub.service().conn_id(),
        ]
        .into_iter()
        .flatten()
        {
            cx.conn(id).abort_connection();
        }
    }

    // ----- the link -----

    fn client_event(&mut self, cx: &mut Context<'_>, server: &mut Server, event: &LinkEvent) {
        match event {
            LinkEvent::Connected => {
                log::info!("federation: connected to redis");
                self.client_up = true;
                schedule_tick(cx, self.server.clone());
                self.join(cx, server);
            }
            LinkEvent::Lost(why) => {
                if self.client_up {
                    log::warn!("federation: lost redis ({why})");
                }
                self.client_up = false;
                self.reserving = false;
                self.down(cx, server);
            }
            _ => {}
        }
    }

    fn sub_event(&mut self, cx: &mut Context<'_>, server: &mut Server, event: &LinkEvent) {
        match event {
            LinkEvent::Subscribed(channel) if *channel == self.channel.as_bytes() => {
                self.subscribed = true;
                self.join(cx, server);
            }
            LinkEvent::Lost(why) => {
                if self.subscribed {
                    log::warn!("federation: lost the redis subscription ({why})");
                }
                self.subscribed = false;
                self.down(cx, server);
            }
            _ => {}
        }
    }

    /// Both connections are up: claims every nick again (the keys may have lapsed,
    /// or Redis may have restarted empty), then the link is up.
    fn join(&mut self, cx: &mut Context<'_>, server: &mut Server) {
        if !(self.client_up && self.subscribed) || self.link != Link::Down {
            return;
        }
        self.link = Link::Joining;
        let releases: Vec<String> = std::mem::take(&mut self.releases)
            .into_iter()
            .filter(|n| !server.has_nick(n))
            .collect();
        self.release_all(cx, releases);
        // Answered before the claims: the pool is full once the link is up.
        self.top_up(cx, server.last_guest_number());
        self.unclaimed.clear();
        let mut nicks = server.nicks();
        nicks.extend(self.pool.iter().map(|n| format!("guest{n}")));
        let epoch = self.epoch;
        self.claim_all(cx, nicks, move |f, cx, s| f.up(cx, s, epoch));
    }

    fn up(&mut self, cx: &mut Context<'_>, server: &mut Server, epoch: u64) {
        if epoch != self.epoch || self.link != Link::Joining {
            return;
        }
        self.link = Link::Up;
        self.last_echo = cx.now();
        log::info!("federation: up");
        let roster = server.roster();
        let entries: Vec<Entry<'_>> = roster
            .iter()
            .map(|(n, r)| (n.as_str(), r.as_str()))
            .collect();
        self.publish(cx, None, &Event::Sync(entries));
        if std::mem::take(&mut self.told_lost) {
            server.notice_all(cx, b"federation restored");
        }
        self.top_up(cx, server.last_guest_number());
    }

    /// A connection is gone: the link is down until both are back.
    fn down(&mut self, cx: &mut Context<'_>, server: &mut Server) {
        if self.link == Link::Down {
            return;
        }
        let was_up = self.link == Link::Up;
        self.link = Link::Down;
        self.epoch += 1;
        if was_up {
            server.notice_all(cx, b"federation lost");
            self.told_lost = true;
        }
        self.peers.clear();
        self.remote.clear();
        self.resume_held(cx, server);
    }

    /// Every [`HEARTBEAT`], while the command connection is up.
    fn tick(&mut self, cx: &mut Context<'_>, server: &mut Server) {
        self.ticks += 1;
        if self.ticks % REFRESH_TICKS == 0 && self.link != Link::Joining {
            let mut nicks = server.nicks();
            nicks.extend(self.pool.iter().map(|n| format!("guest{n}")));
            if !nicks.is_empty() {
                self.claim_all(cx, nicks, |_, _, _| {});
            }
        }
        if self.link != Link::Up {
            return;
        }
        self.publish(cx, None, &Event::Heartbeat);
        let now = cx.now();
        let dead: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.last_seen) > PEER_TIMEOUT)
            .map(|(node, _)| node.clone())
            .collect();
        for node in dead {
            log::warn!("federation: node {node} is silent; its members are gone");
            if let Some(peer) = self.peers.remove(&node) {
                for (nick, room) in peer.members {
                    self.forget(&node, &nick);
                    server.deliver_room(
                        cx,
                        &room,
                        &[b"* ", nick.as_bytes(), b" disconnected"],
                        None,
                    );
                }
            }
        }
        if now.duration_since(self.last_echo) > ECHO_TIMEOUT {
            log::warn!(
                "federation: our heartbeat has not come back through redis; restarting the link"
            );
            self.restart(cx);
        }
    }

    // ----- events from the others -----

    fn message(&mut self, cx: &mut Context<'_>, server: &mut Server, payload: &[u8]) {
        let (node, event) = match decode(payload) {
            Ok(decoded) => decoded,
            Err(e) => {
                log::warn!(
                    "federation: a bad event ({e:?}): {:?}",
                    String::from_utf8_lossy(&payload[..payload.len().min(80)])
                );
                return;
            }
        };
        if node == self.node {
            self.last_echo = cx.now();
            return;
        }
        if self.link == Link::Down {
            return;
        }
        let now = cx.now();
        self.peers
            .entry(node.to_owned())
            .or_insert_with(|| Peer {
                last_seen: now,
                members: HashMap::new(),
            })
            .last_seen = now;
        match event {
            Event::Heartbeat => {}
            Event::Sync(roster) => {
                self.replace_roster(node, &roster);
                if self.link == Link::Up {
                    let ours = server.roster();
                    let entries: Vec<Entry<'_>> =
                        ours.iter().map(|(n, r)| (n.as_str(), r.as_str())).collect();
                    self.publish(cx, None, &Event::Roster(entries));
                }
            }
            Event::Roster(roster) => self.replace_roster(node, &roster),
            Event::Joined { nick, room } => {
                self.place(node, nick, room);
                let line: [&[u8]; 4] = [b"* ", nick.as_bytes(), b" joined ", room.as_bytes()];
                server.deliver_room(cx, room, &line, None);
            }
            Event::Left { nick, room } => {
                self.forget(node, nick);
                let line: [&[u8]; 4] = [b"* ", nick.as_bytes(), b" left ", room.as_bytes()];
                server.deliver_room(cx, room, &line, None);
            }
            Event::Gone { nick, room } => {
                self.forget(node, nick);
                let line: [&[u8]; 3] = [b"* ", nick.as_bytes(), b" disconnected"];
                server.deliver_room(cx, room, &line, None);
            }
            Event::Renamed { old, new, room } => {
                self.forget(node, old);
                self.place(node, new, room);
                let line: [&[u8]; 4] = [b"* ", old.as_bytes(), b" is now ", new.as_bytes()];
                server.deliver_room(cx, room, &line, None);
            }
            Event::Said { nick, room, text } => {
                let prefix: [&[u8]; 3] = [b"<", nick.as_bytes(), b"> "];
                server.deliver_room(cx, room, &prefix, Some(text));
            }
            Event::Me { nick, room, text } => {
                let prefix: [&[u8]; 3] = [b"* ", nick.as_bytes(), b" "];
                server.deliver_room(cx, room, &prefix, Some(text));
            }
            Event::Private { from, to, text } => {
                let prefix: [&[u8]; 3] = [b"*private* <", from.as_bytes(), b"> "];
                server.deliver_private(cx, to, &prefix, text);
            }
        }
    }

    /// Member `nick` of `node` is in `room`.
    fn place(&mut self, node: &str, nick: &str, room: &str) {
        if let Some(peer) = self.peers.get_mut(node) {
            peer.members.insert(nick.to_owned(), room.to_owned());
        }
        self.remote.insert(nick.to_owned(), node.to_owned());
    }

    /// Member `nick` of `node` is gone (or renamed).
    fn forget(&mut self, node: &str, nick: &str) {
        if let Some(peer) = self.peers.get_mut(node) {
            peer.members.remove(nick);
        }
        if self.remote.get(nick).is_some_and(|n| n == node) {
            self.remote.remove(nick);
        }
    }

    fn replace_roster(&mut self, node: &str, roster: &[Entry<'_>]) {
        let old = match self.peers.get_mut(node) {
            Some(peer) => std::mem::take(&mut peer.members),
            None => HashMap::new(),
        };
        for nick in old.keys() {
            self.forget(node, nick);
        }
        for &(nick, room) in roster {
            self.place(node, nick, room);
        }
    }
}

/// N of `guestN`, written as the server writes it (`guest007` is not guest 7).
fn guest_number(nick: &str) -> Option<u64> {
    let n: u64 = nick.strip_prefix("guest")?.parse().ok()?;
    (format!("guest{n}") == nick).then_some(n)
}
