//! The one way times are written in the API, the event stream and the ops
//! views: RFC 3339 in UTC with exactly three fractional digits
//! (`2026-12-07T15:04:05.120Z`), so clients can parse, sort and compare
//! them as text whichever endpoint they came from.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::Serializer;

/// `at` as the API writes times.
pub fn format(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A BSON date as the API writes times; `None` outside RFC 3339's years
/// 0–9999 (a document the service did not write may hold one).
pub fn format_bson(at: mongodb::bson::DateTime) -> Option<String> {
    DateTime::from_timestamp_millis(at.timestamp_millis())
        .filter(|at| (0..=9999).contains(&at.year()))
        .map(format)
}

/// `#[serde(serialize_with = "rfc3339::serialize")]` for a `DateTime<Utc>`
/// field: written as [`format`] does; read back by chrono's own parser,
/// which accepts any fraction.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_three_fractional_digits_and_a_z() {
        let whole: DateTime<Utc> = "2026-12-07T15:04:05Z".parse().unwrap();
        assert_eq!(format(whole), "2026-12-07T15:04:05.000Z");
        let fine: DateTime<Utc> = "2026-12-07T15:04:05.123456789+00:00".parse().unwrap();
        assert_eq!(format(fine), "2026-12-07T15:04:05.123Z");
    }

    #[test]
    fn bson_dates_read_the_same_and_out_of_range_ones_are_none() {
        let at = mongodb::bson::DateTime::from_millis(1_796_655_845_120);
        assert_eq!(format_bson(at).as_deref(), Some("2026-12-07T15:04:05.120Z"));
        assert_eq!(format_bson(mongodb::bson::DateTime::MAX), None);
        let year_10000 = mongodb::bson::DateTime::from_millis(253_402_300_800_000);
        assert_eq!(format_bson(year_10000), None);
    }
}
