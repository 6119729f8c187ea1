//! onnxruntime's contrib ops (domain `com.microsoft`) as onnxruntime-genai's model builder
//! writes them, folded straight to the raised forms of the e-graph:
//!
//! | op | becomes |
//! |---|---|
//! | `SimplifiedLayerNormalization(x, w)` | `RmsNorm(x, w, eps)` |
//! | `SkipSimplifiedLayerNormalization(x, skip, w)` | `RmsNorm(x + skip, w, eps)`, and `x + skip` (output 3) |
//! | `MatMulNBits(x, q, scales[, zero_points])` | `Linear(x, wq:q)`: the 4-bit weight dequantized ([`super::quant`]) |
//! | `GatherBlockQuantized(q, ids, scales)` | `Embedding(wq:q, ids)` |
//! | `RotaryEmbedding(x, positions, cos, sin)` | `Rope(x)`, θ read from the tables |
//! | `GroupQueryAttention(qkv, …, past_k, past_v, …, cos, sin)` | slices of the packed projection, `SplitHeads`, `Rope`, `RepeatHeads`, causal `Attention`, `MergeHeads` |
//!
//! The attention mask of these graphs reaches `GroupQueryAttention` only as the lengths
//! `seqlens_k` and `total_sequence_length`; with the mask input folded to ones (no padding)
//! the attention is causal. When a written graph must change an attribute (head counts after
//! pruning), the folding with the pruned shapes records it ([`AttrEdit`]).

use egg::{Id, Symbol};
use prunec_ir::{DType, Dim};

use super::{unsupported_op, Folder, Result, Value};
use crate::onnx::language::{QuantizedWeightName, Term};
use crate::onnx::probe::rope_theta;
use crate::onnx::proto::NodeProto;
use crate::onnx::quant::BlockQuant;

/// An integer attribute of a node to change in the written graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrEdit {
    /// The node's index in the main graph.
    pub node: usize,
    /// The attribute.
    pub name: String,
    /// Its new value.
    pub value: i64,
}

impl Folder<'_> {
    /// Folds a node of another domain than ONNX's own.
    pub(super) fn fold_contrib(&mut self, node: &NodeProto) -> Result<Vec<Value>> {
        let ours = node.domain == "com.microsoft" || (node.op_type == "SimplifiedLayerNormalization" && super::super::is_default_domain(&node.domain));
        if !ours {
            return Err(unsupported_op(self.file, node));
        }
        match node.op_type.as_str() {
            "SimplifiedLayerNormalization" => {
                let (x, w) = (self.input(node, 0)?, self.input(node, 1)?);
                self.check_last_axis(node, &x)?;
                Ok(vec![self.rms_norm(node, &x, &w)?])
            }
            "SkipSimplifiedLayerNormalization" => {
                let (x, skip, w) = (self.input(node, 0)?, self.input(node, 1)?, self.input(node, 2)?);
                let shape = self.shape_of(&x);
                let (a, b) = (self.operand(&x), self.operand(&skip));
                let mut sum = self.node(Term::Add([a, b]), DType::F32, shape.clone());
                if let Some(bias) = self.optional_input(node, 3) {
                    let (s, c) = (self.operand(&sum), self.operand(&bias));
                    sum = self.node(Term::Add([s, c]), DType::F32, shape.clone());
                }
                let normed = self.rms_norm(node, &sum, &w)?;
                // outputs 1 and 2 (mean, inverse standard deviation) are for training: an op no
                // rule raises, so using them is refused when lowering
                let stat = |f: &mut Self| {
                    let s = f.operand(&sum);
                    f.node(Term::SkipNormStatistics(s), DType::F32, shape.clone())
                };
                let (m, v) = (stat(self), stat(self));
                Ok(vec![normed, m, v, sum])
            }
            "MatMulNBits" => {
                let x = self.input(node, 0)?;
                let q = self.quantized_weight(node)?;
                let mut shape = self.shape_of(&x);
                if shape.last() != Some(&Dim::Fixed(q.cols)) {
                    return Err(self.err(node, format!("the input's last axis is {:?}, the weight has {} columns (K)", shape.last(), q.cols)));
                }
                if let Some(last) = shape.last_mut() {
                    *last = Dim::Fixed(q.rows);
                }
                let name = q.data.clone();
                self.quantized.insert(name.clone(), q);
                let a = self.operand(&x);
                let w = self.leaf(Term::QuantizedWeight(QuantizedWeightName(Symbol::from(name.as_str()))));
                let mut out = self.node(Term::Linear([a, w]), DType::F32, shape.clone());
                if let Some(bias) = self.optional_input(node, 5) {
                    let (o, b) = (self.operand(&out), self.operand(&bias));
                    out = self.node(Term::Add([o, b]), DType::F32, shape);
                }
                Ok(vec![out])
            }
            "GatherBlockQuantized" => {
                let ids = self.input(node, 1)?;
                let attr = |f: &Self, name: &str, default: i64| f.file.attr_int(node, name).map(|v| v.unwrap_or(default));
                let (gather_axis, quantize_axis) = (attr(self, "gather_axis", 0)?, attr(self, "quantize_axis", 1)?);
                let (bits, block) = (attr(self, "bits", 4)?, attr(self, "block_size", 128)?);
                let data = node.input.first().cloned().unwrap_or_default();
                let Some((init, shape)) = self.packed.get(&data).cloned() else {
                    return Err(self.err(node, "the data must be a packed 4-bit initializer"));
                };
                if gather_axis != 0 || quantize_axis != 1 || bits != 4 || shape.len() != 2 {
                    return Err(self.err(node, "only 4-bit tables [rows, columns / 2] gathered along rows, quantized along columns"));
                }
                let q = BlockQuant {
                    data: init.clone(),
                    rows: shape[0],
                    cols: shape[1] * 2,
                    bits: 4,
                    block_size: usize::try_from(block).map_err(|_| self.err(node, "block_size"))?,
                    scales: node.input.get(2).cloned().unwrap_or_default(),
                    zero_points: node.input.get(3).filter(|z| !z.is_empty()).cloned(),
                };
                self.quantized.entry(init.clone()).or_insert(q.clone());
                let mut out = self.shape_of(&ids);
                out.push(Dim::Fixed(q.cols));
                let i = self.operand(&ids);
                let w = self.leaf(Term::QuantizedWeight(QuantizedWeightName(Symbol::from(init.as_str()))));
                Ok(vec![self.node(Term::Embedding([w, i]), DType::F32, out)])
            }
            "RotaryEmbedding" => {
                let x = self.input(node, 0)?;
                let shape = self.shape_of(&x);
                let interleaved = self.file.attr_int(node, "interleaved")?.unwrap_or(0) != 0;
                let (theta, dims) = self.rotary_tables(node, 2, 3)?;
                let id = self.operand(&x);
                let rope = |f: &mut Self, x: Id, shape: Vec<Dim>| f.rope(x, theta, dims, interleaved, shape);
                match shape.len() {
                    // [batch, seq, heads·head_dim]: needs num_heads
                    3 => {
                        let heads = self.file.attr_int(node, "num_heads")?.unwrap_or(0);
                        let hidden = shape[2].fixed().ok_or_else(|| self.err(node, "the hidden axis must be fixed"))?;
                        let heads = usize::try_from(heads).ok().filter(|&h| h > 0 && hidden % h == 0).ok_or_else(|| {
                            self.err(node, "a 3-D input needs `num_heads` dividing the hidden size")
                        })?;
                        let split = vec![shape[0].clone(), shape[1].clone(), Dim::Fixed(heads), Dim::Fixed(hidden / heads)];
                        let l = self.size_leaf(heads);
                        let h = self.add(Term::SplitHeads([id, l]), split.clone());
                        let r = rope(self, h, split);
                        Ok(vec![self.node(Term::MergeHeads(r), DType::F32, shape)])
                    }
                    // [batch, heads, seq, head_dim]
                    4 => {
                        let t = vec![shape[0].clone(), shape[2].clone(), shape[1].clone(), shape[3].clone()];
                        let h = self.add(Term::SwapAxes12(id), t.clone());
                        let r = rope(self, h, t);
                        Ok(vec![self.node(Term::SwapAxes12(r), DType::F32, shape)])
                    }
                    r => Err(self.err(node, format!("an input of rank {r}"))),
                }
            }
            "GroupQueryAttention" => self.group_query_attention(node),
            _ => Err(unsupported_op(self.file, node)),
        }
    }

    fn check_last_axis(&self, node: &NodeProto, x: &Value) -> Result<()> {
        let rank = self.shape_of(x).len() as i64;
        let axis = self.file.attr_int(node, "axis")?.unwrap_or(-1);
        if axis == -1 || axis == rank - 1 {
            Ok(())
        } else {
            Err(self.err(node, format!("normalizing over axis {axis}, not the last one")))
        }
    }

    fn rms_norm(&mut self, node: &NodeProto, x: &Value, w: &Value) -> Result<Value> {
        let eps = self.file.attr_float(node, "epsilon")?.unwrap_or(1e-5);
        if !matches!(w, Value::Weight { .. }) {
            return Err(self.err(node, "the scale must be an initializer"));
        }
        let shape = self.shape_of(x);
        let (a, b) = (self.operand(x), self.operand(w));
        let e = self.float_leaf(eps);
        Ok(self.node(Term::RmsNorm([a, b, e]), DType::F32, shape))
    }

    /// `Rope(x[b, s, h, d])`, half-split or interleaved.
    fn rope(&mut self, x: Id, theta: f64, dims: usize, interleaved: bool, shape: Vec<Dim>) -> Id {
        let (t, d) = (self.float_leaf(theta as f32), self.size_leaf(dims));
        let rope = if interleaved { Term::RopeInterleaved([x, t, d]) } else { Term::Rope([x, t, d]) };
        self.add(rope, shape)
    }

    /// θ and the rotated dimensions of the rotary tables `cos[positions, d/2]` and
    /// `sin[positions, d/2]` (inputs `cos` and `sin` of `node`), which must be
    /// `cos(t·θ^(−2i/d))` and `sin(t·θ^(−2i/d))`.
    fn rotary_tables(&self, node: &NodeProto, cos: usize, sin: usize) -> Result<(f64, usize)> {
        let table = |k: usize| -> Result<(Vec<usize>, Vec<f32>)> {
            let name = node.input.get(k).cloned().unwrap_or_default();
            match self.file.value_f32(&name)? {
                Some((shape, v)) => Ok((shape, v.into_owned())),
                None => Err(self.err(node, format!("the rotary table `{name}` must be an initializer"))),
            }
        };
        let ((cs, c), (ss, s)) = (table(cos)?, table(sin)?);
        let half = match (cs.as_slice(), ss.as_slice()) {
            ([p, h], [p2, h2]) if p == p2 && h == h2 && *p >= 2 && *h >= 1 => *h,
            _ => return Err(self.err(node, format!("rotary tables of shapes {cs:?} and {ss:?}"))),
        };
        let inv: Vec<f32> = (0..half).map(|i| s[half + i].atan2(c[half + i])).collect();
        let theta = rope_theta(&inv).ok_or_else(|| self.err(node, "the rotary tables are not cos/sin of t·θ^(−2i/d)"))?;
        let d = 2 * half;
        let positions = cs[0];
        for t in 0..positions {
            for i in 0..half {
                let angle = t as f64 * theta.powf(-2.0 * i as f64 / d as f64);
                let (ec, es) = (angle.cos(), angle.sin());
                let (gc, gs) = (f64::from(c[t * half + i]), f64::from(s[t * half + i]));
                if (gc - ec).abs() > 1e-3 || (gs - es).abs() > 1e-3 {
                    return Err(self.err(node, format!("the rotary tables differ from cos/sin of t·θ^(−2i/d), θ = {theta}, at position {t}")));
                }
            }
        }
        Ok((theta, d))
    }

    /// The 4-bit weight read by `MatMulNBits` `node`: packed data `[N, blocks, block/2]`,
    /// scales, optional zero points.
    fn quantized_weight(&self, node: &NodeProto) -> Result<BlockQuant> {
        let attr = |name: &str| -> Result<usize> {
            let v = self.file.attr_int(node, name)?.ok_or_else(|| self.err(node, format!("no attribute `{name}`")))?;
            usize::try_from(v).map_err(|_| self.err(node, format!("attribute `{name}` is {v}")))
        };
        let (k, n, bits, block) = (attr("K")?, attr("N")?, attr("bits")?, attr("block_size")?);
        if bits != 4 {
            return Err(self.err(node, format!("{bits}-bit weights (prunec reads 4-bit ones)")));
        }
        if node.input.get(4).is_some_and(|g| !g.is_empty()) {
            return Err(self.err(node, "weights with a group index (`g_idx`)"));
        }
        let data = node.input.get(1).cloned().unwrap_or_default();
        let Some((init, shape)) = self.packed.get(&data).cloned() else {
            return Err(self.err(node, format!("the weight `{data}` must be a packed uint8 initializer")));
        };
        let blocks = k.div_ceil(block.max(1));
        if shape != [n, blocks, block / 2] {
            return Err(self.err(node, format!("the weight `{data}` has shape {shape:?}, K = {k}, N = {n}, block_size = {block} need [{n}, {blocks}, {}]", block / 2)));
        }
        Ok(BlockQuant {
            data: init,
            rows: n,
            cols: k,
            bits,
            block_size: block,
            scales: node.input.get(2).cloned().unwrap_or_default(),
            zero_points: node.input.get(3).filter(|z| !z.is_empty()).cloned(),
        })
    }

    /// `GroupQueryAttention` with a packed projection (`query` holds q, k and v; `key` and
    /// `value` empty) and rotary tables: raised ops straight away. Outputs: the attention
    /// `[b, s, heads·d]`, and the present keys and values `[b, kv_heads, s, d]`.
    fn group_query_attention(&mut self, node: &NodeProto) -> Result<Vec<Value>> {
        let attr = |f: &Self, name: &str, default: i64| f.file.attr_int(node, name).map(|v| v.unwrap_or(default));
        let unpacked = [1, 2].iter().any(|&k| node.input.get(k).is_some_and(|n| !n.is_empty()));
        if unpacked {
            return Err(self.err(node, "only a packed query/key/value input (`key` and `value` empty)"));
        }
        if attr(self, "local_window_size", -1)? != -1 || self.file.attr_float(node, "softcap")?.unwrap_or(0.0) != 0.0 {
            return Err(self.err(node, "sliding windows and soft-capping"));
        }
        if attr(self, "smooth_softmax", 0)? != 0 || node.input.iter().skip(9).any(|n| !n.is_empty()) {
            return Err(self.err(node, "smooth softmax, position ids, attention bias or sinks"));
        }
        let qkv = self.input(node, 0)?;
        let shape = self.shape_of(&qkv);
        let width = match shape.as_slice() {
            [_, _, Dim::Fixed(w)] => *w,
            _ => return Err(self.err(node, format!("a packed input of shape {shape:?}"))),
        };
        let (mut heads, mut kv) = (attr(self, "num_heads", 0)?, attr(self, "kv_num_heads", 0)?);
        if heads <= 0 || kv <= 0 || heads % kv != 0 {
            return Err(self.err(node, format!("num_heads {heads}, kv_num_heads {kv}")));
        }
        let head_dim = match self.oracle_dims(node, 0) {
            // the written graph: the head counts follow the pruned shapes
            Some(out) => {
                let present = self.oracle_dims(node, 1).ok_or_else(|| self.err(node, "the present keys' pruned shape is unknown"))?;
                let (q_width, new_kv) = match (out.get(2).and_then(Dim::fixed), present.get(1).and_then(Dim::fixed)) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Err(self.err(node, "pruned shapes without fixed head axes")),
                };
                let d = (width - q_width) / (2 * new_kv).max(1);
                if d == 0 || q_width % d != 0 {
                    return Err(self.err(node, "the pruned widths are not whole heads"));
                }
                let new_heads = (q_width / d) as i64;
                for (name, old, new) in [("num_heads", heads, new_heads), ("kv_num_heads", kv, new_kv as i64)] {
                    if old != new {
                        self.attr_edits.push(AttrEdit { node: self.current, name: name.into(), value: new });
                    }
                }
                heads = new_heads;
                kv = new_kv as i64;
                d
            }
            None => {
                let total = (heads + 2 * kv) as usize;
                if width % total != 0 {
                    return Err(self.err(node, format!("a packed width of {width} for {heads} + 2·{kv} heads")));
                }
                width / total
            }
        };
        let (h, kvh) = (heads as usize, kv as usize);
        let scale = match self.file.attr_float(node, "scale")?.unwrap_or(0.0) {
            0.0 => 1.0 / (head_dim as f64).sqrt(),
            s => f64::from(s),
        };
        let rotary = attr(self, "do_rotary", 0)? != 0;
        let interleaved = attr(self, "rotary_interleaved", 0)? != 0;
        let id = self.operand(&qkv);
        let (b, s) = (shape[0].clone(), shape[1].clone());
        let part = |f: &mut Self, start: usize, n: usize| -> Id {
            let (ax, l0, l1) = (f.int_leaf(-1), f.size_leaf(start * head_dim), f.size_leaf((start + n) * head_dim));
            let flat = vec![b.clone(), s.clone(), Dim::Fixed(n * head_dim)];
            let sl = f.add(Term::Slice([id, ax, l0, l1]), flat);
            let l = f.size_leaf(n);
            f.add(Term::SplitHeads([sl, l]), vec![b.clone(), s.clone(), Dim::Fixed(n), Dim::Fixed(head_dim)])
        };
        let (mut q, mut k, v) = (part(self, 0, h), part(self, h, kvh), part(self, h + kvh, kvh));
        let heads_shape = |n: usize| vec![b.clone(), s.clone(), Dim::Fixed(n), Dim::Fixed(head_dim)];
        if rotary {
            let (theta, dims) = self.rotary_tables(node, 7, 8)?;
            q = self.rope(q, theta, dims, interleaved, heads_shape(h));
            k = self.rope(k, theta, dims, interleaved, heads_shape(kvh));
        }
        let (mut kr, mut vr) = (k, v);
        if h != kvh {
            let l = self.size_leaf(h / kvh);
            kr = self.add(Term::RepeatHeads([k, l]), heads_shape(h));
            vr = self.add(Term::RepeatHeads([v, l]), heads_shape(h));
        }
        let sc = self.float_leaf(scale as f32);
        let a = self.add(Term::Attention([q, kr, vr, sc]), heads_shape(h));
        let out = self.node(Term::MergeHeads(a), DType::F32, vec![b.clone(), s.clone(), Dim::Fixed(h * head_dim)]);
        let present = vec![b.clone(), Dim::Fixed(kvh), s.clone(), Dim::Fixed(head_dim)];
        let pk = self.node(Term::SwapAxes12(k), DType::F32, present.clone());
        let pv = self.node(Term::SwapAxes12(v), DType::F32, present.clone());
        // the caches take the present's shape; the outputs are what a writer must reproduce
        for (input, output, val) in [(3, 1, &pk), (4, 2, &pv)] {
            if let Some(Value::Runtime { id, .. }) = self.optional_input(node, input) {
                if let Some(name) = self.cache_inputs.get(&id).cloned() {
                    self.cache_shapes.insert(name, present.clone());
                }
            }
            if let (Some(name), Some(id)) = (node.output.get(output), runtime_id(val)) {
                self.reshapes.push((name.clone(), id));
            }
        }
        if let (Some(name), Some(id)) = (node.output.first(), runtime_id(&out)) {
            self.reshapes.push((name.clone(), id));
        }
        Ok(vec![out, pk, pv])
    }

    /// The shape the written graph's output `k` of `node` must have (known when folding a
    /// pruned model for writing).
    fn oracle_dims(&self, node: &NodeProto, k: usize) -> Option<Vec<Dim>> {
        let oracle: &std::collections::HashMap<String, Vec<Dim>> = self.oracle?;
        node.output.get(k).and_then(|n| oracle.get(n)).cloned()
    }
}

/// The e-class of a runtime value.
fn runtime_id(v: &Value) -> Option<Id> {
    match v {
        Value::Runtime { id, .. } => Some(*id),
        _ => None,
    }
}
