//! The ops that move data without computing: `Reshape`, `Transpose`, `Concat` and `Slice`.
//! A reshape's axis mapping comes from aligning the sizes of its two shapes; concat and
//! slice state where each part lies in the whole. When units are pruned, a reshape's sizes
//! and a slice's bounds count what is left.

use super::{out_rank, Op, Operands, RemovedIndices, Shrink};
use crate::axes::{reshape_links, AxisLink, AxisMapping, PortAxis};
use crate::error::Result;
use crate::types::{Dim, Shape, ValueType};

/// `Reshape`: `x` gives `shape`, when their sizes align.
pub(super) fn infer_reshape(cx: &Operands, shape: &Shape) -> Result<Vec<ValueType>> {
    let x = cx.input(0);
    if reshape_links(&x.shape, shape, 0, 0).is_none() {
        return Err(cx.bad(format!("cannot reshape {} to {shape}", x.shape)));
    }
    Ok(vec![ValueType::new(x.dtype, shape.clone())])
}

/// `Reshape`: the links [`reshape_links`] finds.
pub(super) fn axes_reshape(inputs: &[&ValueType], shape: &Shape) -> AxisMapping {
    let mut m = AxisMapping::default();
    if let Some(links) = reshape_links(&inputs[0].shape, shape, 0, 0) {
        m.links = links;
    }
    m
}

/// `Reshape`: each fixed size of the target loses the indices its axis loses.
pub(super) fn shrink_reshape(shape: &Shape, removed: &dyn RemovedIndices) -> Shrink {
    let mut new = shape.clone();
    for (axis, d) in new.0.iter_mut().enumerate() {
        if let (Some(idx), Dim::Fixed(n)) = (removed.removed(PortAxis::output(0, axis)), &*d) {
            *d = Dim::Fixed(n - idx.len());
        }
    }
    Shrink { op: (new != *shape).then_some(Op::Reshape { shape: new }), param: None }
}

/// `Transpose`: `x` permuted by `perm`, which must be a permutation of its axes.
pub(super) fn infer_transpose(cx: &Operands, perm: &[usize]) -> Result<Vec<ValueType>> {
    let x = cx.input(0);
    let mut seen = vec![false; x.rank()];
    for &p in perm {
        match seen.get_mut(p) {
            Some(s) if !*s => *s = true,
            _ => return Err(cx.bad(format!("{perm:?} is no permutation of {}", x.shape))),
        }
    }
    if perm.len() != x.rank() {
        return Err(cx.bad(format!("{perm:?} is no permutation of {}", x.shape)));
    }
    Ok(vec![ValueType::new(x.dtype, Shape(perm.iter().map(|&p| x.shape.0[p].clone()).collect()))])
}

/// `Transpose`: output axis `a` is input axis `perm[a]`.
pub(super) fn axes_transpose(perm: &[usize]) -> AxisMapping {
    let mut m = AxisMapping::default();
    for (a, &p) in perm.iter().enumerate() {
        m.same(PortAxis::input(0, p), PortAxis::output(0, a));
    }
    m
}

/// `Concat`: inputs of one rank, equal off `axis` (fixed on it), give their sum along `axis`.
pub(super) fn infer_concat(cx: &Operands, axis: usize) -> Result<Vec<ValueType>> {
    let first = cx.input(0);
    let mut total = 0usize;
    for t in cx.inputs {
        if t.rank() != first.rank() || axis >= t.rank() {
            return Err(cx.bad(format!("cannot concatenate {} on axis {axis}", t.shape)));
        }
        for (i, (x, y)) in t.shape.0.iter().zip(&first.shape.0).enumerate() {
            if i != axis && x != y {
                return Err(cx.bad(format!("{} and {} differ off axis {axis}", t.shape, first.shape)));
            }
        }
        total += t.shape.0[axis].fixed().ok_or_else(|| cx.bad("concat axis must be fixed"))?;
    }
    let mut s = first.shape.0.clone();
    s[axis] = Dim::Fixed(total);
    Ok(vec![ValueType::new(first.dtype, Shape(s))])
}

/// `Concat`: the other axes pass through; each input lies at its offset along `axis`.
pub(super) fn axes_concat(inputs: &[&ValueType], outputs: &[ValueType], axis: usize) -> AxisMapping {
    let mut m = AxisMapping::default();
    let out_rank = out_rank(outputs);
    let mut offset = 0;
    for (k, t) in inputs.iter().enumerate() {
        for a in (0..out_rank).filter(|&a| a != axis) {
            m.same(PortAxis::input(k, a), PortAxis::output(0, a));
        }
        m.links.push(AxisLink::Offset { part: PortAxis::input(k, axis), whole: PortAxis::output(0, axis), offset });
        offset += t.shape.0[axis].fixed().unwrap_or(0);
    }
    m
}

/// `Slice`: indices `start..end` of a fixed `axis`, within its size.
pub(super) fn infer_slice(cx: &Operands, axis: usize, start: usize, end: usize) -> Result<Vec<ValueType>> {
    let x = cx.input(0);
    let n = x.dim(axis).and_then(Dim::fixed).ok_or_else(|| cx.bad(format!("axis {axis} of {}", x.shape)))?;
    if start >= end || end > n {
        return Err(cx.bad(format!("{start}..{end} out of 0..{n}")));
    }
    let mut s = x.shape.0.clone();
    s[axis] = Dim::Fixed(end - start);
    Ok(vec![ValueType::new(x.dtype, Shape(s))])
}

/// `Slice`: the other axes pass through; the output lies at `start` along `axis`.
pub(super) fn axes_slice(outputs: &[ValueType], axis: usize, start: usize) -> AxisMapping {
    let mut m = AxisMapping::default();
    for a in (0..out_rank(outputs)).filter(|&a| a != axis) {
        m.same(PortAxis::input(0, a), PortAxis::output(0, a));
    }
    m.links.push(AxisLink::Offset { part: PortAxis::output(0, axis), whole: PortAxis::input(0, axis), offset: start });
    m
}

/// `Slice`: each bound moves back by the indices removed before it from the input's axis.
pub(super) fn shrink_slice(axis: usize, start: usize, end: usize, removed: &dyn RemovedIndices) -> Shrink {
    let op = removed.removed(PortAxis::input(0, axis)).map(|idx| {
        let before = |x: usize| idx.range(..x).count();
        Op::Slice { axis, start: start - before(start), end: end - before(end) }
    });
    Shrink { op, param: None }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::test_util::t;
    use super::*;

    #[test]
    fn concat_and_slice_state_offsets() {
        let a = t(vec![Dim::batch(), 4.into()]);
        let b = t(vec![Dim::batch(), 6.into()]);
        let op = Op::Concat { axis: 1 };
        let out = op.infer("c", &[&a, &b]).unwrap();
        assert_eq!(out[0].to_string(), "f32[batch, 10]");
        let m = op.axis_mapping(&[&a, &b], &out);
        assert!(m.links.contains(&AxisLink::Offset { part: PortAxis::input(1, 1), whole: PortAxis::output(0, 1), offset: 4 }));
        let s = Op::Slice { axis: 1, start: 4, end: 10 };
        assert!(s.infer("s", &[&out[0]]).is_ok());
        assert!(Op::Slice { axis: 1, start: 4, end: 11 }.infer("s", &[&out[0]]).is_err());
    }

    #[test]
    fn slice_bounds_and_reshape_sizes_count_what_is_left() {
        let x = t(vec![Dim::batch(), 10.into()]);
        let slice = Op::Slice { axis: 1, start: 4, end: 10 };
        let out = slice.infer("s", &[&x]).unwrap();
        let removed = BTreeMap::from([(PortAxis::input(0, 1), BTreeSet::from([1, 5, 6]))]);
        let s = slice.shrink("s", &[&x], &out, &removed).unwrap();
        assert_eq!(s.op, Some(Op::Slice { axis: 1, start: 3, end: 7 }));
        let reshape = Op::Reshape { shape: Shape(vec![Dim::batch(), 2.into(), 5.into()]) };
        let out = reshape.infer("r", &[&x]).unwrap();
        let removed = BTreeMap::from([(PortAxis::output(0, 1), BTreeSet::from([1]))]);
        let s = reshape.shrink("r", &[&x], &out, &removed).unwrap();
        assert_eq!(s.op, Some(Op::Reshape { shape: Shape(vec![Dim::batch(), 1.into(), 5.into()]) }));
    }
}
