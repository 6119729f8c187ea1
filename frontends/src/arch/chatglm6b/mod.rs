//! ChatGLM-6B (v1, the GLM block): configuration and lowering to the IR. The HF frontend comes
//! here for `model_type` `chatglm` without `rmsnorm: true` (ChatGLM2/3 go to [`crate::arch::chatglm2`]).
//!
//! What differs from a LLaMA block, as THUDM's `modeling_chatglm.py` computes it:
//! - LayerNorm with bias; GeLU (tanh form) MLP `dense_h_to_4h` → `dense_4h_to_h`; biases on
//!   every linear layer but the LM head;
//! - one fused `query_key_value` laid out per head (`[q | k | v]` of head 0, then head 1...):
//!   the IR splits the heads first and slices q, k and v inside each;
//! - 2-D rotary positions: the first half of each head rotates with the token's position, the
//!   second with its position inside the answer block, each half in half-split pairs, with
//!   inverse frequencies rounded to f16 as the code always stores them;
//! - positions and the attention mask come from the token layout `prompt [gMASK] <sop> answer`
//!   ([`Op::PrefixLm`]): the prompt attends bidirectionally, the answer causally;
//! - the residual adds the LayerNorm's *output* scaled by `alpha = sqrt(2 · 28)` (the code's
//!   default layer count, whatever `num_layers` is).

use std::path::Path;

use prunec_ir::{
    Attention, BinaryOp, Graph, Model, ModelInfo, Op, ParamStore, PrefixPart, Rope, RopeLayout, UnaryOp, ValueId,
};

use super::Config;
use crate::builder::{check_weights, get_usize, need_usize, Builder, LayerNames};
use crate::error::{FrontendError, Result};
use crate::weights::WeightSource;

/// The residual scale of every GLM block: `sqrt(2 · 28)`, from `GLMBlock`'s default
/// `num_layers = 28`, which `ChatGLMModel` never overrides.
pub const ALPHA: f32 = 7.483_315;

/// The config key under which prunec records a pruned head width (ChatGLM-6B's own code
/// derives it as `hidden_size / num_attention_heads`).
pub const HEAD_DIM_KEY: &str = "prunec_head_dim";

/// The shape of a ChatGLM-6B model.
#[derive(Debug, Clone, PartialEq)]
pub struct GlmConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP (`inner_hidden_size`).
    pub inner_hidden_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Width of one head (`hidden_size / num_attention_heads`, or prunec's recorded width).
    pub head_dim: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Whether positions are 2-D (position and block position, each on half of a head).
    pub position_encoding_2d: bool,
    /// `<sop>`: the answer starts here.
    pub bos_token_id: u32,
    /// `[gMASK]`.
    pub gmask_token_id: u32,
    /// `[MASK]`.
    pub mask_token_id: u32,
    /// Each layer's `[num_attention_heads, inner_hidden_size]` when they differ
    /// (`prunec_layer_widths`); the top-level widths are then the largest.
    pub layer_widths: Option<Vec<[usize; 2]>>,
}

/// The width keys of one GLM layer.
pub const WIDTH_KEYS: [&str; 2] = ["num_attention_heads", "inner_hidden_size"];

/// Whether a `chatglm` config is ChatGLM-6B v1 (the GLM block) rather than ChatGLM2/3.
pub fn is_v1(json: &serde_json::Value) -> bool {
    json.get("rmsnorm").and_then(serde_json::Value::as_bool) != Some(true)
}

impl GlmConfig {
    /// Reads a ChatGLM-6B `config.json` (`configuration_chatglm.py`'s keys).
    pub fn from_hf_json(path: &Path, json: &serde_json::Value) -> Result<GlmConfig> {
        let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
        let need = |key: &str| need_usize(path, json, key);
        let token = |key: &str, default: u32| -> Result<u32> {
            match json.get(key) {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(v) => v.as_u64().and_then(|t| u32::try_from(t).ok()).ok_or_else(|| bad(format!("`{key}` is not a token id"))),
            }
        };
        // every key the computation reads: its type (a wrong one is never silently a default)
        use crate::builder::{opt_bool, opt_f64, opt_usize};
        opt_bool(path, json, "position_encoding_2d")?;
        for key in ["quantization_bit", "inner_hidden_size", HEAD_DIM_KEY] {
            opt_usize(path, json, key)?;
        }
        opt_f64(path, json, "layernorm_epsilon")?;
        if json.get("pre_seq_len").is_some_and(|v| !v.is_null()) {
            return Err(bad("`pre_seq_len` (P-tuning prefix) is not supported yet".into()));
        }
        if get_usize(json, "quantization_bit").is_some_and(|b| b != 0) {
            return Err(bad("quantized checkpoints (`quantization_bit` ≠ 0) are not supported".into()));
        }
        let hidden_size = need("hidden_size")?;
        let num_heads = need("num_attention_heads")?;
        let head_dim = match get_usize(json, HEAD_DIM_KEY) {
            Some(d) => d,
            None if num_heads > 0 && hidden_size.is_multiple_of(num_heads) => hidden_size / num_heads,
            None => return Err(bad(format!("hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}"))),
        };
        let num_layers = need("num_layers")?;
        let cfg = GlmConfig {
            vocab_size: need("vocab_size")?,
            hidden_size,
            inner_hidden_size: get_usize(json, "inner_hidden_size").unwrap_or(4 * hidden_size),
            num_layers,
            num_heads,
            head_dim,
            eps: json.get("layernorm_epsilon").and_then(serde_json::Value::as_f64).unwrap_or(1e-5) as f32,
            position_encoding_2d: json.get("position_encoding_2d").and_then(serde_json::Value::as_bool).unwrap_or(true),
            // the defaults of configuration_chatglm.py
            bos_token_id: token("bos_token_id", 130_004)?,
            gmask_token_id: token("gmask_token_id", 130_001)?,
            mask_token_id: token("mask_token_id", 130_000)?,
            layer_widths: crate::builder::read_layer_widths(path, json, WIDTH_KEYS, num_layers)?,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks that the sizes are consistent.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(FrontendError::BadConfig { path: path.to_path_buf(), reason });
        crate::builder::check_sizes(
            path,
            &[
                ("vocab_size", self.vocab_size),
                ("hidden_size", self.hidden_size),
                ("inner_hidden_size", self.inner_hidden_size),
                ("num_layers", self.num_layers),
                ("num_attention_heads", self.num_heads),
                ("head width", self.head_dim),
            ],
        )?;
        crate::builder::check_positive(path, "layernorm_epsilon", f64::from(self.eps))?;
        let rotating = if self.position_encoding_2d { self.head_dim / 2 } else { self.head_dim };
        if !self.head_dim.is_multiple_of(2) || !rotating.is_multiple_of(2) {
            return bad(format!(
                "head width {} cannot be rotated: each rotary half must hold pairs of dimensions",
                self.head_dim
            ));
        }
        Ok(())
    }

    /// Layer `l`'s `[heads, MLP width]`.
    pub fn layer(&self, l: usize) -> [usize; 2] {
        match self.layer_widths.as_ref().and_then(|w| w.get(l)) {
            Some(w) => *w,
            None => [self.num_heads, self.inner_hidden_size],
        }
    }

    /// Parameter names and shapes, in the checkpoint's order (the `inv_freq` buffers are not
    /// parameters: the code recomputes them and ignores the stored ones).
    pub fn expected_params(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let mut out = vec![("transformer.word_embeddings.weight".to_string(), vec![self.vocab_size, h])];
        let norm = |out: &mut Vec<(String, Vec<usize>)>, module: String| {
            out.push((format!("{module}.weight"), vec![h]));
            out.push((format!("{module}.bias"), vec![h]));
        };
        let linear = |out: &mut Vec<(String, Vec<usize>)>, module: String, rows: usize, cols: usize| {
            out.push((format!("{module}.weight"), vec![rows, cols]));
            out.push((format!("{module}.bias"), vec![rows]));
        };
        for l in 0..self.num_layers {
            let [heads, f] = self.layer(l);
            let heads = heads * self.head_dim;
            let p = format!("transformer.layers.{l}");
            norm(&mut out, format!("{p}.input_layernorm"));
            linear(&mut out, format!("{p}.attention.query_key_value"), 3 * heads, h);
            linear(&mut out, format!("{p}.attention.dense"), h, heads);
            norm(&mut out, format!("{p}.post_attention_layernorm"));
            linear(&mut out, format!("{p}.mlp.dense_h_to_4h"), f, h);
            linear(&mut out, format!("{p}.mlp.dense_4h_to_h"), h, f);
        }
        norm(&mut out, "transformer.final_layernorm".to_string());
        out.push(("lm_head.weight".to_string(), vec![self.vocab_size, h]));
        out
    }
}

/// Lowers a ChatGLM-6B model to the IR, checking every tensor's shape against `config`.
pub fn build(config: &GlmConfig, weights: &dyn WeightSource, info: ModelInfo) -> Result<Model> {
    let params = crate::builder::read_params(config.expected_params(), weights)?;
    crate::builder::finish(params, info, |params| lower(config, params))
}

fn lower(c: &GlmConfig, params: &ParamStore) -> prunec_ir::Result<Graph> {
    let mut b = Builder::new(params);
    let ids = b.token_ids()?;
    let masks = vec![c.gmask_token_id, c.mask_token_id];
    let prefix_input = |b: &mut Builder, part: PrefixPart, name: &str| {
        b.op(Op::PrefixLm { bos: c.bos_token_id, masks: masks.clone(), part }, name, None, &[ids])
    };
    let positions = prefix_input(&mut b, PrefixPart::Positions, "position_ids")?;
    let block_positions =
        if c.position_encoding_2d { Some(prefix_input(&mut b, PrefixPart::BlockPositions, "block_position_ids")?) } else { None };
    let prefix = prefix_input(&mut b, PrefixPart::Length, "context_length")?;
    let embed = b.param("transformer.word_embeddings.weight", None)?;
    let mut x = b.op(Op::Embedding, "transformer.word_embeddings", None, &[embed, ids])?;
    let d = c.head_dim;
    let attention = Attention::causal(1.0 / (d as f32).sqrt());
    // the last axis of a [batch, seq, heads, head_dim] activation
    const HEAD_DIM: usize = 3;
    let slice = |start: usize, end: usize| Op::Slice { axis: HEAD_DIM, start, end };
    for l in 0..c.num_layers {
        let blk = Some(l as u32);
        let p = format!("transformer.layers.{l}");
        let sa = format!("{p}.attention");
        let a_in = layer_norm(&mut b, x, &format!("{p}.input_layernorm"), c.eps, blk)?;
        let qkv = b.linear(a_in, &format!("{sa}.query_key_value"), true, blk)?;
        let heads = b.op(Op::SplitHeads { heads: c.layer(l)[0] }, &format!("{sa}.heads"), blk, &[qkv])?;
        let q = b.op(slice(0, d), &format!("{sa}.query"), blk, &[heads])?;
        let k = b.op(slice(d, 2 * d), &format!("{sa}.key"), blk, &[heads])?;
        let v = b.op(slice(2 * d, 3 * d), &format!("{sa}.value"), blk, &[heads])?;
        let rotate = |b: &mut Builder, t: ValueId, what: &str| -> prunec_ir::Result<ValueId> {
            let rope = |dims| Rope { theta: 10000.0, rotary_dims: dims, layout: RopeLayout::HalfSplit, half_freqs: true, scaling: Default::default() };
            match block_positions {
                Some(block) => {
                    let half = d / 2;
                    let first = b.op(slice(0, half), &format!("{sa}.{what}_positional"), blk, &[t])?;
                    let second = b.op(slice(half, d), &format!("{sa}.{what}_block"), blk, &[t])?;
                    let first = b.op(Op::Rope(rope(half)), &format!("{sa}.{what}_rope"), blk, &[first, positions])?;
                    let second = b.op(Op::Rope(rope(half)), &format!("{sa}.{what}_block_rope"), blk, &[second, block])?;
                    b.op(Op::Concat { axis: HEAD_DIM }, &format!("{sa}.{what}_rotated"), blk, &[first, second])
                }
                None => b.op(Op::Rope(rope(d)), &format!("{sa}.{what}_rope"), blk, &[t, positions]),
            }
        };
        let q = rotate(&mut b, q, "q")?;
        let k = rotate(&mut b, k, "k")?;
        let a = b.op(Op::Attention(attention), &format!("{sa}.core_attention"), blk, &[q, k, v, prefix])?;
        let a = b.op(Op::MergeHeads, &format!("{sa}.merge_heads"), blk, &[a])?;
        let o = b.linear(a, &format!("{sa}.dense"), true, blk)?;
        x = alpha_residual(&mut b, a_in, o, &format!("{p}.attn_residual"), blk)?;

        let m_in = layer_norm(&mut b, x, &format!("{p}.post_attention_layernorm"), c.eps, blk)?;
        let u = b.linear(m_in, &format!("{p}.mlp.dense_h_to_4h"), true, blk)?;
        let act = b.op(Op::Unary(UnaryOp::GeluTanh), &format!("{p}.mlp.act"), blk, &[u])?;
        let dn = b.linear(act, &format!("{p}.mlp.dense_4h_to_h"), true, blk)?;
        x = alpha_residual(&mut b, m_in, dn, &format!("{p}.mlp_residual"), blk)?;
    }
    x = layer_norm(&mut b, x, "transformer.final_layernorm", c.eps, None)?;
    let head = b.param("lm_head.weight", None)?;
    let logits = b.op(Op::Linear, "lm_head", None, &[x, head])?;
    b.op(Op::Output { name: "logits".into() }, "logits", None, &[logits])?;
    Ok(b.g)
}

fn layer_norm(b: &mut Builder, x: ValueId, module: &str, eps: f32, blk: Option<u32>) -> prunec_ir::Result<ValueId> {
    let w = b.param(&format!("{module}.weight"), blk)?;
    let bias = b.param(&format!("{module}.bias"), blk)?;
    b.op(Op::LayerNorm { eps }, module, blk, &[x, w, bias])
}

/// `normed · alpha + out`: the GLM residual, from the LayerNorm's output.
fn alpha_residual(b: &mut Builder, normed: ValueId, out: ValueId, name: &str, blk: Option<u32>) -> prunec_ir::Result<ValueId> {
    let scaled = b.op(Op::Unary(UnaryOp::Scale(ALPHA)), &format!("{name}_alpha"), blk, &[normed])?;
    b.op(Op::Binary(BinaryOp::Add), name, blk, &[scaled, out])
}

/// The `config.json` of a ChatGLM-6B model as it is now: `hidden_size` and `vocab_size` from
/// the embedding, `num_attention_heads` and `inner_hidden_size` from the fused projections;
/// every other key as the model's own config has it. Layers that differ are listed under
/// `prunec_layer_widths` (read by prunec, not by the model's own code). When heads were pruned, the head width is recorded under [`HEAD_DIM_KEY`], since
/// ChatGLM-6B's own code takes it to be `hidden_size / num_attention_heads` (such a result is
/// read by prunec; the model's own code loads results whose heads are whole).
pub fn hf_config(model: &Model) -> Result<serde_json::Value> {
    let path = model.info.source.join("config.json");
    let bad = |reason: String| FrontendError::BadConfig { path: path.clone(), reason };
    let carried = Config::<GlmConfig>::of(model, &path)?;
    let (original, mut json) = (&carried.typed, carried.json.clone());
    let shape = |name: &str| model.params.get(name).map(|p| p.shape.clone());
    let mut layers = Vec::with_capacity(original.num_layers);
    for l in 0..original.num_layers {
        let p = format!("transformer.layers.{l}");
        match (shape(&format!("{p}.attention.query_key_value.weight")), shape(&format!("{p}.mlp.dense_h_to_4h.weight"))) {
            (Some(qkv), Some(mlp)) => layers.push([qkv[0] / (3 * original.head_dim), mlp[0]]),
            _ => return Err(bad(format!("layer {l} lost its attention or MLP: ChatGLM's config cannot say so"))),
        }
    }
    let embed = "transformer.word_embeddings.weight";
    let (vocab, hidden) = match shape(embed).as_deref() {
        Some(&[v, h]) => (v, h),
        _ => return Err(FrontendError::MissingTensor { path: model.info.source.clone(), tensor: embed.into() }),
    };
    let obj = json.as_object_mut().ok_or_else(|| bad("not a JSON object".into()))?;
    obj.insert("hidden_size".into(), hidden.into());
    obj.insert("vocab_size".into(), vocab.into());
    crate::builder::write_layer_widths(obj, WIDTH_KEYS, &layers);
    if layers.iter().any(|&[heads, _]| heads * original.head_dim != hidden) {
        obj.insert(HEAD_DIM_KEY.into(), original.head_dim.into());
    } else {
        obj.remove(HEAD_DIM_KEY);
    }
    let config = GlmConfig::from_hf_json(&path, &json)?;
    crate::builder::check_params(config.expected_params(), &model.params, &model.info.source)?;
    Ok(json)
}

/// ChatGLM-6B (v1) in the architecture registry.
pub struct ChatGlm6b;

impl super::Architecture for ChatGlm6b {
    fn name(&self) -> &'static str {
        "chatglm"
    }

    fn reads(&self, json: &serde_json::Value) -> bool {
        is_v1(json)
    }

    fn lower(
        &self,
        config_path: &Path,
        json: &serde_json::Value,
        mut info: ModelInfo,
        weights: &dyn WeightSource,
        names: &[&String],
    ) -> Result<Model> {
        let config = GlmConfig::from_hf_json(config_path, json)?;
        let layers = LayerNames { prefix: "transformer.layers.", key: "num_layers", count: config.num_layers };
        info.warnings = check_weights(config_path, names, layers, || config.expected_params(), None)?;
        info.config = Some(Config::shared(config.clone(), json.clone()));
        build(&config, weights, info)
    }

    fn chat_template(&self) -> Option<&'static str> {
        Some(crate::chat::CHATGLM6B)
    }

    fn hf_config(&self, model: &Model) -> Result<serde_json::Value> {
        hf_config(model)
    }

    fn lora_targets(&self) -> &'static [&'static str] {
        crate::arch::chatglm2::LORA_TARGETS
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::safetensors::HfWeights;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/chatglm-6b")
    }

    fn fixture_json() -> serde_json::Value {
        crate::hf::read_config(&fixture()).unwrap()
    }

    #[test]
    fn alpha_is_sqrt_56() {
        assert!((f64::from(ALPHA) - 56f64.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn fixture_config_is_read() {
        let json = fixture_json();
        assert!(is_v1(&json));
        let c = GlmConfig::from_hf_json(Path::new("config.json"), &json).unwrap();
        assert_eq!(
            c,
            GlmConfig {
                vocab_size: 256,
                hidden_size: 64,
                inner_hidden_size: 128,
                num_layers: 4,
                num_heads: 4,
                head_dim: 16,
                eps: 1e-5,
                position_encoding_2d: true,
                bos_token_id: 252,
                gmask_token_id: 251,
                mask_token_id: 250,
                layer_widths: None,
            }
        );
        assert_eq!(c.expected_params().len(), 52);
    }

    #[test]
    fn unsupported_configs_are_refused() {
        let path = Path::new("some/config.json");
        for (key, value, needle) in [
            ("pre_seq_len", serde_json::json!(8), "pre_seq_len"),
            ("quantization_bit", serde_json::json!(4), "quantized"),
            ("num_attention_heads", serde_json::json!(5), "not a multiple of num_attention_heads 5"),
            ("bos_token_id", serde_json::json!("x"), "`bos_token_id` is not a token id"),
        ] {
            let mut json = fixture_json();
            json[key] = value;
            let msg = GlmConfig::from_hf_json(path, &json).unwrap_err().to_string();
            assert!(msg.contains("some/config.json") && msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn builds_the_fixture_with_heads_split_before_q_k_v() {
        let json = fixture_json();
        let config = GlmConfig::from_hf_json(&fixture().join("config.json"), &json).unwrap();
        let weights = HfWeights::open(&fixture()).unwrap();
        let info = ModelInfo { source: fixture(), format: prunec_ir::SourceFormat::Hf, config: Some(Config::shared(config.clone(), json.clone())), ..Default::default() };
        let model = build(&config, &weights, info).unwrap();
        let g = &model.graph;
        let ops = |block: u32, mnemonic: &str| {
            g.node_ids().into_iter().filter_map(|id| g.node(id).ok()).filter(|n| n.block == Some(block) && n.op.mnemonic() == mnemonic).count()
        };
        assert_eq!((ops(0, "split_heads"), ops(0, "slice"), ops(0, "rope"), ops(0, "layer_norm")), (1, 7, 4, 2));
        assert!(model.params.get("transformer.layers.0.attention.rotary_emb.inv_freq").is_none());
    }
}
