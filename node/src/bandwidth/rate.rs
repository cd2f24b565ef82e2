//! A rate as a user writes it (`"8MB/s"`, `"500KiB/s"`, `"64kbit/s"`, `0`) and as it is shown.
//!
//! Units: `B`, `kB`/`KB` (1000 bytes), `MB`, `GB`, `KiB` (1024 bytes), `MiB`, `GiB`; in bits,
//! `bit`, `kbit`, `Mbit`, `Gbit` (powers of 1000, divided by 8) or the same with `bps`
//! (`kbps`, `Mbps`). `/s` after the unit is optional; a number without a unit is bytes per
//! second. `0`, `unlimited` and `none` mean no limit. `Mb`, `kb` and `Gb` are refused as
//! ambiguous (bits or bytes?).
//!
//! Invariants: a limit is whole bytes per second, between [`MIN_RATE`] and [`MAX_RATE`]; a
//! shown rate parses back to the same limit.

use std::{fmt, num::NonZeroU32, str::FromStr};

/// The smallest limit: below it even a chunk of the smallest size allowed (16 KiB) could not be
/// sent within the time a requester waits for it.
pub const MIN_RATE: u32 = 1024;
/// The largest limit (4 GiB/s less a byte): above it, use no limit.
pub const MAX_RATE: u32 = u32::MAX;

/// A rate limit: bytes per second, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rate(Option<NonZeroU32>);

/// Why a rate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateError {
    /// No number.
    #[error(
        "{0:?} is not a rate: write a number and a unit, such as \"8MB/s\", \"500KiB/s\", \"64kbit/s\", or 0 for no limit"
    )]
    NotANumber(String),
    /// A unit that is not known.
    #[error(
        "{value:?}: unknown unit {unit:?} (use B, kB, MB, GB, KiB, MiB, GiB, kbit, Mbit or Gbit, with or without /s)"
    )]
    UnknownUnit {
        /// The whole value.
        value: String,
        /// The unit.
        unit: String,
    },
    /// `Mb` and its like: bits or bytes?
    #[error("{value:?}: {unit:?} is ambiguous; write {unit}it/s for bits or {bytes}/s for bytes")]
    Ambiguous {
        /// The whole value.
        value: String,
        /// The unit.
        unit: String,
        /// The unit in bytes.
        bytes: String,
    },
    /// Below [`MIN_RATE`].
    #[error("{0:?} is below the smallest limit, 1 KiB/s (use 0 for no limit)")]
    TooSmall(String),
    /// Above [`MAX_RATE`].
    #[error("{0:?} is above the largest limit, 4 GiB/s (use 0 for no limit)")]
    TooLarge(String),
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate(None);

    /// The limit of `bytes_per_second` (0: none), checked against [`MIN_RATE`].
    pub fn from_bytes_per_second(bytes_per_second: u64) -> Result<Rate, RateError> {
        let shown = || format!("{bytes_per_second} B/s");
        match bytes_per_second {
            0 => Ok(Rate::UNLIMITED),
            n if n < u64::from(MIN_RATE) => Err(RateError::TooSmall(shown())),
            n => u32::try_from(n)
                .ok()
                .and_then(NonZeroU32::new)
                .map(|n| Rate(Some(n)))
                .ok_or_else(|| RateError::TooLarge(shown())),
        }
    }

    /// Bytes per second, if limited.
    pub fn limit(self) -> Option<NonZeroU32> {
        self.0
    }

    /// Bytes per second, 0 for no limit (as the API and metrics give it).
    pub fn bytes_per_second(self) -> u64 {
        self.0.map_or(0, |n| u64::from(n.get()))
    }
}

/// Bytes per unit, by the unit's name (with `/s` and `ps` taken off).
fn unit_bytes(unit: &str) -> Option<f64> {
    Some(match unit {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "bit" | "b" => 1.0 / 8.0,
        "kbit" | "Kbit" | "kb" | "Kb" => 1e3 / 8.0,
        "Mbit" | "Mb" => 1e6 / 8.0,
        "Gbit" | "Gb" => 1e9 / 8.0,
        _ => return None,
    })
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Rate, RateError> {
        let value = text.trim();
        if matches!(value.to_ascii_lowercase().as_str(), "unlimited" | "none") {
            return Ok(Rate::UNLIMITED);
        }
        let split = value
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(value.len());
        let (number, unit) = value.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| RateError::NotANumber(value.to_owned()))?;
        let unit = unit.trim();
        let per_second = unit
            .strip_suffix("/s")
            .or_else(|| unit.strip_suffix("ps").filter(|u| u.ends_with('b')))
            .unwrap_or(unit);
        // "Mb/s", "kb", "Gb": bits or bytes? ("Mbps" says bits.)
        if matches!(per_second, "kb" | "Kb" | "Mb" | "Gb") && !unit.ends_with("ps") {
            return Err(RateError::Ambiguous {
                value: value.to_owned(),
                unit: per_second.to_owned(),
                bytes: per_second.to_ascii_uppercase().replace("KB", "kB"),
            });
        }
        let Some(scale) = unit_bytes(per_second) else {
            return Err(RateError::UnknownUnit {
                value: value.to_owned(),
                unit: unit.to_owned(),
            });
        };
        let bytes = (number * scale).round();
        if bytes == 0.0 {
            return Ok(Rate::UNLIMITED);
        }
        if bytes < f64::from(MIN_RATE) {
            return Err(RateError::TooSmall(value.to_owned()));
        }
        if bytes > f64::from(MAX_RATE) {
            return Err(RateError::TooLarge(value.to_owned()));
        }
        Rate::from_bytes_per_second(bytes as u64)
    }
}

impl fmt::Display for Rate {
    /// `unlimited`, or the limit in the largest binary unit that divides it (`8 MiB/s`), else
    /// in bytes (`1000000 B/s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(n) = self.0 else {
            return f.write_str("unlimited");
        };
        let n = n.get();
        for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n % size == 0 {
                return write!(f, "{} {unit}/s", n / size);
            }
        }
        write!(f, "{n} B/s")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bytes(text: &str) -> u64 {
        text.parse::<Rate>().unwrap().bytes_per_second()
    }

    #[test]
    fn units_a_user_writes() {
        assert_eq!(bytes("8MB/s"), 8_000_000);
        assert_eq!(bytes("8 MB/s"), 8_000_000);
        assert_eq!(bytes("500KiB/s"), 500 * 1024);
        assert_eq!(bytes("500kB/s"), 500_000);
        assert_eq!(bytes("64kbit/s"), 8_000);
        assert_eq!(bytes("1.5MiB"), 1_572_864);
        assert_eq!(bytes("100Mbps"), 12_500_000);
        assert_eq!(bytes("20000"), 20_000);
        for none in ["0", "0 MB/s", "unlimited", "None"] {
            assert_eq!(none.parse::<Rate>().unwrap(), Rate::UNLIMITED, "{none}");
        }
    }

    #[test]
    fn bad_rates_say_what_is_wrong() {
        let err = |text: &str| text.parse::<Rate>().unwrap_err().to_string();
        assert!(err("fast").contains("is not a rate"), "{}", err("fast"));
        assert!(
            err("8XB/s").contains("unknown unit \"XB/s\""),
            "{}",
            err("8XB/s")
        );
        assert!(err("8Mb/s").contains("ambiguous"), "{}", err("8Mb/s"));
        assert!(
            err("512B/s").contains("smallest limit"),
            "{}",
            err("512B/s")
        );
        assert!(err("5GiB/s").contains("largest limit"), "{}", err("5GiB/s"));
        assert!(err("-3MB/s").contains("is not a rate"));
    }

    #[test]
    fn shown_in_the_largest_unit_that_divides_it() {
        assert_eq!(bytes("8MiB/s"), 8 << 20);
        assert_eq!("8MiB/s".parse::<Rate>().unwrap().to_string(), "8 MiB/s");
        assert_eq!(
            "1000000".parse::<Rate>().unwrap().to_string(),
            "1000000 B/s"
        );
        assert_eq!(Rate::UNLIMITED.to_string(), "unlimited");
    }

    proptest! {
        #[test]
        fn a_shown_rate_reads_back_the_same(n in u64::from(MIN_RATE)..=u64::from(MAX_RATE)) {
            let rate = Rate::from_bytes_per_second(n).unwrap();
            prop_assert_eq!(rate.to_string().parse::<Rate>().unwrap(), rate);
        }
    }
}
