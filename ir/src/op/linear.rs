//! The ops that multiply by a weight: `Embedding` (a row lookup), `Linear` and `MatMul`.
//! Their attributes hold no size, so pruning shrinks only their weights (which are
//! parameters): the rules here are inference and axis mappings. A contraction's two sides
//! are linked to each other, not to the output.

use super::{leading, out_rank, Operands};
use crate::axes::{AxisMapping, PortAxis};
use crate::error::Result;
use crate::types::{broadcast, DType, Dim, Shape, ValueType};

/// `Embedding`: rows of `table[vocab, hidden]` looked up by integer `ids[..]`: `[.., hidden]`.
pub(super) fn infer_embedding(cx: &Operands) -> Result<Vec<ValueType>> {
    let (table, ids) = (cx.input(0), cx.input(1));
    cx.need_rank(table, 2, "the table")?;
    if !matches!(ids.dtype, DType::I64 | DType::I32) {
        return Err(cx.bad(format!("ids must be integers, are {}", ids.dtype)));
    }
    let mut s = ids.shape.0.clone();
    s.push(table.shape.0[1].clone());
    Ok(vec![ValueType::new(table.dtype, Shape(s))])
}

/// `Embedding`: the vocabulary axis is pinned (ids index it); the ids' axes lead the output,
/// and the table's hidden axis is the output's last.
pub(super) fn axes_embedding(inputs: &[&ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    m.pin(PortAxis::input(0, 0));
    let r = inputs[1].rank();
    leading(&mut m, 1, r);
    m.same(PortAxis::input(0, 1), PortAxis::output(0, r));
    m
}

/// `Linear`: `x[.., in] · w[out, in]ᵀ (+ bias[out])`: `[.., out]`.
pub(super) fn infer_linear(cx: &Operands) -> Result<Vec<ValueType>> {
    let (x, w) = (cx.input(0), cx.input(1));
    cx.need_rank(w, 2, "the weight")?;
    if cx.last(x)? != w.shape.0[1] {
        return Err(cx.bad(format!("input {} does not match weight {}", x.shape, w.shape)));
    }
    if let Some(b) = cx.inputs.get(2) {
        if b.shape.0 != [w.shape.0[0].clone()] {
            return Err(cx.bad(format!("bias {} does not match weight {}", b.shape, w.shape)));
        }
    }
    Ok(vec![with_last(x, w.shape.0[0].clone(), x.dtype)])
}

/// `t`'s shape with its last dimension replaced by `d`, of element type `dtype`.
fn with_last(t: &ValueType, d: Dim, dtype: DType) -> ValueType {
    let mut s = t.shape.0.clone();
    if let Some(x) = s.last_mut() {
        *x = d;
    }
    ValueType::new(dtype, Shape(s))
}

/// `Linear`: leading axes pass through; the input's features meet the weight's input axis
/// (the contraction); the weight's output axis (and the bias) is the output's features.
pub(super) fn axes_linear(inputs: &[&ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    let (i, o) = (PortAxis::input, PortAxis::output);
    let r = inputs[0].rank();
    leading(&mut m, 0, r.saturating_sub(1));
    m.same(i(0, r - 1), i(1, 1));
    m.same(i(1, 0), o(0, r - 1));
    if inputs.len() > 2 {
        m.same(i(2, 0), o(0, r - 1));
    }
    m
}

/// `MatMul`: `a[.., m, k] · b[.., k, n]`: `[.., m, n]`, batch axes broadcast.
pub(super) fn infer_matmul(cx: &Operands) -> Result<Vec<ValueType>> {
    let (a, b) = (cx.input(0), cx.input(1));
    if a.rank() < 2 || b.rank() < 2 {
        return Err(cx.bad("operands must have rank ≥ 2"));
    }
    let (ar, br) = (a.rank(), b.rank());
    if a.shape.0[ar - 1] != b.shape.0[br - 2] {
        return Err(cx.bad(format!("cannot multiply {} by {}", a.shape, b.shape)));
    }
    let mut s = broadcast(&a.shape.0[..ar - 2], &b.shape.0[..br - 2])
        .ok_or_else(|| cx.bad(format!("batch axes of {} and {} differ", a.shape, b.shape)))?;
    s.push(a.shape.0[ar - 2].clone());
    s.push(b.shape.0[br - 1].clone());
    Ok(vec![ValueType::new(a.dtype, Shape(s))])
}

/// `MatMul`: batch axes of equal size pass through (a broadcast one does not); `k` is
/// contracted; `m` and `n` are the output's last two axes.
pub(super) fn axes_matmul(inputs: &[&ValueType], outputs: &[ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    let (i, o) = (PortAxis::input, PortAxis::output);
    let out_rank = out_rank(outputs);
    let (ar, br) = (inputs[0].rank(), inputs[1].rank());
    for (k, r) in [(0, ar), (1, br)] {
        for a in 0..r - 2 {
            let oa = a + out_rank - r;
            if inputs[k].shape.0[a] == outputs[0].shape.0[oa] {
                m.same(i(k, a), o(0, oa));
            }
        }
    }
    m.same(i(0, ar - 1), i(1, br - 2));
    m.same(i(0, ar - 2), o(0, out_rank - 2));
    m.same(i(1, br - 1), o(0, out_rank - 1));
    m
}

#[cfg(test)]
mod tests {
    use super::super::test_util::t;
    use crate::axes::{AxisLink, PortAxis};
    use crate::op::Op;
    use crate::types::Dim;

    #[test]
    fn linear_infers_and_links_contraction_and_rows() {
        let x = t(vec![Dim::batch(), Dim::seq(), 64.into()]);
        let w = t(vec![128.into(), 64.into()]);
        let out = Op::Linear.infer("q", &[&x, &w]).unwrap();
        assert_eq!(out[0].to_string(), "f32[batch, seq, 128]");
        let m = Op::Linear.axis_mapping(&[&x, &w], &out);
        assert!(m.links.contains(&AxisLink::Same(PortAxis::input(0, 2), PortAxis::input(1, 1))));
        assert!(m.links.contains(&AxisLink::Same(PortAxis::input(1, 0), PortAxis::output(0, 2))));
        // the contraction's output axis is not linked to its input axis
        assert!(!m.links.contains(&AxisLink::Same(PortAxis::input(0, 2), PortAxis::output(0, 2))));
    }

    #[test]
    fn linear_rejects_mismatched_weight() {
        let x = t(vec![Dim::batch(), 64.into()]);
        let w = t(vec![128.into(), 63.into()]);
        let e = Op::Linear.infer("q", &[&x, &w]).unwrap_err();
        assert!(e.to_string().contains("node `q` (linear)"), "{e}");
    }
}
