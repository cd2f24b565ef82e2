//! The limits a user configures: four [`Rate`]s ([`LimitSet`]), and a schedule of other limits
//! for given days and hours ([`ScheduleRule`]), as Transmission's alternative speeds.
//!
//! Invariants:
//! - a rule covers `from` (included) to `to` (excluded), local time, on each of its days; a rule
//!   whose `to` is before its `from` runs past midnight into the next day (it belongs to the day
//!   it starts on); `from` equal to `to` is refused;
//! - the first rule that covers a moment gives the limits then; a rate the rule leaves out is the
//!   base one.

use std::fmt;

use super::rate::Rate;

/// Upload and download limits, global and per peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitSet {
    /// All uploads together.
    pub upload: Rate,
    /// All downloads together.
    pub download: Rate,
    /// Uploads to one peer.
    pub peer_upload: Rate,
    /// Downloads from one peer.
    pub peer_download: Rate,
}

/// Some of the four rates (a schedule rule's, or a change made while running); `None` leaves a
/// rate as it was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitChange {
    /// All uploads together.
    pub upload: Option<Rate>,
    /// All downloads together.
    pub download: Option<Rate>,
    /// Uploads to one peer.
    pub peer_upload: Option<Rate>,
    /// Downloads from one peer.
    pub peer_download: Option<Rate>,
}

impl LimitChange {
    /// `base` with this change's rates put in.
    pub fn apply(&self, base: LimitSet) -> LimitSet {
        LimitSet {
            upload: self.upload.unwrap_or(base.upload),
            download: self.download.unwrap_or(base.download),
            peer_upload: self.peer_upload.unwrap_or(base.peer_upload),
            peer_download: self.peer_download.unwrap_or(base.peer_download),
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == LimitChange::default()
    }

    /// `later` put over this one.
    pub fn then(&self, later: &LimitChange) -> LimitChange {
        LimitChange {
            upload: later.upload.or(self.upload),
            download: later.download.or(self.download),
            peer_upload: later.peer_upload.or(self.peer_upload),
            peer_download: later.peer_download.or(self.peer_download),
        }
    }
}

/// A day of the week, Monday first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

const DAYS: [Day; 7] = [
    Day::Mon,
    Day::Tue,
    Day::Wed,
    Day::Thu,
    Day::Fri,
    Day::Sat,
    Day::Sun,
];

impl Day {
    /// Monday is 0.
    fn index(self) -> u8 {
        self as u8
    }

    /// The day before.
    fn before(self) -> Day {
        DAYS[(usize::from(self.index()) + 6) % 7]
    }

    /// The day of `weekday`.
    pub fn of(weekday: jiff::civil::Weekday) -> Day {
        DAYS[usize::from(weekday.to_monday_zero_offset().unsigned_abs())]
    }
}

/// A time of day in minutes since midnight (0 to 1440: `24:00` ends a day).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Minute(u16);

impl Minute {
    /// The minute `hour:minute` (the caller checks the range).
    pub fn at(hour: u8, minute: u8) -> Minute {
        Minute(u16::from(hour) * 60 + u16::from(minute))
    }

    /// `HH:MM`, `00:00` to `24:00`.
    fn parse(text: &str) -> Result<Minute, String> {
        let bad = || format!("{text:?} is not a time of day (HH:MM, 00:00 to 24:00)");
        let (hour, minute) = text.trim().split_once(':').ok_or_else(bad)?;
        if hour.is_empty() || hour.len() > 2 || minute.len() != 2 {
            return Err(bad());
        }
        let hour: u16 = hour.parse().map_err(|_| bad())?;
        let minute: u16 = minute.parse().map_err(|_| bad())?;
        if minute >= 60 || hour > 24 || (hour == 24 && minute != 0) {
            return Err(bad());
        }
        Ok(Minute(hour * 60 + minute))
    }
}

impl fmt::Display for Minute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Other limits on some days between two times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleRule {
    days: u8,
    from: Minute,
    to: Minute,
    limits: LimitChange,
}

/// The days a rule names: `mon`…`sun`, `weekdays`, `weekends`, `daily`.
fn parse_days(names: &[String]) -> Result<u8, String> {
    if names.is_empty() {
        return Err(
            "days is empty; name days (\"mon\", …) or \"weekdays\", \"weekends\", \"daily\""
                .to_owned(),
        );
    }
    let mut days = 0u8;
    for name in names {
        days |= match name.trim().to_ascii_lowercase().as_str() {
            "mon" | "monday" => 1,
            "tue" | "tuesday" => 1 << 1,
            "wed" | "wednesday" => 1 << 2,
            "thu" | "thursday" => 1 << 3,
            "fri" | "friday" => 1 << 4,
            "sat" | "saturday" => 1 << 5,
            "sun" | "sunday" => 1 << 6,
            "weekdays" => 0b001_1111,
            "weekends" => 0b110_0000,
            "daily" | "all" => 0b111_1111,
            _ => {
                return Err(format!(
                    "{name:?} is not a day (mon, tue, wed, thu, fri, sat, sun, weekdays, \
                     weekends, daily)"
                ));
            }
        };
    }
    Ok(days)
}

impl ScheduleRule {
    /// The rule for `days` from `from` to `to` (`HH:MM`, local time), giving `limits`.
    pub fn new(
        days: &[String],
        from: &str,
        to: &str,
        limits: LimitChange,
    ) -> Result<ScheduleRule, String> {
        let days = parse_days(days)?;
        let (from, to) = (Minute::parse(from)?, Minute::parse(to)?);
        if from == to {
            return Err(format!(
                "from and to are both {from}; for a whole day write from = \"00:00\", to = \"24:00\""
            ));
        }
        if limits.is_empty() {
            return Err(
                "gives no limit: set upload, download, peer_upload or peer_download".to_owned(),
            );
        }
        Ok(ScheduleRule {
            days,
            from,
            to,
            limits,
        })
    }

    fn on(&self, day: Day) -> bool {
        self.days & (1 << day.index()) != 0
    }

    /// Whether the rule covers `minute` of `day`.
    pub fn covers(&self, day: Day, minute: Minute) -> bool {
        if self.from < self.to {
            self.on(day) && self.from <= minute && minute < self.to
        } else {
            // Past midnight: the evening of one of its days, or the morning after.
            (self.on(day) && minute >= self.from) || (self.on(day.before()) && minute < self.to)
        }
    }

    /// The limits it gives.
    pub fn limits(&self) -> &LimitChange {
        &self.limits
    }
}

impl fmt::Display for ScheduleRule {
    /// `mon,tue 08:00-18:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = DAYS
            .iter()
            .filter(|d| self.on(**d))
            .map(|d| match d {
                Day::Mon => "mon",
                Day::Tue => "tue",
                Day::Wed => "wed",
                Day::Thu => "thu",
                Day::Fri => "fri",
                Day::Sat => "sat",
                Day::Sun => "sun",
            })
            .collect();
        write!(f, "{} {}-{}", names.join(","), self.from, self.to)
    }
}

/// The configured limits: the base ones, the schedule, and whether LAN peers are exempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// The limits outside any schedule rule.
    pub base: LimitSet,
    /// Other limits at given times; the first rule that covers a moment wins.
    pub schedule: Vec<ScheduleRule>,
    /// Whether peers on one of this node's own LANs are not limited.
    pub lan_exempt: bool,
}

impl LimitsConfig {
    /// The configured limits at `minute` of `day`, and the rule that gives them (its index).
    pub fn at(&self, day: Day, minute: Minute) -> (LimitSet, Option<usize>) {
        match self.schedule.iter().position(|r| r.covers(day, minute)) {
            Some(index) => (self.schedule[index].limits.apply(self.base), Some(index)),
            None => (self.base, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        text.parse().unwrap()
    }

    fn rule(days: &[&str], from: &str, to: &str, upload: &str) -> ScheduleRule {
        let days: Vec<String> = days.iter().map(|d| (*d).to_owned()).collect();
        ScheduleRule::new(
            &days,
            from,
            to,
            LimitChange {
                upload: Some(rate(upload)),
                ..LimitChange::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn the_first_rule_that_covers_the_moment_gives_the_limits() {
        let config = LimitsConfig {
            base: LimitSet {
                upload: rate("8MB/s"),
                download: rate("32MB/s"),
                ..LimitSet::default()
            },
            schedule: vec![
                rule(&["weekdays"], "08:00", "18:00", "1MB/s"),
                rule(&["daily"], "07:00", "09:00", "2MB/s"),
            ],
            lan_exempt: false,
        };
        let (limits, active) = config.at(Day::Tue, Minute::at(8, 30));
        assert_eq!((limits.upload, active), (rate("1MB/s"), Some(0)));
        assert_eq!(limits.download, rate("32MB/s"), "left out: the base rate");
        assert_eq!(config.at(Day::Tue, Minute::at(7, 59)).1, Some(1));
        assert_eq!(config.at(Day::Sat, Minute::at(8, 30)).1, Some(1));
        let (limits, active) = config.at(Day::Tue, Minute::at(18, 0));
        assert_eq!(
            (limits.upload, active),
            (rate("8MB/s"), None),
            "to is excluded"
        );
    }

    #[test]
    fn a_rule_past_midnight_belongs_to_the_day_it_starts() {
        let night = rule(&["fri"], "22:00", "06:00", "1MB/s");
        assert!(night.covers(Day::Fri, Minute::at(23, 0)));
        assert!(night.covers(Day::Sat, Minute::at(5, 59)));
        assert!(!night.covers(Day::Sat, Minute::at(6, 0)));
        assert!(
            !night.covers(Day::Fri, Minute::at(5, 0)),
            "Thursday night is not on"
        );
        assert!(!night.covers(Day::Sat, Minute::at(23, 0)));
        let all_day = rule(&["sun"], "00:00", "24:00", "1MB/s");
        assert!(all_day.covers(Day::Sun, Minute::at(23, 59)));
        assert!(!all_day.covers(Day::Mon, Minute::at(0, 0)));
        assert_eq!(night.to_string(), "fri 22:00-06:00");
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let err = |days: &[&str], from: &str, to: &str| {
            let days: Vec<String> = days.iter().map(|d| (*d).to_owned()).collect();
            ScheduleRule::new(
                &days,
                from,
                to,
                LimitChange {
                    upload: Some(Rate::UNLIMITED),
                    ..LimitChange::default()
                },
            )
            .unwrap_err()
        };
        assert!(err(&["someday"], "08:00", "09:00").contains("\"someday\" is not a day"));
        assert!(err(&[], "08:00", "09:00").contains("days is empty"));
        assert!(err(&["mon"], "8h", "09:00").contains("\"8h\" is not a time of day"));
        assert!(err(&["mon"], "24:30", "09:00").contains("not a time of day"));
        assert!(err(&["mon"], "08:00", "08:00").contains("both 08:00"));
        let none = ScheduleRule::new(
            &["mon".to_owned()],
            "08:00",
            "09:00",
            LimitChange::default(),
        );
        assert!(none.unwrap_err().contains("gives no limit"));
    }
}
