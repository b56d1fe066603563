//! Calls the PBX handled without c2cd, from its CDRs: AMI `Cdr` events and
//! `POST /v1/cdrs`. Each gets an id of c2cd's, so that RoundTrip sales data can
//! be matched to it like to c2cd's own calls. Ingest is idempotent on the
//! CDR's own id within its source.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// One CDR, as c2cd keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdr {
    /// `ami:<provider>` or `api`.
    pub source: String,
    /// The CDR's own id (Asterisk's UniqueID).
    pub unique_id: String,
    /// E.164.
    pub ani: String,
    pub target: String,
    pub dnis: Option<String>,
    pub started_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub disposition: Option<String>,
    pub billable_s: Option<i64>,
    /// The CDR as received, JSON.
    pub received: String,
}

/// What ingesting one CDR did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ingested {
    /// c2cd's id for the call.
    pub id: String,
    pub unique_id: String,
    /// false when the CDR had been ingested before.
    pub new: bool,
}

/// Ingests `cdr` unless its source already sent it; either way returns the
/// call's id.
pub fn ingest(conn: &Connection, cdr: &Cdr, now: i64) -> rusqlite::Result<Ingested> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT id FROM pbx_calls WHERE source = ?1 AND unique_id = ?2",
            params![cdr.source, cdr.unique_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(Ingested {
            id,
            unique_id: cdr.unique_id.clone(),
            new: false,
        });
    }
    let id = crate::core::CallId::new().to_string();
    conn.execute(
        "INSERT INTO pbx_calls (id, source, unique_id, ani, target, dnis, started_at, answered_at,
                                ended_at, disposition, billable_s, received, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            id,
            cdr.source,
            cdr.unique_id,
            cdr.ani,
            cdr.target,
            cdr.dnis,
            cdr.started_at,
            cdr.answered_at,
            cdr.ended_at,
            cdr.disposition,
            cdr.billable_s,
            cdr.received,
            now,
        ],
    )?;
    Ok(Ingested {
        id,
        unique_id: cdr.unique_id.clone(),
        new: true,
    })
}
