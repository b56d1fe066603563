//! Deferred calls. A request outside its partner's hours, from a partner with
//! `outside_hours = "defer"`, is taken and kept as `scheduled` with its start
//! (`calls.start_at`: the next opening); this task places it then, through its
//! partner's route as the config has it at that time. The database is the
//! queue, so deferred calls survive restarts; one whose start passed while
//! c2cd was down is placed as soon as it is back.
//!
//! A call to a busy B from a partner with a `b_queue` waits here too: it is
//! looked at every [`QUEUE_POLL`] and placed once its B has a free line (the
//! look and the start are one write, so two queued calls never take one
//! line), or failed when its `queue_until` has passed.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::core::call::{CallState, Event};
use crate::core::now_ms;
use crate::core::plan::CallPlan;
use crate::dialect::{ask_route, deadline, follow_up, usable};
use crate::provider::{Events, Originate};
use crate::store::calls::{self, Due};

/// Calls started per look at most.
const BATCH: usize = 64;
/// The longest sleep between two looks (a new deferral wakes it sooner).
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The shortest: a call that cannot be moved on does not spin the loop.
const MIN_SLEEP: Duration = Duration::from_millis(200);
/// How often a call queued for its busy B looks again.
pub const QUEUE_POLL: Duration = Duration::from_secs(1);

/// What became of a due call when it was looked at.
enum Claim {
    Started,
    /// Its B is still busy: it waits on.
    Waits,
    /// Taken meanwhile (hung up), or given up.
    Gone,
}

pub async fn run(app: Arc<App>) {
    loop {
        let now = now_ms();
        match app.store.read(move |c| calls::due(c, now, BATCH)).await {
            Ok(due) => {
                for d in due {
                    start(&app, d).await;
                }
            }
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

/// Places the deferred call `d`, or fails it when it cannot be: its partner
/// is gone or disabled, its request unreadable, no provider of its route can
/// place it.
async fn start(app: &App, d: Due) {
    let id = d.id;
    let rt = app.runtime();
    let partner = (rt.config.partners.iter()).find(|p| p.id == d.partner_id && p.enabled);
    let plan = serde_json::from_value::<CallPlan>(d.plan).ok();
    let o = plan.and_then(|p| Originate::from_fields(id, &d.originate, Arc::new(p)));
    let placed = match (partner, o) {
        (None, _) => Err("its partner is no longer enabled".to_string()),
        (_, None) => Err("its request could not be read back".to_string()),
        (Some(p), Some(o)) => usable(&rt.providers.route(&p.route), &o.plan).map(|r| (o, r)),
    };
    let (o, route) = match placed {
        Ok(placed) => placed,
        Err(why) => {
            let why = format!("the deferred call was not placed: {why}");
            log::warn!("call {id}: {why}");
            record(app, id, Event::Failed, Some(why)).await;
            return;
        }
    };
    let first = route
        .iter()
        .position(|r| r.health.has_channel())
        .unwrap_or(0);
    let params = route
        .get(first)
        .map(|r| r.provider.params(&o))
        .unwrap_or_default();
    let named = route
        .get(first)
        .map(|r| (r.provider.name().to_string(), r.provider.describe(&params)));
    let due_by = deadline(now_ms(), &o.plan, rt.config.calls.grace);
    let max_b = partner_max_b(&rt.config, &d.partner_id);
    let queued = d.queue_until.zip(d.b_number).filter(|_| max_b > 0);
    // Claimed in one write: a call taken meanwhile (hung up) is left alone,
    // and a queued call takes its B's line only when one is free.
    let claimed = app
        .store
        .write(move |c| {
            let at = now_ms();
            if let Some((until, b)) = &queued {
                let busy = crate::guard::calls_to(c, b)?;
                if busy >= max_b && at < *until {
                    let next = at + i64::try_from(QUEUE_POLL.as_millis()).unwrap_or(1000);
                    calls::postpone(c, id, next)?;
                    return Ok(Claim::Waits);
                }
                if busy >= max_b {
                    let why = format!("{b} stayed busy for the partner's b_queue");
                    calls::apply(c, id, &[(Event::Failed, Some(&why))], at)?;
                    return Ok(Claim::Gone);
                }
            }
            let states = calls::apply(c, id, &[(Event::Originating, None)], at)?;
            if states.last() != Some(&CallState::Originating) {
                return Ok(Claim::Gone);
            }
            if let Some((name, desc)) = &named {
                calls::set_provider(c, id, name, desc)?;
            }
            calls::set_deadline(c, id, due_by)?;
            Ok(Claim::Started)
        })
        .await;
    match claimed {
        Ok(Claim::Started) => {}
        Ok(Claim::Waits | Claim::Gone) => return,
        Err(e) => {
            log::error!("call {id}: the deferred call could not be started: {e}");
            return;
        }
    }
    log::info!("call {id}: deferred call started");
    let events = Events::new(app.store.clone());
    let (out, channel) = ask_route(app, &route, first, None, &o, params, &events).await;
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
    record(app, id, event, detail).await;
    follow_up(app, id, follow, channel);
}

/// The partner's `max_calls_per_b` now.
fn partner_max_b(cfg: &crate::config::Config, id: &str) -> u32 {
    cfg.partners
        .iter()
        .find(|p| p.id == id)
        .map_or(0, |p| p.guard.max_calls_per_b)
}

async fn record(app: &App, id: crate::core::CallId, event: Event, detail: Option<String>) {
    let w = app
        .store
        .write(move |c| calls::apply(c, id, &[(event, detail.as_deref())], now_ms()))
        .await;
    if let Err(e) = w {
        log::error!("call {id}: a deferred call's event was not recorded: {e}");
    }
}
