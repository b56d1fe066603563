//! The `calls` and `call_events` tables: every request that reached a dialect, what
//! was sent upstream, what was answered, and how the call went.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::core::call::{self, CallState, Event, Side};
use crate::core::{format_ms, CallId};
use crate::dialect::{LegView, Notice};

use super::{callbacks, legs};

/// The calls not ended: the WHERE of the index `calls_open` (schema step 11),
/// which a query repeats word for word to be served by it. Written with `<>`
/// rather than `NOT IN (…)`: SQLite builds a temporary b-tree for an IN list
/// of more than two constants each time a statement evaluates it, which for
/// a partial index is every INSERT and UPDATE of a call (bench/profile.sh).
pub const OPEN: &str = "state <> 'rejected' AND state <> 'handed_off' AND state <> 'completed' \
    AND state <> 'failed' AND state <> 'lost'";

/// The calls in progress, which hold a slot of their partner and their B:
/// the WHERE of the indexes `calls_live_partner` and `calls_live_b` (schema
/// step 11), with `=` rather than `IN (…)` for the reason given at [`OPEN`].
pub const LIVE: &str = "(state = 'originating' OR state = 'accepted' OR state = 'dialing_a' \
    OR state = 'a_answered' OR state = 'dialing_b' OR state = 'bridged')";

/// A request as received, before anything was decided.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub id: CallId,
    pub at: i64,
    pub dialect: &'static str,
    pub partner_id: Option<String>,
    pub remote_addr: Option<String>,
    pub method: String,
    pub received_query: String,
    pub received_body: Vec<u8>,
    pub a_number: Option<String>,
    pub b_number: Option<String>,
    pub a_cid: Option<String>,
    pub b_cid: Option<String>,
    pub auth_ok: Option<bool>,
    pub provider: Option<String>,
    /// What was sent to the provider, as JSON text (encoded before the write,
    /// off the writer thread).
    pub upstream_request: Option<String>,
    /// When the call, if it has not ended by then, is reconciled (unix ms).
    pub deadline_at: Option<i64>,
    /// Where the call's events are reported, when its partner wants them.
    pub callback_url: Option<String>,
    /// What the partner asked to be dialled (`core::plan::CallPlan` as JSON
    /// text).
    pub plan: Option<String>,
    /// The partner's own reference for the call.
    pub memo: Option<String>,
    /// What the dialect keeps with the call for its callbacks.
    pub dialect_data: Option<Value>,
}

impl NewCall {
    /// Records what is to be dialled: each side's first number and what it is
    /// shown, and the whole plan.
    pub fn set_plan(&mut self, plan: &crate::core::plan::CallPlan) {
        if let Some(a) = plan.a.first() {
            self.a_number = Some(a.number.as_str().to_string());
            self.a_cid = plan.a.caller_id_for(a).map(str::to_string);
        }
        if let Some(b) = plan.b.first() {
            self.b_number = Some(b.number.as_str().to_string());
            self.b_cid = plan.b.caller_id_for(b).map(str::to_string);
        }
        self.plan = serde_json::to_string(plan).ok();
    }

    /// A request as it arrived, before anything about it is known.
    pub fn received(
        dialect: &'static str,
        remote: std::net::SocketAddr,
        method: &str,
        query: &str,
    ) -> NewCall {
        NewCall {
            id: CallId::new(),
            at: crate::core::now_ms(),
            dialect,
            partner_id: None,
            remote_addr: Some(remote.to_string()),
            method: method.to_string(),
            received_query: query.to_string(),
            received_body: Vec::new(),
            a_number: None,
            b_number: None,
            a_cid: None,
            b_cid: None,
            auth_ok: None,
            provider: None,
            upstream_request: None,
            deadline_at: None,
            callback_url: None,
            plan: None,
            memo: None,
            dialect_data: None,
        }
    }
}

#[cfg(test)]
impl NewCall {
    /// A sim call of partner `p` from +16045551234 to +16045550000, for tests.
    pub fn for_test(at: i64, deadline_at: i64) -> NewCall {
        NewCall {
            id: CallId::new(),
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
            deadline_at: Some(deadline_at),
            callback_url: None,
            plan: None,
            memo: None,
            dialect_data: None,
        }
    }
}

/// The answer given to the partner, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub status: u16,
    /// c2cd's own result code, when c2cd answered itself.
    pub code: Option<&'a str>,
    pub body: &'a [u8],
    /// Why the call was refused or failed.
    pub error: Option<&'a str>,
}

/// Inserts the call with its first `events` (each with an optional detail) and,
/// when already known, the answer given. The state is the one the events lead
/// to from `requested`; one INSERT for the row, one per event.
/// Sets when a call not ended by then is reconciled.
pub fn set_deadline(conn: &Connection, id: CallId, at: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE calls SET deadline_at = ?2 WHERE id = ?1")?
        .execute(params![id.to_string(), at])?;
    Ok(())
}

/// Keeps when a deferred call is placed, what is then sent upstream, and for
/// a call queued for its busy B when it gives up.
pub fn schedule(
    conn: &Connection,
    id: CallId,
    start_at: i64,
    originate: &Value,
    queue_until: Option<i64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE calls SET start_at = ?2, originate = ?3, queue_until = ?4 WHERE id = ?1",
    )?
    .execute(params![
        id.to_string(),
        start_at,
        originate.to_string(),
        queue_until
    ])?;
    Ok(())
}

/// Moves a waiting call's next look to `at`, giving up at `until` (none: its
/// give-up time is set when it first waits).
pub fn postpone(
    conn: &Connection,
    id: CallId,
    at: i64,
    until: Option<i64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE calls SET start_at = ?2, queue_until = ?3 WHERE id = ?1 AND state = 'scheduled'",
    )?
    .execute(params![id.to_string(), at, until])?;
    Ok(())
}

/// A deferred call that is due: its id, partner, plan and one-number fields.
pub struct Due {
    pub id: CallId,
    pub partner_id: String,
    /// The dialect it came in, which its partner must still be enabled for.
    pub dialect: String,
    pub plan: Value,
    pub originate: Value,
    pub a_number: Option<String>,
    pub b_number: Option<String>,
    /// When it gives up waiting for a free slot.
    pub queue_until: Option<i64>,
}

/// The deferred calls due at `now`, the earliest first, at most `limit`.
pub fn due(conn: &Connection, now: i64, limit: usize) -> rusqlite::Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, partner_id, plan, originate, b_number, queue_until, dialect, a_number
         FROM calls WHERE state = 'scheduled' AND start_at <= ?1 ORDER BY start_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit as i64], |r| {
        Ok((
            (
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ),
            (
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
            ),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let ((id, partner, plan, originate), (b_number, queue_until, dialect, a_number)) = row?;
        let json = |s: Option<String>| {
            s.and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .unwrap_or(Value::Null)
        };
        if let Some(id) = CallId::parse(&id) {
            out.push(Due {
                id,
                partner_id: partner.unwrap_or_default(),
                dialect,
                plan: json(plan),
                originate: json(originate),
                a_number,
                b_number,
                queue_until,
            });
        }
    }
    Ok(out)
}

/// When the next deferred call is due, if any is waiting.
pub fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT min(start_at) FROM calls WHERE state = 'scheduled'",
        [],
        |r| r.get(0),
    )
}

/// Keeps what A and B would have been shown when a mask replaced it.
pub fn set_real_cids(
    conn: &Connection,
    id: CallId,
    a: Option<&str>,
    b: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE calls SET a_cid_real = ?2, b_cid_real = ?3 WHERE id = ?1")?
        .execute(params![id.to_string(), a, b])?;
    Ok(())
}

/// Marks a request the guard rails stopped: the rule, and for a replay the
/// earlier call it was answered with.
pub fn set_guard(
    conn: &Connection,
    id: CallId,
    rule: &str,
    replay_of: Option<CallId>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE calls SET guard = ?2, replay_of = ?3 WHERE id = ?1")?
        .execute(params![
            id.to_string(),
            rule,
            replay_of.map(|r| r.to_string())
        ])?;
    Ok(())
}

pub fn insert(
    conn: &Connection,
    c: &NewCall,
    events: &[(Event, Option<&str>)],
    answered: Option<Answered>,
) -> rusqlite::Result<CallState> {
    let mut state = CallState::Requested;
    let mut steps = Vec::with_capacity(events.len());
    for (event, detail) in events {
        let Some(to) = call::next(state, event) else {
            log::warn!(
                "call {}: illegal transition {state} --{}--> refused",
                c.id,
                event.kind()
            );
            break;
        };
        state = to;
        steps.push((event, *detail, to));
    }
    let a = answered.as_ref();
    conn.prepare_cached(
        "INSERT INTO calls (id, created_at, updated_at, dialect, partner_id, remote_addr, method, received_query,
            received_body, a_number, b_number, a_cid, b_cid, auth_ok, provider, upstream_request, state,
            result_status, result_code, result_body, error, deadline_at, callback_url, plan, memo, dialect_data,
            refused)
         VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
                 ?22, ?23, ?24, ?25, ?26)",
    )?
    .execute(params![
        c.id.to_string(),
        c.at,
        c.dialect,
        c.partner_id,
        c.remote_addr,
        c.method,
        c.received_query,
        c.received_body,
        c.a_number,
        c.b_number,
        c.a_cid,
        c.b_cid,
        c.auth_ok,
        c.provider,
        c.upstream_request,
        state.as_str(),
        a.map(|a| a.status),
        a.and_then(|a| a.code),
        a.map(|a| a.body),
        a.and_then(|a| a.error),
        c.deadline_at,
        c.callback_url,
        c.plan,
        c.memo,
        c.dialect_data.as_ref().map(|v| v.to_string()),
        state == CallState::Rejected,
    ])?;
    let head = Head {
        state: CallState::Requested,
        seq: 0,
        numbers: [c.a_number.clone(), c.b_number.clone()],
        callback_url: c.callback_url.clone(),
        partner_id: c.partner_id.clone(),
        dialect: c.dialect.to_string(),
        memo: c.memo.clone(),
        data: c.dialect_data.clone(),
        recording: None,
        created_at: c.at,
        bridged_at: None,
        debit: false,
    };
    insert_events(conn, c.id, &head, c.at, &steps, &[])?;
    Ok(state)
}

/// What applying events to a stored call needs to know of it.
struct Head {
    state: CallState,
    /// The last event's sequence number.
    seq: i64,
    /// A's and B's numbers, for legs that name none of their own.
    numbers: [Option<String>; 2],
    callback_url: Option<String>,
    partner_id: Option<String>,
    dialect: String,
    memo: Option<String>,
    /// `calls.dialect_data`, read only for calls that have callbacks.
    data: Option<Value>,
    recording: Option<String>,
    created_at: i64,
    bridged_at: Option<i64>,
    /// Whether its partner's credit is held by c2cd (`dialect_data.debit`):
    /// its end is charged.
    debit: bool,
}

impl Head {
    fn load(conn: &Connection, id: &str) -> rusqlite::Result<Option<Head>> {
        conn.prepare_cached(
            "SELECT state, (SELECT coalesce(max(seq), 0) FROM call_events WHERE call_id = ?1), a_number, b_number,
                    callback_url, partner_id, dialect, memo,
                    CASE WHEN callback_url IS NULL THEN NULL ELSE dialect_data END, recording, created_at,
                    (SELECT at FROM call_events WHERE call_id = ?1 AND kind = 'bridged'),
                    CASE WHEN json_valid(dialect_data) THEN json_type(dialect_data, '$.debit') END = 'text'
             FROM calls WHERE id = ?1",
        )?
        .query_row([id], |r| {
            let state: String = r.get(0)?;
            Ok(Head {
                state: CallState::parse(&state).unwrap_or(CallState::Requested),
                seq: r.get(1)?,
                numbers: [r.get(2)?, r.get(3)?],
                callback_url: r.get(4)?,
                partner_id: r.get(5)?,
                dialect: r.get(6)?,
                memo: r.get(7)?,
                data: r
                    .get::<_, Option<String>>(8)?
                    .and_then(|d| serde_json::from_str(&d).ok()),
                recording: r.get(9)?,
                created_at: r.get(10)?,
                bridged_at: r.get(11)?,
                debit: r.get::<_, Option<bool>>(12)?.unwrap_or(false),
            })
        })
        .optional()
    }

    fn target(&self) -> Option<callbacks::Target<'_>> {
        self.callback_url.as_deref().map(|url| callbacks::Target {
            url,
            partner_id: self.partner_id.as_deref(),
            dialect: &self.dialect,
            memo: self.memo.as_deref(),
        })
    }

    /// The number of `event`'s leg, if it has a leg.
    fn number<'a>(&'a self, event: &'a Event) -> Option<&'a str> {
        let leg = event.leg()?;
        leg.number.as_deref().or(match leg.side {
            Side::A => self.numbers[0].as_deref(),
            Side::B => self.numbers[1].as_deref(),
        })
    }
}

fn insert_events(
    conn: &Connection,
    id: CallId,
    head: &Head,
    at: i64,
    steps: &[(&Event, Option<&str>, CallState)],
    legs: &[LegView],
) -> rusqlite::Result<(Option<String>, Option<i64>)> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO call_events (call_id, seq, event_id, at, kind, cause, state, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let id_s = id.to_string();
    let target = head.target();
    let mut recording = head.recording.clone();
    let mut bridged_at = head.bridged_at;
    for (n, (event, detail, to)) in steps.iter().enumerate() {
        let seq = head.seq + 1 + n as i64;
        let event_id = CallId::new().to_string();
        stmt.execute(params![
            id_s,
            seq,
            event_id,
            at,
            event.kind(),
            event.cause(),
            to.as_str(),
            detail
        ])?;
        match event {
            Event::Recording(r) => {
                conn.prepare_cached("UPDATE calls SET recording = ?2 WHERE id = ?1")?
                    .execute(params![id_s, r])?;
                recording = Some(r.clone());
            }
            Event::Bridged => bridged_at = Some(at),
            _ => {}
        }
        // The partner's callback is queued in the event's own transaction.
        if let Some(t) = target {
            let notice = Notice {
                call_id: id,
                partner_id: t.partner_id,
                seq,
                event_id: &event_id,
                event,
                state: *to,
                at,
                number: head.number(event),
                memo: t.memo,
                legs: if to.is_terminal() { legs } else { &[] },
                numbers: [head.numbers[0].as_deref(), head.numbers[1].as_deref()],
                data: head.data.as_ref(),
                recording: recording.as_deref(),
                created_at: head.created_at,
                bridged_at,
            };
            callbacks::enqueue(conn, t, &notice)?;
        }
    }
    Ok((recording, bridged_at))
}

/// Applies `events` in order to a stored call: stores each with the next
/// sequence number and moves the call's state once. An illegal transition is
/// logged and not applied, and neither is anything after it. Returns the state
/// after each applied event.
pub fn apply(
    conn: &Connection,
    id: CallId,
    events: &[(Event, Option<&str>)],
    at: i64,
) -> rusqlite::Result<Vec<CallState>> {
    let id_s = id.to_string();
    let Some(head) = Head::load(conn, &id_s)? else {
        log::warn!("call {id}: events for an unknown call, ignored");
        return Ok(Vec::new());
    };
    let mut state = head.state;
    let mut steps = Vec::with_capacity(events.len());
    let mut cdr_due = None;
    let [a_number, b_number] = head.numbers.clone();
    let mut legs = legs::Legs::new(id, a_number, b_number);
    for (event, detail) in events {
        let Some(to) = call::next(state, event) else {
            log::warn!(
                "call {id}: illegal transition {state} --{}--> refused",
                event.kind()
            );
            break;
        };
        let cdr = legs.on_event(conn, event, state, to, at)?;
        state = to;
        steps.push((event, *detail, to));
        if let Some(cause) = cdr {
            cdr_due = Some(cause);
        }
    }
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    legs.flush(conn)?;
    // A call that ended shows its final legs to its callback format.
    let views = match (head.callback_url.is_some(), state.is_terminal()) {
        (true, true) => legs.views(conn)?,
        _ => Vec::new(),
    };
    let (recording, bridged_at) = insert_events(conn, id, &head, at, &steps, &views)?;
    if let Some(cause) = cdr_due {
        let [a_number, b_number] = &head.numbers;
        legs::write_cdr(
            conn,
            &legs::Cdr {
                id: &id_s,
                partner_id: head.partner_id.as_deref(),
                a_number: a_number.as_deref(),
                b_number: b_number.as_deref(),
                state,
                cause,
                started_at: head.created_at,
                bridged_at,
                ended_at: at,
                recording: recording.as_deref(),
            },
        )?;
        if head.debit {
            charge(conn, &id_s, &mut legs, at)?;
        }
    }
    conn.prepare_cached("UPDATE calls SET state = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id_s, state.as_str(), at])?;
    if state == CallState::Rejected {
        // Apart from the state: `refused` is in an index the other changes of
        // state leave alone.
        conn.prepare_cached("UPDATE calls SET refused = 1 WHERE id = ?1")?
            .execute([&id_s])?;
    }
    Ok(steps.into_iter().map(|(_, _, to)| to).collect())
}

/// Takes an ended call's cost from the balance of the partner whose credit
/// c2cd holds (Spokn `balance = true`), in the transaction that ends it.
fn charge(conn: &Connection, id: &str, legs: &mut legs::Legs, at: i64) -> rusqlite::Result<()> {
    let data: Option<String> = conn
        .prepare_cached("SELECT dialect_data FROM calls WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(data) = data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) else {
        return Ok(());
    };
    if data["debit"].as_str().is_none() {
        return Ok(());
    }
    let views = legs.views(conn)?;
    if let Some((account, cost)) = crate::dialect::spokn::charge(&data, &views) {
        if cost.0 > 0 {
            super::cloud9::charge(conn, &account, cost, &format!("call {id}"), at)?;
        }
    }
    Ok(())
}

/// The call's state, if there is such a call.
pub fn state(conn: &Connection, id: CallId) -> rusqlite::Result<Option<CallState>> {
    Ok(Head::load(conn, &id.to_string())?.map(|h| h.state))
}

/// The call's state and legs, for a report that may repeat what the call has
/// already recorded (an upstream's CDR) to weigh itself against.
pub fn snapshot(
    conn: &Connection,
    id: CallId,
) -> rusqlite::Result<Option<(CallState, Vec<LegView>)>> {
    let Some(head) = Head::load(conn, &id.to_string())? else {
        return Ok(None);
    };
    let [a, b] = head.numbers;
    let legs = legs::Legs::new(id, a, b).views(conn)?;
    Ok(Some((head.state, legs)))
}

/// Records that the call went to another provider, and what was sent to it.
pub fn set_provider(
    conn: &Connection,
    id: CallId,
    name: &str,
    upstream: &Value,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE calls SET provider = ?2, upstream_request = ?3 WHERE id = ?1")?
        .execute(params![id.to_string(), name, upstream.to_string()])?;
    Ok(())
}

/// Records the answer given to the partner.
pub fn set_result(conn: &Connection, id: CallId, at: i64, a: Answered) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE calls SET result_status = ?2, result_code = ?3, result_body = ?4, error = coalesce(?5, error),
         updated_at = ?6 WHERE id = ?1",
    )?
    .execute(params![id.to_string(), a.status, a.code, a.body, a.error, at])?;
    Ok(())
}

fn text(b: Option<Vec<u8>>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// The call as the admin API and `c2cd calls show` present it.
pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Value>> {
    let call = conn
        .query_row(
            "SELECT id, created_at, updated_at, dialect, partner_id, remote_addr, method, received_query, received_body,
                    a_number, b_number, a_cid, b_cid, auth_ok, provider, upstream_request, result_status, result_code,
                    result_body, state, error, plan, memo, recording, guard, replay_of, a_cid_real, b_cid_real
             FROM calls WHERE id = ?1",
            [id],
            |r| {
                let upstream: Option<String> = r.get(15)?;
                Ok(json!({
                    "id": r.get::<_, String>(0)?,
                    "created_at": format_ms(r.get(1)?),
                    "updated_at": format_ms(r.get(2)?),
                    "dialect": r.get::<_, String>(3)?,
                    "partner_id": r.get::<_, Option<String>>(4)?,
                    "remote_addr": r.get::<_, Option<String>>(5)?,
                    "received": {
                        "method": r.get::<_, String>(6)?,
                        "query": r.get::<_, String>(7)?,
                        "body": text(r.get(8)?),
                    },
                    "a": {
                        "number": r.get::<_, Option<String>>(9)?,
                        "caller_id": r.get::<_, Option<String>>(11)?,
                        "caller_id_real": r.get::<_, Option<String>>(26)?,
                    },
                    "b": {
                        "number": r.get::<_, Option<String>>(10)?,
                        "caller_id": r.get::<_, Option<String>>(12)?,
                        "caller_id_real": r.get::<_, Option<String>>(27)?,
                    },
                    "auth_ok": r.get::<_, Option<bool>>(13)?,
                    "provider": r.get::<_, Option<String>>(14)?,
                    "upstream_request": upstream.and_then(|s| serde_json::from_str::<Value>(&s).ok()),
                    "result": {
                        "status": r.get::<_, Option<u16>>(16)?,
                        "code": r.get::<_, Option<String>>(17)?,
                        "body": text(r.get(18)?),
                    },
                    "state": r.get::<_, String>(19)?,
                    "error": r.get::<_, Option<String>>(20)?,
                    "plan": r.get::<_, Option<String>>(21)?.and_then(|s| serde_json::from_str::<Value>(&s).ok()),
                    "reference": r.get::<_, Option<String>>(22)?,
                    "recording": r.get::<_, Option<String>>(23)?,
                    "guard": r.get::<_, Option<String>>(24)?,
                    "replay_of": r.get::<_, Option<String>>(25)?,
                }))
            },
        )
        .optional()?;
    let Some(mut call) = call else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT seq, event_id, at, kind, cause, state, detail FROM call_events WHERE call_id = ?1 ORDER BY seq",
    )?;
    let events = stmt
        .query_map([id], |r| {
            Ok(json!({
                "seq": r.get::<_, i64>(0)?,
                "id": r.get::<_, String>(1)?,
                "at": format_ms(r.get(2)?),
                "kind": r.get::<_, String>(3)?,
                "cause": r.get::<_, Option<i64>>(4)?,
                "state": r.get::<_, String>(5)?,
                "detail": r.get::<_, Option<String>>(6)?,
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    call["events"] = Value::Array(events);
    call["legs"] = Value::Array(legs::legs_json(conn, id)?);
    call["cdr"] = legs::cdr_json(conn, id)?.unwrap_or(Value::Null);
    Ok(Some(call))
}

/// One line of `c2cd calls list`.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub id: String,
    pub created_at: String,
    pub dialect: String,
    pub partner_id: Option<String>,
    pub a_number: Option<String>,
    pub b_number: Option<String>,
    pub state: String,
    pub result_status: Option<u16>,
}

/// Which calls a listing shows; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub partner: Option<String>,
    pub state: Option<String>,
    /// Created at or after (unix ms).
    pub since: Option<i64>,
    /// Created before (unix ms).
    pub until: Option<i64>,
    /// A canonical E.164 number on either side, or on any leg.
    pub number: Option<String>,
    /// Only calls older than this call id: the cursor of the next page.
    pub before: Option<String>,
}

/// The newest `limit` calls that pass `f`, newest first.
pub fn list(conn: &Connection, limit: usize, f: &Filter) -> rusqlite::Result<Vec<Summary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, created_at, dialect, partner_id, a_number, b_number, state, result_status FROM calls
         WHERE (?1 IS NULL OR partner_id = ?1) AND (?2 IS NULL OR state = ?2)
           AND (?3 IS NULL OR created_at >= ?3) AND (?4 IS NULL OR created_at < ?4)
           AND (?5 IS NULL OR a_number = ?5 OR b_number = ?5
                OR EXISTS (SELECT 1 FROM legs WHERE legs.call_id = calls.id AND legs.number = ?5))
           AND (?6 IS NULL OR id < ?6)
         ORDER BY id DESC LIMIT ?7",
    )?;
    let rows = stmt.query_map(
        params![
            f.partner,
            f.state,
            f.since,
            f.until,
            f.number,
            f.before,
            limit as i64
        ],
        |r| {
            Ok(Summary {
                id: r.get(0)?,
                created_at: format_ms(r.get(1)?),
                dialect: r.get(2)?,
                partner_id: r.get(3)?,
                a_number: r.get(4)?,
                b_number: r.get(5)?,
                state: r.get(6)?,
                result_status: r.get(7)?,
            })
        },
    )?;
    rows.collect()
}

/// The partner a call belongs to: `None` when there is no such call,
/// `Some(None)` when the request named no partner.
pub fn owner(conn: &Connection, id: &str) -> rusqlite::Result<Option<Option<String>>> {
    conn.prepare_cached("SELECT partner_id FROM calls WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

/// Calls per state, for `/metrics`.
pub fn count_by_state(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare("SELECT state, count(*) FROM calls GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Calls not in a terminal state.
pub fn count_in_progress(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        &format!("SELECT count(*) FROM calls WHERE {OPEN}"),
        [],
        |r| r.get(0),
    )
}

/// Calls not ended whose deadline is before `now`, oldest first, at most `limit`,
/// with the provider that was asked to place them.
pub fn overdue(
    conn: &Connection,
    now: i64,
    limit: usize,
) -> rusqlite::Result<Vec<(CallId, Option<String>)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, provider FROM calls WHERE {OPEN} AND deadline_at < ?1
         ORDER BY deadline_at LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now, limit as i64], |r| {
        Ok((r.get::<_, String>(0)?, r.get(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, provider) = row?;
        if let Some(id) = CallId::parse(&id) {
            out.push((id, provider));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(c: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = stmt.parameter_count();
        stmt.query_map(rusqlite::params_from_iter(vec![0; n]), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_queries_over_states_are_served_by_their_partial_indexes() {
        let c = crate::store::memory();
        let cases = [
            (
                format!("SELECT count(*) FROM calls WHERE {OPEN}"),
                "calls_open",
            ),
            (
                format!("SELECT id FROM calls WHERE {OPEN} AND deadline_at < ?1"),
                "calls_open",
            ),
            (
                format!("SELECT count(*) FROM calls WHERE partner_id = ?1 AND {LIVE}"),
                "calls_live_partner",
            ),
            (
                format!("SELECT count(*) FROM calls WHERE b_number = ?1 AND {LIVE}"),
                "calls_live_b",
            ),
            (
                "SELECT id FROM calls WHERE a_number = ?1 AND created_at >= ?2 AND refused = 0"
                    .to_string(),
                "calls_a_recent",
            ),
        ];
        for (sql, index) in cases {
            let plan = plan_of(&c, &sql);
            assert!(
                plan.iter()
                    .any(|s| s.contains(&format!("USING INDEX {index}"))),
                "{sql}: {plan:?}"
            );
        }
    }

    /// An IN list of more than two constants in a partial index's WHERE
    /// makes every write of a call build a temporary b-tree (schema step 11).
    #[test]
    fn writing_a_call_builds_no_temporary_btree() {
        let c = crate::store::memory();
        for sql in [
            "INSERT INTO calls (id, created_at, updated_at, dialect, method, received_query, state)
             VALUES ('x', 0, 0, 'xip', 'GET', '', 'accepted')",
            "UPDATE calls SET state = 'completed', updated_at = 1 WHERE id = 'x'",
        ] {
            let ops: Vec<String> = c
                .prepare(&format!("EXPLAIN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                !ops.iter().any(|op| op == "OpenEphemeral"),
                "{sql}: {ops:?}"
            );
        }
    }

    #[test]
    fn a_request_refused_on_arrival_is_marked_once_and_for_all() {
        let c = crate::store::memory();
        let refused = |id: CallId| -> i64 {
            c.query_row(
                "SELECT refused FROM calls WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .unwrap()
        };
        let placed = NewCall::for_test(0, 60_000);
        insert(&c, &placed, &[(Event::Originating, None)], None).unwrap();
        apply(&c, placed.id, &[(Event::Failed, None)], 1).unwrap();
        assert_eq!(refused(placed.id), 0, "a call that failed was placed");

        let stopped = NewCall::for_test(0, 60_000);
        insert(&c, &stopped, &[(Event::Rejected, Some("blocked"))], None).unwrap();
        assert_eq!(refused(stopped.id), 1);

        let later = NewCall::for_test(0, 60_000);
        insert(&c, &later, &[], None).unwrap();
        assert_eq!(refused(later.id), 0);
        apply(&c, later.id, &[(Event::Rejected, None)], 1).unwrap();
        assert_eq!(refused(later.id), 1);
    }
}
