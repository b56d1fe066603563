//! The `legs` and `cdrs` tables: each attempt to reach a participant, moved by the
//! call's events, and one CDR per placed call once it ends.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::core::call::{next_leg, CallState, Event, Leg, LegState, Side};
use crate::core::{format_ms, CallId};
use crate::dialect::LegView;

/// Q.850 normal clearing: a leg closed because its call ended.
const NORMAL_CLEARING: u16 = 16;

/// One leg as stored.
#[derive(Debug, Clone)]
struct Row {
    side: Side,
    attempt: i64,
    number: Option<String>,
    state: LegState,
    cause: Option<u16>,
    created_at: i64,
    ringing_at: Option<i64>,
    answered_at: Option<i64>,
    ended_at: Option<i64>,
    /// Changed since loaded: written back by [`Legs::flush`].
    dirty: bool,
}

/// The legs of one call while a write applies its events: loaded once (when an
/// event first needs them), moved in memory, written back once.
pub struct Legs {
    id: String,
    numbers: [Option<String>; 2],
    rows: Option<Vec<Row>>,
}

impl Legs {
    /// `a` and `b` are the call's numbers, for legs created by an event.
    pub fn new(id: CallId, a: Option<String>, b: Option<String>) -> Self {
        Legs {
            id: id.to_string(),
            numbers: [a, b],
            rows: None,
        }
    }

    fn rows(&mut self, conn: &Connection) -> rusqlite::Result<&mut Vec<Row>> {
        if self.rows.is_none() {
            let mut stmt = conn.prepare_cached(
                "SELECT side, attempt, number, state, cause, created_at, ringing_at, answered_at, ended_at
                 FROM legs WHERE call_id = ?1 ORDER BY side, attempt",
            )?;
            let rows = stmt
                .query_map([&self.id], |r| {
                    let side: String = r.get(0)?;
                    let state: String = r.get(3)?;
                    Ok(Row {
                        side: if side == "a" { Side::A } else { Side::B },
                        attempt: r.get(1)?,
                        number: r.get(2)?,
                        state: LegState::parse(&state).unwrap_or(LegState::Created),
                        cause: r.get(4)?,
                        created_at: r.get(5)?,
                        ringing_at: r.get(6)?,
                        answered_at: r.get(7)?,
                        ended_at: r.get(8)?,
                        dirty: false,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            self.rows = Some(rows);
        }
        Ok(self.rows.get_or_insert_with(Vec::new))
    }

    /// The row of `leg`, created if the call has none yet.
    fn row(&mut self, conn: &Connection, leg: &Leg, at: i64) -> rusqlite::Result<&mut Row> {
        let fallback = self.numbers[if leg.side == Side::A { 0 } else { 1 }].clone();
        let attempt = i64::from(leg.attempt);
        let rows = self.rows(conn)?;
        let pos = match rows
            .iter()
            .position(|r| r.side == leg.side && r.attempt == attempt)
        {
            Some(p) => p,
            None => {
                rows.push(Row {
                    side: leg.side,
                    attempt,
                    number: leg.number.clone().or(fallback),
                    state: LegState::Created,
                    cause: None,
                    created_at: at,
                    ringing_at: None,
                    answered_at: None,
                    ended_at: None,
                    dirty: true,
                });
                rows.len() - 1
            }
        };
        Ok(&mut rows[pos])
    }

    /// Moves the legs by `event`, which moved the call from `from` to `to`; when
    /// the call has ended, closes the legs still open (an answered one hung up,
    /// one not yet answered cancelled, with normal clearing). Returns the cause
    /// for the CDR when a placed call ended (see [`write_cdr`]).
    pub fn on_event(
        &mut self,
        conn: &Connection,
        event: &Event,
        from: CallState,
        to: CallState,
        at: i64,
    ) -> rusqlite::Result<Option<u16>> {
        let step = match event {
            Event::Ringing(leg) | Event::Answered(leg) => Some((leg, None)),
            Event::Ended { leg, outcome, .. } => Some((leg, Some(*outcome))),
            _ => None,
        };
        if let Some((leg, outcome)) = step {
            let id = self.id.clone();
            let row = self.row(conn, leg, at)?;
            let wanted = match (event, outcome) {
                (Event::Ringing(_), _) => LegState::Ringing,
                (_, Some(o)) => row.state.ended(o),
                _ => LegState::Answered,
            };
            match next_leg(row.state, wanted) {
                Some(ok) => {
                    row.state = ok;
                    row.cause = outcome.map(|o| o.q850()).or(row.cause);
                    match ok {
                        LegState::Ringing => row.ringing_at = Some(at),
                        LegState::Answered => row.answered_at = Some(at),
                        _ => row.ended_at = Some(at),
                    }
                    row.dirty = true;
                }
                // Told again what it already is (an upstream's CDR ending the
                // call with a leg its events ended): nothing to move.
                None if row.state == wanted => {}
                None => log::warn!(
                    "call {id}: leg {}{} illegal transition {} -> {wanted} refused",
                    leg.side.as_str(),
                    leg.attempt,
                    row.state
                ),
            }
        }
        if !to.is_terminal() {
            return Ok(None);
        }
        // A lost call's legs carry its cause; legs closed because the other
        // side ended are cleared normally.
        let closing = match event {
            Event::Lost => event.cause().unwrap_or(NORMAL_CLEARING),
            _ => NORMAL_CLEARING,
        };
        for row in self
            .rows(conn)?
            .iter_mut()
            .filter(|r| !r.state.is_terminal())
        {
            row.state = if row.state == LegState::Answered {
                LegState::HungUp
            } else {
                LegState::Cancelled
            };
            row.cause = row.cause.or(Some(closing));
            row.ended_at = Some(at);
            row.dirty = true;
        }
        let placed = matches!(
            from,
            CallState::Originating
                | CallState::Accepted
                | CallState::DialingA
                | CallState::AAnswered
                | CallState::DialingB
                | CallState::Bridged
        );
        Ok(placed.then(|| event.cause().unwrap_or(NORMAL_CLEARING)))
    }

    /// The legs as callback formats see them.
    pub fn views(&mut self, conn: &Connection) -> rusqlite::Result<Vec<LegView>> {
        Ok(self
            .rows(conn)?
            .iter()
            .map(|r| LegView {
                side: r.side,
                attempt: u16::try_from(r.attempt).unwrap_or(u16::MAX),
                number: r.number.clone(),
                state: r.state,
                cause: r.cause,
                created_at: r.created_at,
                answered_at: r.answered_at,
                ended_at: r.ended_at,
            })
            .collect())
    }

    /// Writes back the legs that changed.
    pub fn flush(&self, conn: &Connection) -> rusqlite::Result<()> {
        let Some(rows) = &self.rows else {
            return Ok(());
        };
        let mut stmt = conn.prepare_cached(
            "INSERT INTO legs (call_id, side, attempt, number, state, cause, created_at, ringing_at, answered_at, ended_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (call_id, side, attempt) DO UPDATE SET state = excluded.state, cause = excluded.cause,
                ringing_at = excluded.ringing_at, answered_at = excluded.answered_at, ended_at = excluded.ended_at",
        )?;
        for r in rows.iter().filter(|r| r.dirty) {
            stmt.execute(params![
                self.id,
                r.side.as_str(),
                r.attempt,
                r.number,
                r.state.as_str(),
                r.cause,
                r.created_at,
                r.ringing_at,
                r.answered_at,
                r.ended_at
            ])?;
        }
        Ok(())
    }
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

/// The CDR of a call that ended, as [`write_cdr`] records it.
pub struct Cdr<'a> {
    pub id: &'a str,
    pub partner_id: Option<&'a str>,
    pub a_number: Option<&'a str>,
    pub b_number: Option<&'a str>,
    pub state: CallState,
    /// Q.850 of the event that ended the call.
    pub cause: u16,
    /// When the call was requested.
    pub started_at: i64,
    pub bridged_at: Option<i64>,
    pub ended_at: i64,
    pub recording: Option<&'a str>,
}

/// Writes the CDR of a call that ended (again, if it had one). Its legs are
/// the call's rows in `legs`, final once the call has ended.
pub fn write_cdr(conn: &Connection, c: &Cdr) -> rusqlite::Result<()> {
    let billable = c.bridged_at.map_or(0, |b| ceil_secs(c.ended_at - b));
    conn.prepare_cached(
        "INSERT OR REPLACE INTO cdrs (call_id, partner_id, a_number, b_number, state, cause, started_at, bridged_at,
            ended_at, duration_ms, billable_s, recording)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        c.id,
        c.partner_id,
        c.a_number,
        c.b_number,
        c.state.as_str(),
        c.cause,
        c.started_at,
        c.bridged_at,
        c.ended_at,
        c.ended_at - c.started_at,
        billable,
        c.recording
    ])?;
    Ok(())
}

/// A call's CDR as JSON, with its legs, when it has one.
pub fn cdr_json(conn: &Connection, id: &str) -> rusqlite::Result<Option<Value>> {
    let cdr = conn
        .prepare_cached(
            "SELECT state, cause, started_at, bridged_at, ended_at, duration_ms, billable_s, recording FROM cdrs
             WHERE call_id = ?1",
        )?
        .query_row([id], |r| {
            Ok(json!({
                "state": r.get::<_, String>(0)?,
                "cause": r.get::<_, Option<i64>>(1)?,
                "started": format_ms(r.get(2)?),
                "bridged": r.get::<_, Option<i64>>(3)?.map(format_ms),
                "ended": format_ms(r.get(4)?),
                "duration_ms": r.get::<_, i64>(5)?,
                "billable_s": r.get::<_, i64>(6)?,
                "recording": r.get::<_, Option<String>>(7)?,
            }))
        })
        .optional()?;
    let Some(mut cdr) = cdr else { return Ok(None) };
    cdr["legs"] = Value::Array(legs_json(conn, id)?);
    Ok(Some(cdr))
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
        let rec = NewCall::for_test(at, at + 60_000);
        let id = rec.id;
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
        apply(&c, id, Event::Ringing(Leg::first(Side::A)), 100);
        apply(&c, id, Event::Answered(Leg::first(Side::A)), 2_000);
        apply(&c, id, Event::Ringing(Leg::first(Side::B)), 2_100);
        apply(&c, id, Event::Answered(Leg::first(Side::B)), 5_000);
        apply(&c, id, Event::Bridged, 5_000);
        let end = Event::Ended {
            leg: Leg::first(Side::B),
            outcome: LegOutcome::Normal,
            last: true,
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
        apply(&c, id, Event::Ringing(Leg::first(Side::A)), 10);
        apply(&c, id, Event::Answered(Leg::first(Side::A)), 20);
        apply(&c, id, Event::Ringing(Leg::first(Side::B)), 30);
        let busy = Event::Ended {
            leg: Leg::first(Side::B),
            outcome: LegOutcome::Busy,
            last: true,
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
        apply(&c, id, Event::Ringing(Leg::first(Side::A)), 10);
        let na = Event::Ended {
            leg: Leg::first(Side::A),
            outcome: LegOutcome::NoAnswer,
            last: true,
        };
        assert_eq!(apply(&c, id, na, 30_000), [CallState::Failed]);
        let legs = legs_json(&c, &id.to_string()).unwrap();
        assert_eq!(legs.len(), 1, "B was never dialled");
        assert_eq!(
            (legs[0]["state"].as_str(), legs[0]["cause"].as_i64()),
            (Some("no_answer"), Some(19))
        );
        // Nothing moves a finished call or its legs.
        assert!(apply(&c, id, Event::Answered(Leg::first(Side::A)), 31_000).is_empty());
        assert_eq!(
            legs_json(&c, &id.to_string()).unwrap()[0]["state"],
            "no_answer"
        );
    }

    #[test]
    fn each_attempt_is_a_leg_of_its_own_with_its_number() {
        let c = db();
        let id = call(&c, 0);
        let leg = |attempt, number: &str| Leg {
            side: Side::A,
            attempt,
            number: Some(number.to_string()),
        };
        apply(&c, id, Event::Ringing(leg(1, "+16045550001")), 10);
        let busy = Event::Ended {
            leg: leg(1, "+16045550001"),
            outcome: LegOutcome::Busy,
            last: false,
        };
        assert_eq!(apply(&c, id, busy, 20), [CallState::DialingA]);
        apply(&c, id, Event::Ringing(leg(2, "+16045550002")), 30);
        apply(&c, id, Event::Answered(leg(2, "+16045550002")), 40);
        apply(&c, id, Event::Ringing(Leg::first(Side::B)), 50);
        let na = Event::Ended {
            leg: Leg::first(Side::B),
            outcome: LegOutcome::NoAnswer,
            last: true,
        };
        assert_eq!(apply(&c, id, na, 60), [CallState::Failed]);
        let legs = legs_json(&c, &id.to_string()).unwrap();
        let got: Vec<_> = legs
            .iter()
            .map(|l| {
                (
                    l["side"].as_str().unwrap(),
                    l["attempt"].as_i64().unwrap(),
                    l["number"].as_str().unwrap(),
                    l["state"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", 1, "+16045550001", "busy"),
                ("a", 2, "+16045550002", "hung_up"),
                ("b", 1, "+16045550000", "no_answer"),
            ]
        );
    }
}
