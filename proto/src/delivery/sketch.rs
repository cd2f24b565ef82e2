//! A HyperLogLog sketch of distinct peers, with a frozen encoding so sketches can be signed by
//! one partner and merged by another.
//!
//! ```text
//! precision p = 10, m = 2^p = 1024 registers, one byte each
//! item hash h = first 8 bytes (big-endian u64) of
//!     SHA-256("licet/v1/delivery-peer" ‖ 0x00 ‖ release id (32) ‖ day (u32 BE) ‖ peer id bytes)
//! register index = top p bits of h; value = 1 + leading zeros of the other 54 bits (1..=55;
//!     55 when they are all zero)
//! estimate: raw = α·m² / Σ 2^-register, α = 0.7213 / (1 + 1.079/m);
//!     while raw ≤ 2.5·m and some register is 0: linear counting m·ln(m / zero registers)
//! merge = register-wise maximum
//! encoding (postcard): varint length 1024 (`80 08`) then the 1024 register bytes
//! ```
//!
//! Invariants:
//! - a [`DistinctSketch`] always has exactly [`SKETCH_REGISTERS`] registers, each at most
//!   [`MAX_REGISTER_VALUE`]; decoding refuses anything else, so every sketch that exists can be
//!   merged with every other;
//! - [`DistinctSketch::merge`] is commutative, associative and idempotent (a register-wise
//!   maximum), so a peer counted by two partners, or twice by one, is counted once;
//! - the hash is salted with the release and the day: a sketch says nothing about the same peer's
//!   downloads of another release or on another day, and sketches only merge meaningfully with
//!   sketches of the same release and day (the report carries both, and the merge keys by them).
//!
//! Why p = 10 (standard error 1.04/√1024 ≈ 3.25 %): a signed report with its sketch and the
//! largest delegation the format allows must fit one gossip message of 4 KiB; p = 12 would need
//! 4 KiB for the registers alone. Below about 2,500 distinct peers linear counting applies and
//! the estimate is far tighter: it counts the registers in use, so it is exact unless two peers
//! share a register, and each such collision counts one peer less (for 10 peers a collision
//! happens with probability about 4 %, and the estimate is then 9).

use serde::{Deserialize, Serialize};

use crate::{ManifestId, encoding, ids::sha256};

/// Bits of the hash that pick a register.
pub const SKETCH_PRECISION: u32 = 10;
/// Registers in a sketch (2^[`SKETCH_PRECISION`]).
pub const SKETCH_REGISTERS: usize = 1 << SKETCH_PRECISION;
/// Largest register value: one more than the bits left after the index.
pub const MAX_REGISTER_VALUE: u8 = (64 - SKETCH_PRECISION + 1) as u8;
/// The sketch's relative standard error, 1.04 / √[`SKETCH_REGISTERS`].
pub const SKETCH_STANDARD_ERROR: f64 = 1.04 / 32.0;

/// A UTC day: whole days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UtcDay(pub u32);

impl UtcDay {
    /// The UTC day holding `time` (days before 1970 are day 0).
    pub fn of(time: crate::Timestamp) -> UtcDay {
        UtcDay(u32::try_from(time.0.max(0) / 86_400).unwrap_or(u32::MAX))
    }

    /// The first second of this day.
    pub fn start(self) -> crate::Timestamp {
        crate::Timestamp(i64::from(self.0) * 86_400)
    }
}

impl std::fmt::Display for UtcDay {
    /// `YYYY-MM-DD`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match jiff::Timestamp::from_second(self.start().0) {
            Ok(t) => write!(f, "{}", t.strftime("%Y-%m-%d")),
            Err(_) => write!(f, "day {}", self.0),
        }
    }
}

impl std::str::FromStr for UtcDay {
    type Err = String;

    /// Parses `YYYY-MM-DD`.
    fn from_str(text: &str) -> Result<UtcDay, String> {
        let date: jiff::civil::Date = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a day: use YYYY-MM-DD"))?;
        let start = date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|e| format!("{text:?} is not a day: {e}"))?
            .timestamp()
            .as_second();
        Ok(UtcDay::of(crate::Timestamp(start)))
    }
}

/// The 64-bit hash of one peer for one release on one day (see the module docs).
pub fn peer_hash(release: &ManifestId, day: UtcDay, peer: &[u8]) -> u64 {
    let digest = sha256(&[
        b"licet/v1/delivery-peer\0",
        release.as_bytes(),
        &day.0.to_be_bytes(),
        peer,
    ]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A HyperLogLog sketch of distinct peers (see the module docs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<u8>", into = "Vec<u8>")]
pub struct DistinctSketch {
    registers: Vec<u8>,
}

impl std::fmt::Debug for DistinctSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DistinctSketch(≈{:.1})", self.estimate())
    }
}

/// Why bytes are not a sketch.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SketchError {
    /// Not exactly [`SKETCH_REGISTERS`] registers.
    #[error("a distinct-peer sketch has {SKETCH_REGISTERS} registers, this one has {0}")]
    WrongLength(usize),
    /// A register above [`MAX_REGISTER_VALUE`].
    #[error("register {index} of the distinct-peer sketch is {value}, over {MAX_REGISTER_VALUE}")]
    RegisterTooLarge {
        /// Which register.
        index: usize,
        /// Its value.
        value: u8,
    },
}

impl TryFrom<Vec<u8>> for DistinctSketch {
    type Error = SketchError;

    fn try_from(registers: Vec<u8>) -> Result<DistinctSketch, SketchError> {
        if registers.len() != SKETCH_REGISTERS {
            return Err(encoding::noted(SketchError::WrongLength(registers.len())));
        }
        if let Some((index, &value)) = registers
            .iter()
            .enumerate()
            .find(|(_, v)| **v > MAX_REGISTER_VALUE)
        {
            return Err(encoding::noted(SketchError::RegisterTooLarge {
                index,
                value,
            }));
        }
        Ok(DistinctSketch { registers })
    }
}

impl From<DistinctSketch> for Vec<u8> {
    fn from(sketch: DistinctSketch) -> Vec<u8> {
        sketch.registers
    }
}

impl Default for DistinctSketch {
    fn default() -> Self {
        DistinctSketch::new()
    }
}

impl DistinctSketch {
    /// An empty sketch (estimate 0).
    pub fn new() -> DistinctSketch {
        DistinctSketch {
            registers: vec![0; SKETCH_REGISTERS],
        }
    }

    /// Adds one item by its [`peer_hash`].
    pub fn insert_hash(&mut self, hash: u64) {
        let index = (hash >> (64 - SKETCH_PRECISION)) as usize;
        let rest = hash << SKETCH_PRECISION;
        let value = if rest == 0 {
            MAX_REGISTER_VALUE
        } else {
            // At most 53 leading zeros here, so the value is at most 54.
            (rest.leading_zeros() + 1) as u8
        };
        if let Some(register) = self.registers.get_mut(index)
            && *register < value
        {
            *register = value;
        }
    }

    /// Adds `peer` (its id's bytes) as served `release` on `day`.
    pub fn insert_peer(&mut self, release: &ManifestId, day: UtcDay, peer: &[u8]) {
        self.insert_hash(peer_hash(release, day, peer));
    }

    /// Merges `other` in: the register-wise maximum.
    pub fn merge(&mut self, other: &DistinctSketch) {
        for (mine, theirs) in self.registers.iter_mut().zip(&other.registers) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// The estimated number of distinct items inserted (see the module docs).
    pub fn estimate(&self) -> f64 {
        let m = SKETCH_REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }

    /// [`DistinctSketch::estimate`] rounded to a whole count.
    pub fn count(&self) -> u64 {
        self.estimate().round() as u64
    }

    /// The registers, as encoded.
    pub fn registers(&self) -> &[u8] {
        &self.registers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch_of(peers: std::ops::Range<u32>) -> DistinctSketch {
        let release = ManifestId([7; 32]);
        let mut sketch = DistinctSketch::new();
        for peer in peers {
            sketch.insert_peer(&release, UtcDay(20_000), &peer.to_be_bytes());
        }
        sketch
    }

    #[test]
    fn estimates_are_within_the_stated_error() {
        assert_eq!(DistinctSketch::new().count(), 0);
        assert_eq!(sketch_of(0..1).count(), 1);
        assert_eq!(sketch_of(0..10).count(), 10);
        for n in [1_000u32, 100_000] {
            let estimate = sketch_of(0..n).estimate();
            let error = (estimate - f64::from(n)).abs() / f64::from(n);
            // Three standard errors: the claim the README makes for large counts.
            assert!(
                error <= 3.0 * SKETCH_STANDARD_ERROR,
                "{n} peers estimated as {estimate}"
            );
        }
    }

    #[test]
    fn a_peer_inserted_twice_counts_once() {
        let mut sketch = sketch_of(0..10);
        let before = sketch.clone();
        sketch.insert_peer(&ManifestId([7; 32]), UtcDay(20_000), &3u32.to_be_bytes());
        assert_eq!(sketch, before);
    }

    #[test]
    fn merged_halves_estimate_the_whole() {
        let mut merged = sketch_of(0..600);
        merged.merge(&sketch_of(400..1_000));
        assert_eq!(merged, sketch_of(0..1_000));
    }

    #[test]
    fn the_hash_is_salted_by_release_and_day() {
        let peer = b"peer";
        let a = peer_hash(&ManifestId([1; 32]), UtcDay(1), peer);
        assert_ne!(a, peer_hash(&ManifestId([2; 32]), UtcDay(1), peer));
        assert_ne!(a, peer_hash(&ManifestId([1; 32]), UtcDay(2), peer));
        assert_eq!(a, peer_hash(&ManifestId([1; 32]), UtcDay(1), peer));
    }

    #[test]
    fn decoding_refuses_a_wrong_length_or_register() {
        let short = encoding::encode(&vec![0u8; 10]);
        let err = encoding::decode::<DistinctSketch>("sketch", &short, 4096).unwrap_err();
        assert!(
            err.to_string()
                .contains("has 1024 registers, this one has 10"),
            "{err}"
        );
        let mut registers = vec![0u8; SKETCH_REGISTERS];
        registers[5] = MAX_REGISTER_VALUE + 1;
        let big = encoding::encode(&registers);
        let err = encoding::decode::<DistinctSketch>("sketch", &big, 4096).unwrap_err();
        assert!(err.to_string().contains("register 5"), "{err}");
    }

    #[test]
    fn days_show_and_parse_as_dates() {
        let day: UtcDay = "2027-01-15".parse().unwrap();
        assert_eq!(day.to_string(), "2027-01-15");
        assert_eq!(day, UtcDay::of(crate::Timestamp(1_800_000_000)));
        assert!("15/01/2027".parse::<UtcDay>().is_err());
    }
}
