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
    /// How the frequencies are scaled for long contexts (LLaMA 3.1, YaRN...).
    pub scaling: RopeScaling,
}
/// How a rotary embedding's frequencies are scaled for contexts longer than the model was
/// trained on, as transformers computes them (`modeling_rope_utils`: `rope_type`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RopeScaling {
    /// The frequencies `theta^(-2i/d)` as they are (`default`).
    #[default]
    None,
    /// Every frequency divided by `factor` (`linear`: positions interpolated).
    Linear {
        /// The divisor.
        factor: f32,
    },
    /// NTK-aware scaling of the base when a forward reaches past `max_positions` positions
    /// (`dynamic`): `theta · (factor·n/max − (factor − 1))^(d/(d−2))` for `n` positions.
    Dynamic {
        /// The scaling factor.
        factor: f32,
        /// Positions up to which the frequencies are the default ones (`max_position_embeddings`).
        max_positions: usize,
    },
    /// LLaMA 3.1's: low frequencies (wavelength above `original_max_positions / low_freq_factor`)
    /// divided by `factor`, high ones (below `original_max_positions / high_freq_factor`) kept,
    /// those between smoothly interpolated (`llama3`).
    Llama3 {
        /// The divisor of the low frequencies.
        factor: f32,
        /// Bounds the low frequencies.
        low_freq_factor: f32,
        /// Bounds the high frequencies.
        high_freq_factor: f32,
        /// The context the model was pretrained with.
        original_max_positions: usize,
    },
    /// YaRN (`yarn`): frequencies ramped between interpolated (÷ `factor`) and extrapolated by
    /// dimension, between the dimensions making `beta_fast` and `beta_slow` rotations over
    /// `original_max_positions`; cos and sin multiplied by `attention_factor`.
    Yarn {
        /// The interpolation factor.
        factor: f32,
        /// The context the model was pretrained with.
        original_max_positions: usize,
        /// Rotations bounding the extrapolated dimensions.
        beta_fast: f32,
        /// Rotations bounding the interpolated dimensions.
        beta_slow: f32,
        /// Whether the ramp's bounds are rounded to whole dimensions.
        truncate: bool,
        /// The multiplier of cos and sin.
        attention_factor: f32,
    },
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
        ) + &self.scaling_attributes()
    }

    /// The scaling as the printer writes it: nothing without one, so that models without
    /// scaling print as they always did.
    fn scaling_attributes(&self) -> String {
        match self.scaling {
            RopeScaling::None => String::new(),
            RopeScaling::Linear { factor } => format!(", linear(factor={factor})"),
            RopeScaling::Dynamic { factor, max_positions } => format!(", dynamic(factor={factor}, max={max_positions})"),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions } => format!(
                ", llama3(factor={factor}, low={low_freq_factor}, high={high_freq_factor}, original={original_max_positions})"
            ),
            RopeScaling::Yarn { factor, original_max_positions, beta_fast, beta_slow, truncate, attention_factor } => format!(
                ", yarn(factor={factor}, original={original_max_positions}, beta_fast={beta_fast}, beta_slow={beta_slow}, truncate={truncate}, attention_factor={attention_factor})"
            ),
        }
    }

    /// The inverse frequencies of the `rotary_dims / 2` rotating pairs in a forward over
    /// positions `0..positions` (only `Dynamic` scaling reads it), as transformers computes
    /// them: `1 / theta^(2i / rotary_dims)` in f32 without scaling; scaled ones in f64, then
    /// rounded to f32. ChatGLM-6B's rounding to f16 (`half_freqs`) is the kernel's.
    pub fn inv_freq(&self, positions: usize) -> Vec<f32> {
        let (r, half) = (self.rotary_dims, self.rotary_dims / 2);
        if self.scaling == RopeScaling::None {
            return (0..half).map(|i| 1.0 / self.theta.powf((2 * i) as f32 / r as f32)).collect();
        }
        let d = r as f64;
        let base = f64::from(self.theta);
        let default = |base: f64| -> Vec<f64> { (0..half).map(|i| 1.0 / base.powf((2 * i) as f64 / d)).collect() };
        let inv: Vec<f64> = match self.scaling {
            RopeScaling::None => default(base),
            RopeScaling::Linear { factor } => default(base).into_iter().map(|f| f / f64::from(factor)).collect(),
            RopeScaling::Dynamic { factor, max_positions } => {
                let (factor, max) = (f64::from(factor), max_positions as f64);
                let n = (positions as f64).max(max);
                default(base * ((factor * n / max) - (factor - 1.0)).powf(d / (d - 2.0)))
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions } => {
                let (factor, low, high) = (f64::from(factor), f64::from(low_freq_factor), f64::from(high_freq_factor));
                let old = original_max_positions as f64;
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                default(base)
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen > low_wavelen {
                            f / factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            let smooth = (old / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
            RopeScaling::Yarn { factor, original_max_positions, beta_fast, beta_slow, truncate, .. } => {
                let factor = f64::from(factor);
                let max = original_max_positions as f64;
                // the dimension whose pair makes `rotations` turns over the original context
                let dim_of = |rotations: f64| (d * (max / (rotations * 2.0 * std::f64::consts::PI)).ln()) / (2.0 * base.ln());
                let (mut low, mut high) = (dim_of(f64::from(beta_fast)), dim_of(f64::from(beta_slow)));
                if truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
                if low == high {
                    high += 0.001;
                }
                default(base)
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let extrapolation = 1.0 - ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        f / factor * (1.0 - extrapolation) + f * extrapolation
                    })
                    .collect()
            }
        };
        inv.into_iter().map(|f| f as f32).collect()
    }

    /// The multiplier of cos and sin: YaRN's attention factor, 1 otherwise.
    pub fn attention_factor(&self) -> f32 {
        match self.scaling {
            RopeScaling::Yarn { attention_factor, .. } => attention_factor,
            _ => 1.0,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(scaling: RopeScaling) -> Rope {
        Rope { theta: 10000.0, rotary_dims: 16, layout: RopeLayout::HalfSplit, half_freqs: false, scaling }
    }

    #[test]
    fn unscaled_frequencies_and_printing_are_as_before() {
        let r = rope(RopeScaling::None);
        let want: Vec<f32> = (0..8).map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / 16.0)).collect();
        assert_eq!(r.inv_freq(1 << 20), want, "bit for bit, at any length");
        assert_eq!(r.attention_factor(), 1.0);
        assert_eq!(r.attributes(), "theta=10000, dims=16, half-split");
    }

    #[test]
    fn scaled_frequencies() {
        let base = rope(RopeScaling::None).inv_freq(0);
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs();
        let linear = rope(RopeScaling::Linear { factor: 4.0 });
        assert!(linear.inv_freq(0).iter().zip(&base).all(|(s, b)| close(*s, b / 4.0)));
        assert_eq!(linear.attributes(), "theta=10000, dims=16, half-split, linear(factor=4)");
        // dynamic: the default frequencies up to `max_positions`, lower ones past it
        let dynamic = rope(RopeScaling::Dynamic { factor: 2.0, max_positions: 8 });
        assert!(dynamic.inv_freq(8).iter().zip(&base).all(|(s, b)| close(*s, *b)));
        let long = dynamic.inv_freq(12);
        assert_eq!(long[0], 1.0);
        assert!(long[1..].iter().zip(&base[1..]).all(|(s, b)| s < b));
        // llama3 with an original context of 8: wavelength 2π (the first pair) is smoothed
        // between 1/8 and 1, every longer one divided by 8
        let llama3 = rope(RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_positions: 8 });
        let f = llama3.inv_freq(0);
        let smooth = (8.0 / (2.0 * std::f64::consts::PI) - 1.0) / 3.0;
        assert!(close(f[0], ((1.0 - smooth) / 8.0 + smooth) as f32));
        assert!(f[1..].iter().zip(&base[1..]).all(|(s, b)| close(*s, b / 8.0)));
        let yarn = Rope { scaling: RopeScaling::Yarn { factor: 4.0, original_max_positions: 8, beta_fast: 32.0, beta_slow: 1.0, truncate: true, attention_factor: 1.25 }, ..linear };
        assert_eq!(yarn.attention_factor(), 1.25);
        assert!(yarn.inv_freq(0).iter().zip(&base).all(|(s, b)| *s <= *b && *s >= b / 4.0 * (1.0 - 1e-6)));
    }
}
