//! The chat example's command parser (`examples/chat/command.rs`), on arbitrary lines.
//!
//! The input is cut into lines at `\n` (the server hands the parser a line without its
//! ending), and each line, at most `MAX_LINE` bytes, is parsed. Checked, for every line:
//! - the result is what the rules in the parser's module docs say, written again here
//!   from those docs: text for a line not starting with `/`, the command word matched
//!   case-insensitively, names trimmed and valid, `/msg` and `/me` text with leading
//!   blanks skipped and never empty, `/who`, `/rooms` and `/quit` ignoring the rest;
//! - every slice in the result lies inside the line, where the rules put it;
//! - upper-casing the command word changes nothing;
//! - the command, written back as a line (`/nick NAME`, `/msg TO TEXT`, ...), parses to
//!   the same command.

use super::chat_command::{parse, valid_name, Command, CommandError, MAX_NAME_BYTES};

/// The chat's default `--max-line`: longer lines never reach the parser.
const MAX_LINE: usize = 4096;

pub fn check(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        check_line(&line[..line.len().min(MAX_LINE)]);
    }
}

fn check_line(line: &[u8]) {
    let got = parse(line);
    assert_eq!(got, reference(line), "parsing {line:?}");
    if let Ok(command) = got {
        for part in slices(&command) {
            assert!(inside(part, line), "{part:?} is not a slice of {line:?}");
        }
        assert_eq!(
            parse(&written(&command)),
            Ok(command),
            "{command:?} written back"
        );
    }
    if let Some(body) = line.strip_prefix(b"/") {
        let end = body
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(body.len());
        let mut shouted = line.to_vec();
        shouted[1..1 + end].make_ascii_uppercase();
        assert_eq!(parse(&shouted).map(owned), got.map(owned), "{shouted:?}");
    }
}

/// The rules, from the module docs of `examples/chat/command.rs`.
fn reference(line: &[u8]) -> Result<Command<'_>, CommandError> {
    if line.is_empty() {
        return Ok(Command::Nothing);
    }
    if line[0] != b'/' {
        return Ok(Command::Say(line));
    }
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let word_end = line.iter().position(blank).unwrap_or(line.len());
    let word = line[1..word_end].to_ascii_lowercase();
    let after = |from: usize| {
        let start = line[from..]
            .iter()
            .position(|b| !blank(b))
            .map_or(line.len(), |i| from + i);
        &line[start..]
    };
    let rest = after(word_end);
    let name = || {
        let trimmed = trim(rest);
        let ok = !trimmed.is_empty()
            && trimmed.len() <= MAX_NAME_BYTES
            && trimmed
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
        ok.then(|| std::str::from_utf8(trimmed).expect("ASCII"))
    };
    match word.as_slice() {
        b"nick" => name().map(Command::Nick).ok_or(CommandError::BadNick),
        b"join" => name().map(Command::Join).ok_or(CommandError::BadRoom),
        b"who" => Ok(Command::Who),
        b"rooms" => Ok(Command::Rooms),
        b"quit" => Ok(Command::Quit),
        b"me" if rest.is_empty() => Err(CommandError::MeUsage),
        b"me" => Ok(Command::Me(rest)),
        b"msg" => {
            let to_end = rest.iter().position(blank).unwrap_or(rest.len());
            let to = &rest[..to_end];
            let text_start = line.len() - rest.len() + to_end;
            let text = after(text_start);
            if to.is_empty() || text.is_empty() {
                Err(CommandError::MsgUsage)
            } else {
                Ok(Command::Msg { to, text })
            }
        }
        _ => Err(CommandError::Unknown),
    }
}

/// `s` without leading and trailing ASCII whitespace.
fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end]
}

fn slices<'a>(command: &Command<'a>) -> Vec<&'a [u8]> {
    match *command {
        Command::Say(t) | Command::Me(t) => vec![t],
        Command::Nick(n) | Command::Join(n) => {
            assert!(valid_name(n.as_bytes()), "{n:?} is not a valid name");
            vec![n.as_bytes()]
        }
        Command::Msg { to, text } => vec![to, text],
        Command::Nothing | Command::Who | Command::Rooms | Command::Quit => vec![],
    }
}

/// `part` is a sub-slice of `line` (the same memory, not just equal bytes).
fn inside(part: &[u8], line: &[u8]) -> bool {
    let (start, end) = (line.as_ptr() as usize, line.as_ptr() as usize + line.len());
    let p = part.as_ptr() as usize;
    part.is_empty() || (start <= p && p + part.len() <= end)
}

/// The command as a user would type it.
fn written(command: &Command<'_>) -> Vec<u8> {
    let mut line = Vec::new();
    match *command {
        Command::Nothing => {}
        Command::Say(t) => line.extend_from_slice(t),
        Command::Nick(n) => line.extend_from_slice(format!("/nick {n}").as_bytes()),
        Command::Join(n) => line.extend_from_slice(format!("/join {n}").as_bytes()),
        Command::Who => line.extend_from_slice(b"/who"),
        Command::Rooms => line.extend_from_slice(b"/rooms"),
        Command::Quit => line.extend_from_slice(b"/quit"),
        Command::Me(t) => {
            line.extend_from_slice(b"/me ");
            line.extend_from_slice(t);
        }
        Command::Msg { to, text } => {
            line.extend_from_slice(b"/msg ");
            line.extend_from_slice(to);
            line.push(b' ');
            line.extend_from_slice(text);
        }
    }
    line
}

/// The result with its slices copied, to compare results of different lines.
fn owned(command: Command<'_>) -> String {
    format!("{command:?}")
}
