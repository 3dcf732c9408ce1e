//! Answer times (Directive (EU) 2023/977, Art. 5): 8 hours for urgent
//! requests about directly accessible information, 3 days for other urgent
//! requests, 7 days otherwise; a custom deadline only within bounds. Pure
//! functions of the request's times, so both nodes compute the same due
//! time from the same message; and whether a request still waits for its
//! answer ([`is_open`]), past its due time ([`is_overdue`]).

use std::time::{Duration, SystemTime};

use crate::proto::v1::{DisclosureCase, DisclosureState, Urgency};
use crate::time::system_time_lossy;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The longest deadline a custom request may set.
pub const MAX_CUSTOM: Duration = Duration::from_secs(30 * DAY);

/// How long the holder has to answer, for the directive's three urgencies.
pub fn answer_time(urgency: Urgency) -> Option<Duration> {
    match urgency {
        Urgency::UrgentDirect => Some(Duration::from_secs(8 * HOUR)),
        Urgency::Urgent => Some(Duration::from_secs(3 * DAY)),
        Urgency::Normal => Some(Duration::from_secs(7 * DAY)),
        Urgency::Custom | Urgency::Unspecified => None,
    }
}

/// The due time of a request made at `requested_at`: from the table, or
/// `custom` (only with `Urgency::Custom`) when it lies between `min` and
/// [`MAX_CUSTOM`] after `requested_at`. The error says what is wrong, for a
/// field violation.
pub fn due_at(
    urgency: Urgency,
    requested_at: SystemTime,
    custom: Option<SystemTime>,
    min: Duration,
) -> Result<SystemTime, (&'static str, String)> {
    match (urgency, custom) {
        (Urgency::Unspecified, _) => Err((
            "urgency",
            "is required: urgent_direct (8 h), urgent (3 days), normal (7 days) or custom".into(),
        )),
        (Urgency::Custom, None) => Err(("due_at", "is required with urgency custom".into())),
        (Urgency::Custom, Some(due)) => {
            let ahead = due.duration_since(requested_at).unwrap_or_default();
            if ahead < min || ahead > MAX_CUSTOM {
                Err((
                    "due_at",
                    format!(
                        "must be between {} and {} from now",
                        human(min),
                        human(MAX_CUSTOM)
                    ),
                ))
            } else {
                Ok(due)
            }
        }
        (_, Some(_)) => Err((
            "due_at",
            "only with urgency custom (the others set it from the directive's table)".into(),
        )),
        (u, None) => Ok(requested_at + answer_time(u).unwrap_or_default()),
    }
}

/// The due time a holder keeps for a request it received at `received`
/// (this node's clock): the answer time the request's urgency gives (or,
/// for a custom deadline within bounds, the requester's span, at least
/// `min`), counted from receipt. The requester's own times only have to
/// agree with the table: a request dated 30 days back is not overdue on
/// arrival, and one held up in a queue gets its full answer time. The
/// requester adopts the holder's due time from the delivery ack. `None`
/// when the request's times make no sense (refused as malformed).
pub fn holder_due(
    urgency: Urgency,
    received: SystemTime,
    requested_at: SystemTime,
    due: SystemTime,
    min: Duration,
) -> Option<SystemTime> {
    let ahead = due.duration_since(requested_at).ok()?;
    match urgency {
        Urgency::Unspecified => None,
        Urgency::Custom => (ahead <= MAX_CUSTOM).then(|| received + ahead.max(min)),
        u => {
            let expected = answer_time(u)?;
            // A second's slack for rounding through timestamps.
            (ahead.abs_diff(expected) <= Duration::from_secs(1)).then(|| received + ahead)
        }
    }
}

/// `due` moved later by a clarification pause from `asked` to `answered`
/// (the holder's question and the requester's answer, as both messages
/// state them, so both nodes agree).
pub fn paused(due: SystemTime, asked: SystemTime, answered: SystemTime) -> SystemTime {
    due + answered.duration_since(asked).unwrap_or_default()
}

/// "8 h", "3 days", "90 s": for messages.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(DAY) {
        format!("{} days", s / DAY)
    } else if s.is_multiple_of(HOUR) {
        format!("{} h", s / HOUR)
    } else {
        format!("{s} s")
    }
}

/// Whether a request still waits for a final decision.
pub fn is_open(case: &DisclosureCase) -> bool {
    matches!(
        DisclosureState::try_from(case.state),
        Ok(DisclosureState::Open | DisclosureState::Clarification)
    )
}

/// Whether `case` still waits for a final decision past its due time.
pub fn is_overdue(case: &DisclosureCase, now: SystemTime) -> bool {
    is_open(case)
        && case
            .due_at
            .as_ref()
            .is_some_and(|d| system_time_lossy(d) < now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_directives_table() {
        let min = Duration::from_secs(HOUR);
        for (u, hours) in [
            (Urgency::UrgentDirect, 8),
            (Urgency::Urgent, 72),
            (Urgency::Normal, 168),
        ] {
            assert_eq!(due_at(u, at(T0), None, min), Ok(at(T0 + hours * HOUR)));
        }
        assert_eq!(
            due_at(Urgency::Unspecified, at(T0), None, min)
                .unwrap_err()
                .0,
            "urgency"
        );
        assert_eq!(
            due_at(Urgency::Custom, at(T0), None, min).unwrap_err().0,
            "due_at"
        );
        assert_eq!(
            due_at(Urgency::Normal, at(T0), Some(at(T0 + DAY)), min)
                .unwrap_err()
                .0,
            "due_at"
        );
        assert_eq!(human(Duration::from_secs(3 * DAY)), "3 days");
        assert_eq!(human(Duration::from_secs(8 * HOUR)), "8 h");
    }

    proptest! {
        /// A custom deadline is taken exactly when it is within bounds, and
        /// the holder then keeps the same due time.
        #[test]
        fn custom_deadlines_within_bounds(ahead in 0u64..40 * DAY, min in 1u64..2 * DAY) {
            let min = Duration::from_secs(min);
            let due = at(T0 + ahead);
            let got = due_at(Urgency::Custom, at(T0), Some(due), min);
            let within = Duration::from_secs(ahead) >= min && Duration::from_secs(ahead) <= MAX_CUSTOM;
            prop_assert_eq!(got.is_ok(), within);
            if within {
                prop_assert_eq!(holder_due(Urgency::Custom, at(T0), at(T0), due, min), Some(due));
            }
        }

        /// What the requester computes from the table, the holder accepts
        /// (counted from receipt: unchanged when it arrives at once, moved
        /// by the delay otherwise, so a back-dated request is never overdue
        /// on arrival); a due time off the table by more than a second is
        /// refused.
        #[test]
        fn the_holder_agrees_with_the_table(u in 1i32..=3, off in 2u64..100_000, delay in 0u64..40 * DAY) {
            let u = Urgency::try_from(u).unwrap();
            let min = Duration::from_secs(HOUR);
            let due = due_at(u, at(T0), None, min).unwrap();
            prop_assert_eq!(holder_due(u, at(T0), at(T0), due, min), Some(due));
            let received = at(T0 + delay);
            prop_assert_eq!(
                holder_due(u, received, at(T0), due, min),
                Some(due + Duration::from_secs(delay))
            );
            prop_assert!(holder_due(u, received, at(T0), due, min).unwrap() > received);
            prop_assert_eq!(holder_due(u, at(T0), at(T0), due + Duration::from_secs(off), min), None);
        }

        /// A pause moves the due time by exactly its length, never earlier.
        #[test]
        fn a_pause_moves_the_due_time(due in 0u64..DAY, asked in 0u64..DAY, len in 0u64..DAY) {
            let moved = paused(at(T0 + due), at(T0 + asked), at(T0 + asked + len));
            prop_assert_eq!(moved, at(T0 + due + len));
            prop_assert_eq!(paused(at(T0 + due), at(T0 + asked + len), at(T0 + asked)), at(T0 + due));
        }
    }
}
