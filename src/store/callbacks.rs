//! The callback outbox: one row per event a partner is to be told about, written
//! in the same transaction as the event, delivered by `notify`, every attempt
//! recorded.

use std::collections::HashSet;

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
            next_at, state, method, headers, receiver, head)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 'pending', ?10, ?11, ?12,
            NOT EXISTS (SELECT 1 FROM callbacks WHERE call_id = ?1 AND state = 'pending'))",
    )?;
    for p in format.format(n) {
        let url = p.url.as_deref().unwrap_or(target.url);
        let headers =
            (!p.headers.is_empty()).then(|| serde_json::to_string(&p.headers).unwrap_or_default());
        stmt.execute(params![
            n.call_id.to_string(),
            n.seq,
            n.event_id,
            target.partner_id,
            url,
            format.name(),
            p.content_type,
            p.body,
            n.at,
            p.method.as_deref().unwrap_or("POST"),
            headers,
            receiver(url),
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
    /// See [`receiver`].
    pub receiver: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub attempts: i64,
    pub created_at: i64,
    pub method: String,
    pub headers: Vec<(String, String)>,
}

/// The receiver of a callback URL, `scheme://host:port` in lower case: the
/// outbox takes callbacks receiver by receiver, each with its own limit.
/// (Schema step 12 computes the same in SQL for the rows before it.)
pub fn receiver(url: &str) -> String {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after + i);
    url[..end].to_ascii_lowercase()
}

/// The receivers with pending callbacks, at most `limit`: one index seek each
/// (a loose scan of `callbacks_due`), however many callbacks wait.
pub fn receivers(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE r(x) AS (
             SELECT (SELECT min(receiver) FROM callbacks WHERE state = 'pending' AND head = 1)
             UNION ALL
             SELECT (SELECT min(receiver) FROM callbacks WHERE state = 'pending' AND head = 1 AND receiver > x)
             FROM r WHERE x IS NOT NULL)
         SELECT x FROM r WHERE x IS NOT NULL LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| r.get(0))?;
    rows.collect()
}

/// Up to `want` callbacks to `receiver` due at `now`, earliest due first, each
/// its call's head (its first pending callback: the only one that may be
/// attempted, so that a call's callbacks arrive in order), passing over those
/// in `skip` (already under way).
pub fn due(
    conn: &Connection,
    receiver: &str,
    now: i64,
    want: usize,
    skip: &HashSet<i64>,
) -> rusqlite::Result<Vec<Due>> {
    // The ids from the index alone, those under way passed over; then the rows.
    let mut ids = Vec::with_capacity(want);
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM callbacks
         WHERE state = 'pending' AND head = 1 AND receiver = ?1 AND next_at <= ?2
         ORDER BY next_at, id LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![receiver, now, (want + skip.len()) as i64])?;
    while ids.len() < want {
        let Some(r) = rows.next()? else { break };
        let id: i64 = r.get(0)?;
        if !skip.contains(&id) {
            ids.push(id);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, call_id, event_id, partner_id, url, content_type, body, attempts, created_at, method, headers
         FROM callbacks WHERE id = ?1",
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut rows = stmt.query([id])?;
        let Some(r) = rows.next()? else { continue };
        out.push(Due {
            id,
            call_id: r.get(1)?,
            event_id: r.get(2)?,
            partner_id: r.get(3)?,
            url: r.get(4)?,
            receiver: receiver.to_string(),
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

/// One attempt of a callback, and what follows from it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub call: String,
    pub id: i64,
    /// 1, 2, …
    pub n: i64,
    pub at: i64,
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub next: Next,
}

/// Records an attempt and what follows from it.
pub fn record_attempt(conn: &Connection, a: &Attempt) -> rusqlite::Result<()> {
    let Attempt {
        ref call,
        id,
        n,
        at,
        status,
        latency_ms,
        ref error,
        next,
    } = *a;
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
         delivered_at = coalesce(?7, delivered_at), head = (?3 = 'pending' AND head = 1) WHERE id = ?1",
    )?
    .execute(params![id, n, state, next_at, status, error, delivered])?;
    if !matches!(next, Next::Retry(_)) {
        // Done with: the call's next callback may go.
        conn.prepare_cached(
            "UPDATE callbacks SET head = 1
             WHERE id = (SELECT min(id) FROM callbacks WHERE call_id = ?1 AND state = 'pending') AND head = 0",
        )?
        .execute([call])?;
    }
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
    let url: Option<String> = conn
        .query_row("SELECT url FROM callbacks WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(url) = url else { return Ok(false) };
    // It is its call's head only when the call has no other: one that is
    // pending may be under way, and the call's next callback goes after it
    // (record_attempt makes the first pending one the head).
    conn.execute(
        "UPDATE callbacks SET state = 'pending', next_at = ?2, created_at = ?2, receiver = ?3,
            head = (state = 'pending' AND head = 1) OR NOT EXISTS (SELECT 1 FROM callbacks p
                WHERE p.call_id = callbacks.call_id AND p.state = 'pending' AND p.head = 1 AND p.id <> callbacks.id)
         WHERE id = ?1",
        params![id, now, receiver(&url)],
    )?;
    Ok(true)
}
