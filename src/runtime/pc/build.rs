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
use crate::algo::balance::RowBalance;
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
    /// How a batch's rows are cut between the shards: equal on the virtual
    /// driver; on the wall driver they follow the shards' measured speed.
    balance: RowBalance,
    /// Rows presented to each shard since the last run.
    shard_rows: Vec<usize>,
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
            balance: RowBalance::default(),
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
        let cuts = self.balance.cuts(x.nrows(), self.shard_rows.len());
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
    /// run (wall driver; `RowBalance`). Any cut of a batch gives the same
    /// bits: rows relax independently and the pooled update sums them in
    /// row order.
    fn rebalance(&mut self) {
        if let Driver::Wall(wall) = &self.driver
            && wall.group_busy().len() == self.shard_rows.len()
        {
            for (j, (&r, &busy)) in self.shard_rows.iter().zip(wall.group_busy()).enumerate() {
                self.balance.record(j, r, busy);
            }
            self.balance.rebalance();
        }
        self.shard_rows.iter_mut().for_each(|r| *r = 0);
    }

    /// The summed loss of each sample's feedforward prediction since the
    /// last call, in sample order (each batch as a whole: the shards' rows
    /// joined in order). A sample whose rows do not line up across the
    /// shards reads NaN.
    pub fn take_losses(&mut self) -> Vec<f64> {
        let mut per_shard: Vec<Vec<super::layer::Prediction<T>>> = Vec::new();
        for &o in &self.outputs {
            match &mut self.driver.actors_mut()[o] {
                PcActor::Layer(a) => per_shard.push(std::mem::take(&mut a.predictions)),
                _ => return vec![f64::NAN],
            }
        }
        let Some((first, rest)) = per_shard.split_first() else {
            return vec![f64::NAN];
        };
        let joined = |i: usize, s: u64, u: &Array2<T>, y: &Array2<T>| -> Option<f64> {
            let (mut us, mut ys) = (vec![u.view()], vec![y.view()]);
            for other in rest {
                let (_, u, y) = other.get(i).filter(|p| p.0 == s)?;
                us.push(u.view());
                ys.push(y.view());
            }
            let u = ndarray::concatenate(ndarray::Axis(0), &us).ok()?;
            let y = ndarray::concatenate(ndarray::Axis(0), &ys).ok()?;
            Some(self.loss.loss(u.view(), y.view()).f64())
        };
        first
            .iter()
            .enumerate()
            .map(|(i, (s, u, y))| {
                if rest.is_empty() {
                    self.loss.loss(u.view(), y.view()).f64()
                } else {
                    joined(i, *s, u, y).unwrap_or(f64::NAN)
                }
            })
            .collect()
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

    /// The last update each actor applied (learning rate included); with
    /// shards, each shard's block of inputs from that shard.
    pub fn updates_into(&mut self, upd: &mut Updates<T>) {
        for a in self.layers() {
            let (i, (r0, r1)) = (a.l - 2, a.rows);
            let inputs = a.update_inputs();
            if a.dw.dim() == (r1 - r0, inputs.len()) {
                let to = upd.dw[i].slice_mut(s![r0..r1, inputs]);
                crate::nn::kernels::copy_into(a.dw.view(), to);
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
                let cuts = crate::algo::bounds(x.layer.fan_in(), same.len());
                x.input_blocks = cuts.windows(2).map(|c| c[0]..c[1]).collect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::pc::{PcConfig, PcRule};
    use crate::runtime::config::Schedule;

    #[test]
    fn any_cut_between_the_shards_gives_the_same_bits() {
        // What lets the wall driver move rows between shards freely: rows
        // relax independently and the pooled update sums them in row
        // order, so weights and loss do not depend on the cut (sparse
        // input, momentum).
        let (mlp, batches) = crate::algo::balance::uneven_cut_fixture(20);
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
            net.balance.set_shares(shares);
            let mut trained = mlp.clone();
            let mut loss = Vec::new();
            for (s, (x, y)) in batches.iter().enumerate() {
                net.load_weights(&trained);
                net.present(s as u64, x.view(), y.view());
                let cuts = net.balance.clone().cuts(x.nrows(), shares.len());
                let rows: Vec<usize> = cuts.windows(2).map(|c| c[1] - c[0]).collect();
                assert_eq!(net.shard_rows, rows, "each shard got its share");
                net.run().unwrap();
                net.store_weights(&mut trained);
                loss.push(net.take_losses().iter().sum::<f64>());
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
