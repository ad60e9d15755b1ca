//! Ids of the things a reactor keeps: connections, listeners, datagram sockets.
//!
//! A leaf module: every other module may use these, and they use nothing of the
//! crate. Each id pairs a slab index with a generation, so that an id outlives its
//! object harmlessly: once a connection is gone its id stays dead, even after a new
//! connection reuses the slot, and a late timer, pool result or write to it does
//! nothing.

use std::fmt;

/// Identifies a connection for its whole life.
///
/// Ids carry a generation: once a connection is lost its id stays dead, even after a
/// new connection reuses its slot, so a late timer, pool result or write to it
/// does nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// An id that no reactor ever hands out, for connections that never got a slot.
    pub(crate) const fn detached(generation: u32) -> ConnId {
        ConnId {
            index: u32::MAX,
            generation,
        }
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({}.{})", self.index, self.generation)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {}.{}", self.index, self.generation)
    }
}

/// Identifies a listening socket.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ListenerId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// Identifies a datagram socket (UDP or Unix datagram).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DatagramId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl fmt::Display for DatagramId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "datagram {}.{}", self.index, self.generation)
    }
}

/// What an event, or an entry of the carried-over list, is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Source {
    Waker,
    Conn(ConnId),
    Listener(ListenerId),
    Datagram(DatagramId),
}
