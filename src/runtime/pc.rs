//! Predictive-coding actors: the `algo::pc::PcLayer` rules driven by local
//! messages. No PC equation is written here — this file only decides *when*
//! a rule runs and assembles message payloads.
//!
//! **Granularity.** `layer`: one actor per layer. `groups`: every hidden
//! layer is split into `k` slices of units; each slice is one actor holding
//! that slice's value nodes and error nodes and the rows of `W[l]`, `b[l]`
//! that predict them (the output layer stays one actor, since a softmax needs
//! the whole row). A group assembles its input `f(x[l−1])` from the slices of
//! the layer below (concatenation) and its feedback `ε[l+1] W[l+1]` as the sum
//! of the partial products sent by the groups above.
//!
//! **W ownership.** The receiving side of an edge owns its synapses: the
//! actor of layer `l` (or of a slice of it) owns `W[l]`, `b[l]` (its rows).
//! Messages: `Up(f(x))` travels up; `Down(ε W)` travels down, computed with
//! the owner's current, not yet updated, weights; `Done` tells the input that
//! a layer-2 actor finished a sample — the credit that lets the input clamp
//! the next batch. Every rule uses only the actor's own state and the
//! payloads it received.
//!
//! **Schedules.** `event`: an actor runs inference step `t` when the
//! messages of step `t` have arrived — a dataflow that equals the lockstep
//! reference under any delays. `clocked`: step `t` of sample `s` runs at the
//! actor's local time `s·S + t0 + t·P` (phase A: new prediction from the
//! latest input, error, message down, weight update at the last step) and
//! `+ P/2` (phase B: Euler step with the latest feedback, message up), with
//! whatever has arrived by then. Z-IL updates `W[l]` at step `t = L − l`
//! (trigger `clock`), or — trigger `event` under a clocked schedule — the
//! moment the error wave (the first nonzero feedback) reaches the actor. The
//! feedforward pass (step-0 predictions) is event-driven in both schedules.

use super::actor::{Actor, ActorId, Ctx, Envelope, Port, Topology};
use super::config::{Schedule, Trigger};
use crate::algo::pc::{PcLayer, Role as LayerRole};
use crate::nn::{Mlp, Real};
use ndarray::{Array1, Array2, ArrayView2, s};
use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// The payloads of the PC network.
#[derive(Clone, Debug)]
pub enum PcMsg<T: Real> {
    /// `f(x)` of the sender's value nodes (the input sends `x[1]` itself).
    Up(Array2<T>),
    /// `ε W` of the sender: its errors through its own weights.
    Down(Array2<T>),
    /// A layer-2 actor finished a sample (to the input).
    Done,
}

/// Static knowledge every actor has about the algorithm (no runtime state).
#[derive(Clone, Copy, Debug)]
pub struct PcSettings {
    /// Z-IL (true) or IL.
    pub zil: bool,
    /// Inference steps T of IL.
    pub steps: u32,
    pub gamma: f64,
    pub beta: f64,
    pub learning_rate: f64,
    pub schedule: Schedule,
    pub trigger: Trigger,
    /// Local-clock period of one inference step.
    pub period: f64,
    /// Number of layers L.
    pub depth: usize,
    /// Batches in flight (1: the input clamps the next batch when the last
    /// one is finished; more pipelines batches through the layers).
    pub pipeline: usize,
    /// Heavy-ball momentum μ of the actor's own SGD (`v ← μ v + ΔW`,
    /// `W ← W + v`, as `algo::Momentum`); 0 = plain SGD.
    pub momentum: f64,
}

impl PcSettings {
    /// The step at which layer `l` (1-based, ≥ 2) updates its weights.
    pub fn last_tick(&self, l: usize) -> u32 {
        if self.zil {
            (self.depth - l) as u32
        } else {
            self.steps
        }
    }
    /// Feedforward budget before step 0 (clocked schedule).
    pub fn t0(&self) -> f64 {
        self.depth as f64 * self.period
    }
    /// Local time between two samples (clocked schedule).
    pub fn sample_period(&self) -> f64 {
        self.t0() + (self.last_tick(2) as f64 + 2.0) * self.period
    }
}

/// A payload being assembled from several senders.
struct Assembly<T: Real> {
    buf: Array2<T>,
    parts: usize,
}

/// One actor of the PC network: the input, or a layer (slice) `l ≥ 2`.
pub struct PcActor<T: Real> {
    name: String,
    /// 1-based layer index.
    pub l: usize,
    pub settings: PcSettings,
    /// The rules and state of this layer slice (None for the input).
    pub layer: Option<PcLayer<T>>,
    /// Actors of the layer below, with the columns of `f(x[l−1])` each sends.
    below: Vec<(ActorId, usize, usize)>,
    below_width: usize,
    /// Actors of the layer above.
    above: Vec<ActorId>,
    /// The sample whose state is in `layer` (the active one).
    current: Option<u64>,
    /// Other samples in flight (`runtime.pipeline > 1`): their layer state,
    /// step and phase. Every copy holds the same `W[l]`: an update is applied
    /// to all of them at once.
    parked: BTreeMap<u64, (PcLayer<T>, u32, bool)>,
    tick: u32,
    have_eps: bool,
    finished: HashSet<u64>,
    ups: BTreeMap<(u64, u32), Assembly<T>>,
    downs: BTreeMap<(u64, u32), Assembly<T>>,
    /// Input: batches waiting to be clamped, credits outstanding.
    pub inputs: VecDeque<(u64, Array2<T>)>,
    in_flight: BTreeMap<u64, usize>,
    /// Output: targets by sample id, loss of the feedforward prediction.
    pub targets: HashMap<u64, Array2<T>>,
    pub losses: Vec<(u64, f64)>,
    /// Last applied update of this slice (learning rate included).
    pub dw: Array2<T>,
    pub db: Array1<T>,
    /// Momentum velocity of this slice's parameters.
    vw: Array2<T>,
    vb: Array1<T>,
    /// Rows of `W[l]` this actor owns.
    pub rows: (usize, usize),
    /// Test hook: panic when handling a message of this sample.
    pub panic_on_sample: Option<u64>,
}

impl<T: Real> PcActor<T> {
    fn new(name: String, l: usize, settings: PcSettings) -> Self {
        Self {
            name,
            l,
            settings,
            layer: None,
            below: Vec::new(),
            below_width: 0,
            above: Vec::new(),
            current: None,
            parked: BTreeMap::new(),
            tick: 0,
            have_eps: false,
            finished: HashSet::new(),
            ups: BTreeMap::new(),
            downs: BTreeMap::new(),
            inputs: VecDeque::new(),
            in_flight: BTreeMap::new(),
            targets: HashMap::new(),
            losses: Vec::new(),
            dw: Array2::zeros((0, 0)),
            db: Array1::zeros(0),
            vw: Array2::zeros((0, 0)),
            vb: Array1::zeros(0),
            rows: (0, 0),
            panic_on_sample: None,
        }
    }

    pub fn is_input(&self) -> bool {
        self.layer.is_none()
    }
    fn is_output(&self) -> bool {
        self.layer.as_ref().is_some_and(|l| l.is_output())
    }
    fn lower_is_input(&self) -> bool {
        self.l == 2
    }
    fn clocked(&self) -> bool {
        self.settings.schedule == Schedule::Clocked
    }

    fn layer(&mut self) -> &mut PcLayer<T> {
        self.layer.as_mut().expect("a layer actor")
    }

    /// Adds a part of a payload; returns true when `(s, t)` is complete.
    fn add_part(
        map: &mut BTreeMap<(u64, u32), Assembly<T>>,
        key: (u64, u32),
        senders: usize,
        part: Array2<T>,
        cols: Option<(usize, usize, usize)>,
    ) -> bool {
        if senders == 1 {
            map.insert(
                key,
                Assembly {
                    buf: part,
                    parts: 1,
                },
            );
            return true;
        }
        let a = map.entry(key).or_insert_with(|| {
            let width = cols.map_or(part.ncols(), |c| c.2);
            Assembly {
                buf: Array2::zeros((part.nrows(), width)),
                parts: 0,
            }
        });
        match cols {
            // Concatenate the slices of f(x[l−1]).
            Some((c0, c1, _)) => a.buf.slice_mut(s![.., c0..c1]).assign(&part),
            // Sum the partial products ε W of the groups above.
            None => a.buf += &part,
        }
        a.parts += 1;
        a.parts == senders
    }

    fn complete(map: &BTreeMap<(u64, u32), Assembly<T>>, key: (u64, u32), senders: usize) -> bool {
        map.get(&key).is_some_and(|a| a.parts == senders)
    }

    // ---- the input actor ----

    fn present(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        while self.in_flight.len() < self.settings.pipeline.max(1) {
            let Some((s, x)) = self.inputs.pop_front() else {
                return;
            };
            self.in_flight.insert(s, self.above.len());
            self.send_up(ctx, s, 0, x);
        }
    }

    /// Sends `payload` to every actor above (moved to the last, copied to the others).
    fn send_up(&self, ctx: &mut Ctx<PcMsg<T>>, s: u64, t: u32, payload: Array2<T>) {
        let n = self.above.len();
        for &a in &self.above[..n - 1] {
            ctx.send(a, Port::Forward, s, t, PcMsg::Up(payload.clone()));
        }
        ctx.send(self.above[n - 1], Port::Forward, s, t, PcMsg::Up(payload));
    }

    /// Sends each actor below the columns of `ε W` that belong to its units.
    fn send_down(&self, ctx: &mut Ctx<PcMsg<T>>, s: u64, t: u32, payload: Array2<T>) {
        if self.below.len() == 1 {
            ctx.send(self.below[0].0, Port::Backward, s, t, PcMsg::Down(payload));
            return;
        }
        for &(a, c0, c1) in &self.below {
            let part = payload.slice(s![.., c0..c1]).to_owned();
            ctx.send(a, Port::Backward, s, t, PcMsg::Down(part));
        }
    }

    // ---- layer actors ----

    /// Step 0 on the complete first input: clamp the target (output), start
    /// from the feedforward pass, send the prediction up.
    fn start_sample(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        if let Some(c) = self.current.take() {
            // Pipelining: the active sample's state moves aside; the new
            // sample starts from a copy (same weights).
            let copy = self.layer.clone().expect("layer");
            let old = std::mem::replace(self.layer.as_mut().expect("layer"), copy);
            self.parked.insert(c, (old, self.tick, self.have_eps));
        }
        let fx = self.ups.remove(&(s, 0)).expect("complete step-0 input").buf;
        let beta = T::of(self.settings.beta);
        let target = if self.is_output() {
            self.targets.remove(&s)
        } else {
            None
        };
        let layer = self.layer();
        if let Some(y) = &target {
            layer.set_target(y.view(), beta);
        }
        layer.init_feedforward(fx.view());
        if let (Some(y), LayerRole::Output(loss)) = (&target, layer.role()) {
            let l = loss.loss(layer.u(), y.view()).f64();
            self.losses.push((s, l));
        }
        self.current = Some(s);
        self.tick = 0;
        self.have_eps = false;
        if !self.is_output() {
            let up = self.layer.as_ref().expect("layer").activity_up().to_owned();
            self.send_up(ctx, s, 0, up);
        }
        if self.clocked() {
            self.schedule_steps(s, ctx);
        }
    }

    /// Phase A of step `t`: the error goes down (pre-update weights); at the
    /// layer's last step the weights are updated and the sample is done here.
    fn phase_a(&mut self, s: u64, t: u32, ctx: &mut Ctx<PcMsg<T>>) -> bool {
        let last = self.settings.last_tick(self.l);
        if !self.lower_is_input() && t < self.settings.last_tick(self.l - 1) {
            let down = self.layer.as_ref().expect("layer").error_down();
            self.send_down(ctx, s, t, down);
        }
        self.have_eps = true;
        let wave_triggered = self.settings.zil
            && self.clocked()
            && self.settings.trigger == Trigger::Event
            && !self.is_output();
        if t == last && !wave_triggered {
            self.finish(s, ctx);
            return true;
        }
        false
    }

    /// The weight update with the current ε and input; the sample is done here.
    fn finish(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        let rows = self.layer.as_ref().expect("layer").rows();
        // s = α / (β · rows), computed in T exactly as the lockstep driver
        // does, so f32 runs follow it bit for bit.
        let scale =
            T::of(self.settings.learning_rate) / (T::of(self.settings.beta) * T::of(rows as f64));
        let layer = self.layer.as_mut().expect("layer");
        if self.dw.dim() != layer.weights().dim() {
            self.dw = Array2::zeros(layer.weights().raw_dim());
            self.db = Array1::zeros(layer.width());
        }
        layer.weight_update_into(scale, self.dw.view_mut(), self.db.view_mut());
        let (step_w, step_b) = if self.settings.momentum > 0.0 {
            let mu = T::of(self.settings.momentum);
            if self.vw.dim() != self.dw.dim() {
                self.vw = Array2::zeros(self.dw.raw_dim());
                self.vb = Array1::zeros(self.db.len());
            }
            self.vw.zip_mut_with(&self.dw, |v, &d| *v = mu * *v + d);
            self.vb.zip_mut_with(&self.db, |v, &d| *v = mu * *v + d);
            (self.vw.view(), self.vb.view())
        } else {
            (self.dw.view(), self.db.view())
        };
        layer.apply_update(step_w, step_b);
        for (other, _, _) in self.parked.values_mut() {
            other.apply_update(step_w, step_b);
        }
        self.finished.insert(s);
        self.current = None;
        self.ups.retain(|k, _| k.0 != s);
        self.downs.retain(|k, _| k.0 != s);
        if self.lower_is_input() {
            ctx.send(self.below[0].0, Port::Backward, s, u32::MAX, PcMsg::Done);
        }
        ctx.progress(0);
    }

    /// Phase B of step `t` (hidden): Euler step with the feedback, new
    /// prediction up.
    fn phase_b(&mut self, s: u64, t: u32, e: Option<ArrayView2<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        let gamma = T::of(self.settings.gamma);
        let upper_last = self.settings.last_tick(self.l + 1);
        let layer = self.layer.as_mut().expect("layer");
        if let Some(e) = e {
            layer.on_feedback(e, gamma);
        }
        self.tick = t + 1;
        self.have_eps = false;
        if t < upper_last {
            let up = layer.activity_up().to_owned();
            self.send_up(ctx, s, t + 1, up);
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
        let old = std::mem::replace(self.layer.as_mut().expect("layer"), layer);
        if let Some(c) = self.current {
            self.parked.insert(c, (old, self.tick, self.have_eps));
        }
        self.current = Some(s);
        self.tick = tick;
        self.have_eps = have_eps;
        true
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
            let mut progressed = false;
            let mut flying: Vec<u64> = self.parked.keys().copied().collect();
            flying.extend(self.current);
            flying.sort_unstable();
            for s in flying {
                if self.activate(s) {
                    progressed |= self.run_steps(s, ctx);
                }
            }
            let next = self
                .ups
                .iter()
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
                if t > 0 && !self.lower_is_input() {
                    if !Self::complete(&self.ups, (s, t), nb) {
                        return ran;
                    }
                    let fx = self.ups.remove(&(s, t)).expect("complete").buf;
                    self.layer().on_activity(fx.view());
                }
                ran = true;
                if self.phase_a(s, t, ctx) {
                    return true;
                }
            }
            if self.is_output() {
                self.tick = t + 1;
                self.have_eps = false;
                continue;
            }
            if !Self::complete(&self.downs, (s, t), na) {
                return ran;
            }
            let e = self.downs.remove(&(s, t)).expect("complete").buf;
            self.phase_b(s, t, Some(e.view()), ctx);
            ran = true;
        }
    }

    fn tag(s: u64, t: u32, phase_b: bool) -> u64 {
        (s << 24) | ((t as u64) << 1) | phase_b as u64
    }

    /// Clocked schedule: on the feedforward input, schedule the steps.
    fn schedule_steps(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        let p = self.settings.period;
        let base = s as f64 * self.settings.sample_period() + self.settings.t0();
        let last = self.settings.last_tick(self.l);
        for t in 0..=last {
            ctx.timer_at(base + t as f64 * p, Self::tag(s, t, false));
            if !self.is_output() && t < last {
                ctx.timer_at(base + (t as f64 + 0.5) * p, Self::tag(s, t, true));
            }
        }
    }

    /// The newest complete assembly of sample `s` in `map` (clocked schedule).
    fn latest(
        map: &mut BTreeMap<(u64, u32), Assembly<T>>,
        s: u64,
        senders: usize,
    ) -> Option<Array2<T>> {
        let key = map
            .range((s, 0)..=(s, u32::MAX))
            .rev()
            .find(|(_, a)| a.parts == senders)
            .map(|(k, _)| *k)?;
        let a = map.remove(&key).expect("found");
        // Older steps are stale now.
        map.retain(|k, _| k.0 != s || k.1 > key.1);
        Some(a.buf)
    }

    /// Z-IL, event trigger, clocked schedule: the error wave arrived.
    fn wave(&mut self, s: u64, e: Array2<T>, ctx: &mut Ctx<PcMsg<T>>) {
        let t = self.tick;
        let last = self.settings.last_tick(self.l);
        self.phase_b(s, t, Some(e.view()), ctx);
        if !self.lower_is_input() && last < self.settings.last_tick(self.l - 1) {
            let down = self.layer.as_ref().expect("layer").error_down();
            self.send_down(ctx, s, last, down);
        }
        self.finish(s, ctx);
    }

    fn clocked_message(&mut self, env: Envelope<PcMsg<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        let s = env.sample;
        let (nb, na) = (self.below.len(), self.above.len());
        match env.payload {
            PcMsg::Up(part) => {
                let cols = self.cols_of(env.from);
                let complete = Self::add_part(&mut self.ups, (s, env.tick), nb, part, cols);
                if complete && env.tick == 0 && self.current != Some(s) {
                    self.start_sample(s, ctx);
                }
            }
            PcMsg::Down(part) => {
                if self.current != Some(s) {
                    return;
                }
                let complete = Self::add_part(&mut self.downs, (s, env.tick), na, part, None);
                let wave = self.settings.zil
                    && self.settings.trigger == Trigger::Event
                    && !self.is_output();
                if complete && wave {
                    let buf = &self.downs[&(s, env.tick)].buf;
                    if buf.iter().any(|v| *v != T::zero()) {
                        let e = self.downs.remove(&(s, env.tick)).expect("complete").buf;
                        self.downs.retain(|k, _| k.0 != s);
                        self.wave(s, e, ctx);
                    }
                }
            }
            PcMsg::Done => {}
        }
    }

    fn cols_of(&self, from: ActorId) -> Option<(usize, usize, usize)> {
        if self.below.len() == 1 {
            return None;
        }
        self.below
            .iter()
            .find(|b| b.0 == from)
            .map(|&(_, c0, c1)| (c0, c1, self.below_width))
    }
}

impl<T: Real> Actor for PcActor<T> {
    type Msg = PcMsg<T>;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn start(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        if !self.is_input() {
            return;
        }
        if self.clocked() {
            let sp = self.settings.sample_period();
            for (s, _) in &self.inputs {
                ctx.timer_at(*s as f64 * sp, *s);
            }
        } else {
            self.present(ctx);
        }
    }

    fn handle(&mut self, env: Envelope<PcMsg<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        if self.panic_on_sample == Some(env.sample) {
            panic!("{}: injected fault on sample {}", self.name, env.sample);
        }
        let s = env.sample;
        if self.is_input() {
            let key = s ^ ((env.from as u64) << 48);
            if matches!(env.payload, PcMsg::Done)
                && self.in_flight.contains_key(&s)
                && !self.finished.contains(&key)
            {
                // Count each layer-2 actor once (duplicates are ignored).
                self.finished.insert(key);
                let left = self.in_flight.get_mut(&s).expect("in flight");
                *left -= 1;
                if *left == 0 {
                    self.in_flight.remove(&s);
                    ctx.progress(1);
                    if !self.clocked() {
                        self.present(ctx);
                    }
                }
            }
            return;
        }
        if self.finished.contains(&s) {
            return; // a late or duplicated message of a finished sample
        }
        if self.clocked() {
            self.clocked_message(env, ctx);
            return;
        }
        let (nb, na) = (self.below.len(), self.above.len());
        match env.payload {
            PcMsg::Up(part) => {
                let key = (s, env.tick);
                if Self::complete(&self.ups, key, nb)
                    || self.tick_of(s).is_some_and(|t| env.tick < t)
                {
                    return; // duplicate
                }
                let cols = self.cols_of(env.from);
                Self::add_part(&mut self.ups, key, nb, part, cols);
            }
            PcMsg::Down(part) => {
                let key = (s, env.tick);
                if Self::complete(&self.downs, key, na)
                    || self.tick_of(s).is_some_and(|t| env.tick < t)
                {
                    return; // duplicate
                }
                Self::add_part(&mut self.downs, key, na, part, None);
            }
            PcMsg::Done => return,
        }
        self.advance(ctx);
    }

    fn timer(&mut self, tag: u64, ctx: &mut Ctx<PcMsg<T>>) {
        if self.is_input() {
            if let Some(pos) = self.inputs.iter().position(|(s, _)| *s == tag) {
                let (s, x) = self.inputs.remove(pos).expect("found");
                self.in_flight.insert(s, self.above.len());
                self.send_up(ctx, s, 0, x);
            }
            return;
        }
        let s = tag >> 24;
        let t = ((tag >> 1) & 0x7f_ffff) as u32;
        if !self.activate(s) {
            return; // finished already (event trigger) or never started
        }
        let (nb, na) = (self.below.len(), self.above.len());
        if tag & 1 == 1 {
            if self.have_eps {
                let e = Self::latest(&mut self.downs, s, na);
                self.phase_b(s, t, e.as_ref().map(|e| e.view()), ctx);
            }
        } else {
            if t > 0
                && !self.lower_is_input()
                && let Some(fx) = Self::latest(&mut self.ups, s, nb)
            {
                self.layer().on_activity(fx.view());
            }
            self.tick = t;
            self.phase_a(s, t, ctx);
        }
    }

    fn is_done(&self) -> bool {
        if self.is_input() {
            self.inputs.is_empty() && self.in_flight.is_empty()
        } else {
            self.current.is_none()
                && self.parked.is_empty()
                && self.targets.is_empty()
                && !self.ups.keys().any(|k| !self.finished.contains(&k.0))
        }
    }

    fn waiting_for(&self) -> String {
        let names = |ids: &[ActorId]| {
            ids.iter()
                .map(|i| format!("#{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.is_input() {
            return match self.in_flight.iter().next() {
                Some((s, left)) => format!(
                    "`Done` of sample {s} from {left} layer-2 actor(s) (down); {} batch(es) not yet clamped",
                    self.inputs.len()
                ),
                None => format!("nothing ({} batch(es) queued)", self.inputs.len()),
            };
        }
        let below: Vec<ActorId> = self.below.iter().map(|b| b.0).collect();
        match self.current {
            Some(s) if !self.have_eps => format!(
                "sample {s}: the prediction (up) of step {} from actor(s) {}",
                self.tick,
                names(&below)
            ),
            Some(s) => format!(
                "sample {s}: the error (down) of step {} from actor(s) {}",
                self.tick,
                names(&self.above)
            ),
            None => format!(
                "the first prediction (up) of a new sample from actor(s) {}",
                names(&below)
            ),
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// `k` nearly equal slices of `0..n`.
pub fn slices(n: usize, k: usize) -> Vec<(usize, usize)> {
    let k = k.clamp(1, n.max(1));
    (0..k).map(|j| (j * n / k, (j + 1) * n / k)).collect()
}

/// The actors and edges of a PC network for `mlp`'s shapes; hidden layers
/// are split into `groups` slices (1: one actor per layer). The actors own
/// no weights yet (`load_weights` moves them in).
pub fn network<T: Real>(
    mlp: &Mlp<T>,
    settings: PcSettings,
    groups: usize,
) -> anyhow::Result<(Vec<PcActor<T>>, Topology)> {
    let depth = mlp.depth();
    let mut actors = vec![PcActor::new("input".into(), 1, settings)];
    // Actor ids and row slices of every layer.
    let mut ids: Vec<Vec<(ActorId, usize, usize)>> = vec![vec![(0, 0, mlp.sizes[0])]];
    for l in 2..=depth {
        let n = mlp.sizes[l - 1];
        let k = if l == depth { 1 } else { groups };
        let sl = slices(n, k);
        let single = sl.len() == 1;
        let mut layer_ids = Vec::new();
        for (j, &(r0, r1)) in sl.iter().enumerate() {
            let name = if single {
                format!("layer{l}")
            } else {
                format!("layer{l}.{j}")
            };
            let mut a = PcActor::new(name, l, settings);
            let role = if l == depth {
                LayerRole::Output(mlp.output)
            } else {
                LayerRole::Hidden(mlp.hidden)
            };
            a.layer = Some(PcLayer::new(
                l,
                role,
                Array2::zeros((r1 - r0, mlp.sizes[l - 2])),
                Array1::zeros(r1 - r0),
                None,
            )?);
            a.rows = (r0, r1);
            layer_ids.push((actors.len(), r0, r1));
            actors.push(a);
        }
        ids.push(layer_ids);
    }
    let mut topo = Topology::new();
    for l in 2..=depth {
        let below = ids[l - 2].clone();
        let width = mlp.sizes[l - 2];
        for &(a, _, _) in &ids[l - 1] {
            actors[a].below = below.clone();
            actors[a].below_width = width;
            for &(b, _, _) in &below {
                topo.add(b, a, Port::Forward);
                topo.add(a, b, Port::Backward);
                actors[b].above.push(a);
            }
        }
    }
    Ok((actors, topo))
}

/// Moves `W[l]`, `b[l]` out of the `Mlp` into the actors that own them.
/// (Slices of a split layer are copied into their owners; the `Mlp`'s
/// matrices are left empty until `store_weights`.)
pub fn load_weights<T: Real>(actors: &mut [PcActor<T>], mlp: &mut Mlp<T>) {
    for a in actors.iter_mut().filter(|a| !a.is_input()) {
        let i = a.l - 2;
        let (r0, r1) = a.rows;
        let layer = a.layer.as_mut().expect("layer actor");
        layer.load_params(mlp.w[i].slice(s![r0..r1, ..]), mlp.b[i].slice(s![r0..r1]));
    }
}

/// Copies the actors' weights back into the `Mlp`.
pub fn store_weights<T: Real>(actors: &[PcActor<T>], mlp: &mut Mlp<T>) {
    for a in actors.iter().filter(|a| !a.is_input()) {
        let i = a.l - 2;
        let (r0, r1) = a.rows;
        let layer = a.layer.as_ref().expect("layer actor");
        mlp.w[i].slice_mut(s![r0..r1, ..]).assign(&layer.weights());
        mlp.b[i].slice_mut(s![r0..r1]).assign(&layer.bias());
    }
}
