//! The chat room's logic on the testing harness: no sockets, no processes, no sleeps.
//!
//! The chat example's modules are included with `#[path]`. One member, "alice", is
//! the real session ([`session::protocol`]) on a [`Harness`]. The other members are
//! fake peers of that same harness ([`Harness::add_peer`]), registered in the shared
//! [`Server`] through its API, as their own sessions would: arriving is
//! [`Server::arrive`], a line is [`command::parse`] then [`Server::execute`] (or
//! [`Server::error`]), leaving is [`Server::depart`] once its fake connection is
//! lost, each run with the harness's context. A peer's own session code (its line
//! limit, `/quit`) is not run: alice's is. The server writes to every member with
//! `write_to`, so what each member got is read from its fake connection.
//!
//! Why not one harness per member: every harness numbers its own connection the
//! same way (`ConnId` index 0, generation 1), so members of different harnesses
//! sharing one `Server` would have colliding ids, and a line sent from one harness
//! would be written to that harness's connections whoever it was for.
//!
//! The server writes each line straight away; gathering a turn's small writes into
//! one system call is the reactor's business (the harness writes at once), so what a
//! member got can be read as soon as the callback that sent it has returned.
//!
//! Flow control runs on small watermarks ([`HIGH`], [`LOW`]) so that a few lines
//! congest a member. A peer that stops reading is a peer whose window is closed; its
//! session would hear `resume_producing` once it drains, and so call
//! [`Server::drained`]: the test calls it for the peer ([`Chat::drained`]).

#[path = "../examples/chat/command.rs"]
#[allow(dead_code)]
mod command;
#[path = "../examples/chat/server.rs"]
mod server;
#[path = "../examples/chat/session.rs"]
mod session;
#[path = "../examples/chat/text.rs"]
mod text;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use server::{MemberKey, Server};
use session::{ChatProtocol, SessionLimits};
use twistor::testing::{Harness, HarnessBuilder};
use twistor::{ConnId, Context, Reactor, Reason};

/// `--max-line` for these tests.
const MAX_LINE: usize = 32;

/// The high watermark for these tests: three [`numbered`] lines pass it.
const HIGH: usize = 100;

/// The low watermark for these tests.
const LOW: usize = 40;

/// `--slow-timeout` for these tests.
const SLOW: Duration = Duration::from_secs(10);

/// A member played by the test: a fake peer of the harness.
#[derive(Clone, Copy, Debug)]
struct Peer {
    conn: ConnId,
    key: MemberKey,
}

/// The chat server, alice's session on a harness, and the peers. Members are
/// numbered: 0 is alice, `i` is `peers[i - 1]`.
struct Chat {
    h: Harness<ChatProtocol>,
    server: Rc<RefCell<Server>>,
    peers: Vec<Peer>,
}

impl Chat {
    /// A fresh server and alice's connection made (as `guest1`); nothing taken yet.
    fn start(settings: HarnessBuilder) -> Chat {
        let server = Rc::new(RefCell::new(Server::new(HIGH)));
        let limits = SessionLimits {
            max_line_bytes: MAX_LINE,
            slow_timeout: SLOW,
        };
        let mut h = settings
            .write_watermarks(HIGH, LOW)
            .build(session::protocol(Rc::clone(&server), limits));
        h.connect();
        Chat {
            h,
            server,
            peers: Vec::new(),
        }
    }

    /// Alice and peers called `names`, all in the lobby, every notice so far taken.
    fn named(names: &[&str]) -> Chat {
        Chat::named_with(HarnessBuilder::new(), names)
    }

    fn named_with(settings: HarnessBuilder, names: &[&str]) -> Chat {
        let mut chat = Chat::start(settings);
        chat.say(0, "/nick alice");
        for name in names {
            let peer = chat.arrive();
            chat.say(peer, &format!("/nick {name}"));
        }
        chat.got_all();
        chat
    }

    /// A peer arrives, as its session's `connection_made`; returns its number.
    fn arrive(&mut self) -> usize {
        let conn = self.h.add_peer();
        let key = self.as_peers(|s, cx| s.arrive(cx, conn));
        self.peers.push(Peer { conn, key });
        self.peers.len()
    }

    /// Peer `i`'s connection is lost, and the server hears of it as from its
    /// session's `connection_lost`.
    fn leave(&mut self, i: usize) {
        let Peer { conn, key } = self.peers[i - 1];
        self.h
            .disconnect_of(conn, Reason::Lost(io::ErrorKind::ConnectionReset.into()));
        self.as_peers(|s, cx| s.depart(cx, key));
    }

    /// Member `i` sends `line`. Alice's goes through her session;
    /// a peer's as its session would hand it to the server (`/quit` is the session's:
    /// use [`leave`](Self::leave)).
    fn say(&mut self, i: usize, line: &str) {
        if i == 0 {
            self.h.feed(format!("{line}\n").as_bytes());
            return;
        }
        assert_ne!(line, "/quit", "a peer leaves with Chat::leave");
        let key = self.peers[i - 1].key;
        self.as_peers(|s, cx| match command::parse(line.as_bytes()) {
            Ok(command) => s.execute(cx, key, command),
            Err(error) => s.error(cx, key, error),
        });
    }

    /// Peer `i` stops reading: its window closes.
    fn stall(&mut self, i: usize) {
        self.h.set_peer_window_of(self.peers[i - 1].conn, Some(0));
    }

    /// Peer `i` reads everything queued for it and goes on reading; its session
    /// hears `resume_producing` if it was congested, and tells the server.
    fn drained(&mut self, i: usize) {
        let Peer { conn, key } = self.peers[i - 1];
        self.h.set_peer_window_of(conn, None);
        self.as_peers(|s, cx| s.drained(cx, key));
    }

    /// Member `i` (alice is 0) is held back: the server does not read from it.
    fn held_back(&self, i: usize) -> bool {
        match i {
            0 => self.h.reading_paused(),
            _ => self.server.borrow().is_held_back(self.peers[i - 1].key),
        }
    }

    /// Runs `f` on the shared server as a peer's callback, with the harness's context
    /// (writes to peers go through it).
    fn as_peers<R>(&mut self, f: impl FnOnce(&mut Server, &mut Context<'_>) -> R) -> R {
        let server = Rc::clone(&self.server);
        let mut out = None;
        let ran = self.h.call(|_, cx| {
            out = Some(f(&mut server.borrow_mut(), cx));
        });
        assert!(
            ran,
            "alice's connection is gone: the harness has no context left"
        );
        out.expect("ran")
    }

    /// What member `i` got since last asked.
    fn got(&mut self, i: usize) -> String {
        let bytes = match i {
            0 => self.h.take_written(),
            _ => self.h.take_written_of(self.peers[i - 1].conn),
        };
        String::from_utf8(bytes).expect("the chat sends UTF-8 here")
    }

    /// What every member got since last asked, alice first.
    fn got_all(&mut self) -> Vec<String> {
        (0..=self.peers.len()).map(|i| self.got(i)).collect()
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
    // (what alice sends, accepted): `\r` is not counted; over the limit is refused
    // whether the session sees the line (`over\n`) or the framer refuses it first
    // (`over\r\n`, past its `MAX_LINE + 1`, or an unended line).
    let cases = [
        (format!("{at_max}\n"), true),
        (format!("{at_max}\r\n"), true),
        (format!("{over}\n"), false),
        (format!("{over}\r\n"), false),
        ("z".repeat(3 * MAX_LINE), false),
    ];
    for (input, accepted) in cases {
        let mut chat = Chat::named(&["bob"]);
        chat.h.feed(input.as_bytes());
        let got = chat.got_all();
        if accepted {
            assert_eq!(
                got,
                ["".to_string(), format!("<alice> {at_max}\n")],
                "{input:?}"
            );
            assert!(chat.h.is_open());
        } else {
            assert_eq!(
                got,
                ["* error: line too long\n", "* alice disconnected\n"],
                "{input:?}"
            );
            assert!(matches!(chat.h.lost(), Some(Reason::Done)), "{input:?}");
        }
    }
}

#[test]
fn the_room_hears_when_the_member_leaves_in_any_way() {
    type Leave = fn(&mut Harness<ChatProtocol>);
    let ways: [(&str, Leave, &str); 3] = [
        ("quit", |h| h.feed(b"/quit\n"), "* bye\n"),
        ("end of input", |h| h.eof(), ""),
        (
            "reset",
            |h| h.disconnect(Reason::Lost(io::ErrorKind::ConnectionReset.into())),
            "",
        ),
    ];
    for (way, leave, last_words) in ways {
        let mut chat = Chat::named(&["bob", "carol"]);
        chat.say(2, "/join kitchen");
        chat.got_all();
        leave(&mut chat.h);
        assert!(chat.h.lost().is_some(), "{way}");
        assert_eq!(
            chat.got_all(),
            [last_words, "* alice disconnected\n", ""],
            "{way}: the room alone hears of it"
        );
        chat.h.assert_clean();
    }
}

#[test]
fn alice_hears_when_a_peer_leaves_and_its_nick_is_free() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.leave(1);
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
fn a_member_that_does_not_read_is_cut_off_and_the_room_goes_on() {
    let settings = HarnessBuilder::from(Reactor::builder().write_cap_bytes(256));
    let mut chat = Chat::named_with(settings, &["bob", "carol"]);
    chat.h.set_peer_window(Some(0)); // alice stops reading
    let line = "b".repeat(60);
    let mut said = 0;
    while chat.h.is_open() && said < 10 {
        chat.say(1, &line);
        said += 1;
    }
    assert!(matches!(chat.h.lost(), Some(Reason::WriteOverflow)));
    assert_eq!(said, 4, "4 x 67 bytes pass the 256-byte cap");
    let heard = format!("<bob> {line}\n").repeat(said);
    assert_eq!(chat.got(2), heard + "* alice disconnected\n");
    assert_eq!(chat.got(1), "* alice disconnected\n");
}

#[test]
fn a_burst_reaches_the_room_whole_and_in_order() {
    let mut chat = Chat::named(&["bob"]);
    let lines: String = (0..1600).map(|i| format!("{i:010}\n")).collect();
    chat.h.feed(lines.as_bytes());
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
        chat.h.feed(&input);
        assert_eq!(chat.got_all(), [alice_got, bob_got], "{line:?}");
    }
}

// ----- flow control -----

/// 30 bytes of text, numbered: 37 bytes as `<bob> TEXT\n`, 39 as `<alice> TEXT\n`.
fn numbered(i: usize) -> String {
    format!("{i:02}{}", "x".repeat(28))
}

#[test]
fn a_sender_is_held_back_at_the_line_that_congests_a_recipient() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.stall(1);
    // Twenty lines in one read: alice is held back as soon as bob has more than
    // HIGH bytes unsent (the third line, 3 x 39 bytes), the rest kept unread.
    let burst: String = (0..20).map(|i| numbered(i) + "\n").collect();
    chat.h.feed(burst.as_bytes());
    let heard = |lines: std::ops::Range<usize>| -> String {
        lines
            .map(|i| format!("<alice> {}\n", numbered(i)))
            .collect()
    };
    assert!(chat.held_back(0));
    assert_eq!(chat.got(2), heard(0..3));
    assert_eq!(chat.h.buffered_of(chat.peers[0].conn), 3 * 39);
    // Bob reads: alice reads again, and everything reaches both, in order.
    chat.drained(1);
    assert!(!chat.held_back(0));
    assert_eq!(chat.got(1), heard(0..20));
    assert_eq!(chat.got(2), heard(3..20));
    chat.h.assert_clean();
}

#[test]
fn a_sender_held_back_by_several_reads_again_once_none_holds_it() {
    let mut chat = Chat::named(&["bob", "carol", "dave"]);
    chat.stall(1);
    chat.stall(2);
    let burst: String = (0..10).map(|i| numbered(i) + "\n").collect();
    chat.h.feed(burst.as_bytes());
    assert!(chat.held_back(0));
    assert_eq!(chat.got(3).lines().count(), 3);
    chat.drained(1);
    assert!(chat.held_back(0), "carol still holds alice back");
    assert_eq!(chat.got(3), "");
    chat.drained(2);
    assert!(!chat.held_back(0));
    for i in 1..=3 {
        assert_eq!(chat.got(i).lines().count(), 10 - if i == 3 { 3 } else { 0 });
    }
}

#[test]
fn notices_and_private_messages_hold_their_sender_back_too() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.stall(1);
    // /msg to a member that does not read.
    for i in 0..3 {
        chat.say(2, &format!("/msg bob {}", numbered(i)));
    }
    assert!(chat.held_back(2));
    assert!(!chat.held_back(0));
    // A notice: alice renames herself, and bob is still congested.
    chat.say(0, "/nick alicia");
    assert!(chat.held_back(0));
    chat.drained(1);
    assert!(!chat.held_back(0) && !chat.held_back(2));
    chat.got_all();
    // A member's own answers: alice stops reading and keeps asking.
    chat.h.set_peer_window(Some(0));
    let asks = "/who\n".repeat(20);
    chat.h.feed(asks.as_bytes());
    assert!(chat.held_back(0), "alice's own answers hold her back");
    let answer = "* in lobby: alicia, bob, carol\n";
    let asked = chat.h.buffered().div_ceil(answer.len());
    assert!(asked < 20, "alice was held back after {asked} answers");
    chat.h.set_peer_window(None);
    assert!(!chat.held_back(0));
    assert_eq!(chat.got(0), answer.repeat(20));
}

#[test]
fn a_member_that_does_not_read_is_cut_off_after_the_slow_timeout() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.h.set_peer_window(Some(0)); // alice stops reading
    for i in 0..3 {
        chat.say(1, &numbered(i));
    }
    assert!(chat.held_back(1), "bob waits on alice");
    assert!(chat.h.producer_paused());
    assert_eq!(chat.h.next_timer_in(), Some(SLOW));
    chat.h.advance(SLOW - Duration::from_millis(1));
    assert!(chat.h.is_open());
    chat.h.advance(Duration::from_millis(1));
    assert!(matches!(chat.h.lost(), Some(Reason::Aborted)));
    assert!(!chat.held_back(1), "bob goes on");
    let heard: String = (0..3).map(|i| format!("<bob> {}\n", numbered(i))).collect();
    assert_eq!(chat.got(2), heard + "* alice disconnected\n");
    assert_eq!(chat.got(1), "* alice disconnected\n");
    chat.h.assert_clean();
}

#[test]
fn a_member_whose_output_drains_in_time_stays() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.h.set_peer_window(Some(0));
    for i in 0..3 {
        chat.say(1, &numbered(i));
    }
    assert!(chat.held_back(1));
    chat.h.advance(SLOW - Duration::from_millis(1));
    // Alice reads down to the low watermark: the timer stops, bob goes on.
    chat.h.peer_reads(3 * 37 - LOW);
    assert!(!chat.h.producer_paused());
    assert!(!chat.held_back(1));
    chat.h.assert_clean();
    chat.h.advance(SLOW);
    assert!(chat.h.is_open());
    // Congested again: a new timer, the whole timeout again.
    chat.h.set_peer_window(Some(0));
    for i in 3..6 {
        chat.say(1, &numbered(i));
    }
    assert!(chat.held_back(1));
    assert_eq!(chat.h.next_timer_in(), Some(SLOW));
}

#[test]
fn a_congested_member_that_leaves_releases_its_senders() {
    let mut chat = Chat::named(&["bob", "carol"]);
    chat.stall(1);
    let burst: String = (0..10).map(|i| numbered(i) + "\n").collect();
    chat.h.feed(burst.as_bytes());
    assert!(chat.held_back(0));
    chat.leave(1);
    assert!(!chat.held_back(0));
    let heard: String = (0..10)
        .map(|i| format!("<alice> {}\n", numbered(i)))
        .collect();
    assert_eq!(
        chat.got(2),
        heard[..3 * 39].to_owned() + "* bob disconnected\n" + &heard[3 * 39..]
    );
    // A held-back sender that leaves is forgotten by the member it waited on, whose
    // output then drains with nobody to release.
    chat.h.set_peer_window(Some(0));
    for i in 0..3 {
        chat.say(2, &numbered(i));
    }
    assert!(chat.held_back(2));
    chat.leave(2);
    chat.h.set_peer_window(None);
    assert!(chat.h.is_open());
    assert!(chat.got(0).ends_with("* carol disconnected\n"));
    chat.h.assert_clean();
}
