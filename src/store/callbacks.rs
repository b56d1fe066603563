//! The callback outbox: one row per event a partner is to be told about, written
//! in the same transaction as the event, delivered by `notify`, every attempt
//! recorded.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::core::format_ms;
use crate::dialect::{self, Notice};

/// Where a call's events go, for which partner, and in which dialect's format.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub url: &'a str,
    pub partner_id: Option<&'a str>,
    pub dialect: &'a str,
    pub memo: Option<&'a str>,
}

/// Queues the callbacks of one event, formatted as the call's dialect reports
/// it: none when its format does not report the event, one or more in order.
pub fn enqueue(conn: &Connection, target: Target, n: &Notice) -> rusqlite::Result<()> {
    let format = dialect::callback_format(target.dialect);
    let mut stmt = conn.prepare_cached(
        "INSERT INTO callbacks (call_id, seq, event_id, partner_id, url, format, content_type, body, created_at,
            next_at, state, method, headers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 'pending', ?10, ?11)",
    )?;
    for p in format.format(n) {
        let headers =
            (!p.headers.is_empty()).then(|| serde_json::to_string(&p.headers).unwrap_or_default());
        stmt.execute(params![
            n.call_id.to_string(),
            n.seq,
            n.event_id,
            target.partner_id,
            p.url.as_deref().unwrap_or(target.url),
            format.name(),
            p.content_type,
            p.body,
            n.at,
            p.method.as_deref().unwrap_or("POST"),
            headers,
        ])?;
    }
    Ok(())
}

/// A callback due for an attempt.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub call_id: String,
    pub event_id: String,
    pub partner_id: Option<String>,
    pub url: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub attempts: i64,
    pub created_at: i64,
    pub method: String,
    pub headers: Vec<(String, String)>,
}

/// Up to `want` callbacks due at `now`, for each call only its earliest
/// pending one (by creation, which is event order and, within an event, the
/// format's order), so that a call's callbacks arrive in order. `take(id, url)`
/// says whether to take a due callback; those it passes over (already under
/// way, or their receiver busy) are skipped, at most `scan` of them in all, so
/// that one busy receiver does not hide the others' callbacks.
pub fn due(
    conn: &Connection,
    now: i64,
    want: usize,
    scan: usize,
    mut take: impl FnMut(i64, &str) -> bool,
) -> rusqlite::Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, url, call_id, event_id, partner_id, content_type, body, attempts, created_at, method, headers
         FROM callbacks c
         WHERE state = 'pending' AND next_at <= ?1
           AND NOT EXISTS (SELECT 1 FROM callbacks p WHERE p.call_id = c.call_id AND p.state = 'pending' AND p.id < c.id)
         ORDER BY next_at, id LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![now, (want + scan) as i64])?;
    let mut out = Vec::new();
    while out.len() < want {
        let Some(r) = rows.next()? else { break };
        let (id, url): (i64, String) = (r.get(0)?, r.get(1)?);
        if !take(id, &url) {
            continue;
        }
        out.push(Due {
            id,
            url,
            call_id: r.get(2)?,
            event_id: r.get(3)?,
            partner_id: r.get(4)?,
            content_type: r.get(5)?,
            body: r.get(6)?,
            attempts: r.get(7)?,
            created_at: r.get(8)?,
            method: r.get(9)?,
            headers: r
                .get::<_, Option<String>>(10)?
                .and_then(|h| serde_json::from_str(&h).ok())
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// What an attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Try again at this time (unix ms).
    Retry(i64),
    /// Given up: out of attempts or age, or refused (host not allowed).
    Dead,
}

/// Records attempt number `n` of callback `id` and what follows from it.
#[allow(clippy::too_many_arguments)]
pub fn record_attempt(
    conn: &Connection,
    id: i64,
    n: i64,
    at: i64,
    status: Option<u16>,
    latency_ms: i64,
    error: Option<&str>,
    next: Next,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO callback_attempts (callback_id, n, at, status, latency_ms, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![id, n, at, status, latency_ms, error])?;
    let (state, next_at, delivered) = match next {
        Next::Delivered => ("delivered", at, Some(at)),
        Next::Retry(t) => ("pending", t, None),
        Next::Dead => ("dead", at, None),
    };
    conn.prepare_cached(
        "UPDATE callbacks SET attempts = ?2, state = ?3, next_at = ?4, last_status = ?5, last_error = ?6,
         delivered_at = coalesce(?7, delivered_at) WHERE id = ?1",
    )?
    .execute(params![id, n, state, next_at, status, error, delivered])?;
    Ok(())
}

/// A call's callbacks with their attempts, as the admin API shows them.
pub fn for_call(conn: &Connection, call_id: &str) -> rusqlite::Result<Option<Vec<Value>>> {
    let exists: Option<i64> = conn
        .query_row("SELECT 1 FROM calls WHERE id = ?1", [call_id], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    let mut stmt = conn.prepare(
        "SELECT id, seq, event_id, url, format, body, created_at, next_at, attempts, state, last_status, last_error,
                delivered_at, content_type
         FROM callbacks WHERE call_id = ?1 ORDER BY id",
    )?;
    let mut attempts = conn.prepare(
        "SELECT n, at, status, latency_ms, error FROM callback_attempts WHERE callback_id = ?1 ORDER BY n",
    )?;
    let rows = stmt
        .query_map([call_id], |r| {
            let body: Vec<u8> = r.get(5)?;
            Ok((
                r.get::<_, i64>(0)?,
                json!({
                    "id": r.get::<_, i64>(0)?,
                    "seq": r.get::<_, i64>(1)?,
                    "event_id": r.get::<_, String>(2)?,
                    "url": r.get::<_, String>(3)?,
                    "format": r.get::<_, String>(4)?,
                    "content_type": r.get::<_, String>(13)?,
                    // JSON bodies as JSON; a dialect's other formats as text.
                    "body": serde_json::from_slice::<Value>(&body)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
                    "created_at": format_ms(r.get(6)?),
                    "next_at": format_ms(r.get(7)?),
                    "attempts": r.get::<_, i64>(8)?,
                    "state": r.get::<_, String>(9)?,
                    "last_status": r.get::<_, Option<i64>>(10)?,
                    "last_error": r.get::<_, Option<String>>(11)?,
                    "delivered_at": r.get::<_, Option<i64>>(12)?.map(format_ms),
                }),
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, mut v) in rows {
        let list = attempts
            .query_map([id], |r| {
                Ok(json!({
                    "n": r.get::<_, i64>(0)?,
                    "at": format_ms(r.get(1)?),
                    "status": r.get::<_, Option<i64>>(2)?,
                    "latency_ms": r.get::<_, i64>(3)?,
                    "error": r.get::<_, Option<String>>(4)?,
                }))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        v["attempts_log"] = Value::Array(list);
        out.push(v);
    }
    Ok(Some(out))
}

/// One line of `c2cd callbacks list`.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub id: i64,
    pub call_id: String,
    pub seq: i64,
    pub event: String,
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub next_at: String,
    pub url: String,
}

/// The newest callbacks, newest first, optionally of one call or state.
pub fn list(
    conn: &Connection,
    limit: usize,
    call: Option<&str>,
    state: Option<&str>,
) -> rusqlite::Result<Vec<Summary>> {
    let mut stmt = conn.prepare(
        "SELECT c.id, c.call_id, c.seq, e.kind, c.state, c.attempts, c.last_status, c.next_at, c.url
         FROM callbacks c JOIN call_events e ON e.call_id = c.call_id AND e.seq = c.seq
         WHERE (?1 IS NULL OR c.call_id = ?1) AND (?2 IS NULL OR c.state = ?2)
         ORDER BY c.id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![call, state, limit as i64], |r| {
        Ok(Summary {
            id: r.get(0)?,
            call_id: r.get(1)?,
            seq: r.get(2)?,
            event: r.get(3)?,
            state: r.get(4)?,
            attempts: r.get(5)?,
            last_status: r.get(6)?,
            next_at: format_ms(r.get(7)?),
            url: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// One callback with its attempts.
pub fn show(conn: &Connection, id: i64) -> rusqlite::Result<Option<Value>> {
    let call: Option<String> = conn
        .query_row("SELECT call_id FROM callbacks WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(call) = call else { return Ok(None) };
    Ok(for_call(conn, &call)?.and_then(|list| list.into_iter().find(|v| v["id"] == id)))
}

/// Queues callback `id` to be sent again now, whatever its state; returns false
/// when there is no such callback. Its attempts so far stay recorded.
pub fn replay(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE callbacks SET state = 'pending', next_at = ?2, created_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(n == 1)
}
