//! The TLS handshakes a listener has in progress, bounded per source and in
//! total, so that idle connections cannot lock everyone else out.
//!
//! A handshake costs a task and a socket until it completes or times out.
//! Dropping new connections once a fixed number are pending (what the
//! listener did before) hands the listener to whoever opens idle
//! connections fastest: 300 connections that never send a byte made every
//! new client, browser and peer fail for as long as they were held open.
//! Instead, a new connection always gets a slot and the *oldest* pending
//! handshake gives way: first the oldest of the same source once that
//! source holds [`MAX_PER_SOURCE`], else the oldest of all once the
//! listener holds [`MAX_PENDING`]. A real client completes its handshake in
//! milliseconds, so it is never the oldest for long; an idle connection
//! is. One source (an IPv4 address, or an IPv6 /64, which one attacker
//! holds whole) therefore never holds more than [`MAX_PER_SOURCE`] slots,
//! and while more than half of the slots are taken, new handshakes get a
//! shorter timeout ([`Handshakes::timeout`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Handshakes a listener runs at once.
pub const MAX_PENDING: usize = 256;
/// Handshakes one source may have in progress at once.
pub const MAX_PER_SOURCE: usize = 16;
/// The shortest handshake timeout under pressure.
const MIN_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_secs(2);

/// Where a connection comes from, for the per-source bound: an IPv4
/// address, or the /64 network of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

#[derive(Default)]
struct State {
    next: u64,
    /// Pending handshakes by age (ids only grow).
    pending: BTreeMap<u64, (Source, CancellationToken)>,
    by_source: HashMap<Source, BTreeSet<u64>>,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<CancellationToken> {
        let (source, cancel) = self.pending.remove(&id)?;
        if let Some(ids) = self.by_source.get_mut(&source) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_source.remove(&source);
            }
        }
        Some(cancel)
    }
}

/// One listener's pending handshakes.
pub struct Handshakes {
    state: Mutex<State>,
    max_pending: usize,
    max_per_source: usize,
}

/// Why a pending handshake was made to give way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Its source had [`MAX_PER_SOURCE`] handshakes in progress.
    SourceFull,
    /// The listener had [`MAX_PENDING`] handshakes in progress.
    ListenerFull,
}

/// A pending handshake's place; freed when dropped. `cancelled` fires when
/// a newer connection took the place.
pub struct Slot {
    id: u64,
    owner: Arc<Handshakes>,
    pub cancelled: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.lock().remove(self.id);
    }
}

impl Handshakes {
    pub fn new() -> Arc<Self> {
        Self::with_bounds(MAX_PENDING, MAX_PER_SOURCE)
    }

    pub fn with_bounds(max_pending: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            max_pending: max_pending.max(1),
            max_per_source: max_per_source.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection from `ip`, and whether an older pending
    /// handshake was cancelled to make room (it gives up at once).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> (Slot, Option<Eviction>) {
        let source = Source::of(ip);
        let mut state = self.lock();
        let oldest_of_source = state
            .by_source
            .get(&source)
            .filter(|ids| ids.len() >= self.max_per_source)
            .and_then(|ids| ids.first().copied());
        let evict = match oldest_of_source {
            Some(id) => Some((id, Eviction::SourceFull)),
            None if state.pending.len() >= self.max_pending => state
                .pending
                .keys()
                .next()
                .map(|id| (*id, Eviction::ListenerFull)),
            None => None,
        };
        let eviction = evict.and_then(|(id, why)| {
            state.remove(id).map(|cancel| {
                cancel.cancel();
                why
            })
        });
        let id = state.next;
        state.next += 1;
        let cancelled = CancellationToken::new();
        state.pending.insert(id, (source, cancelled.clone()));
        state.by_source.entry(source).or_default().insert(id);
        drop(state);
        let slot = Slot {
            id,
            owner: self.clone(),
            cancelled,
        };
        (slot, eviction)
    }

    /// Handshakes in progress.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// The time a new handshake gets: `normal`, or a fifth of it (at least
    /// two seconds) while more than half of the slots are taken.
    pub fn timeout(&self, normal: Duration) -> Duration {
        if self.pending() * 2 > self.max_pending {
            (normal / 5).max(MIN_TIMEOUT_UNDER_PRESSURE).min(normal)
        } else {
            normal
        }
    }
}

/// At most [`QuietLog::LINES`] log lines a window, then one line saying how
/// many were left out: a flood must not turn into a flood on stderr.
pub struct QuietLog {
    state: Mutex<(Instant, u32, u64)>,
}

impl Default for QuietLog {
    fn default() -> Self {
        Self {
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }
}

impl QuietLog {
    const LINES: u32 = 10;
    const WINDOW: Duration = Duration::from_secs(10);

    /// `Some(left_out_before)` when this line may be written.
    pub fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (start, lines, left_out) = &mut *s;
        if start.elapsed() >= Self::WINDOW {
            (*start, *lines) = (Instant::now(), 0);
        }
        if *lines >= Self::LINES {
            *left_out += 1;
            return None;
        }
        *lines += 1;
        Some(std::mem::take(left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_over_its_bound_loses_its_own_oldest() {
        let h = Handshakes::with_bounds(8, 2);
        let (a1, _) = h.admit(ip("10.0.0.1"));
        let (b1, _) = h.admit(ip("10.0.0.2"));
        let (a2, none) = h.admit(ip("10.0.0.1"));
        assert_eq!(none, None);
        let (_a3, why) = h.admit(ip("10.0.0.1"));
        assert_eq!(why, Some(Eviction::SourceFull));
        assert!(a1.cancelled.is_cancelled(), "the oldest of that source");
        assert!(!a2.cancelled.is_cancelled() && !b1.cancelled.is_cancelled());
        assert_eq!(h.pending(), 3);
    }

    #[test]
    fn a_full_listener_loses_its_oldest_and_frees_slots_on_drop() {
        let h = Handshakes::with_bounds(2, 2);
        let (first, _) = h.admit(ip("10.0.0.1"));
        let (second, _) = h.admit(ip("10.0.0.2"));
        let (third, why) = h.admit(ip("10.0.0.3"));
        assert_eq!(why, Some(Eviction::ListenerFull));
        assert!(first.cancelled.is_cancelled() && !second.cancelled.is_cancelled());
        drop((first, second));
        assert_eq!(h.pending(), 1);
        drop(third);
        assert_eq!(h.pending(), 0);
        assert!(h.lock().by_source.is_empty());
    }

    #[test]
    fn an_ipv6_network_is_one_source() {
        assert_eq!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
    }

    #[test]
    fn pressure_shortens_the_timeout() {
        let h = Handshakes::with_bounds(4, 4);
        let normal = Duration::from_secs(10);
        let _a = h.admit(ip("10.0.0.1"));
        let _b = h.admit(ip("10.0.0.2"));
        assert_eq!(h.timeout(normal), normal);
        let _c = h.admit(ip("10.0.0.3"));
        assert_eq!(h.timeout(normal), Duration::from_secs(2));
    }

    #[test]
    fn the_log_stays_quiet_in_a_flood() {
        let log = QuietLog::default();
        let allowed = (0..1000).filter(|_| log.allow().is_some()).count();
        assert_eq!(allowed, QuietLog::LINES as usize);
    }
}
