//! A line client for the chat server: the keyboard and the socket on one reactor
//! thread, as Twisted's `StandardIO` next to a TCP client.
//!
//! Every line typed on stdin is sent to the server; every line the server sends is
//! printed on stdout. Two connections on one reactor do it, each relaying to the other
//! with `cx.conn(id).write`: stdin/stdout ([`Reactor::stdio`]) and the socket
//! ([`Reactor::connect_tcp`], [`Reactor::connect_host`] for a host name, or
//! [`Reactor::connect_tls`] with `--tls`). No thread blocks on the keyboard, and a
//! host name is resolved on the reactor's thread pool.
//!
//! The client exits 0 when the server closes (after `/quit`, say), printing
//! `* connection closed`, or at the end of stdin: what was typed is sent (a last line
//! without a newline gets one), then the connection is closed. It exits 1 if it
//! cannot connect (a TLS handshake that fails counts: the server could not be
//! verified).
//!
//! With `--reconnect` a [`ClientService`] keeps the connection up instead: when a
//! connect is refused or the connection is lost, it prints
//! `* connection refused, reconnecting in N.Ns` (or `* connection lost, ...`), retries
//! with exponential backoff and jitter (`--reconnect-initial-ms`, `--reconnect-max-ms`),
//! prints `* reconnected`, and restores the nick it last had confirmed and the room it
//! was in. Up to 100 lines typed while disconnected are held and sent in order once
//! reconnected; each further one gets `* not connected, line dropped`. With `--tls`
//! too, the service speaks TLS on each connection
//! ([`ClientServiceBuilder::tls`]); a handshake that fails (a server it cannot
//! verify) is a refused connect, retried the same way, with the reason logged on
//! stderr. The client counts itself connected (`* reconnected`, the nick and room
//! restored, the held lines sent) once the service does
//! ([`ClientService::when_connected`], from `connection_made`): after the TLS
//! handshake, so that nothing is sent into a connection that then fails it.
//!
//! Run it, with the chat server running:
//!
//! ```text
//! cargo run --example chat_client -- [--connect 127.0.0.1:8000] [--reconnect] [--tls --tls-ca PEM [--tls-server-name NAME]]
//! ```
//!
//! With `--tls` it speaks TLS ([`Reactor::connect_tls`]) and trusts only the CA
//! certificates in `--tls-ca`; the server's certificate must be for
//! `--tls-server-name`, by default the host part of `--connect`.
//!
//! Type a line, `/nick NAME`, `/join ROOM`, `/who`, `/quit`. Or script it:
//! `printf '/nick bot\nhello\n' | cargo run --example chat_client`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use twistor::backoff::{Backoff, Jitter};
use twistor::client::{ClientService, ClientServiceBuilder, Retry, RetryCause, Target};
use twistor::tls::rustls::pki_types::ServerName;
use twistor::tls::TlsConnector;
use twistor::{ConnId, Context, Protocol, Reactor, Reason};

/// The chat server's default address.
const DEFAULT_CONNECT: &str = "127.0.0.1:8000";

/// Lines held while disconnected (with `--reconnect`); later ones are dropped.
const MAX_HELD_LINES: usize = 100;

const USAGE: &str = "\
Line client for the chat example: stdin to the server, the server to stdout.

Usage: chat_client [FLAGS]

Flags:
  --connect ADDR              server to connect to, host:port; the host may be a name (default: 127.0.0.1:8000)
  --reconnect                 when refused or disconnected, retry with backoff, restore nick and room
  --reconnect-initial-ms MS   first retry after this long (default 1000)
  --reconnect-max-ms MS       longest wait between retries (default 60000)
  --tls                       speak TLS (needs --tls-ca)
  --tls-ca PEM                trust the CA certificates in this file, and no other
  --tls-server-name NAME      name the server's certificate must carry (default: the host in --connect)
  --help                      print this help and exit
";

/// The command line, checked.
struct Config {
    /// Where to connect: an address, or a host name resolved off the loop thread.
    target: Target,
    /// With `--tls`: the connector, the name to verify the server for, and, without
    /// `--reconnect`, the address (a name is resolved at start, before the reactor
    /// runs; with `--reconnect` the service resolves it at each connect).
    tls: Option<(TlsConnector, ServerName<'static>, Option<SocketAddr>)>,
    /// With `--reconnect`: the backoff policy.
    reconnect: Option<Backoff>,
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

/// `--connect ADDR`, `--reconnect`, `--reconnect-initial-ms MS`,
/// `--reconnect-max-ms MS`, `--tls`, `--tls-ca PEM`, `--tls-server-name NAME` (each
/// value flag also as `--flag=VALUE`) and `--help`. A bad command line exits 2; a CA
/// file that cannot be used exits 1, with one line naming the flag and the file.
fn parse_args(mut args: impl Iterator<Item = String>) -> Config {
    let mut connect = DEFAULT_CONNECT.to_owned();
    let mut tls = false;
    let mut reconnect = false;
    let mut tls_ca = None;
    let mut server_name = None;
    let mut initial_ms = None;
    let mut max_ms = None;
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
        if arg == "--reconnect" {
            reconnect = true;
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
            "--reconnect-initial-ms" => initial_ms.insert(String::new()),
            "--reconnect-max-ms" => max_ms.insert(String::new()),
            _ => usage_error(&format!("unknown argument `{arg}`")),
        };
        match inline.or_else(|| args.next()) {
            Some(value) => *slot = value,
            None => usage_error(&format!("{name} needs a value")),
        }
    }
    let target = parse_target(&connect);
    let reconnect = match (reconnect, &initial_ms, &max_ms) {
        (true, _, _) => Some(backoff(initial_ms.as_deref(), max_ms.as_deref())),
        (false, Some(_), _) => usage_error("--reconnect-initial-ms needs --reconnect"),
        (false, _, Some(_)) => usage_error("--reconnect-max-ms needs --reconnect"),
        (false, None, None) => None,
    };
    let tls = match (tls, tls_ca) {
        (true, Some(ca)) => Some(tls_config(&connect, &ca, server_name, reconnect.is_none())),
        (true, None) => usage_error("--tls needs --tls-ca"),
        (false, Some(_)) => usage_error("--tls-ca needs --tls"),
        (false, None) if server_name.is_some() => usage_error("--tls-server-name needs --tls"),
        (false, None) => None,
    };
    Config {
        target,
        tls,
        reconnect,
    }
}

/// `--connect`'s value: an address, or `host:port` with a host name (`[::1]:8000`
/// for an IPv6 address).
fn parse_target(connect: &str) -> Target {
    if let Ok(addr) = connect.parse::<SocketAddr>() {
        return Target::Tcp(addr);
    }
    let Some((host, port)) = connect.rsplit_once(':') else {
        usage_error(&format!("--connect must be host:port, not `{connect}`"));
    };
    let Ok(port) = port.parse::<u16>() else {
        usage_error(&format!("--connect: bad port in `{connect}`"));
    };
    if host.is_empty() || host.contains(['[', ']', ':', ' ']) {
        usage_error(&format!("--connect: bad host in `{connect}`"));
    }
    Target::host(host, port)
}

/// The retry policy: Twisted `ClientService`'s growth (factor 1.5) from `initial_ms`
/// to at most `max_ms`, with a uniform jitter of up to a quarter of the first delay.
fn backoff(initial_ms: Option<&str>, max_ms: Option<&str>) -> Backoff {
    let ms = |flag: &str, value: Option<&str>, default: u64| match value {
        None => default,
        Some(v) => v
            .parse::<u64>()
            .unwrap_or_else(|_| usage_error(&format!("{flag} must be a number of milliseconds"))),
    };
    let initial = ms("--reconnect-initial-ms", initial_ms, 1000);
    let max = ms("--reconnect-max-ms", max_ms, 60_000);
    if max == 0 {
        usage_error("--reconnect-max-ms must be at least 1");
    }
    if initial > max {
        usage_error("--reconnect-initial-ms must not exceed --reconnect-max-ms");
    }
    let initial = Duration::from_millis(initial);
    Backoff::client_service()
        .initial(initial)
        .max(Duration::from_millis(max))
        .jitter(Jitter::Uniform(initial / 4))
}

/// The TLS half of the command line: a connector trusting `ca`, the name to verify
/// the server for (`server_name`, else the host part of `connect`), and, if
/// `resolve`, the address (resolved here, before the reactor runs: `connect_tls`
/// takes an address).
fn tls_config(
    connect: &str,
    ca: &str,
    server_name: Option<String>,
    resolve: bool,
) -> (TlsConnector, ServerName<'static>, Option<SocketAddr>) {
    let name = server_name.unwrap_or_else(|| host_of(connect).to_owned());
    let Ok(name) = ServerName::try_from(name.clone()) else {
        usage_error(&format!(
            "--tls-server-name must be a DNS name or an IP address, not {name:?}"
        ));
    };
    if ca.is_empty() {
        usage_error("--tls-ca must not be empty");
    }
    let addr = match resolve.then(|| connect.to_socket_addrs().map(|mut addrs| addrs.next())) {
        None => None,
        Some(Ok(Some(addr))) => Some(addr),
        Some(Ok(None)) => usage_error(&format!("`{connect}` resolves to no address")),
        Some(Err(e)) => usage_error(&format!("bad address `{connect}`: {e}")),
    };
    match TlsConnector::from_ca_pem(ca) {
        Ok(connector) => (connector, name, addr),
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
    let Config {
        target,
        tls,
        reconnect,
    } = config;
    let mut reactor = Reactor::new()?;
    let shared = Rc::new(Shared {
        target: target.to_string(),
        reconnect: reconnect.is_some(),
        ..Shared::default()
    });
    let screen = reactor.stdio(Keyboard {
        shared: Rc::clone(&shared),
        typed: Vec::new(),
        at_line_start: true,
    })?;
    shared.screen.set(Some(screen));
    let link = {
        let shared = Rc::clone(&shared);
        move || ServerLink {
            shared: Rc::clone(&shared),
            line: Vec::new(),
        }
    };
    match (tls, reconnect, target) {
        (tls, Some(backoff), target) => {
            let mut builder = ClientServiceBuilder::new()
                .backoff(backoff)
                .on_retry(move |retry| tell_retry(retry, screen));
            if let Some((connector, name, _)) = tls {
                builder = builder.tls(connector, name);
            }
            // The links reach the service through `shared` (`ServerLink::up`).
            let service = builder.start(&mut reactor, target, link);
            shared.service.replace(Some(service));
        }
        (Some((connector, name, Some(addr))), None, _) => {
            reactor.connect_tls(addr, &connector, &name.to_str(), link());
        }
        (None, None, Target::Host { host, port }) => {
            reactor.connect_host(&host, port, link());
        }
        (None, None, Target::Tcp(addr)) => {
            reactor.connect_tcp(addr, link());
        }
        (_, None, other) => unreachable!("--connect gives no {other} without an address"),
    }
    // Ctrl-C stops gracefully, which also puts the terminal back in blocking mode.
    reactor.stop_on_signals()?;
    reactor.run()?;
    // The service's handle in `shared` makes a cycle with its factory: break it.
    shared.service.take();
    match shared.error.take() {
        Some(error) => Err(io::Error::other(error)),
        None => Ok(()),
    }
}

/// Prints a retry's notice on the screen.
fn tell_retry(retry: &mut Retry<'_>, screen: ConnId) {
    let what = match retry.cause {
        RetryCause::Failed(_) => "refused",
        _ => "lost",
    };
    let secs = retry.delay.as_secs_f64();
    let notice = format!("* connection {what}, reconnecting in {secs:.1}s\n");
    retry.write_to(screen, notice.as_bytes());
}

/// What the two connections tell each other.
#[derive(Default)]
struct Shared {
    /// `--connect`'s target, for messages.
    target: String,
    /// `--reconnect`: hold at most [`MAX_HELD_LINES`] while disconnected, restore
    /// the nick and the room after reconnecting.
    reconnect: bool,
    /// The stdin/stdout connection, where server output goes.
    screen: Cell<Option<ConnId>>,
    /// The server connection, while it is up.
    server: Cell<Option<ConnId>>,
    /// A connect failed or a connection was lost: the next one is a reconnection.
    retried: Cell<bool>,
    /// stdin has ended: close the socket once what was typed has gone out.
    input_done: Cell<bool>,
    /// Lines typed while not connected, in order, each with its newline.
    held: RefCell<VecDeque<Vec<u8>>>,
    /// What was typed after the last held line, while not connected.
    partial: RefCell<Vec<u8>>,
    /// Who and where we are, as the server confirmed it.
    me: RefCell<Me>,
    /// Why the client failed, if it did: the exit status is 1.
    error: RefCell<Option<String>>,
    /// With `--reconnect`, the service that keeps the connection up.
    service: RefCell<Option<ClientService<ServerLink>>>,
}

/// Our nick and room as the server confirmed them, and the changes asked for.
#[derive(Default)]
struct Me {
    /// The nick the server knows this connection by (`guestN` at first).
    nick: String,
    /// The nick last set with `/nick` and confirmed: restored after reconnecting.
    chosen: Option<String>,
    /// The room last joined and confirmed (`None`: the lobby).
    room: Option<String>,
    /// A `/nick` or `/join` sent and not yet confirmed.
    asked_nick: Option<String>,
    asked_room: Option<String>,
}

impl Me {
    /// Notes a `/nick` or `/join` typed or sent, to recognise its confirmation.
    fn asked(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(nick) = line.strip_prefix("/nick ") {
            self.asked_nick = Some(nick.trim().to_owned());
        } else if let Some(room) = line.strip_prefix("/join ") {
            self.asked_room = Some(room.trim().to_owned());
        }
    }

    /// A line from the server: a welcome, or a confirmation of what we asked.
    fn heard(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("* welcome ") {
            if let Some((nick, _)) = rest.split_once(", you are in ") {
                self.nick = nick.to_owned();
            }
        } else if let Some((old, new)) = line
            .strip_prefix("* ")
            .and_then(|l| l.split_once(" is now "))
        {
            if old == self.nick && self.asked_nick.as_deref() == Some(new) {
                self.nick = new.to_owned();
                self.chosen = self.asked_nick.take();
            }
        } else if let Some((nick, room)) = line
            .strip_prefix("* ")
            .and_then(|l| l.split_once(" joined "))
        {
            if nick == self.nick && self.asked_room.as_deref() == Some(room) {
                self.room = self.asked_room.take();
            }
        }
    }

    /// What to send on a new connection to be who and where we were.
    fn restore(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(nick) = &self.chosen {
            out.extend_from_slice(format!("/nick {nick}\n").as_bytes());
            self.asked_nick = Some(nick.clone());
        }
        if let Some(room) = &self.room {
            out.extend_from_slice(format!("/join {room}\n").as_bytes());
            self.asked_room = Some(room.clone());
        }
        out
    }
}

impl Shared {
    fn fail(&self, cx: &mut Context<'_>, error: String) {
        self.error.borrow_mut().get_or_insert(error);
        cx.stop_reactor();
    }

    /// Holds what was typed while not connected; with `--reconnect`, a line past
    /// the first [`MAX_HELD_LINES`] is dropped, with a notice on the screen.
    fn hold(&self, cx: &mut Context<'_>, data: &[u8]) {
        let mut partial = self.partial.borrow_mut();
        for piece in data.split_inclusive(|&b| b == b'\n') {
            partial.extend_from_slice(piece);
            if !piece.ends_with(b"\n") {
                break;
            }
            let line = std::mem::take(&mut *partial);
            let mut held = self.held.borrow_mut();
            if self.reconnect && held.len() >= MAX_HELD_LINES {
                cx.write(b"* not connected, line dropped\n");
            } else {
                held.push_back(line);
            }
        }
    }

    /// Prints a notice on the screen.
    fn tell(&self, cx: &mut Context<'_>, notice: &str) {
        if let Some(screen) = self.screen.get() {
            cx.conn(screen).write(notice.as_bytes());
        }
    }
}

/// stdin and stdout: what is typed goes to the server as it is, or is held.
struct Keyboard {
    shared: Rc<Shared>,
    /// The line being typed, to recognise `/nick` and `/join`.
    typed: Vec<u8>,
    /// The last byte typed ended a line (or nothing was typed).
    at_line_start: bool,
}

impl Protocol for Keyboard {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        for piece in data.split_inclusive(|&b| b == b'\n') {
            self.typed.extend_from_slice(piece);
            if piece.ends_with(b"\n") {
                self.shared.me.borrow_mut().asked(&self.typed);
                self.typed.clear();
            }
        }
        match self.shared.server.get() {
            Some(server) => {
                cx.conn(server).write(data);
            }
            None => self.shared.hold(cx, data),
        }
        self.at_line_start = data.ends_with(b"\n");
    }

    /// End of stdin: finish the last line and shut the socket's write side; the
    /// server answers what it was sent and closes, which ends the client. stdout
    /// stays open (this connection is not closed) until then.
    fn read_eof(&mut self, cx: &mut Context<'_>) {
        if !self.at_line_start {
            self.data_received(cx, b"\n");
        }
        self.shared.input_done.set(true);
        // A socket not connected yet cannot be half-closed; the link does it itself
        // once connected.
        if let Some(server) = self.shared.server.get() {
            cx.conn(server).lose_write_connection();
        }
    }

    // stdout backs up (a slow terminal or pipe): stop reading the server until it
    // drains, so that the kernel pushes back on the server instead of our memory.
    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        if let Some(server) = self.shared.server.get() {
            cx.conn(server).pause_reading();
        }
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        if let Some(server) = self.shared.server.get() {
            cx.conn(server).resume_reading();
        }
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
    shared: Rc<Shared>,
    /// The server's line being received, to follow our nick and room.
    line: Vec<u8>,
}

impl ServerLink {
    /// The connection is up: print it, restore who we were, send what was held.
    fn up(&mut self, cx: &mut Context<'_>) {
        let shared = &self.shared;
        shared.server.set(Some(cx.id()));
        if shared.retried.get() {
            shared.tell(cx, "* reconnected\n");
        }
        if shared.reconnect {
            let restore = shared.me.borrow_mut().restore();
            cx.write(&restore);
        }
        for line in shared.held.borrow_mut().drain(..) {
            cx.write(&line);
        }
        cx.write(&std::mem::take(&mut *shared.partial.borrow_mut()));
        if shared.input_done.get() {
            cx.lose_write_connection();
        }
    }
}

impl Protocol for ServerLink {
    fn connection_made(&mut self, cx: &mut Context<'_>) {
        // Without --reconnect, with TLS, this comes before the handshake: what is
        // written, and a half-close, wait for it (the reactor holds them), and a
        // handshake that fails ends the client.
        let service = self.shared.service.borrow().clone();
        let Some(service) = service else {
            return self.up(cx);
        };
        // With --reconnect, up once the service says so (after the TLS handshake):
        // until then lines typed are held, and a handshake that fails loses none.
        // `Some(1)`: this attempt only; a failure drops the callback.
        service.when_connected(cx, Some(1), |up| {
            if let Ok((link, cx)) = up {
                link.up(cx);
            }
        });
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        if let Some(screen) = self.shared.screen.get() {
            cx.conn(screen).write(data);
        }
        for piece in data.split_inclusive(|&b| b == b'\n') {
            self.line.extend_from_slice(piece);
            if piece.ends_with(b"\n") {
                let line = String::from_utf8_lossy(&self.line);
                self.shared
                    .me
                    .borrow_mut()
                    .heard(line.trim_end_matches(['\r', '\n']));
                self.line.clear();
            }
        }
    }

    fn connection_lost(&mut self, cx: &mut Context<'_>, reason: Reason) {
        let shared = &self.shared;
        shared.server.set(None);
        if let Reason::Tls(e) = &reason {
            if !shared.reconnect {
                // A TLS failure (a server that cannot be verified, say) is a connection
                // that never became one: as a refused connect, exit 1 and say why.
                let message = format!("cannot connect to {}: TLS: {e}", shared.target);
                return shared.fail(cx, message);
            }
        }
        if shared.reconnect && !shared.input_done.get() {
            // The service retries, and says when (`tell_retry`).
            shared.retried.set(true);
            return;
        }
        // Stopping flushes what is still queued for stdout before the reactor ends.
        shared.tell(cx, "* connection closed\n");
        cx.stop_reactor();
    }

    fn connection_failed(&mut self, cx: &mut Context<'_>, error: io::Error) {
        let shared = &self.shared;
        if shared.reconnect {
            shared.retried.set(true);
            return;
        }
        let message = format!("cannot connect to {}: {error}", shared.target);
        shared.fail(cx, message);
    }
}
