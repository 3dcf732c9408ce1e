//! The figures Directive (EU) 2023/977 asks states to keep on requests and
//! answer times, computed from the requests a node holds: per peer and
//! direction, counts by outcome and the median and 90th-percentile time
//! from request to final decision. Pure functions of the cases.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::deadline::{is_open, is_overdue};
use crate::proto::v1::{DisclosureCase, DisclosureState, RequestStatsResponse, RequestStatsRow};
use crate::time::system_time_lossy;

/// The `q`-quantile (0..=1) of `sorted` by the nearest-rank method: the
/// smallest value with at least `q` of the values at or below it.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// How long a decided request took, from its request to its final decision.
pub fn answer_time(case: &DisclosureCase) -> Option<Duration> {
    let requested = system_time_lossy(case.request.as_ref()?.requested_at.as_ref()?);
    let answered = system_time_lossy(case.answered_at.as_ref()?);
    answered.duration_since(requested).ok()
}

/// Open and overdue requests per (peer, outgoing).
pub type OpenCounts = BTreeMap<(String, bool), (u64, u64)>;

/// Open and overdue requests per (peer, outgoing).
pub fn open_counts(cases: &[DisclosureCase], now: SystemTime) -> OpenCounts {
    let mut out = BTreeMap::new();
    for c in cases.iter().filter(|c| is_open(c)) {
        let e = out.entry((c.peer.clone(), c.outgoing)).or_insert((0, 0));
        e.0 += 1;
        if is_overdue(c, now) {
            e.1 += 1;
        }
    }
    out
}

/// The statistics of the requests made in `[from, to)` that `keep` admits.
pub fn stats(
    cases: &[DisclosureCase],
    from: Option<SystemTime>,
    to: Option<SystemTime>,
    now: SystemTime,
    keep: impl Fn(&DisclosureCase) -> bool,
) -> RequestStatsResponse {
    let mut rows: BTreeMap<(String, bool), (RequestStatsRow, Vec<f64>)> = BTreeMap::new();
    for c in cases.iter().filter(|c| keep(c)) {
        let Some(requested) = c
            .request
            .as_ref()
            .and_then(|r| r.requested_at.as_ref())
            .map(system_time_lossy)
        else {
            continue;
        };
        if from.is_some_and(|f| requested < f) || to.is_some_and(|t| requested >= t) {
            continue;
        }
        let (row, times) = rows.entry((c.peer.clone(), c.outgoing)).or_insert_with(|| {
            (
                RequestStatsRow {
                    peer: c.peer.clone(),
                    outgoing: c.outgoing,
                    ..Default::default()
                },
                Vec::new(),
            )
        });
        row.requests += 1;
        match DisclosureState::try_from(c.state) {
            Ok(DisclosureState::Approved) => row.approved += 1,
            Ok(DisclosureState::PartiallyApproved) => row.partially_approved += 1,
            Ok(DisclosureState::Refused) => {
                row.refused += 1;
                if c.decision.as_ref().is_some_and(|d| d.automatic) {
                    row.refused_automatically += 1;
                }
            }
            _ => {
                row.open += 1;
                if is_overdue(c, now) {
                    row.overdue += 1;
                }
            }
        }
        if !is_open(c)
            && let Some(t) = answer_time(c)
        {
            times.push(t.as_secs_f64());
            let due = c.due_at.as_ref().map(system_time_lossy);
            let answered = c.answered_at.as_ref().map(system_time_lossy);
            if let (Some(due), Some(answered)) = (due, answered)
                && answered > due
            {
                row.answered_late += 1;
            }
        }
    }
    RequestStatsResponse {
        rows: rows
            .into_values()
            .map(|(mut row, mut times)| {
                times.sort_by(f64::total_cmp);
                row.answered = times.len() as u64;
                row.median_answer_seconds = quantile(&times, 0.5);
                row.p90_answer_seconds = quantile(&times, 0.9);
                row
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{DisclosureDecision, DisclosureRequest};
    use crate::time::timestamp;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn case(
        peer: &str,
        outgoing: bool,
        state: DisclosureState,
        requested: u64,
        answer: Option<u64>,
    ) -> DisclosureCase {
        DisclosureCase {
            request: Some(DisclosureRequest {
                requested_at: Some(timestamp(at(requested))),
                ..Default::default()
            }),
            outgoing,
            peer: peer.into(),
            state: state as i32,
            due_at: Some(timestamp(at(requested + 100))),
            answered_at: answer.map(|a| timestamp(at(requested + a))),
            decision: answer.map(|_| DisclosureDecision::default()),
            ..Default::default()
        }
    }

    #[test]
    fn counts_by_outcome_and_answer_times_per_peer_and_direction() {
        use DisclosureState::*;
        let cases = vec![
            case("ngo", false, Approved, 0, Some(10)),
            case("ngo", false, Refused, 5, Some(30)),
            case("ngo", false, PartiallyApproved, 7, Some(200)),
            case("ngo", false, Open, 8, None),
            case("ngo", true, Open, 9, None),
            case("labour", false, Approved, 10_000, Some(5)),
        ];
        let out = stats(&cases, Some(at(0)), Some(at(5_000)), at(1_000), |_| true);
        assert_eq!(
            out.rows.len(),
            2,
            "labour's request is outside the window: {out:?}"
        );
        let received = out
            .rows
            .iter()
            .find(|r| r.peer == "ngo" && !r.outgoing)
            .unwrap();
        assert_eq!(
            (
                received.requests,
                received.approved,
                received.refused,
                received.partially_approved,
                received.open,
                received.overdue
            ),
            (4, 1, 1, 1, 1, 1)
        );
        assert_eq!(received.answered_late, 1, "200 s against a 100 s deadline");
        assert_eq!(received.answered, 3);
        assert_eq!(received.median_answer_seconds, 30.0);
        let sent = out
            .rows
            .iter()
            .find(|r| r.peer == "ngo" && r.outgoing)
            .unwrap();
        assert_eq!(sent.answered, 0, "nothing answered: no answer time");
        assert_eq!(received.p90_answer_seconds, 200.0);
    }

    proptest! {
        /// The nearest-rank quantile is a value of the sample, with at
        /// least the asked share of the sample at or below it.
        #[test]
        fn quantiles_are_nearest_rank(mut v in proptest::collection::vec(0.0f64..1e6, 1..50), q in 0.01f64..1.0) {
            v.sort_by(f64::total_cmp);
            let x = quantile(&v, q);
            prop_assert!(v.contains(&x));
            let at_or_below = v.iter().filter(|y| **y <= x).count() as f64;
            prop_assert!(at_or_below / v.len() as f64 >= q - 1e-9);
            let below = v.iter().filter(|y| **y < x).count() as f64;
            prop_assert!(below / (v.len() as f64) < q + 1e-9);
        }
    }
}
