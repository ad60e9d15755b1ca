//! Standard input and output as one reactor connection (Twisted's `StandardIO`).
//!
//! Reads come from stdin and writes go to stdout, through duplicates of descriptors 0
//! and 1 registered under one token. Both are switched to non-blocking mode while the
//! connection lives and switched back when it closes, so that a terminal is left as it
//! was found.
//!
//! epoll cannot watch a regular file. When stdin or stdout is redirected to one, that
//! side is not registered: a regular file never blocks, so writes go straight through
//! and reads are driven by the reactor's carried-over list instead of readiness.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsFd;

use mio::unix::pipe::{Receiver, Sender};
use mio::{event, Interest, Registry, Token};

/// stdin and stdout, as one source.
#[derive(Debug)]
pub(crate) struct Stdio {
    input: Receiver,
    output: Sender,
    /// stdin could be registered; if not (a regular file), it is read without events.
    input_polled: bool,
}

fn is_unpollable(e: &io::Error) -> bool {
    // EPERM: epoll refuses regular files and directories.
    e.raw_os_error() == Some(1)
}

impl Stdio {
    pub(crate) fn new() -> io::Result<Stdio> {
        let input = Receiver::from(io::stdin().as_fd().try_clone_to_owned()?);
        let output = Sender::from(io::stdout().as_fd().try_clone_to_owned()?);
        input.set_nonblocking(true)?;
        output.set_nonblocking(true)?;
        Ok(Stdio {
            input,
            output,
            input_polled: true,
        })
    }

    /// False when stdin is a regular file, which no readiness event will ever report.
    pub(crate) fn input_polled(&self) -> bool {
        self.input_polled
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }

    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.output.write_vectored(bufs)
    }
}

impl Drop for Stdio {
    fn drop(&mut self) {
        // O_NONBLOCK belongs to the open file, shared with the process's own 0 and 1
        // (and with the shell, for a terminal): put it back.
        let _ = self.input.set_nonblocking(false);
        let _ = self.output.set_nonblocking(false);
    }
}

impl event::Source for Stdio {
    fn register(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
        match registry.register(&mut self.input, token, Interest::READABLE) {
            Ok(()) => {}
            Err(e) if is_unpollable(&e) => self.input_polled = false,
            Err(e) => return Err(e),
        }
        match registry.register(&mut self.output, token, Interest::WRITABLE) {
            Ok(()) => Ok(()),
            Err(e) if is_unpollable(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, i: Interest) -> io::Result<()> {
        self.deregister(registry)?;
        self.register(registry, token, i)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        // Either side may never have been registered (a regular file).
        let _ = registry.deregister(&mut self.input);
        let _ = registry.deregister(&mut self.output);
        Ok(())
    }
}
