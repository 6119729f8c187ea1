//! GGUF files of `general.architecture = gemma3`: read, lowered through the Gemma 3 builder
//! (the `gemma3.*` metadata becomes a [`Gemma3Config`], llama.cpp's tensor names become HF's),
//! and written ([`plan`]) as llama.cpp runs them.
//!
//! llama.cpp's converter stores every Gemma norm weight as `w + 1` (transformers' GGUF loader
//! subtracts 1 again): prunec reads them as stored and lowers their norms with offset 0, which
//! computes `x̂ · (w + 1)` exactly as llama.cpp does; the HF writer turns them back into
//! `(1 + w)` norms ([`super::normalise_norm_offsets`]), the GGUF writer stores `w + offset`.
//! What llama.cpp fixes in code rather than metadata, as prunec reads it: one global layer in
//! six unless `sliding_window_pattern` says otherwise (a number, or one flag per layer), no
//! sliding window at all without `attention.sliding_window`, the sliding layers' rotary base
//! `rope.freq_base_swa` (10,000 without it), and the attention scale ([`query_scalar`]:
//! `1/√key_length`, but `1/√(hidden/heads)` for a model of 62 layers, Gemma 3 27B's). q/k rows are
//! not permuted (llama.cpp rotates Gemma's q/k as NeoX does, HF's half-split layout).
//!
//! llama.cpp's `gemma3` builds every layer with the first layer's widths (`head_count`,
//! `head_count_kv`, `feed_forward_length`: checked in llama.cpp 0.3.36's sources, where the
//! tensors are created with those shapes), so a pruned model whose layers differ is written
//! with every layer padded to one width by zero heads and channels ([`SharedWidths`]): exact,
//! since a zero query head attends uniformly to zero values (or to values an `attn_output`
//! column of zeros discards), its q/k norms map zeros to zeros, and a zero MLP channel adds
//! `GELU(0) · 0 = 0` through a zero `ffn_down` column.

use std::collections::HashMap;
use std::path::Path;

use prunec_ir::{Model, Op, UnaryOp};

use super::{Gemma3Config, LayerType};
use crate::arch::gguf_out::{GgufPlan, Planned, PlannedTensor};
pub use crate::arch::gguf_pad::SharedWidths;
use crate::arch::gguf_pad::{head_rows, padded_channels, Padding};
use crate::arch::{Config, GgufWeights};
use crate::error::{FrontendError, Result};
use crate::gguf::{GgufFile, GgufValue};

/// The number llama.cpp's `gemma3` divides attention scores by the root of: the model's type
/// decides it (`LLM_TYPE_27B`, a model of 62 layers: `hidden / heads`, integer division, of
/// the first layer's heads), else `key_length`.
pub fn query_scalar(layers: usize, hidden: usize, heads: usize, head_dim: usize) -> f64 {
    if layers == 62 && heads > 0 {
        (hidden / heads) as f64
    } else {
        head_dim as f64
    }
}

/// The GGUF name of an HF Gemma 3 tensor.
pub fn gguf_name(hf: &str) -> Option<String> {
    crate::arch::gguf_tensor_name(hf, super::super::llama::gguf::LLAMA_DIRECT, "model.layers.", |module| {
        Some(match module {
            "input_layernorm" => "attn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "post_attention_layernorm" => "post_attention_norm",
            "pre_feedforward_layernorm" => "ffn_norm",
            "post_feedforward_layernorm" => "post_ffw_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        })
    })
}

/// The Gemma 3 configuration a GGUF file's `gemma3.*` metadata describes.
pub fn config_from_metadata(file: &GgufFile) -> Result<Gemma3Config> {
    let key = |k: &str| format!("gemma3.{k}");
    let bad = |reason: String| FrontendError::BadConfig { path: file.path().to_path_buf(), reason };
    let opt_usize = |k: &str| if file.get(k).is_some() { file.get_usize(k).map(Some) } else { Ok(None) };
    let opt_f32 = |k: &str| if file.get(k).is_some() { file.get_f32(k).map(Some) } else { Ok(None) };
    let hidden_size = file.get_usize(&key("embedding_length"))?;
    let num_heads = file.get_usize(&key("attention.head_count"))?;
    let num_layers = file.get_usize(&key("block_count"))?;
    let vocab_size = match opt_usize(&key("vocab_size"))? {
        Some(v) => v,
        None => match file.tensor_info("token_embd.weight") {
            Some(t) => t.shape().first().copied().unwrap_or(0),
            None => return Err(FrontendError::MissingTensor { path: file.path().to_path_buf(), tensor: "token_embd.weight".into() }),
        },
    };
    let head_dim = opt_usize(&key("attention.key_length"))?.unwrap_or(256);
    let swa_window = opt_usize(&key("attention.sliding_window"))?.filter(|&w| w > 0);
    let layer_types = match swa_window {
        None => vec![LayerType::Full; num_layers.min(1 << 20)],
        Some(_) => swa_pattern(file, &key("attention.sliding_window_pattern"), num_layers)?,
    };
    if let Some(v) = opt_usize(&key("attention.value_length"))? {
        if v != head_dim {
            return Err(bad(format!("`gemma3.attention.value_length` {v} differs from `gemma3.attention.key_length` {head_dim}")));
        }
    }
    if let Some(kind) = file.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
        if kind != "none" {
            return Err(bad(format!("`gemma3.rope.scaling.type` is `{kind}`: rope scaling is not supported yet")));
        }
    }
    for k in ["final_logit_softcapping", "attn_logit_softcapping"] {
        if let Some(v) = opt_f32(&key(k))? {
            return Err(bad(format!("`gemma3.{k}` = {v}: logit soft-capping is not supported")));
        }
    }
    let config = Gemma3Config {
        vocab_size,
        hidden_size,
        intermediate_size: file.get_usize(&key("feed_forward_length"))?,
        num_layers,
        num_heads,
        num_kv_heads: opt_usize(&key("attention.head_count_kv"))?.unwrap_or(num_heads),
        head_dim,
        rms_norm_eps: opt_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
        rope_theta: opt_f32(&key("rope.freq_base"))?.unwrap_or(1_000_000.0),
        rope_local_base_freq: opt_f32(&key("rope.freq_base_swa"))?.unwrap_or(10_000.0),
        query_pre_attn_scalar: query_scalar(num_layers, hidden_size, num_heads, head_dim),
        sliding_window: swa_window.unwrap_or(4096),
        layer_types,
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        attention_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
        max_position_embeddings: opt_usize(&key("context_length"))?.unwrap_or(131_072),
        layer_widths: None,
    };
    config.validate(file.path())?;
    Ok(config)
}

/// Which of `layers` layers slide, as llama.cpp reads `key` (`sliding_window_pattern`): one
/// flag per layer (true or non-zero: sliding), or a number `n` (every `n`-th layer global; 0:
/// all sliding), or 6 without it.
fn swa_pattern(file: &GgufFile, key: &str, layers: usize) -> Result<Vec<LayerType>> {
    let bad = |reason: String| FrontendError::BadConfig { path: file.path().to_path_buf(), reason: format!("`{key}` {reason}") };
    let layers_capped = layers.min(1 << 20);
    match file.get(key) {
        None => Ok(LayerType::every(6, layers_capped)),
        Some(GgufValue::Array(items)) => {
            if items.len() != layers {
                return Err(bad(format!("lists {} layers, not {layers}", items.len())));
            }
            items
                .iter()
                .map(|v| match v.as_bool().or_else(|| v.as_u64().map(|n| n != 0)) {
                    Some(true) => Ok(LayerType::Sliding),
                    Some(false) => Ok(LayerType::Full),
                    None => Err(bad(format!("holds {v}, not a flag"))),
                })
                .collect()
        }
        Some(_) => match file.get_usize(key)? {
            0 => Ok(vec![LayerType::Sliding; layers_capped]),
            n => Ok(LayerType::every(n, layers_capped)),
        },
    }
}

/// Reads GGUF file `file` (at `path`) of a Gemma 3 model.
pub fn load(path: &Path, file: GgufFile) -> Result<Model> {
    let config = config_from_metadata(&file)?;
    let info = crate::arch::gguf_model_info(path, &file, "gemma3_text".to_string(), config.num_layers)?;
    let read: Vec<String> = config.expected_params().into_iter().filter_map(|(hf, _)| gguf_name(&hf)).collect();
    crate::arch::gguf_all_read(&file, &read)?;
    super::build(&config, &GgufWeights { file, names: |hf: &str| gguf_name(hf).map(|n| (n, None)) }, info, 0.0)
}

/// The GGUF file llama.cpp's `gemma3` runs for Gemma 3 `model`, widths read from its
/// parameters. Layers of different widths are padded to [`SharedWidths`] (see the module's
/// doc) and the plan says by how much; MLP channels are whole blocks of `block` (the matrices'
/// quantization blocks). Norm weights are written as llama.cpp's `w + 1` (whatever offset the
/// model's norms add), the q norms multiplied by `√(s/q)`, `q` the attention's scalar and `s`
/// llama.cpp's ([`query_scalar`]): the same attention scores, as the rotary embedding is linear.
/// Refused, naming why: hidden channels pruned (llama.cpp scales the embedding by `√` of the
/// width it reads), attention biases (llama.cpp's `gemma3` has none), a model without heads.
pub fn plan(model: &Model, block: usize) -> Result<GgufPlan> {
    let path = super::config_path(model);
    let config = &Config::<Gemma3Config>::of(model, &path)?.typed;
    let bad = |reason: String| FrontendError::BadConfig { path: path.clone(), reason: format!("writing GGUF: {reason}") };
    let source = &model.info.source;
    let missing = |hf: &str| FrontendError::MissingTensor { path: source.clone(), tensor: hf.into() };
    let shape = |name: &str| model.params.get(name).map(|p| p.shape.clone());
    let embed = "model.embed_tokens.weight";
    let (vocab, hidden) = match shape(embed).as_deref() {
        Some(&[v, h]) => (v, h),
        Some(other) => return Err(FrontendError::BadTensor { path: source.clone(), tensor: embed.into(), reason: format!("shape {other:?} is not [vocab, hidden]") }),
        None => return Err(missing(embed)),
    };
    if config.attention_bias {
        return Err(bad("its projections have biases, which llama.cpp's gemma3 does not read".into()));
    }
    // what the graph computes: each norm's offset, each layer's attention scale and key/value copies
    let mut offsets: HashMap<String, f32> = HashMap::new();
    let mut scales: HashMap<String, f32> = HashMap::new();
    let mut repeats: HashMap<String, Vec<usize>> = HashMap::new();
    for id in model.graph.node_ids() {
        let Ok(node) = model.graph.node(id) else { continue };
        match &node.op {
            Op::RmsNorm { offset, .. } => {
                let weight = model.graph.inputs(id).get(1).and_then(|w| model.graph.node(w.node).ok()).map(|n| &n.op);
                if let Some(Op::Param { name, .. }) = weight {
                    offsets.insert(name.clone(), *offset);
                }
            }
            Op::Attention(a) => {
                scales.insert(node.name.clone(), a.scale);
            }
            Op::RepeatHeads { copies } => {
                repeats.insert(node.name.clone(), copies.clone());
            }
            Op::Unary(UnaryOp::Scale(s)) if node.name == super::EMBED_SCALE_NODE => {
                let dtype = model.params.get(embed).map_or(prunec_ir::DType::F32, |p| p.dtype);
                // llama.cpp's `sqrtf(n_embd)`; transformers' rounding of it to a 16-bit embedding's type differs as little as llama.cpp's converter lets it
                if *s != (hidden as f32).sqrt() && *s != super::embedding_scale(hidden, dtype) {
                    return Err(bad(format!(
                        "the embedding is scaled by {s} (√ of the hidden size {} it was trained with), and llama.cpp scales it by √{hidden}, of the width the file holds: prunec does not write Gemma 3 models whose hidden channels were pruned",
                        config.hidden_size
                    )));
                }
            }
            _ => {}
        }
    }
    let (hd, n) = (config.head_dim, config.num_layers);
    let layer = |l: usize| format!("model.layers.{l}");
    // each layer's widths, from its parameters (an emptied branch has none)
    let mut copies = Vec::with_capacity(n);
    let mut channels = Vec::with_capacity(n);
    for l in 0..n {
        let p = layer(l);
        let rows = |m: &str| shape(&format!("{p}.{m}.weight")).and_then(|s| s.first().copied()).unwrap_or(0);
        let (q, kv) = (rows("self_attn.q_proj") / hd.max(1), rows("self_attn.k_proj") / hd.max(1));
        let c = repeats.get(&format!("{p}.self_attn.k_repeat")).cloned().unwrap_or_else(|| vec![1; kv]);
        if c.len() != kv || c.iter().sum::<usize>() != q {
            return Err(bad(format!("layer {l}: its {q} query heads are not served by its {kv} key/value heads ({c:?} each)")));
        }
        copies.push(c);
        channels.push(rows("mlp.gate_proj"));
    }
    let shared = SharedWidths::of(&copies, &channels, block).ok_or_else(|| bad("no layer has attention heads left".into()))?;
    let heads = shared.heads();
    let scalar = query_scalar(n, hidden, heads, hd);
    let param = |hf: String, rows: Option<Vec<Option<usize>>>, cols: Option<Vec<Option<usize>>>| Planned::param(model, hf, rows, cols);
    // a norm as llama.cpp multiplies by it: `w + offset`, times `factor`; ones where its branch was emptied
    let norm = |hf: &str, width: usize, factor: f32, emptied: bool| -> Result<Planned> {
        let values: Vec<f32> = match model.params.get(hf) {
            None if emptied => vec![1.0; width],
            None => return Err(missing(hf)),
            Some(_) => {
                let offset = offsets.get(hf).copied().unwrap_or(1.0);
                let w = model.params.read_f32(hf).map_err(|e| FrontendError::BadTensor { path: source.clone(), tensor: hf.into(), reason: e.to_string() })?;
                w.iter().map(|&w| (w + offset) * factor).collect()
            }
        };
        Ok(Planned::Values { shape: vec![values.len()], values })
    };
    let zeros = |shape: Vec<usize>| Planned::Values { values: vec![0.0; shape.iter().product()], shape };
    let mut tensors = Vec::new();
    let mut push = |hf: &str, data: Planned| -> Result<()> {
        let name = gguf_name(hf).ok_or_else(|| bad(format!("llama.cpp has no name for `{hf}`")))?;
        tensors.push(PlannedTensor { name, data });
        Ok(())
    };
    push(embed, param(embed.into(), None, None)?)?;
    let mut padding = Padding::default();
    for l in 0..n {
        let p = layer(l);
        let w = |m: &str| format!("{p}.{m}.weight");
        let (kv_slots, q_slots) = padding.layer(&shared, &copies[l], channels[l]);
        let (no_attention, no_mlp) = (copies[l].is_empty(), channels[l] == 0);
        // llama.cpp multiplies q by 1/√scalar: the q norm makes up the difference to the model's scale
        let factor = scales.get(&format!("{p}.self_attn")).map_or(1.0, |&s| (f64::from(s) * scalar.sqrt()) as f32);
        push(&w("input_layernorm"), norm(&w("input_layernorm"), hidden, 1.0, no_attention)?)?;
        if no_attention {
            push(&w("self_attn.q_proj"), zeros(vec![heads * hd, hidden]))?;
            push(&w("self_attn.k_proj"), zeros(vec![shared.kv * hd, hidden]))?;
            push(&w("self_attn.v_proj"), zeros(vec![shared.kv * hd, hidden]))?;
            push(&w("self_attn.o_proj"), zeros(vec![hidden, heads * hd]))?;
        } else {
            let (q_map, kv_map) = (head_rows(&q_slots, hd), head_rows(&kv_slots, hd));
            push(&w("self_attn.q_proj"), param(w("self_attn.q_proj"), q_map.clone(), None)?)?;
            push(&w("self_attn.k_proj"), param(w("self_attn.k_proj"), kv_map.clone(), None)?)?;
            push(&w("self_attn.v_proj"), param(w("self_attn.v_proj"), kv_map, None)?)?;
            push(&w("self_attn.o_proj"), param(w("self_attn.o_proj"), None, q_map)?)?;
        }
        push(&w("self_attn.q_norm"), norm(&w("self_attn.q_norm"), hd, factor, no_attention)?)?;
        push(&w("self_attn.k_norm"), norm(&w("self_attn.k_norm"), hd, 1.0, no_attention)?)?;
        push(&w("post_attention_layernorm"), norm(&w("post_attention_layernorm"), hidden, 1.0, no_attention)?)?;
        push(&w("pre_feedforward_layernorm"), norm(&w("pre_feedforward_layernorm"), hidden, 1.0, no_mlp)?)?;
        if no_mlp {
            push(&w("mlp.gate_proj"), zeros(vec![shared.channels, hidden]))?;
            push(&w("mlp.up_proj"), zeros(vec![shared.channels, hidden]))?;
            push(&w("mlp.down_proj"), zeros(vec![hidden, shared.channels]))?;
        } else {
            let padded = padded_channels(channels[l], shared.channels);
            push(&w("mlp.gate_proj"), param(w("mlp.gate_proj"), padded.clone(), None)?)?;
            push(&w("mlp.up_proj"), param(w("mlp.up_proj"), padded.clone(), None)?)?;
            push(&w("mlp.down_proj"), param(w("mlp.down_proj"), None, padded)?)?;
        }
        push(&w("post_feedforward_layernorm"), norm(&w("post_feedforward_layernorm"), hidden, 1.0, no_mlp)?)?;
    }
    push("model.norm.weight", norm("model.norm.weight", hidden, 1.0, false)?)?;
    if model.params.get("lm_head.weight").is_some() {
        push("lm_head.weight", param("lm_head.weight".into(), None, None)?)?;
    }
    let key = |k: &str| format!("gemma3.{k}");
    let mut metadata = vec![
        (key("block_count"), GgufValue::U32(n as u32)),
        (key("context_length"), GgufValue::U32(config.max_position_embeddings as u32)),
        (key("embedding_length"), GgufValue::U32(hidden as u32)),
        (key("vocab_size"), GgufValue::U32(vocab as u32)),
        (key("feed_forward_length"), GgufValue::U32(shared.channels as u32)),
        (key("attention.head_count"), GgufValue::U32(heads as u32)),
        (key("attention.head_count_kv"), GgufValue::U32(shared.kv as u32)),
        (key("attention.key_length"), GgufValue::U32(hd as u32)),
        (key("attention.value_length"), GgufValue::U32(hd as u32)),
        (key("attention.layer_norm_rms_epsilon"), GgufValue::F32(config.rms_norm_eps)),
        (key("rope.freq_base"), GgufValue::F32(config.rope_theta)),
        (key("rope.freq_base_swa"), GgufValue::F32(config.rope_local_base_freq)),
    ];
    // llama.cpp: no window without `sliding_window`; one global layer in six without a pattern
    let slides = config.layer_types.contains(&LayerType::Sliding);
    if slides {
        metadata.push((key("attention.sliding_window"), GgufValue::U32(config.sliding_window as u32)));
        if config.layer_types != LayerType::every(6, n) {
            let flags = config.layer_types.iter().map(|t| GgufValue::Bool(*t == LayerType::Sliding)).collect();
            metadata.push((key("attention.sliding_window_pattern"), GgufValue::Array(flags)));
        }
    }
    let mut stale: Vec<String> = ["rope.scaling.type", "rope.scaling.factor", "attention.sliding_window_pattern"].iter().map(|k| key(k)).collect();
    if !slides {
        stale.push(key("attention.sliding_window"));
    }
    let notes = padding.note("gemma3", &shared, n, hd, hidden, model.params.numel()).into_iter().collect();
    Ok(GgufPlan { arch: "gemma3".into(), metadata, stale, vocab, tensors, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_scales_27b_by_its_hidden_width_per_head() {
        assert_eq!(query_scalar(18, 640, 4, 256), 256.0);
        assert_eq!(query_scalar(62, 5376, 32, 128), 168.0);
    }

    #[test]
    fn every_hf_tensor_has_its_llama_cpp_name() {
        assert_eq!(gguf_name("model.layers.3.pre_feedforward_layernorm.weight").as_deref(), Some("blk.3.ffn_norm.weight"));
        assert_eq!(gguf_name("model.layers.0.post_feedforward_layernorm.weight").as_deref(), Some("blk.0.post_ffw_norm.weight"));
        assert_eq!(gguf_name("model.layers.0.post_attention_layernorm.weight").as_deref(), Some("blk.0.post_attention_norm.weight"));
        assert_eq!(gguf_name("model.layers.17.self_attn.k_norm.weight").as_deref(), Some("blk.17.attn_k_norm.weight"));
        assert_eq!(gguf_name("model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(gguf_name("model.layers.1.mlp.experts.weight"), None);
        let c = Gemma3Config {
            vocab_size: 8,
            hidden_size: 4,
            intermediate_size: 6,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 2,
            rms_norm_eps: 1e-6,
            rope_theta: 1e6,
            rope_local_base_freq: 1e4,
            query_pre_attn_scalar: 2.0,
            sliding_window: 3,
            layer_types: vec![LayerType::Sliding, LayerType::Full],
            tie_word_embeddings: true,
            attention_bias: false,
            max_position_embeddings: 16,
            layer_widths: None,
        };
        for (name, _) in c.expected_params() {
            assert!(gguf_name(&name).is_some(), "{name}");
        }
    }
}
