//! The chat room's logic on the testing kit: no sockets, no processes, no sleeps.
//!
//! The chat example's modules are included with `#[path]`. Every member is a real
//! chat session ([`session::protocol`]: the [`Session`](session::Session) under its
//! `LineReceiver`, as the server runs it), each on its own connection of one
//! [`Harness`], all sharing one [`Server`] as they share it under the reactor. The
//! first member, "alice", is the harness's own protocol; the others are added with
//! [`Harness::add_protocol`]. The test plays each member's client: a line is fed to
//! its connection ([`Harness::feed_of`]), what the member received is what its
//! connection was sent ([`Harness::take_written_of`]), and it leaves with `/quit`, an
//! end of input ([`Harness::eof_of`]) or a reset ([`Harness::disconnect_of`]). So
//! every member runs the session code: the framer, the line limit, `/quit`, arriving
//! and departing, the slow timer and flow control.
//!
//! Writes are corked as under the reactor: what a member is sent during one harness
//! call (one reactor turn) reaches its client at the end of that call, so what a line
//! caused is read once the call that fed it has returned.
//!
//! Flow control runs on small watermarks ([`HIGH`], [`LOW`]) so that a few lines
//! congest a member. A member whose client stops reading has its peer window closed
//! ([`Harness::set_peer_window_of`]): the server holds back whoever writes to it, and
//! the held-back sender's framer delivers no further line (what it is fed waits).
//! When the client reads again ([`Harness::peer_reads_of`], or its window opens) the
//! member's session hears `resume_producing`, tells the server, and the senders go
//! on with the lines that waited.
//!
//! Whether a member is held back is asked of the server ([`Server::is_held_back`]),
//! by the member key it hands out: the session keeps its key to itself, so the test
//! relies on the server numbering members in arrival order while nobody has left
//! ([`Chat::arrive`] checks that). For alice it is also checked against her
//! connection's paused reading ([`Harness::reading_paused`]); the kit tells that of
//! its own connection only.

// server.rs writes WebSocket frames for the chat's browser members.
#![cfg(feature = "websocket")]

#[path = "../examples/chat/command.rs"]
#[allow(dead_code)]
mod command;
#[path = "../examples/chat/server.rs"]
mod server;
#[path = "../examples/chat/session.rs"]
mod session;
#[path = "../examples/chat/text.rs"]
mod text;
#[path = "../examples/chat/wire.rs"]
#[allow(dead_code)]
mod wire;

use std::cell::RefCell;
use std::io;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use server::{MemberKey, Server};
use session::{ChatProtocol, SessionLimits};
use twistor::testing::{Harness, HarnessBuilder};
use twistor::{ConnId, Reactor, Reason};

/// `--max-line` for these tests.
const MAX_LINE: usize = 32;

/// The high watermark for these tests: three [`numbered`] lines pass it.
const HIGH: usize = 100;

/// The low watermark for these tests.
const LOW: usize = 40;

/// `--slow-timeout` for these tests.
const SLOW: Duration = Duration::from_secs(10);

/// Every member's session limits.
const LIMITS: SessionLimits = SessionLimits {
    max_line_bytes: MAX_LINE,
    slow_timeout: SLOW,
};

/// One member: its connection on the harness, and its key in the server.
#[derive(Clone, Copy, Debug)]
struct Member {
    conn: ConnId,
    key: MemberKey,
}

/// How a member leaves.
#[derive(Clone, Copy, Debug)]
enum Leave {
    /// It sends `/quit`.
    Quit,
    /// Its client ends its input.
    EndOfInput,
    /// Its connection is reset.
    Reset,
}

/// The chat server and its members' sessions, on one harness. Members are numbered
/// in arrival order: 0 is alice, the harness's own connection.
struct Chat {
    h: Harness<ChatProtocol>,
    server: Rc<RefCell<Server>>,
    members: Vec<Member>,
}

impl Chat {
    /// A fresh server and alice's connection made (as `guest1`); nothing taken yet.
    fn start(settings: HarnessBuilder) -> Chat {
        let server = Rc::new(RefCell::new(Server::new(HIGH)));
        let mut h = settings
            .write_watermarks(HIGH, LOW)
            .build(session::protocol(Rc::clone(&server), LIMITS));
        h.connect();
        let alice = Member {
            conn: h.id(),
            key: 0,
        };
        Chat {
            h,
            server,
            members: vec![alice],
        }
    }

    /// Alice and members called `names`, all in the lobby, every notice so far taken.
    fn named(names: &[&str]) -> Chat {
        Chat::named_with(HarnessBuilder::new(), names)
    }

    fn named_with(settings: HarnessBuilder, names: &[&str]) -> Chat {
        let mut chat = Chat::start(settings);
        chat.say(0, "/nick alice");
        for name in names {
            let member = chat.arrive();
            chat.say(member, &format!("/nick {name}"));
        }
        chat.got_all();
        chat
    }

    /// A new connection runs its own session on the harness; returns the member's
    /// number.
    ///
    /// # Panics
    /// If a member has left: the server would hand its key out again, and the test
    /// would no longer know the newcomer's.
    fn arrive(&mut self) -> usize {
        assert!(
            self.members.iter().all(|m| self.h.is_open_of(m.conn)),
            "members arrive before anyone leaves, so that their keys follow arrival order"
        );
        let conn = self
            .h
            .add_protocol(session::protocol(Rc::clone(&self.server), LIMITS));
        let key = self.members.len();
        self.members.push(Member { conn, key });
        key
    }

    /// Member `i`'s connection.
    fn conn(&self, i: usize) -> ConnId {
        self.members[i].conn
    }

    /// Member `i`'s client sends `line`.
    fn say(&mut self, i: usize, line: &str) {
        self.send(i, format!("{line}\n").as_bytes());
    }

    /// Member `i`'s client sends `bytes` as they are: one read.
    fn send(&mut self, i: usize, bytes: &[u8]) {
        self.h.feed_of(self.conn(i), bytes);
    }

    /// Member `i` leaves, `how`.
    fn leave(&mut self, i: usize, how: Leave) {
        let conn = self.conn(i);
        match how {
            Leave::Quit => self.h.feed_of(conn, b"/quit\n"),
            Leave::EndOfInput => self.h.eof_of(conn),
            Leave::Reset => self
                .h
                .disconnect_of(conn, Reason::Lost(io::ErrorKind::ConnectionReset.into())),
        }
    }

    /// Member `i`'s client stops reading: its window closes.
    fn stall(&mut self, i: usize) {
        self.h.set_peer_window_of(self.conn(i), Some(0));
    }

    /// Member `i`'s client reads everything queued for it and goes on reading.
    fn reads_all(&mut self, i: usize) {
        self.h.set_peer_window_of(self.conn(i), None);
    }

    /// Member `i` is held back: the server does not read from it.
    fn held_back(&self, i: usize) -> bool {
        let held = self.server.borrow().is_held_back(self.members[i].key);
        if i == 0 {
            assert_eq!(
                held,
                self.h.reading_paused(),
                "the server holds alice back exactly while her connection does not read"
            );
        }
        held
    }

    /// What member `i` got since last asked.
    fn got(&mut self, i: usize) -> String {
        let bytes = self.h.take_written_of(self.conn(i));
        String::from_utf8(bytes).expect("the chat sends UTF-8 here")
    }

    /// What every member got since last asked, alice first.
    fn got_all(&mut self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.got(i)).collect()
    }

    /// Runs `steps`: member `i` says `line`, then each member has got exactly the
    /// expected text (alice first; a member not listed got nothing).
    fn check(&mut self, steps: &[(usize, &str, &[&str])]) {
        for (n, &(i, line, expected)) in steps.iter().enumerate() {
            self.say(i, line);
            let got = self.got_all();
            let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            want.resize(got.len(), String::new());
            assert_eq!(got, want, "step {n}: member {i} said {line:?}");
        }
    }
}

// ----- arriving -----

#[test]
fn a_member_is_welcomed_and_the_lobby_hears_of_arrivals() {
    let mut chat = Chat::start(HarnessBuilder::new());
    assert_eq!(chat.got(0), "* welcome guest1, you are in lobby\n");
    chat.h.assert_clean();

    let bob = chat.arrive();
    assert_eq!(chat.got(bob), "* welcome guest2, you are in lobby\n");
    assert_eq!(chat.got(0), "* guest2 joined lobby\n");
    // A guest nick someone took with /nick is skipped.
    chat.check(&[(
        bob,
        "/nick guest3",
        &["* guest2 is now guest3\n", "* guest2 is now guest3\n"],
    )]);
    let carol = chat.arrive();
    assert_eq!(chat.got(carol), "* welcome guest4, you are in lobby\n");
    assert_eq!(
        chat.got_all(),
        ["* guest4 joined lobby\n", "* guest4 joined lobby\n", ""]
    );
    chat.h.assert_clean();
}

// ----- talking -----

#[test]
fn a_line_goes_to_the_others_in_the_room() {
    let mut chat = Chat::named(&["bob", "carol", "dave"]);
    chat.say(3, "/join kitchen");
    chat.got_all();
    chat.check(&[
        (0, "hello", &["", "<alice> hello\n", "<alice> hello\n"]),
        (1, "hi", &["<bob> hi\n", "", "<bob> hi\n"]),
        (0, "", &[]),
        (0, "crlf\r", &["", "<alice> crlf\n", "<alice> crlf\n"]),
        (
            2,
            "crlf too\r",
            &["<carol> crlf too\n", "<carol> crlf too\n"],
        ),
        (3, "anyone?", &[]),
        (
            0,
            "/me waves",
            &["* alice waves\n", "* alice waves\n", "* alice waves\n"],
        ),
        (
            2,
            "/me nods",
            &["* carol nods\n", "* carol nods\n", "* carol nods\n"],
        ),
    ]);
}

#[test]
fn lines_are_cut_at_newlines_however_they_arrive() {
    let mut chat = Chat::named(&["bob"]);
    // Half a line: nothing yet; the rest with two more lines in one read.
    chat.send(1, b"hel");
    assert_eq!(chat.got_all(), ["", ""]);
    chat.send(1, b"lo\r\n/me waves\nsee");
    assert_eq!(
        chat.got_all(),
        ["<bob> hello\n* bob waves\n", "* bob waves\n"]
    );
    chat.send(1, b" you\n");
    assert_eq!(chat.got_all(), ["<bob> see you\n", ""]);
}

#[test]
fn mistakes_get_an_error_notice_alone() {
    let mut chat = Chat::named(&["bob"]);
    chat.check(&[
        (0, "/dance", &["* error: unknown command\n"]),
        (0, "/me", &["* error: usage: /me TEXT\n"]),
        (0, "/msg bob", &["* error: usage: /msg NICK TEXT\n"]),
        (
            0,
            "/nick",
            &["* error: invalid nick: use 1-32 of A-Z a-z 0-9 _ -\n"],
        ),
        (
            0,
            "/join a/b",
            &["* error: invalid room name: use 1-32 of A-Z a-z 0-9 _ -\n"],
        ),
        (1, "/dance", &["", "* error: unknown command\n"]),
    ]);
}

// ----- who is where -----

#[test]
fn who_and_rooms_answer_the_asker_alone() {
    let mut chat = Chat::named(&["bob", "Zed", "carol"]);
    chat.say(3, "/join kitchen");
    chat.got_all();
    chat.check(&[
        (0, "/who", &["* in lobby: Zed, alice, bob\n"]),
        (0, "/WHO cares", &["* in lobby: Zed, alice, bob\n"]),
        (0, "/rooms", &["* rooms: kitchen (1), lobby (3)\n"]),
        (3, "/who", &["", "", "", "* in kitchen: carol\n"]),
    ]);
}

#[test]
fn nicks_are_unique_and_case_sensitive_and_freed_on_rename() {
    let mut chat = Chat::named(&["bob"]);
    chat.check(&[
        (0, "/nick bob", &["* error: nick bob is taken\n"]),
        (0, "/nick alice", &["* error: you are already alice\n"]),
        (
            0,
            "/nick al ice",
            &["* error: invalid nick: use 1-32 of A-Z a-z 0-9 _ -\n"],
        ),
        (
            0,
            "/nick Bob",
            &["* alice is now Bob\n", "* alice is now Bob\n"],
        ),
        (
            1,
            "/nick alice",
            &["* bob is now alice\n", "* bob is now alice\n"],
        ),
        (0, "/who", &["* in lobby: Bob, alice\n"]),
    ]);
}

#[test]
fn join_moves_between_rooms_which_live_while_they_have_members() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.say(2, "/join kitchen");
    chat.got_all();
    chat.check(&[
        (
            0,
            "/join kitchen",
            &[
                "* alice joined kitchen\n",
                "* alice left lobby\n",
                "* alice joined kitchen\n",
            ],
        ),
        (
            0,
            "/join kitchen",
            &["* error: you are already in kitchen\n"],
        ),
        (0, "hi", &["", "", "<alice> hi\n"]),
        (0, "/who", &["* in kitchen: alice, carol\n"]),
        (0, "/rooms", &["* rooms: kitchen (2), lobby (1)\n"]),
        (1, "/join attic", &["", "* bob joined attic\n"]),
        (0, "/rooms", &["* rooms: attic (1), kitchen (2)\n"]),
        (
            2,
            "/join attic",
            &[
                "* carol left kitchen\n",
                "* carol joined attic\n",
                "* carol joined attic\n",
            ],
        ),
        (
            0,
            "/join attic",
            &[
                "* alice joined attic\n",
                "* alice joined attic\n",
                "* alice joined attic\n",
            ],
        ),
        (0, "/rooms", &["* rooms: attic (3)\n"]),
    ]);
}

#[test]
fn msg_reaches_one_member_in_any_room() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.say(2, "/join kitchen");
    chat.got_all();
    chat.check(&[
        (0, "/msg bob psst", &["", "*private* <alice> psst\n"]),
        (
            0,
            "/msg carol   across rooms",
            &["", "", "*private* <alice> across rooms\n"],
        ),
        (1, "/msg alice hi back", &["*private* <bob> hi back\n"]),
        (0, "/msg nobody x", &["* error: no such nick: nobody\n"]),
        (0, "/msg Bob x", &["* error: no such nick: Bob\n"]),
        (0, "/msg alice to self", &["*private* <alice> to self\n"]),
    ]);
}

// ----- limits and departures -----

#[test]
fn a_line_over_max_line_gets_an_error_and_closes() {
    let at_max = "x".repeat(MAX_LINE);
    let over = "y".repeat(MAX_LINE + 1);
    // (what the member sends, accepted): `\r` is not counted; over the limit is
    // refused whether the session sees the line (`over\n`) or the framer refuses it
    // first (`over\r\n`, past its `MAX_LINE + 1`, or an unended line).
    let cases = [
        (format!("{at_max}\n"), true),
        (format!("{at_max}\r\n"), true),
        (format!("{over}\n"), false),
        (format!("{over}\r\n"), false),
        ("z".repeat(3 * MAX_LINE), false),
    ];
    // Alice's session is the harness's own connection, bob's an added one.
    for (who, nick, other) in [(0, "alice", 1), (1, "bob", 0)] {
        for (input, accepted) in &cases {
            let mut chat = Chat::named(&["bob"]);
            chat.send(who, input.as_bytes());
            let mut want = [String::new(), String::new()];
            if *accepted {
                want[other] = format!("<{nick}> {at_max}\n");
            } else {
                want[who] = "* error: line too long\n".to_string();
                want[other] = format!("* {nick} disconnected\n");
            }
            assert_eq!(chat.got_all(), want, "{nick} sent {input:?}");
            if *accepted {
                assert!(chat.h.is_open_of(chat.conn(who)), "{nick} sent {input:?}");
            } else {
                let lost = chat.h.lost_of(chat.conn(who));
                assert!(matches!(lost, Some(Reason::Done)), "{nick} sent {input:?}");
                chat.h.assert_clean();
            }
        }
    }
}

#[test]
fn the_room_hears_when_a_member_leaves_in_any_way() {
    let ways = [
        (Leave::Quit, "* bye\n"),
        (Leave::EndOfInput, ""),
        (Leave::Reset, ""),
    ];
    for (who, nick, other) in [(0, "alice", 1), (1, "bob", 0)] {
        for (how, last_words) in ways {
            let mut chat = Chat::named(&["bob", "carol"]);
            chat.say(2, "/join kitchen");
            chat.got_all();
            chat.leave(who, how);
            assert!(chat.h.lost_of(chat.conn(who)).is_some(), "{nick}: {how:?}");
            let mut want = [String::new(), String::new(), String::new()];
            want[who] = last_words.to_string();
            want[other] = format!("* {nick} disconnected\n");
            assert_eq!(
                chat.got_all(),
                want,
                "{nick}: {how:?}: the room alone hears"
            );
            // Its nick is free: nobody of that name is left to reach.
            chat.say(other, &format!("/msg {nick} x"));
            assert_eq!(chat.got(other), format!("* error: no such nick: {nick}\n"));
            chat.h.assert_clean();
        }
    }
}

#[test]
fn alice_hears_when_a_peer_leaves_and_its_nick_is_free() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.leave(1, Leave::Reset);
    assert_eq!(chat.got(0), "* bob disconnected\n");
    assert_eq!(chat.got(2), "* bob disconnected\n");
    chat.check(&[
        (0, "/who", &["* in lobby: alice, carol\n"]),
        (0, "/msg bob x", &["* error: no such nick: bob\n"]),
        (
            2,
            "/nick bob",
            &["* carol is now bob\n", "", "* carol is now bob\n"],
        ),
    ]);
}

#[test]
fn a_member_that_does_not_read_is_cut_off_at_the_write_cap_and_the_room_goes_on() {
    let settings = HarnessBuilder::from(Reactor::builder().write_cap_bytes(150));
    let mut chat = Chat::named_with(settings, &["bob", "carol", "dave", "erin"]);
    let nicks = ["alice", "bob", "carol", "dave", "erin"];
    chat.stall(0); // alice stops reading
                   // One line of MAX_LINE bytes from each of the others in turn, 39 to 41 bytes as
                   // alice gets it. Once alice has more than HIGH unsent, a sender is held back by
                   // the line it sends, so no sender can pass the cap alone: several do.
    let line = |n: usize| format!("{n}{}", "b".repeat(MAX_LINE - 1));
    let senders = [1, 2, 3, 4, 1, 2, 3, 4];
    let mut said = 0;
    while chat.h.is_open_of(chat.conn(0)) && said < senders.len() {
        chat.say(senders[said], &line(said));
        said += 1;
    }
    assert!(matches!(
        chat.h.lost_of(chat.conn(0)),
        Some(Reason::WriteOverflow)
    ));
    assert_eq!(said, 4, "39 + 41 + 40 + 40 bytes pass the 150-byte cap");
    for i in 1..=4 {
        assert!(!chat.held_back(i), "{} reads again", nicks[i]);
        let heard: String = (0..said)
            .filter(|&n| senders[n] != i)
            .map(|n| format!("<{}> {}\n", nicks[senders[n]], line(n)))
            .collect();
        assert_eq!(
            chat.got(i),
            heard + "* alice disconnected\n",
            "{}",
            nicks[i]
        );
    }
    assert_eq!(chat.got(0), "");
    chat.h.assert_clean();
}

#[test]
fn a_burst_reaches_the_room_whole_and_in_order() {
    let mut chat = Chat::named(&["bob"]);
    let lines: String = (0..1600).map(|i| format!("{i:010}\n")).collect();
    chat.send(0, lines.as_bytes());
    let heard: String = (0..1600).map(|i| format!("<alice> {i:010}\n")).collect();
    assert_eq!(heard.len(), 30_400);
    assert_eq!(chat.got(1), heard);
    assert_eq!(chat.got(0), "");
    chat.h.assert_clean();
}

// ----- clean text -----

#[test]
fn text_from_members_is_relayed_as_clean_utf8() {
    let mut chat = Chat::named(&["bob"]);
    let r = "\u{FFFD}";
    // Bytes, not `&str`: alice's line need not be UTF-8.
    let cases: [(&[u8], String, String); 5] = [
        (
            b"\x1b[31mred",
            String::new(),
            format!("<alice> {r}[31mred\n"),
        ),
        (
            b"fake\r* bob is now root",
            String::new(),
            format!("<alice> fake{r}* bob is now root\n"),
        ),
        (
            b"/me caf\xe9\x7f\tok",
            format!("* alice caf{r}{r}\tok\n"),
            format!("* alice caf{r}{r}\tok\n"),
        ),
        (
            "/msg bob \u{9b}2J gone".as_bytes(),
            String::new(),
            format!("*private* <alice> {r}2J gone\n"),
        ),
        (
            b"/msg \x1bbob hi",
            format!("* error: no such nick: {r}bob\n"),
            String::new(),
        ),
    ];
    for (line, alice_got, bob_got) in cases {
        let mut input = line.to_vec();
        input.push(b'\n');
        chat.send(0, &input);
        assert_eq!(chat.got_all(), [alice_got, bob_got], "{line:?}");
    }
}

// ----- flow control -----

/// The nicks of [`Chat::named`]`(&["bob", "carol", "dave"])`, by member number.
const NICKS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// 30 bytes of text, numbered: 37 bytes as `<bob> TEXT\n`, 39 as `<alice> TEXT\n`
/// or `<carol> TEXT\n`.
fn numbered(i: usize) -> String {
    format!("{i:02}{}", "x".repeat(28))
}

/// Lines `lines` of [`numbered`], sent in one read.
fn burst(lines: Range<usize>) -> String {
    lines.map(|i| numbered(i) + "\n").collect()
}

/// Lines `lines` of [`numbered`] as the room hears them from `nick`.
fn heard(nick: &str, lines: Range<usize>) -> String {
    lines
        .map(|i| format!("<{nick}> {}\n", numbered(i)))
        .collect()
}

#[test]
fn a_sender_is_held_back_at_the_line_that_congests_a_recipient() {
    // (sender, the member that stops reading, a member that reads): alice's
    // connection is the harness's own, bob's and carol's are added ones.
    for (sender, stalled, reader) in [(0, 1, 2), (2, 0, 1)] {
        let mut chat = Chat::named(&["bob", "carol"]);
        let nick = NICKS[sender];
        chat.stall(stalled);
        // Twenty lines in one read: the sender is held back as soon as the stalled
        // member has more than HIGH bytes unsent (the third line, 3 x 39 bytes);
        // its framer delivers no further line.
        chat.send(sender, burst(0..20).as_bytes());
        assert!(chat.held_back(sender), "{nick}");
        assert_eq!(chat.got(reader), heard(nick, 0..3), "{nick}");
        assert_eq!(chat.got(stalled), "", "{nick}");
        assert_eq!(chat.h.buffered_of(chat.conn(stalled)), 3 * 39, "{nick}");
        // The stalled member's session heard pause_producing: its slow timer runs.
        assert_eq!(chat.h.next_timer_in(), Some(SLOW), "{nick}");
        // It reads: its session hears resume_producing, the sender reads again, and
        // everything reaches both, in order.
        chat.reads_all(stalled);
        assert!(!chat.held_back(sender), "{nick}");
        assert_eq!(chat.got(stalled), heard(nick, 0..20), "{nick}");
        assert_eq!(chat.got(reader), heard(nick, 3..20), "{nick}");
        assert_eq!(chat.got(sender), "", "{nick}");
        chat.h.assert_clean();
    }
}

#[test]
fn a_sender_held_back_by_several_reads_again_once_none_holds_it() {
    let mut chat = Chat::named(&["bob", "carol", "dave"]);
    chat.stall(1);
    chat.stall(2);
    chat.send(0, burst(0..10).as_bytes());
    assert!(chat.held_back(0));
    assert_eq!(chat.got(3), heard("alice", 0..3));
    chat.reads_all(1);
    assert!(chat.held_back(0), "carol still holds alice back");
    assert_eq!(chat.got(3), "");
    chat.reads_all(2);
    assert!(!chat.held_back(0));
    assert_eq!(chat.got(1), heard("alice", 0..10));
    assert_eq!(chat.got(2), heard("alice", 0..10));
    assert_eq!(chat.got(3), heard("alice", 3..10));
    chat.h.assert_clean();
}

#[test]
fn notices_and_private_messages_hold_their_sender_back_too() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.stall(1);
    // /msg to a member that does not read: 39 bytes each, the third passes HIGH.
    let text = |i: usize| format!("{i:02}{}", "p".repeat(18));
    for i in 0..3 {
        chat.say(2, &format!("/msg bob {}", text(i)));
    }
    assert!(chat.held_back(2));
    assert!(!chat.held_back(0));
    // Carol's next line waits in her connection: nobody hears it yet.
    chat.say(2, "anyone?");
    assert_eq!(chat.got_all(), ["", "", ""]);
    // A notice: alice renames herself, and bob is still congested.
    chat.say(0, "/nick alicia");
    assert!(chat.held_back(0));
    chat.reads_all(1);
    assert!(!chat.held_back(0) && !chat.held_back(2));
    let private: String = (0..3)
        .map(|i| format!("*private* <carol> {}\n", text(i)))
        .collect();
    let rename = "* alice is now alicia\n";
    assert_eq!(
        chat.got_all(),
        [
            format!("{rename}<carol> anyone?\n"),
            format!("{private}{rename}<carol> anyone?\n"),
            rename.to_string(),
        ]
    );
    // A member's own answers: alice stops reading and keeps asking.
    chat.stall(0);
    let asks = "/who\n".repeat(20);
    chat.send(0, asks.as_bytes());
    assert!(chat.held_back(0), "alice's own answers hold her back");
    let answer = "* in lobby: alicia, bob, carol\n";
    let asked = chat.h.buffered().div_ceil(answer.len());
    assert!(asked < 20, "alice was held back after {asked} answers");
    chat.reads_all(0);
    assert!(!chat.held_back(0));
    assert_eq!(chat.got(0), answer.repeat(20));
    chat.h.assert_clean();
}

#[test]
fn a_member_that_does_not_read_is_cut_off_after_the_slow_timeout() {
    // (the member that stops reading, its sender); carol reads.
    for (stalled, sender) in [(0, 1), (1, 0)] {
        let mut chat = Chat::named(&["bob", "carol"]);
        let (nick, gone) = (NICKS[sender], NICKS[stalled]);
        chat.stall(stalled);
        for i in 0..3 {
            chat.say(sender, &numbered(i));
        }
        assert!(chat.held_back(sender), "{nick} waits on {gone}");
        if stalled == 0 {
            // The kit tells this of its own connection only.
            assert!(chat.h.producer_paused());
        }
        assert_eq!(chat.h.next_timer_in(), Some(SLOW));
        // The sender's next line waits in its connection.
        chat.say(sender, &numbered(3));
        assert_eq!(chat.got(2), heard(nick, 0..3));
        chat.h.advance(SLOW - Duration::from_millis(1));
        assert!(chat.h.is_open_of(chat.conn(stalled)));
        chat.h.advance(Duration::from_millis(1));
        assert!(
            matches!(chat.h.lost_of(chat.conn(stalled)), Some(Reason::Aborted)),
            "{gone}"
        );
        // The sender goes on with the line that waited.
        assert!(!chat.held_back(sender), "{nick} goes on");
        let disconnected = format!("* {gone} disconnected\n");
        assert_eq!(chat.got(2), disconnected.clone() + &heard(nick, 3..4));
        assert_eq!(chat.got(sender), disconnected);
        assert_eq!(chat.got(stalled), "");
        chat.h.assert_clean();
    }
}

#[test]
fn a_member_whose_output_drains_in_time_stays() {
    // (the member that reads slowly, its sender).
    for (slow, sender) in [(0, 1), (1, 0)] {
        let mut chat = Chat::named(&["bob", "carol"]);
        let nick = NICKS[slow];
        chat.stall(slow);
        for i in 0..3 {
            chat.say(sender, &numbered(i));
        }
        assert!(chat.held_back(sender), "{nick}");
        chat.h.advance(SLOW - Duration::from_millis(1));
        // The client reads down to just above the low watermark: still congested.
        let conn = chat.conn(slow);
        let unsent = chat.h.buffered_of(conn);
        chat.h.peer_reads_of(conn, unsent - LOW - 1);
        assert!(chat.held_back(sender), "{nick}");
        assert_eq!(chat.h.next_timer_in(), Some(Duration::from_millis(1)));
        // Down to the low watermark: the timer stops, the sender goes on.
        chat.h.peer_reads_of(conn, 1);
        assert_eq!(chat.h.buffered_of(conn), LOW);
        assert!(!chat.held_back(sender), "{nick}");
        if slow == 0 {
            assert!(!chat.h.producer_paused());
        }
        chat.h.assert_clean();
        chat.h.advance(SLOW);
        assert!(chat.h.is_open_of(conn), "{nick}");
        // Congested again: a new timer, the whole timeout again.
        for i in 3..6 {
            chat.say(sender, &numbered(i));
        }
        assert!(chat.held_back(sender), "{nick}");
        assert_eq!(chat.h.next_timer_in(), Some(SLOW), "{nick}");
    }
}

#[test]
fn a_congested_member_that_leaves_releases_its_senders() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.stall(1);
    chat.send(0, burst(0..10).as_bytes());
    assert!(chat.held_back(0));
    chat.leave(1, Leave::Reset);
    assert!(!chat.held_back(0));
    assert_eq!(
        chat.got(2),
        heard("alice", 0..3) + "* bob disconnected\n" + &heard("alice", 3..10)
    );
    // A held-back sender that leaves is forgotten by the member it waited on, whose
    // output then drains with nobody to release.
    chat.stall(0);
    for i in 0..3 {
        chat.say(2, &numbered(i));
    }
    assert!(chat.held_back(2));
    chat.leave(2, Leave::Reset);
    chat.reads_all(0);
    assert!(chat.h.is_open());
    assert!(chat.got(0).ends_with("* carol disconnected\n"));
    chat.h.assert_clean();
}
