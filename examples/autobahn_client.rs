//! A WebSocket client for the Autobahn test suite's server mode (its
//! "fuzzingserver", or `kosoku -m fuzzingserver`): the client side of twistor's
//! WebSocket, permessage-deflate included, run through the suite's cases.
//!
//! The suite's protocol, one connection at a time: `GET /getCaseCount` answers a text
//! message with the number of cases N; then for each case I, `GET
//! /runCase?case=I&agent=AGENT`, on which the client sends back every text and binary
//! message it gets, as it got it, until the server closes; finally
//! `GET /updateReports?agent=AGENT` has the server write its reports. Every
//! connection offers permessage-deflate, with `client_no_context_takeover` (each
//! message we send is compressed on its own), as Autobahn's own client does (the cases
//! of sections 12 and 13 accept it with various parameters; the others ignore it);
//! `--no-deflate` offers none.
//!
//! It prints `case I/N` as each case starts, and exits 0 once the reports are
//! updated; 1 if the server cannot be reached or does not give a case count.
//!
//! Run it against a fuzzing server:
//!
//! ```text
//! kosoku -m fuzzingserver -o reports 127.0.0.1:9001 &
//! cargo run --release --example autobahn_client -- [--connect 127.0.0.1:9001]
//!     [--agent twistor] [--no-deflate]
//! ```
//!
//! `scripts/autobahn.sh --client` does this and compares the outcomes with
//! `scripts/autobahn-client-expected.json`.

mod common;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;

use common::{exit_status, init_logging};
use twistor::websocket::{
    ClientHandshake, DeflateConfig, MessageRef, WebSocket, WsContext, WsHandler,
};
use twistor::{Reactor, Reason};

/// The largest message accepted: the suite's largest is 16 MiB (case 9.1.6, 9.2.6),
/// as in `ws_echo`.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// What one connection saw, read by `main` once it is over.
#[derive(Default)]
struct Outcome {
    /// The first text message, if any (the case count, on `/getCaseCount`).
    first_text: Option<String>,
    /// The connection is over (lost, or never made).
    done: bool,
    /// Why it could not be made.
    failed: Option<io::Error>,
}

/// Sends every message back, and records how the connection went.
struct Echo {
    outcome: Rc<RefCell<Outcome>>,
}

impl WsHandler for Echo {
    fn message_received(&mut self, cx: &mut WsContext<'_, '_>, message: MessageRef<'_>) {
        if let MessageRef::Text(text) = message {
            let mut outcome = self.outcome.borrow_mut();
            outcome.first_text.get_or_insert_with(|| text.to_owned());
        }
        cx.send(message);
    }

    // A server that floods while we echo is slowed to the pace we write at.
    fn pause_producing(&mut self, cx: &mut WsContext<'_, '_>) {
        cx.pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut WsContext<'_, '_>) {
        cx.resume_reading();
    }

    fn connection_lost(&mut self, _: &mut WsContext<'_, '_>, _: Reason) {
        self.outcome.borrow_mut().done = true;
    }

    fn connection_failed(&mut self, _: &mut WsContext<'_, '_>, error: io::Error) {
        let mut outcome = self.outcome.borrow_mut();
        outcome.failed = Some(error);
        outcome.done = true;
    }
}

/// Connects to `path` on `server`, echoes until the connection is over, and returns
/// what it saw.
fn run(
    reactor: &mut Reactor,
    server: SocketAddr,
    path: &str,
    deflate: bool,
) -> io::Result<Outcome> {
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    let handler = Echo {
        outcome: outcome.clone(),
    };
    let mut client = WebSocket::client(handler, ClientHandshake::new(&server.to_string(), path))
        .max_message_bytes(MAX_MESSAGE_BYTES)
        .max_frame_bytes(MAX_MESSAGE_BYTES);
    if deflate {
        // With `client_no_context_takeover` in the offer, as Autobahn's own client
        // offers: its cases 13.2, 13.5 and 13.6 ask for no context takeover only of a
        // client that says it (and skip it as UNIMPLEMENTED otherwise).
        let mut config = DeflateConfig::default();
        config.send_no_context_takeover = true;
        client = client.negotiator(Box::new(config));
    }
    reactor.connect_tcp(server, client);
    while !outcome.borrow().done {
        reactor.run_once(None)?;
    }
    Ok(outcome.take())
}

/// The command line: `--connect ADDR`, `--agent NAME`, `--no-deflate`.
struct Options {
    server: SocketAddr,
    agent: String,
    deflate: bool,
}

const USAGE: &str = "usage: autobahn_client [--connect ADDR] [--agent NAME] [--no-deflate]
  --connect ADDR  the fuzzing server (default 127.0.0.1:9001)
  --agent NAME    the name the reports give this client (default twistor)
  --no-deflate    do not offer permessage-deflate";

fn options() -> Result<Options, String> {
    let mut options = Options {
        server: SocketAddr::from(([127, 0, 0, 1], 9001)),
        agent: "twistor".to_owned(),
        deflate: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--connect" => {
                let addr = value("--connect")?;
                options.server = addr
                    .parse()
                    .map_err(|_| format!("--connect: not an address: {addr}"))?;
            }
            "--agent" => {
                let agent = value("--agent")?;
                // It goes into a URL's query as it is.
                if agent.is_empty()
                    || !agent
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err("--agent: letters, digits, '-', '_' and '.' only".to_owned());
                }
                options.agent = agent;
            }
            "--no-deflate" => options.deflate = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    init_logging();
    let Options {
        server,
        agent,
        deflate,
    } = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("autobahn_client: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = (|| {
        // Room for a 16 MiB echo behind another still queued, as in ws_echo.
        let write_cap = 2 * MAX_MESSAGE_BYTES + (1 << 20);
        let mut reactor = Reactor::builder().write_cap_bytes(write_cap).build()?;
        let count = run(&mut reactor, server, "/getCaseCount", deflate)?;
        if let Some(error) = count.failed {
            return Err(error);
        }
        let cases: u32 = count
            .first_text
            .as_deref()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| io::Error::other("no case count from /getCaseCount"))?;
        for case in 1..=cases {
            println!("case {case}/{cases}");
            let path = format!("/runCase?case={case}&agent={agent}");
            if let Some(error) = run(&mut reactor, server, &path, deflate)?.failed {
                return Err(error);
            }
        }
        let path = format!("/updateReports?agent={agent}");
        if let Some(error) = run(&mut reactor, server, &path, deflate)?.failed {
            return Err(error);
        }
        Ok(())
    })();
    exit_status("autobahn_client", result)
}
