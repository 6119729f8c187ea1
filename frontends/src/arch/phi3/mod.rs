//! Phi-3 (`model_type` `phi3`, `Phi3ForCausalLM`): a LLaMA-like decoder whose projections are
//! fused, as its checkpoints store them — `qkv_proj` (q rows, then k, then v) and
//! `gate_up_proj` (the gate half, then the up half) — with grouped-query attention, a rotary
//! embedding on the first `int(head_dim · partial_rotary_factor)` dimensions of each head
//! (rotate-half pairs among those; the rest pass through), an optional sliding window
//! (`sliding_window`: a query sees the keys less than that many positions behind it), no
//! biases, and tied or untied embeddings.
//!
//! The fused projections stay fused, as ChatGLM2's do: one Linear each, whose output is cut
//! by `Slice` ops; the `group` pass finds heads, key/value heads and MLP channels inside them
//! through the slices' axis mappings, and the HF writer writes the tensors back under their
//! own names. The keys a Phi-3 config shares with LLaMA's (widths, norms, rotary base,
//! per-layer widths) are read by LLaMA's reader into a [`LlamaConfig`]; the lowering, the
//! parameters and the HF config writer are this module's. Layers that pruning emptied are
//! left out when writing, as LLaMA's are.
//!
//! `rope_scaling` of type `longrope` (the 128k-context Phi-3 and Phi-3.5 models) is refused:
//! its per-frequency short and long factors, chosen by the sequence length, are not a scaling
//! the IR's rotary op has.

pub mod gguf;

use std::path::Path;

use prunec_ir::{Attention, BinaryOp, Graph, Model, ModelInfo, Op, ParamStore, Rope, RopeLayout, RopeScaling, UnaryOp};

use super::llama::{self, Family, LayerWidths, LlamaConfig, Variant, LAYER_WIDTHS_KEY};
use super::Config;
use crate::builder::{check_weights, opt_f64, opt_str, opt_usize, shortest_f64, Builder, LayerNames};
use crate::error::{FrontendError, Result};
use crate::gguf::GgufFile;
use crate::weights::WeightSource;

/// The shape of a Phi-3 model.
#[derive(Debug, Clone, PartialEq)]
pub struct Phi3Config {
    /// Widths, norms, rotary base, sliding window (`variant.sliding_window`) and per-layer
    /// widths, as LLaMA's description holds them (`head_dim`: the width of one head).
    pub decoder: LlamaConfig,
    /// The fraction of each head that rotates (`partial_rotary_factor`).
    pub partial_rotary_factor: f64,
    /// The leading dimensions of each head that rotate: `int(head_dim · partial_rotary_factor)`,
    /// as transformers computes them.
    pub rotary_dims: usize,
    /// The context of pretraining (`original_max_position_embeddings`; only written back).
    pub original_max_position_embeddings: usize,
}

/// How LLaMA's reader reads the keys a Phi-3 config shares with LLaMA's: its `model_type` for
/// messages, no `attention_bias` or `mlp_bias` keys. Not a registry entry: Phi-3's lowering,
/// parameters and HF writer are this module's ([`Phi3`]).
const KEYS: Family = Family {
    model_type: "phi3",
    hf_classes: &["Phi3ForCausalLM"],
    gguf: None,
    read: read_decoder,
    // not used: Phi-3's GGUF reader and HF writer are this module's
    write: LlamaConfig::to_hf_json,
    attention_bias_key: false,
    mlp_bias_key: false,
};

fn read_decoder(path: &Path, json: &serde_json::Value) -> Result<LlamaConfig> {
    Phi3Config::from_hf_json(path, json).map(|c| c.decoder)
}

/// Refuses a rotary scaling: transformers' Phi-3 knows only `longrope` (which it also calls
/// `su` and `yarn`), which prunec does not compute.
fn refuse_rope_scaling(path: &Path, json: &serde_json::Value) -> Result<()> {
    let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
    for key in ["rope_scaling", "rope_parameters"] {
        let Some(scaling) = json.get(key).filter(|s| !s.is_null()) else { continue };
        if !scaling.is_object() {
            return Err(bad(format!("`{key}` must be an object")));
        }
        let kind = match opt_str(path, scaling, "rope_type").map_err(|_| bad(format!("`{key}.rope_type` must be a string")))? {
            Some(k) => Some(k),
            None => opt_str(path, scaling, "type").map_err(|_| bad(format!("`{key}.type` must be a string")))?,
        };
        match kind {
            None | Some("default") => {}
            Some(kind @ ("longrope" | "su" | "yarn")) => {
                return Err(bad(format!(
                    "`{key}` is of type `{kind}`, which transformers' Phi-3 computes as LongRoPE (the 128k-context Phi-3 and Phi-3.5 models): not supported — its short and long per-frequency factors, chosen by the sequence length, are not a rotary scaling prunec computes"
                )))
            }
            Some(other) => {
                return Err(bad(format!("`{key}` is of type `{other}`: transformers' Phi-3 knows only `longrope` (or no scaling)")))
            }
        }
    }
    Ok(())
}

/// `rotary_dims / head_dim` as a `partial_rotary_factor` that gives `rotary_dims` back as
/// transformers computes it (`int(head_dim · factor)`, truncated): the quotient, or the next
/// double above it when rounding put the product just below.
fn factor_for(rotary_dims: usize, head_dim: usize) -> f64 {
    let mut factor = rotary_dims as f64 / head_dim as f64;
    if ((head_dim as f64 * factor) as usize) < rotary_dims {
        factor = f64::from_bits(factor.to_bits() + 1);
    }
    factor
}

impl Phi3Config {
    /// Reads an HF `config.json` of `Phi3ForCausalLM` (every value the computation uses
    /// checked; errors name `path` and the key), with each layer's widths from
    /// [`LAYER_WIDTHS_KEY`] when it is there; transformers' Phi-3 defaults where LLaMA's
    /// differ (`rms_norm_eps` 1e-5, `max_position_embeddings` 4096).
    pub fn from_hf_json(path: &Path, json: &serde_json::Value) -> Result<Phi3Config> {
        let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
        refuse_rope_scaling(path, json)?;
        let mut decoder = LlamaConfig::read_family(path, json, &KEYS)?;
        if opt_f64(path, json, "rms_norm_eps")?.is_none() {
            decoder.rms_norm_eps = 1e-5;
        }
        if opt_usize(path, json, "max_position_embeddings")?.is_none() {
            decoder.max_position_embeddings = 4096;
        }
        let original_max_position_embeddings = opt_usize(path, json, "original_max_position_embeddings")?.unwrap_or(4096);
        // transformers 5 may keep the factor among `rope_parameters`
        let in_parameters = match json.get("rope_parameters").filter(|r| r.is_object()) {
            Some(r) => opt_f64(path, r, "partial_rotary_factor").map_err(|_| bad("`rope_parameters.partial_rotary_factor` must be a number".into()))?,
            None => None,
        };
        let partial_rotary_factor = opt_f64(path, json, "partial_rotary_factor")?.or(in_parameters).unwrap_or(1.0);
        if !(partial_rotary_factor > 0.0 && partial_rotary_factor <= 1.0) {
            return Err(bad(format!("`partial_rotary_factor` = {partial_rotary_factor} must be in (0, 1]")));
        }
        let sliding_window = opt_usize(path, json, "sliding_window")?;
        decoder.variant = Variant { sliding_window, ..Variant::default() };
        let config = Phi3Config {
            rotary_dims: (decoder.head_dim as f64 * partial_rotary_factor) as usize,
            decoder,
            partial_rotary_factor,
            original_max_position_embeddings,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks what LLaMA's checks leave: the rotary dimensions (a positive even number, at
    /// most `head_dim`) and the window.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(FrontendError::BadConfig { path: path.to_path_buf(), reason });
        self.decoder.validate(path)?;
        let (r, d) = (self.rotary_dims, self.decoder.head_dim);
        if r == 0 || !r.is_multiple_of(2) || r > d {
            return bad(format!(
                "`partial_rotary_factor` {} rotates {r} of the {d} dimensions of a head (head_dim · factor, truncated): rotary embeddings need a positive even number, at most head_dim",
                self.partial_rotary_factor
            ));
        }
        if self.decoder.variant.sliding_window == Some(0) {
            return bad("`sliding_window` must be positive (or null: no window)".into());
        }
        Ok(())
    }

    /// Rows of layer `l`'s `qkv_proj` for q and for each of k and v.
    pub fn qkv_rows(&self, l: usize) -> (usize, usize) {
        let w = self.decoder.layer(l);
        (w.num_heads * self.decoder.head_dim, w.num_kv_heads * self.decoder.head_dim)
    }

    /// Parameter names and shapes, in the order HF lists them. A layer without attention heads
    /// has no attention parameters (its input norm included), one without MLP channels no MLP
    /// parameters (its post-attention norm included).
    pub fn expected_params(&self) -> Vec<(String, Vec<usize>)> {
        let c = &self.decoder;
        let (h, v) = (c.hidden_size, c.vocab_size);
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..c.num_layers {
            let w = c.layer(l);
            let (q, kv) = self.qkv_rows(l);
            let p = format!("model.layers.{l}");
            if w.has_attention() {
                out.push((format!("{p}.input_layernorm.weight"), vec![h]));
                out.push((format!("{p}.self_attn.qkv_proj.weight"), vec![q + 2 * kv, h]));
                out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            }
            if w.has_mlp() {
                out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
                out.push((format!("{p}.mlp.gate_up_proj.weight"), vec![2 * w.intermediate_size, h]));
                out.push((format!("{p}.mlp.down_proj.weight"), vec![h, w.intermediate_size]));
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !c.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }

    /// The configuration as a transformers `config.json` for `Phi3ForCausalLM` (`head_dim`
    /// only where it is not `hidden_size / num_attention_heads`; [`LAYER_WIDTHS_KEY`] when
    /// layers differ; no padding token, which transformers would otherwise take to be 32000).
    /// The GGUF frontend's models carry this as their configuration, with the special tokens
    /// their metadata names.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let c = &self.decoder;
        let mut json = serde_json::json!({
            "architectures": ["Phi3ForCausalLM"],
            "attention_dropout": 0.0,
            "embd_pdrop": 0.0,
            "hidden_act": "silu",
            "hidden_size": c.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": c.intermediate_size,
            "max_position_embeddings": c.max_position_embeddings,
            "model_type": "phi3",
            "num_attention_heads": c.num_heads,
            "num_hidden_layers": c.num_layers,
            "num_key_value_heads": c.num_kv_heads,
            "original_max_position_embeddings": self.original_max_position_embeddings,
            // transformers' default, 32000, is no token of a smaller vocabulary
            "pad_token_id": null,
            "partial_rotary_factor": self.partial_rotary_factor,
            "resid_pdrop": 0.0,
            "rms_norm_eps": shortest_f64(c.rms_norm_eps),
            "rope_scaling": null,
            "rope_theta": shortest_f64(c.rope_theta),
            "sliding_window": c.variant.sliding_window,
            "tie_word_embeddings": c.tie_word_embeddings,
            "use_cache": true,
            "vocab_size": c.vocab_size,
        });
        if let Some(obj) = json.as_object_mut() {
            if c.hidden_size.checked_div(c.num_heads) != Some(c.head_dim) {
                obj.insert("head_dim".into(), c.head_dim.into());
            }
            if let Some(layers) = &c.layer_widths {
                obj.insert(LAYER_WIDTHS_KEY.into(), layers.iter().map(LayerWidths::to_json).collect());
            }
        }
        json
    }
}

/// Lowers a Phi-3 model to the IR, checking every tensor's shape against `config`. A model
/// whose `info` has no configuration (GGUF) gets `config`'s, as [`Phi3Config::to_hf_json`]
/// writes it.
pub fn build(config: &Phi3Config, weights: &dyn WeightSource, mut info: ModelInfo) -> Result<Model> {
    if info.config.is_none() {
        info.config = Some(Config::shared(config.clone(), config.to_hf_json()));
    }
    let params = crate::builder::read_params(config.expected_params(), weights)?;
    crate::builder::finish(params, info, |params| lower(config, params))
}

fn lower(config: &Phi3Config, params: &ParamStore) -> prunec_ir::Result<Graph> {
    let c = &config.decoder;
    let mut b = Builder::new(params);
    let ids = b.token_ids()?;
    let embed = b.param("model.embed_tokens.weight", None)?;
    let mut x = b.op(Op::Embedding, "model.embed_tokens", None, &[embed, ids])?;
    let rope = Rope { theta: c.rope_theta, rotary_dims: config.rotary_dims, layout: RopeLayout::HalfSplit, half_freqs: false, scaling: RopeScaling::None };
    let attention = Attention { window: c.variant.sliding_window, ..Attention::causal(1.0 / (c.head_dim as f32).sqrt()) };
    // the last axis of a [batch, seq, features] activation
    const FEATURES: usize = 2;
    let slice = |start: usize, end: usize| Op::Slice { axis: FEATURES, start, end };
    let norm = Op::RmsNorm { eps: c.rms_norm_eps, offset: 0.0 };
    for l in 0..c.num_layers {
        let blk = Some(l as u32);
        let p = format!("model.layers.{l}");
        let width = c.layer(l);
        if width.has_attention() {
            let sa = format!("{p}.self_attn");
            let (q_rows, kv_rows) = config.qkv_rows(l);
            let w = b.param(&format!("{p}.input_layernorm.weight"), blk)?;
            let h = b.op(norm.clone(), &format!("{p}.input_layernorm"), blk, &[x, w])?;
            let qkv = b.linear(h, &format!("{sa}.qkv_proj"), false, blk)?;
            let q = b.op(slice(0, q_rows), &format!("{sa}.query"), blk, &[qkv])?;
            let k = b.op(slice(q_rows, q_rows + kv_rows), &format!("{sa}.key"), blk, &[qkv])?;
            let v = b.op(slice(q_rows + kv_rows, q_rows + 2 * kv_rows), &format!("{sa}.value"), blk, &[qkv])?;
            let q = b.op(Op::SplitHeads { heads: width.num_heads }, &format!("{sa}.q_heads"), blk, &[q])?;
            let k = b.op(Op::SplitHeads { heads: width.num_kv_heads }, &format!("{sa}.k_heads"), blk, &[k])?;
            let mut v = b.op(Op::SplitHeads { heads: width.num_kv_heads }, &format!("{sa}.v_heads"), blk, &[v])?;
            let q = b.op(Op::Rope(rope), &format!("{sa}.q_rope"), blk, &[q])?;
            let mut k = b.op(Op::Rope(rope), &format!("{sa}.k_rope"), blk, &[k])?;
            let copies = width.kv_copies();
            if copies.iter().any(|&c| c != 1) {
                k = b.op(Op::RepeatHeads { copies: copies.clone() }, &format!("{sa}.k_repeat"), blk, &[k])?;
                v = b.op(Op::RepeatHeads { copies }, &format!("{sa}.v_repeat"), blk, &[v])?;
            }
            let a = b.op(Op::Attention(attention), &sa, blk, &[q, k, v])?;
            let a = b.op(Op::MergeHeads, &format!("{sa}.merge_heads"), blk, &[a])?;
            let o = b.linear(a, &format!("{sa}.o_proj"), false, blk)?;
            x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.attn_residual"), blk, &[x, o])?;
        }
        if width.has_mlp() {
            let f = width.intermediate_size;
            let w = b.param(&format!("{p}.post_attention_layernorm.weight"), blk)?;
            let h = b.op(norm.clone(), &format!("{p}.post_attention_layernorm"), blk, &[x, w])?;
            let u = b.linear(h, &format!("{p}.mlp.gate_up_proj"), false, blk)?;
            let gate = b.op(slice(0, f), &format!("{p}.mlp.gate"), blk, &[u])?;
            let up = b.op(slice(f, 2 * f), &format!("{p}.mlp.up"), blk, &[u])?;
            let act = b.op(Op::Unary(UnaryOp::Silu), &format!("{p}.mlp.act"), blk, &[gate])?;
            let m = b.op(Op::Binary(BinaryOp::Mul), &format!("{p}.mlp.gated"), blk, &[act, up])?;
            let d = b.linear(m, &format!("{p}.mlp.down_proj"), false, blk)?;
            x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.mlp_residual"), blk, &[x, d])?;
        }
    }
    let w = b.param("model.norm.weight", None)?;
    let x = b.op(norm, "model.norm", None, &[x, w])?;
    let head = if c.tie_word_embeddings { embed } else { b.param("lm_head.weight", None)? };
    let logits = b.op(Op::Linear, "lm_head", None, &[x, head])?;
    b.op(Op::Output { name: "logits".into() }, "logits", None, &[logits])?;
    Ok(b.g)
}

/// The HF `config.json` of a Phi-3 model as it is now, widths read from the model:
/// `hidden_size` and `vocab_size` from the embedding, each layer's query and key/value heads
/// from the slices of its `qkv_proj` (over `head_dim`) and its MLP channels from the gate
/// slice of its `gate_up_proj` (a layer without them has 0), `rms_norm_eps` from the norms
/// (pruning hidden channels rescales it), `tie_word_embeddings` from whether `lm_head` exists.
/// Every other key is the model's own configuration. When all layers have the same widths
/// the result is a stock Phi-3 config (no [`LAYER_WIDTHS_KEY`]) that transformers'
/// `Phi3ForCausalLM` loads; otherwise the top-level widths are the maxima and
/// [`LAYER_WIDTHS_KEY`] lists every layer. `head_dim` is written when it is not
/// `hidden_size / num_attention_heads` (transformers' default).
///
/// The result is checked against the parameters: every tensor it implies exists with its shape.
pub fn hf_config(model: &Model) -> Result<serde_json::Value> {
    let path = llama::config_path(model);
    let bad = |reason: String| FrontendError::BadConfig { path: path.clone(), reason };
    let carried = Config::<Phi3Config>::of(model, &path)?;
    let (original, mut json) = (&carried.typed, carried.json.clone());
    let head_dim = original.decoder.head_dim;
    let source = model.info.source.clone();
    let embed = "model.embed_tokens.weight";
    let (vocab_size, hidden_size) = match model.params.get(embed).map(|p| p.shape.as_slice()) {
        Some(&[v, h]) => (v, h),
        Some(other) => {
            return Err(FrontendError::BadTensor { path: source, tensor: embed.into(), reason: format!("shape {other:?} is not [vocab, hidden]") })
        }
        None => return Err(FrontendError::MissingTensor { path: source, tensor: embed.into() }),
    };
    let g = &model.graph;
    // the width of slice node `name`; 0 when pruning removed it with its branch
    let width = |name: &str| -> usize {
        g.node_ids()
            .into_iter()
            .find_map(|id| match g.node(id).ok() {
                Some(n) if n.name == name => match n.op {
                    Op::Slice { start, end, .. } => Some(end - start),
                    _ => None,
                },
                _ => None,
            })
            .unwrap_or(0)
    };
    let heads = |name: String| -> Result<usize> {
        let rows = width(&name);
        if head_dim == 0 || !rows.is_multiple_of(head_dim) {
            return Err(bad(format!("`{name}` takes {rows} rows of qkv_proj: not whole heads of {head_dim}")));
        }
        Ok(rows / head_dim)
    };
    let mut layers = Vec::with_capacity(original.decoder.num_layers);
    for l in 0..original.decoder.num_layers {
        let p = format!("model.layers.{l}");
        let copies = llama::repeat_copies(model, &format!("{p}.self_attn.k_repeat"));
        layers.push(LayerWidths {
            num_heads: heads(format!("{p}.self_attn.query"))?,
            num_kv_heads: heads(format!("{p}.self_attn.key"))?,
            intermediate_size: width(&format!("{p}.mlp.gate")),
            query_heads_per_kv: copies.filter(|c| Op::uniform_copies(c).is_none()),
        });
    }
    let eps = crate::builder::norm_eps(model).map_err(bad)?;
    let max = |f: fn(&LayerWidths) -> usize| layers.iter().map(f).max().unwrap_or(0);
    let top = LayerWidths {
        num_heads: max(|w| w.num_heads),
        num_kv_heads: max(|w| w.num_kv_heads),
        intermediate_size: max(|w| w.intermediate_size),
        query_heads_per_kv: None,
    };
    let uniform = layers.iter().all(|w| *w == top);
    let obj = json.as_object_mut().ok_or_else(|| bad("not a JSON object".into()))?;
    obj.insert("hidden_size".into(), hidden_size.into());
    if let Some(eps) = eps {
        obj.insert("rms_norm_eps".into(), shortest_f64(eps).into());
    }
    obj.insert("vocab_size".into(), vocab_size.into());
    obj.insert("num_hidden_layers".into(), original.decoder.num_layers.into());
    obj.insert("num_attention_heads".into(), top.num_heads.into());
    obj.insert("num_key_value_heads".into(), top.num_kv_heads.into());
    obj.insert("intermediate_size".into(), top.intermediate_size.into());
    if obj.contains_key("head_dim") || hidden_size.checked_div(top.num_heads) != Some(head_dim) {
        obj.insert("head_dim".into(), head_dim.into());
    }
    obj.insert("tie_word_embeddings".into(), model.params.get("lm_head.weight").is_none().into());
    if uniform {
        obj.remove(LAYER_WIDTHS_KEY);
    } else {
        obj.insert(LAYER_WIDTHS_KEY.into(), layers.iter().map(LayerWidths::to_json).collect());
    }

    // The configuration must describe the parameters exactly as a reload will expect them.
    let config = Phi3Config::from_hf_json(&path, &json)?;
    crate::builder::check_params(config.expected_params(), &model.params, &source)?;
    Ok(json)
}

/// The modules LoRA adapts by default in Phi-3: every projection, fused ones whole.
pub const LORA_TARGETS: &[&str] = &["qkv_proj", "o_proj", "gate_up_proj", "down_proj"];

/// Phi-3 in the architecture registry.
pub struct Phi3;

impl super::Architecture for Phi3 {
    fn name(&self) -> &'static str {
        "phi3"
    }

    fn hf_classes(&self) -> &'static [&'static str] {
        KEYS.hf_classes
    }

    fn lower(
        &self,
        config_path: &Path,
        json: &serde_json::Value,
        mut info: ModelInfo,
        weights: &dyn WeightSource,
        names: &[&String],
    ) -> Result<Model> {
        let config = Phi3Config::from_hf_json(config_path, json)?;
        let layers = LayerNames { prefix: "model.layers.", key: "num_hidden_layers", count: config.decoder.num_layers };
        let tied = config.decoder.tie_word_embeddings.then_some(("lm_head.weight", "tie_word_embeddings"));
        info.warnings = check_weights(config_path, names, layers, || config.expected_params(), tied)?;
        info.config = Some(Config::shared(config.clone(), json.clone()));
        build(&config, weights, info)
    }

    fn hf_config(&self, model: &Model) -> Result<serde_json::Value> {
        hf_config(model)
    }

    fn before_writing(&self, model: &mut Model) -> Result<Option<String>> {
        let num_layers = Config::<Phi3Config>::of(model, &llama::config_path(model))?.typed.decoder.num_layers;
        let dropped = llama::drop_empty_layers_as(model, num_layers, Phi3Config::from_hf_json)?;
        Ok((dropped > 0).then(|| format!("{dropped} emptied layers left out; the others renumbered")))
    }

    fn lora_targets(&self) -> &'static [&'static str] {
        LORA_TARGETS
    }

    fn gguf_name(&self) -> Option<&'static str> {
        Some("phi3")
    }

    fn load_gguf(&self, path: &Path, file: GgufFile) -> Result<Model> {
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
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::safetensors::HfWeights;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/phi3")
    }

    fn fixture_json() -> serde_json::Value {
        crate::hf::read_config(&fixture()).unwrap()
    }

    fn bad_config(json: &serde_json::Value, needle: &str) {
        match Phi3Config::from_hf_json(Path::new("some/config.json"), json) {
            Err(e @ FrontendError::BadConfig { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("some/config.json") && msg.contains(needle), "{msg}");
            }
            other => panic!("expected BadConfig naming `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn fixture_config_is_read() {
        let c = Phi3Config::from_hf_json(Path::new("config.json"), &fixture_json()).unwrap();
        let d = &c.decoder;
        assert_eq!((d.num_heads, d.num_kv_heads, d.head_dim, d.intermediate_size), (4, 2, 16, 96));
        assert_eq!((c.partial_rotary_factor, c.rotary_dims), (0.75, 12));
        assert_eq!(d.variant, Variant { sliding_window: Some(5), ..Variant::default() });
        assert_eq!((d.rms_norm_eps, d.rope_theta, d.rope_scaling), (1e-6, 10000.0, RopeScaling::None));
        assert!(!d.tie_word_embeddings && !d.qkv_bias() && !d.mlp_bias);
        assert_eq!(c.original_max_position_embeddings, 128);
        let shapes: BTreeMap<String, Vec<usize>> = c.expected_params().into_iter().collect();
        assert_eq!(shapes.len(), 1 + 3 * 6 + 2);
        // q 4·16 rows, then k and v 2·16 each; gate and up 96 rows each
        assert_eq!(shapes["model.layers.0.self_attn.qkv_proj.weight"], [128, 64]);
        assert_eq!(shapes["model.layers.0.self_attn.o_proj.weight"], [64, 64]);
        assert_eq!(shapes["model.layers.2.mlp.gate_up_proj.weight"], [192, 64]);
        assert_eq!(shapes["model.layers.2.mlp.down_proj.weight"], [64, 96]);
        assert_eq!(shapes["lm_head.weight"], [256, 64]);
        // transformers' Phi-3 defaults where LLaMA's differ
        let mut json = fixture_json();
        let obj = json.as_object_mut().unwrap();
        for key in ["rms_norm_eps", "max_position_embeddings", "partial_rotary_factor", "sliding_window", "original_max_position_embeddings"] {
            obj.remove(key);
        }
        let c = Phi3Config::from_hf_json(Path::new("config.json"), &json).unwrap();
        assert_eq!((c.decoder.rms_norm_eps, c.decoder.max_position_embeddings, c.original_max_position_embeddings), (1e-5, 4096, 4096));
        assert_eq!((c.rotary_dims, c.decoder.variant.sliding_window), (16, None));
    }

    #[test]
    fn to_hf_json_reads_back() {
        let c = Phi3Config::from_hf_json(Path::new("config.json"), &fixture_json()).unwrap();
        let written = c.to_hf_json();
        assert_eq!(Phi3Config::from_hf_json(Path::new("config.json"), &written).unwrap(), c);
        let want = fixture_json();
        for (key, value) in want.as_object().unwrap() {
            if !["dtype", "transformers_version", "bos_token_id", "eos_token_id"].contains(&key.as_str()) {
                assert_eq!(&written[key], value, "{key}");
            }
        }
        assert!(written.get("head_dim").is_none(), "hidden / heads is the head width");
        // per-layer widths and a head width of its own are written, and read back
        let mut c2 = c.clone();
        c2.decoder.head_dim = 8;
        c2.rotary_dims = 6;
        c2.decoder.layer_widths = Some(vec![
            LayerWidths { num_heads: 4, num_kv_heads: 2, intermediate_size: 96, query_heads_per_kv: None },
            LayerWidths { num_heads: 3, num_kv_heads: 2, intermediate_size: 50, query_heads_per_kv: Some(vec![1, 2]) },
            LayerWidths { num_heads: 0, num_kv_heads: 0, intermediate_size: 96, query_heads_per_kv: None },
        ]);
        let written = c2.to_hf_json();
        assert_eq!(written["head_dim"], 8);
        assert_eq!(Phi3Config::from_hf_json(Path::new("config.json"), &written).unwrap(), c2);
    }

    #[test]
    fn rotary_factors_round_trip_through_their_dimensions() {
        for (rot, d) in [(32, 96), (12, 16), (64, 96), (2, 6), (22, 66), (128, 128), (10, 30)] {
            let f = factor_for(rot, d);
            assert_eq!((d as f64 * f) as usize, rot, "{rot} of {d}: {f}");
        }
    }

    #[test]
    fn bad_configs_name_the_key() {
        let longrope = serde_json::json!({"type": "longrope", "short_factor": vec![1.0; 6], "long_factor": vec![2.0; 6]});
        let mut json = fixture_json();
        json["rope_scaling"] = longrope;
        bad_config(&json, "`rope_scaling` is of type `longrope`");
        json["rope_scaling"] = serde_json::json!({"type": "su", "short_factor": vec![1.0; 6], "long_factor": vec![2.0; 6]});
        bad_config(&json, "`rope_scaling` is of type `su`, which transformers' Phi-3 computes as LongRoPE");
        json["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": 2.0});
        bad_config(&json, "`rope_scaling` is of type `linear`: transformers' Phi-3 knows only `longrope`");
        json["rope_scaling"] = serde_json::json!(3);
        bad_config(&json, "`rope_scaling` must be an object");
        let mut json = fixture_json();
        json["rope_parameters"] = serde_json::json!({"rope_type": "longrope", "rope_theta": 10000.0});
        bad_config(&json, "`rope_parameters` is of type `longrope`");
        for (factor, needle) in [
            (serde_json::json!(0.0), "`partial_rotary_factor` = 0 must be in (0, 1]"),
            (serde_json::json!(1.5), "`partial_rotary_factor` = 1.5 must be in (0, 1]"),
            (serde_json::json!(0.7), "`partial_rotary_factor` 0.7 rotates 11 of the 16 dimensions"),
            (serde_json::json!("half"), "`partial_rotary_factor` must be a number"),
        ] {
            let mut json = fixture_json();
            json["partial_rotary_factor"] = factor;
            bad_config(&json, needle);
        }
        // 16 · 0.3 = 4.8, truncated to 4 as transformers does: even, so it is a model
        let mut json = fixture_json();
        json["partial_rotary_factor"] = 0.3.into();
        assert_eq!(Phi3Config::from_hf_json(Path::new("config.json"), &json).unwrap().rotary_dims, 4);
        let mut json = fixture_json();
        json["sliding_window"] = 0.into();
        bad_config(&json, "`sliding_window` must be positive");
        json["sliding_window"] = (-1).into();
        bad_config(&json, "`sliding_window` must be a non-negative integer");
        let mut json = fixture_json();
        json["num_key_value_heads"] = 3.into();
        bad_config(&json, "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
        let mut json = fixture_json();
        json["hidden_act"] = "gelu_new".into();
        bad_config(&json, "hidden_act `gelu_new` is not supported for phi3 models");
        let mut json = fixture_json();
        json.as_object_mut().unwrap().remove("intermediate_size");
        bad_config(&json, "`intermediate_size` is missing");
    }

    #[test]
    fn builds_the_fixture_with_fused_projections() {
        let model = crate::load(&fixture()).unwrap();
        let g = &model.graph;
        let ops: Vec<(String, Op)> = g
            .node_ids()
            .into_iter()
            .filter_map(|id| g.node(id).ok())
            .filter(|n| n.block == Some(1) && matches!(n.op, Op::Slice { .. } | Op::Rope(_) | Op::Attention(_)))
            .map(|n| (n.name.clone(), n.op.clone()))
            .collect();
        let p = "model.layers.1";
        let rope = Rope { theta: 10000.0, rotary_dims: 12, layout: RopeLayout::HalfSplit, half_freqs: false, scaling: RopeScaling::None };
        let attention = Attention { scale: 0.25, causal: true, window: Some(5) };
        assert_eq!(
            ops,
            vec![
                (format!("{p}.self_attn.query"), Op::Slice { axis: 2, start: 0, end: 64 }),
                (format!("{p}.self_attn.key"), Op::Slice { axis: 2, start: 64, end: 96 }),
                (format!("{p}.self_attn.value"), Op::Slice { axis: 2, start: 96, end: 128 }),
                (format!("{p}.self_attn.q_rope"), Op::Rope(rope)),
                (format!("{p}.self_attn.k_rope"), Op::Rope(rope)),
                (format!("{p}.self_attn"), Op::Attention(attention)),
                (format!("{p}.mlp.gate"), Op::Slice { axis: 2, start: 0, end: 96 }),
                (format!("{p}.mlp.up"), Op::Slice { axis: 2, start: 96, end: 192 }),
            ]
        );
        assert_eq!(model.info.architecture, "phi3");
    }

    #[test]
    fn hf_config_of_an_unpruned_model_is_its_config() {
        let model = crate::load(&fixture()).unwrap();
        assert_eq!(hf_config(&model).unwrap(), fixture_json());
    }

    #[test]
    fn wrong_shapes_name_the_tensor() {
        let mut json = fixture_json();
        json["num_key_value_heads"] = 4.into();
        let config = Phi3Config::from_hf_json(&fixture().join("config.json"), &json).unwrap();
        let weights = HfWeights::open(&fixture()).unwrap();
        let info = ModelInfo { source: fixture(), format: prunec_ir::SourceFormat::Hf, ..Default::default() };
        let msg = build(&config, &weights, info).unwrap_err().to_string();
        assert!(msg.contains("model.safetensors") && msg.contains("qkv_proj.weight"), "{msg}");
    }
}
