//! Failed authentications, throttled per source address and per partner.
//!
//! Every front door reports each request whose credentials were wrong (a bad
//! XIP Auth, a wrong HTTP Basic password, an unknown Cloud9 carrier ID or admin
//! token) and each that passed. Failures fill a leaky bucket per source (an
//! IPv4 address, or an IPv6 /64: one host's share of addresses) and per
//! configured partner (`[guard] auth_failures_per_source` and
//! `auth_failures_per_partner`, each COUNT/PERIOD). A bucket that overflows
//! locks its source or partner for `auth_lockout`: every request it makes
//! meanwhile is refused with the door's own "too many" answer, right
//! credentials or not, so that guessing gets nowhere.
//!
//! What a lock does not refuse: a source that authenticated as a partner
//! before (within [`KNOWN_FOR`]) keeps being served for that partner, so that
//! a stranger's failures cannot lock a vendor's own servers out, and a vendor's
//! own mistakes lock only its new sources.
//!
//! Bounded: at most [`MAX_SOURCES`] sources and [`MAX_KNOWN`] known pairs are
//! kept; past that, buckets that have drained and the oldest pairs are
//! forgotten first. Partners are only the configured ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::AuthLimits;

/// Sources whose buckets are kept at once.
pub const MAX_SOURCES: usize = 16_384;
/// (source, partner) pairs remembered as having authenticated.
pub const MAX_KNOWN: usize = 4_096;
/// How long a pair that authenticated stays exempt from locks.
pub const KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);

/// What a lock is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Source,
    Partner,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Source => "source",
            Scope::Partner => "partner",
        }
    }
}

/// A request refused because its source or partner is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub scope: Scope,
    /// Whole seconds until the lock ends (at least 1), for `Retry-After`.
    pub retry_after: u64,
}

impl Locked {
    /// One line for the record, the log and the answer; names no secret.
    pub fn detail(&self) -> String {
        format!(
            "too many failed authentications from this {}; retry in {} s",
            self.scope.as_str(),
            self.retry_after
        )
    }
}

/// The key of a source: IPv4 addresses as they are, IPv6 by /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(u32),
    V6(u64),
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Source::V4(a) => write!(f, "{}", std::net::Ipv4Addr::from(a)),
            Source::V6(p) => write!(f, "{}/64", std::net::Ipv6Addr::from(u128::from(p) << 64)),
        }
    }
}

/// A leaky bucket of failures, draining at `count / per`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
    locked_until: Option<Instant>,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            level: 0.0,
            at: now,
            locked_until: None,
        }
    }

    fn drain(&mut self, w: crate::guard::Window, now: Instant) {
        let rate = f64::from(w.count) / w.per.as_secs_f64();
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level - dt * rate).max(0.0);
        self.at = now;
    }

    /// Whole seconds left of its lock, if it is locked.
    fn locked(&self, now: Instant) -> Option<u64> {
        let until = self.locked_until?;
        let left = until.checked_duration_since(now)?;
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0)).filter(|s| *s > 0)
    }

    /// Adds a failure; true when that began a lock.
    fn fail(&mut self, w: crate::guard::Window, lockout: Duration, now: Instant) -> bool {
        self.drain(w, now);
        self.level += 1.0;
        if self.level > f64::from(w.count) && self.locked(now).is_none() {
            self.locked_until = Some(now + lockout);
            // The lock is the penalty: the bucket starts again after it.
            self.level = 0.0;
            return true;
        }
        false
    }

    /// Nothing left to remember: drained and not locked.
    fn idle(&mut self, w: Option<crate::guard::Window>, now: Instant) -> bool {
        if let Some(w) = w {
            self.drain(w, now);
        }
        self.locked(now).is_none() && self.level < 1e-9
    }
}

#[derive(Default)]
struct State {
    sources: HashMap<Source, Bucket>,
    partners: HashMap<Arc<str>, Bucket>,
    /// Sources that authenticated, by partner: looked up by `&str`, so the
    /// request path allocates nothing.
    known: HashMap<Arc<str>, HashMap<Source, Instant>>,
    /// Pairs in `known`, bounded by [`MAX_KNOWN`].
    known_pairs: usize,
    /// When a full table of sources was last swept: at most once a second,
    /// so that a flood of new sources cannot make every failure a sweep.
    swept: Option<Instant>,
}

impl State {
    fn is_known(&self, src: Source, partner: &str, now: Instant) -> bool {
        self.known
            .get(partner)
            .and_then(|m| m.get(&src))
            .is_some_and(|at| now.saturating_duration_since(*at) < KNOWN_FOR)
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub failures: AtomicU64,
    pub source_locks: AtomicU64,
    pub partner_locks: AtomicU64,
}

/// The daemon's record of failed authentications.
#[derive(Default)]
pub struct Lockout {
    state: Mutex<State>,
    pub stats: Stats,
}

impl Lockout {
    /// Whether a request from `ip`, naming `partner` (a configured partner's
    /// id, when the request names one), is to be refused.
    pub fn check(
        &self,
        limits: &AuthLimits,
        ip: IpAddr,
        partner: Option<&str>,
    ) -> Result<(), Locked> {
        self.check_at(limits, ip, partner, Instant::now())
    }

    fn check_at(
        &self,
        limits: &AuthLimits,
        ip: IpAddr,
        partner: Option<&str>,
        now: Instant,
    ) -> Result<(), Locked> {
        let src = Source::of(ip);
        let Ok(st) = self.state.lock() else {
            return Ok(());
        };
        let locked = |b: Option<&Bucket>| b.and_then(|b| b.locked(now));
        let lock = match locked(st.sources.get(&src)).filter(|_| limits.per_source.is_some()) {
            Some(s) => Some((Scope::Source, s)),
            None => partner
                .and_then(|p| locked(st.partners.get(p)))
                .filter(|_| limits.per_partner.is_some())
                .map(|s| (Scope::Partner, s)),
        };
        // Only a lock needs the known sources: most requests never look.
        match lock {
            Some(_) if partner.is_some_and(|p| st.is_known(src, p, now)) => Ok(()),
            Some((scope, retry_after)) => Err(Locked { scope, retry_after }),
            None => Ok(()),
        }
    }

    /// Records a failed authentication from `ip`; `partner` is the configured
    /// partner the request named, if any (an unknown id fills only the
    /// source's bucket).
    pub fn failed(&self, limits: &AuthLimits, ip: IpAddr, partner: Option<&str>) {
        self.failed_at(limits, ip, partner, Instant::now());
    }

    fn failed_at(&self, limits: &AuthLimits, ip: IpAddr, partner: Option<&str>, now: Instant) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let src = Source::of(ip);
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(w) = limits.per_source {
            let sweep_due = st
                .swept
                .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
            if !st.sources.contains_key(&src) && st.sources.len() >= MAX_SOURCES && sweep_due {
                st.sources.retain(|_, b| !b.idle(Some(w), now));
                st.swept = Some(now);
            }
            if st.sources.len() < MAX_SOURCES || st.sources.contains_key(&src) {
                let b = st.sources.entry(src).or_insert_with(|| Bucket::new(now));
                if b.fail(w, limits.lockout, now) {
                    self.stats.source_locks.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "auth: source {src} locked for {} s: more than {w} failed authentications",
                        limits.lockout.as_secs()
                    );
                }
            }
        }
        if let (Some(w), Some(p)) = (limits.per_partner, partner) {
            let b = match st.partners.get_mut(p) {
                Some(b) => b,
                None => st
                    .partners
                    .entry(Arc::from(p))
                    .or_insert_with(|| Bucket::new(now)),
            };
            if b.fail(w, limits.lockout, now) {
                self.stats.partner_locks.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "auth: partner {p:?} locked for {} s: more than {w} failed authentications (its known sources are still served)",
                    limits.lockout.as_secs()
                );
            }
        }
    }

    /// Records that `ip` authenticated as `partner`: the pair is exempt from
    /// locks for [`KNOWN_FOR`].
    pub fn passed(&self, ip: IpAddr, partner: &str) {
        self.passed_at(ip, partner, Instant::now());
    }

    fn passed_at(&self, ip: IpAddr, partner: &str, now: Instant) {
        let src = Source::of(ip);
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(at) = st.known.get_mut(partner).and_then(|m| m.get_mut(&src)) {
            *at = now;
            return;
        }
        if st.known_pairs >= MAX_KNOWN {
            // Forget the stale pairs; if none is, the oldest one.
            for m in st.known.values_mut() {
                m.retain(|_, at| now.saturating_duration_since(*at) < KNOWN_FOR);
            }
            let oldest = st
                .known
                .iter()
                .flat_map(|(p, m)| m.iter().map(move |(s, at)| (*at, p.clone(), *s)))
                .min_by_key(|(at, _, _)| *at);
            let kept: usize = st.known.values().map(HashMap::len).sum();
            if kept >= MAX_KNOWN {
                if let Some((_, p, s)) = oldest {
                    if let Some(m) = st.known.get_mut(&p) {
                        m.remove(&s);
                    }
                }
            }
            st.known.retain(|_, m| !m.is_empty());
            st.known_pairs = st.known.values().map(HashMap::len).sum();
        }
        st.known
            .entry(Arc::from(partner))
            .or_default()
            .insert(src, now);
        st.known_pairs += 1;
    }

    /// Sources and partners locked now, for `/metrics`.
    pub fn locked_now(&self) -> (usize, usize) {
        let now = Instant::now();
        match self.state.lock() {
            Ok(st) => (
                st.sources
                    .values()
                    .filter(|b| b.locked(now).is_some())
                    .count(),
                st.partners
                    .values()
                    .filter(|b| b.locked(now).is_some())
                    .count(),
            ),
            Err(_) => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Window;

    fn limits(src: &str, partner: &str) -> AuthLimits {
        AuthLimits {
            per_source: Some(Window::parse(src).unwrap()),
            per_partner: Some(Window::parse(partner).unwrap()),
            lockout: Duration::from_secs(300),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_is_locked_past_its_count_and_freed_after_the_lockout() {
        let l = Lockout::default();
        let lim = limits("3/1m", "100/1m");
        let t0 = Instant::now();
        for _ in 0..3 {
            l.failed_at(&lim, ip("192.0.2.7"), None, t0);
            assert_eq!(l.check_at(&lim, ip("192.0.2.7"), None, t0), Ok(()));
        }
        l.failed_at(&lim, ip("192.0.2.7"), None, t0);
        let locked = l
            .check_at(&lim, ip("192.0.2.7"), Some("p1"), t0)
            .unwrap_err();
        assert_eq!(locked.scope, Scope::Source);
        assert_eq!(locked.retry_after, 300);
        // Another source is not touched.
        assert_eq!(l.check_at(&lim, ip("192.0.2.8"), None, t0), Ok(()));
        let later = t0 + Duration::from_secs(299);
        assert_eq!(
            l.check_at(&lim, ip("192.0.2.7"), None, later)
                .unwrap_err()
                .retry_after,
            1
        );
        assert_eq!(
            l.check_at(&lim, ip("192.0.2.7"), None, t0 + Duration::from_secs(300)),
            Ok(())
        );
        assert_eq!(l.stats.source_locks.load(Ordering::Relaxed), 1);
        assert_eq!(l.stats.failures.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn failures_spread_over_time_drain_away() {
        let l = Lockout::default();
        let lim = limits("3/1m", "100/1m");
        let t0 = Instant::now();
        // One every 20 s is the rate the bucket drains at: never locked.
        for i in 0..50 {
            let t = t0 + Duration::from_secs(20 * i);
            l.failed_at(&lim, ip("192.0.2.7"), None, t);
            assert_eq!(
                l.check_at(&lim, ip("192.0.2.7"), None, t),
                Ok(()),
                "failure {i}"
            );
        }
    }

    #[test]
    fn a_partner_lock_spares_the_sources_it_knows() {
        let l = Lockout::default();
        let lim = limits("1000/1m", "5/1m");
        let t0 = Instant::now();
        l.passed_at(ip("198.51.100.1"), "p1", t0);
        // Strangers, each from another address, guess p1's secret.
        for i in 0..6 {
            l.failed_at(&lim, ip(&format!("203.0.113.{i}")), Some("p1"), t0);
        }
        let locked = l
            .check_at(&lim, ip("203.0.113.50"), Some("p1"), t0)
            .unwrap_err();
        assert_eq!(locked.scope, Scope::Partner);
        // The vendor's own server goes on; another partner is not touched.
        assert_eq!(l.check_at(&lim, ip("198.51.100.1"), Some("p1"), t0), Ok(()));
        assert_eq!(l.check_at(&lim, ip("203.0.113.50"), Some("p2"), t0), Ok(()));
        // A day later the vendor's server is a stranger again.
        let day = t0 + KNOWN_FOR + Duration::from_secs(1);
        for i in 0..6 {
            l.failed_at(&lim, ip(&format!("203.0.113.{i}")), Some("p1"), day);
        }
        assert!(l
            .check_at(&lim, ip("198.51.100.1"), Some("p1"), day)
            .is_err());
    }

    #[test]
    fn a_known_source_is_served_for_its_partner_while_locked_for_others() {
        let l = Lockout::default();
        let lim = limits("2/1m", "100/1m");
        let t0 = Instant::now();
        l.passed_at(ip("192.0.2.1"), "p1", t0);
        for _ in 0..3 {
            l.failed_at(&lim, ip("192.0.2.1"), Some("p2"), t0);
        }
        assert_eq!(l.check_at(&lim, ip("192.0.2.1"), Some("p1"), t0), Ok(()));
        assert_eq!(
            l.check_at(&lim, ip("192.0.2.1"), Some("p2"), t0)
                .unwrap_err()
                .scope,
            Scope::Source
        );
        assert!(l.check_at(&lim, ip("192.0.2.1"), None, t0).is_err());
    }

    #[test]
    fn ipv6_sources_are_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.1")),
            Source::of(ip("192.0.2.1"))
        );
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(Source::of(ip("192.0.2.1")).to_string(), "192.0.2.1");
    }

    #[test]
    fn off_means_never_locked() {
        let l = Lockout::default();
        let lim = AuthLimits {
            per_source: None,
            per_partner: None,
            lockout: Duration::from_secs(300),
        };
        let t0 = Instant::now();
        for _ in 0..1000 {
            l.failed_at(&lim, ip("192.0.2.7"), Some("p1"), t0);
        }
        assert_eq!(l.check_at(&lim, ip("192.0.2.7"), Some("p1"), t0), Ok(()));
        assert_eq!(l.locked_now(), (0, 0));
    }

    #[test]
    fn the_tables_stay_bounded() {
        let l = Lockout::default();
        let lim = limits("1/1h", "100/1m");
        let t0 = Instant::now();
        // Each source fails twice: all locked, none can be forgotten.
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.failed_at(&lim, a, None, t0);
            l.failed_at(&lim, a, None, t0);
            if i < MAX_KNOWN as u32 + 100 {
                l.passed_at(a, "p1", t0);
            }
        }
        let st = l.state.lock().unwrap();
        assert_eq!(st.sources.len(), MAX_SOURCES);
        assert_eq!(st.known_pairs, MAX_KNOWN);
        assert_eq!(
            st.known.values().map(HashMap::len).sum::<usize>(),
            MAX_KNOWN
        );
    }
}
