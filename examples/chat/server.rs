//! The chat's shared state: members, nicks and rooms.
//!
//! Every operation writes its lines straight to the recipients' connections through
//! the caller's [`Context`]: a line for a room is composed once and handed to the
//! reactor once per recipient. The reactor gathers the small writes a connection gets
//! during one turn and sends them with one system call at the end of the turn (a
//! connection whose gathered bytes would pass 16 KiB is written at once). Under load,
//! lines from many senders that arrive in one turn thus cost each recipient one
//! system call, not one per line, which is what the load rig's fanout scenario
//! measures.
//!
//! Flow control: a member with more unsent output than the reactor's high watermark is
//! congested. Whoever writes a line to a congested member (a room line, a `/msg`, a
//! notice, even an answer to the member itself) is its *sender*: the server stops
//! reading from the sender at once, in the middle of its input (the framer delivers no
//! further line until reading resumes), and notes that the sender waits on that member.
//! When the member's output drains to the low watermark ([`Server::drained`], from its
//! `resume_producing`) or the member leaves, the senders waiting on it read again, each
//! once nothing else holds it back. So a sender goes as fast as its slowest recipient
//! reads, and nothing is dropped. The server does not wait for the congested member's
//! `pause_producing`: that notice comes only once the sender's whole read (many lines)
//! has been delivered, which could queue a read's worth of lines for each recipient.
//! Cutting off a member that does not read at all is the session's business (its slow
//! timer), or the reactor's write cap.
//!
//! Text from members is cleaned on the way (see [`crate::text`]): what others
//! receive is valid UTF-8 without control characters.
//!
//! Federation (`--redis`): each operation, once it has delivered locally, tells the
//! other servers its [`Event`] (a member's: joined, left, said...; the federation's
//! payloads in `wire.rs`) through the [`Federate`] the server owns (in the chat
//! program, `federation.rs`; this file knows nothing of Redis). Their news comes back
//! in through the `federation` section below, and is written through
//! [`Server::send`] like any line, holding back nobody.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use slab::Slab;
use twistor::websocket::WsSender;
use twistor::{ConnId, Context};

use crate::command::{Command, CommandError};
use crate::text::push_clean;
use crate::wire::Event;

/// Identifies a member while it is connected.
pub type MemberKey = usize;

type RoomKey = usize;

/// The room every member starts in.
pub const LOBBY: &str = "lobby";

/// How a member's connection carries the lines the server sends it.
#[derive(Debug)]
// tests/chat_logic.rs includes this file with line members only.
#[cfg_attr(test, allow(dead_code))]
pub enum MemberKind {
    /// The line protocol: each line as it is, `\n` included.
    Line,
    /// A WebSocket (ws.rs): each line one text message, without its `\n`, sent
    /// through the member's adapter's handle (nothing before the upgrade or after a
    /// close frame).
    WebSocket(WsSender),
}

struct Member {
    conn: ConnId,
    kind: MemberKind,
    nick: String,
    room: RoomKey,
    /// Senders whose reading is paused until this member's output drains.
    waiters: Vec<MemberKey>,
    /// Congested members this member waits on; it reads again when none is left.
    /// Short: the members congested at one time.
    blockers: Vec<MemberKey>,
}

struct Room {
    name: String,
    members: Vec<MemberKey>,
}

/// The whole chat: shared by every connection through an `Rc<RefCell<_>>`.
pub struct Server {
    members: Slab<Member>,
    nicks: HashMap<String, MemberKey>,
    rooms: Slab<Room>,
    /// Rooms by name, sorted for `/rooms`. A room exists while it has members.
    room_names: BTreeMap<String, RoomKey>,
    /// The number of the last `guestN` nick handed out.
    last_guest: u64,
    /// The line being sent: composed once, written to each recipient.
    line: Vec<u8>,
    /// Unsent output above which a member is congested.
    high_watermark_bytes: usize,
    /// The link to the other servers, with `--redis`.
    federation: Option<Box<dyn Federate>>,
}

/// Sets `line` to the concatenation of `parts` and a newline.
fn compose(line: &mut Vec<u8>, parts: &[&[u8]]) {
    line.clear();
    for part in parts {
        line.extend_from_slice(part);
    }
    line.push(b'\n');
}

/// Sets `line` to `prefix`, `text` cleaned (see [`crate::text`]) and a newline.
fn compose_text(line: &mut Vec<u8>, prefix: &[&[u8]], text: &[u8]) {
    line.clear();
    for part in prefix {
        line.extend_from_slice(part);
    }
    push_clean(line, text);
    line.push(b'\n');
}

impl Server {
    /// An empty chat whose members are congested above `high_watermark_bytes` of
    /// unsent output: the reactor's high watermark, so that a member's
    /// `pause_producing` and `resume_producing` match the server's idea of it.
    pub fn new(high_watermark_bytes: usize) -> Server {
        Server {
            members: Slab::new(),
            nicks: HashMap::new(),
            rooms: Slab::new(),
            room_names: BTreeMap::new(),
            last_guest: 0,
            line: Vec::new(),
            high_watermark_bytes,
            federation: None,
        }
    }

    // ----- membership -----

    /// A new connection of `kind`: it becomes `guestN` in the lobby and is welcomed;
    /// the lobby hears that it joined.
    pub fn arrive(&mut self, cx: &mut Context<'_>, conn: ConnId, kind: MemberKind) -> MemberKey {
        let nick = self.fresh_guest_nick();
        let room = self.room_named(LOBBY);
        let key = self.members.insert(Member {
            conn,
            kind,
            nick: nick.clone(),
            room,
            waiters: Vec::new(),
            blockers: Vec::new(),
        });
        self.nicks.insert(nick, key);
        self.rooms[room].members.push(key);
        let nick = self.members[key].nick.as_bytes();
        compose(
            &mut self.line,
            &[b"* welcome ", nick, b", you are in ", LOBBY.as_bytes()],
        );
        self.send(cx, key, Some(key));
        let nick = self.members[key].nick.as_bytes();
        compose(
            &mut self.line,
            &[b"* ", nick, b" joined ", LOBBY.as_bytes()],
        );
        self.send_room(cx, room, Some(key), Some(key));
        if let Some(fed) = &mut self.federation {
            let nick = &self.members[key].nick;
            let joined = Event::Joined { nick, room: LOBBY };
            fed.tell(cx, Some((key, conn)), &joined);
            if fed.arrived(cx, self.last_guest) {
                self.notice(cx, key, b"federation lost");
            }
        }
        key
    }

    /// The member leaves the server: the senders it held back read again, and its
    /// room hears `* NICK disconnected`.
    pub fn depart(&mut self, cx: &mut Context<'_>, key: MemberKey) {
        // It waits on nobody any more, and nobody waits on it.
        for blocker in std::mem::take(&mut self.members[key].blockers) {
            self.members[blocker].waiters.retain(|&w| w != key);
        }
        self.drained(cx, key);
        let member = &self.members[key];
        compose(
            &mut self.line,
            &[b"* ", member.nick.as_bytes(), b" disconnected"],
        );
        let room = member.room;
        // Nobody to hold back: the line is the server's own.
        self.send_room(cx, room, Some(key), None);
        if let Some(fed) = &mut self.federation {
            let nick = &self.members[key].nick;
            let room = &self.rooms[room].name;
            fed.tell(cx, None, &Event::Gone { nick, room });
            fed.departed(cx, key, nick);
        }
        self.leave_room(key, room);
        let member = self.members.remove(key);
        self.nicks.remove(&member.nick);
    }

    /// Member `key`'s output has drained to the low watermark (its session's
    /// `resume_producing`): the senders it held back read again, each once no other
    /// congested member holds it back.
    pub fn drained(&mut self, cx: &mut Context<'_>, key: MemberKey) {
        let mut waiters = std::mem::take(&mut self.members[key].waiters);
        for &waiter in &waiters {
            let w = &mut self.members[waiter];
            w.blockers.retain(|&b| b != key);
            let federation = self.federation.as_ref();
            if w.blockers.is_empty() && federation.is_none_or(|f| f.lets_read(waiter)) {
                cx.conn(w.conn).resume_reading();
            }
        }
        // Keep the vector's room for the next time this member is congested.
        waiters.clear();
        self.members[key].waiters = waiters;
    }

    /// True while member `key` is held back, waiting on a congested member.
    #[cfg(test)]
    pub fn is_held_back(&self, key: MemberKey) -> bool {
        !self.members[key].blockers.is_empty()
    }

    /// Carries out a command of member `key`. `/quit` is the caller's, since it
    /// closes the connection.
    pub fn execute(&mut self, cx: &mut Context<'_>, key: MemberKey, command: Command<'_>) {
        match command {
            Command::Nothing | Command::Quit => {}
            Command::Say(text) => self.say(cx, key, text),
            Command::Nick(nick) => self.rename(cx, key, nick),
            Command::Join(room) => self.join(cx, key, room),
            Command::Who => self.who(cx, key),
            Command::Rooms => self.list_rooms(cx, key),
            Command::Msg { to, text } => self.private(cx, key, to, text),
            Command::Me(text) => {
                let member = &self.members[key];
                let nick = member.nick.as_bytes();
                compose_text(&mut self.line, &[b"* ", nick, b" "], text);
                self.send_room(cx, member.room, None, Some(key));
                if let Some(fed) = &mut self.federation {
                    let member = &self.members[key];
                    let (nick, room) = (&member.nick, &self.rooms[member.room].name);
                    let me = Event::Me { nick, room, text };
                    fed.tell(cx, Some((key, member.conn)), &me);
                }
            }
        }
    }

    /// Sends `* TEXT` to member `key` alone.
    pub fn notice(&mut self, cx: &mut Context<'_>, key: MemberKey, text: &[u8]) {
        compose(&mut self.line, &[b"* ", text]);
        self.send(cx, key, Some(key));
    }

    /// Sends `* error: ...` to member `key`.
    pub fn error(&mut self, cx: &mut Context<'_>, key: MemberKey, error: CommandError) {
        self.error_text(cx, key, &[error.message().as_bytes()]);
    }

    fn error_text(&mut self, cx: &mut Context<'_>, key: MemberKey, parts: &[&[u8]]) {
        self.line.clear();
        self.line.extend_from_slice(b"* error: ");
        for part in parts {
            self.line.extend_from_slice(part);
        }
        self.line.push(b'\n');
        self.send(cx, key, Some(key));
    }

    // ----- commands -----

    fn say(&mut self, cx: &mut Context<'_>, key: MemberKey, text: &[u8]) {
        let member = &self.members[key];
        let nick = member.nick.as_bytes();
        compose_text(&mut self.line, &[b"<", nick, b"> "], text);
        self.send_room(cx, member.room, Some(key), Some(key));
        if let Some(fed) = &mut self.federation {
            let member = &self.members[key];
            let (nick, room) = (&member.nick, &self.rooms[member.room].name);
            fed.tell(
                cx,
                Some((key, member.conn)),
                &Event::Said { nick, room, text },
            );
        }
    }

    fn rename(&mut self, cx: &mut Context<'_>, key: MemberKey, nick: &str) {
        if self.members[key].nick == nick {
            return self.error_text(cx, key, &[b"you are already ", nick.as_bytes()]);
        }
        let elsewhere = self.federation.as_ref().is_some_and(|f| f.is_taken(nick));
        if self.nicks.contains_key(nick) || elsewhere {
            return self.nick_taken(cx, key, nick);
        }
        let conn = self.members[key].conn;
        if let Some(fed) = &mut self.federation {
            // Renamed once Redis grants the nick (`rename_now`).
            if fed.claim(cx, key, conn, nick) {
                return;
            }
        }
        let (old, room) = self.rename_now(cx, key, nick);
        if let Some(fed) = &mut self.federation {
            let (new, room) = (nick, room.as_str());
            fed.tell(
                cx,
                Some((key, conn)),
                &Event::Renamed {
                    old: &old,
                    new,
                    room,
                },
            );
        }
    }

    /// Renames member `key` to `nick`, which must be free, and tells its room;
    /// returns the old nick and the room's name.
    pub fn rename_now(
        &mut self,
        cx: &mut Context<'_>,
        key: MemberKey,
        nick: &str,
    ) -> (String, String) {
        let old = self.members[key].nick.as_bytes();
        compose(&mut self.line, &[b"* ", old, b" is now ", nick.as_bytes()]);
        let old = std::mem::replace(&mut self.members[key].nick, nick.to_owned());
        self.nicks.remove(&old);
        self.nicks.insert(nick.to_owned(), key);
        self.send_room(cx, self.members[key].room, None, Some(key));
        (old, self.rooms[self.members[key].room].name.clone())
    }

    /// `* error: nick NICK is taken`, to member `key`.
    pub fn nick_taken(&mut self, cx: &mut Context<'_>, key: MemberKey, nick: &str) {
        self.error_text(cx, key, &[b"nick ", nick.as_bytes(), b" is taken"]);
    }

    fn join(&mut self, cx: &mut Context<'_>, key: MemberKey, name: &str) {
        let old = self.members[key].room;
        if self.rooms[old].name == name {
            return self.error_text(cx, key, &[b"you are already in ", name.as_bytes()]);
        }
        // The old room may be gone by the time the others hear of it.
        let federated_old = self
            .federation
            .as_ref()
            .map(|_| self.rooms[old].name.clone());
        let nick = self.members[key].nick.as_bytes();
        let old_name = self.rooms[old].name.as_bytes();
        compose(&mut self.line, &[b"* ", nick, b" left ", old_name]);
        self.send_room(cx, old, Some(key), Some(key));
        self.leave_room(key, old);
        let new = self.room_named(name);
        self.rooms[new].members.push(key);
        self.members[key].room = new;
        let nick = self.members[key].nick.as_bytes();
        compose(&mut self.line, &[b"* ", nick, b" joined ", name.as_bytes()]);
        self.send_room(cx, new, None, Some(key));
        if let (Some(fed), Some(old)) = (&mut self.federation, federated_old) {
            let member = &self.members[key];
            let (nick, sender) = (&member.nick, Some((key, member.conn)));
            fed.tell(cx, sender, &Event::Left { nick, room: &old });
            fed.tell(cx, sender, &Event::Joined { nick, room: name });
        }
    }

    /// `* in ROOM: a, b, c`, nicks sorted (byte order, so `Zed` before `amy`).
    fn who(&mut self, cx: &mut Context<'_>, key: MemberKey) {
        let room = &self.rooms[self.members[key].room];
        let mut nicks: Vec<&str> = room
            .members
            .iter()
            .map(|&k| self.members[k].nick.as_str())
            .collect();
        if let Some(fed) = &self.federation {
            fed.members_in(&room.name, &mut nicks);
        }
        nicks.sort_unstable();
        let line = &mut self.line;
        line.clear();
        let _ = write!(line, "* in {}: {}", room.name, nicks.join(", "));
        line.push(b'\n');
        self.send(cx, key, Some(key));
    }

    /// `* rooms: kitchen (1), lobby (3)`, sorted by name.
    fn list_rooms(&mut self, cx: &mut Context<'_>, key: MemberKey) {
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"* rooms: ");
        // Rooms with members on any server, counted over all of them.
        let mut rooms: BTreeMap<&str, usize> = (self.room_names.iter())
            .map(|(name, &room)| (name.as_str(), self.rooms[room].members.len()))
            .collect();
        if let Some(fed) = &self.federation {
            fed.count_rooms(&mut rooms);
        }
        for (i, (name, count)) in rooms.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            let _ = write!(line, "{separator}{name} ({count})");
        }
        line.push(b'\n');
        self.send(cx, key, Some(key));
    }

    fn private(&mut self, cx: &mut Context<'_>, key: MemberKey, to: &[u8], text: &[u8]) {
        let target = std::str::from_utf8(to)
            .ok()
            .and_then(|nick| self.nicks.get(nick).copied());
        let Some(target) = target else {
            if let Some(fed) = &mut self.federation {
                let remote = std::str::from_utf8(to).ok().filter(|to| fed.is_remote(to));
                if let Some(to) = remote {
                    let member = &self.members[key];
                    let (from, sender) = (&member.nick, Some((key, member.conn)));
                    return fed.tell(cx, sender, &Event::Private { from, to, text });
                }
            }
            // The name is the sender's own input, but it is cleaned all the same:
            // everything the server sends is clean UTF-8.
            compose_text(&mut self.line, &[b"* error: no such nick: "], to);
            return self.send(cx, key, Some(key));
        };
        let from = self.members[key].nick.as_bytes();
        compose_text(&mut self.line, &[b"*private* <", from, b"> "], text);
        self.send(cx, target, Some(key));
    }

    // ----- rooms -----

    /// The room called `name`, created if it does not exist.
    fn room_named(&mut self, name: &str) -> RoomKey {
        if let Some(&room) = self.room_names.get(name) {
            return room;
        }
        let room = self.rooms.insert(Room {
            name: name.to_owned(),
            members: Vec::new(),
        });
        self.room_names.insert(name.to_owned(), room);
        room
    }

    /// Takes member `key` out of `room`, and drops the room if that emptied it.
    fn leave_room(&mut self, key: MemberKey, room: RoomKey) {
        let members = &mut self.rooms[room].members;
        if let Some(i) = members.iter().position(|&k| k == key) {
            members.swap_remove(i);
        }
        if members.is_empty() {
            let room = self.rooms.remove(room);
            self.room_names.remove(&room.name);
        }
    }

    // ----- output -----

    fn fresh_guest_nick(&mut self) -> String {
        if let Some(mut fed) = self.federation.take() {
            let nick = fed.guest_nick(self);
            self.federation = Some(fed);
            return nick;
        }
        loop {
            self.last_guest += 1;
            let nick = format!("guest{}", self.last_guest);
            // Someone may have taken this one with /nick already.
            if !self.nicks.contains_key(&nick) {
                return nick;
            }
        }
    }

    /// Writes the composed line to member `to`, then holds `sender` back if `to` is
    /// congested.
    ///
    /// A refused write means the connection is closing, or has just passed the write
    /// cap and is being closed for it: either way its `connection_lost` follows.
    fn send(&mut self, cx: &mut Context<'_>, to: MemberKey, sender: Option<MemberKey>) {
        let member = &self.members[to];
        match &member.kind {
            MemberKind::Line => cx.conn(member.conn).write(&self.line),
            MemberKind::WebSocket(ws) => {
                // Every line the server composes is UTF-8: text is cleaned, names
                // are ASCII.
                let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
                let text = std::str::from_utf8(line).expect("lines are UTF-8");
                ws.send_text(cx, text)
            }
        };
        self.hold_back(cx, sender, to);
    }

    /// Writes the composed line to every member of `room` but `except`, holding
    /// `sender` back if any of them is congested. The line goes to every one of them
    /// all the same: holding back stops the sender's next line, not this one.
    fn send_room(
        &mut self,
        cx: &mut Context<'_>,
        room: RoomKey,
        except: Option<MemberKey>,
        sender: Option<MemberKey>,
    ) {
        for i in 0..self.rooms[room].members.len() {
            let to = self.rooms[room].members[i];
            if Some(to) != except {
                self.send(cx, to, sender);
            }
        }
    }

    /// Stops reading from `sender` if member `to` is congested, until `to` drains
    /// ([`drained`](Self::drained)) or leaves. `None` is the server itself (a
    /// departure's notice), which nothing holds back.
    fn hold_back(&mut self, cx: &mut Context<'_>, sender: Option<MemberKey>, to: MemberKey) {
        let Some(sender) = sender else { return };
        if cx.conn(self.members[to].conn).buffered() <= self.high_watermark_bytes {
            return;
        }
        let s = &mut self.members[sender];
        if s.blockers.contains(&to) {
            return;
        }
        s.blockers.push(to);
        // At once, not at the end of the sender's read: the framer delivers no further
        // line of it, so each recipient gets at most this one line more.
        cx.conn(s.conn).pause_reading();
        self.members[to].waiters.push(sender);
    }
}

// ----- federation -----

/// The other servers, as the server sees them: what it tells them, and what it asks
/// of them. Calls with a `sender` may pause that member's reading (the federation
/// then says so through [`lets_read`](Federate::lets_read), and resumes it with
/// [`Server::resume_if_free`]).
pub trait Federate {
    /// Tells the others `event`, what member `sender` (key and connection) did:
    /// never [`Heartbeat`](Event::Heartbeat), [`Sync`](Event::Sync) or
    /// [`Roster`](Event::Roster), which are the federation's own.
    fn tell(
        &mut self,
        cx: &mut Context<'_>,
        sender: Option<(MemberKey, ConnId)>,
        event: &Event<'_>,
    );
    /// A member arrived (and was told as [`Event::Joined`]). True if it is to be told
    /// `* federation lost`.
    fn arrived(&mut self, cx: &mut Context<'_>, last_guest: u64) -> bool;
    /// Member `key`, called `nick`, left the server (and was told as [`Event::Gone`]).
    fn departed(&mut self, cx: &mut Context<'_>, key: MemberKey, nick: &str);
    /// Claims `nick` for member `key`, whose reading pauses until the answer, when
    /// the federation renames it ([`Server::rename_now`]) or refuses
    /// ([`Server::nick_taken`]). False if it cannot ask now: the caller renames.
    fn claim(&mut self, cx: &mut Context<'_>, key: MemberKey, conn: ConnId, nick: &str) -> bool;
    /// A fresh `guestN` nick, free on every server as far as is known.
    fn guest_nick(&mut self, server: &mut Server) -> String;
    /// True while the link to the others is up.
    fn is_up(&self) -> bool;
    /// True if `nick` is in use on another server, or being claimed here.
    fn is_taken(&self, nick: &str) -> bool;
    /// True if `nick` is a member of another server.
    fn is_remote(&self, nick: &str) -> bool;
    /// False while the federation holds member `key`'s reading paused.
    fn lets_read(&self, key: MemberKey) -> bool;
    /// Adds the other servers' members in `room` to `nicks`.
    fn members_in<'a>(&'a self, room: &str, nicks: &mut Vec<&'a str>);
    /// Adds the other servers' members to `rooms` (room name to member count).
    fn count_rooms<'a>(&'a self, rooms: &mut BTreeMap<&'a str, usize>);
    /// The federation itself, for its own callbacks.
    #[allow(dead_code)] // used by the chat program's federation only, as `put_federation` below
    fn as_any(&mut self) -> &mut dyn Any;
}

// Called by the chat program's federation, which the tests that include this file
// without it do not have.
#[allow(dead_code)]
impl Server {
    /// Joins the server to a federation.
    pub fn put_federation(&mut self, federation: Box<dyn Federate>) {
        self.federation = Some(federation);
    }

    /// Takes the federation out, for code that needs it and the server together;
    /// [`put_federation`](Self::put_federation) puts it back.
    pub fn take_federation(&mut self) -> Option<Box<dyn Federate>> {
        self.federation.take()
    }

    /// True once the federation's link is up (false without one).
    pub fn federation_up(&self) -> bool {
        self.federation.as_ref().is_some_and(|f| f.is_up())
    }

    /// True if a member here has `nick`.
    pub fn has_nick(&self, nick: &str) -> bool {
        self.nicks.contains_key(nick)
    }

    /// The member here called `nick`.
    pub fn member_named(&self, nick: &str) -> Option<MemberKey> {
        self.nicks.get(nick).copied()
    }

    /// Member `key`'s connection, if it is here (a key is reused once its member
    /// leaves; a connection id never is).
    pub fn member_conn(&self, key: MemberKey) -> Option<ConnId> {
        self.members.get(key).map(|m| m.conn)
    }

    /// Every nick here.
    pub fn nicks(&self) -> Vec<String> {
        self.nicks.keys().cloned().collect()
    }

    /// Every member here: nick and room.
    pub fn roster(&self) -> Vec<(String, String)> {
        let room = |m: &Member| self.rooms[m.room].name.clone();
        self.members
            .iter()
            .map(|(_, m)| (m.nick.clone(), room(m)))
            .collect()
    }

    /// The number of the last `guestN` handed out here.
    pub fn last_guest_number(&self) -> u64 {
        self.last_guest
    }

    /// The next guest number after the last handed out here.
    pub fn next_guest_number(&mut self) -> u64 {
        self.last_guest += 1;
        self.last_guest
    }

    /// Guest number `n` was handed out (from the federation's pool): numbers counted
    /// here go on above it.
    pub fn note_guest_number(&mut self, n: u64) {
        self.last_guest = self.last_guest.max(n);
    }

    /// Member `key` reads again, unless a congested member holds it back. (The
    /// federation has checked its own reasons.)
    pub fn resume_if_free(&mut self, cx: &mut Context<'_>, key: MemberKey) {
        if let Some(member) = self.members.get(key) {
            if member.blockers.is_empty() {
                cx.conn(member.conn).resume_reading();
            }
        }
    }

    /// A line from another server for the members here in room `name`: `parts`,
    /// then `text` cleaned if there is one. Nobody is held back for it.
    pub fn deliver_room(
        &mut self,
        cx: &mut Context<'_>,
        name: &str,
        parts: &[&[u8]],
        text: Option<&[u8]>,
    ) {
        let Some(&room) = self.room_names.get(name) else {
            return;
        };
        match text {
            Some(text) => compose_text(&mut self.line, parts, text),
            None => compose(&mut self.line, parts),
        }
        self.send_room(cx, room, None, None);
    }

    /// A `/msg` from another server for member `to`, if it is here.
    pub fn deliver_private(
        &mut self,
        cx: &mut Context<'_>,
        to: &str,
        parts: &[&[u8]],
        text: &[u8],
    ) {
        let Some(&key) = self.nicks.get(to) else {
            return;
        };
        compose_text(&mut self.line, parts, text);
        self.send(cx, key, None);
    }

    /// `* TEXT` to every member here.
    pub fn notice_all(&mut self, cx: &mut Context<'_>, text: &[u8]) {
        compose(&mut self.line, &[b"* ", text]);
        let keys: Vec<MemberKey> = self.members.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.send(cx, key, None);
        }
    }
}
