//! Stream requests: one accepted connection, served by a [`StreamRequestHandler`].
//!
//! The connection is in blocking mode and belongs to the handler's thread for the
//! whole request. After `finish`, `wfile` is flushed and the connection is shut down
//! for writing (socketserver's `shutdown_request`), then closed once the client has
//! closed its side: until then what it still sends is read and discarded (a lingering
//! close, bounded by [`LINGER_TIMEOUT`] and [`LINGER_BYTES`]), because closing a
//! socket with unread input makes the kernel reset the connection and throw away the
//! reply it has not delivered yet.

use std::io::{self, BufReader, BufWriter, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a finished request waits for the client to close its side (less if the
/// server's `request_timeout` is shorter): nginx's `lingering_timeout`, as the
/// reactor's default (`Builder::linger`).
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes a finished request reads and discards while it waits for the client to
/// close: more than a client can have in flight when the request ends.
pub const LINGER_BYTES: usize = 16 * 1024 * 1024;

use super::{first_failure, run_step, Hooks, Request, RequestError, Serve};
use crate::{Accepted, Addr};

/// An accepted connection in blocking mode: what `rfile` and `wfile` read and write
/// (socketserver's `self.request`).
#[derive(Debug)]
pub enum Connection {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain stream connection.
    Unix(UnixStream),
}

impl From<Accepted> for Connection {
    fn from(accepted: Accepted) -> Self {
        match accepted {
            Accepted::Tcp(s) => Connection::Tcp(s),
            Accepted::Unix(s) => Connection::Unix(s),
        }
    }
}

impl Connection {
    /// Another handle on the same socket (a duplicated descriptor).
    ///
    /// # Errors
    /// Out of descriptors.
    pub fn try_clone(&self) -> io::Result<Connection> {
        Ok(match self {
            Connection::Tcp(s) => Connection::Tcp(s.try_clone()?),
            Connection::Unix(s) => Connection::Unix(s.try_clone()?),
        })
    }

    /// Shuts down the read side, the write side or both.
    ///
    /// # Errors
    /// As `TcpStream::shutdown`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.shutdown(how),
            Connection::Unix(s) => s.shutdown(how),
        }
    }

    /// Sets the socket's read timeout (`None`: block as long as it takes).
    ///
    /// # Errors
    /// As `TcpStream::set_read_timeout` (a zero duration is refused).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.set_read_timeout(timeout),
            Connection::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Sets the socket's write timeout (`None`: block as long as it takes).
    ///
    /// # Errors
    /// As `TcpStream::set_write_timeout` (a zero duration is refused).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.set_write_timeout(timeout),
            Connection::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    /// The server's end of the connection.
    ///
    /// # Errors
    /// The socket is in a bad state.
    pub fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Connection::Tcp(s) => s.local_addr().map(Addr::Inet),
            Connection::Unix(s) => s
                .local_addr()
                .map(|a| Addr::Unix(a.as_pathname().map(Into::into))),
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => s.read(buf),
            Connection::Unix(s) => s.read(buf),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => s.read_vectored(bufs),
            Connection::Unix(s) => s.read_vectored(bufs),
        }
    }
}

/// Writes go through `send(2)`/`sendmsg(2)` with `MSG_NOSIGNAL`, as the reactor's do:
/// a client that has gone away is an `EPIPE` error for the handler, never a `SIGPIPE`
/// for the process.
impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => crate::net::send_slices(&*s, bufs),
            Connection::Unix(s) => crate::net::send_slices(&*s, bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One connection as a handler sees it: socketserver's `StreamRequestHandler`
/// attributes.
///
/// `rfile` and `wfile` are two handles on the same socket. What is written to `wfile`
/// stays in its buffer until it fills, until `flush`, or until the request ends (after
/// `finish`): a handler that answers as it reads (a line echo) flushes after each
/// answer, or whenever `rfile.buffer()` is empty so that answers to pipelined input
/// leave together.
#[derive(Debug)]
pub struct StreamRequest {
    /// Buffered reader over the connection (socketserver's `rfile`).
    pub rfile: BufReader<Connection>,
    /// Buffered writer over the connection (socketserver's `wfile`), flushed after
    /// `finish`.
    pub wfile: BufWriter<Connection>,
    /// The client's address (socketserver's `client_address`); for a Unix-domain
    /// client usually `Addr::Unix(None)`, as clients rarely bind a path.
    pub client_address: Addr,
}

impl StreamRequest {
    fn new(connection: Connection, client_address: Addr) -> io::Result<StreamRequest> {
        let writer = connection.try_clone()?;
        Ok(StreamRequest {
            rfile: BufReader::new(connection),
            wfile: BufWriter::new(writer),
            client_address,
        })
    }

    /// The socket itself (socketserver's `request`): for timeouts, a half-close,
    /// socket options. Reading from it directly skips what `rfile` has buffered.
    pub fn connection(&self) -> &Connection {
        self.rfile.get_ref()
    }

    /// Flush-free end of a request: shut down the write side (the client sees EOF even
    /// if another handle on the socket lives on), linger until the client closes
    /// (discarding what it sends, at most `linger` and [`LINGER_BYTES`]), then close
    /// both handles.
    fn close(self, linger: Duration) {
        let (writer, _unsent) = self.wfile.into_parts();
        if writer.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let mut reader = self.rfile.into_inner();
        let deadline = Instant::now() + linger;
        let mut buf = [0; 8192];
        let mut discarded = 0;
        while discarded <= LINGER_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || reader.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// Serves one connection: socketserver's `StreamRequestHandler`, as a trait.
///
/// The server makes one handler per connection with the factory given to
/// [`Builder::bind`](super::Builder::bind), then calls `setup`, `handle` and `finish`
/// in turn. If `setup` fails, nothing else runs; if `handle` fails (an error or a
/// panic), `finish` still runs. Then `wfile` is flushed and the connection closed. The
/// first failure goes to the server's `handle_error`.
///
/// # Examples
///
/// ```
/// use std::io::{BufRead, Write};
/// use twistor::socketserver::{StreamRequest, StreamRequestHandler};
///
/// /// Answers each line with its length.
/// struct Count {
///     lines: usize,
/// }
///
/// impl StreamRequestHandler for Count {
///     fn handle(&mut self, request: &mut StreamRequest) -> std::io::Result<()> {
///         let mut line = String::new();
///         while request.rfile.read_line(&mut line)? > 0 {
///             self.lines += 1;
///             writeln!(request.wfile, "{}", line.trim_end().len())?;
///             request.wfile.flush()?;
///             line.clear();
///         }
///         Ok(())
///     }
///
///     fn finish(&mut self, request: &mut StreamRequest) -> std::io::Result<()> {
///         log::info!("{}: {} lines", request.client_address, self.lines);
///         Ok(())
///     }
/// }
/// ```
pub trait StreamRequestHandler: 'static {
    /// Prepares the request (default: nothing). An error here skips `handle` and
    /// `finish`.
    fn setup(&mut self, request: &mut StreamRequest) -> io::Result<()> {
        let _ = request;
        Ok(())
    }

    /// Serves the request: reads `rfile`, writes `wfile`.
    fn handle(&mut self, request: &mut StreamRequest) -> io::Result<()>;

    /// Cleans up (default: nothing); runs even if `handle` failed or panicked. `wfile`
    /// is flushed after it.
    fn finish(&mut self, request: &mut StreamRequest) -> io::Result<()> {
        let _ = request;
        Ok(())
    }
}

/// The serving closure of a stream server.
pub(super) fn serve_fn<F, H>(
    factory: F,
    hooks: Arc<Hooks>,
    request_timeout: Option<Duration>,
) -> Arc<Serve>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: StreamRequestHandler,
{
    Arc::new(move |request: Request| {
        if let Request::Stream(connection, client) = request {
            if let Err(e) = serve(&factory, request_timeout, connection, &client) {
                hooks.handle_error(&client, e);
            }
        }
    })
}

/// setup → handle → finish → flush → close; returns the first failure.
fn serve<H: StreamRequestHandler>(
    factory: &dyn Fn() -> H,
    timeout: Option<Duration>,
    connection: Connection,
    client: &Addr,
) -> Result<(), RequestError> {
    if timeout.is_some() {
        connection
            .set_read_timeout(timeout)
            .map_err(RequestError::Io)?;
        connection
            .set_write_timeout(timeout)
            .map_err(RequestError::Io)?;
    }
    let linger = timeout.map_or(LINGER_TIMEOUT, |t| t.min(LINGER_TIMEOUT));
    let mut request = StreamRequest::new(connection, client.clone()).map_err(RequestError::Io)?;
    let mut handler = run_step(|| Ok(factory()))?;
    if let Err(e) = run_step(|| handler.setup(&mut request)) {
        request.close(linger);
        return Err(e);
    }
    let handled = run_step(|| handler.handle(&mut request));
    let finished = run_step(|| handler.finish(&mut request));
    let flushed = request.wfile.flush().map_err(RequestError::Io);
    request.close(linger);
    first_failure(client, [handled, finished, flushed])
}
