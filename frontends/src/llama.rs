//! The LLaMA family (LLaMA 1/2/3, Vicuna, SmolLM, any `LlamaForCausalLM`): configuration and
//! lowering to the IR. The HF and GGUF frontends both come here, so the same model gives the
//! same graph whatever file it was read from.

use std::path::Path;

use prunec_ir::{
    Attention, BinaryOp, DType, Dim, Graph, Model, ModelInfo, Op, Param, ParamData, ParamStore, Rope, RopeLayout, Shape,
    UnaryOp, ValueId, ValueType,
};

use crate::error::{FrontendError, Result};
use crate::weights::WeightSource;

/// The shape of a LLaMA model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (fewer than query heads with grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Rotary base.
    pub rope_theta: f32,
    /// Whether the LM head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v/o have biases.
    pub attention_bias: bool,
    /// Whether gate/up/down have biases.
    pub mlp_bias: bool,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
}

fn get_usize(json: &serde_json::Value, key: &str) -> Option<usize> {
    json.get(key).and_then(serde_json::Value::as_u64).and_then(|v| usize::try_from(v).ok())
}

impl LlamaConfig {
    /// Reads an HF `config.json` (transformers 4 and 5 formats).
    pub fn from_hf_json(path: &Path, json: &serde_json::Value) -> Result<LlamaConfig> {
        let need = |key: &str| -> Result<usize> {
            get_usize(json, key).ok_or_else(|| FrontendError::BadConfig {
                path: path.to_path_buf(),
                reason: format!("`{key}` is missing or not a non-negative integer"),
            })
        };
        let hidden_size = need("hidden_size")?;
        let num_heads = need("num_attention_heads")?;
        let rope_theta = json
            .get("rope_theta")
            .or_else(|| json.get("rope_parameters").and_then(|r| r.get("rope_theta")))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(10000.0) as f32;
        if let Some(kind) = json
            .get("rope_scaling")
            .or_else(|| json.get("rope_parameters"))
            .and_then(|r| r.get("rope_type").or_else(|| r.get("type")))
            .and_then(serde_json::Value::as_str)
        {
            if kind != "default" {
                return Err(FrontendError::BadConfig {
                    path: path.to_path_buf(),
                    reason: format!("rope type `{kind}` is not supported yet (only `default`)"),
                });
            }
        }
        let cfg = LlamaConfig {
            vocab_size: need("vocab_size")?,
            hidden_size,
            intermediate_size: need("intermediate_size")?,
            num_layers: need("num_hidden_layers")?,
            num_heads,
            num_kv_heads: get_usize(json, "num_key_value_heads").unwrap_or(num_heads),
            head_dim: get_usize(json, "head_dim").unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0)),
            rms_norm_eps: json.get("rms_norm_eps").and_then(serde_json::Value::as_f64).unwrap_or(1e-6) as f32,
            rope_theta,
            tie_word_embeddings: json.get("tie_word_embeddings").and_then(serde_json::Value::as_bool).unwrap_or(false),
            attention_bias: json.get("attention_bias").and_then(serde_json::Value::as_bool).unwrap_or(false),
            mlp_bias: json.get("mlp_bias").and_then(serde_json::Value::as_bool).unwrap_or(false),
            max_position_embeddings: get_usize(json, "max_position_embeddings").unwrap_or(2048),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks that the sizes are consistent.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(FrontendError::BadConfig { path: path.to_path_buf(), reason });
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
        ];
        for (k, v) in positive {
            if v == 0 {
                return bad(format!("`{k}` must be positive"));
            }
            if v > 1 << 24 {
                return bad(format!("`{k}` = {v} is implausibly large"));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for rotary embeddings", self.head_dim));
        }
        Ok(())
    }

    /// Parameter names and shapes, in the order HF lists them.
    pub fn expected_params(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (q, kv) = (self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim);
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..self.num_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            for (n, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                out.push((format!("{p}.self_attn.{n}.weight"), vec![rows, h]));
                if self.attention_bias {
                    out.push((format!("{p}.self_attn.{n}.bias"), vec![rows]));
                }
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            if self.attention_bias {
                out.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
            }
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            for (n, shape) in [("gate_proj", vec![i, h]), ("up_proj", vec![i, h]), ("down_proj", vec![h, i])] {
                let rows = shape[0];
                out.push((format!("{p}.mlp.{n}.weight"), shape));
                if self.mlp_bias {
                    out.push((format!("{p}.mlp.{n}.bias"), vec![rows]));
                }
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }
}

/// Lowers a LLaMA model to the IR, checking every tensor's shape against `config`.
pub fn build(config: &LlamaConfig, weights: &dyn WeightSource, info: ModelInfo) -> Result<Model> {
    let mut params = ParamStore::new();
    for (name, shape) in config.expected_params() {
        let t = weights
            .tensor(&name)?
            .ok_or_else(|| FrontendError::MissingTensor { path: weights.location().to_path_buf(), tensor: name.clone() })?;
        if t.shape != shape {
            return Err(FrontendError::ShapeMismatch { path: t.file, tensor: name, expected: shape, found: t.shape });
        }
        params.insert(name, Param { shape, dtype: t.dtype, data: ParamData::Source(t.source) });
    }
    let path = info.source.clone();
    let graph = lower(config, &params).map_err(|source| FrontendError::Ir { path: path.clone(), source })?;
    let model = Model { graph, params, info, groups: None };
    prunec_ir::verify(&model).map_err(|source| FrontendError::Ir { path, source })?;
    Ok(model)
}

struct Builder<'a> {
    g: Graph,
    params: &'a ParamStore,
}

impl Builder<'_> {
    fn param(&mut self, name: &str, block: Option<u32>) -> prunec_ir::Result<ValueId> {
        let p = self.params.get(name).ok_or_else(|| prunec_ir::IrError::BadParam {
            name: name.to_string(),
            reason: "not in the store".into(),
        })?;
        let ty = ValueType::new(p.dtype, Shape::fixed(&p.shape));
        self.g.add_value(Op::Param { name: name.to_string(), ty }, name, block, &[])
    }

    fn linear(&mut self, x: ValueId, module: &str, bias: bool, block: Option<u32>) -> prunec_ir::Result<ValueId> {
        let w = self.param(&format!("{module}.weight"), block)?;
        let mut inputs = vec![x, w];
        if bias {
            inputs.push(self.param(&format!("{module}.bias"), block)?);
        }
        self.g.add_value(Op::Linear, module, block, &inputs)
    }

    fn op(&mut self, op: Op, name: &str, block: Option<u32>, inputs: &[ValueId]) -> prunec_ir::Result<ValueId> {
        self.g.add_value(op, name, block, inputs)
    }
}

fn bsd(n: usize) -> Shape {
    Shape(vec![Dim::batch(), Dim::seq(), Dim::Fixed(n)])
}

fn bshd(h: usize, d: usize) -> Shape {
    Shape(vec![Dim::batch(), Dim::seq(), Dim::Fixed(h), Dim::Fixed(d)])
}

fn lower(c: &LlamaConfig, params: &ParamStore) -> prunec_ir::Result<Graph> {
    let mut b = Builder { g: Graph::new(), params };
    let ids_ty = ValueType::new(DType::I64, Shape(vec![Dim::batch(), Dim::seq()]));
    let ids = b.op(Op::Input { name: "input_ids".into(), ty: ids_ty }, "input_ids", None, &[])?;
    let embed = b.param("model.embed_tokens.weight", None)?;
    let mut x = b.op(Op::Embedding, "model.embed_tokens", None, &[embed, ids])?;
    let rope = Rope { theta: c.rope_theta, rotary_dims: c.head_dim, layout: RopeLayout::HalfSplit };
    let attention = Attention { scale: 1.0 / (c.head_dim as f32).sqrt(), causal: true };
    let n_rep = c.num_heads / c.num_kv_heads;
    for l in 0..c.num_layers {
        let blk = Some(l as u32);
        let p = format!("model.layers.{l}");
        let w = b.param(&format!("{p}.input_layernorm.weight"), blk)?;
        let h = b.op(Op::RmsNorm { eps: c.rms_norm_eps }, &format!("{p}.input_layernorm"), blk, &[x, w])?;
        let q = b.linear(h, &format!("{p}.self_attn.q_proj"), c.attention_bias, blk)?;
        let k = b.linear(h, &format!("{p}.self_attn.k_proj"), c.attention_bias, blk)?;
        let v = b.linear(h, &format!("{p}.self_attn.v_proj"), c.attention_bias, blk)?;
        let q = b.op(Op::Reshape { shape: bshd(c.num_heads, c.head_dim) }, &format!("{p}.self_attn.q_heads"), blk, &[q])?;
        let k = b.op(Op::Reshape { shape: bshd(c.num_kv_heads, c.head_dim) }, &format!("{p}.self_attn.k_heads"), blk, &[k])?;
        let v = b.op(Op::Reshape { shape: bshd(c.num_kv_heads, c.head_dim) }, &format!("{p}.self_attn.v_heads"), blk, &[v])?;
        let q = b.op(Op::Rope(rope), &format!("{p}.self_attn.q_rope"), blk, &[q])?;
        let mut k = b.op(Op::Rope(rope), &format!("{p}.self_attn.k_rope"), blk, &[k])?;
        let mut v = v;
        if n_rep > 1 {
            k = b.op(Op::RepeatHeads { times: n_rep }, &format!("{p}.self_attn.k_repeat"), blk, &[k])?;
            v = b.op(Op::RepeatHeads { times: n_rep }, &format!("{p}.self_attn.v_repeat"), blk, &[v])?;
        }
        let a = b.op(Op::Attention(attention), &format!("{p}.self_attn"), blk, &[q, k, v])?;
        let a = b.op(Op::Reshape { shape: bsd(c.num_heads * c.head_dim) }, &format!("{p}.self_attn.merge_heads"), blk, &[a])?;
        let o = b.linear(a, &format!("{p}.self_attn.o_proj"), c.attention_bias, blk)?;
        x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.attn_residual"), blk, &[x, o])?;
        let w = b.param(&format!("{p}.post_attention_layernorm.weight"), blk)?;
        let h = b.op(Op::RmsNorm { eps: c.rms_norm_eps }, &format!("{p}.post_attention_layernorm"), blk, &[x, w])?;
        let gate = b.linear(h, &format!("{p}.mlp.gate_proj"), c.mlp_bias, blk)?;
        let up = b.linear(h, &format!("{p}.mlp.up_proj"), c.mlp_bias, blk)?;
        let act = b.op(Op::Unary(UnaryOp::Silu), &format!("{p}.mlp.act"), blk, &[gate])?;
        let m = b.op(Op::Binary(BinaryOp::Mul), &format!("{p}.mlp.gated"), blk, &[act, up])?;
        let d = b.linear(m, &format!("{p}.mlp.down_proj"), c.mlp_bias, blk)?;
        x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.mlp_residual"), blk, &[x, d])?;
    }
    let w = b.param("model.norm.weight", None)?;
    let x = b.op(Op::RmsNorm { eps: c.rms_norm_eps }, "model.norm", None, &[x, w])?;
    let head = if c.tie_word_embeddings { embed } else { b.param("lm_head.weight", None)? };
    let logits = b.op(Op::Linear, "lm_head", None, &[x, head])?;
    b.op(Op::Output { name: "logits".into() }, "logits", None, &[logits])?;
    Ok(b.g)
}

