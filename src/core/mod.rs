//! The domain: what a call is, independent of any wire dialect or provider.
//!
//! - [`CallId`]: the one time-ordered id every dialect can return or be asked for.
//! - [`Secret`]: shared secrets, which never print.
//! - [`phone`]: phone numbers, canonical E.164 with `+`, and whether they can exist.
//! - [`hours`]: quiet hours: when a partner's calls may be placed.
//! - [`plan`]: what a partner asked to be dialled: sides, participants, strategies.
//! - [`call`]: the call's state machine and the events that drive it.

pub mod call;
pub mod hours;
pub mod money;
pub mod phone;
pub mod plan;

use std::fmt;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// A call's id: a UUIDv7, so ids sort by creation time in the database and in logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(uuid::Uuid);

/// The last id's millisecond and its counter: ids made in one millisecond
/// count up, so that they sort in the order they were made.
static CLOCK: std::sync::Mutex<(u64, u16)> = std::sync::Mutex::new((0, 0));

/// The 12 bits of a UUIDv7 after its version: a counter within a millisecond.
const COUNTER_MAX: u16 = 0x0FFF;

impl CallId {
    /// A UUIDv7: the time in ms, a counter within the ms (RFC 9562's method
    /// 1), then 62 random bits from the OS. A call's events each get one too.
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let (ms, counter) = match CLOCK.lock() {
            Ok(mut last) => {
                *last = match *last {
                    (ms, n) if now <= ms && n < COUNTER_MAX => (ms, n + 1),
                    // A full millisecond borrows the next one.
                    (ms, _) if now <= ms => (ms + 1, 0),
                    _ => (now, 0),
                };
                *last
            }
            Err(_) => (now, 0),
        };
        let mut bytes: [u8; 10] = random();
        bytes[..2].copy_from_slice(&counter.to_be_bytes());
        CallId(uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid())
    }

    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::try_parse(s).ok().map(CallId)
    }
}

/// `N` random bytes from the OS, drawn a block at a time per thread: a system
/// call for each id was 2% of c2cd's CPU under load (bench/profile.sh).
fn random<const N: usize>() -> [u8; N] {
    use std::cell::RefCell;
    const BLOCK: usize = 4096;
    thread_local! {
        static POOL: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    }
    let mut out = [0u8; N];
    POOL.with_borrow_mut(|(pool, used)| {
        if pool.len() < BLOCK || *used + N > BLOCK {
            pool.resize(BLOCK, 0);
            if getrandom::fill(pool).is_err() {
                // No OS randomness: ids stay unique by time and counter.
                pool.iter_mut().for_each(|b| *b = fastrand::u8(..));
            }
            *used = 0;
        }
        out.copy_from_slice(&pool[*used..*used + N]);
        // SECURITY: bytes handed out are not handed out again.
        pool[*used..*used + N].fill(0);
        *used += N;
    });
    out
}

impl Default for CallId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A shared secret or token. `Debug` and `Display` print `***` so that a secret
/// cannot reach a log line through a formatted struct.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for hashing or comparing. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Lowercase hex MD5 of the concatenation of `parts`.
pub fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(32);
    for b in digest {
        use fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Compares two byte strings in time that depends only on their lengths.
// SECURITY: every comparison of a secret or a value derived from one goes through here.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Compares a received hex digest with the expected lowercase one, ignoring the
/// case of the received digest, in constant time.
pub fn hex_digest_eq(received: &str, expected_lower: &str) -> bool {
    let received: Vec<u8> = received.bytes().map(|b| b.to_ascii_lowercase()).collect();
    ct_eq(&received, expected_lower.as_bytes())
}

/// Milliseconds since the Unix epoch, UTC: how every time is stored.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Formats stored milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_unique_and_in_the_order_they_were_made() {
        let ids: Vec<CallId> = (0..20_000).map(|_| CallId::new()).collect();
        assert!(
            ids.windows(2).all(|w| w[0].0 < w[1].0),
            "strictly increasing"
        );
        assert!(ids.iter().all(|id| id.0.get_version_num() == 7));
        let text: std::collections::HashSet<String> = ids.iter().map(|i| i.to_string()).collect();
        assert_eq!(text.len(), ids.len());
        // From another thread too, still after the ones before.
        let later = std::thread::spawn(CallId::new).join().unwrap();
        assert!(later.0 > ids[ids.len() - 1].0);
        assert_eq!(CallId::parse(&later.to_string()), Some(later));
    }

    #[test]
    fn md5_matches_the_seed_scheme() {
        // md5("B4n0ff13P13!_" "102821" "16045551234" "16045550000"), computed independently.
        let got = md5_hex(&["B4n0ff13P13!_", "102821", "16045551234", "16045550000"]);
        assert_eq!(got.len(), 32);
        assert_eq!(got, md5_hex(&["B4n0ff13P13!_1028211604555123416045550000"]));
        assert_eq!(md5_hex(&[""]), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn hex_digest_compare_ignores_case_of_received() {
        let e = md5_hex(&["x"]);
        assert!(hex_digest_eq(&e.to_uppercase(), &e));
        assert!(!hex_digest_eq(&e[..31], &e));
        assert!(!hex_digest_eq("", &e));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn call_ids_are_time_ordered() {
        let a = CallId::new();
        let b = CallId::new();
        assert!(a.to_string() < b.to_string());
        assert_eq!(CallId::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
