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

struct Member {
    conn: ConnId,
    nick: String,
    room: RoomKey,
}

struct Room {
    name: String,
    members: Vec<MemberKey>,
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
    /// The line being sent: composed once, written to each recipient.
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
    pub fn arrive(&mut self, cx: &mut Context<'_>, conn: ConnId) -> MemberKey {
        let nick = self.fresh_guest_nick();
        let room = self.room_named(LOBBY);
        let key = self.members.insert(Member {
            conn,
            nick: nick.clone(),
            room,
        });
        self.nicks.insert(nick, key);
        self.rooms[room].members.push(key);
        let nick = self.members[key].nick.as_bytes();
        compose(
            &mut self.line,
            &[b"* welcome ", nick, b", you are in ", LOBBY.as_bytes()],
        );
        self.send(cx, key);
        let nick = self.members[key].nick.as_bytes();
        compose(
            &mut self.line,
            &[b"* ", nick, b" joined ", LOBBY.as_bytes()],
        );
        self.send_room(cx, room, Some(key));
        key
    }

    /// The member leaves the server: its room hears `* NICK disconnected`.
    pub fn depart(&mut self, cx: &mut Context<'_>, key: MemberKey) {
        let member = &self.members[key];
        compose(
            &mut self.line,
            &[b"* ", member.nick.as_bytes(), b" disconnected"],
        );
        let room = member.room;
        self.send_room(cx, room, Some(key));
        self.leave_room(key, room);
        let member = self.members.remove(key);
        self.nicks.remove(&member.nick);
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
                compose(&mut self.line, &[b"* ", member.nick.as_bytes(), b" ", text]);
                self.send_room(cx, member.room, None);
            }
        }
    }

    /// Sends `* TEXT` to member `key` alone.
    pub fn notice(&mut self, cx: &mut Context<'_>, key: MemberKey, text: &[u8]) {
        compose(&mut self.line, &[b"* ", text]);
        self.send(cx, key);
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
        self.send(cx, key);
    }

    // ----- commands -----

    fn say(&mut self, cx: &mut Context<'_>, key: MemberKey, text: &[u8]) {
        let member = &self.members[key];
        compose(&mut self.line, &[b"<", member.nick.as_bytes(), b"> ", text]);
        self.send_room(cx, member.room, Some(key));
    }

    fn rename(&mut self, cx: &mut Context<'_>, key: MemberKey, nick: &str) {
        if self.members[key].nick == nick {
            return self.error_text(cx, key, &[b"you are already ", nick.as_bytes()]);
        }
        if self.nicks.contains_key(nick) {
            return self.error_text(cx, key, &[b"nick ", nick.as_bytes(), b" is taken"]);
        }
        let old = self.members[key].nick.as_bytes();
        compose(&mut self.line, &[b"* ", old, b" is now ", nick.as_bytes()]);
        let old = std::mem::replace(&mut self.members[key].nick, nick.to_owned());
        self.nicks.remove(&old);
        self.nicks.insert(nick.to_owned(), key);
        self.send_room(cx, self.members[key].room, None);
    }

    fn join(&mut self, cx: &mut Context<'_>, key: MemberKey, name: &str) {
        let old = self.members[key].room;
        if self.rooms[old].name == name {
            return self.error_text(cx, key, &[b"you are already in ", name.as_bytes()]);
        }
        let nick = self.members[key].nick.as_bytes();
        let old_name = self.rooms[old].name.as_bytes();
        compose(&mut self.line, &[b"* ", nick, b" left ", old_name]);
        self.send_room(cx, old, Some(key));
        self.leave_room(key, old);
        let new = self.room_named(name);
        self.rooms[new].members.push(key);
        self.members[key].room = new;
        let nick = self.members[key].nick.as_bytes();
        compose(&mut self.line, &[b"* ", nick, b" joined ", name.as_bytes()]);
        self.send_room(cx, new, None);
    }

    /// `* in ROOM: a, b, c`, nicks sorted (byte order, so `Zed` before `amy`).
    fn who(&mut self, cx: &mut Context<'_>, key: MemberKey) {
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
        self.send(cx, key);
    }

    /// `* rooms: kitchen (1), lobby (3)`, sorted by name.
    fn list_rooms(&mut self, cx: &mut Context<'_>, key: MemberKey) {
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"* rooms: ");
        for (i, (name, &room)) in self.room_names.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            let count = self.rooms[room].members.len();
            let _ = write!(line, "{separator}{name} ({count})");
        }
        line.push(b'\n');
        self.send(cx, key);
    }

    fn private(&mut self, cx: &mut Context<'_>, key: MemberKey, to: &[u8], text: &[u8]) {
        let target = std::str::from_utf8(to)
            .ok()
            .and_then(|nick| self.nicks.get(nick).copied());
        let Some(target) = target else {
            return self.error_text(cx, key, &[b"no such nick: ", to]);
        };
        let from = self.members[key].nick.as_bytes();
        compose(&mut self.line, &[b"*private* <", from, b"> ", text]);
        self.send(cx, target);
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

    /// Writes the composed line to member `key`.
    ///
    /// A refused write means the connection is closing, or has just passed the write
    /// cap and is being closed for it: either way its `connection_lost` follows.
    fn send(&self, cx: &mut Context<'_>, key: MemberKey) {
        cx.write_to(self.members[key].conn, &self.line);
    }

    /// Writes the composed line to every member of `room` but `except`.
    fn send_room(&self, cx: &mut Context<'_>, room: RoomKey, except: Option<MemberKey>) {
        for &key in &self.rooms[room].members {
            if Some(key) != except {
                cx.write_to(self.members[key].conn, &self.line);
            }
        }
    }
}
