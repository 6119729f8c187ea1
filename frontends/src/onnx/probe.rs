//! Evaluating the structural parts of a graph — what depends on the sizes only (positions,
//! masks), never on token ids or weights — at concrete probe sizes. A rule that must know what
//! such a value *is* (dynamo's causal mask goes through `CumSum` and `GatherND` pairs to allow
//! packed sequences) asks for its values at a few sizes instead of matching its every node.

use std::collections::HashMap;

use egg::Id;
use prunec_ir::{broadcast, Dim};

use super::fold::Egraph;
use super::tensor::checked_product;
use super::rules::Context;

/// A dense array of numbers (integers and booleans as 0/1 too), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Arr {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f64>,
}

const LIMIT: usize = 1 << 20;

/// The element count of `shape`, when it fits in `usize` (a hostile file's sizes may not).
fn numel(shape: &[usize]) -> Option<usize> {
    checked_product(shape.iter().copied())
}

/// The element count of `shape`, when it is at most [`LIMIT`]: what a probe may build.
fn small(shape: &[usize]) -> Option<usize> {
    numel(shape).filter(|&n| n <= LIMIT)
}

impl Arr {
    fn scalar(v: f64) -> Arr {
        Arr { shape: vec![], data: vec![v] }
    }

    fn vector(v: Vec<f64>) -> Arr {
        Arr { shape: vec![v.len()], data: v }
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

fn zip(xs: &[&Arr], f: impl Fn(&[f64]) -> f64) -> Option<Arr> {
    let mut shape = vec![];
    for x in xs {
        shape = broadcast(&shape, &x.shape)?;
    }
    let n = small(&shape)?;
    let data = (0..n)
        .map(|k| {
            let idx = Arr::index(k, &shape);
            let v: Vec<f64> = xs.iter().map(|x| x.at_broadcast(&idx, &shape)).collect();
            f(&v)
        })
        .collect();
    Some(Arr { shape, data })
}

/// The value of a symbolic size (`batch`, `seq`, `(seq+1)`, `(batch*8)`) at the probe sizes.
pub fn eval_dim(d: &Dim, sizes: &HashMap<String, i64>) -> Option<i64> {
    match d {
        Dim::Fixed(n) => Some(*n as i64),
        Dim::Sym(s) => eval_expr(s, sizes),
    }
}

fn eval_expr(s: &str, sizes: &HashMap<String, i64>) -> Option<i64> {
    let mut total = 0;
    for (sign, term) in super::fold::split_terms(s.trim()) {
        let mut product = sign;
        for f in term.split('*') {
            product *= match f.parse::<i64>() {
                Ok(k) => k,
                Err(_) => *sizes.get(f)?,
            };
        }
        total += product;
    }
    Some(total)
}

/// Evaluates e-class `id` at `sizes`; `None` when it depends on inputs or weights, or holds an
/// op this evaluator does not know.
pub fn eval(eg: &Egraph, ctx: &Context, id: Id, sizes: &HashMap<String, i64>) -> Option<Arr> {
    let mut memo = HashMap::new();
    eval_in(eg, ctx, id, sizes, &mut memo, 0)
}

fn leaf_value(ctx: &Context, s: &str, sizes: &HashMap<String, i64>) -> Option<Arr> {
    if let Some(v) = s.strip_prefix("f:") {
        return v.parse().ok().map(Arr::scalar);
    }
    if let Some(v) = s.strip_prefix("i:") {
        return match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            Some("") => Some(Arr::vector(vec![])),
            Some(l) => l.split(',').map(|x| x.parse::<f64>().ok()).collect::<Option<Vec<_>>>().map(Arr::vector),
            None => v.parse().ok().map(Arr::scalar),
        };
    }
    if let Some(k) = s.strip_prefix("s:") {
        let dims = ctx.shape_table.get(k.parse::<usize>().ok()?)?;
        let v: Option<Vec<f64>> = dims.iter().map(|d| eval_dim(d, sizes).map(|x| x as f64)).collect();
        return v.map(Arr::vector);
    }
    ctx.floats
        .get(s)
        .map(|(shape, v)| Arr { shape: shape.clone(), data: v.iter().map(|&x| f64::from(x)).collect() })
        .filter(Arr::is_whole)
}

fn eval_in(eg: &Egraph, ctx: &Context, id: Id, sizes: &HashMap<String, i64>, memo: &mut HashMap<Id, Option<Arr>>, depth: usize) -> Option<Arr> {
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
        if node.children.is_empty() {
            result = leaf_value(ctx, node.op.as_str(), sizes);
        } else {
            let mut args = Vec::with_capacity(node.children.len());
            for &c in &node.children {
                match eval_in(eg, ctx, c, sizes, memo, depth + 1) {
                    Some(a) => args.push(a),
                    None => break,
                }
            }
            if args.len() == node.children.len() {
                // a value whose data does not fill its shape (axes out of range in a
                // malformed graph) is no value
                result = apply(node.op.as_str(), &args).filter(Arr::is_whole);
            }
        }
        if result.is_some() {
            break;
        }
    }
    memo.insert(id, result.clone());
    result
}

fn scalar_of(a: &Arr) -> Option<i64> {
    a.data.first().map(|&v| v as i64)
}

fn ints_of(a: &Arr) -> Vec<i64> {
    a.data.iter().map(|&v| v as i64).collect()
}

/// Axis `v` of an array of `rank` axes (negative counts from the end), when there is one.
fn axis_of(v: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if v < 0 { v + r } else { v };
    (0..r).contains(&a).then_some(a as usize)
}

fn apply(op: &str, a: &[Arr]) -> Option<Arr> {
    let arity = match op {
        "Not" | "IsNaN" | "Neg" | "Cos" | "Sin" | "Cast" | "T0213" => 1,
        "Where" | "Range" | "Gather" => 3,
        "Slice" => 4,
        _ => 2,
    };
    if a.len() < arity {
        return None;
    }
    let b = |f: fn(f64, f64) -> f64| zip(&[&a[0], &a[1]], |v| f(v[0], v[1]));
    let truth = |x: bool| if x { 1.0 } else { 0.0 };
    match op {
        "Add" => b(|x, y| x + y),
        "Sub" => b(|x, y| x - y),
        "Mul" => b(|x, y| x * y),
        "Div" => b(|x, y| x / y),
        "Max" => b(f64::max),
        "Min" => b(f64::min),
        "Equal" => zip(&[&a[0], &a[1]], |v| truth(v[0] == v[1])),
        "LessOrEqual" => zip(&[&a[0], &a[1]], |v| truth(v[0] <= v[1])),
        "Less" => zip(&[&a[0], &a[1]], |v| truth(v[0] < v[1])),
        "Greater" => zip(&[&a[0], &a[1]], |v| truth(v[0] > v[1])),
        "And" => zip(&[&a[0], &a[1]], |v| truth(v[0] != 0.0 && v[1] != 0.0)),
        "Or" => zip(&[&a[0], &a[1]], |v| truth(v[0] != 0.0 || v[1] != 0.0)),
        "Not" => zip(&[&a[0]], |v| truth(v[0] == 0.0)),
        "IsNaN" => zip(&[&a[0]], |v| truth(v[0].is_nan())),
        "Neg" => zip(&[&a[0]], |v| -v[0]),
        "Cos" => zip(&[&a[0]], |v| v[0].cos()),
        "Sin" => zip(&[&a[0]], |v| v[0].sin()),
        "Where" => zip(&[&a[0], &a[1], &a[2]], |v| if v[0] != 0.0 { v[1] } else { v[2] }),
        "Cast" => Some(a[0].clone()),
        "Transpose" => {
            let perm: Vec<usize> = ints_of(&a[1]).iter().map(|&p| p.max(0) as usize).collect();
            let r = a[0].shape.len();
            let mut seen = vec![false; r];
            if perm.len() != r || !perm.iter().all(|&p| p < r && !std::mem::replace(&mut seen[p], true)) {
                return None;
            }
            let shape: Vec<usize> = perm.iter().map(|&p| a[0].shape[p]).collect();
            let st = Arr::strides(&a[0].shape);
            let data = (0..a[0].data.len())
                .map(|k| {
                    let idx = Arr::index(k, &shape);
                    a[0].data[idx.iter().zip(&perm).map(|(i, &p)| i * st[p]).sum::<usize>()]
                })
                .collect();
            Some(Arr { shape, data })
        }
        "T0213" => apply("Transpose", &[a[0].clone(), Arr::vector(vec![0.0, 2.0, 1.0, 3.0])]),
        "MatMul" => {
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
            let pick = |arr: &Arr, b: usize| -> usize {
                // the offset of broadcast batch index `b` in `arr`'s own batch axes
                let own = &arr.shape[..arr.shape.len() - 2];
                let idx = Arr::index(b, &batch);
                let off = batch.len() - own.len();
                let st = Arr::strides(own);
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
            Some(Arr { shape, data })
        }
        "Range" => {
            let (s, l, d) = (a[0].data.first()?, a[1].data.first()?, a[2].data.first()?);
            if *d == 0.0 || ((l - s) / d) > LIMIT as f64 {
                return None;
            }
            let n = ((l - s) / d).ceil().max(0.0) as usize;
            Some(Arr::vector((0..n).map(|k| s + k as f64 * d).collect()))
        }
        "Unsqueeze" => {
            let mut shape = a[0].shape.clone();
            let mut axes: Vec<usize> = ints_of(&a[1]).iter().map(|&x| x as usize).collect();
            axes.sort_unstable();
            for ax in axes {
                shape.insert(ax.min(shape.len()), 1);
            }
            Some(Arr { shape, data: a[0].data.clone() })
        }
        "Squeeze" => {
            let axes: Vec<usize> = ints_of(&a[1]).iter().map(|&x| x as usize).collect();
            let shape = a[0].shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect();
            Some(Arr { shape, data: a[0].data.clone() })
        }
        "Reshape" => {
            let shape: Vec<usize> = ints_of(&a[1]).iter().map(|&x| x.max(0) as usize).collect();
            (numel(&shape)? == a[0].data.len()).then(|| Arr { shape, data: a[0].data.clone() })
        }
        "Expand" => {
            let target: Vec<usize> = ints_of(&a[1]).iter().map(|&x| x.max(0) as usize).collect();
            let shape = broadcast(&a[0].shape, &target)?;
            let ones = Arr { data: vec![0.0; small(&shape)?], shape };
            zip(&[&a[0], &ones], |v| v[0])
        }
        "Slice" => {
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
                    let mut idx = Arr::index(k, &shape);
                    idx[axis] += s;
                    let st = Arr::strides(&a[0].shape);
                    a[0].data[idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>()]
                })
                .collect();
            Some(Arr { shape, data })
        }
        "Concat" => {
            let xs = &a[1..];
            let rank = xs.first()?.shape.len();
            let axis = axis_of(scalar_of(&a[0])?, rank)?;
            let same_elsewhere = |x: &Arr| {
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
                    let mut idx = Arr::index(k, &shape);
                    let mut part = 0;
                    while idx[axis] >= xs[part].shape[axis] {
                        idx[axis] -= xs[part].shape[axis];
                        part += 1;
                    }
                    let st = Arr::strides(&xs[part].shape);
                    xs[part].data[idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>()]
                })
                .collect();
            Some(Arr { shape, data })
        }
        "ConstantOfShape" => {
            let shape: Vec<usize> = ints_of(&a[0]).iter().map(|&x| x.max(0) as usize).collect();
            let n = small(&shape)?;
            Some(Arr { data: vec![a[1].data.first().copied().unwrap_or(0.0); n], shape })
        }
        "Trilu" => {
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
                    let idx = Arr::index(n, &a[0].shape);
                    let d = idx[r - 1] as i64 - idx[r - 2] as i64;
                    if (upper && d >= k) || (!upper && d <= k) {
                        v
                    } else {
                        0.0
                    }
                })
                .collect();
            Some(Arr { shape: a[0].shape.clone(), data })
        }
        "CumSum" => {
            let axis = axis_of(scalar_of(&a[1])?, a[0].shape.len())?;
            let st = Arr::strides(&a[0].shape);
            let mut data = a[0].data.clone();
            for k in 0..data.len() {
                let idx = Arr::index(k, &a[0].shape);
                if idx[axis] > 0 {
                    data[k] += data[k - st[axis]];
                }
            }
            Some(Arr { shape: a[0].shape.clone(), data })
        }
        "Gather" => {
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
            Some(Arr { shape, data: out })
        }
        "GatherND" => {
            // batch_dims = 0: the last axis of the indices indexes the data's leading axes
            let (data, idx) = (&a[0], &a[1]);
            let m = *idx.shape.last()?;
            let mut shape: Vec<usize> = idx.shape[..idx.shape.len() - 1].to_vec();
            shape.extend_from_slice(data.shape.get(m..)?);
            small(&shape)?;
            let inner = numel(&data.shape[m..])?;
            let st = Arr::strides(&data.shape);
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
            Some(Arr { shape, data: out })
        }
        _ => None,
    }
}

/// θ and the rotated width of a pair of rotary tables `cos`, `sin` (broadcast over leading
/// axes, `[.., seq, d]`), when at every probe size they are `cos(t·θ^(−2i/d))` and
/// `sin(t·θ^(−2i/d))` for positions `t = 0..seq`, the `d/2` frequencies repeated over both
/// halves (HF's `cat(freqs, freqs)`). Whatever computes them — a `Range` or the
/// `position_ids` input, a `Mul` or a `MatMul` by the inverse frequencies — is evaluated.
pub fn rotary(eg: &Egraph, ctx: &Context, cos: Id, sin: Id) -> Option<(f64, usize)> {
    let mut found = None;
    for &(batch, seq) in &[(2, 5), (1, 3)] {
        let sizes: HashMap<String, i64> = [("batch".to_string(), batch), ("seq".to_string(), seq)].into_iter().collect();
        let (c, s) = (eval(eg, ctx, cos, &sizes)?, eval(eg, ctx, sin, &sizes)?);
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
        let theta = super::rules::rope_theta(&inv)?;
        let ok = c.data.iter().zip(&s.data).enumerate().all(|(k, (&cv, &sv))| {
            let idx = Arr::index(k, &c.shape);
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
pub fn is_causal(eg: &Egraph, ctx: &Context, cond: Id) -> bool {
    [(2, 5), (1, 3), (3, 1)].iter().all(|&(batch, seq)| {
        let sizes: HashMap<String, i64> = [("batch".to_string(), batch), ("seq".to_string(), seq)].into_iter().collect();
        let Some(m) = eval(eg, ctx, cond, &sizes) else { return false };
        let r = m.shape.len();
        if r < 2 || m.shape[r - 1] != seq as usize || m.shape[r - 2] != seq as usize {
            return false;
        }
        m.data.iter().enumerate().all(|(k, &v)| {
            let idx = Arr::index(k, &m.shape);
            (v != 0.0) == (idx[r - 1] <= idx[r - 2])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use egg::RecExpr;
    use egg::SymbolLang;

    fn sizes(b: i64, s: i64) -> HashMap<String, i64> {
        [("batch".to_string(), b), ("seq".to_string(), s)].into_iter().collect()
    }

    #[test]
    fn symbolic_sizes_evaluate() {
        assert_eq!(eval_dim(&Dim::Sym("seq+1".into()), &sizes(2, 5)), Some(6));
        assert_eq!(eval_dim(&Dim::Sym("8*batch-1".into()), &sizes(2, 5)), Some(15));
        assert_eq!(eval_dim(&Dim::Sym("batch*seq".into()), &sizes(2, 5)), Some(10));
        assert_eq!(eval_dim(&Dim::Sym("heads".into()), &sizes(2, 5)), None);
    }

    fn causal(expr: &str, ctx: &Context) -> bool {
        let expr: RecExpr<SymbolLang> = expr.parse().unwrap();
        let mut eg = Egraph::default();
        let root = eg.add_expr(&expr);
        is_causal(&eg, ctx, root)
    }

    #[test]
    fn hostile_sizes_give_no_value_and_no_panic() {
        let big = (1u64 << 40) as f64;
        let sizes_of = |v: &[f64]| Arr::vector(v.to_vec());
        // a shape whose product passes usize, with no data (a zero axis) or none at all
        assert_eq!(apply("ConstantOfShape", &[sizes_of(&[big, big, big]), Arr::scalar(1.0)]), None);
        assert_eq!(apply("Reshape", &[Arr::vector(vec![]), sizes_of(&[big, big, big, 0.0])]), None);
        let empty = apply("Reshape", &[Arr::vector(vec![]), sizes_of(&[0.0, big, big])]).unwrap();
        assert_eq!(apply("Transpose", &[empty.clone(), sizes_of(&[2.0, 1.0, 0.0])]).map(|a| a.data.len()), Some(0));
        assert_eq!(apply("Expand", &[Arr::scalar(1.0), sizes_of(&[big, big, big])]), None);
        // a repeated axis is no permutation
        let x = Arr { shape: vec![2, 3], data: (0..6).map(f64::from).collect() };
        assert_eq!(apply("Transpose", &[x, sizes_of(&[0.0, 0.0])]), None);
    }

    #[test]
    fn causal_masks_are_told_from_others() {
        let ctx = Context { shape_table: vec![vec![Dim::seq()]], ..Context::default() };
        let k = "(Unsqueeze (Range i:0 s:0 i:1) i:[0])"; // [1, seq]: key index on the last axis
        let q = "(Unsqueeze (Range i:0 s:0 i:1) i:[1])"; // [seq, 1]: query index
        assert!(causal(&format!("(LessOrEqual {k} {q})"), &ctx));
        assert!(!causal(&format!("(LessOrEqual {q} {k})"), &ctx), "anti-causal");
        assert!(!causal(&format!("(Less {k} {q})"), &ctx), "a token must see itself");
        // a sliding window of 2 is not the causal mask
        let window = format!("(And (LessOrEqual {k} {q}) (Less (Sub {q} {k}) i:2))");
        assert!(!causal(&window, &ctx));
        // the packed-sequence check of torch.export's mask: equal cumulative sums pass
        let packed = format!("(And (LessOrEqual {k} {q}) (Equal (CumSum {k} i:-1) (CumSum {k} i:-1)))");
        assert!(causal(&packed, &ctx));
        // the lower triangle of a square of ones (Trilu, upper = 0): causal; the upper one not
        let ctx = Context { shape_table: vec![vec![Dim::seq()], vec![Dim::seq(), Dim::seq()]], ..Context::default() };
        assert!(causal("(Trilu (ConstantOfShape s:1 f:1) i:0 i:0)", &ctx));
        assert!(!causal("(Trilu (ConstantOfShape s:1 f:1) i:0 i:1)", &ctx));
    }
}
