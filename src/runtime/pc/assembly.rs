//! Payloads assembled from several senders, keyed by `(sample, step)`: a
//! group's input `f(x[l−1])` is the concatenation of the slices below (each
//! sender owns a column range), its feedback `ε[l+1] W[l+1]` the sum of the
//! partial products of the groups above.

use crate::nn::Real;
use crate::nn::mlp::column_major;
use ndarray::{Array2, ArrayView2, ShapeBuilder, s};
use std::collections::BTreeMap;

pub(super) struct Assembly<T: Real> {
    pub buf: Array2<T>,
    pub parts: usize,
    /// Which senders (by position) contributed: a duplicated part is not
    /// counted twice.
    got: Vec<bool>,
    /// Sums: parts that arrived before a sender listed earlier, held until
    /// they can be added in the senders' order (`next`: how many are in
    /// `buf`), so the sum's rounding does not depend on arrival order and
    /// a wall run gives the bits of a virtual one.
    held: Vec<Option<Array2<T>>>,
    next: usize,
}

/// Assemblies of one kind of message, by `(sample, step)`.
pub(super) type Inbox<T> = BTreeMap<(u64, u32), Assembly<T>>;

/// Adds a part from the sender at `slot` of `n` (the order in which parts
/// are summed); returns true when `key` is complete. `cols`: the sender's
/// column range and the full width (concatenation); `None`: summed. A
/// second part from the same sender (a duplicated message), or one from an
/// actor not among the senders (`slot` None), is ignored.
pub(super) fn add_part<T: Real>(
    map: &mut Inbox<T>,
    key: (u64, u32),
    n: usize,
    slot: Option<usize>,
    part: Array2<T>,
    cols: Option<(usize, usize, usize)>,
) -> bool {
    let Some(j) = slot.filter(|&j| j < n) else {
        return complete(map, key, n);
    };
    if n == 1 {
        map.insert(
            key,
            Assembly {
                buf: part,
                parts: 1,
                got: Vec::new(),
                held: Vec::new(),
                next: 1,
            },
        );
        return true;
    }
    let a = map.entry(key).or_insert_with(|| Assembly {
        buf: match cols {
            Some((_, _, width)) => Array2::zeros((part.nrows(), width)),
            None => Array2::zeros((0, 0)),
        },
        parts: 0,
        got: vec![false; n],
        held: Vec::new(),
        next: 0,
    });
    if a.got[j] {
        return a.parts == n;
    }
    a.got[j] = true;
    a.parts += 1;
    match cols {
        Some((c0, c1, _)) => {
            crate::nn::kernels::copy_into(part.view(), a.buf.slice_mut(s![.., c0..c1]))
        }
        None if j != a.next => {
            if a.held.is_empty() {
                a.held.resize_with(n, || None);
            }
            a.held[j] = Some(part);
        }
        None => {
            if a.next == 0 {
                a.buf = part;
            } else {
                a.buf += &part;
            }
            a.next += 1;
            while let Some(p) = a.held.get_mut(a.next).and_then(Option::take) {
                a.buf += &p;
                a.next += 1;
            }
        }
    }
    a.parts == n
}

pub(super) fn complete<T: Real>(map: &Inbox<T>, key: (u64, u32), senders: usize) -> bool {
    map.get(&key).is_some_and(|a| a.parts == senders)
}

/// Removes and returns a complete assembly.
pub(super) fn take<T: Real>(map: &mut Inbox<T>, key: (u64, u32)) -> Array2<T> {
    map.remove(&key).expect("a complete assembly").buf
}

/// The newest complete assembly of sample `s` (clocked schedule); older
/// steps of `s` are stale then and dropped.
pub(super) fn latest<T: Real>(map: &mut Inbox<T>, s: u64, senders: usize) -> Option<Array2<T>> {
    let key = map
        .range((s, 0)..=(s, u32::MAX))
        .rev()
        .find(|(_, a)| a.parts == senders)
        .map(|(k, _)| *k)?;
    let a = map.remove(&key).expect("found");
    map.retain(|k, _| k.0 != s || k.1 > key.1);
    Some(a.buf)
}

/// The arrays of messages an actor has consumed, reused for the messages it
/// sends: in a relaxation an actor receives about as many arrays of each
/// shape as it sends (an `Up` and a `Down` per step and neighbour), so its
/// steps allocate (and zero) nothing. A few are kept, the newest.
pub(super) struct Spare<T: Real> {
    bufs: Vec<Array2<T>>,
}

impl<T: Real> Spare<T> {
    const KEEP: usize = 6;

    pub fn new() -> Self {
        Self { bufs: Vec::new() }
    }

    /// Keeps a consumed message's array.
    pub fn give(&mut self, a: Array2<T>) {
        if self.bufs.len() == Self::KEEP {
            self.bufs.remove(0);
        }
        self.bufs.push(a);
    }

    /// An array of `shape`, row-major or (`columns`) column-major, whose
    /// contents are arbitrary: the caller overwrites all of it.
    fn take(&mut self, shape: (usize, usize), columns: bool) -> Array2<T> {
        let fits = |b: &Array2<T>| b.dim() == shape && column_major(b) == columns;
        match self.bufs.iter().rposition(fits) {
            Some(i) => self.bufs.remove(i),
            None => Array2::zeros(shape.set_f(columns)),
        }
    }

    /// An array of `shape` (row-major) whose contents are arbitrary.
    pub fn rows(&mut self, shape: (usize, usize)) -> Array2<T> {
        self.take(shape, false)
    }

    /// An owned copy of `a` in `a`'s layout (a block of a column-major `W`
    /// stays column-major: one contiguous copy), to be moved into a message.
    pub fn copy_of(&mut self, a: ArrayView2<T>) -> Array2<T> {
        let mut b = self.take(a.dim(), column_major(&a));
        crate::nn::kernels::copy_into(a, b.view_mut());
        b
    }
}
