//! Numbered schema migrations. `PRAGMA user_version` holds the number applied;
//! each step runs in its own transaction. Never edit a shipped step: add one.

use std::path::PathBuf;

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
    // 2: legs (one row per attempt to reach a participant), CDRs, call deadlines.
    r#"
    -- When a call that has not ended is reconciled: time limit plus grace.
    ALTER TABLE calls ADD COLUMN deadline_at INTEGER;
    -- The calls not ended, by deadline: what the reconciler looks at. (Replaces the
    -- v1 index by state, which did not know the state `lost`.)
    DROP INDEX calls_state;
    CREATE INDEX calls_open ON calls (deadline_at)
        WHERE state NOT IN ('rejected', 'handed_off', 'completed', 'failed', 'lost');

    CREATE TABLE legs (
        call_id     TEXT NOT NULL REFERENCES calls (id),
        side        TEXT NOT NULL,           -- 'a' (called first) or 'b'
        attempt     INTEGER NOT NULL,        -- 1, 2, … (retries)
        number      TEXT,                    -- canonical E.164
        state       TEXT NOT NULL,
        cause       INTEGER,                 -- Q.850
        sip_code    INTEGER,
        created_at  INTEGER NOT NULL,
        ringing_at  INTEGER,
        answered_at INTEGER,
        ended_at    INTEGER,
        PRIMARY KEY (call_id, side, attempt)
    ) STRICT, WITHOUT ROWID;

    -- One record per call that was placed and ended, written with its last event.
    CREATE TABLE cdrs (
        call_id     TEXT PRIMARY KEY REFERENCES calls (id),
        partner_id  TEXT,
        a_number    TEXT,
        b_number    TEXT,
        state       TEXT NOT NULL,           -- completed, failed or lost
        cause       INTEGER,                 -- Q.850 of the event that ended the call
        started_at  INTEGER NOT NULL,        -- when the call was requested
        bridged_at  INTEGER,
        ended_at    INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,        -- requested to ended
        billable_s  INTEGER NOT NULL         -- bridged to ended, rounded up
    ) STRICT;                                -- its legs: the legs table, final by then
    "#,
    // 3: the callback outbox and every delivery attempt.
    r#"
    -- Where a call's events are reported, when its partner wants them.
    ALTER TABLE calls ADD COLUMN callback_url TEXT;

    -- One row per event to report, written in the event's own transaction.
    CREATE TABLE callbacks (
        id           INTEGER PRIMARY KEY,    -- creation order
        call_id      TEXT NOT NULL REFERENCES calls (id),
        seq          INTEGER NOT NULL,       -- the event's sequence number in its call
        event_id     TEXT NOT NULL,
        partner_id   TEXT,
        url          TEXT NOT NULL,
        format       TEXT NOT NULL,          -- 'native' (JSON)
        body         BLOB NOT NULL,
        created_at   INTEGER NOT NULL,
        next_at      INTEGER NOT NULL,       -- when the next attempt is due
        attempts     INTEGER NOT NULL DEFAULT 0,
        state        TEXT NOT NULL,          -- pending, delivered or dead
        last_status  INTEGER,
        last_error   TEXT,
        delivered_at INTEGER
    ) STRICT;
    CREATE INDEX callbacks_due ON callbacks (next_at) WHERE state = 'pending';
    CREATE INDEX callbacks_call ON callbacks (call_id, seq);

    CREATE TABLE callback_attempts (
        callback_id INTEGER NOT NULL REFERENCES callbacks (id),
        n           INTEGER NOT NULL,        -- 1, 2, …
        at          INTEGER NOT NULL,
        status      INTEGER,                 -- HTTP status, when one came back
        latency_ms  INTEGER NOT NULL,
        error       TEXT,
        PRIMARY KEY (callback_id, n)
    ) STRICT, WITHOUT ROWID;
    "#,
    r#"
    -- What the partner asked to be dialled (core::plan::CallPlan as JSON): sides,
    -- participants, strategies, retries, ring timeouts, time limit, recording.
    ALTER TABLE calls ADD COLUMN plan TEXT;
    -- The partner's own reference for the call, returned in its callbacks.
    ALTER TABLE calls ADD COLUMN memo TEXT;
    -- Where the call's recording is, once the provider reports one.
    ALTER TABLE calls ADD COLUMN recording TEXT;
    ALTER TABLE cdrs ADD COLUMN recording TEXT;
    -- Formats other than native JSON (a dialect's own) send other media types.
    ALTER TABLE callbacks ADD COLUMN content_type TEXT NOT NULL DEFAULT 'application/json';
    "#,
    r#"
    -- What a dialect keeps with a call for its callbacks (JSON): Spokn's userid,
    -- Airtel's callback URLs with their event types, methods and headers.
    ALTER TABLE calls ADD COLUMN dialect_data TEXT;
    -- How a callback is sent, when its dialect says: Airtel's callBackURLs each
    -- have a method and headers.
    ALTER TABLE callbacks ADD COLUMN method TEXT NOT NULL DEFAULT 'POST';
    ALTER TABLE callbacks ADD COLUMN headers TEXT;        -- JSON [[name, value], …]
    "#,
    r#"
    -- RoundTrip matches a sale to a call by ANI (A), Target (B) and CallStart.
    CREATE INDEX calls_roundtrip ON calls (a_number, b_number, created_at)
        WHERE state != 'rejected';

    -- Calls the PBX handled without c2cd, from CDRs (AMI Cdr events, POST
    -- /v1/cdrs): RoundTrip can match sales to them too.
    CREATE TABLE pbx_calls (
        id          TEXT PRIMARY KEY,        -- UUIDv7, c2cd's id for the call
        source      TEXT NOT NULL,           -- 'ami:<provider>' or 'api'
        unique_id   TEXT NOT NULL,           -- the CDR's own id
        ani         TEXT NOT NULL,           -- E.164
        target      TEXT NOT NULL,
        dnis        TEXT,
        started_at  INTEGER NOT NULL,
        answered_at INTEGER,
        ended_at    INTEGER,
        disposition TEXT,
        billable_s  INTEGER,
        received    TEXT NOT NULL,           -- the CDR as received (JSON)
        created_at  INTEGER NOT NULL,
        UNIQUE (source, unique_id)
    ) STRICT;
    CREATE INDEX pbx_calls_roundtrip ON pbx_calls (ani, target, started_at);

    -- Every RoundTrip submission, answered or refused: the history.
    CREATE TABLE sales (
        id           INTEGER PRIMARY KEY,
        received_at  INTEGER NOT NULL,
        partner_id   TEXT,                   -- the partner whose credentials matched
        username     TEXT,                   -- the user that tried (never the password)
        remote_addr  TEXT,
        content_type TEXT,
        body         BLOB NOT NULL,          -- as received: the supplemental data whole
        how          TEXT,                   -- 'id' or 'search'
        ani          TEXT,
        target       TEXT,
        dnis         TEXT,
        call_start   INTEGER,                -- the posted CallStart, unix ms
        call_id      TEXT,                   -- the call it was matched to
        status       INTEGER NOT NULL,       -- the HTTP status answered
        error        TEXT,
        is_sale      INTEGER,
        amount_cents INTEGER,
        payment      TEXT,
        items        TEXT                    -- JSON [{name, price_cents}, …]
    ) STRICT;
    CREATE INDEX sales_received ON sales (received_at);
    CREATE INDEX sales_call ON sales (call_id, id) WHERE call_id IS NOT NULL;

    -- A call's current sales data: matched once by search, replaced by ID.
    CREATE TABLE call_sales (
        call_id    TEXT PRIMARY KEY,
        sale_id    INTEGER NOT NULL REFERENCES sales (id),
        matched_at INTEGER NOT NULL,         -- when first matched
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX call_sales_sale ON call_sales (sale_id);
    CREATE INDEX sales_partner ON sales (partner_id, id);

    -- The days `c2cd export` wrote for media agencies: none twice, none lost.
    CREATE TABLE exports (
        day        TEXT PRIMARY KEY,         -- YYYY-MM-DD in the export time zone
        since      INTEGER NOT NULL,         -- the window, unix ms
        until      INTEGER NOT NULL,
        calls      INTEGER NOT NULL,
        files      TEXT NOT NULL,            -- JSON: the files written
        written_at INTEGER NOT NULL
    ) STRICT;
    "#,
    r#"
    -- Cloud9 call-back authorisations: every request, its decision and reply.
    CREATE TABLE cloud9_requests (
        id             INTEGER PRIMARY KEY,
        received_at    INTEGER NOT NULL,
        remote_addr    TEXT,
        method         TEXT NOT NULL,
        received       TEXT NOT NULL,        -- the variables as received
        carrier_id     TEXT,                 -- when it is one of the config's
        transaction_id TEXT,
        msisdn         TEXT,
        destination    TEXT,
        decision       TEXT NOT NULL,        -- allowed, rerouted, denied, error
        rule           TEXT NOT NULL,        -- what decided, in words
        timer          INTEGER,
        status         INTEGER NOT NULL,     -- the HTTP status answered
        reply          TEXT NOT NULL         -- the XML answered
    ) STRICT;
    CREATE INDEX cloud9_requests_msisdn ON cloud9_requests (msisdn, received_at);

    -- Subscribers' balances when c2cd holds them, and every change to them.
    CREATE TABLE balances (
        msisdn     TEXT PRIMARY KEY,
        balance    INTEGER NOT NULL,         -- ten-thousandths of the currency unit
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE balance_ledger (
        id      INTEGER PRIMARY KEY,
        msisdn  TEXT NOT NULL,
        at      INTEGER NOT NULL,
        delta   INTEGER NOT NULL,
        balance INTEGER NOT NULL,            -- after the change
        reason  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX balance_ledger_msisdn ON balance_ledger (msisdn, id);
    "#,
    // 8: guard rails.
    r#"
    -- The guard rule that stopped a request (see src/guard.rs), and for a
    -- replay the earlier call it was answered with.
    ALTER TABLE calls ADD COLUMN guard TEXT;
    ALTER TABLE calls ADD COLUMN replay_of TEXT;
    -- A partner's mask_a / mask_b replaced what A / B would have been shown:
    -- the real originator, kept for the operator.
    ALTER TABLE calls ADD COLUMN a_cid_real TEXT;
    ALTER TABLE calls ADD COLUMN b_cid_real TEXT;
    -- A call deferred to its partner's next opening: when it is placed, and
    -- the one-number fields sent upstream then (JSON; the plan is `plan`).
    ALTER TABLE calls ADD COLUMN start_at INTEGER;
    ALTER TABLE calls ADD COLUMN originate TEXT;
    -- A call queued for its busy B (b_queue): given up past this time.
    ALTER TABLE calls ADD COLUMN queue_until INTEGER;
    CREATE INDEX calls_scheduled ON calls (start_at) WHERE state = 'scheduled';
    -- Calls to an A number lately, across partners: [guard] number_limits.
    CREATE INDEX calls_a_recent ON calls (a_number, created_at) WHERE state != 'rejected';
    -- Calls in progress, by partner and by B number: max_calls, max_calls_per_b.
    CREATE INDEX calls_live_partner ON calls (partner_id)
        WHERE state IN ('originating', 'accepted', 'dialing_a', 'a_answered', 'dialing_b', 'bridged');
    CREATE INDEX calls_live_b ON calls (b_number)
        WHERE state IN ('originating', 'accepted', 'dialing_a', 'a_answered', 'dialing_b', 'bridged');

    -- The native API's Idempotency-Key: the first request with a key places the
    -- call; for 24 hours the same key replays its answer.
    CREATE TABLE idempotency_keys (
        partner_id  TEXT NOT NULL,
        key         TEXT NOT NULL,
        digest      TEXT NOT NULL,           -- SHA-256 of the body, hex
        call_id     TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (partner_id, key)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
    "#,
    // 9: the blocklist.
    r#"
    -- The blocklist (do-not-call), sized for national lists of millions. A
    -- check looks up the number itself and each of its prefixes with `*` (at
    -- most 16 point lookups in the primary key), and matches the few patterns
    -- with `?` through their partial index, with GLOB.
    CREATE TABLE blocklist (
        pattern     TEXT NOT NULL,           -- +E.164 digits (`?` one digit, a last `*` any rest), or an extension's digits
        source      TEXT NOT NULL,           -- 'cli', or the name of the list imported
        side        TEXT NOT NULL CHECK (side IN ('a', 'b', 'both')),
        reason      TEXT,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,                 -- NULL: never; an expired entry no longer matches
        hits        INTEGER NOT NULL DEFAULT 0,  -- calls it refused
        last_hit_at INTEGER,
        generation  INTEGER NOT NULL DEFAULT 0,  -- the import of its source that last listed it
        PRIMARY KEY (pattern, source)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX blocklist_wildcards ON blocklist (pattern) WHERE instr(pattern, '?') > 0;

    -- Each imported list: a re-import writes the next generation, then removes
    -- the entries of older ones (the numbers no longer listed).
    CREATE TABLE blocklist_sources (
        source      TEXT PRIMARY KEY,
        generation  INTEGER NOT NULL,
        file        TEXT NOT NULL,           -- what was imported, as named
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,                 -- NULL while it runs, or when it stopped half-way
        lines       INTEGER,
        entries     INTEGER,                 -- distinct numbers listed
        bad         INTEGER                  -- lines that were not a number
    ) STRICT;
    "#,
    // 10: the lengths of the blocklist's prefix patterns, so that a check
    // looks up only the prefixes some entry has (store::blocklist::Shapes).
    r#"
    CREATE INDEX blocklist_prefixes ON blocklist (length(pattern))
        WHERE substr(pattern, -1) = '*' AND instr(pattern, '?') = 0;
    "#,
    // 11: cheaper writes of calls (bench/profile.sh). SQLite builds a
    // temporary b-tree for an IN list of more than two constants each time a
    // statement evaluates it: the partial indexes over states did so at every
    // INSERT and UPDATE of a call. Their sets are now written with = and <>
    // (store::calls::OPEN and LIVE, which the queries repeat).
    r#"
    DROP INDEX calls_open;
    CREATE INDEX calls_open ON calls (deadline_at)
        WHERE state <> 'rejected' AND state <> 'handed_off' AND state <> 'completed'
          AND state <> 'failed' AND state <> 'lost';
    DROP INDEX calls_live_partner;
    CREATE INDEX calls_live_partner ON calls (partner_id)
        WHERE (state = 'originating' OR state = 'accepted' OR state = 'dialing_a'
            OR state = 'a_answered' OR state = 'dialing_b' OR state = 'bridged');
    DROP INDEX calls_live_b;
    CREATE INDEX calls_live_b ON calls (b_number)
        WHERE (state = 'originating' OR state = 'accepted' OR state = 'dialing_a'
            OR state = 'a_answered' OR state = 'dialing_b' OR state = 'bridged');

    -- Whether the request was refused as it arrived (state 'rejected'): set
    -- with the row and never changed after, so that an index on it is not
    -- rewritten at every change of state, as one on `state != 'rejected'`
    -- was. One index of a number's calls now serves number limits, replays
    -- and RoundTrip, which had one of their own (a_number, b_number,
    -- created_at): a number has few calls in a window.
    ALTER TABLE calls ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
    UPDATE calls SET refused = 1 WHERE state = 'rejected';
    DROP INDEX calls_roundtrip;
    DROP INDEX calls_a_recent;
    CREATE INDEX calls_a_recent ON calls (a_number, created_at) WHERE refused = 0;
    "#,
    // 12: the outbox takes due callbacks receiver by receiver (notify.rs),
    // and a call's callbacks go out in order, so only its first pending one
    // may be attempted. The outbox used to find that one with a NOT EXISTS
    // over the call's callbacks at every row it looked at, and behind a
    // backlog it stepped through every later callback of every waiting call
    // (bench/soak.sh). `head` marks it, kept by the writes that change a
    // callback's state (store::callbacks); `receiver` is the URL's scheme,
    // host and port in lower case (store::callbacks::receiver: the URL up
    // to the first /, ? or # after the scheme's ://). The due index holds only
    // heads, by receiver.
    r#"
    ALTER TABLE callbacks ADD COLUMN head INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE callbacks ADD COLUMN receiver TEXT NOT NULL DEFAULT '';
    UPDATE callbacks SET head = 1
        WHERE state = 'pending' AND NOT EXISTS (SELECT 1 FROM callbacks p
            WHERE p.call_id = callbacks.call_id AND p.state = 'pending' AND p.id < callbacks.id);
    -- s: where the authority starts; p: the first /, ? or # in it (0: none).
    UPDATE callbacks SET receiver = (
        WITH a(s) AS (SELECT CASE WHEN instr(url, '://') = 0 THEN 1 ELSE instr(url, '://') + 3 END),
             b(s, p) AS (SELECT s, min(
                 CASE WHEN instr(substr(url, s), '/') = 0 THEN 1e9 ELSE instr(substr(url, s), '/') END,
                 CASE WHEN instr(substr(url, s), '?') = 0 THEN 1e9 ELSE instr(substr(url, s), '?') END,
                 CASE WHEN instr(substr(url, s), '#') = 0 THEN 1e9 ELSE instr(substr(url, s), '#') END) FROM a)
        SELECT lower(CASE WHEN p = 1e9 THEN url ELSE substr(url, 1, s + p - 2) END) FROM b);
    DROP INDEX callbacks_due;
    CREATE INDEX callbacks_due ON callbacks (receiver, next_at) WHERE state = 'pending' AND head = 1;
    "#,
];

pub const VERSION: i64 = MIGRATIONS.len() as i64;

fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// The schema version found, refused when newer than `known`.
fn check(conn: &Connection, known: i64) -> Result<i64, StoreError> {
    let found = version(conn)?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    Ok(found)
}

pub fn check_version(conn: &Connection) -> Result<i64, StoreError> {
    check(conn, VERSION)
}

/// Brings the database to the latest schema. An existing database (an upgrade)
/// is first copied to `backup_to(found_version)`.
pub fn migrate(
    conn: &mut Connection,
    backup_to: impl Fn(i64) -> PathBuf,
) -> Result<(), StoreError> {
    migrate_with(conn, MIGRATIONS, backup_to)
}

fn migrate_with(
    conn: &mut Connection,
    steps: &[&str],
    backup_to: impl Fn(i64) -> PathBuf,
) -> Result<(), StoreError> {
    let found = check(conn, steps.len() as i64)?;
    if found > 0 && (found as usize) < steps.len() {
        let copy = backup_to(found);
        super::backup_conn(conn, &copy)?;
        log::info!(
            "database at schema version {found} backed up to {} before migrating",
            copy.display()
        );
    }
    for (i, sql) in steps.iter().enumerate().skip(found as usize) {
        let step = i as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step)?;
        tx.commit()?;
        log::info!("database migrated to schema version {step}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_backs_up_the_old_database_first() {
        let dir = std::env::temp_dir().join(format!("c2cd-schema-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut conn = Connection::open(dir.join("t.db")).unwrap();
        let v1 = &MIGRATIONS[..1];
        migrate_with(&mut conn, v1, |_| {
            unreachable!("a new database is not backed up")
        })
        .unwrap();
        conn.execute("INSERT INTO partners (id, name, dialects, provider, prompt_set, source, time_limit, enabled, created_at, updated_at) VALUES ('old', 'n', 'xip', 'p', 'XIP1', 'XIP1', 1, 1, 0, 0)", []).unwrap();

        let v2 = [MIGRATIONS[0], "ALTER TABLE partners ADD COLUMN note TEXT;"];
        let backup = dir.join("t.db.v1.bak");
        migrate_with(&mut conn, &v2, |found| {
            assert_eq!(found, 1);
            backup.clone()
        })
        .unwrap();
        assert_eq!(version(&conn).unwrap(), 2);
        let old = Connection::open(&backup).unwrap();
        assert_eq!(version(&old).unwrap(), 1);
        let n: i64 = old
            .query_row("SELECT count(*) FROM partners WHERE id = 'old'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
        assert!(
            old.prepare("SELECT note FROM partners").is_err(),
            "the backup is from before the migration"
        );
    }

    #[test]
    fn step_11_marks_the_requests_refused_before_it() {
        let dir = std::env::temp_dir().join(format!("c2cd-schema11-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut conn = Connection::open(dir.join("t.db")).unwrap();
        migrate_with(&mut conn, &MIGRATIONS[..10], |_| unreachable!()).unwrap();
        for (id, state) in [("r", "rejected"), ("c", "completed"), ("b", "bridged")] {
            conn.execute(
                "INSERT INTO calls (id, created_at, updated_at, dialect, method, received_query, state)
                 VALUES (?1, 0, 0, 'xip', 'GET', '', ?2)",
                [id, state],
            )
            .unwrap();
        }
        migrate_with(&mut conn, MIGRATIONS, |found| {
            dir.join(format!("t.db.v{found}.bak"))
        })
        .unwrap();
        let refused: Vec<(String, i64)> = conn
            .prepare("SELECT id, refused FROM calls ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(refused, [("b".into(), 0), ("c".into(), 0), ("r".into(), 1)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn step_12_marks_each_calls_first_pending_callback() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        migrate_with(&mut conn, &MIGRATIONS[..11], |_| unreachable!()).unwrap();
        for call in ["a", "b"] {
            conn.execute(
                "INSERT INTO calls (id, created_at, updated_at, dialect, method, received_query, state)
                 VALUES (?1, 0, 0, 'xip', 'GET', '', 'completed')",
                [call],
            )
            .unwrap();
        }
        // a: delivered, pending, pending; b: dead, delivered.
        for (id, call, state, url) in [
            (1, "a", "delivered", "http://h/"),
            (2, "b", "dead", "HTTPS://Hooks.Example.com:8443?x=1"),
            (3, "a", "pending", "http://h/cb#f"),
            (4, "b", "delivered", "https://hooks.example.com#f"),
            (5, "a", "pending", "no scheme/x"),
        ] {
            conn.execute(
                "INSERT INTO callbacks (id, call_id, seq, event_id, url, format, body, created_at, next_at, state)
                 VALUES (?1, ?2, ?1, 'e', ?4, 'native', x'', 0, 0, ?3)",
                rusqlite::params![id, call, state, url],
            )
            .unwrap();
        }
        migrate_with(&mut conn, MIGRATIONS, |found| {
            dir.path().join(format!("t.db.v{found}.bak"))
        })
        .unwrap();
        let heads: Vec<i64> = conn
            .prepare("SELECT id FROM callbacks WHERE head = 1")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(heads, [3]);
        // Every row's receiver, as store::callbacks::receiver has it.
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT url, receiver FROM callbacks ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (url, receiver) in &rows {
            assert_eq!(*receiver, crate::store::callbacks::receiver(url), "{url}");
        }
        assert_eq!(rows[1].1, "https://hooks.example.com:8443");
    }
}
