//! Open event streams (`…/events` as SSE, `…/live`) hold a connection, a NATS
//! subscription or consumer, and memory for as long as the client keeps
//! them. Each caller may hold a bounded number at once, and the gateway a
//! bounded total, so one tenant (or one leaking client) cannot take what
//! every tenant shares; past either bound a new stream is refused with 429
//! and `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ApiError;

/// Streams one caller (a person or an API key) may hold open at once.
pub const DEFAULT_PER_CALLER: usize = 16;
/// Streams one gateway holds open at once.
pub const DEFAULT_TOTAL: usize = 4096;

/// The open streams of a gateway, per caller.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    inner: Arc<Mutex<Counts>>,
    per_caller: usize,
    total: usize,
}

#[derive(Debug, Default)]
struct Counts {
    by_caller: HashMap<String, usize>,
    total: usize,
}

/// One open stream's slot, given back when the stream ends.
#[derive(Debug)]
pub struct StreamSlot {
    inner: Arc<Mutex<Counts>>,
    caller: String,
}

impl StreamSlots {
    /// Slots with these bounds (each at least 1).
    pub fn new(per_caller: usize, total: usize) -> Self {
        StreamSlots { inner: Arc::default(), per_caller: per_caller.max(1), total: total.max(1) }
    }

    /// A slot for `caller`, or a 429 saying which bound was reached.
    pub fn acquire(&self, caller: &str) -> Result<StreamSlot, ApiError> {
        let mut counts = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = counts.by_caller.get(caller).copied().unwrap_or(0);
        if held >= self.per_caller {
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "you already hold {held} open event streams, the most one caller may; close one \
                     (one stream per brand and purpose is enough) and try again"
                ),
                retry_after_secs: 5,
            });
        }
        if counts.total >= self.total {
            return Err(ApiError::TooManyRequests {
                message: "this gateway holds as many open event streams as it may; try again shortly".into(),
                retry_after_secs: 5,
            });
        }
        *counts.by_caller.entry(caller.to_owned()).or_default() += 1;
        counts.total += 1;
        Ok(StreamSlot { inner: self.inner.clone(), caller: caller.to_owned() })
    }

    /// How many streams are open (all callers).
    pub fn open(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).total
    }
}

impl Default for StreamSlots {
    fn default() -> Self {
        StreamSlots::new(DEFAULT_PER_CALLER, DEFAULT_TOTAL)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.by_caller.get_mut(&self.caller) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.by_caller.remove(&self.caller);
            }
        }
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
