//! Phone numbers. Stored canonically as E.164 with a leading `+`; each dialect
//! keeps its own presentation on the wire (XIP: digits only).

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
