//! Numbered schema migrations. `PRAGMA user_version` holds the number applied;
//! each step runs in its own transaction. Never edit a shipped step: add one.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: partners, calls and their events.
    r#"
    CREATE TABLE partners (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        dialects    TEXT NOT NULL,           -- comma-separated
        provider    TEXT NOT NULL,
        prompt_set  TEXT NOT NULL,
        source      TEXT NOT NULL,
        time_limit  INTEGER NOT NULL,
        enabled     INTEGER NOT NULL,        -- 0 once removed from the config
        created_at  INTEGER NOT NULL,        -- unix ms, UTC
        updated_at  INTEGER NOT NULL
    ) STRICT;

    -- One row per request that reached a dialect, rejected ones included.
    CREATE TABLE calls (
        id               TEXT PRIMARY KEY,   -- UUIDv7, time-ordered
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        dialect          TEXT NOT NULL,
        partner_id       TEXT,               -- as sent, known or not
        remote_addr      TEXT,
        method           TEXT NOT NULL,
        received_query   TEXT NOT NULL,      -- the query string as received
        received_body    BLOB,               -- the body as received (bounded by max_body_bytes)
        a_number         TEXT,               -- canonical E.164 with +
        b_number         TEXT,
        a_cid            TEXT,               -- what A is shown
        b_cid            TEXT,               -- what B is shown
        auth_ok          INTEGER,            -- NULL when not checked
        provider         TEXT,
        upstream_request TEXT,               -- JSON: what was sent to the provider
        result_status    INTEGER,            -- HTTP status answered to the partner
        result_code      TEXT,               -- c2cd's result code when c2cd answered itself
        result_body      BLOB,               -- the body answered to the partner
        state            TEXT NOT NULL,
        error            TEXT                -- why it was rejected or failed
    ) STRICT;
    CREATE INDEX calls_partner ON calls (partner_id, created_at);
    CREATE INDEX calls_state ON calls (state) WHERE state NOT IN ('rejected', 'handed_off', 'completed', 'failed');

    CREATE TABLE call_events (
        call_id   TEXT NOT NULL REFERENCES calls (id),
        seq       INTEGER NOT NULL,          -- 1, 2, … per call
        event_id  TEXT NOT NULL,             -- UUIDv7, unique by construction
        at        INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        cause     INTEGER,                   -- Q.850
        state     TEXT NOT NULL,             -- the call's state after the event
        detail    TEXT,
        PRIMARY KEY (call_id, seq)
    ) STRICT, WITHOUT ROWID;
    "#,
];

pub const VERSION: i64 = MIGRATIONS.len() as i64;

fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

pub fn check_version(conn: &Connection) -> Result<i64, StoreError> {
    let found = version(conn)?;
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: VERSION,
        });
    }
    Ok(found)
}

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found = check_version(conn)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let step = i as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step)?;
        tx.commit()?;
        log::info!("database migrated to schema version {step}");
    }
    Ok(())
}
