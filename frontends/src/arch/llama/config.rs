//! LLaMA's configuration: [`LlamaConfig`] read from a `config.json` (every value the
//! computation uses checked, errors naming the file and the key), the widths of each layer
//! ([`LayerWidths`], from [`LAYER_WIDTHS_KEY`] when layers differ), the [`Variant`] a LLaMA-like
//! family sets, the parameters a configuration implies, and the configuration written back as
//! a transformers `config.json` (rotary scaling included).

use std::path::Path;

use prunec_ir::RopeScaling;

use super::{Family, LLAMA};
use crate::builder::{get_usize, need_usize, shortest_f64};
use crate::error::{FrontendError, Result};

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
    /// Rotary scaling (`rope_scaling`, or `rope_parameters` in transformers 5: `linear`,
    /// `dynamic`, `yarn`, `llama3`).
    pub rope_scaling: RopeScaling,
    /// Whether the LM head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v/o have biases.
    pub attention_bias: bool,
    /// Whether gate/up/down have biases.
    pub mlp_bias: bool,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Each layer's widths when they differ ([`LAYER_WIDTHS_KEY`]); `None`: every layer has
    /// `num_heads`, `num_kv_heads` and `intermediate_size` above (which are otherwise the
    /// maxima over the layers).
    pub layer_widths: Option<Vec<LayerWidths>>,
    /// What a LLaMA-like family changes in LLaMA's attention (nothing for LLaMA itself).
    pub variant: Variant,
}

/// What the LLaMA-like families (Qwen2, Qwen3, Mistral) change in LLaMA's attention; each
/// fills it from its own configuration, and the lowering, the parameters and the HF writer of
/// this module read it. The default is LLaMA's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Variant {
    /// q/k/v have biases whatever `attention_bias` says, o_proj only with it (Qwen2).
    pub qkv_bias: bool,
    /// Each head of q and of k goes through an RMSNorm of its own width (`q_norm`, `k_norm`,
    /// `[head_dim]`, the model's `rms_norm_eps`) after the projection, before the rotary
    /// embedding (Qwen3's: the norms' weights follow no head, since the heads' width is pinned
    /// by `SplitHeads`, and pruning keeps them whole).
    pub qk_norm: bool,
    /// Every layer's attention sees only the last `w` positions (Mistral's `sliding_window`).
    pub sliding_window: Option<usize>,
}

/// The `config.json` key listing every layer's widths, for models whose layers differ:
/// `[{"num_attention_heads": .., "num_key_value_heads": .., "intermediate_size": ..}, ...]`,
/// plus [`QUERY_HEADS_PER_KV_KEY`] in a layer whose key/value heads serve different numbers
/// of query heads.
pub const LAYER_WIDTHS_KEY: &str = crate::builder::LAYER_WIDTHS_KEY;

/// The key, in a [`LAYER_WIDTHS_KEY`] entry, of how many query heads each key/value head
/// serves (in order; query heads are grouped by their key/value head), when they differ.
pub const QUERY_HEADS_PER_KV_KEY: &str = "query_heads_per_kv_head";

/// The widths of one decoder layer (`head_dim` is the model's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerWidths {
    /// Query heads; 0: the layer has no attention branch.
    pub num_heads: usize,
    /// Key/value heads (0 exactly when `num_heads` is).
    pub num_kv_heads: usize,
    /// MLP channels; 0: the layer has no MLP branch.
    pub intermediate_size: usize,
    /// Query heads served by each key/value head, when they differ (query heads pruned
    /// unevenly); `None`: `num_heads / num_kv_heads` each.
    pub query_heads_per_kv: Option<Vec<usize>>,
}

impl LayerWidths {
    /// Whether the layer has an attention branch.
    pub fn has_attention(&self) -> bool {
        self.num_heads > 0
    }

    /// Whether the layer has an MLP branch.
    pub fn has_mlp(&self) -> bool {
        self.intermediate_size > 0
    }

    /// The widths as a `prunec_layer_widths` entry.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "intermediate_size": self.intermediate_size,
        });
        if let (Some(map), Some(obj)) = (&self.query_heads_per_kv, json.as_object_mut()) {
            obj.insert(QUERY_HEADS_PER_KV_KEY.into(), map.clone().into());
        }
        json
    }

    /// Copies of each key/value head for its query heads (`repeat_kv`).
    pub fn kv_copies(&self) -> Vec<usize> {
        match &self.query_heads_per_kv {
            Some(map) => map.clone(),
            None => vec![self.num_heads / self.num_kv_heads.max(1); self.num_kv_heads],
        }
    }
}

impl LlamaConfig {
    /// Reads an HF `config.json` (transformers 4 and 5 formats), with each layer's widths
    /// from [`LAYER_WIDTHS_KEY`] when it is there.
    pub fn from_hf_json(path: &Path, json: &serde_json::Value) -> Result<LlamaConfig> {
        Self::read_family(path, json, &LLAMA)
    }

    /// Reads the keys the LLaMA-like `family` shares with LLaMA from an HF `config.json`
    /// (`attention_bias` and `mlp_bias` where the family has them, else false), with each
    /// layer's widths from [`LAYER_WIDTHS_KEY`]; `variant` is LLaMA's, for the family to fill.
    pub fn read_family(path: &Path, json: &serde_json::Value, family: &Family) -> Result<LlamaConfig> {
        let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
        let need = |key: &str| need_usize(path, json, key);
        let hidden_size = need("hidden_size")?;
        let num_heads = need("num_attention_heads")?;
        // every other key the computation reads: its type, and (in `validate`) its range
        use crate::builder::{opt_bool, opt_f64, opt_str, opt_usize};
        let rope_parameters = match json.get("rope_parameters") {
            None | Some(serde_json::Value::Null) => None,
            Some(r) if r.is_object() => Some(r),
            Some(_) => return Err(bad("`rope_parameters` must be an object".into())),
        };
        let rope_theta = match opt_f64(path, json, "rope_theta")? {
            Some(t) => t,
            None => rope_parameters.map(|r| opt_f64(path, r, "rope_theta")).transpose()?.flatten().unwrap_or(10000.0),
        };
        match opt_str(path, json, "hidden_act")? {
            None | Some("silu" | "swish") => {}
            Some(other) => {
                return Err(bad(format!(
                    "hidden_act `{other}` is not supported for {} models: prunec computes SiLU (`silu`, `swish`)",
                    family.model_type
                )))
            }
        }
        let num_kv_heads = opt_usize(path, json, "num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = opt_usize(path, json, "head_dim")?.unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0));
        let rms_norm_eps = opt_f64(path, json, "rms_norm_eps")?.unwrap_or(1e-6);
        let tie_word_embeddings = opt_bool(path, json, "tie_word_embeddings")?.unwrap_or(false);
        let flag = |present: bool, key: &str| -> Result<bool> {
            Ok(present && opt_bool(path, json, key)?.unwrap_or(false))
        };
        let attention_bias = flag(family.attention_bias_key, "attention_bias")?;
        let mlp_bias = flag(family.mlp_bias_key, "mlp_bias")?;
        let max_position_embeddings = opt_usize(path, json, "max_position_embeddings")?.unwrap_or(2048);
        let rope_scaling = read_rope_scaling(path, json, rope_parameters, max_position_embeddings)?;
        crate::builder::check_positive(path, "rms_norm_eps", rms_norm_eps)?;
        crate::builder::check_positive(path, "rope_theta", rope_theta)?;
        let layer_widths = match json.get(LAYER_WIDTHS_KEY) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Array(entries)) => {
                let mut layers = Vec::with_capacity(entries.len());
                for (l, entry) in entries.iter().enumerate() {
                    let width = |key: &str| -> Result<usize> {
                        get_usize(entry, key).ok_or_else(|| {
                            bad(format!("`{LAYER_WIDTHS_KEY}[{l}]`: `{key}` is missing or not a non-negative integer"))
                        })
                    };
                    let query_heads_per_kv = match entry.get(QUERY_HEADS_PER_KV_KEY) {
                        None | Some(serde_json::Value::Null) => None,
                        Some(serde_json::Value::Array(v)) => Some(
                            v.iter()
                                .map(|c| c.as_u64().and_then(|c| usize::try_from(c).ok()))
                                .collect::<Option<Vec<usize>>>()
                                .ok_or_else(|| {
                                    bad(format!("`{LAYER_WIDTHS_KEY}[{l}]`: `{QUERY_HEADS_PER_KV_KEY}` must list non-negative integers"))
                                })?,
                        ),
                        Some(_) => return Err(bad(format!("`{LAYER_WIDTHS_KEY}[{l}]`: `{QUERY_HEADS_PER_KV_KEY}` is not a list"))),
                    };
                    layers.push(LayerWidths {
                        num_heads: width("num_attention_heads")?,
                        num_kv_heads: width("num_key_value_heads")?,
                        intermediate_size: width("intermediate_size")?,
                        query_heads_per_kv,
                    });
                }
                Some(layers)
            }
            Some(_) => return Err(bad(format!("`{LAYER_WIDTHS_KEY}` is not a list (one entry per layer)"))),
        };
        let cfg = LlamaConfig {
            vocab_size: need("vocab_size")?,
            hidden_size,
            intermediate_size: need("intermediate_size")?,
            num_layers: need("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: rms_norm_eps as f32,
            rope_theta: rope_theta as f32,
            rope_scaling,
            tie_word_embeddings,
            attention_bias,
            mlp_bias,
            max_position_embeddings,
            layer_widths,
            variant: Variant::default(),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Whether q/k/v have biases (`attention_bias`, or the family's [`Variant::qkv_bias`]).
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.variant.qkv_bias
    }

    /// The widths of layer `l`.
    pub fn layer(&self, l: usize) -> LayerWidths {
        match self.layer_widths.as_ref().and_then(|w| w.get(l)) {
            Some(w) => w.clone(),
            None => LayerWidths {
                num_heads: self.num_heads,
                num_kv_heads: self.num_kv_heads,
                intermediate_size: self.intermediate_size,
                query_heads_per_kv: None,
            },
        }
    }

    /// Checks that the sizes are consistent.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(FrontendError::BadConfig { path: path.to_path_buf(), reason });
        let mut positive = vec![
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_layers),
            ("head_dim", self.head_dim),
        ];
        if self.layer_widths.is_none() {
            // With per-layer widths the top-level ones are only the maxima, checked per layer.
            positive.extend([
                ("intermediate_size", self.intermediate_size),
                ("num_attention_heads", self.num_heads),
                ("num_key_value_heads", self.num_kv_heads),
            ]);
        }
        crate::builder::check_sizes(path, &positive)?;
        // f32 as the computation uses them: 1e-50 is 0, 1e39 is infinite
        crate::builder::check_positive(path, "rms_norm_eps", f64::from(self.rms_norm_eps))?;
        crate::builder::check_positive(path, "rope_theta", f64::from(self.rope_theta))?;
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for rotary embeddings", self.head_dim));
        }
        if matches!(self.rope_scaling, RopeScaling::Dynamic { .. }) && self.head_dim <= 2 {
            return bad(format!("head_dim {} is too small for `dynamic` rotary scaling (its exponent is d / (d - 2))", self.head_dim));
        }
        let Some(layers) = &self.layer_widths else {
            if !self.num_heads.is_multiple_of(self.num_kv_heads) {
                return bad(format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_heads, self.num_kv_heads
                ));
            }
            return Ok(());
        };
        if layers.len() != self.num_layers {
            return bad(format!(
                "`{LAYER_WIDTHS_KEY}` has {} entries for {} layers (num_hidden_layers)",
                layers.len(),
                self.num_layers
            ));
        }
        for (l, w) in layers.iter().enumerate() {
            let at = format!("`{LAYER_WIDTHS_KEY}[{l}]`");
            for (k, v) in [
                ("num_attention_heads", w.num_heads),
                ("num_key_value_heads", w.num_kv_heads),
                ("intermediate_size", w.intermediate_size),
            ] {
                if v > 1 << 24 {
                    return bad(format!("{at}: `{k}` = {v} is implausibly large"));
                }
            }
            if (w.num_heads == 0) != (w.num_kv_heads == 0) {
                return bad(format!(
                    "{at}: num_attention_heads {} and num_key_value_heads {} must be both zero (no attention) or both positive",
                    w.num_heads, w.num_kv_heads
                ));
            }
            if let Some(map) = &w.query_heads_per_kv {
                if map.len() != w.num_kv_heads || map.iter().sum::<usize>() != w.num_heads || map.contains(&0) {
                    return bad(format!(
                        "{at}: `{QUERY_HEADS_PER_KV_KEY}` {map:?} must give each of the {} key/value heads at least one of the {} query heads",
                        w.num_kv_heads, w.num_heads
                    ));
                }
            } else if w.num_kv_heads > 0 && !w.num_heads.is_multiple_of(w.num_kv_heads) {
                return bad(format!(
                    "{at}: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    w.num_heads, w.num_kv_heads
                ));
            }
        }
        Ok(())
    }

    /// Parameter names and shapes, in the order HF lists them. A layer without attention heads
    /// has no attention parameters (its input norm included), one without MLP channels no MLP
    /// parameters (its post-attention norm included).
    pub fn expected_params(&self) -> Vec<(String, Vec<usize>)> {
        let (h, v) = (self.hidden_size, self.vocab_size);
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..self.num_layers {
            let w = self.layer(l);
            let (q, kv, i) = (w.num_heads * self.head_dim, w.num_kv_heads * self.head_dim, w.intermediate_size);
            let p = format!("model.layers.{l}");
            if w.has_attention() {
                out.push((format!("{p}.input_layernorm.weight"), vec![h]));
                for (n, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                    out.push((format!("{p}.self_attn.{n}.weight"), vec![rows, h]));
                    if self.qkv_bias() {
                        out.push((format!("{p}.self_attn.{n}.bias"), vec![rows]));
                    }
                }
                out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
                if self.attention_bias {
                    out.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
                }
                if self.variant.qk_norm {
                    for n in ["q_norm", "k_norm"] {
                        out.push((format!("{p}.self_attn.{n}.weight"), vec![self.head_dim]));
                    }
                }
            }
            if w.has_mlp() {
                out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
                for (n, shape) in [("gate_proj", vec![i, h]), ("up_proj", vec![i, h]), ("down_proj", vec![h, i])] {
                    let rows = shape[0];
                    out.push((format!("{p}.mlp.{n}.weight"), shape));
                    if self.mlp_bias {
                        out.push((format!("{p}.mlp.{n}.bias"), vec![rows]));
                    }
                }
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }

    /// The configuration as a transformers `config.json` for `LlamaForCausalLM` (the keys
    /// transformers 5 writes, and `rope_theta` for transformers 4; `head_dim` always explicit;
    /// [`LAYER_WIDTHS_KEY`] when layers differ). The GGUF frontend's models carry this as their
    /// `config_json`.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": self.attention_bias,
            "attention_dropout": 0.0,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "mlp_bias": self.mlp_bias,
            "model_type": "llama",
            "num_attention_heads": self.num_heads,
            "num_hidden_layers": self.num_layers,
            "num_key_value_heads": self.num_kv_heads,
            "pretraining_tp": 1,
            "rms_norm_eps": shortest_f64(self.rms_norm_eps),
            "rope_parameters": rope_parameters_json(self.rope_theta, &self.rope_scaling),
            // transformers 4 reads the rotary base here only (it ignores `rope_parameters` and
            // would take 10000); transformers 5 reads `rope_parameters` first
            "rope_theta": shortest_f64(self.rope_theta),
            "tie_word_embeddings": self.tie_word_embeddings,
            "use_cache": true,
            "vocab_size": self.vocab_size,
        });
        if let Some(obj) = json.as_object_mut() {
            if self.rope_scaling != RopeScaling::None {
                obj.insert("rope_scaling".into(), rope_scaling_json(&self.rope_scaling));
            }
            if let Some(layers) = &self.layer_widths {
                obj.insert(LAYER_WIDTHS_KEY.into(), layers.iter().map(LayerWidths::to_json).collect());
            }
        }
        json
    }
}

/// A rotary scaling as transformers 4 writes it under `rope_scaling` (null without one).
pub fn rope_scaling_json(scaling: &RopeScaling) -> serde_json::Value {
    let f = |v: f32| serde_json::Value::from(shortest_f64(v));
    match *scaling {
        RopeScaling::None => serde_json::Value::Null,
        RopeScaling::Linear { factor } => serde_json::json!({ "rope_type": "linear", "factor": f(factor) }),
        RopeScaling::Dynamic { factor, .. } => serde_json::json!({ "rope_type": "dynamic", "factor": f(factor) }),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions } => serde_json::json!({
            "rope_type": "llama3",
            "factor": f(factor),
            "low_freq_factor": f(low_freq_factor),
            "high_freq_factor": f(high_freq_factor),
            "original_max_position_embeddings": original_max_positions,
        }),
        RopeScaling::Yarn { factor, original_max_positions, beta_fast, beta_slow, truncate, attention_factor } => serde_json::json!({
            "rope_type": "yarn",
            "factor": f(factor),
            "original_max_position_embeddings": original_max_positions,
            "beta_fast": f(beta_fast),
            "beta_slow": f(beta_slow),
            "truncate": truncate,
            "attention_factor": f(attention_factor),
        }),
    }
}

/// `rope_parameters` as transformers 5 writes it: the base, the type and the scaling's keys.
fn rope_parameters_json(theta: f32, scaling: &RopeScaling) -> serde_json::Value {
    let mut json = serde_json::json!({ "rope_theta": shortest_f64(theta), "rope_type": "default" });
    if let (serde_json::Value::Object(keys), Some(obj)) = (rope_scaling_json(scaling), json.as_object_mut()) {
        obj.extend(keys);
    }
    json
}

/// The rotary scaling of an HF config: the first of `rope_scaling` (transformers 4) and
/// `rope_parameters` (transformers 5) whose `rope_type` (or `type`) is not `default`, read as
/// transformers reads it (`max_positions`: the config's `max_position_embeddings`).
fn read_rope_scaling(
    path: &Path,
    json: &serde_json::Value,
    rope_parameters: Option<&serde_json::Value>,
    max_positions: usize,
) -> Result<RopeScaling> {
    use crate::builder::{opt_bool, opt_f64, opt_str, opt_usize};
    let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
    let sources = [("rope_scaling", json.get("rope_scaling")), ("rope_parameters", rope_parameters)];
    for (key, scaling) in sources.into_iter().filter_map(|(k, s)| s.filter(|s| !s.is_null()).map(|s| (k, s))) {
        if !scaling.is_object() {
            return Err(bad(format!("`{key}` must be an object")));
        }
        let kind = match opt_str(path, scaling, "rope_type")? {
            Some(k) => Some(k),
            None => opt_str(path, scaling, "type")?,
        };
        let Some(kind) = kind.filter(|k| *k != "default") else { continue };
        // a number of the scaling, positive and finite, named `{key}.{name}` in errors
        let number = |name: &str, default: Option<f64>| -> Result<f32> {
            let v = opt_f64(path, scaling, name).map_err(|_| bad(format!("`{key}.{name}` must be a number")))?;
            let v = v.or(default).ok_or_else(|| bad(format!("`{key}.{name}` is missing (rope type `{kind}`)")))?;
            let f = v as f32;
            if !(f.is_finite() && f > 0.0) {
                return Err(bad(format!("`{key}.{name}` = {v} must be a positive number")));
            }
            Ok(f)
        };
        let positions = |default: Option<usize>| -> Result<usize> {
            let name = "original_max_position_embeddings";
            let v = opt_usize(path, scaling, name).map_err(|_| bad(format!("`{key}.{name}` must be a non-negative integer")))?;
            match v.or(default) {
                Some(v) if v > 0 => Ok(v),
                Some(_) => Err(bad(format!("`{key}.{name}` must be positive"))),
                None => Err(bad(format!("`{key}.{name}` is missing (rope type `{kind}`)"))),
            }
        };
        return Ok(match kind {
            "linear" => RopeScaling::Linear { factor: number("factor", None)? },
            "dynamic" => RopeScaling::Dynamic { factor: number("factor", None)?, max_positions },
            "llama3" => {
                let (low_freq_factor, high_freq_factor) = (number("low_freq_factor", None)?, number("high_freq_factor", None)?);
                if low_freq_factor == high_freq_factor {
                    return Err(bad(format!("`{key}`: low_freq_factor and high_freq_factor must differ")));
                }
                RopeScaling::Llama3 {
                    factor: number("factor", None)?,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_positions: positions(None)?,
                }
            }
            "yarn" => {
                let factor = number("factor", None)?;
                let mscale = |scale: f64, m: f64| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
                let attention_factor = match opt_f64(path, scaling, "attention_factor").map_err(|_| bad(format!("`{key}.attention_factor` must be a number")))? {
                    Some(_) => number("attention_factor", None)?,
                    None => {
                        let m = opt_f64(path, scaling, "mscale").map_err(|_| bad(format!("`{key}.mscale` must be a number")))?;
                        let all = opt_f64(path, scaling, "mscale_all_dim").map_err(|_| bad(format!("`{key}.mscale_all_dim` must be a number")))?;
                        let f = f64::from(factor);
                        match (m, all) {
                            (Some(m), Some(all)) if m != 0.0 && all != 0.0 => (mscale(f, m) / mscale(f, all)) as f32,
                            _ => mscale(f, 1.0) as f32,
                        }
                    }
                };
                RopeScaling::Yarn {
                    factor,
                    original_max_positions: positions(Some(max_positions))?,
                    beta_fast: number("beta_fast", Some(32.0))?,
                    beta_slow: number("beta_slow", Some(1.0))?,
                    truncate: opt_bool(path, scaling, "truncate").map_err(|_| bad(format!("`{key}.truncate` must be true or false")))?.unwrap_or(true),
                    attention_factor,
                }
            }
            other => {
                return Err(bad(format!(
                    "rope type `{other}` is not supported yet (`default`, `linear`, `dynamic`, `yarn`, `llama3`)"
                )))
            }
        });
    }
    Ok(RopeScaling::None)
}
