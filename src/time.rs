//! Time conversions in one place: protobuf `Timestamp` ↔ `SystemTime`,
//! milliseconds since the epoch (the audit log's clock), and RFC 3339 text.
//! Every module that stamps or compares a time uses these, so a rounding or
//! clamping rule is decided once.
//!
//! (Not to be confused with the `time` crate, which this module uses for
//! calendar arithmetic and formatting: outside this file that crate is
//! written `::time`.)

use std::time::{Duration, SystemTime};

use pbjson_types::Timestamp;

/// `t` as a protobuf timestamp (times before the epoch become the epoch).
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The current time as a protobuf timestamp.
pub fn now() -> Timestamp {
    timestamp(SystemTime::now())
}

/// A timestamp as a `SystemTime`, or `None` when it is not a valid
/// protobuf timestamp at or after the epoch (nanos out of range, negative
/// seconds): the strict reading, for input that is validated.
/// A timestamp as RFC 3339 in UTC, to the nanosecond it holds (so that
/// reading it back gives the same timestamp); `None` out of range.
pub fn rfc3339(ts: &Timestamp) -> Option<String> {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

pub fn system_time(ts: &Timestamp) -> Option<SystemTime> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    let secs = u64::try_from(ts.seconds).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, ts.nanos as u32))
}

/// A stored (already validated) timestamp as a `SystemTime`, clamping
/// anything before the epoch to it: the lenient reading, for ages and
/// latencies where a bad value must not stop the work.
pub fn system_time_lossy(ts: &Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::new(
            ts.seconds.max(0) as u64,
            ts.nanos.clamp(0, 999_999_999) as u32,
        )
}

/// Whole seconds since the epoch (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Milliseconds since the epoch as a protobuf timestamp.
pub fn ms_timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds, the
/// audit log's time format.
pub fn format_ms(ms: i64) -> String {
    let t = ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(::time::OffsetDateTime::UNIX_EPOCH);
    let f = ::time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn parse_ms(s: &str) -> Option<i64> {
    let t =
        ::time::OffsetDateTime::parse(s, &::time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Whole days from `now` until `t` (negative once past: -1 on the first day after).
pub fn days_until(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(d) => (d.as_secs() / 86_400) as i64,
        Err(e) => -((e.duration().as_secs() / 86_400) as i64) - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strict_reading_refuses_what_lenient_reading_clamps() {
        let before = Timestamp {
            seconds: -5,
            nanos: 0,
        };
        assert_eq!(system_time(&before), None);
        assert_eq!(system_time_lossy(&before), SystemTime::UNIX_EPOCH);
        let bad_nanos = Timestamp {
            seconds: 5,
            nanos: 1_000_000_000,
        };
        assert_eq!(system_time(&bad_nanos), None);
    }

    proptest! {
        #[test]
        fn timestamps_round_trip(secs in 0i64..4_000_000_000, nanos in 0i32..1_000_000_000) {
            let ts = Timestamp { seconds: secs, nanos };
            let t = system_time(&ts).unwrap();
            prop_assert_eq!(timestamp(t), ts);
            prop_assert_eq!(system_time_lossy(&ts), t);
        }

        #[test]
        fn milliseconds_round_trip_through_text(ms in 0i64..253_402_300_799_000) {
            prop_assert_eq!(parse_ms(&format_ms(ms)), Some(ms));
            let ts = ms_timestamp(ms);
            prop_assert_eq!(ts.seconds * 1000 + i64::from(ts.nanos / 1_000_000), ms);
        }
    }
}
