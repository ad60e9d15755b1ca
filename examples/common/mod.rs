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
//!     .parse();
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp(args.listen_addr(), factory)?;
//! announce(port.local_addr);
//! serve(&mut reactor)
//! ```
//!
//! Flags are `--name VALUE` or `--name=VALUE`; switches are bare `--name`. A bad
//! command line prints the usage to stderr and exits 2; `--help` prints it to stdout
//! and exits 0.

// Each example uses a different subset of these helpers.
#![allow(dead_code)]

use std::fmt::{self, Display};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;

use twistor::{Reactor, ReactorGroup};

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

    /// Parses the process's arguments; on `--help` prints the usage and exits 0, on a
    /// bad command line prints the error and the usage to stderr and exits 2.
    pub fn parse(self) -> Args {
        match self.parse_from(std::env::args().skip(1)) {
            Ok(args) => args,
            Err(ParseError::Help) => {
                print!("{}", self.usage());
                let _ = io::stdout().flush();
                std::process::exit(0);
            }
            Err(e) => {
                eprint!("{}: {e}\n\n{}", self.name, self.usage());
                std::process::exit(2);
            }
        }
    }

    /// Parses `args` (without the program name).
    pub fn parse_from<I, S>(&self, args: I) -> Result<Args, ParseError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut parsed = Args {
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
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
            .unwrap_or_else(|| panic!("flag --{name} was never declared"))
    }

    /// The value of a flag parsed as `T`; exits 2 with a message if it does not parse.
    pub fn value<T>(&self, name: &str) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.get(name);
        raw.parse().unwrap_or_else(|e| {
            eprintln!("bad value for --{name} `{raw}`: {e}");
            std::process::exit(2);
        })
    }

    /// True if a switch declared with [`Cli::switch`] was given.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }

    /// `--listen` as written (a `host:port`, or a path for Unix-socket examples).
    pub fn listen(&self) -> &str {
        self.get("listen")
    }

    /// `--listen` as a TCP or UDP socket address; exits 2 if it is not one.
    pub fn listen_addr(&self) -> SocketAddr {
        self.value("listen")
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
