//! The domain model: tenants, users, jobs and their errors.

mod job;
mod request;
mod tenant;
mod transition;
mod user;

pub use job::*;
pub use request::*;
pub use tenant::*;
pub use transition::*;
pub use user::*;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// A UTC instant with millisecond precision, written like `2022-01-07T06:40:34.000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

const FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }

    fn from_datetime(at: OffsetDateTime) -> Timestamp {
        let at = at.to_offset(UtcOffset::UTC);
        let millis = at.millisecond();
        Timestamp(at.replace_millisecond(millis).unwrap_or(at))
    }

    pub fn from_unix_millis(millis: i64) -> Option<Timestamp> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .ok()
            .map(Timestamp::from_datetime)
    }

    pub fn unix_millis(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    pub fn parse(text: &str) -> Option<Timestamp> {
        OffsetDateTime::parse(text, FORMAT)
            .ok()
            .or_else(|| {
                OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(Timestamp::from_datetime)
    }

    pub fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp(self.0 + time::Duration::seconds(seconds))
    }

    /// Whole seconds from `earlier` to this instant (negative when `earlier` is later).
    pub fn seconds_since(self, earlier: Timestamp) -> i64 {
        (self.0 - earlier.0).whole_seconds()
    }

    /// The first whole second (Unix time) at or after this instant: an expiry as a store's
    /// time-to-live attribute, never before the instant itself.
    pub fn unix_seconds_ceil(self) -> i64 {
        self.unix_millis().div_euclid(1000) + i64::from(self.unix_millis().rem_euclid(1000) != 0)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.format(FORMAT) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{}", self.0.unix_timestamp()),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a timestamp: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_milliseconds() {
        let at = Timestamp::from_unix_millis(1_641_537_634_123).unwrap();
        assert_eq!(at.to_string(), "2022-01-07T06:40:34.123Z");
        assert_eq!(Timestamp::parse(&at.to_string()), Some(at));
        assert_eq!(Timestamp::from_unix_millis(at.unix_millis()), Some(at));
    }
}
