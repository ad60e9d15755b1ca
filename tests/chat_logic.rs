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

#[path = "../examples/chat/command.rs"]
#[allow(dead_code)]
mod command;
#[path = "../examples/chat/server.rs"]
mod server;
#[path = "../examples/chat/session.rs"]
mod session;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use server::{MemberKey, Server};
use session::ChatProtocol;
use twistor::testing::{Harness, HarnessBuilder};
use twistor::{ConnId, Context, Reactor, Reason};

/// `--max-line` for these tests.
const MAX_LINE: usize = 32;

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
        let server = Rc::new(RefCell::new(Server::default()));
        let mut h = settings.build(session::protocol(Rc::clone(&server), MAX_LINE));
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
