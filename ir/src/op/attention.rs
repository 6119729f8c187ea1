//! Attention and the positions it reads: `Rope` (a rotary position embedding), `Attention`
//! (scaled dot-product attention, causal or prefix-LM) and `PrefixLm` (the positions of a
//! GLM prefix-LM layout). Their attributes hold no pruned size — heads are counted by the
//! shapes of their operands — so pruning re-infers them and changes nothing else.

use super::{leading, out_rank, Operands};
use crate::axes::{AxisMapping, PortAxis};
use crate::error::Result;
use crate::types::{DType, Shape, ValueType};

/// How a rotary embedding pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Dimension `i` pairs with `i + d/2` (HF LLaMA, GPT-NeoX).
    HalfSplit,
    /// Dimension `2i` pairs with `2i + 1` (GPT-J, ChatGLM2).
    Interleaved,
}

/// A rotary position embedding applied to `x[batch, seq, heads, head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// Base of the inverse frequencies (`theta`).
    pub theta: f32,
    /// How many leading dimensions of each head rotate (the rest pass through).
    pub rotary_dims: usize,
    /// How dimensions pair.
    pub layout: RopeLayout,
    /// Whether the inverse frequencies are rounded to f16 before use (ChatGLM-6B's code
    /// always stores them as f16, whatever the model's dtype).
    pub half_freqs: bool,
}

/// Which of the prefix-LM (GLM) position inputs a [`Op::PrefixLm`](super::Op::PrefixLm) node gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixPart {
    /// Position `t` in the prefix, the mask token's position after it: `[batch, seq]`.
    Positions,
    /// 0 in the prefix, `t − prefix + 1` after it: `[batch, seq]`.
    BlockPositions,
    /// The prefix length per row (keys before it are seen by every query): `[batch]`.
    Length,
}

/// Scaled dot-product attention over `q[batch, seq, heads, d]`, `k[batch, kv_seq, heads, d]`,
/// `v[batch, kv_seq, heads, dv]`, giving `[batch, seq, heads, dv]`. A fourth, integer input
/// `prefix[batch]` makes a causal mask a prefix-LM one: every query also sees the keys before
/// `prefix` of its row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    /// Multiplier of `q·kᵀ` before the softmax.
    pub scale: f32,
    /// Whether a query attends only to keys at or before its position.
    pub causal: bool,
    /// A sliding window (Mistral, Gemma's local layers): with `Some(w)`, the query at position
    /// `i` sees only keys at positions `j` with `i - j < w`, as transformers masks them.
    pub window: Option<usize>,
}

impl Attention {
    /// Causal attention over every earlier key, scaled by `scale`.
    pub fn causal(scale: f32) -> Attention {
        Attention { scale, causal: true, window: None }
    }
}

impl Rope {
    /// The attributes as the printer writes them.
    pub(super) fn attributes(&self) -> String {
        format!(
            "theta={}, dims={}, {}{}",
            self.theta,
            self.rotary_dims,
            match self.layout {
                RopeLayout::HalfSplit => "half-split",
                RopeLayout::Interleaved => "interleaved",
            },
            if self.half_freqs { ", f16-freqs" } else { "" }
        )
    }

    /// `x[batch, seq, heads, head_dim]` (and integer positions `[batch, seq]`) give `x`'s
    /// type; an even number of dimensions, at most `head_dim`, rotate.
    pub(super) fn infer(&self, cx: &Operands) -> Result<Vec<ValueType>> {
        let x = cx.input(0);
        cx.need_rank(x, 4, "the input")?;
        let d = x.shape.0[3].fixed().ok_or_else(|| cx.bad("head_dim must be fixed"))?;
        if self.rotary_dims == 0 || self.rotary_dims > d || !self.rotary_dims.is_multiple_of(2) {
            return Err(cx.bad(format!("rotary_dims {} for head_dim {d}", self.rotary_dims)));
        }
        if let Some(pos) = cx.inputs.get(1) {
            cx.integer_rows(pos, &x.shape.0[..2])?;
        }
        Ok(vec![x.clone()])
    }
}

/// `Rope`: batch, sequence and heads pass through (the positions' batch and sequence too);
/// the dimensions of a head mix, so `head_dim` is not linked.
pub(super) fn axes_rope(inputs: &[&ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    leading(&mut m, 0, 3);
    if inputs.len() > 1 {
        leading(&mut m, 1, 2);
    }
    m
}

/// `Attention`: `q[b, s, h, d]`, `k[b, kv_s, h, d]`, `v[b, kv_s, h, dv]` (and an integer
/// `prefix[b]`) give `[b, s, h, dv]`.
pub(super) fn infer_attention(cx: &Operands) -> Result<Vec<ValueType>> {
    let (q, k, v) = (cx.input(0), cx.input(1), cx.input(2));
    for (t, w) in [(q, "q"), (k, "k"), (v, "v")] {
        cx.need_rank(t, 4, w)?;
    }
    let (qs, ks, vs) = (&q.shape.0, &k.shape.0, &v.shape.0);
    if qs[2] != ks[2] || qs[2] != vs[2] || qs[3] != ks[3] || ks[1] != vs[1] || qs[0] != ks[0] {
        return Err(cx.bad(format!("q {} k {} v {} disagree", q.shape, k.shape, v.shape)));
    }
    if let Some(prefix) = cx.inputs.get(3) {
        cx.integer_rows(prefix, &qs[..1])?;
    }
    Ok(vec![ValueType::new(q.dtype, Shape(vec![qs[0].clone(), qs[1].clone(), qs[2].clone(), vs[3].clone()]))])
}

/// `Attention`: batch and query positions pass through; keys and values share their
/// positions; the heads of q, k, v and the output are one axis; `q·kᵀ` contracts `d`; the
/// value dimension is the output's last.
pub(super) fn axes_attention(inputs: &[&ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    let (i, o) = (PortAxis::input, PortAxis::output);
    m.same(i(0, 0), o(0, 0));
    m.same(i(0, 1), o(0, 1));
    m.same(i(1, 1), i(2, 1));
    for k in 0..3 {
        m.same(i(k, 2), o(0, 2));
    }
    m.same(i(0, 3), i(1, 3));
    m.same(i(2, 3), o(0, 3));
    if inputs.len() > 3 {
        m.same(i(3, 0), o(0, 0));
    }
    m
}

/// `PrefixLm`: integer ids `[batch, seq]` give positions `[batch, seq]` or lengths `[batch]`.
pub(super) fn infer_prefix_lm(cx: &Operands, part: PrefixPart) -> Result<Vec<ValueType>> {
    let ids = cx.input(0);
    cx.integer_rows(ids, &ids.shape.0)?;
    cx.need_rank(ids, 2, "the ids")?;
    let dims = if part == PrefixPart::Length { &ids.shape.0[..1] } else { &ids.shape.0[..] };
    Ok(vec![ValueType::new(DType::I64, Shape(dims.to_vec()))])
}

/// `PrefixLm`: the ids' leading axes pass through.
pub(super) fn axes_prefix_lm(outputs: &[ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    leading(&mut m, 0, out_rank(outputs));
    m
}
