//! `RowBalance`: how a batch's rows are cut between parts that run side by
//! side (the lockstep driver's row blocks, one per thread; the wall
//! driver's shards). On a shared host one core is often slower than the
//! other for seconds at a time, and with equal parts every part then waits
//! for the slowest at each join. The kernels give a row the same bits in
//! whatever part it is, so the cut may follow the parts' measured speed.

/// Cuts fall on multiples of this many rows: the matrix kernels work on
/// tiles of 8 rows, and a cut inside a tile would leave a partial tile on
/// both sides of it (nearly a whole tile's cost each).
pub const CUT_ROWS: usize = 8;
/// How much of the gap between a part's share and its measured one a
/// rebalance closes: one batch's timing is noisy, a slowed core stays slow
/// for a while.
pub const REBALANCE_RATE: f64 = 0.2;
/// No part's share falls below this fraction of an equal one.
pub const MIN_SHARE: f64 = 0.25;

/// The parts' shares of a batch's rows and what was measured since the
/// last rebalance.
#[derive(Clone, Debug, Default)]
pub struct RowBalance {
    shares: Vec<f64>,
    /// Per part: rows worked on and busy seconds since the last rebalance.
    rows: Vec<usize>,
    busy: Vec<f64>,
}

impl RowBalance {
    /// The cuts of a batch of `rows` rows into `parts` parts
    /// (`cuts[j]..cuts[j + 1]` are part `j`'s rows); equal shares until
    /// measurements move them, and again when the number of parts changes.
    pub fn cuts(&mut self, rows: usize, parts: usize) -> Vec<usize> {
        let parts = parts.max(1);
        if self.shares.len() != parts {
            self.shares = vec![1.0 / parts as f64; parts];
            self.rows = vec![0; parts];
            self.busy = vec![0.0; parts];
        }
        cuts_by_shares(rows, &self.shares)
    }

    /// Part `j` worked `busy` seconds on `rows` rows.
    pub fn record(&mut self, j: usize, rows: usize, busy: f64) {
        if j < self.rows.len() && busy.is_finite() && busy >= 0.0 {
            self.rows[j] += rows;
            self.busy[j] += busy;
        }
    }

    /// Moves the shares toward each part's rows per busy second since the
    /// last rebalance (unchanged when a part worked on no rows or has no
    /// time), then starts a new record.
    pub fn rebalance(&mut self) {
        rebalanced(&mut self.shares, &self.rows, &self.busy);
        self.rows.iter_mut().for_each(|r| *r = 0);
        self.busy.iter_mut().for_each(|b| *b = 0.0);
    }

    #[cfg(test)]
    fn shares(&self) -> &[f64] {
        &self.shares
    }

    /// Sets the shares (normalised): the tests' uneven cuts.
    #[cfg(test)]
    pub(crate) fn set_shares(&mut self, shares: &[f64]) {
        let sum: f64 = shares.iter().sum();
        self.shares = shares.iter().map(|s| s / sum).collect();
        self.rows = vec![0; shares.len()];
        self.busy = vec![0.0; shares.len()];
    }
}

/// `shares` moved toward each part's rows per busy second. The fixed point
/// gives every part rows in proportion to its speed, so all are busy
/// equally long.
fn rebalanced(shares: &mut [f64], rows: &[usize], busy: &[f64]) {
    let k = shares.len();
    if k < 2 || rows.len() != k || busy.len() != k || rows.contains(&0) {
        return;
    }
    if !busy.iter().all(|&b| b.is_finite() && b > 0.0) {
        return;
    }
    let rates: Vec<f64> = rows.iter().zip(busy).map(|(&r, &b)| r as f64 / b).collect();
    let total: f64 = rates.iter().sum();
    for (share, rate) in shares.iter_mut().zip(&rates) {
        *share += REBALANCE_RATE * (rate / total - *share);
    }
    // Lift a share below the floor, taking the rows from the shares above
    // it in proportion to what they hold beyond it (the sum stays 1).
    let floor = MIN_SHARE / k as f64;
    let deficit: f64 = shares.iter().map(|&s| (floor - s).max(0.0)).sum();
    if deficit > 0.0 {
        let spare: f64 = shares.iter().map(|&s| (s - floor).max(0.0)).sum();
        for s in shares.iter_mut() {
            *s = if *s <= floor {
                floor
            } else {
                *s - deficit * (*s - floor) / spare
            };
        }
    }
}

/// Row cuts of a batch of `rows` between parts with these shares (summing
/// to 1), at the nearest multiples of `CUT_ROWS`.
fn cuts_by_shares(rows: usize, shares: &[f64]) -> Vec<usize> {
    let mut cuts = Vec::with_capacity(shares.len() + 1);
    let mut sum = 0.0;
    cuts.push(0);
    for share in &shares[..shares.len() - 1] {
        sum += share;
        let tiles = (sum * rows as f64 / CUT_ROWS as f64).round() as usize;
        cuts.push((tiles * CUT_ROWS).clamp(*cuts.last().expect("0"), rows));
    }
    cuts.push(rows);
    cuts
}

/// A batch `(x, y)` of the uneven-cut tests.
#[cfg(test)]
pub(crate) type TestBatch = (ndarray::Array2<f32>, ndarray::Array2<f32>);

/// A small network (40-24-16-4, ReLU, softmax) and three batches of `rows`
/// sparse inputs (15 % non-zero, like a clamped image) for the tests that
/// cut a batch unevenly.
#[cfg(test)]
pub(crate) fn uneven_cut_fixture(rows: usize) -> (crate::nn::Mlp<f32>, Vec<TestBatch>) {
    use crate::nn::{Activation, ActivationKind, LossKind, Mlp};
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mlp = Mlp::<f32>::kaiming(
        &[40, 24, 16, 4],
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    let batches = (0..3)
        .map(|_| {
            let x = Array2::from_shape_simple_fn((rows, 40), || {
                if rng.gen_bool(0.15) {
                    rng.r#gen::<f32>()
                } else {
                    0.0
                }
            });
            let y = Array2::from_shape_fn((rows, 4), |(r, c)| f32::from(u8::from(r % 4 == c)));
            (x, y)
        })
        .collect();
    (mlp, batches)
}

/// What an uneven-cut test's training gives: the trained network, each
/// batch's loss and each batch's cut.
#[cfg(test)]
pub(crate) type CutRun = (crate::nn::Mlp<f32>, Vec<f64>, Vec<Vec<usize>>);

/// Runs `train` (the fixture's batches of 32 rows, from `mlp`, with the
/// row shares given, one part per thread) for an even cut and for uneven
/// ones, including a part left without rows; asserts each batch was cut as
/// asked and every cut gives the even cut's weights, biases and losses.
#[cfg(test)]
pub(crate) fn assert_any_cut_gives_the_same_bits(
    mlp: &crate::nn::Mlp<f32>,
    train: impl Fn(&[f64]) -> CutRun,
) {
    let run = |shares: &[f64]| {
        let _threads = crate::nn::linalg::threads_for_test(shares.len());
        let got = train(shares);
        crate::nn::linalg::set_threads(1);
        got
    };
    let (even, even_losses, even_cuts) = run(&[0.5, 0.5]);
    assert_eq!(even_cuts[0], [0, 16, 32]);
    assert_ne!(even.w, mlp.w, "trained");
    for (shares, cut) in [
        (vec![0.75, 0.25], vec![0, 24, 32]),
        (vec![0.25, 0.75], vec![0, 8, 32]),
        (vec![0.5, 0.25, 0.25], vec![0, 16, 24, 32]),
        // A part left without rows (a small batch, a slow core).
        (vec![0.05, 0.95], vec![0, 0, 32]),
    ] {
        let (got, losses, cuts) = run(&shares);
        assert!(cuts.iter().all(|c| *c == cut), "{shares:?}: {cuts:?}");
        assert_eq!(got.w, even.w, "{shares:?}");
        assert_eq!(got.b, even.b, "{shares:?}");
        assert_eq!(losses, even_losses, "{shares:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_cover_every_row_once_at_tile_multiples() {
        assert_eq!(cuts_by_shares(64, &[0.5, 0.5]), [0, 32, 64]);
        // At multiples of 8 rows: 0.55 of 64 stays 32, 0.57 is 40.
        assert_eq!(cuts_by_shares(64, &[0.55, 0.45]), [0, 32, 64]);
        assert_eq!(cuts_by_shares(64, &[0.57, 0.43]), [0, 40, 64]);
        assert_eq!(cuts_by_shares(64, &[0.7, 0.3]), [0, 48, 64]);
        assert_eq!(cuts_by_shares(1, &[0.5, 0.5]), [0, 0, 1]);
        assert_eq!(cuts_by_shares(20, &[0.5, 0.5]), [0, 8, 20]);
        assert_eq!(cuts_by_shares(96, &[0.2, 0.3, 0.5]), [0, 16, 48, 96]);
        let mut b = RowBalance::default();
        assert_eq!(b.cuts(64, 2), [0, 32, 64]);
        assert_eq!(b.cuts(64, 4), [0, 16, 32, 48, 64]);
    }

    #[test]
    fn shares_follow_the_faster_part() {
        // Part 0 took twice as long per row: it gets fewer rows, a fifth of
        // the way to the measured split (1/3 : 2/3) per rebalance.
        let mut b = RowBalance::default();
        b.cuts(64, 2);
        b.record(0, 32, 0.004);
        b.record(1, 32, 0.002);
        b.rebalance();
        let moved = 0.5 + REBALANCE_RATE * (1.0 / 3.0 - 0.5);
        assert!((b.shares()[0] - moved).abs() < 1e-12, "{:?}", b.shares());
        assert!((b.shares().iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // The record starts again: a rebalance without news changes nothing.
        let before = b.shares().to_vec();
        b.rebalance();
        assert_eq!(b.shares(), before);
        // Parts as fast as each other: an uneven split moves back toward an
        // even one; an even one stays.
        let mut uneven = vec![0.6, 0.4];
        rebalanced(&mut uneven, &[6, 4], &[0.003, 0.002]);
        assert!((uneven[0] - (0.6 + REBALANCE_RATE * (0.5 - 0.6))).abs() < 1e-12);
        let mut even = vec![0.5, 0.5];
        rebalanced(&mut even, &[32, 32], &[0.003, 0.003]);
        assert!((even[0] - 0.5).abs() < 1e-12, "{even:?}");
        // A stalled part never loses all its rows; a run without rows or
        // timing changes nothing.
        let mut floor = vec![0.5, 0.5];
        for _ in 0..100 {
            rebalanced(&mut floor, &[32, 32], &[1.0, 1e-6]);
        }
        assert!(floor[0] >= MIN_SHARE / 2.0 - 1e-12, "{floor:?}");
        assert!((floor.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{floor:?}");
        for (rows, busy) in [([0, 64], [0.0, 0.003]), ([32, 32], [f64::NAN, 0.003])] {
            let mut same = vec![0.5, 0.5];
            rebalanced(&mut same, &rows, &busy);
            assert_eq!(same, [0.5, 0.5]);
        }
    }
}
