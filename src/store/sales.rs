//! RoundTrip sales data: every submission is kept (`sales`), and a call's
//! current sales data is the one `call_sales` points at. A search matches a
//! call once; a submission by ID replaces the call's sales data, the earlier
//! ones staying in the history.
//!
//! Calls that can be matched are c2cd's own (not rejected: ANI is A's number,
//! Target B's, CallStart when the request came) and the PBX's, from CDRs
//! (`pbx_calls`). Both are searched through an index on (ANI, Target, start).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// How a submission names its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// By c2cd's call id.
    Id(String),
    /// The earliest call not yet matched from `ani` to `target` that started
    /// within `tolerance_ms` of `start_ms`; with `dnis`, a call whose DNIS is
    /// known must have that one.
    Search {
        ani: String,
        target: String,
        dnis: Option<String>,
        start_ms: i64,
        tolerance_ms: i64,
    },
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub name: String,
    pub price_cents: i64,
}

/// A submission as it is recorded.
#[derive(Debug, Clone, Default)]
pub struct Posted {
    pub received_at: i64,
    pub partner_id: Option<String>,
    pub username: Option<String>,
    pub remote_addr: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// What IsSale, Amount and Items were derived from the classic order, if
    /// one was posted.
    pub order: Option<Order>,
}

/// The classic `rs:Order`: payment, items and what they add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    pub payment: Option<String>,
    pub items: Vec<Item>,
}

impl Order {
    pub fn is_sale(&self) -> bool {
        !self.items.is_empty()
    }

    /// The items' prices added up; `None` past what an amount can hold.
    pub fn amount_cents(&self) -> Option<i64> {
        self.items
            .iter()
            .try_fold(0i64, |sum, i| sum.checked_add(i.price_cents))
    }
}

/// What became of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded as the call's sales data.
    Matched(String),
    /// No call by that ID, or none in the window.
    NotFound,
    /// Every call the search found has been matched already (the earliest).
    AlreadyMatched(String),
    /// The call's Target is not one of the restricted partner's.
    NotTheirs,
}

impl Outcome {
    /// The HTTP status the submission is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Matched(_) => 200,
            Outcome::NotFound => 404,
            Outcome::AlreadyMatched(_) => 409,
            Outcome::NotTheirs => 403,
        }
    }
}

/// Records a submission refused before any call was looked at.
pub fn refuse(conn: &Connection, p: &Posted, status: u16, error: &str) -> rusqlite::Result<i64> {
    insert(conn, p, None, None, status, Some(error))
}

/// Looks the call up, and records the submission with what became of it, in
/// the caller's transaction: two searches for one call cannot both match it.
/// `targets` limits a restricted partner to calls to those numbers.
pub fn submit(
    conn: &Connection,
    p: &Posted,
    key: &Key,
    targets: Option<&[String]>,
) -> rusqlite::Result<Outcome> {
    let outcome = match key {
        Key::Id(id) => match call_target(conn, id)? {
            None => Outcome::NotFound,
            Some(t) if targets.is_some_and(|ts| !ts.contains(&t)) => Outcome::NotTheirs,
            Some(_) => Outcome::Matched(id.clone()),
        },
        Key::Search { target, .. } if targets.is_some_and(|ts| !ts.contains(target)) => {
            Outcome::NotTheirs
        }
        Key::Search { .. } => match earliest(conn, key, true)? {
            Some(id) => Outcome::Matched(id),
            None => match earliest(conn, key, false)? {
                Some(id) => Outcome::AlreadyMatched(id),
                None => Outcome::NotFound,
            },
        },
    };
    let error = match &outcome {
        Outcome::Matched(_) => None,
        Outcome::NotFound => Some(match key {
            Key::Id(_) => "no call has this ID".to_string(),
            Key::Search { .. } => "Call Not Found: no call matches within the tolerance; retry later".to_string(),
        }),
        Outcome::AlreadyMatched(id) => Some(format!(
            "call {id}, the earliest that matches, already has sales data matched by search; send its ID to replace it"
        )),
        Outcome::NotTheirs => Some("the call's Target is not one of this partner's".to_string()),
    };
    let call = match &outcome {
        Outcome::Matched(id) => Some(id.as_str()),
        _ => None,
    };
    let sale = insert(conn, p, Some(key), call, outcome.status(), error.as_deref())?;
    if let Some(id) = call {
        conn.execute(
            "INSERT INTO call_sales (call_id, sale_id, matched_at, updated_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (call_id) DO UPDATE SET sale_id = excluded.sale_id, updated_at = excluded.updated_at",
            params![id, sale, p.received_at],
        )?;
    }
    Ok(outcome)
}

/// The Target of call `id` (c2cd's or the PBX's); `None` when there is none.
fn call_target(conn: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT b_number FROM calls WHERE id = ?1 AND refused = 0
         UNION ALL SELECT target FROM pbx_calls WHERE id = ?1",
        [id],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()
    .map(|t| t.map(Option::unwrap_or_default))
}

/// The earliest call a search finds (only those not yet matched, with
/// `unmatched`), however many the window holds.
fn earliest(conn: &Connection, key: &Key, unmatched: bool) -> rusqlite::Result<Option<String>> {
    let Key::Search {
        ani,
        target,
        dnis,
        start_ms,
        tolerance_ms,
    } = key
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM (
             SELECT id, created_at AS at FROM calls
              WHERE a_number = ?1 AND b_number = ?2 AND created_at BETWEEN ?3 AND ?4
                AND refused = 0
             UNION ALL
             SELECT id, started_at FROM pbx_calls
              WHERE ani = ?1 AND target = ?2 AND started_at BETWEEN ?3 AND ?4
                AND (?5 IS NULL OR dnis IS NULL OR dnis = ?5)
         ) AS found
         WHERE NOT ?6 OR NOT EXISTS (SELECT 1 FROM call_sales s WHERE s.call_id = found.id)
         ORDER BY at, id LIMIT 1",
    )?;
    stmt.query_row(
        params![
            ani,
            target,
            start_ms.saturating_sub(*tolerance_ms),
            start_ms.saturating_add(*tolerance_ms),
            dnis,
            unmatched
        ],
        |r| r.get(0),
    )
    .optional()
}

fn insert(
    conn: &Connection,
    p: &Posted,
    key: Option<&Key>,
    call: Option<&str>,
    status: u16,
    error: Option<&str>,
) -> rusqlite::Result<i64> {
    let (how, ani, target, dnis, start) = match key {
        None => ("", None, None, None, None),
        Some(Key::Id(_)) => ("id", None, None, None, None),
        Some(Key::Search {
            ani,
            target,
            dnis,
            start_ms,
            ..
        }) => (
            "search",
            Some(ani.as_str()),
            Some(target.as_str()),
            dnis.as_deref(),
            Some(*start_ms),
        ),
    };
    let order = p.order.as_ref();
    conn.execute(
        "INSERT INTO sales (received_at, partner_id, username, remote_addr, content_type, body, how,
                            ani, target, dnis, call_start, call_id, status, error, is_sale,
                            amount_cents, payment, items)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULLIF(?7, ''), ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            p.received_at,
            p.partner_id,
            p.username,
            p.remote_addr,
            p.content_type,
            p.body,
            how,
            ani,
            target,
            dnis,
            start,
            call,
            status,
            error,
            order.map(Order::is_sale),
            order.and_then(Order::amount_cents),
            order.and_then(|o| o.payment.clone()),
            order.map(|o| serde_json::to_string(&o.items).unwrap_or_default()),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// One submission, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct SaleRow {
    pub id: i64,
    pub received_at: String,
    pub partner_id: Option<String>,
    pub username: Option<String>,
    pub remote_addr: Option<String>,
    pub content_type: Option<String>,
    pub how: Option<String>,
    pub ani: Option<String>,
    pub target: Option<String>,
    pub dnis: Option<String>,
    pub call_start: Option<String>,
    pub call_id: Option<String>,
    pub status: u16,
    pub error: Option<String>,
    pub is_sale: Option<bool>,
    pub amount_cents: Option<i64>,
    pub payment: Option<String>,
    pub items: Option<serde_json::Value>,
    /// Whether this is the call's current sales data.
    pub current: bool,
    pub body: String,
}

/// The latest submissions, newest first: all, or a call's, or a partner's.
pub fn list(
    conn: &Connection,
    call_id: Option<&str>,
    partner_id: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<SaleRow>> {
    // One statement per filter, so that each walks its index.
    let filter = match (call_id, partner_id) {
        (Some(_), _) => "s.call_id = ?1 AND (?2 IS NULL OR s.partner_id = ?2)",
        (None, Some(_)) => "?1 IS NULL AND s.partner_id = ?2",
        (None, None) => "?1 IS NULL AND ?2 IS NULL",
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT s.id, s.received_at, s.partner_id, s.username, s.remote_addr, s.content_type, s.how,
                s.ani, s.target, s.dnis, s.call_start, s.call_id, s.status, s.error, s.is_sale,
                s.amount_cents, s.payment, s.items,
                EXISTS (SELECT 1 FROM call_sales cs WHERE cs.sale_id = s.id), s.body
           FROM sales s
          WHERE {filter}
          ORDER BY s.id DESC LIMIT ?3"
    ))?;
    let time = |ms: Option<i64>| ms.map(crate::core::format_ms);
    let rows = stmt.query_map(
        params![
            call_id,
            partner_id,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| {
            Ok(SaleRow {
                id: r.get(0)?,
                received_at: crate::core::format_ms(r.get(1)?),
                partner_id: r.get(2)?,
                username: r.get(3)?,
                remote_addr: r.get(4)?,
                content_type: r.get(5)?,
                how: r.get(6)?,
                ani: r.get(7)?,
                target: r.get(8)?,
                dnis: r.get(9)?,
                call_start: time(r.get(10)?),
                call_id: r.get(11)?,
                status: r.get(12)?,
                error: r.get(13)?,
                is_sale: r.get(14)?,
                amount_cents: r.get(15)?,
                payment: r.get(16)?,
                items: r
                    .get::<_, Option<String>>(17)?
                    .and_then(|s| serde_json::from_str(&s).ok()),
                current: r.get(18)?,
                body: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(19)?).into_owned(),
            })
        },
    )?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::pbx;

    /// Review finding: a window with more calls than a page still finds its
    /// earliest unmatched one, and 409 only when every one is matched.
    #[test]
    fn the_earliest_unmatched_call_is_found_however_many_the_window_holds() {
        let conn = crate::store::memory();
        let at = 1_700_000_000_000;
        for i in 0..150 {
            let cdr = pbx::Cdr {
                source: "api".into(),
                unique_id: i.to_string(),
                ani: "+13105550100".into(),
                target: "+18881234567".into(),
                dnis: None,
                started_at: at + i * 1000,
                answered_at: None,
                ended_at: None,
                disposition: None,
                billable_s: None,
                received: "{}".into(),
            };
            pbx::ingest(&conn, &cdr, at).unwrap();
        }
        let key = Key::Search {
            ani: "+13105550100".into(),
            target: "+18881234567".into(),
            dnis: None,
            start_ms: at,
            tolerance_ms: 900_000,
        };
        let posted = Posted {
            received_at: at,
            ..Posted::default()
        };
        let mut matched = std::collections::HashSet::new();
        for _ in 0..150 {
            match submit(&conn, &posted, &key, None).unwrap() {
                Outcome::Matched(id) => assert!(matched.insert(id)),
                o => panic!("{o:?} after {} matches", matched.len()),
            }
        }
        assert!(matches!(
            submit(&conn, &posted, &key, None).unwrap(),
            Outcome::AlreadyMatched(_)
        ));
    }
}
