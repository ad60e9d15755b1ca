//! A member of the chat example over its line protocol, as `nc` would be: a plain
//! socket that sends lines and reads them, failing the test (naming the member) when
//! the server closes or a read times out.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

/// One chat member over a plain socket.
pub struct LineMember {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
    /// The member's nick: the `guestN` of the welcome, or what it renamed itself to.
    pub nick: String,
}

impl LineMember {
    /// Connects to `addr`, with `timeout` as the socket's read and write timeout (a
    /// watchdog: only catches a hung server), and reads the welcome, which names the
    /// member.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> LineMember {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        let mut member = LineMember {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
            nick: String::new(),
        };
        member.nick = nick_of_welcome(&member.line());
        member
    }

    /// Sends `line` and its `\n`.
    pub fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    /// The next line from the server, without its `\n`.
    pub fn line(&mut self) -> String {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => panic!("{}: the server closed the connection", self.nick),
            Ok(_) => {}
            Err(e) => panic!("{}: no line in time: {e}", self.nick),
        }
        assert_eq!(line.pop(), Some(b'\n'), "{}: unterminated line", self.nick);
        String::from_utf8(line).expect("UTF-8 line")
    }

    /// Reads the next line and checks that it is `want`.
    pub fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(got, want, "{} expected another line", self.nick);
    }

    /// Renames the member with `/nick`, and reads the server's confirmation.
    pub fn rename(&mut self, nick: &str) {
        self.send(&format!("/nick {nick}"));
        self.expect(&format!("* {} is now {nick}", self.nick));
        self.nick = nick.to_owned();
    }
}

/// The nick in `* welcome NICK, you are in lobby`, the first line every member gets.
pub fn nick_of_welcome(welcome: &str) -> String {
    welcome
        .strip_prefix("* welcome ")
        .and_then(|rest| rest.strip_suffix(", you are in lobby"))
        .unwrap_or_else(|| panic!("not a welcome: {welcome:?}"))
        .to_owned()
}

/// Lines the flooder of [`flood_until`] may send ahead of what the reader has read:
/// 32 KiB, so that the reader's own backlog stays far below a 64 KiB cap however
/// slowly it reads.
pub const FLOOD_WINDOW_LINES: u64 = 32;

/// Floods the room from `flooder` until `reader` hears `gone` (say, another member's
/// `* NICK disconnected`): numbered 1 KB lines, sent from a thread of their own at
/// most [`FLOOD_WINDOW_LINES`] ahead of the reader, which checks that none is lost;
/// then `done`. Checks that the reader got every line sent, and that the flooder
/// hears `gone` too. `watchdog` bounds the sender's wait for the reader to catch up.
pub fn flood_until(
    flooder: &mut LineMember,
    reader: &mut LineMember,
    gone: &str,
    watchdog: Duration,
) {
    let cut_off = Arc::new(AtomicBool::new(false));
    let (credit, credits) = mpsc::channel::<()>();
    let sender = {
        let cut_off = Arc::clone(&cut_off);
        let mut stream = flooder.stream.try_clone().unwrap();
        thread::spawn(move || -> u64 {
            let filler = "f".repeat(1000);
            let mut sent = 0;
            while !cut_off.load(Ordering::SeqCst) {
                if sent >= FLOOD_WINDOW_LINES {
                    credits.recv_timeout(watchdog).expect("the reader stalled");
                }
                let line = format!("{sent} {filler}\n");
                stream.write_all(line.as_bytes()).expect("flooding");
                sent += 1;
            }
            stream.write_all(b"done\n").expect("last line");
            sent
        })
    };
    let prefix = format!("<{}> ", flooder.nick);
    let mut next = 0u64;
    loop {
        let line = reader.line();
        if line == gone {
            cut_off.store(true, Ordering::SeqCst);
            continue;
        }
        let text = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        if text == "done" {
            break;
        }
        let seq: u64 = text.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(seq, next, "the reader lost a line");
        next += 1;
        let _ = credit.send(());
    }
    let sent = sender.join().expect("flooder thread");
    assert_eq!(next, sent, "the reader got every line");
    flooder.expect(gone);
}
