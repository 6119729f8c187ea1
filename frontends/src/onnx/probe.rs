//! Evaluating the structural parts of a graph — what depends on the sizes only (positions,
//! masks), never on token ids or weights — at concrete probe sizes. A rule that must know what
//! such a value *is* (dynamo's causal mask goes through `CumSum` and `GatherND` pairs to allow
//! packed sequences) asks for its values at a few sizes instead of matching its every node:
//! [`rotary`] and [`is_causal`]. [`rope_theta`] tells θ from a table's frequencies.

use std::collections::HashMap;

use egg::{Id, Language};
use prunec_ir::broadcast;

use super::language::{Constant, EGraph, Term};
use super::symbolic::eval_dim;
use super::tensor::checked_product;

/// A dense array of numbers (integers and booleans as 0/1 too), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f64>,
}

/// The most elements a probe builds.
const LIMIT: usize = 1 << 20;

/// The element count of `shape`, when it fits in `usize` (a hostile file's sizes may not).
fn numel(shape: &[usize]) -> Option<usize> {
    checked_product(shape.iter().copied())
}

/// The element count of `shape`, when it is at most [`LIMIT`]: what a probe may build.
fn small(shape: &[usize]) -> Option<usize> {
    numel(shape).filter(|&n| n <= LIMIT)
}

impl Array {
    fn scalar(v: f64) -> Array {
        Array { shape: vec![], data: vec![v] }
    }

    fn vector(v: Vec<f64>) -> Array {
        Array { shape: vec![v.len()], data: v }
    }

    /// Whether the data fill the shape exactly.
    fn is_whole(&self) -> bool {
        numel(&self.shape) == Some(self.data.len())
    }

    /// Row-major strides. They saturate: a shape with a zero axis may have a product of its
    /// other axes past `usize`, and then no index is ever taken through them.
    fn strides(shape: &[usize]) -> Vec<usize> {
        let mut s = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1].saturating_mul(shape[i + 1]);
        }
        s
    }

    /// The value at output index `idx` of this array broadcast to `shape`.
    fn at_broadcast(&self, idx: &[usize], shape: &[usize]) -> f64 {
        let off = shape.len() - self.shape.len();
        let st = Self::strides(&self.shape);
        let mut k = 0;
        for (i, &n) in self.shape.iter().enumerate() {
            if n != 1 {
                k += idx[i + off] * st[i];
            }
        }
        self.data[k]
    }

    fn index(mut k: usize, shape: &[usize]) -> Vec<usize> {
        let mut idx = vec![0; shape.len()];
        for i in (0..shape.len()).rev() {
            idx[i] = k % shape[i].max(1);
            k /= shape[i].max(1);
        }
        idx
    }
}

fn zip(xs: &[&Array], f: impl Fn(&[f64]) -> f64) -> Option<Array> {
    let mut shape = vec![];
    for x in xs {
        shape = broadcast(&shape, &x.shape)?;
    }
    let n = small(&shape)?;
    let data = (0..n)
        .map(|k| {
            let idx = Array::index(k, &shape);
            let v: Vec<f64> = xs.iter().map(|x| x.at_broadcast(&idx, &shape)).collect();
            f(&v)
        })
        .collect();
    Some(Array { shape, data })
}

/// Evaluates e-class `id` at `sizes`; `None` when it depends on inputs or weights, or holds an
/// op this evaluator does not know.
pub fn eval(eg: &EGraph, id: Id, sizes: &HashMap<String, i64>) -> Option<Array> {
    let mut memo = HashMap::new();
    eval_in(eg, id, sizes, &mut memo, 0)
}

/// The value of a leaf's constant: a scalar, a list, a symbolic shape at `sizes`, float values.
fn constant_value(constant: &Constant, sizes: &HashMap<String, i64>) -> Option<Array> {
    match constant {
        Constant::Float(v) => Some(Array::scalar(v.f64())),
        Constant::Int(v) => Some(Array::scalar(*v as f64)),
        Constant::Ints(v) => Some(Array::vector(v.iter().map(|&x| x as f64).collect())),
        Constant::Dims(dims) => {
            let v: Option<Vec<f64>> = dims.iter().map(|d| eval_dim(d, sizes).map(|x| x as f64)).collect();
            v.map(Array::vector)
        }
        Constant::Floats(t) => Some(Array { shape: t.shape.clone(), data: t.values.iter().map(|&x| f64::from(x)).collect() }).filter(Array::is_whole),
    }
}

fn eval_in(eg: &EGraph, id: Id, sizes: &HashMap<String, i64>, memo: &mut HashMap<Id, Option<Array>>, depth: usize) -> Option<Array> {
    let id = eg.find(id);
    if let Some(v) = memo.get(&id) {
        return v.clone();
    }
    if depth > 200 {
        return None;
    }
    memo.insert(id, None); // cycles evaluate to nothing
    let mut result = None;
    for node in &eg[id].nodes {
        if node.is_leaf() {
            result = eg[id].data.constant.as_ref().and_then(|c| constant_value(c, sizes));
        } else {
            let children = egg::Language::children(node);
            let mut args = Vec::with_capacity(children.len());
            for &c in children {
                match eval_in(eg, c, sizes, memo, depth + 1) {
                    Some(a) => args.push(a),
                    None => break,
                }
            }
            if args.len() == children.len() {
                // a value whose data does not fill its shape (axes out of range in a
                // malformed graph) is no value
                result = apply(node, &args).filter(Array::is_whole);
            }
        }
        if result.is_some() {
            break;
        }
    }
    memo.insert(id, result.clone());
    result
}

fn scalar_of(a: &Array) -> Option<i64> {
    a.data.first().map(|&v| v as i64)
}

fn ints_of(a: &Array) -> Vec<i64> {
    a.data.iter().map(|&v| v as i64).collect()
}

/// Axis `v` of an array of `rank` axes (negative counts from the end), when there is one.
fn axis_of(v: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if v < 0 { v + r } else { v };
    (0..r).contains(&a).then_some(a as usize)
}

/// `x` with its axes permuted by `perm`; `None` when `perm` is not a permutation of them.
fn transpose(x: &Array, perm: &[i64]) -> Option<Array> {
    let perm: Vec<usize> = perm.iter().map(|&p| p.max(0) as usize).collect();
    let r = x.shape.len();
    let mut seen = vec![false; r];
    if perm.len() != r || !perm.iter().all(|&p| p < r && !std::mem::replace(&mut seen[p], true)) {
        return None;
    }
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let st = Array::strides(&x.shape);
    let data = (0..x.data.len())
        .map(|k| {
            let idx = Array::index(k, &shape);
            x.data[idx.iter().zip(&perm).map(|(i, &p)| i * st[p]).sum::<usize>()]
        })
        .collect();
    Some(Array { shape, data })
}

/// The value of `op` applied to `a`, its operands' values (as many as it has children).
fn apply(op: &Term, a: &[Array]) -> Option<Array> {
    let b = |f: fn(f64, f64) -> f64| zip(&[&a[0], &a[1]], |v| f(v[0], v[1]));
    let truth = |x: bool| if x { 1.0 } else { 0.0 };
    match op {
        Term::Add(_) => b(|x, y| x + y),
        Term::Sub(_) => b(|x, y| x - y),
        Term::Mul(_) => b(|x, y| x * y),
        Term::Div(_) => b(|x, y| x / y),
        Term::Max(_) => b(f64::max),
        Term::Min(_) => b(f64::min),
        Term::Equal(_) => zip(&[&a[0], &a[1]], |v| truth(v[0] == v[1])),
        Term::LessOrEqual(_) => zip(&[&a[0], &a[1]], |v| truth(v[0] <= v[1])),
        Term::Less(_) => zip(&[&a[0], &a[1]], |v| truth(v[0] < v[1])),
        Term::Greater(_) => zip(&[&a[0], &a[1]], |v| truth(v[0] > v[1])),
        Term::And(_) => zip(&[&a[0], &a[1]], |v| truth(v[0] != 0.0 && v[1] != 0.0)),
        Term::Or(_) => zip(&[&a[0], &a[1]], |v| truth(v[0] != 0.0 || v[1] != 0.0)),
        Term::Not(_) => zip(&[&a[0]], |v| truth(v[0] == 0.0)),
        Term::IsNaN(_) => zip(&[&a[0]], |v| truth(v[0].is_nan())),
        Term::Neg(_) => zip(&[&a[0]], |v| -v[0]),
        Term::Cos(_) => zip(&[&a[0]], |v| v[0].cos()),
        Term::Sin(_) => zip(&[&a[0]], |v| v[0].sin()),
        Term::Where(_) => zip(&[&a[0], &a[1], &a[2]], |v| if v[0] != 0.0 { v[1] } else { v[2] }),
        Term::Cast(_) => Some(a[0].clone()),
        Term::Transpose(_) => transpose(&a[0], &ints_of(&a[1])),
        Term::SwapAxes12(_) => transpose(&a[0], &[0, 2, 1, 3]),
        Term::MatMul(_) => {
            // batch axes broadcast; [.., m, k] · [.., k, n]
            let (x, y) = (&a[0], &a[1]);
            let (rx, ry) = (x.shape.len(), y.shape.len());
            if rx < 2 || ry < 2 || x.shape[rx - 1] != y.shape[ry - 2] {
                return None;
            }
            let (m, k, n) = (x.shape[rx - 2], x.shape[rx - 1], y.shape[ry - 1]);
            let batch = broadcast(&x.shape[..rx - 2], &y.shape[..ry - 2])?;
            let nb = numel(&batch)?;
            small(&[nb, m, n])?;
            if numel(&[nb, m, k])? > LIMIT || numel(&[nb, k, n])? > LIMIT {
                return None;
            }
            let pick = |arr: &Array, b: usize| -> usize {
                // the offset of broadcast batch index `b` in `arr`'s own batch axes
                let own = &arr.shape[..arr.shape.len() - 2];
                let idx = Array::index(b, &batch);
                let off = batch.len() - own.len();
                let st = Array::strides(own);
                own.iter().enumerate().map(|(i, &d)| if d == 1 { 0 } else { idx[i + off] * st[i] }).sum::<usize>()
            };
            let mut data = Vec::with_capacity(nb * m * n);
            for b in 0..nb {
                let (bx, by) = (pick(x, b) * m * k, pick(y, b) * k * n);
                for i in 0..m {
                    for j in 0..n {
                        data.push((0..k).map(|l| x.data[bx + i * k + l] * y.data[by + l * n + j]).sum());
                    }
                }
            }
            let mut shape = batch;
            shape.extend([m, n]);
            Some(Array { shape, data })
        }
        Term::Range(_) => {
            let (s, l, d) = (a[0].data.first()?, a[1].data.first()?, a[2].data.first()?);
            if *d == 0.0 || ((l - s) / d) > LIMIT as f64 {
                return None;
            }
            let n = ((l - s) / d).ceil().max(0.0) as usize;
            Some(Array::vector((0..n).map(|k| s + k as f64 * d).collect()))
        }
        Term::Unsqueeze(_) => {
            let mut shape = a[0].shape.clone();
            let mut axes: Vec<usize> = ints_of(&a[1]).iter().map(|&x| x as usize).collect();
            axes.sort_unstable();
            for ax in axes {
                shape.insert(ax.min(shape.len()), 1);
            }
            Some(Array { shape, data: a[0].data.clone() })
        }
        Term::Squeeze(_) => {
            let axes: Vec<usize> = ints_of(&a[1]).iter().map(|&x| x as usize).collect();
            let shape = a[0].shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect();
            Some(Array { shape, data: a[0].data.clone() })
        }
        Term::Reshape(_) => {
            let shape: Vec<usize> = ints_of(&a[1]).iter().map(|&x| x.max(0) as usize).collect();
            (numel(&shape)? == a[0].data.len()).then(|| Array { shape, data: a[0].data.clone() })
        }
        Term::Expand(_) => {
            let target: Vec<usize> = ints_of(&a[1]).iter().map(|&x| x.max(0) as usize).collect();
            let shape = broadcast(&a[0].shape, &target)?;
            let ones = Array { data: vec![0.0; small(&shape)?], shape };
            zip(&[&a[0], &ones], |v| v[0])
        }
        Term::Slice(_) => {
            let axis = axis_of(scalar_of(&a[1])?, a[0].shape.len())?;
            let n = *a[0].shape.get(axis)? as i64;
            let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
            let (s, e) = (clamp(scalar_of(&a[2])?), clamp(scalar_of(&a[3])?));
            let e = e.max(s);
            let mut shape = a[0].shape.clone();
            shape[axis] = e - s;
            let total = small(&shape)?;
            let data = (0..total)
                .map(|k| {
                    let mut idx = Array::index(k, &shape);
                    idx[axis] += s;
                    let st = Array::strides(&a[0].shape);
                    a[0].data[idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>()]
                })
                .collect();
            Some(Array { shape, data })
        }
        Term::Concat(_) => {
            let xs = a.get(1..)?;
            let rank = xs.first()?.shape.len();
            let axis = axis_of(scalar_of(&a[0])?, rank)?;
            let same_elsewhere = |x: &Array| {
                x.shape.len() == rank && x.shape.iter().zip(&xs[0].shape).enumerate().all(|(i, (p, q))| i == axis || p == q)
            };
            if !xs.iter().all(same_elsewhere) {
                return None;
            }
            let mut shape = xs[0].shape.clone();
            shape[axis] = xs.iter().try_fold(0usize, |n, x| n.checked_add(x.shape.get(axis).copied().unwrap_or(0)))?;
            let total = small(&shape)?;
            let data = (0..total)
                .map(|k| {
                    let mut idx = Array::index(k, &shape);
                    let mut part = 0;
                    while idx[axis] >= xs[part].shape[axis] {
                        idx[axis] -= xs[part].shape[axis];
                        part += 1;
                    }
                    let st = Array::strides(&xs[part].shape);
                    xs[part].data[idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>()]
                })
                .collect();
            Some(Array { shape, data })
        }
        Term::ConstantOfShape(_) => {
            let shape: Vec<usize> = ints_of(&a[0]).iter().map(|&x| x.max(0) as usize).collect();
            let n = small(&shape)?;
            Some(Array { data: vec![a[1].data.first().copied().unwrap_or(0.0); n], shape })
        }
        Term::Trilu(_) => {
            // keep the upper (j − i ≥ k) or lower (j − i ≤ k) triangle of the last two axes
            let r = a[0].shape.len();
            if r < 2 {
                return None;
            }
            let (k, upper) = (scalar_of(&a[1])?, scalar_of(&a[2])? != 0);
            let data = a[0]
                .data
                .iter()
                .enumerate()
                .map(|(n, &v)| {
                    let idx = Array::index(n, &a[0].shape);
                    let d = idx[r - 1] as i64 - idx[r - 2] as i64;
                    if (upper && d >= k) || (!upper && d <= k) {
                        v
                    } else {
                        0.0
                    }
                })
                .collect();
            Some(Array { shape: a[0].shape.clone(), data })
        }
        Term::CumSum(_) => {
            let axis = axis_of(scalar_of(&a[1])?, a[0].shape.len())?;
            let st = Array::strides(&a[0].shape);
            let mut data = a[0].data.clone();
            for k in 0..data.len() {
                let idx = Array::index(k, &a[0].shape);
                if idx[axis] > 0 {
                    data[k] += data[k - st[axis]];
                }
            }
            Some(Array { shape: a[0].shape.clone(), data })
        }
        Term::Gather(_) => {
            // data[.., idx, ..] along `axis` (a leaf, already non-negative)
            let (data, idx) = (&a[0], &a[1]);
            let axis = axis_of(scalar_of(&a[2])?, data.shape.len())?;
            let n = *data.shape.get(axis)?;
            let outer = numel(&data.shape[..axis])?;
            let inner = numel(&data.shape[axis + 1..])?;
            let mut shape = data.shape[..axis].to_vec();
            shape.extend_from_slice(&idx.shape);
            shape.extend_from_slice(&data.shape[axis + 1..]);
            small(&shape)?;
            let mut out = Vec::with_capacity(outer * idx.data.len() * inner);
            for o in 0..outer {
                for &i in &idx.data {
                    let i = if i < 0.0 { i + n as f64 } else { i };
                    if i < 0.0 || i as usize >= n {
                        return None;
                    }
                    let start = (o * n + i as usize) * inner;
                    out.extend_from_slice(&data.data[start..start + inner]);
                }
            }
            Some(Array { shape, data: out })
        }
        Term::GatherND(_) => {
            // batch_dims = 0: the last axis of the indices indexes the data's leading axes
            let (data, idx) = (&a[0], &a[1]);
            let m = *idx.shape.last()?;
            let mut shape: Vec<usize> = idx.shape[..idx.shape.len() - 1].to_vec();
            shape.extend_from_slice(data.shape.get(m..)?);
            small(&shape)?;
            let inner = numel(&data.shape[m..])?;
            let st = Array::strides(&data.shape);
            let rows = idx.data.len() / m.max(1);
            let mut out = Vec::with_capacity(rows * inner);
            for r in 0..rows {
                let mut off = 0;
                for (j, (&n, &stride)) in data.shape.iter().zip(&st).take(m).enumerate() {
                    let mut v = idx.data[r * m + j] as i64;
                    if v < 0 {
                        v += n as i64;
                    }
                    if v < 0 || v as usize >= n {
                        return None;
                    }
                    off += v as usize * stride;
                }
                out.extend_from_slice(&data.data[off..off + inner]);
            }
            Some(Array { shape, data: out })
        }
        _ => None,
    }
}

/// `θ` of inverse frequencies `θ^(−2i/d)`, `d` = 2·len, when they are those.
pub fn rope_theta(inv: &[f32]) -> Option<f64> {
    let d = 2 * inv.len();
    if inv.len() < 2 || (inv[0] - 1.0).abs() > 1e-6 {
        return None;
    }
    let theta = f64::from(inv[1]).powf(-(d as f64) / 2.0);
    let ok = inv.iter().enumerate().all(|(i, &v)| {
        let want = theta.powf(-2.0 * i as f64 / d as f64);
        (f64::from(v) - want).abs() <= 1e-4 * want.max(1e-30)
    });
    ok.then_some(theta)
}

/// θ and the rotated width of a pair of rotary tables `cos`, `sin` (broadcast over leading
/// axes, `[.., seq, d]`), when at every probe size they are `cos(t·θ^(−2i/d))` and
/// `sin(t·θ^(−2i/d))` for positions `t = 0..seq`, the `d/2` frequencies repeated over both
/// halves (HF's `cat(freqs, freqs)`). Whatever computes them — a `Range` or the
/// `position_ids` input, a `Mul` or a `MatMul` by the inverse frequencies — is evaluated.
pub fn rotary(eg: &EGraph, cos: Id, sin: Id) -> Option<(f64, usize)> {
    let mut found = None;
    for &(batch, seq) in &[(2, 5), (1, 3)] {
        let sizes: HashMap<String, i64> = [("batch".to_string(), batch), ("seq".to_string(), seq)].into_iter().collect();
        let (c, s) = (eval(eg, cos, &sizes)?, eval(eg, sin, &sizes)?);
        let r = c.shape.len();
        if r < 2 || c.shape != s.shape || c.shape[r - 2] != seq as usize {
            return None;
        }
        let d = c.shape[r - 1];
        if d < 2 || d % 2 != 0 {
            return None;
        }
        let half = d / 2;
        // the frequencies from position 1 of the first leading index
        let inv: Vec<f32> = (0..half).map(|i| s.data[d + i].atan2(c.data[d + i]) as f32).collect();
        let theta = rope_theta(&inv)?;
        let ok = c.data.iter().zip(&s.data).enumerate().all(|(k, (&cv, &sv))| {
            let idx = Array::index(k, &c.shape);
            let (t, i) = (idx[r - 2] as f64, idx[r - 1] % half);
            let angle = t * theta.powf(-2.0 * i as f64 / d as f64);
            (cv - angle.cos()).abs() < 1e-4 && (sv - angle.sin()).abs() < 1e-4
        });
        if !ok || found.is_some_and(|f| f != (theta, d)) {
            return None;
        }
        found = Some((theta, d));
    }
    found
}

/// Whether `cond` is the causal mask (key position ≤ query position over the last two axes,
/// the same for every leading index) at every probe size.
pub fn is_causal(eg: &EGraph, cond: Id) -> bool {
    [(2, 5), (1, 3), (3, 1)].iter().all(|&(batch, seq)| {
        let sizes: HashMap<String, i64> = [("batch".to_string(), batch), ("seq".to_string(), seq)].into_iter().collect();
        let Some(m) = eval(eg, cond, &sizes) else { return false };
        let r = m.shape.len();
        if r < 2 || m.shape[r - 1] != seq as usize || m.shape[r - 2] != seq as usize {
            return false;
        }
        m.data.iter().enumerate().all(|(k, &v)| {
            let idx = Array::index(k, &m.shape);
            (v != 0.0) == (idx[r - 1] <= idx[r - 2])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use egg::{FromOp, RecExpr};
    use prunec_ir::Dim;

    use crate::onnx::language::Tables;

    fn causal(expr: &str, tables: &Tables) -> bool {
        let expr: RecExpr<Term> = expr.parse().unwrap();
        let mut eg = EGraph::new(tables.clone());
        let root = eg.add_expr(&expr);
        is_causal(&eg, root)
    }

    /// The op called `name` with `arity` operands (which `apply` does not read).
    fn op(name: &str, arity: usize) -> Term {
        Term::from_op(name, vec![Id::from(0); arity]).unwrap()
    }

    #[test]
    fn hostile_sizes_give_no_value_and_no_panic() {
        let big = (1u64 << 40) as f64;
        let sizes_of = |v: &[f64]| Array::vector(v.to_vec());
        // a shape whose product passes usize, with no data (a zero axis) or none at all
        assert_eq!(apply(&op("ConstantOfShape", 2), &[sizes_of(&[big, big, big]), Array::scalar(1.0)]), None);
        assert_eq!(apply(&op("Reshape", 2), &[Array::vector(vec![]), sizes_of(&[big, big, big, 0.0])]), None);
        let empty = apply(&op("Reshape", 2), &[Array::vector(vec![]), sizes_of(&[0.0, big, big])]).unwrap();
        assert_eq!(apply(&op("Transpose", 2), &[empty.clone(), sizes_of(&[2.0, 1.0, 0.0])]).map(|a| a.data.len()), Some(0));
        assert_eq!(apply(&op("Expand", 2), &[Array::scalar(1.0), sizes_of(&[big, big, big])]), None);
        // a repeated axis is no permutation
        let x = Array { shape: vec![2, 3], data: (0..6).map(f64::from).collect() };
        assert_eq!(apply(&op("Transpose", 2), &[x, sizes_of(&[0.0, 0.0])]), None);
        // a concatenation of nothing
        assert_eq!(apply(&op("Concat", 1), &[Array::scalar(0.0)]), None);
    }

    #[test]
    fn swapping_axes_1_and_2_is_a_transpose() {
        let x = Array { shape: vec![1, 2, 3, 1], data: (0..6).map(f64::from).collect() };
        let swapped = apply(&op("SwapAxes12", 1), std::slice::from_ref(&x)).unwrap();
        assert_eq!(swapped.shape, [1, 3, 2, 1]);
        assert_eq!(swapped.data, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(apply(&op("Transpose", 2), &[x, Array::vector(vec![0.0, 2.0, 1.0, 3.0])]), Some(swapped));
    }

    #[test]
    fn causal_masks_are_told_from_others() {
        let mut tables = Tables::default();
        tables.shape_leaf(vec![Dim::seq()]);
        let k = "(Unsqueeze (Range i:0 s:0 i:1) i:[0])"; // [1, seq]: key index on the last axis
        let q = "(Unsqueeze (Range i:0 s:0 i:1) i:[1])"; // [seq, 1]: query index
        assert!(causal(&format!("(LessOrEqual {k} {q})"), &tables));
        assert!(!causal(&format!("(LessOrEqual {q} {k})"), &tables), "anti-causal");
        assert!(!causal(&format!("(Less {k} {q})"), &tables), "a token must see itself");
        // a sliding window of 2 is not the causal mask
        let window = format!("(And (LessOrEqual {k} {q}) (Less (Sub {q} {k}) i:2))");
        assert!(!causal(&window, &tables));
        // the packed-sequence check of torch.export's mask: equal cumulative sums pass
        let packed = format!("(And (LessOrEqual {k} {q}) (Equal (CumSum {k} i:-1) (CumSum {k} i:-1)))");
        assert!(causal(&packed, &tables));
        // the lower triangle of a square of ones (Trilu, upper = 0): causal; the upper one not
        tables.shape_leaf(vec![Dim::seq(), Dim::seq()]);
        assert!(causal("(Trilu (ConstantOfShape s:1 f:1) i:0 i:0)", &tables));
        assert!(!causal("(Trilu (ConstantOfShape s:1 f:1) i:0 i:1)", &tables));
    }

    /// Rotary tables `[seq, d]` computed from the positions and the inverse frequencies of θ
    /// (a `c:0` vector): θ and `d` are read back by evaluating them.
    #[test]
    fn rotary_tables_are_read_by_evaluating_them() {
        for (theta, d) in [(10000.0f32, 8usize), (500000.0, 16)] {
            let mut tables = Tables::default();
            tables.shape_leaf(vec![Dim::seq()]);
            let inv: Vec<f32> = (0..d / 2).map(|i| theta.powf(-2.0 * i as f32 / d as f32)).collect();
            tables.float_tensor_leaf(vec![1, d / 2], inv);
            // [seq, 1] · [1, d/2], concatenated with itself
            let angles = "(MatMul (Unsqueeze (Range i:0 s:0 i:1) i:[1]) c:0)";
            let table = |f: &str| format!("({f} (Concat i:-1 {angles} {angles}))");
            let mut eg = EGraph::new(tables);
            let cos = eg.add_expr(&table("Cos").parse().unwrap());
            let sin = eg.add_expr(&table("Sin").parse().unwrap());
            let (found, dims) = rotary(&eg, cos, sin).expect("rotary tables");
            assert!((found / f64::from(theta) - 1.0).abs() < 1e-4, "θ = {found}, not {theta}");
            assert_eq!(dims, d);
            // sin where cos belongs
            assert_eq!(rotary(&eg, sin, cos), None);
        }
    }

    #[test]
    fn theta_from_inverse_frequencies() {
        let inv: Vec<f32> = (0..4).map(|i| 10000f32.powf(-2.0 * i as f32 / 8.0)).collect();
        assert!((rope_theta(&inv).unwrap() - 10000.0).abs() < 1.0);
        let mut off = inv.clone();
        off[3] *= 1.01;
        assert_eq!(rope_theta(&off), None);
    }
}
