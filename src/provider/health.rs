//! Each provider's health: a circuit breaker, in-flight calls and the last
//! error, for routing, `/metrics` and `/v1/providers`.
//!
//! The breaker opens after `failures` failures in a row: the provider is
//! skipped for `cooldown`, then one call probes it (half open); a success
//! closes the breaker, a failure opens it again.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Debug)]
struct Breaker {
    /// Failures in a row.
    consecutive: u32,
    /// Open until then.
    open_until: Option<Instant>,
    /// A probe is under way (half open): other calls keep away.
    probing: bool,
}

#[derive(Debug)]
pub struct Health {
    failures: u32,
    cooldown: Duration,
    breaker: Mutex<Breaker>,
    /// Calls the provider is placing or following now: its channels in use.
    pub in_flight: AtomicI64,
    /// Channels at most (`max_channels`); 0: no limit. Set from the config at
    /// each (re)load.
    pub max_channels: std::sync::atomic::AtomicU32,
    pub successes: AtomicU64,
    pub failures_total: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

impl Health {
    pub fn new(failures: u32, cooldown: Duration) -> Health {
        Health {
            failures: failures.max(1),
            cooldown,
            breaker: Mutex::new(Breaker {
                consecutive: 0,
                open_until: None,
                probing: false,
            }),
            in_flight: AtomicI64::new(0),
            max_channels: std::sync::atomic::AtomicU32::new(0),
            successes: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Whether a channel is free now (always, without a limit).
    pub fn has_channel(&self) -> bool {
        let max = self.max_channels.load(Ordering::Relaxed);
        max == 0 || self.in_flight.load(Ordering::SeqCst) < i64::from(max)
    }

    pub fn state(&self) -> State {
        self.state_at(Instant::now())
    }

    fn state_at(&self, now: Instant) -> State {
        let Ok(b) = self.breaker.lock() else {
            return State::Closed;
        };
        match b.open_until {
            Some(t) if now < t => State::Open,
            Some(_) => State::HalfOpen,
            None => State::Closed,
        }
    }

    /// Whether the breaker would let a call through now, without taking the
    /// half-open probe: for choosing a route.
    pub fn would_allow(&self) -> bool {
        let Ok(b) = self.breaker.lock() else {
            return true;
        };
        match b.open_until {
            Some(t) if Instant::now() < t => false,
            Some(_) => !b.probing,
            None => true,
        }
    }

    /// Whether a call may be sent now; in half open, only the one probe, which
    /// the caller must settle with [`Health::success`] or [`Health::failure`].
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let Ok(mut b) = self.breaker.lock() else {
            return true;
        };
        match b.open_until {
            Some(t) if now < t => false,
            Some(_) if b.probing => false,
            Some(_) => {
                b.probing = true;
                true
            }
            None => true,
        }
    }

    pub fn success(&self) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut b) = self.breaker.lock() {
            *b = Breaker {
                consecutive: 0,
                open_until: None,
                probing: false,
            };
        }
    }

    pub fn failure(&self, why: &str) {
        self.failure_at(why, Instant::now());
    }

    fn failure_at(&self, why: &str, now: Instant) {
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(format!(
                "{} {why}",
                crate::core::format_ms(crate::core::now_ms())
            ));
        }
        if let Ok(mut b) = self.breaker.lock() {
            b.consecutive += 1;
            if b.probing || b.consecutive >= self.failures {
                b.open_until = Some(now + self.cooldown);
                b.probing = false;
            }
        }
    }

    pub fn report(&self) -> Value {
        json!({
            "breaker": self.state().as_str(),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "successes": self.successes.load(Ordering::Relaxed),
            "failures": self.failures_total.load(Ordering::Relaxed),
            "last_error": self.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_probes_and_closes() {
        let h = Health::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(h.allow_at(t0));
        for _ in 0..2 {
            h.failure_at("down", t0);
        }
        assert_eq!(
            h.state_at(t0),
            State::Closed,
            "two failures are not yet three"
        );
        h.failure_at("down", t0);
        assert_eq!(h.state_at(t0), State::Open);
        assert!(!h.allow_at(t0 + Duration::from_secs(29)));
        // Past the cooldown one probe goes, and only one.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(h.state_at(later), State::HalfOpen);
        // Looking does not take the probe; only a call that goes there does.
        {
            let b = h.breaker.lock().unwrap();
            assert!(!b.probing);
        }
        assert!(h.allow_at(later));
        assert!(!h.allow_at(later));
        // A failed probe opens it again; a good one closes it.
        h.failure_at("still down", later);
        assert_eq!(h.state_at(later), State::Open);
        let again = later + Duration::from_secs(31);
        assert!(h.allow_at(again));
        h.success();
        assert_eq!(h.state_at(again), State::Closed);
        assert!(h.allow_at(again) && h.allow_at(again));
        assert!(h.report()["last_error"]
            .as_str()
            .unwrap()
            .ends_with("still down"));
    }
}

/// One channel of a provider, held while a call is placed and followed;
/// dropping it frees the channel, however the call ends.
#[derive(Debug)]
pub struct Channel(std::sync::Arc<Health>);

impl Channel {
    /// A channel of `h`, unless all its `max_channels` are in use.
    pub fn take(h: &std::sync::Arc<Health>) -> Option<Channel> {
        let max = i64::from(h.max_channels.load(Ordering::Relaxed));
        h.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Channel(h.clone()))
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
