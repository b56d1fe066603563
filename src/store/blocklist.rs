//! The blocklist (do-not-call list): numbers, prefixes and one-digit wildcards
//! that c2cd refuses to call, on side A, side B or both.
//!
//! - A [`Pattern`] is `+` and E.164 digits (`+12015550123`), with a last `*`
//!   for any rest (`+1900*`) and `?` for any one digit (`+1900555????`), or a
//!   local extension's digits (`2001`).
//! - [`check`] finds the most specific unexpired entry that matches a number on
//!   a side. It is read-only and its cost grows only with a B-tree's depth:
//!   the number and each of its prefixes are point lookups in the primary key
//!   (16 at most), and only the few patterns with `?` are matched one by one. The
//!   transaction that refuses the call counts the hit ([`count_hit`]).
//! - Entries come from the command line (source `cli`: [`add`], [`remove`]) or
//!   from imported lists ([`import`]: a national do-not-call list, millions of
//!   numbers in one pass, committed in batches beside the running daemon). A
//!   re-import of a source replaces its previous list.
//!
//! Like the other store modules, the functions take a connection: the daemon's
//! writer runs [`count_hit`] in its transaction, readers run [`check`]. Only
//! [`import`] takes a connection of its own (`&mut`), for its batches.

use std::fmt;
use std::io::{self, BufRead};
use std::sync::Mutex;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::StoreError;
use crate::core::call::Side;
use crate::core::phone::{Address, NumberError, E164};

/// The source of the entries added on the command line.
pub const CLI: &str = "cli";

/// Rows an import writes per transaction: enough to make commits rare, few
/// enough that the daemon's writer never waits long for its turn.
pub const IMPORT_BATCH: usize = 50_000;

/// The longest line an import reads; the rest of a longer one is skipped.
const MAX_LINE: usize = 1024;

/// How many bad lines an import reports one by one (all are counted).
const BAD_LINES_SHOWN: usize = 10;

/// What people put between digits, dropped from patterns and numbers.
const SEPARATORS: &[char] = &[' ', '-', '.', '(', ')'];

/// Which side of a call an entry blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sides {
    A,
    B,
    Both,
}

impl Sides {
    pub fn as_str(self) -> &'static str {
        match self {
            Sides::A => "a",
            Sides::B => "b",
            Sides::Both => "both",
        }
    }

    /// `a`, `b` or `both`, as stored and as the command line takes them.
    pub fn parse(s: &str) -> Option<Sides> {
        match s {
            "a" | "A" => Some(Sides::A),
            "b" | "B" => Some(Sides::B),
            "both" => Some(Sides::Both),
            _ => None,
        }
    }

    pub fn blocks(self, side: Side) -> bool {
        matches!(
            (self, side),
            (Sides::Both, _) | (Sides::A, Side::A) | (Sides::B, Side::B)
        )
    }
}

impl fmt::Display for Sides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A blocklist pattern, validated and without separators: `+12015550123`,
/// `+1900*`, `+1900555????`, or an extension's digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

/// Why a string is not a pattern; the text follows the string quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("is empty")]
    Empty,
    #[error(
        "has {0:?}: a pattern is + and digits, with ? for any one digit and a last * for any rest"
    )]
    Char(char),
    #[error("has * before its end: * stands for any rest of the number, so it comes last")]
    StarNotLast,
    #[error("needs at least one digit before * (+* would block every number)")]
    OnlyStar,
    #[error("must start with a country code, not 0")]
    LeadingZero,
    #[error("must have 7 to 15 digits, or fewer before a last *")]
    Length,
    #[error("is not a local extension (1 to 15 digits, no wildcards); a phone number pattern starts with +")]
    Local,
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        let s: String = s
            .trim()
            .chars()
            .filter(|c| !SEPARATORS.contains(c))
            .collect();
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        let Some(number) = s.strip_prefix('+') else {
            if let Some(c) = s
                .chars()
                .find(|c| !c.is_ascii_digit() && *c != '*' && *c != '?')
            {
                return Err(PatternError::Char(c));
            }
            if s.len() > 15 || s.contains(['*', '?']) {
                return Err(PatternError::Local);
            }
            return Ok(Pattern(s));
        };
        let (body, open) = match number.strip_suffix('*') {
            Some(b) => (b, true),
            None => (number, false),
        };
        if let Some(c) = body.chars().find(|c| !c.is_ascii_digit() && *c != '?') {
            return Err(match c {
                '*' => PatternError::StarNotLast,
                c => PatternError::Char(c),
            });
        }
        match body.len() {
            0 if open => Err(PatternError::OnlyStar),
            0 => Err(PatternError::Empty),
            _ if body.starts_with('0') => Err(PatternError::LeadingZero),
            n if n > 15 || (!open && n < 7) => Err(PatternError::Length),
            _ => Ok(Pattern(s)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number to check as stored: `+1 (201) 555-0123` is `+12015550123`, digits
/// alone an extension.
pub fn normalise_number(s: &str) -> Result<Address, NumberError> {
    let s: String = s
        .trim()
        .chars()
        .filter(|c| !SEPARATORS.contains(c))
        .collect();
    Address::parse(&s)
}

/// How specific a pattern is: the more digits it fixes, the more; a number's
/// full length (no `*`) breaks a tie.
fn specificity(pattern: &str) -> (usize, bool) {
    let digits = pattern.bytes().filter(u8::is_ascii_digit).count();
    (digits, !pattern.ends_with('*'))
}

/// The entry that blocks a number: what a refused call's record names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub pattern: String,
    pub source: String,
    pub sides: Sides,
    pub reason: Option<String>,
    /// Unix ms; `None`: never.
    pub expires_at: Option<i64>,
}

impl Hit {
    /// Whether `self` is a better answer than `other`: the most specific, then
    /// the operator's own entry (its reason says more), then by source.
    fn beats(&self, other: &Hit) -> bool {
        let key = |h: &Hit| {
            (
                specificity(&h.pattern),
                h.source == CLI,
                std::cmp::Reverse(h.source.clone()),
            )
        };
        key(self) > key(other)
    }
}

/// `+1900* (premium rate, cli)`, `+12015550123 (dnc, until 2027-01-01T00:00:00.000Z)`.
impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.pattern)?;
        if let Some(r) = &self.reason {
            write!(f, "{r}, ")?;
        }
        f.write_str(&self.source)?;
        if let Some(t) = self.expires_at {
            write!(f, ", until {}", crate::core::format_ms(t))?;
        }
        f.write_str(")")
    }
}

/// Candidates of a check: the number, then each of its prefixes with `*`.
const CANDIDATES: usize = 16;

/// What kinds of patterns the list holds, so that a check looks up only the
/// candidates some entry could be: against a list of whole numbers, one point
/// lookup instead of sixteen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shapes {
    /// Whole numbers (and extensions).
    exact: bool,
    /// Bit `n`: a prefix pattern `n` characters long with its `*` (`+1900*`: 6).
    prefixes: u32,
    /// Patterns with `?`.
    wildcards: bool,
}

impl Shapes {
    /// Any pattern could be there: what a check without shapes assumes.
    pub const ALL: Shapes = Shapes {
        exact: true,
        prefixes: u32::MAX,
        wildcards: true,
    };

    /// The shapes of the list now. Reads the partial indexes of prefixes and
    /// wildcards, and stops at the first whole number.
    pub fn read(c: &Connection) -> rusqlite::Result<Shapes> {
        let exact = c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM blocklist
                   WHERE substr(pattern, -1) != '*' AND instr(pattern, '?') = 0)",
            )?
            .query_row([], |r| r.get(0))?;
        let mut prefixes = 0u32;
        let mut stmt = c.prepare_cached(
            "SELECT DISTINCT length(pattern) FROM blocklist
              WHERE substr(pattern, -1) = '*' AND instr(pattern, '?') = 0",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let n: i64 = r.get(0)?;
            prefixes |= u32::try_from(n)
                .ok()
                .and_then(|n| 1u32.checked_shl(n))
                .unwrap_or(0);
        }
        let wildcards = c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM blocklist WHERE instr(pattern, '?') > 0)",
            )?
            .query_row([], |r| r.get(0))?;
        Ok(Shapes {
            exact,
            prefixes,
            wildcards,
        })
    }
}

/// The list's [`Shapes`] kept for one connection (the daemon's writer), read
/// again once another connection (`c2cd block` beside the daemon) has
/// committed to the database: SQLite's `data_version` tells.
#[derive(Debug, Default)]
pub struct ShapesCache(Mutex<Option<(i64, Shapes)>>);

impl ShapesCache {
    pub fn get(&self, c: &Connection) -> rusqlite::Result<Shapes> {
        let version: i64 = c.pragma_query_value(None, "data_version", |r| r.get(0))?;
        let Ok(mut kept) = self.0.lock() else {
            return Ok(Shapes::ALL);
        };
        match *kept {
            Some((v, shapes)) if v == version => Ok(shapes),
            _ => {
                let shapes = Shapes::read(c)?;
                *kept = Some((version, shapes));
                Ok(shapes)
            }
        }
    }
}

const CHECK: &str = "
    SELECT pattern, source, side, reason, expires_at FROM blocklist
     WHERE pattern IN (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
       AND side IN (?17, 'both') AND (expires_at IS NULL OR expires_at > ?18)
    UNION ALL
    SELECT pattern, source, side, reason, expires_at FROM blocklist
     WHERE ?20 AND instr(pattern, '?') > 0 AND ?19 GLOB pattern
       AND side IN (?17, 'both') AND (expires_at IS NULL OR expires_at > ?18)";

/// The most specific unexpired entry that blocks `number` (canonical `+…`, or
/// an extension's digits) on `side`, if any. Read-only. A string that is
/// neither (core refuses it before any policy) matches nothing.
pub fn check(
    c: &Connection,
    number: &str,
    side: Side,
    now_ms: i64,
) -> rusqlite::Result<Option<Hit>> {
    check_shaped(c, number, side, now_ms, Shapes::ALL)
}

/// [`check`], looking up only the candidates `shapes` says an entry could be.
pub fn check_shaped(
    c: &Connection,
    number: &str,
    side: Side,
    now_ms: i64,
    shapes: Shapes,
) -> rusqlite::Result<Option<Hit>> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let mut args: Vec<Value> = Vec::with_capacity(CANDIDATES + 4);
    if shapes.exact {
        args.push(Value::Text(number.to_string()));
    }
    if number.starts_with('+') {
        // `+1*`, `+19*`, … `+19005551234*`: ASCII, so every index is a boundary.
        for end in 2..=number.len() {
            if shapes.prefixes & (1u32 << (end + 1)) != 0 {
                args.push(Value::Text(format!("{}*", &number[..end])));
            }
        }
    }
    if args.is_empty() && !shapes.wildcards {
        return Ok(None);
    }
    args.resize(CANDIDATES, Value::Null);
    args.push(Value::Text(side.as_str().to_string()));
    args.push(Value::Integer(now_ms));
    args.push(Value::Text(number.to_string()));
    args.push(Value::Integer(i64::from(shapes.wildcards)));
    let mut stmt = c.prepare_cached(CHECK)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut best: Option<Hit> = None;
    while let Some(r) = rows.next()? {
        let hit = Hit {
            pattern: r.get(0)?,
            source: r.get(1)?,
            sides: Sides::parse(&r.get::<_, String>(2)?).unwrap_or(Sides::Both),
            reason: r.get(3)?,
            expires_at: r.get(4)?,
        };
        if best.as_ref().is_none_or(|b| hit.beats(b)) {
            best = Some(hit);
        }
    }
    Ok(best)
}

/// Counts a call refused by `hit`, in the transaction that records the refusal.
pub fn count_hit(c: &Connection, hit: &Hit, now_ms: i64) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE blocklist SET hits = hits + 1, last_hit_at = ?3 WHERE pattern = ?1 AND source = ?2",
    )?
    .execute(params![hit.pattern, hit.source, now_ms])?;
    Ok(())
}

/// An entry to add from the command line.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub pattern: Pattern,
    pub sides: Sides,
    pub reason: Option<String>,
    /// Unix ms; `None`: never.
    pub expires_at: Option<i64>,
}

/// Adds an entry (source `cli`); an entry already there takes the new side,
/// reason and expiry and keeps its hits. Returns whether it is new.
pub fn add(c: &Connection, e: &NewEntry, now_ms: i64) -> Result<bool, StoreError> {
    let existed = c
        .query_row(
            "SELECT 1 FROM blocklist WHERE pattern = ?1 AND source = ?2",
            params![e.pattern.as_str(), CLI],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    c.execute(
        "INSERT INTO blocklist (pattern, source, side, reason, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (pattern, source) DO UPDATE
            SET side = excluded.side, reason = excluded.reason, expires_at = excluded.expires_at",
        params![
            e.pattern.as_str(),
            CLI,
            e.sides.as_str(),
            e.reason,
            now_ms,
            e.expires_at
        ],
    )?;
    Ok(!existed)
}

/// Removes `pattern` from `source`, or from every source; returns the sources
/// it was removed from.
pub fn remove(
    c: &Connection,
    pattern: &Pattern,
    source: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare(
        "DELETE FROM blocklist WHERE pattern = ?1 AND (?2 IS NULL OR source = ?2) RETURNING source",
    )?;
    let sources = stmt
        .query_map(params![pattern.as_str(), source], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(sources)
}

/// One entry, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub pattern: String,
    pub side: Sides,
    pub source: String,
    pub reason: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// Past its expiry: it no longer matches.
    pub expired: bool,
    pub hits: i64,
    pub last_hit_at: Option<String>,
}

/// A page of entries, and how many more the list holds.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub more: u64,
}

/// The first `limit` entries by pattern, of every source or of one.
pub fn list(
    c: &Connection,
    source: Option<&str>,
    limit: usize,
    now_ms: i64,
) -> Result<Page, StoreError> {
    let mut stmt = c.prepare(
        "SELECT pattern, side, source, reason, created_at, expires_at, hits, last_hit_at
           FROM blocklist WHERE ?1 IS NULL OR source = ?1
          ORDER BY pattern, source LIMIT ?2",
    )?;
    let time = |ms: Option<i64>| ms.map(crate::core::format_ms);
    let entries = stmt
        .query_map(
            params![source, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                let expires_at: Option<i64> = r.get(5)?;
                Ok(Entry {
                    pattern: r.get(0)?,
                    side: Sides::parse(&r.get::<_, String>(1)?).unwrap_or(Sides::Both),
                    source: r.get(2)?,
                    reason: r.get(3)?,
                    created_at: crate::core::format_ms(r.get(4)?),
                    expires_at: time(expires_at),
                    expired: expires_at.is_some_and(|t| t <= now_ms),
                    hits: r.get(6)?,
                    last_hit_at: time(r.get(7)?),
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<Entry>>>()?;
    let total: i64 = c.query_row(
        "SELECT count(*) FROM blocklist WHERE ?1 IS NULL OR source = ?1",
        [source],
        |r| r.get(0),
    )?;
    let more = u64::try_from(total)
        .unwrap_or(0)
        .saturating_sub(entries.len() as u64);
    Ok(Page { entries, more })
}

/// An imported list and its latest import.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedList {
    pub source: String,
    pub generation: i64,
    pub file: String,
    pub started_at: String,
    /// `None` while the import runs, or when it stopped half-way.
    pub finished_at: Option<String>,
    pub lines: Option<i64>,
    pub entries: Option<i64>,
    pub bad: Option<i64>,
}

/// The imported lists, by name.
pub fn imported_lists(c: &Connection) -> Result<Vec<ImportedList>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT source, generation, file, started_at, finished_at, lines, entries, bad
           FROM blocklist_sources ORDER BY source",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(ImportedList {
                source: r.get(0)?,
                generation: r.get(1)?,
                file: r.get(2)?,
                started_at: crate::core::format_ms(r.get(3)?),
                finished_at: r.get::<_, Option<i64>>(4)?.map(crate::core::format_ms),
                lines: r.get(5)?,
                entries: r.get(6)?,
                bad: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// An expiry as the command line gives it: RFC 3339 with its offset, or a
/// duration from `now_ms` (`90m`, `12h`, `30d`, `2w`). It must be in the future.
pub fn parse_expiry(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    let at = if let Ok(t) = s.parse::<jiff::Timestamp>() {
        t.as_millisecond()
    } else {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let unit_ms: i64 = match unit {
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => {
                return Err(format!(
                    "{s:?} is neither RFC 3339 with an offset (2027-01-01T00:00:00Z) nor a duration (90m, 12h, 30d, 2w)"
                ))
            }
        };
        n.parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms))
            .and_then(|d| d.checked_add(now_ms))
            .ok_or_else(|| format!("{s:?} is not a duration c2cd can count"))?
    };
    if at <= now_ms {
        return Err(format!("{s:?} is not in the future"));
    }
    Ok(at)
}

/// Whether `name` can name an imported list: 1 to 64 letters, digits, `.`, `_`,
/// `-` or `:`, and not `cli` (the command line's own entries).
pub fn valid_source(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
        && name != CLI
}

/// One line of a do-not-call list as a number; `Ok(None)` for a blank line.
///
/// A line is one number, or the FTC's `areacode,number` (`201,2345678`); in
/// other CSV the first column is the number and the rest is ignored. Fields may
/// be quoted. A number with `+` is taken as it is; 10 national digits get
/// `country_code`, and so do national digits already behind it.
pub fn parse_line(line: &str, country_code: &str) -> Result<Option<E164>, &'static str> {
    let line = line.trim_start_matches('\u{feff}').trim();
    if line.is_empty() {
        return Ok(None);
    }
    let field = |f: &str| {
        let f = f.trim();
        f.strip_prefix('"')
            .and_then(|f| f.strip_suffix('"'))
            .unwrap_or(f)
            .trim()
            .to_string()
    };
    let mut fields = line.split(',');
    let first = field(fields.next().unwrap_or_default());
    let second = fields.next().map(field).unwrap_or_default();
    let all_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let number: String = if all_digits(&first, 3) && all_digits(&second, 7) {
        format!("{first}{second}")
    } else {
        first.chars().filter(|c| !SEPARATORS.contains(c)).collect()
    };
    if let Some(digits) = number.strip_prefix('+') {
        return E164::from_digits(digits)
            .map(Some)
            .map_err(|_| "not + and an E.164 number (7 to 15 digits)");
    }
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a phone number");
    }
    let digits = if number.len() == 10 {
        format!("{country_code}{number}")
    } else if number.len() == country_code.len() + 10 && number.starts_with(country_code) {
        number
    } else {
        return Err("not 10 national digits, nor + and the country code");
    };
    E164::from_digits(&digits)
        .map(Some)
        .map_err(|_| "not a phone number")
}

/// How an import is to list its numbers.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The list's name ([`valid_source`]): a re-import under the same name
    /// replaces it.
    pub source: String,
    /// What is imported, as the operator named it (recorded, shown by `list`).
    pub file: String,
    /// Given to 10-digit national numbers: 1 to 3 digits, not starting with 0.
    pub country_code: String,
    pub sides: Sides,
    pub reason: Option<String>,
    /// Unix ms; `None`: never.
    pub expires_at: Option<i64>,
    /// Rows per transaction ([`IMPORT_BATCH`]).
    pub batch: usize,
}

impl ImportOptions {
    /// Refuses a source that cannot name a list and a country code that is
    /// none ([`import`] does; a caller can before it opens anything).
    pub fn validate(&self) -> Result<(), ImportError> {
        if !valid_source(&self.source) {
            return Err(ImportError::Source(self.source.clone()));
        }
        let cc = &self.country_code;
        if !(1..=3).contains(&cc.len())
            || cc.starts_with('0')
            || !cc.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ImportError::CountryCode(cc.clone()));
        }
        Ok(())
    }
}

/// A line an import skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    pub line: u64,
    /// The line, cut to 80 characters.
    pub text: String,
    pub why: &'static str,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Imported {
    /// The source's import number: its entries now carry it.
    pub generation: i64,
    pub lines: u64,
    /// Lines that were a number.
    pub numbers: u64,
    /// Distinct numbers (a number listed twice counts once).
    pub distinct: u64,
    /// Entries of the previous imports no longer listed, removed.
    pub removed: u64,
    /// Lines that were not a number (not counting a header line).
    pub bad: u64,
    /// The first few of them.
    pub first_bad: Vec<BadLine>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0:?} cannot name a list: 1 to 64 letters, digits, '.', '_', '-' or ':', and not \"cli\" (the command line's own entries)")]
    Source(String),
    #[error("{0:?} is not a country code: 1 to 3 digits, not starting with 0")]
    CountryCode(String),
    #[error("reading line {line}: {source}")]
    Read { line: u64, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ImportError {
    fn from(e: rusqlite::Error) -> Self {
        ImportError::Store(StoreError::Sqlite(e))
    }
}

/// Imports a do-not-call list read from `input` ([`parse_line`]'s format, with
/// an optional header line), in one pass and bounded memory.
///
/// Beside the running daemon: each batch of `o.batch` numbers is one short
/// transaction, and the numbers already listed stay blocked throughout. The
/// entries get the source's next generation; once the whole list is in, the
/// entries of older generations (numbers no longer listed) are removed, in
/// batches too. Bad lines are counted and skipped.
pub fn import(
    c: &mut Connection,
    mut input: impl BufRead,
    o: &ImportOptions,
    now_ms: i64,
) -> Result<Imported, ImportError> {
    o.validate()?;
    let cc = &o.country_code;
    let batch_size = o.batch.max(1);
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let generation: i64 = tx.query_row(
        "INSERT INTO blocklist_sources (source, generation, file, started_at) VALUES (?1, 1, ?2, ?3)
         ON CONFLICT (source) DO UPDATE
            SET generation = generation + 1, file = excluded.file, started_at = excluded.started_at,
                finished_at = NULL, lines = NULL, entries = NULL, bad = NULL
         RETURNING generation",
        params![o.source, o.file, now_ms],
        |r| r.get(0),
    )?;
    tx.commit()?;

    let mut done = Imported {
        generation,
        ..Imported::default()
    };
    let mut batch: Vec<E164> = Vec::with_capacity(batch_size);
    let mut buf = Vec::with_capacity(64);
    let mut header_allowed = true;
    loop {
        let line = done.lines + 1;
        let Some(too_long) =
            read_line(&mut input, &mut buf).map_err(|source| ImportError::Read { line, source })?
        else {
            break;
        };
        done.lines = line;
        let parsed = if too_long {
            Err("longer than 1024 bytes")
        } else {
            match std::str::from_utf8(&buf) {
                Ok(text) => parse_line(text, cc),
                Err(_) => Err("not UTF-8 text"),
            }
        };
        match parsed {
            Ok(None) => {}
            Ok(Some(n)) => {
                header_allowed = false;
                done.numbers += 1;
                batch.push(n);
                if batch.len() >= batch_size {
                    done.distinct += write_batch(c, &batch, o, generation, now_ms)?;
                    batch.clear();
                }
            }
            Err(_) if header_allowed && buf.iter().any(u8::is_ascii_alphabetic) => {
                header_allowed = false;
            }
            Err(why) => {
                header_allowed = false;
                done.bad += 1;
                if done.first_bad.len() < BAD_LINES_SHOWN {
                    let text = String::from_utf8_lossy(&buf);
                    done.first_bad.push(BadLine {
                        line,
                        text: text.trim_end().chars().take(80).collect(),
                        why,
                    });
                }
            }
        }
    }
    if !batch.is_empty() {
        done.distinct += write_batch(c, &batch, o, generation, now_ms)?;
    }
    done.removed = remove_older(c, &o.source, generation, batch_size)?;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    c.execute(
        "UPDATE blocklist_sources SET finished_at = ?2, lines = ?3, entries = ?4, bad = ?5
          WHERE source = ?1 AND generation = ?6",
        params![
            o.source,
            crate::core::now_ms().max(now_ms),
            n(done.lines),
            n(done.distinct),
            n(done.bad),
            generation
        ],
    )?;
    Ok(done)
}

/// Lists `numbers` under the import's generation, in one transaction; returns
/// how many were not listed under it yet.
fn write_batch(
    c: &mut Connection,
    numbers: &[E164],
    o: &ImportOptions,
    generation: i64,
    now_ms: i64,
) -> rusqlite::Result<u64> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut fresh = 0;
    {
        // A number listed before keeps its hits and when it was first listed.
        let mut upsert = tx.prepare_cached(
            "INSERT INTO blocklist (pattern, source, side, reason, created_at, expires_at, generation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (pattern, source) DO UPDATE
                SET side = excluded.side, reason = excluded.reason,
                    expires_at = excluded.expires_at, generation = excluded.generation
              WHERE generation < excluded.generation",
        )?;
        for n in numbers {
            fresh += upsert.execute(params![
                n.as_str(),
                o.source,
                o.sides.as_str(),
                o.reason,
                now_ms,
                o.expires_at,
                generation
            ])? as u64;
        }
    }
    tx.commit()?;
    Ok(fresh)
}

/// Removes `source`'s entries older than `generation`, `batch` a transaction;
/// returns how many.
fn remove_older(
    c: &mut Connection,
    source: &str,
    generation: i64,
    batch: usize,
) -> rusqlite::Result<u64> {
    let mut removed = 0;
    let mut after = String::new();
    loop {
        // Found outside the write transaction: walking the list holds nobody up.
        let old: Vec<String> = c
            .prepare_cached(
                "SELECT pattern FROM blocklist
                  WHERE pattern > ?1 AND source = ?2 AND generation < ?3
                  ORDER BY pattern LIMIT ?4",
            )?
            .query_map(
                params![
                    after,
                    source,
                    generation,
                    i64::try_from(batch).unwrap_or(i64::MAX)
                ],
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?;
        let Some(last) = old.last() else {
            return Ok(removed);
        };
        after = last.clone();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut delete = tx.prepare_cached(
                "DELETE FROM blocklist WHERE pattern = ?1 AND source = ?2 AND generation < ?3",
            )?;
            for p in &old {
                removed += delete.execute(params![p, source, generation])? as u64;
            }
        }
        tx.commit()?;
        if old.len() < batch {
            return Ok(removed);
        }
    }
}

/// Reads one line into `buf` without its end, keeping at most [`MAX_LINE`]
/// bytes of it: `None` at the end of the input, else whether it was longer.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (part, used, end) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        too_long |= part.len() > room;
        buf.extend_from_slice(&part[..part.len().min(room)]);
        r.consume(used);
        if end {
            return Ok(Some(too_long));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn entry(pattern: &str, sides: Sides, reason: &str) -> NewEntry {
        NewEntry {
            pattern: Pattern::parse(pattern).unwrap(),
            sides,
            reason: Some(reason.to_string()),
            expires_at: None,
        }
    }

    fn blocked_by(c: &Connection, number: &str, side: Side) -> Option<String> {
        check(c, number, side, NOW).unwrap().map(|h| h.pattern)
    }

    fn options(source: &str) -> ImportOptions {
        ImportOptions {
            source: source.to_string(),
            file: "test.csv".to_string(),
            country_code: "1".to_string(),
            sides: Sides::Both,
            reason: None,
            expires_at: None,
            batch: 3,
        }
    }

    #[test]
    fn patterns_are_validated_and_lose_their_separators() {
        let ok = |s: &str| Pattern::parse(s).map(|p| p.0);
        assert_eq!(ok("+1 (201) 555-0123").unwrap(), "+12015550123");
        assert_eq!(ok("+1900*").unwrap(), "+1900*");
        assert_eq!(ok("+1900555????").unwrap(), "+1900555????");
        assert_eq!(ok("+1900???*").unwrap(), "+1900???*");
        assert_eq!(ok("2001").unwrap(), "2001");
        assert_eq!(ok(""), Err(PatternError::Empty));
        assert_eq!(ok("+"), Err(PatternError::Empty));
        assert_eq!(ok("+*"), Err(PatternError::OnlyStar));
        assert_eq!(ok("+19*5"), Err(PatternError::StarNotLast));
        assert_eq!(ok("+1900x"), Err(PatternError::Char('x')));
        assert_eq!(ok("+0123456789"), Err(PatternError::LeadingZero));
        assert_eq!(ok("+123456"), Err(PatternError::Length));
        assert_eq!(
            ok(&format!("+{}", "1".repeat(16))),
            Err(PatternError::Length)
        );
        assert_eq!(ok("1900*"), Err(PatternError::Local));
        assert_eq!(ok("20?1"), Err(PatternError::Local));
        assert_eq!(ok("١٢٣"), Err(PatternError::Char('١')));
        assert!(Pattern::parse("+1900x")
            .unwrap_err()
            .to_string()
            .contains("? for any one digit"));
    }

    #[test]
    fn the_most_specific_entry_wins_exact_then_longest_prefix_then_wildcard() {
        let c = crate::store::memory();
        for (p, why) in [
            ("+1*", "all of NANP"),
            ("+1900*", "premium rate"),
            ("+1900555????", "premium line"),
            ("+19005551*", "premium block"),
            ("+19005551234", "complained"),
        ] {
            assert!(add(&c, &entry(p, Sides::Both, why), NOW).unwrap());
        }
        let by = |n| blocked_by(&c, n, Side::B);
        assert_eq!(by("+19005551234").as_deref(), Some("+19005551234"));
        // 8 digits fixed by the prefix beat the wildcard's 7.
        assert_eq!(by("+19005551999").as_deref(), Some("+19005551*"));
        assert_eq!(by("+19005552000").as_deref(), Some("+1900555????"));
        assert_eq!(by("+1900555200").as_deref(), Some("+1900*"));
        assert_eq!(by("+19005559999").as_deref(), Some("+1900555????"));
        assert_eq!(by("+12015550123").as_deref(), Some("+1*"));
        assert_eq!(by("+442079460000"), None);
        // A prefix's `*` may stand for nothing.
        assert_eq!(by("+1900").as_deref(), Some("+1900*"));
        let hit = check(&c, "+19005551234", Side::A, NOW).unwrap().unwrap();
        assert_eq!(hit.to_string(), "+19005551234 (complained, cli)");
    }

    #[test]
    fn an_entry_blocks_only_its_sides() {
        let c = crate::store::memory();
        add(&c, &entry("+12015550100", Sides::A, "no callbacks"), NOW).unwrap();
        add(&c, &entry("+12015550200", Sides::B, "no cold calls"), NOW).unwrap();
        add(&c, &entry("2001", Sides::Both, "the CEO"), NOW).unwrap();
        assert!(blocked_by(&c, "+12015550100", Side::A).is_some());
        assert!(blocked_by(&c, "+12015550100", Side::B).is_none());
        assert!(blocked_by(&c, "+12015550200", Side::A).is_none());
        assert!(blocked_by(&c, "+12015550200", Side::B).is_some());
        assert!(blocked_by(&c, "2001", Side::A).is_some());
        assert!(blocked_by(&c, "2001", Side::B).is_some());
        // An extension is not the phone number with the same digits.
        assert!(blocked_by(&c, "+2001", Side::A).is_none());
        assert!(blocked_by(&c, "20011", Side::A).is_none());
    }

    #[test]
    fn an_expired_entry_no_longer_blocks_and_lists_as_expired() {
        let c = crate::store::memory();
        let mut e = entry("+1900*", Sides::Both, "for a week");
        e.expires_at = Some(NOW + 1000);
        add(&c, &e, NOW).unwrap();
        assert!(check(&c, "+19005551234", Side::A, NOW + 999)
            .unwrap()
            .is_some());
        assert!(check(&c, "+19005551234", Side::A, NOW + 1000)
            .unwrap()
            .is_none());
        let page = list(&c, None, 10, NOW + 1000).unwrap();
        assert!(page.entries[0].expired);
        assert!(!list(&c, None, 10, NOW).unwrap().entries[0].expired);
    }

    #[test]
    fn hits_are_counted_and_a_re_add_keeps_them() {
        let c = crate::store::memory();
        add(&c, &entry("+1900*", Sides::Both, "premium"), NOW).unwrap();
        let hit = check(&c, "+19005551234", Side::B, NOW).unwrap().unwrap();
        count_hit(&c, &hit, NOW + 5).unwrap();
        count_hit(&c, &hit, NOW + 7).unwrap();
        assert!(!add(&c, &entry("+1900*", Sides::A, "premium, A only"), NOW).unwrap());
        let e = &list(&c, None, 10, NOW).unwrap().entries[0];
        assert_eq!((e.hits, e.side), (2, Sides::A));
        assert_eq!(
            e.last_hit_at.as_deref(),
            Some(&*crate::core::format_ms(NOW + 7))
        );
        assert_eq!(e.reason.as_deref(), Some("premium, A only"));
    }

    #[test]
    fn remove_takes_a_pattern_from_every_source_or_one() {
        let mut c = crate::store::memory();
        add(&c, &entry("+12015550123", Sides::Both, "asked"), NOW).unwrap();
        import(&mut c, "2015550123\n".as_bytes(), &options("dnc"), NOW).unwrap();
        let p = Pattern::parse("+12015550123").unwrap();
        assert_eq!(remove(&c, &p, Some("dnc")).unwrap(), ["dnc"]);
        assert!(blocked_by(&c, "+12015550123", Side::A).is_some());
        assert_eq!(remove(&c, &p, None).unwrap(), [CLI]);
        assert!(blocked_by(&c, "+12015550123", Side::A).is_none());
        assert!(remove(&c, &p, None).unwrap().is_empty());
    }

    #[test]
    fn dnc_lines_in_their_usual_forms_become_canonical_numbers() {
        let n = |l: &str| parse_line(l, "1").map(|n| n.map(|n| n.to_string()));
        assert_eq!(n("2012345678").unwrap().as_deref(), Some("+12012345678"));
        assert_eq!(n("201,2345678").unwrap().as_deref(), Some("+12012345678"));
        assert_eq!(
            n("\"201\",\"2345678\"\r").unwrap().as_deref(),
            Some("+12012345678")
        );
        assert_eq!(n("12012345678").unwrap().as_deref(), Some("+12012345678"));
        assert_eq!(
            n("(201) 234-5678").unwrap().as_deref(),
            Some("+12012345678")
        );
        assert_eq!(
            n("+442079460000").unwrap().as_deref(),
            Some("+442079460000")
        );
        assert_eq!(
            n("\u{feff}2012345678,2026-11-01").unwrap().as_deref(),
            Some("+12012345678")
        );
        assert_eq!(
            parse_line("2079460000", "44").unwrap().unwrap().as_str(),
            "+442079460000"
        );
        assert_eq!(n("  \t").unwrap(), None);
        assert!(n("201234567").is_err());
        assert!(n("22012345678").is_err());
        assert!(n("phone").is_err());
        assert!(n("+0123").is_err());
        assert!(n(",").is_err());
    }

    #[test]
    fn an_import_lists_a_file_skipping_its_header_and_bad_lines() {
        let mut c = crate::store::memory();
        let file: &[u8] =
            b"AreaCode,PhoneNumber\r\n201,2345678\r\n\r\n201,234567X\r\n2012345679\r\n\
                    +442079460000\r\n201,2345678\r\nnot a number\r\n\xff\xfe\r\n";
        let mut o = options("ftc");
        o.reason = Some("national DNC".to_string());
        let done = import(&mut c, file, &o, NOW).unwrap();
        assert_eq!(
            (
                done.lines,
                done.numbers,
                done.distinct,
                done.bad,
                done.removed
            ),
            (9, 4, 3, 3, 0)
        );
        let bad: Vec<(u64, &str)> = done.first_bad.iter().map(|b| (b.line, b.why)).collect();
        assert_eq!(
            bad,
            [
                (4, "not 10 national digits, nor + and the country code"),
                (8, "not a phone number"),
                (9, "not UTF-8 text")
            ]
        );
        assert_eq!(done.first_bad[0].text, "201,234567X");
        let hit = check(&c, "+12012345678", Side::A, NOW).unwrap().unwrap();
        assert_eq!(hit.to_string(), "+12012345678 (national DNC, ftc)");
        assert!(blocked_by(&c, "+442079460000", Side::B).is_some());
        assert!(blocked_by(&c, "+12012345670", Side::B).is_none());
        let lists = imported_lists(&c).unwrap();
        assert_eq!(lists.len(), 1);
        assert_eq!(
            (lists[0].generation, lists[0].entries, lists[0].bad),
            (1, Some(3), Some(3))
        );
        assert!(lists[0].finished_at.is_some());
    }

    #[test]
    fn a_re_import_replaces_its_source_and_leaves_the_others() {
        let mut c = crate::store::memory();
        let numbers =
            |r: std::ops::Range<u32>| r.map(|i| format!("201555{i:04}\n")).collect::<String>();
        import(&mut c, numbers(0..10).as_bytes(), &options("dnc"), NOW).unwrap();
        import(&mut c, numbers(0..4).as_bytes(), &options("state"), NOW).unwrap();
        add(&c, &entry("+12015550009", Sides::Both, "asked"), NOW).unwrap();
        let hit = check(&c, "+12015550005", Side::A, NOW).unwrap().unwrap();
        count_hit(&c, &hit, NOW).unwrap();

        let done = import(&mut c, numbers(5..15).as_bytes(), &options("dnc"), NOW + 1).unwrap();
        assert_eq!((done.generation, done.distinct, done.removed), (2, 10, 5));
        for (n, blocked) in [
            (0, true),
            (3, true),
            (4, false),
            (5, true),
            (9, true),
            (14, true),
            (15, false),
        ] {
            let number = format!("+1201555{n:04}");
            assert_eq!(
                blocked_by(&c, &number, Side::A).is_some(),
                blocked,
                "{number}"
            );
        }
        // 0 to 3 are still the other list's; 9 is also the operator's own.
        let dnc = list(&c, Some("dnc"), 100, NOW).unwrap();
        assert_eq!((dnc.entries.len(), dnc.more), (10, 0));
        assert_eq!(list(&c, Some("state"), 100, NOW).unwrap().entries.len(), 4);
        assert_eq!(list(&c, Some(CLI), 100, NOW).unwrap().entries.len(), 1);
        // A number still listed keeps its hits.
        let five = dnc
            .entries
            .iter()
            .find(|e| e.pattern == "+12015550005")
            .unwrap();
        assert_eq!(five.hits, 1);
    }

    #[test]
    fn an_import_refuses_a_bad_source_or_country_code() {
        let mut c = crate::store::memory();
        assert!(matches!(
            import(&mut c, "".as_bytes(), &options(CLI), NOW),
            Err(ImportError::Source(_))
        ));
        assert!(matches!(
            import(&mut c, "".as_bytes(), &options("a b"), NOW),
            Err(ImportError::Source(_))
        ));
        let mut o = options("dnc");
        o.country_code = "01".to_string();
        assert!(matches!(
            import(&mut c, "".as_bytes(), &o, NOW),
            Err(ImportError::CountryCode(_))
        ));
    }

    #[test]
    fn a_long_line_is_one_bad_line_and_the_next_still_reads() {
        let mut c = crate::store::memory();
        let file = format!("2015550100\n{}\n2015550101", "9".repeat(100_000));
        let done = import(&mut c, file.as_bytes(), &options("dnc"), NOW).unwrap();
        assert_eq!((done.lines, done.distinct, done.bad), (3, 2, 1));
        assert_eq!(done.first_bad[0].why, "longer than 1024 bytes");
        assert_eq!(done.first_bad[0].text.len(), 80);
    }

    #[test]
    fn a_check_ignores_what_is_not_a_number() {
        let c = crate::store::memory();
        add(&c, &entry("+1*", Sides::Both, "all"), NOW).unwrap();
        for n in ["", "+", "+1é", "+1900*", "+1?", "١٢٣", &"1".repeat(40)] {
            assert_eq!(check(&c, n, Side::A, NOW).unwrap(), None, "{n:?}");
        }
    }

    #[test]
    fn expiries_are_rfc3339_or_durations_in_the_future() {
        assert_eq!(parse_expiry("30d", NOW), Ok(NOW + 30 * 86_400_000));
        assert_eq!(parse_expiry("90m", NOW), Ok(NOW + 90 * 60_000));
        assert_eq!(parse_expiry("2w", NOW), Ok(NOW + 14 * 86_400_000));
        let t = "2030-01-01T00:00:00Z";
        assert_eq!(
            parse_expiry(t, NOW),
            Ok(t.parse::<jiff::Timestamp>().unwrap().as_millisecond())
        );
        assert!(parse_expiry("2020-01-01T00:00:00Z", NOW)
            .unwrap_err()
            .contains("not in the future"));
        assert!(parse_expiry("0d", NOW).is_err());
        assert!(parse_expiry("soon", NOW).unwrap_err().contains("RFC 3339"));
        assert!(parse_expiry("99999999999999999w", NOW).is_err());
    }

    /// What keeps a check fast at millions of entries: point lookups in the
    /// primary key and a walk of the wildcards' partial index, never a scan of
    /// the list.
    #[test]
    fn a_shaped_check_finds_what_a_full_one_does() {
        let c = crate::store::memory();
        let cache = ShapesCache::default();
        let numbers = [
            "+12015550123",
            "+19005551234",
            "+19005559999",
            "+447700900123",
            "2001",
            "+12125550000",
        ];
        let agree = |c: &Connection, shapes: Shapes| {
            for n in numbers {
                for side in [Side::A, Side::B] {
                    let full = check(c, n, side, NOW).unwrap().map(|h| h.pattern);
                    let shaped = check_shaped(c, n, side, NOW, shapes)
                        .unwrap()
                        .map(|h| h.pattern);
                    assert_eq!(shaped, full, "{n} {side:?} {shapes:?}");
                }
            }
        };
        // Empty: nothing to look up at all.
        let empty = cache.get(&c).unwrap();
        assert_eq!(
            empty,
            Shapes {
                exact: false,
                prefixes: 0,
                wildcards: false
            }
        );
        agree(&c, empty);
        for (pattern, sides) in [
            ("+12015550123", Sides::Both),
            ("2001", Sides::B),
            ("+1900*", Sides::Both),
            ("+44*", Sides::A),
            ("+1212555????", Sides::B),
        ] {
            add(&c, &entry(pattern, sides, "r"), NOW).unwrap();
            agree(&c, Shapes::read(&c).unwrap());
        }
        let shapes = Shapes::read(&c).unwrap();
        assert_eq!(shapes.prefixes, (1 << 6) | (1 << 4), "+1900* and +44*");
        assert!(shapes.exact && shapes.wildcards);
    }

    #[test]
    fn the_shapes_are_read_again_once_another_connection_wrote() {
        let dir = std::env::temp_dir().join(format!("c2cd-shapes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let writer =
            crate::store::open_beside_daemon(&path, std::time::Duration::from_secs(1)).unwrap();
        let cli =
            crate::store::open_beside_daemon(&path, std::time::Duration::from_secs(1)).unwrap();
        let cache = ShapesCache::default();
        assert!(!cache.get(&writer).unwrap().exact);
        add(&cli, &entry("+12015550123", Sides::Both, "r"), NOW).unwrap();
        let shapes = cache.get(&writer).unwrap();
        assert!(shapes.exact, "{shapes:?}");
        assert!(check_shaped(&writer, "+12015550123", Side::B, NOW, shapes)
            .unwrap()
            .is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_check_never_scans_the_list() {
        let c = crate::store::memory();
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {CHECK}")).unwrap();
        let plan: Vec<String> = stmt
            .query_map(params_from_iter(vec![Value::Null; 20]), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .filter(|step| step.contains("blocklist"))
                .all(|step| step.ends_with("USING PRIMARY KEY (pattern=?)")
                    || step.ends_with("USING INDEX blocklist_wildcards")),
            "{plan:?}"
        );
        assert!(plan
            .iter()
            .any(|s| s.starts_with("SEARCH blocklist USING PRIMARY KEY")));
    }
}
