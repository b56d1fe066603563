//! The nightly export for media agencies: each day's calls (c2cd's and the
//! PBX's) with their current RoundTrip sales data, as CSV and XML.
//!
//! `c2cd export` without a window writes every whole day, in
//! `[roundtrip] export_timezone`, after the last one exported, up to
//! yesterday (yesterday alone the first time), and records each day once its
//! files are in place: a day is never exported twice, and one missed (the box
//! was off) is written by the next run. With `--since`/`--until` it writes that
//! window and records nothing.
//!
//! CSV columns, in order: `call_id`, `source` (`c2cd` or the CDR's source),
//! `partner_id`, `ani`, `target`, `dnis` (E.164), `call_start` (RFC 3339, UTC),
//! `state` (c2cd's call state, or the CDR's disposition), `billable_seconds`,
//! `sale_id`, `sale_partner`, `matched_at`, `is_sale`, `amount` (dollars, two
//! decimals), `payment`, `items` (JSON: `[{"name", "price_cents"}]`). A call
//! without sales data has the sales columns empty. The XML has the same, with
//! each submission as it was posted.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::core::format_ms;

/// One call of an export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub call_id: String,
    pub source: String,
    pub partner_id: Option<String>,
    pub ani: Option<String>,
    pub target: Option<String>,
    pub dnis: Option<String>,
    pub call_start: i64,
    pub state: Option<String>,
    pub billable_s: Option<i64>,
    pub sale: Option<Sale>,
}

/// A call's current sales data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sale {
    pub id: i64,
    pub partner_id: Option<String>,
    pub matched_at: i64,
    pub is_sale: Option<bool>,
    pub amount_cents: Option<i64>,
    pub payment: Option<String>,
    pub items: Option<String>,
    pub body: Vec<u8>,
}

/// The calls that started in `[since, until)`, earliest first.
pub fn rows(conn: &Connection, since: i64, until: i64) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare(
        "SELECT found.id, found.source, found.partner_id, found.ani, found.target, found.dnis,
                found.at, found.state, found.billable, s.id, s.partner_id, cs.matched_at,
                s.is_sale, s.amount_cents, s.payment, s.items, s.body
           FROM (
             SELECT c.id, 'c2cd' AS source, c.partner_id, c.a_number AS ani, c.b_number AS target,
                    NULL AS dnis, c.created_at AS at, c.state,
                    (SELECT billable_s FROM cdrs WHERE call_id = c.id) AS billable
               FROM calls c
              WHERE c.created_at >= ?1 AND c.created_at < ?2 AND c.refused = 0
             UNION ALL
             SELECT p.id, p.source, NULL, p.ani, p.target, p.dnis, p.started_at, p.disposition,
                    p.billable_s
               FROM pbx_calls p
              WHERE p.started_at >= ?1 AND p.started_at < ?2
           ) AS found
           LEFT JOIN call_sales cs ON cs.call_id = found.id
           LEFT JOIN sales s ON s.id = cs.sale_id
          ORDER BY found.at, found.id",
    )?;
    let rows = stmt.query_map(params![since, until], |r| {
        let sale = match r.get::<_, Option<i64>>(9)? {
            None => None,
            Some(id) => Some(Sale {
                id,
                partner_id: r.get(10)?,
                matched_at: r.get(11)?,
                is_sale: r.get(12)?,
                amount_cents: r.get(13)?,
                payment: r.get(14)?,
                items: r.get(15)?,
                body: r.get(16)?,
            }),
        };
        Ok(Row {
            call_id: r.get(0)?,
            source: r.get(1)?,
            partner_id: r.get(2)?,
            ani: r.get(3)?,
            target: r.get(4)?,
            dnis: r.get(5)?,
            call_start: r.get(6)?,
            state: r.get(7)?,
            billable_s: r.get(8)?,
            sale,
        })
    })?;
    rows.collect()
}

/// Dollars and cents: `25972` is `259.72`.
fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// One CSV field, quoted when it must be (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A text a partner or a PBX supplied: a spreadsheet must not read it as a
/// formula, so one starting with `=`, `+`, `-`, `@`, a tab or a CR is led by `'`.
fn text_field(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        field(&format!("'{s}"))
    } else {
        field(s)
    }
}

/// `s` without the characters XML 1.0 does not allow.
fn xml_chars(s: &str) -> String {
    s.chars()
        .filter(|c| {
            matches!(c, '\t' | '\n' | '\r') || (*c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        })
        .collect()
}

pub const CSV_HEADER: &str = "call_id,source,partner_id,ani,target,dnis,call_start,state,billable_seconds,sale_id,sale_partner,matched_at,is_sale,amount,payment,items";

/// The rows as CSV, with a header line.
pub fn csv(rows: &[Row]) -> String {
    let mut out = format!("{CSV_HEADER}\r\n");
    for r in rows {
        let s = r.sale.as_ref();
        let cells = [
            r.call_id.clone(),
            r.source.clone(),
            r.partner_id.clone().unwrap_or_default(),
            r.ani.clone().unwrap_or_default(),
            r.target.clone().unwrap_or_default(),
            r.dnis.clone().unwrap_or_default(),
            format_ms(r.call_start),
            r.state.clone().unwrap_or_default(),
            r.billable_s.map(|b| b.to_string()).unwrap_or_default(),
            s.map(|s| s.id.to_string()).unwrap_or_default(),
            s.and_then(|s| s.partner_id.clone()).unwrap_or_default(),
            s.map(|s| format_ms(s.matched_at)).unwrap_or_default(),
            s.and_then(|s| s.is_sale)
                .map(|b| b.to_string())
                .unwrap_or_default(),
            s.and_then(|s| s.amount_cents)
                .map(dollars)
                .unwrap_or_default(),
            s.and_then(|s| s.payment.clone()).unwrap_or_default(),
            s.and_then(|s| s.items.clone()).unwrap_or_default(),
        ];
        // Numbers (E.164 with +), ids and times are c2cd's own; the texts
        // (state, partners, payment) are guarded against formulas.
        let line: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| match i {
                1 | 2 | 7 | 10 | 14 => text_field(c),
                _ => field(c),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The XML namespace of the export.
pub const XML_NAMESPACE: &str = "urn:c2cd:export:1";

/// The rows as XML: `<Calls since until>` of `<Call>`, each with its `<Sale>`
/// and the submission as posted.
pub fn xml(rows: &[Row], since: i64, until: i64) -> String {
    use quick_xml::escape::escape;
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Calls xmlns=\"{XML_NAMESPACE}\" since=\"{}\" until=\"{}\">\n",
        format_ms(since),
        format_ms(until)
    );
    let opt = |name: &str, v: &Option<String>| match v {
        Some(v) => format!("<{name}>{}</{name}>", escape(xml_chars(v).as_str())),
        None => String::new(),
    };
    let esc = |s: &str| escape(xml_chars(s).as_str()).into_owned();
    for r in rows {
        let _ = write!(
            out,
            "  <Call id=\"{}\" source=\"{}\">{}{}{}{}<CallStart>{}</CallStart>{}{}{}",
            esc(&r.call_id),
            esc(&r.source),
            opt("PartnerID", &r.partner_id),
            opt("ANI", &r.ani),
            opt("Target", &r.target),
            opt("DNIS", &r.dnis),
            format_ms(r.call_start),
            opt("State", &r.state),
            opt("BillableSeconds", &r.billable_s.map(|b| b.to_string())),
            if r.sale.is_some() { "\n" } else { "" },
        );
        if let Some(s) = &r.sale {
            let _ = write!(
                out,
                "    <Sale id=\"{}\" matchedAt=\"{}\"{}{}{}{}>",
                s.id,
                format_ms(s.matched_at),
                s.partner_id
                    .as_ref()
                    .map(|p| format!(" partner=\"{}\"", esc(p)))
                    .unwrap_or_default(),
                s.is_sale
                    .map(|b| format!(" isSale=\"{b}\""))
                    .unwrap_or_default(),
                s.amount_cents
                    .map(|a| format!(" amount=\"{}\"", dollars(a)))
                    .unwrap_or_default(),
                s.payment
                    .as_ref()
                    .map(|p| format!(" payment=\"{}\"", esc(p)))
                    .unwrap_or_default(),
            );
            let items: Vec<serde_json::Value> = s
                .items
                .as_deref()
                .and_then(|i| serde_json::from_str(i).ok())
                .unwrap_or_default();
            for i in items {
                let _ = write!(
                    out,
                    "<Item price=\"{}\">{}</Item>",
                    dollars(i["price_cents"].as_i64().unwrap_or(0)),
                    esc(i["name"].as_str().unwrap_or_default())
                );
            }
            // As posted; a CDATA section cannot hold "]]>", so it is split.
            let body =
                xml_chars(&String::from_utf8_lossy(&s.body)).replace("]]>", "]]]]><![CDATA[>");
            let _ = write!(out, "<Submitted><![CDATA[{body}]]></Submitted></Sale>\n  ");
        }
        out.push_str("</Call>\n");
    }
    out.push_str("</Calls>\n");
    out
}

/// Writes `text` to `path` whole or not at all: a temporary file of this
/// process's, synced, renamed, and the directory synced, so that a day recorded
/// as written has its files after a power loss.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("part.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes `<stem>.csv` and `<stem>.xml` of the calls of `[since, until)` into
/// `dir`; returns the files and how many calls they hold.
pub fn write(
    conn: &Connection,
    dir: &Path,
    stem: &str,
    since: i64,
    until: i64,
) -> anyhow::Result<(Vec<PathBuf>, usize)> {
    let rows = rows(conn, since, until)?;
    std::fs::create_dir_all(dir)?;
    let csv_path = dir.join(format!("{stem}.csv"));
    let xml_path = dir.join(format!("{stem}.xml"));
    write_atomic(&csv_path, &csv(&rows))?;
    write_atomic(&xml_path, &xml(&rows, since, until))?;
    Ok((vec![csv_path, xml_path], rows.len()))
}

/// The days to export now: each whole day in `tz` after the last exported,
/// up to yesterday; yesterday alone when none has been.
pub fn due_days(
    conn: &Connection,
    tz: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
) -> anyhow::Result<Vec<jiff::civil::Date>> {
    let today = now.to_zoned(tz.clone()).date();
    let yesterday = today.yesterday()?;
    let last: Option<String> = conn.query_row("SELECT max(day) FROM exports", [], |r| r.get(0))?;
    let mut day = match last {
        Some(d) => d.parse::<jiff::civil::Date>()?.tomorrow()?,
        None => yesterday,
    };
    let mut days = Vec::new();
    while day <= yesterday {
        days.push(day);
        day = day.tomorrow()?;
    }
    Ok(days)
}

/// The window of `day` in `tz`, unix ms: from its midnight to the next (23 or
/// 25 hours on the days clocks change).
pub fn day_window(day: jiff::civil::Date, tz: &jiff::tz::TimeZone) -> anyhow::Result<(i64, i64)> {
    let start = day.to_zoned(tz.clone())?.timestamp().as_millisecond();
    let end = day
        .tomorrow()?
        .to_zoned(tz.clone())?
        .timestamp()
        .as_millisecond();
    Ok((start, end))
}

/// Exports each due day into `dir` and records it; returns what was written.
pub fn run_due(
    conn: &Connection,
    dir: &Path,
    tz: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
) -> anyhow::Result<Vec<(jiff::civil::Date, Vec<PathBuf>, usize)>> {
    let mut done = Vec::new();
    for day in due_days(conn, tz, now)? {
        let (since, until) = day_window(day, tz)?;
        let (files, calls) = write(conn, dir, &format!("c2cd-sales-{day}"), since, until)?;
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        conn.execute(
            "INSERT INTO exports (day, since, until, calls, files, written_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                day.to_string(),
                since,
                until,
                i64::try_from(calls).unwrap_or(i64::MAX),
                serde_json::to_string(&names)?,
                now.as_millisecond()
            ],
        )?;
        done.push((day, files, calls));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_fields_are_written_plainly() {
        assert_eq!(dollars(25972), "259.72");
        assert_eq!(dollars(5), "0.05");
        assert_eq!(dollars(-150), "-1.50");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("plain"), "plain");
    }

    #[test]
    fn days_are_whole_days_in_the_export_time_zone() {
        let la = jiff::tz::TimeZone::get("America/Los_Angeles").unwrap();
        let day: jiff::civil::Date = "2026-03-08".parse().unwrap();
        let (since, until) = day_window(day, &la).unwrap();
        // The day clocks spring forward has 23 hours.
        assert_eq!(until - since, 23 * 3600 * 1000);
        assert_eq!(format_ms(since), "2026-03-08T08:00:00.000Z");
    }

    #[test]
    fn a_sale_is_exported_with_its_submission() {
        let row = Row {
            call_id: "c1".into(),
            source: "pbx".into(),
            ani: Some("+13105555555".into()),
            target: Some("+13109999999".into()),
            call_start: 1_310_720_523_000,
            sale: Some(Sale {
                id: 7,
                partner_id: Some("agency".into()),
                matched_at: 1_310_720_600_000,
                is_sale: Some(true),
                amount_cents: Some(25972),
                payment: Some("amex".into()),
                items: Some(r#"[{"name":"OVEN, large","price_cents":10000}]"#.into()),
                body: b"<Call>]]></Call>".to_vec(),
            }),
            ..Row::default()
        };
        let c = csv(std::slice::from_ref(&row));
        let line = c.lines().nth(1).unwrap();
        assert!(
            line.starts_with(
                "c1,pbx,,+13105555555,+13109999999,,2011-07-15T09:02:03.000Z,,,7,agency,"
            ),
            "{line}"
        );
        assert!(
            line.contains(",true,259.72,amex,\"[{\"\"name\"\":\"\"OVEN, large\"\""),
            "{line}"
        );
        let x = xml(&[row], 0, 1);
        assert!(x.contains("<Sale id=\"7\" matchedAt=\"2011-07-15T09:03:20.000Z\" partner=\"agency\" isSale=\"true\" amount=\"259.72\" payment=\"amex\"><Item price=\"100.00\">OVEN, large</Item>"), "{x}");
        assert!(
            x.contains("<![CDATA[<Call>]]]]><![CDATA[></Call>]]>"),
            "{x}"
        );
    }
}
