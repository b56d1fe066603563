//! The `calls` and `call_events` tables: every request that reached a dialect, what
//! was sent upstream, what was answered, and how the call went.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::core::call::{self, CallState, Event};
use crate::core::{format_ms, CallId};

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
    pub upstream_request: Option<Value>,
}

/// Inserts the call in state `requested` with its first event, `event`
/// (`Originating` or `Rejected`), and `error` for a rejection.
pub fn insert(
    conn: &Connection,
    c: &NewCall,
    event: &Event,
    error: Option<&str>,
) -> rusqlite::Result<CallState> {
    let upstream = c.upstream_request.as_ref().map(|v| v.to_string());
    conn.prepare_cached(
        "INSERT INTO calls (id, created_at, updated_at, dialect, partner_id, remote_addr, method, received_query,
            received_body, a_number, b_number, a_cid, b_cid, auth_ok, provider, upstream_request, state, error)
         VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 'requested', ?16)",)?
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
            upstream,
            error,
        ])?;
    Ok(apply(conn, c.id, event, c.at, error)?.unwrap_or(CallState::Requested))
}

/// Applies `event` to the call: stores the event with the next sequence number
/// and moves the call's state. An illegal transition is logged and not applied
/// (`Ok(None)`).
pub fn apply(
    conn: &Connection,
    id: CallId,
    event: &Event,
    at: i64,
    detail: Option<&str>,
) -> rusqlite::Result<Option<CallState>> {
    let id_s = id.to_string();
    let Some((state_s, seq)): Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT state, (SELECT coalesce(max(seq), 0) FROM call_events WHERE call_id = ?1) FROM calls WHERE id = ?1",
        )?
        .query_row([&id_s], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
    else {
        log::warn!("call {id}: event {} for an unknown call, ignored", event.kind());
        return Ok(None);
    };
    let state = CallState::parse(&state_s).unwrap_or(CallState::Requested);
    let Some(to) = call::next(state, event) else {
        log::warn!(
            "call {id}: illegal transition {state} --{}--> refused",
            event.kind()
        );
        return Ok(None);
    };
    conn.prepare_cached(
        "INSERT INTO call_events (call_id, seq, event_id, at, kind, cause, state, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![id_s, seq + 1, CallId::new().to_string(), at, event.kind(), event.cause(), to.as_str(), detail])?;
    conn.prepare_cached("UPDATE calls SET state = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id_s, to.as_str(), at])?;
    Ok(Some(to))
}

/// Records the answer given to the partner.
pub fn set_result(
    conn: &Connection,
    id: CallId,
    at: i64,
    status: u16,
    code: Option<&str>,
    body: &[u8],
    error: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE calls SET result_status = ?2, result_code = ?3, result_body = ?4, error = coalesce(?5, error), updated_at = ?6 WHERE id = ?1",
    )?
    .execute(params![id.to_string(), status, code, body, error, at])?;
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
                    result_body, state, error
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
                    "a": { "number": r.get::<_, Option<String>>(9)?, "caller_id": r.get::<_, Option<String>>(11)? },
                    "b": { "number": r.get::<_, Option<String>>(10)?, "caller_id": r.get::<_, Option<String>>(12)? },
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

/// The newest `limit` calls, newest first, optionally of one partner or state.
pub fn list(
    conn: &Connection,
    limit: usize,
    partner: Option<&str>,
    state: Option<&str>,
) -> rusqlite::Result<Vec<Summary>> {
    let mut stmt = conn.prepare(
        "SELECT id, created_at, dialect, partner_id, a_number, b_number, state, result_status FROM calls
         WHERE (?1 IS NULL OR partner_id = ?1) AND (?2 IS NULL OR state = ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![partner, state, limit as i64], |r| {
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
    })?;
    rows.collect()
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
        "SELECT count(*) FROM calls WHERE state NOT IN ('rejected', 'handed_off', 'completed', 'failed')",
        [],
        |r| r.get(0),
    )
}
