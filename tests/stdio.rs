//! `Reactor::stdio`: standard input and output as a connection.
//!
//! A test cannot swap its own stdin, so each case runs this test binary again as a
//! child (selected with an environment variable) whose stdin and stdout the parent
//! controls: a pipe, or a regular file.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use twistor::{Context, Protocol, Reactor, Reason};

const CHILD: &str = "TWISTOR_STDIO_CHILD";

/// Upper-cases stdin onto stdout, then stops the reactor at EOF.
struct Upper;

impl Protocol for Upper {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        cx.write(&data.to_ascii_uppercase());
    }
    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        assert!(reason.is_clean(), "{reason}");
        cx.stop_reactor();
    }
}

/// The child's side: not a test of its own unless the parent asked for it.
#[test]
fn stdio_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let mut r = Reactor::new().unwrap();
    r.stdio(Upper).unwrap();
    r.run().unwrap();
}

/// Runs the child with `stdin` and returns what it wrote to stdout.
fn run_child(stdin: Stdio, input: Option<&[u8]>) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["stdio_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    if let Some(input) = input {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    } // dropping the pipe is the child's EOF
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the stdio child did not finish");
        }
        std::thread::sleep(Duration::from_millis(10)); // polls for exit only
    };
    assert!(status.success(), "child exit {status}");
    reader.join().unwrap()
}

#[test]
fn stdio_reads_a_pipe_and_writes_stdout() {
    let out = run_child(Stdio::piped(), Some(b"hello\nworld\n"));
    assert!(out.contains("HELLO\nWORLD\n"), "child wrote {out:?}");
}

#[test]
fn stdio_reads_a_regular_file_to_its_end() {
    let path = std::env::temp_dir().join(format!("twistor-stdio-{}.txt", std::process::id()));
    let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&path, &big).unwrap();
    let out = run_child(Stdio::from(std::fs::File::open(&path).unwrap()), None);
    std::fs::remove_file(&path).unwrap();
    assert!(
        out.contains(&big.to_ascii_uppercase()),
        "child wrote {} bytes",
        out.len()
    );
}
