//! From the combined noisy sums to what people see: cells under the
//! plan's minimum suppressed, and the bound the noise stays within (for
//! the tests, and for the "± n" a table shows).

use super::tables::Shape;

/// The published cells of `shape` from the combined sums `noisy` (the
/// *none* bucket, if any, dropped): `None` where the noisy count is below
/// `min_cell`, so a small group of people cannot be singled out.
pub fn cells(shape: &Shape, noisy: &[i128], min_cell: u32) -> Vec<Option<u64>> {
    noisy
        .iter()
        .take(shape.cells())
        .map(|&n| u64::try_from(n).ok().filter(|n| *n >= u64::from(min_cell)))
        .collect()
}

/// The L1 sensitivity of a table under substitution of one case: what
/// prio's `dp` module calibrates its noise to (a histogram: one bucket
/// down, another up; a bit vector: every bit may flip).
pub fn sensitivity(shape: &Shape) -> u32 {
    if shape.kind.multi_select() {
        u32::try_from(shape.cells()).unwrap_or(u32::MAX)
    } else {
        2
    }
}

/// A `t` such that the noise in one published cell exceeds `t` in
/// absolute value with probability at most `failure`. Each aggregator adds
/// discrete Laplace noise of scale b = Δ/ε to its sum, whose tail is
/// P(|X| ≥ t) ≤ 2·exp(−t/b); the cell holds two such draws, and
/// |X₁ + X₂| ≥ t needs one of them at t/2 or beyond, so
/// P ≤ 4·exp(−t/2b), i.e. t = 2b·ln(4/failure).
pub fn noise_bound(shape: &Shape, epsilon_milli: u32, failure: f64) -> f64 {
    let b = f64::from(sensitivity(shape)) * 1000.0 / f64::from(epsilon_milli);
    2.0 * b * (4.0 / failure).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CountryCode;
    use crate::stats::plan::TableKind;

    #[test]
    fn cells_below_the_minimum_and_negative_ones_are_suppressed() {
        let shape = Shape::of(TableKind::CrossAgency, &[CountryCode::new("NL").unwrap()]);
        // NL, other, not stated, then the none bucket.
        let shown = cells(&shape, &[11, 10, -3, 500], 11);
        assert_eq!(shown, vec![Some(11), None, None]);
    }

    #[test]
    fn the_bound_grows_as_epsilon_shrinks() {
        let shape = Shape::of(TableKind::Exploitation, &[]);
        let at_1 = noise_bound(&shape, 1000, 1e-9);
        assert!((at_1 - 2.0 * 2.0 * (4e9f64).ln()).abs() < 1e-9);
        assert!(noise_bound(&shape, 500, 1e-9) > at_1);
    }
}
