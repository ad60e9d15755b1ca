//! The key space: byte-string keys to byte-string values, with optional deadlines.
//!
//! Expiry works as in Redis, in two ways. Lazily: a key past its deadline is never
//! seen by a command, whether or not it has been reclaimed yet. Actively:
//! [`Db::sweep`], run from a reactor timer, reclaims keys whose deadline has passed
//! so that keys nobody reads again do not hold memory. Redis samples random keys for
//! its active expiry; we keep the deadlines in order instead, so a sweep touches only
//! keys that are really due and never scans live ones.
//!
//! Time is passed in (`now`) rather than read here, so the caller reads the clock
//! once per batch of requests and the logic can be tested with made-up instants.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::resp::{decimal, parse_i64};

/// A key's deadline and its tie-breaker in [`Db::deadlines`]: two keys may share an
/// instant, and the sequence number keeps their entries apart.
type Deadline = (Instant, u64);

/// One stored value.
#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    deadline: Option<Deadline>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.deadline.is_none_or(|(at, _)| at > now)
    }
}

/// What a write does to the key's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No deadline (a plain `SET`, `MSET`).
    Persist,
    /// Keep the deadline the key has, if it is live (`SET ... KEEPTTL`).
    Keep,
    /// Expire at this instant.
    At(Instant),
}

/// Why an `INCRBY` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrError {
    /// The stored value is not a decimal `i64`.
    NotInteger,
    /// The result would not fit an `i64`.
    Overflow,
}

/// A key's remaining time to live, as `TTL` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    Missing,
    Persistent,
    Expires(Duration),
}

/// Conditions of `EXPIRE key seconds [NX] [XX] [GT] [LT]`; all must hold. A key
/// with no deadline counts as expiring infinitely late for GT and LT, as in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireIf {
    /// Only if the key has no deadline.
    pub nx: bool,
    /// Only if the key has a deadline.
    pub xx: bool,
    /// Only if the new deadline is later than the current one.
    pub gt: bool,
    /// Only if the new deadline is earlier than the current one.
    pub lt: bool,
}

/// The key space, shared by every connection of the server.
#[derive(Debug, Default)]
pub struct Db {
    map: HashMap<Box<[u8]>, Entry>,
    /// Every key with a deadline, soonest first: what [`sweep`](Db::sweep) walks.
    deadlines: BTreeMap<Deadline, Box<[u8]>>,
    next_seq: u64,
}

impl Db {
    /// The value of `key`, unless it is missing or expired.
    pub fn get(&self, key: &[u8], now: Instant) -> Option<&[u8]> {
        self.map
            .get(key)
            .filter(|e| e.is_live(now))
            .map(|e| &e.value[..])
    }

    /// True if `key` holds a value that has not expired.
    pub fn exists(&self, key: &[u8], now: Instant) -> bool {
        self.get(key, now).is_some()
    }

    /// Stores `value` under `key`, with the deadline `ttl` says.
    pub fn set(&mut self, key: &[u8], value: &[u8], ttl: Ttl, now: Instant) {
        let new_deadline = |old: Option<Deadline>| match ttl {
            Ttl::Persist => None,
            Ttl::Keep => old.map(|(at, _)| at),
            Ttl::At(at) => Some(at),
        };
        if let Some(entry) = self.map.get_mut(key) {
            let old = entry.deadline.filter(|&(at, _)| at > now);
            // Reuse the old value's memory unless it is far larger than needed.
            if entry.value.capacity() / 2 > value.len().max(64) {
                entry.value = value.to_vec();
            } else {
                entry.value.clear();
                entry.value.extend_from_slice(value);
            }
            let wanted = new_deadline(old);
            if wanted != entry.deadline.map(|(at, _)| at) {
                Self::move_deadline(&mut self.deadlines, &mut self.next_seq, key, entry, wanted);
            }
            return;
        }
        let mut entry = Entry {
            value: value.to_vec(),
            deadline: None,
        };
        if let Some(at) = new_deadline(None) {
            Self::move_deadline(
                &mut self.deadlines,
                &mut self.next_seq,
                key,
                &mut entry,
                Some(at),
            );
        }
        self.map.insert(key.into(), entry);
    }

    /// Removes `key`; true if it held a live value.
    pub fn del(&mut self, key: &[u8], now: Instant) -> bool {
        match self.map.remove(key) {
            Some(entry) => {
                if let Some(deadline) = entry.deadline {
                    self.deadlines.remove(&deadline);
                }
                entry.is_live(now)
            }
            None => false,
        }
    }

    /// Adds `delta` to the integer stored at `key` (a missing key counts as 0) and
    /// returns the result. The key keeps its deadline, as in Redis.
    pub fn incr_by(&mut self, key: &[u8], delta: i64, now: Instant) -> Result<i64, IncrError> {
        let mut digits = [0; 20];
        if let Some(entry) = self.map.get_mut(key).filter(|e| e.is_live(now)) {
            let current = parse_i64(&entry.value).ok_or(IncrError::NotInteger)?;
            let result = current.checked_add(delta).ok_or(IncrError::Overflow)?;
            entry.value.clear();
            entry.value.extend_from_slice(decimal(result, &mut digits));
            return Ok(result);
        }
        // Missing, or expired and so as good as missing: a new key with no deadline.
        self.set(key, decimal(delta, &mut digits), Ttl::Persist, now);
        Ok(delta)
    }

    /// Sets a deadline on a live `key` if `condition` allows; true if it was set. A
    /// deadline that is not after `now` deletes the key at once (and counts as set).
    pub fn expire(&mut self, key: &[u8], at: Instant, condition: ExpireIf, now: Instant) -> bool {
        let Some(entry) = self.map.get_mut(key).filter(|e| e.is_live(now)) else {
            return false;
        };
        let current = entry.deadline.map(|(at, _)| at);
        let refused = (condition.nx && current.is_some())
            || (condition.xx && current.is_none())
            || (condition.gt && current.is_none_or(|c| at <= c))
            || (condition.lt && current.is_some_and(|c| at >= c));
        if refused {
            return false;
        }
        if at <= now {
            self.del(key, now);
        } else {
            Self::move_deadline(
                &mut self.deadlines,
                &mut self.next_seq,
                key,
                entry,
                Some(at),
            );
        }
        true
    }

    /// How long `key` has left.
    pub fn ttl(&self, key: &[u8], now: Instant) -> KeyTtl {
        match self.map.get(key).filter(|e| e.is_live(now)) {
            None => KeyTtl::Missing,
            Some(Entry { deadline: None, .. }) => KeyTtl::Persistent,
            Some(Entry {
                deadline: Some((at, _)),
                ..
            }) => KeyTtl::Expires(at.saturating_duration_since(now)),
        }
    }

    /// Number of keys, counting expired ones not yet reclaimed (as Redis's `DBSIZE`).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Removes every key and gives the memory back.
    pub fn clear(&mut self) {
        self.map = HashMap::new();
        self.deadlines = BTreeMap::new();
    }

    /// Reclaims up to `budget` keys whose deadline is at or before `now`, soonest
    /// first. Returns true if more are due, so the caller can come back soon rather
    /// than hold the loop for a long sweep.
    pub fn sweep(&mut self, now: Instant, budget: usize) -> bool {
        for _ in 0..budget {
            let Some(due) = self.deadlines.first_entry() else {
                return false;
            };
            if due.key().0 > now {
                return false;
            }
            let key = due.remove();
            self.map.remove(&key);
        }
        self.deadlines
            .first_key_value()
            .is_some_and(|(&(at, _), _)| at <= now)
    }

    /// Replaces `entry`'s deadline with `at`, keeping [`Db::deadlines`] in step. (An
    /// associated function over the fields, so that `entry` can borrow `map`.)
    fn move_deadline(
        deadlines: &mut BTreeMap<Deadline, Box<[u8]>>,
        next_seq: &mut u64,
        key: &[u8],
        entry: &mut Entry,
        at: Option<Instant>,
    ) {
        let reused = entry.deadline.take().and_then(|old| deadlines.remove(&old));
        if let Some(at) = at {
            *next_seq += 1;
            let deadline = (at, *next_seq);
            deadlines.insert(deadline, reused.unwrap_or_else(|| key.into()));
            entry.deadline = Some(deadline);
        }
    }
}
