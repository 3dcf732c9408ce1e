//! Token-bucket rate limits keyed by caller (client name, peer agency).
//!
//! Lookups reveal whether an identifier is known; limiting their rate per
//! caller bounds how fast anyone can probe the federation. Every client and
//! peer call also passes a per-caller limit, so one runaway system cannot
//! starve the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_minute: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` sustained, with bursts up to `burst` calls.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `per_second` sustained, with bursts up to twice that.
    pub fn per_second(per_second: u32) -> Self {
        Self::new(per_second.saturating_mul(60), per_second.saturating_mul(2))
    }

    /// Takes one call from `who`'s bucket; false when it is empty.
    pub fn allow(&self, who: &str) -> bool {
        self.allow_at(who, Instant::now())
    }

    /// Whether `who`'s bucket holds a call now, without taking it: for a
    /// budget that only what fails spends (the intake's wrong receipts),
    /// checked before the work and taken with [`RateLimiter::allow`] after.
    pub fn available(&self, who: &str) -> bool {
        self.take_at(who, Instant::now(), false)
    }

    fn allow_at(&self, who: &str, now: Instant) -> bool {
        self.take_at(who, now, true)
    }

    /// Refills `who`'s bucket to `now`; whether it holds a call, taken if
    /// `take`.
    fn take_at(&self, who: &str, now: Instant, take: bool) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = buckets.entry(who.to_owned()).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_minute / 60.0;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        let held = *tokens >= 1.0;
        if held && take {
            *tokens -= 1.0;
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_per_caller() {
        let rl = RateLimiter::new(60, 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| rl.allow_at("a", t0)));
        assert!(!rl.allow_at("a", t0), "burst spent");
        assert!(rl.allow_at("b", t0), "buckets are per caller");
        assert!(!rl.allow_at("a", t0 + Duration::from_millis(500)));
        assert!(
            rl.allow_at("a", t0 + Duration::from_millis(1100)),
            "one per second refills"
        );
    }

    #[test]
    fn looking_takes_nothing() {
        let rl = RateLimiter::new(3, 3);
        let t0 = Instant::now();
        assert!((0..10).all(|_| rl.take_at("", t0, false)));
        assert!((0..3).all(|_| rl.allow_at("", t0)));
        assert!(!rl.take_at("", t0, false), "spent for the minute");
        assert!(!rl.allow_at("", t0 + Duration::from_secs(19)));
        assert!(rl.take_at("", t0 + Duration::from_secs(61), false));
    }
}
