//! Quiet hours: when a partner's calls may be placed, by its business hours and
//! holidays in a time zone, and the zone of the called party's country.
//!
//! # Syntax
//! Opening hours are a list of entries, each days then times:
//!
//! ```text
//! "mon-fri 09:00-12:00,13:00-18:00"   two ranges on weekdays
//! "sat 10:00-14:00"
//! "fri 22:00-02:00"                   past midnight: Friday 22:00 to Saturday 02:00
//! "sun closed"                        the same as leaving Sunday out
//! ```
//!
//! - Days: `mon tue wed thu fri sat sun` (or in full, any case), ranges
//!   `mon-fri` (`fri-mon` runs over the weekend) and lists `mon,wed`.
//! - Times: `HH:MM-HH:MM`, 24-hour, local; the end is not included and may be
//!   `24:00`. An end before the start runs past midnight into the next day. Several
//!   ranges are separated by commas; `closed` instead says the days have none.
//! - A day no entry names is closed. Entries add up: a day named twice has the
//!   ranges of both. A day both `closed` and given hours is an error.
//! - Spaces around `-` and `,` are allowed, and other spaces read as commas
//!   (`mon - fri 09:00 - 12:00 13:00-18:00`).
//!
//! Holidays are whole days closed, from 00:00 to 24:00 local: `2025-12-26` once,
//! `12-25` every year. On a holiday the part of the day before's range that runs
//! past midnight is closed too.
//!
//! Times are wall-clock times: on the day clocks go forward, a range that starts
//! in the skipped hour opens when the clocks land (02:30 opens at 03:00); on the
//! day they go back, a repeated hour is open both times.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};

/// How far [`Hours::next_opening`] looks ahead: more than a year, so that a
/// yearly holiday cannot hide the only opening.
pub const HORIZON_DAYS: i32 = 400;

/// A partner's opening hours and holidays, without a time zone: the same hours
/// are read in the partner's zone or in the called party's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    /// Open ranges per weekday, Monday first: minutes after local midnight,
    /// start included, end not, sorted and apart.
    week: [Vec<(u16, u16)>; 7],
    /// Days closed once.
    dates: BTreeSet<Date>,
    /// Days closed every year: (month, day).
    yearly: BTreeSet<(i8, i8)>,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MINUTES_A_DAY: u16 = 24 * 60;
const EXAMPLE: &str = "e.g. \"mon-fri 09:00-18:00\"";

impl Hours {
    /// Reads opening hours and holidays written as the module's doc says. An
    /// error names the entry and says what was expected.
    pub fn parse(open: &[String], holidays: &[String]) -> Result<Hours, String> {
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        // Which entry gave a day hours, and which closed it: both is an error.
        let mut opened_by: [Option<&str>; 7] = [None; 7];
        let mut closed_by: [Option<&str>; 7] = [None; 7];
        for entry in open {
            let (days, ranges) = parse_entry(entry).map_err(|e| format!("{entry:?}: {e}"))?;
            for day in (0..7).filter(|&d| days[d]) {
                match &ranges {
                    None => closed_by[day] = Some(entry),
                    Some(ranges) => {
                        opened_by[day] = Some(entry);
                        for &(start, end) in ranges {
                            if start < end {
                                week[day].push((start, end));
                            } else {
                                // Past midnight: the rest of the day, then the
                                // next day's early hours.
                                week[day].push((start, MINUTES_A_DAY));
                                if end > 0 {
                                    week[(day + 1) % 7].push((0, end));
                                }
                            }
                        }
                    }
                }
            }
        }
        for day in 0..7 {
            if let (Some(closed), Some(opened)) = (closed_by[day], opened_by[day]) {
                return Err(format!(
                    "{closed:?}: {} also has hours in {opened:?}: name only the days open",
                    DAY_NAMES[day]
                ));
            }
            week[day] = merged(std::mem::take(&mut week[day]));
        }
        let mut dates = BTreeSet::new();
        let mut yearly = BTreeSet::new();
        for h in holidays {
            match parse_holiday(h.trim()) {
                Some(Holiday::Once(d)) => {
                    dates.insert(d);
                }
                Some(Holiday::Yearly(m, d)) => {
                    yearly.insert((m, d));
                }
                None => {
                    return Err(format!(
                        "{h:?}: expected a date as YYYY-MM-DD (closed once) or MM-DD (closed every year), e.g. \"2025-12-26\" or \"12-25\""
                    ))
                }
            }
        }
        Ok(Hours {
            week,
            dates,
            yearly,
        })
    }

    /// Whether it is open at `at`, by the wall clock in `tz`.
    pub fn open_at(&self, at: Timestamp, tz: &TimeZone) -> bool {
        let local = tz.to_datetime(at);
        let date = local.date();
        if self.is_holiday(date) {
            return false;
        }
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.ranges(date)
            .iter()
            .any(|&(start, end)| start <= minute && minute < end)
    }

    /// The first instant from `at` on when it is open: `at` itself when open now.
    /// `None` when it does not open within [`HORIZON_DAYS`].
    pub fn next_opening(&self, at: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        if self.open_at(at, tz) {
            return Some(at);
        }
        if self.week.iter().all(Vec::is_empty) {
            return None;
        }
        let first = tz.to_datetime(at).date();
        let last = first.checked_add(HORIZON_DAYS.days()).ok()?;
        // It opens at a range's start, or when the clock changes: going forward
        // over a range's start, or back into a range. Clock changes are few.
        let changes: Vec<(Date, Timestamp)> = tz
            .following(at)
            .map(|t| (tz.to_datetime(t.timestamp()).date(), t.timestamp()))
            .take_while(|&(date, _)| date <= last)
            .collect();
        // From the day before: its end may be repeated after `at`.
        let mut day = first.yesterday().unwrap_or(first);
        while day <= last {
            let next = day.tomorrow().ok()?;
            // Two days at a time, each instant with its local date: a clock going
            // back over midnight repeats the end of a day after the next began.
            let mut candidates: Vec<(Timestamp, Date)> = [day, next]
                .into_iter()
                .flat_map(|d| self.starts(d, tz).into_iter().map(move |t| (t, d)))
                .chain(
                    changes
                        .iter()
                        .filter(|&&(d, _)| d == day || d == next)
                        .map(|&(d, t)| (t, d)),
                )
                .filter(|&(t, _)| t > at)
                .collect();
            candidates.sort_unstable();
            let first_open = candidates.into_iter().find(|&(t, _)| self.open_at(t, tz));
            // An opening of the next day waits for the next round, which also
            // sees the day after, whose instants may come first.
            if let Some((t, _)) = first_open.filter(|&(_, d)| d == day) {
                return Some(t);
            }
            day = next;
        }
        None
    }

    fn is_holiday(&self, date: Date) -> bool {
        self.dates.contains(&date) || self.yearly.contains(&(date.month(), date.day()))
    }

    fn ranges(&self, date: Date) -> &[(u16, u16)] {
        let day = date.weekday().to_monday_zero_offset() as usize;
        self.week.get(day).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The instants the ranges of `date` start: twice for a start in an hour the
    /// clocks repeat; none for one in an hour they skip (the clock change itself
    /// is the opening).
    fn starts(&self, date: Date, tz: &TimeZone) -> Vec<Timestamp> {
        if self.is_holiday(date) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for &(start, _) in self.ranges(date) {
            let Ok(time) = Time::new((start / 60) as i8, (start % 60) as i8, 0, 0) else {
                continue;
            };
            let local = DateTime::from_parts(date, time);
            match tz.to_ambiguous_timestamp(local).offset() {
                AmbiguousOffset::Unambiguous { offset } => {
                    out.extend(offset.to_timestamp(local).ok())
                }
                AmbiguousOffset::Gap { .. } => {}
                AmbiguousOffset::Fold { before, after } => {
                    out.extend(before.to_timestamp(local).ok());
                    out.extend(after.to_timestamp(local).ok());
                }
            }
        }
        out
    }
}

/// One entry's days (Monday first) and its ranges, `None` when `closed`.
type Entry = ([bool; 7], Option<Vec<(u16, u16)>>);

fn parse_entry(entry: &str) -> Result<Entry, String> {
    let lower = entry.to_lowercase().replace('\u{2013}', "-");
    let words: Vec<&str> = lower.split_whitespace().collect();
    if words.is_empty() {
        return Err(format!("expected days then times, {EXAMPLE}"));
    }
    // The times begin at the first word that is a time or "closed".
    let split = words
        .iter()
        .position(|w| w.starts_with(|c: char| c.is_ascii_digit()) || w.starts_with("closed"));
    let Some(split) = split.filter(|&i| i > 0) else {
        return Err(if split.is_none() {
            format!("no times: expected days then HH:MM-HH:MM ranges or \"closed\", {EXAMPLE}")
        } else {
            format!("no days: expected days first, {EXAMPLE}")
        });
    };
    let days = parse_days(&tight(&words[..split]))?;
    let times = tight(&words[split..]);
    if times == "closed" {
        return Ok((days, None));
    }
    let ranges = times
        .split(',')
        .map(parse_range)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((days, Some(ranges)))
}

/// Words joined back, without spaces around `-` and `,`, other spaces becoming
/// commas: `mon - fri` is `mon-fri`, `mon wed` is `mon,wed`.
fn tight(words: &[&str]) -> String {
    words
        .join(" ")
        .replace(" -", "-")
        .replace("- ", "-")
        .replace(" ,", ",")
        .replace(", ", ",")
        .replace(' ', ",")
}

fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for item in s.split(',') {
        let (from, to) = match item.split_once('-') {
            Some((from, to)) => (day_number(from)?, day_number(to)?),
            None => {
                let d = day_number(item)?;
                (d, d)
            }
        };
        // Runs over the end of the week when `to` comes before `from`.
        let mut d = from;
        loop {
            days[d] = true;
            if d == to {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(days)
}

fn day_number(s: &str) -> Result<usize, String> {
    DAY_NAMES
        .iter()
        .position(|&d| d == s)
        .or_else(|| FULL_DAY_NAMES.iter().position(|&d| d == s))
        .ok_or_else(|| {
            format!("{s:?} is not a day: expected mon, tue, wed, thu, fri, sat or sun, {EXAMPLE}")
        })
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a time range: expected HH:MM-HH:MM, e.g. 09:00-18:00");
    let (start, end) = s.split_once('-').ok_or_else(bad)?;
    let start = parse_time(start).filter(|&m| m < MINUTES_A_DAY);
    let end = parse_time(end);
    match (start, end) {
        (Some(start), Some(end)) if start == end => Err(format!(
            "{s:?} is empty: its start and end are the same (00:00-24:00 is the whole day)"
        )),
        (Some(start), Some(end)) => Ok((start, end)),
        _ => Err(bad()),
    }
}

/// `HH:MM` (or `H:MM`) as minutes after midnight, up to `24:00`.
fn parse_time(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !(1..=2).contains(&h.len()) || m.len() != 2 || !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let minutes = h * 60 + m;
    (m < 60 && minutes <= MINUTES_A_DAY).then_some(minutes)
}

/// Sorted, overlapping and touching ranges joined.
fn merged(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

enum Holiday {
    Once(Date),
    Yearly(i8, i8),
}

fn parse_holiday(s: &str) -> Option<Holiday> {
    let parts: Vec<&str> = s.split('-').collect();
    let number = |t: &str, len: usize| {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<i16>().ok())
            .flatten()
    };
    match parts[..] {
        [y, m, d] => {
            let (y, m, d) = (number(y, 4)?, number(m, 2)?, number(d, 2)?);
            Date::new(y, m as i8, d as i8).ok().map(Holiday::Once)
        }
        [m, d] => {
            let (m, d) = (number(m, 2)? as i8, number(d, 2)? as i8);
            // A leap year, so that 02-29 is a day.
            Date::new(2000, m, d).ok().map(|_| Holiday::Yearly(m, d))
        }
        _ => None,
    }
}

/// The time zone of a country (ISO 3166 code, `GB`) whose clocks all agree:
/// the called party's local time. `None` for a country whose zones keep
/// different times (`US`, `CA`, `AU`), an unknown code, or a box without tzdata.
///
/// Read once from tzdata's `zone.tab`, which lists every zone of each country;
/// a country with several zones that keep the same clock now and over the next
/// two years counts as one (Germany's Büsingen keeps Berlin's time). The first
/// call reads tzdata from disk: make it at startup, off the async workers.
pub fn zone_of_region(region: &str) -> Option<TimeZone> {
    static ZONES: OnceLock<HashMap<String, TimeZone>> = OnceLock::new();
    let zones = ZONES.get_or_init(|| {
        let Some(tab) = zone_tab() else {
            return HashMap::new();
        };
        one_clock_zones(&zones_by_country(&tab), Timestamp::now())
    });
    zones.get(&region.to_ascii_uppercase()).cloned()
}

/// `zone.tab` where jiff finds the zones: `$TZDIR`, else the usual places.
fn zone_tab() -> Option<String> {
    let dirs = std::env::var_os("TZDIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/usr/share/zoneinfo",
                "/usr/share/lib/zoneinfo",
                "/etc/zoneinfo",
            ]
            .into_iter()
            .map(PathBuf::from),
        );
    dirs.into_iter()
        .find_map(|d| std::fs::read_to_string(d.join("zone.tab")).ok())
}

/// Each country's zones, in `zone.tab`'s order (its main zone first). Lines are
/// `CC<TAB>coordinates<TAB>Zone[<TAB>comment]`; `#` starts a comment.
fn zones_by_country(tab: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in tab.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = line.split('\t');
        if let (Some(cc), Some(_), Some(zone)) = (fields.next(), fields.next(), fields.next()) {
            if cc.len() == 2 && !zone.is_empty() {
                out.entry(cc.to_string())
                    .or_default()
                    .push(zone.to_string());
            }
        }
    }
    out
}

/// The countries whose zones all keep one clock from `now` for two years, each
/// with its first zone.
fn one_clock_zones(
    by_country: &HashMap<String, Vec<String>>,
    now: Timestamp,
) -> HashMap<String, TimeZone> {
    let Ok(until) = now.checked_add(2 * 366 * 24.hours()) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    for (cc, names) in by_country {
        let zones: Result<Vec<TimeZone>, _> = names.iter().map(|n| TimeZone::get(n)).collect();
        let Ok(zones) = zones else {
            continue;
        };
        let Some((first, rest)) = zones.split_first() else {
            continue;
        };
        if rest.iter().all(|z| same_clock(first, z, now, until)) {
            out.insert(cc.clone(), first.clone());
        }
    }
    out
}

/// Whether two zones give the same offset over `[from, until)`: the same at
/// `from` and at each of either's clock changes.
fn same_clock(a: &TimeZone, b: &TimeZone, from: Timestamp, until: Timestamp) -> bool {
    let changes = |z: &TimeZone| -> Vec<Timestamp> {
        z.following(from)
            .map(|t| t.timestamp())
            .take_while(|&t| t < until)
            .collect()
    };
    std::iter::once(from)
        .chain(changes(a))
        .chain(changes(b))
        .all(|t| a.to_offset(t) == b.to_offset(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(open: &[&str], holidays: &[&str]) -> Hours {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Hours::parse(&s(open), &s(holidays)).unwrap()
    }

    fn error(open: &[&str], holidays: &[&str]) -> String {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Hours::parse(&s(open), &s(holidays)).unwrap_err()
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    /// A wall-clock time in `tz` (the earlier one when the clocks repeat it).
    fn local(tz: &TimeZone, s: &str) -> Timestamp {
        let dt: DateTime = s.parse().unwrap();
        tz.to_ambiguous_timestamp(dt).compatible().unwrap()
    }

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NINE_TO_SIX: (u16, u16) = (9 * 60, 18 * 60);

    #[test]
    fn days_and_several_ranges_a_day() {
        let h = hours(
            &[
                "mon-fri 09:00-12:00,13:00-18:00",
                "sat 10:00-14:00",
                "sun closed",
            ],
            &[],
        );
        for day in 0..5 {
            assert_eq!(h.week[day], [(540, 720), (780, 1080)]);
        }
        assert_eq!(h.week[5], [(600, 840)]);
        assert!(h.week[6].is_empty());
    }

    #[test]
    fn the_syntax_forgives_case_spaces_and_full_day_names() {
        let h = hours(&["Mon - Wed , FRIDAY 9:00 - 18:00"], &[]);
        assert_eq!(h, hours(&["mon-wed,fri 09:00-18:00"], &[]));
        assert_eq!(h.week[3], []);
        let dash = hours(&["mon\u{2013}fri 09:00\u{2013}18:00"], &[]);
        assert_eq!(dash.week[4], [NINE_TO_SIX]);
        assert_eq!(
            hours(&["mon wed 09:00-12:00 13:00-18:00"], &[]),
            hours(&["mon,wed 09:00-12:00,13:00-18:00"], &[])
        );
    }

    #[test]
    fn day_ranges_wrap_over_the_weekend() {
        let h = hours(&["fri-mon 10:00-16:00"], &[]);
        let open: Vec<bool> = h.week.iter().map(|d| !d.is_empty()).collect();
        assert_eq!(open, [true, false, false, false, true, true, true]);
    }

    #[test]
    fn ranges_add_up_and_end_at_midnight_or_past_it() {
        let h = hours(
            &["mon 09:00-12:00", "mon 11:00-13:00", "mon 13:00-14:00"],
            &[],
        );
        assert_eq!(h.week[0], [(540, 840)]);
        assert_eq!(hours(&["tue 00:00-24:00"], &[]).week[1], [(0, 1440)]);
        let late = hours(&["fri 22:00-02:00", "sun 20:00-00:00"], &[]);
        assert_eq!(late.week[4], [(1320, 1440)]);
        assert_eq!(late.week[5], [(0, 120)]);
        assert_eq!(late.week[6], [(1200, 1440)]);
        assert_eq!(late.week[0], []);
    }

    #[test]
    fn bad_entries_are_named_with_what_was_expected() {
        assert_eq!(
            error(&["mon-fri 9-18"], &[]),
            "\"mon-fri 9-18\": \"9-18\" is not a time range: expected HH:MM-HH:MM, e.g. 09:00-18:00"
        );
        assert_eq!(
            error(&["mon-fry 09:00-18:00"], &[]),
            "\"mon-fry 09:00-18:00\": \"fry\" is not a day: expected mon, tue, wed, thu, fri, sat or sun, e.g. \"mon-fri 09:00-18:00\""
        );
        assert_eq!(
            error(&["mon-fri"], &[]),
            "\"mon-fri\": no times: expected days then HH:MM-HH:MM ranges or \"closed\", e.g. \"mon-fri 09:00-18:00\""
        );
        assert_eq!(
            error(&["09:00-18:00"], &[]),
            "\"09:00-18:00\": no days: expected days first, e.g. \"mon-fri 09:00-18:00\""
        );
        assert_eq!(
            error(&["mon 09:00-09:00"], &[]),
            "\"mon 09:00-09:00\": \"09:00-09:00\" is empty: its start and end are the same (00:00-24:00 is the whole day)"
        );
        assert_eq!(
            error(&["mon-sun 09:00-18:00", "sun closed"], &[]),
            "\"sun closed\": sun also has hours in \"mon-sun 09:00-18:00\": name only the days open"
        );
        assert!(error(&[" "], &[]).starts_with("\" \": expected days then times"));
        for bad in [
            "mon 24:00-02:00",
            "mon 09:60-10:00",
            "mon 23:00-25:00",
            "mon 9:5-10:00",
            "mon 09:00",
            "mon 0900-1000",
            "mon closed 09:00-10:00",
            "mon 09:00-18:00-19:00",
        ] {
            assert!(error(&[bad], &[]).contains("is not a time range"), "{bad}");
        }
        assert!(error(&["mon,,tue 09:00-10:00"], &[]).contains("\"\" is not a day"));
    }

    #[test]
    fn holidays_are_dates_once_or_every_year() {
        let h = hours(
            &["mon-fri 09:00-18:00"],
            &["2025-12-26", " 12-25 ", "02-29"],
        );
        assert!(h.dates.contains(&Date::new(2025, 12, 26).unwrap()));
        assert!(h.yearly.contains(&(12, 25)) && h.yearly.contains(&(2, 29)));
        for bad in [
            "2025-02-29",
            "13-01",
            "12-32",
            "2025/12/25",
            "25-12-2025",
            "2025-12-5",
            "christmas",
            "",
        ] {
            assert_eq!(
                error(&[], &[bad]),
                format!("{bad:?}: expected a date as YYYY-MM-DD (closed once) or MM-DD (closed every year), e.g. \"2025-12-26\" or \"12-25\""),
            );
        }
    }

    #[test]
    fn closed_over_the_weekend_opens_on_monday() {
        let ny = zone("America/New_York");
        let h = hours(&["mon-fri 09:00-18:00"], &[]);
        // Friday 7 March 2025.
        assert!(h.open_at(local(&ny, "2025-03-07T17:59:59"), &ny));
        let closing = local(&ny, "2025-03-07T18:00");
        assert!(!h.open_at(closing, &ny));
        // Clocks went forward on Sunday: Monday 09:00 is 13:00 UTC, not 14:00.
        assert_eq!(
            h.next_opening(closing, &ny),
            Some(utc("2025-03-10T13:00:00Z"))
        );
        // Open now: now.
        let open = local(&ny, "2025-03-10T12:00");
        assert_eq!(h.next_opening(open, &ny), Some(open));
    }

    #[test]
    fn the_same_hours_read_in_another_zone() {
        let h = hours(&["mon-fri 09:00-18:00"], &[]);
        let t = utc("2025-03-07T15:00:00Z");
        assert!(h.open_at(t, &zone("Europe/London")));
        assert!(!h.open_at(t, &zone("Asia/Kolkata")), "20:30 in India");
        assert!(h.open_at(t, &TimeZone::UTC));
    }

    #[test]
    fn holidays_close_the_whole_day() {
        let london = zone("Europe/London");
        let h = hours(&["mon-fri 09:00-18:00"], &["2025-12-26", "12-25", "01-01"]);
        let christmas = local(&london, "2025-12-25T10:00");
        assert!(!h.open_at(christmas, &london));
        assert_eq!(
            h.next_opening(christmas, &london),
            Some(local(&london, "2025-12-29T09:00"))
        );
        // New Year's Day 2027 is a Friday: the next opening is Monday.
        let eve = local(&london, "2026-12-31T18:30");
        assert_eq!(
            h.next_opening(eve, &london),
            Some(local(&london, "2027-01-04T09:00"))
        );
    }

    #[test]
    fn a_range_past_midnight_belongs_to_its_day() {
        let london = zone("Europe/London");
        let h = hours(&["fri 22:00-02:00"], &[]);
        assert!(h.open_at(local(&london, "2025-06-07T01:59"), &london));
        assert!(!h.open_at(local(&london, "2025-06-07T02:00"), &london));
        // Friday a holiday: the hours after midnight are Saturday's, still open.
        let h = hours(&["fri 22:00-02:00"], &["2025-06-06"]);
        assert_eq!(
            h.next_opening(local(&london, "2025-06-06T21:00"), &london),
            Some(local(&london, "2025-06-07T00:00"))
        );
    }

    #[test]
    fn an_opening_in_the_skipped_hour_opens_when_the_clocks_land() {
        let ny = zone("America/New_York");
        // Sunday 9 March 2025: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        let h = hours(&["sun 02:30-05:00"], &[]);
        let before = utc("2025-03-09T06:59:00Z");
        assert!(!h.open_at(before, &ny));
        assert_eq!(
            h.next_opening(before, &ny),
            Some(utc("2025-03-09T07:00:00Z"))
        );
        // A range wholly inside the skipped hour does not happen that day.
        let h = hours(&["sun 02:10-02:50"], &[]);
        assert_eq!(
            h.next_opening(before, &ny),
            Some(local(&ny, "2025-03-16T02:10"))
        );

        // London, Sunday 30 March 2025: 01:00 GMT becomes 02:00 BST.
        let london = zone("Europe/London");
        let h = hours(&["sun 01:30-03:00"], &[]);
        assert_eq!(
            h.next_opening(utc("2025-03-30T00:59:00Z"), &london),
            Some(utc("2025-03-30T01:00:00Z"))
        );
    }

    #[test]
    fn a_repeated_hour_is_open_both_times() {
        let ny = zone("America/New_York");
        // Sunday 2 November 2025: 02:00 EDT (06:00 UTC) becomes 01:00 EST.
        let h = hours(&["sun 01:30-01:45"], &[]);
        assert!(h.open_at(utc("2025-11-02T05:30:00Z"), &ny), "01:30 EDT");
        let between = utc("2025-11-02T05:50:00Z");
        assert!(!h.open_at(between, &ny));
        assert_eq!(
            h.next_opening(between, &ny),
            Some(utc("2025-11-02T06:30:00Z"))
        );
        // Clocks going back into a range open it, mid-range.
        let h = hours(&["sun 00:30-01:30"], &[]);
        assert_eq!(
            h.next_opening(utc("2025-11-02T05:40:00Z"), &ny),
            Some(utc("2025-11-02T06:00:00Z"))
        );

        // London, Sunday 26 October 2025: 02:00 BST (01:00 UTC) becomes 01:00 GMT.
        let london = zone("Europe/London");
        let h = hours(&["sun 01:00-01:30"], &[]);
        assert_eq!(
            h.next_opening(utc("2025-10-26T00:45:00Z"), &london),
            Some(utc("2025-10-26T01:00:00Z"))
        );
    }

    #[test]
    fn clocks_going_back_over_midnight_repeat_the_day_before() {
        // Summer time (UTC-2) ends at 00:30 on the first Sunday of November,
        // back to 23:30 on Saturday (UTC-3): in 2025 at 02:30 UTC.
        let tz = TimeZone::posix("AAA3BBB,M3.2.0/0:30,M11.1.0/0:30").unwrap();
        let h = hours(&["sat 23:40-23:50", "sun 00:10-00:20"], &[]);
        // Saturday 23:55, the first time: Sunday 00:10 comes first.
        let sat = utc("2025-11-02T01:55:00Z");
        assert_eq!(h.next_opening(sat, &tz), Some(utc("2025-11-02T02:10:00Z")));
        // Sunday 00:25, the first time: Saturday 23:40 comes again.
        let sun = utc("2025-11-02T02:25:00Z");
        assert_eq!(h.next_opening(sun, &tz), Some(utc("2025-11-02T02:40:00Z")));
    }

    #[test]
    fn a_schedule_never_open_has_no_next_opening() {
        let london = zone("Europe/London");
        let now = utc("2025-06-01T12:00:00Z");
        for h in [hours(&["mon-sun closed"], &[]), hours(&[], &[])] {
            assert!(!h.open_at(now, &london));
            assert_eq!(h.next_opening(now, &london), None);
        }
        // Open only on days that are always holidays.
        let every_day: Vec<String> = (1..=12)
            .flat_map(|m| (1..=31).map(move |d| format!("{m:02}-{d:02}")))
            .filter(|d| parse_holiday(d).is_some())
            .collect();
        let every_day: Vec<&str> = every_day.iter().map(String::as_str).collect();
        let h = hours(&["mon-sun 09:00-10:00"], &every_day);
        assert_eq!(h.next_opening(now, &london), None);
        // The end of time is no panic.
        assert_eq!(
            hours(&["mon 09:00-10:00"], &[]).next_opening(Timestamp::MAX, &london),
            None
        );
    }

    #[test]
    fn a_country_with_one_clock_has_a_zone() {
        let name = |r: &str| zone_of_region(r).and_then(|z| z.iana_name().map(str::to_string));
        assert_eq!(name("GB").as_deref(), Some("Europe/London"));
        assert_eq!(name("gb").as_deref(), Some("Europe/London"));
        assert_eq!(name("IN").as_deref(), Some("Asia/Kolkata"));
        // Büsingen keeps Berlin's time.
        assert_eq!(name("DE").as_deref(), Some("Europe/Berlin"));
        for several in ["US", "CA", "AU", "ES", "BR"] {
            assert_eq!(name(several), None, "{several}");
        }
        assert_eq!(name("XX"), None);
        assert_eq!(name(""), None);
    }

    #[test]
    fn zone_tab_lists_each_countrys_zones() {
        let tab = "# comment\nDE\t+5230+01322\tEurope/Berlin\tmost of Germany\nDE\t+4742+00841\tEurope/Busingen\tBusingen\nGB\t+513030-0000731\tEurope/London\nbroken line\n";
        let by = zones_by_country(tab);
        assert_eq!(by["DE"], ["Europe/Berlin", "Europe/Busingen"]);
        assert_eq!(by["GB"], ["Europe/London"]);
        assert_eq!(by.len(), 2);
        let now = utc("2025-06-01T00:00:00Z");
        let zones = one_clock_zones(&by, now);
        assert_eq!(zones["DE"].iana_name(), Some("Europe/Berlin"));
        let us = HashMap::from([(
            "US".to_string(),
            vec![
                "America/New_York".to_string(),
                "America/Chicago".to_string(),
            ],
        )]);
        assert!(one_clock_zones(&us, now).is_empty());
        let missing = HashMap::from([("ZZ".to_string(), vec!["Nowhere/Atlantis".to_string()])]);
        assert!(one_clock_zones(&missing, now).is_empty());
    }
}
