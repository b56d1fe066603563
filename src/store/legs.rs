//! The `legs` and `cdrs` tables: each attempt to reach a participant, moved by the
//! call's events, and one CDR per placed call once it ends.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::core::call::{next_leg, CallState, Event, Leg, LegState};
use crate::core::{format_ms, CallId};

/// Q.850 normal clearing: a leg closed because its call ended.
const NORMAL_CLEARING: u16 = 16;

fn side(leg: Leg) -> &'static str {
    leg.as_str()
}

/// The current attempt on `leg`, created (from the call's number for that side) if
/// the call has none yet.
fn current(conn: &Connection, id: &str, leg: Leg, at: i64) -> rusqlite::Result<(i64, LegState)> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO legs (call_id, side, attempt, number, state, created_at)
         SELECT id, ?2, 1, CASE ?2 WHEN 'a' THEN a_number ELSE b_number END, 'created', ?3
         FROM calls WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM legs WHERE call_id = ?1 AND side = ?2)",
    )?
    .execute(params![id, side(leg), at])?;
    conn.prepare_cached(
        "SELECT attempt, state FROM legs WHERE call_id = ?1 AND side = ?2 ORDER BY attempt DESC LIMIT 1",
    )?
    .query_row(params![id, side(leg)], |r| {
        let state: String = r.get(1)?;
        Ok((r.get(0)?, LegState::parse(&state).unwrap_or(LegState::Created)))
    })
}

fn set(
    conn: &Connection,
    id: &str,
    leg: Leg,
    attempt: i64,
    to: LegState,
    cause: Option<u16>,
    at: i64,
) -> rusqlite::Result<()> {
    let (ringing, answered, ended) = match to {
        LegState::Ringing => (Some(at), None, None),
        LegState::Answered => (None, Some(at), None),
        s if s.is_terminal() => (None, None, Some(at)),
        _ => (None, None, None),
    };
    conn.prepare_cached(
        "UPDATE legs SET state = ?4, cause = coalesce(?5, cause), ringing_at = coalesce(?6, ringing_at),
         answered_at = coalesce(?7, answered_at), ended_at = coalesce(?8, ended_at)
         WHERE call_id = ?1 AND side = ?2 AND attempt = ?3",
    )?
    .execute(params![id, side(leg), attempt, to.as_str(), cause, ringing, answered, ended])?;
    Ok(())
}

/// Moves the legs by `event`, which moved the call from `from` to `to`; when the
/// call has ended, closes the legs still open. Returns the cause for the CDR to
/// write (with [`write_cdr`], once the event is stored) when a placed call ended.
pub fn on_event(
    conn: &Connection,
    id: CallId,
    event: &Event,
    from: CallState,
    to: CallState,
    at: i64,
) -> rusqlite::Result<Option<u16>> {
    let id_s = id.to_string();
    let step = match event {
        Event::Ringing(leg) | Event::Answered(leg) => Some((*leg, None)),
        Event::Ended { leg, outcome } => Some((*leg, Some(*outcome))),
        _ => None,
    };
    if let Some((leg, outcome)) = step {
        let (attempt, state) = current(conn, &id_s, leg, at)?;
        let wanted = match (event, outcome) {
            (Event::Ringing(_), _) => LegState::Ringing,
            (_, Some(o)) => state.ended(o),
            _ => LegState::Answered,
        };
        let cause = outcome.map(|o| o.q850());
        match next_leg(state, wanted) {
            Some(ok) => set(conn, &id_s, leg, attempt, ok, cause, at)?,
            None => log::warn!(
                "call {id}: leg {} illegal transition {state} -> {wanted} refused",
                leg.as_str()
            ),
        }
    }
    if !to.is_terminal() {
        return Ok(None);
    }
    close_open_legs(conn, &id_s, at)?;
    let placed = matches!(
        from,
        CallState::Accepted
            | CallState::DialingA
            | CallState::AAnswered
            | CallState::DialingB
            | CallState::Bridged
    );
    Ok(placed.then(|| event.cause().unwrap_or(NORMAL_CLEARING)))
}

/// Legs still open when their call ends: an answered one is hung up, one not yet
/// answered is cancelled; both with normal clearing.
fn close_open_legs(conn: &Connection, id: &str, at: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE legs SET state = CASE state WHEN 'answered' THEN 'hung_up' ELSE 'cancelled' END,
         cause = coalesce(cause, ?2), ended_at = ?3
         WHERE call_id = ?1 AND state IN ('created', 'ringing', 'answered')",
    )?
    .execute(params![id, NORMAL_CLEARING, at])?;
    Ok(())
}

fn ceil_secs(ms: i64) -> i64 {
    (ms.max(0) + 999) / 1000
}

/// The legs of a call as JSON, with durations.
pub fn legs_json(conn: &Connection, id: &str) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(
        "SELECT side, attempt, number, state, cause, sip_code, created_at, ringing_at, answered_at, ended_at
         FROM legs WHERE call_id = ?1 ORDER BY side, attempt",
    )?;
    let rows = stmt.query_map([id], |r| {
        let created: i64 = r.get(6)?;
        let answered: Option<i64> = r.get(8)?;
        let ended: Option<i64> = r.get(9)?;
        let time = |t: Option<i64>| t.map(format_ms);
        Ok(json!({
            "side": r.get::<_, String>(0)?,
            "attempt": r.get::<_, i64>(1)?,
            "number": r.get::<_, Option<String>>(2)?,
            "state": r.get::<_, String>(3)?,
            "cause": r.get::<_, Option<i64>>(4)?,
            "sip_code": r.get::<_, Option<i64>>(5)?,
            "start": format_ms(created),
            "ringing": time(r.get(7)?),
            "answer": time(answered),
            "end": time(ended),
            "duration_ms": ended.map(|e| e - created),
            "billable_s": match (answered, ended) {
                (Some(a), Some(e)) => ceil_secs(e - a),
                _ => 0,
            },
        }))
    })?;
    rows.collect()
}

/// Writes the CDR of a call that ended in `state` at `at` with `cause`.
pub fn write_cdr(
    conn: &Connection,
    id: &str,
    state: CallState,
    cause: u16,
    at: i64,
) -> rusqlite::Result<()> {
    let legs = Value::Array(legs_json(conn, id)?).to_string();
    let bridged: Option<i64> = conn
        .prepare_cached("SELECT at FROM call_events WHERE call_id = ?1 AND kind = 'bridged'")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO cdrs (call_id, partner_id, a_number, b_number, state, cause, started_at, bridged_at,
            ended_at, duration_ms, billable_s, legs)
         SELECT id, partner_id, a_number, b_number, ?2, ?3, created_at, ?4, ?5, ?5 - created_at, ?6, ?7
         FROM calls WHERE id = ?1",
    )?
    .execute(params![
        id,
        state.as_str(),
        cause,
        bridged,
        at,
        bridged.map(|b| ceil_secs(at - b)).unwrap_or(0),
        legs
    ])?;
    Ok(())
}

/// A call's CDR as JSON, when it has one.
pub fn cdr_json(conn: &Connection, id: &str) -> rusqlite::Result<Option<Value>> {
    conn.prepare_cached(
        "SELECT state, cause, started_at, bridged_at, ended_at, duration_ms, billable_s, legs FROM cdrs WHERE call_id = ?1",
    )?
    .query_row([id], |r| {
        let legs: String = r.get(7)?;
        Ok(json!({
            "state": r.get::<_, String>(0)?,
            "cause": r.get::<_, Option<i64>>(1)?,
            "started": format_ms(r.get(2)?),
            "bridged": r.get::<_, Option<i64>>(3)?.map(format_ms),
            "ended": format_ms(r.get(4)?),
            "duration_ms": r.get::<_, i64>(5)?,
            "billable_s": r.get::<_, i64>(6)?,
            "legs": serde_json::from_str::<Value>(&legs).unwrap_or(Value::Null),
        }))
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::call::LegOutcome;
    use crate::store::calls::{self, NewCall};

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c, |_| unreachable!()).unwrap();
        c
    }

    fn call(c: &Connection, at: i64) -> CallId {
        let id = CallId::new();
        let rec = NewCall {
            id,
            at,
            dialect: "xip",
            partner_id: Some("p".into()),
            remote_addr: None,
            method: "GET".into(),
            received_query: String::new(),
            received_body: Vec::new(),
            a_number: Some("+16045551234".into()),
            b_number: Some("+16045550000".into()),
            a_cid: None,
            b_cid: None,
            auth_ok: Some(true),
            provider: Some("sim".into()),
            upstream_request: None,
        };
        let events = [(Event::Originating, None), (Event::Accepted, None)];
        calls::insert(c, &rec, &events, None).unwrap();
        id
    }

    fn apply(c: &Connection, id: CallId, e: Event, at: i64) -> Vec<CallState> {
        calls::apply(c, id, &[(e, None)], at).unwrap()
    }

    #[test]
    fn a_bridged_call_has_two_hung_up_legs_and_a_billable_cdr() {
        let c = db();
        let id = call(&c, 0);
        apply(&c, id, Event::Ringing(Leg::A), 100);
        apply(&c, id, Event::Answered(Leg::A), 2_000);
        apply(&c, id, Event::Ringing(Leg::B), 2_100);
        apply(&c, id, Event::Answered(Leg::B), 5_000);
        apply(&c, id, Event::Bridged, 5_000);
        let end = Event::Ended {
            leg: Leg::B,
            outcome: LegOutcome::Normal,
        };
        assert_eq!(apply(&c, id, end, 65_500), [CallState::Completed]);

        let legs = legs_json(&c, &id.to_string()).unwrap();
        assert_eq!(legs.len(), 2);
        assert_eq!(
            (legs[0]["side"].as_str(), legs[0]["state"].as_str()),
            (Some("a"), Some("hung_up"))
        );
        assert_eq!(
            legs[0]["billable_s"], 64,
            "A answered at 2.0 s, ended at 65.5 s"
        );
        assert_eq!(legs[1]["cause"], 16);
        assert_eq!(legs[1]["number"], "+16045550000");
        let cdr = cdr_json(&c, &id.to_string()).unwrap().unwrap();
        assert_eq!(cdr["state"], "completed");
        assert_eq!(cdr["cause"], 16);
        assert_eq!(cdr["duration_ms"], 65_500);
        assert_eq!(
            cdr["billable_s"], 61,
            "bridged at 5.0 s, ended at 65.5 s, rounded up"
        );
        assert_eq!(cdr["legs"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn b_busy_fails_the_call_and_closes_a() {
        let c = db();
        let id = call(&c, 0);
        apply(&c, id, Event::Ringing(Leg::A), 10);
        apply(&c, id, Event::Answered(Leg::A), 20);
        apply(&c, id, Event::Ringing(Leg::B), 30);
        let busy = Event::Ended {
            leg: Leg::B,
            outcome: LegOutcome::Busy,
        };
        assert_eq!(apply(&c, id, busy, 40), [CallState::Failed]);
        let legs = legs_json(&c, &id.to_string()).unwrap();
        assert_eq!(legs[0]["state"], "hung_up");
        assert_eq!(legs[0]["cause"], 16);
        assert_eq!(legs[1]["state"], "busy");
        assert_eq!(legs[1]["cause"], 17);
        let cdr = cdr_json(&c, &id.to_string()).unwrap().unwrap();
        assert_eq!(
            (
                cdr["state"].as_str(),
                cdr["cause"].as_i64(),
                cdr["billable_s"].as_i64()
            ),
            (Some("failed"), Some(17), Some(0))
        );
        assert!(cdr["bridged"].is_null());
    }

    #[test]
    fn an_unanswered_a_leg_and_a_refused_leg_step() {
        let c = db();
        let id = call(&c, 0);
        apply(&c, id, Event::Ringing(Leg::A), 10);
        let na = Event::Ended {
            leg: Leg::A,
            outcome: LegOutcome::NoAnswer,
        };
        assert_eq!(apply(&c, id, na, 30_000), [CallState::Failed]);
        let legs = legs_json(&c, &id.to_string()).unwrap();
        assert_eq!(legs.len(), 1, "B was never dialled");
        assert_eq!(
            (legs[0]["state"].as_str(), legs[0]["cause"].as_i64()),
            (Some("no_answer"), Some(19))
        );
        // Nothing moves a finished call or its legs.
        assert!(apply(&c, id, Event::Answered(Leg::A), 31_000).is_empty());
        assert_eq!(
            legs_json(&c, &id.to_string()).unwrap()[0]["state"],
            "no_answer"
        );
    }
}
