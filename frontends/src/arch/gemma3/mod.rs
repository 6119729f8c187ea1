//! Gemma 3 (text): `Gemma3ForCausalLM`, `model_type` `gemma3_text`, and llama.cpp's
//! `general.architecture = gemma3` files ([`gguf`]): configuration, lowering to the IR and the
//! HF config writer.
//!
//! What sets Gemma 3 apart from LLaMA, and how the IR says it:
//! - its RMSNorms multiply by `(1 + w)`: `RmsNorm { offset: 1 }` over the stored `w` (never
//!   `w + 1` folded into the weights, which would not round-trip); four per layer (input,
//!   post-attention, pre- and post-feed-forward) and the final one;
//! - the embedding is scaled by `√hidden_size`, rounded to the embedding's dtype as
//!   transformers does (`UnaryOp::Scale`);
//! - q and k are RMS-normalised per head over `head_dim` (`(1 + w)` too) before the rotary
//!   embedding;
//! - the MLP is GeGLU with the tanh approximation of GeLU;
//! - layers are sliding-window (`Attention::window`, rotary base `rope_local_base_freq`) or
//!   global (rotary base `rope_theta`) as `layer_types` (or the older `sliding_window_pattern`)
//!   says; attention is scaled by `query_pre_attn_scalar^-1/2`.
//!
//! Pruning: heads and MLP channels may be pruned and written back as a stock config (or with
//! per-layer widths under [`LAYER_WIDTHS_KEY`]). The embedding scale is `√` of the ORIGINAL
//! hidden size, which transformers recomputes from `hidden_size`: a model whose hidden channels
//! were pruned is refused by the HF writer ([`hf_config`]) rather than written with a config
//! that would compute something else.

pub mod gguf;

use std::path::{Path, PathBuf};

use prunec_ir::{Attention, BinaryOp, DType, Graph, Model, ModelInfo, Op, Param, ParamStore, Rope, RopeLayout, UnaryOp, ValueId};

use super::Config;
use crate::builder::{
    check_positive, check_sizes, check_weights, need_usize, norm_eps, opt_bool, opt_f64, opt_str, opt_usize, read_layer_widths,
    shortest_f64, write_layer_widths, Builder, LayerNames, LAYER_WIDTHS_KEY,
};
use crate::error::{FrontendError, Result};
use crate::gguf::GgufFile;
use crate::weights::WeightSource;

/// The keys of one layer's widths in [`LAYER_WIDTHS_KEY`].
const WIDTH_KEYS: [&str; 3] = ["num_attention_heads", "num_key_value_heads", "intermediate_size"];

/// Whether a layer attends through a sliding window or globally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// `sliding_attention`: keys within `sliding_window` positions, rotary base
    /// `rope_local_base_freq`.
    Sliding,
    /// `full_attention`: every earlier key, rotary base `rope_theta`.
    Full,
}

impl LayerType {
    /// The kinds of `layers` layers of which every `pattern`-th is global, the others sliding
    /// (transformers' `sliding_window_pattern`, llama.cpp's `sliding_window_pattern` number).
    pub fn every(pattern: usize, layers: usize) -> Vec<LayerType> {
        (0..layers).map(|i| if (i + 1) % pattern.max(1) != 0 { LayerType::Sliding } else { LayerType::Full }).collect()
    }

    /// Its name in `layer_types`.
    pub fn name(self) -> &'static str {
        match self {
            LayerType::Sliding => "sliding_attention",
            LayerType::Full => "full_attention",
        }
    }
}

/// The shape of a Gemma 3 text model.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream (the original one: it sets the embedding scale).
    pub hidden_size: usize,
    /// Width of the MLP (the widest layer's with per-layer widths).
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads (the most of any layer with per-layer widths).
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Rotary base of the global layers.
    pub rope_theta: f32,
    /// Rotary base of the sliding-window layers.
    pub rope_local_base_freq: f32,
    /// Attention scores are scaled by `query_pre_attn_scalar^-1/2`.
    pub query_pre_attn_scalar: f64,
    /// Window of the sliding layers.
    pub sliding_window: usize,
    /// Each layer's kind.
    pub layer_types: Vec<LayerType>,
    /// Whether the LM head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v/o have biases.
    pub attention_bias: bool,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Each layer's widths (query heads, key/value heads, MLP channels) when they differ.
    pub layer_widths: Option<Vec<[usize; 3]>>,
}

impl Gemma3Config {
    /// Reads an HF `config.json` of `Gemma3ForCausalLM` (transformers 4 and 5 formats); `path`
    /// names it in errors. Refuses what prunec does not compute: logit soft-capping, rope
    /// scaling, bidirectional attention, another activation.
    pub fn from_hf_json(path: &Path, json: &serde_json::Value) -> Result<Gemma3Config> {
        let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
        let need = |key: &str| need_usize(path, json, key);
        let num_layers = need("num_hidden_layers")?;
        let num_heads = need("num_attention_heads")?;
        check_sizes(path, &[("num_hidden_layers", num_layers)])?;
        for key in ["final_logit_softcapping", "attn_logit_softcapping"] {
            if let Some(v) = opt_f64(path, json, key)? {
                return Err(bad(format!("`{key}` = {v}: logit soft-capping is not supported (Gemma 3 has none; Gemma 2 has)")));
            }
        }
        if opt_bool(path, json, "use_bidirectional_attention")? == Some(true) {
            return Err(bad("`use_bidirectional_attention` is true: only causal Gemma 3 models are supported".into()));
        }
        match opt_str(path, json, "hidden_activation")? {
            None | Some("gelu_pytorch_tanh") => {}
            Some(other) => {
                return Err(bad(format!("hidden_activation `{other}` is not supported: prunec computes `gelu_pytorch_tanh`")))
            }
        }
        // rotary bases: transformers 4's `rope_theta`/`rope_local_base_freq`, or 5's
        // `rope_parameters` per layer type
        let rope_parameters = match json.get("rope_parameters") {
            None | Some(serde_json::Value::Null) => None,
            Some(r) if r.is_object() => Some(r),
            Some(_) => return Err(bad("`rope_parameters` must be an object".into())),
        };
        let mut scalings: Vec<(String, &serde_json::Value)> = Vec::new();
        if let Some(s) = json.get("rope_scaling").filter(|s| !s.is_null()) {
            scalings.push(("rope_scaling".into(), s));
        }
        let mut base = |kind: &str, legacy: &str, default: f64| -> Result<f64> {
            if let Some(t) = opt_f64(path, json, legacy)? {
                return Ok(t);
            }
            let Some(r) = rope_parameters else { return Ok(default) };
            match r.get(kind).filter(|p| !p.is_null()) {
                Some(p) => {
                    scalings.push((format!("rope_parameters.{kind}"), p));
                    Ok(opt_f64(path, p, "rope_theta")?.unwrap_or(default))
                }
                None => {
                    scalings.push(("rope_parameters".into(), r));
                    Ok(opt_f64(path, r, "rope_theta")?.unwrap_or(default))
                }
            }
        };
        let rope_theta = base("full_attention", "rope_theta", 1_000_000.0)?;
        let rope_local_base_freq = base("sliding_attention", "rope_local_base_freq", 10_000.0)?;
        for (key, scaling) in scalings {
            if !scaling.is_object() {
                return Err(bad(format!("`{key}` must be an object")));
            }
            let kind = match opt_str(path, scaling, "rope_type")? {
                Some(k) => Some(k),
                None => opt_str(path, scaling, "type")?,
            };
            if let Some(kind) = kind.filter(|k| *k != "default") {
                return Err(bad(format!("`{key}`: rope type `{kind}` is not supported yet (only `default`)")));
            }
        }
        let layer_types = match json.get("layer_types") {
            None | Some(serde_json::Value::Null) => {
                let pattern = opt_usize(path, json, "sliding_window_pattern")?.unwrap_or(6);
                if pattern == 0 {
                    return Err(bad("`sliding_window_pattern` must be positive".into()));
                }
                LayerType::every(pattern, num_layers)
            }
            Some(serde_json::Value::Array(v)) => v
                .iter()
                .enumerate()
                .map(|(i, t)| match t.as_str() {
                    Some("sliding_attention") => Ok(LayerType::Sliding),
                    Some("full_attention") => Ok(LayerType::Full),
                    _ => Err(bad(format!("`layer_types[{i}]` is {t}, not \"sliding_attention\" or \"full_attention\""))),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(_) => return Err(bad("`layer_types` must be a list".into())),
        };
        let head_dim = opt_usize(path, json, "head_dim")?.unwrap_or(256);
        let cfg = Gemma3Config {
            vocab_size: need("vocab_size")?,
            hidden_size: need("hidden_size")?,
            intermediate_size: need("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads: opt_usize(path, json, "num_key_value_heads")?.unwrap_or(num_heads),
            head_dim,
            rms_norm_eps: opt_f64(path, json, "rms_norm_eps")?.unwrap_or(1e-6) as f32,
            rope_theta: rope_theta as f32,
            rope_local_base_freq: rope_local_base_freq as f32,
            query_pre_attn_scalar: opt_f64(path, json, "query_pre_attn_scalar")?.unwrap_or(256.0),
            sliding_window: opt_usize(path, json, "sliding_window")?.unwrap_or(4096),
            layer_types,
            tie_word_embeddings: opt_bool(path, json, "tie_word_embeddings")?.unwrap_or(true),
            attention_bias: opt_bool(path, json, "attention_bias")?.unwrap_or(false),
            max_position_embeddings: opt_usize(path, json, "max_position_embeddings")?.unwrap_or(131_072),
            layer_widths: read_layer_widths(path, json, WIDTH_KEYS, num_layers)?,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks that the sizes are consistent.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(FrontendError::BadConfig { path: path.to_path_buf(), reason });
        check_sizes(
            path,
            &[
                ("vocab_size", self.vocab_size),
                ("hidden_size", self.hidden_size),
                ("intermediate_size", self.intermediate_size),
                ("num_hidden_layers", self.num_layers),
                ("num_attention_heads", self.num_heads),
                ("num_key_value_heads", self.num_kv_heads),
                ("head_dim", self.head_dim),
                ("sliding_window", self.sliding_window),
            ],
        )?;
        check_positive(path, "rms_norm_eps", f64::from(self.rms_norm_eps))?;
        check_positive(path, "rope_theta", f64::from(self.rope_theta))?;
        check_positive(path, "rope_local_base_freq", f64::from(self.rope_local_base_freq))?;
        check_positive(path, "query_pre_attn_scalar", self.query_pre_attn_scalar)?;
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for rotary embeddings", self.head_dim));
        }
        if self.layer_types.len() != self.num_layers {
            return bad(format!("`layer_types` has {} entries for {} layers (num_hidden_layers)", self.layer_types.len(), self.num_layers));
        }
        for l in 0..self.num_layers {
            let [heads, kv, _] = self.layer(l);
            if !heads.is_multiple_of(kv) {
                let at = if self.layer_widths.is_some() { format!("`{LAYER_WIDTHS_KEY}[{l}]`: ") } else { String::new() };
                return bad(format!("{at}num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"));
            }
        }
        Ok(())
    }

    /// The widths of layer `l`: query heads, key/value heads, MLP channels.
    pub fn layer(&self, l: usize) -> [usize; 3] {
        match self.layer_widths.as_ref().and_then(|w| w.get(l)) {
            Some(w) => *w,
            None => [self.num_heads, self.num_kv_heads, self.intermediate_size],
        }
    }

    /// Parameter names and shapes, in the order transformers lists them.
    pub fn expected_params(&self) -> Vec<(String, Vec<usize>)> {
        let (h, v, d) = (self.hidden_size, self.vocab_size, self.head_dim);
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..self.num_layers {
            let [heads, kv, i] = self.layer(l);
            let p = format!("model.layers.{l}");
            for (n, rows) in [("q_proj", heads * d), ("k_proj", kv * d), ("v_proj", kv * d)] {
                out.push((format!("{p}.self_attn.{n}.weight"), vec![rows, h]));
                if self.attention_bias {
                    out.push((format!("{p}.self_attn.{n}.bias"), vec![rows]));
                }
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, heads * d]));
            if self.attention_bias {
                out.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
            }
            out.push((format!("{p}.self_attn.q_norm.weight"), vec![d]));
            out.push((format!("{p}.self_attn.k_norm.weight"), vec![d]));
            for (n, shape) in [("gate_proj", vec![i, h]), ("up_proj", vec![i, h]), ("down_proj", vec![h, i])] {
                out.push((format!("{p}.mlp.{n}.weight"), shape));
            }
            for n in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"] {
                out.push((format!("{p}.{n}.weight"), vec![h]));
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }

    /// The configuration as a transformers `config.json` for `Gemma3ForCausalLM`: the keys of
    /// transformers 4 (`rope_theta`, `rope_local_base_freq`, `layer_types`) and transformers 5's
    /// `rope_parameters` per layer type; [`LAYER_WIDTHS_KEY`] when layers differ. The GGUF
    /// frontend's models carry this as the JSON of their [`Config`].
    pub fn to_hf_json(&self) -> serde_json::Value {
        let rope = |theta: f32| serde_json::json!({ "rope_theta": shortest_f64(theta), "rope_type": "default" });
        let mut json = serde_json::json!({
            "architectures": ["Gemma3ForCausalLM"],
            "attention_bias": self.attention_bias,
            "attention_dropout": 0.0,
            "attn_logit_softcapping": null,
            "final_logit_softcapping": null,
            "head_dim": self.head_dim,
            "hidden_activation": "gelu_pytorch_tanh",
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "layer_types": self.layer_types.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "max_position_embeddings": self.max_position_embeddings,
            "model_type": "gemma3_text",
            "num_attention_heads": self.num_heads,
            "num_hidden_layers": self.num_layers,
            "num_key_value_heads": self.num_kv_heads,
            "query_pre_attn_scalar": self.query_pre_attn_scalar,
            "rms_norm_eps": shortest_f64(self.rms_norm_eps),
            "rope_local_base_freq": shortest_f64(self.rope_local_base_freq),
            "rope_parameters": {
                "full_attention": rope(self.rope_theta),
                "sliding_attention": rope(self.rope_local_base_freq),
            },
            "rope_scaling": null,
            "rope_theta": shortest_f64(self.rope_theta),
            "sliding_window": self.sliding_window,
            "tie_word_embeddings": self.tie_word_embeddings,
            "use_cache": true,
            "vocab_size": self.vocab_size,
        });
        if let (Some(layers), Some(obj)) = (&self.layer_widths, json.as_object_mut()) {
            write_layer_widths(obj, WIDTH_KEYS, layers);
        }
        json
    }
}

/// `√hidden` as transformers' `Gemma3TextScaledWordEmbedding` multiplies by it: computed in
/// f64, then rounded to the embedding's dtype (`embed_scale.to(weight.dtype)`).
pub fn embedding_scale(hidden: usize, dtype: DType) -> f32 {
    let s = (hidden as f64).sqrt();
    match dtype {
        DType::BF16 => half::bf16::from_f64(s).to_f32(),
        DType::F16 => half::f16::from_f64(s).to_f32(),
        _ => s as f32,
    }
}

/// The name of the node scaling the embedding.
const EMBED_SCALE_NODE: &str = "model.embed_tokens.scale";

/// Lowers a Gemma 3 model to the IR, checking every tensor's shape against `config`;
/// `norm_offset` is what its RMSNorms add to their weights (1 for HF's `(1 + w)` weights, 0 for
/// llama.cpp's, stored as `w + 1`). A model whose `info` has no configuration (GGUF) gets
/// `config`'s, as [`Gemma3Config::to_hf_json`] writes it.
pub fn build(config: &Gemma3Config, weights: &dyn WeightSource, mut info: ModelInfo, norm_offset: f32) -> Result<Model> {
    if info.config.is_none() {
        info.config = Some(Config::shared(config.clone(), config.to_hf_json()));
    }
    let params = crate::builder::read_params(config.expected_params(), weights)?;
    crate::builder::finish(params, info, |params| lower(config, params, norm_offset))
}

fn lower(c: &Gemma3Config, params: &ParamStore, offset: f32) -> prunec_ir::Result<Graph> {
    let mut b = Builder::new(params);
    let norm = Op::RmsNorm { eps: c.rms_norm_eps, offset };
    let embed_dtype = params.get("model.embed_tokens.weight").map_or(DType::F32, |p| p.dtype);
    let ids = b.token_ids()?;
    let embed = b.param("model.embed_tokens.weight", None)?;
    let x = b.op(Op::Embedding, "model.embed_tokens", None, &[embed, ids])?;
    let scale = UnaryOp::Scale(embedding_scale(c.hidden_size, embed_dtype));
    let mut x = b.op(Op::Unary(scale), EMBED_SCALE_NODE, None, &[x])?;
    let attn_scale = c.query_pre_attn_scalar.powf(-0.5) as f32;
    for l in 0..c.num_layers {
        let blk = Some(l as u32);
        let p = format!("model.layers.{l}");
        let [heads, kv_heads, _] = c.layer(l);
        let (theta, window) = match c.layer_types[l] {
            LayerType::Sliding => (c.rope_local_base_freq, Some(c.sliding_window)),
            LayerType::Full => (c.rope_theta, None),
        };
        let rope = Rope { theta, rotary_dims: c.head_dim, layout: RopeLayout::HalfSplit, half_freqs: false, scaling: prunec_ir::RopeScaling::None };
        let norm_of = |b: &mut Builder, x: ValueId, name: &str| -> prunec_ir::Result<ValueId> {
            let w = b.param(&format!("{p}.{name}.weight"), blk)?;
            b.op(norm.clone(), &format!("{p}.{name}"), blk, &[x, w])
        };
        let h = norm_of(&mut b, x, "input_layernorm")?;
        let q = b.linear(h, &format!("{p}.self_attn.q_proj"), c.attention_bias, blk)?;
        let k = b.linear(h, &format!("{p}.self_attn.k_proj"), c.attention_bias, blk)?;
        let v = b.linear(h, &format!("{p}.self_attn.v_proj"), c.attention_bias, blk)?;
        let q = b.op(Op::SplitHeads { heads }, &format!("{p}.self_attn.q_heads"), blk, &[q])?;
        let k = b.op(Op::SplitHeads { heads: kv_heads }, &format!("{p}.self_attn.k_heads"), blk, &[k])?;
        let mut v = b.op(Op::SplitHeads { heads: kv_heads }, &format!("{p}.self_attn.v_heads"), blk, &[v])?;
        let q = norm_of(&mut b, q, "self_attn.q_norm")?;
        let k = norm_of(&mut b, k, "self_attn.k_norm")?;
        let q = b.op(Op::Rope(rope), &format!("{p}.self_attn.q_rope"), blk, &[q])?;
        let mut k = b.op(Op::Rope(rope), &format!("{p}.self_attn.k_rope"), blk, &[k])?;
        let times = heads / kv_heads.max(1);
        if times != 1 {
            let copies = vec![times; kv_heads];
            k = b.op(Op::RepeatHeads { copies: copies.clone() }, &format!("{p}.self_attn.k_repeat"), blk, &[k])?;
            v = b.op(Op::RepeatHeads { copies }, &format!("{p}.self_attn.v_repeat"), blk, &[v])?;
        }
        let attention = Attention { scale: attn_scale, causal: true, window };
        let a = b.op(Op::Attention(attention), &format!("{p}.self_attn"), blk, &[q, k, v])?;
        let a = b.op(Op::MergeHeads, &format!("{p}.self_attn.merge_heads"), blk, &[a])?;
        let o = b.linear(a, &format!("{p}.self_attn.o_proj"), c.attention_bias, blk)?;
        let o = norm_of(&mut b, o, "post_attention_layernorm")?;
        x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.attn_residual"), blk, &[x, o])?;
        let h = norm_of(&mut b, x, "pre_feedforward_layernorm")?;
        let gate = b.linear(h, &format!("{p}.mlp.gate_proj"), false, blk)?;
        let up = b.linear(h, &format!("{p}.mlp.up_proj"), false, blk)?;
        let act = b.op(Op::Unary(UnaryOp::GeluTanh), &format!("{p}.mlp.act"), blk, &[gate])?;
        let m = b.op(Op::Binary(BinaryOp::Mul), &format!("{p}.mlp.gated"), blk, &[act, up])?;
        let d = b.linear(m, &format!("{p}.mlp.down_proj"), false, blk)?;
        let d = norm_of(&mut b, d, "post_feedforward_layernorm")?;
        x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.mlp_residual"), blk, &[x, d])?;
    }
    let w = b.param("model.norm.weight", None)?;
    let x = b.op(norm, "model.norm", None, &[x, w])?;
    let head = if c.tie_word_embeddings { embed } else { b.param("lm_head.weight", None)? };
    let logits = b.op(Op::Linear, "lm_head", None, &[x, head])?;
    b.op(Op::Output { name: "logits".into() }, "logits", None, &[logits])?;
    Ok(b.g)
}

/// Where a model's configuration lives, for messages: `config.json` of an HF folder, else
/// the model file itself.
fn config_path(model: &Model) -> PathBuf {
    let source = &model.info.source;
    if model.info.format == prunec_ir::SourceFormat::Hf || source.is_dir() {
        source.join("config.json")
    } else {
        source.clone()
    }
}

/// Makes every RMSNorm of `model` a `(1 + w)` norm, as transformers' Gemma 3 computes them:
/// a norm with another offset `o` (llama.cpp's weights, stored as `w + 1`, have 0; pruning
/// hidden channels scales it) gets the weight `w + o − 1` and the offset 1, which computes the
/// same. Returns how many norms changed.
pub fn normalise_norm_offsets(model: &mut Model) -> Result<usize> {
    let path = config_path(model);
    let ir = |source| FrontendError::Ir { path: path.clone(), source };
    let mut changed = 0;
    for id in model.graph.node_ids() {
        let node = model.graph.node(id).map_err(ir)?;
        let Op::RmsNorm { eps, offset } = node.op else { continue };
        if offset == 1.0 {
            continue;
        }
        let inputs = model.graph.inputs(id);
        let Some(w) = inputs.get(1) else { continue };
        let Op::Param { name, .. } = &model.graph.node(w.node).map_err(ir)?.op else {
            return Err(FrontendError::BadConfig { path: path.clone(), reason: format!("the weight of norm `{}` is not a parameter", node.name) });
        };
        let name = name.clone();
        let p = model.params.get(&name).ok_or_else(|| FrontendError::MissingTensor { path: path.clone(), tensor: name.clone() })?;
        let (shape, dtype) = (p.shape.clone(), p.dtype);
        let values = model.params.read_f32(&name).map_err(ir)?;
        let shifted: Vec<f32> = values.iter().map(|&v| v + (offset - 1.0)).collect();
        let mut new = Param::owned(shape, shifted).map_err(ir)?;
        new.dtype = dtype;
        model.params.insert(name, new);
        model.graph.node_mut(id).map_err(ir)?.op = Op::RmsNorm { eps, offset: 1.0 };
        changed += 1;
    }
    Ok(changed)
}

/// The HF `config.json` of a Gemma 3 model as it is now, widths read from its parameters
/// (each layer's query and key/value heads from the rows of q_proj and k_proj over `head_dim`,
/// its MLP channels from the rows of gate_proj); every other key is the model's own
/// configuration. Stock when all layers are alike; otherwise the top-level widths are the
/// maxima and [`LAYER_WIDTHS_KEY`] lists every layer.
///
/// Refused: a model whose hidden channels were pruned (its embedding is scaled by √ of the
/// original hidden size, which transformers would recompute from the new one), key/value heads
/// serving different numbers of query heads, RMSNorms that are not `(1 + w)` (see
/// [`normalise_norm_offsets`], which the writer runs first).
pub fn hf_config(model: &Model) -> Result<serde_json::Value> {
    let path = config_path(model);
    let bad = |reason: String| FrontendError::BadConfig { path: path.clone(), reason };
    let carried = Config::<Gemma3Config>::of(model, &path)?;
    let (original, mut json) = (&carried.typed, carried.json.clone());
    let source = model.info.source.clone();
    let g = &model.graph;
    let shape = |name: &str| model.params.get(name).map(|p| p.shape.as_slice());
    let embed = "model.embed_tokens.weight";
    let (vocab_size, hidden_size, embed_dtype) = match (shape(embed), model.params.get(embed)) {
        (Some(&[v, h]), Some(p)) => (v, h, p.dtype),
        (Some(other), _) => {
            return Err(FrontendError::BadTensor { path: source, tensor: embed.into(), reason: format!("shape {other:?} is not [vocab, hidden]") })
        }
        _ => return Err(FrontendError::MissingTensor { path: source, tensor: embed.into() }),
    };
    for id in g.node_ids() {
        let Ok(node) = g.node(id) else { continue };
        match &node.op {
            Op::Unary(UnaryOp::Scale(s)) if node.name == EMBED_SCALE_NODE => {
                let want = embedding_scale(hidden_size, embed_dtype);
                if *s != want {
                    return Err(bad(format!(
                        "the embedding is scaled by {s} (√ of the hidden size {} it was trained with); transformers' Gemma 3 would scale it by √hidden_size = {want} of the pruned model: prunec does not write Gemma 3 models whose hidden channels were pruned (prune heads and MLP channels only)",
                        original.hidden_size
                    )));
                }
            }
            Op::RmsNorm { offset, .. } if *offset != 1.0 => {
                return Err(bad(format!("norm `{}` adds {offset} to its weight; a Gemma 3 config describes (1 + w) norms only", node.name)))
            }
            Op::RepeatHeads { copies } if Op::uniform_copies(copies).is_none() => {
                return Err(bad(format!(
                    "`{}`: key/value heads serve different numbers of query heads ({copies:?}), which a Gemma 3 config cannot say",
                    node.name
                )))
            }
            _ => {}
        }
    }
    let head_dim = original.head_dim;
    let rows = |name: String, per: usize| -> Result<usize> {
        let Some(&r) = shape(&name).and_then(<[usize]>::first) else {
            return Err(FrontendError::MissingTensor { path: source.clone(), tensor: name });
        };
        if per == 0 || !r.is_multiple_of(per) || r == 0 {
            return Err(FrontendError::BadTensor { path: source.clone(), tensor: name, reason: format!("{r} rows are not whole heads of {per}") });
        }
        Ok(r / per)
    };
    let mut layers = Vec::with_capacity(original.num_layers);
    for l in 0..original.num_layers {
        let p = format!("model.layers.{l}");
        layers.push([
            rows(format!("{p}.self_attn.q_proj.weight"), head_dim)?,
            rows(format!("{p}.self_attn.k_proj.weight"), head_dim)?,
            rows(format!("{p}.mlp.gate_proj.weight"), 1)?,
        ]);
    }
    let eps = norm_eps(model).map_err(bad)?;
    let obj = json.as_object_mut().ok_or_else(|| bad("not a JSON object".into()))?;
    obj.insert("hidden_size".into(), hidden_size.into());
    obj.insert("vocab_size".into(), vocab_size.into());
    if let Some(eps) = eps {
        obj.insert("rms_norm_eps".into(), shortest_f64(eps).into());
    }
    obj.insert("head_dim".into(), head_dim.into());
    obj.insert("tie_word_embeddings".into(), model.params.get("lm_head.weight").is_none().into());
    write_layer_widths(obj, WIDTH_KEYS, &layers);
    // The configuration must describe the parameters exactly as a reload will expect them.
    let config = Gemma3Config::from_hf_json(&path, &json)?;
    crate::builder::check_params(config.expected_params(), &model.params, &source)?;
    Ok(json)
}

/// Gemma 3 (text) in the architecture registry.
pub struct Gemma3;

impl super::Architecture for Gemma3 {
    fn name(&self) -> &'static str {
        "gemma3_text"
    }

    fn hf_classes(&self) -> &'static [&'static str] {
        &["Gemma3ForCausalLM"]
    }

    fn lower(
        &self,
        config_path: &Path,
        json: &serde_json::Value,
        mut info: ModelInfo,
        weights: &dyn WeightSource,
        names: &[&String],
    ) -> Result<Model> {
        let config = Gemma3Config::from_hf_json(config_path, json)?;
        let layers = LayerNames { prefix: "model.layers.", key: "num_hidden_layers", count: config.num_layers };
        let tied = config.tie_word_embeddings.then_some(("lm_head.weight", "tie_word_embeddings"));
        info.warnings = check_weights(config_path, names, layers, || config.expected_params(), tied)?;
        info.config = Some(Config::shared(config.clone(), json.clone()));
        build(&config, weights, info, 1.0)
    }

    fn hf_config(&self, model: &Model) -> Result<serde_json::Value> {
        hf_config(model)
    }

    fn before_writing(&self, model: &mut Model) -> Result<Option<String>> {
        let n = normalise_norm_offsets(model)?;
        Ok((n > 0).then(|| format!("{n} RMSNorm weights rewritten as Gemma's (1 + w)")))
    }

    fn lora_targets(&self) -> &'static [&'static str] {
        &["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    }

    fn gguf_name(&self) -> Option<&'static str> {
        Some("gemma3")
    }

    fn writes_gguf(&self) -> bool {
        true
    }

    fn gguf_plan(&self, model: &Model, block: usize) -> Result<super::gguf_out::GgufPlan> {
        gguf::plan(model, block)
    }

    fn load_gguf(&self, path: &Path, file: GgufFile) -> Result<Model> {
        gguf::load(path, file)
    }
}
