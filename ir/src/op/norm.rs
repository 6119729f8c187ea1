//! Normalisations over the last axis: `RmsNorm` (`x / sqrt(mean(x²) + eps) · w`) and
//! `LayerNorm` (`(x − mean) / sqrt(var + eps) · w + b`). Their parameters are vectors along
//! the normalised axis.

use super::{leading, out_rank, Operands};
use crate::axes::{AxisMapping, PortAxis};
use crate::error::Result;
use crate::types::ValueType;

/// Both norms: `x[.., h]` and parameters of shape `[h]` give `x`'s type.
pub(crate) fn infer(cx: &Operands) -> Result<Vec<ValueType>> {
    let x = cx.input(0);
    let h = cx.last(x)?;
    for (i, p) in cx.inputs.iter().enumerate().skip(1) {
        if p.shape.0 != [h.clone()] {
            return Err(cx.bad(format!("parameter {i} is {} for input {}", p.shape, x.shape)));
        }
    }
    Ok(vec![x.clone()])
}

/// Both norms: every axis passes through; each parameter lies along the normalised axis.
pub(crate) fn axes(inputs: &[&ValueType], outputs: &[ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    let out_rank = out_rank(outputs);
    leading(&mut m, 0, out_rank);
    for k in 1..inputs.len() {
        m.same(PortAxis::input(k, 0), PortAxis::output(0, out_rank - 1));
    }
    m
}
