//! Payloads assembled from several senders, keyed by `(sample, step)`: a
//! group's input `f(x[l−1])` is the concatenation of the slices below (each
//! sender owns a column range), its feedback `ε[l+1] W[l+1]` the sum of the
//! partial products of the groups above.

use crate::nn::Real;
use crate::runtime::actor::ActorId;
use ndarray::{Array2, s};
use std::collections::BTreeMap;

pub(super) struct Assembly<T: Real> {
    pub buf: Array2<T>,
    pub parts: usize,
    /// Who contributed (a duplicated part is not counted twice).
    from: Vec<ActorId>,
}

/// Assemblies of one kind of message, by `(sample, step)`.
pub(super) type Inbox<T> = BTreeMap<(u64, u32), Assembly<T>>;

/// Adds `from`'s part; returns true when `key` is complete. `cols`: the
/// sender's column range and the full width (concatenation); `None`: summed.
/// A second part from the same sender (a duplicated message) is ignored.
pub(super) fn add_part<T: Real>(
    map: &mut Inbox<T>,
    key: (u64, u32),
    senders: usize,
    from: ActorId,
    part: Array2<T>,
    cols: Option<(usize, usize, usize)>,
) -> bool {
    if senders == 1 {
        map.insert(
            key,
            Assembly {
                buf: part,
                parts: 1,
                from: Vec::new(),
            },
        );
        return true;
    }
    let a = map.entry(key).or_insert_with(|| {
        let width = cols.map_or(part.ncols(), |c| c.2);
        Assembly {
            buf: Array2::zeros((part.nrows(), width)),
            parts: 0,
            from: Vec::with_capacity(senders),
        }
    });
    if a.from.contains(&from) {
        return a.parts == senders;
    }
    a.from.push(from);
    match cols {
        Some((c0, c1, _)) => {
            crate::nn::kernels::copy_into(part.view(), a.buf.slice_mut(s![.., c0..c1]))
        }
        None => a.buf += &part,
    }
    a.parts += 1;
    a.parts == senders
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
