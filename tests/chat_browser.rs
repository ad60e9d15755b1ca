//! The chat's page in a real browser: headless Chromium, driven by
//! tests/browser/chat.mjs with `playwright-core`, chats with a `chat_client` on the
//! line protocol (EXAMPLES.md, "chat in a browser (WebSocket)").
//!
//! The test needs Chromium (`/usr/bin/chromium`, or the path in `$CHROMIUM`), `node`,
//! and `playwright-core` installed in tests/browser (`npm ci` there; it never
//! downloads a browser). If any is missing it prints `skipped: ...` with the reason
//! and passes. Every wait is bounded: the driver's own timeouts, and the example
//! helpers' watchdog on every line read from a process. The driver runs in a process
//! group of its own, killed whole at the end, so that no Chromium outlives the test.

#![cfg(all(feature = "websocket", feature = "tls"))]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use common::example::{self, Listening, Proc};
use common::TempDir;

/// What the test needs from the machine, or why it is skipped.
struct Browser {
    chromium: PathBuf,
    driver: PathBuf,
}

fn find_browser() -> Result<Browser, String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
        .filter(|p| p.exists())
        .ok_or("chromium not found (apt-get install chromium, or set CHROMIUM)")?;
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Err("node not found".into());
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return Err("playwright-core not installed (run npm ci in tests/browser)".into());
    }
    Ok(Browser {
        chromium,
        driver: dir.join("chat.mjs"),
    })
}

/// tests/browser/chat.mjs with its page open, in a process group of its own.
struct Driver {
    proc: Proc,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
}

impl Driver {
    fn start(browser: &Browser, url: &str, profile: &Path) -> Driver {
        let mut proc = Proc::spawn(
            Command::new("node")
                .arg(&browser.driver)
                .arg(&browser.chromium)
                .arg(url)
                .arg(profile)
                .current_dir(browser.driver.parent().unwrap())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                // Chromium's own chatter (D-Bus, say) would read as a failure.
                .stderr(Stdio::null())
                .process_group(0),
        );
        let stdin = proc.child().stdin.take();
        let out = proc.stdout_lines();
        Driver { proc, stdin, out }
    }

    /// The driver's next answer; its `error` fails the test.
    fn answer(&self, want: &str) -> String {
        let line = example::next_line(&self.out);
        if let Some(error) = line.strip_prefix("error ") {
            panic!("the browser driver failed: {error}");
        }
        line.strip_prefix(want)
            .and_then(|rest| rest.strip_prefix(' ').or((rest.is_empty()).then_some("")))
            .unwrap_or_else(|| panic!("{line:?} instead of {want}"))
            .to_owned()
    }

    fn command(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("the driver's stdin is open");
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// Ends the driver's input: it closes the browser and exits 0.
    fn finish(&mut self) {
        drop(self.stdin.take());
        assert!(self.proc.wait().success(), "the browser driver failed");
    }
}

impl Drop for Driver {
    /// Kills the driver's whole process group (Chromium's processes too), whatever
    /// state it is in, and waits (boundedly) until the group is gone, so that no
    /// Chromium still writes to its profile when that is removed. After `finish`
    /// there is nothing left to kill.
    fn drop(&mut self) {
        let group = format!("-{}", self.proc.id());
        let kill = |signal: &str| {
            Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        kill("-KILL");
        let _ = self.proc.child().wait();
        let deadline = Instant::now() + GROUP_EXIT_WAIT;
        // Signal 0 only asks whether any process of the group is left.
        while kill("-0") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How long the test waits for a killed driver's processes to be gone: a bound on
/// the clean-up, not a condition of the test.
const GROUP_EXIT_WAIT: Duration = Duration::from_secs(5);

/// `chat_client --connect ADDR`, read line by line.
struct ChatClient {
    proc: Proc,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
}

impl ChatClient {
    fn start(addr: SocketAddr) -> ChatClient {
        let mut proc = Proc::spawn(
            example::command("chat_client")
                .args(["--connect", &addr.to_string()])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        let stdin = proc.child().stdin.take();
        let out = proc.stdout_lines();
        ChatClient { proc, stdin, out }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn expect(&self, want: &str) {
        assert_eq!(example::next_line(&self.out), want);
    }
}

/// The chat on its two listeners: the line protocol's address and the browsers'.
fn start_chat() -> (Listening, SocketAddr) {
    let server = example::serve("chat", "127.0.0.1:0", &["--ws-listen", "127.0.0.1:0"]);
    let second = server.next_line();
    let ws = second
        .strip_prefix("ws listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected second line {second:?}"));
    (server, ws)
}

#[test]
fn chromium_and_chat_client_chat_through_the_page() {
    let browser = match find_browser() {
        Ok(browser) => browser,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let (mut server, ws) = start_chat();
    let mut client = ChatClient::start(server.addr());
    client.expect("* welcome guest1, you are in lobby");

    let profile = TempDir::new("chat_browser");
    let mut page = Driver::start(&browser, &format!("http://{ws}/"), &profile.0);
    // The page opened its WebSocket and shows the welcome.
    assert_eq!(page.answer("welcome"), "* welcome guest2, you are in lobby");
    client.expect("* guest2 joined lobby");

    // A line typed in the page and sent with Enter reaches the line member; the
    // input is cleared.
    page.command("type hello from chromium");
    assert_eq!(page.answer("typed"), "");
    client.expect("<guest2> hello from chromium");
    page.command("type /nick webby");
    assert_eq!(page.answer("typed"), "");
    client.expect("* guest2 is now webby");

    // A line from the line member shows in the page as one entry whose text is
    // exactly the message: markup in it is text, not elements.
    client.send("<b>hi</b> & <script>alert(1)</script> webby");
    page.command("wait <guest1> <b>hi</b> & <script>alert(1)</script> webby");
    assert_eq!(page.answer("seen"), "2");
    page.command("log");
    assert_eq!(
        page.answer("log"),
        r#"[["* welcome guest2, you are in lobby",0],["* guest2 is now webby",0],["<guest1> <b>hi</b> & <script>alert(1)</script> webby",0]]"#
    );

    // Closing the browser ends the member.
    page.finish();
    client.expect("* webby disconnected");
    client.send("/quit");
    client.expect("* bye");
    client.expect("* connection closed");
    assert!(client.proc.wait().success());
    server.signal("TERM");
    assert_eq!(server.wait().code(), Some(0));
}
