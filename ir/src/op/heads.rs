//! The ops that say where attention heads are: `SplitHeads` (`[.., heads·d]` viewed as
//! `[.., heads, d]`), `MergeHeads` (back) and `RepeatHeads` (grouped-query attention's
//! `repeat_kv`). They count heads in their attributes, so pruning heads changes them.

use std::collections::BTreeSet;

use super::{leading, out_rank, Op, Operands, RemovedIndices, Shrink};
use crate::axes::{repeat_ranges, AxisLink, AxisMapping, PortAxis};
use crate::error::{IrError, Result};
use crate::types::{Dim, Shape, ValueType};

impl Op {
    /// `repeat_kv`: each of `heads` heads repeated `times` times.
    pub fn repeat_heads(heads: usize, times: usize) -> Op {
        Op::RepeatHeads { copies: vec![times; heads] }
    }

    /// The common number of copies when every head has the same (`None` when they differ or
    /// there are none).
    pub fn uniform_copies(copies: &[usize]) -> Option<usize> {
        let first = *copies.first()?;
        copies.iter().all(|&c| c == first).then_some(first)
    }
}

/// `SplitHeads`: `x[.., n]` gives `[.., heads, n / heads]`; `n` must be fixed and a multiple.
pub(super) fn infer_split(cx: &Operands, heads: usize) -> Result<Vec<ValueType>> {
    let x = cx.input(0);
    let n = cx.last(x)?.fixed().ok_or_else(|| cx.bad("the split axis must be fixed"))?;
    if heads == 0 || n % heads != 0 {
        return Err(cx.bad(format!("{n} is not {heads} heads")));
    }
    let mut s = x.shape.0.clone();
    s.pop();
    s.push(Dim::Fixed(heads));
    s.push(Dim::Fixed(n / heads));
    Ok(vec![ValueType::new(x.dtype, Shape(s))])
}

/// `SplitHeads`: leading axes pass through; the flat axis is heads × head_dim. The head_dim
/// axis is pinned: one of its channels is a strided set of the flat axis's (one per head),
/// which no shrink rule removes, so nothing along it (a per-head norm's weight, as Gemma's
/// q/k norms) may be pruned on its own.
pub(super) fn axes_split(inputs: &[&ValueType], outputs: &[ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    let r = inputs[0].rank();
    leading(&mut m, 0, r - 1);
    m.links.push(AxisLink::Split {
        flat: PortAxis::input(0, r - 1),
        outer: PortAxis::output(0, r - 1),
        inner: outputs[0].shape.0[r].fixed().unwrap_or(1),
    });
    m.pin(PortAxis::output(0, r));
    m
}

/// `SplitHeads`: as many heads as the heads axis keeps.
pub(super) fn shrink_split(heads: usize, outputs: &[ValueType], removed: &dyn RemovedIndices) -> Shrink {
    let rank = out_rank(outputs);
    let op = removed.removed(PortAxis::output(0, rank.saturating_sub(2))).map(|idx| Op::SplitHeads { heads: heads - idx.len() });
    Shrink { op, param: None }
}

/// `MergeHeads`: `x[.., heads, head_dim]` gives `[.., heads·head_dim]`; both must be fixed.
pub(super) fn infer_merge(cx: &Operands) -> Result<Vec<ValueType>> {
    let x = cx.input(0);
    if x.rank() < 2 {
        return Err(cx.bad("needs [.., heads, head_dim]"));
    }
    let mut s = x.shape.0.clone();
    let d = s.pop().and_then(|d| d.fixed());
    let h = s.pop().and_then(|h| h.fixed());
    let (Some(h), Some(d)) = (h, d) else { return Err(cx.bad("heads and head_dim must be fixed")) };
    s.push(Dim::Fixed(h * d));
    Ok(vec![ValueType::new(x.dtype, Shape(s))])
}

/// `MergeHeads`: leading axes pass through; the flat axis is heads × head_dim.
pub(super) fn axes_merge(inputs: &[&ValueType], outputs: &[ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    let r = out_rank(outputs);
    leading(&mut m, 0, r - 1);
    m.links.push(AxisLink::Split {
        flat: PortAxis::output(0, r - 1),
        outer: PortAxis::input(0, r - 1),
        inner: inputs[0].shape.0[r].fixed().unwrap_or(1),
    });
    // as for `SplitHeads`: a head_dim channel is strided over the flat axis
    m.pin(PortAxis::input(0, r));
    m
}

/// `RepeatHeads`: `x[.., heads, d]` gives `[.., Σ copies, d]`; one count per head, none 0.
pub(super) fn infer_repeat(cx: &Operands, copies: &[usize]) -> Result<Vec<ValueType>> {
    let x = cx.input(0);
    if x.rank() < 2 || copies.contains(&0) {
        return Err(cx.bad("needs [.., heads, d] and at least one copy of each head"));
    }
    let mut s = x.shape.0.clone();
    let h = x.rank() - 2;
    let heads = s[h].fixed().ok_or_else(|| cx.bad("heads must be fixed"))?;
    if heads != copies.len() {
        return Err(cx.bad(format!("{heads} heads but {} copy counts", copies.len())));
    }
    s[h] = Dim::Fixed(copies.iter().sum());
    Ok(vec![ValueType::new(x.dtype, Shape(s))])
}

/// `RepeatHeads`: leading axes and head_dim pass through; the heads axis is a directed
/// repeat (see [`AxisLink::Repeat`]).
pub(super) fn axes_repeat(copies: &[usize], outputs: &[ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    let (i, o) = (PortAxis::input, PortAxis::output);
    let r = out_rank(outputs);
    leading(&mut m, 0, r - 2);
    m.links.push(AxisLink::Repeat { source: i(0, r - 2), target: o(0, r - 2), copies: copies.to_vec() });
    m.same(i(0, r - 1), o(0, r - 1));
    m
}

/// `RepeatHeads`: a removed source head loses all its copies; a kept one keeps at least one,
/// and counts the copies it keeps. A head removed without its copies, or copies removed to
/// the last without their head, cannot be pruned.
pub(super) fn shrink_repeat(node: &str, copies: &[usize], outputs: &[ValueType], removed: &dyn RemovedIndices) -> Result<Shrink> {
    let heads = out_rank(outputs).saturating_sub(2);
    let none = BTreeSet::new();
    let src = removed.removed(PortAxis::input(0, heads)).unwrap_or(&none);
    let dst = removed.removed(PortAxis::output(0, heads)).unwrap_or(&none);
    let mut new = Vec::with_capacity(copies.len());
    for (h, range) in repeat_ranges(copies).into_iter().enumerate() {
        let lost = range.clone().filter(|c| dst.contains(c)).count();
        match (src.contains(&h), lost == range.len()) {
            (true, true) => {}
            (false, false) => new.push(range.len() - lost),
            (true, false) | (false, true) => {
                return Err(IrError::Unprunable {
                    node: node.to_string(),
                    reason: format!("key/value head {h} and the query heads it serves must go together"),
                })
            }
        }
    }
    let op = (new != copies).then_some(Op::RepeatHeads { copies: new });
    Ok(Shrink { op, param: None })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::test_util::t;
    use super::*;

    #[test]
    fn repeat_heads_is_a_directed_repeat() {
        let x = t(vec![Dim::batch(), Dim::seq(), 2.into(), 8.into()]);
        let op = Op::repeat_heads(2, 4);
        let out = op.infer("r", &[&x]).unwrap();
        assert_eq!(out[0].to_string(), "f32[batch, seq, 8, 8]");
        assert_eq!(op.attributes(), "times=4");
        let m = op.axis_mapping(&[&x], &out);
        let link = AxisLink::Repeat { source: PortAxis::input(0, 2), target: PortAxis::output(0, 2), copies: vec![4, 4] };
        assert!(m.links.contains(&link));
    }

    #[test]
    fn repeat_heads_may_be_uneven() {
        let x = t(vec![Dim::batch(), Dim::seq(), 3.into(), 8.into()]);
        let op = Op::RepeatHeads { copies: vec![3, 2, 3] };
        let out = op.infer("r", &[&x]).unwrap();
        assert_eq!(out[0].to_string(), "f32[batch, seq, 8, 8]");
        assert_eq!(op.attributes(), "copies=[3, 2, 3]");
        assert!(Op::RepeatHeads { copies: vec![3, 2] }.infer("r", &[&x]).is_err());
        assert!(Op::RepeatHeads { copies: vec![3, 0, 3] }.infer("r", &[&x]).is_err());
    }

    #[test]
    fn repeat_heads_shrink_with_their_copies() {
        let x = t(vec![Dim::batch(), Dim::seq(), 2.into(), 8.into()]);
        let op = Op::repeat_heads(2, 4);
        let out = op.infer("r", &[&x]).unwrap();
        // head 0 with its four copies, and one copy of head 1
        let removed = BTreeMap::from([
            (PortAxis::input(0, 2), BTreeSet::from([0])),
            (PortAxis::output(0, 2), BTreeSet::from([0, 1, 2, 3, 5])),
        ]);
        let s = op.shrink("r", &[&x], &out, &removed).unwrap();
        assert_eq!(s.op, Some(Op::RepeatHeads { copies: vec![3] }));
        // head 0 without its copies
        let removed = BTreeMap::from([(PortAxis::input(0, 2), BTreeSet::from([0]))]);
        let e = op.shrink("r", &[&x], &out, &removed).unwrap_err();
        assert_eq!(e.to_string(), "node `r`: key/value head 0 and the query heads it serves must go together");
    }

    #[test]
    fn split_heads_counts_the_heads_left() {
        let x = t(vec![Dim::batch(), 64.into()]);
        let op = Op::SplitHeads { heads: 4 };
        let out = op.infer("s", &[&x]).unwrap();
        let removed = BTreeMap::from([(PortAxis::output(0, 1), BTreeSet::from([1, 2]))]);
        assert_eq!(op.shrink("s", &[&x], &out, &removed).unwrap().op, Some(Op::SplitHeads { heads: 2 }));
    }
}
