//! The shadow-trained SNN on the actor runtime: one actor per layer, and the
//! layers talk only by spike messages (`runtime::Spikes`), so the `[runtime]`
//! timing models (delay, its spread, loss, duplication, delivery order,
//! compute time) act on the spike edges.
//!
//! * `input`: the Poisson source of one image (its own seeded stream, the
//!   same one the per-image loop draws from).
//! * `layer2` … `layerL`: each owns the synapses that feed it — its weight
//!   columns, bias and synaptic filter — and its LIF neurons. Spikes that
//!   arrive are kept until the layer's next step, which filters them into
//!   its current (`SynapticFilter::step_into`: a column-add per spike, so
//!   the synaptic work grows with spikes × fan-out), steps its neurons and
//!   sends what fired, if anything, to the layer above. The output layer
//!   also counts its spikes and integrates its current for the readout.
//!
//! Time: every actor steps on its own clock (timers), not on the arrival
//! of messages — a neuron does not wait for spikes that may never come.
//! Step `s` (1-based) of actor `a` (0 = input) runs at local time
//! `origin + ((s − 1)·dt + a·dt/A)·u`, where `A` is the number of actors and
//! `u` the time units per simulated second (1 on the virtual driver, whose
//! time is then simulated seconds; 1000 on the wall driver, whose time is
//! milliseconds, so it runs in real time). Within a step the layers run in
//! order, `dt/A` apart, so a spike with no delay is used by the layer above
//! in the same step, exactly as in the per-image loop, and the two give the
//! same spikes and predictions bit for bit. A spike delayed by `d` lands in
//! the first step of the receiver that starts after it arrives: `d` below
//! `dt/A` costs nothing, every further `dt` one step. Spikes that arrive
//! after the receiver's last step are counted as late and dropped.
//!
//! Every actor reads only its own state and the spikes it received.

use super::encode::{PoissonEncoder, image_rng};
use super::eval::{SpikingReport, summarise};
use super::lif::LifPopulation;
use super::network::{ConversionError, ImageResult, Readout, SpikingNetwork, decide};
use super::synapse::SynapticFilter;
use crate::runtime::config::RuntimeConfig;
use crate::runtime::{
    Actor, Ctx, Direction, Envelope, Link, Port, RuntimeError, Spikes, Stats, Timing, Topology,
    VirtualDriver,
};
use ndarray::ArrayView2;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Where `[snn]` runs the spiking evaluation (`snn.runtime`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnnRuntime {
    /// The per-image loop (`SpikingNetwork::run_image`): no messages.
    #[default]
    Loop,
    /// One actor per layer on the virtual-time driver, spikes as messages
    /// timed by `[runtime]` (its time unit: one simulated second).
    Virtual,
}

/// When one actor steps: `origin + ((s − 1)·dt + phase)·units`.
#[derive(Clone, Debug)]
struct Clock {
    origin: f64,
    dt: f64,
    phase: f64,
    units: f64,
    steps: usize,
}

impl Clock {
    fn at(&self, step: usize) -> f64 {
        self.origin + ((step - 1) as f64 * self.dt + self.phase) * self.units
    }
}

/// The Poisson input of one image.
#[derive(Clone, Debug)]
pub struct InputActor {
    clock: Clock,
    encoder: PoissonEncoder,
    /// The image's Poisson stream: `image_rng(seed, image)`, drawn in the
    /// same order as the per-image loop draws it.
    rng: ChaCha8Rng,
    image: u64,
    up: Link,
    step: usize,
    fired: Vec<u32>,
    /// Spikes and spike messages sent this image.
    pub spikes: u64,
    pub messages: u64,
}

/// One layer of LIF neurons with the synapses that feed it.
#[derive(Clone, Debug)]
pub struct LayerActor {
    /// Network layer number (2 = first hidden).
    layer: usize,
    clock: Clock,
    /// `columns[k·n ..][..n]`: what a spike of presynaptic neuron `k` adds.
    columns: Vec<f32>,
    bias: Vec<f32>,
    filter: SynapticFilter,
    neurons: LifPopulation,
    current: Vec<f32>,
    /// Spikes received for the next step.
    pending: Vec<u32>,
    fired: Vec<u32>,
    up: Option<Link>,
    image: u64,
    step: usize,
    readout: Readout,
    checkpoint_steps: Vec<usize>,
    counts: Vec<u32>,
    integral: Vec<f64>,
    predictions: Vec<u32>,
    tie_break: bool,
    /// Spikes fired, spikes received (in time) and spike messages handled
    /// this image; spikes that arrived after the last step.
    pub spikes: u64,
    pub received: u64,
    pub messages: u64,
    pub late: u64,
    /// Spike messages sent this image.
    pub sent: u64,
}

/// An actor of the spiking network.
#[derive(Clone, Debug)]
pub enum SnnActor {
    Input(Box<InputActor>),
    Layer(Box<LayerActor>),
}

impl Actor for SnnActor {
    type Msg = Spikes;

    fn name(&self) -> String {
        match self {
            SnnActor::Input(_) => "input".into(),
            SnnActor::Layer(l) => format!("layer{}", l.layer),
        }
    }

    fn start(&mut self, ctx: &mut Ctx<Spikes>) {
        let clock = match self {
            SnnActor::Input(a) => &mut a.clock,
            SnnActor::Layer(l) => &mut l.clock,
        };
        clock.origin = ctx.now();
        ctx.timer_at(clock.at(1), 1);
    }

    fn handle(&mut self, env: Envelope<Spikes>, _ctx: &mut Ctx<Spikes>) {
        let SnnActor::Layer(l) = self else {
            return; // nothing sends to the input
        };
        l.messages += 1;
        let n = env.payload.spikes();
        if env.sample != l.image || l.step >= l.clock.steps {
            l.late += n;
            return;
        }
        debug_assert!(!env.payload.is_signed(), "LIF spikes are unsigned");
        l.received += n;
        l.pending.extend_from_slice(&env.payload.neurons);
    }

    fn timer(&mut self, tag: u64, ctx: &mut Ctx<Spikes>) {
        let step = tag as usize;
        match self {
            SnnActor::Input(a) => {
                a.fired.clear();
                a.encoder.step(a.clock.dt, &mut a.rng, &mut a.fired);
                a.step = step;
                if !a.fired.is_empty() {
                    a.spikes += a.fired.len() as u64;
                    a.messages += 1;
                    ctx.send(a.up, a.image, step as u32, Spikes::unsigned(&a.fired));
                }
                if step < a.clock.steps {
                    ctx.timer_at(a.clock.at(step + 1), tag + 1);
                }
            }
            SnnActor::Layer(l) => {
                l.step = step;
                l.filter
                    .step_into(&l.columns, &l.pending, &l.bias, &mut l.current);
                l.pending.clear();
                l.fired.clear();
                l.neurons.step(&l.current, &mut l.fired);
                l.spikes += l.fired.len() as u64;
                match l.up {
                    Some(up) => {
                        if !l.fired.is_empty() {
                            l.sent += 1;
                            ctx.send(up, l.image, step as u32, Spikes::unsigned(&l.fired));
                        }
                    }
                    None => {
                        l.read_out(step);
                        // A step of the output is progress for the watchdog.
                        ctx.progress(0);
                    }
                }
                if step < l.clock.steps {
                    ctx.timer_at(l.clock.at(step + 1), tag + 1);
                } else if l.up.is_none() {
                    ctx.progress(1);
                }
            }
        }
    }

    fn is_done(&self) -> bool {
        match self {
            SnnActor::Input(a) => a.step >= a.clock.steps,
            SnnActor::Layer(l) => l.step >= l.clock.steps,
        }
    }

    fn waiting_for(&self) -> String {
        let (step, steps) = match self {
            SnnActor::Input(a) => (a.step, a.clock.steps),
            SnnActor::Layer(l) => (l.step, l.clock.steps),
        };
        format!("its own clock: step {} of {steps}", step + 1)
    }
}

impl LayerActor {
    fn read_out(&mut self, step: usize) {
        for &k in &self.fired {
            self.counts[k as usize] += 1;
        }
        for (acc, &j) in self.integral.iter_mut().zip(&self.current) {
            *acc += j as f64;
        }
        for _ in self.checkpoint_steps.iter().filter(|&&s| s == step) {
            self.predictions
                .push(decide(self.readout, &self.counts, &self.integral).0 as u32);
        }
        if step == self.clock.steps {
            let (class, tie) = decide(self.readout, &self.counts, &self.integral);
            self.predictions.push(class as u32);
            self.tie_break = tie;
        }
    }
}

/// The actors and edges of a spiking network, reused image after image.
#[derive(Clone, Debug)]
pub struct ActorNetwork {
    pub actors: Vec<SnnActor>,
    pub topo: Topology,
    seed: u64,
    max_rate: f64,
}

impl ActorNetwork {
    /// One actor per layer of `net`, each with its own copy of the synapses
    /// that feed it; `units` is the time units per simulated second (1 on
    /// the virtual driver, 1000 on the wall driver).
    pub fn new(net: &SpikingNetwork, units: f64) -> Self {
        let n_layers = net.wt.len();
        let n_actors = n_layers + 1;
        let mut topo = Topology::new();
        let links: Vec<Link> = (0..n_layers)
            .map(|i| topo.add(i, i + 1, Port::Forward, Direction::Up))
            .collect();
        let dt = net.cfg.dt;
        let clock = |a: usize| Clock {
            origin: 0.0,
            dt,
            phase: a as f64 * dt / n_actors as f64,
            units,
            steps: net.steps(),
        };
        let mut actors = vec![SnnActor::Input(Box::new(InputActor {
            clock: clock(0),
            encoder: PoissonEncoder::default(),
            rng: image_rng(net.cfg.seed, 0),
            image: 0,
            up: links[0],
            step: 0,
            fired: Vec::with_capacity(4 * net.sizes[0]),
            spikes: 0,
            messages: 0,
        }))];
        for i in 0..n_layers {
            let n = net.sizes[i + 1];
            let last = i + 1 == n_layers;
            let out = if last { n } else { 0 };
            actors.push(SnnActor::Layer(Box::new(LayerActor {
                layer: i + 2,
                clock: clock(i + 1),
                columns: net.wt[i].clone(),
                bias: net.bias[i].clone(),
                filter: SynapticFilter::new(n, net.cfg.synapse, net.cfg.tau_s, dt),
                neurons: LifPopulation::new(n, &net.lif, dt),
                current: vec![0.0; n],
                pending: Vec::with_capacity(4 * net.sizes[i]),
                fired: Vec::with_capacity(4 * n),
                up: links.get(i + 1).copied(),
                image: 0,
                step: 0,
                readout: net.cfg.readout,
                checkpoint_steps: if last {
                    net.checkpoint_steps.clone()
                } else {
                    Vec::new()
                },
                counts: vec![0; out],
                integral: vec![0.0; out],
                predictions: Vec::new(),
                tie_break: false,
                spikes: 0,
                received: 0,
                messages: 0,
                late: 0,
                sent: 0,
            })));
        }
        Self {
            actors,
            topo,
            seed: net.cfg.seed,
            max_rate: 1.0 / net.lif.tau_ref,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.actors.iter().map(|a| a.name()).collect()
    }

    /// Loads image `index` (`x` in `[0, 1]`) and puts every actor at rest;
    /// the input draws from the image's own stream, as the per-image loop.
    pub fn load(&mut self, x: &[f32], index: u64) {
        for a in &mut self.actors {
            match a {
                SnnActor::Input(a) => {
                    a.rng = image_rng(self.seed, index);
                    a.encoder.reset(x, self.max_rate, &mut a.rng);
                    a.image = index;
                    a.step = 0;
                    a.spikes = 0;
                    a.messages = 0;
                }
                SnnActor::Layer(l) => {
                    l.filter.reset();
                    l.neurons.reset();
                    l.pending.clear();
                    l.image = index;
                    l.step = 0;
                    l.counts.fill(0);
                    l.integral.fill(0.0);
                    l.predictions.clear();
                    l.tie_break = false;
                    l.spikes = 0;
                    l.received = 0;
                    l.messages = 0;
                    l.late = 0;
                    l.sent = 0;
                }
            }
        }
    }

    /// What the loaded image's run produced, as the per-image loop reports it.
    pub fn result(&self, out: &mut ImageResult) {
        out.spikes.clear();
        for a in &self.actors {
            match a {
                SnnActor::Input(a) => out.spikes.push(a.spikes),
                SnnActor::Layer(l) => {
                    out.spikes.push(l.spikes);
                    if l.up.is_none() {
                        out.predictions.clone_from(&l.predictions);
                        out.output_counts.clone_from(&l.counts);
                        out.tie_break = l.tie_break;
                    }
                }
            }
        }
    }

    /// Spike messages each actor sent and handled (input first), counted
    /// by the actors themselves, independently of the driver's statistics.
    pub fn message_counts(&self) -> (Vec<u64>, Vec<u64>) {
        self.actors
            .iter()
            .map(|a| match a {
                SnnActor::Input(a) => (a.messages, 0),
                SnnActor::Layer(l) => (l.sent, l.messages),
            })
            .unzip()
    }

    /// Spikes that reached a layer after its last step (dropped).
    pub fn late_spikes(&self) -> u64 {
        self.actors
            .iter()
            .map(|a| match a {
                SnnActor::Layer(l) => l.late,
                SnnActor::Input(_) => 0,
            })
            .sum()
    }

    /// Runs the loaded image on the virtual-time driver; returns the run's
    /// message statistics.
    pub fn run_virtual(&mut self, timing: Timing, watchdog: f64) -> Result<Stats, RuntimeError> {
        let actors = std::mem::take(&mut self.actors);
        let mut driver = VirtualDriver::new(actors, self.topo.clone(), timing, watchdog);
        let run = driver.run();
        self.actors = std::mem::take(&mut driver.actors);
        run.map(|_| driver.stats)
    }
}

/// Timing streams of image `index`: its own, so the result of an image
/// does not depend on which thread runs it or what ran before.
fn image_timing_seed(seed: u64, index: u64) -> u64 {
    seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The actor runtime's side of an actor evaluation.
#[derive(Clone, Debug)]
pub struct ActorReport {
    /// Message statistics of every image's run, summed in image order.
    pub stats: Stats,
    /// Spikes that reached a layer after its last step, per image.
    pub late_spikes_per_image: f64,
}

/// Images handed to a thread at a time.
const CHUNK: usize = 8;

/// Runs every row of `x` through the actor network on the virtual-time
/// driver, timed by `runtime` (its seeded streams from `timing_seed`, per
/// image), and scores it like `evaluate`. `threads = 0` uses every core;
/// the report does not depend on it.
pub fn evaluate_on_actors(
    net: &SpikingNetwork,
    x: ArrayView2<f32>,
    labels: &[u8],
    threads: usize,
    runtime: &RuntimeConfig,
    timing_seed: u64,
) -> Result<(SpikingReport, ActorReport), ConversionError> {
    super::eval::check_images(net, x, labels)?;
    let started = Instant::now();
    let n = x.nrows();
    let threads = super::eval::eval_threads(threads, n);
    let template = ActorNetwork::new(net, 1.0);
    let names = template.names();
    let next = AtomicUsize::new(0);
    type Done = (usize, ImageResult, Stats, u64);
    let worker = || -> Result<Vec<Done>, RuntimeError> {
        let mut actors = template.clone();
        let mut row = vec![0.0f32; x.ncols()];
        let mut done = Vec::new();
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= n {
                break;
            }
            for i in start..(start + CHUNK).min(n) {
                for (r, &v) in row.iter_mut().zip(x.row(i)) {
                    *r = v;
                }
                actors.load(&row, i as u64);
                let timing =
                    Timing::from_config(runtime, &names, image_timing_seed(timing_seed, i as u64));
                let stats = actors.run_virtual(timing, runtime.watchdog)?;
                let mut res = ImageResult::default();
                actors.result(&mut res);
                done.push((i, res, stats, actors.late_spikes()));
            }
        }
        Ok(done)
    };
    let mut slots: Vec<Option<(ImageResult, Stats, u64)>> = vec![None; n];
    let mut failure = None;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        for h in handles {
            match h.join().expect("a spiking worker panicked") {
                Ok(done) => {
                    for (i, r, s, late) in done {
                        slots[i] = Some((r, s, late));
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
    });
    if let Some(e) = failure {
        return Err(ConversionError::Config(format!(
            "the spiking network on the actor runtime failed: {e}"
        )));
    }
    let mut stats = Stats::new(names, &template.topo);
    let mut results = Vec::with_capacity(n);
    let mut late = 0u64;
    for slot in slots {
        let (r, s, l) = slot.expect("every image was simulated");
        stats.merge(&s);
        late += l;
        results.push(r);
    }
    let report = summarise(
        net,
        &results,
        labels,
        started.elapsed().as_secs_f64(),
        threads,
    );
    Ok((
        report,
        ActorReport {
            stats,
            late_spikes_per_image: late as f64 / n.max(1) as f64,
        },
    ))
}
