//! A second SIGINT or SIGTERM during a slow graceful stop exits at once, with 130 or
//! 143 (EXAMPLES.md's conventions; `Reactor::stop_on_signals`).

mod common;

use std::io::{self, Write};
use std::net::TcpStream;
use std::process::Stdio;

use common::example::{self, lines_of, next_line, Proc};

/// Starts `echo`, gives it a client that sends without reading (so a graceful stop
/// has queued bytes it cannot flush), sends `signal` once and waits until the server
/// says it is stopping, then sends it again: the process must exit at once with
/// `status`, not wait for the flush. (The stop would end by itself only after the
/// 5 s shutdown timeout; the second signal comes right after the first is logged.)
fn second_signal_exits_with(signal: &str, status: i32) {
    let mut child = Proc::spawn(
        example::command("echo")
            .args(["--listen", "127.0.0.1:0", "--raw"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = child.stdout_lines();
    let stderr = lines_of(child.child().stderr.take().expect("piped stderr"));
    let addr: std::net::SocketAddr = next_line(&stdout)
        .strip_prefix("listening on ")
        .expect("the listening line")
        .parse()
        .expect("an address");

    let mut client = TcpStream::connect(addr).unwrap();
    client.set_nonblocking(true).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    // Until the kernel refuses more: the server's echoes back up behind a reader that
    // never reads, and it stops reading in turn.
    while sent < 64 << 20 {
        match client.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("sending: {e}"),
        }
    }

    child.signal(signal);
    loop {
        let line = next_line(&stderr);
        if line.contains("stopping") {
            break;
        }
    }
    child.signal(signal);
    let got = child.wait();
    assert_eq!(
        got.code(),
        Some(status),
        "second SIG{signal} during the stop gave {got:?}"
    );
    drop(client);
}

#[test]
fn a_second_sigint_during_a_slow_stop_exits_with_130() {
    second_signal_exits_with("INT", 130);
}

#[test]
fn a_second_sigterm_during_a_slow_stop_exits_with_143() {
    second_signal_exits_with("TERM", 143);
}
