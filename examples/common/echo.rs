//! The upper-casing echo protocols shared by `echo`, `unix_echo` and
//! `socketserver_echo`: one piece of code, whatever the socket.

use std::io::IoSlice;

use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::{Context, Protocol};

/// The longest line echoed; a longer one closes the connection, so that a client
/// that never sends a newline cannot make the server buffer without bound.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// `data` upper-cased: `data` itself when it has no lower-case letter (nothing to
/// change, so nothing to copy), else a copy upper-cased in one pass into `scratch`.
/// `scratch` is reused from call to call, so a busy connection allocates only while
/// its largest chunk grows.
pub fn upper<'a>(scratch: &'a mut Vec<u8>, data: &'a [u8]) -> &'a [u8] {
    if !has_lowercase(data) {
        return data;
    }
    scratch.clear();
    scratch.extend(data.iter().map(u8::to_ascii_uppercase));
    scratch
}

/// Whether `data` holds an ASCII lower-case letter. Blocks of 32 bytes with no early
/// exit inside, so that the compiler checks each block with vector instructions
/// (about twice as fast as 64-byte `chunks` and four times `any` on this machine).
fn has_lowercase(data: &[u8]) -> bool {
    let mut blocks = data.chunks_exact(32);
    let mut block_has = |block: &[u8]| {
        block
            .iter()
            .fold(0u8, |seen, b| seen | u8::from(b.is_ascii_lowercase()))
            != 0
    };
    blocks.by_ref().any(&mut block_has) || block_has(blocks.remainder())
}

/// `--raw`: echoes bytes upper-cased as they arrive, with no framing.
#[derive(Default)]
pub struct RawEcho {
    scratch: Vec<u8>,
}

impl Protocol for RawEcho {
    fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        cx.write(upper(&mut self.scratch, data));
    }

    // A client that sends faster than it reads would make our write buffer grow:
    // stop reading from it until it has caught up, so the kernel pushes back on it.
    fn pause_producing(&mut self, cx: &mut Context<'_>) {
        cx.pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut Context<'_>) {
        cx.resume_reading();
    }
}

pub fn line_echo() -> LineReceiver<LineEcho> {
    LineReceiver::new(LineEcho::default())
        .delimiter(b"\n")
        .max_length(MAX_LINE_BYTES)
}

/// The default mode: echoes each `\n`-terminated line upper-cased.
///
/// The delimiter is `\n` alone, so the `\r` of a `\r\n` line stays in the line and
/// comes back unchanged: the client gets its own line ending back.
#[derive(Default)]
pub struct LineEcho {
    scratch: Vec<u8>,
}

impl LineEcho {
    fn echo(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8], ending: &[u8]) {
        let line = upper(&mut self.scratch, line);
        cx.write_vectored(&[IoSlice::new(line), IoSlice::new(ending)]);
    }
}

impl LineHandler for LineEcho {
    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        self.echo(cx, line, b"\n");
    }

    /// The client is done sending: echo a final line that had no newline, then close.
    fn read_eof(&mut self, cx: &mut LineContext<'_, '_>) {
        let rest = cx.clear_line_buffer();
        if !rest.is_empty() {
            self.echo(cx, &rest, b"");
        }
        cx.lose_connection();
    }

    // Same back-pressure as `--raw`: a client that does not read stops being read.
    fn pause_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        cx.pause_reading();
    }

    fn resume_producing(&mut self, cx: &mut LineContext<'_, '_>) {
        cx.resume_reading();
    }
}
