//! A layer actor: the rules of one `PcLayer` (a whole layer, a slice of one,
//! or — `nodes` granularity — a layer's error nodes, whose Euler steps the
//! value-node actor takes and reports). The output layer is one of these.
//! This file has the event schedule; `clocked.rs` the clocked one.

use super::assembly::{Inbox, Spare, add_part, complete, take};
use super::{PcMsg, PcSettings, SharedInput, broadcast};
use crate::algo::optim::ParamState;
use crate::algo::pc::{PcLayer, UpdateRows, momentum_step};
use crate::nn::Real;
use crate::runtime::actor::{ActorId, Ctx, Envelope, Link};
use ndarray::{Array1, Array2, ArrayView2, Ix1, Ix2, s};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

/// A sample's feedforward prediction `u[L]` and its target (output layer).
pub(super) type Prediction<T> = (u64, Array2<T>, Array2<T>);

/// Another shard's rows of a pooled weight update.
struct Shared<T: Real> {
    eps: Array2<T>,
    input: SharedInput<T>,
}

/// One actor holding a `PcLayer`: a layer `l ≥ 2` or a slice of its rows.
pub struct LayerActor<T: Real> {
    pub(super) name: String,
    /// 1-based layer index.
    pub(super) l: usize,
    pub(super) settings: PcSettings,
    /// The rules and state of this layer slice.
    pub(super) layer: PcLayer<T>,
    /// Rows of `W[l]` this actor owns.
    pub(super) rows: (usize, usize),
    /// Senders of the up-messages, with the columns of `f(x[l−1])` each owns.
    pub(super) below: Vec<(ActorId, usize, usize)>,
    pub(super) below_width: usize,
    /// Senders of the down-messages (layer mode; none for error nodes).
    pub(super) above: Vec<ActorId>,
    /// Where `f(x[l])` goes (layer mode; the value nodes send it otherwise).
    pub(super) up: Vec<Link>,
    /// Where `ε W` goes, with the columns each receiver owns.
    pub(super) down: Vec<(Link, usize, usize)>,
    /// To the input (layer 2): the `Done` credit.
    pub(super) done: Option<Link>,
    /// `nodes` granularity: the link to this layer's value nodes.
    pub(super) value: Option<Link>,
    /// Descriptions of the neighbours, for the watchdog.
    pub(super) below_names: String,
    pub(super) above_names: String,
    /// The sample whose state is in `layer` (the active one).
    pub(super) current: Option<u64>,
    /// Other samples in flight (`runtime.pipeline > 1`): their layer state,
    /// step and phase. Every copy holds the same `W[l]`: an update is applied
    /// to all of them at once.
    parked: BTreeMap<u64, (PcLayer<T>, u32, bool)>,
    pub(super) tick: u32,
    pub(super) have_eps: bool,
    pub(super) finished: HashSet<u64>,
    pub(super) ups: Inbox<T>,
    pub(super) downs: Inbox<T>,
    /// Steps Δ reported by the value nodes, by `(sample, step)`.
    pub(super) steps: BTreeMap<(u64, u32), Array2<T>>,
    /// Highest step Δ applied to the active sample (clocked schedule).
    pub(super) applied: u32,
    /// Output: targets by sample id; the feedforward prediction of each
    /// sample with its target (the harness measures the loss).
    pub(super) targets: HashMap<u64, Array2<T>>,
    pub(super) predictions: Vec<Prediction<T>>,
    /// Layer 2: the density of each presented batch (a shard holds only
    /// some of its rows but takes the whole batch's sparse or dense path).
    pub(super) densities: HashMap<u64, f64>,
    /// `runtime.shards`: this actor's shard, and the same layer (slice) in
    /// every shard (`None` at its own place), with the link to each.
    pub(super) shard: usize,
    pub(super) peers: Vec<Option<(ActorId, Link)>>,
    pub(super) peer_names: String,
    /// The other shards' `(ε, input)` by sample and shard, with the input's
    /// sparse index when the batch takes the sparse path.
    shares: BTreeMap<u64, Vec<Option<Shared<T>>>>,
    /// The sample whose pooled update waits for the other shards: for
    /// their `Share`, then (`own_block_done`) for their `Columns`.
    pooling: Option<u64>,
    own_block_done: bool,
    /// With shards: every shard's block of `W[l]`'s inputs (columns), by
    /// shard. Each computes and applies the pooled update of its own block.
    pub(super) input_blocks: Vec<Range<usize>>,
    /// The other shards' updated blocks by sample and shard.
    columns: BTreeMap<u64, Vec<Option<Array2<T>>>>,
    /// Last applied update of this slice (learning rate included), for the
    /// inputs `update_inputs()`.
    pub(super) dw: Array2<T>,
    pub(super) db: Array1<T>,
    /// Momentum velocity of this slice's parameters.
    vw: Array2<T>,
    vb: Array1<T>,
    /// Adam's moments (or SGD with weight decay) of this slice's parameters.
    opt_state: Option<(ParamState<T, Ix2>, ParamState<T, Ix1>)>,
    /// Arrays of consumed messages, reused for the messages sent: those of
    /// the relaxation, and (shards) those of the updated blocks of `W`.
    pub(super) spare: Spare<T>,
    spare_blocks: Spare<T>,
    /// Test hook: panic when handling a message of this sample.
    pub(super) panic_on_sample: Option<u64>,
}

impl<T: Real> LayerActor<T> {
    pub(super) fn new(
        name: String,
        l: usize,
        settings: PcSettings,
        layer: PcLayer<T>,
        rows: (usize, usize),
    ) -> Self {
        Self {
            name,
            l,
            settings,
            layer,
            rows,
            below: Vec::new(),
            below_width: 0,
            above: Vec::new(),
            up: Vec::new(),
            down: Vec::new(),
            done: None,
            value: None,
            below_names: String::new(),
            above_names: String::new(),
            current: None,
            parked: BTreeMap::new(),
            tick: 0,
            have_eps: false,
            finished: HashSet::new(),
            ups: Inbox::new(),
            downs: Inbox::new(),
            steps: BTreeMap::new(),
            applied: 0,
            targets: HashMap::new(),
            predictions: Vec::new(),
            densities: HashMap::new(),
            shard: 0,
            peers: Vec::new(),
            peer_names: String::new(),
            shares: BTreeMap::new(),
            pooling: None,
            own_block_done: false,
            input_blocks: Vec::new(),
            columns: BTreeMap::new(),
            dw: Array2::zeros((0, 0)),
            db: Array1::zeros(0),
            vw: Array2::zeros((0, 0)),
            vb: Array1::zeros(0),
            opt_state: None,
            spare: Spare::new(),
            spare_blocks: Spare::new(),
            panic_on_sample: None,
        }
    }

    pub(super) fn is_output(&self) -> bool {
        self.layer.is_output()
    }
    /// Error nodes whose value nodes are another actor.
    pub(super) fn split(&self) -> bool {
        self.value.is_some()
    }
    /// Whether this actor takes Euler steps itself (phase B).
    pub(super) fn has_phase_b(&self) -> bool {
        !self.is_output() && !self.split()
    }

    /// Sends each actor below the columns of `ε W` that belong to its units.
    pub(super) fn send_down(
        &mut self,
        ctx: &mut Ctx<PcMsg<T>>,
        s: u64,
        t: u32,
        payload: Array2<T>,
    ) {
        if let [(link, _, _)] = self.down[..] {
            ctx.send(link, s, t, PcMsg::Down(payload));
            return;
        }
        for &(link, c0, c1) in &self.down {
            let part = self.spare.copy_of(payload.slice(s![.., c0..c1]));
            ctx.send(link, s, t, PcMsg::Down(part));
        }
        self.spare.give(payload);
    }

    /// `ε W` of the current sample, in a reused array.
    pub(super) fn error_down(&mut self) -> Array2<T> {
        let mut down = self.spare.rows((self.layer.rows(), self.layer.fan_in()));
        self.layer.error_down_into(down.view_mut());
        down
    }

    /// The position of a sender of up-messages among them.
    pub(super) fn below_slot(&self, from: ActorId) -> Option<usize> {
        self.below.iter().position(|b| b.0 == from)
    }

    /// The position of a sender of down-messages among them: the order in
    /// which the groups' partial feedback is summed.
    pub(super) fn above_slot(&self, from: ActorId) -> Option<usize> {
        self.above.iter().position(|&a| a == from)
    }

    pub(super) fn cols_of(&self, from: ActorId) -> Option<(usize, usize, usize)> {
        if self.below.len() == 1 {
            return None;
        }
        self.below
            .iter()
            .find(|b| b.0 == from)
            .map(|&(_, c0, c1)| (c0, c1, self.below_width))
    }

    /// Step 0 on the complete first input: clamp the target (output), start
    /// from the feedforward pass, pass it on (up, or to the value nodes).
    pub(super) fn start_sample(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        if let Some(c) = self.current.take() {
            // Pipelining: the active sample's state moves aside; the new
            // sample starts from a copy (same weights).
            let copy = self.layer.clone();
            let old = std::mem::replace(&mut self.layer, copy);
            self.parked.insert(c, (old, self.tick, self.have_eps));
        }
        let fx = take(&mut self.ups, (s, 0));
        let target = if self.is_output() {
            self.targets.remove(&s)
        } else {
            None
        };
        if let Some(y) = &target {
            self.layer
                .set_target(y.view(), T::of(self.settings.rule.cfg.beta));
        }
        if let Some(d) = self.densities.remove(&s) {
            self.layer.set_batch_density(d);
        }
        self.layer.init_feedforward(fx.view());
        self.spare.give(fx);
        if let Some(y) = target {
            self.predictions.push((s, self.layer.u().to_owned(), y));
        }
        self.current = Some(s);
        self.tick = 0;
        self.have_eps = false;
        self.applied = 0;
        if let Some(v) = self.value {
            ctx.send(v, s, 0, PcMsg::Init(self.spare.copy_of(self.layer.x())));
        } else if !self.is_output() {
            let up = self.spare.copy_of(self.layer.activity_up());
            broadcast(ctx, &self.up, s, 0, up, PcMsg::Up);
        }
        if self.settings.clocked() {
            self.schedule_steps(s, ctx);
        }
    }

    /// Phase A of step `t`: the error goes down (pre-update weights) and to
    /// the value nodes; at the layer's last step the weights are updated and
    /// the sample is done here.
    pub(super) fn phase_a(&mut self, s: u64, t: u32, ctx: &mut Ctx<PcMsg<T>>) -> bool {
        let last = self.settings.last_tick(self.l);
        let wave_triggered = self.settings.wave() && !self.is_output();
        // Under the wave trigger the last step's error goes down with the
        // wave (`clocked.rs`), not on the clock.
        if self.l > 2 && t < self.settings.last_tick(self.l - 1) && !(wave_triggered && t == last) {
            let down = self.error_down();
            self.send_down(ctx, s, t, down);
        }
        // After the feedforward start the value nodes know ε = 0.
        if let Some(v) = self.value
            && t > 0
            && t < last
        {
            let eps = self.spare.copy_of(self.layer.eps());
            ctx.send(v, s, t, PcMsg::Error(eps));
        }
        self.have_eps = true;
        if t == last && !wave_triggered {
            self.finish(s, ctx);
            return true;
        }
        false
    }

    /// The weight update with the current ε and input; the sample is done
    /// here. Shards first pool their rows: the update waits for the other
    /// shards' `Share` (`pooled_update`).
    pub(super) fn finish(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        if self.peers.len() > 1 {
            let rows = self.layer.update_rows();
            for &(_, link) in self.peers.iter().flatten() {
                let input = SharedInput::of(&rows.input);
                ctx.send(link, s, self.tick, PcMsg::Share(rows.eps.to_owned(), input));
            }
            self.pooling = Some(s);
            self.pooled_update(ctx);
            return;
        }
        self.ensure_update_buffers();
        let scale: T = self.settings.rule.scale(self.layer.rows());
        self.layer
            .weight_update_into(scale, self.dw.view_mut(), self.db.view_mut());
        self.apply();
        self.sample_done(s, ctx);
    }

    /// The inputs (columns) of `W[l]` whose update this actor computes:
    /// all of them, or with shards its own block.
    pub(super) fn update_inputs(&self) -> Range<usize> {
        match self.input_blocks.get(self.shard) {
            Some(block) => block.clone(),
            None => 0..self.layer.fan_in(),
        }
    }

    fn ensure_update_buffers(&mut self) {
        let inputs = self.update_inputs().len();
        if self.dw.dim() != (self.layer.width(), inputs) {
            self.dw = self.layer.zeros_like_inputs(inputs);
            self.db = Array1::zeros(self.layer.width());
        }
    }

    /// A shard's `Share` or `Columns` of sample `s`, in its slot (a
    /// duplicate is ignored).
    fn receive<X>(
        peers: &[Option<(ActorId, Link)>],
        map: &mut BTreeMap<u64, Vec<Option<X>>>,
        s: u64,
        from: ActorId,
        x: X,
    ) {
        let Some(j) = peers.iter().position(|p| p.is_some_and(|p| p.0 == from)) else {
            return;
        };
        let slots = map
            .entry(s)
            .or_insert_with(|| (0..peers.len()).map(|_| None).collect());
        if slots[j].is_none() {
            slots[j] = Some(x);
        }
    }

    /// Whether every other shard's slot of sample `s` is filled.
    fn all_in<X>(&self, map: &BTreeMap<u64, Vec<Option<X>>>, s: u64) -> bool {
        map.get(&s).is_some_and(|slots| {
            slots
                .iter()
                .enumerate()
                .all(|(j, p)| j == self.shard || p.is_some())
        })
    }

    /// The update of sample `s` pooled over the shards' rows: once every
    /// shard's `Share` is here, this shard's block of inputs is computed,
    /// applied and sent; once every other block is here and copied in, the
    /// sample is done.
    fn pooled_update(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        let Some(s) = self.pooling else {
            return;
        };
        if !self.own_block_done {
            if !self.all_in(&self.shares, s) {
                return;
            }
            let slots = self.shares.remove(&s).expect("all in");
            self.ensure_update_buffers();
            let parts: Vec<UpdateRows<T>> = slots
                .iter()
                .enumerate()
                .map(|(j, p)| match p {
                    _ if j == self.shard => self.layer.update_rows(),
                    Some(p) => UpdateRows {
                        eps: p.eps.view(),
                        input: p.input.as_update_input(),
                    },
                    None => unreachable!("all in"),
                })
                .collect();
            let rows = parts.iter().map(|p| p.eps.nrows()).sum();
            let scale: T = self.settings.rule.scale(rows);
            let inputs = self.update_inputs();
            self.layer.pooled_update_into(
                &parts,
                scale,
                inputs.clone(),
                self.dw.view_mut(),
                self.db.view_mut(),
            );
            drop(parts);
            self.apply();
            // A block of the column-major W is contiguous: one copy, into
            // the array of a block received before.
            let block = self
                .spare_blocks
                .copy_of(self.layer.weights().slice(s![.., inputs]));
            let links: Vec<Link> = self.peers.iter().flatten().map(|p| p.1).collect();
            broadcast(ctx, &links, s, self.tick, block, PcMsg::Columns);
            self.own_block_done = true;
        }
        if !self.all_in(&self.columns, s) {
            return;
        }
        let slots = self.columns.remove(&s).expect("all in");
        for (j, block) in slots.into_iter().enumerate() {
            if let Some(block) = block {
                let inputs = self.input_blocks[j].clone();
                self.layer.update_inputs_with(inputs, |w, _| {
                    crate::nn::kernels::copy_into(block.view(), w)
                });
                self.spare_blocks.give(block);
            }
        }
        self.own_block_done = false;
        self.pooling = None;
        self.sample_done(s, ctx);
        self.advance(ctx);
    }

    /// Applies the update in `dw`, `db` to this actor's inputs (and the
    /// bias), with the optimizer's state.
    fn apply(&mut self) {
        let inputs = self.update_inputs();
        let opt = self.settings.rule.optimizer;
        if !opt.is_sgd() || opt.weight_decay != 0.0 {
            // Adam / weight decay: the step depends on per-weight state
            // (and on W itself), so it is applied to this layer and copied
            // to the layer states parked for other batches.
            let lr = self.settings.rule.learning_rate;
            let (sw, sb) = self
                .opt_state
                .get_or_insert_with(|| (opt.state(), opt.state()));
            let (dw, db) = (self.dw.view(), self.db.view());
            self.layer.update_inputs_with(inputs, |w, b| {
                sw.step(w, dw, lr);
                sb.step(b, db, lr);
            });
            for (other, _, _) in self.parked.values_mut() {
                other.load_params(self.layer.weights(), self.layer.bias());
            }
        } else {
            let (step_w, step_b) = if self.settings.rule.momentum > 0.0 {
                let mu = T::of(self.settings.rule.momentum);
                if self.vw.dim() != self.dw.dim() {
                    self.vw = self.layer.zeros_like_inputs(self.dw.ncols());
                    self.vb = Array1::zeros(self.db.len());
                }
                momentum_step(mu, self.vw.view_mut(), self.dw.view());
                momentum_step(mu, self.vb.view_mut(), self.db.view());
                (self.vw.view(), self.vb.view())
            } else {
                (self.dw.view(), self.db.view())
            };
            self.layer.update_inputs_with(inputs, |mut w, mut b| {
                w += &step_w;
                b += &step_b;
            });
            for (other, _, _) in self.parked.values_mut() {
                other.apply_update(step_w, step_b);
            }
        }
    }

    /// Sample `s` has updated this layer: it is done here.
    fn sample_done(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        self.finished.insert(s);
        self.current = None;
        self.ups.retain(|k, _| k.0 != s);
        self.downs.retain(|k, _| k.0 != s);
        self.steps.retain(|k, _| k.0 != s);
        if let Some(done) = self.done {
            ctx.send(done, s, u32::MAX, PcMsg::Done);
        }
        ctx.progress(0);
    }

    /// Phase B of step `t` (hidden, layer mode): Euler step with the
    /// feedback, new prediction up.
    pub(super) fn phase_b(
        &mut self,
        s: u64,
        t: u32,
        e: Option<ArrayView2<T>>,
        ctx: &mut Ctx<PcMsg<T>>,
    ) {
        let gamma = T::of(self.settings.rule.cfg.gamma);
        let upper_last = self.settings.last_tick(self.l + 1);
        if let Some(e) = e {
            self.layer.on_feedback(e, gamma);
        }
        self.tick = t + 1;
        self.have_eps = false;
        if t < upper_last {
            let up = self.spare.copy_of(self.layer.activity_up());
            broadcast(ctx, &self.up, s, t + 1, up, PcMsg::Up);
        }
    }

    /// Makes `s` the active sample (swapping state with the parked copies).
    fn activate(&mut self, s: u64) -> bool {
        if self.current == Some(s) {
            return true;
        }
        let Some((layer, tick, have_eps)) = self.parked.remove(&s) else {
            return false;
        };
        let old = std::mem::replace(&mut self.layer, layer);
        if let Some(c) = self.current {
            self.parked.insert(c, (old, self.tick, self.have_eps));
        }
        self.current = Some(s);
        self.tick = tick;
        self.have_eps = have_eps;
        true
    }

    /// The active sample is `s` (clocked schedule: only one is ever active).
    pub(super) fn is_active(&self, s: u64) -> bool {
        self.current == Some(s)
    }

    fn tick_of(&self, s: u64) -> Option<u32> {
        if self.current == Some(s) {
            Some(self.tick)
        } else {
            self.parked.get(&s).map(|p| p.1)
        }
    }

    /// Event schedule: run every step (of every sample in flight) whose
    /// messages have arrived, oldest sample first.
    fn advance(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        let nb = self.below.len();
        loop {
            if self.pooling.is_some() {
                return;
            }
            let mut progressed = false;
            let mut flying: Vec<u64> = self.parked.keys().copied().collect();
            flying.extend(self.current);
            flying.sort_unstable();
            for s in flying {
                if self.activate(s) {
                    progressed |= self.run_steps(s, ctx);
                }
            }
            // `pipeline = 1`: a sample enters only once the one before has
            // updated this layer (the input's credit alone does not see to
            // it: layer 2 finishes a sample while the layers above may still
            // wait for their last feedback), so a chain of batches in one
            // run computes what one run per batch does.
            let room =
                self.settings.pipeline > 1 || (self.current.is_none() && self.parked.is_empty());
            let next = self
                .ups
                .iter()
                .filter(|_| room)
                .find(|(k, a)| {
                    k.1 == 0
                        && a.parts == nb
                        && !self.finished.contains(&k.0)
                        && self.tick_of(k.0).is_none()
                })
                .map(|(k, _)| k.0);
            if let Some(s) = next {
                self.start_sample(s, ctx);
                self.run_steps(s, ctx);
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Runs the steps of the active sample `s` that its messages allow;
    /// returns whether any ran.
    fn run_steps(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) -> bool {
        let nb = self.below.len();
        let na = self.above.len();
        let mut ran = false;
        loop {
            if self.current != Some(s) {
                return ran;
            }
            let t = self.tick;
            if !self.have_eps {
                if t > 0 {
                    let need_up = self.l > 2;
                    let need_step = self.split();
                    if (need_up && !complete(&self.ups, (s, t), nb))
                        || (need_step && !self.steps.contains_key(&(s, t)))
                    {
                        return ran;
                    }
                    // The value nodes' step first, then the new prediction:
                    // the order of the lockstep reference.
                    if need_step {
                        let d = self.steps.remove(&(s, t)).expect("checked");
                        self.layer.on_value_step(d.view());
                        self.spare.give(d);
                    }
                    if need_up {
                        let fx = take(&mut self.ups, (s, t));
                        self.layer.on_activity(fx.view());
                        self.spare.give(fx);
                    }
                }
                ran = true;
                if self.phase_a(s, t, ctx) {
                    return true;
                }
            }
            if !self.has_phase_b() {
                self.tick = t + 1;
                self.have_eps = false;
                continue;
            }
            if !complete(&self.downs, (s, t), na) {
                return ran;
            }
            let e = take(&mut self.downs, (s, t));
            self.phase_b(s, t, Some(e.view()), ctx);
            self.spare.give(e);
            ran = true;
        }
    }

    pub(super) fn handle(&mut self, env: Envelope<PcMsg<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        if self.panic_on_sample == Some(env.sample) {
            panic!("{}: injected fault on sample {}", self.name, env.sample);
        }
        let s = env.sample;
        if self.finished.contains(&s) {
            return; // a late or duplicated message of a finished sample
        }
        if self.settings.clocked() {
            self.clocked_message(env, ctx);
            return;
        }
        match env.payload {
            PcMsg::Share(eps, input) => {
                let share = Shared { eps, input };
                Self::receive(&self.peers, &mut self.shares, s, env.from, share);
                self.pooled_update(ctx);
                return;
            }
            PcMsg::Columns(block) => {
                Self::receive(&self.peers, &mut self.columns, s, env.from, block);
                self.pooled_update(ctx);
                return;
            }
            _ => {}
        }
        let (nb, na) = (self.below.len(), self.above.len());
        let key = (s, env.tick);
        let old = self.tick_of(s).is_some_and(|t| env.tick < t);
        match env.payload {
            PcMsg::Up(part) => {
                if old || complete(&self.ups, key, nb) {
                    return; // duplicate
                }
                let cols = self.cols_of(env.from);
                let slot = self.below_slot(env.from);
                add_part(&mut self.ups, key, nb, slot, part, cols);
            }
            PcMsg::Down(part) => {
                if old || complete(&self.downs, key, na) {
                    return;
                }
                let slot = self.above_slot(env.from);
                add_part(&mut self.downs, key, na, slot, part, None);
            }
            PcMsg::Step(d) => {
                if old {
                    return;
                }
                self.steps.insert(key, d);
            }
            PcMsg::Init(_)
            | PcMsg::Error(_)
            | PcMsg::Done
            | PcMsg::Share(..)
            | PcMsg::Columns(_) => return,
        }
        self.advance(ctx);
    }

    pub(super) fn is_done(&self) -> bool {
        self.current.is_none()
            && self.parked.is_empty()
            && self.targets.is_empty()
            && !self.ups.keys().any(|k| !self.finished.contains(&k.0))
    }

    pub(super) fn waiting_for(&self) -> String {
        match self.current {
            Some(s) if self.pooling == Some(s) && self.own_block_done => format!(
                "sample {s}: the updated weight columns (columns) of its other shards {}",
                self.peer_names
            ),
            Some(s) if self.pooling == Some(s) => format!(
                "sample {s}: the errors and inputs (share) of its other shards {} for the pooled weight update",
                self.peer_names
            ),
            Some(s) if !self.have_eps && self.split() && self.tick > 0 => format!(
                "sample {s}: the prediction input (up) of step {} from {} and the step of its value nodes",
                self.tick, self.below_names
            ),
            Some(s) if !self.have_eps => format!(
                "sample {s}: the prediction (up) of step {} from {}",
                self.tick, self.below_names
            ),
            Some(s) if self.split() => format!(
                "sample {s}: the error wave (the first nonzero step of its value nodes) after step {}",
                self.tick
            ),
            Some(s) => format!(
                "sample {s}: the error (down) of step {} from {}",
                self.tick, self.above_names
            ),
            None => format!(
                "the first prediction (up) of a new sample from {}",
                self.below_names
            ),
        }
    }

    /// Copies this slice's parameters from the full `W[l]`, `b[l]`, unless
    /// the actor holds them already (it keeps its weights between batches;
    /// a reload would only refresh the mirror a second time). Whether it
    /// reloaded.
    pub(super) fn load(&mut self, w: ArrayView2<T>, b: ndarray::ArrayView1<T>) -> bool {
        let (r0, r1) = self.rows;
        let (w, b) = (w.slice(s![r0..r1, ..]), b.slice(s![r0..r1]));
        if b == self.layer.bias() && crate::nn::kernels::equal(w, self.layer.weights()) {
            return false;
        }
        self.layer.load_params(w, b);
        true
    }
}
