//! The LLaMA family (LLaMA 1/2/3, Vicuna, SmolLM, any `LlamaForCausalLM`): configuration and
//! lowering to the IR. The HF and GGUF frontends both come here, so the same model gives the
//! same graph whatever file it was read from.
//!
//! Layers may have widths of their own (a pruned model): `config.json` then lists them under
//! [`LAYER_WIDTHS_KEY`], and the top-level widths are the maxima. A layer with no attention
//! heads (or no MLP channels) has no attention (or MLP) branch at all: the residual stream
//! passes through it unchanged. [`hf_config`] writes the configuration back from a model's
//! parameter shapes.

mod config;
pub mod gguf;
pub mod recognise;

pub use config::{rope_scaling_json, LayerWidths, LlamaConfig, Variant, LAYER_WIDTHS_KEY, QUERY_HEADS_PER_KV_KEY};

use std::path::{Path, PathBuf};

use prunec_ir::{Attention, BinaryOp, Graph, Model, ModelInfo, Op, ParamStore, Rope, RopeLayout, UnaryOp};

use super::Config;
use crate::builder::{check_weights, norm_eps_where, shortest_f64, Builder, LayerNames};
use crate::gguf::GgufFile;
use crate::error::{FrontendError, Result};
use crate::weights::WeightSource;


/// A LLaMA-like family as the shared code reads and writes it: its `model_type`, how it reads
/// a `config.json` into a [`LlamaConfig`] and writes one back, which of LLaMA's optional keys
/// its configs have, and how llama.cpp lays out its GGUF files. It is the family's entry in the
/// architecture registry.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Its `model_type`.
    pub model_type: &'static str,
    /// The classes of an HF config's `architectures` that name it (`LlamaForCausalLM`).
    pub hf_classes: &'static [&'static str],
    /// Its GGUF files, when llama.cpp has a name for it.
    pub gguf: Option<gguf::GgufLayout>,
    /// Reads (and checks) a `config.json` of the family.
    pub read: fn(&Path, &serde_json::Value) -> Result<LlamaConfig>,
    /// The family's `config.json` of a configuration (a GGUF model's, read from its metadata).
    pub write: fn(&LlamaConfig) -> serde_json::Value,
    /// Whether its configs have `attention_bias` (biases of q/k/v and o together).
    pub attention_bias_key: bool,
    /// Whether its configs have `mlp_bias`.
    pub mlp_bias_key: bool,
}

/// LLaMA itself.
pub const LLAMA: Family = Family {
    model_type: "llama",
    hf_classes: &["LlamaForCausalLM"],
    gguf: Some(gguf::GgufLayout { name: "llama", permuted: true }),
    read: LlamaConfig::from_hf_json,
    write: LlamaConfig::to_hf_json,
    attention_bias_key: true,
    mlp_bias_key: true,
};

/// Where a model's configuration lives, for messages: `config.json` of an HF folder, else
/// the model file itself.
pub(crate) fn config_path(model: &Model) -> PathBuf {
    let source = &model.info.source;
    if model.info.format == prunec_ir::SourceFormat::Hf || source.is_dir() {
        source.join("config.json")
    } else {
        source.clone()
    }
}

/// The width of one head: the rotary op's `rotary_dims` (LLaMA rotates whole heads), else the
/// configuration's `head_dim`.
fn head_dim(model: &Model, original: &LlamaConfig) -> usize {
    let g = &model.graph;
    g.node_ids()
        .into_iter()
        .find_map(|id| match g.node(id).ok().map(|n| &n.op) {
            Some(Op::Rope(rope)) => Some(rope.rotary_dims),
            _ => None,
        })
        .unwrap_or(original.head_dim)
}

/// The HF `config.json` of a LLaMA model as it is now, widths read from its parameters:
/// `hidden_size` and `vocab_size` from the embedding, each layer's heads from the rows of
/// q_proj and k_proj (over `head_dim`, from the rotary op) and its MLP channels from the rows
/// of gate_proj (a layer without them has 0), `tie_word_embeddings` from whether `lm_head`
/// exists. Every other key is the model's own configuration (`config_json`; for a GGUF model
/// the one its metadata describes). When all layers have the same widths the result is a
/// stock LLaMA config (no [`LAYER_WIDTHS_KEY`]) that transformers' `LlamaForCausalLM` loads;
/// otherwise the top-level widths are the maxima and [`LAYER_WIDTHS_KEY`] lists every layer.
///
/// The result is checked against the parameters: every tensor it implies exists with its shape.
pub fn hf_config(model: &Model) -> Result<serde_json::Value> {
    hf_config_of(model, &LLAMA)
}

/// [`hf_config`] for a model of the LLaMA-like `family` (`attention_bias` and `mlp_bias`
/// written only where the family's configs have them; Qwen3's per-head norms do not count as
/// the model's `rms_norm_eps`, which pruning hidden channels rescales).
pub fn hf_config_of(model: &Model, family: &Family) -> Result<serde_json::Value> {
    let path = config_path(model);
    let bad = |reason: String| FrontendError::BadConfig { path: path.clone(), reason };
    let carried = Config::<LlamaConfig>::of(model, &path)?;
    let (original, mut json) = (&carried.typed, carried.json.clone());
    let head_dim = head_dim(model, original);
    let source = model.info.source.clone();
    let shape = |name: &str| model.params.get(name).map(|p| p.shape.as_slice());
    let embed = "model.embed_tokens.weight";
    let (vocab_size, hidden_size) = match shape(embed) {
        Some(&[v, h]) => (v, h),
        Some(other) => {
            return Err(FrontendError::BadTensor {
                path: source,
                tensor: embed.into(),
                reason: format!("shape {other:?} is not [vocab, hidden]"),
            })
        }
        None => return Err(FrontendError::MissingTensor { path: source, tensor: embed.into() }),
    };
    let rows = |name: String, per: usize| -> Result<usize> {
        let Some(&r) = shape(&name).and_then(<[usize]>::first) else { return Ok(0) };
        if per == 0 || !r.is_multiple_of(per) {
            return Err(FrontendError::BadTensor {
                path: source.clone(),
                tensor: name,
                reason: format!("{r} rows are not whole heads of {per}"),
            });
        }
        Ok(r / per)
    };
    let mut layers = Vec::with_capacity(original.num_layers);
    for l in 0..original.num_layers {
        let p = format!("model.layers.{l}");
        let copies = repeat_copies(model, &format!("{p}.self_attn.k_repeat"));
        layers.push(LayerWidths {
            num_heads: rows(format!("{p}.self_attn.q_proj.weight"), head_dim)?,
            num_kv_heads: rows(format!("{p}.self_attn.k_proj.weight"), head_dim)?,
            intermediate_size: rows(format!("{p}.mlp.gate_proj.weight"), 1)?,
            query_heads_per_kv: copies.filter(|c| Op::uniform_copies(c).is_none()),
        });
    }
    let eps = norm_eps_where(model, |name| !name.ends_with(".q_norm") && !name.ends_with(".k_norm")).map_err(bad)?;
    let max = |f: fn(&LayerWidths) -> usize| layers.iter().map(f).max().unwrap_or(0);
    let top = LayerWidths {
        num_heads: max(|w| w.num_heads),
        num_kv_heads: max(|w| w.num_kv_heads),
        intermediate_size: max(|w| w.intermediate_size),
        query_heads_per_kv: None,
    };
    let uniform = layers.iter().all(|w| *w == top);
    let has = |suffix: &str| model.params.iter().any(|(n, _)| n.starts_with("model.layers.") && n.ends_with(suffix));
    let obj = json.as_object_mut().ok_or_else(|| bad("not a JSON object".into()))?;
    obj.insert("hidden_size".into(), hidden_size.into());
    if let Some(eps) = eps {
        obj.insert("rms_norm_eps".into(), shortest_f64(eps).into());
    }
    obj.insert("vocab_size".into(), vocab_size.into());
    obj.insert("head_dim".into(), head_dim.into());
    obj.insert("num_hidden_layers".into(), original.num_layers.into());
    obj.insert("num_attention_heads".into(), top.num_heads.into());
    obj.insert("num_key_value_heads".into(), top.num_kv_heads.into());
    obj.insert("intermediate_size".into(), top.intermediate_size.into());
    obj.insert("tie_word_embeddings".into(), model.params.get("lm_head.weight").is_none().into());
    if family.attention_bias_key {
        obj.insert("attention_bias".into(), has(".self_attn.o_proj.bias").into());
    }
    if family.mlp_bias_key {
        obj.insert("mlp_bias".into(), has(".mlp.gate_proj.bias").into());
    }
    if uniform {
        obj.remove(LAYER_WIDTHS_KEY);
    } else {
        obj.insert(LAYER_WIDTHS_KEY.into(), layers.iter().map(LayerWidths::to_json).collect());
    }

    // The configuration must describe the parameters exactly as a reload will expect them.
    let config = (family.read)(&path, &json)?;
    crate::builder::check_params(config.expected_params(), &model.params, &source)?;
    Ok(json)
}

/// Gives every projection of a kind a bias (zeros) when one of them has one and the family's
/// config can only say so for all of them together: `attention_bias` (q, k, v and o) and
/// `mlp_bias` (gate, up and down). `reconstruct` adds `o_proj` and `down_proj` biases alone.
/// Returns how many were added.
pub fn complete_biases(model: &mut Model, family: &Family) -> Result<usize> {
    let kinds: [(bool, &str, &[&str]); 2] = [
        (family.attention_bias_key, "self_attn", &["q_proj", "k_proj", "v_proj", "o_proj"]),
        (family.mlp_bias_key, "mlp", &["gate_proj", "up_proj", "down_proj"]),
    ];
    let mut added = 0;
    for (has_key, module, projections) in kinds {
        let is_bias = |n: &str| {
            n.starts_with("model.layers.") && projections.iter().any(|p| n.ends_with(&format!(".{module}.{p}.bias")))
        };
        if !has_key || !model.params.iter().any(|(n, _)| is_bias(n)) {
            continue;
        }
        // every linear op reading one of these weights without a bias gets zeros
        let g = &model.graph;
        let mut missing = Vec::new();
        for id in g.node_ids() {
            if !g.node(id).is_ok_and(|n| matches!(n.op, Op::Linear)) {
                continue;
            }
            let inputs = g.inputs(id);
            if inputs.len() != 2 {
                continue;
            }
            let Some(Op::Param { name, ty }) = g.node(inputs[1].node).ok().map(|n| &n.op) else { continue };
            let Some(stem) = name.strip_suffix(".weight") else { continue };
            if name.starts_with("model.layers.") && projections.iter().any(|p| stem.ends_with(&format!(".{module}.{p}"))) {
                let rows = ty.shape.to_fixed().and_then(|s| s.first().copied()).unwrap_or(0);
                let dtype = model.params.get(name).map_or(prunec_ir::DType::F32, |p| p.dtype);
                missing.push((id, format!("{stem}.bias"), rows, dtype));
            }
        }
        for (id, name, rows, dtype) in missing {
            model
                .add_linear_bias(id, &name, vec![0.0; rows], dtype)
                .map_err(|source| FrontendError::Ir { path: model.info.source.clone(), source })?;
            added += 1;
        }
    }
    Ok(added)
}

/// The copies of each head made by the `repeat_heads` node `name`, if there is one.
pub(crate) fn repeat_copies(model: &Model, name: &str) -> Option<Vec<usize>> {
    let g = &model.graph;
    g.node_ids().into_iter().find_map(|id| match g.node(id).ok() {
        Some(n) if n.name == name => match &n.op {
            Op::RepeatHeads { copies } => Some(copies.clone()),
            _ => None,
        },
        _ => None,
    })
}


/// Removes the decoder layers that pruning emptied (no parameter left) and renumbers the
/// others, so that a writer gives a model with fewer layers — a stock config when the layers
/// left are alike. Renames parameters and nodes and updates the model's configuration.
/// Returns how many layers went.
pub fn drop_empty_layers(model: &mut Model) -> Result<usize> {
    drop_empty_layers_of(model, &LLAMA)
}

/// [`drop_empty_layers`] for a model of the LLaMA-like `family` (a `layer_types` list, as
/// Qwen2 and Qwen3 configs have, keeps the entries of the layers kept).
pub fn drop_empty_layers_of(model: &mut Model, family: &Family) -> Result<usize> {
    let num_layers = Config::<LlamaConfig>::of(model, &config_path(model))?.typed.num_layers;
    drop_empty_layers_as(model, num_layers, family.read)
}

/// [`drop_empty_layers`] for a model of `num_layers` layers named as LLaMA's
/// (`model.layers.N.`, counted by `num_hidden_layers`, widths under [`LAYER_WIDTHS_KEY`])
/// whose configuration `read` reads back into the typed configuration `T` it carries
/// (Phi-3's, whose fused projections are not LLaMA's).
pub(crate) fn drop_empty_layers_as<T: std::fmt::Debug + Send + Sync + 'static>(
    model: &mut Model,
    num_layers: usize,
    read: impl Fn(&Path, &serde_json::Value) -> Result<T>,
) -> Result<usize> {
    let path = config_path(model);
    let mut json = match &model.info.config {
        Some(c) => prunec_ir::ArchConfig::to_json(c.as_ref()),
        None => return Err(FrontendError::BadConfig { path, reason: "the model carries no configuration".into() }),
    };
    let prefix = |l: usize| format!("model.layers.{l}.");
    let kept: Vec<usize> = (0..num_layers).filter(|&l| model.params.iter().any(|(n, _)| n.starts_with(&prefix(l)))).collect();
    let dropped = num_layers - kept.len();
    if dropped == 0 {
        return Ok(0);
    }
    let renumber = |name: &str| -> String {
        for (new, &old) in kept.iter().enumerate() {
            if let Some(rest) = name.strip_prefix(&prefix(old)) {
                return format!("{}{rest}", prefix(new));
            }
        }
        name.to_string()
    };
    // parameters, then the nodes naming them
    let names: Vec<String> = model.params.iter().map(|(n, _)| n.clone()).collect();
    let mut renamed = prunec_ir::ParamStore::new();
    for name in names {
        if let Some(p) = model.params.remove(&name) {
            renamed.insert(renumber(&name), p);
        }
    }
    model.params = renamed;
    let ir = |source| FrontendError::Ir { path: path.clone(), source };
    for id in model.graph.node_ids() {
        let node = model.graph.node_mut(id).map_err(ir)?;
        if let Op::Param { name, ty } = &node.op {
            node.op = Op::Param { name: renumber(name), ty: ty.clone() };
        }
        node.name = renumber(&node.name);
        if let Some(b) = node.block {
            node.block = kept.iter().position(|&k| k as u32 == b).map(|p| p as u32);
        }
    }
    if let Some(obj) = json.as_object_mut() {
        obj.insert("num_hidden_layers".into(), kept.len().into());
        for key in [LAYER_WIDTHS_KEY, "layer_types"] {
            if let Some(serde_json::Value::Array(entries)) = obj.get(key).cloned() {
                let kept_entries: Vec<serde_json::Value> = kept.iter().filter_map(|&l| entries.get(l).cloned()).collect();
                obj.insert(key.into(), kept_entries.into());
            }
        }
    }
    let typed = read(&path, &json)?;
    model.info.config = Some(Config::shared(typed, json));
    model.groups = None;
    prunec_ir::verify(model).map_err(ir)?;
    Ok(dropped)
}

/// Lowers a LLaMA model to the IR, checking every tensor's shape against `config`. A model
/// whose `info` has no configuration (GGUF) gets `config`'s, as [`LlamaConfig::to_hf_json`]
/// writes it.
pub fn build(config: &LlamaConfig, weights: &dyn WeightSource, mut info: ModelInfo) -> Result<Model> {
    if info.config.is_none() {
        info.config = Some(Config::shared(config.clone(), config.to_hf_json()));
    }
    let params = crate::builder::read_params(config.expected_params(), weights)?;
    crate::builder::finish(params, info, |params| lower(config, params))
}

/// Lowers a LLaMA model over parameters already at hand, named as HF names them (a graph
/// recognised as LLaMA, [`recognise::as_llama`]): each must be one `config` implies, with its
/// shape, and every one it implies must be there. `info` gets `config`'s `config.json`.
pub(crate) fn build_over(config: &LlamaConfig, params: ParamStore, mut info: ModelInfo) -> Result<Model> {
    let expected = config.expected_params();
    if let Some((name, _)) = params.iter().find(|(n, _)| !expected.iter().any(|(e, _)| e == *n)) {
        return Err(FrontendError::BadTensor { path: info.source.clone(), tensor: name.clone(), reason: "the configuration implies no such parameter".into() });
    }
    crate::builder::check_params(expected, &params, &info.source)?;
    info.config = Some(Config::shared(config.clone(), config.to_hf_json()));
    crate::builder::finish(params, info, |params| lower(config, params))
}

fn lower(c: &LlamaConfig, params: &ParamStore) -> prunec_ir::Result<Graph> {
    let mut b = Builder::new(params);
    let ids = b.token_ids()?;
    let embed = b.param("model.embed_tokens.weight", None)?;
    let mut x = b.op(Op::Embedding, "model.embed_tokens", None, &[embed, ids])?;
    let rope = Rope { theta: c.rope_theta, rotary_dims: c.head_dim, layout: RopeLayout::HalfSplit, half_freqs: false, scaling: c.rope_scaling };
    let attention = Attention { window: c.variant.sliding_window, ..Attention::causal(1.0 / (c.head_dim as f32).sqrt()) };
    for l in 0..c.num_layers {
        let blk = Some(l as u32);
        let p = format!("model.layers.{l}");
        let width = c.layer(l);
        if width.has_attention() {
            let (heads, kv_heads) = (width.num_heads, width.num_kv_heads);
            let w = b.param(&format!("{p}.input_layernorm.weight"), blk)?;
            let h = b.op(Op::RmsNorm { eps: c.rms_norm_eps, offset: 0.0 }, &format!("{p}.input_layernorm"), blk, &[x, w])?;
            let q = b.linear(h, &format!("{p}.self_attn.q_proj"), c.qkv_bias(), blk)?;
            let k = b.linear(h, &format!("{p}.self_attn.k_proj"), c.qkv_bias(), blk)?;
            let v = b.linear(h, &format!("{p}.self_attn.v_proj"), c.qkv_bias(), blk)?;
            let mut q = b.op(Op::SplitHeads { heads }, &format!("{p}.self_attn.q_heads"), blk, &[q])?;
            let mut k = b.op(Op::SplitHeads { heads: kv_heads }, &format!("{p}.self_attn.k_heads"), blk, &[k])?;
            if c.variant.qk_norm {
                let norm = Op::RmsNorm { eps: c.rms_norm_eps, offset: 0.0 };
                let wq = b.param(&format!("{p}.self_attn.q_norm.weight"), blk)?;
                q = b.op(norm.clone(), &format!("{p}.self_attn.q_norm"), blk, &[q, wq])?;
                let wk = b.param(&format!("{p}.self_attn.k_norm.weight"), blk)?;
                k = b.op(norm, &format!("{p}.self_attn.k_norm"), blk, &[k, wk])?;
            }
            let v = b.op(Op::SplitHeads { heads: kv_heads }, &format!("{p}.self_attn.v_heads"), blk, &[v])?;
            let q = b.op(Op::Rope(rope), &format!("{p}.self_attn.q_rope"), blk, &[q])?;
            let mut k = b.op(Op::Rope(rope), &format!("{p}.self_attn.k_rope"), blk, &[k])?;
            let mut v = v;
            let copies = width.kv_copies();
            if copies.iter().any(|&c| c != 1) {
                k = b.op(Op::RepeatHeads { copies: copies.clone() }, &format!("{p}.self_attn.k_repeat"), blk, &[k])?;
                v = b.op(Op::RepeatHeads { copies }, &format!("{p}.self_attn.v_repeat"), blk, &[v])?;
            }
            let a = b.op(Op::Attention(attention), &format!("{p}.self_attn"), blk, &[q, k, v])?;
            let a = b.op(Op::MergeHeads, &format!("{p}.self_attn.merge_heads"), blk, &[a])?;
            let o = b.linear(a, &format!("{p}.self_attn.o_proj"), c.attention_bias, blk)?;
            x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.attn_residual"), blk, &[x, o])?;
        }
        if width.has_mlp() {
            let w = b.param(&format!("{p}.post_attention_layernorm.weight"), blk)?;
            let h = b.op(Op::RmsNorm { eps: c.rms_norm_eps, offset: 0.0 }, &format!("{p}.post_attention_layernorm"), blk, &[x, w])?;
            let gate = b.linear(h, &format!("{p}.mlp.gate_proj"), c.mlp_bias, blk)?;
            let up = b.linear(h, &format!("{p}.mlp.up_proj"), c.mlp_bias, blk)?;
            let act = b.op(Op::Unary(UnaryOp::Silu), &format!("{p}.mlp.act"), blk, &[gate])?;
            let m = b.op(Op::Binary(BinaryOp::Mul), &format!("{p}.mlp.gated"), blk, &[act, up])?;
            let d = b.linear(m, &format!("{p}.mlp.down_proj"), c.mlp_bias, blk)?;
            x = b.op(Op::Binary(BinaryOp::Add), &format!("{p}.mlp_residual"), blk, &[x, d])?;
        }
    }
    let w = b.param("model.norm.weight", None)?;
    let x = b.op(Op::RmsNorm { eps: c.rms_norm_eps, offset: 0.0 }, "model.norm", None, &[x, w])?;
    let head = if c.tie_word_embeddings { embed } else { b.param("lm_head.weight", None)? };
    let logits = b.op(Op::Linear, "lm_head", None, &[x, head])?;
    b.op(Op::Output { name: "logits".into() }, "logits", None, &[logits])?;
    Ok(b.g)
}

/// The modules LoRA adapts by default in LLaMA and the LLaMA-like families: every projection.
pub const LORA_TARGETS: &[&str] = &["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// What `Architecture::lower` does for LLaMA and each LLaMA-like family, once `config` is read
/// from the HF config `json` at `config_path` (the model carries both): checks the weights' tensors (`names`) against it, then
/// lowers the model over `weights`.
pub(crate) fn lower_hf(
    config: &LlamaConfig,
    config_path: &Path,
    json: &serde_json::Value,
    mut info: ModelInfo,
    weights: &dyn WeightSource,
    names: &[&String],
) -> Result<Model> {
    let layers = LayerNames { prefix: "model.layers.", key: "num_hidden_layers", count: config.num_layers };
    let tied = config.tie_word_embeddings.then_some(("lm_head.weight", "tie_word_embeddings"));
    info.warnings = check_weights(config_path, names, layers, || config.expected_params(), tied)?;
    info.config = Some(Config::shared(config.clone(), json.clone()));
    build(config, weights, info)
}

/// LLaMA and each LLaMA-like family in the architecture registry: one implementation, the
/// family saying what differs.
impl super::Architecture for Family {
    fn name(&self) -> &'static str {
        self.model_type
    }

    fn hf_classes(&self) -> &'static [&'static str] {
        self.hf_classes
    }

    fn lower(
        &self,
        config_path: &Path,
        json: &serde_json::Value,
        info: ModelInfo,
        weights: &dyn WeightSource,
        names: &[&String],
    ) -> Result<Model> {
        lower_hf(&(self.read)(config_path, json)?, config_path, json, info, weights, names)
    }

    fn hf_config(&self, model: &Model) -> Result<serde_json::Value> {
        hf_config_of(model, self)
    }

    fn before_writing(&self, model: &mut Model) -> Result<Option<String>> {
        let dropped = drop_empty_layers_of(model, self)?;
        let biases = complete_biases(model, self)?;
        let mut lines = Vec::new();
        if dropped > 0 {
            lines.push(format!("{dropped} emptied layers left out; the others renumbered"));
        }
        if biases > 0 {
            lines.push(format!("{biases} zero biases added: the config's attention_bias/mlp_bias give every projection of a kind one"));
        }
        Ok((!lines.is_empty()).then(|| lines.join("; ")))
    }

    fn lora_targets(&self) -> &'static [&'static str] {
        LORA_TARGETS
    }

    fn gguf_name(&self) -> Option<&'static str> {
        self.gguf.map(|g| g.name)
    }

    fn gguf_also(&self) -> &'static [&'static str] {
        // llama.cpp's LLaMA with layers of their own widths, as prunec writes pruned LLaMAs
        if self.gguf.is_some_and(|g| g.name == "llama") {
            &[gguf::DECI]
        } else {
            &[]
        }
    }

    fn writes_gguf(&self) -> bool {
        self.gguf.is_some()
    }

    fn gguf_plan(&self, model: &Model, block: usize) -> Result<super::gguf_out::GgufPlan> {
        match self.gguf {
            Some(layout) => gguf::plan(model, self, layout, block),
            None => Err(FrontendError::UnsupportedArchitecture {
                path: model.info.source.clone(),
                architecture: format!("{} (writing GGUF)", self.model_type),
                supported: super::ARCHITECTURES.iter().filter(|a| a.writes_gguf()).map(|a| a.name()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    fn load_gguf(&self, path: &Path, file: GgufFile) -> Result<Model> {
        match self.gguf {
            Some(layout) => gguf::load(path, file, layout, self.write),
            None => Err(FrontendError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                architecture: self.model_type.to_string(),
                supported: super::gguf_names().join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use prunec_ir::RopeScaling;
    use crate::safetensors::HfWeights;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llama-gqa")
    }

    fn fixture_json() -> serde_json::Value {
        crate::hf::read_config(&fixture()).unwrap()
    }

    /// The fixture's config with `widths` as its `prunec_layer_widths`.
    fn with_widths(widths: serde_json::Value) -> serde_json::Value {
        let mut json = fixture_json();
        json[LAYER_WIDTHS_KEY] = widths;
        json
    }

    fn w(heads: usize, kv: usize, inter: usize) -> serde_json::Value {
        LayerWidths { num_heads: heads, num_kv_heads: kv, intermediate_size: inter, query_heads_per_kv: None }.to_json()
    }

    fn bad_config(json: &serde_json::Value, needle: &str) {
        let path = Path::new("some/config.json");
        match LlamaConfig::from_hf_json(path, json) {
            Err(e @ FrontendError::BadConfig { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("some/config.json") && msg.contains(needle), "{msg}");
            }
            other => panic!("expected BadConfig naming `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn rope_scaling_is_read_and_checked() {
        let path = Path::new("config.json");
        let mut json = fixture_json();
        json["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let c = LlamaConfig::from_hf_json(path, &json).unwrap();
        let llama3 = RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_positions: 8192 };
        assert_eq!(c.rope_scaling, llama3);
        assert_eq!(LlamaConfig::from_hf_json(path, &c.to_hf_json()).unwrap(), c, "written back, read again");
        // transformers 5: the scaling's keys in `rope_parameters`
        let mut json5 = fixture_json();
        json5["rope_parameters"] = serde_json::json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let c5 = LlamaConfig::from_hf_json(path, &json5).unwrap();
        assert_eq!((c5.rope_scaling, c5.rope_theta), (llama3, 500000.0));
        // yarn's defaults as transformers has them; `type` for `rope_type`
        json["rope_scaling"] = serde_json::json!({"type": "yarn", "factor": 4.0});
        let yarn = RopeScaling::Yarn {
            factor: 4.0,
            original_max_positions: 128,
            beta_fast: 32.0,
            beta_slow: 1.0,
            truncate: true,
            attention_factor: (0.1 * 4f64.ln() + 1.0) as f32,
        };
        assert_eq!(LlamaConfig::from_hf_json(path, &json).unwrap().rope_scaling, yarn);
        json["rope_scaling"] = serde_json::json!({"rope_type": "dynamic", "factor": 2.0});
        assert_eq!(LlamaConfig::from_hf_json(path, &json).unwrap().rope_scaling, RopeScaling::Dynamic { factor: 2.0, max_positions: 128 });
        json["rope_scaling"] = serde_json::json!({"rope_type": "default"});
        assert_eq!(LlamaConfig::from_hf_json(path, &json).unwrap().rope_scaling, RopeScaling::None);
        for (scaling, needle) in [
            (serde_json::json!({"rope_type": "llama3", "factor": 8.0}), "`rope_scaling.low_freq_factor` is missing"),
            (serde_json::json!({"rope_type": "longrope", "factor": 8.0}), "rope type `longrope` is not supported yet"),
            (serde_json::json!({"rope_type": "linear", "factor": -1.0}), "`rope_scaling.factor` = -1 must be a positive number"),
            (serde_json::json!({"rope_type": "linear", "factor": "2"}), "`rope_scaling.factor` must be a number"),
            (serde_json::json!({"rope_type": "linear"}), "`rope_scaling.factor` is missing"),
            (serde_json::json!({"rope_type": "yarn", "factor": 2.0, "truncate": 1}), "`rope_scaling.truncate` must be true or false"),
            (serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0, "high_freq_factor": 2.0, "original_max_position_embeddings": 8}), "must differ"),
            (serde_json::json!(3), "`rope_scaling` must be an object"),
        ] {
            json["rope_scaling"] = scaling;
            bad_config(&json, needle);
        }
    }

    #[test]
    fn per_layer_widths_are_read() {
        let json = with_widths(serde_json::json!([w(8, 2, 176), w(4, 1, 176), w(8, 2, 100), w(6, 2, 0)]));
        let c = LlamaConfig::from_hf_json(Path::new("config.json"), &json).unwrap();
        assert_eq!(c.layer(1), LayerWidths { num_heads: 4, num_kv_heads: 1, intermediate_size: 176, query_heads_per_kv: None });
        assert_eq!(c.layer(2).intermediate_size, 100);
        assert!(!c.layer(3).has_mlp());
        let shapes: BTreeMap<String, Vec<usize>> = c.expected_params().into_iter().collect();
        assert_eq!(shapes["model.layers.1.self_attn.q_proj.weight"], [32, 64]);
        assert_eq!(shapes["model.layers.1.self_attn.k_proj.weight"], [8, 64]);
        assert_eq!(shapes["model.layers.1.self_attn.o_proj.weight"], [64, 32]);
        assert_eq!(shapes["model.layers.2.mlp.down_proj.weight"], [64, 100]);
        assert_eq!(shapes["model.layers.3.self_attn.q_proj.weight"], [48, 64]);
        assert!(!shapes.contains_key("model.layers.3.mlp.gate_proj.weight"));
        assert!(!shapes.contains_key("model.layers.3.post_attention_layernorm.weight"));
        // without the key, every layer has the top-level widths
        let c = LlamaConfig::from_hf_json(Path::new("config.json"), &fixture_json()).unwrap();
        assert_eq!(c.layer_widths, None);
        assert_eq!(c.layer(3), LayerWidths { num_heads: 8, num_kv_heads: 2, intermediate_size: 176, query_heads_per_kv: None });
    }

    #[test]
    fn bad_per_layer_widths_are_config_errors() {
        bad_config(&with_widths(serde_json::json!([w(8, 2, 176)])), "has 1 entries for 4 layers");
        let not_multiple = with_widths(serde_json::json!([w(8, 2, 176), w(5, 2, 176), w(8, 2, 176), w(8, 2, 176)]));
        bad_config(&not_multiple, "prunec_layer_widths[1]`: num_attention_heads 5 is not a multiple of num_key_value_heads 2");
        let kv_alone = with_widths(serde_json::json!([w(8, 2, 176), w(0, 2, 176), w(8, 2, 176), w(8, 2, 176)]));
        bad_config(&kv_alone, "both zero");
        let missing = with_widths(serde_json::json!([w(8, 2, 176), w(8, 2, 176), {"num_attention_heads": 8}, w(8, 2, 176)]));
        bad_config(&missing, "prunec_layer_widths[2]`: `num_key_value_heads` is missing");
        bad_config(&with_widths(serde_json::json!({"num_attention_heads": 8})), "not a list");
    }

    #[test]
    fn hf_config_of_an_unpruned_model_is_its_config() {
        let model = crate::load(&fixture()).unwrap();
        let got = hf_config(&model).unwrap();
        let want = fixture_json();
        assert_eq!(got, want, "every key, widths included, as the fixture has it");
        assert!(got.get(LAYER_WIDTHS_KEY).is_none());
    }

    #[test]
    fn gguf_models_carry_the_config_their_metadata_describes() {
        let gguf = crate::load(&fixture().join("../gguf/llama-gqa.gguf")).unwrap();
        let got = hf_config(&gguf).unwrap();
        let want = fixture_json();
        for key in [
            "architectures",
            "model_type",
            "head_dim",
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_key_value_heads",
            "num_hidden_layers",
            "vocab_size",
            "tie_word_embeddings",
            "rms_norm_eps",
            "rope_parameters",
            "attention_bias",
            "mlp_bias",
            "max_position_embeddings",
        ] {
            assert_eq!(got[key], want[key], "{key}");
        }
        let path = Path::new("config.json");
        assert_eq!(LlamaConfig::from_hf_json(path, &got).unwrap(), LlamaConfig::from_hf_json(path, &want).unwrap());
    }

    #[test]
    fn layers_without_attention_or_mlp_pass_the_residual_through() {
        let json = with_widths(serde_json::json!([w(8, 2, 176), w(0, 0, 176), w(8, 2, 0), w(8, 2, 176)]));
        let config = LlamaConfig::from_hf_json(&fixture().join("config.json"), &json).unwrap();
        let weights = HfWeights::open(&fixture()).unwrap();
        let info = ModelInfo { source: fixture(), format: prunec_ir::SourceFormat::Hf, config: Some(Config::shared(config.clone(), json.clone())), ..Default::default() };
        let model = build(&config, &weights, info).unwrap();
        let names: Vec<String> = model.graph.node_ids().into_iter().map(|id| model.graph.node(id).unwrap().name.clone()).collect();
        assert!(!names.iter().any(|n| n.starts_with("model.layers.1.self_attn") || n == "model.layers.1.input_layernorm"));
        assert!(names.iter().any(|n| n == "model.layers.1.mlp_residual"));
        assert!(!names.iter().any(|n| n.starts_with("model.layers.2.mlp")));
        assert!(names.iter().any(|n| n == "model.layers.2.attn_residual"));
        assert!(model.params.get("model.layers.1.self_attn.q_proj.weight").is_none());
        let widths = hf_config(&model).unwrap()[LAYER_WIDTHS_KEY].clone();
        assert_eq!(widths, serde_json::json!([w(8, 2, 176), w(0, 0, 176), w(8, 2, 0), w(8, 2, 176)]));
    }
}
