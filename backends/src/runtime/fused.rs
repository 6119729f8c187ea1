//! Ops the executor runs as one kernel each where the backend has one: the loss's token
//! log-probabilities, SiLU, RMSNorm's normalization, the softmax over the last axis and the
//! rotary embedding, each with a backward pass of its own under autodiff; and the linear op as
//! one autodiff node (its products Burn's).
//!
//! Burn's autodiff composes `log_softmax`, `softmax` and `silu` from primitive ops, each a pass
//! over memory whose output is kept for the backward pass: the loss of a 640-token batch over a
//! 49 152-token vocabulary made six passes over a 126 MB tensor forward, more backward, and kept
//! three of them. [`Fused`] is Burn's extension point for that (a backend extension trait, as in
//! Burn's custom-kernel examples): the CPU backend runs each op as one kernel over rayon's pool
//! (rows or chunks split among the threads; every element computed as in a plain loop); autodiff
//! records one node, which keeps only the op's input or output, and whose backward pass is one
//! more kernel; any other backend (CUDA) composes the op from Burn's ops, as before.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{binary, unary, Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::{Flex, FlexTensor};
use burn::prelude::{Int, Tensor, TensorData};
use prunec_ir::Op;
use burn::tensor::activation;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, IndexingUpdateOp, Shape, TensorMetadata, TensorPrimitive};

/// A backend that runs prunec's fused ops; each has a composition of Burn's ops as its default.
pub trait Fused: Backend {
    /// `log softmax(logits[r, ..])[targets[r]]` of every row of `logits [rows, vocab]`: `[rows]`.
    fn token_log_probs(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        composed::token_log_probs::<Self>(logits, targets)
    }

    /// The gradient of the logits from that of their token log-probabilities `grad [rows]`:
    /// `grad[r] · (onehot(targets[r]) − softmax(logits[r, ..]))`.
    fn token_log_probs_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::token_log_probs_backward::<Self>(logits, targets, grad)
    }

    /// `x · σ(x)`, element-wise.
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::silu::<Self>(x)
    }

    /// The gradient of SiLU's input: `grad · (σ(x) + x·σ(x)·(1 − σ(x)))`.
    fn silu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::silu_backward::<Self>(x, grad)
    }

    /// `x / √(mean(x²) + eps)` over the last axis (RMSNorm before its weight).
    fn rms_normalize(x: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        composed::rms_normalize::<Self>(x, eps)
    }

    /// The gradient of RMSNorm's input, row by row with `r = 1/√(mean(x²) + eps)`:
    /// `r · (grad − x · r² · mean(grad·x))`.
    fn rms_normalize_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        composed::rms_normalize_backward::<Self>(x, grad, eps)
    }

    /// `x · wᵀ` of `x [rows, in]` and a weight held `[out, in]`: `[rows, out]`. Under autodiff
    /// one node with both as parents, whose backward pass gives `x`'s gradient as `grad · w` and
    /// the weight's as `gradᵀ · x`, in the weight's own layout.
    fn linear_out_in(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, Self::float_transpose(w))
    }

    /// Rotary position embedding of `x [batch, seq, heads, d]`: its first `rotary` channels
    /// turned by the angles whose cosines and sines are `cos` and `sin` (`[batch, seq, heads or
    /// 1, width]`, `width` being `rotary`, or `rotary / 2` for `interleaved` pairs), the others
    /// passed through: `x · cos + turn(x) · sin`, `turn` swapping the two halves and negating the
    /// first (or each pair's members, negating the odd one into the even place). With `inverse`
    /// the turn's transpose (each half's sine moving with the value it multiplies; for pairs, the
    /// sines negated): the gradient of `x` from that of the output, and the turn back where the
    /// two halves' angles are equal, as rotary tables' are. Under autodiff one node; the tables
    /// are constants.
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        rotary: usize,
        interleaved: bool,
        inverse: bool,
    ) -> FloatTensor<Self> {
        composed::rope::<Self>(x, cos, sin, rotary, interleaved, inverse)
    }

    /// Softmax over the last axis.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = x.shape().num_dims() - 1;
        Self::softmax(x, last)
    }

    /// The gradient of the softmax's input from its output `y` and its gradient, row by row
    /// over the last axis: `y · (grad − Σ grad·y)`.
    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::softmax_last_backward::<Self>(y, grad)
    }

    /// Scaled dot-product attention: `q [batch, s, heads, d]`, `k` and `v` `[batch, t, heads,
    /// d]` (key/value heads repeated for their queries), or `[batch, t, kv heads, d]` with
    /// [`AttentionMask::kv_copies`] saying how many query heads read each, scores
    /// `q·kᵀ·scale`, the query at `i` of row `r` seeing the keys [`AttentionMask::visible`];
    /// `[batch, heads, s, d]`. Forward only: under autodiff it is the composition of Burn's ops.
    fn masked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        mask: &AttentionMask,
    ) -> FloatTensor<Self> {
        composed::attention::<Self>(q, k, v, scale, mask)
    }
}

/// Which keys each query of an attention sees: those at or before its position (causal), or
/// also those of the row's prefix (a prefix LM), within a sliding window behind it (if any).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionMask {
    /// Whether a query sees no key ahead of it (past its row's prefix).
    pub causal: bool,
    /// A query at `i` sees only keys `j` with `i − j < window` (of those at or before it).
    pub window: Option<usize>,
    /// Positions before the first query (a key/value cache's).
    pub past: usize,
    /// Each row's prefix length (a prefix LM's bidirectional part); none: no prefix.
    pub prefix: Option<Vec<i64>>,
    /// Keys and values come with one head per key/value head, each read by this many
    /// consecutive query heads (grouped-query attention, unrepeated); none: one per query head.
    pub kv_copies: Option<Vec<usize>>,
}

impl AttentionMask {
    /// The key/value head each of `heads` query heads reads, for keys and values of `kv_heads`
    /// heads; `None` when [`AttentionMask::kv_copies`] does not pair them.
    pub fn kv_head_of(&self, heads: usize, kv_heads: usize) -> Option<Vec<usize>> {
        match &self.kv_copies {
            None => (kv_heads == heads).then(|| (0..heads).collect()),
            Some(copies) => (copies.len() == kv_heads && copies.iter().sum::<usize>() == heads).then(|| source_heads(copies)),
        }
    }

    /// Whether the mask hides any key at all.
    pub fn hides(&self) -> bool {
        self.causal || self.window.is_some()
    }

    /// The keys the query at `i` of row `row` sees, of `t`: one range. Key `j` is hidden when
    /// it lies ahead of the query and past the row's prefix (causal), or the window or more
    /// positions behind it.
    pub fn visible(&self, row: usize, i: usize, t: usize) -> std::ops::Range<usize> {
        let at = self.past + i;
        let lo = self.window.map_or(0, |w| (at + 1).saturating_sub(w));
        let prefix = self.prefix.as_ref().and_then(|p| p.get(row)).map_or(0, |&p| usize::try_from(p).unwrap_or(0));
        let hi = if self.causal { t.min((at + 1).max(prefix)) } else { t };
        lo.min(hi)..hi
    }
}

/// An autodiff backend whose inner backend runs the fused ops too.
pub trait FusedAutodiff: AutodiffBackend<InnerBackend: Fused> + Fused {}

impl<A> FusedAutodiff for A
where
    A: AutodiffBackend + Fused,
    A::InnerBackend: Fused,
{
}

#[cfg(feature = "cuda")]
impl Fused for burn::backend::Cuda {}

/// `log softmax(logits)[.., target]` over the last axis of `logits [.., vocab]` for the targets
/// `[..]` of the leading axes.
pub fn token_log_probs<B: Fused, const D: usize, const T: usize>(logits: Tensor<B, D>, targets: Tensor<B, T, Int>) -> Tensor<B, T> {
    let lead = targets.dims();
    let vocab = logits.dims()[D - 1];
    let rows = lead.iter().product();
    let logits = logits.reshape([rows, vocab]).into_primitive().tensor();
    let out = B::token_log_probs(logits, targets.reshape([rows]).into_primitive());
    Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(out)).reshape(lead)
}

/// SiLU, `x · σ(x)`.
pub fn silu<B: Fused, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::silu(x.into_primitive().tensor())))
}

/// `x · wᵀ` of `x [rows, in]` and a weight held `[out, in]` ([`Fused::linear_out_in`]; Burn's `ModuleOps::linear` takes the weight `[in, out]`).
pub fn linear<B: Fused>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::linear_out_in(x.into_primitive().tensor(), w.into_primitive().tensor())))
}

/// A new f32 buffer written over the pool, `chunk` elements a task (the CPU kernels' outputs).
pub(super) use cpu::output;

/// Rotary position embedding of `x [batch, seq, heads, d]` ([`Fused::rope`]).
pub fn rope<B: Fused>(x: Tensor<B, 4>, cos: Tensor<B, 4>, sin: Tensor<B, 4>, rotary: usize, interleaved: bool) -> Tensor<B, 4> {
    let p = |t: Tensor<B, 4>| t.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(B::rope(p(x), p(cos), p(sin), rotary, interleaved, false)))
}

/// RMSNorm's normalization over the last axis, `x / √(mean(x²) + eps)`.
pub fn rms_normalize<B: Fused, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::rms_normalize(x.into_primitive().tensor(), eps)))
}

/// Softmax over `axis`: fused over the last axis, Burn's own over any other.
pub fn softmax<B: Fused, const D: usize>(x: Tensor<B, D>, axis: usize) -> Tensor<B, D> {
    if axis + 1 == D {
        Tensor::from_primitive(TensorPrimitive::Float(B::softmax_last(x.into_primitive().tensor())))
    } else {
        activation::softmax(x, axis)
    }
}

/// The head each repeated head of `repeat_heads` copies: head `j`, `copies[j]` times, in order.
pub fn source_heads(copies: &[usize]) -> Vec<usize> {
    copies.iter().enumerate().flat_map(|(j, &c)| std::iter::repeat_n(j, c)).collect()
}

/// `x [.., heads, d]` with head `j` repeated `copies[j]` times, consecutively: the IR's
/// `repeat_heads`. `E` is `D + 1` (the rank of the uniform case's expanded view).
pub fn repeat_heads<B: Backend, const D: usize, const E: usize>(x: Tensor<B, D>, copies: &[usize]) -> Tensor<B, D> {
    let mut dims = x.dims();
    match Op::uniform_copies(copies) {
        Some(times) => {
            // [.., heads, 1, d], the 1 repeated
            let mut expanded = [1; E];
            expanded[..D - 1].copy_from_slice(&dims[..D - 1]);
            expanded[D] = dims[D - 1];
            dims[D - 2] *= times;
            x.reshape(expanded).repeat_dim(D - 1, times).reshape(dims)
        }
        None => {
            // uneven (query heads pruned unevenly): the source heads gathered by index
            let index: Vec<i64> = source_heads(copies).into_iter().map(|j| j as i64).collect();
            let (n, device) = (index.len(), x.device());
            x.select(D - 2, Tensor::<B, 1, Int>::from_data(TensorData::new(index, [n]), &device))
        }
    }
}

/// Scaled dot-product attention (see [`Fused::masked_attention`]): `[batch, heads, s, d]`.
pub fn attention<B: Fused>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, scale: f32, mask: &AttentionMask) -> Tensor<B, 4> {
    let out = B::masked_attention(q.into_primitive().tensor(), k.into_primitive().tensor(), v.into_primitive().tensor(), scale, mask);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The fused ops composed from Burn's ops (the defaults, and the CPU's for other float types).
mod composed {
    use super::*;

    fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
        Tensor::from_primitive(TensorPrimitive::Float(t))
    }

    fn flat<B: Backend>(t: FloatTensor<B>) -> (Tensor<B, 1>, Shape) {
        let shape = t.shape();
        let n = shape.num_elements();
        (float::<B, 1>(t).reshape([n]), shape)
    }

    fn rows<B: Backend>(t: FloatTensor<B>) -> (Tensor<B, 2>, Shape) {
        let shape = t.shape();
        let width = shape.last().copied().unwrap_or(1);
        let n = shape.num_elements() / width.max(1);
        (float::<B, 2>(t).reshape([n, width]), shape)
    }

    fn back<B: Backend, const D: usize>(t: Tensor<B, D>, shape: Shape) -> FloatTensor<B> {
        B::float_reshape(t.into_primitive().tensor(), shape)
    }

    pub fn token_log_probs<B: Backend>(logits: FloatTensor<B>, targets: IntTensor<B>) -> FloatTensor<B> {
        let logits = float::<B, 2>(logits);
        let n = logits.dims()[0];
        let targets = Tensor::<B, 1, Int>::from_primitive(targets).reshape([n, 1]);
        activation::log_softmax(logits, 1).gather(1, targets).reshape([n]).into_primitive().tensor()
    }

    pub fn token_log_probs_backward<B: Backend>(logits: FloatTensor<B>, targets: IntTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        let logits = float::<B, 2>(logits);
        let n = logits.dims()[0];
        let grad = float::<B, 1>(grad).reshape([n, 1]);
        let targets = Tensor::<B, 1, Int>::from_primitive(targets).reshape([n, 1]);
        let picked = logits.zeros_like().scatter(1, targets, grad.clone(), IndexingUpdateOp::Add);
        (picked - activation::softmax(logits, 1) * grad).into_primitive().tensor()
    }

    pub fn rope<B: Backend>(
        x: FloatTensor<B>,
        cos: FloatTensor<B>,
        sin: FloatTensor<B>,
        r: usize,
        interleaved: bool,
        inverse: bool,
    ) -> FloatTensor<B> {
        let (x, cos, sin) = (float::<B, 4>(x), float::<B, 4>(cos), float::<B, 4>(sin));
        let [b, s, h, d] = x.dims();
        let half = r / 2;
        let (rot, pass) = if r < d { (x.clone().narrow(3, 0, r), Some(x.narrow(3, r, d - r))) } else { (x, None) };
        let rotated = if interleaved {
            // a pair's turn back is the turn by the negated angle
            let sin = if inverse { sin.neg() } else { sin };
            let pairs = rot.reshape([b, s, h, half, 2]);
            let even = pairs.clone().narrow(4, 0, 1).reshape([b, s, h, half]);
            let odd = pairs.narrow(4, 1, 1).reshape([b, s, h, half]);
            let e = even.clone() * cos.clone() - odd.clone() * sin.clone();
            let o = odd * cos + even * sin;
            Tensor::cat(vec![e.reshape([b, s, h, half, 1]), o.reshape([b, s, h, half, 1])], 4).reshape([b, s, h, r])
        } else {
            let x1 = rot.clone().narrow(3, 0, half);
            let x2 = rot.clone().narrow(3, half, half);
            if inverse {
                // the turn's transpose: each half's sine moves with the value it multiplies
                let (s1, s2) = (sin.clone().narrow(3, 0, half), sin.narrow(3, half, half));
                rot * cos + Tensor::cat(vec![x2 * s2, x1.neg() * s1], 3)
            } else {
                let rotated_half = Tensor::cat(vec![x2.neg(), x1], 3);
                rot * cos + rotated_half * sin
            }
        };
        match pass {
            Some(p) => Tensor::cat(vec![rotated, p], 3),
            None => rotated,
        }
        .into_primitive()
        .tensor()
    }

    pub fn silu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let (x, shape) = flat::<B>(x);
        back(activation::silu(x), shape)
    }

    pub fn silu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        let (x, shape) = flat::<B>(x);
        let (grad, _) = flat::<B>(grad);
        let s = activation::sigmoid(x.clone());
        let ds = s.clone() + x * s.clone() * (s.neg() + 1.0);
        back(grad * ds, shape)
    }

    pub fn rms_normalize<B: Backend>(x: FloatTensor<B>, eps: f64) -> FloatTensor<B> {
        let (x, shape) = rows::<B>(x);
        let r = (x.clone().powi_scalar(2).mean_dim(1) + eps).sqrt().recip();
        back(x * r, shape)
    }

    pub fn rms_normalize_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>, eps: f64) -> FloatTensor<B> {
        let (x, shape) = rows::<B>(x);
        let (grad, _) = rows::<B>(grad);
        let r = (x.clone().powi_scalar(2).mean_dim(1) + eps).sqrt().recip();
        let dot = (grad.clone() * x.clone()).mean_dim(1);
        back((grad - x * r.clone().powi_scalar(2) * dot) * r, shape)
    }

    pub fn attention<B: Fused>(
        q: FloatTensor<B>,
        k: FloatTensor<B>,
        v: FloatTensor<B>,
        scale: f32,
        mask: &AttentionMask,
    ) -> FloatTensor<B> {
        let (q, mut k, mut v) = (float::<B, 4>(q), float::<B, 4>(k), float::<B, 4>(v));
        if let Some(copies) = &mask.kv_copies {
            k = super::repeat_heads::<B, 4, 5>(k, copies);
            v = super::repeat_heads::<B, 4, 5>(v, copies);
        }
        let device = q.device();
        let q = q.swap_dims(1, 2);
        let k = k.swap_dims(1, 2);
        let v = v.swap_dims(1, 2);
        let [b, h, s, t] = [q.dims()[0], q.dims()[1], q.dims()[2], k.dims()[2]];
        let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        if mask.hides() {
            let rows = mask.prefix.as_ref().map_or(1, Vec::len);
            let additive: Vec<f32> = (0..rows)
                .flat_map(|r| {
                    (0..s).flat_map(move |i| {
                        let seen = mask.visible(r, i, t);
                        (0..t).map(move |j| if seen.contains(&j) { 0.0 } else { f32::NEG_INFINITY })
                    })
                })
                .collect();
            if rows == 1 {
                // one mask for every row and head: added as a shared row of s·t values, which
                // Flex adds in place with SIMD (a [1, 1, s, t] operand broadcast over [batch,
                // heads, s, t] it would walk element by element)
                let additive = Tensor::<B, 2>::from_data(TensorData::new(additive, [1, s * t]), &device);
                scores = (scores.reshape([b * h, s * t]) + additive).reshape([b, h, s, t]);
            } else {
                let additive = Tensor::<B, 3>::from_data(TensorData::new(additive, [rows, s, t]), &device);
                scores = scores + additive.unsqueeze_dim::<4>(1);
            }
        }
        let probs = super::softmax(scores, 3);
        probs.matmul(v).into_primitive().tensor()
    }

    pub fn softmax_last_backward<B: Backend>(y: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        let (y, shape) = rows::<B>(y);
        let (grad, _) = rows::<B>(grad);
        let dot = (grad.clone() * y.clone()).sum_dim(1);
        back(y * (grad - dot), shape)
    }
}

/// The CPU's kernels, over f32 slices, their sums over a row taken in f64; every row or chunk is
/// computed by one thread as a plain loop would, so results do not depend on the number of
/// threads.
mod cpu {
    use rayon::prelude::*;

    /// [`Fused::rope`](super::Fused::rope) of `x` (`[.., heads, d]` row-major, a row of `heads ×
    /// d` per position), the tables holding `width` values per position and head
    /// (`table_heads == heads`) or per position (`table_heads == 1`): position by position over
    /// the pool, each element by the composition's operations in its order (`x1·c + (−x2)·s`,
    /// `e·c − o·s`), so with its bits.
    #[allow(clippy::too_many_arguments)]
    pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], d: usize, heads: usize, table_heads: usize, rotary: usize, interleaved: bool, inverse: bool) -> Vec<f32> {
        let width = if interleaved { rotary / 2 } else { rotary };
        let half = rotary / 2;
        let row = heads * d;
        output(x.len(), row, |pos, out| {
            let x = &x[pos * row..(pos + 1) * row];
            for head in 0..heads {
                let t = (pos * table_heads + if table_heads == 1 { 0 } else { head }) * width;
                let (c, s) = (&cos[t..t + width], &sin[t..t + width]);
                // a pair's turn back: the negated angle
                let sn = |j: usize| if inverse { -s[j] } else { s[j] };
                let (x, y) = (&x[head * d..(head + 1) * d], &mut out[head * d..(head + 1) * d]);
                if interleaved {
                    for j in 0..half {
                        let (e, o) = (x[2 * j], x[2 * j + 1]);
                        y[2 * j] = e * c[j] - o * sn(j);
                        y[2 * j + 1] = o * c[j] + e * sn(j);
                    }
                } else if inverse {
                    // each half's sine moves with the value it multiplies
                    for j in 0..half {
                        let (x1, x2) = (x[j], x[j + half]);
                        y[j] = x1 * c[j] + x2 * s[j + half];
                        y[j + half] = x2 * c[j + half] + (-x1) * s[j];
                    }
                } else {
                    for j in 0..half {
                        let (x1, x2) = (x[j], x[j + half]);
                        y[j] = x1 * c[j] + (-x2) * s[j];
                        y[j + half] = x2 * c[j + half] + x1 * s[j + half];
                    }
                }
                y[rotary..].copy_from_slice(&x[rotary..]);
            }
        })
    }

    /// Tests set this to run the baseline bodies of [`wide!`]'s functions and compare bits.
    #[cfg(test)]
    pub static FORCE_BASELINE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    fn baseline_forced() -> bool {
        #[cfg(test)]
        return FORCE_BASELINE.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(test))]
        false
    }

    /// Defines a function whose body is compiled for AVX-512 and for AVX2 besides the baseline,
    /// the widest the CPU has being chosen at run time: the same operations in the same order
    /// (Rust never fuses a multiply and an add by itself), so the same bits, more lanes at once.
    macro_rules! wide {
        ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)? $body:block) => {
            $(#[$m])* $vis fn $name($($a: $t),*) $(-> $r)? {
                #[inline(always)]
                fn body($($a: $t),*) $(-> $r)? $body
                #[cfg(target_arch = "x86_64")]
                if !baseline_forced() {
                    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
                    unsafe fn v4($($a: $t),*) $(-> $r)? { body($($a),*) }
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn v3($($a: $t),*) $(-> $r)? { body($($a),*) }
                    if std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx512bw")
                        && std::arch::is_x86_feature_detected!("avx512dq")
                        && std::arch::is_x86_feature_detected!("avx512vl")
                    {
                        // SAFETY: the CPU has the features v4 is compiled for
                        return unsafe { v4($($a),*) };
                    }
                    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                        // SAFETY: the CPU has the features v3 is compiled for
                        return unsafe { v3($($a),*) };
                    }
                }
                body($($a),*)
            }
        };
    }

    /// Elements a task takes at least (smaller ops are not worth splitting).
    const GRAIN: usize = 1 << 15;

    /// Rows per task for rows of `width` elements.
    fn rows_per_task(width: usize) -> usize {
        (GRAIN / width.max(1)).max(1)
    }

    /// Elements per task for rows of `width` elements (never 0: an empty row is one task's).
    fn row_chunk(width: usize) -> usize {
        (rows_per_task(width) * width).max(1)
    }

    /// A new output of `n` elements, written piece by piece over the pool: each piece of `chunk`
    /// elements zeroed and then handed to `f(index, piece)` by the task that owns it, so the
    /// calling thread does not clear the whole buffer alone first (as `vec![0.0; n]` does) and
    /// each piece is written while it is in that core's cache.
    pub fn output(n: usize, chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
        let mut out: Vec<f32> = Vec::with_capacity(n);
        out.spare_capacity_mut()[..n].par_chunks_mut(chunk.max(1)).enumerate().for_each(|(i, piece)| {
            piece.fill(std::mem::MaybeUninit::new(0.0));
            // SAFETY: every element of `piece` was just written; MaybeUninit<f32> and f32 share
            // their layout
            let piece = unsafe { &mut *(piece as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            f(i, piece);
        });
        // SAFETY: the pieces cover the `n` elements, each written above
        unsafe { out.set_len(n) };
        out
    }

    /// `f(out, x)` on the pieces of `out` and `x` of `chunk` elements each, over the pool.
    fn zip_chunks(out: &mut [f32], x: &[f32], chunk: usize, f: impl Fn(&mut [f32], &[f32]) + Sync + Send) {
        out.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(out, x)| f(out, x));
    }

    /// `e^x` in f32 without a call to libm, so that loops over it vectorise: `x = n·ln 2 + r`
    /// with `n` rounded to the nearest integer and `|r| ≤ ln 2 / 2` (ln 2 in two parts, Cody and
    /// Waite), `e^r` by Cephes' `expf` polynomial, `2^n` written into the exponent's bits. Within 2
    /// ulp of the exact value (test); 0 below −87.33 (no subnormals; softmax's −∞ gives 0), +∞
    /// above 88.72, NaN for NaN.
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        // adding 1.5·2^23 rounds to the nearest integer (|v| < 2^22), which then sits in the
        // low bits of the sum; taking it away again gives that integer as a float
        const ROUND: f32 = 12_582_912.0;
        const MIN: f32 = -87.336_55;
        const MAX: f32 = 88.722_83;
        let c = x.max(MIN).min(MAX);
        let k = c * LOG2E + ROUND;
        let n = k - ROUND;
        let r = (c - n * LN2_HI) - n * LN2_LO;
        let p = ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
        let e = (p * r * r + r) + 1.0;
        // 2^n in two factors: n reaches 128 at the top of the range, which one exponent can't hold
        let n = k.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
        let half = n >> 1;
        let pow = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
        let y = e * pow(half) * pow(n - half);
        let y = if x < MIN { 0.0 } else { y };
        let y = if x > MAX { f32::INFINITY } else { y };
        if x.is_nan() {
            x
        } else {
            y
        }
    }

    wide! {
    /// The row's maximum and `Σ exp(z − max)`: terms summed in f32 over blocks of 64 (16 lanes
    /// of 4 terms, which vectorises), the blocks' sums in f64. A sum of tens of thousands of f32
    /// terms taken one by one in f32 is off by about 1e-5 relative, which would scale every
    /// probability alike and leave the gradient's sum over the vocabulary off zero; summed so,
    /// it is within f32's rounding of the exact sum.
    fn max_and_sum(row: &[f32]) -> (f32, f64) {
        const LANES: usize = 16;
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (m, &z) in lanes.iter_mut().zip(c) {
                *m = m.max(z);
            }
        }
        let max = chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0f64;
        for block in row.chunks(4 * LANES) {
            let mut acc = [0f32; LANES];
            let mut chunks = block.chunks_exact(LANES);
            for c in &mut chunks {
                for (a, &z) in acc.iter_mut().zip(c) {
                    *a += exp(z - max);
                }
            }
            let rest: f32 = chunks.remainder().iter().map(|&z| exp(z - max)).sum();
            total += f64::from(acc.iter().sum::<f32>() + rest);
        }
        (max, total)
    }
    }

    wide! {
    /// `scale · exp(z − max)` over a row, in place.
    fn scaled_exp(row: &mut [f32], max: f32, scale: f32) {
        for z in row.iter_mut() {
            *z = scale * exp(*z - max);
        }
    }
    }

    wide! {
    /// A row of attention scores made probabilities in place: the keys `lo..hi` scaled by
    /// `scale` and softmaxed, every other key 0; a query that sees no key gets NaN, as a row of
    /// −∞ does in a softmax.
    fn masked_softmax(row: &mut [f32], lo: usize, hi: usize, scale: f32) {
        if lo >= hi {
            row.fill(f32::NAN);
            return;
        }
        let (before, rest) = row.split_at_mut(lo);
        let (seen, after) = rest.split_at_mut(hi - lo);
        before.fill(0.0);
        after.fill(0.0);
        for x in seen.iter_mut() {
            *x *= scale;
        }
        let (max, sum) = max_and_sum(seen);
        let sum = sum as f32;
        for x in seen.iter_mut() {
            *x = exp(*x - max) / sum;
        }
    }
    }

    /// Queries a block of [`attention`] takes at a time.
    pub const QUERY_BLOCK: usize = 64;

    /// Attention of `q [batch, s, heads, d]` over `k`, `v` `[batch, t, heads, d]` (see
    /// [`super::Fused::masked_attention`]): a task per row, head and block of queries over the
    /// pool, each two matrix products by gemm on the heads' strided rows (no copies) around a
    /// masked softmax of its scores; `[batch, heads, s, d]`.
    ///
    /// Queries are taken `block` at a time, each block against the keys up to the last
    /// one any of its queries sees (under a causal mask, about half the products of whole rows).
    /// The keys past that have probability 0, which the product's single chain of multiply-adds
    /// per output (gemm's, up to 512 keys) would add exactly; past 512 keys gemm may split the
    /// sum at other places, which can move its last bit.
    ///
    /// `kv_head[h]`: the head of `k` and `v` (`[batch, t, kv_heads, d]`) query head `h` reads;
    /// `block`: the queries a block takes ([`QUERY_BLOCK`]).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dims: [usize; 4],
        t: usize,
        kv_head: &[usize],
        kv_heads: usize,
        scale: f32,
        mask: &super::AttentionMask,
        block: usize,
    ) -> Vec<f32> {
        let [batch, s, heads, d] = dims;
        let mut out = vec![0.0; batch * heads * s * d];
        if out.is_empty() {
            return out;
        }
        // between two positions of one head, in q, and in k and v
        let (stride, kv_stride) = ((heads * d) as isize, (kv_heads * d) as isize);
        // a task per row, head and block of queries (blocks further down see more keys)
        let blocks = out
            .par_chunks_mut(s * d)
            .enumerate()
            .flat_map(|(task, out)| out.par_chunks_mut(block * d).enumerate().map(move |(b, out)| (task, b, out)));
        blocks.for_each_init(
            || vec![0f32; block.min(s) * t],
            |scores, (task, b, out)| {
                let (r, h) = (task / heads, task % heads);
                let (qo, kvo) = ((r * s * heads + h) * d, (r * t * kv_heads + kv_head[h]) * d);
                let (i0, rows) = (b * block, out.len() / d);
                // the keys the block's queries see end before `w`: the scores past it (a
                // causal mask's upper triangle) are neither computed nor multiplied
                let w = (i0..i0 + rows).map(|i| mask.visible(r, i, t)).filter(|seen| !seen.is_empty()).map(|seen| seen.end).max();
                let Some(w) = w else {
                    // no query of the block sees a key: NaN, as a row of −∞ gives
                    out.fill(f32::NAN);
                    return;
                };
                let scores = &mut scores[..rows * w];
                // SAFETY: gemm reads rows×d of q (from query i0) and w×d of k and v (w ≤ t)
                // at these strides, within their slices (row r, head h), and writes the
                // rows×w scores and the rows×d output it is given
                unsafe {
                    gemm::gemm(
                        rows, w, d, scores.as_mut_ptr(), 1, w as isize, false,
                        q.as_ptr().add(qo + i0 * heads * d), 1, stride,
                        k.as_ptr().add(kvo), kv_stride, 1,
                        0.0, 1.0, false, false, false, gemm::Parallelism::None,
                    );
                }
                for (i, row) in scores.chunks_mut(w).enumerate() {
                    let seen = mask.visible(r, i0 + i, t);
                    masked_softmax(row, seen.start, seen.end, scale);
                }
                // SAFETY: as above
                unsafe {
                    gemm::gemm(
                        rows, d, w, out.as_mut_ptr(), 1, d as isize, false,
                        scores.as_ptr(), 1, w as isize,
                        v.as_ptr().add(kvo), 1, kv_stride,
                        0.0, 1.0, false, false, false, gemm::Parallelism::None,
                    );
                }
            },
        );
        out
    }

    /// `Σ a·b` of two rows, summed in f64.
    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
    }

    /// A target's index in a row of `width`, or `None` where it lies outside.
    fn index(target: i64, width: usize) -> Option<usize> {
        usize::try_from(target).ok().filter(|&t| t < width)
    }

    pub fn token_log_probs(logits: &[f32], width: usize, targets: &[i64]) -> Vec<f32> {
        let mut out = vec![0.0; targets.len()];
        let per = rows_per_task(width);
        out.par_chunks_mut(per).zip(logits.par_chunks(row_chunk(width))).zip(targets.par_chunks(per)).for_each(|((out, rows), targets)| {
            for ((o, row), &t) in out.iter_mut().zip(rows.chunks(width)).zip(targets) {
                let (max, sum) = max_and_sum(row);
                // a target outside the vocabulary has no probability: NaN, which the loss carries
                *o = index(t, width).map_or(f32::NAN, |t| (f64::from(row[t] - max) - sum.ln()) as f32);
            }
        });
        out
    }

    /// The logits' gradient written over the logits (`z`), row by row.
    pub fn token_log_probs_backward(z: &mut [f32], width: usize, targets: &[i64], grad: &[f32]) {
        let per = rows_per_task(width);
        z.par_chunks_mut(row_chunk(width)).zip(targets.par_chunks(per).zip(grad.par_chunks(per))).for_each(|(rows, (targets, grad))| {
            for ((row, &t), &g) in rows.chunks_mut(width).zip(targets).zip(grad) {
                let (max, sum) = max_and_sum(row);
                scaled_exp(row, max, (-f64::from(g) / sum) as f32);
                if let Some(t) = index(t, width) {
                    row[t] += g;
                }
            }
        });
    }

    /// σ(x) as the CPU backend computes it (`exp` of a non-positive argument only), without
    /// branches.
    #[inline(always)]
    fn sigmoid(x: f32) -> f32 {
        let e = exp(-x.abs());
        let d = 1.0 / (1.0 + e);
        if x >= 0.0 {
            d
        } else {
            e * d
        }
    }

    wide! {
    fn silu_into(out: &mut [f32], x: &[f32]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = x * sigmoid(x);
        }
    }
    }

    wide! {
    fn silu_grad_into(grad: &mut [f32], x: &[f32]) {
        for (g, &x) in grad.iter_mut().zip(x) {
            let s = sigmoid(x);
            *g *= s + x * s * (1.0 - s);
        }
    }
    }

    pub fn silu(x: &[f32]) -> Vec<f32> {
        output(x.len(), GRAIN, |i, out| silu_into(out, &x[i * GRAIN..i * GRAIN + out.len()]))
    }

    /// The input's gradient written over the output's (`grad`).
    pub fn silu_backward(x: &[f32], grad: &mut [f32]) {
        zip_chunks(grad, x, GRAIN, silu_grad_into);
    }

    /// `1/√(mean(x²) + eps)` of a row.
    fn rms_scale(row: &[f32], eps: f32) -> f32 {
        (1.0 / (dot(row, row) / row.len() as f64 + f64::from(eps)).sqrt()) as f32
    }

    pub fn rms_normalize(x: &[f32], width: usize, eps: f32) -> Vec<f32> {
        let chunk = row_chunk(width);
        output(x.len(), chunk, |i, out| {
            let x = &x[i * chunk..i * chunk + out.len()];
            for (o, x) in out.chunks_mut(width).zip(x.chunks(width)) {
                let r = rms_scale(x, eps);
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = x * r;
                }
            }
        })
    }

    /// The input's gradient written over the output's (`grad`).
    pub fn rms_normalize_backward(x: &[f32], grad: &mut [f32], width: usize, eps: f32) {
        zip_chunks(grad, x, row_chunk(width), |grad, x| {
            for (g, x) in grad.chunks_mut(width).zip(x.chunks(width)) {
                let r = rms_scale(x, eps);
                let k = r * r * (dot(x, g) / width as f64) as f32;
                for (g, &x) in g.iter_mut().zip(x) {
                    *g = (*g - x * k) * r;
                }
            }
        });
    }

    /// The input's gradient written over the output's (`grad`).
    pub fn softmax_backward(y: &[f32], grad: &mut [f32], width: usize) {
        zip_chunks(grad, y, row_chunk(width), |grad, y| {
            for (g, y) in grad.chunks_mut(width).zip(y.chunks(width)) {
                let dot = dot(y, g) as f32;
                for (g, &y) in g.iter_mut().zip(y) {
                    *g = y * (*g - dot);
                }
            }
        });
    }
}

/// Whether the CPU's kernels take a tensor: f32 with values (the composition of Burn's ops takes
/// the others).
fn kernel_takes(t: &FlexTensor) -> bool {
    t.dtype() == DType::F32 && t.shape().num_elements() > 0
}

/// A CPU tensor as contiguous f32 for a kernel to write over: the tensor itself where it holds
/// its buffer alone (a consumed gradient; the logits, which only the loss's node keeps), else a
/// copy, made by `storage_mut`.
fn owned(t: FlexTensor) -> FlexTensor {
    let c = t.to_contiguous();
    drop(t);
    c
}

fn flex_f32(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn flex_ids(t: FlexTensor) -> Vec<i64> {
    t.into_data().convert::<i64>().into_vec::<i64>().unwrap_or_default()
}

/// The width of the last axis.
fn last_width(t: &FlexTensor) -> usize {
    t.shape().last().copied().unwrap_or(1)
}

impl Fused for Flex {
    fn token_log_probs(logits: FlexTensor, targets: FlexTensor) -> FlexTensor {
        if !kernel_takes(&logits) {
            return composed::token_log_probs::<Flex>(logits, targets);
        }
        let z = logits.to_contiguous();
        let ids = flex_ids(targets);
        let out = cpu::token_log_probs(z.storage::<f32>(), last_width(&z), &ids);
        flex_f32(out, Shape::from(vec![ids.len()]))
    }

    fn token_log_probs_backward(logits: FlexTensor, targets: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if !(kernel_takes(&logits) && kernel_takes(&grad)) {
            return composed::token_log_probs_backward::<Flex>(logits, targets, grad);
        }
        let mut z = owned(logits);
        let width = last_width(&z);
        cpu::token_log_probs_backward(z.storage_mut::<f32>(), width, &flex_ids(targets), grad.to_contiguous().storage::<f32>());
        z
    }

    fn silu(x: FlexTensor) -> FlexTensor {
        if !kernel_takes(&x) {
            return composed::silu::<Flex>(x);
        }
        let v = x.to_contiguous();
        flex_f32(cpu::silu(v.storage::<f32>()), v.shape())
    }

    fn silu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if !(kernel_takes(&x) && kernel_takes(&grad)) {
            return composed::silu_backward::<Flex>(x, grad);
        }
        let mut g = owned(grad);
        cpu::silu_backward(x.to_contiguous().storage::<f32>(), g.storage_mut::<f32>());
        g
    }

    fn rms_normalize(x: FlexTensor, eps: f64) -> FlexTensor {
        if !kernel_takes(&x) {
            return composed::rms_normalize::<Flex>(x, eps);
        }
        let v = x.to_contiguous();
        flex_f32(cpu::rms_normalize(v.storage::<f32>(), last_width(&v), eps as f32), v.shape())
    }

    fn rms_normalize_backward(x: FlexTensor, grad: FlexTensor, eps: f64) -> FlexTensor {
        if !(kernel_takes(&x) && kernel_takes(&grad)) {
            return composed::rms_normalize_backward::<Flex>(x, grad, eps);
        }
        let mut g = owned(grad);
        let width = last_width(&g);
        cpu::rms_normalize_backward(x.to_contiguous().storage::<f32>(), g.storage_mut::<f32>(), width, eps as f32);
        g
    }

    fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, rotary: usize, interleaved: bool, inverse: bool) -> FlexTensor {
        let dims = |t: &FlexTensor| -> Option<[usize; 4]> { t.shape().as_slice().try_into().ok() };
        let width = if interleaved { rotary / 2 } else { rotary };
        let fits = match (dims(&x), dims(&cos), dims(&sin)) {
            (Some([b, s, h, d]), Some(c), Some(sn)) => {
                c == sn && [c[0], c[1], c[3]] == [b, s, width] && (c[2] == h || c[2] == 1) && rotary <= d && rotary % 2 == 0
            }
            _ => false,
        };
        if !(fits && kernel_takes(&x) && kernel_takes(&cos) && kernel_takes(&sin)) {
            return composed::rope::<Flex>(x, cos, sin, rotary, interleaved, inverse);
        }
        let [b, s, h, d] = dims(&x).unwrap_or_default();
        let table_heads = cos.shape()[2];
        let (x, cos, sin) = (x.to_contiguous(), cos.to_contiguous(), sin.to_contiguous());
        let out = cpu::rope(x.storage::<f32>(), cos.storage::<f32>(), sin.storage::<f32>(), d, h, table_heads, rotary, interleaved, inverse);
        flex_f32(out, Shape::from(vec![b, s, h, d]))
    }

    fn masked_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f32, mask: &AttentionMask) -> FlexTensor {
        let dims = |t: &FlexTensor| -> Option<[usize; 4]> { t.shape().as_slice().try_into().ok() };
        let fits = match (dims(&q), dims(&k), dims(&v)) {
            (Some([b, _, h, d]), Some(kd), Some(vd)) if kd == vd && [kd[0], kd[3]] == [b, d] => mask.kv_head_of(h, kd[2]),
            _ => None,
        };
        let Some(kv_head) = fits.filter(|_| kernel_takes(&q) && kernel_takes(&k) && kernel_takes(&v)) else {
            return composed::attention::<Flex>(q, k, v, scale, mask);
        };
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let [b, s, h, d] = dims(&q).unwrap_or_default();
        let (t, kv_heads) = (k.shape()[1], k.shape()[2]);
        let out = cpu::attention(q.storage::<f32>(), k.storage::<f32>(), v.storage::<f32>(), [b, s, h, d], t, &kv_head, kv_heads, scale, mask, cpu::QUERY_BLOCK);
        flex_f32(out, Shape::from(vec![b, h, s, d]))
    }

    fn softmax_last_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if !(kernel_takes(&y) && kernel_takes(&grad)) {
            return composed::softmax_last_backward::<Flex>(y, grad);
        }
        let mut g = owned(grad);
        let width = last_width(&g);
        cpu::softmax_backward(y.to_contiguous().storage::<f32>(), g.storage_mut::<f32>(), width);
        g
    }
}

/// The autodiff node of a fused op of one input: its backward pass is `backward(state, grad)`.
struct FusedNode<B: Backend, S> {
    backward: fn(S, FloatTensor<B>) -> FloatTensor<B>,
}

impl<B: Backend, S> core::fmt::Debug for FusedNode<B, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FusedNode")
    }
}

impl<B: Backend, S: Clone + Send + core::fmt::Debug + 'static> Backward<B, 1> for FusedNode<B, S> {
    type State = S;

    fn backward(self, ops: Ops<S, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| (self.backward)(state, grad));
    }
}

/// The autodiff node of [`Fused::linear_out_in`]: its state is `x` where the weight's gradient is
/// wanted and `w` where `x`'s is.
///
/// Burn's own composition (`x.matmul(w.transpose())`) recorded the transpose as a node of its
/// own, and gave the weight's gradient as the transpose of `xᵀ · grad`, a strided view copied
/// into the weight's layout wherever it was read or added. (Merging each tracked weight's graph
/// into the model's, which the product does either way, is `vendor/burn-autodiff`'s patch.)
#[derive(Debug)]
struct LinearNode;

impl<B: Backend> Backward<B, 2> for LinearNode {
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| B::float_matmul(grad, w.expect("the weight is kept where the input's gradient is wanted")),
            |grad| B::float_matmul(B::float_transpose(grad), x.expect("the input is kept where the weight's gradient is wanted")),
        );
    }
}

/// `out`, computed from `input` by a fused op, as an autodiff tensor: a node that keeps `state`
/// (taken only where a gradient is wanted) for `backward`.
fn record<B: Fused, C: CheckpointStrategy, S: Clone + Send + core::fmt::Debug + 'static>(
    input: &FloatTensor<Autodiff<B, C>>,
    out: FloatTensor<B>,
    state: impl FnOnce() -> S,
    backward: fn(S, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match (FusedNode { backward }).prepare::<C>([input.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state(), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

impl<B: Fused, C: CheckpointStrategy> Fused for Autodiff<B, C> {
    fn token_log_probs(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        let out = B::token_log_probs(logits.primitive.clone(), targets.clone());
        // the logits are kept by this node alone (their gradient is written over them)
        record::<B, C, _>(&logits, out, || (logits.primitive.clone(), targets), |(z, t), g| B::token_log_probs_backward(z, t, g))
    }

    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = B::silu(x.primitive.clone());
        record::<B, C, _>(&x, out, || x.primitive.clone(), B::silu_backward)
    }

    fn rms_normalize(x: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let out = B::rms_normalize(x.primitive.clone(), eps);
        record::<B, C, _>(&x, out, || (x.primitive.clone(), eps), |(x, eps), g| B::rms_normalize_backward(x, g, eps))
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = B::softmax_last(x.primitive.clone());
        let y = out.clone();
        record::<B, C, _>(&x, out, || y, B::softmax_last_backward)
    }

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, rotary: usize, interleaved: bool, inverse: bool) -> FloatTensor<Self> {
        let (cos, sin) = (cos.primitive, sin.primitive);
        let out = B::rope(x.primitive.clone(), cos.clone(), sin.clone(), rotary, interleaved, inverse);
        // the gradient of `x`: the output's through the turn's transpose
        record::<B, C, _>(&x, out, || (cos, sin, rotary, interleaved, inverse), |(c, s, r, i, inv), g| B::rope(g, c, s, r, i, !inv))
    }

    fn linear_out_in(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = B::linear_out_in(x.primitive.clone(), w.primitive.clone());
        let (x_wanted, w_wanted) = (x.is_tracked(), w.is_tracked());
        match LinearNode.prepare::<C>([x.node.clone(), w.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((w_wanted.then(|| x.primitive.clone()), x_wanted.then(|| w.primitive.clone())), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_values as values;
    use crate::runtime::{Cpu, CpuAutodiff};

    fn tensor<B: Backend, const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<B, D> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default())
    }

    fn ids<B: Backend>(v: &[i64]) -> Tensor<B, 1, Int> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
    }

    fn vec_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
    }

    /// Every element within `tol` of the reference, relative to the reference's largest magnitude.
    fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0f32, |m, w| m.max(w.abs())).max(1e-30);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * scale, "{what}: element {i}: {g} against {w} (scale {scale})");
        }
    }

    /// The kernels' `exp` within 2 ulp of the exact value over its whole range (steps of about
    /// 1e-4), and its edges: 0 below the range and for −∞, +∞ above it, NaN for NaN.
    #[test]
    fn kernel_exp_is_within_two_ulp() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x < 88.7 {
            let want = f64::from(x).exp();
            let got = f64::from(cpu::exp(x));
            // an ulp of f32 at `want`: 2^(exponent − 23)
            let ulp = 2f64.powi(want.log2().floor() as i32 - 23);
            worst = worst.max((got - want).abs() / ulp);
            x += 1.13e-4 * (1.0 + x.abs());
        }
        assert!(worst <= 2.0, "exp is off by {worst} ulp");
        assert_eq!(cpu::exp(0.0), 1.0);
        assert_eq!(cpu::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(cpu::exp(-100.0), 0.0);
        assert_eq!(cpu::exp(89.0), f32::INFINITY);
        assert_eq!(cpu::exp(f32::INFINITY), f32::INFINITY);
        assert!(cpu::exp(f32::NAN).is_nan());
    }

    /// The visible range is the complement of the mask written key by key: key `j` hidden from
    /// the query at `at = past + i` when it lies ahead of it and past the row's prefix `p`
    /// (causal), or `w` or more positions behind it (a window).
    #[test]
    fn visible_keys_are_those_the_mask_leaves() {
        for causal in [false, true] {
            for window in [None, Some(1), Some(3)] {
                for past in [0, 4] {
                    for p in [0i64, 3, 20] {
                        let mask = AttentionMask { causal, window, past, prefix: Some(vec![0, p]), kv_copies: None };
                        let t = past + 9;
                        for i in 0..9 {
                            let at = past + i;
                            let w = window.unwrap_or(usize::MAX);
                            let hidden = |j: usize| (causal && j > at && j as i64 >= p) || (j <= at && at - j >= w);
                            let seen = mask.visible(1, i, t);
                            for j in 0..t {
                                assert_eq!(seen.contains(&j), !hidden(j), "{mask:?}: query {i}, key {j}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The CPU's attention gives the composition's values for every mask: causal, after a
    /// cache's positions, within a window, with prefixes per row, none.
    #[test]
    fn cpu_attention_matches_the_composition() {
        let (b, s, h, d) = (3, 7, 4, 16);
        let causal = AttentionMask { causal: true, ..AttentionMask::default() };
        let cases = [
            (s, causal.clone()),
            (s + 5, AttentionMask { past: 5, ..causal.clone() }),
            (s, AttentionMask { window: Some(3), ..causal.clone() }),
            (s, AttentionMask { prefix: Some(vec![2, 9, 0]), ..causal.clone() }),
            (s + 2, AttentionMask::default()),
            (s, AttentionMask { window: Some(2), ..AttentionMask::default() }),
        ];
        for (n, (t, mask)) in cases.into_iter().enumerate() {
            let q = values(b * s * h * d, 11, 2.0);
            let (k, v) = (values(b * t * h * d, 12, 2.0), values(b * t * h * d, 13, 2.0));
            let run = |fused: bool| {
                let (q, k, v) = (tensor::<Cpu, 4>(&q, [b, s, h, d]), tensor::<Cpu, 4>(&k, [b, t, h, d]), tensor::<Cpu, 4>(&v, [b, t, h, d]));
                if fused {
                    vec_of(attention(q, k, v, 0.3, &mask))
                } else {
                    let p = |x: Tensor<Cpu, 4>| x.into_primitive().tensor();
                    vec_of(Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(composed::attention::<Cpu>(p(q), p(k), p(v), 0.3, &mask))))
                }
            };
            close(&run(true), &run(false), 1e-5, &format!("attention case {n} ({mask:?})"));
        }
    }

    /// The CPU's attention over more queries than a block holds: the composition's values for
    /// every mask (a block whose queries see no key gives NaN, as the composition does), and
    /// the bits of the kernel taking all queries as one block (as it did before blocks).
    #[test]
    fn blocked_attention_matches_the_composition_and_whole_rows() {
        let (b, s, h, d) = (2, 2 * cpu::QUERY_BLOCK + 9, 3, 8);
        let causal = AttentionMask { causal: true, ..AttentionMask::default() };
        let cases = [
            (s, causal.clone()),
            (s + 5, AttentionMask { past: 5, ..causal.clone() }),
            (s, AttentionMask { window: Some(70), ..causal.clone() }),
            (s, AttentionMask { prefix: Some(vec![90, 3]), ..causal.clone() }),
            (s, AttentionMask::default()),
            (s, AttentionMask { window: Some(0), ..causal.clone() }),
        ];
        let q = values(b * s * h * d, 31, 2.0);
        for (n, (t, mask)) in cases.into_iter().enumerate() {
            let (k, v) = (values(b * t * h * d, 32, 2.0), values(b * t * h * d, 33, 2.0));
            let (qt, kt, vt) = (tensor::<Cpu, 4>(&q, [b, s, h, d]), tensor::<Cpu, 4>(&k, [b, t, h, d]), tensor::<Cpu, 4>(&v, [b, t, h, d]));
            let fused = vec_of(attention(qt.clone(), kt.clone(), vt.clone(), 0.3, &mask));
            let p = |x: Tensor<Cpu, 4>| x.into_primitive().tensor();
            let composed = vec_of(Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(composed::attention::<Cpu>(p(qt), p(kt), p(vt), 0.3, &mask))));
            if mask.window == Some(0) {
                assert!(fused.iter().chain(&composed).all(|x| x.is_nan()), "case {n}: no key seen, NaN");
                continue;
            }
            close(&fused, &composed, 1e-5, &format!("blocked attention case {n} ({mask:?})"));
        }
        // blocks against whole rows (one block of every query, as the kernel ran before blocks)
        for (n, t, mask) in [(0, s, causal.clone()), (1, s + 5, AttentionMask { past: 5, window: Some(70), ..causal.clone() })] {
            let (k, v) = (values(b * t * h * d, 32, 2.0), values(b * t * h * d, 33, 2.0));
            let heads: Vec<usize> = (0..h).collect();
            let run = |block| cpu::attention(&q, &k, &v, [b, s, h, d], t, &heads, h, 0.3, &mask, block);
            assert_eq!(run(cpu::QUERY_BLOCK), run(s), "case {n}: blocks against whole rows");
        }
    }

    /// Keys and values given once per key/value head (`kv_copies`, even and uneven) give the
    /// bits of the same attention on them repeated: the CPU's kernel, the composition, and under
    /// autodiff the gradients of q, k and v; copies that do not pair the query heads with the
    /// key/value heads give no head map (not the kernel's).
    #[test]
    fn unrepeated_keys_and_values_give_the_repeated_bits() {
        let (b, s, t, d) = (2, 6, 9, 8);
        for copies in [vec![3, 3], vec![2, 1, 3], vec![1, 1, 1]] {
            let (h, g) = (copies.iter().sum::<usize>(), copies.len());
            let q = values(b * s * h * d, 21, 2.0);
            let (k, v) = (values(b * t * g * d, 22, 2.0), values(b * t * g * d, 23, 2.0));
            for base in [AttentionMask { causal: true, past: t - s, ..AttentionMask::default() }, AttentionMask::default()] {
                let grouped = AttentionMask { kv_copies: Some(copies.clone()), ..base.clone() };
                let rep = |x: &[f32]| vec_of(repeat_heads::<Cpu, 4, 5>(tensor::<Cpu, 4>(x, [b, t, g, d]), &copies));
                let (kr, vr) = (rep(&k), rep(&v));
                let shapes = ([b, s, h, d], [b, t, g, d], [b, t, h, d]);
                let fused = |k: &[f32], v: &[f32], kv, mask: &AttentionMask| {
                    vec_of(attention(tensor::<Cpu, 4>(&q, shapes.0), tensor::<Cpu, 4>(k, kv), tensor::<Cpu, 4>(v, kv), 0.3, mask))
                };
                assert_eq!(fused(&k, &v, shapes.1, &grouped), fused(&kr, &vr, shapes.2, &base), "kernel, copies {copies:?}, {base:?}");
                let p = |x: &[f32], shape| tensor::<Cpu, 4>(x, shape).into_primitive().tensor();
                let composed_of = |k: &[f32], v: &[f32], kv, mask: &AttentionMask| {
                    vec_of(Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(composed::attention::<Cpu>(
                        p(&q, shapes.0), p(k, kv), p(v, kv), 0.3, mask,
                    ))))
                };
                assert_eq!(composed_of(&k, &v, shapes.1, &grouped), composed_of(&kr, &vr, shapes.2, &base), "composition, copies {copies:?}");
                // under autodiff: the gradients of q, k and v
                let grads = |grouped_kv: bool| {
                    let q = tensor::<CpuAutodiff, 4>(&q, shapes.0).require_grad();
                    let (k, v) = (tensor::<CpuAutodiff, 4>(&k, shapes.1).require_grad(), tensor::<CpuAutodiff, 4>(&v, shapes.1).require_grad());
                    let out = if grouped_kv {
                        attention(q.clone(), k.clone(), v.clone(), 0.3, &grouped)
                    } else {
                        attention(q.clone(), repeat_heads::<_, 4, 5>(k.clone(), &copies), repeat_heads::<_, 4, 5>(v.clone(), &copies), 0.3, &base)
                    };
                    let g = (out.clone() * out).sum().backward();
                    [q, k, v].map(|x| vec_of(x.grad(&g).expect("a gradient")))
                };
                assert_eq!(grads(true), grads(false), "gradients, copies {copies:?}");
            }
        }
        // copies that do not pair the query heads with the key/value heads: not the kernel's
        let mask = AttentionMask { kv_copies: Some(vec![2, 2]), ..AttentionMask::default() };
        assert_eq!(mask.kv_head_of(4, 2), Some(vec![0, 0, 1, 1]));
        assert_eq!(mask.kv_head_of(5, 2), None);
        assert_eq!(mask.kv_head_of(4, 3), None);
        assert_eq!(AttentionMask::default().kv_head_of(3, 3), Some(vec![0, 1, 2]));
    }

    /// The CPU's rotary embedding gives the composition's bits, turning and turning back, by
    /// halves and by pairs, with channels passed through or none, tables per head or per
    /// position; under autodiff, the composition's gradient.
    #[test]
    fn cpu_rope_matches_the_composition() {
        let (b, s, h) = (2, 5, 3);
        for (d, rotary, interleaved) in [(8, 8, false), (12, 8, false), (8, 8, true), (10, 6, true)] {
            for table_heads in [h, 1] {
                let width = if interleaved { rotary / 2 } else { rotary };
                let x = values(b * s * h * d, 21, 2.0);
                let (c, sn) = (values(b * s * table_heads * width, 22, 1.0), values(b * s * table_heads * width, 23, 1.0));
                let case = format!("d {d}, rotary {rotary}, interleaved {interleaved}, table heads {table_heads}");
                for inverse in [false, true] {
                    let p = |v: &[f32], shape: [usize; 4]| tensor::<Cpu, 4>(v, shape).into_primitive().tensor();
                    let args = || (p(&x, [b, s, h, d]), p(&c, [b, s, table_heads, width]), p(&sn, [b, s, table_heads, width]));
                    let (x1, c1, s1) = args();
                    let fused = vec_of(Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(Cpu::rope(x1, c1, s1, rotary, interleaved, inverse))));
                    let (x2, c2, s2) = args();
                    let composed = vec_of(Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(composed::rope::<Cpu>(x2, c2, s2, rotary, interleaved, inverse))));
                    assert!(fused.iter().zip(&composed).all(|(a, b)| a.to_bits() == b.to_bits()), "{case}, inverse {inverse}: the bits differ");
                }
                // the gradient of Σ y·w, fused against composed
                let w = values(b * s * h * d, 24, 1.0);
                let grad = |fused: bool| {
                    let xt = tensor::<CpuAutodiff, 4>(&x, [b, s, h, d]).require_grad();
                    let (ct, st) = (tensor::<CpuAutodiff, 4>(&c, [b, s, table_heads, width]), tensor::<CpuAutodiff, 4>(&sn, [b, s, table_heads, width]));
                    let y = if fused {
                        rope(xt.clone(), ct, st, rotary, interleaved)
                    } else {
                        let p = |t: Tensor<CpuAutodiff, 4>| t.into_primitive().tensor();
                        Tensor::from_primitive(TensorPrimitive::Float(composed::rope::<CpuAutodiff>(p(xt.clone()), p(ct), p(st), rotary, interleaved, false)))
                    };
                    let grads = (y * tensor::<CpuAutodiff, 4>(&w, [b, s, h, d])).sum().backward();
                    vec_of(xt.grad(&grads).expect("x's gradient"))
                };
                close(&grad(true), &grad(false), 1e-6, &format!("{case}: gradient"));
            }
        }
    }

    /// The kernels compiled for the CPU's widest vectors give the baseline's bits.
    #[test]
    fn wide_kernels_give_the_baseline_bits() {
        use std::sync::atomic::Ordering;
        let z = values(ROWS * VOCAB, 3, 30.0);
        let t = targets();
        let g = values(ROWS, 4, 1.0);
        let run = || {
            let lp = cpu::token_log_probs(&z, VOCAB, &t);
            let mut back = z.clone();
            cpu::token_log_probs_backward(&mut back, VOCAB, &t, &g);
            let s = cpu::silu(&z);
            let mut sg = z.clone();
            cpu::silu_backward(&z, &mut sg);
            [lp, back, s, sg].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
        };
        let wide = run();
        cpu::FORCE_BASELINE.store(true, Ordering::Relaxed);
        let baseline = run();
        cpu::FORCE_BASELINE.store(false, Ordering::Relaxed);
        for (w, b) in wide.iter().zip(&baseline) {
            assert!(w == b, "the wide kernels' bits differ from the baseline's");
        }
    }

    /// Rows over a vocabulary wider than one task's share, so the rows are split among threads.
    const ROWS: usize = 37;
    const VOCAB: usize = 1531;

    fn targets() -> Vec<i64> {
        (0..ROWS as i64).map(|r| (r * 389) % VOCAB as i64).collect()
    }

    /// The CPU's fused token log-probabilities, SiLU and softmax give the values of Burn's
    /// compositions (log-softmax then gather; `x·σ(x)`; softmax) within f32 rounding.
    #[test]
    fn cpu_kernels_match_burns_compositions() {
        let z = values(ROWS * VOCAB, 1, 12.0);
        let t = targets();
        let got = vec_of(token_log_probs(tensor::<Cpu, 2>(&z, [ROWS, VOCAB]), ids::<Cpu>(&t).reshape([ROWS])));
        let want = vec_of(
            activation::log_softmax(tensor::<Cpu, 2>(&z, [ROWS, VOCAB]), 1).gather(1, ids::<Cpu>(&t).reshape([ROWS, 1])).reshape([ROWS]),
        );
        close(&got, &want, 1e-6, "token log-probs");

        let x = values(100_003, 2, 9.0);
        close(&vec_of(silu(tensor::<Cpu, 1>(&x, [100_003]))), &vec_of(activation::silu(tensor::<Cpu, 1>(&x, [100_003]))), 1e-6, "silu");
        let rms = |x: Tensor<Cpu, 2>| x.clone() * (x.powi_scalar(2).mean_dim(1) + 1e-5).sqrt().recip();
        let got = vec_of(rms_normalize(tensor::<Cpu, 2>(&z, [ROWS, VOCAB]), 1e-5));
        close(&got, &vec_of(rms(tensor::<Cpu, 2>(&z, [ROWS, VOCAB]))), 1e-6, "rms_normalize");
        let got = vec_of(softmax(tensor::<Cpu, 2>(&z, [ROWS, VOCAB]), 1));
        close(&got, &vec_of(activation::softmax(tensor::<Cpu, 2>(&z, [ROWS, VOCAB]), 1)), 1e-6, "softmax");
    }

    /// Input gradients of `Σ w·op(x)` through the fused ops (one autodiff node each, the CPU's
    /// backward kernels) against those through Burn's compositions (autodiff of every primitive).
    #[test]
    fn fused_backward_passes_match_autodiff_of_the_compositions() {
        type A = CpuAutodiff;
        let grad_of = |x: &[f32], shape: [usize; 2], f: &dyn Fn(Tensor<A, 2>) -> Tensor<A, 1>| {
            let x = tensor::<A, 2>(x, shape).require_grad();
            let y = f(x.clone());
            let n = y.dims()[0];
            let w = tensor::<A, 1>(&values(n, 7, 1.0), [n]);
            let grads = (y * w).sum().backward();
            vec_of(x.grad(&grads).unwrap())
        };
        let z = values(ROWS * VOCAB, 3, 12.0);
        let t = targets();
        let fused_g = grad_of(&z, [ROWS, VOCAB], &|x| token_log_probs(x, ids::<A>(&t)));
        let composed_g = grad_of(&z, [ROWS, VOCAB], &|x| activation::log_softmax(x, 1).gather(1, ids::<A>(&t).reshape([ROWS, 1])).reshape([ROWS]));
        close(&fused_g, &composed_g, 1e-6, "token log-probs' gradient");

        let n = ROWS * VOCAB;
        let x = values(n, 4, 9.0);
        let fused_g = grad_of(&x, [ROWS, VOCAB], &|x| silu(x).reshape([n]));
        let composed_g = grad_of(&x, [ROWS, VOCAB], &|x| activation::silu(x).reshape([n]));
        close(&fused_g, &composed_g, 1e-6, "silu's gradient");

        let fused_g = grad_of(&x, [ROWS, VOCAB], &|x| rms_normalize(x, 1e-5).reshape([n]));
        let composed_g = grad_of(&x, [ROWS, VOCAB], &|x| (x.clone() * (x.powi_scalar(2).mean_dim(1) + 1e-5).sqrt().recip()).reshape([n]));
        close(&fused_g, &composed_g, 1e-5, "rms_normalize's gradient");

        let fused_g = grad_of(&z, [ROWS, VOCAB], &|x| softmax(x, 1).reshape([n]));
        let composed_g = grad_of(&z, [ROWS, VOCAB], &|x| activation::softmax(x, 1).reshape([n]));
        close(&fused_g, &composed_g, 1e-5, "softmax's gradient");
    }

    /// The CPU's kernels give the same bits on one thread and on several.
    #[test]
    fn cpu_kernels_do_not_depend_on_the_number_of_threads() {
        let z = values(ROWS * VOCAB, 5, 12.0);
        let g = values(ROWS * VOCAB, 6, 1.0);
        let t = targets();
        let run = || {
            let mut out = cpu::token_log_probs(&z, VOCAB, &t);
            let mut written = z.clone();
            cpu::token_log_probs_backward(&mut written, VOCAB, &t, &g[..ROWS]);
            out.extend(written);
            out.extend(cpu::silu(&z));
            out.extend(cpu::rms_normalize(&z, VOCAB, 1e-5));
            let kernels: [&dyn Fn(&mut [f32]); 3] = [
                &|g| cpu::silu_backward(&z, g),
                &|g| cpu::softmax_backward(&z, g, VOCAB),
                &|g| cpu::rms_normalize_backward(&z, g, VOCAB, 1e-5),
            ];
            for kernel in kernels {
                let mut written = g.clone();
                kernel(&mut written);
                out.extend(written);
            }
            out.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
        };
        let on = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(run);
        assert_eq!(on(1), on(3));
    }

    /// A target outside the vocabulary has no probability: NaN (the executor checks token ids
    /// before they get here), and no gradient but the softmax's.
    #[test]
    fn a_target_outside_the_vocabulary_is_nan() {
        let z = values(2 * 5, 8, 3.0);
        let out = cpu::token_log_probs(&z, 5, &[2, 5]);
        assert!(out[0].is_finite() && out[1].is_nan(), "{out:?}");
        let mut g = z.clone();
        cpu::token_log_probs_backward(&mut g, 5, &[-1, 4], &[1.0, 1.0]);
        assert!(g[..5].iter().all(|&v| v < 0.0), "row 0 is −softmax: {g:?}");
        assert!((g[5..].iter().sum::<f32>()).abs() < 1e-6, "row 1 sums to 0: {g:?}");
    }
}
