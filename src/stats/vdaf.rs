//! Prio3 for CaseBridge's tables, in bytes: a member shards each
//! measurement into two input shares; the leader and the helper verify
//! them together (one round of preparation: each computes a verifier
//! share, the helper combines both into the verifier message and both
//! finish with it), sum what verified, add noise to their own sum, and any
//! member combines the two noisy sums.
//!
//! Everything is libprio-rs (`prio`): this module only chooses the VDAF
//! for a table shape, decodes untrusted bytes with the right parameters
//! and keeps the leader and the helper to one set of reports. A report
//! that fails preparation (a malformed share, a measurement out of range)
//! is dropped by both and counted as rejected; neither learns its value.

use prio::codec::{Encode, ParameterizedDecode};
use prio::dp::distributions::PureDpDiscreteLaplace;
use prio::dp::{DifferentialPrivacyStrategy, PureDpBudget, Rational};
use prio::field::{Field128, FieldElementWithInteger};
use prio::vdaf::prio3::{Prio3Histogram, Prio3SumVec};
use prio::vdaf::{Aggregatable, Aggregator, AggregatorWithNoise, Client, Collector};

use super::tables::{Measurement, Shape};

/// Bytes of the verification key the two aggregators share (and no member
/// knows: it is chosen after the reports are in).
pub const VERIFY_KEY_LEN: usize = 32;
/// Bytes of a report's nonce.
pub const NONCE_LEN: usize = 16;

/// Why shares could not be made or combined.
#[derive(Debug, thiserror::Error)]
pub enum VdafError {
    #[error("the VDAF refused the table's shape or a measurement: {0}")]
    Vdaf(#[from] prio::vdaf::VdafError),
    #[error("{0} does not decode for this table")]
    Malformed(&'static str),
    #[error("the noise could not be drawn: {0}")]
    Noise(String),
}

/// One measurement in shares: the nonce and public share go to both
/// aggregators, `input_shares[i]` to aggregator `i` only.
#[derive(Debug, Clone)]
pub struct Report {
    pub nonce: [u8; NONCE_LEN],
    pub public_share: Vec<u8>,
    pub input_shares: [Vec<u8>; 2],
}

impl Report {
    /// What aggregator `i` holds of it.
    pub fn share(&self, i: usize) -> ReportShare<'_> {
        ReportShare {
            nonce: &self.nonce,
            public_share: &self.public_share,
            input_share: &self.input_shares[i],
        }
    }
}

/// What one aggregator holds of one report.
#[derive(Debug, Clone, Copy)]
pub struct ReportShare<'a> {
    pub nonce: &'a [u8; NONCE_LEN],
    pub public_share: &'a [u8],
    pub input_share: &'a [u8],
}

/// One aggregator's end of a preparation: which reports it could finish,
/// and its sum of their output shares.
#[derive(Debug, Clone)]
pub struct Finished {
    pub accepted: Vec<bool>,
    pub aggregate: Vec<u8>,
    pub count: usize,
}
/// The VDAF of one table, and the length of its measurements.
#[derive(Debug, Clone)]
pub struct TableVdaf {
    inner: Inner,
    len: usize,
}

#[derive(Debug, Clone)]
enum Inner {
    /// One bucket per case (the *none* bucket included): Prio3Histogram.
    Histogram(Prio3Histogram),
    /// A 0/1 vector per case: Prio3SumVec with one bit per element.
    Bits(Prio3SumVec),
}

/// Dispatches `$body` over the two VDAFs with `$v` bound to the inner one.
macro_rules! each {
    ($self:expr, $v:ident => $body:expr) => {
        match &$self.inner {
            Inner::Histogram($v) => $body,
            Inner::Bits($v) => $body,
        }
    };
}

impl TableVdaf {
    /// The VDAF for `shape`: a chunk length near the square root of the
    /// length, as the VDAF draft recommends for proof size.
    pub fn new(shape: &Shape) -> Result<Self, VdafError> {
        let len = shape.measurement_len();
        let chunk = len.isqrt().max(1);
        let inner = if shape.kind.multi_select() {
            Inner::Bits(Prio3SumVec::new_sum_vec(2, 1, len, chunk)?)
        } else {
            Inner::Histogram(Prio3Histogram::new_histogram(2, len, chunk)?)
        };
        Ok(Self { inner, len })
    }

    /// Shards `m` under the context `ctx` (which names the federation,
    /// table, period and release, so a share counts in no other).
    pub fn shard(&self, ctx: &[u8], m: &Measurement) -> Result<Report, VdafError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system RNG is available");
        let (public_share, input_shares) = match (&self.inner, m) {
            // prio panics on a bucket past the end: refuse it first.
            (Inner::Histogram(_), Measurement::Bucket(b)) if *b >= self.len => {
                return Err(VdafError::Malformed("a bucket past the table's end"));
            }
            (Inner::Histogram(v), Measurement::Bucket(b)) => {
                encode_shards::<Prio3Histogram>(v.shard(ctx, b, &nonce)?)
            }
            (Inner::Bits(v), Measurement::Bits(bits)) => {
                let m: Vec<u128> = bits.iter().map(|b| u128::from(*b)).collect();
                encode_shards::<Prio3SumVec>(v.shard(ctx, &m, &nonce)?)
            }
            _ => return Err(VdafError::Malformed("a measurement of another kind")),
        };
        Ok(Report {
            nonce,
            public_share,
            input_shares,
        })
    }

    /// The sizes every honest report of this table has: the public share,
    /// then each aggregator's input share. A receiver refuses any other
    /// size before decoding a byte.
    pub fn sizes(&self) -> [usize; 3] {
        let none = match &self.inner {
            Inner::Histogram(_) => Measurement::Bucket(self.len - 1),
            Inner::Bits(_) => Measurement::Bits(vec![false; self.len]),
        };
        let r = self.shard(b"sizes", &none).expect("the none value shards");
        [
            r.public_share.len(),
            r.input_shares[0].len(),
            r.input_shares[1].len(),
        ]
    }

    /// The leader's verifier share of each report (`None`: its share
    /// does not decode or verify, and the report is dropped).
    pub fn leader_shares(
        &self,
        key: &[u8; VERIFY_KEY_LEN],
        ctx: &[u8],
        reports: &[ReportShare<'_>],
    ) -> Vec<Option<Vec<u8>>> {
        each!(self, v => reports
            .iter()
            .map(|r| init(v, key, ctx, 0, r).ok().map(|(_, share)| share.get_encoded().expect("encodes")))
            .collect())
    }

    /// The helper's verification: its own verifier share of each report,
    /// combined with the leader's into the verifier message the leader
    /// needs (`None`: rejected). It sums nothing yet: the leader decides
    /// last which reports both finished ([`TableVdaf::finish`]).
    pub fn helper_messages(
        &self,
        key: &[u8; VERIFY_KEY_LEN],
        ctx: &[u8],
        reports: &[ReportShare<'_>],
        leader_shares: &[Option<Vec<u8>>],
    ) -> Vec<Option<Vec<u8>>> {
        each!(self, v => reports
            .iter()
            .zip(leader_shares)
            .map(|(r, l)| message(v, key, ctx, r, l.as_deref()?))
            .collect())
    }

    /// Aggregator `agg_id`'s end: each report with a verifier message is
    /// finished with it, and those that finish are summed. The leader runs
    /// it on the helper's messages; the helper then on the same messages
    /// less those the leader could not finish, so both sum one set.
    pub fn finish(
        &self,
        agg_id: usize,
        key: &[u8; VERIFY_KEY_LEN],
        ctx: &[u8],
        reports: &[ReportShare<'_>],
        messages: &[Option<Vec<u8>>],
    ) -> Finished {
        each!(self, v => finish_all(v, agg_id, key, ctx, reports, messages))
    }

    /// `aggregate` (an encoded sum of `count` reports) with discrete
    /// Laplace noise calibrated to `epsilon_milli` / 1000 and the table's
    /// sensitivity (prio's `dp` module: 2 for a histogram, the length for
    /// a bit vector), from the system's RNG.
    pub fn add_noise(
        &self,
        aggregate: &[u8],
        epsilon_milli: u32,
        count: usize,
    ) -> Result<Vec<u8>, VdafError> {
        let epsilon = Rational::from_unsigned(u128::from(epsilon_milli), 1000)
            .and_then(PureDpBudget::new)
            .map_err(|e| VdafError::Noise(e.to_string()))?;
        let strategy = PureDpDiscreteLaplace::from_budget(epsilon);
        each!(self, v => {
            let mut share = decode_aggregate(v, aggregate)?;
            v.add_noise_to_agg_share(&strategy, &(), &mut share, count)?;
            Ok(share.get_encoded().expect("encodes"))
        })
    }

    /// The table's cells from the two aggregators' (noisy) sums, as signed
    /// counts: noise can take a cell below zero.
    pub fn unshard(&self, shares: [&[u8]; 2], count: usize) -> Result<Vec<i128>, VdafError> {
        each!(self, v => {
            let shares = [decode_aggregate(v, shares[0])?, decode_aggregate(v, shares[1])?];
            let result = v.unshard(&(), shares, count)?;
            Ok(result.into_iter().map(signed).collect())
        })
    }
}

/// A field value read as a small signed number (the field's upper half
/// holds the negatives noise can make).
fn signed(v: u128) -> i128 {
    let modulus = Field128::modulus();
    if v > modulus / 2 {
        -i128::try_from(modulus - v).expect("below half the modulus")
    } else {
        i128::try_from(v).expect("below half the modulus")
    }
}

type Shards<V> = (
    <V as prio::vdaf::Vdaf>::PublicShare,
    Vec<<V as prio::vdaf::Vdaf>::InputShare>,
);

fn encode_shards<V: prio::vdaf::Vdaf>((public, inputs): Shards<V>) -> (Vec<u8>, [Vec<u8>; 2]) {
    let mut inputs = inputs
        .into_iter()
        .map(|s| s.get_encoded().expect("encodes"));
    let leader = inputs.next().expect("two input shares");
    let helper = inputs.next().expect("two input shares");
    (public.get_encoded().expect("encodes"), [leader, helper])
}

fn decode_aggregate<V>(v: &V, bytes: &[u8]) -> Result<V::AggregateShare, VdafError>
where
    V: Aggregator<VERIFY_KEY_LEN, NONCE_LEN, AggregationParam = ()>,
{
    V::AggregateShare::get_decoded_with_param(&(v, &()), bytes)
        .map_err(|_| VdafError::Malformed("an aggregate share"))
}

/// Aggregator `agg_id`'s first step on report `r`.
fn init<V>(
    v: &V,
    key: &[u8; VERIFY_KEY_LEN],
    ctx: &[u8],
    agg_id: usize,
    r: &ReportShare<'_>,
) -> Result<(V::VerifyState, V::VerifierShare), VdafError>
where
    V: Aggregator<VERIFY_KEY_LEN, NONCE_LEN, AggregationParam = ()>,
{
    let public = V::PublicShare::get_decoded_with_param(v, r.public_share)
        .map_err(|_| VdafError::Malformed("a public share"))?;
    let input = V::InputShare::get_decoded_with_param(&(v, agg_id), r.input_share)
        .map_err(|_| VdafError::Malformed("an input share"))?;
    Ok(v.verify_init(key, ctx, agg_id, &(), r.nonce, &public, &input)?)
}

/// The helper's verifier message for report `r`, if both shares verify.
fn message<V>(
    v: &V,
    key: &[u8; VERIFY_KEY_LEN],
    ctx: &[u8],
    r: &ReportShare<'_>,
    leader_share: &[u8],
) -> Option<Vec<u8>>
where
    V: Aggregator<VERIFY_KEY_LEN, NONCE_LEN, AggregationParam = ()>,
{
    let (state, own) = init(v, key, ctx, 1, r).ok()?;
    let leader_share = V::VerifierShare::get_decoded_with_param(&state, leader_share).ok()?;
    let message = v
        .verifier_shares_to_message(ctx, &(), [leader_share, own])
        .ok()?;
    // The helper must be able to finish too, or the leader would sum a
    // report the helper cannot.
    output(v, ctx, state, message.clone())?;
    message.get_encoded().ok()
}

/// The output share `state` finishes with `message`, if it does.
fn output<V>(
    v: &V,
    ctx: &[u8],
    state: V::VerifyState,
    message: V::VerifierMessage,
) -> Option<V::OutputShare>
where
    V: Aggregator<VERIFY_KEY_LEN, NONCE_LEN, AggregationParam = ()>,
{
    match v.verify_next(ctx, state, message).ok()? {
        prio::vdaf::VerifyTransition::Finish(out) => Some(out),
        prio::vdaf::VerifyTransition::Continue(..) => None,
    }
}

fn finish_all<V>(
    v: &V,
    agg_id: usize,
    key: &[u8; VERIFY_KEY_LEN],
    ctx: &[u8],
    reports: &[ReportShare<'_>],
    messages: &[Option<Vec<u8>>],
) -> Finished
where
    V: Aggregator<VERIFY_KEY_LEN, NONCE_LEN, AggregationParam = ()>,
{
    let mut sum = v.aggregate_init(&());
    let mut accepted = vec![false; reports.len()];
    for (i, (r, message)) in reports.iter().zip(messages).enumerate() {
        let Some(message) = message else { continue };
        let out = init(v, key, ctx, agg_id, r).ok().and_then(|(state, _)| {
            let message = V::VerifierMessage::get_decoded_with_param(&state, message).ok()?;
            output(v, ctx, state, message)
        });
        if let Some(out) = out
            && sum.accumulate(&out).is_ok()
        {
            accepted[i] = true;
        }
    }
    Finished {
        count: accepted.iter().filter(|a| **a).count(),
        accepted,
        aggregate: sum.get_encoded().expect("encodes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CountryCode;
    use crate::stats::plan::TableKind;
    use proptest::prelude::*;

    fn run(vdaf: &TableVdaf, ms: &[Measurement]) -> (Vec<i128>, usize) {
        let ctx = b"casebridge test";
        let reports: Vec<Report> = ms.iter().map(|m| vdaf.shard(ctx, m).unwrap()).collect();
        let key = [7u8; VERIFY_KEY_LEN];
        let side =
            |i: usize| -> Vec<ReportShare<'_>> { reports.iter().map(|r| r.share(i)).collect() };
        prepare(vdaf, &key, ctx, &side(0), &side(1))
    }

    /// The whole preparation, as the two aggregators run it.
    fn prepare(
        vdaf: &TableVdaf,
        key: &[u8; VERIFY_KEY_LEN],
        ctx: &[u8],
        leader_side: &[ReportShare<'_>],
        helper_side: &[ReportShare<'_>],
    ) -> (Vec<i128>, usize) {
        let leader_shares = vdaf.leader_shares(key, ctx, leader_side);
        let mut messages = vdaf.helper_messages(key, ctx, helper_side, &leader_shares);
        let leader = vdaf.finish(0, key, ctx, leader_side, &messages);
        for (m, ok) in messages.iter_mut().zip(&leader.accepted) {
            if !ok {
                *m = None;
            }
        }
        let helper = vdaf.finish(1, key, ctx, helper_side, &messages);
        assert_eq!(helper.accepted, leader.accepted, "both sum one set");
        let cells = vdaf
            .unshard([&leader.aggregate, &helper.aggregate], leader.count)
            .unwrap();
        (cells, leader.count)
    }

    fn shape(kind: TableKind) -> Shape {
        Shape::of(
            kind,
            &[
                CountryCode::new("NL").unwrap(),
                CountryCode::new("RO").unwrap(),
            ],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Shard, verify, sum and combine give the plain sum of the cases.
        #[test]
        fn the_combined_sums_are_the_true_counts(buckets in prop::collection::vec(0usize..29, 0..12)) {
            let shape = shape(TableKind::Exploitation);
            let vdaf = TableVdaf::new(&shape).unwrap();
            let ms: Vec<Measurement> = buckets.iter().map(|b| Measurement::Bucket(*b)).collect();
            let (cells, accepted) = run(&vdaf, &ms);
            prop_assert_eq!(accepted, ms.len());
            for (i, c) in cells.iter().enumerate() {
                prop_assert_eq!(*c, buckets.iter().filter(|b| **b == i).count() as i128);
            }
        }

        /// A flipped byte anywhere in a share makes the report fail
        /// preparation (or not decode) and changes no count.
        #[test]
        fn a_tampered_share_is_rejected_and_counts_nothing(at in any::<prop::sample::Index>(), helper_side in any::<bool>()) {
            let shape = shape(TableKind::Indicators);
            let vdaf = TableVdaf::new(&shape).unwrap();
            let ctx = b"casebridge test";
            let good = vdaf.shard(ctx, &Measurement::Bits(vec![true; 14])).unwrap();
            let mut bad = vdaf.shard(ctx, &Measurement::Bits(vec![true; 14])).unwrap();
            let share = &mut bad.input_shares[usize::from(helper_side)];
            let i = at.index(share.len());
            share[i] ^= 0x5a;
            let key = [3u8; VERIFY_KEY_LEN];
            let side = |i: usize| -> Vec<ReportShare<'_>> {
                [&good, &bad].iter().map(|r| r.share(i)).collect()
            };
            let (cells, count) = prepare(&vdaf, &key, ctx, &side(0), &side(1));
            prop_assert_eq!(count, 1);
            prop_assert_eq!(cells, vec![1i128; 14]);
        }
    }

    #[test]
    fn a_measurement_out_of_range_cannot_be_sharded_honestly_nor_slip_through() {
        let shape = shape(TableKind::Exploitation);
        let vdaf = TableVdaf::new(&shape).unwrap();
        // The client refuses a bucket past the end…
        assert!(
            vdaf.shard(b"ctx", &Measurement::Bucket(shape.measurement_len()))
                .is_err()
        );
        // …and a cheating client's shares of a vector with two ones (made
        // with a bit-vector VDAF of the same length and chunk) fail.
        let len = shape.measurement_len();
        let bigger = TableVdaf {
            inner: Inner::Bits(Prio3SumVec::new_sum_vec(2, 1, len, 5).unwrap()),
            len,
        };
        let two_hot: Vec<bool> = (0..shape.measurement_len()).map(|i| i < 2).collect();
        let report = bigger.shard(b"ctx", &Measurement::Bits(two_hot)).unwrap();
        let r = |i: usize| report.share(i);
        let key = [1u8; VERIFY_KEY_LEN];
        assert_eq!(prepare(&vdaf, &key, b"ctx", &[r(0)], &[r(1)]).1, 0);
    }

    /// Each aggregator's noise, combined, stays within the bound
    /// `publish::noise_bound` computes from ε and the mechanism.
    #[test]
    fn noisy_sums_stay_within_the_stated_bound() {
        let shape = shape(TableKind::Exploitation);
        let vdaf = TableVdaf::new(&shape).unwrap();
        let ctx = b"noise";
        let truth = [3usize, 3, 7, 28];
        let reports: Vec<Report> = truth
            .iter()
            .map(|b| vdaf.shard(ctx, &Measurement::Bucket(*b)).unwrap())
            .collect();
        let key = [5u8; VERIFY_KEY_LEN];
        let side =
            |i: usize| -> Vec<ReportShare<'_>> { reports.iter().map(|r| r.share(i)).collect() };
        let leader_shares = vdaf.leader_shares(&key, ctx, &side(0));
        let messages = vdaf.helper_messages(&key, ctx, &side(1), &leader_shares);
        let sums = [0, 1].map(|i| vdaf.finish(i, &key, ctx, &side(i), &messages));
        let bound = crate::stats::publish::noise_bound(&shape, 1000, 1e-9);
        let mut moved = 0;
        for _ in 0..20 {
            let noisy = sums
                .clone()
                .map(|f| vdaf.add_noise(&f.aggregate, 1000, f.count).unwrap());
            let cells = vdaf.unshard([&noisy[0], &noisy[1]], 4).unwrap();
            for (i, c) in cells.iter().enumerate() {
                let true_count = truth.iter().filter(|b| **b == i).count() as i128;
                assert!(
                    ((c - true_count) as f64).abs() <= bound,
                    "cell {i}: {c} vs {true_count}"
                );
                moved += usize::from(*c != true_count);
            }
        }
        assert!(moved > 0, "noise was added");
    }

    #[test]
    fn every_report_of_a_table_has_its_sizes() {
        for kind in [
            TableKind::Exploitation,
            TableKind::Indicators,
            TableKind::Clusters,
            TableKind::Victims,
            TableKind::Recruitment,
        ] {
            let shape = shape(kind);
            let vdaf = TableVdaf::new(&shape).unwrap();
            let some = if kind.multi_select() {
                Measurement::Bits(vec![true; shape.measurement_len()])
            } else {
                Measurement::Bucket(0)
            };
            let r = vdaf.shard(b"any", &some).unwrap();
            let got = [
                r.public_share.len(),
                r.input_shares[0].len(),
                r.input_shares[1].len(),
            ];
            assert_eq!(got, vdaf.sizes(), "{kind:?}");
        }
    }

    #[test]
    fn a_share_for_another_release_does_not_verify() {
        let shape = shape(TableKind::Clusters);
        let vdaf = TableVdaf::new(&shape).unwrap();
        let report = vdaf.shard(b"release 1", &Measurement::Bucket(3)).unwrap();
        let r = |i: usize| report.share(i);
        let key = [9u8; VERIFY_KEY_LEN];
        assert_eq!(prepare(&vdaf, &key, b"release 2", &[r(0)], &[r(1)]).1, 0);
    }
}
