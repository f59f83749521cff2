//! Open event streams (`…/events` as SSE, `…/live`) hold a connection, a NATS
//! subscription or consumer, and memory for as long as the client keeps
//! them. Each caller may hold a bounded number at once, and the gateway a
//! bounded total, so one tenant (or one leaking client) cannot take what
//! every tenant shares; past either bound a new stream is refused with 429
//! and `Retry-After`. The counting itself ([`Slots`]) also bounds running
//! imports (`imports::ImportSlots`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::ApiError;

/// Streams one caller (a person or an API key) may hold open at once.
pub const DEFAULT_PER_CALLER: usize = 16;
/// Streams one gateway holds open at once.
pub const DEFAULT_TOTAL: usize = 4096;

/// Counted slots of a shared resource: at most `per_key` for one key (a
/// caller, a brand) and `total` for all. Streams and imports use it.
#[derive(Debug)]
pub struct Slots<K: Eq + Hash + Clone> {
    inner: Arc<Mutex<Counts<K>>>,
    per_key: usize,
    total: usize,
}

impl<K: Eq + Hash + Clone> Clone for Slots<K> {
    fn clone(&self) -> Self {
        Slots { inner: self.inner.clone(), per_key: self.per_key, total: self.total }
    }
}

#[derive(Debug)]
struct Counts<K> {
    by_key: HashMap<K, usize>,
    total: usize,
}

/// Which bound refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The key already holds this many slots, its most.
    Key(usize),
    /// Every slot is taken.
    Total,
}

/// One taken slot, given back when dropped.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash + Clone> {
    inner: Arc<Mutex<Counts<K>>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    /// Slots with these bounds (each at least 1).
    pub fn new(per_key: usize, total: usize) -> Self {
        Slots {
            inner: Arc::new(Mutex::new(Counts { by_key: HashMap::new(), total: 0 })),
            per_key: per_key.max(1),
            total: total.max(1),
        }
    }

    /// A slot for `key`, or the bound that was reached.
    pub fn take(&self, key: &K) -> Result<Slot<K>, Full> {
        let mut counts = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = counts.by_key.get(key).copied().unwrap_or(0);
        if held >= self.per_key {
            return Err(Full::Key(held));
        }
        if counts.total >= self.total {
            return Err(Full::Total);
        }
        *counts.by_key.entry(key.clone()).or_default() += 1;
        counts.total += 1;
        Ok(Slot { inner: self.inner.clone(), key: key.clone() })
    }

    /// How many slots are taken (all keys).
    pub fn taken(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).total
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.by_key.get_mut(&self.key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.by_key.remove(&self.key);
            }
        }
    }
}

/// The open streams of a gateway, per caller.
#[derive(Debug, Clone)]
pub struct StreamSlots(Slots<String>);

/// One open stream's slot, given back when the stream ends.
pub type StreamSlot = Slot<String>;

impl StreamSlots {
    /// Slots with these bounds (each at least 1).
    pub fn new(per_caller: usize, total: usize) -> Self {
        StreamSlots(Slots::new(per_caller, total))
    }

    /// A slot for `caller`, or a 429 saying which bound was reached.
    pub fn acquire(&self, caller: &str) -> Result<StreamSlot, ApiError> {
        self.0.take(&caller.to_owned()).map_err(|full| match full {
            Full::Key(held) => ApiError::TooManyRequests {
                message: format!(
                    "you already hold {held} open event streams, the most one caller may; close one \
                     (one stream per brand and purpose is enough) and try again"
                ),
                retry_after_secs: 5,
            },
            Full::Total => ApiError::TooManyRequests {
                message: "this gateway holds as many open event streams as it may; try again shortly".into(),
                retry_after_secs: 5,
            },
        })
    }

    /// How many streams are open (all callers).
    pub fn open(&self) -> usize {
        self.0.taken()
    }
}

impl Default for StreamSlots {
    fn default() -> Self {
        StreamSlots::new(DEFAULT_PER_CALLER, DEFAULT_TOTAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_and_the_gateway_each_hold_a_bounded_number_and_an_ended_stream_gives_its_slot_back() {
        let slots = StreamSlots::new(2, 3);
        let first = slots.acquire("k:acme:feed").expect("first");
        let _second = slots.acquire("k:acme:feed").expect("second");
        let refused = slots.acquire("k:acme:feed").expect_err("third of one caller");
        assert!(matches!(refused, ApiError::TooManyRequests { .. }), "{refused}");
        let _other = slots.acquire("u:ana").expect("another caller");
        assert!(slots.acquire("u:bob").is_err(), "the gateway's total is reached");
        drop(first);
        assert_eq!(slots.open(), 2);
        slots.acquire("k:acme:feed").expect("a slot came back");
    }
}
