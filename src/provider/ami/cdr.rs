//! The PBX's own calls, from the `Cdr` events of each AMI provider's manager
//! (`cdr_manager`): RoundTrip can match sales data to them (see
//! `store::pbx`). c2cd's own calls are left out (their channels' ids start
//! `c2cd-`), and so are calls that are not between NANPA numbers (internal
//! extensions, international callers): RoundTrip matches no others.
//!
//! Asterisk writes a CDR's times in the box's local time, without an offset;
//! they are read in the system's time zone.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::Message;
use crate::app::App;
use crate::dialect::roundtrip::nanpa;
use crate::store::pbx::{self, Cdr};

/// The CDR a `Cdr` event of provider `provider` describes; `None` when it is
/// not a call RoundTrip can match (or not a `Cdr`).
pub fn from_event(
    provider: &str,
    m: &Message,
    tz: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
) -> Result<Option<Cdr>, String> {
    if m.event() != Some("Cdr") {
        return Ok(None);
    }
    let unique_id = m.get("UniqueID").unwrap_or_default();
    if unique_id.is_empty() || unique_id.starts_with("c2cd-") {
        return Ok(None);
    }
    let (Ok(ani), Ok(target)) = (
        nanpa(m.get("Source").unwrap_or_default()),
        nanpa(m.get("Destination").unwrap_or_default()),
    ) else {
        return Ok(None);
    };
    // A Cdr comes when the call ends: its end is about now, its start Duration
    // seconds before. On the night clocks go back a local time happens twice;
    // the one nearer that estimate is the one meant.
    let secs = |k: &str| {
        m.get(k)
            .and_then(|d| d.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let now_ms = now.as_millisecond();
    let time = |k: &str, hint_ms: i64| -> Result<Option<i64>, String> {
        let v = m.get(k).unwrap_or_default().trim();
        if v.is_empty() {
            return Ok(None);
        }
        let bad = |e: jiff::Error| format!("CDR {unique_id}: {k} {v:?}: {e}");
        let civil: jiff::civil::DateTime = v.parse().map_err(bad)?;
        let both = tz.to_ambiguous_timestamp(civil);
        let (a, b) = (both.earlier().map_err(bad)?, both.later().map_err(bad)?);
        let [a, b] = [a, b].map(|t| t.as_millisecond());
        Ok(Some(if (a - hint_ms).abs() <= (b - hint_ms).abs() {
            a
        } else {
            b
        }))
    };
    let Some(started_at) = time("StartTime", now_ms - secs("Duration") * 1000)? else {
        return Err(format!("CDR {unique_id} has no StartTime"));
    };
    let received: serde_json::Map<String, serde_json::Value> = m
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    Ok(Some(Cdr {
        source: format!("ami:{provider}"),
        unique_id: unique_id.to_string(),
        ani,
        target,
        dnis: None,
        started_at,
        answered_at: time("AnswerTime", now_ms - secs("BillableSeconds") * 1000)?,
        ended_at: time("EndTime", now_ms)?,
        disposition: m.get("Disposition").map(str::to_string),
        billable_s: m.get("BillableSeconds").and_then(|b| b.parse().ok()),
        received: serde_json::Value::Object(received).to_string(),
    }))
}

/// Follows every AMI provider's CDRs for as long as c2cd runs, taking up the
/// providers a reload brings.
pub async fn run(app: Arc<App>) {
    let tz = jiff::tz::TimeZone::try_system().unwrap_or_else(|e| {
        log::warn!("the system time zone is unknown ({e}); Asterisk's CDR times are read as UTC");
        jiff::tz::TimeZone::UTC
    });
    let mut reloads = app.reloads();
    // The managers followed, by number.
    let mut followed: HashMap<u64, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        followed.retain(|_, task| !task.is_finished());
        for (name, id, events) in app.runtime().providers.ami_events() {
            if followed.contains_key(&id) {
                continue;
            }
            let task = tokio::spawn(follow(app.clone(), name, events, tz.clone()));
            followed.insert(id, task);
        }
        if reloads.changed().await.is_err() {
            return;
        }
    }
}

/// Ingests the CDRs of one manager until it is gone.
async fn follow(
    app: Arc<App>,
    provider: String,
    mut events: broadcast::Receiver<Message>,
    tz: jiff::tz::TimeZone,
) {
    loop {
        let m = match events.recv().await {
            Ok(m) => m,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                log::warn!(
                    "AMI {provider}: {n} manager events missed; CDRs among them are not ingested"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let cdr = match from_event(&provider, &m, &tz, jiff::Timestamp::now()) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("AMI {provider}: {e}");
                continue;
            }
        };
        let now = crate::core::now_ms();
        match app.store.write(move |c| pbx::ingest(c, &cdr, now)).await {
            Ok(i) if i.new => {
                log::info!(
                    "AMI {provider}: CDR {} ingested as call {}",
                    i.unique_id,
                    i.id
                )
            }
            Ok(_) => {}
            Err(e) => log::error!("AMI {provider}: a CDR could not be stored: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdr(fields: &[(&str, &str)]) -> Message {
        let mut m = Message::default();
        m.push("Event", "Cdr");
        for (k, v) in fields {
            m.push(k, v);
        }
        m
    }

    /// The fields of the transcript's Cdr events, for a call from a trunk.
    fn inbound(unique: &str, source: &str, destination: &str) -> Message {
        cdr(&[
            ("Privilege", "cdr,all"),
            ("AccountCode", ""),
            ("Source", source),
            ("Destination", destination),
            ("DestinationContext", "from-trunk"),
            ("CallerID", "\"Caller\" <3105550199>"),
            ("Channel", "PJSIP/trunk-00000007"),
            ("DestinationChannel", "PJSIP/agent-00000008"),
            ("LastApplication", "Dial"),
            ("StartTime", "2026-03-08 01:30:00"),
            ("AnswerTime", "2026-03-08 01:30:05"),
            ("EndTime", "2026-03-08 03:10:00"),
            ("Duration", "3600"),
            ("BillableSeconds", "3595"),
            ("Disposition", "ANSWERED"),
            ("AMAFlags", "DOCUMENTATION"),
            ("UniqueID", unique),
            ("UserField", ""),
        ])
    }

    #[test]
    fn a_pbx_call_becomes_a_cdr_in_the_boxs_time_zone() {
        let la = jiff::tz::TimeZone::get("America/Los_Angeles").unwrap();
        let heard: jiff::Timestamp = "2026-03-08T10:10:01Z".parse().unwrap();
        let c = from_event(
            "pbx",
            &inbound("1700000000.7", "3105550199", "8881234567"),
            &la,
            heard,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.ani.as_str(), c.target.as_str()),
            ("+13105550199", "+18881234567")
        );
        assert_eq!(c.source, "ami:pbx");
        // 01:30 PST, the night clocks spring forward; the end is 03:10 PDT.
        assert_eq!(c.started_at, 1_772_962_200_000);
        assert_eq!(c.ended_at, Some(1_772_964_600_000));
        assert_eq!(
            (c.billable_s, c.disposition.as_deref()),
            (Some(3595), Some("ANSWERED"))
        );
        assert!(c.received.contains("\"UniqueID\":\"1700000000.7\""));
    }

    #[test]
    fn c2cds_own_calls_and_calls_roundtrip_cannot_match_are_left_out() {
        let utc = jiff::tz::TimeZone::UTC;
        for m in [
            inbound("c2cd-0192-a1", "3105550199", "8881234567"),
            inbound("c2cd-0192-a1;2", "3105550199", "8881234567"),
            inbound("1700000000.8", "201", "202"),
            inbound("1700000000.9", "+442071234567", "8881234567"),
        ] {
            assert_eq!(
                from_event("pbx", &m, &utc, jiff::Timestamp::now()),
                Ok(None),
                "{m:?}"
            );
        }
        let mut m = inbound("1700000000.10", "3105550199", "8881234567");
        m.fields.retain(|(k, _)| k != "StartTime");
        assert!(from_event("pbx", &m, &utc, jiff::Timestamp::now()).is_err());
    }

    /// The night clocks go back, 01:30 happens twice: the CDR heard at 01:40
    /// PST of a call of 70 minutes started at the first (PDT) one.
    #[test]
    fn a_repeated_local_time_is_read_by_when_the_cdr_came() {
        let la = jiff::tz::TimeZone::get("America/Los_Angeles").unwrap();
        let mut m = inbound("1700000000.11", "3105550199", "8881234567");
        for (k, v) in [
            ("StartTime", "2026-11-01 01:30:00"),
            ("AnswerTime", ""),
            ("EndTime", "2026-11-01 01:40:00"),
            ("Duration", "4200"),
        ] {
            m.fields.iter_mut().find(|(n, _)| n == k).unwrap().1 = v.into();
        }
        let heard: jiff::Timestamp = "2026-11-01T09:40:01Z".parse().unwrap();
        let c = from_event("pbx", &m, &la, heard).unwrap().unwrap();
        let at = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
        assert_eq!(at(c.started_at), "2026-11-01T08:30:00Z");
        assert_eq!(at(c.ended_at.unwrap()), "2026-11-01T09:40:00Z");
    }
}
