//! What calibration activations tell the pruner, from the [`Moments`] of the inputs of linear
//! ops (`x[.., in] · w[out, in]ᵀ + b`):
//!
//! - FLAP's fluctuation metric ([`fluctuation`]): a unit whose input features of a linear op
//!   vary little over the calibration tokens can be replaced by their mean — its score is
//!   `Σ_j Var(x_j) · ‖W[:, j]‖²` over the unit's input features `j`;
//! - reconstruction ([`reconstruct`]): after `prune` removed input features of a linear op
//!   (an attention head's columns of `o_proj`, an MLP channel's of `down_proj`), its surviving
//!   weights and its bias are updated so that its output on the unpruned model's activations
//!   matches the unpruned op's:
//!   - [`Reconstruction::Bias`] (FLAP's bias compensation): the removed features' mean
//!     contribution `W[:, R] · mean(x_R)` folded into the bias;
//!   - [`Reconstruction::LeastSquares`] (as SparseGPT, ZipLM and SlimGPT solve it): the kept
//!     columns and the bias `Θ = [W'ᵀ; b'ᵀ]` minimising
//!     `mean ‖[x_S, 1] Θ − [x, 1] Φ‖² + λ ‖Θ − Θ₀‖²` (`Φ` the unpruned weights and bias,
//!     `Θ₀` the pruned ones), by the damped normal equation
//!     `(A + λI) Θ = C + λ Θ₀`, `A = E[z zᵀ]`, `C = E[z x̃ᵀ] Φ`, solved by Cholesky in f64.
//!     Damping towards `Θ₀` (not towards zero) means the result never has a larger error than
//!     the pruned weights had; `λ` is `damp` times the mean diagonal of `A`.
//!
//! Both read the moments of the unpruned model only; nothing names an architecture: the
//! linear ops are those a group's members feed by their input axis.

use std::collections::HashMap;

use prunec_ir::{Group, Model, Moments, NodeId, Op, Param, ParamData, ValueId};

use crate::score::{GroupScores, Scores};
use crate::{PassError, Result};

/// How `reconstruct` updates a linear op whose input features were pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconstruction {
    /// FLAP's bias compensation: the removed features' mean contribution added to the bias.
    Bias,
    /// The kept columns and the bias solved by damped least squares.
    LeastSquares,
}

impl Reconstruction {
    /// Every reconstruction, by name.
    pub const NAMES: &'static [(&'static str, Reconstruction)] = &[("bias", Reconstruction::Bias), ("ls", Reconstruction::LeastSquares)];

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, r)| *r == self).map_or("?", |(n, _)| n)
    }

    /// The reconstruction called `name`.
    pub fn from_name(name: &str) -> Result<Reconstruction> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r).ok_or_else(|| {
            PassError::Config(format!(
                "unknown reconstruction `{name}`; valid: {}",
                Self::NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// The parameter value `v` is, when it is one.
fn param_at(model: &Model, v: Option<&ValueId>) -> Option<String> {
    v.and_then(|v| match model.graph.node(v.node).map(|n| &n.op) {
        Ok(Op::Param { name, .. }) => Some(name.clone()),
        _ => None,
    })
}

/// The linear ops reading parameter `name` as their weight: `(node, data input)`.
fn linears_of(model: &Model, name: &str) -> Vec<(NodeId, ValueId)> {
    let g = &model.graph;
    let mut out = Vec::new();
    for id in g.node_ids() {
        if !g.node(id).is_ok_and(|n| matches!(n.op, Op::Linear)) {
            continue;
        }
        let inputs = g.inputs(id);
        if param_at(model, inputs.get(1)).as_deref() == Some(name) {
            if let Some(&x) = inputs.first() {
                out.push((id, x));
            }
        }
    }
    out
}

/// The group members that are a linear op's input axis: `(axis index in the group, weight,
/// the op's data input)`.
fn input_members(model: &Model, group: &Group) -> Vec<(usize, String, ValueId)> {
    let mut out = Vec::new();
    for (a, ax) in group.axes.iter().enumerate() {
        let Some((name, shape)) = &ax.param else { continue };
        if shape.len() != 2 || ax.axis != 1 {
            continue;
        }
        for (_, x) in linears_of(model, name) {
            out.push((a, name.clone(), x));
        }
    }
    out
}

/// The values whose moments [`fluctuation`] reads for the groups `scope` accepts (the inputs
/// of the linear ops their members feed by their input axis), each once.
pub fn fluctuation_taps(model: &Model, scope: &dyn Fn(&Group) -> bool) -> Vec<ValueId> {
    let mut taps = Vec::new();
    for g in model.groups.as_deref().unwrap_or_default().iter().filter(|g| scope(g)) {
        for (_, _, x) in input_members(model, g) {
            if !taps.contains(&x) {
                taps.push(x);
            }
        }
    }
    taps
}

/// FLAP's fluctuation metric for every unit (and sub-unit) of `model`'s groups:
/// `Σ_j Var(x_j) · ‖W[:, j]‖²` over the input features `j` of linear ops the unit covers,
/// from the `moments` of their inputs (diagonal moments suffice), for the groups `scope`
/// accepts (the others are left unscored). A group that feeds no linear op by its input axis
/// scores 0 everywhere.
pub fn fluctuation(model: &Model, moments: &HashMap<ValueId, Moments>, scope: &dyn Fn(&Group) -> bool) -> Result<Scores> {
    let groups = model.groups.as_ref().ok_or_else(|| PassError::Config("fluctuation needs the groups: run `group` first".into()))?;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        if !scope(g) {
            out.push(GroupScores::default());
            continue;
        }
        // per member: per input feature, Var(x_j)·‖W[:, j]‖²
        let mut members: Vec<(usize, Vec<f64>)> = Vec::new();
        for (a, name, x) in input_members(model, g) {
            let m = moments.get(&x).ok_or_else(|| PassError::Config(format!("no activation moments for the input of `{name}`")))?;
            let p = model.params.get(name.as_str()).ok_or_else(|| PassError::Config(format!("no parameter `{name}`")))?;
            let (rows, cols) = (p.shape[0], p.shape[1]);
            if m.dim != cols {
                return Err(PassError::Config(format!("`{name}`: moments of {} features for {cols} inputs", m.dim)));
            }
            let w = model.params.read_f32(&name)?;
            let mut norms = vec![0.0f64; cols];
            for r in 0..rows {
                for (n, &v) in norms.iter_mut().zip(&w[r * cols..(r + 1) * cols]) {
                    *n += f64::from(v) * f64::from(v);
                }
            }
            members.push((a, (0..cols).map(|j| m.variance(j) * norms[j]).collect()));
        }
        let of = |elements: &[prunec_ir::Element]| -> f64 {
            members
                .iter()
                .map(|(a, per)| g.indices_on(elements, *a).into_iter().flatten().map(|j| per.get(j).copied().unwrap_or(0.0)).sum::<f64>())
                .sum()
        };
        out.push(GroupScores {
            units: g.units.iter().map(|u| of(&u.elements)).collect(),
            sub_units: g.units.iter().map(|u| u.sub_units.iter().map(|s| of(s)).collect()).collect(),
        });
    }
    Ok(Scores { importance: crate::Importance::L2, aggregation: crate::Aggregation::Sum, groups: out })
}

/// A linear op of the pruned model whose input features `prune` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The op's name.
    pub name: String,
    /// The op in the pruned model.
    pub node: NodeId,
    /// Its data input in the unpruned model (whose moments the update reads).
    pub input: ValueId,
    /// Its weight.
    pub weight: String,
    /// Its weight in the unpruned model.
    pub original_weight: String,
    /// Its bias in the pruned model, when it has one.
    pub bias: Option<String>,
    /// Its bias in the unpruned model.
    pub original_bias: Option<String>,
    /// The input features kept, as indices of the unpruned op's.
    pub kept_cols: Vec<usize>,
    /// The output rows kept, as indices of the unpruned op's.
    pub kept_rows: Vec<usize>,
    /// The unpruned op's input features.
    pub inputs: usize,
}

/// The indices of `p`'s base tensor (the data it selects from) along `axis`.
fn base_indices(p: &Param, axis: usize) -> Vec<usize> {
    match &p.data {
        ParamData::View(v) => v.keep.get(axis).cloned().flatten().unwrap_or_else(|| (0..v.base_shape[axis]).collect()),
        _ => (0..p.shape[axis]).collect(),
    }
}

/// The positions in `original`'s indices of `pruned`'s (both of one base), or `None` when
/// `pruned` is not a selection of `original`.
fn positions(original: &[usize], pruned: &[usize]) -> Option<Vec<usize>> {
    let at: HashMap<usize, usize> = original.iter().enumerate().map(|(i, &b)| (b, i)).collect();
    pruned.iter().map(|b| at.get(b).copied()).collect()
}

/// The linear ops of `pruned` whose input features were removed from `original` (the same
/// model before `prune`), in topological order.
pub fn targets(original: &Model, pruned: &Model) -> Result<Vec<Target>> {
    let by_name: HashMap<&str, NodeId> = original
        .graph
        .node_ids()
        .into_iter()
        .filter_map(|id| original.graph.node(id).ok().map(|n| (n.name.as_str(), id)))
        .collect();
    let mut out = Vec::new();
    for id in pruned.graph.topological_order()? {
        let node = pruned.graph.node(id)?;
        if !matches!(node.op, Op::Linear) {
            continue;
        }
        let Some(&orig) = by_name.get(node.name.as_str()) else { continue };
        let (ins_p, ins_o) = (pruned.graph.inputs(id), original.graph.inputs(orig));
        let (Some(weight), Some(weight_o)) = (param_at(pruned, ins_p.get(1)), param_at(original, ins_o.get(1))) else { continue };
        let (Some(wp), Some(wo)) = (pruned.params.get(&weight), original.params.get(&weight_o)) else { continue };
        if wp.shape.len() != 2 || wo.shape.len() != 2 || wp.shape[1] == wo.shape[1] {
            continue;
        }
        let not_selection = || PassError::Config(format!("`{weight}` is not a selection of the unpruned model's `{weight_o}`"));
        let kept_cols = positions(&base_indices(wo, 1), &base_indices(wp, 1)).ok_or_else(not_selection)?;
        let kept_rows = positions(&base_indices(wo, 0), &base_indices(wp, 0)).ok_or_else(not_selection)?;
        out.push(Target {
            name: node.name.clone(),
            node: id,
            input: *ins_o.first().ok_or_else(|| PassError::Config(format!("`{}` has no input", node.name)))?,
            bias: param_at(pruned, ins_p.get(2)),
            original_bias: param_at(original, ins_o.get(2)),
            weight,
            original_weight: weight_o,
            kept_cols,
            kept_rows,
            inputs: wo.shape[1],
        });
    }
    Ok(out)
}

/// The weights and bias of one target: `[out, in]` row-major and `[out]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// The weight, `[out, in]`.
    pub weight: Vec<f32>,
    /// The bias, `[out]` (zeros when the op has none).
    pub bias: Vec<f32>,
}

/// A target's update and its effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Solved {
    /// The new weights and bias.
    pub linear: Linear,
    /// The mean squared error per token of the pruned op's output against the unpruned op's,
    /// over the calibration moments, before the update.
    pub error_before: f64,
    /// The same after it.
    pub error_after: f64,
    /// The mean squared output of the unpruned op (what the errors compare to).
    pub energy: f64,
}

/// Runs `f(i)` for `i` in `0..n`, spread over the machine's cores; the results in order.
fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(n.max(1));
    if threads <= 1 {
        return (0..n).map(f).collect();
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || (t * chunk..((t + 1) * chunk).min(n)).map(f).collect::<Vec<T>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

/// The augmented second moment `E[x̃ x̃ᵀ]`, `x̃ = [x, 1]`, at `(i, j)` (indices up to `dim`).
fn augmented(m: &Moments, i: usize, j: usize) -> f64 {
    let (d, n) = (m.dim, m.tokens.max(1) as f64);
    match (i == d, j == d) {
        (true, true) => 1.0,
        (true, false) => m.sum[j] / n,
        (false, true) => m.sum[i] / n,
        (false, false) => m.gram[i * d + j] / n,
    }
}

/// In-place Cholesky factorisation of the symmetric positive definite `a` (`n × n`, row-major):
/// its lower triangle becomes `L` with `a = L Lᵀ` (the upper triangle is left as it was).
fn cholesky(a: &mut [f64], n: usize) -> Result<()> {
    for i in 0..n {
        let (above, rest) = a.split_at_mut(i * n);
        let row = &mut rest[..n];
        for j in 0..i {
            let s: f64 = row[..j].iter().zip(&above[j * n..j * n + j]).map(|(x, y)| x * y).sum();
            row[j] = (row[j] - s) / above[j * n + j];
        }
        let d = row[i] - row[..i].iter().map(|v| v * v).sum::<f64>();
        if !(d > 0.0 && d.is_finite()) {
            return Err(PassError::Config(format!("the damped normal equation is not positive definite (pivot {i}: {d:e})")));
        }
        row[i] = d.sqrt();
    }
    Ok(())
}

/// Solves `(L Lᵀ) X = B` for `X` (`n × k`, row-major, in place of `b`), `l` from [`cholesky`].
fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64], k: usize) {
    // L Y = B
    for i in 0..n {
        let (before, rest) = b.split_at_mut(i * k);
        let row = &mut rest[..k];
        for (p, &lip) in l[i * n..i * n + i].iter().enumerate() {
            if lip != 0.0 {
                row.iter_mut().zip(&before[p * k..(p + 1) * k]).for_each(|(r, &y)| *r -= lip * y);
            }
        }
        let d = l[i * n + i];
        row.iter_mut().for_each(|r| *r /= d);
    }
    // Lᵀ X = Y
    for i in (0..n).rev() {
        let (upto, after) = b.split_at_mut((i + 1) * k);
        let row = &mut upto[i * k..];
        for p in i + 1..n {
            let lpi = l[p * n + i];
            if lpi != 0.0 {
                row.iter_mut().zip(&after[(p - i - 1) * k..(p - i) * k]).for_each(|(r, &x)| *r -= lpi * x);
            }
        }
        let d = l[i * n + i];
        row.iter_mut().for_each(|r| *r /= d);
    }
}

/// `Θ` (`(s+1) × out`) as weights `[out, s]` and bias `[out]`.
fn unpack(theta: &[f64], s: usize, out: usize) -> Linear {
    let mut weight = vec![0f32; out * s];
    for a in 0..s {
        for o in 0..out {
            weight[o * s + a] = theta[a * out + o] as f32;
        }
    }
    Linear { weight, bias: (0..out).map(|o| theta[s * out + o] as f32).collect() }
}

/// The update of one linear op: `full` its unpruned weights and bias (rows already those
/// kept), `pruned` its pruned ones, `kept` the input features kept, `m` the moments of the
/// unpruned op's input (full second moment for least squares; the diagonal suffices for the
/// bias), `damp` the relative damping of least squares.
pub fn solve(m: &Moments, full: &Linear, pruned: &Linear, kept: &[usize], how: Reconstruction, damp: f64) -> Result<Solved> {
    let (d, s) = (m.dim, kept.len());
    let out = full.bias.len();
    if full.weight.len() != out * d || pruned.weight.len() != out * s || pruned.bias.len() != out || kept.iter().any(|&j| j >= d) {
        return Err(PassError::Config(format!(
            "reconstruction: weights of {} and {} values, {} kept of {d} features, {out} outputs do not agree",
            full.weight.len(),
            pruned.weight.len(),
            s
        )));
    }
    if m.tokens == 0 {
        return Err(PassError::Config("reconstruction: no calibration token was seen".into()));
    }
    if how == Reconstruction::LeastSquares && !m.full {
        return Err(PassError::Config("least squares needs the full second moment of the inputs".into()));
    }
    // Φ: (d+1) × out, the unpruned weights transposed and the bias
    let mut phi = vec![0f64; (d + 1) * out];
    for o in 0..out {
        for j in 0..d {
            phi[j * out + o] = f64::from(full.weight[o * d + j]);
        }
        phi[d * out + o] = f64::from(full.bias[o]);
    }
    let mut theta0 = vec![0f64; (s + 1) * out];
    for o in 0..out {
        for a in 0..s {
            theta0[a * out + o] = f64::from(pruned.weight[o * s + a]);
        }
        theta0[s * out + o] = f64::from(pruned.bias[o]);
    }
    // S' = kept ∪ {the constant}
    let idx: Vec<usize> = kept.iter().copied().chain(std::iter::once(d)).collect();
    let removed: Vec<usize> = {
        let mut is_kept = vec![false; d];
        kept.iter().for_each(|&j| is_kept[j] = true);
        (0..d).filter(|&j| !is_kept[j]).collect()
    };
    // G Φ (E[x̃ x̃ᵀ] Φ), row by row, and E‖x̃ Φ‖²
    let gphi: Vec<f64> = if m.full {
        parallel(d + 1, |i| {
            let mut row = vec![0f64; out];
            for j in 0..=d {
                let g = augmented(m, i, j);
                if g != 0.0 {
                    row.iter_mut().zip(&phi[j * out..(j + 1) * out]).for_each(|(r, &p)| *r += g * p);
                }
            }
            row
        })
        .concat()
    } else {
        Vec::new()
    };
    let energy = if m.full { phi.iter().zip(&gphi).map(|(p, g)| p * g).sum() } else { f64::NAN };
    let mut solved_error = None;
    let theta = match how {
        Reconstruction::Bias => {
            let mut t = theta0.clone();
            for o in 0..out {
                let shift: f64 = removed.iter().map(|&j| phi[j * out + o] * m.mean(j)).sum();
                t[s * out + o] += shift;
            }
            t
        }
        Reconstruction::LeastSquares => {
            let n = s + 1;
            let mut a = vec![0f64; n * n];
            for (p, &i) in idx.iter().enumerate() {
                for (q, &j) in idx.iter().enumerate() {
                    a[p * n + q] = augmented(m, i, j);
                }
            }
            let mean_diag = if s > 0 { (0..s).map(|p| a[p * n + p]).sum::<f64>() / s as f64 } else { 1.0 };
            let lambda = damp * if mean_diag > 0.0 { mean_diag } else { 1.0 };
            for p in 0..n {
                a[p * n + p] += lambda;
            }
            let mut rhs = vec![0f64; n * out];
            // C = E[z x̃ᵀ] Φ: the rows of G Φ at S'
            for (p, &i) in idx.iter().enumerate() {
                for o in 0..out {
                    rhs[p * out + o] = gphi[i * out + o] + lambda * theta0[p * out + o];
                }
            }
            let c_damped = rhs.clone();
            cholesky(&mut a, n)?;
            cholesky_solve(&a, n, &mut rhs, out);
            // A₀ Θ = C + λ Θ₀ − λ Θ at the solution: its quadratic term without A₀ again
            let quad: f64 = rhs.iter().zip(&c_damped).map(|(t, c)| t * c).sum::<f64>()
                - lambda * rhs.iter().map(|t| t * t).sum::<f64>();
            let cross: f64 = idx.iter().enumerate().map(|(p, &i)| (0..out).map(|o| rhs[p * out + o] * gphi[i * out + o]).sum::<f64>()).sum();
            solved_error = Some(energy - 2.0 * cross + quad);
            rhs
        }
    };
    let error_before = sparse_error(m, &idx, &theta0, &phi, out);
    let error_after = solved_error.unwrap_or_else(|| sparse_error(m, &idx, &theta, &phi, out));
    Ok(Solved { linear: unpack(&theta, s, out), error_before, error_after, energy })
}

/// `E ‖z Θ − x̃ Φ‖²` per token (`z = x̃` at `idx`), summed over the rows where `Φ` and the
/// embedded `Θ` differ (few when `Θ` is `Φ` pruned); NaN without the full second moment.
fn sparse_error(m: &Moments, idx: &[usize], theta: &[f64], phi: &[f64], out: usize) -> f64 {
    if !m.full {
        return f64::NAN;
    }
    let d = m.dim;
    let mut delta = phi.to_vec();
    for (a, &i) in idx.iter().enumerate() {
        for o in 0..out {
            delta[i * out + o] -= theta[a * out + o];
        }
    }
    let rows: Vec<usize> = (0..=d).filter(|&i| delta[i * out..(i + 1) * out].iter().any(|&v| v != 0.0)).collect();
    parallel(rows.len(), |p| {
        let i = rows[p];
        rows.iter()
            .map(|&j| augmented(m, i, j) * delta[i * out..(i + 1) * out].iter().zip(&delta[j * out..(j + 1) * out]).map(|(x, y)| x * y).sum::<f64>())
            .sum::<f64>()
    })
    .into_iter()
    .sum()
}

/// Applies `solved` to target `t` of `model`: its weight becomes the new values, its bias the
/// new bias (a bias parameter `<weight stem>.bias` added to the op when it had none).
pub fn apply(model: &mut Model, t: &Target, solved: &Linear) -> Result<()> {
    let w = model.params.get(&t.weight).ok_or_else(|| PassError::Config(format!("no parameter `{}`", t.weight)))?;
    let (shape, dtype) = (w.shape.clone(), w.dtype);
    let out = shape[0];
    let mut weight = Param::owned(shape, solved.weight.clone())?;
    weight.dtype = dtype;
    model.params.insert(t.weight.clone(), weight);
    match &t.bias {
        Some(b) => {
            let mut bias = Param::owned(vec![out], solved.bias.clone())?;
            bias.dtype = model.params.get(b).map_or(dtype, |p| p.dtype);
            model.params.insert(b.clone(), bias);
        }
        None => {
            let name = match t.weight.strip_suffix(".weight") {
                Some(stem) => format!("{stem}.bias"),
                None => format!("{}.bias", t.weight),
            };
            model.add_linear_bias(t.node, &name, solved.bias.clone(), dtype)?;
        }
    }
    Ok(())
}

/// The unpruned and pruned weights of target `t` (rows of the unpruned op limited to those
/// kept; a missing bias as zeros).
pub fn weights_of(original: &Model, pruned: &Model, t: &Target) -> Result<(Linear, Linear)> {
    let wo = original.params.read_f32(&t.original_weight)?;
    let d = t.inputs;
    let mut full = Vec::with_capacity(t.kept_rows.len() * d);
    for &r in &t.kept_rows {
        full.extend_from_slice(&wo[r * d..(r + 1) * d]);
    }
    let out = t.kept_rows.len();
    let bias_full = match &t.original_bias {
        Some(b) => {
            let v = original.params.read_f32(b)?;
            t.kept_rows.iter().map(|&r| v[r]).collect()
        }
        None => vec![0.0; out],
    };
    let wp = pruned.params.read_f32(&t.weight)?.as_ref().clone();
    let bias_p = match &t.bias {
        Some(b) => pruned.params.read_f32(b)?.as_ref().clone(),
        None => vec![0.0; out],
    };
    Ok((Linear { weight: full, bias: bias_full }, Linear { weight: wp, bias: bias_p }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prunec_ir::rng::SplitMix64;

    /// `tokens` inputs of `d` correlated features (a shared factor, an offset per feature) and
    /// an op of `out` outputs with a bias.
    fn case(tokens: usize, d: usize, out: usize, seed: u64) -> (Vec<Vec<f32>>, Linear) {
        let mut rng = SplitMix64::new(seed);
        let offsets: Vec<f64> = (0..d).map(|_| rng.normal_pair().0).collect();
        let xs = (0..tokens)
            .map(|_| {
                let shared = rng.normal_pair().0;
                (0..d).map(|j| (offsets[j] + shared * (j % 3) as f64 + 0.5 * rng.normal_pair().0) as f32).collect()
            })
            .collect();
        let weight = (0..out * d).map(|_| rng.normal_pair().0 as f32).collect();
        let bias = (0..out).map(|_| rng.normal_pair().0 as f32).collect();
        (xs, Linear { weight, bias })
    }

    fn moments(xs: &[Vec<f32>], full: bool) -> Moments {
        let d = xs[0].len();
        let mut m = Moments::new(d, full);
        for x in xs {
            let gram: Vec<f32> = if full { (0..d * d).map(|k| x[k / d] * x[k % d]).collect() } else { x.iter().map(|v| v * v).collect() };
            m.add(1, x, &gram).unwrap();
        }
        m
    }

    fn pruned(full: &Linear, d: usize, kept: &[usize]) -> Linear {
        let out = full.bias.len();
        let weight = (0..out).flat_map(|o| kept.iter().map(move |&j| full.weight[o * d + j])).collect();
        Linear { weight, bias: full.bias.clone() }
    }

    /// The mean squared error over the tokens themselves (not the moments).
    fn measured(xs: &[Vec<f32>], full: &Linear, new: &Linear, kept: &[usize]) -> f64 {
        let d = xs[0].len();
        let out = full.bias.len();
        let mut sum = 0.0;
        for x in xs {
            for o in 0..out {
                let y: f64 = (0..d).map(|j| f64::from(full.weight[o * d + j]) * f64::from(x[j])).sum::<f64>() + f64::from(full.bias[o]);
                let z: f64 = kept.iter().enumerate().map(|(a, &j)| f64::from(new.weight[o * kept.len() + a]) * f64::from(x[j])).sum::<f64>()
                    + f64::from(new.bias[o]);
                sum += (y - z).powi(2);
            }
        }
        sum / xs.len() as f64
    }

    #[test]
    fn least_squares_and_bias_never_raise_the_error_and_report_it_exactly() {
        let (d, out) = (12, 5);
        let (xs, full) = case(200, d, out, 7);
        let m = moments(&xs, true);
        let kept: Vec<usize> = (0..d).filter(|j| j % 4 != 1).collect();
        let before = pruned(&full, d, &kept);
        for how in [Reconstruction::Bias, Reconstruction::LeastSquares] {
            for damp in [1e-6, 0.01, 1.0, 100.0] {
                let s = solve(&m, &full, &before, &kept, how, damp).unwrap();
                let (was, now) = (measured(&xs, &full, &before, &kept), measured(&xs, &full, &s.linear, &kept));
                assert!((s.error_before - was).abs() <= 1e-4 * was.max(1.0), "{how:?}: reported {} measured {was}", s.error_before);
                assert!((s.error_after - now).abs() <= 1e-4 * was.max(1.0), "{how:?} damp {damp}: reported {} measured {now}", s.error_after);
                assert!(now <= was * (1.0 + 1e-6), "{how:?} damp {damp}: the error rose from {was} to {now}");
            }
        }
        // least squares with little damping does far better than the bias alone
        let ls = solve(&m, &full, &before, &kept, Reconstruction::LeastSquares, 1e-6).unwrap();
        let bias = solve(&m, &full, &before, &kept, Reconstruction::Bias, 0.0).unwrap();
        assert!(ls.error_after < 0.9 * bias.error_after, "ls {} bias {}", ls.error_after, bias.error_after);
        assert!(bias.error_after < bias.error_before);
    }

    #[test]
    fn with_nothing_removed_the_solution_is_the_unpruned_op() {
        let (d, out) = (8, 3);
        let (xs, full) = case(100, d, out, 3);
        let m = moments(&xs, true);
        let kept: Vec<usize> = (0..d).collect();
        let s = solve(&m, &full, &full, &kept, Reconstruction::LeastSquares, 0.01).unwrap();
        for (a, b) in s.linear.weight.iter().chain(&s.linear.bias).zip(full.weight.iter().chain(&full.bias)) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} != {b}");
        }
        assert!(s.error_after.abs() < 1e-8 && s.error_before.abs() < 1e-8);
        let b = solve(&m, &full, &full, &kept, Reconstruction::Bias, 0.01).unwrap();
        assert_eq!(b.linear, full, "the bias of an op that lost nothing does not move");
    }

    #[test]
    fn the_bias_reads_the_diagonal_moments_and_least_squares_refuses_them() {
        let (d, out) = (6, 2);
        let (xs, full) = case(50, d, out, 5);
        let (diag, whole) = (moments(&xs, false), moments(&xs, true));
        let kept = [0, 2, 3, 5];
        let before = pruned(&full, d, &kept);
        let a = solve(&diag, &full, &before, &kept, Reconstruction::Bias, 0.0).unwrap();
        let b = solve(&whole, &full, &before, &kept, Reconstruction::Bias, 0.0).unwrap();
        assert_eq!(a.linear, b.linear);
        assert!(a.error_after.is_nan());
        let e = solve(&diag, &full, &before, &kept, Reconstruction::LeastSquares, 0.01).unwrap_err();
        assert!(e.to_string().contains("full second moment"), "{e}");
    }
}
