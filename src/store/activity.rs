//! What the node did, day by day (UTC), for the console's charts: alerts
//! submitted here and received from peers, hits found, deliveries the peers
//! acknowledged and how long they took. Each count is advanced in the
//! transaction of the event it counts, so it never disagrees with the store
//! (a crash loses an event and its count together). Kept in the `counters`
//! tree under `activity/<day>/<what>`; a few dozen bytes a day.

use std::time::SystemTime;

use super::engine::Reads;
use super::{Store, StoreError, Write};
use crate::proto::v1::ActivityDay;

/// One daily count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tally {
    Submitted,
    Received,
    Hits,
    Deliveries,
    /// Sum of the deliveries' latencies (queued → acknowledged), ms.
    LatencyMsTotal,
    /// The longest of them, ms (kept as a maximum, not a sum).
    LatencyMsMax,
}

impl Tally {
    const ALL: [Tally; 6] = [
        Tally::Submitted,
        Tally::Received,
        Tally::Hits,
        Tally::Deliveries,
        Tally::LatencyMsTotal,
        Tally::LatencyMsMax,
    ];

    fn name(self) -> &'static str {
        match self {
            Tally::Submitted => "submitted",
            Tally::Received => "received",
            Tally::Hits => "hits",
            Tally::Deliveries => "deliveries",
            Tally::LatencyMsTotal => "latency_ms_total",
            Tally::LatencyMsMax => "latency_ms_max",
        }
    }
}

const PREFIX: &str = "activity/";

/// `YYYY-MM-DD` of `t` (UTC).
fn day_of(t: SystemTime) -> String {
    let secs = crate::time::unix_secs(t) as i64;
    let date = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

fn key(day: &str, what: Tally) -> String {
    format!("{PREFIX}{day}/{}", what.name())
}

impl Write<'_, '_> {
    /// Adds `by` to the day's count of `what` (or raises its maximum).
    pub(crate) fn tally(&mut self, what: Tally, at: SystemTime, by: u64) -> Result<(), StoreError> {
        let key = key(&day_of(at), what);
        let held = match self.tx.get(self.t.counters, &key)? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| StoreError::corrupt(format!("counters/{key}"), "not a number"))?,
            ),
            None => 0,
        };
        let next = match what {
            Tally::LatencyMsMax => held.max(by),
            _ => held.saturating_add(by),
        };
        self.tx.insert(self.t.counters, key, next.to_be_bytes())?;
        Ok(())
    }
}

impl Store {
    /// The last `days` days up to `now`, oldest first, every day present
    /// (zero when nothing happened).
    pub fn activity(&self, days: u32, now: SystemTime) -> Result<Vec<ActivityDay>, StoreError> {
        let mut out = Vec::with_capacity(days as usize);
        for back in (0..days).rev() {
            let at = now - std::time::Duration::from_secs(u64::from(back) * 86_400);
            let day = day_of(at);
            let mut row = ActivityDay {
                day: day.clone(),
                ..Default::default()
            };
            for what in Tally::ALL {
                let value = match self.db.get(self.t.counters, key(&day, what))? {
                    Some(v) => v.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0),
                    None => 0,
                };
                match what {
                    Tally::Submitted => row.submitted = value,
                    Tally::Received => row.received = value,
                    Tally::Hits => row.hits = value,
                    Tally::Deliveries => row.deliveries = value,
                    Tally::LatencyMsTotal => row.delivery_latency_ms_total = value,
                    Tally::LatencyMsMax => row.delivery_latency_ms_max = value,
                }
            }
            out.push(row);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_dates() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_221_980);
        assert_eq!(day_of(t), "2026-12-02");
        assert_eq!(key("2026-12-02", Tally::Hits), "activity/2026-12-02/hits");
    }
}
