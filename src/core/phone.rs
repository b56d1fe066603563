//! Phone numbers. Stored canonically as E.164 with a leading `+`; each dialect
//! keeps its own presentation on the wire (XIP: digits only).
//!
//! [`check_valid`] says whether a number can exist at all, by libphonenumber's
//! metadata, before c2cd dials it.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use phonenumber::metadata::{Database, Descriptor, Metadata, DATABASE};
use regex::{Regex, RegexBuilder};

/// An E.164 number: a country code and subscriber number, 7 to 15 digits, no
/// leading zero.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

/// Why a string is not an E.164 number; the text is what a vendor is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("is empty")]
    Empty,
    #[error("must contain digits only")]
    NotDigits,
    #[error("must be 7 to 15 digits")]
    Length,
    #[error("must start with a country code, not 0")]
    LeadingZero,
}

impl E164 {
    /// Parses E.164 digits without `+`, as XIP sends them (`16045551234`).
    pub fn from_digits(s: &str) -> Result<Self, NumberError> {
        if s.is_empty() {
            return Err(NumberError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NumberError::NotDigits);
        }
        if !(7..=15).contains(&s.len()) {
            return Err(NumberError::Length);
        }
        if s.starts_with('0') {
            return Err(NumberError::LeadingZero);
        }
        Ok(E164(format!("+{s}")))
    }

    /// Parses the canonical form with `+`, as stored.
    pub fn from_canonical(s: &str) -> Result<Self, NumberError> {
        match s.strip_prefix('+') {
            Some(d) => Self::from_digits(d),
            None => Err(NumberError::NotDigits),
        }
    }

    /// The canonical form, `+16045551234`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+`, `16045551234`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl serde::Serialize for E164 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a leg rings: a phone number, or a local address on the box (an extension,
/// which Spokn calls a "Spokn ID"): digits without `+`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Phone(E164),
    Local(String),
}

/// The longest local address (extension) accepted.
pub const MAX_LOCAL_DIGITS: usize = 15;

impl Address {
    /// `+` and E.164 digits is a phone number; digits alone (1 to 15) a local
    /// address.
    pub fn parse(s: &str) -> Result<Address, NumberError> {
        if s.starts_with('+') {
            return E164::from_canonical(s).map(Address::Phone);
        }
        if s.is_empty() {
            return Err(NumberError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NumberError::NotDigits);
        }
        if s.len() > MAX_LOCAL_DIGITS {
            return Err(NumberError::Length);
        }
        Ok(Address::Local(s.to_string()))
    }

    /// As stored: `+16045551234`, or the local digits.
    pub fn as_str(&self) -> &str {
        match self {
            Address::Phone(n) => n.as_str(),
            Address::Local(d) => d,
        }
    }

    /// The digits without `+`.
    pub fn digits(&self) -> &str {
        match self {
            Address::Phone(n) => n.digits(),
            Address::Local(d) => d,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Address::Local(_))
    }
}

impl From<E164> for Address {
    fn from(n: E164) -> Address {
        Address::Phone(n)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A stored plan reads its numbers back as written: `+` and digits, or local
/// digits.
impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s).map_err(|e| serde::de::Error::custom(format!("number {s:?} {e}")))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last `n` characters of `s` (all of it when shorter): the XIP caller-ID rule.
pub fn last_chars(s: &str, n: usize) -> &str {
    let count = s.chars().count();
    if count <= n {
        return s;
    }
    let skip = count - n;
    match s.char_indices().nth(skip) {
        Some((i, _)) => &s[i..],
        None => s,
    }
}

/// Whether `number` (digits, no `+`) matches a pattern of digits where `X` is any
/// digit and a trailing `*` matches any rest: `1555*`, `1604555XXXX`.
pub fn matches_pattern(pattern: &str, number: &str) -> bool {
    let (body, open) = match pattern.strip_suffix('*') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    let body = body.strip_prefix('+').unwrap_or(body);
    let number = number.strip_prefix('+').unwrap_or(number);
    if open {
        if number.len() < body.len() {
            return false;
        }
    } else if number.len() != body.len() {
        return false;
    }
    body.bytes()
        .zip(number.bytes())
        .all(|(p, n)| p == n || (p == b'X' || p == b'x') && n.is_ascii_digit())
}

/// Whether a pattern is well formed (digits, `X`, optional leading `+` and trailing `*`).
pub fn valid_pattern(pattern: &str) -> bool {
    let p = pattern.strip_prefix('+').unwrap_or(pattern);
    let p = p.strip_suffix('*').unwrap_or(p);
    !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_digit() || b == b'X' || b == b'x')
        || pattern == "*"
}

/// A country or territory, ISO 3166-1 alpha-2 (`US`, `GB`): where
/// libphonenumber's metadata places a valid number.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(&'static str);

impl Region {
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Why no number like this one can exist, by libphonenumber's metadata; the text
/// is what a vendor is told, after the number (`number "+4479123" is too short
/// for country code +44`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("has no such country code")]
    NoSuchCountryCode,
    #[error("is too short for country code +{0}")]
    TooShort(u16),
    #[error("is too long for country code +{0}")]
    TooLong(u16),
    #[error("has a length that no number under country code +{0} has")]
    Length(u16),
    #[error("is not a valid number for country code +{0}")]
    NotValid(u16),
}

/// Whether `n` is a valid number by libphonenumber's metadata, and where it is
/// (`None` for the numbers of no country: +800 freephone, +882 networks, …).
/// Valid means its country's plan has such a number, of any kind: fixed line,
/// mobile, toll free, premium rate, shared cost, VoIP, personal, pager, UAN,
/// voicemail; not short codes nor emergency numbers, which are not dialled in
/// E.164. ("Possible", in libphonenumber's words, would check the length only.)
///
/// The number is checked as it will be dialled: a trunk prefix after the
/// country code is not stripped (`+44 0 20…` is refused), where
/// libphonenumber's parser, reading what people write, strips it.
///
/// Cheap (about a microsecond) once [`load_metadata`] has run; the first check
/// of a country compiles that country's patterns.
pub fn check_valid(n: &E164) -> Result<Option<Region>, Invalid> {
    let plan = numbering_plan();
    let digits = n.digits();
    // Country codes are prefix-free (ITU-T E.164), so the first known prefix is
    // the country code.
    let Some((code, territories, national)) = (1..=3).find_map(|len| {
        let code = digits.get(..len)?.parse::<u16>().ok()?;
        let territories = plan.by_code.get(&code)?;
        Some((code, territories, digits.get(len..)?))
    }) else {
        return Err(Invalid::NoSuchCountryCode);
    };
    if let Some(t) = territory_of(territories, national) {
        return Ok(Some(t.meta.id())
            .filter(|id| *id != NON_GEOGRAPHIC)
            .map(Region));
    }
    let len = national.len() as u16;
    let lengths = plan.lengths.get(&code).map(Vec::as_slice).unwrap_or(&[]);
    Err(match (lengths.first(), lengths.last()) {
        (Some(&shortest), _) if len < shortest => Invalid::TooShort(code),
        (_, Some(&longest)) if len > longest => Invalid::TooLong(code),
        (Some(_), _) if !lengths.contains(&len) => Invalid::Length(code),
        _ => Invalid::NotValid(code),
    })
}

/// Loads libphonenumber's metadata (a tenth of a second or two), so that no
/// request pays for it: call once at startup, off the async workers, when number
/// checks are on. [`check_valid`] loads it itself otherwise.
pub fn load_metadata() {
    numbering_plan();
}

/// The territory id libphonenumber gives the numbers of no country.
const NON_GEOGRAPHIC: &str = "001";

/// libphonenumber's metadata, arranged for [`check_valid`]. The crate's own
/// validator is not used: it matches through one regex cache behind a mutex,
/// shared by every thread and holding only 100 patterns, so a mix of countries
/// recompiles patterns on every check (4 ms each, measured); it also matches
/// patterns as prefixes where libphonenumber matches whole numbers.
struct NumberingPlan {
    by_code: HashMap<u16, Vec<Territory>>,
    /// Every length a valid number of the country code's main territory may
    /// have, ascending: what tells "too short" and "too long" from "not valid".
    lengths: HashMap<u16, Vec<u16>>,
}

/// One territory's numbering plan; its patterns are compiled on its first
/// number, so memory goes to the countries this box calls.
struct Territory {
    meta: &'static Metadata,
    leading_digits: OnceLock<Option<Regex>>,
    kinds: OnceLock<Kinds>,
}

/// The general pattern every number matches, and one per kind of number.
struct Kinds {
    general: Pattern,
    kinds: Vec<Pattern>,
}

struct Pattern {
    lengths: &'static [u16],
    /// `None` when the pattern does not compile: it matches nothing (a test
    /// checks that every pattern compiles).
    regex: Option<Regex>,
}

fn numbering_plan() -> &'static NumberingPlan {
    static PLAN: OnceLock<NumberingPlan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let db: &'static Database = &DATABASE;
        let mut by_code = HashMap::new();
        let mut lengths = HashMap::new();
        // Every code in turn: `Database::iter` yields one of the non-geographic
        // entities only, which all share the id "001".
        for code in 1..=999u16 {
            // The country's main territory comes first.
            let Some(metas) = db.by_code(&code) else {
                continue;
            };
            // libphonenumber judges lengths by the main territory's plan.
            let mut main: Vec<u16> = metas
                .iter()
                .take(1)
                .flat_map(|m| kinds_of(m))
                .flat_map(|d| d.possible_length().iter().copied())
                .collect();
            main.sort_unstable();
            main.dedup();
            lengths.insert(code, main);
            let territories = metas
                .into_iter()
                .map(|meta| Territory {
                    meta,
                    leading_digits: OnceLock::new(),
                    kinds: OnceLock::new(),
                })
                .collect();
            by_code.insert(code, territories);
        }
        NumberingPlan { by_code, lengths }
    })
}

/// The kinds of number libphonenumber counts as valid.
fn kinds_of(m: &Metadata) -> impl Iterator<Item = &Descriptor> {
    let d = m.descriptors();
    [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ]
    .into_iter()
    .flatten()
}

/// The territory a national number belongs to, if it is a valid number there.
/// As libphonenumber decides: a country code's only territory; else the first
/// whose leading digits begin the number, or, for a territory without leading
/// digits, the first that has such a number.
fn territory_of<'a>(territories: &'a [Territory], national: &str) -> Option<&'a Territory> {
    let found = match territories {
        [only] => only,
        _ => territories.iter().find(|t| match t.leading_digits() {
            Some(leading) => leading.is_match(national),
            None => t.has(national),
        })?,
    };
    Some(found).filter(|t| t.has(national))
}

impl Territory {
    fn leading_digits(&self) -> Option<&Regex> {
        self.leading_digits
            .get_or_init(|| {
                let source = self.meta.leading_digits()?.as_str();
                compile(&format!("^(?:{source})"))
            })
            .as_ref()
    }

    fn kinds(&self) -> &Kinds {
        self.kinds.get_or_init(|| Kinds {
            general: Pattern::of(self.meta.descriptors().general()),
            kinds: kinds_of(self.meta).map(Pattern::of).collect(),
        })
    }

    /// Whether the territory's plan has this national number, of any kind.
    fn has(&self, national: &str) -> bool {
        let k = self.kinds();
        k.general.matches(national) && k.kinds.iter().any(|p| p.matches(national))
    }
}

impl Pattern {
    fn of(d: &'static Descriptor) -> Pattern {
        let source = d.national_number().as_str();
        Pattern {
            lengths: d.possible_length(),
            // libphonenumber matches the whole number.
            regex: compile(&format!("^(?:{source})$")),
        }
    }

    fn matches(&self, national: &str) -> bool {
        let len_ok = self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16));
        len_ok && self.regex.as_ref().is_some_and(|r| r.is_match(national))
    }
}

/// The metadata's patterns are written across lines; numbers are ASCII digits.
fn compile(source: &str) -> Option<Regex> {
    RegexBuilder::new(source)
        .ignore_whitespace(true)
        .unicode(false)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(digits: &str) -> Result<Option<&'static str>, Invalid> {
        let n = E164::from_digits(digits).unwrap();
        check_valid(&n).map(|r| r.map(|r| r.as_str()))
    }

    #[test]
    fn valid_numbers_say_where_they_are() {
        assert_eq!(check("16502530000"), Ok(Some("US")));
        assert_eq!(check("447912345678"), Ok(Some("GB")), "a UK mobile");
        assert_eq!(check("442079460000"), Ok(Some("GB")));
        assert_eq!(check("919810000001"), Ok(Some("IN")));
        // +1 is shared: the area code says which country.
        assert_eq!(check("16045551234"), Ok(Some("CA")));
        assert_eq!(check("18762345678"), Ok(Some("JM")));
        // Italy keeps its leading 0 after the country code, and shares +39
        // with the Vatican.
        assert_eq!(check("390236618300"), Ok(Some("IT")));
        assert_eq!(check("390669812345"), Ok(Some("VA")));
    }

    #[test]
    fn every_kind_of_number_is_dialled_not_only_fixed_lines() {
        assert_eq!(check("18005550100"), Ok(Some("US")), "toll free");
        assert_eq!(check("19002530000"), Ok(Some("US")), "premium rate");
        assert_eq!(check("448001234567"), Ok(Some("GB")), "freephone");
        // Numbers of no country.
        assert_eq!(check("80012345678"), Ok(None), "universal freephone");
        assert_eq!(check("881612345678"), Ok(None), "satellite");
    }

    #[test]
    fn numbers_no_plan_has_are_refused_with_the_reason() {
        // NANPA area codes never start with 0 or 1; 555 is not assigned.
        assert_eq!(check("11234567890"), Err(Invalid::NotValid(1)));
        assert_eq!(check("15550001234"), Err(Invalid::NotValid(1)));
        // Nor do exchanges.
        assert_eq!(check("13101234567"), Err(Invalid::NotValid(1)));
        assert_eq!(check("1650253000"), Err(Invalid::TooShort(1)));
        assert_eq!(check("165025300001"), Err(Invalid::TooLong(1)));
        assert_eq!(check("4479123456789"), Err(Invalid::TooLong(44)));
        assert_eq!(check("4479123"), Err(Invalid::TooShort(44)));
        // Ofcom keeps 07700 900xxx for drama: never a real mobile.
        assert_eq!(check("447700900123"), Err(Invalid::NotValid(44)));
        // A trunk 0 after the country code is dialled as is, and fails.
        assert_eq!(check("4402079460000"), Err(Invalid::TooLong(44)));
        assert_eq!(check("99912345678"), Err(Invalid::NoSuchCountryCode));
        assert_eq!(check("2812345678"), Err(Invalid::NoSuchCountryCode));
        let e = check("4479123").unwrap_err();
        assert_eq!(e.to_string(), "is too short for country code +44");
        assert_eq!(
            Invalid::NotValid(1).to_string(),
            "is not a valid number for country code +1"
        );
    }

    #[test]
    fn every_example_number_in_the_metadata_is_valid() {
        // Also compiles every pattern c2cd uses: one that regex refuses would
        // refuse its country's numbers.
        let plan = numbering_plan();
        let mut examples = 0;
        for (code, territories) in &plan.by_code {
            for t in territories {
                for example in kinds_of(t.meta).filter_map(Descriptor::example) {
                    let digits = format!("{code}{example}");
                    if (7..=15).contains(&digits.len()) {
                        assert!(check(&digits).is_ok(), "+{digits} ({})", t.meta.id());
                        examples += 1;
                    }
                }
                let k = t.kinds();
                let patterns = std::iter::once(&k.general).chain(&k.kinds);
                assert!(
                    patterns.into_iter().all(|p| p.regex.is_some()),
                    "{}",
                    t.meta.id()
                );
                if t.meta.leading_digits().is_some() {
                    assert!(t.leading_digits().is_some(), "{}", t.meta.id());
                }
            }
        }
        assert!(examples > 1000, "{examples}");
    }

    #[test]
    fn every_country_code_and_length_gets_an_answer() {
        for code in 1..=999 {
            for len in 7..=15 {
                let digits = format!("{code}{}", "2".repeat(15))
                    .chars()
                    .take(len)
                    .collect::<String>();
                let _ = check(&digits);
            }
        }
    }

    #[test]
    fn xip_digits_become_canonical() {
        let n = E164::from_digits("16045551234").unwrap();
        assert_eq!(n.as_str(), "+16045551234");
        assert_eq!(n.digits(), "16045551234");
        assert_eq!(E164::from_canonical("+16045551234").unwrap(), n);
    }

    #[test]
    fn malformed_numbers_are_refused() {
        assert_eq!(E164::from_digits(""), Err(NumberError::Empty));
        assert_eq!(
            E164::from_digits("+16045551234"),
            Err(NumberError::NotDigits)
        );
        assert_eq!(E164::from_digits("1604 555"), Err(NumberError::NotDigits));
        assert_eq!(E164::from_digits("123456"), Err(NumberError::Length));
        assert_eq!(
            E164::from_digits("1234567890123456"),
            Err(NumberError::Length)
        );
        assert_eq!(
            E164::from_digits("06045551234"),
            Err(NumberError::LeadingZero)
        );
        assert_eq!(E164::from_digits("١٢٣٤٥٦٧٨"), Err(NumberError::NotDigits));
    }

    #[test]
    fn a_plus_makes_a_phone_number_and_digits_a_local_address() {
        assert_eq!(
            Address::parse("+18474255380").unwrap(),
            Address::Phone(E164::from_digits("18474255380").unwrap())
        );
        let ext = Address::parse("1234567").unwrap();
        assert!(ext.is_local());
        assert_eq!((ext.as_str(), ext.digits()), ("1234567", "1234567"));
        assert_eq!(Address::parse("+0123"), Err(NumberError::Length));
        assert_eq!(Address::parse("12a4"), Err(NumberError::NotDigits));
        assert_eq!(Address::parse(""), Err(NumberError::Empty));
        assert_eq!(Address::parse(&"1".repeat(16)), Err(NumberError::Length));
    }

    #[test]
    fn last_ten() {
        assert_eq!(last_chars("16045551234", 10), "6045551234");
        assert_eq!(last_chars("4420794600", 10), "4420794600");
        assert_eq!(last_chars("3314", 10), "3314");
    }

    #[test]
    fn patterns() {
        assert!(matches_pattern("1555*", "15550001111"));
        assert!(!matches_pattern("1555*", "1666"));
        assert!(matches_pattern("1604555XXXX", "16045551234"));
        assert!(!matches_pattern("1604555XXXX", "160455512345"));
        assert!(matches_pattern("*", "1"));
        assert!(valid_pattern("+4420*"));
        assert!(!valid_pattern("44a"));
        assert!(!valid_pattern(""));
    }
}
