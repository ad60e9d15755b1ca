//! A reactor driven from another event loop: a fixed-step 60 Hz frame loop (a
//! stand-in for a game's) that serves an upper-casing line echo on the same thread,
//! with no other thread.
//!
//! The frame loop owns the thread and its own poller (a `mio::Poll` here, standing
//! in for the wait of GTK, winit or SDL). It watches the reactor's file descriptor
//! ([`AsRawFd`] on [`Reactor`]) and, between frames, waits until that descriptor is
//! readable, the reactor's next timer is due ([`Reactor::next_timeout`]) or the next
//! frame is, whichever comes first; then it runs one reactor turn that does not
//! block, [`Reactor::run_once`]`(Some(Duration::ZERO))`. Each frame starts on a fixed
//! schedule (frame k at start + k/60 s); how late it starts is the jitter the server
//! adds to the frame loop. Once a second it prints to stderr:
//!
//! ```text
//! frames 60, late p50 0.071 ms, p99 0.412 ms, max 0.480 ms, connections 1000, messages 20133
//! ```
//!
//! (messages: lines echoed, or reads echoed with `--raw`), and a `total:` line of the
//! same form for the whole run when it ends.
//!
//! Run it, and poke it with `nc 127.0.0.1 5642` (type `hello`, get `HELLO`):
//!
//! ```text
//! cargo run --release --example embed -- [--listen 127.0.0.1:5642] [--frames N] [--raw]
//! ```
//!
//! `--raw` echoes bytes upper-cased as they arrive, with no framing, as `echo --raw`
//! does: the load rig's `echo` scenario speaks that (its messages have no newline).
//!
//! `--frames N` stops after N frames (gracefully, as SIGINT and SIGTERM do); 0, the
//! default, runs until a signal.

mod common;

use std::cell::Cell;
use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::echo::upper;
use common::{announce, exit_status, init_logging, Cli};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::{Addr, Context, Protocol, Reactor, Reason};

/// 60 Hz: the frame rate of the loop.
const FRAME: Duration = Duration::from_nanos(1_000_000_000 / 60);

/// The longest line echoed: a client cannot make the server buffer without bound.
const MAX_LINE_BYTES: usize = 64 * 1024;

fn main() -> ExitCode {
    init_logging();
    let args = Cli::new(
        "embed",
        "Upper-casing line echo served from a 60 Hz frame loop.",
        "127.0.0.1:5642",
    )
    .option(
        "frames",
        "N",
        "0",
        "stop after N frames (0: run until a signal)",
    )
    .option(
        "events",
        "N",
        "1024",
        "readiness events one reactor turn handles at most (bounds a frame's reactor work)",
    )
    .switch("raw", "echo bytes as they arrive, without line framing")
    .parse();
    let addr = args.listen_addr();
    let frames = args.number::<u64>("frames", 0..);
    let events = args.number::<usize>("events", 1..);
    exit_status("embed", run(addr, frames, events, args.switch("raw")))
}

/// What the echo connections count, for the stats line.
#[derive(Default)]
struct Counts {
    connections: Cell<u64>,
    messages: Cell<u64>,
}

impl Counts {
    fn bump(counter: &Cell<u64>, by: i64) {
        counter.set(counter.get().saturating_add_signed(by));
    }
}

fn run(addr: std::net::SocketAddr, frames: u64, events: usize, raw: bool) -> io::Result<()> {
    let mut reactor = Reactor::builder().events_capacity(events).build()?;
    let counts = Rc::new(Counts::default());
    let per_conn = Rc::clone(&counts);
    let echo = move || Echo {
        counts: Rc::clone(&per_conn),
        scratch: Vec::new(),
    };
    let port = match raw {
        true => reactor.listen_tcp(addr, move |_: &Addr| Some(RawEcho(echo())))?,
        false => reactor.listen_tcp(addr, move |_: &Addr| {
            Some(
                LineReceiver::new(echo())
                    .delimiter(b"\n")
                    .max_length(MAX_LINE_BYTES),
            )
        })?,
    };
    reactor.stop_on_signals()?;

    // The host loop's own poller, waiting on the reactor's descriptor among its own.
    let mut host = Poll::new()?;
    let fd = reactor.as_raw_fd();
    host.registry()
        .register(&mut SourceFd(&fd), Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(16);

    announce(port.local_addr);
    let start = Instant::now();
    let mut frame: u64 = 0;
    let mut second = Lateness::default();
    let mut total = Lateness::default();
    let mut running = true;
    while running {
        // Between frames: serve the network until the next frame is due.
        let due = start + FRAME * u32::try_from(frame).unwrap_or(u32::MAX);
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            let wait = reactor
                .next_timeout()
                .map_or(due - now, |t| t.min(due - now));
            match host.poll(&mut events, Some(wait)) {
                // A signal (SIGINT, SIGTERM: the reactor's stop) cuts the wait short.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => result?,
            }
            // A turn whether the descriptor is readable or a timer is due: it never
            // blocks. (The host's poller is edge-triggered, so an event left over by
            // one turn would not wake it again; the turn at each frame catches it.)
            running = reactor.run_once(Some(Duration::ZERO))?;
            if !running {
                break;
            }
        }
        if !running {
            break;
        }
        // The frame: how late it starts is what the server costs the frame loop.
        let late = Instant::now().saturating_duration_since(due);
        second.add(late);
        total.add(late);
        running = reactor.run_once(Some(Duration::ZERO))?;
        frame += 1;
        if frame % 60 == 0 {
            eprintln!("frames {}", second.report(&counts));
            second = Lateness::default();
        }
        if frames != 0 && frame == frames {
            reactor.stop();
        }
    }
    eprintln!("total: frames {}", total.report(&counts));
    Ok(())
}

/// The lateness of a series of frames.
#[derive(Default)]
struct Lateness {
    samples: Vec<Duration>,
}

impl Lateness {
    fn add(&mut self, late: Duration) {
        self.samples.push(late);
    }

    /// `N, late p50 X ms, p99 Y ms, max Z ms, connections C, lines L`.
    fn report(&mut self, counts: &Counts) -> String {
        self.samples.sort_unstable();
        let at = |q: f64| {
            let i = ((self.samples.len() as f64 - 1.0) * q).round() as usize;
            self.samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        format!(
            "{}, late p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, connections {}, messages {}",
            self.samples.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            counts.connections.get(),
            counts.messages.get(),
        )
    }
}

/// Echoes each line (or read, with `--raw`) upper-cased, and counts.
struct Echo {
    counts: Rc<Counts>,
    scratch: Vec<u8>,
}

impl LineHandler for Echo {
    fn connection_made(&mut self, _: &mut LineContext<'_, '_>) {
        Counts::bump(&self.counts.connections, 1);
    }

    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        Counts::bump(&self.counts.messages, 1);
        cx.write(upper(&mut self.scratch, line));
        cx.write(b"\n");
    }

    // A client that sends faster than it reads stops being read until it catches up.
    fn pause_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        cx.pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        cx.resume_reading();
    }

    fn connection_lost(&mut self, _: &mut LineContext<'_, '_>, _: Reason) {
        Counts::bump(&self.counts.connections, -1);
    }
}

/// `--raw`: the same echo without framing.
struct RawEcho(Echo);

impl Protocol for RawEcho {
    fn connection_made(&mut self, _: &mut Context<'_>) {
        Counts::bump(&self.0.counts.connections, 1);
    }

    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        Counts::bump(&self.0.counts.messages, 1);
        cx.write(upper(&mut self.0.scratch, data));
    }

    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        cx.pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        cx.resume_reading();
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, _: Reason) {
        Counts::bump(&self.0.counts.connections, -1);
    }
}
