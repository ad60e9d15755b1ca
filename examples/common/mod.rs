//! Flag parsing and start-up chores shared by the example servers.
//!
//! Every example follows the conventions in EXAMPLES.md: `--listen ADDR`, `--help`,
//! exactly one `listening on ADDR` line on stdout once bound, logs on stderr, and a
//! graceful stop on SIGINT/SIGTERM. This module does those chores so that each example
//! only declares its own flags:
//!
//! ```ignore
//! let args = Cli::new("echo", "Upper-casing line echo server.", "127.0.0.1:5639")
//!     .switch("raw", "echo bytes as they arrive, without line framing")
//!     .option("threads", "N", "1", "reactors, one per thread")
//!     .parse();
//! let addr = args.listen_addr(); // or exit 2: `echo: --listen must be ...`
//! let threads: usize = args.number("threads", 1..); // `--threads 0`: exit 2
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp(addr, factory)?;
//! serve(&mut reactor, port.local_addr) // announces `listening on ADDR`, runs
//! ```
//!
//! Flags are `--name VALUE` or `--name=VALUE`; switches are bare `--name`. `--help`
//! prints the usage to stdout and exits 0.
//!
//! A command line that cannot work is refused at start, as EXAMPLES.md asks: one line
//! on stderr that names the flag (`echo: --threads must be at least 1`), and exit
//! status 2. That covers an unknown flag, a missing value, and a value that does not
//! parse or is out of range: read values with the typed getters ([`Args::number`],
//! [`Args::listen_addr`], [`Args::listen_path`], [`Args::path`]), which check the range
//! a server can work with, not only the type.
//!
//! The TCP servers speak TLS when asked (EXAMPLES.md, "TLS on the TCP examples"):
//! [`Cli::tls_flags`] declares `--tls-cert`, `--tls-key`, `--tls-client-ca` and
//! `--tls-handshake-timeout`, and [`Args::tls_acceptor`] turns them into the
//! `Option<TlsAcceptor>` that [`listen_tcp`] (or `GroupBuilder::tls`) takes:
//!
//! ```ignore
//! let args = Cli::new(...).tls_flags().parse();
//! let tls = args.tls_acceptor(); // None without --tls-cert; a bad file: exit 1
//! let port = listen_tcp(&mut reactor, addr, tls.as_ref(), factory)?;
//! ```

// Each example uses a different subset of these helpers.
#![allow(dead_code)]
#![cfg_attr(not(feature = "tls"), allow(unused_imports))]

use std::fmt::{self, Display};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::{Bound, RangeBounds};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

#[cfg(feature = "tls")]
use twistor::tls::{ConfigError, TlsAcceptor};
use twistor::{Factory, Listening, Reactor, ReactorGroup};

pub mod echo;

/// One flag an example accepts.
struct Flag {
    name: &'static str,
    /// `Some(METAVAR)` for a flag that takes a value, `None` for a switch.
    metavar: Option<&'static str>,
    default: Option<String>,
    help: &'static str,
}

/// An example's command-line interface: its name, a one-line summary and its flags.
/// `--listen` and `--help` are always there.
pub struct Cli {
    name: &'static str,
    about: &'static str,
    flags: Vec<Flag>,
}

/// The parsed command line: every flag's value, defaults filled in.
#[derive(Debug)]
pub struct Args {
    /// The program's name, which starts every refusal.
    program: &'static str,
    values: Vec<(&'static str, Option<String>)>,
    switches: Vec<&'static str>,
}

/// Why a command line was refused.
#[derive(Debug, PartialEq)]
pub enum ParseError {
    /// `--help` was given: not an error, but parsing stops there.
    Help,
    Unknown(String),
    MissingValue(&'static str),
    UnexpectedValue(&'static str),
}

impl Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Help => f.write_str("help requested"),
            ParseError::Unknown(arg) => write!(f, "unknown argument `{arg}`"),
            ParseError::MissingValue(name) => write!(f, "--{name} needs a value"),
            ParseError::UnexpectedValue(name) => write!(f, "--{name} takes no value"),
        }
    }
}

impl Cli {
    /// A command line with `--listen ADDR` (defaulting to `default_listen`) and `--help`.
    pub fn new(name: &'static str, about: &'static str, default_listen: &str) -> Cli {
        Cli {
            name,
            about,
            flags: Vec::new(),
        }
        .option("listen", "ADDR", default_listen, "address to listen on")
    }

    /// Adds a flag that takes a value, with a default.
    pub fn option(
        mut self,
        name: &'static str,
        metavar: &'static str,
        default: &str,
        help: &'static str,
    ) -> Cli {
        self.flags.push(Flag {
            name,
            metavar: Some(metavar),
            default: Some(default.to_owned()),
            help,
        });
        self
    }

    /// Adds an on/off switch, off unless given.
    pub fn switch(mut self, name: &'static str, help: &'static str) -> Cli {
        self.flags.push(Flag {
            name,
            metavar: None,
            default: None,
            help,
        });
        self
    }

    /// Adds a flag that takes a value and has no default: [`Args::optional`] reads it.
    pub fn optional(
        mut self,
        name: &'static str,
        metavar: &'static str,
        help: &'static str,
    ) -> Cli {
        self.flags.push(Flag {
            name,
            metavar: Some(metavar),
            default: None,
            help,
        });
        self
    }

    #[cfg(feature = "tls")]
    /// Adds the TLS flags every TCP server takes (EXAMPLES.md, "TLS on the TCP
    /// examples"); [`Args::tls_acceptor`] reads them.
    pub fn tls_flags(self) -> Cli {
        self.optional(
            "tls-cert",
            "PEM",
            "speak TLS with this certificate chain (needs --tls-key)",
        )
        .optional("tls-key", "PEM", "the private key of --tls-cert")
        .optional(
            "tls-client-ca",
            "PEM",
            "require a client certificate signed by this CA (mutual TLS)",
        )
        .option(
            "tls-handshake-timeout",
            "SECS",
            "10",
            "close a connection whose TLS handshake is not done by then",
        )
    }

    /// Parses the process's arguments; on `--help` prints the usage and exits 0, on a
    /// bad command line prints one line naming the flag to stderr and exits 2.
    pub fn parse(self) -> Args {
        match self.parse_from(std::env::args().skip(1)) {
            Ok(args) => args,
            Err(ParseError::Help) => {
                print!("{}", self.usage());
                let _ = io::stdout().flush();
                std::process::exit(0);
            }
            Err(e) => exit_refused(self.name, format_args!("{e} (see --help)")),
        }
    }

    /// Parses `args` (without the program name).
    pub fn parse_from<I, S>(&self, args: I) -> Result<Args, ParseError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut parsed = Args {
            program: self.name,
            values: self
                .flags
                .iter()
                .filter(|f| f.metavar.is_some())
                .map(|f| (f.name, f.default.clone()))
                .collect(),
            switches: Vec::new(),
        };
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(ParseError::Help);
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ParseError::Unknown(arg));
            };
            // `--name=value` carries its value inline; `--name value` takes the next one.
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (body, None),
            };
            let Some(flag) = self.flags.iter().find(|f| f.name == name) else {
                return Err(ParseError::Unknown(arg));
            };
            if flag.metavar.is_none() {
                if inline.is_some() {
                    return Err(ParseError::UnexpectedValue(flag.name));
                }
                parsed.switches.push(flag.name);
                continue;
            }
            let value = inline
                .or_else(|| args.next())
                .ok_or(ParseError::MissingValue(flag.name))?;
            parsed.set(flag.name, value);
        }
        Ok(parsed)
    }

    /// The `--help` text.
    pub fn usage(&self) -> String {
        let mut out = format!("{}\n\nUsage: {} [FLAGS]\n\nFlags:\n", self.about, self.name);
        let mut rows: Vec<(String, String)> = self.flags.iter().map(Flag::usage_row).collect();
        rows.push(("--help".into(), "print this help and exit".into()));
        let width = rows.iter().map(|(left, _)| left.len()).max().unwrap_or(0);
        for (left, right) in rows {
            out += &format!("  {left:width$}  {right}\n");
        }
        out
    }
}

impl Flag {
    fn usage_row(&self) -> (String, String) {
        match (self.metavar, &self.default) {
            (Some(metavar), Some(default)) => (
                format!("--{} {metavar}", self.name),
                format!("{} (default: {default})", self.help),
            ),
            (Some(metavar), None) => (format!("--{} {metavar}", self.name), self.help.into()),
            (None, _) => (format!("--{}", self.name), self.help.into()),
        }
    }
}

impl Args {
    fn set(&mut self, name: &'static str, value: String) {
        if let Some(slot) = self.values.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = Some(value);
        }
    }

    /// The value of a flag declared with [`Cli::option`] (or `--listen`).
    ///
    /// # Panics
    /// If no such flag was declared: a bug in the example, not a user error.
    pub fn get(&self, name: &str) -> &str {
        self.optional(name)
            .unwrap_or_else(|| panic!("flag --{name} has no default: read it with `optional`"))
    }

    /// The value of a flag declared with [`Cli::optional`], if it was given.
    ///
    /// # Panics
    /// If no such flag was declared: a bug in the example, not a user error.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("flag --{name} was never declared"))
            .1
            .as_deref()
    }

    /// An optional flag's value as a path; exits 2 if it is given empty.
    fn optional_path(&self, name: &str) -> Option<&str> {
        let raw = self.optional(name)?;
        if raw.is_empty() {
            self.refuse(name, "must not be empty");
        }
        Some(raw)
    }

    #[cfg(feature = "tls")]
    /// The TLS settings from the flags of [`Cli::tls_flags`]: `None` without
    /// `--tls-cert` and `--tls-key` (plaintext).
    ///
    /// A command line that cannot work exits 2 with one line naming the flag:
    /// `--tls-cert` without `--tls-key` or the other way round, `--tls-client-ca`
    /// without them, a handshake timeout that is not a positive number of seconds.
    /// A file that cannot be used (missing, unreadable, not PEM, a key that does not
    /// match the certificate) exits 1 with one line naming the flag and the file.
    pub fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        let timeout = Duration::try_from_secs_f64(self.value::<f64>("tls-handshake-timeout"))
            .ok()
            .filter(|t| !t.is_zero())
            .unwrap_or_else(|| {
                self.refuse(
                    "tls-handshake-timeout",
                    "must be a positive number of seconds",
                )
            });
        let cert = self.optional_path("tls-cert");
        let key = self.optional_path("tls-key");
        let client_ca = self.optional_path("tls-client-ca");
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => self.refuse("tls-cert", "needs --tls-key"),
            (None, Some(_)) => self.refuse("tls-key", "needs --tls-cert"),
            (None, None) if client_ca.is_some() => {
                self.refuse("tls-client-ca", "needs --tls-cert and --tls-key")
            }
            (None, None) => return None,
        };
        // Each file on its own first, so that a failure names the right flag.
        if let Err(e) = twistor::tls::load_certificates(cert) {
            self.unusable("tls-cert", &e);
        }
        if let Err(e) = twistor::tls::load_private_key(key) {
            self.unusable("tls-key", &e);
        }
        // What is left to fail is the pair: a key that is not the certificate's.
        let mut acceptor = TlsAcceptor::from_pem(cert, key)
            .unwrap_or_else(|e| self.unusable("tls-key", &e))
            .handshake_timeout(timeout);
        if let Some(ca) = client_ca {
            acceptor = acceptor
                .require_client_cert(ca)
                .unwrap_or_else(|e| self.unusable("tls-client-ca", &e));
        }
        Some(acceptor)
    }

    #[cfg(feature = "tls")]
    /// A TLS file named by flag `name` cannot be used: prints `PROGRAM: --NAME FILE:
    /// PROBLEM` as one line to stderr and exits 1.
    fn unusable(&self, name: &str, e: &ConfigError) -> ! {
        let message = e.to_string().replace(['\r', '\n'], " ");
        eprintln!("{}: --{name} {message}", self.program);
        std::process::exit(1);
    }

    /// The value of a flag parsed as `T`; exits 2 with one line naming the flag if it
    /// does not parse. Prefer the typed getters below, which also refuse values that
    /// parse but cannot work (a zero count, say) and word the refusal for people.
    pub fn value<T>(&self, name: &str) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.get(name);
        raw.parse()
            .unwrap_or_else(|e| self.refuse(name, format_args!("has a bad value {raw:?}: {e}")))
    }

    /// A whole number within `range` (`1..` for a count, `1..=65535` for a datagram
    /// size); exits 2 with one line naming the flag otherwise (`--threads must be at
    /// least 1`).
    pub fn number<T>(&self, name: &str, range: impl RangeBounds<T>) -> T
    where
        T: FromStr + PartialOrd + Display,
    {
        number_in(self.get(name), &range).unwrap_or_else(|problem| self.refuse(name, problem))
    }

    /// A flag's value as a path; exits 2 if it is empty (which would mean the current
    /// directory, or an unnamed socket, without saying so).
    pub fn path(&self, name: &str) -> &str {
        let raw = self.get(name);
        if raw.is_empty() {
            self.refuse(name, "must not be empty");
        }
        raw
    }

    /// Refuses the command line: prints `PROGRAM: --NAME PROBLEM` as one line to
    /// stderr and exits 2.
    pub fn refuse(&self, name: &str, problem: impl Display) -> ! {
        exit_refused(self.program, format_args!("--{name} {problem}"))
    }

    /// True if a switch declared with [`Cli::switch`] was given.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }

    /// `--listen` as written (a `host:port`, or a path for Unix-socket examples).
    pub fn listen(&self) -> &str {
        self.get("listen")
    }

    /// `--listen` as a TCP or UDP socket address (an IP address and a port); exits 2
    /// if it is not one.
    pub fn listen_addr(&self) -> SocketAddr {
        let raw = self.get("listen");
        raw.parse().unwrap_or_else(|_| {
            self.refuse(
                "listen",
                format_args!("must be an IP address and port such as 127.0.0.1:8000, not {raw:?}"),
            )
        })
    }

    /// `--listen` as a Unix socket path; exits 2 if it is empty or too long for a
    /// socket address.
    pub fn listen_path(&self) -> &str {
        let path = self.path("listen");
        if path.len() > MAX_SOCKET_PATH_BYTES {
            self.refuse(
                "listen",
                format_args!("must be a path of at most {MAX_SOCKET_PATH_BYTES} bytes"),
            );
        }
        path
    }
}

/// The longest Unix socket path: `sun_path` holds 108 bytes on Linux, the last one
/// for the terminating NUL.
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// `raw` as a whole number in `range`, or why not, worded to follow the flag's name.
fn number_in<T>(raw: &str, range: &impl RangeBounds<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    // Digits only: `FromStr` would also take a sign, and its error says nothing a
    // user can act on ("number would be zero for non-zero type").
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("must be a whole number, not {raw:?}"));
    }
    let too_large = match range.end_bound() {
        Bound::Included(max) => format!("must be at most {max}"),
        Bound::Excluded(end) => format!("must be less than {end}"),
        Bound::Unbounded => format!("is too large: {raw}"),
    };
    // Only digits, so a parse error means too large for the type.
    let n = raw.parse::<T>().map_err(|_| too_large.clone())?;
    let low = match range.start_bound() {
        Bound::Included(min) if n < *min => Some(format!("must be at least {min}")),
        Bound::Excluded(min) if n <= *min => Some(format!("must be more than {min}")),
        _ => None,
    };
    if let Some(problem) = low {
        return Err(problem);
    }
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(too_large)
    }
}

/// Prints `PROGRAM: MESSAGE` as one line to stderr and exits with status 2, the
/// status of a bad command line.
fn exit_refused(program: &str, message: fmt::Arguments<'_>) -> ! {
    eprintln!("{program}: {message}");
    std::process::exit(2);
}

#[cfg(feature = "tls")]
/// Listens on `addr` for `factory`'s protocol, with TLS if `tls` is given
/// ([`Args::tls_acceptor`]), plaintext otherwise.
pub fn listen_tcp<F: Factory>(
    reactor: &mut Reactor,
    addr: SocketAddr,
    tls: Option<&TlsAcceptor>,
    factory: F,
) -> io::Result<Listening> {
    match tls {
        Some(tls) => reactor.listen_tls(addr, tls, factory),
        None => reactor.listen_tcp(addr, factory),
    }
}

/// Sends log records to stderr; `RUST_LOG` sets the level (default `info`).
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
}

/// Prints the one `listening on ADDR` line to stdout and flushes it, so that a script
/// or test reading our stdout learns the real address (port 0 included) at once.
pub fn announce(addr: impl Display) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// Installs the SIGINT/SIGTERM handlers, announces `listening on ADDR`, and runs the
/// reactor until a signal stops it gracefully: listeners close, queued bytes are
/// flushed, every connection gets `connection_lost`.
///
/// The handlers go in before the announcement, so that a signal sent as soon as the
/// line is read stops the server cleanly instead of killing it.
///
/// At debug log level (`RUST_LOG=debug`) the reactor's statistics are logged every
/// [`STATS_INTERVAL`]; at info level, once more when the server has stopped.
pub fn serve(reactor: &mut Reactor, listening: impl Display) -> io::Result<()> {
    reactor.stop_on_signals()?;
    announce(listening);
    if log::log_enabled!(log::Level::Debug) {
        reactor.call_later(STATS_INTERVAL, log_stats);
    }
    let result = reactor.run();
    log::info!("stopped; stats: {}", reactor.stats());
    result
}

/// [`serve`] for a server with more listeners than its first: after the `listening
/// on ADDR` line it prints one `NAME listening on ADDR` line for each of `others`
/// (`ws listening on 127.0.0.1:8080`), in order and flushed, then runs the reactor
/// until a signal stops it gracefully.
pub fn serve_listeners(
    reactor: &mut Reactor,
    listening: impl Display,
    others: &[(&str, SocketAddr)],
) -> io::Result<()> {
    reactor.stop_on_signals()?;
    announce(listening);
    let mut out = io::stdout().lock();
    for (name, addr) in others {
        let _ = writeln!(out, "{name} listening on {addr}");
    }
    let _ = out.flush();
    drop(out);
    if log::log_enabled!(log::Level::Debug) {
        reactor.call_later(STATS_INTERVAL, log_stats);
    }
    let result = reactor.run();
    log::info!("stopped; stats: {}", reactor.stats());
    result
}

/// What [`serve`] does to its reactor before announcing, for each reactor of a
/// [`ReactorGroup`], from the group's setup closure: SIGINT/SIGTERM stop it
/// gracefully (one signal reaches every reactor's handler, and a reactor that stops
/// stops the group), and at debug level its statistics are logged every
/// [`STATS_INTERVAL`].
pub fn prepare_group_member(reactor: &mut Reactor) -> io::Result<()> {
    reactor.stop_on_signals()?;
    if log::log_enabled!(log::Level::Debug) {
        reactor.call_later(STATS_INTERVAL, log_stats);
    }
    Ok(())
}

/// [`serve`] for a group whose reactors were all set up with
/// [`prepare_group_member`]: announces `listening on ADDR` (the handlers are in, since
/// `spawn` returns only once every setup has run) and waits until a signal has
/// stopped every reactor.
pub fn serve_group(group: ReactorGroup) -> io::Result<()> {
    announce(group.local_addr());
    group.join()
}

/// How often `serve` logs statistics at debug level: often enough to watch a load
/// test, rarely enough not to drown the per-connection lines.
pub const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

fn log_stats(reactor: &mut Reactor) {
    log::debug!("stats: {}", reactor.stats());
    reactor.call_later(STATS_INTERVAL, log_stats);
}

/// Turns `main`'s result into an exit status, printing an error to stderr.
pub fn exit_status(name: &str, result: io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_against_their_range() {
        assert_eq!(number_in::<usize>("4", &(1..)), Ok(4));
        assert_eq!(number_in::<u64>("0", &(..)), Ok(0));
        assert_eq!(number_in::<usize>("65535", &(1..=65535)), Ok(65535));
        let refused = |raw: &str, problem: &str| {
            assert_eq!(
                number_in::<usize>(raw, &(1..=65535)),
                Err(problem.to_owned()),
                "{raw:?}"
            );
        };
        refused("0", "must be at least 1");
        refused("65536", "must be at most 65535");
        refused("99999999999999999999999", "must be at most 65535");
        refused("", "must be a whole number, not \"\"");
        refused("+1", "must be a whole number, not \"+1\"");
        refused("-1", "must be a whole number, not \"-1\"");
        refused(" 1", "must be a whole number, not \" 1\"");
        refused("1k", "must be a whole number, not \"1k\"");
        assert_eq!(
            number_in::<u8>("256", &(1..)),
            Err("is too large: 256".to_owned())
        );
        assert_eq!(
            number_in::<u8>("9", &(2..9)),
            Err("must be less than 9".to_owned())
        );
    }

    #[test]
    fn a_bad_command_line_is_named_by_its_flag() {
        let cli = Cli::new("t", "test", "127.0.0.1:1").option("n", "N", "1", "a number");
        assert_eq!(
            cli.parse_from(["--n"]).unwrap_err().to_string(),
            "--n needs a value"
        );
        assert_eq!(
            cli.parse_from(["--m", "1"]).unwrap_err().to_string(),
            "unknown argument `--m`"
        );
        assert_eq!(cli.parse_from(["--n=7"]).unwrap().get("n"), "7");
    }
}
