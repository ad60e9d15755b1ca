//! Datagram requests: one packet, served by a [`DatagramRequestHandler`].
//!
//! The reactor receives; the handler reads the packet from `rfile` and writes its reply
//! to `wfile`, which is sent back to the client after `finish`. The reply leaves from
//! the handler's own thread through a clone of the server's socket (same bound
//! address, so the client sees it come from the server), never waiting for the
//! reactor. The clone shares the socket's non-blocking mode: when the kernel's send
//! buffer is full, the reply is dropped and reported, as UDP allows.

use std::io::{self, Cursor};
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use super::{first_failure, run_step, Hooks, Pending, Request, RequestError, Serve};
use crate::{Addr, DatagramContext, DatagramId, DatagramProtocol, Reactor};

/// One datagram as a handler sees it: socketserver's `DatagramRequestHandler`
/// attributes.
#[derive(Debug)]
pub struct DatagramRequest {
    /// The packet, to read from (socketserver's `rfile`).
    pub rfile: Cursor<Vec<u8>>,
    /// The reply (socketserver's `wfile`): sent to `client_address` as one datagram
    /// after `finish`, unless it is empty (Python would send an empty datagram).
    pub wfile: Vec<u8>,
    /// The sender (socketserver's `client_address`).
    pub client_address: Addr,
}

impl DatagramRequest {
    /// The whole packet, however much of `rfile` has been read (the data half of
    /// socketserver's `request`).
    pub fn packet(&self) -> &[u8] {
        self.rfile.get_ref()
    }
}

/// Serves one datagram: socketserver's `DatagramRequestHandler`, as a trait.
///
/// One handler is made per datagram by the factory given to
/// [`Builder::bind`](super::Builder::bind); then `setup`, `handle` and `finish` run as
/// for a [`StreamRequestHandler`](super::StreamRequestHandler), and `wfile`, if not
/// empty, is sent back to the client. The first failure goes to `handle_error`.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use twistor::socketserver::{DatagramRequest, DatagramRequestHandler};
///
/// /// Answers with the packet reversed.
/// struct Reverse;
///
/// impl DatagramRequestHandler for Reverse {
///     fn handle(&mut self, request: &mut DatagramRequest) -> std::io::Result<()> {
///         let mut packet = Vec::new();
///         request.rfile.read_to_end(&mut packet)?;
///         packet.reverse();
///         request.wfile.write_all(&packet)
///     }
/// }
/// ```
pub trait DatagramRequestHandler: 'static {
    /// Prepares the request (default: nothing). An error here skips `handle`,
    /// `finish` and the reply.
    fn setup(&mut self, request: &mut DatagramRequest) -> io::Result<()> {
        let _ = request;
        Ok(())
    }

    /// Serves the request: reads `rfile`, writes the reply to `wfile`.
    fn handle(&mut self, request: &mut DatagramRequest) -> io::Result<()>;

    /// Cleans up (default: nothing); runs even if `handle` failed or panicked. The
    /// reply is sent after it.
    fn finish(&mut self, request: &mut DatagramRequest) -> io::Result<()> {
        let _ = request;
        Ok(())
    }
}

/// The reactor side of a datagram server: queues each datagram as a request.
pub(super) struct Collect {
    pending: Pending,
}

impl Collect {
    pub(super) fn new(pending: Pending) -> Self {
        Collect { pending }
    }
}

impl DatagramProtocol for Collect {
    fn datagram_received(&mut self, _: &mut DatagramContext<'_>, data: &[u8], from: &Addr) {
        self.pending
            .borrow_mut()
            .push_back(Request::Datagram(data.to_vec(), from.clone()));
    }

    fn datagram_too_large(&mut self, cx: &mut DatagramContext<'_>, from: &Addr) {
        let max = cx.max_datagram_bytes();
        self.pending
            .borrow_mut()
            .push_back(Request::TooLarge(from.clone(), max));
    }
}

/// The server's socket, cloned for sending replies from any thread.
enum Sender {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Sender {
    fn clone_from(reactor: &Reactor, id: DatagramId, unix: bool) -> io::Result<Sender> {
        let fd = reactor
            .datagram_fd(id)
            .ok_or_else(|| io::Error::other("the datagram socket is closed"))?
            .try_clone_to_owned()?;
        Ok(if unix {
            Sender::Unix(UnixDatagram::from(fd))
        } else {
            Sender::Udp(UdpSocket::from(fd))
        })
    }

    fn send_to(&self, data: &[u8], to: &Addr) -> io::Result<()> {
        let sent = match (self, to) {
            (Sender::Udp(s), Addr::Inet(a)) => s.send_to(data, a)?,
            (Sender::Unix(s), Addr::Unix(Some(path))) => s.send_to(data, path)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot reply to {to}: the client's socket has no address"),
                ))
            }
        };
        if sent == data.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", data.len()),
            ))
        }
    }
}

/// The serving closure of a datagram server bound as `id` in `reactor`.
pub(super) fn serve_fn<F, H>(
    factory: F,
    hooks: Arc<Hooks>,
    reactor: &Reactor,
    id: DatagramId,
) -> io::Result<Arc<Serve>>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: DatagramRequestHandler,
{
    let unix = matches!(reactor.datagram_addr(id), Some(Addr::Unix(_)));
    let sender = Sender::clone_from(reactor, id, unix)?;
    Ok(Arc::new(move |request: Request| {
        if let Request::Datagram(packet, client) = request {
            if let Err(e) = serve(&factory, &sender, packet, &client) {
                hooks.handle_error(&client, e);
            }
        }
    }))
}

/// setup → handle → finish → reply; returns the first failure.
fn serve<H: DatagramRequestHandler>(
    factory: &dyn Fn() -> H,
    sender: &Sender,
    packet: Vec<u8>,
    client: &Addr,
) -> Result<(), RequestError> {
    let mut request = DatagramRequest {
        rfile: Cursor::new(packet),
        wfile: Vec::new(),
        client_address: client.clone(),
    };
    let mut handler = run_step(|| Ok(factory()))?;
    run_step(|| handler.setup(&mut request))?;
    let handled = run_step(|| handler.handle(&mut request));
    let finished = run_step(|| handler.finish(&mut request));
    let replied = if request.wfile.is_empty() {
        Ok(())
    } else {
        sender
            .send_to(&request.wfile, client)
            .map_err(RequestError::Io)
    };
    first_failure(client, [handled, finished, replied])
}
