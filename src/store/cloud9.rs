//! Cloud9 call-back authorisations (every request and its decision) and the
//! subscribers' balances c2cd holds, each change a ledger row.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::core::money::Money;

/// One request and what c2cd decided.
#[derive(Debug, Clone, Default)]
pub struct Decided {
    pub received_at: i64,
    pub remote_addr: Option<String>,
    pub method: String,
    /// The variables as received (JSON object).
    pub received: String,
    pub carrier_id: Option<String>,
    pub transaction_id: Option<String>,
    pub msisdn: Option<String>,
    pub destination: Option<String>,
    /// `allowed`, `rerouted`, `denied` or `error`.
    pub decision: &'static str,
    /// What decided, in words (`rule +4490 deny`, `no credit: 0.05 at 0.10/min`).
    pub rule: String,
    pub timer: Option<i64>,
    pub status: u16,
    pub reply: String,
}

pub fn record(conn: &Connection, d: &Decided) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO cloud9_requests (received_at, remote_addr, method, received, carrier_id,
                                      transaction_id, msisdn, destination, decision, rule, timer,
                                      status, reply)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            d.received_at,
            d.remote_addr,
            d.method,
            d.received,
            d.carrier_id,
            d.transaction_id,
            d.msisdn,
            d.destination,
            d.decision,
            d.rule,
            d.timer,
            d.status,
            d.reply
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// A subscriber's balance; nothing held is zero.
pub fn balance(conn: &Connection, msisdn: &str) -> rusqlite::Result<Money> {
    conn.query_row(
        "SELECT balance FROM balances WHERE msisdn = ?1",
        [msisdn],
        |r| r.get(0),
    )
    .optional()
    .map(|b| Money(b.unwrap_or(0)))
}

#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error("{msisdn} has {balance}: a debit of {amount} would take it below zero")]
    Insufficient {
        msisdn: String,
        balance: Money,
        amount: Money,
    },
    #[error("the balance would overflow")]
    Overflow,
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Adds `delta` (negative: a debit) to `msisdn`'s balance, with a ledger row
/// saying why; returns the new balance. A balance never goes below zero.
pub fn change(
    conn: &Connection,
    msisdn: &str,
    delta: Money,
    reason: &str,
    at: i64,
) -> Result<Money, BalanceError> {
    let before = balance(conn, msisdn)?;
    let after = before.checked_add(delta).ok_or(BalanceError::Overflow)?;
    if after.0 < 0 {
        return Err(BalanceError::Insufficient {
            msisdn: msisdn.to_string(),
            balance: before,
            amount: Money(-delta.0),
        });
    }
    book(conn, msisdn, delta, after, reason, at)?;
    Ok(after)
}

/// Sets `account`'s balance to `after` and writes the ledger row of `delta`.
fn book(
    conn: &Connection,
    account: &str,
    delta: Money,
    after: Money,
    reason: &str,
    at: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO balances (msisdn, balance, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (msisdn) DO UPDATE SET balance = excluded.balance, updated_at = excluded.updated_at",
        params![account, after.0, at],
    )?;
    conn.execute(
        "INSERT INTO balance_ledger (msisdn, at, delta, balance, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![account, at, delta.0, after.0, reason],
    )?;
    Ok(())
}

/// Takes what an ended call cost from `account`, even below zero (the call
/// is over: the balance owes it).
pub fn charge(
    conn: &Connection,
    account: &str,
    cost: Money,
    reason: &str,
    at: i64,
) -> rusqlite::Result<Money> {
    let after = Money(balance(conn, account)?.0.saturating_sub(cost.0));
    book(conn, account, Money(-cost.0), after, reason, at)?;
    Ok(after)
}

/// One ledger row, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: String,
    pub delta: String,
    pub balance: String,
    pub reason: String,
}

/// `msisdn`'s latest ledger rows, newest first.
pub fn ledger(conn: &Connection, msisdn: &str, limit: usize) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare(
        "SELECT id, at, delta, balance, reason FROM balance_ledger WHERE msisdn = ?1
          ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![msisdn, i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            Ok(Entry {
                id: r.get(0)?,
                at: crate::core::format_ms(r.get(1)?),
                delta: Money(r.get(2)?).to_string(),
                balance: Money(r.get(3)?).to_string(),
                reason: r.get(4)?,
            })
        },
    )?;
    rows.collect()
}

/// Every balance held, by MSISDN.
pub fn balances(conn: &Connection) -> rusqlite::Result<Vec<(String, Money)>> {
    let mut stmt = conn.prepare("SELECT msisdn, balance FROM balances ORDER BY msisdn")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, Money(r.get(1)?))))?;
    rows.collect()
}

/// One request and its decision, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    pub id: i64,
    pub received_at: String,
    pub remote_addr: Option<String>,
    pub method: String,
    pub carrier_id: Option<String>,
    pub transaction_id: Option<String>,
    pub msisdn: Option<String>,
    pub destination: Option<String>,
    pub decision: String,
    pub rule: String,
    pub timer: Option<i64>,
    pub status: u16,
    pub received: serde_json::Value,
    pub reply: String,
}

/// The latest requests, newest first: all, or one subscriber's.
pub fn requests(
    conn: &Connection,
    msisdn: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<RequestRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, received_at, remote_addr, method, carrier_id, transaction_id, msisdn,
                destination, decision, rule, timer, status, received, reply
           FROM cloud9_requests WHERE (?1 IS NULL OR msisdn = ?1)
          ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![msisdn, i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            Ok(RequestRow {
                id: r.get(0)?,
                received_at: crate::core::format_ms(r.get(1)?),
                remote_addr: r.get(2)?,
                method: r.get(3)?,
                carrier_id: r.get(4)?,
                transaction_id: r.get(5)?,
                msisdn: r.get(6)?,
                destination: r.get(7)?,
                decision: r.get(8)?,
                rule: r.get(9)?,
                timer: r.get(10)?,
                status: r.get(11)?,
                received: serde_json::from_str(&r.get::<_, String>(12)?).unwrap_or_default(),
                reply: r.get(13)?,
            })
        },
    )?;
    rows.collect()
}
