//! A line client for the chat server: the keyboard and the socket on one reactor
//! thread, as Twisted's `StandardIO` next to a TCP client.
//!
//! Every line typed on stdin is sent to the server; every line the server sends is
//! printed on stdout. Two connections on one reactor do it, each relaying to the other
//! with `cx.conn(id).write`: stdin/stdout ([`Reactor::stdio`]) and the socket
//! ([`Reactor::connect_tcp`], or [`Reactor::connect_tls`] with `--tls`). No thread
//! blocks on the keyboard.
//!
//! The client exits 0 when the server closes (after `/quit`, say), or at the end of
//! stdin: what was typed is sent (a last line without a newline gets one), then the
//! connection is closed. It exits 1 if it cannot connect or the connection breaks.
//!
//! Run it, with the chat server running:
//!
//! ```text
//! cargo run --example chat_client -- [--connect 127.0.0.1:8000] [--tls --tls-ca PEM [--tls-server-name NAME]]
//! ```
//!
//! With `--tls` it speaks TLS ([`Reactor::connect_tls`]) and trusts only the CA
//! certificates in `--tls-ca`; the server's certificate must be for
//! `--tls-server-name`, by default the host part of `--connect`.
//!
//! Type a line, `/nick NAME`, `/join ROOM`, `/who`, `/quit`. Or script it:
//! `printf '/nick bot\nhello\n' | cargo run --example chat_client`.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;

use twistor::tls::rustls::pki_types::ServerName;
use twistor::tls::TlsConnector;
use twistor::{ConnId, Context, Protocol, Reactor, Reason};

/// The chat server's default address.
const DEFAULT_CONNECT: &str = "127.0.0.1:8000";

const USAGE: &str = "\
Line client for the chat example: stdin to the server, the server to stdout.

Usage: chat_client [FLAGS]

Flags:
  --connect ADDR            server to connect to, host:port (default: 127.0.0.1:8000)
  --tls                     speak TLS (needs --tls-ca)
  --tls-ca PEM              trust the CA certificates in this file, and no other
  --tls-server-name NAME    name the server's certificate must carry (default: the host in --connect)
  --help                    print this help and exit
";

/// The command line, checked.
struct Config {
    addr: SocketAddr,
    /// With `--tls`: the connector and the name to verify the server for.
    tls: Option<(TlsConnector, String)>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    let config = parse_args(std::env::args().skip(1));
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat_client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--connect ADDR`, `--tls`, `--tls-ca PEM`, `--tls-server-name NAME` (each value
/// flag also as `--flag=VALUE`) and `--help`. A bad command line exits 2; a CA file
/// that cannot be used exits 1, with one line naming the flag and the file.
fn parse_args(mut args: impl Iterator<Item = String>) -> Config {
    let mut connect = DEFAULT_CONNECT.to_owned();
    let mut tls = false;
    let mut tls_ca = None;
    let mut server_name = None;
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            print!("{USAGE}");
            let _ = io::stdout().flush();
            std::process::exit(0);
        }
        if arg == "--tls" {
            tls = true;
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let slot = match name {
            "--connect" => &mut connect,
            "--tls-ca" => tls_ca.insert(String::new()),
            "--tls-server-name" => server_name.insert(String::new()),
            _ => usage_error(&format!("unknown argument `{arg}`")),
        };
        match inline.or_else(|| args.next()) {
            Some(value) => *slot = value,
            None => usage_error(&format!("{name} needs a value")),
        }
    }
    // Resolving a host name blocks, but only here, before the reactor runs.
    let addr = match connect.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => usage_error(&format!("`{connect}` resolves to no address")),
        Err(e) => usage_error(&format!("bad address `{connect}`: {e}")),
    };
    let tls = match (tls, tls_ca) {
        (true, Some(ca)) => Some(tls_config(&connect, &ca, server_name)),
        (true, None) => usage_error("--tls needs --tls-ca"),
        (false, Some(_)) => usage_error("--tls-ca needs --tls"),
        (false, None) if server_name.is_some() => usage_error("--tls-server-name needs --tls"),
        (false, None) => None,
    };
    Config { addr, tls }
}

/// The TLS half of the command line: a connector trusting `ca`, and the name to
/// verify the server for (`server_name`, else the host part of `connect`).
fn tls_config(connect: &str, ca: &str, server_name: Option<String>) -> (TlsConnector, String) {
    let name = server_name.unwrap_or_else(|| host_of(connect).to_owned());
    if ServerName::try_from(name.as_str()).is_err() {
        usage_error(&format!(
            "--tls-server-name must be a DNS name or an IP address, not {name:?}"
        ));
    }
    if ca.is_empty() {
        usage_error("--tls-ca must not be empty");
    }
    match TlsConnector::from_ca_pem(ca) {
        Ok(connector) => (connector, name),
        Err(e) => {
            let message = e.to_string().replace(['\r', '\n'], " ");
            eprintln!("chat_client: --tls-ca {message}");
            std::process::exit(1);
        }
    }
}

/// The host part of `host:port` (`[::1]:8000` gives `::1`).
fn host_of(connect: &str) -> &str {
    let host = connect.rsplit_once(':').map_or(connect, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn usage_error(message: &str) -> ! {
    eprint!("chat_client: {message}\n\n{USAGE}");
    std::process::exit(2);
}

fn run(config: Config) -> io::Result<()> {
    let Config { addr, tls } = config;
    let mut reactor = Reactor::new()?;
    let shared = Rc::new(Shared::default());
    let server = ServerLink {
        addr,
        shared: Rc::clone(&shared),
    };
    let link = match &tls {
        Some((connector, name)) => reactor.connect_tls(addr, connector, name, server),
        None => reactor.connect_tcp(addr, server),
    };
    let screen = reactor.stdio(Keyboard {
        server: link,
        shared: Rc::clone(&shared),
        at_line_start: true,
    })?;
    shared.screen.set(Some(screen));
    // Ctrl-C stops gracefully, which also puts the terminal back in blocking mode.
    reactor.stop_on_signals()?;
    reactor.run()?;
    match shared.error.take() {
        Some(error) => Err(io::Error::other(error)),
        None => Ok(()),
    }
}

/// What the two connections tell each other.
#[derive(Default)]
struct Shared {
    /// The stdin/stdout connection, where server output goes.
    screen: Cell<Option<ConnId>>,
    /// The socket is connected.
    connected: Cell<bool>,
    /// stdin has ended: close the socket once what was typed has gone out.
    input_done: Cell<bool>,
    /// Why the client failed, if it did: the exit status is 1.
    error: RefCell<Option<String>>,
}

impl Shared {
    fn fail(&self, cx: &mut Context<'_>, error: String) {
        self.error.borrow_mut().get_or_insert(error);
        cx.stop_reactor();
    }
}

/// stdin and stdout: what is typed goes to the server as it is.
struct Keyboard {
    server: ConnId,
    shared: Rc<Shared>,
    /// The last byte sent ended a line (or nothing was sent).
    at_line_start: bool,
}

impl Protocol for Keyboard {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        // Bytes typed before the socket is connected are queued by the reactor.
        cx.conn(self.server).write(data);
        self.at_line_start = data.ends_with(b"\n");
    }

    /// End of stdin: finish the last line and shut the socket's write side; the
    /// server answers what it was sent and closes, which ends the client. stdout
    /// stays open (this connection is not closed) until then.
    fn read_eof(&mut self, cx: &mut Context<'_>) {
        if !self.at_line_start {
            cx.conn(self.server).write(b"\n");
        }
        self.shared.input_done.set(true);
        // A socket still connecting cannot be half-closed yet; the link does it
        // itself once connected.
        if self.shared.connected.get() {
            cx.conn(self.server).lose_write_connection();
        }
    }

    // stdout backs up (a slow terminal or pipe): stop reading the server until it
    // drains, so that the kernel pushes back on the server instead of our memory.
    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        cx.conn(self.server).pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        cx.conn(self.server).resume_reading();
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        match reason {
            Reason::Done => cx.stop_reactor(),
            reason => self.shared.fail(cx, format!("stdout: {reason}")),
        }
    }
}

/// The socket: what the server sends is printed as it is.
struct ServerLink {
    addr: SocketAddr,
    shared: Rc<Shared>,
}

impl ServerLink {
    /// The connection is ready for a half-close: if stdin has ended meanwhile, send
    /// what it had, then half-close.
    fn ready(&mut self, cx: &mut Context<'_>) {
        self.shared.connected.set(true);
        if self.shared.input_done.get() {
            cx.lose_write_connection();
        }
    }
}

impl Protocol for ServerLink {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        // With TLS this comes before the handshake: what is written, and a
        // half-close, wait for it (the reactor holds them).
        self.ready(cx);
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        if let Some(screen) = self.shared.screen.get() {
            cx.conn(screen).write(data);
        }
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        // Stopping flushes what is still queued for stdout before the reactor ends.
        match reason {
            Reason::Done => cx.stop_reactor(),
            reason => self
                .shared
                .fail(cx, format!("connection to the server: {reason}")),
        }
    }

    fn connection_failed(&mut self, cx: &mut Context<'_>, error: io::Error) {
        let message = format!("cannot connect to {}: {error}", self.addr);
        self.shared.fail(cx, message);
    }
}
