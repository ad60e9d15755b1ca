//! The chat's shared state: members, nicks, rooms, and the output waiting for each
//! member.
//!
//! Every operation here only queues lines: each member has an output buffer, and a
//! line for a room is composed once and appended to the buffer of every recipient
//! (no allocation per delivery once the buffers have grown). The buffers go to the
//! sockets in one write per member, either at the end of the reactor's turn
//! ([`Server::flush`], run from a zero-delay timer) or at once for a member whose
//! buffer passes [`FLUSH_BYTES`] ([`Server::write_urgent`]). Under load, lines from
//! many senders that arrive in one turn thus cost each recipient one system call,
//! not one per line, which is what the load rig's fanout scenario measures.
//!
//! A member that does not read is left to the reactor's write cap (the server's
//! `--max-backlog`): the write that would pass it closes that connection alone, and
//! its `connection_lost` tells the room.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use slab::Slab;
use twistor::{ConnId, Context};

use crate::command::{Command, CommandError};

/// Identifies a member while it is connected.
pub type MemberKey = usize;

type RoomKey = usize;

/// The room every member starts in.
pub const LOBBY: &str = "lobby";

/// Output queued for one member beyond which it is written at once instead of at the
/// end of the turn: one large write is as cheap as it gets, and this bounds what a
/// burst of input can make us hold per member within one turn.
const FLUSH_BYTES: usize = 16 * 1024;

struct Member {
    conn: ConnId,
    nick: String,
    room: RoomKey,
    /// Lines not yet handed to the reactor.
    out: Vec<u8>,
}

struct Room {
    name: String,
    members: Vec<MemberKey>,
}

/// Which members have output waiting, and whether a flush is on its way.
#[derive(Default)]
struct Pending {
    /// Members whose `out` was empty when a line was added to it (a key may appear
    /// twice, or belong to a member gone since: a flush skips empty buffers).
    dirty: Vec<MemberKey>,
    /// Members whose `out` passed [`FLUSH_BYTES`] since the last write.
    oversized: Vec<MemberKey>,
    /// A flush timer is set.
    flush_scheduled: bool,
}

impl Pending {
    fn push(&mut self, key: MemberKey, member: &mut Member, line: &[u8]) {
        let before = member.out.len();
        if before == 0 {
            self.dirty.push(key);
        }
        member.out.extend_from_slice(line);
        if before < FLUSH_BYTES && member.out.len() >= FLUSH_BYTES {
            self.oversized.push(key);
        }
    }
}

/// The whole chat: shared by every connection through an `Rc<RefCell<_>>`.
#[derive(Default)]
pub struct Server {
    members: Slab<Member>,
    nicks: HashMap<String, MemberKey>,
    rooms: Slab<Room>,
    /// Rooms by name, sorted for `/rooms`. A room exists while it has members.
    room_names: BTreeMap<String, RoomKey>,
    /// The number of the last `guestN` nick handed out.
    last_guest: u64,
    pending: Pending,
    /// The line being sent: composed once, copied to each recipient.
    line: Vec<u8>,
}

/// Sets `line` to the concatenation of `parts` and a newline.
fn compose(line: &mut Vec<u8>, parts: &[&[u8]]) {
    line.clear();
    for part in parts {
        line.extend_from_slice(part);
    }
    line.push(b'\n');
}

impl Server {
    // ----- membership -----

    /// A new connection: it becomes `guestN` in the lobby and is welcomed; the lobby
    /// hears that it joined.
    pub fn arrive(&mut self, conn: ConnId) -> MemberKey {
        let nick = self.fresh_guest_nick();
        let room = self.room_named(LOBBY);
        let key = self.members.insert(Member {
            conn,
            nick: nick.clone(),
            room,
            out: Vec::new(),
        });
        self.nicks.insert(nick, key);
        self.rooms[room].members.push(key);
        let nick = self.members[key].nick.as_bytes();
        compose(
            &mut self.line,
            &[b"* welcome ", nick, b", you are in ", LOBBY.as_bytes()],
        );
        self.send(key);
        let nick = self.members[key].nick.as_bytes();
        compose(
            &mut self.line,
            &[b"* ", nick, b" joined ", LOBBY.as_bytes()],
        );
        self.send_room(room, Some(key));
        key
    }

    /// The member leaves the server: its room hears `* NICK disconnected` and its
    /// unsent output is dropped.
    pub fn depart(&mut self, key: MemberKey) {
        let member = &self.members[key];
        compose(
            &mut self.line,
            &[b"* ", member.nick.as_bytes(), b" disconnected"],
        );
        let room = member.room;
        self.send_room(room, Some(key));
        self.leave_room(key, room);
        let member = self.members.remove(key);
        self.nicks.remove(&member.nick);
    }

    /// Carries out a command of member `key`. `/quit` is the caller's, since it
    /// closes the connection.
    pub fn execute(&mut self, key: MemberKey, command: Command<'_>) {
        match command {
            Command::Nothing | Command::Quit => {}
            Command::Say(text) => self.say(key, text),
            Command::Nick(nick) => self.rename(key, nick),
            Command::Join(room) => self.join(key, room),
            Command::Who => self.who(key),
            Command::Rooms => self.list_rooms(key),
            Command::Msg { to, text } => self.private(key, to, text),
            Command::Me(text) => {
                let member = &self.members[key];
                compose(&mut self.line, &[b"* ", member.nick.as_bytes(), b" ", text]);
                self.send_room(member.room, None);
            }
        }
    }

    /// Sends `* TEXT` to member `key` alone.
    pub fn notice(&mut self, key: MemberKey, text: &[u8]) {
        compose(&mut self.line, &[b"* ", text]);
        self.send(key);
    }

    /// Sends `* error: ...` to member `key`.
    pub fn error(&mut self, key: MemberKey, error: CommandError) {
        self.error_text(key, &[error.message().as_bytes()]);
    }

    fn error_text(&mut self, key: MemberKey, parts: &[&[u8]]) {
        self.line.clear();
        self.line.extend_from_slice(b"* error: ");
        for part in parts {
            self.line.extend_from_slice(part);
        }
        self.line.push(b'\n');
        self.send(key);
    }

    // ----- commands -----

    fn say(&mut self, key: MemberKey, text: &[u8]) {
        let member = &self.members[key];
        compose(&mut self.line, &[b"<", member.nick.as_bytes(), b"> ", text]);
        self.send_room(member.room, Some(key));
    }

    fn rename(&mut self, key: MemberKey, nick: &str) {
        if self.members[key].nick == nick {
            return self.error_text(key, &[b"you are already ", nick.as_bytes()]);
        }
        if self.nicks.contains_key(nick) {
            return self.error_text(key, &[b"nick ", nick.as_bytes(), b" is taken"]);
        }
        let old = self.members[key].nick.as_bytes();
        compose(&mut self.line, &[b"* ", old, b" is now ", nick.as_bytes()]);
        let old = std::mem::replace(&mut self.members[key].nick, nick.to_owned());
        self.nicks.remove(&old);
        self.nicks.insert(nick.to_owned(), key);
        self.send_room(self.members[key].room, None);
    }

    fn join(&mut self, key: MemberKey, name: &str) {
        let old = self.members[key].room;
        if self.rooms[old].name == name {
            return self.error_text(key, &[b"you are already in ", name.as_bytes()]);
        }
        let nick = self.members[key].nick.as_bytes();
        let old_name = self.rooms[old].name.as_bytes();
        compose(&mut self.line, &[b"* ", nick, b" left ", old_name]);
        self.send_room(old, Some(key));
        self.leave_room(key, old);
        let new = self.room_named(name);
        self.rooms[new].members.push(key);
        self.members[key].room = new;
        let nick = self.members[key].nick.as_bytes();
        compose(&mut self.line, &[b"* ", nick, b" joined ", name.as_bytes()]);
        self.send_room(new, None);
    }

    /// `* in ROOM: a, b, c`, nicks sorted (byte order, so `Zed` before `amy`).
    fn who(&mut self, key: MemberKey) {
        let room = &self.rooms[self.members[key].room];
        let mut nicks: Vec<&str> = room
            .members
            .iter()
            .map(|&k| self.members[k].nick.as_str())
            .collect();
        nicks.sort_unstable();
        let line = &mut self.line;
        line.clear();
        let _ = write!(line, "* in {}: {}", room.name, nicks.join(", "));
        line.push(b'\n');
        self.send(key);
    }

    /// `* rooms: kitchen (1), lobby (3)`, sorted by name.
    fn list_rooms(&mut self, key: MemberKey) {
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"* rooms: ");
        for (i, (name, &room)) in self.room_names.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            let count = self.rooms[room].members.len();
            let _ = write!(line, "{separator}{name} ({count})");
        }
        line.push(b'\n');
        self.send(key);
    }

    fn private(&mut self, key: MemberKey, to: &[u8], text: &[u8]) {
        let target = std::str::from_utf8(to)
            .ok()
            .and_then(|nick| self.nicks.get(nick).copied());
        let Some(target) = target else {
            return self.error_text(key, &[b"no such nick: ", to]);
        };
        let from = self.members[key].nick.as_bytes();
        compose(&mut self.line, &[b"*private* <", from, b"> ", text]);
        self.send(target);
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
        loop {
            self.last_guest += 1;
            let nick = format!("guest{}", self.last_guest);
            // Someone may have taken this one with /nick already.
            if !self.nicks.contains_key(&nick) {
                return nick;
            }
        }
    }

    /// Queues the composed line for member `key`.
    fn send(&mut self, key: MemberKey) {
        self.pending.push(key, &mut self.members[key], &self.line);
    }

    /// Queues the composed line for every member of `room` but `except`.
    fn send_room(&mut self, room: RoomKey, except: Option<MemberKey>) {
        let Server {
            members,
            rooms,
            pending,
            line,
            ..
        } = self;
        for &key in &rooms[room].members {
            if Some(key) != except {
                pending.push(key, &mut members[key], line);
            }
        }
    }

    /// Hands member `key`'s queued lines to the reactor.
    ///
    /// A refused write means the connection is closing, or has just passed the write
    /// cap and is being closed for it: either way its `connection_lost` follows.
    pub fn write_out(&mut self, key: MemberKey, cx: &mut Context<'_>) {
        let Some(member) = self.members.get_mut(key) else {
            return;
        };
        if !member.out.is_empty() {
            cx.write_to(member.conn, &member.out);
            member.out.clear();
        }
    }

    /// Writes out the members whose output passed [`FLUSH_BYTES`]; returns true if the
    /// caller must set the end-of-turn flush timer (it is then counted as set).
    pub fn write_urgent(&mut self, cx: &mut Context<'_>) -> bool {
        let oversized = std::mem::take(&mut self.pending.oversized);
        for &key in &oversized {
            self.write_out(key, cx);
        }
        self.pending.oversized = oversized;
        self.pending.oversized.clear();
        let due = !self.pending.dirty.is_empty() && !self.pending.flush_scheduled;
        self.pending.flush_scheduled |= due;
        due
    }

    /// Writes out every member's queued lines: the end of the turn.
    pub fn flush(&mut self, cx: &mut Context<'_>) {
        let dirty = std::mem::take(&mut self.pending.dirty);
        for &key in &dirty {
            self.write_out(key, cx);
        }
        // Give the (now empty) lists back, to keep their memory.
        self.pending.dirty = dirty;
        self.pending.dirty.clear();
        self.pending.oversized.clear();
        self.pending.flush_scheduled = false;
    }
}
