//! Periodic jobs: `[queue.schedules.<name>]` in the configuration, parsed
//! into [`Schedule`]s, and which *slots* (the times a schedule fires at)
//! are due. Pure: the firing is [`crate::queue::scheduler`]'s.
//!
//! ```toml
//! [queue.schedules.nightly-report]
//! cron = "0 30 3 * * *"        # sec min hour day month weekday (seconds optional), UTC
//! type = "report.build"         # a registered job type
//! payload = { format = "pdf" }  # optional; {} by default
//! ```
//!
//! Slots are UTC. A slot's id is `<name>@<slot time, RFC 3339>`, e.g.
//! `nightly-report@2026-11-29T03:30:00Z`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use mongodb::bson::Document;
use serde::Deserialize;

/// One `[queue.schedules.<name>]` table.
#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleConfig {
    /// A cron pattern, seconds optional (`"*/5 * * * *"`, `"0 0 3 * * *"`).
    pub cron: String,
    /// The job type to enqueue at each slot.
    #[serde(rename = "type")]
    pub kind: String,
    /// The jobs' payload.
    #[serde(default)]
    pub payload: serde_json::Map<String, serde_json::Value>,
}

/// `[queue.schedules]`: name → schedule.
pub type Schedules = BTreeMap<String, ScheduleConfig>;

/// Why a schedule of the configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("a schedule's name is 1 to 64 letters, digits, '_' or '-'")]
    Name,
    #[error("not a cron pattern")]
    Cron(#[source] CronError),
    #[error("the payload cannot be stored")]
    Payload(#[source] mongodb::bson::ser::Error),
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Every {
    /// At each time a cron pattern matches (UTC).
    Cron(Box<Cron>),
    /// At each multiple of the period since the Unix epoch.
    Interval(Duration),
}

/// A periodic job: enqueue a job of `kind` with `payload` at every slot.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub every: Every,
    pub kind: String,
    pub payload: Document,
    /// Whether a (re)started instance fires the latest slot it finds
    /// unfired (after the whole fleet was down). The queue's own prune
    /// does not: it runs at the next slot, as its timer used to.
    pub catch_up: bool,
}

/// A cron pattern with optional seconds (5 or 6 fields, or `@daily` &c.).
pub fn parse_cron(pattern: &str) -> Result<Cron, ScheduleError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(pattern)
        .map_err(ScheduleError::Cron)
}

impl Schedule {
    /// The schedule `[queue.schedules.<name>]` describes.
    pub fn parse(name: &str, config: &ScheduleConfig) -> Result<Self, ScheduleError> {
        let valid_name = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(ScheduleError::Name);
        }
        let payload =
            mongodb::bson::to_document(&config.payload).map_err(ScheduleError::Payload)?;
        Ok(Self {
            name: name.into(),
            every: Every::Cron(Box::new(parse_cron(&config.cron)?)),
            kind: config.kind.clone(),
            payload,
            catch_up: true,
        })
    }

    /// A schedule of the queue's own: `kind` every `period`.
    pub fn interval(name: &str, kind: &str, period: Duration) -> Self {
        Self {
            name: name.into(),
            every: Every::Interval(period.max(Duration::from_millis(1))),
            kind: kind.into(),
            payload: Document::new(),
            catch_up: false,
        }
    }

    /// The id of this schedule's slot `at`: `<name>@<RFC 3339>`.
    pub fn slot_id(&self, at: DateTime<Utc>) -> String {
        format!(
            "{}@{}",
            self.name,
            at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        )
    }
}

impl Every {
    /// The latest slot at or before `now`.
    pub fn latest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(cron) => cron.find_previous_occurrence(&now, true).ok(),
            Self::Interval(period) => {
                let (ms, period) = (now.timestamp_millis(), period.as_millis() as i64);
                Utc.timestamp_millis_opt(ms - ms.rem_euclid(period))
                    .single()
            }
        }
    }

    /// The first slot after `at`.
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(cron) => cron.find_next_occurrence(&at, false).ok(),
            Self::Interval(period) => {
                let latest = self.latest(at)?;
                latest.checked_add_signed(chrono::Duration::from_std(*period).ok()?)
            }
        }
    }
}

/// The slots of `every` to fire at `now`, oldest first.
///
/// - `last`: the last slot this instance fired (or found fired). `None`
///   (the instance just started): only the latest slot, and only if it is
///   no older than `max_age` — so after the whole fleet was down, only the
///   latest missed slot fires.
/// - Otherwise every slot after `last` up to `now` that is no older than
///   `lookback` (the scheduler's tick jitter), plus the latest slot: an
///   instance that could not fire for a while (MongoDB down) fires only the
///   latest of the slots it missed, as a fleet that was down does.
pub fn due(
    every: &Every,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    (lookback, max_age): (Duration, Duration),
) -> Vec<DateTime<Utc>> {
    let Some(latest) = every.latest(now) else {
        return Vec::new();
    };
    let age = |slot: DateTime<Utc>| (now - slot).to_std().unwrap_or_default();
    let Some(last) = last else {
        return if age(latest) <= max_age {
            vec![latest]
        } else {
            Vec::new()
        };
    };
    if latest <= last {
        return Vec::new();
    }
    let mut slots = Vec::new();
    let mut at = every
        .latest(now - chrono::Duration::from_std(lookback).unwrap_or_default())
        .map_or(last, |recent| recent.max(last));
    while let Some(next) = every.next_after(at).filter(|next| *next < latest) {
        slots.push(next);
        at = next;
    }
    slots.push(latest);
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn cron(pattern: &str) -> Every {
        Every::Cron(Box::new(parse_cron(pattern).unwrap()))
    }

    const WINDOWS: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(3600));

    #[test]
    fn patterns_with_or_without_seconds_parse_and_nonsense_does_not() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("0 */5 * * * *").is_ok());
        assert!(parse_cron("@daily").is_ok());
        for bad in ["", "every minute", "61 * * * *", "* * * * * * * *"] {
            assert!(parse_cron(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_schedule_needs_a_plain_name_and_a_storable_payload() {
        let config = ScheduleConfig {
            cron: "* * * * * *".into(),
            kind: "noop".into(),
            payload: serde_json::json!({"n": 1}).as_object().unwrap().clone(),
        };
        let schedule = Schedule::parse("every-second_1", &config).unwrap();
        assert_eq!(schedule.payload.get_i64("n").unwrap(), 1);
        for bad in ["", "a.b", "a@b", "with space", &"x".repeat(65)] {
            assert!(
                matches!(Schedule::parse(bad, &config), Err(ScheduleError::Name)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_slot_is_named_by_its_schedule_and_its_time() {
        let schedule = Schedule::interval("queue.prune", "queue.prune", Duration::from_secs(300));
        assert_eq!(
            schedule.slot_id(at("2026-11-29T19:30:00Z")),
            "queue.prune@2026-11-29T19:30:00Z"
        );
    }

    #[test]
    fn the_latest_slot_is_at_or_before_now() {
        let five = cron("0 */5 * * * *");
        assert_eq!(
            five.latest(at("2026-11-29T19:34:59.9Z")),
            Some(at("2026-11-29T19:30:00Z"))
        );
        assert_eq!(
            five.latest(at("2026-11-29T19:35:00Z")),
            Some(at("2026-11-29T19:35:00Z"))
        );
        let period = Every::Interval(Duration::from_secs(300));
        assert_eq!(
            period.latest(at("2026-11-29T19:34:59Z")),
            Some(at("2026-11-29T19:30:00Z"))
        );
        assert_eq!(
            period.next_after(at("2026-11-29T19:30:00Z")),
            Some(at("2026-11-29T19:35:00Z"))
        );
    }

    #[test]
    fn on_start_only_the_latest_slot_fires_and_only_if_recent() {
        let hourly = cron("0 0 * * * *");
        let now = at("2026-11-29T19:30:00Z");
        assert_eq!(
            due(&hourly, None, now, WINDOWS),
            [at("2026-11-29T19:00:00Z")]
        );
        let daily = cron("0 0 3 * * *");
        assert!(
            due(&daily, None, now, WINDOWS).is_empty(),
            "older than max_age"
        );
    }

    #[test]
    fn every_slot_since_the_last_fires_within_the_lookback() {
        let second = cron("* * * * * *");
        let now = at("2026-11-29T19:30:02.5Z");
        assert_eq!(
            due(&second, Some(at("2026-11-29T19:30:00Z")), now, WINDOWS),
            [at("2026-11-29T19:30:01Z"), at("2026-11-29T19:30:02Z")]
        );
        assert!(due(&second, Some(at("2026-11-29T19:30:02Z")), now, WINDOWS).is_empty());
    }

    #[test]
    fn after_a_long_gap_only_the_recent_slots_fire() {
        let second = cron("* * * * * *");
        let now = at("2026-11-29T19:30:00Z");
        let fired = due(&second, Some(at("2026-11-29T18:00:00Z")), now, WINDOWS);
        assert_eq!(
            fired,
            [
                at("2026-11-29T19:29:58Z"),
                at("2026-11-29T19:29:59Z"),
                at("2026-11-29T19:30:00Z")
            ]
        );
        let hourly = cron("0 0 * * * *");
        let now = at("2026-11-29T19:30:00Z");
        assert_eq!(
            due(&hourly, Some(at("2026-11-29T10:00:00Z")), now, WINDOWS),
            [at("2026-11-29T19:00:00Z")],
            "only the latest missed slot"
        );
    }
}
