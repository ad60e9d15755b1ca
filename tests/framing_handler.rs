//! A framed protocol's handler sets timers and pool jobs typed on itself
//! (`cx.call_later(d, |h: &mut MyHandler, cx| ...)`), and they come back to it with its
//! own context: under the testing kit's manual clock and pool, and over a real reactor
//! on loopback, for every framer. Also the line framer's controls as Twisted has them:
//! the delimiter and the limit changed from inside a callback, and what a mode or
//! delimiter change made outside a data callback does to what is buffered.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Once;
use std::time::Duration;

use common::{client, drive, localhost, read_n, read_to_eof};
use twistor::framing::{
    Int16Receiver, Int32Receiver, Int8Receiver, LineContext, LineHandler, LineOnlyContext,
    LineOnlyHandler, LineOnlyReceiver, LineReceiver, NetstringReceiver, StringContext,
    StringHandler,
};
use twistor::testing::Harness;
use twistor::{Addr, Context, Protocol, Reactor, Reason};

const SECOND: Duration = Duration::from_secs(1);

/// `word rest` -> (`word`, `rest`).
fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, b""),
    }
}

/// A delay in milliseconds, as written in a command (0 if absent).
fn millis(arg: &[u8]) -> Duration {
    let text = std::str::from_utf8(arg).unwrap_or("0");
    Duration::from_millis(text.parse().unwrap_or(0))
}

// ----- a LineReceiver's handler -----

/// A line handler whose timers and pool jobs come back to it. Commands:
/// `later MS` (a timer answers `timer`), `job TEXT` (the pool measures TEXT and the
/// answer is `len N`), `inject MS` (a timer hands a line back to the framer), `moves`
/// (one timer moved, one cancelled, with the `Context`'s own verbs), `framer MS` (a
/// timer and a job typed on the `LineReceiver`, the `Context` methods shadowed by the
/// `LineContext` ones), `raw-later MS` (a timer switches to raw mode), `pipes` (the
/// delimiter becomes `|`), `pipes-later MS` (the same from a timer), `limit N` (the
/// longest line becomes N), `wrong` (a timer typed on another handler), `quit`.
/// Anything else is echoed.
#[derive(Default)]
struct Session {
    lines: Vec<Vec<u8>>,
    raw: Vec<Vec<u8>>,
    too_long: Vec<Vec<u8>>,
    timers_fired: usize,
    jobs_done: usize,
}

impl LineHandler for Session {
    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        self.lines.push(line.to_vec());
        let (word, arg) = split_word(line);
        match word {
            b"later" => {
                cx.call_later(millis(arg), |s: &mut Session, cx| {
                    s.timers_fired += 1;
                    cx.send_line(b"timer");
                });
            }
            b"job" => {
                assert!(cx.can_defer_to_thread());
                let text = arg.to_vec();
                let queued = cx.defer_to_thread(
                    move || text.len(),
                    |s: &mut Session, cx, len| {
                        s.jobs_done += 1;
                        let len = len.expect("the job ran");
                        cx.send_line(format!("len {len}").as_bytes());
                    },
                );
                if queued.is_err() {
                    cx.send_line(b"busy");
                }
            }
            b"inject" => {
                cx.call_later(millis(arg), |_: &mut Session, cx| {
                    cx.set_line_mode(b"injected\nmore\n");
                });
            }
            b"moves" => {
                let moved = cx.call_later(SECOND, |_: &mut Session, cx| {
                    cx.send_line(b"moved");
                });
                let cancelled = cx.call_later(SECOND, |_: &mut Session, cx| {
                    cx.send_line(b"cancelled");
                });
                assert!(cx.reset_timer(moved, 2 * SECOND));
                assert!(cx.cancel_timer(cancelled));
            }
            b"framer" => {
                // The old spelling, typed on the framer, is still reachable.
                Context::call_later(cx, millis(arg), |p: &mut LineReceiver<Session>, cx| {
                    p.with_handler(cx, |s, cx| {
                        s.timers_fired += 1;
                        cx.send_line(b"framer timer");
                    });
                });
                let queued = Context::defer_to_thread(
                    cx,
                    || 7,
                    |p: &mut LineReceiver<Session>, cx, seven| {
                        p.with_handler(cx, |s, cx| {
                            s.jobs_done += 1;
                            let seven = seven.expect("the job ran");
                            cx.send_line(format!("framer job {seven}").as_bytes());
                        });
                    },
                );
                assert!(queued.is_ok());
            }
            b"raw-later" => {
                cx.call_later(millis(arg), |_: &mut Session, cx| cx.set_raw_mode());
            }
            b"pipes" => cx.set_delimiter(b"|"),
            b"pipes-later" => {
                cx.call_later(millis(arg), |_: &mut Session, cx| cx.set_delimiter(b"|"));
            }
            b"limit" => {
                let n = std::str::from_utf8(arg).unwrap().parse().unwrap();
                cx.set_max_length(n);
            }
            b"wrong" => {
                cx.call_later(Duration::ZERO, |_: &mut Other, _| {});
            }
            b"quit" => cx.lose_connection(),
            _ => {
                cx.send_line(line);
            }
        }
    }

    fn raw_data_received(&mut self, _: &mut LineContext<'_, '_>, data: &[u8]) {
        self.raw.push(data.to_vec());
    }

    fn line_length_exceeded(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        self.too_long.push(line.to_vec());
        cx.send_line(b"too long");
    }
}

/// A handler of another type, for a timer that names the wrong one.
struct Other;

impl LineHandler for Other {
    fn line_received(&mut self, _: &mut LineContext<'_, '_>, _: &[u8]) {}
}

fn session() -> LineReceiver<Session> {
    LineReceiver::new(Session::default()).delimiter(b"\n")
}

fn connected(protocol: LineReceiver<Session>) -> Harness<LineReceiver<Session>> {
    let mut h = Harness::new(protocol);
    h.connect();
    h
}

fn handler(h: &Harness<LineReceiver<Session>>) -> &Session {
    h.protocol().handler()
}

#[test]
fn a_line_handler_timer_typed_on_itself_gets_the_handler_and_its_context() {
    let mut h = connected(session());
    h.feed(b"later 1000\n");
    assert_eq!(h.take_written(), b"");
    h.advance(SECOND - Duration::from_millis(1));
    assert_eq!(handler(&h).timers_fired, 0);
    h.advance(Duration::from_millis(1));
    assert_eq!(handler(&h).timers_fired, 1);
    assert_eq!(h.take_written(), b"timer\n");
    assert!(h.is_open());
}

#[test]
fn a_line_handler_pool_job_typed_on_itself_gets_the_handler_its_context_and_the_result() {
    let mut h = connected(session());
    h.feed(b"job abcde\n");
    assert_eq!(h.pending_jobs(), 1);
    assert_eq!(h.take_written(), b"");
    assert_eq!(h.run_jobs(), 1);
    assert_eq!(handler(&h).jobs_done, 1);
    assert_eq!(h.take_written(), b"len 5\n");
}

/// A timer's callback runs as a handler callback does: lines it hands back to the
/// framer are delivered when it returns.
#[test]
fn lines_a_timer_hands_back_are_delivered_when_it_returns() {
    let mut h = connected(session());
    h.feed(b"inject 0\n");
    h.advance(Duration::ZERO);
    assert_eq!(handler(&h).lines, [&b"inject 0"[..], b"injected", b"more"]);
    assert_eq!(h.take_written(), b"injected\nmore\n");
}

#[test]
fn timers_typed_on_the_handler_are_reset_and_cancelled_with_the_context_verbs() {
    let mut h = connected(session());
    h.feed(b"moves\n");
    h.advance(SECOND);
    assert_eq!(h.take_written(), b"");
    h.advance(SECOND);
    assert_eq!(h.take_written(), b"moved\n");
    assert_eq!(h.pending_timers(), 0);
}

/// `Context::call_later(cx, ...)` and `Context::defer_to_thread(cx, ...)` still set
/// callbacks typed on the framer from inside a handler.
#[test]
fn callbacks_typed_on_the_framer_are_still_reachable() {
    let mut h = connected(session());
    h.feed(b"framer 5\n");
    h.advance(Duration::from_millis(5));
    assert_eq!(h.take_written(), b"framer timer\n");
    assert_eq!(h.run_jobs(), 1);
    assert_eq!(h.take_written(), b"framer job 7\n");
    assert_eq!((handler(&h).timers_fired, handler(&h).jobs_done), (1, 1));
}

/// Leaves the expected panic of a timer typed on the wrong handler out of the test's
/// output; any other panic is reported as usual.
fn quiet_wrong_type_panics() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload().downcast_ref::<String>();
            if !message.is_some_and(|m| m.contains("but this connection runs another")) {
                report(info);
            }
        }));
    });
}

/// The core's check of the protocol type holds: a closure typed on a handler this
/// connection does not run is refused at once, as a panic in the callback that set it.
#[test]
fn a_timer_typed_on_another_handler_panics_in_the_callback_that_sets_it() {
    quiet_wrong_type_panics();
    let mut h = connected(session());
    h.feed(b"wrong\nlater 0\n");
    assert!(matches!(h.lost(), Some(Reason::Panic(_))));
    assert_eq!(handler(&h).lines, [b"wrong".to_vec()]);
    assert_eq!(h.pending_timers(), 0);
}

// ----- the delimiter and the limit, changed by the handler -----

/// Twisted's loop reads `self.delimiter` again for every line: a change inside
/// `lineReceived` applies to the rest of the same chunk, and `sendLine` uses it.
#[test]
fn set_delimiter_inside_line_received_cuts_the_rest_of_the_chunk() {
    let input = b"a\npipes\nb|c\n|d";
    for split in 0..=input.len() {
        let mut h = connected(session());
        h.feed(&input[..split]);
        h.feed(&input[split..]);
        assert_eq!(
            handler(&h).lines,
            [&b"a"[..], b"pipes", b"b", b"c\n"],
            "split at {split}"
        );
        assert_eq!(h.take_written(), b"a\nb|c\n|", "split at {split}");
        assert_eq!(h.protocol().buffered(), b"d");
    }
}

#[test]
fn set_max_length_inside_line_received_applies_to_the_rest_of_the_chunk() {
    let mut h = connected(session());
    h.feed(b"limit 3\nabc\nabcd\nab\n");
    assert_eq!(handler(&h).lines, [&b"limit 3"[..], b"abc"]);
    // As Twisted's `lineLengthExceeded`: the line, its delimiter and what follows.
    assert_eq!(handler(&h).too_long, [b"abcd\nab\n".to_vec()]);
    assert_eq!(h.take_written(), b"abc\ntoo long\n");
}

/// A delimiter changed outside a data callback (here in the handler's timer) applies
/// to what is buffered when the timer returns.
#[test]
fn set_delimiter_in_a_timer_parses_the_buffer_again_at_once() {
    let mut h = connected(session());
    h.feed(b"pipes-later 0\nx|y");
    assert_eq!(handler(&h).lines, [b"pipes-later 0".to_vec()]);
    h.advance(Duration::ZERO);
    assert_eq!(handler(&h).lines, [&b"pipes-later 0"[..], b"x"]);
    assert_eq!(h.protocol().buffered(), b"y");
    h.feed(b"z|");
    assert_eq!(handler(&h).lines.last().unwrap(), b"yz");
}

// ----- raw mode switched on outside a data callback -----

/// Twisted's `setRawMode` outside `dataReceived` only sets the flag: the buffered
/// partial line waits for the peer's next bytes and goes out with them as one raw
/// piece. twistor hands it over when the callback that switched returns (a documented
/// difference: the peer may have sent everything and be waiting), and the next chunk
/// in a call of its own.
#[test]
fn raw_mode_from_a_timer_hands_over_the_buffered_partial_line_at_once() {
    let mut h = connected(session());
    h.feed(b"raw-later 0\nbody");
    assert!(handler(&h).raw.is_empty());
    h.advance(Duration::ZERO);
    assert_eq!(handler(&h).raw, [b"body".to_vec()]);
    assert_eq!(h.protocol().buffered(), b"");
    h.feed(b" more\n");
    assert_eq!(handler(&h).raw, [&b"body"[..], b" more\n"]);
}

#[test]
fn raw_mode_from_with_handler_hands_over_the_buffered_partial_line_at_once() {
    let mut h = connected(session());
    h.feed(b"partial");
    assert!(h.call(|p, cx| p.with_handler(cx, |_, cx| cx.set_raw_mode())));
    assert_eq!(handler(&h).raw, [b"partial".to_vec()]);
    h.feed(b" and more\n");
    assert_eq!(handler(&h).raw, [&b"partial"[..], b" and more\n"]);
    assert!(handler(&h).lines.is_empty());
}

// ----- a LineOnlyReceiver's handler -----

/// `later MS` and `job TEXT`, as [`Session`], for a `LineOnlyReceiver`.
#[derive(Default)]
struct OnlyLines {
    timers_fired: usize,
    jobs_done: usize,
}

impl LineOnlyHandler for OnlyLines {
    fn line_received(&mut self, cx: &mut LineOnlyContext<'_, '_>, line: &[u8]) {
        match split_word(line) {
            (b"later", arg) => {
                cx.call_later(millis(arg), |h: &mut OnlyLines, cx| {
                    h.timers_fired += 1;
                    cx.send_line(b"timer");
                });
            }
            (b"job", arg) => {
                let text = arg.to_vec();
                let queued = cx.defer_to_thread(
                    move || text.len(),
                    |h: &mut OnlyLines, cx, len| {
                        h.jobs_done += 1;
                        let len = len.expect("the job ran");
                        cx.send_line(format!("len {len}").as_bytes());
                    },
                );
                assert!(queued.is_ok());
            }
            _ => {
                cx.send_line(line);
            }
        }
    }
}

#[test]
fn a_line_only_handler_timer_and_job_typed_on_itself() {
    let mut h = Harness::new(LineOnlyReceiver::new(OnlyLines::default()));
    h.connect();
    h.feed(b"later 10\r\njob abc\r\n");
    assert_eq!(h.take_written(), b"");
    h.advance(Duration::from_millis(10));
    assert_eq!(h.take_written(), b"timer\r\n");
    assert_eq!(h.run_jobs(), 1);
    assert_eq!(h.take_written(), b"len 3\r\n");
    let handler = h.protocol().handler();
    assert_eq!((handler.timers_fired, handler.jobs_done), (1, 1));
}

// ----- the string framers' handler -----

/// `later MS` and `job TEXT`, as [`Session`], for the length-prefixed and netstring
/// framers; `quit` closes; anything else is echoed.
#[derive(Default)]
struct Strings {
    timers_fired: usize,
    jobs_done: usize,
}

impl StringHandler for Strings {
    fn string_received(&mut self, cx: &mut StringContext<'_, '_>, string: &[u8]) {
        match split_word(string) {
            (b"later", arg) => {
                cx.call_later(millis(arg), |h: &mut Strings, cx| {
                    h.timers_fired += 1;
                    cx.send_string(b"timer").unwrap();
                });
            }
            (b"job", arg) => {
                let text = arg.to_vec();
                let queued = cx.defer_to_thread(
                    move || text.len(),
                    |h: &mut Strings, cx, len| {
                        h.jobs_done += 1;
                        let len = len.expect("the job ran");
                        cx.send_string(format!("len {len}").as_bytes()).unwrap();
                    },
                );
                assert!(queued.is_ok());
            }
            (b"quit", _) => cx.lose_connection(),
            _ => {
                cx.send_string(string).unwrap();
            }
        }
    }
}

/// `string` with an `n`-byte big-endian length prefix.
fn prefixed(n: usize, string: &[u8]) -> Vec<u8> {
    let len = (string.len() as u64).to_be_bytes();
    [&len[8 - n..], string].concat()
}

fn netstring(string: &[u8]) -> Vec<u8> {
    [format!("{}:", string.len()).as_bytes(), string, b","].concat()
}

/// Runs a timer and a pool job typed on [`Strings`] under `protocol`, a string framer
/// whose framing is `frame`.
fn check_string_framer<P: Protocol>(
    protocol: P,
    frame: impl Fn(&[u8]) -> Vec<u8>,
    handler: fn(&P) -> &Strings,
) {
    let mut h = Harness::new(protocol);
    h.connect();
    h.feed(&[frame(b"later 10"), frame(b"job abcd")].concat());
    assert_eq!(h.take_written(), b"");
    h.advance(Duration::from_millis(10));
    assert_eq!(h.take_written(), frame(b"timer"));
    assert_eq!(h.run_jobs(), 1);
    assert_eq!(h.take_written(), frame(b"len 4"));
    let handler = handler(h.protocol());
    assert_eq!((handler.timers_fired, handler.jobs_done), (1, 1));
}

#[test]
fn string_handler_timers_and_jobs_typed_on_themselves_under_every_string_framer() {
    check_string_framer(
        Int8Receiver::new(Strings::default()),
        |s| prefixed(1, s),
        Int8Receiver::handler,
    );
    check_string_framer(
        Int16Receiver::new(Strings::default()),
        |s| prefixed(2, s),
        Int16Receiver::handler,
    );
    check_string_framer(
        Int32Receiver::new(Strings::default()),
        |s| prefixed(4, s),
        Int32Receiver::handler,
    );
    check_string_framer(
        NetstringReceiver::new(Strings::default()),
        netstring,
        NetstringReceiver::handler,
    );
}

// ----- over a real reactor on loopback -----

/// Sends `request` and reads exactly `reply` back.
fn ask(s: &mut TcpStream, request: &[u8], reply: &[u8]) {
    s.write_all(request).unwrap();
    assert_eq!(read_n(s, reply.len()), reply, "reply to {request:?}");
}

#[test]
fn a_line_handler_timer_and_job_typed_on_itself_over_loopback() {
    let mut r = Reactor::new().unwrap();
    let addr = r
        .listen_tcp(localhost(), |_: &Addr| Some(session()))
        .unwrap()
        .local_addr;
    let t = client(addr, |mut s| {
        ask(&mut s, b"later 20\n", b"timer\n");
        ask(&mut s, b"job hello\n", b"len 5\n");
        // The timer and the job typed on the framer answer in either order.
        s.write_all(b"framer 0\n").unwrap();
        let answers = read_n(&mut s, b"framer timer\nframer job 7\n".len());
        let mut answers: Vec<&[u8]> = answers.split(|&b| b == b'\n').collect();
        answers.sort_unstable();
        assert_eq!(answers, [&b""[..], b"framer job 7", b"framer timer"]);
        s.write_all(b"quit\n").unwrap();
        let (rest, error) = read_to_eof(&mut s);
        assert_eq!((rest, error.map(|e| e.kind())), (Vec::new(), None));
    });
    drive(&mut r, t);
}

#[test]
fn a_string_handler_timer_and_job_typed_on_itself_over_loopback() {
    let mut r = Reactor::new().unwrap();
    let int16 = r
        .listen_tcp(localhost(), |_: &Addr| {
            Some(Int16Receiver::new(Strings::default()))
        })
        .unwrap()
        .local_addr;
    let netstrings = r
        .listen_tcp(localhost(), |_: &Addr| {
            Some(NetstringReceiver::new(Strings::default()))
        })
        .unwrap()
        .local_addr;
    let talk = |frame: fn(&[u8]) -> Vec<u8>| {
        move |mut s: TcpStream| {
            ask(&mut s, &frame(b"later 20"), &frame(b"timer"));
            ask(&mut s, &frame(b"job hello"), &frame(b"len 5"));
            s.write_all(&frame(b"quit")).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        }
    };
    let t = client(int16, talk(|s| prefixed(2, s)));
    drive(&mut r, t);
    let t = client(netstrings, talk(netstring));
    drive(&mut r, t);
}
