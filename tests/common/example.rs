//! The example programs as child processes, for the tests that drive them from
//! outside as users would: built once per test binary with the `cargo` that runs the
//! tests, started with `--listen ADDR`, read line by line from their stdout, sent
//! signals with the `kill` utility, and killed on drop.
//!
//! Every wait here is bounded by [`PROCESS_WATCHDOG`], which only catches a hung
//! process and never decides a passing test. Sockets to the servers are the business
//! of each test file, with timeouts of its own.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a child may take to announce itself, print its next line or exit before
/// the test fails: the longest any of the example tests allowed, since it only
/// catches a hung child.
pub const PROCESS_WATCHDOG: Duration = Duration::from_secs(60);

// ----- building -----

/// The path of example `name`'s binary, building every example on first use.
///
/// Cargo does not build examples for integration tests, so they are built here with
/// the `cargo` that runs the tests, into the same target directory: one
/// `cargo build --examples` per test binary, whichever example it asks for first.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--examples"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    });
    if let Err(e) = built {
        panic!("building the examples failed:\n{e}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("debug").join("examples").join(name)
}

/// A command for example `name`, with nothing set but the program.
pub fn command(name: &str) -> Command {
    Command::new(bin(name))
}

// ----- processes -----

/// A child process, killed on drop so that none outlives its test, even one that
/// panicked.
pub struct Proc {
    child: Child,
    /// The program's file name, for messages.
    name: String,
}

impl Proc {
    /// Spawns `cmd` as it is set up (stdin, stdout and stderr included).
    pub fn spawn(cmd: &mut Command) -> Proc {
        let program = Path::new(cmd.get_program());
        let name = program.file_name().unwrap_or(OsStr::new("?"));
        let name = name.to_string_lossy().into_owned();
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { child, name }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child itself, to take its pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The child's stdout (which must be piped) as a channel of lines.
    pub fn stdout_lines(&mut self) -> Receiver<String> {
        lines_of(self.child.stdout.take().expect("piped stdout"))
    }

    /// Sends `signal` (`INT`, `TERM`, ...) with the `kill` utility.
    pub fn signal(&self, signal: &str) {
        let pid = self.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits for the child to exit, failing the test after the watchdog. `Child` has
    /// no timed wait, so this polls; the interval only bounds how soon an exit is seen.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_WATCHDOG;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit in time",
                self.name
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `out` line by line on a thread of its own, so that a test can wait for a
/// line with a timeout. Lines come without their `\n` (anything else is kept), and
/// bytes that are not UTF-8 are replaced. The thread keeps draining after the
/// receiver is gone, so that the child never writes into a closed pipe.
pub fn lines_of(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut out = BufReader::new(out);
        let mut line = Vec::new();
        while matches!(out.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
            line.clear();
        }
    });
    rx
}

/// The next line of `lines`, failing the test after the watchdog.
pub fn next_line(lines: &Receiver<String>) -> String {
    lines
        .recv_timeout(PROCESS_WATCHDOG)
        .expect("the child printed no line in time")
}

/// Runs `cmd` to completion with stdin empty, and collects its stdout and stderr;
/// fails the test if it does not exit within the watchdog.
pub fn run(cmd: &mut Command) -> Output {
    let mut proc = Proc::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // Read both pipes while waiting, so that a chatty child cannot fill one and stall.
    let stdout = read_all(proc.child.stdout.take().expect("piped stdout"));
    let stderr = read_all(proc.child.stderr.take().expect("piped stderr"));
    let status = proc.wait();
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn read_all(mut out: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = out.read_to_end(&mut all);
        all
    })
}

/// Runs example `name` with `args` to completion (for `--help`, bad flags, a server
/// that must refuse to start).
pub fn run_example(name: &str, args: &[&str]) -> Output {
    run(command(name).args(args))
}

// ----- servers -----

/// An example server that has announced where it listens.
///
/// Its log (stderr) is captured, not printed: a passing test that provokes a warning
/// on purpose reads green, and can assert on the warning with
/// [`wait_for_log`](Self::wait_for_log). A test that fails prints the whole log.
pub struct Listening {
    pub proc: Proc,
    /// What followed `listening on ` on its first line: an address or a socket path.
    pub announced: String,
    /// Its stdout after that line, one message per line.
    pub stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// The log lines read from `stderr` so far.
    log: std::cell::RefCell<Vec<String>>,
}

/// Starts example `name` with `--listen listen` and `extra`, and waits for its
/// `listening on` line. Its log is set to `warn`: warnings and errors still reach the
/// test output, info chatter does not.
pub fn serve(name: &str, listen: &str, extra: &[&str]) -> Listening {
    serve_command(command(name).env("RUST_LOG", "warn"), listen, extra)
}

/// [`serve`] with a command set up by the caller (its environment, say).
pub fn serve_command(cmd: &mut Command, listen: &str, extra: &[&str]) -> Listening {
    let mut proc = Proc::spawn(
        cmd.args(["--listen", listen])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = proc.stdout_lines();
    let stderr = lines_of(proc.child().stderr.take().expect("piped stderr"));
    let first = next_line(&stdout);
    let announced = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{}: unexpected first line {first:?}", proc.name))
        .to_owned();
    Listening {
        proc,
        announced,
        stdout,
        stderr,
        log: Default::default(),
    }
}

impl Listening {
    /// The announced address, which must be a socket address.
    pub fn addr(&self) -> SocketAddr {
        self.announced
            .parse()
            .unwrap_or_else(|_| panic!("not an address: {:?}", self.announced))
    }

    /// The next line the server printed after `listening on`.
    pub fn next_line(&self) -> String {
        next_line(&self.stdout)
    }

    pub fn signal(&self, signal: &str) {
        self.proc.signal(signal);
    }

    pub fn wait(&mut self) -> ExitStatus {
        self.proc.wait()
    }

    /// Waits (up to the watchdog) for a log line containing `text`, and returns it.
    pub fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + PROCESS_WATCHDOG;
        loop {
            if let Some(line) = self.log.borrow().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.log.borrow_mut().push(line),
                Err(_) => panic!(
                    "no log line with {text:?}; the log: {:#?}",
                    self.log.borrow()
                ),
            }
        }
    }
}

impl Drop for Listening {
    /// A failing test shows the server's log, which is captured otherwise.
    fn drop(&mut self) {
        if thread::panicking() {
            let mut log = self.log.borrow_mut();
            log.extend(self.stderr.try_iter());
            eprintln!("--- {} log ---\n{}", self.proc.name, log.join("\n"));
        }
    }
}

// ----- clients -----

/// Reads until the peer closes. A reset counts as a close: a server that closes with
/// unread input in its socket makes the kernel send RST instead of FIN.
pub fn read_until_closed(s: &mut impl Read) -> Vec<u8> {
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading until close: {e}"),
    }
    got
}
