//! Points in time as signed: whole seconds since the Unix epoch, UTC.
//!
//! Signed formats carry [`Timestamp`]s (an `i64` of seconds; postcard zigzag varint). People
//! write them as RFC 3339 (`2026-12-01T00:00:00Z`, any UTC offset) or relative to now (`+72h`,
//! `-1d`, `+1w2d`, `now`); they are always shown as RFC 3339 in UTC.

use std::{fmt, time::SystemTime};

use serde::{Deserialize, Serialize};

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

/// Text that is neither RFC 3339 nor a relative time.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error(
    "{text:?} is not a time: use RFC 3339 (2026-12-01T00:00:00Z) or a relative time (+72h, -1d, +1w2d, now)"
)]
pub struct TimeParseError {
    text: String,
}

impl Timestamp {
    /// The system clock, now.
    pub fn now() -> Timestamp {
        match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX)),
        }
    }

    /// This time plus `seconds` (saturating).
    pub fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(seconds))
    }

    /// Parses RFC 3339 or a time relative to `now` (`+72h`, `-30m`, `+1w2d`, `now`).
    /// Units: `s`, `m`, `h`, `d` (24 h), `w` (7 d).
    pub fn parse(text: &str, now: Timestamp) -> Result<Timestamp, TimeParseError> {
        let err = || TimeParseError {
            text: text.chars().take(100).collect(),
        };
        let trimmed = text.trim();
        if trimmed == "now" {
            return Ok(now);
        }
        if let Some((sign, rest)) = trimmed
            .strip_prefix('+')
            .map(|r| (1, r))
            .or_else(|| trimmed.strip_prefix('-').map(|r| (-1, r)))
        {
            let seconds = parse_relative(rest).ok_or_else(err)?;
            return Ok(now.plus_seconds(sign * seconds));
        }
        let ts: jiff::Timestamp = trimmed.parse().map_err(|_| err())?;
        Ok(Timestamp(ts.as_second()))
    }
}

/// `1w2d3h` → seconds; `None` if malformed or over a thousand years.
fn parse_relative(text: &str) -> Option<i64> {
    const LIMIT: i64 = 1000 * 366 * 86_400;
    let mut total: i64 = 0;
    let mut digits = String::new();
    if text.is_empty() {
        return None;
    }
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        total = total.checked_add(n.checked_mul(unit)?)?;
        if total > LIMIT {
            return None;
        }
    }
    digits.is_empty().then_some(total)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_second(self.0) {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "@{}s", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_absolute_and_relative_times() {
        let now = Timestamp(1_700_000_000);
        assert_eq!(
            Timestamp::parse("2027-01-15T08:00:00Z", now).unwrap(),
            Timestamp(1_800_000_000)
        );
        assert_eq!(
            Timestamp::parse("2027-01-15T08:00:00+02:00", now).unwrap(),
            Timestamp(1_799_992_800)
        );
        assert_eq!(Timestamp::parse("now", now).unwrap(), now);
        assert_eq!(
            Timestamp::parse("+72h", now).unwrap(),
            now.plus_seconds(72 * 3600)
        );
        assert_eq!(
            Timestamp::parse("-1d", now).unwrap(),
            now.plus_seconds(-86_400)
        );
        assert_eq!(
            Timestamp::parse("+1w2d30s", now).unwrap(),
            now.plus_seconds(9 * 86_400 + 30)
        );
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        let now = Timestamp(0);
        for bad in [
            "",
            "+",
            "+72",
            "+3y",
            "tomorrow",
            "2027-13-01T00:00:00Z",
            "+99999999999w",
        ] {
            let err = Timestamp::parse(bad, now).unwrap_err().to_string();
            assert!(err.contains("is not a time"), "{bad}: {err}");
        }
    }

    #[test]
    fn displays_rfc3339_utc() {
        assert_eq!(Timestamp(1_800_000_000).to_string(), "2027-01-15T08:00:00Z");
    }
}
