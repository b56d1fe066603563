//! Amounts of money without floating point: ten-thousandths of the currency
//! unit, so that rates like `0.015` a minute add up exactly.

use std::fmt;

/// An amount in ten-thousandths of a currency unit (`1.00` is 10 000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(pub i64);

/// Ten-thousandths in a unit.
const SCALE: i64 = 10_000;

impl Money {
    pub const ZERO: Money = Money(0);

    /// `"0.10"`, `"12"`, `"-1.5"`, `"0.0125"`: up to four decimals, at most a
    /// thousand billion units.
    pub fn parse(s: &str) -> Option<Money> {
        let s = s.trim();
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() || whole.len() > 12 || frac.len() > 4 {
            return None;
        }
        if !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let units: i64 = whole.parse().ok()?;
        let frac: i64 = format!("{frac:0<4}").parse().ok()?;
        let v = units * SCALE + frac;
        Some(Money(if neg { -v } else { v }))
    }

    /// The whole minutes `self` buys at `per_minute`; `None` when free.
    pub fn minutes_at(self, per_minute: Money) -> Option<i64> {
        (per_minute.0 > 0).then(|| self.0.max(0) / per_minute.0)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }
}

impl fmt::Display for Money {
    /// Two decimals at least, four at most: `0.10`, `0.0125`, `-3.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let (units, frac) = (self.0.abs() / SCALE, self.0.abs() % SCALE);
        let mut decimals = format!("{frac:04}");
        while decimals.len() > 2 && decimals.ends_with('0') {
            decimals.pop();
        }
        write!(f, "{sign}{units}.{decimals}")
    }
}

/// The rating both Cloud9 and Spokn use: the price of a minute to `number`
/// is that of the longest prefix of it among `rates` (`+` alone matches every
/// number); `None` when no prefix matches.
pub fn rate_for<'a>(
    rates: impl IntoIterator<Item = (&'a str, Money)>,
    number: &str,
) -> Option<Money> {
    rates
        .into_iter()
        .filter(|(prefix, _)| number.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_and_print_exactly() {
        assert_eq!(Money::parse("0.10"), Some(Money(1000)));
        assert_eq!(Money::parse("12"), Some(Money(120_000)));
        assert_eq!(Money::parse("0.0125"), Some(Money(125)));
        assert_eq!(Money::parse("-1.5"), Some(Money(-15_000)));
        for bad in ["", ".5", "1.23456", "1,5", "abc", "1e3", "9999999999999"] {
            assert_eq!(Money::parse(bad), None, "{bad}");
        }
        assert_eq!(Money(1000).to_string(), "0.10");
        assert_eq!(Money(125).to_string(), "0.0125");
        assert_eq!(Money(-30_000).to_string(), "-3.00");
    }

    #[test]
    fn the_longest_prefix_rates_a_number() {
        let rates = [("+", Money(1)), ("+44", Money(2)), ("+4420", Money(3))];
        assert_eq!(rate_for(rates, "+442071234567"), Some(Money(3)));
        assert_eq!(rate_for(rates, "+447700900123"), Some(Money(2)));
        assert_eq!(rate_for(rates, "+15551234567"), Some(Money(1)));
        assert_eq!(rate_for(rates[1..].iter().copied(), "+1555"), None);
    }

    #[test]
    fn minutes_are_whole_minutes() {
        let rate = Money::parse("0.10").unwrap();
        assert_eq!(Money::parse("0.99").unwrap().minutes_at(rate), Some(9));
        assert_eq!(Money::parse("0.09").unwrap().minutes_at(rate), Some(0));
        assert_eq!(Money::parse("-1").unwrap().minutes_at(rate), Some(0));
        assert_eq!(Money(5).minutes_at(Money::ZERO), None);
    }
}
