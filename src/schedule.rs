//! Calls that wait. A request outside its partner's hours, from a partner with
//! `outside_hours = "defer"`, is taken and kept as `scheduled` with its start
//! (`calls.start_at`: the next opening); a call to a busy B from a partner with
//! a `b_queue` is kept the same way, due at once. The database is the queue,
//! so waiting calls survive restarts; one whose start passed while c2cd was
//! down is placed as soon as it is back.
//!
//! Each look takes the due calls and starts them in one write, through the
//! guard rails' [`guard::at_start`]: a partner disabled meanwhile, a number
//! blocked meanwhile or hours closed again fail the call; a slot it needs (its
//! partner's `max_calls`, its B's line, a provider's channel) taken makes it
//! look again in [`QUEUE_POLL`], until it gives up (`b_queue` for a queued
//! call, [`START_WAIT`] past its start for a deferred one). One write decides
//! the whole look, so two waiting calls never take one slot. Calls started are
//! placed concurrently, [`PLACING`] at most, each through its partner's route
//! as the config has it then.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::App;
use crate::core::call::{CallState, Event, Side};
use crate::core::now_ms;
use crate::core::plan::CallPlan;
use crate::dialect::{ask_route, channels_busy, deadline, follow_up, usable};
use crate::guard::{self, AtStart};
use crate::provider::health::Channel;
use crate::provider::{Events, Originate, Routed};
use crate::store::calls::{self, Due};

/// Calls looked at per look at most.
const BATCH: usize = 64;
/// Calls being placed (their provider asked) at once at most.
pub const PLACING: usize = 32;
/// The longest sleep between two looks (a new deferral wakes it sooner).
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The shortest: a call that cannot be moved on does not spin the loop.
const MIN_SLEEP: Duration = Duration::from_millis(200);
/// How often a waiting call whose slot is taken looks again.
pub const QUEUE_POLL: Duration = Duration::from_secs(1);
/// How long past its start a deferred call waits for a free slot.
pub const START_WAIT: Duration = Duration::from_secs(3600);

/// A due call made ready to start: what it is placed with, or why it cannot be.
struct Ready {
    id: crate::core::CallId,
    dialect: String,
    until: Option<i64>,
    /// The call and its route, or why it cannot be placed at all.
    placing: Result<Placing, String>,
}

struct Placing {
    o: Originate,
    route: Vec<Routed>,
    /// The provider of the route asked first, and its channel when one was free.
    first: usize,
    channel: Option<Channel>,
    ask: guard::Ask,
}

/// What became of a due call when it was looked at.
enum Claim {
    Started,
    /// A slot it needs is taken: it waits on.
    Waits,
    /// Failed, or taken meanwhile (hung up).
    Gone,
}

pub async fn run(app: Arc<App>) {
    let placing = Arc::new(Semaphore::new(PLACING));
    loop {
        // Only as many calls are looked at as can be placed now.
        match placing.acquire().await {
            Ok(permit) => drop(permit),
            Err(_) => return,
        }
        let free = placing.available_permits().min(BATCH);
        let now = now_ms();
        match app.store.read(move |c| calls::due(c, now, free)).await {
            Ok(due) if !due.is_empty() => look(&app, due, &placing).await,
            Ok(_) => {}
            Err(e) => log::error!("looking for deferred calls: {e}"),
        }
        let next = app.store.read(calls::next_due).await.ok().flatten();
        let wait = next.map_or(MAX_SLEEP, |at| {
            Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
        });
        let wait = wait.clamp(MIN_SLEEP, MAX_SLEEP);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = app.scheduled.notified() => {}
        }
    }
}

/// Starts the calls of `due` that may start, in one write, and places them.
async fn look(app: &Arc<App>, due: Vec<Due>, placing: &Arc<Semaphore>) {
    let ready: Vec<Ready> = due.into_iter().map(|d| prepare(app, d)).collect();
    let grace = app.runtime().config.calls.grace;
    let kept = app.guard.clone();
    // Lent to the write (which may run twice), taken back after it.
    let lent = Arc::new(Mutex::new(ready));
    let inside = lent.clone();
    let claims = app
        .store
        .write(move |c| {
            let ready = inside.lock().unwrap_or_else(PoisonError::into_inner);
            (ready.iter())
                .map(|r| claim(c, r, grace, &kept))
                .collect::<rusqlite::Result<Vec<Claim>>>()
        })
        .await;
    let claims = match claims {
        Ok(c) => c,
        Err(e) => {
            log::error!("the deferred calls could not be started: {e}");
            return;
        }
    };
    let ready = std::mem::take(&mut *lent.lock().unwrap_or_else(PoisonError::into_inner));
    for (r, claim) in ready.into_iter().zip(claims) {
        let (Claim::Started, Ok(p)) = (claim, r.placing) else {
            continue;
        };
        // The look took no more calls than there are permits.
        let Ok(permit) = placing.clone().try_acquire_owned() else {
            log::error!("call {}: no placing slot for a started call", r.id);
            continue;
        };
        log::info!("call {}: deferred call started", r.id);
        tokio::spawn(place(app.clone(), r.id, p, permit));
    }
}

/// What `d` is placed with now: its partner as configured now, its request
/// read back, its partner's route, a channel of the first provider with one.
fn prepare(app: &App, d: Due) -> Ready {
    let rt = app.runtime();
    let now = now_ms();
    let partner = (rt.config.partners.iter()).find(|p| p.id == d.partner_id && p.enabled);
    let plan = serde_json::from_value::<CallPlan>(d.plan).ok();
    let o = plan.and_then(|p| Originate::from_fields(d.id, &d.originate, Arc::new(p)));
    let placing = match (partner, o) {
        (None, _) => Err("its partner is no longer enabled".to_string()),
        (_, None) => Err("its request could not be read back".to_string()),
        (Some(p), Some(o)) => usable(&rt.providers.route(&p.route), &o.plan).map(|route| {
            let reserved = (route.iter().enumerate())
                .find_map(|(i, r)| Channel::take(&r.health).map(|ch| (i, ch)));
            let first = reserved.as_ref().map_or(0, |(i, _)| *i);
            let channel = reserved.map(|(_, ch)| ch);
            let mut ask = guard::Ask::new(&rt.config, p, now);
            ask.a = d.a_number;
            ask.b = d.b_number;
            ask.numbers = (o.plan.a.participants.iter().map(|p| (Side::A, p)))
                .chain(o.plan.b.participants.iter().map(|p| (Side::B, p)))
                .map(|(side, p)| (side, p.number.as_str().to_string()))
                .collect();
            ask.no_channel = (!route.is_empty() && channel.is_none()).then(|| {
                route
                    .iter()
                    .map(channels_busy)
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            Placing {
                o,
                route,
                first,
                channel,
                ask,
            }
        }),
    };
    Ready {
        id: d.id,
        dialect: d.dialect,
        until: d.queue_until,
        placing,
    }
}

/// Starts, postpones or fails one due call, in the look's write.
fn claim(
    c: &rusqlite::Connection,
    r: &Ready,
    grace: Duration,
    kept: &guard::Kept,
) -> rusqlite::Result<Claim> {
    let at = now_ms();
    let fail = |why: String| -> rusqlite::Result<Claim> {
        log::warn!("call {}: the deferred call was not placed: {why}", r.id);
        let why = format!("the deferred call was not placed: {why}");
        calls::apply(c, r.id, &[(Event::Failed, Some(&why))], at)?;
        Ok(Claim::Gone)
    };
    let p = match &r.placing {
        Ok(p) => p,
        Err(why) => return fail(why.clone()),
    };
    let mut ask = p.ask.clone();
    ask.at = at;
    match guard::at_start(c, &ask, &r.dialect, kept)? {
        AtStart::Go => {}
        AtStart::Refused(stop) => {
            calls::set_guard(c, r.id, stop.rule.as_str(), None)?;
            return fail(stop.detail);
        }
        AtStart::Later(stop, opens) => {
            log::info!("call {}: deferred again: {}", r.id, stop.detail);
            calls::postpone(c, r.id, opens, None)?;
            return Ok(Claim::Waits);
        }
        AtStart::Wait(stop) => {
            let until = r.until.unwrap_or(at + ms(START_WAIT));
            if at < until {
                calls::postpone(c, r.id, at + ms(QUEUE_POLL), Some(until))?;
                return Ok(Claim::Waits);
            }
            calls::set_guard(c, r.id, stop.rule.as_str(), None)?;
            return fail(format!(
                "it gave up waiting for a free slot: {}",
                stop.detail
            ));
        }
    }
    let states = calls::apply(c, r.id, &[(Event::Originating, None)], at)?;
    if states.last() != Some(&CallState::Originating) {
        return Ok(Claim::Gone);
    }
    if let Some(first) = p.route.get(p.first) {
        let params = first.provider.params(&p.o);
        calls::set_provider(
            c,
            r.id,
            first.provider.name(),
            &first.provider.describe(&params),
        )?;
    }
    calls::set_deadline(c, r.id, deadline(at, &p.o.plan, grace))?;
    Ok(Claim::Started)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Has the route place a started call, records the answer, and follows it.
async fn place(app: Arc<App>, id: crate::core::CallId, p: Placing, _permit: OwnedSemaphorePermit) {
    let params = p
        .route
        .get(p.first)
        .map(|r| r.provider.params(&p.o))
        .unwrap_or_default();
    let events = Events::new(app.store.clone());
    let (out, channel) = ask_route(&app, &p.route, p.first, p.channel, &p.o, params, &events).await;
    let (event, detail, follow) = match out {
        Ok((reply, f)) if reply.event == Event::Failed => (
            Event::Failed,
            Some(format!("the provider answered HTTP {}", reply.status)),
            f,
        ),
        Ok((reply, f)) => (reply.event, None, f),
        Err(e) => (
            Event::Failed,
            Some(format!("the click-to-call server: {e}")),
            None,
        ),
    };
    let w = app
        .store
        .write(move |c| calls::apply(c, id, &[(event.clone(), detail.as_deref())], now_ms()))
        .await;
    if let Err(e) = w {
        log::error!("call {id}: a deferred call's event was not recorded: {e}");
    }
    follow_up(&app, id, follow, channel);
}
