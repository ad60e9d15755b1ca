//! The `upload` example, driven from outside as a real process.
//!
//! Each test builds the example once, starts it on `127.0.0.1:0` with a fresh
//! `--dir` under the system temporary directory, reads its `listening on ADDR` line and
//! talks to it with raw bytes, as EXAMPLES.md promises clients can. Files are checked
//! on disk byte for byte; directory listings are polled with a deadline, never after a
//! fixed sleep. Every blocking step has a watchdog, the child is killed on drop and the
//! directory removed.

mod common;

use common::TempDir;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::example::{self, read_until_closed, run_example, Listening};
use sha2::{Digest, Sha256};

/// How long any single step may block before the test fails: generous, since it only
/// catches a hung server and never decides a passing test.
const WATCHDOG: Duration = Duration::from_secs(60);

const MIB: usize = 1024 * 1024;

// ----- harness -----

/// A running upload server, killed on drop (even when its test panicked) before its
/// directory is removed.
struct Server {
    ex: Listening,
    addr: SocketAddr,
    /// The parent of `dir`: a place a path-traversing name would land in.
    root: TempDir,
    /// `--dir`, which the server creates.
    dir: PathBuf,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let root = TempDir::new("upload");
        let dir = root.0.join("files");
        let args = [&["--dir", dir.to_str().expect("a UTF-8 path")], extra].concat();
        let ex = example::serve("upload", "127.0.0.1:0", &args);
        let addr = ex.addr();
        let server = Server {
            ex,
            addr,
            root,
            dir,
        };
        assert!(server.dir.is_dir(), "--dir is created at start-up");
        server
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(WATCHDOG)).unwrap();
        stream.set_write_timeout(Some(WATCHDOG)).unwrap();
        let reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        Client { stream, reader }
    }

    /// The names in `--dir`, sorted (temporary dot-files included).
    fn listing(&self) -> Vec<String> {
        listing(&self.dir)
    }

    /// Waits until `--dir` holds exactly `names`, failing after the watchdog.
    fn wait_for_listing(&self, names: &[&str]) {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let now = self.listing();
            if now == names {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} holds {now:?}, expected {names:?}",
                self.dir.display()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM (with the `kill` utility) and waits for the server to exit;
    /// returns its exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        self.ex.signal("TERM");
        self.ex.wait()
    }

    /// Waits until a temporary file for `name` shows up in `--dir`: the header was
    /// accepted.
    fn wait_for_temporary(&self, name: &str) {
        let prefix = format!(".{name}.");
        let deadline = Instant::now() + WATCHDOG;
        while !self.listing().iter().any(|n| n.starts_with(&prefix)) {
            assert!(Instant::now() < deadline, "no temporary file for {name}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The most resident memory the server has used (`VmHWM`), in bytes.
    fn peak_rss_bytes(&self) -> usize {
        let status = fs::read_to_string(format!("/proc/{}/status", self.ex.proc.id()))
            .expect("read /proc/PID/status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("a VmHWM line");
        let kib: usize = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmHWM in kB");
        kib * 1024
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| e.expect("a directory entry").file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// One client connection; every read and write has the watchdog as its timeout.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends the concatenation of `parts` cut into chunks of random sizes, so that a
    /// header, the file and the next header fall at arbitrary places in the server's
    /// reads.
    fn send_chunked(&mut self, parts: &[&[u8]], rng: &mut Rng) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let (mut part, mut offset, mut sent) = (0, 0, 0);
        let mut chunk = Vec::new();
        while sent < total {
            let want = rng.chunk_size().min(total - sent);
            chunk.clear();
            while chunk.len() < want {
                let take = (want - chunk.len()).min(parts[part].len() - offset);
                chunk.extend_from_slice(&parts[part][offset..offset + take]);
                offset += take;
                if offset == parts[part].len() {
                    part += 1;
                    offset = 0;
                }
            }
            self.send(&chunk);
            sent += want;
        }
    }

    /// The next line from the server, without its `\n`.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a line");
        assert!(n > 0, "the server closed instead of answering");
        assert!(line.ends_with('\n'), "unterminated line {line:?}");
        line.pop();
        line
    }

    /// Asserts that the server closes the connection without sending anything more.
    fn expect_closed(&mut self) {
        let rest = read_until_closed(&mut self.reader);
        assert!(rest.is_empty(), "unexpected bytes {rest:?}");
    }

    /// Sends one header and expects `error: ...` and a close.
    fn expect_refused(&mut self, header: &[u8]) -> String {
        self.send(header);
        let line = self.line();
        assert!(
            line.starts_with("error: "),
            "{:?} got {line:?}",
            header.escape_ascii().to_string()
        );
        self.expect_closed();
        line
    }
}

/// splitmix64: a small deterministic generator, so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A chunk size from a few scales: single bytes, packet sizes, socket buffers.
    fn chunk_size(&mut self) -> usize {
        let max = [16, 1500, 64 * 1024, 1024 * 1024][self.below(4) as usize];
        1 + self.below(max) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// `len` bytes made of one random MiB, rotated by a random amount for each MiB of
    /// output: as good as random for catching lost, repeated or reordered chunks, and
    /// quick to make in a debug build (it is mostly `memcpy`).
    fn large_bytes(&mut self, len: usize) -> Vec<u8> {
        let block = self.bytes(MIB);
        let mut out = Vec::with_capacity(len + MIB);
        while out.len() < len {
            let at = self.below(MIB as u64) as usize;
            out.extend_from_slice(&block[at..]);
            out.extend_from_slice(&block[..at]);
        }
        out.truncate(len);
        out
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The answer the server owes for `data`.
fn ok_line(data: &[u8]) -> String {
    format!("ok {} {}", data.len(), sha256_hex(data))
}

/// Asserts that `path` holds exactly `data`, without printing megabytes on failure.
fn assert_file(path: &Path, data: &[u8]) {
    let on_disk = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(on_disk.len(), data.len(), "size of {}", path.display());
    if on_disk != data {
        let i = on_disk.iter().zip(data).position(|(a, b)| a != b);
        panic!(
            "{} differs from what was sent at byte {i:?}",
            path.display()
        );
    }
}

fn header(name: &str, size: usize) -> Vec<u8> {
    format!("{name}|{size}\n").into_bytes()
}

// ----- files arrive byte-exact -----

/// Files of 0 B, 1 B and 1 MiB, each sent with the header in random chunks, arrive
/// exactly and are answered with their size and SHA-256; no temporary is left.
#[test]
fn small_files_arrive_byte_exact() {
    let server = Server::start(&[]);
    let mut rng = Rng(1);
    for (name, size) in [("empty", 0), ("one", 1), ("mebi.bin", MIB)] {
        let data = rng.bytes(size);
        let mut client = server.connect();
        client.send_chunked(&[&header(name, size), &data], &mut rng);
        assert_eq!(client.line(), ok_line(&data), "{name}");
        assert_file(&server.dir.join(name), &data);
    }
    assert_eq!(server.listing(), ["empty", "mebi.bin", "one"]);
}

/// 100 MiB arrive exactly, and the server's peak memory stays far below the file's
/// size: reading is paused while the disk is behind.
#[test]
fn large_file_arrives_byte_exact_in_flat_memory() {
    const SIZE: usize = 100 * MIB;
    /// Well under the file's size, well above the server's few buffers.
    const MAX_PEAK_RSS: usize = 32 * MIB;
    let server = Server::start(&[]);
    let mut rng = Rng(2);
    let data = rng.large_bytes(SIZE);
    let mut client = server.connect();
    // The expected hash is computed while the upload runs: sha2 is slow in a debug
    // build, and the server's own hashing is what the upload waits for.
    let expected = thread::scope(|s| {
        let expected = s.spawn(|| ok_line(&data));
        client.send_chunked(&[&header("big.bin", SIZE), &data], &mut rng);
        expected.join().expect("hashing thread")
    });
    assert_eq!(client.line(), expected);
    let peak = server.peak_rss_bytes();
    eprintln!(
        "server peak RSS after a {} MiB upload: {} KiB",
        SIZE / MIB,
        peak / 1024
    );
    assert!(
        peak < MAX_PEAK_RSS,
        "the server peaked at {} KiB for a {} KiB file",
        peak / 1024,
        SIZE / 1024
    );
    assert_file(&server.dir.join("big.bin"), &data);
    assert_eq!(server.listing(), ["big.bin"]);
}

/// Two files on one connection, the second header in the same write as the end of
/// the first file (and in the same write as the whole second file); a `\r\n` header.
#[test]
fn several_files_on_one_connection() {
    let server = Server::start(&[]);
    let mut rng = Rng(3);
    let (a, b, c) = (rng.bytes(70_000), rng.bytes(5), rng.bytes(3000));
    let mut client = server.connect();
    client.send(&header("a", a.len()));
    client.send(&a[..60_000]);
    let mut tail = a[60_000..].to_vec();
    tail.extend_from_slice(&header("b", b.len()));
    tail.extend_from_slice(&b);
    tail.extend_from_slice(b"c|3000\r\n");
    tail.extend_from_slice(&c[..10]);
    client.send(&tail);
    assert_eq!(client.line(), ok_line(&a));
    assert_eq!(client.line(), ok_line(&b));
    client.send(&c[10..]);
    assert_eq!(client.line(), ok_line(&c));
    for (name, data) in [("a", &a), ("b", &b), ("c", &c)] {
        assert_file(&server.dir.join(name), data);
    }
    // Many small files back to back in one write: each answer in order.
    let files: Vec<Vec<u8>> = (0..20).map(|i| rng.bytes(i * 7)).collect();
    let mut burst = Vec::new();
    for (i, f) in files.iter().enumerate() {
        burst.extend_from_slice(&header(&format!("f{i}"), f.len()));
        burst.extend_from_slice(f);
    }
    client.send(&burst);
    for (i, f) in files.iter().enumerate() {
        assert_eq!(client.line(), ok_line(f), "file {i}");
        assert_file(&server.dir.join(format!("f{i}")), f);
    }
    assert_eq!(server.listing().len(), 23, "no temporary left");
}

/// A client that shuts its write side right after the file still gets its answer.
#[test]
fn half_close_after_the_file_still_gets_the_answer() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    client.send(b"hello.txt|6\nhello\n");
    client.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(client.line(), ok_line(b"hello\n"));
    assert_eq!(
        ok_line(b"hello\n"),
        "ok 6 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    );
    client.expect_closed();
    assert_file(&server.dir.join("hello.txt"), b"hello\n");
}

/// The longest name allowed, 255 bytes, is accepted (the temporary file's name is
/// cut to fit).
#[test]
fn a_255_byte_name_is_accepted() {
    let server = Server::start(&[]);
    let name = "n".repeat(255);
    let mut client = server.connect();
    client.send(&header(&name, 3));
    client.send(b"abc");
    assert_eq!(client.line(), ok_line(b"abc"));
    assert_file(&server.dir.join(&name), b"abc");
    assert_eq!(server.listing(), [name]);
}

// ----- refusals -----

/// Names that are not plain file names are refused and the connection closed;
/// nothing is created, inside `--dir` or next to it.
#[test]
fn bad_names_are_refused() {
    let server = Server::start(&[]);
    let long = format!("{}|1\n", "n".repeat(256));
    let headers: &[&[u8]] = &[
        b"../escaped|1\n",
        b"a/b|1\n",
        b"..|1\n",
        b".|1\n",
        b"|1\n",
        b"a\0b|1\n",
        b".hidden|1\n",
        b"a\\b|1\n",
        b"a|b|1\n",
        b"/etc/passwd|1\n",
        b"no separator\n",
        b"\n",
        long.as_bytes(),
    ];
    for header in headers {
        server.connect().expect_refused(header);
    }
    assert_eq!(server.listing(), Vec::<String>::new());
    assert_eq!(listing(&server.root.0), ["files"], "nothing escaped --dir");
}

/// Names that a terminal or a shell would take for something else are refused with
/// `error: bad name: ...` and the connection closed: control characters (an escape
/// sequence, a `\r` that `ls` hides, tab, DEL, a C1 control), bytes that are not
/// UTF-8, a leading `-` (`-rf`), a leading or trailing space (a name of one space).
/// The refusal never quotes the name back. A UTF-8 name with inner spaces is fine.
#[test]
fn names_that_are_not_plain_are_refused() {
    let server = Server::start(&[]);
    let headers: &[&[u8]] = &[
        b"esc\x1b[31m|1\n",
        b"a\rb|1\n",
        b"a\tb|1\n",
        b"a\x7fb|1\n",
        b"a\xc2\x9b31m|1\n",
        b"a\xffb|1\n",
        b"caf\xc3|1\n",
        b"-rf|1\n",
        b" |1\n",
        b" lead|1\n",
        b"trail |1\n",
        b"trail \r|1\r\n",
    ];
    for header in headers {
        let line = server.connect().expect_refused(header);
        assert!(line.starts_with("error: bad name: "), "{line:?}");
        assert!(
            line.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "the reason is plain ASCII: {line:?}"
        );
    }
    assert_eq!(server.listing(), Vec::<String>::new());
    assert_eq!(listing(&server.root.0), ["files"], "nothing escaped --dir");

    let name = "my file – été.txt";
    let mut client = server.connect();
    client.send(&header(name, 3));
    client.send(b"abc");
    assert_eq!(client.line(), ok_line(b"abc"));
    assert_file(&server.dir.join(name), b"abc");
}

/// SIZE must be a number no larger than `--max-size`.
#[test]
fn bad_sizes_are_refused() {
    let server = Server::start(&["--max-size", "1000"]);
    for header in [
        &b"a|x\n"[..],
        b"a|\n",
        b"a|-1\n",
        b"a|+1\n",
        b"a| 1\n",
        b"a|1.5\n",
        b"a|1001\n",
        b"a|99999999999999999999999\n",
    ] {
        server.connect().expect_refused(header);
    }
    assert_eq!(server.listing(), Vec::<String>::new());
    let data = Rng(4).bytes(1000);
    let mut client = server.connect();
    client.send(&header("max", 1000));
    client.send(&data);
    assert_eq!(client.line(), ok_line(&data), "exactly --max-size is fine");
}

/// A header line over 4 KiB is refused, whether or not its newline has come.
#[test]
fn a_header_over_4_kib_is_refused() {
    let server = Server::start(&[]);
    let name = "n".repeat(5000);
    server
        .connect()
        .expect_refused(format!("{name}|1\n").as_bytes());
    server.connect().expect_refused(name.as_bytes());
    assert_eq!(server.listing(), Vec::<String>::new());
}

/// A NAME that exists is refused at the header, and the file is left alone.
#[test]
fn an_existing_name_is_refused() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    client.send(b"taken|3\nabc");
    assert_eq!(client.line(), ok_line(b"abc"));
    server.connect().expect_refused(b"taken|3\n");
    fs::write(server.dir.join("mine"), b"original").unwrap();
    server.connect().expect_refused(b"mine|3\n");
    assert_file(&server.dir.join("taken"), b"abc");
    assert_file(&server.dir.join("mine"), b"original");
    assert_eq!(server.listing(), ["mine", "taken"]);
}

/// A NAME that appears while its upload is under way is not replaced: the final move
/// refuses, and the temporary file is removed.
#[test]
fn a_name_taken_during_the_upload_is_not_replaced() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    client.send(b"race|6\nabc");
    server.wait_for_temporary("race");
    fs::write(server.dir.join("race"), b"first").unwrap();
    client.send(b"def");
    let line = client.line();
    assert!(line.starts_with("error: "), "{line:?}");
    client.expect_closed();
    assert_file(&server.dir.join("race"), b"first");
    server.wait_for_listing(&["race"]);
}

// ----- dropped connections -----

/// A connection that ends mid-file (closed, reset, or half-closed) leaves neither the
/// file nor a temporary behind. A full upload on another connection afterwards shows
/// that the server has moved on; the listing is then polled until it settles.
#[test]
fn a_connection_cut_mid_file_leaves_nothing() {
    let server = Server::start(&[]);
    let mut rng = Rng(5);

    // Closed after a few bytes.
    let mut client = server.connect();
    client.send(b"closed|100\nabc");
    drop(client);

    // Reset after 3 MiB of 10, with write jobs likely in flight.
    let mut client = server.connect();
    let part = rng.bytes(3 * MIB);
    client.send_chunked(&[&header("reset", 10 * MIB), &part], &mut rng);
    socket2::SockRef::from(&client.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);

    // Half-closed mid-file: the client can still read why the upload failed.
    let mut client = server.connect();
    client.send(b"half|10\nabc");
    client.stream.shutdown(Shutdown::Write).unwrap();
    let line = client.line();
    assert!(line.starts_with("error: "), "{line:?}");
    client.expect_closed();

    let data = rng.bytes(100_000);
    let mut client = server.connect();
    client.send_chunked(&[&header("after", data.len()), &data], &mut rng);
    assert_eq!(client.line(), ok_line(&data));
    server.wait_for_listing(&["after"]);
}

/// SIGTERM in the middle of a file stops the server with status 0 and leaves
/// neither the file nor its temporary behind.
#[test]
fn sigterm_mid_file_exits_cleanly_and_leaves_nothing() {
    let mut server = Server::start(&[]);
    let mut rng = Rng(6);
    let part = rng.bytes(MIB);
    let mut client = server.connect();
    client.send(&header("cut", 10 * MIB));
    client.send(&part);
    server.wait_for_temporary("cut");
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    assert_eq!(server.listing(), Vec::<String>::new());
}

/// `--help` prints the flags and exits 0.
#[test]
fn help_lists_the_flags() {
    let out = run_example("upload", &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--listen", "--dir", "--max-size", "--help"] {
        assert!(text.contains(flag), "{flag} missing from {text}");
    }
}
