//! Element-wise ops: `Binary` (broadcasting as numpy does), `Unary`, `Softmax` over one
//! axis and `Dropout`. Their attributes hold no size, so pruning re-infers them and changes
//! nothing else. An axis of size 1 broadcast against a larger one is not linked to it.

use super::{leading, out_rank, Operands};
use crate::axes::{AxisMapping, PortAxis};
use crate::error::Result;
use crate::types::{broadcast, Shape, ValueType};

/// Element-wise binary ops, broadcasting as numpy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
}

/// Element-wise unary ops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// `x · sigmoid(x)`.
    Silu,
    /// Exact GeLU, `x · Φ(x)`.
    Gelu,
    /// GeLU's tanh approximation.
    GeluTanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// `-x`.
    Neg,
    /// Square root.
    Sqrt,
    /// `1 / x`.
    Reciprocal,
    /// `e^x`.
    Exp,
    /// Hyperbolic tangent.
    Tanh,
    /// `x · c`.
    Scale(f32),
}

impl BinaryOp {
    /// The op's name, as the printer writes it.
    pub(super) fn mnemonic(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

impl UnaryOp {
    /// The op's name, as the printer writes it.
    pub(super) fn mnemonic(self) -> &'static str {
        match self {
            UnaryOp::Silu => "silu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Neg => "neg",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Exp => "exp",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Scale(_) => "scale",
        }
    }
}

/// `Binary`: the two shapes broadcast.
pub(super) fn infer_binary(cx: &Operands) -> Result<Vec<ValueType>> {
    let (a, b) = (cx.input(0), cx.input(1));
    let s = broadcast(&a.shape.0, &b.shape.0).ok_or_else(|| cx.bad(format!("cannot broadcast {} with {}", a.shape, b.shape)))?;
    Ok(vec![ValueType::new(a.dtype, Shape(s))])
}

/// `Binary`: each input axis is linked to the output axis it aligns with (from the right)
/// when their sizes are equal.
pub(super) fn axes_binary(inputs: &[&ValueType], outputs: &[ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    let out_rank = out_rank(outputs);
    for (k, t) in inputs.iter().enumerate() {
        for a in 0..t.rank() {
            let oa = a + out_rank - t.rank();
            // equal sizes correspond; a size 1 against a larger one is a broadcast
            if t.shape.0[a] == outputs[0].shape.0[oa] {
                m.same(PortAxis::input(k, a), PortAxis::output(0, oa));
            }
        }
    }
    m
}

/// `Unary`: the input's type.
pub(super) fn infer_unary(cx: &Operands) -> Vec<ValueType> {
    vec![cx.input(0).clone()]
}

/// `Softmax`: the input's type; `axis` must be one of its axes.
pub(super) fn infer_softmax(cx: &Operands, axis: usize) -> Result<Vec<ValueType>> {
    if axis >= cx.input(0).rank() {
        return Err(cx.bad(format!("axis {axis} of {}", cx.input(0).shape)));
    }
    Ok(vec![cx.input(0).clone()])
}

/// `Dropout`: the input's type; `p` must lie in `[0, 1)`.
pub(super) fn infer_dropout(cx: &Operands, p: f32) -> Result<Vec<ValueType>> {
    if !(0.0..1.0).contains(&p) {
        return Err(cx.bad(format!("dropout probability {p} is not in [0, 1)")));
    }
    Ok(vec![cx.input(0).clone()])
}

/// `Unary` and `Dropout`: every axis passes through.
pub(super) fn axes_pointwise(outputs: &[ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    leading(&mut m, 0, out_rank(outputs));
    m
}

/// `Softmax`: every axis but the normalised one passes through (its entries mix).
pub(super) fn axes_softmax(outputs: &[ValueType], axis: usize) -> AxisMapping {
    let mut m = AxisMapping::default();
    for a in (0..out_rank(outputs)).filter(|&a| a != axis) {
        m.same(PortAxis::input(0, a), PortAxis::output(0, a));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::super::test_util::t;
    use super::*;
    use crate::axes::AxisLink;
    use crate::op::Op;
    use crate::types::Dim;

    #[test]
    fn broadcasting_size_one_axes_do_not_couple() {
        let a = t(vec![Dim::batch(), 64.into()]);
        let b = t(vec![Dim::batch(), 1.into()]);
        let op = Op::Binary(BinaryOp::Mul);
        let out = op.infer("m", &[&a, &b]).unwrap();
        let m = op.axis_mapping(&[&a, &b], &out);
        assert!(m.links.contains(&AxisLink::Same(PortAxis::input(0, 1), PortAxis::output(0, 1))));
        assert!(!m.links.contains(&AxisLink::Same(PortAxis::input(1, 1), PortAxis::output(0, 1))));
    }
}
