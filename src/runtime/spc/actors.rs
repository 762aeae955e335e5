//! The actors of spiking PC and the network that holds them (see the
//! module doc of `runtime::spc` for the messages and the schedule). Each
//! layer actor owns its `Synapses` (weights, momentum, learning rate) and
//! steps them itself at the end of a sample's settling; the network is the
//! harness around the actors: it presents batches, and reads the weights
//! and the last update back for evaluation, checkpoints and comparisons.

use super::synapses::{DownMatrix, Synapses};
use crate::algo::pc::spiking::{
    down_message, init_hidden, learn, quanta, receive_quantum, refresh_hidden, refresh_output,
    relax,
};
use crate::nn::{Activation, LossKind, Mlp, Real, Updates};
use crate::runtime::{
    Actor, Ctx, Direction, Driver, Envelope, Link, Port, RuntimeError, Spikes, Stats, Timing,
    Topology, VirtualDriver, WallDriver, WallOptions,
};
use ndarray::{Array1, Array2, ArrayView2};
use std::sync::Arc;

/// The payloads: sigma-delta spikes up, graded `ε W` down (`None`: the
/// sender's errors were all zero — a step marker). Both are the sender's
/// `Outbox` buffer, shared read-only with the receiver (see `Outbox`).
#[derive(Clone, Debug)]
pub enum SpcMsg<T: Real> {
    Up(Arc<Spikes>),
    Down(Option<Arc<Array2<T>>>),
}

/// An actor's own outgoing buffer: a message is a reference-counted,
/// read-only handle to it, so sending allocates nothing while the buffer
/// comes back. Before writing the next message the actor refills the buffer
/// in place when it holds the only handle again (the receiver has consumed
/// and dropped the last message, and no delayed or duplicated copy is in
/// flight); otherwise it takes a fresh buffer. A sent message is never
/// changed, so this is message passing by value without the copy.
#[derive(Clone, Debug)]
struct Outbox<P> {
    buf: Arc<P>,
    /// Buffers taken because the last one was still held (the first one
    /// included): the allocations that recycling did not avoid.
    fresh: u64,
}

impl<P> Outbox<P> {
    fn new(p: P) -> Self {
        Self {
            buf: Arc::new(p),
            fresh: 1,
        }
    }

    /// The buffer to write the next message into; `blank` makes a fresh one
    /// (of the shape of the held one) when the last is still out.
    fn slot(&mut self, blank: impl FnOnce(&P) -> P) -> &mut P {
        if Arc::get_mut(&mut self.buf).is_none() {
            self.buf = Arc::new(blank(&self.buf));
            self.fresh += 1;
        }
        Arc::get_mut(&mut self.buf).expect("sole holder")
    }

    /// A handle to the buffer as written: the message.
    fn share(&self) -> Arc<P> {
        Arc::clone(&self.buf)
    }
}

/// What every layer knows about the rule.
#[derive(Clone, Debug)]
pub struct SpcRule<T: Real> {
    pub hidden: Activation,
    pub output: LossKind,
    pub gamma: T,
    pub steps: usize,
    pub window: usize,
    pub beta: T,
    /// Quanta of the input code and of the hidden code.
    pub theta_input: T,
    pub theta: T,
}

/// Counts an actor keeps of what it sent.
#[derive(Clone, Debug, Default)]
pub struct SentCounts {
    /// Quanta sent up.
    pub spikes: u64,
    /// Sample-steps on which something fired (as the lockstep trainer counts).
    pub spike_messages: u64,
    /// Up-messages that carried no spike (step markers).
    pub markers: u64,
}

/// The sigma-delta sender of one edge: what it announced per sample.
#[derive(Clone, Debug)]
struct Sender<T: Real> {
    announced: Array2<T>,
    theta: T,
    out: Outbox<Spikes>,
    sent: SentCounts,
}

impl<T: Real> Sender<T> {
    fn new(rows: usize, n: usize, theta: T) -> Self {
        Self {
            announced: Array2::zeros((rows, n)),
            theta,
            out: Outbox::new(Spikes::default()),
            sent: SentCounts::default(),
        }
    }

    /// The quanta of `src` against what was announced, as one message.
    fn encode(&mut self, src: ArrayView2<T>) -> Arc<Spikes> {
        let inv = T::one() / self.theta;
        let n = src.ncols();
        // Signed spikes, written as `Spikes::signed` builds them (a count
        // is never zero: `quanta` fires at least one quantum).
        let out = self.out.slot(|_| Spikes::default());
        out.neurons.clear();
        out.counts.clear();
        for (row, (s, mut a)) in src
            .rows()
            .into_iter()
            .zip(self.announced.rows_mut())
            .enumerate()
        {
            let mut fired = 0u64;
            for (j, (&v, an)) in s.iter().zip(a.iter_mut()).enumerate() {
                if let Some((q, k)) = quanta(v - *an, self.theta, inv) {
                    *an += q;
                    fired += k;
                    out.neurons.push((row * n + j) as u32);
                    // `q = n θ` with `n` an integer: its sign and count.
                    out.counts
                        .push(if q < T::zero() { -(k as i32) } else { k as i32 });
                }
            }
            if fired > 0 {
                self.sent.spikes += fired;
                self.sent.spike_messages += 1;
            }
        }
        if out.neurons.is_empty() {
            self.sent.markers += 1;
        }
        self.out.share()
    }
}

/// The input: the batch, sigma-delta coded in the sweep, then markers.
#[derive(Clone, Debug)]
pub struct InputActor<T: Real> {
    x: Array2<T>,
    sender: Sender<T>,
    steps: usize,
    up: Link,
    batch: u64,
    done: bool,
}

/// Layer `index + 2`: its value nodes (hidden) or the clamped output, and
/// the synapses that feed it.
#[derive(Clone, Debug)]
pub struct LayerActor<T: Real> {
    index: usize,
    rule: SpcRule<T>,
    /// `W[l]` (as `Wᵀ`), `b[l]`, the down-message matrix (`W`, or `B` under
    /// feedback alignment), momentum and learning rate: this actor's own.
    syn: Synapses<T>,
    rhat: Array2<T>,
    z: Array2<T>,
    x: Array2<T>,
    eps: Array2<T>,
    fx: Array2<T>,
    dir: Array2<T>,
    gain: Array2<T>,
    /// All-zero errors from above (what a `Down(None)` marker means).
    no_down: Array2<T>,
    down_out: Outbox<Array2<T>>,
    u_out: Array2<T>,
    y: Array2<T>,
    changed: Vec<bool>,
    /// Quantum of the edge from below.
    theta_in: T,
    sender: Option<Sender<T>>,
    up: Option<Link>,
    down_link: Option<Link>,
    inbox_up: Vec<Option<Arc<Spikes>>>,
    inbox_down: Vec<Option<Option<Arc<Array2<T>>>>>,
    step: usize,
    batch: u64,
    /// `α / (β · rows)` of this batch, from the actor's own learning rate.
    scale: T,
    /// The update accumulated over the learning window of the last sample
    /// (before momentum: what the lockstep trainer reports as its update);
    /// column-major, the layout of the synapses' `W`.
    pub dw: Array2<T>,
    pub db: Array1<T>,
    pub loss: f64,
    pub graded: u64,
    /// Copies of a step's message that arrived twice (dropped).
    pub duplicates: u64,
}

#[derive(Clone, Debug)]
pub enum SpcActor<T: Real> {
    Input(Box<InputActor<T>>),
    Layer(Box<LayerActor<T>>),
}

impl<T: Real> LayerActor<T> {
    fn hidden(&self) -> bool {
        self.sender.is_some()
    }

    fn ready(&self) -> bool {
        let t = self.step;
        t <= self.rule.steps
            && self.inbox_up[t].is_some()
            && (t == 0 || !self.hidden() || self.inbox_down[t].is_some())
    }

    /// Applies step `t`'s spikes from below; returns whether any arrived.
    fn apply_up(&mut self, t: usize) -> bool {
        let spikes = self.inbox_up[t].take().expect("ready");
        self.changed.fill(false);
        let n = self.rhat.ncols();
        for (k, c) in spikes.iter() {
            let (row, j) = (k as usize / n, k as usize % n);
            let q = T::of(c as f64) * self.theta_in;
            let mut z = self.z.row_mut(row);
            let z = z.as_slice_mut().expect("standard layout");
            receive_quantum(&mut self.rhat[[row, j]], z, q, self.syn.column(j));
            self.changed[row] = true;
        }
        !spikes.is_empty()
    }

    fn run_step(&mut self, ctx: &mut Ctx<SpcMsg<T>>) {
        let t = self.step;
        let steps = self.rule.steps;
        if t == 0 {
            self.apply_up(0);
            if self.hidden() {
                init_hidden(
                    &self.rule.hidden,
                    self.z.view(),
                    [&mut self.x, &mut self.eps, &mut self.fx],
                );
            } else {
                refresh_output(
                    self.rule.output,
                    Some((self.y.view(), self.rule.beta)),
                    self.z.view(),
                    &mut self.u_out,
                    &mut self.eps,
                );
                self.loss = self
                    .rule
                    .output
                    .loss(self.u_out.view(), self.y.view())
                    .f64();
            }
        } else {
            if self.hidden() {
                // Read in place; dropping it hands the buffer back to the
                // sender above.
                let msg = self.inbox_down[t].take().expect("ready");
                let down = match &msg {
                    Some(d) => d.view(),
                    None => self.no_down.view(),
                };
                relax(
                    &self.rule.hidden,
                    self.rule.gamma,
                    down,
                    [&mut self.x, &mut self.eps, &mut self.fx],
                    &mut self.dir,
                    &mut self.gain,
                );
            }
            self.send_up(t, ctx);
            if self.apply_up(t) {
                if self.hidden() {
                    refresh_hidden(&self.changed, self.x.view(), self.z.view(), &mut self.eps);
                } else {
                    refresh_output(
                        self.rule.output,
                        Some((self.y.view(), self.rule.beta)),
                        self.z.view(),
                        &mut self.u_out,
                        &mut self.eps,
                    );
                }
            }
            let window = self.rule.window.min(steps).max(1);
            learn(
                self.scale,
                (t, steps, window),
                self.eps.view(),
                self.rhat.view(),
                (&mut self.dw, &mut self.db),
            );
        }
        if t == 0 {
            self.send_up(0, ctx);
        }
        if steps == 0 {
            learn(
                self.scale,
                (0, 0, 1),
                self.eps.view(),
                self.rhat.view(),
                (&mut self.dw, &mut self.db),
            );
        }
        if let Some(link) = self.down_link
            && t < steps
        {
            let out = self.down_out.slot(|a| Array2::zeros(a.raw_dim()));
            let msg = if down_message(self.eps.view(), self.syn.down_matrix(), out.view_mut()) {
                self.graded += self.eps.nrows() as u64;
                Some(self.down_out.share())
            } else {
                None
            };
            ctx.send(link, self.batch, (t + 1) as u32, SpcMsg::Down(msg));
        }
        if t == steps {
            // The end of the sample's settling: every down-message of the
            // batch has gone with the old weights, so the step changes no
            // number another actor still needs.
            self.syn.step(self.dw.view(), self.db.view());
            if !self.hidden() {
                ctx.progress(1);
            }
        }
        self.step += 1;
    }

    fn send_up(&mut self, t: usize, ctx: &mut Ctx<SpcMsg<T>>) {
        if let (Some(s), Some(link)) = (self.sender.as_mut(), self.up) {
            let msg = s.encode(self.fx.view());
            ctx.send(link, self.batch, t as u32, SpcMsg::Up(msg));
        }
    }
}

impl<T: Real> Actor for SpcActor<T> {
    type Msg = SpcMsg<T>;

    fn name(&self) -> String {
        match self {
            SpcActor::Input(_) => "input".into(),
            SpcActor::Layer(l) => format!("layer{}", l.index + 2),
        }
    }

    fn start(&mut self, ctx: &mut Ctx<SpcMsg<T>>) {
        let SpcActor::Input(a) = self else {
            return;
        };
        let empty = Array2::zeros((a.x.nrows(), 0));
        for t in 0..=a.steps {
            // A constant input is announced in full in the sweep.
            let msg = if t == 0 {
                a.sender.encode(a.x.view())
            } else {
                a.sender.encode(empty.view())
            };
            ctx.send(a.up, a.batch, t as u32, SpcMsg::Up(msg));
        }
        a.done = true;
    }

    fn handle(&mut self, env: Envelope<SpcMsg<T>>, ctx: &mut Ctx<SpcMsg<T>>) {
        let SpcActor::Layer(l) = self else {
            return; // nothing sends to the input
        };
        let t = env.tick as usize;
        if env.sample != l.batch || t < l.step || t > l.rule.steps {
            l.duplicates += 1;
            return;
        }
        let fresh = match env.payload {
            SpcMsg::Up(s) => l.inbox_up[t].replace(s).is_none(),
            SpcMsg::Down(d) => l.inbox_down[t].replace(d).is_none(),
        };
        if !fresh {
            l.duplicates += 1;
        }
        while l.ready() {
            l.run_step(ctx);
        }
    }

    fn is_done(&self) -> bool {
        match self {
            SpcActor::Input(a) => a.done,
            SpcActor::Layer(l) => l.step > l.rule.steps,
        }
    }

    fn waiting_for(&self) -> String {
        match self {
            SpcActor::Input(_) => "nothing (the input sends every step at start)".into(),
            SpcActor::Layer(l) => {
                let t = l.step;
                let mut w = Vec::new();
                if l.inbox_up.get(t).is_some_and(Option::is_none) {
                    w.push(format!("the spikes of step {t} from below"));
                }
                if t > 0 && l.hidden() && l.inbox_down.get(t).is_some_and(Option::is_none) {
                    w.push(format!("the errors of step {t} from above"));
                }
                w.join(" and ")
            }
        }
    }
}

/// The actors and edges of a spiking PC network, reused batch after batch.
#[derive(Clone, Debug)]
pub struct SpcNetwork<T: Real> {
    pub actors: Vec<SpcActor<T>>,
    pub topo: Topology,
    pub stats: Option<Stats>,
    sizes: Vec<usize>,
    rule: SpcRule<T>,
}

impl<T: Real> SpcNetwork<T> {
    /// One actor per layer of `mlp`'s shape, for batches of `rows`. Each
    /// layer actor takes its `W[l]`, `b[l]` from `mlp` (and its `B[l]` from
    /// `feedback` under feedback alignment), zero velocity, the learning
    /// rate and μ; from then on the weights live in the actors.
    pub fn new(
        mlp: &Mlp<T>,
        feedback: Option<&[Array2<T>]>,
        rule: SpcRule<T>,
        rows: usize,
        (learning_rate, momentum): (T, T),
    ) -> Self {
        let syn = (0..mlp.w.len())
            .map(|i| {
                // Row-major whatever `mlp`'s layout: `matmul` would copy a
                // column-major right operand on every down-message.
                let row_major = |m: &Array2<T>| m.as_standard_layout().into_owned();
                let down = match (i, feedback) {
                    (0, _) => DownMatrix::None,
                    (_, Some(f)) => DownMatrix::Fixed(row_major(&f[i])),
                    (_, None) => DownMatrix::Tied(row_major(&mlp.w[i])),
                };
                Synapses::new(
                    mlp.w[i].view(),
                    mlp.b[i].view(),
                    down,
                    learning_rate,
                    momentum,
                )
            })
            .collect();
        Self::build(&mlp.sizes, rule, rows, syn)
    }

    /// The same network for batches of `rows` (a batch of another size):
    /// the layer actors carry their synapses — weights, momentum, learning
    /// rate — and every actor its counts into the new state; the statistics
    /// carry over too.
    pub fn resized(self, rows: usize) -> Self {
        let mut syn = Vec::new();
        let mut counts = Vec::new();
        for a in self.actors {
            match a {
                SpcActor::Input(a) => counts.push((Some(a.sender.sent), 0, 0)),
                SpcActor::Layer(l) => {
                    let l = *l;
                    counts.push((l.sender.map(|s| s.sent), l.graded, l.duplicates));
                    syn.push(l.syn);
                }
            }
        }
        let mut net = Self::build(&self.sizes, self.rule, rows, syn);
        net.stats = self.stats;
        for (a, (sent, graded, duplicates)) in net.actors.iter_mut().zip(counts) {
            match a {
                SpcActor::Input(a) => a.sender.sent = sent.unwrap_or_default(),
                SpcActor::Layer(l) => {
                    if let (Some(s), Some(sent)) = (l.sender.as_mut(), sent) {
                        s.sent = sent;
                    }
                    l.graded = graded;
                    l.duplicates = duplicates;
                }
            }
        }
        net
    }

    /// The actors and edges for layer sizes `sizes` and batches of `rows`,
    /// layer `i + 2` owning `syn[i]`.
    fn build(sizes: &[usize], rule: SpcRule<T>, rows: usize, syn: Vec<Synapses<T>>) -> Self {
        let nw = sizes.len() - 1;
        assert_eq!(syn.len(), nw, "one set of synapses per weight layer");
        let mut topo = Topology::new();
        let ups: Vec<Link> = (0..nw)
            .map(|i| topo.add(i, i + 1, Port::Forward, Direction::Up))
            .collect();
        let downs: Vec<Option<Link>> = (0..nw)
            .map(|i| (i > 0).then(|| topo.add(i + 1, i, Port::Backward, Direction::Down)))
            .collect();
        let m = |r: usize, c: usize| Array2::<T>::zeros((r, c));
        let mut actors = vec![SpcActor::Input(Box::new(InputActor {
            x: m(rows, sizes[0]),
            sender: Sender::new(rows, sizes[0], rule.theta_input),
            steps: rule.steps,
            up: ups[0],
            batch: 0,
            done: false,
        }))];
        for (i, syn) in syn.into_iter().enumerate() {
            let (n_in, n) = (sizes[i], sizes[i + 1]);
            let hidden = i + 1 < nw;
            let dw = syn.zeros_like_weights();
            actors.push(SpcActor::Layer(Box::new(LayerActor {
                index: i,
                syn,
                rhat: m(rows, n_in),
                z: m(rows, n),
                x: m(rows, n),
                eps: m(rows, n),
                fx: m(rows, n),
                dir: m(rows, n),
                gain: Array2::from_elem((rows, 1), T::one()),
                no_down: m(rows, n),
                down_out: Outbox::new(m(rows, n_in)),
                u_out: m(rows, n),
                y: m(rows, n),
                changed: vec![false; rows],
                theta_in: if i == 0 { rule.theta_input } else { rule.theta },
                sender: hidden.then(|| Sender::new(rows, n, rule.theta)),
                up: ups.get(i + 1).copied(),
                down_link: downs[i],
                inbox_up: vec![None; rule.steps + 1],
                inbox_down: vec![None; rule.steps + 1],
                step: 0,
                batch: 0,
                scale: T::zero(),
                dw,
                db: Array1::zeros(n),
                loss: 0.0,
                graded: 0,
                duplicates: 0,
                rule: rule.clone(),
            })));
        }
        Self {
            actors,
            topo,
            stats: None,
            sizes: sizes.to_vec(),
            rule,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.actors.iter().map(Actor::name).collect()
    }

    /// Batch rows the network was built for.
    pub fn rows(&self) -> usize {
        match &self.actors[0] {
            SpcActor::Input(a) => a.x.nrows(),
            SpcActor::Layer(_) => 0,
        }
    }

    /// Presents batch `(x, y)` number `batch` (`rows()` rows): the input
    /// takes `x`, the output its target `y`, and every layer actor puts its
    /// nodes at rest and sets its update scale `α / (β · rows)` from its
    /// own learning rate. The synapses are the actors' and stay as they are.
    pub fn present(&mut self, (x, y): (ArrayView2<T>, ArrayView2<T>), batch: u64) {
        for a in &mut self.actors {
            match a {
                SpcActor::Input(a) => {
                    a.x.assign(&x);
                    a.sender.announced.fill(T::zero());
                    a.batch = batch;
                    a.done = false;
                }
                SpcActor::Layer(l) => {
                    l.rhat.fill(T::zero());
                    for mut row in l.z.rows_mut() {
                        row.assign(&l.syn.b);
                    }
                    if let Some(s) = l.sender.as_mut() {
                        s.announced.fill(T::zero());
                    }
                    if l.sender.is_none() {
                        l.y.assign(&y);
                    }
                    l.inbox_up.iter_mut().for_each(|m| *m = None);
                    l.inbox_down.iter_mut().for_each(|m| *m = None);
                    l.step = 0;
                    l.batch = batch;
                    l.scale = crate::algo::pc::update_scale(
                        l.syn.learning_rate(),
                        l.rule.beta,
                        x.nrows(),
                    );
                }
            }
        }
    }

    /// Sets every layer actor's learning rate (a schedule's `lr_decay`
    /// reaches the actors through this, between batches).
    pub fn set_learning_rate(&mut self, learning_rate: T) {
        for a in &mut self.actors {
            if let SpcActor::Layer(l) = a {
                l.syn.set_learning_rate(learning_rate);
            }
        }
    }

    /// The synapses of layer `i + 2` (`mlp.w[i]`'s layer), for the harness.
    pub fn synapses(&self, i: usize) -> Option<&Synapses<T>> {
        self.layers().find(|l| l.index == i).map(|l| &l.syn)
    }

    /// The same, writable (a harness hook: see `Synapses::velocity_mut`).
    pub fn synapses_mut(&mut self, i: usize) -> Option<&mut Synapses<T>> {
        self.actors.iter_mut().find_map(|a| match a {
            SpcActor::Layer(l) if l.index == i => Some(&mut l.syn),
            _ => None,
        })
    }

    fn layers(&self) -> impl Iterator<Item = &LayerActor<T>> {
        self.actors.iter().filter_map(|a| match a {
            SpcActor::Layer(l) => Some(&**l),
            SpcActor::Input(_) => None,
        })
    }

    /// Reloads the synapses of every layer whose `W`, `b` differ from
    /// `mlp`'s. The actors own their weights and the trainer stores them
    /// into `mlp` after every batch, so this is a compare; it turns a write
    /// to `mlp` from outside the trainer into a reload instead of a change
    /// the actors silently never see. Returns the layers reloaded.
    pub fn sync_from(&mut self, mlp: &Mlp<T>) -> usize {
        let mut reloaded = 0;
        for a in &mut self.actors {
            if let SpcActor::Layer(l) = a {
                let i = l.index;
                if !l.syn.holds(mlp.w[i].view(), mlp.b[i].view()) {
                    l.syn.load(mlp.w[i].view(), mlp.b[i].view());
                    reloaded += 1;
                }
            }
        }
        reloaded
    }

    /// Copies the actors' weights into `mlp` (evaluation, checkpoints and
    /// `.npy` export read the `Mlp`; the actors never read it back).
    pub fn store_weights(&self, mlp: &mut Mlp<T>) {
        for l in self.layers() {
            let i = l.index;
            l.syn.store_weights(mlp.w[i].view_mut());
            mlp.b[i].assign(&l.syn.b);
        }
    }

    /// Runs the loaded batch on the virtual-time driver; adds the run's
    /// message statistics to `stats`.
    pub fn run_virtual(&mut self, timing: Timing, watchdog: f64) -> Result<(), RuntimeError> {
        self.run_on(|actors, topo| {
            Ok(Driver::Virtual(VirtualDriver::new(
                actors, topo, timing, watchdog,
            )))
        })
    }

    /// Runs the loaded batch on the wall-clock driver (tokio tasks over
    /// flume channels); adds the run's message statistics to `stats`. The
    /// event schedule makes the numbers the virtual driver's.
    pub fn run_wall(&mut self, timing: Timing, opts: WallOptions) -> Result<(), RuntimeError> {
        self.run_on(|actors, topo| Ok(Driver::Wall(WallDriver::new(actors, topo, timing, opts)?)))
    }

    /// Lends the actors to the driver `make` builds, runs it, takes them
    /// back (also after a failed run) and adds its statistics.
    fn run_on(
        &mut self,
        make: impl FnOnce(Vec<SpcActor<T>>, Topology) -> Result<Driver<SpcActor<T>>, RuntimeError>,
    ) -> Result<(), RuntimeError> {
        let actors = std::mem::take(&mut self.actors);
        let mut driver = make(actors, self.topo.clone())?;
        let run = driver.run();
        self.actors = std::mem::take(driver.actors_mut());
        run?;
        match &mut self.stats {
            Some(s) => s.merge(driver.stats()),
            None => self.stats = Some(driver.stats().clone()),
        }
        Ok(())
    }

    /// The per-layer updates of the last batch (before momentum, as the
    /// lockstep trainer reports them) into `upd`.
    pub fn updates_into(&self, upd: &mut Updates<T>) {
        for l in self.layers() {
            upd.dw[l.index].assign(&l.dw);
            upd.db[l.index].assign(&l.db);
        }
    }

    /// The loss of the last batch's sweep, as the output actor computed it.
    pub fn loss(&self) -> f64 {
        self.layers()
            .find(|l| l.sender.is_none())
            .map_or(f64::NAN, |l| l.loss)
    }

    /// What every sender sent, summed over the runs (input first).
    pub fn sent(&self) -> Vec<SentCounts> {
        self.actors
            .iter()
            .filter_map(|a| match a {
                SpcActor::Input(a) => Some(a.sender.sent.clone()),
                SpcActor::Layer(l) => l.sender.as_ref().map(|s| s.sent.clone()),
            })
            .collect()
    }

    /// Per actor (input first): the payload buffers it allocated since the
    /// network was built for this batch size — the first of each outbox,
    /// then one per message whose buffer was still held (see `Outbox`).
    pub fn payload_buffers(&self) -> Vec<u64> {
        self.actors
            .iter()
            .map(|a| match a {
                SpcActor::Input(a) => a.sender.out.fresh,
                SpcActor::Layer(l) => {
                    l.sender.as_ref().map_or(0, |s| s.out.fresh)
                        + if l.down_link.is_some() {
                            l.down_out.fresh
                        } else {
                            0
                        }
                }
            })
            .collect()
    }

    /// Down-messages with errors, times the batch rows (lockstep's count).
    pub fn graded(&self) -> u64 {
        self.actors
            .iter()
            .map(|a| match a {
                SpcActor::Layer(l) => l.graded,
                SpcActor::Input(_) => 0,
            })
            .sum()
    }

    /// Step messages that arrived twice or for a finished step (dropped).
    pub fn duplicates(&self) -> u64 {
        self.actors
            .iter()
            .map(|a| match a {
                SpcActor::Layer(l) => l.duplicates,
                SpcActor::Input(_) => 0,
            })
            .sum()
    }
}
