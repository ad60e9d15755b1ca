//! The chat's command parser: one line in, one [`Command`] or [`CommandError`] out.
//!
//! Pure: bytes in, borrowed slices out, no state and no I/O, so every rule is tested
//! here on plain byte strings. Names are checked here too, so that the server only
//! ever sees nicks and room names it can store.
//!
//! The rules:
//! - a line that does not start with `/` is chat text ([`Command::Say`]); an empty
//!   line is [`Command::Nothing`];
//! - otherwise the first word (up to a space or tab) names the command,
//!   case-insensitively (`/NICK` is `/nick`);
//! - `/nick` and `/join` take the rest of the line, trimmed, which must be a
//!   [valid name](valid_name);
//! - `/msg` takes a nick (the next word) and the rest of the line, its leading blanks
//!   skipped, as the text; `/me` takes the rest of the line likewise; the text must
//!   not be empty;
//! - `/who`, `/rooms` and `/quit` ignore anything after them.

/// Longest nick or room name, in bytes.
pub const MAX_NAME_BYTES: usize = 32;

/// What a line asks for. Text is the raw bytes of the line (chat is not required to
/// be UTF-8: the server cleans text as it relays it); names are valid ASCII.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty line: ignored.
    Nothing,
    /// Chat text for the rest of the room.
    Say(&'a [u8]),
    /// `/nick NAME`
    Nick(&'a str),
    /// `/join ROOM`
    Join(&'a str),
    /// `/who`
    Who,
    /// `/rooms`
    Rooms,
    /// `/msg NICK TEXT`; the nick is not checked for validity (an invalid one simply
    /// names nobody).
    Msg { to: &'a [u8], text: &'a [u8] },
    /// `/me TEXT`
    Me(&'a [u8]),
    /// `/quit`
    Quit,
}

/// Why a line is not a command the server can carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// A `/word` that is not a command.
    Unknown,
    /// `/nick` with an empty or invalid name.
    BadNick,
    /// `/join` with an empty or invalid room name.
    BadRoom,
    /// `/msg` without a nick or without text.
    MsgUsage,
    /// `/me` without text.
    MeUsage,
}

impl CommandError {
    /// The text of the `* error: ...` notice.
    pub fn message(self) -> &'static str {
        match self {
            CommandError::Unknown => "unknown command",
            CommandError::BadNick => "invalid nick: use 1-32 of A-Z a-z 0-9 _ -",
            CommandError::BadRoom => "invalid room name: use 1-32 of A-Z a-z 0-9 _ -",
            CommandError::MsgUsage => "usage: /msg NICK TEXT",
            CommandError::MeUsage => "usage: /me TEXT",
        }
    }
}

/// Parses one line, without its line ending.
pub fn parse(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let Some(body) = line.strip_prefix(b"/") else {
        return Ok(match line.is_empty() {
            true => Command::Nothing,
            false => Command::Say(line),
        });
    };
    let (word, rest) = split_word(body);
    let is = |name: &str| word.eq_ignore_ascii_case(name.as_bytes());
    if is("nick") {
        name(rest).map(Command::Nick).ok_or(CommandError::BadNick)
    } else if is("join") {
        name(rest).map(Command::Join).ok_or(CommandError::BadRoom)
    } else if is("who") {
        Ok(Command::Who)
    } else if is("rooms") {
        Ok(Command::Rooms)
    } else if is("msg") {
        let (to, text) = split_word(rest);
        match to.is_empty() || text.is_empty() {
            true => Err(CommandError::MsgUsage),
            false => Ok(Command::Msg { to, text }),
        }
    } else if is("me") {
        match rest.is_empty() {
            true => Err(CommandError::MeUsage),
            false => Ok(Command::Me(rest)),
        }
    } else if is("quit") {
        Ok(Command::Quit)
    } else {
        Err(CommandError::Unknown)
    }
}

/// True for 1 to [`MAX_NAME_BYTES`] bytes of `[A-Za-z0-9_-]`: the rule for nicks and
/// room names alike.
pub fn valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `raw`, trimmed, if it is a valid name.
fn name(raw: &[u8]) -> Option<&str> {
    let trimmed = raw.trim_ascii();
    // A valid name is ASCII, so the conversion cannot fail once it is checked.
    valid_name(trimmed)
        .then(|| std::str::from_utf8(trimmed).ok())
        .flatten()
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The word at the start of `s` (empty if `s` starts with a blank) and what follows
/// it, leading blanks skipped.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&b| is_blank(b)).unwrap_or(s.len());
    (&s[..end], skip_blanks(&s[end..]))
}

fn skip_blanks(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_blank(b)).unwrap_or(s.len());
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Result<Command<'_>, CommandError>) {
        assert_eq!(parse(line.as_bytes()), expected, "parsing {line:?}");
    }

    #[test]
    fn plain_lines_are_chat_text() {
        check("", Ok(Command::Nothing));
        check("hello", Ok(Command::Say(b"hello")));
        check(" /not a command", Ok(Command::Say(b" /not a command")));
        check("  ", Ok(Command::Say(b"  ")));
    }

    #[test]
    fn nick_and_join_take_the_trimmed_rest_as_a_name() {
        check("/nick bob", Ok(Command::Nick("bob")));
        check("/nick   Bob_the-2nd  ", Ok(Command::Nick("Bob_the-2nd")));
        check("/join\tkitchen", Ok(Command::Join("kitchen")));
        check("/NICK bob", Ok(Command::Nick("bob")));
        check("/nick", Err(CommandError::BadNick));
        check("/nick   ", Err(CommandError::BadNick));
        check("/nick bob smith", Err(CommandError::BadNick));
        check("/nick b.b", Err(CommandError::BadNick));
        check("/nick héllo", Err(CommandError::BadNick));
        check("/join", Err(CommandError::BadRoom));
        check("/join a/b", Err(CommandError::BadRoom));
        let longest = "x".repeat(MAX_NAME_BYTES);
        check(&format!("/nick {longest}"), Ok(Command::Nick(&longest)));
        check(&format!("/nick {longest}x"), Err(CommandError::BadNick));
    }

    #[test]
    fn msg_takes_a_nick_and_text() {
        let msg = |to: &'static [u8], text: &'static [u8]| Ok(Command::Msg { to, text });
        check("/msg bob hi there", msg(b"bob", b"hi there"));
        check("/msg   bob   hi  ", msg(b"bob", b"hi  "));
        check("/msg bob", Err(CommandError::MsgUsage));
        check("/msg bob   ", Err(CommandError::MsgUsage));
        check("/msg", Err(CommandError::MsgUsage));
    }

    #[test]
    fn me_takes_the_rest_as_text() {
        check("/me waves", Ok(Command::Me(b"waves")));
        check("/me   waves  back", Ok(Command::Me(b"waves  back")));
        check("/me", Err(CommandError::MeUsage));
        check("/me  ", Err(CommandError::MeUsage));
    }

    #[test]
    fn argumentless_commands_ignore_the_rest() {
        check("/who", Ok(Command::Who));
        check("/who is there", Ok(Command::Who));
        check("/rooms", Ok(Command::Rooms));
        check("/quit", Ok(Command::Quit));
        check("/Quit now", Ok(Command::Quit));
    }

    #[test]
    fn anything_else_after_a_slash_is_unknown() {
        for line in [
            "/",
            "/ nick bob",
            "/dance",
            "/nickname bob",
            "//me x",
            "/quitx",
        ] {
            check(line, Err(CommandError::Unknown));
        }
    }

    #[test]
    fn names_are_1_to_32_of_the_charset() {
        assert!(valid_name(b"a"));
        assert!(valid_name(b"A-z_0-9"));
        assert!(!valid_name(b""));
        assert!(!valid_name(b"a b"));
        assert!(!valid_name(b"a\xff"));
        assert!(!valid_name(&[b'a'; 33]));
    }
}
