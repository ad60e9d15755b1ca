//! A file upload server: a header line, then the file's raw bytes, streamed to disk.
//!
//! The client sends `NAME|SIZE\n` (a trailing `\r` is stripped), then exactly SIZE raw
//! bytes. The server streams them to a temporary dot-file in `--dir`, fsyncs it, moves
//! it to NAME and answers `ok SIZE SHA256HEX\n`; the connection can then send the next
//! header. NAME must be a plain file name: valid UTF-8, without `/`, `\`, `|` or
//! control characters (C0, DEL and C1: NUL, tab, CR and LF included), not starting with
//! `.` or `-`, not starting or ending with a space, 1 to 255 bytes. A bad NAME, a SIZE
//! that is not a number or is over `--max-size`, an existing NAME, or a header line over
//! 4 KiB gets `error: REASON\n` and the connection is closed. A connection that drops
//! mid-file leaves neither NAME nor a temporary file behind.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example upload -- [--listen 127.0.0.1:8001] [--dir uploads] [--max-size BYTES]
//!     [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM] [--tls-handshake-timeout SECS]]
//! ```
//!
//! Poke it with `printf 'hello.txt|6\nhello\n' | nc -N 127.0.0.1 8001`: it answers
//! `ok 6 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03` and
//! `uploads/hello.txt` holds `hello\n`. With `--tls-cert` and `--tls-key` the port
//! speaks TLS, the protocol on top unchanged (`openssl s_client -quiet` in place of
//! `nc`). SIGINT or SIGTERM stops it gracefully.
//!
//! # The disk side
//!
//! The reactor thread never touches the file's contents. It parses headers, checks
//! that NAME is free and creates the temporary file (metadata operations, which are
//! quick), and copies the bytes that arrive into a buffer. Writing and hashing go to the
//! thread pool, one job per connection at a time: the job takes the file and the
//! SHA-256 state with it and hands them back with its result, so the writes of one file
//! stay in order without any locking, and hashing (the costly part) runs off the
//! reactor thread too. While a job writes one buffer, the next one fills; once that one
//! holds [`CHUNK_BYTES`] and the job is not back, reading is paused, so the kernel pushes
//! back on the client and a connection holds at most two buffers, whatever the file's
//! size. Writes to the page cache are usually fast, and doing them on the reactor
//! thread would have been simpler, but a kernel that throttles a writer because too
//! much is dirty can stall `write` for a long time, and on the reactor thread that
//! would stall every connection.
//!
//! When the last byte is in, reading is paused (bytes after the file, the next header
//! perhaps, stay in the line parser), and a last job fsyncs the file, moves it to NAME,
//! removes the temporary and fsyncs the directory. Its answer goes out on the reactor
//! thread, which then resumes reading for the next header.
//!
//! # Races
//!
//! NAME is checked when the header arrives, so a client learns at once that it exists.
//! The final move is `hard_link(temporary, NAME)`, which fails if NAME exists, so a file
//! is never replaced, even by two uploads of the same NAME that both passed the header
//! check: the one that finishes second gets `error: NAME exists`, after sending its
//! bytes. On a file system without hard links the move falls back to checking that NAME
//! is free and then renaming; a file created under NAME by another process between the
//! check and the rename is replaced, a race this fallback accepts. A crash between the
//! link and the removal of the temporary leaves that temporary behind, next to the
//! complete file.
//!
//! The temporary file is owned by a guard that removes it when dropped: when the upload
//! fails, when the connection is lost mid-file, when a queued job is dropped because
//! the server stops, or when a write job's result arrives for a connection that is gone
//! (the reactor drops it, and the guard with it). A connection lost after the file's
//! last byte, while the final job runs, does not undo the upload: the file was complete,
//! and it is saved; only the answer is lost.

mod common;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{exit_status, init_logging, listen_tcp, serve, Cli};
use sha2::{Digest, Sha256};
use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::tls::TlsAcceptor;
use twistor::{Addr, JobError, Reactor, Reason};

/// The longest header line, as EXAMPLES.md fixes it: a NAME of 255 bytes and a SIZE of
/// 20 digits need far less, and a client that never sends a newline is cut off before
/// it costs anything.
const MAX_HEADER_BYTES: usize = 4096;

/// The longest NAME: what most file systems accept as one path component.
const MAX_NAME_BYTES: usize = 255;

/// `--max-size` when not given: 1 GiB.
const DEFAULT_MAX_SIZE: &str = "1073741824";

/// Bytes a connection buffers while a write job is out before it stops reading: large
/// enough that each job is worth a thread handoff (a few reads' worth), small enough
/// that thousands of uploads fit in memory at once.
const CHUNK_BYTES: usize = 256 * 1024;

/// The most of NAME that goes into the temporary file's name: with the dots, the
/// process id, the counter and `.part`, the whole stays within 255 bytes.
const TEMP_NAME_BYTES: usize = 200;

/// Tries at a fresh temporary name before giving up (only a stale temporary from an
/// earlier process with the same pid could be in the way).
const TEMP_NAME_TRIES: u32 = 16;

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new(
        "upload",
        "File upload server: `NAME|SIZE` then SIZE bytes, saved to --dir.",
        "127.0.0.1:8001",
    )
    .option(
        "dir",
        "DIR",
        "uploads",
        "directory the files go to (created if missing)",
    )
    .option(
        "max-size",
        "BYTES",
        DEFAULT_MAX_SIZE,
        "largest file accepted, in bytes",
    )
    .tls_flags()
    .parse();
    let addr = args.listen_addr();
    let config = Config {
        dir: PathBuf::from(args.path("dir")),
        // Zero would refuse every file but an empty one.
        max_size: args.number("max-size", 1..),
    };
    let tls = args.tls_acceptor();
    exit_status("upload", run(addr, tls, config))
}

/// What every connection shares.
#[derive(Debug)]
struct Config {
    dir: PathBuf,
    max_size: u64,
}

fn run(addr: SocketAddr, tls: Option<TlsAcceptor>, config: Config) -> io::Result<()> {
    fs::create_dir_all(&config.dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", config.dir.display()),
        )
    })?;
    log::info!("saving files to {}", config.dir.display());
    let config = Rc::new(config);
    let mut reactor = Reactor::new()?;
    let port = listen_tcp(&mut reactor, addr, tls.as_ref(), move |peer: &Addr| {
        Some(
            LineReceiver::new(Uploader {
                config: Rc::clone(&config),
                peer: peer.clone(),
                state: State::Header,
            })
            .delimiter(b"\n")
            .max_length(MAX_HEADER_BYTES),
        )
    })?;
    serve(&mut reactor, port.local_addr)
}

// ----- the connection -----

/// One connection.
struct Uploader {
    config: Rc<Config>,
    peer: Addr,
    state: State,
}

enum State {
    /// Waiting for a header line.
    Header,
    /// Taking a file's bytes in raw mode (boxed: the hash state is large).
    Receiving(Box<Upload>),
    /// Every byte is written: the fsync and the move are on the pool, reading is
    /// paused until the answer is out.
    Finishing,
    /// An error was sent; the connection is closing.
    Closed,
}

/// A file on its way in.
struct Upload {
    name: Vec<u8>,
    size: u64,
    /// Bytes taken from the connection so far.
    received: u64,
    /// Bytes taken but not yet handed to a write job.
    pending: Vec<u8>,
    /// The buffer the last write job gave back, reused for the next fill.
    spare: Vec<u8>,
    /// `None` while a write job has it.
    writer: Option<Writer>,
}

impl Upload {
    fn is_complete(&self) -> bool {
        self.received == self.size
    }
}

impl LineHandler for Uploader {
    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        // Lines are only parsed between files: raw mode or a pause covers the rest.
        if !matches!(self.state, State::Header) {
            return;
        }
        let upload =
            match parse_header(line, self.config.max_size).and_then(|header| self.start(header)) {
                Ok(upload) => upload,
                Err(reason) => return self.refuse(cx, &reason),
            };
        log::debug!(
            "{} {}: receiving {:?} ({} bytes)",
            cx.id(),
            self.peer,
            String::from_utf8_lossy(&upload.name),
            upload.size
        );
        if upload.size > 0 {
            // The rest of this chunk, and what follows, goes to `raw_data_received`.
            cx.set_raw_mode();
        }
        self.state = State::Receiving(upload);
        self.pump(cx);
    }

    fn raw_data_received(&mut self, cx: &mut LineContext<'_, '_>, data: &[u8]) {
        let State::Receiving(upload) = &mut self.state else {
            return;
        };
        let wanted = upload.size - upload.received;
        let mine = usize::try_from(wanted).map_or(data.len(), |w| w.min(data.len()));
        let (mine, rest) = data.split_at(mine);
        upload.pending.extend_from_slice(mine);
        upload.received += mine.len() as u64;
        if upload.is_complete() {
            // What follows the file (the next header, perhaps) is parsed as lines once
            // this file is answered; `pump` pauses reading until then.
            cx.set_line_mode(rest);
        }
        self.pump(cx);
    }

    fn line_length_exceeded(&mut self, cx: &mut LineContext<'_, '_>, _line: &[u8]) {
        self.refuse(
            cx,
            &format!("header line longer than {MAX_HEADER_BYTES} bytes"),
        );
    }

    fn read_eof(&mut self, cx: &mut LineContext<'_, '_>) {
        // Reading is paused from the file's last byte until its answer is out, so EOF
        // only comes here between files or mid-file.
        if let State::Receiving(upload) = &self.state {
            let reason = format!(
                "connection closed after {} of {} bytes",
                upload.received, upload.size
            );
            return self.refuse(cx, &reason);
        }
        cx.lose_connection();
    }

    fn connection_lost(&mut self, cx: &mut LineContext<'_, '_>, reason: Reason) {
        if let State::Receiving(upload) = &self.state {
            log::info!(
                "{} {}: lost mid-file after {} of {} bytes of {:?} ({reason}); discarding it",
                cx.id(),
                self.peer,
                upload.received,
                upload.size,
                String::from_utf8_lossy(&upload.name)
            );
        }
        // Dropping the upload removes its temporary file (or, if a write job has it,
        // dropping the job's result does).
        self.state = State::Closed;
    }
}

impl Uploader {
    /// Checks that NAME is free and creates the temporary file.
    fn start(&self, header: Header) -> Result<Box<Upload>, String> {
        let dest = self.config.dir.join(OsStr::from_bytes(&header.name));
        match fs::symlink_metadata(&dest) {
            Ok(_) => return Err("file exists".to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot check the name: {e}")),
        }
        let temp = TempFile::create(&self.config.dir, &header.name)
            .map_err(|e| format!("cannot create the file: {e}"))?;
        Ok(Box::new(Upload {
            name: header.name,
            size: header.size,
            received: 0,
            pending: Vec::new(),
            spare: Vec::new(),
            writer: Some(Writer {
                temp,
                hasher: Sha256::new(),
            }),
        }))
    }

    /// Moves the upload along: hands buffered bytes to a write job, or starts the
    /// finish once everything is written; then reads only if there is room.
    fn pump(&mut self, cx: &mut LineContext<'_, '_>) {
        let State::Receiving(upload) = &mut self.state else {
            return;
        };
        if upload.writer.is_some() {
            if !upload.pending.is_empty() {
                self.write_on_pool(cx);
            } else if upload.is_complete() {
                self.finish_on_pool(cx);
            }
        }
        match &self.state {
            State::Receiving(upload) => {
                let full = upload.writer.is_none() && upload.pending.len() >= CHUNK_BYTES;
                if upload.is_complete() || full {
                    cx.pause_reading();
                } else {
                    cx.resume_reading();
                }
            }
            State::Finishing => cx.pause_reading(),
            State::Header | State::Closed => {}
        }
    }

    /// Sends the buffered bytes to the pool, to be written and hashed.
    fn write_on_pool(&mut self, cx: &mut LineContext<'_, '_>) {
        let State::Receiving(upload) = &mut self.state else {
            return;
        };
        let Some(mut writer) = upload.writer.take() else {
            return;
        };
        let spare = std::mem::take(&mut upload.spare);
        let mut chunk = std::mem::replace(&mut upload.pending, spare);
        let job = move || {
            let result = writer.write(&chunk);
            chunk.clear();
            (writer, chunk, result)
        };
        let queued = cx.defer_to_thread(job, |me: &mut Uploader, cx, result| {
            me.write_done(cx, result)
        });
        if queued.is_err() {
            // The job (and with it the temporary file) was dropped.
            self.refuse(cx, "server busy, try again later");
        }
    }

    /// A write job is back with the file.
    fn write_done(
        &mut self,
        cx: &mut LineContext<'_, '_>,
        result: Result<(Writer, Vec<u8>, io::Result<()>), JobError>,
    ) {
        let State::Receiving(upload) = &mut self.state else {
            // The upload was refused meanwhile: dropping the writer removes the file.
            return;
        };
        match result {
            Ok((writer, chunk, Ok(()))) => {
                upload.writer = Some(writer);
                upload.spare = chunk;
                self.pump(cx);
            }
            Ok((_, _, Err(e))) => self.refuse(cx, &format!("cannot write the file: {e}")),
            Err(e) => self.refuse(cx, &format!("cannot write the file: {e}")),
        }
    }

    /// Every byte is written: fsync, move to NAME and answer, on the pool.
    fn finish_on_pool(&mut self, cx: &mut LineContext<'_, '_>) {
        let State::Receiving(upload) = &mut self.state else {
            return;
        };
        let Some(writer) = upload.writer.take() else {
            return;
        };
        let dest = self.config.dir.join(OsStr::from_bytes(&upload.name));
        let (name, size) = (std::mem::take(&mut upload.name), upload.size);
        self.state = State::Finishing;
        let queued = cx.defer_to_thread(
            move || writer.finish(&dest),
            move |me: &mut Uploader, cx, result| me.finish_done(cx, &name, size, result),
        );
        if queued.is_err() {
            self.refuse(cx, "server busy, try again later");
        }
    }

    /// The file is saved (or not): answer, and read the next header.
    fn finish_done(
        &mut self,
        cx: &mut LineContext<'_, '_>,
        name: &[u8],
        size: u64,
        result: Result<io::Result<String>, JobError>,
    ) {
        if !matches!(self.state, State::Finishing) {
            return;
        }
        match result {
            Ok(Ok(sha256)) => {
                log::info!(
                    "{} {}: saved {:?} ({size} bytes, sha256 {sha256})",
                    cx.id(),
                    self.peer,
                    String::from_utf8_lossy(name)
                );
                cx.send_line(format!("ok {size} {sha256}").as_bytes());
                self.state = State::Header;
                cx.resume_reading();
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.refuse(cx, "file exists")
            }
            Ok(Err(e)) => self.refuse(cx, &format!("cannot save the file: {e}")),
            Err(e) => self.refuse(cx, &format!("cannot save the file: {e}")),
        }
    }

    /// Answers `error: REASON` and closes; an upload in progress is discarded.
    fn refuse(&mut self, cx: &mut LineContext<'_, '_>, reason: &str) {
        log::info!("{} {}: error: {reason}", cx.id(), self.peer);
        self.state = State::Closed;
        cx.send_line(format!("error: {reason}").as_bytes());
        cx.lose_connection();
    }
}

// ----- the header -----

#[derive(Debug, PartialEq)]
struct Header {
    name: Vec<u8>,
    size: u64,
}

/// `NAME|SIZE`, a trailing `\r` stripped; the error is the reason sent to the client.
fn parse_header(line: &[u8], max_size: u64) -> Result<Header, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(bar) = line.iter().position(|&b| b == b'|') else {
        return Err("bad header: expected NAME|SIZE".to_owned());
    };
    let (name, size) = (&line[..bar], &line[bar + 1..]);
    check_name(name)?;
    if size.is_empty() || !size.iter().all(u8::is_ascii_digit) {
        return Err("size is not a number".to_owned());
    }
    let size: u64 = std::str::from_utf8(size)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("size is over the limit of {max_size} bytes"))?;
    if size > max_size {
        return Err(format!("size is over the limit of {max_size} bytes"));
    }
    Ok(Header {
        name: name.to_vec(),
        size,
    })
}

/// A plain file name (EXAMPLES.md): one that `ls` and a terminal show as it is, and
/// that no shell command takes for something else. So: valid UTF-8, no control
/// characters (C0, DEL and C1, which move the cursor, recolour the terminal or hide
/// what comes before a `\r`), no `/`, `\` or `|`, not hidden (that keeps clients away
/// from the temporary files, and from `.` and `..`), not an option (`-rf`), and no
/// space at either end (invisible in a listing; a name of one space most of all).
fn check_name(name: &[u8]) -> Result<(), String> {
    match name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(format!("bad name: {problem}")),
    }
}

/// What is wrong with `name`, if anything. The problem is sent back to the client,
/// so it never quotes the name.
fn name_problem(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return Some("longer than 255 bytes");
    }
    let Ok(name) = std::str::from_utf8(name) else {
        return Some("not valid UTF-8");
    };
    Some(if name.chars().any(char::is_control) {
        "contains a control character"
    } else if name.contains(['/', '\\', '|']) {
        "contains `/`, `\\` or `|`"
    } else if name.starts_with('.') {
        "starts with `.`"
    } else if name.starts_with('-') {
        "starts with `-`"
    } else if name.starts_with(' ') || name.ends_with(' ') {
        "starts or ends with a space"
    } else {
        return None;
    })
}

// ----- the file (written on the pool) -----

/// The temporary file and the hash of what was written to it; moves into each pool
/// job and back.
struct Writer {
    temp: TempFile,
    hasher: Sha256,
}

impl Writer {
    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.temp.file.write_all(chunk)?;
        self.hasher.update(chunk);
        Ok(())
    }

    /// Makes the file durable under `dest` and returns its SHA-256 in lower-case hex.
    /// On error the temporary file is removed when `self` drops.
    fn finish(mut self, dest: &Path) -> io::Result<String> {
        self.temp.file.sync_all()?;
        self.temp.publish(dest)?;
        if let Some(dir) = dest.parent() {
            // The new name is durable only once the directory is; the file already
            // is, so a failure here is only worth a warning.
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                log::warn!("fsync of {} failed: {e}", dir.display());
            }
        }
        let digest = self.hasher.finalize();
        Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A temporary file in the upload directory, removed when dropped unless it was
/// renamed.
struct TempFile {
    path: PathBuf,
    file: File,
    renamed: bool,
}

impl TempFile {
    /// `.NAME.PID-N.part` in `dir`, created new (NAME cut to [`TEMP_NAME_BYTES`], at a
    /// character boundary so that the directory's names stay valid UTF-8).
    fn create(dir: &Path, name: &[u8]) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut end = name.len().min(TEMP_NAME_BYTES);
        // UTF-8 continuation bytes are 0b10xxxxxx: back off to the character's start.
        while end < name.len() && name[end] & 0xC0 == 0x80 {
            end -= 1;
        }
        let stem = &name[..end];
        let mut tries = 0;
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut file_name = b".".to_vec();
            file_name.extend_from_slice(stem);
            file_name.extend_from_slice(format!(".{}-{n}.part", std::process::id()).as_bytes());
            let path = dir.join(OsStr::from_bytes(&file_name));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        renamed: false,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < TEMP_NAME_TRIES => {
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives the file the name `dest`, failing with `AlreadyExists` rather than replace
    /// a file (see "Races" above). The temporary name is removed on drop.
    fn publish(&mut self, dest: &Path) -> io::Result<()> {
        match fs::hard_link(&self.path, dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            Err(e) => {
                log::debug!("hard_link failed ({e}); checking the name, then renaming");
                if fs::symlink_metadata(dest).is_ok() {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                fs::rename(&self.path, dest)?;
                self.renamed = true;
                Ok(())
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.renamed {
            return;
        }
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(line: &[u8]) -> Result<Header, String> {
        parse_header(line, 1000)
    }

    #[test]
    fn good_headers_parse() {
        let ok = |name: &[u8], size| {
            Ok(Header {
                name: name.to_vec(),
                size,
            })
        };
        assert_eq!(header(b"a.txt|12"), ok(b"a.txt", 12));
        assert_eq!(header(b"a.txt|12\r"), ok(b"a.txt", 12));
        assert_eq!(header(b"x|0"), ok(b"x", 0));
        assert_eq!(header(b"x|1000"), ok(b"x", 1000));
        assert_eq!(header(b"x|0001"), ok(b"x", 1));
        assert_eq!(header(b"a..b|1"), ok(b"a..b", 1));
        let long = vec![b'n'; 255];
        assert_eq!(header(&[&long[..], b"|1"].concat()), ok(&long, 1));
    }

    #[test]
    fn bad_headers_are_refused() {
        for bad in [
            &b""[..],
            b"no bar",
            b"|1",
            b"../x|1",
            b"a/b|1",
            b"..|1",
            b".|1",
            b".hidden|1",
            b"a\\b|1",
            b"a\0b|1",
            b"a|b|1",
            b"a|",
            b"a|x",
            b"a|-1",
            b"a|+1",
            b"a| 1",
            b"a|1 ",
            b"a|1001",
            b"a|99999999999999999999999",
        ] {
            assert!(header(bad).is_err(), "{:?}", bad.escape_ascii().to_string());
        }
        let long = vec![b'n'; 256];
        assert!(header(&[&long[..], b"|1"].concat()).is_err());
    }

    /// `check_name` on `name`: `None` if accepted, else the reason.
    fn name_refusal(name: &[u8]) -> Option<String> {
        check_name(name).err()
    }

    #[test]
    fn plain_names_are_accepted() {
        for good in [
            "a.txt",
            "a",
            "a..b",
            "a b",
            "a.",
            "x-",
            "a-b_c+d=e,f;g'h\"i~j#k@l",
            "été.txt",
            "日本語",
            "a\u{a0}b", // a no-break space is not a control character
            "emoji \u{1f600}",
        ] {
            assert_eq!(name_refusal(good.as_bytes()), None, "{good:?}");
        }
        // 255 bytes, in characters of 1, 2 and 3 bytes.
        for c in ["n", "é", "語"] {
            let name = c.repeat(255 / c.len()) + &"n".repeat(255 % c.len());
            assert_eq!(name.len(), 255);
            assert_eq!(name_refusal(name.as_bytes()), None, "{c:?}");
        }
    }

    #[test]
    fn names_that_are_not_plain_are_refused_with_their_reason() {
        let control = "bad name: contains a control character";
        let cases: &[(&[u8], &str)] = &[
            // Terminal escapes, and what `ls` shows as something else.
            (b"esc\x1b[31m", control),
            (b"a\rb", control),
            (b"a\tb", control),
            (b"a\x7fb", control),
            (b"a\0b", control),
            (b"a\nb", control),
            (b"bell\x07", control),
            (b"\x08", control),
            (b"a\xc2\x85b", control),   // U+0085, NEL (C1)
            (b"a\xc2\x9b31m", control), // U+009B, CSI (C1)
            (b"a\xc2\x80", control),    // U+0080, the first C1
            (b"a\xc2\x9f", control),    // U+009F, the last C1
            // Not UTF-8: a stray byte, a cut sequence, an overlong `/`, a surrogate.
            (b"a\xffb", "bad name: not valid UTF-8"),
            (b"caf\xc3", "bad name: not valid UTF-8"),
            (b"a\xc0\xafb", "bad name: not valid UTF-8"),
            (b"\xed\xa0\x80", "bad name: not valid UTF-8"),
            // An option to any command it is passed to.
            (b"-rf", "bad name: starts with `-`"),
            (b"-", "bad name: starts with `-`"),
            // Spaces at the ends.
            (b" ", "bad name: starts or ends with a space"),
            (b"   ", "bad name: starts or ends with a space"),
            (b" a", "bad name: starts or ends with a space"),
            (b"a ", "bad name: starts or ends with a space"),
            // Hidden, or not one path component.
            (b".hidden", "bad name: starts with `.`"),
            (b".", "bad name: starts with `.`"),
            (b"..", "bad name: starts with `.`"),
            (b"a/b", "bad name: contains `/`, `\\` or `|`"),
            (b"a\\b", "bad name: contains `/`, `\\` or `|`"),
            (b"a|b", "bad name: contains `/`, `\\` or `|`"),
            (b"", "bad name: empty"),
            (&[b'n'; 256], "bad name: longer than 255 bytes"),
        ];
        for (name, reason) in cases {
            assert_eq!(
                name_refusal(name).as_deref(),
                Some(*reason),
                "{:?}",
                name.escape_ascii().to_string()
            );
        }
        // Over 255 bytes in 2-byte characters: 128 of them.
        assert_eq!(
            name_refusal("é".repeat(128).as_bytes()).as_deref(),
            Some("bad name: longer than 255 bytes")
        );
    }

    #[test]
    fn a_temporary_name_is_cut_at_a_character_boundary() {
        let dir = std::env::temp_dir().join(format!("twistor-upload-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let name = "語".repeat(85); // 255 bytes; byte 200 is inside a character
        let temp = TempFile::create(&dir, name.as_bytes()).unwrap();
        let file_name = temp.path.file_name().unwrap().to_str();
        assert!(file_name.is_some(), "not UTF-8: {:?}", temp.path);
        assert!(file_name.unwrap().len() <= 255);
        drop(temp);
        fs::remove_dir(&dir).unwrap();
    }
}
