//! Guard rails: what stops a request before any leg is dialled. Every dialect
//! hands its call to [`crate::dialect::place`], which runs [`check`] inside the
//! database writer's transaction that records the call: the single writer makes
//! every limit exact under concurrent requests (two requests never both see the
//! last free slot), and limits counted from the calls table never leak a slot,
//! however a call ends.
//!
//! In order, a request is stopped when:
//! 1. its partner is disabled in the database;
//! 2. its native `Idempotency-Key` is being used by another request;
//! 3. a number of either side is not a valid number by libphonenumber's
//!    metadata (`[guard] check_numbers`);
//! 4. it presents a caller ID its partner may not (`allowed_caller_ids`:
//!    besides the parties' own numbers; a partner's `mask_a`/`mask_b` replace
//!    what a side is shown first, the real one kept in the record);
//! 5. a number of either side is on the blocklist (`c2cd block`), for that side;
//! 6. it repeats, within the partner's `dedupe_window`, a call of the same
//!    partner to the same A and B that has not failed: the earlier call is the
//!    answer (a *replay*; nothing is dialled again);
//! 7. its A number had `[guard] number_limits` calls already (across partners);
//! 8. it comes outside its partner's opening hours (`hours`, `holidays`, in
//!    the partner's `timezone` or A's); with `outside_hours = "defer"` it is
//!    taken for the next opening instead, and 9 to 11 are left to then;
//! 9. its partner has `max_calls` calls in progress;
//! 10. its B number has `max_calls_per_b` calls in progress (an agent's line);
//!     with a `b_queue` it is taken to wait for the line instead;
//! 11. no provider of its route has a channel free (`max_channels`);
//! 12. it would wait (8, 10) and its partner has `max_waiting` calls waiting;
//! 13. its partner has spent its `max_rate` (a token bucket with `burst`):
//!     a call taken to wait spends it too.
//!
//! A call that waited meets [`at_start`] when its time comes: the rules that
//! may have changed meanwhile (the partner, the blocklist, the hours) and the
//! slots it needs now (9 to 11).
//!
//! Each dialect answers a [`Stop`] with its own code (see the README's table);
//! the call's row keeps the rule (`calls.guard`) and, for a replay, the call it
//! repeats (`calls.replay_of`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::core::call::Side;
use crate::core::phone::E164;
use crate::core::CallId;
use crate::store::blocklist;
use crate::store::calls::LIVE;

/// The rule that stopped a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The partner is disabled in the database.
    Disabled,
    /// A number of this side is no valid number.
    Invalid(Side),
    /// A number of this side is on the blocklist.
    Blocked(Side),
    /// Outside the partner's opening hours.
    Closed,
    /// This side would be shown a caller ID the partner may not present.
    CallerId(Side),
    /// The `Idempotency-Key` is in use by a request not yet answered.
    KeyInUse,
    /// The `Idempotency-Key` came with another body before.
    KeyReused,
    /// The `Idempotency-Key` was answered before: the answer is replayed.
    KeyReplay,
    /// The same partner, A and B within the dedupe window: a replay.
    Duplicate,
    /// The A number had its share of calls (`[guard] number_limits`).
    NumberLimit,
    /// The partner's calls in progress reached `max_calls`.
    PartnerBusy,
    /// The B number's calls in progress reached `max_calls_per_b`.
    AgentBusy,
    /// No provider of the route has a channel free (`max_channels`).
    ProviderBusy,
    /// The partner's `max_rate` is spent.
    PartnerRate,
    /// Too many failed authentications from the source or for the partner
    /// (`crate::lockout`).
    AuthLockout,
}

impl Rule {
    /// As stored in `calls.guard`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Disabled => "disabled",
            Rule::Invalid(Side::A) => "invalid_a",
            Rule::Invalid(Side::B) => "invalid_b",
            Rule::Blocked(Side::A) => "blocked_a",
            Rule::Blocked(Side::B) => "blocked_b",
            Rule::Closed => "outside_hours",
            Rule::CallerId(Side::A) => "caller_id_a",
            Rule::CallerId(Side::B) => "caller_id_b",
            Rule::KeyInUse => "idempotency_key_in_use",
            Rule::KeyReused => "idempotency_key_reused",
            Rule::KeyReplay => "idempotency_replay",
            Rule::Duplicate => "duplicate",
            Rule::NumberLimit => "number_limit",
            Rule::PartnerBusy => "partner_busy",
            Rule::AgentBusy => "agent_busy",
            Rule::ProviderBusy => "provider_busy",
            Rule::PartnerRate => "partner_rate",
            Rule::AuthLockout => "auth_lockout",
        }
    }
}

/// Why a request was not placed, and what its answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub rule: Rule,
    /// One line for the record and the log: which limit, with its numbers.
    pub detail: String,
    /// A replay: the earlier call the partner is answered with.
    pub replay_of: Option<CallId>,
    /// A replay: the earlier call's state now.
    pub replay_state: Option<String>,
    /// When trying again may succeed (seconds), for `Retry-After`.
    pub retry_after: Option<u64>,
    /// Outside hours with `outside_hours = "defer"`: the call is taken and
    /// placed at this time (unix ms), the next opening. A busy B with a
    /// `b_queue`: now, and again until B is free or the queue time is up.
    pub deferred_to: Option<i64>,
    /// A busy B with a `b_queue`: when the call gives up waiting (unix ms).
    pub queue_until: Option<i64>,
}

impl Stop {
    pub fn new(rule: Rule, detail: String) -> Stop {
        Stop {
            rule,
            detail,
            replay_of: None,
            replay_state: None,
            retry_after: None,
            deferred_to: None,
            queue_until: None,
        }
    }

    /// A request refused by a lockout of its source or partner.
    pub fn locked(l: &crate::lockout::Locked) -> Stop {
        Stop {
            retry_after: Some(l.retry_after),
            ..Stop::new(Rule::AuthLockout, l.detail())
        }
    }

    pub fn disabled() -> Stop {
        Stop::new(
            Rule::Disabled,
            "the partner is not enabled for this dialect in the database".into(),
        )
    }
}

/// At most `count` calls in any `per`: `"3/15m"`, `"10/s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub count: u32,
    pub per: Duration,
}

impl Window {
    /// `COUNT/DURATION`, the duration as in the rest of the config (`15m`,
    /// `24h`), its `1` optional (`10/s`, `5/d`).
    pub fn parse(s: &str) -> Result<Window, String> {
        let bad =
            || format!("{s:?} is not COUNT/PERIOD (examples: \"10/s\", \"3/15m\", \"5/24h\")");
        let (count, per) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = per.trim();
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
            crate::config::parse_duration(per)
        } else {
            crate::config::parse_duration(&format!("1{per}"))
        }
        .ok_or_else(bad)?;
        if count == 0 || per.is_zero() {
            return Err(format!(
                "{s:?}: the count and the period must be more than 0"
            ));
        }
        Ok(Window { count, per })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, human(self.per))
    }
}

/// What [`check`] is asked about one request.
#[derive(Debug, Clone)]
pub struct Ask {
    pub partner_id: String,
    /// The A and B numbers as stored (the first participant of each side).
    pub a: Option<String>,
    pub b: Option<String>,
    /// Every participant's number, canonical E.164 or an extension's digits.
    pub numbers: Vec<(Side, String)>,
    /// Whether numbers must be valid by libphonenumber's metadata.
    pub check_numbers: bool,
    /// When the partner's calls may be placed; always when `None`.
    pub opening: Option<std::sync::Arc<crate::config::Opening>>,
    /// When the request came (unix ms).
    pub at: i64,
    pub dedupe_window: Duration,
    pub number_limits: Vec<Window>,
    /// 0: no limit.
    pub max_calls: u32,
    pub max_calls_per_b: u32,
    /// How long a call to a busy B waits for it; zero: refused.
    pub b_queue: Duration,
    /// Calls of the partner waiting (deferred or queued) at most.
    pub max_waiting: u32,
    pub max_rate: Option<Window>,
    pub burst: u32,
    /// The native API's `Idempotency-Key` and a digest of the body it came with.
    pub key: Option<(String, String)>,
    /// False for an XIP request with a bad `Auth`: it goes upstream to fail
    /// (BadIncomingAuth) and passes no guard, nor counts in any.
    pub trusted: bool,
    /// Why no provider of the route has a channel free, when none has.
    pub no_channel: Option<String>,
    /// A caller ID the call would present that the partner may not.
    pub caller_id: Option<(Side, String)>,
    /// What A and B are always shown, whatever the request says.
    pub masks: [Option<E164>; 2],
    /// Caller IDs the partner may present besides the parties' numbers
    /// (`+…`, a last `*`); empty: any.
    pub allowed_caller_ids: Vec<String>,
    /// Caller IDs of the box's own config (the Spokn access number).
    pub own_caller_ids: Vec<String>,
}

impl Ask {
    /// The limits `partner` is under, for a request at `at`.
    pub fn new(cfg: &crate::config::Config, partner: &crate::config::Partner, at: i64) -> Ask {
        let g = &partner.guard;
        Ask {
            partner_id: partner.id.clone(),
            a: None,
            b: None,
            numbers: Vec::new(),
            check_numbers: cfg.guard.check_numbers,
            opening: g.opening.clone(),
            at,
            dedupe_window: g.dedupe_window,
            number_limits: cfg.guard.number_limits.clone(),
            max_calls: g.max_calls,
            max_calls_per_b: g.max_calls_per_b,
            b_queue: g.b_queue,
            max_waiting: g.max_waiting,
            max_rate: g.max_rate,
            burst: g.burst,
            key: None,
            trusted: true,
            no_channel: None,
            caller_id: None,
            masks: [g.mask_a.clone(), g.mask_b.clone()],
            allowed_caller_ids: g.allowed_caller_ids.clone(),
            own_caller_ids: cfg
                .spokn
                .access_number
                .iter()
                .map(|n| n.as_str().to_string())
                .collect(),
        }
    }
}

/// `15m`, `24h`, `1s`: a period as the config writes it.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if d.subsec_millis() != 0 => format!("{}ms", d.as_millis()),
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Whole seconds until `at_ms` from `now`, at least 1.
fn secs_until(at_ms: i64, now: i64) -> u64 {
    u64::try_from((at_ms - now + 999) / 1000)
        .unwrap_or(0)
        .max(1)
}

/// The first rule that stops `ask`, if any. Runs in the writer's transaction,
/// before the call's row is inserted. The request's `Idempotency-Key` is
/// recorded here with the call `id` when it passes, is taken to wait, or is
/// stopped for a reason a retry would meet again (its answer is then the one
/// replayed).
pub fn check(c: &Connection, ask: &Ask, id: CallId, kept: &Kept) -> rusqlite::Result<Option<Stop>> {
    if !ask.trusted {
        return Ok(None);
    }
    let stop = first_stop(c, ask, kept)?;
    let lasting = stop.as_ref().is_none_or(|s| {
        s.deferred_to.is_some()
            || matches!(
                s.rule,
                Rule::Invalid(_) | Rule::CallerId(_) | Rule::Blocked(_) | Rule::Duplicate
            )
    });
    if let (Some((key, digest)), true) = (&ask.key, lasting) {
        remember_key(c, &ask.partner_id, key, digest, id, ask.at)?;
    }
    Ok(stop)
}

fn first_stop(c: &Connection, ask: &Ask, kept: &Kept) -> rusqlite::Result<Option<Stop>> {
    // First: a request whatever its body must not take over a live key.
    if let Some(s) = key_in_use(c, ask)? {
        return Ok(Some(s));
    }
    if let Some(s) = refused_for_good(c, ask, kept)? {
        return Ok(Some(s));
    }
    // A call taken to wait: deferred to the next opening, or queued for B.
    let mut later = None;
    if let Some(s) = ask
        .opening
        .as_ref()
        .and_then(|o| closed(o, ask.a.as_deref(), ask.at))
    {
        if s.deferred_to.is_none() {
            return Ok(Some(s));
        }
        later = Some(s);
    }
    if later.is_none() {
        match slots(c, ask)? {
            Some(s) if s.deferred_to.is_some() => later = Some(s),
            Some(s) => return Ok(Some(s)),
            None => {}
        }
    }
    if let (Some(_), true) = (&later, ask.max_waiting > 0) {
        let n: u32 = c
            .prepare_cached(
                "SELECT count(*) FROM calls WHERE partner_id = ?1 AND state = 'scheduled'",
            )?
            .query_row([&ask.partner_id], |r| r.get(0))?;
        if n >= ask.max_waiting {
            let mut s = Stop::new(
                Rule::PartnerBusy,
                format!(
                    "the partner has {n} calls waiting: max_waiting is {}",
                    ask.max_waiting
                ),
            );
            s.retry_after = Some(5);
            return Ok(Some(s));
        }
    }
    if let Some(w) = ask.max_rate {
        if let Err(wait) = kept.buckets.take(&ask.partner_id, w, ask.burst) {
            let mut s = Stop::new(
                Rule::PartnerRate,
                format!(
                    "the partner's max_rate {w} (burst {}) is spent",
                    ask.burst.max(1)
                ),
            );
            s.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            return Ok(Some(s));
        }
    }
    Ok(later)
}

/// Whether `ask`'s `Idempotency-Key` is held by another request.
fn key_in_use(c: &Connection, ask: &Ask) -> rusqlite::Result<Option<Stop>> {
    let Some((key, _)) = &ask.key else {
        return Ok(None);
    };
    let taken: Option<String> = c
        .prepare_cached(
            "SELECT call_id FROM idempotency_keys WHERE partner_id = ?1 AND key = ?2 AND created_at >= ?3",
        )?
        .query_row(
            params![ask.partner_id, key, ask.at - ms(KEY_LIFETIME)],
            |r| r.get(0),
        )
        .optional()?;
    Ok(taken.map(|call| {
        let mut s = Stop::new(
            Rule::KeyInUse,
            format!("Idempotency-Key {key:?} is in use by call {call}"),
        );
        s.retry_after = Some(1);
        s
    }))
}

/// The rules a request meets whenever it comes: its numbers, caller IDs, the
/// blocklist, a replay, its A number's share of calls.
fn refused_for_good(c: &Connection, ask: &Ask, kept: &Kept) -> rusqlite::Result<Option<Stop>> {
    if ask.check_numbers {
        if let Some(s) = invalid(&ask.numbers) {
            return Ok(Some(s));
        }
    }
    if let Some((side, cid)) = &ask.caller_id {
        let detail = format!(
            "{} would be shown {cid}, which the partner may not present (allowed_caller_ids)",
            side.as_str().to_uppercase()
        );
        return Ok(Some(Stop::new(Rule::CallerId(*side), detail)));
    }
    if let Some(s) = blocked(c, ask, kept)? {
        return Ok(Some(s));
    }
    if let (Some(a), Some(b)) = (&ask.a, &ask.b) {
        if let Some(s) = duplicate(c, ask, a, b)? {
            return Ok(Some(s));
        }
    }
    if let Some(a) = &ask.a {
        for w in &ask.number_limits {
            // Counting stops at the limit: a number called often costs no more.
            let (n, oldest): (u32, Option<i64>) = c
                .prepare_cached(
                    "SELECT count(*), min(created_at) FROM (
                       SELECT created_at FROM calls
                       WHERE a_number = ?1 AND created_at >= ?2 AND refused = 0
                         AND auth_ok IS NOT 0
                       ORDER BY created_at DESC LIMIT ?3)",
                )?
                .query_row(params![a, ask.at - ms(w.per), w.count], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            if n >= w.count {
                let mut s = Stop::new(
                    Rule::NumberLimit,
                    format!(
                        "{a} had {n} calls in the last {}: the limit is {w}",
                        human(w.per)
                    ),
                );
                // A concurrent request can be older than the calls it counts
                // (its time is taken before the writer orders them): never
                // more than the window itself.
                s.retry_after =
                    oldest.map(|o| secs_until(o + ms(w.per), ask.at).min(w.per.as_secs().max(1)));
                return Ok(Some(s));
            }
        }
    }
    Ok(None)
}

/// The first number of `ask` on the blocklist for its side; the entry's hit
/// is counted.
fn blocked(c: &Connection, ask: &Ask, kept: &Kept) -> rusqlite::Result<Option<Stop>> {
    let shapes = kept.shapes.get(c)?;
    for (side, n) in &ask.numbers {
        if let Some(hit) = blocklist::check_shaped(c, n, *side, ask.at, shapes)? {
            blocklist::count_hit(c, &hit, ask.at)?;
            let detail = format!("{n} is on the blocklist: {hit}");
            return Ok(Some(Stop::new(Rule::Blocked(*side), detail)));
        }
    }
    Ok(None)
}

/// Whether the call would have the slots it needs now: its partner's, its
/// B's and a provider's channel. A busy B with a `b_queue` is a stop with
/// `deferred_to`: the call waits for the line.
fn slots(c: &Connection, ask: &Ask) -> rusqlite::Result<Option<Stop>> {
    if ask.max_calls > 0 {
        let sql = format!(
            "SELECT count(*) FROM calls WHERE partner_id = ?1 AND {LIVE} AND auth_ok IS NOT 0"
        );
        let n: u32 = c
            .prepare_cached(&sql)?
            .query_row([&ask.partner_id], |r| r.get(0))?;
        if n >= ask.max_calls {
            let mut s = Stop::new(
                Rule::PartnerBusy,
                format!(
                    "the partner has {n} calls in progress: max_calls is {}",
                    ask.max_calls
                ),
            );
            s.retry_after = Some(5);
            return Ok(Some(s));
        }
    }
    if let (Some(b), true) = (&ask.b, ask.max_calls_per_b > 0) {
        let n = calls_to(c, b)?;
        if n >= ask.max_calls_per_b {
            let mut s = Stop::new(
                Rule::AgentBusy,
                format!(
                    "{b} is in {n} calls: max_calls_per_b is {}",
                    ask.max_calls_per_b
                ),
            );
            s.retry_after = Some(5);
            if !ask.b_queue.is_zero() {
                s.detail = format!("{}; queued for up to {}", s.detail, human(ask.b_queue));
                s.deferred_to = Some(ask.at);
                s.queue_until = Some(ask.at + ms(ask.b_queue));
            }
            return Ok(Some(s));
        }
    }
    if let Some(why) = &ask.no_channel {
        let mut s = Stop::new(Rule::ProviderBusy, why.clone());
        s.retry_after = Some(5);
        return Ok(Some(s));
    }
    Ok(None)
}

/// What a call that waited (deferred or queued) meets when its time comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtStart {
    /// It may be placed now.
    Go,
    /// A slot it needs is taken: it waits on (until it gives up).
    Wait(Stop),
    /// Its partner is closed now (a holiday added since, say) and defers:
    /// it waits for the next opening, at this time (unix ms).
    Later(Stop, i64),
    /// It must not be placed at all.
    Refused(Stop),
}

/// The guard rails a waiting call meets at its start, in the writer's
/// transaction that starts it: what may have changed since it came (its
/// partner enabled for `dialect`, the blocklist) refuses it, hours closed
/// again defer it to the next opening (or refuse it, if the partner refuses
/// calls outside hours now), and a slot it needs (its partner's, its B's, a
/// channel) makes it wait. Its number limits and rate were spent when it came.
pub fn at_start(
    c: &Connection,
    ask: &Ask,
    dialect: &str,
    kept: &Kept,
) -> rusqlite::Result<AtStart> {
    if !crate::store::partners::is_enabled_for(c, &ask.partner_id, dialect)? {
        return Ok(AtStart::Refused(Stop::disabled()));
    }
    if let Some(s) = blocked(c, ask, kept)? {
        return Ok(AtStart::Refused(s));
    }
    if let Some(s) = ask
        .opening
        .as_ref()
        .and_then(|o| closed(o, ask.a.as_deref(), ask.at))
    {
        return Ok(match s.deferred_to {
            Some(at) => AtStart::Later(s, at),
            None => AtStart::Refused(s),
        });
    }
    let wait = |mut s: Stop| {
        s.deferred_to = None;
        s.queue_until = None;
        AtStart::Wait(s)
    };
    Ok(slots(c, ask)?.map_or(AtStart::Go, wait))
}

/// The first number of `numbers` that libphonenumber's metadata says no
/// number can be. Extensions (no `+`) are the box's own and not checked.
fn invalid(numbers: &[(Side, String)]) -> Option<Stop> {
    numbers.iter().find_map(|(side, n)| {
        let e = E164::from_canonical(n).ok()?;
        let why = crate::core::phone::check_valid(&e).err()?;
        Some(Stop::new(Rule::Invalid(*side), format!("{n} {why}")))
    })
}

/// `o` with the partner's masks applied: what a masked side is shown, on the
/// plan and in the XIP fields. `None` when it masks neither side.
pub fn mask(
    o: &crate::provider::Originate,
    masks: &[Option<E164>; 2],
) -> Option<crate::provider::Originate> {
    if masks.iter().all(Option::is_none) {
        return None;
    }
    let mut plan = (*o.plan).clone();
    let mut m = o.clone();
    for (i, side) in [&mut plan.a, &mut plan.b].into_iter().enumerate() {
        let Some(n) = &masks[i] else { continue };
        side.caller_id = Some(n.as_str().to_string());
        for p in &mut side.participants {
            p.caller_id = None;
        }
        // XIP shows the last 10 digits, as it does the parties' numbers.
        let xip = crate::core::phone::last_chars(n.digits(), 10).to_string();
        match i {
            0 => m.requestor_cid = xip,
            _ => m.destination_cid = xip,
        }
    }
    m.plan = std::sync::Arc::new(plan);
    Some(m)
}

/// The first caller ID `plan` shows a side that the partner may not present:
/// not a number of the call's own parties (in full, or its last digits as XIP
/// shows them), nor in `ask`'s allowed list or the box's own. Masked sides
/// are the operator's choice and not checked.
pub fn unlisted_caller_id(plan: &crate::core::plan::CallPlan, ask: &Ask) -> Option<(Side, String)> {
    if ask.allowed_caller_ids.is_empty() {
        return None;
    }
    let digits = |s: &str| s.trim_start_matches('+').to_string();
    let parties: Vec<String> = (plan.a.participants.iter())
        .chain(&plan.b.participants)
        .map(|p| digits(p.number.as_str()))
        .collect();
    // A caller ID with `+` is a party's in full; XIP shows a party's last
    // ten digits, without `+`.
    let party = |cid: &str| {
        let c = digits(cid);
        let tail = !cid.starts_with('+') && c.len() >= 7;
        parties.iter().any(|p| *p == c || (tail && p.ends_with(&c)))
    };
    let allowed = |cid: &str| {
        ask.own_caller_ids.iter().any(|o| o == cid)
            || ask
                .allowed_caller_ids
                .iter()
                .any(|pat| match pat.strip_suffix('*') {
                    Some(prefix) => cid.starts_with(prefix),
                    None => pat == cid,
                })
    };
    [(Side::A, &plan.a), (Side::B, &plan.b)]
        .into_iter()
        .filter(|(side, _)| ask.masks[usize::from(*side == Side::B)].is_none())
        .flat_map(|(side, s)| {
            s.participants
                .iter()
                .map(move |p| (side, s.caller_id_for(p)))
        })
        .find_map(|(side, cid)| {
            let cid = cid?;
            (!party(cid) && !allowed(cid)).then(|| (side, cid.to_string()))
        })
}

/// Why a call of a partner with opening hours `o` to A number `a` may not be
/// placed at `at` (unix ms), if it may not: closed, and when it opens next.
fn closed(o: &crate::config::Opening, a: Option<&str>, at: i64) -> Option<Stop> {
    let now = jiff::Timestamp::from_millisecond(at).ok()?;
    let a_zone = a
        .filter(|_| o.called_zone)
        .and_then(|n| E164::from_canonical(n).ok())
        .and_then(|n| crate::core::phone::check_valid(&n).ok().flatten())
        .and_then(|region| crate::core::hours::zone_of_region(region.as_str()));
    let (zone, whose) = match &a_zone {
        Some(z) => (z, "A's"),
        None => (&o.zone, "the partner's"),
    };
    if o.hours.open_at(now, zone) {
        return None;
    }
    let name = zone.iana_name().unwrap_or("local");
    let next = o.hours.next_opening(now, zone);
    let next_ms = next.map(|t| t.as_millisecond());
    let (detail, retry_after) = match next {
        Some(next) => (
            format!(
                "outside the partner's hours in {whose} time ({name}): opens {}",
                next.to_zoned(zone.clone())
            ),
            u64::try_from((next.as_millisecond() - at + 999) / 1000).ok(),
        ),
        None => (
            format!("outside the partner's hours in {whose} time ({name}): never open"),
            None,
        ),
    };
    let mut s = Stop::new(Rule::Closed, detail);
    s.retry_after = retry_after;
    if o.defer {
        s.deferred_to = next_ms;
    }
    Some(s)
}

/// The calls in progress to B number `b`, whoever placed them.
pub fn calls_to(c: &Connection, b: &str) -> rusqlite::Result<u32> {
    let sql =
        format!("SELECT count(*) FROM calls WHERE b_number = ?1 AND {LIVE} AND auth_ok IS NOT 0");
    c.prepare_cached(&sql)?.query_row([b], |r| r.get(0))
}

/// The earlier call `ask` repeats, as a replay, if any.
fn duplicate(c: &Connection, ask: &Ask, a: &str, b: &str) -> rusqlite::Result<Option<Stop>> {
    if ask.dedupe_window.is_zero() {
        return Ok(None);
    }
    let earlier: Option<(String, String)> = c
        .prepare_cached(
            "SELECT id, state FROM calls
             WHERE a_number = ?1 AND b_number = ?2 AND created_at >= ?3 AND refused = 0
               AND partner_id = ?4 AND state NOT IN ('failed', 'lost') AND auth_ok IS NOT 0
             ORDER BY created_at DESC LIMIT 1",
        )?
        .query_row(
            params![a, b, ask.at - ms(ask.dedupe_window), ask.partner_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(earlier.and_then(|(id, state)| {
        let of = CallId::parse(&id)?;
        let mut s = Stop::new(
            Rule::Duplicate,
            format!(
                "a replay of call {id} ({state}): the same A and B within dedupe_window {}",
                human(ask.dedupe_window)
            ),
        );
        s.replay_of = Some(of);
        s.replay_state = Some(state);
        Some(s)
    }))
}

/// How long an `Idempotency-Key` is remembered.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Keys forgotten per request at most: the table is pruned as it grows.
const PRUNE_KEYS: i64 = 16;

fn remember_key(
    c: &Connection,
    partner: &str,
    key: &str,
    digest: &str,
    id: CallId,
    at: i64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "DELETE FROM idempotency_keys WHERE (partner_id, key) IN
           (SELECT partner_id, key FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)",
    )?
    .execute(params![at - ms(KEY_LIFETIME), PRUNE_KEYS])?;
    c.prepare_cached(
        "INSERT OR REPLACE INTO idempotency_keys (partner_id, key, digest, call_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![partner, key, digest, id.to_string(), at])?;
    Ok(())
}

/// What a key was first used with: the body's digest and the call it placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub digest: String,
    pub call_id: String,
}

/// The live use of `key` by `partner` at `now`, if any.
pub fn key_use(
    c: &Connection,
    partner: &str,
    key: &str,
    now: i64,
) -> rusqlite::Result<Option<KeyUse>> {
    c.prepare_cached(
        "SELECT digest, call_id FROM idempotency_keys
         WHERE partner_id = ?1 AND key = ?2 AND created_at >= ?3",
    )?
    .query_row(params![partner, key, now - ms(KEY_LIFETIME)], |r| {
        Ok(KeyUse {
            digest: r.get(0)?,
            call_id: r.get(1)?,
        })
    })
    .optional()
}

/// What call `id` was answered (HTTP status and body), once it was.
pub fn answer_of(c: &Connection, id: &str) -> rusqlite::Result<Option<(u16, Vec<u8>)>> {
    let row: Option<(Option<u16>, Option<Vec<u8>>)> = c
        .prepare_cached("SELECT result_status, result_body FROM calls WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((Some(status), body)) => Some((status, body.unwrap_or_default())),
        _ => None,
    })
}

/// What the guard rails keep in memory between requests.
#[derive(Default)]
pub struct Kept {
    pub buckets: Buckets,
    /// The blocklist's shapes, for the writer's connection.
    pub shapes: blocklist::ShapesCache,
}

/// Token buckets of the partners' `max_rate`, in memory: after a restart every
/// partner starts with a full bucket. A token is taken in the writer's
/// transaction and not given back if the write is run again (when a write of
/// its batch failed, see `store`): the rate then errs on the strict side.
#[derive(Default)]
pub struct Buckets {
    by_partner: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Buckets {
    /// Takes a token from `partner`'s bucket, which holds `burst` (at least 1)
    /// and fills at `w`; how long until one is there when none is.
    pub fn take(&self, partner: &str, w: Window, burst: u32) -> Result<(), Duration> {
        self.take_at(partner, w, burst, Instant::now())
    }

    fn take_at(&self, partner: &str, w: Window, burst: u32, now: Instant) -> Result<(), Duration> {
        let cap = f64::from(burst.max(1));
        let per_sec = f64::from(w.count) / w.per.as_secs_f64();
        let Ok(mut all) = self.by_partner.lock() else {
            return Ok(());
        };
        let b = all.entry(partner.to_string()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::try_from_secs_f64((1.0 - b.tokens) / per_sec).unwrap_or(w.per))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::calls;

    #[test]
    fn windows_parse_with_or_without_a_count_of_periods() {
        let w = |c, s| Window {
            count: c,
            per: Duration::from_secs(s),
        };
        assert_eq!(Window::parse("10/s"), Ok(w(10, 1)));
        assert_eq!(Window::parse("3/15m"), Ok(w(3, 900)));
        assert_eq!(Window::parse(" 5 / 24h "), Ok(w(5, 86400)));
        for bad in ["", "5", "x/s", "5/", "5/fortnight", "0/s", "-1/s", "5/0s"] {
            assert!(Window::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(w(3, 900).to_string(), "3/15m");
    }

    #[test]
    fn a_bucket_lets_its_burst_through_then_its_rate() {
        let b = Buckets::default();
        let w = Window::parse("2/s").unwrap();
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(b.take_at("p", w, 4, t0), Ok(()));
        }
        let wait = b.take_at("p", w, 4, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(b.take_at("q", w, 4, t0), Ok(()), "buckets are per partner");
        assert!(b
            .take_at("p", w, 4, t0 + Duration::from_millis(499))
            .is_err());
        assert_eq!(
            b.take_at("p", w, 4, t0 + Duration::from_millis(1000)),
            Ok(())
        );
        // Filling stops at the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..4 {
            assert_eq!(b.take_at("p", w, 4, later), Ok(()));
        }
        assert!(b.take_at("p", w, 4, later).is_err());
    }

    fn db() -> Connection {
        crate::store::memory()
    }

    fn call(c: &Connection, partner: &str, a: &str, b: &str, at: i64, state: &str) -> CallId {
        let id = CallId::new();
        let mut rec =
            calls::NewCall::received("native", "127.0.0.1:1".parse().unwrap(), "POST", "");
        rec.id = id;
        rec.at = at;
        rec.partner_id = Some(partner.into());
        rec.a_number = Some(a.into());
        rec.b_number = Some(b.into());
        calls::insert(c, &rec, &[], None).unwrap();
        // A request refused on arrival is marked so with its row.
        c.execute(
            "UPDATE calls SET state = ?1, refused = (?1 = 'rejected') WHERE id = ?2",
            params![state, id.to_string()],
        )
        .unwrap();
        id
    }

    fn ask(a: &str, b: &str, at: i64) -> Ask {
        Ask {
            partner_id: "p".into(),
            a: Some(a.into()),
            b: Some(b.into()),
            numbers: vec![(Side::A, a.into()), (Side::B, b.into())],
            check_numbers: false,
            opening: None,
            at,
            dedupe_window: Duration::from_secs(30),
            number_limits: vec![],
            max_calls: 0,
            max_calls_per_b: 0,
            b_queue: Duration::ZERO,
            max_waiting: 1000,
            max_rate: None,
            burst: 0,
            key: None,
            trusted: true,
            no_channel: None,
            caller_id: None,
            masks: [None, None],
            allowed_caller_ids: vec![],
            own_caller_ids: vec![],
        }
    }

    fn rule(c: &Connection, a: &Ask) -> Option<Rule> {
        check(c, a, CallId::new(), &Kept::default())
            .unwrap()
            .map(|s| s.rule)
    }

    #[test]
    fn a_repeat_within_the_window_replays_the_earlier_call() {
        let c = db();
        let t = 1_000_000_000;
        let first = call(&c, "p", "+1", "+2", t, "bridged");
        let s = check(
            &c,
            &ask("+1", "+2", t + 29_000),
            CallId::new(),
            &Kept::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!((s.rule, s.replay_of), (Rule::Duplicate, Some(first)));
        assert!(s.detail.contains(&first.to_string()), "{}", s.detail);
        // Past the window, another partner, other numbers, or the window off.
        assert_eq!(rule(&c, &ask("+1", "+2", t + 31_000)), None);
        assert_eq!(
            rule(
                &c,
                &Ask {
                    partner_id: "q".into(),
                    ..ask("+1", "+2", t + 1)
                }
            ),
            None
        );
        assert_eq!(rule(&c, &ask("+2", "+1", t + 1)), None);
        let off = Ask {
            dedupe_window: Duration::ZERO,
            ..ask("+1", "+2", t + 1)
        };
        assert_eq!(rule(&c, &off), None);
    }

    #[test]
    fn failed_and_refused_calls_are_not_replayed() {
        let c = db();
        let t = 1_000_000_000;
        call(&c, "p", "+1", "+2", t, "failed");
        call(&c, "p", "+1", "+2", t, "rejected");
        call(&c, "p", "+1", "+2", t, "lost");
        assert_eq!(rule(&c, &ask("+1", "+2", t + 1)), None);
    }

    #[test]
    fn number_limits_count_every_partners_calls_to_the_a_number() {
        let c = db();
        let t = 1_000_000_000;
        let limits = vec![
            Window::parse("3/15m").unwrap(),
            Window::parse("5/24h").unwrap(),
        ];
        let a = |at| Ask {
            number_limits: limits.clone(),
            dedupe_window: Duration::ZERO,
            ..ask("+1", "+9", at)
        };
        call(&c, "p", "+1", "+2", t, "completed");
        call(&c, "q", "+1", "+3", t + 60_000, "failed");
        call(&c, "r", "+1", "+4", t + 120_000, "bridged");
        call(&c, "p", "+1", "+4", t + 120_000, "rejected");
        let s = check(&c, &a(t + 180_000), CallId::new(), &Kept::default())
            .unwrap()
            .unwrap();
        assert_eq!(s.rule, Rule::NumberLimit);
        assert!(s.detail.contains("3/15m"), "{}", s.detail);
        // The first call leaves the 15 minutes 720 s later.
        assert_eq!(s.retry_after, Some(720));
        assert_eq!(rule(&c, &a(t + 900_001)), None);
        call(&c, "p", "+1", "+2", t + 1_000_000, "completed");
        call(&c, "p", "+1", "+2", t + 1_000_000, "completed");
        let s = check(&c, &a(t + 2_000_000), CallId::new(), &Kept::default())
            .unwrap()
            .unwrap();
        assert!(s.detail.contains("5/24h"), "{}", s.detail);
    }

    #[test]
    fn calls_in_progress_hold_slots_and_ended_ones_free_them() {
        let c = db();
        let t = 1_000_000_000;
        let live = call(&c, "p", "+1", "+2", t, "dialing_b");
        call(&c, "p", "+3", "+4", t, "completed");
        call(&c, "q", "+5", "+2", t, "originating");
        let partner = |n| Ask {
            max_calls: n,
            ..ask("+7", "+8", t)
        };
        assert_eq!(rule(&c, &partner(1)), Some(Rule::PartnerBusy));
        assert_eq!(rule(&c, &partner(2)), None);
        let agent = |n| Ask {
            max_calls_per_b: n,
            ..ask("+7", "+2", t)
        };
        assert_eq!(
            rule(&c, &agent(2)),
            Some(Rule::AgentBusy),
            "every partner's calls to B count"
        );
        assert_eq!(rule(&c, &agent(3)), None);
        c.execute(
            "UPDATE calls SET state = 'failed' WHERE id = ?1",
            [live.to_string()],
        )
        .unwrap();
        assert_eq!(rule(&c, &partner(1)), None);
    }

    fn opening(hours: &str, zone: &str, called_zone: bool) -> crate::config::Opening {
        crate::config::Opening {
            hours: crate::core::hours::Hours::parse(&[hours.to_string()], &[]).unwrap(),
            zone: jiff::tz::TimeZone::get(zone).unwrap(),
            called_zone,
            defer: false,
        }
    }

    fn ms_at(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn closed_hours_refuse_until_the_next_opening() {
        let o = opening("mon-fri 09:00-17:00", "America/New_York", false);
        // Friday 2026-11-20 17:30 in New York (22:30 UTC): opens Monday 09:00.
        let s = closed(&o, Some("+12125550123"), ms_at("2026-11-20T22:30:00Z")).unwrap();
        assert_eq!(s.rule, Rule::Closed);
        assert!(s.detail.contains("America/New_York"), "{}", s.detail);
        assert!(
            s.detail.contains("2026-11-23T09:00:00-05:00"),
            "{}",
            s.detail
        );
        assert_eq!(s.retry_after, Some((2 * 24 + 15) * 3600 + 30 * 60));
        assert_eq!(closed(&o, None, ms_at("2026-11-20T21:59:00Z")), None);
        let never = opening("sun closed", "UTC", false);
        let s = closed(&never, None, ms_at("2026-11-20T12:00:00Z")).unwrap();
        assert!(s.detail.ends_with("never open"), "{}", s.detail);
        assert_eq!(s.retry_after, None);
    }

    #[test]
    fn hours_are_read_in_a_s_zone_where_its_country_has_one() {
        // 10:00 in Tokyo is 01:00 in London.
        let at = ms_at("2026-11-20T01:00:00Z");
        let o = opening("mon-fri 09:00-17:00", "Asia/Tokyo", true);
        let s = closed(&o, Some("+442071234567"), at).unwrap();
        assert!(
            s.detail.contains("A's time (Europe/London)"),
            "{}",
            s.detail
        );
        // A US number has several zones: the partner's zone rules.
        assert_eq!(closed(&o, Some("+12125550123"), at), None);
        let partners = opening("mon-fri 09:00-17:00", "Asia/Tokyo", false);
        assert_eq!(closed(&partners, Some("+442071234567"), at), None);
    }

    fn plan(a_cid: Option<&str>, b_cid: Option<&str>) -> crate::core::plan::CallPlan {
        use crate::core::phone::Address;
        use crate::core::plan::{CallPlan, SidePlan};
        let n = |s: &str| Address::parse(s).unwrap();
        CallPlan {
            a: SidePlan::single(n("+16045551234"), a_cid.map(str::to_string)),
            b: SidePlan::single(n("+14155550123"), b_cid.map(str::to_string)),
            time_limit: Duration::from_secs(60),
            record: false,
        }
    }

    #[test]
    fn caller_ids_are_the_parties_the_list_or_the_boxs_own() {
        let listed = Ask {
            allowed_caller_ids: vec!["+1800555*".into(), "+13125550000".into()],
            own_caller_ids: vec!["+18885550100".into()],
            ..ask("+1", "+2", 0)
        };
        let check = |a: Option<&str>, b: Option<&str>| unlisted_caller_id(&plan(a, b), &listed);
        assert_eq!(
            check(Some("+14155550123"), Some("6045551234")),
            None,
            "the parties, in full or XIP's last 10"
        );
        assert_eq!(check(Some("+18005550199"), Some("+13125550000")), None);
        assert_eq!(check(Some("+18885550100"), None), None, "the access number");
        assert_eq!(
            check(Some("+4155550123"), None),
            Some((Side::A, "+4155550123".into())),
            "the tail of a party's number with + is another number"
        );
        assert_eq!(
            check(Some("+13125550001"), None),
            Some((Side::A, "+13125550001".into()))
        );
        assert_eq!(
            check(None, Some("+1800556")),
            Some((Side::B, "+1800556".into()))
        );
        let any = Ask {
            allowed_caller_ids: vec![],
            ..listed.clone()
        };
        assert_eq!(
            unlisted_caller_id(&plan(Some("+13125550001"), None), &any),
            None
        );
        let masked = Ask {
            masks: [None, Some(E164::from_canonical("+13125559999").unwrap())],
            ..listed
        };
        assert_eq!(
            unlisted_caller_id(&plan(None, Some("+13125550001")), &masked),
            None,
            "masks are not checked"
        );
    }

    #[test]
    fn a_mask_replaces_what_its_side_is_shown_everywhere() {
        let p = std::sync::Arc::new(plan(Some("+14155550123"), Some("+16045551234")));
        let o = crate::provider::Originate {
            call_id: CallId::new(),
            requestor_phone: "16045551234".into(),
            requestor_cid: "4155550123".into(),
            destination_phone: "14155550123".into(),
            destination_cid: "6045551234".into(),
            prompt_set: "XIP1".into(),
            time_limit: 60,
            partner_id: "p".into(),
            source: "XIP1".into(),
            incoming_auth_ok: true,
            plan: p,
        };
        assert!(mask(&o, &[None, None]).is_none());
        let m = mask(
            &o,
            &[None, Some(E164::from_canonical("+18005550100").unwrap())],
        )
        .unwrap();
        assert_eq!(m.destination_cid, "8005550100");
        assert_eq!(m.requestor_cid, "4155550123");
        assert_eq!(m.plan.b.caller_id.as_deref(), Some("+18005550100"));
        assert_eq!(m.plan.a.caller_id.as_deref(), Some("+14155550123"));
    }

    #[test]
    fn an_idempotency_key_is_taken_by_the_first_request_only() {
        let c = db();
        let t = 1_000_000_000;
        let keyed = |at| Ask {
            key: Some(("k1".into(), "d1".into())),
            ..ask("+1", "+2", at)
        };
        let first = CallId::new();
        assert_eq!(check(&c, &keyed(t), first, &Kept::default()).unwrap(), None);
        let used = key_use(&c, "p", "k1", t + 1).unwrap().unwrap();
        assert_eq!(
            used,
            KeyUse {
                digest: "d1".into(),
                call_id: first.to_string()
            }
        );
        assert_eq!(rule(&c, &keyed(t + 1)), Some(Rule::KeyInUse));
        assert_eq!(
            key_use(&c, "q", "k1", t + 1).unwrap(),
            None,
            "keys are per partner"
        );
        // A day later the key is free again, and pruned as others come.
        let later = t + ms(KEY_LIFETIME) + 1;
        assert_eq!(key_use(&c, "p", "k1", later).unwrap(), None);
        let other = Ask {
            key: Some(("k2".into(), "d".into())),
            ..ask("+1", "+2", later)
        };
        assert_eq!(
            check(&c, &other, CallId::new(), &Kept::default()).unwrap(),
            None
        );
        let n: i64 = c
            .query_row("SELECT count(*) FROM idempotency_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
