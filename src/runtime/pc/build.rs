//! Building a PC network: the actors of every layer (slice) for the chosen
//! granularity, then one `Topology` whose links are handed to the actors —
//! each actor's neighbours are exactly the edges declared for it, never a
//! second hand-filled list. `PcNetwork` is the narrow interface the training
//! harness talks through: present a batch at the input and its target at the
//! output, run, read the loss and the applied updates, move the weights in
//! and out. The harness never touches an actor's state.

use super::input::InputActor;
use super::layer::LayerActor;
use super::value::ValueActor;
use super::{PcActor, PcSettings};
use crate::algo::pc::{PcLayer, Role};
use crate::nn::{Mlp, Real, Updates};
use crate::runtime::actor::{ActorId, Direction, Port, Topology};
use crate::runtime::config::{Driver as DriverKind, Granularity, RuntimeConfig};
use crate::runtime::timing::Timing;
use crate::runtime::{Driver, RuntimeError, Stats, VirtualDriver, WallDriver, WallOptions};
use ndarray::{Array1, Array2, ArrayView2, s};

/// `k` nearly equal slices of `0..n` (`k ≤ n`; validation refuses more).
fn slices(n: usize, k: usize) -> Vec<(usize, usize)> {
    let k = k.clamp(1, n.max(1));
    (0..k).map(|j| (j * n / k, (j + 1) * n / k)).collect()
}

/// Slices of hidden layer `l` (the output layer stays whole).
fn layer_slices(layers: &[usize], l: usize, groups: usize) -> Vec<(usize, usize)> {
    let k = if l == layers.len() { 1 } else { groups };
    slices(layers[l - 1], k)
}

/// The names of the actors of a network of `layers` (input first), in id
/// order — what `runtime.actor_compute` may name. With `shards > 1` every
/// shard has the whole set, each name suffixed with `@` and the shard.
pub fn actor_names(
    layers: &[usize],
    granularity: Granularity,
    groups: usize,
    shards: usize,
) -> Vec<String> {
    let one = shard_names(layers, granularity, groups);
    if shards <= 1 {
        return one;
    }
    (0..shards)
        .flat_map(|j| one.iter().map(move |n| format!("{n}@{j}")))
        .collect()
}

fn shard_names(layers: &[usize], granularity: Granularity, groups: usize) -> Vec<String> {
    let mut names = vec!["input".to_string()];
    let depth = layers.len();
    let groups = if granularity == Granularity::Layer {
        1
    } else {
        groups
    };
    for l in 2..=depth {
        let sl = layer_slices(layers, l, groups);
        for j in 0..sl.len() {
            let suffix = if sl.len() == 1 {
                format!("{l}")
            } else {
                format!("{l}.{j}")
            };
            if granularity == Granularity::Nodes {
                names.push(format!("err{suffix}"));
                if l < depth {
                    names.push(format!("val{suffix}"));
                }
            } else {
                names.push(format!("layer{suffix}"));
            }
        }
    }
    names
}

/// The actors that send `f(x[l])` up and receive the feedback of layer `l`
/// (`emit`), and those that receive the up-messages of layer `l` (`take`),
/// each with its row range of layer `l`.
#[derive(Default)]
struct Layout {
    emit: Vec<Vec<(ActorId, usize, usize)>>,
    take: Vec<Vec<(ActorId, usize, usize)>>,
}

/// A PC network on a driver, behind the narrow harness interface.
pub struct PcNetwork<T: Real> {
    driver: Driver<PcActor<T>>,
    /// Per shard: its input actor and its output actor.
    inputs: Vec<ActorId>,
    outputs: Vec<ActorId>,
    loss: crate::nn::LossKind,
    /// Each shard's share of a batch's rows (`runtime.shards > 1`): equal
    /// on the virtual driver; on the wall driver it follows the shards'
    /// measured speed (`rebalance`).
    shard_shares: Vec<f64>,
    /// Rows presented to each shard since the last run.
    shard_rows: Vec<usize>,
}

/// How much of the gap between a shard's share and its measured one a run
/// closes: one run's timing is noisy, a slowed core stays slow for a while.
const REBALANCE_RATE: f64 = 0.2;
/// No shard's share falls below this fraction of an equal one.
const MIN_SHARE: f64 = 0.25;

/// `shares` moved toward each shard's rows per busy second in a run that
/// gave shard `j` `rows[j]` rows and kept its thread busy `busy[j]` seconds
/// (unchanged when a shard had no rows or no timing).
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

/// Shards' rows are cut at multiples of this: the matrix kernels work on
/// tiles of 8 rows, and a cut inside a tile would leave a partial tile on
/// both sides of it (nearly a whole tile's cost each).
const CUT_ROWS: usize = 8;

/// Row cuts of a batch of `rows` between shards with these shares (summing
/// to 1), at the nearest multiples of `CUT_ROWS`: `cuts[j]..cuts[j + 1]` are
/// shard `j`'s rows.
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

impl<T: Real> PcNetwork<T> {
    /// The actors and edges for `mlp`'s shapes (the actors own no weights
    /// until `load_weights`), on the driver `runtime` names.
    pub fn build(
        mlp: &Mlp<T>,
        settings: PcSettings,
        runtime: &RuntimeConfig,
        seed: u64,
    ) -> Result<Self, RuntimeError> {
        let sizes = &mlp.sizes;
        let depth = mlp.depth();
        let groups = match runtime.granularity {
            Granularity::Layer => 1,
            _ => runtime.groups,
        };
        let nodes = runtime.granularity == Granularity::Nodes;
        let shards = runtime.shards.max(1);
        if shards > 1 && (settings.clocked() || settings.pipeline > 1) {
            return Err(RuntimeError::Setup(
                "runtime.shards > 1 needs the event schedule and pipeline = 1".into(),
            ));
        }
        let feedback = settings.rule.feedback(mlp);
        let names = actor_names(sizes, runtime.granularity, groups, shards);
        let mut actors: Vec<PcActor<T>> = Vec::with_capacity(names.len());
        let mut topo = Topology::new();
        let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
        // Per shard, the layer (slice) actors in build order: the same
        // position in every shard is the same layer slice.
        let mut shard_layers: Vec<Vec<ActorId>> = Vec::new();
        // The slice of its layer each actor belongs to (the input: 0).
        let mut slice_of: Vec<usize> = Vec::new();
        for shard in 0..shards {
            let input = actors.len();
            actors.push(PcActor::Input(InputActor::new(
                names[input].clone(),
                settings.clone(),
            )));
            let mut layout = Layout::default();
            layout.emit.push(vec![(input, 0, sizes[0])]);
            layout.take.push(vec![]);
            let mut own_layers = Vec::new();
            for l in 2..=depth {
                let (mut emit, mut take) = (Vec::new(), Vec::new());
                for (slice, (r0, r1)) in layer_slices(sizes, l, groups).into_iter().enumerate() {
                    let role = if l == depth {
                        Role::Output(mlp.output)
                    } else {
                        Role::Hidden(mlp.hidden)
                    };
                    let fb = feedback
                        .as_ref()
                        .map(|b| b[l - 2].slice(s![r0..r1, ..]).to_owned());
                    let mut layer = PcLayer::new(
                        l,
                        role,
                        Array2::zeros((r1 - r0, sizes[l - 2])),
                        Array1::zeros(r1 - r0),
                        fb,
                    )
                    .map_err(|e| RuntimeError::Setup(e.to_string()))?;
                    layer.set_step_control(settings.rule.cfg.step_control);
                    let id = actors.len();
                    let name = names[id].clone();
                    let mut actor = LayerActor::new(name, l, settings.clone(), layer, (r0, r1));
                    actor.shard = shard;
                    slice_of.resize(id, 0);
                    actors.push(PcActor::Layer(Box::new(actor)));
                    slice_of.push(slice);
                    own_layers.push(id);
                    take.push((id, r0, r1));
                    if nodes && l < depth {
                        let v = actors.len();
                        slice_of.push(slice);
                        actors.push(PcActor::Value(ValueActor::new(
                            names[v].clone(),
                            l,
                            settings.clone(),
                            mlp.hidden,
                        )));
                        emit.push((v, r0, r1));
                    } else {
                        emit.push((id, r0, r1));
                    }
                }
                layout.emit.push(emit);
                layout.take.push(take);
            }
            slice_of.resize(actors.len(), 0);
            wire(&mut actors, &mut topo, &layout, &names, sizes);
            inputs.push(input);
            outputs.push(layout.take[depth - 1][0].0);
            shard_layers.push(own_layers);
        }
        if shards > 1 {
            connect_shards(&mut actors, &mut topo, &shard_layers, &names);
        }
        let timing = Timing::from_config(runtime, &names, seed);
        let per_shard = actors.len() / shards;
        let driver = match runtime.driver {
            DriverKind::Wall => {
                let mut wall =
                    WallDriver::new(actors, topo, timing, WallOptions::from_config(runtime))?;
                if shards > 1 {
                    // A shard's actors only talk to each other until the
                    // update: one group per shard keeps each on its thread.
                    wall.place_together((0..shards * per_shard).map(|i| i / per_shard).collect());
                } else if groups > 1 && runtime.workers != 1 {
                    // Slice j of every layer (the input with the first):
                    // each group's messages to the next layer's slice of
                    // the same group are handed over within its thread.
                    wall.place_together(slice_of);
                }
                Driver::Wall(wall)
            }
            _ => Driver::Virtual(VirtualDriver::new(actors, topo, timing, runtime.watchdog)),
        };
        Ok(Self {
            driver,
            inputs,
            outputs,
            loss: mlp.output,
            shard_shares: vec![1.0 / shards as f64; shards],
            shard_rows: vec![0; shards],
        })
    }

    fn layers(&mut self) -> impl Iterator<Item = &mut LayerActor<T>> {
        self.driver.actors_mut().iter_mut().filter_map(|a| match a {
            PcActor::Layer(l) => Some(&mut **l),
            _ => None,
        })
    }

    /// Presents batch `x` with target `y` as sample `sample` (clamped when
    /// the network runs); with shards, each gets its share of the rows.
    pub fn present(&mut self, sample: u64, x: ArrayView2<T>, y: ArrayView2<T>) {
        let density = crate::nn::sparse::density(x);
        for a in self.layers().filter(|a| a.l == 2) {
            a.densities.insert(sample, density);
        }
        let cuts = cuts_by_shares(x.nrows(), &self.shard_shares);
        for (rows, c) in self.shard_rows.iter_mut().zip(cuts.windows(2)) {
            *rows += c[1] - c[0];
        }
        let mut share = |j: usize, x: Array2<T>, y: Array2<T>| {
            let (input, output) = (self.inputs[j], self.outputs[j]);
            let actors = self.driver.actors_mut();
            if let PcActor::Input(a) = &mut actors[input] {
                a.inputs.push_back((sample, x));
            }
            if let PcActor::Layer(a) = &mut actors[output] {
                a.targets.insert(sample, y);
            }
        };
        for (j, c) in cuts.windows(2).enumerate() {
            share(
                j,
                x.slice(s![c[0]..c[1], ..]).to_owned(),
                y.slice(s![c[0]..c[1], ..]).to_owned(),
            );
        }
    }

    /// Runs until every presented batch is learned.
    pub fn run(&mut self) -> Result<f64, RuntimeError> {
        let took = self.driver.run()?;
        self.rebalance();
        Ok(took)
    }

    /// Moves rows toward the shards whose threads worked faster in the last
    /// run (wall driver): on a shared host one core is often slower than
    /// the other for seconds at a time, and with equal shares every shard
    /// would wait for the slowest at each update. The shares move toward
    /// rows per busy second, whose fixed point is equal busy times. Any cut
    /// of a batch gives the same bits: rows relax independently and the
    /// pooled update sums them in row order.
    fn rebalance(&mut self) {
        let k = self.shard_rows.len();
        let rows = std::mem::replace(&mut self.shard_rows, vec![0; k]);
        if let Driver::Wall(wall) = &self.driver {
            rebalanced(&mut self.shard_shares, &rows, wall.group_busy());
        }
    }

    /// Summed loss of the feedforward predictions since the last call (of
    /// each batch as a whole: the shards' rows joined in order).
    pub fn take_loss(&mut self) -> f64 {
        let mut per_shard: Vec<Vec<super::layer::Prediction<T>>> = Vec::new();
        for &o in &self.outputs {
            match &mut self.driver.actors_mut()[o] {
                PcActor::Layer(a) => per_shard.push(std::mem::take(&mut a.predictions)),
                _ => return f64::NAN,
            }
        }
        let Some((first, rest)) = per_shard.split_first() else {
            return f64::NAN;
        };
        let mut total = 0.0;
        for (i, (s, u, y)) in first.iter().enumerate() {
            if rest.is_empty() {
                total += self.loss.loss(u.view(), y.view()).f64();
                continue;
            }
            let (mut us, mut ys) = (vec![u.view()], vec![y.view()]);
            for other in rest {
                match other.get(i) {
                    Some((t, u, y)) if t == s => {
                        us.push(u.view());
                        ys.push(y.view());
                    }
                    _ => return f64::NAN,
                }
            }
            match (
                ndarray::concatenate(ndarray::Axis(0), &us),
                ndarray::concatenate(ndarray::Axis(0), &ys),
            ) {
                (Ok(u), Ok(y)) => total += self.loss.loss(u.view(), y.view()).f64(),
                _ => return f64::NAN,
            }
        }
        total
    }

    /// The layer actors of the first shard: every shard holds the same
    /// weights and applies the same updates.
    fn first_shard(&mut self) -> impl Iterator<Item = &mut LayerActor<T>> {
        self.layers().filter(|a| a.shard == 0)
    }

    /// Copies `W[l]`, `b[l]` of `mlp` into the actors that own them.
    pub fn load_weights(&mut self, mlp: &Mlp<T>) {
        let mut reloaded = false;
        for a in self.first_shard() {
            let i = a.l - 2;
            reloaded |= a.load(mlp.w[i].view(), mlp.b[i].view());
        }
        // Every shard holds the first shard's weights (they apply the same
        // pooled updates), so the others need looking at only after a change.
        if reloaded {
            for a in self.layers().filter(|a| a.shard > 0) {
                let i = a.l - 2;
                a.load(mlp.w[i].view(), mlp.b[i].view());
            }
        }
    }

    /// Copies the actors' weights back into `mlp`.
    pub fn store_weights(&mut self, mlp: &mut Mlp<T>) {
        for a in self.first_shard() {
            let (i, (r0, r1)) = (a.l - 2, a.rows);
            crate::nn::kernels::copy_into(a.layer.weights(), mlp.w[i].slice_mut(s![r0..r1, ..]));
            mlp.b[i].slice_mut(s![r0..r1]).assign(&a.layer.bias());
        }
    }

    /// The last update each actor applied (learning rate included).
    pub fn updates_into(&mut self, upd: &mut Updates<T>) {
        for a in self.first_shard() {
            let (i, (r0, r1)) = (a.l - 2, a.rows);
            if a.dw.dim() == (r1 - r0, upd.dw[i].ncols()) {
                crate::nn::kernels::copy_into(a.dw.view(), upd.dw[i].slice_mut(s![r0..r1, ..]));
                upd.db[i].slice_mut(s![r0..r1]).assign(&a.db);
            }
        }
    }

    /// α for every actor (decayed between epochs by the harness).
    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        for a in self.driver.actors_mut() {
            let settings = match a {
                PcActor::Input(x) => &mut x.settings,
                PcActor::Layer(x) => &mut x.settings,
                PcActor::Value(x) => &mut x.settings,
            };
            settings.rule.learning_rate = learning_rate;
        }
    }

    pub fn stats(&self) -> &Stats {
        self.driver.stats()
    }

    /// `"virtual time units"` or `"seconds"`.
    pub fn time_unit(&self) -> &'static str {
        self.driver.time_unit()
    }

    /// Test hook: the actors of layer `l` panic on sample `sample`.
    #[doc(hidden)]
    pub fn inject_panic(&mut self, l: usize, sample: u64) {
        for a in self.layers().filter(|a| a.l == l) {
            a.panic_on_sample = Some(sample);
        }
    }
}

/// Declares every edge of one shard and hands each actor the links of its
/// own edges.
fn wire<T: Real>(
    actors: &mut [PcActor<T>],
    topo: &mut Topology,
    layout: &Layout,
    names: &[String],
    sizes: &[usize],
) {
    let depth = sizes.len();
    let list = |ids: &[(ActorId, usize, usize)]| {
        ids.iter()
            .map(|&(a, _, _)| format!("`{}`", names[a]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for l in 2..=depth {
        let emitters = &layout.emit[l - 2];
        let takers = &layout.take[l - 1];
        for &(r, _, _) in takers {
            for &(e, c0, c1) in emitters {
                let up = topo.add(e, r, Port::Forward, Direction::Up);
                match &mut actors[e] {
                    PcActor::Input(a) => a.up.push(up),
                    PcActor::Layer(a) => a.up.push(up),
                    PcActor::Value(a) => a.up.push(up),
                }
                let PcActor::Layer(receiver) = &mut actors[r] else {
                    unreachable!("layers take the up-messages");
                };
                receiver.below.push((e, c0, c1));
                receiver.below_width = sizes[l - 2];
                if l > 2 {
                    let down = topo.add(r, e, Port::Backward, Direction::Down);
                    receiver.down.push((down, c0, c1));
                    match &mut actors[e] {
                        PcActor::Layer(a) => a.above.push(r),
                        PcActor::Value(a) => a.above.push(r),
                        PcActor::Input(_) => unreachable!("the input gets no feedback"),
                    }
                } else {
                    let input = emitters[0].0;
                    let done = topo.add(r, input, Port::Backward, Direction::Down);
                    receiver.done = Some(done);
                }
            }
        }
        // `nodes`: a layer's error nodes and value nodes talk to each other.
        for (&(err, _, _), &(val, _, _)) in takers.iter().zip(&layout.emit[l - 1]) {
            if err == val || l == depth {
                continue;
            }
            let to_value = topo.add(err, val, Port::Forward, Direction::Down);
            let to_error = topo.add(val, err, Port::Backward, Direction::Up);
            if let PcActor::Layer(a) = &mut actors[err] {
                a.value = Some(to_value);
            }
            if let PcActor::Value(a) = &mut actors[val] {
                a.step_link = Some(to_error);
                a.error_name = format!("`{}`", names[err]);
            }
        }
        let below = list(emitters);
        let above = layout.take.get(l).map(|t| list(t)).unwrap_or_default();
        for &(r, _, _) in takers {
            if let PcActor::Layer(a) = &mut actors[r] {
                a.below_names = below.clone();
                a.above_names = above.clone();
            }
        }
        for &(e, _, _) in &layout.emit[l - 1] {
            if let PcActor::Value(a) = &mut actors[e] {
                a.above_names = above.clone();
            }
        }
    }
}

/// Links every layer (slice) actor to the same actor of the other shards
/// (the `Share` of the pooled update; timed like the errors, `delay_down`).
fn connect_shards<T: Real>(
    actors: &mut [PcActor<T>],
    topo: &mut Topology,
    shard_layers: &[Vec<ActorId>],
    names: &[String],
) {
    for pos in 0..shard_layers[0].len() {
        let same: Vec<ActorId> = shard_layers.iter().map(|l| l[pos]).collect();
        for (j, &a) in same.iter().enumerate() {
            let peers = same
                .iter()
                .map(|&b| (b != a).then(|| (b, topo.add(a, b, Port::Backward, Direction::Down))))
                .collect();
            let peer_names = same
                .iter()
                .filter(|&&b| b != a)
                .map(|&b| format!("`{}`", names[b]))
                .collect::<Vec<_>>()
                .join(", ");
            if let PcActor::Layer(x) = &mut actors[a] {
                debug_assert_eq!(x.shard, j);
                x.peers = peers;
                x.peer_names = peer_names;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::pc::{PcConfig, PcRule};
    use crate::nn::{Activation, ActivationKind, LossKind};
    use crate::runtime::config::Schedule;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn shares_cut_every_row_once_and_follow_the_faster_shard() {
        assert_eq!(cuts_by_shares(64, &[0.5, 0.5]), [0, 32, 64]);
        // At multiples of 8 rows: 0.55 of 64 stays 32, 0.57 is 40.
        assert_eq!(cuts_by_shares(64, &[0.55, 0.45]), [0, 32, 64]);
        assert_eq!(cuts_by_shares(64, &[0.57, 0.43]), [0, 40, 64]);
        assert_eq!(cuts_by_shares(64, &[0.7, 0.3]), [0, 48, 64]);
        assert_eq!(cuts_by_shares(1, &[0.5, 0.5]), [0, 0, 1]);
        assert_eq!(cuts_by_shares(20, &[0.5, 0.5]), [0, 8, 20]);
        assert_eq!(cuts_by_shares(96, &[0.2, 0.3, 0.5]), [0, 16, 48, 96]);
        // Shard 0 took twice as long per row: it gets fewer rows, a fifth of
        // the way to the measured split (1/3 : 2/3) per run.
        let mut shares = vec![0.5, 0.5];
        rebalanced(&mut shares, &[32, 32], &[0.004, 0.002]);
        let moved = 0.5 + REBALANCE_RATE * (1.0 / 3.0 - 0.5);
        assert!((shares[0] - moved).abs() < 1e-12, "{shares:?}");
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Shards as fast as each other: an uneven split moves back toward
        // an even one; an even one stays.
        let mut uneven = vec![0.6, 0.4];
        rebalanced(&mut uneven, &[6, 4], &[0.003, 0.002]);
        assert!((uneven[0] - (0.6 + REBALANCE_RATE * (0.5 - 0.6))).abs() < 1e-12);
        let mut even = vec![0.5, 0.5];
        rebalanced(&mut even, &[32, 32], &[0.003, 0.003]);
        assert!((even[0] - 0.5).abs() < 1e-12, "{even:?}");
        // A stalled shard never loses all its rows; a run without rows or
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

    #[test]
    fn any_cut_between_the_shards_gives_the_same_bits() {
        // What lets the wall driver move rows between shards freely: rows
        // relax independently and the pooled update sums them in row
        // order, so weights and loss do not depend on the cut (sparse
        // input, momentum).
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mlp = Mlp::<f32>::kaiming(
            &[40, 24, 16, 4],
            Activation::new(ActivationKind::Relu),
            LossKind::SoftmaxCe,
            &mut rng,
        );
        let batches: Vec<(Array2<f32>, Array2<f32>)> = (0..3)
            .map(|_| {
                let x = Array2::from_shape_simple_fn((20, 40), || {
                    if rng.gen_bool(0.15) {
                        rng.r#gen::<f32>()
                    } else {
                        0.0
                    }
                });
                let y = Array2::from_shape_fn((20, 4), |(r, c)| f32::from(u8::from(r % 4 == c)));
                (x, y)
            })
            .collect();
        let train = |shares: &[f64]| {
            let settings = PcSettings {
                rule: PcRule::il(
                    PcConfig {
                        steps: 5,
                        ..PcConfig::default()
                    },
                    3,
                    0.05,
                    0.9,
                ),
                schedule: Schedule::Event,
                trigger: crate::runtime::config::Trigger::Event,
                period: 10.0,
                pipeline: 1,
            };
            let runtime = RuntimeConfig {
                shards: shares.len(),
                driver: DriverKind::Virtual,
                ..RuntimeConfig::default()
            };
            let mut net = PcNetwork::build(&mlp, settings, &runtime, 1).unwrap();
            net.shard_shares = shares.to_vec();
            let mut trained = mlp.clone();
            let mut loss = Vec::new();
            for (s, (x, y)) in batches.iter().enumerate() {
                net.load_weights(&trained);
                net.present(s as u64, x.view(), y.view());
                let cuts = cuts_by_shares(x.nrows(), shares);
                let rows: Vec<usize> = cuts.windows(2).map(|c| c[1] - c[0]).collect();
                assert_eq!(net.shard_rows, rows, "each shard got its share");
                net.run().unwrap();
                net.store_weights(&mut trained);
                loss.push(net.take_loss());
            }
            (trained, loss)
        };
        let (even, even_loss) = train(&[0.5, 0.5]);
        assert_ne!(even.w, mlp.w, "trained");
        for shares in [vec![0.85, 0.15], vec![0.1, 0.9], vec![0.2, 0.5, 0.3]] {
            let (got, loss) = train(&shares);
            assert_eq!(got.w, even.w, "{shares:?}");
            assert_eq!(got.b, even.b, "{shares:?}");
            assert_eq!(loss, even_loss, "{shares:?}");
        }
    }
}
