//! What one chat server tells the others over Redis: [`Event`]s, as pub/sub payloads.
//!
//! Pure: an event and its origin in, bytes out, and back. A payload is one line of
//! fields separated by single spaces, the kind first and the origin's node id second;
//! a text, when there is one, is the rest of the payload, bytes as the member sent
//! them (the receiving server cleans them as it relays them, as it does its own
//! members' text). Names (nicks, rooms, node ids) are checked on the way in, since
//! they go into the lines the receiver writes to its members:
//!
//! | payload | event |
//! |---|---|
//! | `hb NODE` | [`Event::Heartbeat`] |
//! | `sync NODE [NICK ROOM]...` | [`Event::Sync`]: my members; send me yours |
//! | `roster NODE [NICK ROOM]...` | [`Event::Roster`]: my members |
//! | `join NODE NICK ROOM` | [`Event::Joined`] (a new member is in `lobby`) |
//! | `left NODE NICK ROOM` | [`Event::Left`] |
//! | `gone NODE NICK ROOM` | [`Event::Gone`] (disconnected) |
//! | `nick NODE OLD NEW ROOM` | [`Event::Renamed`] |
//! | `say NODE NICK ROOM TEXT` | [`Event::Said`] |
//! | `me NODE NICK ROOM TEXT` | [`Event::Me`] |
//! | `msg NODE FROM TO TEXT` | [`Event::Private`] |

/// Longest node id, in bytes: room for a host name and a pid, say.
pub const MAX_NODE_BYTES: usize = 64;

/// Longest nick or room name, in bytes (as `command::MAX_NAME_BYTES`).
const MAX_NAME_BYTES: usize = 32;

/// A member as the roster lists it: its nick and its room.
pub type Entry<'a> = (&'a str, &'a str);

/// One thing a server tells the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// I am alive (and so is my link to Redis).
    Heartbeat,
    /// My whole roster; answer with yours (sent when my link comes up).
    Sync(Vec<Entry<'a>>),
    /// My whole roster (the answer to a [`Sync`](Event::Sync)).
    Roster(Vec<Entry<'a>>),
    /// NICK is in ROOM: a new member (in the lobby) or a `/join`.
    Joined { nick: &'a str, room: &'a str },
    /// NICK left ROOM for another (a `/join`; the [`Joined`](Event::Joined) follows).
    Left { nick: &'a str, room: &'a str },
    /// NICK, in ROOM, disconnected.
    Gone { nick: &'a str, room: &'a str },
    /// OLD, in ROOM, is now NEW.
    Renamed {
        old: &'a str,
        new: &'a str,
        room: &'a str,
    },
    /// A line for ROOM.
    Said {
        nick: &'a str,
        room: &'a str,
        text: &'a [u8],
    },
    /// A `/me` for ROOM.
    Me {
        nick: &'a str,
        room: &'a str,
        text: &'a [u8],
    },
    /// A `/msg` for TO, wherever it is.
    Private {
        from: &'a str,
        to: &'a str,
        text: &'a [u8],
    },
}

/// Why a payload is not an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The first field is not a kind of event.
    UnknownKind,
    /// A field is missing, or a name is not a valid name.
    BadField,
}

/// Sets `out` to the payload of `event` from `node`.
pub fn encode(out: &mut Vec<u8>, node: &str, event: &Event<'_>) {
    out.clear();
    let (kind, names, text): (&str, Vec<&str>, Option<&[u8]>) = match event {
        Event::Heartbeat => ("hb", vec![], None),
        Event::Sync(roster) | Event::Roster(roster) => {
            let kind = match event {
                Event::Sync(_) => "sync",
                _ => "roster",
            };
            let names = roster.iter().flat_map(|&(n, r)| [n, r]).collect();
            (kind, names, None)
        }
        Event::Joined { nick, room } => ("join", vec![nick, room], None),
        Event::Left { nick, room } => ("left", vec![nick, room], None),
        Event::Gone { nick, room } => ("gone", vec![nick, room], None),
        Event::Renamed { old, new, room } => ("nick", vec![old, new, room], None),
        Event::Said { nick, room, text } => ("say", vec![nick, room], Some(text)),
        Event::Me { nick, room, text } => ("me", vec![nick, room], Some(text)),
        Event::Private { from, to, text } => ("msg", vec![from, to], Some(text)),
    };
    out.extend_from_slice(kind.as_bytes());
    out.push(b' ');
    out.extend_from_slice(node.as_bytes());
    for name in names {
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
    }
    if let Some(text) = text {
        out.push(b' ');
        out.extend_from_slice(text);
    }
}

/// The origin's node id and the event of a payload.
pub fn decode(payload: &[u8]) -> Result<(&str, Event<'_>), WireError> {
    let mut fields = Fields(payload);
    let kind = fields.next().ok_or(WireError::UnknownKind)?;
    let node = fields.name(MAX_NODE_BYTES)?;
    let mut name = || fields.name(MAX_NAME_BYTES);
    let event = match kind {
        b"hb" => Event::Heartbeat,
        b"sync" | b"roster" => {
            let mut roster = Vec::new();
            while !fields.0.is_empty() {
                roster.push((fields.name(MAX_NAME_BYTES)?, fields.name(MAX_NAME_BYTES)?));
            }
            match kind {
                b"sync" => Event::Sync(roster),
                _ => Event::Roster(roster),
            }
        }
        b"join" => Event::Joined {
            nick: name()?,
            room: name()?,
        },
        b"left" => Event::Left {
            nick: name()?,
            room: name()?,
        },
        b"gone" => Event::Gone {
            nick: name()?,
            room: name()?,
        },
        b"nick" => Event::Renamed {
            old: name()?,
            new: name()?,
            room: name()?,
        },
        b"say" | b"me" | b"msg" => {
            let (a, b) = (name()?, name()?);
            let text = fields.rest()?;
            match kind {
                b"say" => Event::Said {
                    nick: a,
                    room: b,
                    text,
                },
                b"me" => Event::Me {
                    nick: a,
                    room: b,
                    text,
                },
                _ => Event::Private {
                    from: a,
                    to: b,
                    text,
                },
            }
        }
        _ => return Err(WireError::UnknownKind),
    };
    if !fields.0.is_empty() {
        return Err(WireError::BadField);
    }
    Ok((node, event))
}

/// True for 1 to `max` bytes of `[A-Za-z0-9_-]`: a nick, a room or a node id.
pub fn valid_name(name: &[u8], max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The fields of a payload, taken from the front.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    /// The next field, up to a space (which is consumed) or the end.
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let end = self.0.iter().position(|&b| b == b' ');
        let field = &self.0[..end.unwrap_or(self.0.len())];
        self.0 = match end {
            Some(i) => &self.0[i + 1..],
            None => &[],
        };
        Some(field)
    }

    /// The next field, which must be a valid name.
    fn name(&mut self, max: usize) -> Result<&'a str, WireError> {
        let field = self.next().ok_or(WireError::BadField)?;
        match valid_name(field, max) {
            // A valid name is ASCII.
            true => std::str::from_utf8(field).map_err(|_| WireError::BadField),
            false => Err(WireError::BadField),
        }
    }

    /// The rest: a text, which must not be empty.
    fn rest(&mut self) -> Result<&'a [u8], WireError> {
        let text = std::mem::take(&mut self.0);
        match text.is_empty() {
            true => Err(WireError::BadField),
            false => Ok(text),
        }
    }
}
