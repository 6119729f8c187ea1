//! ChatGLM2-6B (and ChatGLM3-6B, which has the same modules): configuration and lowering to
//! the IR. The HF frontend comes here for `model_type` `chatglm` with `rmsnorm: true`; the v1
//! GLM block of ChatGLM-6B (`rmsnorm` absent or false) is [`crate::arch::chatglm6b`]'s.
//!
//! The fused projections stay fused, as the checkpoint has them: one `query_key_value` Linear
//! whose output is sliced into q, k and v, and one `dense_h_to_4h` Linear sliced into the gate
//! and up halves. Rotary embeddings rotate the first half of each head in interleaved pairs.

pub mod gguf;

use std::path::Path;

use prunec_ir::{Attention, BinaryOp, Graph, Model, ModelInfo, Op, ParamStore, Rope, RopeLayout, UnaryOp};

use super::Config;
use crate::builder::{check_weights, get_usize, need_usize, Builder, LayerNames};
use crate::error::{FrontendError, Result};
use crate::weights::WeightSource;

/// The shape of a ChatGLM2 model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatGlmConfig {
    /// Vocabulary size (`padded_vocab_size`: the rows of the embedding and output layer).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP (each of the gate and up halves of `dense_h_to_4h`).
    pub ffn_hidden_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (`multi_query_group_num` with multi-query attention, else `num_heads`).
    pub num_groups: usize,
    /// Width of one head (`kv_channels`).
    pub kv_channels: usize,
    /// RMSNorm epsilon (`layernorm_epsilon`).
    pub eps: f32,
    /// Rotary base (10000 · `rope_ratio`, ChatGLM3; 10000 for ChatGLM2).
    pub rope_theta: f32,
    /// Whether `query_key_value` has a bias.
    pub qkv_bias: bool,
    /// Whether `dense`, `dense_h_to_4h` and `dense_4h_to_h` have biases.
    pub linear_bias: bool,
    /// Whether there is a final RMSNorm (`post_layer_norm`).
    pub post_layer_norm: bool,
    /// Each layer's `[num_attention_heads, multi_query_group_num, ffn_hidden_size]` when they
    /// differ (`prunec_layer_widths`); the top-level widths are then the largest.
    pub layer_widths: Option<Vec<[usize; 3]>>,
}

/// The width keys of one ChatGLM2 layer.
pub const WIDTH_KEYS: [&str; 3] = ["num_attention_heads", "multi_query_group_num", "ffn_hidden_size"];

fn get_bool(json: &serde_json::Value, key: &str) -> Option<bool> {
    json.get(key).and_then(serde_json::Value::as_bool)
}

impl ChatGlmConfig {
    /// Reads a ChatGLM `config.json` (`configuration_chatglm.py`'s keys).
    pub fn from_hf_json(path: &Path, json: &serde_json::Value) -> Result<ChatGlmConfig> {
        let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
        let need = |key: &str| need_usize(path, json, key);
        if crate::arch::chatglm6b::is_v1(json) {
            return Err(bad(
                "this is ChatGLM-6B v1 (the GLM block: LayerNorm, 2-D rotary positions; `rmsnorm` absent or false), which `glm::GlmConfig` reads; ChatGLM2/3 have `rmsnorm: true`"
                    .into(),
            ));
        }
        // every key the computation reads: its type (a wrong one is never silently a default)
        use crate::builder::{opt_bool, opt_f64, opt_usize};
        for key in ["apply_residual_connection_post_layernorm", "original_rope", "multi_query_attention", "add_qkv_bias", "add_bias_linear", "post_layer_norm", "rmsnorm"] {
            opt_bool(path, json, key)?;
        }
        for key in ["quantization_bit", "kv_channels", "padded_vocab_size", "multi_query_group_num"] {
            opt_usize(path, json, key)?;
        }
        for key in ["layernorm_epsilon", "rope_ratio"] {
            opt_f64(path, json, key)?;
        }
        if get_bool(json, "apply_residual_connection_post_layernorm") == Some(true) {
            return Err(bad("`apply_residual_connection_post_layernorm: true` is not supported yet".into()));
        }
        if get_bool(json, "original_rope") == Some(false) {
            return Err(bad("`original_rope: false` is not supported yet".into()));
        }
        if json.get("pre_seq_len").is_some_and(|v| !v.is_null()) {
            return Err(bad("`pre_seq_len` (P-tuning prefix) is not supported yet".into()));
        }
        if get_usize(json, "quantization_bit").is_some_and(|b| b != 0) {
            return Err(bad("quantized checkpoints (`quantization_bit` ≠ 0) are not supported".into()));
        }
        let num_heads = need("num_attention_heads")?;
        let num_groups =
            if get_bool(json, "multi_query_attention").unwrap_or(false) { need("multi_query_group_num")? } else { num_heads };
        let vocab_size = match get_usize(json, "padded_vocab_size") {
            Some(v) => v,
            None => need("vocab_size")?,
        };
        let rope_ratio = json.get("rope_ratio").and_then(serde_json::Value::as_f64).unwrap_or(1.0);
        let hidden_size = need("hidden_size")?;
        let num_layers = need("num_layers")?;
        let cfg = ChatGlmConfig {
            vocab_size,
            hidden_size,
            ffn_hidden_size: need("ffn_hidden_size")?,
            num_layers,
            num_heads,
            num_groups,
            kv_channels: get_usize(json, "kv_channels").unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0)),
            eps: json.get("layernorm_epsilon").and_then(serde_json::Value::as_f64).unwrap_or(1e-5) as f32,
            rope_theta: (10000.0 * rope_ratio) as f32,
            qkv_bias: get_bool(json, "add_qkv_bias").unwrap_or(false),
            linear_bias: get_bool(json, "add_bias_linear").unwrap_or(false),
            post_layer_norm: get_bool(json, "post_layer_norm").unwrap_or(true),
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
                ("padded_vocab_size", self.vocab_size),
                ("hidden_size", self.hidden_size),
                ("ffn_hidden_size", self.ffn_hidden_size),
                ("num_layers", self.num_layers),
                ("num_attention_heads", self.num_heads),
                ("multi_query_group_num", self.num_groups),
                ("kv_channels", self.kv_channels),
            ],
        )?;
        if !self.kv_channels.is_multiple_of(4) {
            return bad(format!(
                "kv_channels {} must be a multiple of 4 (rotary embeddings rotate pairs in the first half of each head)",
                self.kv_channels
            ));
        }
        for l in 0..self.num_layers {
            let [heads, groups, _] = self.layer(l);
            if !heads.is_multiple_of(groups) {
                let at = if self.layer_widths.is_some() { format!(" in layer {l}") } else { String::new() };
                return bad(format!("num_attention_heads {heads} is not a multiple of multi_query_group_num {groups}{at}"));
            }
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("rotary base {} (10000 · rope_ratio) must be positive", self.rope_theta));
        }
        crate::builder::check_positive(path, "layernorm_epsilon", f64::from(self.eps))?;
        Ok(())
    }

    /// The configuration as ChatGLM's own `config.json` (`configuration_chatglm.py`'s keys,
    /// `auto_map` naming THUDM's modeling code, which a folder must ship to load in
    /// transformers): what a GGUF model carries, as llama.cpp's converter reads it back.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "add_bias_linear": self.linear_bias,
            "add_qkv_bias": self.qkv_bias,
            "apply_residual_connection_post_layernorm": false,
            "architectures": ["ChatGLMModel"],
            "auto_map": {
                "AutoConfig": "configuration_chatglm.ChatGLMConfig",
                "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
                "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
            },
            "ffn_hidden_size": self.ffn_hidden_size,
            "hidden_size": self.hidden_size,
            "kv_channels": self.kv_channels,
            "layernorm_epsilon": crate::builder::shortest_f64(self.eps),
            "model_type": "chatglm",
            "multi_query_attention": self.num_groups != self.num_heads,
            "multi_query_group_num": self.num_groups,
            "num_attention_heads": self.num_heads,
            "num_layers": self.num_layers,
            "original_rope": true,
            "padded_vocab_size": self.vocab_size,
            "post_layer_norm": self.post_layer_norm,
            "rmsnorm": true,
            "rope_ratio": crate::builder::shortest_f64(self.rope_theta / 10000.0),
            "vocab_size": self.vocab_size,
        });
        if let (Some(layers), Some(obj)) = (&self.layer_widths, json.as_object_mut()) {
            crate::builder::write_layer_widths(obj, WIDTH_KEYS, layers);
        }
        json
    }

    /// Layer `l`'s `[heads, key/value groups, MLP width]`.
    pub fn layer(&self, l: usize) -> [usize; 3] {
        match self.layer_widths.as_ref().and_then(|w| w.get(l)) {
            Some(w) => *w,
            None => [self.num_heads, self.num_groups, self.ffn_hidden_size],
        }
    }

    /// Rows of layer `l`'s `query_key_value`: q, then k, then v.
    pub fn qkv_rows(&self, l: usize) -> (usize, usize) {
        let [heads, groups, _] = self.layer(l);
        (heads * self.kv_channels, groups * self.kv_channels)
    }

    /// Parameter names and shapes, in the order the checkpoint lists them (the unused
    /// `transformer.rotary_pos_emb.inv_freq` buffer is not a parameter).
    pub fn expected_params(&self) -> Vec<(String, Vec<usize>)> {
        let (h, v) = (self.hidden_size, self.vocab_size);
        let mut out = vec![("transformer.embedding.word_embeddings.weight".to_string(), vec![v, h])];
        let linear = |out: &mut Vec<(String, Vec<usize>)>, module: String, rows: usize, cols: usize, bias: bool| {
            out.push((format!("{module}.weight"), vec![rows, cols]));
            if bias {
                out.push((format!("{module}.bias"), vec![rows]));
            }
        };
        for l in 0..self.num_layers {
            let (q, kv) = self.qkv_rows(l);
            let f = self.layer(l)[2];
            let p = format!("transformer.encoder.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            linear(&mut out, format!("{p}.self_attention.query_key_value"), q + 2 * kv, h, self.qkv_bias);
            linear(&mut out, format!("{p}.self_attention.dense"), h, q, self.linear_bias);
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            linear(&mut out, format!("{p}.mlp.dense_h_to_4h"), 2 * f, h, self.linear_bias);
            linear(&mut out, format!("{p}.mlp.dense_4h_to_h"), h, f, self.linear_bias);
        }
        if self.post_layer_norm {
            out.push(("transformer.encoder.final_layernorm.weight".to_string(), vec![h]));
        }
        out.push(("transformer.output_layer.weight".to_string(), vec![v, h]));
        out
    }
}

/// Lowers a ChatGLM2 model to the IR, checking every tensor's shape against `config`.
pub fn build(config: &ChatGlmConfig, weights: &dyn WeightSource, info: ModelInfo) -> Result<Model> {
    let params = crate::builder::read_params(config.expected_params(), weights)?;
    crate::builder::finish(params, info, |params| lower(config, params))
}

fn lower(c: &ChatGlmConfig, params: &ParamStore) -> prunec_ir::Result<Graph> {
    let mut b = Builder::new(params);
    let ids = b.token_ids()?;
    let embed = b.param("transformer.embedding.word_embeddings.weight", None)?;
    let mut x = b.op(Op::Embedding, "transformer.embedding.word_embeddings", None, &[embed, ids])?;
    let rope = Rope { theta: c.rope_theta, rotary_dims: c.kv_channels / 2, layout: RopeLayout::Interleaved, half_freqs: false, scaling: Default::default() };
    let attention = Attention::causal(1.0 / (c.kv_channels as f32).sqrt());
    // the last axis of a [batch, seq, features] activation
    const FEATURES: usize = 2;
    let slice = |start: usize, end: usize| Op::Slice { axis: FEATURES, start, end };
    for l in 0..c.num_layers {
        let blk = Some(l as u32);
        let (q_rows, kv_rows) = c.qkv_rows(l);
        let [num_heads, num_groups, f] = c.layer(l);
        let p = format!("transformer.encoder.layers.{l}");
        let sa = format!("{p}.self_attention");
        let w = b.param(&format!("{p}.input_layernorm.weight"), blk)?;
        let h = b.op(Op::RmsNorm { eps: c.eps, offset: 0.0 }, &format!("{p}.input_layernorm"), blk, &[x, w])?;
        let qkv = b.linear(h, &format!("{sa}.query_key_value"), c.qkv_bias, blk)?;
        let q = b.op(slice(0, q_rows), &format!("{sa}.query"), blk, &[qkv])?;
        let k = b.op(slice(q_rows, q_rows + kv_rows), &format!("{sa}.key"), blk, &[qkv])?;
        let v = b.op(slice(q_rows + kv_rows, q_rows + 2 * kv_rows), &format!("{sa}.value"), blk, &[qkv])?;
        let q = b.op(Op::SplitHeads { heads: num_heads }, &format!("{sa}.q_heads"), blk, &[q])?;
        let k = b.op(Op::SplitHeads { heads: num_groups }, &format!("{sa}.k_heads"), blk, &[k])?;
        let mut v = b.op(Op::SplitHeads { heads: num_groups }, &format!("{sa}.v_heads"), blk, &[v])?;
        let q = b.op(Op::Rope(rope), &format!("{sa}.q_rope"), blk, &[q])?;
        let mut k = b.op(Op::Rope(rope), &format!("{sa}.k_rope"), blk, &[k])?;
        let times = num_heads / num_groups;
        if times != 1 {
            k = b.op(Op::repeat_heads(num_groups, times), &format!("{sa}.k_repeat"), blk, &[k])?;
            v = b.op(Op::repeat_heads(num_groups, times), &format!("{sa}.v_repeat"), blk, &[v])?;
        }
        let a = b.op(Op::Attention(attention), &format!("{sa}.core_attention"), blk, &[q, k, v])?;
        let a = b.op(Op::MergeHeads, &format!("{sa}.merge_heads"), blk, &[a])?;
        let o = b.linear(a, &format!("{sa}.dense"), c.linear_bias, blk)?;
        x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.attn_residual"), blk, &[x, o])?;

        let w = b.param(&format!("{p}.post_attention_layernorm.weight"), blk)?;
        let h = b.op(Op::RmsNorm { eps: c.eps, offset: 0.0 }, &format!("{p}.post_attention_layernorm"), blk, &[x, w])?;
        let u = b.linear(h, &format!("{p}.mlp.dense_h_to_4h"), c.linear_bias, blk)?;
        let gate = b.op(slice(0, f), &format!("{p}.mlp.gate"), blk, &[u])?;
        let up = b.op(slice(f, 2 * f), &format!("{p}.mlp.up"), blk, &[u])?;
        let act = b.op(Op::Unary(UnaryOp::Silu), &format!("{p}.mlp.act"), blk, &[gate])?;
        let m = b.op(Op::Binary(BinaryOp::Mul), &format!("{p}.mlp.gated"), blk, &[act, up])?;
        let d = b.linear(m, &format!("{p}.mlp.dense_4h_to_h"), c.linear_bias, blk)?;
        x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.mlp_residual"), blk, &[x, d])?;
    }
    if c.post_layer_norm {
        let w = b.param("transformer.encoder.final_layernorm.weight", None)?;
        x = b.op(Op::RmsNorm { eps: c.eps, offset: 0.0 }, "transformer.encoder.final_layernorm", None, &[x, w])?;
    }
    let head = b.param("transformer.output_layer.weight", None)?;
    let logits = b.op(Op::Linear, "transformer.output_layer", None, &[x, head])?;
    b.op(Op::Output { name: "logits".into() }, "logits", None, &[logits])?;
    Ok(b.g)
}

/// The `config.json` of a ChatGLM2 model as it is now: `hidden_size` and `padded_vocab_size` from the embedding, `num_attention_heads`,
/// `multi_query_group_num` and `ffn_hidden_size` from the slices of the fused projections,
/// `layernorm_epsilon` from the norms (pruning hidden channels rescales it); every other key as
/// the model's own config has it, so the model's own code loads a result whose layers are alike
/// (`--uniform`). Layers that differ are listed under `prunec_layer_widths` (the top-level
/// widths are then the largest), which prunec reads and the model's own code does not. The
/// result is checked against the parameters.
pub fn hf_config(model: &Model) -> Result<serde_json::Value> {
    let path = model.info.source.join("config.json");
    let bad = |reason: String| FrontendError::BadConfig { path: path.clone(), reason };
    let carried = Config::<ChatGlmConfig>::of(model, &path)?;
    let (original, mut json) = (&carried.typed, carried.json.clone());
    let g = &model.graph;
    let width = |name: &str| -> Option<usize> {
        g.node_ids().into_iter().find_map(|id| match g.node(id).ok() {
            Some(n) if n.name == name => match n.op {
                Op::Slice { start, end, .. } => Some(end - start),
                _ => None,
            },
            _ => None,
        })
    };
    let kv = original.kv_channels.max(1);
    let mut layers = Vec::with_capacity(original.num_layers);
    for l in 0..original.num_layers {
        let (sa, mlp) = (format!("transformer.encoder.layers.{l}.self_attention"), format!("transformer.encoder.layers.{l}.mlp"));
        match (width(&format!("{sa}.query")), width(&format!("{sa}.key")), width(&format!("{mlp}.gate"))) {
            (Some(q), Some(k), Some(f)) => layers.push([q / kv, k / kv, f]),
            _ => return Err(bad(format!("layer {l} lost its attention or MLP: ChatGLM's config cannot say so"))),
        }
    }
    let embed = "transformer.embedding.word_embeddings.weight";
    let (vocab, hidden) = match model.params.get(embed).map(|p| p.shape.as_slice()) {
        Some(&[v, h]) => (v, h),
        _ => return Err(FrontendError::MissingTensor { path: model.info.source.clone(), tensor: embed.into() }),
    };
    let eps = crate::builder::norm_eps(model).map_err(bad)?;
    let obj = json.as_object_mut().ok_or_else(|| bad("not a JSON object".into()))?;
    obj.insert("hidden_size".into(), hidden.into());
    obj.insert("padded_vocab_size".into(), vocab.into());
    crate::builder::write_layer_widths(obj, WIDTH_KEYS, &layers);
    if let Some(eps) = eps {
        obj.insert("layernorm_epsilon".into(), crate::builder::shortest_f64(eps).into());
    }
    let config = ChatGlmConfig::from_hf_json(&path, &json)?;
    crate::builder::check_params(config.expected_params(), &model.params, &model.info.source)?;
    Ok(json)
}

/// The projections LoRA adapts in the GLM family (ChatGLM-6B and ChatGLM2/3 name them alike).
pub const LORA_TARGETS: &[&str] = &["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"];

/// ChatGLM2/3 in the architecture registry.
pub struct ChatGlm2;

impl super::Architecture for ChatGlm2 {
    fn name(&self) -> &'static str {
        "chatglm"
    }

    fn reads(&self, json: &serde_json::Value) -> bool {
        !crate::arch::chatglm6b::is_v1(json)
    }

    fn lower(
        &self,
        config_path: &Path,
        json: &serde_json::Value,
        mut info: ModelInfo,
        weights: &dyn WeightSource,
        names: &[&String],
    ) -> Result<Model> {
        let config = ChatGlmConfig::from_hf_json(config_path, json)?;
        let layers = LayerNames { prefix: "transformer.encoder.layers.", key: "num_layers", count: config.num_layers };
        info.warnings = check_weights(config_path, names, layers, || config.expected_params(), None)?;
        info.config = Some(Config::shared(config.clone(), json.clone()));
        build(&config, weights, info)
    }

    fn chat_template(&self) -> Option<&'static str> {
        Some(crate::chat::CHATGLM2)
    }

    fn hf_config(&self, model: &Model) -> Result<serde_json::Value> {
        hf_config(model)
    }

    fn lora_targets(&self) -> &'static [&'static str] {
        LORA_TARGETS
    }

    fn gguf_name(&self) -> Option<&'static str> {
        Some("chatglm")
    }

    fn load_gguf(&self, path: &Path, file: crate::gguf::GgufFile) -> Result<Model> {
        gguf::load(path, file)
    }

    fn gguf_plan(&self, model: &Model, block: usize) -> Result<super::gguf_out::GgufPlan> {
        gguf::plan(model, block)
    }

    fn writes_gguf(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::safetensors::HfWeights;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/chatglm2-6b")
    }

    fn fixture_json() -> serde_json::Value {
        crate::hf::read_config(&fixture()).unwrap()
    }

    fn bad_config(json: &serde_json::Value, needle: &str) {
        let path = Path::new("some/config.json");
        match ChatGlmConfig::from_hf_json(path, json) {
            Err(e @ FrontendError::BadConfig { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("some/config.json") && msg.contains(needle), "{msg}");
            }
            other => panic!("expected BadConfig naming `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn fixture_config_is_read() {
        let c = ChatGlmConfig::from_hf_json(Path::new("config.json"), &fixture_json()).unwrap();
        assert_eq!(
            c,
            ChatGlmConfig {
                vocab_size: 256,
                hidden_size: 64,
                ffn_hidden_size: 128,
                num_layers: 4,
                num_heads: 4,
                num_groups: 2,
                kv_channels: 16,
                eps: 1e-5,
                rope_theta: 10000.0,
                qkv_bias: true,
                linear_bias: false,
                post_layer_norm: true,
                layer_widths: None,
            }
        );
        let shapes: std::collections::BTreeMap<String, Vec<usize>> = c.expected_params().into_iter().collect();
        assert_eq!(shapes.len(), 31);
        assert_eq!(shapes["transformer.encoder.layers.0.self_attention.query_key_value.weight"], [128, 64]);
        assert_eq!(shapes["transformer.encoder.layers.0.self_attention.query_key_value.bias"], [128]);
        assert_eq!(shapes["transformer.encoder.layers.3.mlp.dense_h_to_4h.weight"], [256, 64]);
        assert_eq!(shapes["transformer.encoder.layers.3.mlp.dense_4h_to_h.weight"], [64, 128]);
    }

    #[test]
    fn unsupported_configs_are_refused() {
        let mut v1 = fixture_json();
        v1.as_object_mut().unwrap().remove("rmsnorm");
        bad_config(&v1, "glm::GlmConfig");
        let mut v1 = fixture_json();
        v1["rmsnorm"] = false.into();
        bad_config(&v1, "ChatGLM-6B v1");
        let mut post = fixture_json();
        post["apply_residual_connection_post_layernorm"] = true.into();
        bad_config(&post, "apply_residual_connection_post_layernorm");
        let mut groups = fixture_json();
        groups["multi_query_group_num"] = 3.into();
        bad_config(&groups, "not a multiple of multi_query_group_num 3");
        let mut missing = fixture_json();
        missing.as_object_mut().unwrap().remove("ffn_hidden_size");
        bad_config(&missing, "`ffn_hidden_size` is missing");
        let layer = |h: u64, g: u64, f: u64| serde_json::json!({"num_attention_heads": h, "multi_query_group_num": g, "ffn_hidden_size": f});
        let mut short = fixture_json();
        short["prunec_layer_widths"] = serde_json::json!([layer(4, 2, 128)]);
        bad_config(&short, "`prunec_layer_widths` has 1 entries for 4 layers");
        let mut uneven = fixture_json();
        uneven["prunec_layer_widths"] = serde_json::json!([layer(4, 2, 128), layer(3, 2, 64), layer(4, 2, 128), layer(4, 2, 128)]);
        bad_config(&uneven, "num_attention_heads 3 is not a multiple of multi_query_group_num 2 in layer 1");
        let mut zero = fixture_json();
        zero["prunec_layer_widths"] = serde_json::json!([layer(4, 2, 128), layer(4, 2, 0), layer(4, 2, 128), layer(4, 2, 128)]);
        bad_config(&zero, "`prunec_layer_widths[1]`: `ffn_hidden_size` is missing or not a positive integer");
    }

    #[test]
    fn builds_the_fixture_with_fused_projections() {
        let json = fixture_json();
        let config = ChatGlmConfig::from_hf_json(&fixture().join("config.json"), &json).unwrap();
        let weights = HfWeights::open(&fixture()).unwrap();
        let info = ModelInfo { source: fixture(), format: prunec_ir::SourceFormat::Hf, config: Some(Config::shared(config.clone(), json.clone())), ..Default::default() };
        let model = build(&config, &weights, info).unwrap();
        let g = &model.graph;
        let slices: Vec<(String, Op)> = g
            .node_ids()
            .into_iter()
            .filter_map(|id| g.node(id).ok())
            .filter(|n| n.block == Some(0) && matches!(n.op, Op::Slice { .. }))
            .map(|n| (n.name.clone(), n.op.clone()))
            .collect();
        let p = "transformer.encoder.layers.0";
        assert_eq!(
            slices,
            vec![
                (format!("{p}.self_attention.query"), Op::Slice { axis: 2, start: 0, end: 64 }),
                (format!("{p}.self_attention.key"), Op::Slice { axis: 2, start: 64, end: 96 }),
                (format!("{p}.self_attention.value"), Op::Slice { axis: 2, start: 96, end: 128 }),
                (format!("{p}.mlp.gate"), Op::Slice { axis: 2, start: 0, end: 128 }),
                (format!("{p}.mlp.up"), Op::Slice { axis: 2, start: 128, end: 256 }),
            ]
        );
        assert!(model.params.get("transformer.rotary_pos_emb.inv_freq").is_none());
    }

    #[test]
    fn wrong_shapes_name_the_tensor() {
        let mut json = fixture_json();
        json["ffn_hidden_size"] = 96.into();
        let config = ChatGlmConfig::from_hf_json(&fixture().join("config.json"), &json).unwrap();
        let weights = HfWeights::open(&fixture()).unwrap();
        let info = ModelInfo { source: fixture(), format: prunec_ir::SourceFormat::Hf, ..Default::default() };
        let err = build(&config, &weights, info).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("model.safetensors") && msg.contains("dense_h_to_4h.weight"), "{msg}");
    }
}
