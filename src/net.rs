//! Socket set-up glue: listening sockets with the options `std` does not expose.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

/// How a listening socket is set up; the defaults suit a server.
///
/// # Examples
///
/// ```
/// use twistor::ListenOptions;
///
/// let opts = ListenOptions { backlog: 128, ..ListenOptions::default() };
/// assert!(opts.reuse_address);
/// ```
#[derive(Clone, Debug)]
pub struct ListenOptions {
    /// Pending connections the kernel queues before we accept them (socketserver's
    /// `request_queue_size`). Default 1024; the kernel caps it at `somaxconn`.
    pub backlog: i32,
    /// SO_REUSEADDR, so a restarted server can bind while old connections linger in
    /// TIME_WAIT (socketserver's `allow_reuse_address`). Default on.
    pub reuse_address: bool,
    /// SO_REUSEPORT, so several reactors (one per thread) can each listen on the same
    /// address and let the kernel spread connections. Default off.
    pub reuse_port: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: 1024,
            reuse_address: true,
            reuse_port: false,
        }
    }
}

pub(crate) fn bind_tcp(
    addr: SocketAddr,
    opts: &ListenOptions,
) -> io::Result<mio::net::TcpListener> {
    bind_tcp_std(addr, opts).map(mio::net::TcpListener::from_std)
}

/// A non-blocking TCP listener bound to `addr` and listening, set up with `opts`.
pub(crate) fn bind_tcp_std(
    addr: SocketAddr,
    opts: &ListenOptions,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(opts.reuse_address)?;
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog)?;
    Ok(socket.into())
}

pub(crate) fn set_keepalive(
    stream: &mio::net::TcpStream,
    idle: Option<Duration>,
) -> io::Result<()> {
    let sock = SockRef::from(stream);
    match idle {
        Some(idle) => sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle)),
        None => sock.set_keepalive(false),
    }
}

/// Makes the kernel answer a close with RST instead of FIN, dropping unsent data: what
/// an abort means to the peer.
pub(crate) fn set_reset_on_close(stream: &mio::net::TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Binds a Unix stream listener at `path`, replacing a stale socket file left by a
/// dead server but refusing to steal the path from a live one.
pub(crate) fn bind_unix(path: &Path, opts: &ListenOptions) -> io::Result<mio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("a server is already listening on {}", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log::info!("removing stale socket file {}", path.display());
                std::fs::remove_file(path)?;
            }
            Err(e) => return Err(e),
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(opts.backlog)?;
    let std_listener: std::os::unix::net::UnixListener = socket.into();
    Ok(mio::net::UnixListener::from_std(std_listener))
}

/// Writes `bufs` to a connected socket with one system call, `send(2)` for one slice
/// and `sendmsg(2)` for several, both with `MSG_NOSIGNAL`: a peer that has gone away
/// gives `EPIPE`, never a `SIGPIPE` that would kill a program that has not ignored it
/// (`writev(2)` and `write(2)` have no such flag; `tests/sigpipe.rs`). The socket calls
/// also skip the file layer `writev(2)` goes through: 1–3 % fewer kernel instructions
/// per echoed message (BENCHMARKS.md). Used by the reactor's connections and by the
/// socketserver module's blocking [`Connection`](crate::socketserver::Connection).
pub(crate) fn send_slices(
    socket: impl std::os::fd::AsFd,
    bufs: &[IoSlice<'_>],
) -> io::Result<usize> {
    use rustix::net::{send, sendmsg, SendAncillaryBuffer, SendFlags};
    let sent = match bufs {
        [one] => send(socket, one, SendFlags::NOSIGNAL),
        _ => sendmsg(
            socket,
            bufs,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        ),
    };
    Ok(sent?)
}
