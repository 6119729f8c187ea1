//! The paper's ablation "without dependency" (LLM-Pruner, Table 6): every parameter of a group
//! is pruned on its own — its own least important elements, as many as the dependency-aware
//! selection removes from that parameter — instead of the coupled structure together. The
//! coupled weights then lose different indices, which no smaller dense model can compute, so
//! the result is the original model with each parameter's own choice zeroed (its parameter
//! count is the original's; its quality is that of the independent pruning).

use std::collections::BTreeSet;

use prunec_ir::{CalibrationStats, Model, Param};

use crate::prune::Selection;
use crate::score::{Importance, MemberVectors};
use crate::{PassError, Result};

/// `model` with every parameter axis of every group pruned independently (zeroed): for each
/// axis, the elements of lowest importance (`importance`, from that parameter alone), as many
/// as `selection` removes from it. Returns the model and how many elements were zeroed.
pub fn without_dependency(
    model: &Model,
    stats: Option<&CalibrationStats>,
    importance: Importance,
    seed: u64,
    selection: &Selection,
) -> Result<(Model, usize)> {
    let groups = model.groups.as_ref().ok_or_else(|| PassError::Config("the ablation needs the groups: run `group` first".into()))?;
    let mut vectors = MemberVectors::new(model, stats, importance, seed);
    // (parameter, axis, shape) -> indices to zero
    let mut zero: Vec<(String, usize, Vec<usize>, BTreeSet<usize>)> = Vec::new();
    let mut zeroed = 0;
    for (k, group) in groups.iter().enumerate() {
        let mut removed: Vec<&[prunec_ir::Element]> =
            selection.removed.get(k).into_iter().flatten().filter_map(|&u| group.units.get(u)).map(|u| u.elements.as_slice()).collect();
        for &(u, sub) in selection.removed_sub.get(k).map(Vec::as_slice).unwrap_or_default() {
            if let Some(s) = group.units.get(u).and_then(|u| u.sub_units.get(sub)) {
                removed.push(s);
            }
        }
        if removed.is_empty() {
            continue;
        }
        for (a, ax) in group.axes.iter().enumerate() {
            let Some((name, shape)) = &ax.param else { continue };
            let count: usize = removed.iter().map(|els| els.iter().filter(|e| e.axis as usize == a).count()).sum();
            if count == 0 {
                continue;
            }
            // this parameter's own importance per element of the axis
            let v = vectors.get(name, shape, ax.axis)?;
            let elements = ax.size / ax.granularity.max(1);
            let mut scored: Vec<(f64, u32)> = (0..elements as u32)
                .map(|e| (ax.indices(e).map(|i| v.get(i).copied().unwrap_or(0.0)).sum::<f64>(), e))
                .collect();
            scored.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let idx: BTreeSet<usize> = scored.iter().take(count).flat_map(|&(_, e)| ax.indices(e)).collect();
            zeroed += count;
            match zero.iter_mut().find(|(n, axis, _, _)| n == name && *axis == ax.axis) {
                Some(entry) => entry.3.extend(idx),
                None => zero.push((name.clone(), ax.axis, shape.clone(), idx)),
            }
        }
    }
    let mut out = model.clone();
    for (name, axis, shape, idx) in zero {
        let mut data = out.params.read_f32(&name)?.as_ref().clone();
        let inner: usize = shape[axis + 1..].iter().product();
        let size = shape[axis];
        for (i, x) in data.iter_mut().enumerate() {
            if idx.contains(&((i / inner.max(1)) % size)) {
                *x = 0.0;
            }
        }
        out.params.insert(name, Param::owned(shape, data)?);
    }
    Ok((out, zeroed))
}
