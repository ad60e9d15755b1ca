//! The Redis client (`twistor::redis`).
//!
//! Under the testing kit, the test playing the server: replies matched in order, a
//! canned reply stream of every type cut at every byte boundary, the timeout, a
//! subscriber's messages (RESP2 arrays and RESP3 pushes) and its resubscription after
//! a reconnect.
//!
//! Against a real `redis-server`, started by each test on a free loopback port (a test
//! prints `skipped: redis-server not found` and passes when there is none): 10,000
//! pipelined SET/GET pairs, every reply type (`DEBUG PROTOCOL`, in RESP2 and RESP3)
//! and errors, each compared with what the `redis` crate gets for the same commands;
//! pub/sub with the `redis` crate publishing; a server killed and restarted (the
//! client reconnects and resubscribes); the command timeout with `CLIENT PAUSE`.

mod common;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::redis::RedisServer;
use common::run_until;
use twistor::backoff::{Backoff, Jitter};
use twistor::client::{ClientServiceBuilder, State};
use twistor::framing::resp::Value;
use twistor::redis::{Event, Message, RedisClient, RedisError, Subscriber};
use twistor::testing::Harness;
use twistor::{ConnId, Context, Protocol, Reactor};

type Replies = Rc<RefCell<Vec<Result<Value, RedisError>>>>;

/// A callback that records the reply.
fn record(replies: &Replies) -> impl FnOnce(&mut Context<'_>, Result<Value, RedisError>) + 'static {
    let replies = replies.clone();
    move |_, reply| replies.borrow_mut().push(reply)
}

fn bulk(b: &str) -> Value {
    Value::Bulk(b.as_bytes().to_vec())
}

// ----- under the kit -----

/// The harness's own connection; the client's are the dialled ones.
struct Idle;
impl Protocol for Idle {
    fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
}

fn target() -> SocketAddr {
    "127.0.0.1:6379".parse().unwrap()
}

/// A fast, exact backoff: retries after 1 s, always.
fn backoff() -> ClientServiceBuilder {
    ClientServiceBuilder::new()
        .backoff(Backoff::constant(Duration::from_secs(1)).jitter(Jitter::None))
}

/// A client on a kit, connected; returns its connection.
fn kit_client(
    timeout: Option<Duration>,
) -> (Harness<Idle>, RedisClient, ConnId, Rc<RefCell<Vec<Event>>>) {
    let mut h = Harness::new(Idle);
    let events = Rc::new(RefCell::new(Vec::new()));
    let seen = events.clone();
    let client = RedisClient::builder()
        .service(backoff())
        .timeout(timeout)
        .on_event(move |_, e| seen.borrow_mut().push(e.clone()))
        .connect(&mut h, target());
    let State::Connecting(id) = client.service().state() else {
        panic!("not connecting")
    };
    assert!(matches!(
        client.command(&mut h, &["PING"], |_, _| {}),
        Err(RedisError::NotConnected)
    ));
    h.complete_connect(id);
    assert!(client.is_connected());
    assert_eq!(*events.borrow(), [Event::Connected]);
    (h, client, id, events)
}

/// Replies of every type, RESP2 and RESP3, with a push and an attribute among them.
const CANNED: &[u8] = b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n$1\r\na\r\n*-1\r\n*0\r\n\
-ERR wrong\r\n_\r\n#t\r\n,2.5\r\n(123456789012345678901234567890\r\n!4\r\nOOPS\r\n\
=7\r\ntxt:abc\r\n%1\r\n+k\r\n:1\r\n~1\r\n+m\r\n>2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n\
|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n";

/// What the commands get from `CANNED` (the push is not a reply).
fn canned_replies() -> Vec<Result<Value, RedisError>> {
    vec![
        Ok(Value::Simple(b"OK".to_vec())),
        Ok(Value::Integer(42)),
        Ok(bulk("hello")),
        Ok(Value::Nil),
        Ok(Value::Array(vec![bulk("a"), Value::NilArray])),
        Ok(Value::Array(vec![])),
        Err(RedisError::Server("ERR wrong".into())),
        Ok(Value::Null),
        Ok(Value::Boolean(true)),
        Ok(Value::Double(2.5)),
        Ok(Value::BigNumber(b"123456789012345678901234567890".to_vec())),
        Err(RedisError::Server("OOPS".into())),
        Ok(Value::Verbatim {
            format: *b"txt",
            text: b"abc".to_vec(),
        }),
        Ok(Value::Map(vec![(
            Value::Simple(b"k".to_vec()),
            Value::Integer(1),
        )])),
        Ok(Value::Set(vec![Value::Simple(b"m".to_vec())])),
        Ok(Value::Attribute {
            attributes: vec![(Value::Simple(b"ttl".to_vec()), Value::Integer(3))],
            value: Box::new(bulk("v")),
        }),
    ]
}

#[test]
fn kit_replies_match_commands_in_order_at_every_cut() {
    let expected = canned_replies();
    for cut in 0..=CANNED.len() {
        let pushes = Rc::new(RefCell::new(Vec::new()));
        let seen = pushes.clone();
        let mut h = Harness::new(Idle);
        let client = RedisClient::builder()
            .on_push(move |_, v| seen.borrow_mut().push(v))
            .connect(&mut h, target());
        let State::Connecting(id) = client.service().state() else {
            panic!()
        };
        h.complete_connect(id);
        let replies: Replies = Rc::default();
        for i in 0..expected.len() {
            client
                .command(&mut h, &["ECHO", &i.to_string()], record(&replies))
                .unwrap();
        }
        assert_eq!(client.in_flight(), expected.len());
        let written = h.take_written_of(id);
        assert!(
            written.starts_with(b"*2\r\n$4\r\nECHO\r\n$1\r\n0\r\n*2\r\n$4\r\nECHO\r\n$1\r\n1\r\n")
        );
        h.feed_of(id, &CANNED[..cut]);
        h.feed_of(id, &CANNED[cut..]);
        assert_eq!(*replies.borrow(), expected, "cut at {cut}");
        assert_eq!(
            *pushes.borrow(),
            [Value::Push(vec![
                Value::Simple(b"invalidate".to_vec()),
                Value::Array(vec![bulk("k")])
            ])]
        );
        assert_eq!(client.in_flight(), 0);
        assert!(client.is_connected());
    }
}

#[test]
fn kit_a_reply_from_a_callback_can_send_the_next_command() {
    let (mut h, client, id, _) = kit_client(None);
    let replies: Replies = Rc::default();
    let again = client.clone();
    let r = replies.clone();
    client
        .command(&mut h, &["INCR", "n"], move |cx, reply| {
            r.borrow_mut().push(reply);
            again.command(cx, &["GET", "n"], record(&r)).unwrap();
        })
        .unwrap();
    assert_eq!(h.take_written_of(id), b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n");
    h.feed_of(id, b":1\r\n");
    assert_eq!(h.take_written_of(id), b"*2\r\n$3\r\nGET\r\n$1\r\nn\r\n");
    h.feed_of(id, b"$1\r\n1\r\n");
    assert_eq!(*replies.borrow(), [Ok(Value::Integer(1)), Ok(bulk("1"))]);
}

#[test]
fn kit_a_late_reply_times_out_and_the_client_reconnects() {
    let (mut h, client, id, events) = kit_client(Some(Duration::from_secs(5)));
    let replies: Replies = Rc::default();
    h.advance(Duration::from_secs(3));
    client
        .command(&mut h, &["GET", "a"], record(&replies))
        .unwrap();
    h.advance(Duration::from_secs(1));
    client
        .command(&mut h, &["GET", "b"], record(&replies))
        .unwrap();
    // The first reply comes in time; the second is late.
    h.advance(Duration::from_secs(1));
    h.feed_of(id, b"$-1\r\n");
    h.advance(Duration::from_millis(3999));
    assert!(client.is_connected());
    assert_eq!(replies.borrow().len(), 1);
    h.advance(Duration::from_millis(1));
    assert_eq!(
        *replies.borrow(),
        [Ok(Value::Nil), Err(RedisError::Timeout)]
    );
    assert!(!client.is_connected());
    assert!(!h.is_open_of(id));
    assert!(matches!(events.borrow()[1], Event::Lost(_)));
    assert!(matches!(
        client.command(&mut h, &["PING"], |_, _| {}),
        Err(RedisError::NotConnected)
    ));
    // The service dials again after its backoff.
    h.advance(Duration::from_secs(1));
    let State::Connecting(next) = client.service().state() else {
        panic!("not reconnecting: {:?}", client.service().state())
    };
    h.complete_connect(next);
    assert!(client.is_connected());
    assert_eq!(events.borrow().len(), 3);
}

#[test]
fn kit_a_lost_connection_fails_the_commands_waiting() {
    let (mut h, client, id, _) = kit_client(None);
    let replies: Replies = Rc::default();
    for _ in 0..3 {
        client.command(&mut h, &["PING"], record(&replies)).unwrap();
    }
    h.feed_of(id, b"+PONG\r\n");
    h.disconnect_of(
        id,
        twistor::Reason::Lost(std::io::ErrorKind::ConnectionReset.into()),
    );
    assert_eq!(
        *replies.borrow(),
        [
            Ok(Value::Simple(b"PONG".to_vec())),
            Err(RedisError::ConnectionLost),
            Err(RedisError::ConnectionLost)
        ]
    );
}

#[test]
fn kit_a_reply_nobody_asked_for_closes_the_connection() {
    let (mut h, client, id, _) = kit_client(None);
    h.feed_of(id, b"+OK\r\n");
    assert!(!client.is_connected());
    assert!(!h.is_open_of(id));
}

#[test]
fn kit_commands_fail_fast_past_the_in_flight_bound() {
    let mut h = Harness::new(Idle);
    let client = RedisClient::builder()
        .max_in_flight(2)
        .connect(&mut h, target());
    let State::Connecting(id) = client.service().state() else {
        panic!()
    };
    h.complete_connect(id);
    client.command(&mut h, &["PING"], |_, _| {}).unwrap();
    client.command(&mut h, &["PING"], |_, _| {}).unwrap();
    assert_eq!(
        client.command(&mut h, &["PING"], |_, _| panic!("refused: never called")),
        Err(RedisError::Busy)
    );
    h.feed_of(id, b"+PONG\r\n");
    client.command(&mut h, &["PING"], |_, _| {}).unwrap();
}

#[test]
fn kit_commands_fail_fast_while_output_backs_up() {
    let mut h = Harness::new(Idle);
    let client = RedisClient::builder()
        .max_buffered(100)
        .connect(&mut h, target());
    let State::Connecting(id) = client.service().state() else {
        panic!()
    };
    h.complete_connect(id);
    h.set_peer_window_of(id, Some(0));
    let big = "x".repeat(200);
    client
        .command(&mut h, &["SET", "k", &big], |_, _| {})
        .unwrap();
    assert!(h.buffered_of(id) > 100);
    assert_eq!(
        client.command(&mut h, &["GET", "k"], |_, _| {}),
        Err(RedisError::Busy)
    );
    h.set_peer_window_of(id, None);
    h.peer_reads_of(id, usize::MAX);
    client.command(&mut h, &["GET", "k"], |_, _| {}).unwrap();
}

type Messages = Rc<RefCell<Vec<Message>>>;

fn collect(messages: &Messages) -> impl FnMut(&mut Context<'_>, &Message) + 'static {
    let messages = messages.clone();
    move |_, m| messages.borrow_mut().push(m.clone())
}

#[test]
fn kit_subscriber_gets_messages_and_resubscribes_after_a_reconnect() {
    let mut h = Harness::new(Idle);
    let sub = Subscriber::builder()
        .service(backoff())
        .subscriber(&mut h, target());
    let messages: Messages = Rc::default();
    // Registered before the connection: sent once it is made.
    sub.subscribe(&mut h, &["news", "sport"], collect(&messages));
    let State::Connecting(id) = sub.service().state() else {
        panic!()
    };
    h.complete_connect(id);
    assert_eq!(
        h.take_written_of(id),
        b"*3\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n$5\r\nsport\r\n"
    );
    sub.psubscribe(&mut h, &["n*"], collect(&messages));
    assert_eq!(
        h.take_written_of(id),
        b"*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\nn*\r\n"
    );
    h.feed_of(
        id,
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n\
          *4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n\
          >3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n$4\r\ngoal\r\n\
          *3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$1\r\nx\r\n",
    );
    let news = |pattern: Option<&str>, channel: &str, payload: &str| Message {
        channel: channel.as_bytes().to_vec(),
        pattern: pattern.map(|p| p.as_bytes().to_vec()),
        payload: payload.as_bytes().to_vec(),
    };
    assert_eq!(
        *messages.borrow(),
        [
            news(None, "news", "hi"),
            news(Some("n*"), "news", "hi"),
            news(None, "sport", "goal")
        ]
    );
    sub.unsubscribe(&mut h, &["sport", "never"]);
    assert_eq!(
        h.take_written_of(id),
        b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$5\r\nsport\r\n"
    );
    // Lost; the next connection subscribes to what is current, in full.
    h.disconnect_of(
        id,
        twistor::Reason::Lost(std::io::ErrorKind::ConnectionReset.into()),
    );
    assert!(!sub.is_connected());
    h.advance(Duration::from_secs(1));
    let State::Connecting(next) = sub.service().state() else {
        panic!()
    };
    h.complete_connect(next);
    assert_eq!(
        h.take_written_of(next),
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\nn*\r\n"
    );
    assert_eq!(sub.channels(), [b"news".to_vec()]);
    assert_eq!(sub.patterns(), [b"n*".to_vec()]);
}

#[test]
fn kit_subscriber_reports_each_confirmed_subscription() {
    let mut h = Harness::new(Idle);
    let events = Rc::new(RefCell::new(Vec::new()));
    let seen = events.clone();
    let sub = Subscriber::builder()
        .service(backoff())
        .on_event(move |_, e| seen.borrow_mut().push(e.clone()))
        .subscriber(&mut h, target());
    let messages: Messages = Rc::default();
    sub.subscribe(&mut h, &["news"], collect(&messages));
    sub.psubscribe(&mut h, &["n*"], collect(&messages));
    let State::Connecting(id) = sub.service().state() else {
        panic!()
    };
    h.complete_connect(id);
    assert_eq!(*events.borrow(), [Event::Connected]);
    // Confirmations come one by one (here cut mid-reply), each its own event; an
    // unsubscribe's confirmation is none.
    h.feed_of(id, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nne");
    assert_eq!(*events.borrow(), [Event::Connected]);
    h.feed_of(
        id,
        b"ws\r\n:1\r\n>3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n\
          *3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    );
    assert_eq!(
        *events.borrow(),
        [
            Event::Connected,
            Event::Subscribed(b"news".to_vec()),
            Event::Subscribed(b"n*".to_vec())
        ]
    );
    assert!(messages.borrow().is_empty());
}

// ----- against redis-server -----

/// Whether our value is the `redis` crate's.
fn same(ours: &Value, theirs: &redis::Value) -> bool {
    use redis::Value as R;
    let all = |a: &[Value], b: &[R]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y));
    let pairs = |a: &[(Value, Value)], b: &[(R, R)]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((k, v), (k2, v2))| same(k, k2) && same(v, v2))
    };
    match (ours, theirs) {
        (o, R::Nil) => o.is_nil(),
        (Value::Integer(a), R::Int(b)) => a == b,
        (Value::Bulk(a), R::BulkString(b)) => a == b,
        (Value::Simple(a), R::SimpleString(b)) => a == b.as_bytes(),
        (Value::Simple(a), R::Okay) => a == b"OK",
        (Value::Array(a), R::Array(b)) | (Value::Set(a), R::Set(b)) => all(a, b),
        (Value::Map(a), R::Map(b)) => pairs(a, b),
        (Value::Double(a), R::Double(b)) => a == b,
        (Value::Boolean(a), R::Boolean(b)) => a == b,
        (Value::BigNumber(a), R::BigNumber(b)) => a == b,
        (Value::Verbatim { format, text }, R::VerbatimString { format: f, text: t }) => {
            text == t.as_bytes() && format == f.to_string().as_bytes()
        }
        (
            Value::Attribute { attributes, value },
            R::Attribute {
                data,
                attributes: a,
            },
        ) => pairs(attributes, a) && same(value, data),
        (Value::Push(items), R::Push { kind, data }) => {
            items.first().and_then(Value::as_bytes) == Some(kind.to_string().as_bytes())
                && all(&items[1..], data)
        }
        _ => false,
    }
}

/// Whether our reply is the `redis` crate's.
fn same_reply(ours: &Result<Value, RedisError>, theirs: &redis::RedisResult<redis::Value>) -> bool {
    match (ours, theirs) {
        (Ok(o), Ok(t)) => same(o, t),
        (Err(RedisError::Server(m)), Err(e)) => m.split(' ').next() == e.code(),
        _ => false,
    }
}

/// A reactor with a client connected to `server`.
fn connected(
    server: &RedisServer,
    builder: twistor::redis::RedisClientBuilder,
) -> (Reactor, RedisClient) {
    let mut r = Reactor::new().unwrap();
    let client = builder.connect(&mut r, server.addr());
    run_until(&mut r, |_| client.is_connected());
    (r, client)
}

/// Runs `commands` through our client (connected to `server`) and returns the replies.
fn ours(
    r: &mut Reactor,
    client: &RedisClient,
    commands: &[Vec<&str>],
) -> Vec<Result<Value, RedisError>> {
    let replies: Replies = Rc::default();
    for args in commands {
        client.command(r, args, record(&replies)).unwrap();
    }
    run_until(r, |_| replies.borrow().len() == commands.len());
    replies.take()
}

fn theirs(
    con: &mut redis::Connection,
    commands: &[Vec<&str>],
) -> Vec<redis::RedisResult<redis::Value>> {
    commands
        .iter()
        .map(|args| {
            redis::cmd(args[0])
                .arg(&args[1..])
                .query::<redis::Value>(con)
        })
        .collect()
}

#[test]
fn pipelining_10000_commands_matches_the_redis_crate() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (mut r, client) = connected(&server, RedisClient::builder().max_buffered(8 << 20));
    let n = 10_000;
    let commands: Vec<[String; 3]> = (0..n)
        .map(|i| match i % 4 {
            0 => ["SET".into(), format!("k{}", i % 977), format!("v{i}")],
            1 => ["GET".into(), format!("k{}", (i * 7) % 977), String::new()],
            2 => [
                "INCRBY".into(),
                format!("n{}", i % 13),
                format!("{}", i % 5),
            ],
            _ => ["APPEND".into(), format!("s{}", i % 31), format!("{i},")],
        })
        .collect();
    let args =
        |c: &[String; 3]| -> Vec<String> { c.iter().filter(|a| !a.is_empty()).cloned().collect() };
    let replies: Replies = Rc::default();
    for c in &commands {
        client.command(&mut r, &args(c), record(&replies)).unwrap();
    }
    assert!(client.in_flight() > 0);
    run_until(&mut r, |_| replies.borrow().len() == n);
    // The same commands through the `redis` crate, on a server in the same state.
    let mut con = server.redis();
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let mut pipe = redis::pipe();
    for c in &commands {
        let a = args(c);
        pipe.cmd(&a[0]).arg(&a[1..]);
    }
    let expected: Vec<redis::Value> = pipe.query(&mut con).unwrap();
    let replies = replies.take();
    assert_eq!(replies.len(), expected.len());
    for (i, (o, t)) in replies.iter().zip(&expected).enumerate() {
        assert!(
            o.as_ref().is_ok_and(|o| same(o, t)),
            "reply {i}: {o:?} vs {t:?}"
        );
    }
    assert_eq!(client.in_flight(), 0);
}

/// The commands of the type test: every type `DEBUG PROTOCOL` makes, and errors.
fn type_commands() -> Vec<Vec<&'static str>> {
    let mut commands: Vec<Vec<&str>> = [
        "string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib",
        "verbatim", "true", "false", "push",
    ]
    .iter()
    .map(|t| vec!["DEBUG", "PROTOCOL", t])
    .collect();
    commands.extend([
        vec!["PING"],
        vec!["SET", "s", "hello"],
        vec!["GET", "s"],
        vec!["GET", "missing"],
        vec!["INCR", "n"],
        vec!["RPUSH", "l", "a", "b"],
        vec!["LRANGE", "l", "0", "-1"],
        vec!["LRANGE", "none", "0", "-1"],
        vec!["HSET", "h", "f", "v"],
        vec!["HGETALL", "h"],
        vec!["ZADD", "z", "1.5", "m"],
        vec!["ZSCORE", "z", "m"],
        vec!["LPUSH", "s", "x"],
        vec!["NOSUCHCOMMAND"],
        vec!["EVAL", "return {err='MY own error'}", "0"],
        vec!["BLPOP", "none", "0.01"],
    ]);
    commands
}

fn every_type_against_the_redis_crate(resp3: bool) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let pushes = Rc::new(RefCell::new(Vec::new()));
    let seen = pushes.clone();
    let builder = RedisClient::builder().on_push(move |_, v| seen.borrow_mut().push(v));
    let (mut r, client) = connected(&server, builder);
    if resp3 {
        let hello = ours(&mut r, &client, &[vec!["HELLO", "3"]]);
        assert!(matches!(&hello[0], Ok(Value::Map(_))), "{hello:?}");
    }
    let commands = type_commands();
    let got = ours(&mut r, &client, &commands);
    let mut con = if resp3 {
        server.redis3()
    } else {
        server.redis()
    };
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    // Not `DEBUG PROTOCOL push` (index 12): the `redis` crate's blocking connection
    // may take its push for the reply. Ours is checked below.
    let mut reference = commands.clone();
    reference.remove(12);
    let expected = theirs(&mut con, &reference);
    let mut compared = got.clone();
    let _ = compared.remove(12);
    assert_eq!(compared.len(), expected.len());
    for ((o, t), c) in compared.iter().zip(&expected).zip(&reference) {
        assert!(same_reply(o, t), "{c:?}: {o:?} vs {t:?}");
    }
    if resp3 {
        // Each type once, as RESP3 spells it.
        let kinds: Vec<&str> = got[..12]
            .iter()
            .map(|v| match v.as_ref().unwrap() {
                Value::Bulk(_) => "bulk",
                Value::Integer(_) => "integer",
                Value::Double(_) => "double",
                Value::BigNumber(_) => "bignum",
                Value::Null => "null",
                Value::Array(_) => "array",
                Value::Set(_) => "set",
                Value::Map(_) => "map",
                Value::Attribute { .. } => "attrib",
                Value::Verbatim { .. } => "verbatim",
                Value::Boolean(_) => "bool",
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "bulk", "integer", "double", "bignum", "null", "array", "set", "map", "attrib",
                "verbatim", "bool", "bool"
            ]
        );
        // DEBUG PROTOCOL push: a push, then a reply.
        assert_eq!(pushes.borrow().len(), 1);
        assert!(matches!(&pushes.borrow()[0], Value::Push(items) if items.len() == 2));
        assert!(matches!(&got[12], Ok(Value::Bulk(_))), "{:?}", got[12]);
        assert_eq!(got[commands.len() - 1], Ok(Value::Null));
    } else {
        assert!(pushes.borrow().is_empty());
        assert!(
            matches!(&got[12], Err(RedisError::Server(_))),
            "{:?}",
            got[12]
        );
        assert_eq!(got[commands.len() - 1], Ok(Value::NilArray));
    }
    let errors: Vec<&str> = got
        .iter()
        .filter_map(|r| match r {
            Err(RedisError::Server(m)) => m.split(' ').next(),
            _ => None,
        })
        .collect();
    assert!(
        errors.contains(&"WRONGTYPE") && errors.contains(&"MY"),
        "{errors:?}"
    );
}

#[test]
fn every_reply_type_resp2_matches_the_redis_crate() {
    every_type_against_the_redis_crate(false);
}

#[test]
fn every_reply_type_resp3_matches_the_redis_crate() {
    every_type_against_the_redis_crate(true);
}

/// Turns `r` until `channel` has `n` subscribers, as the server counts them.
fn until_subscribed(r: &mut Reactor, con: &mut redis::Connection, channel: &str, n: i64) {
    run_until(r, |_| {
        let counts: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(con)
            .unwrap();
        counts.get(1) == Some(&redis::Value::Int(n))
    });
}

#[test]
fn pubsub_messages_reach_the_callbacks() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut r = Reactor::new().unwrap();
    let sub = Subscriber::connect(&mut r, server.addr());
    let messages: Messages = Rc::default();
    sub.subscribe(&mut r, &["chat"], collect(&messages));
    sub.psubscribe(&mut r, &["room.*"], collect(&messages));
    let mut con = server.redis();
    until_subscribed(&mut r, &mut con, "chat", 1);
    let patterns: i64 = redis::cmd("PUBSUB").arg("NUMPAT").query(&mut con).unwrap();
    assert_eq!(patterns, 1);
    let _: i64 = redis::cmd("PUBLISH")
        .arg("chat")
        .arg("hello")
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("room.1")
        .arg(b"\0bin\r\n")
        .query(&mut con)
        .unwrap();
    run_until(&mut r, |_| messages.borrow().len() == 2);
    assert_eq!(
        *messages.borrow(),
        [
            Message {
                channel: b"chat".to_vec(),
                pattern: None,
                payload: b"hello".to_vec()
            },
            Message {
                channel: b"room.1".to_vec(),
                pattern: Some(b"room.*".to_vec()),
                payload: b"\0bin\r\n".to_vec()
            }
        ]
    );
    sub.unsubscribe(&mut r, &["chat"]);
    until_subscribed(&mut r, &mut con, "chat", 0);
}

#[test]
fn a_restarted_server_gets_the_client_back_and_the_subscriptions_again() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let mut r = Reactor::new().unwrap();
    let events = Rc::new(RefCell::new(Vec::new()));
    let (e1, e2) = (events.clone(), events.clone());
    let fast = ClientServiceBuilder::new()
        .backoff(Backoff::constant(Duration::from_millis(50)).jitter(Jitter::None));
    let client = RedisClient::builder()
        .service(fast.clone())
        .on_event(move |_, e| e1.borrow_mut().push(("client", e.clone())))
        .connect(&mut r, server.addr());
    let sub = Subscriber::builder()
        .service(fast)
        .on_event(move |_, e| e2.borrow_mut().push(("sub", e.clone())))
        .subscriber(&mut r, server.addr());
    let messages: Messages = Rc::default();
    sub.subscribe(&mut r, &["fed"], collect(&messages));
    run_until(&mut r, |_| client.is_connected() && sub.is_connected());
    until_subscribed(&mut r, &mut server.redis(), "fed", 1);

    server.kill();
    run_until(&mut r, |_| !client.is_connected() && !sub.is_connected());
    let lost = |who: &str| {
        events
            .borrow()
            .iter()
            .any(|(w, e)| *w == who && matches!(e, Event::Lost(_)))
    };
    assert!(lost("client") && lost("sub"), "{:?}", events.borrow());
    assert_eq!(
        client.command(&mut r, &["PING"], |_, _| {}),
        Err(RedisError::NotConnected)
    );

    server.spawn();
    run_until(&mut r, |_| client.is_connected() && sub.is_connected());
    let mut con = server.redis();
    until_subscribed(&mut r, &mut con, "fed", 1);
    let _: i64 = redis::cmd("PUBLISH")
        .arg("fed")
        .arg("back")
        .query(&mut con)
        .unwrap();
    run_until(&mut r, |_| !messages.borrow().is_empty());
    assert_eq!(messages.borrow()[0].payload, b"back");
    let pong = ours(&mut r, &client, &[vec!["PING"]]);
    assert_eq!(pong, [Ok(Value::Simple(b"PONG".to_vec()))]);
    let connected = |who: &str| {
        events
            .borrow()
            .iter()
            .filter(|(w, e)| *w == who && *e == Event::Connected)
            .count()
    };
    assert_eq!((connected("client"), connected("sub")), (2, 2));
    let subscribed = events
        .borrow()
        .iter()
        .filter(|(w, e)| *w == "sub" && *e == Event::Subscribed(b"fed".to_vec()))
        .count();
    assert_eq!(subscribed, 2, "confirmed on each connection");
}

#[test]
fn a_paused_server_times_the_command_out() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let fast = ClientServiceBuilder::new()
        .backoff(Backoff::constant(Duration::from_millis(50)).jitter(Jitter::None));
    let (mut r, client) = connected(
        &server,
        RedisClient::builder()
            .service(fast)
            .timeout(Some(Duration::from_millis(300))),
    );
    let mut con = server.redis();
    // Writes wait while the server is paused; CLIENT UNPAUSE is not a write.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg("60000")
        .arg("WRITE")
        .query(&mut con)
        .unwrap();
    let replies: Replies = Rc::default();
    client
        .command(&mut r, &["SET", "k", "v"], record(&replies))
        .unwrap();
    client
        .command(&mut r, &["GET", "k"], record(&replies))
        .unwrap();
    run_until(&mut r, |_| replies.borrow().len() == 2);
    assert_eq!(
        *replies.borrow(),
        [Err(RedisError::Timeout), Err(RedisError::Timeout)]
    );
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut con).unwrap();
    run_until(&mut r, |_| client.is_connected());
    let got = ours(&mut r, &client, &[vec!["SET", "k", "w"], vec!["GET", "k"]]);
    assert_eq!(got, [Ok(Value::Simple(b"OK".to_vec())), Ok(bulk("w"))]);
}
