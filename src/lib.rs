//! twistor: a single-threaded reactor on `mio` with Twisted-style protocols.
//!
//! One thread, one `mio::Poll`, a table of connections, and your protocol's callbacks:
//! `connection_made`, `data_received`, `read_eof`, `connection_lost`. Writes never
//! block; what the kernel refuses is buffered, with watermarks that pause and resume
//! the producer and a cap that closes a peer that will not read. Timers, a
//! cross-thread [`Handle`], and graceful shutdown come with the reactor.
//!
//! What twistor is not: an async runtime. There are no futures and no tasks; state
//! lives in your protocol structs (or in an `Rc<RefCell<_>>` they share, as a chat
//! room does), and every callback runs on the reactor thread. For more than one core,
//! a [`ReactorGroup`] runs one reactor per thread, each with its own SO_REUSEPORT
//! listener on the same address.
//!
//! # Example: an upper-casing echo server
//!
//! ```
//! use std::io::{Read, Write};
//! use twistor::{Context, Protocol, Reactor, Reason};
//!
//! struct Upper;
//!
//! impl Protocol for Upper {
//!     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
//!         cx.write(&data.to_ascii_uppercase());
//!     }
//!
//!     fn connection_lost(&mut self, cx: &mut Context<'_>, _reason: Reason) {
//!         cx.stop_reactor(); // one client is enough for this example
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), |_: &_| Some(Upper))?;
//!
//! let client = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
//!     let mut s = std::net::TcpStream::connect(port.local_addr)?;
//!     s.write_all(b"hello twistor")?;
//!     s.shutdown(std::net::Shutdown::Write)?;
//!     let mut reply = Vec::new();
//!     s.read_to_end(&mut reply)?;
//!     Ok(reply)
//! });
//!
//! reactor.run()?;
//! assert_eq!(client.join().unwrap()?, b"HELLO TWISTOR");
//! # Ok::<(), std::io::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod backoff;
pub mod client;
mod core;
mod datagram;
pub mod framing;
pub mod group;
mod ids;
mod net;
mod pool;
pub mod producer;
mod protocol;
mod reactor;
pub mod redis;
pub mod socketserver;
mod stdio;
pub mod testing;
mod timer;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
#[cfg(feature = "websocket")]
pub mod websocket;

pub use datagram::{DatagramContext, DatagramProtocol, DEFAULT_MAX_DATAGRAM_BYTES};
pub use group::ReactorGroup;
pub use ids::{ConnId, DatagramId, ListenerId};
pub use net::ListenOptions;
pub use pool::{InOrder, JobError, PoolBusy};
pub use producer::{FileSender, Producer, ProducerKind};
pub use protocol::{Addr, Factory, PeerCredentials, Protocol, Reason};
pub use reactor::{
    Accepted, Builder, ClosedByReason, Handle, Listening, Reactor, ReactorGone, Stats,
};
pub use timer::TimerId;
pub use transport::{ConnRef, Context};

/// The README's code blocks, compiled and run as doctests so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
