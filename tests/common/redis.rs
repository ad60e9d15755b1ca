//! A real `redis-server` for the tests that need one: started on a free loopback
//! port, with no persistence and a temporary directory of its own, killed on drop.
//! [`RedisServer::start`] returns `None` (having printed `skipped: redis-server not
//! found`) when there is no `redis-server` on the `PATH`, and the test passes.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::example::Proc;
use super::WATCHDOG;

/// A `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    proc: Option<Proc>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one, or says the test is skipped.
    pub fn start() -> Option<RedisServer> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            eprintln!("skipped: redis-server not found");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("twistor-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let mut server = RedisServer {
            proc: None,
            port,
            dir,
        };
        server.spawn();
        Some(server)
    }

    /// Starts the server (again, after [`kill`](Self::kill)) on the same port, and
    /// waits until it answers `PING`.
    pub fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--enable-debug-command", "yes", "--loglevel", "warning"])
        .arg("--dir")
        .arg(&self.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        self.proc = Some(Proc::spawn(&mut cmd));
        // Ready once it answers PING; polled, bounded by the watchdog.
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Ok(mut con) = self.client().get_connection() {
                if ::redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits until its port refuses connections.
    pub fn kill(&mut self) {
        drop(self.proc.take());
        // Gone once the port refuses.
        let deadline = Instant::now() + WATCHDOG;
        while TcpStream::connect(self.addr()).is_ok() {
            assert!(Instant::now() < deadline, "redis-server did not die");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A client of the `redis` crate for it.
    pub fn client(&self) -> ::redis::Client {
        ::redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("redis url")
    }

    /// A new connection (RESP2) of the `redis` crate.
    pub fn redis(&self) -> ::redis::Connection {
        self.client().get_connection().expect("a redis connection")
    }

    /// A new RESP3 connection of the `redis` crate.
    pub fn redis3(&self) -> ::redis::Connection {
        ::redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", self.port))
            .expect("redis url")
            .get_connection()
            .expect("a RESP3 redis connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        drop(self.proc.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
