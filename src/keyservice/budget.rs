//! Each node's evaluation budget: a per-minute token bucket and a per-UTC-day
//! count, in elements (one per identifier and key version).
//!
//! The budget is what turns "a compromised member can ask the key service"
//! into "a compromised member can ask this many a day": at the default
//! 100,000 a day one node needs years to walk a country's mobile numbers,
//! and the audit log shows it trying. A request is admitted whole or refused
//! whole (a half-evaluated batch would be wasted work for both sides).
//! Day counts survive a restart: they are restored from the audit log,
//! which records every admitted batch with its size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::BudgetConfig;
use crate::ids::AgencyId;

const DAY_SECS: u64 = 86_400;

/// What is left after an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub minute_remaining: u64,
    pub day_remaining: u64,
    pub day_used: u64,
    pub day_resets_at: SystemTime,
}

/// Why a request was refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The per-minute bucket is short; enough refills after `retry_after`.
    Minute {
        retry_after: Duration,
        per_minute: u64,
    },
    /// Today's budget is spent; it resets at `resets_at` (00:00 UTC).
    Day { resets_at: SystemTime, per_day: u64 },
    /// The batch is larger than a whole minute's budget: it can never pass.
    Batch { elements: u64, per_minute: u64 },
}

impl Refused {
    /// When the caller may try again.
    pub fn retry_at(&self, now: SystemTime) -> Option<SystemTime> {
        match self {
            Refused::Minute { retry_after, .. } => Some(now + *retry_after),
            Refused::Day { resets_at, .. } => Some(*resets_at),
            Refused::Batch { .. } => None,
        }
    }

    /// The metrics label and audit detail of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Minute { .. } => "per_minute",
            Refused::Day { .. } => "per_day",
            Refused::Batch { .. } => "batch_too_large",
        }
    }
}

struct State {
    tokens: f64,
    last: Instant,
    day: u64,
    day_used: u64,
}

pub struct Budgets {
    config: BudgetConfig,
    state: Mutex<HashMap<AgencyId, State>>,
}

/// The UTC day number of `t`.
pub fn day_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / DAY_SECS
}

/// The start of UTC day `day`.
pub fn day_start(day: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(day * DAY_SECS)
}

impl Budgets {
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Records `used` elements already spent by `agency` on `day` (from the
    /// audit log at start).
    pub fn restore(&self, agency: &AgencyId, day: u64, used: u64) {
        let (per_minute, _) = self.config.of(agency);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let s = state.entry(agency.clone()).or_insert(State {
            tokens: per_minute as f64,
            last: Instant::now(),
            day,
            day_used: 0,
        });
        if s.day == day {
            s.day_used += used;
        }
    }

    pub fn admit(&self, agency: &AgencyId, elements: u64) -> Result<Admitted, Refused> {
        self.admit_at(agency, elements, Instant::now(), SystemTime::now())
    }

    fn admit_at(
        &self,
        agency: &AgencyId,
        elements: u64,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Admitted, Refused> {
        let (per_minute, per_day) = self.config.of(agency);
        if elements > per_minute {
            return Err(Refused::Batch {
                elements,
                per_minute,
            });
        }
        let today = day_of(wall);
        let resets_at = day_start(today + 1);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let s = state.entry(agency.clone()).or_insert(State {
            tokens: per_minute as f64,
            last: now,
            day: today,
            day_used: 0,
        });
        if s.day != today {
            s.day = today;
            s.day_used = 0;
        }
        let rate = per_minute as f64 / 60.0;
        s.tokens = (s.tokens + now.saturating_duration_since(s.last).as_secs_f64() * rate)
            .min(per_minute as f64);
        s.last = now;
        if s.day_used + elements > per_day {
            return Err(Refused::Day { resets_at, per_day });
        }
        let need = elements as f64;
        if s.tokens < need {
            let wait = (need - s.tokens) / rate;
            return Err(Refused::Minute {
                retry_after: Duration::from_secs_f64(wait).max(Duration::from_millis(1)),
                per_minute,
            });
        }
        s.tokens -= need;
        s.day_used += elements;
        Ok(Admitted {
            minute_remaining: s.tokens.floor() as u64,
            day_remaining: per_day - s.day_used,
            day_used: s.day_used,
            day_resets_at: resets_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeBudget;

    fn agency(s: &str) -> AgencyId {
        AgencyId::new(s).unwrap()
    }

    fn budgets(per_minute: usize, per_day: usize) -> Budgets {
        Budgets::new(BudgetConfig {
            per_minute: crate::config::Bounded::new(per_minute),
            per_day: crate::config::Bounded::new(per_day),
            ..Default::default()
        })
    }

    #[test]
    fn the_minute_bucket_refills_and_says_when() {
        let b = budgets(60, 1_000);
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let a = agency("police");
        assert_eq!(b.admit_at(&a, 50, t0, wall).unwrap().minute_remaining, 10);
        match b.admit_at(&a, 20, t0, wall) {
            Err(Refused::Minute { retry_after, .. }) => {
                assert_eq!(retry_after.as_secs(), 10, "10 short at 1 a second")
            }
            other => panic!("{other:?}"),
        }
        let later = t0 + Duration::from_secs(10);
        assert!(b.admit_at(&a, 20, later, wall).is_ok());
        // Another node has its own bucket.
        assert!(b.admit_at(&agency("ngo"), 60, t0, wall).is_ok());
        assert!(matches!(
            b.admit_at(&a, 61, later, wall),
            Err(Refused::Batch { .. })
        ));
    }

    #[test]
    fn the_day_budget_resets_at_utc_midnight_and_survives_a_restart() {
        let b = budgets(1_000, 100);
        let a = agency("police");
        let t0 = Instant::now();
        let wall = day_start(20_000) + Duration::from_secs(3_600);
        b.restore(&a, 20_000, 90);
        let refused = b.admit_at(&a, 20, t0, wall).unwrap_err();
        assert_eq!(
            refused,
            Refused::Day {
                resets_at: day_start(20_001),
                per_day: 100
            }
        );
        assert_eq!(b.admit_at(&a, 10, t0, wall).unwrap().day_remaining, 0);
        let tomorrow = day_start(20_001) + Duration::from_secs(1);
        let next = b
            .admit_at(&a, 20, t0 + Duration::from_secs(60), tomorrow)
            .unwrap();
        assert_eq!(next.day_used, 20);
    }

    #[test]
    fn named_nodes_get_their_own_budget() {
        let mut c = BudgetConfig {
            per_day: crate::config::Bounded::new(10),
            ..Default::default()
        };
        c.nodes.insert(
            agency("border"),
            NodeBudget {
                per_minute: None,
                per_day: Some(crate::config::Bounded::new(1_000)),
            },
        );
        let b = Budgets::new(c);
        assert!(b.admit(&agency("police"), 11).is_err());
        assert!(b.admit(&agency("border"), 11).is_ok());
    }
}
