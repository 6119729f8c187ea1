//! The ops of the IR. Each op infers its output types from its input types (so a graph's
//! types cannot drift from its ops), states its axis mapping (so the dependency analysis
//! needs no per-op rule of its own) and states how it shrinks when units are pruned (so the
//! `prune` pass needs none either).
//!
//! This module holds the [`Op`] enum, what every op shares (its name, attributes and arity)
//! and the dispatch of [`Op::infer`], [`Op::axis_mapping`] and [`Op::shrink`]; what an op
//! means lives in the file of its family:
//!
//! - [`io`]: `Input`, `Param`, `Output`, the graph's boundary;
//! - [`linear`]: `Embedding`, `Linear`, `MatMul`;
//! - [`norm`]: `RmsNorm`, `LayerNorm`;
//! - [`attention`]: `Rope`, `Attention`, `PrefixLm`;
//! - [`heads`]: `SplitHeads`, `MergeHeads`, `RepeatHeads`;
//! - [`shape`]: `Reshape`, `Transpose`, `Concat`, `Slice`;
//! - [`elementwise`]: `Binary`, `Unary`, `Softmax`, `Dropout`.
//!
//! To add an op: its variant here, its arm in each dispatch (the matches are exhaustive, so
//! the compiler lists them), its rules in its family's file, its kernel in the backend.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::axes::{AxisMapping, PortAxis};
use crate::error::{IrError, Result};
use crate::types::{DType, Dim, Shape, ValueType};

pub mod attention;
pub mod elementwise;
pub mod heads;
pub mod io;
pub mod linear;
pub mod norm;
pub mod shape;

pub use attention::{Attention, PrefixPart, Rope, RopeLayout, RopeScaling};
pub use elementwise::{BinaryOp, UnaryOp};

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
    /// `x / sqrt(mean(x²) + eps) · (w + offset)` over the last axis.
    RmsNorm {
        /// Added to the mean square.
        eps: f32,
        /// Added to the weight before it multiplies (Gemma's `(1 + w)` norms store `w` and
        /// have 1; 0 elsewhere).
        offset: f32,
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

/// Which indices pruning removes from the axes around one node: the axes of its inputs and
/// of its outputs. The `prune` pass gathers them per value; an op's shrink rule reads them.
pub trait RemovedIndices {
    /// The indices removed from `axis` (sorted), or `None` when it loses none.
    fn removed(&self, axis: PortAxis) -> Option<&BTreeSet<usize>>;
}

impl RemovedIndices for BTreeMap<PortAxis, BTreeSet<usize>> {
    fn removed(&self, axis: PortAxis) -> Option<&BTreeSet<usize>> {
        self.get(&axis)
    }
}

/// What pruning does to one node, as its op's shrink rule ([`Op::shrink`]) states it. The
/// node's types are re-inferred afterwards, so a rule changes only what inference cannot
/// derive: the op's attributes and the parameter data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shrink {
    /// The op with its attributes updated (`None`: unchanged).
    pub op: Option<Op>,
    /// What happens to parameter data (`None`: nothing).
    pub param: Option<ParamEdit>,
}

/// A change to parameter data that a shrink rule asks for; the `prune` pass makes it in the
/// parameter store.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamEdit {
    /// Parameter `name` (the node's own) keeps, along each axis, these indices (`None`: all).
    Select {
        /// The parameter's name in the store.
        name: String,
        /// The kept indices per axis, increasing.
        keep: Vec<Option<Vec<usize>>>,
    },
    /// The parameter feeding input `input` is multiplied by `factor`. Made after every
    /// selection, so it scales what is left.
    Scale {
        /// The input the parameter feeds.
        input: usize,
        /// The multiplier.
        factor: f32,
    },
}

/// The operand types of one node, with what an error names: the node and its op.
struct Operands<'a> {
    node: &'a str,
    op: &'a Op,
    /// The input types, as many as the op's arity allows.
    inputs: &'a [&'a ValueType],
}

impl<'a> Operands<'a> {
    /// Input `k` (the arity was checked, so it is there).
    fn input(&self, k: usize) -> &'a ValueType {
        self.inputs[k]
    }

    /// The operands are wrong for `reason`.
    fn bad(&self, reason: impl Into<String>) -> IrError {
        IrError::BadOperands { node: self.node.to_string(), op: self.op.mnemonic(), reason: reason.into() }
    }

    /// The last dimension of `t`.
    fn last(&self, t: &ValueType) -> Result<Dim> {
        t.shape.last().cloned().ok_or_else(|| self.bad("scalar operand"))
    }

    /// Checks that `t` (named `what` in the error) has rank `r`.
    fn need_rank(&self, t: &ValueType, r: usize, what: &str) -> Result<()> {
        if t.rank() == r {
            Ok(())
        } else {
            Err(self.bad(format!("{what} must have rank {r}, has {}", t.shape)))
        }
    }

    /// Checks that `t` holds integers of shape `dims` (positions or lengths per row).
    fn integer_rows(&self, t: &ValueType, dims: &[Dim]) -> Result<()> {
        if !matches!(t.dtype, DType::I64 | DType::I32) || t.shape.0 != dims {
            return Err(self.bad(format!("expected integers of shape {}, got {} {}", Shape(dims.to_vec()), t.dtype, t.shape)));
        }
        Ok(())
    }
}

/// The rank of the first output (0 when there is none).
fn out_rank(outputs: &[ValueType]) -> usize {
    outputs.first().map_or(0, ValueType::rank)
}

/// Links the first `count` axes of input `input` one to one with those of output 0.
fn leading(m: &mut AxisMapping, input: usize, count: usize) {
    for a in 0..count {
        m.same(PortAxis::input(input, a), PortAxis::output(0, a));
    }
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
            Op::Binary(op) => op.mnemonic(),
            Op::Unary(op) => op.mnemonic(),
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Softmax { .. } => "softmax",
            Op::PrefixLm { .. } => "prefix_lm",
            Op::Dropout { .. } => "dropout",
        }
    }

    /// The op's attributes as the printer writes them (empty when it has none).
    pub fn attributes(&self) -> String {
        match self {
            Op::Input { name, .. } | Op::Param { name, .. } | Op::Output { name } => format!("{name:?}"),
            Op::RmsNorm { eps, offset } if *offset != 0.0 => format!("eps={eps:e}, offset={offset}"),
            Op::RmsNorm { eps, .. } | Op::LayerNorm { eps } => format!("eps={eps:e}"),
            Op::Rope(r) => r.attributes(),
            Op::PrefixLm { bos, masks, part } => format!("bos={bos}, masks={masks:?}, {part:?}"),
            Op::RepeatHeads { copies } => match Op::uniform_copies(copies) {
                Some(times) => format!("times={times}"),
                None => format!("copies={copies:?}"),
            },
            Op::SplitHeads { heads } => format!("heads={heads}"),
            Op::Attention(a) => match a.window {
                Some(w) => format!("scale={}, causal={}, window={w}", a.scale, a.causal),
                None => format!("scale={}, causal={}", a.scale, a.causal),
            },
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
        let cx = Operands { node, op: self, inputs };
        let (lo, hi) = self.arity();
        if inputs.len() < lo || inputs.len() > hi {
            return Err(cx.bad(format!("takes {lo}..={hi} inputs, got {}", inputs.len())));
        }
        match self {
            Op::Input { ty, .. } | Op::Param { ty, .. } => Ok(io::infer_source(ty)),
            Op::Output { .. } => Ok(io::infer_output()),
            Op::Embedding => linear::infer_embedding(&cx),
            Op::Linear => linear::infer_linear(&cx),
            Op::MatMul => linear::infer_matmul(&cx),
            Op::RmsNorm { .. } | Op::LayerNorm { .. } => norm::infer(&cx),
            Op::Rope(r) => r.infer(&cx),
            Op::Attention(_) => attention::infer_attention(&cx),
            Op::PrefixLm { part, .. } => attention::infer_prefix_lm(&cx, *part),
            Op::RepeatHeads { copies } => heads::infer_repeat(&cx, copies),
            Op::SplitHeads { heads } => heads::infer_split(&cx, *heads),
            Op::MergeHeads => heads::infer_merge(&cx),
            Op::Reshape { shape } => shape::infer_reshape(&cx, shape),
            Op::Transpose { perm } => shape::infer_transpose(&cx, perm),
            Op::Concat { axis } => shape::infer_concat(&cx, *axis),
            Op::Slice { axis, start, end } => shape::infer_slice(&cx, *axis, *start, *end),
            Op::Binary(_) => elementwise::infer_binary(&cx),
            Op::Unary(_) => Ok(elementwise::infer_unary(&cx)),
            Op::Softmax { axis } => elementwise::infer_softmax(&cx, *axis),
            Op::Dropout { p } => elementwise::infer_dropout(&cx, *p),
        }
    }

    /// The op's axis mapping for these input and output types (as `infer` gave them).
    pub fn axis_mapping(&self, inputs: &[&ValueType], outputs: &[ValueType]) -> AxisMapping {
        match self {
            Op::Input { ty, .. } => io::axes_input(ty),
            Op::Output { .. } => io::axes_output(inputs),
            Op::Param { .. } => AxisMapping::default(),
            Op::Embedding => linear::axes_embedding(inputs),
            Op::Linear => linear::axes_linear(inputs),
            Op::MatMul => linear::axes_matmul(inputs, outputs),
            Op::RmsNorm { .. } | Op::LayerNorm { .. } => norm::axes(inputs, outputs),
            Op::Rope(_) => attention::axes_rope(inputs),
            Op::Attention(_) => attention::axes_attention(inputs),
            Op::PrefixLm { .. } => attention::axes_prefix_lm(outputs),
            Op::RepeatHeads { copies } => heads::axes_repeat(copies, outputs),
            Op::SplitHeads { .. } => heads::axes_split(inputs, outputs),
            Op::MergeHeads => heads::axes_merge(inputs, outputs),
            Op::Reshape { shape } => shape::axes_reshape(inputs, shape),
            Op::Transpose { perm } => shape::axes_transpose(perm),
            Op::Concat { axis } => shape::axes_concat(inputs, outputs, *axis),
            Op::Slice { axis, start, .. } => shape::axes_slice(outputs, *axis, *start),
            Op::Binary(_) => elementwise::axes_binary(inputs, outputs),
            Op::Unary(_) | Op::Dropout { .. } => elementwise::axes_pointwise(outputs),
            Op::Softmax { axis } => elementwise::axes_softmax(outputs, *axis),
        }
    }

    /// How the op changes when pruning removes the indices `removed` from the axes of its
    /// inputs and outputs (of types `inputs` and `outputs`, as before pruning); `node` names
    /// the node in errors. Parameters keep what is left; attributes that count along a pruned
    /// axis (a reshape's sizes, a slice's bounds, heads and their copies) count what is left;
    /// an RMSNorm is rescaled to compute what it computed with the removed channels zeroed.
    /// Ops whose attributes do not depend on pruned sizes stay as they are: re-inferring the
    /// types is all they need.
    pub fn shrink(&self, node: &str, inputs: &[&ValueType], outputs: &[ValueType], removed: &dyn RemovedIndices) -> Result<Shrink> {
        match self {
            Op::Param { name, ty } => io::shrink_param(name, ty, removed),
            Op::RmsNorm { eps, offset } => Ok(norm::shrink_rms_norm(*eps, *offset, inputs, removed)),
            Op::RepeatHeads { copies } => heads::shrink_repeat(node, copies, outputs, removed),
            Op::SplitHeads { heads } => Ok(heads::shrink_split(*heads, outputs, removed)),
            Op::Reshape { shape } => Ok(shape::shrink_reshape(shape, removed)),
            Op::Slice { axis, start, end } => Ok(shape::shrink_slice(*axis, *start, *end, removed)),
            Op::Input { .. }
            | Op::Output { .. }
            | Op::Embedding
            | Op::Linear
            | Op::MatMul
            | Op::LayerNorm { .. }
            | Op::Rope(_)
            | Op::Attention(_)
            | Op::PrefixLm { .. }
            | Op::MergeHeads
            | Op::Transpose { .. }
            | Op::Concat { .. }
            | Op::Binary(_)
            | Op::Unary(_)
            | Op::Softmax { .. }
            | Op::Dropout { .. } => Ok(Shrink::default()),
        }
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

/// Helpers for the tests of every family.
#[cfg(test)]
mod test_util {
    use crate::types::{DType, Dim, Shape, ValueType};

    /// An f32 value of these dimensions.
    pub(super) fn t(dims: Vec<Dim>) -> ValueType {
        ValueType::new(DType::F32, Shape(dims))
    }
}
