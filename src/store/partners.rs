//! The `partners` table: the partners of the config, synced at start and on
//! reload. A partner removed from the config is disabled, never deleted, so that
//! its calls keep their meaning.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::config::Partner;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub added: usize,
    pub updated: usize,
    pub disabled: usize,
}

/// Makes the table match `partners`; returns what changed.
pub fn sync(conn: &Connection, partners: &[Partner], now: i64) -> rusqlite::Result<SyncReport> {
    let mut report = SyncReport::default();
    for p in partners {
        let dialects = p
            .dialects
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let existing: Option<(String, String, String, String, String, i64, bool)> = conn
            .query_row(
                "SELECT name, dialects, provider, prompt_set, source, time_limit, enabled FROM partners WHERE id = ?1",
                [&p.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
            )
            .optional()?;
        let wanted = (
            p.name.clone(),
            dialects.clone(),
            p.route.join(","),
            p.prompt_set.clone(),
            p.source.clone(),
            i64::from(p.time_limit),
            p.enabled,
        );
        match existing {
            None => {
                conn.execute(
                    "INSERT INTO partners (id, name, dialects, provider, prompt_set, source, time_limit, enabled, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                    params![p.id, p.name, dialects, p.route.join(","), p.prompt_set, p.source, p.time_limit, p.enabled, now],
                )?;
                report.added += 1;
            }
            Some(row) if row != wanted => {
                conn.execute(
                    "UPDATE partners SET name = ?2, dialects = ?3, provider = ?4, prompt_set = ?5, source = ?6,
                     time_limit = ?7, enabled = ?8, updated_at = ?9 WHERE id = ?1",
                    params![p.id, p.name, dialects, p.route.join(","), p.prompt_set, p.source, p.time_limit, p.enabled, now],
                )?;
                report.updated += 1;
            }
            Some(_) => {}
        }
    }
    let mut stmt = conn.prepare("SELECT id FROM partners WHERE enabled = 1")?;
    let enabled: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in enabled {
        if !partners.iter().any(|p| p.id == id) {
            conn.execute(
                "UPDATE partners SET enabled = 0, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            report.disabled += 1;
        }
    }
    Ok(report)
}

/// Whether the database knows `id` as an enabled partner that may use `dialect`.
pub fn is_enabled_for(conn: &Connection, id: &str, dialect: &str) -> rusqlite::Result<bool> {
    let row: Option<(bool, String)> = conn
        .prepare_cached("SELECT enabled, dialects FROM partners WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(matches!(row, Some((true, d)) if d.split(',').any(|x| x == dialect)))
}

#[derive(Debug, Serialize)]
pub struct PartnerRow {
    pub id: String,
    pub name: String,
    pub dialects: String,
    pub provider: String,
    pub enabled: bool,
    pub calls: i64,
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<PartnerRow>> {
    let mut stmt = conn.prepare(
        "SELECT p.id, p.name, p.dialects, p.provider, p.enabled,
                (SELECT count(*) FROM calls c WHERE c.partner_id = p.id)
         FROM partners p ORDER BY p.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PartnerRow {
            id: r.get(0)?,
            name: r.get(1)?,
            dialects: r.get(2)?,
            provider: r.get(3)?,
            enabled: r.get(4)?,
            calls: r.get(5)?,
        })
    })?;
    rows.collect()
}
