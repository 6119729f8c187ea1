//! The ops of the IR. Each op infers its output types from its input types (so a graph's
//! types cannot drift from its ops) and states its axis mapping (so the dependency analysis
//! needs no per-op rule of its own).

use std::fmt;

use crate::axes::{reshape_links, AxisLink, AxisMapping, PortAxis};
use crate::error::{IrError, Result};
use crate::types::{broadcast, DType, Dim, Shape, ValueType};

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

/// Which of the prefix-LM (GLM) position inputs a [`Op::PrefixLm`] node gives.
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
}

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

/// An operation of the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A graph input (token ids, positions).
    Input {
        /// Its name.
        name: String,
        /// Its type.
        ty: ValueType,
    },
    /// A parameter from the store, by name.
    Param {
        /// Its name in the store.
        name: String,
        /// Its type.
        ty: ValueType,
    },
    /// A graph output.
    Output {
        /// Its name.
        name: String,
    },
    /// Rows of `table[vocab, hidden]` looked up by `ids[..]`: `[.., hidden]`.
    Embedding,
    /// `x[.., in] · w[out, in]ᵀ (+ bias[out])`: `[.., out]`.
    Linear,
    /// `a[.., m, k] · b[.., k, n]`: `[.., m, n]`, batch axes broadcast.
    MatMul,
    /// `x / sqrt(mean(x²) + eps) · w` over the last axis.
    RmsNorm {
        /// Added to the mean square.
        eps: f32,
    },
    /// `(x − mean) / sqrt(var + eps) · w + b` over the last axis.
    LayerNorm {
        /// Added to the variance.
        eps: f32,
    },
    /// A rotary position embedding; positions are `0..seq` unless a second input gives them.
    Rope(Rope),
    /// Repeats head `i` of `x[.., heads, d]` `copies[i]` times, consecutively (`repeat_kv`;
    /// after query heads are pruned unevenly, key/value heads may serve different numbers of
    /// query heads).
    RepeatHeads {
        /// Copies of each head (one entry per input head).
        copies: Vec<usize>,
    },
    /// Scaled dot-product attention.
    Attention(Attention),
    /// `x[.., heads·head_dim]` viewed as `[.., heads, head_dim]`, heads outermost. Unlike a
    /// reshape, it says which axis is the heads axis even when there is one head.
    SplitHeads {
        /// Heads.
        heads: usize,
    },
    /// `x[.., heads, head_dim]` viewed as `[.., heads·head_dim]`.
    MergeHeads,
    /// A reshape to `shape`; its axis mapping comes from aligning the sizes.
    Reshape {
        /// The output shape.
        shape: Shape,
    },
    /// An axis permutation: output axis `i` is input axis `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// An element-wise binary op.
    Binary(BinaryOp),
    /// An element-wise unary op.
    Unary(UnaryOp),
    /// Concatenation of the inputs along `axis`.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Indices `start..end` of `axis`.
    Slice {
        /// The axis.
        axis: usize,
        /// First index kept.
        start: usize,
        /// One past the last index kept.
        end: usize,
    },
    /// Softmax over `axis`.
    Softmax {
        /// The axis.
        axis: usize,
    },
    /// The positions of a prefix-LM (GLM) layout, derived from token ids `[batch, seq]`: the
    /// prefix of a row ends at its first `bos` token; the mask token is the first of `masks`
    /// found in the row. A row without `bos` has no answer part: positions `0..seq`, block
    /// positions 0 and a prefix of length 0 (plain causal attention, so text can be scored).
    PrefixLm {
        /// The token that starts the answer (`<sop>`).
        bos: u32,
        /// The mask tokens, by preference (`[gMASK]`, `[MASK]`).
        masks: Vec<u32>,
        /// Which input it gives.
        part: PrefixPart,
    },
    /// Dropout: the identity when the model runs for inference; while training, each element
    /// is zeroed with probability `p` and the others scaled by `1/(1−p)`.
    Dropout {
        /// Probability of zeroing an element, in `[0, 1)`.
        p: f32,
    },
}

fn bad(node: &str, op: &Op, reason: impl Into<String>) -> IrError {
    IrError::BadOperands { node: node.to_string(), op: op.mnemonic(), reason: reason.into() }
}

/// Checks that `t` holds integers of shape `dims` (positions or lengths per row).
fn integer_rows(node: &str, op: &Op, t: &ValueType, dims: &[Dim]) -> Result<()> {
    if !matches!(t.dtype, DType::I64 | DType::I32) || t.shape.0 != dims {
        return Err(bad(node, op, format!("expected integers of shape {}, got {} {}", Shape(dims.to_vec()), t.dtype, t.shape)));
    }
    Ok(())
}

impl Op {
    /// The op's short name, as the printer writes it.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::Output { .. } => "output",
            Op::Embedding => "embedding",
            Op::Linear => "linear",
            Op::MatMul => "matmul",
            Op::RmsNorm { .. } => "rms_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Rope(_) => "rope",
            Op::RepeatHeads { .. } => "repeat_heads",
            Op::Attention(_) => "attention",
            Op::SplitHeads { .. } => "split_heads",
            Op::MergeHeads => "merge_heads",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Binary(BinaryOp::Add) => "add",
            Op::Binary(BinaryOp::Sub) => "sub",
            Op::Binary(BinaryOp::Mul) => "mul",
            Op::Binary(BinaryOp::Div) => "div",
            Op::Unary(UnaryOp::Silu) => "silu",
            Op::Unary(UnaryOp::Gelu) => "gelu",
            Op::Unary(UnaryOp::GeluTanh) => "gelu_tanh",
            Op::Unary(UnaryOp::Sigmoid) => "sigmoid",
            Op::Unary(UnaryOp::Neg) => "neg",
            Op::Unary(UnaryOp::Sqrt) => "sqrt",
            Op::Unary(UnaryOp::Reciprocal) => "reciprocal",
            Op::Unary(UnaryOp::Exp) => "exp",
            Op::Unary(UnaryOp::Tanh) => "tanh",
            Op::Unary(UnaryOp::Scale(_)) => "scale",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Softmax { .. } => "softmax",
            Op::PrefixLm { .. } => "prefix_lm",
            Op::Dropout { .. } => "dropout",
        }
    }

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

    /// The op's attributes as the printer writes them (empty when it has none).
    pub fn attributes(&self) -> String {
        match self {
            Op::Input { name, .. } | Op::Param { name, .. } | Op::Output { name } => format!("{name:?}"),
            Op::RmsNorm { eps } | Op::LayerNorm { eps } => format!("eps={eps:e}"),
            Op::Rope(r) => format!(
                "theta={}, dims={}, {}{}",
                r.theta,
                r.rotary_dims,
                match r.layout {
                    RopeLayout::HalfSplit => "half-split",
                    RopeLayout::Interleaved => "interleaved",
                },
                if r.half_freqs { ", f16-freqs" } else { "" }
            ),
            Op::PrefixLm { bos, masks, part } => format!("bos={bos}, masks={masks:?}, {part:?}"),
            Op::RepeatHeads { copies } => match Op::uniform_copies(copies) {
                Some(times) => format!("times={times}"),
                None => format!("copies={copies:?}"),
            },
            Op::SplitHeads { heads } => format!("heads={heads}"),
            Op::Attention(a) => format!("scale={}, causal={}", a.scale, a.causal),
            Op::Reshape { shape } => format!("{shape}"),
            Op::Transpose { perm } => format!("perm={perm:?}"),
            Op::Unary(UnaryOp::Scale(c)) => format!("{c}"),
            Op::Concat { axis } | Op::Softmax { axis } => format!("axis={axis}"),
            Op::Slice { axis, start, end } => format!("axis={axis}, {start}..{end}"),
            Op::Dropout { p } => format!("p={p}"),
            _ => String::new(),
        }
    }

    /// How many inputs the op takes: `(min, max)`.
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Input { .. } | Op::Param { .. } => (0, 0),
            Op::Output { .. } | Op::Unary(_) | Op::RepeatHeads { .. } | Op::Reshape { .. } => (1, 1),
            Op::SplitHeads { .. } | Op::MergeHeads => (1, 1),
            Op::Transpose { .. } | Op::Slice { .. } | Op::Softmax { .. } | Op::PrefixLm { .. } | Op::Dropout { .. } => (1, 1),
            Op::Rope(_) => (1, 2),
            Op::Embedding | Op::MatMul | Op::Binary(_) | Op::RmsNorm { .. } => (2, 2),
            Op::Linear => (2, 3),
            Op::LayerNorm { .. } => (3, 3),
            Op::Attention(_) => (3, 4),
            Op::Concat { .. } => (1, usize::MAX),
        }
    }

    /// The output types for inputs of types `inputs`; `node` names the node in errors.
    pub fn infer(&self, node: &str, inputs: &[&ValueType]) -> Result<Vec<ValueType>> {
        let (lo, hi) = self.arity();
        if inputs.len() < lo || inputs.len() > hi {
            return Err(bad(node, self, format!("takes {lo}..={hi} inputs, got {}", inputs.len())));
        }
        let last = |t: &ValueType| -> Result<Dim> {
            t.shape.last().cloned().ok_or_else(|| bad(node, self, "scalar operand"))
        };
        let need_rank = |t: &ValueType, r: usize, what: &str| -> Result<()> {
            if t.rank() == r {
                Ok(())
            } else {
                Err(bad(node, self, format!("{what} must have rank {r}, has {}", t.shape)))
            }
        };
        let with_last = |t: &ValueType, d: Dim, dtype: DType| {
            let mut s = t.shape.0.clone();
            if let Some(x) = s.last_mut() {
                *x = d;
            }
            ValueType::new(dtype, Shape(s))
        };
        Ok(match self {
            Op::Input { ty, .. } | Op::Param { ty, .. } => vec![ty.clone()],
            Op::Output { .. } => vec![],
            Op::Embedding => {
                let (table, ids) = (inputs[0], inputs[1]);
                need_rank(table, 2, "the table")?;
                if !matches!(ids.dtype, DType::I64 | DType::I32) {
                    return Err(bad(node, self, format!("ids must be integers, are {}", ids.dtype)));
                }
                let mut s = ids.shape.0.clone();
                s.push(table.shape.0[1].clone());
                vec![ValueType::new(table.dtype, Shape(s))]
            }
            Op::Linear => {
                let (x, w) = (inputs[0], inputs[1]);
                need_rank(w, 2, "the weight")?;
                if last(x)? != w.shape.0[1] {
                    return Err(bad(node, self, format!("input {} does not match weight {}", x.shape, w.shape)));
                }
                if let Some(b) = inputs.get(2) {
                    if b.shape.0 != [w.shape.0[0].clone()] {
                        return Err(bad(node, self, format!("bias {} does not match weight {}", b.shape, w.shape)));
                    }
                }
                vec![with_last(x, w.shape.0[0].clone(), x.dtype)]
            }
            Op::MatMul => {
                let (a, b) = (inputs[0], inputs[1]);
                if a.rank() < 2 || b.rank() < 2 {
                    return Err(bad(node, self, "operands must have rank ≥ 2"));
                }
                let (ar, br) = (a.rank(), b.rank());
                if a.shape.0[ar - 1] != b.shape.0[br - 2] {
                    return Err(bad(node, self, format!("cannot multiply {} by {}", a.shape, b.shape)));
                }
                let mut s = broadcast(&a.shape.0[..ar - 2], &b.shape.0[..br - 2])
                    .ok_or_else(|| bad(node, self, format!("batch axes of {} and {} differ", a.shape, b.shape)))?;
                s.push(a.shape.0[ar - 2].clone());
                s.push(b.shape.0[br - 1].clone());
                vec![ValueType::new(a.dtype, Shape(s))]
            }
            Op::RmsNorm { .. } | Op::LayerNorm { .. } => {
                let x = inputs[0];
                let h = last(x)?;
                for (i, p) in inputs.iter().enumerate().skip(1) {
                    if p.shape.0 != [h.clone()] {
                        return Err(bad(node, self, format!("parameter {i} is {} for input {}", p.shape, x.shape)));
                    }
                }
                vec![x.clone()]
            }
            Op::Rope(r) => {
                let x = inputs[0];
                need_rank(x, 4, "the input")?;
                let d = x.shape.0[3].fixed().ok_or_else(|| bad(node, self, "head_dim must be fixed"))?;
                if r.rotary_dims == 0 || r.rotary_dims > d || r.rotary_dims % 2 != 0 {
                    return Err(bad(node, self, format!("rotary_dims {} for head_dim {d}", r.rotary_dims)));
                }
                if let Some(pos) = inputs.get(1) {
                    integer_rows(node, self, pos, &x.shape.0[..2])?;
                }
                vec![x.clone()]
            }
            Op::RepeatHeads { copies } => {
                let x = inputs[0];
                if x.rank() < 2 || copies.contains(&0) {
                    return Err(bad(node, self, "needs [.., heads, d] and at least one copy of each head"));
                }
                let mut s = x.shape.0.clone();
                let h = x.rank() - 2;
                let heads = s[h].fixed().ok_or_else(|| bad(node, self, "heads must be fixed"))?;
                if heads != copies.len() {
                    return Err(bad(node, self, format!("{heads} heads but {} copy counts", copies.len())));
                }
                s[h] = Dim::Fixed(copies.iter().sum());
                vec![ValueType::new(x.dtype, Shape(s))]
            }
            Op::Attention(_) => {
                let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
                for (t, w) in [(q, "q"), (k, "k"), (v, "v")] {
                    need_rank(t, 4, w)?;
                }
                let (qs, ks, vs) = (&q.shape.0, &k.shape.0, &v.shape.0);
                if qs[2] != ks[2] || qs[2] != vs[2] || qs[3] != ks[3] || ks[1] != vs[1] || qs[0] != ks[0] {
                    return Err(bad(node, self, format!("q {} k {} v {} disagree", q.shape, k.shape, v.shape)));
                }
                if let Some(prefix) = inputs.get(3) {
                    integer_rows(node, self, prefix, &qs[..1])?;
                }
                vec![ValueType::new(q.dtype, Shape(vec![qs[0].clone(), qs[1].clone(), qs[2].clone(), vs[3].clone()]))]
            }
            Op::SplitHeads { heads } => {
                let x = inputs[0];
                let n = last(x)?.fixed().ok_or_else(|| bad(node, self, "the split axis must be fixed"))?;
                if *heads == 0 || n % heads != 0 {
                    return Err(bad(node, self, format!("{n} is not {heads} heads")));
                }
                let mut s = x.shape.0.clone();
                s.pop();
                s.push(Dim::Fixed(*heads));
                s.push(Dim::Fixed(n / heads));
                vec![ValueType::new(x.dtype, Shape(s))]
            }
            Op::MergeHeads => {
                let x = inputs[0];
                if x.rank() < 2 {
                    return Err(bad(node, self, "needs [.., heads, head_dim]"));
                }
                let mut s = x.shape.0.clone();
                let d = s.pop().and_then(|d| d.fixed());
                let h = s.pop().and_then(|h| h.fixed());
                let (Some(h), Some(d)) = (h, d) else { return Err(bad(node, self, "heads and head_dim must be fixed")) };
                s.push(Dim::Fixed(h * d));
                vec![ValueType::new(x.dtype, Shape(s))]
            }
            Op::Reshape { shape } => {
                let x = inputs[0];
                if reshape_links(&x.shape, shape, 0, 0).is_none() {
                    return Err(bad(node, self, format!("cannot reshape {} to {shape}", x.shape)));
                }
                vec![ValueType::new(x.dtype, shape.clone())]
            }
            Op::Transpose { perm } => {
                let x = inputs[0];
                let mut seen = vec![false; x.rank()];
                for &p in perm {
                    match seen.get_mut(p) {
                        Some(s) if !*s => *s = true,
                        _ => return Err(bad(node, self, format!("{perm:?} is no permutation of {}", x.shape))),
                    }
                }
                if perm.len() != x.rank() {
                    return Err(bad(node, self, format!("{perm:?} is no permutation of {}", x.shape)));
                }
                vec![ValueType::new(x.dtype, Shape(perm.iter().map(|&p| x.shape.0[p].clone()).collect()))]
            }
            Op::Binary(_) => {
                let (a, b) = (inputs[0], inputs[1]);
                let s = broadcast(&a.shape.0, &b.shape.0)
                    .ok_or_else(|| bad(node, self, format!("cannot broadcast {} with {}", a.shape, b.shape)))?;
                vec![ValueType::new(a.dtype, Shape(s))]
            }
            Op::Unary(_) | Op::Softmax { .. } | Op::Dropout { .. } => {
                if let Op::Dropout { p } = self {
                    if !(0.0..1.0).contains(p) {
                        return Err(bad(node, self, format!("dropout probability {p} is not in [0, 1)")));
                    }
                }
                if let Op::Softmax { axis } = self {
                    if *axis >= inputs[0].rank() {
                        return Err(bad(node, self, format!("axis {axis} of {}", inputs[0].shape)));
                    }
                }
                vec![inputs[0].clone()]
            }
            Op::Concat { axis } => {
                let first = inputs[0];
                let mut total = 0usize;
                for t in inputs {
                    if t.rank() != first.rank() || *axis >= t.rank() {
                        return Err(bad(node, self, format!("cannot concatenate {} on axis {axis}", t.shape)));
                    }
                    for (i, (x, y)) in t.shape.0.iter().zip(&first.shape.0).enumerate() {
                        if i != *axis && x != y {
                            return Err(bad(node, self, format!("{} and {} differ off axis {axis}", t.shape, first.shape)));
                        }
                    }
                    total += t.shape.0[*axis].fixed().ok_or_else(|| bad(node, self, "concat axis must be fixed"))?;
                }
                let mut s = first.shape.0.clone();
                s[*axis] = Dim::Fixed(total);
                vec![ValueType::new(first.dtype, Shape(s))]
            }
            Op::PrefixLm { part, .. } => {
                let ids = inputs[0];
                integer_rows(node, self, ids, &ids.shape.0)?;
                need_rank(ids, 2, "the ids")?;
                let dims = if *part == PrefixPart::Length { &ids.shape.0[..1] } else { &ids.shape.0[..] };
                vec![ValueType::new(DType::I64, Shape(dims.to_vec()))]
            }
            Op::Slice { axis, start, end } => {
                let x = inputs[0];
                let n = x.dim(*axis).and_then(Dim::fixed).ok_or_else(|| bad(node, self, format!("axis {axis} of {}", x.shape)))?;
                if start >= end || *end > n {
                    return Err(bad(node, self, format!("{start}..{end} out of 0..{n}")));
                }
                let mut s = x.shape.0.clone();
                s[*axis] = Dim::Fixed(end - start);
                vec![ValueType::new(x.dtype, Shape(s))]
            }
        })
    }

    /// The op's axis mapping for these input and output types (as `infer` gave them).
    pub fn axis_mapping(&self, inputs: &[&ValueType], outputs: &[ValueType]) -> AxisMapping {
        let mut m = AxisMapping::default();
        let i = PortAxis::input;
        let o = PortAxis::output;
        let out_rank = outputs.first().map_or(0, ValueType::rank);
        // Leading axes shared one to one between input `k` (of rank r) and the output.
        let leading = |m: &mut AxisMapping, k: usize, count: usize| {
            for a in 0..count {
                m.same(i(k, a), o(0, a));
            }
        };
        match self {
            Op::Input { ty, .. } => (0..ty.rank()).for_each(|a| m.pin(o(0, a))),
            Op::Output { .. } => (0..inputs.first().map_or(0, |t| t.rank())).for_each(|a| m.pin(i(0, a))),
            Op::Param { .. } => {}
            Op::Embedding => {
                m.pin(i(0, 0));
                let r = inputs[1].rank();
                leading(&mut m, 1, r);
                m.same(i(0, 1), o(0, r));
            }
            Op::Linear => {
                let r = inputs[0].rank();
                leading(&mut m, 0, r.saturating_sub(1));
                m.same(i(0, r - 1), i(1, 1));
                m.same(i(1, 0), o(0, r - 1));
                if inputs.len() > 2 {
                    m.same(i(2, 0), o(0, r - 1));
                }
            }
            Op::MatMul => {
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
            }
            Op::RmsNorm { .. } | Op::LayerNorm { .. } => {
                leading(&mut m, 0, out_rank);
                for k in 1..inputs.len() {
                    m.same(i(k, 0), o(0, out_rank - 1));
                }
            }
            Op::Rope(_) => {
                leading(&mut m, 0, 3);
                if inputs.len() > 1 {
                    leading(&mut m, 1, 2);
                }
            }
            Op::PrefixLm { .. } => leading(&mut m, 0, out_rank),
            Op::RepeatHeads { copies } => {
                let r = out_rank;
                leading(&mut m, 0, r - 2);
                m.links.push(AxisLink::Repeat { source: i(0, r - 2), target: o(0, r - 2), copies: copies.clone() });
                m.same(i(0, r - 1), o(0, r - 1));
            }
            Op::Attention(_) => {
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
            }
            Op::SplitHeads { .. } => {
                let r = inputs[0].rank();
                leading(&mut m, 0, r - 1);
                m.links.push(AxisLink::Split {
                    flat: i(0, r - 1),
                    outer: o(0, r - 1),
                    inner: outputs[0].shape.0[r].fixed().unwrap_or(1),
                });
            }
            Op::MergeHeads => {
                let r = out_rank;
                leading(&mut m, 0, r - 1);
                m.links.push(AxisLink::Split {
                    flat: o(0, r - 1),
                    outer: i(0, r - 1),
                    inner: inputs[0].shape.0[r].fixed().unwrap_or(1),
                });
            }
            Op::Reshape { shape } => {
                if let Some(links) = reshape_links(&inputs[0].shape, shape, 0, 0) {
                    m.links = links;
                }
            }
            Op::Transpose { perm } => {
                for (a, &p) in perm.iter().enumerate() {
                    m.same(i(0, p), o(0, a));
                }
            }
            Op::Binary(_) => {
                for (k, t) in inputs.iter().enumerate() {
                    for a in 0..t.rank() {
                        let oa = a + out_rank - t.rank();
                        // equal sizes correspond; a size 1 against a larger one is a broadcast
                        if t.shape.0[a] == outputs[0].shape.0[oa] {
                            m.same(i(k, a), o(0, oa));
                        }
                    }
                }
            }
            Op::Unary(_) | Op::Dropout { .. } => leading(&mut m, 0, out_rank),
            Op::Softmax { axis } => {
                for a in (0..out_rank).filter(|a| a != axis) {
                    m.same(i(0, a), o(0, a));
                }
            }
            Op::Concat { axis } => {
                let mut offset = 0;
                for (k, t) in inputs.iter().enumerate() {
                    for a in (0..out_rank).filter(|a| a != axis) {
                        m.same(i(k, a), o(0, a));
                    }
                    m.links.push(AxisLink::Offset { part: i(k, *axis), whole: o(0, *axis), offset });
                    offset += t.shape.0[*axis].fixed().unwrap_or(0);
                }
            }
            Op::Slice { axis, start, .. } => {
                for a in (0..out_rank).filter(|a| a != axis) {
                    m.same(i(0, a), o(0, a));
                }
                m.links.push(AxisLink::Offset { part: o(0, *axis), whole: i(0, *axis), offset: *start });
            }
        }
        m
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attrs = self.attributes();
        if attrs.is_empty() {
            f.write_str(self.mnemonic())
        } else {
            write!(f, "{}<{attrs}>", self.mnemonic())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dims: Vec<Dim>) -> ValueType {
        ValueType::new(DType::F32, Shape(dims))
    }

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
    fn broadcasting_size_one_axes_do_not_couple() {
        let a = t(vec![Dim::batch(), 64.into()]);
        let b = t(vec![Dim::batch(), 1.into()]);
        let op = Op::Binary(BinaryOp::Mul);
        let out = op.infer("m", &[&a, &b]).unwrap();
        let m = op.axis_mapping(&[&a, &b], &out);
        assert!(m.links.contains(&AxisLink::Same(PortAxis::input(0, 1), PortAxis::output(0, 1))));
        assert!(!m.links.contains(&AxisLink::Same(PortAxis::input(1, 1), PortAxis::output(0, 1))));
    }

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
}
