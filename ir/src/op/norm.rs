//! Normalisations over the last axis: `RmsNorm` (`x / sqrt(mean(x²) + eps) · (w + offset)`,
//! the offset 1 in Gemma's norms, 0 elsewhere) and
//! `LayerNorm` (`(x − mean) / sqrt(var + eps) · w + b`). Their parameters are vectors along
//! the normalised axis. When that axis loses channels, an RMSNorm is rescaled so that it
//! computes what it computed with those channels zeroed.

use std::collections::BTreeSet;

use super::{leading, out_rank, Op, Operands, ParamEdit, RemovedIndices, Shrink};
use crate::axes::{AxisMapping, PortAxis};
use crate::error::Result;
use crate::types::{Dim, ValueType};

/// Both norms: `x[.., h]` and parameters of shape `[h]` give `x`'s type.
pub(super) fn infer(cx: &Operands) -> Result<Vec<ValueType>> {
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
pub(super) fn axes(inputs: &[&ValueType], outputs: &[ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    let out_rank = out_rank(outputs);
    leading(&mut m, 0, out_rank);
    for k in 1..inputs.len() {
        m.same(PortAxis::input(k, 0), PortAxis::output(0, out_rank - 1));
    }
    m
}

/// An RMSNorm whose axis lost channels keeps computing what it computed with those channels
/// zeroed. The mean square is taken over the `k` channels left instead of the `n` there
/// were: `w·x / sqrt(Σx²/n + ε)` equals `(w·sqrt(n/k))·x / sqrt(Σx²/k + ε·n/k)`, so the
/// weight is scaled by `sqrt(n/k)` and ε by `n/k` — exact, and still a stock RMSNorm (one
/// `rms_norm_eps`, as every norm of the hidden stream loses the same channels). LLM-Pruner's
/// channel-wise pruning leaves both as they were, which changes what the norms compute.
///
/// With an offset the multiplier is `w + offset`; scaling the weight and the offset alike
/// scales it exactly, so the offset becomes `offset·sqrt(n/k)` (a writer whose format fixes
/// the offset, as Gemma's `(1 + w)`, moves the difference into the weight when it writes).
pub(super) fn shrink_rms_norm(eps: f32, offset: f32, inputs: &[&ValueType], removed: &dyn RemovedIndices) -> Shrink {
    let (Some(x), true) = (inputs.first(), inputs.len() > 1) else { return Shrink::default() };
    let axis = x.rank().saturating_sub(1);
    let Some(n) = x.dim(axis).and_then(Dim::fixed) else { return Shrink::default() };
    let lost = removed.removed(PortAxis::input(0, axis)).map_or(0, BTreeSet::len);
    if lost == 0 || lost >= n {
        return Shrink::default();
    }
    let factor = n as f64 / (n - lost) as f64;
    let offset = if offset == 0.0 { 0.0 } else { (f64::from(offset) * factor.sqrt()) as f32 };
    Shrink {
        op: Some(Op::RmsNorm { eps: (f64::from(eps) * factor) as f32, offset }),
        param: Some(ParamEdit::Scale { input: 1, factor: factor.sqrt() as f32 }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::test_util::t;
    use super::*;

    #[test]
    fn rms_norm_rescales_for_the_channels_left() {
        let x = t(vec![Dim::batch(), 8.into()]);
        let w = t(vec![8.into()]);
        let op = Op::RmsNorm { eps: 1e-6, offset: 0.0 };
        let removed = BTreeMap::from([(PortAxis::input(0, 1), BTreeSet::from([0, 1, 2, 3, 4, 5]))]);
        let s = op.shrink("norm", &[&x, &w], std::slice::from_ref(&x), &removed).unwrap();
        assert_eq!(s.op, Some(Op::RmsNorm { eps: (f64::from(1e-6f32) * 4.0) as f32, offset: 0.0 }));
        assert_eq!(s.param, Some(ParamEdit::Scale { input: 1, factor: 2.0 }));
        // nothing lost, or everything: nothing to rescale
        assert_eq!(op.shrink("norm", &[&x, &w], std::slice::from_ref(&x), &BTreeMap::new()).unwrap(), Shrink::default());
        let all = BTreeMap::from([(PortAxis::input(0, 1), (0..8).collect::<BTreeSet<_>>())]);
        assert_eq!(op.shrink("norm", &[&x, &w], std::slice::from_ref(&x), &all).unwrap(), Shrink::default());
    }

    /// `(w + offset)` scales as a whole: the weight by `sqrt(n/k)` (the prune pass) and the
    /// offset by the same factor (the new op), so `w' + offset' = (w + offset)·sqrt(n/k)`.
    #[test]
    fn offset_rms_norm_scales_its_offset_with_its_weight() {
        let x = t(vec![Dim::batch(), 8.into()]);
        let w = t(vec![8.into()]);
        let op = Op::RmsNorm { eps: 1e-6, offset: 1.0 };
        let removed = BTreeMap::from([(PortAxis::input(0, 1), BTreeSet::from([0, 1, 2, 3, 4, 5]))]);
        let s = op.shrink("norm", &[&x, &w], std::slice::from_ref(&x), &removed).unwrap();
        assert_eq!(s.op, Some(Op::RmsNorm { eps: (f64::from(1e-6f32) * 4.0) as f32, offset: 2.0 }));
        assert_eq!(s.param, Some(ParamEdit::Scale { input: 1, factor: 2.0 }));
        // numerically: two channels left of eight, the others zero, give what they gave
        let (xs, ws) = ([0.5f64, -1.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.3f64, -0.2]);
        let before: Vec<f64> = (0..2).map(|i| xs[i] / ((xs[0] * xs[0] + xs[1] * xs[1]) / 8.0 + 1e-6).sqrt() * (ws[i] + 1.0)).collect();
        let after: Vec<f64> = (0..2).map(|i| xs[i] / ((xs[0] * xs[0] + xs[1] * xs[1]) / 2.0 + 4e-6).sqrt() * (ws[i] * 2.0 + 2.0)).collect();
        for (b, a) in before.iter().zip(&after) {
            assert!((b - a).abs() < 1e-12, "{b} vs {a}");
        }
        // the printer names the offset only where there is one
        assert_eq!(op.to_string(), "rms_norm<eps=1e-6, offset=1>");
        assert_eq!(Op::RmsNorm { eps: 1e-6, offset: 0.0 }.to_string(), "rms_norm<eps=1e-6>");
    }
}
