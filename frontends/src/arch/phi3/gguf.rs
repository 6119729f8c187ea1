//! GGUF files of `general.architecture = phi3` lowered through the Phi-3 builder: the
//! `phi3.*` metadata becomes a [`Phi3Config`], llama.cpp's tensor names become HF's. llama.cpp's
//! converter (`Phi3MiniModel`) keeps the fused `qkv_proj` as `attn_qkv` and the fused
//! `gate_up_proj` as `ffn_up` (its `2 · feed_forward_length` rows: gate, then up), and permutes
//! no rows (Phi-3's rotary layout is the NeoX one). It writes `rope.dimension_count` =
//! `int(partial_rotary_factor · hidden) / heads` and `attention.sliding_window` (0: none); a
//! LongRoPE model carries `rope_factors_long`/`rope_factors_short` tensors, which are refused.
//!
//! Written ([`plan`]) as llama.cpp's `phi3` runs them: it builds every layer with the first
//! layer's widths and q (and `attn_output`) as wide as the hidden state (`n_embd`; checked in
//! llama.cpp 0.3.36's `llama_model_phi3::load_arch_tensors`), so every layer is padded to
//! `hidden / head_dim` query heads, one shared count of key/value heads and of MLP channels
//! ([`SharedWidths::with_heads`]), exactly, with zero heads and channels. llama.cpp 0.3.36
//! disables Phi-3's sliding window (it warns, and attends to every earlier position): a
//! window is written as the converter writes it, and the plan says where llama.cpp's logits
//! part from prunec's.

use std::path::Path;

use prunec_ir::Model;

use super::{factor_for, Phi3Config};
use crate::arch::gguf_out::{GgufPlan, Planned, PlannedTensor};
use crate::arch::gguf_pad::{fused_rows, head_rows, padded_channels, Padding, SharedWidths};
use crate::arch::llama::{LlamaConfig, Variant};
use crate::arch::GgufWeights;
use crate::error::{FrontendError, Result};
use crate::gguf::{GgufFile, GgufValue};

/// The GGUF name of an HF Phi-3 tensor.
pub fn gguf_name(hf: &str) -> Option<String> {
    crate::arch::gguf_tensor_name(hf, super::super::llama::gguf::LLAMA_DIRECT, "model.layers.", |module| {
        Some(match module {
            "input_layernorm" => "attn_norm",
            "self_attn.qkv_proj" => "attn_qkv",
            "self_attn.o_proj" => "attn_output",
            "post_attention_layernorm" => "ffn_norm",
            "mlp.gate_up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        })
    })
}

/// The Phi-3 configuration a GGUF file's `phi3.*` metadata describes.
pub fn config_from_metadata(file: &GgufFile) -> Result<Phi3Config> {
    let key = |k: &str| format!("phi3.{k}");
    let bad = |reason: String| FrontendError::BadConfig { path: file.path().to_path_buf(), reason };
    let opt_usize = |k: &str| if file.get(k).is_some() { file.get_usize(k).map(Some) } else { Ok(None) };
    let opt_f32 = |k: &str| if file.get(k).is_some() { file.get_f32(k).map(Some) } else { Ok(None) };
    for t in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if file.tensor_info(t).is_some() {
            return Err(bad(format!(
                "the file holds `{t}`: a LongRoPE model (the 128k-context Phi-3 and Phi-3.5 models), not supported — its short and long per-frequency factors, chosen by the sequence length, are not a rotary scaling prunec computes"
            )));
        }
    }
    let hidden_size = file.get_usize(&key("embedding_length"))?;
    let num_heads = file.get_usize(&key("attention.head_count"))?;
    let vocab_size = match opt_usize(&key("vocab_size"))? {
        Some(v) => v,
        None => match file.tensor_info("token_embd.weight") {
            Some(t) => t.shape().first().copied().unwrap_or(0),
            None => return Err(FrontendError::MissingTensor { path: file.path().to_path_buf(), tensor: "token_embd.weight".into() }),
        },
    };
    let head_dim = match opt_usize(&key("attention.key_length"))? {
        Some(d) => d,
        None => hidden_size.checked_div(num_heads).unwrap_or(0),
    };
    let rotary_dims = opt_usize(&key("rope.dimension_count"))?.unwrap_or(head_dim);
    let max_position_embeddings = opt_usize(&key("context_length"))?.unwrap_or(4096);
    let decoder = LlamaConfig {
        vocab_size,
        hidden_size,
        intermediate_size: file.get_usize(&key("feed_forward_length"))?,
        num_layers: file.get_usize(&key("block_count"))?,
        num_heads,
        num_kv_heads: opt_usize(&key("attention.head_count_kv"))?.unwrap_or(num_heads),
        head_dim,
        rms_norm_eps: opt_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        rope_theta: opt_f32(&key("rope.freq_base"))?.unwrap_or(10000.0),
        rope_scaling: Default::default(),
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        attention_bias: false,
        mlp_bias: false,
        max_position_embeddings,
        layer_widths: None,
        variant: Variant { sliding_window: opt_usize(&key("attention.sliding_window"))?.filter(|&w| w > 0), ..Variant::default() },
    };
    let config = Phi3Config {
        partial_rotary_factor: if head_dim > 0 { factor_for(rotary_dims, head_dim) } else { 1.0 },
        rotary_dims,
        original_max_position_embeddings: opt_usize(&key("rope.scaling.original_context_length"))?.unwrap_or(max_position_embeddings),
        decoder,
    };
    config.validate(file.path())?;
    Ok(config)
}

/// The HF configuration of `config` with the special tokens `file`'s tokenizer metadata names
/// (`tokenizer.ggml.bos_token_id`...; a padding token only inside the vocabulary).
fn hf_json(config: &Phi3Config, file: &GgufFile) -> Result<serde_json::Value> {
    let mut json = config.to_hf_json();
    if let Some(obj) = json.as_object_mut() {
        for (key, hf) in [("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"), ("padding_token_id", "pad_token_id")] {
            let key = format!("tokenizer.ggml.{key}");
            if file.get(&key).is_none() {
                continue;
            }
            let id = file.get_usize(&key)?;
            if hf != "pad_token_id" || id < config.decoder.vocab_size {
                obj.insert(hf.into(), id.into());
            }
        }
    }
    Ok(json)
}

/// Reads GGUF file `file` (at `path`) of a Phi-3 model; a tensor it would not read is refused.
pub fn load(path: &Path, file: GgufFile) -> Result<Model> {
    let config = config_from_metadata(&file)?;
    let mut info = crate::arch::gguf_model_info(path, &file, "phi3".to_string(), config.decoder.num_layers)?;
    let read: Vec<String> = config.expected_params().into_iter().filter_map(|(hf, _)| gguf_name(&hf)).collect();
    crate::arch::gguf_all_read(&file, &read)?;
    info.config = Some(crate::arch::Config::shared(config.clone(), hf_json(&config, &file)?));
    super::build(&config, &GgufWeights { file, names: |hf: &str| gguf_name(hf).map(|n| (n, None)) }, info)
}

/// The GGUF file llama.cpp's `phi3` runs for Phi-3 `model` (prepared by
/// [`crate::arch::Architecture::before_writing`]), widths read from its parameters: every
/// layer padded to `hidden / head_dim` query heads and shared key/value heads and MLP channels
/// (see the module's doc), the channels in whole blocks of `block`; a layer whose attention or
/// MLP pruning emptied gets zeros (and a norm of ones). The plan's note says what padding was
/// added, and where llama.cpp ignores the model's sliding window. Refused, naming why: a hidden
/// width that is not whole heads, or narrower than a layer's query heads (hidden channels
/// pruned: llama.cpp's q is as wide as the hidden state).
pub fn plan(model: &Model, block: usize) -> Result<GgufPlan> {
    let path = crate::arch::llama::config_path(model);
    let bad = |reason: String| FrontendError::BadConfig { path: path.clone(), reason: format!("writing GGUF: {reason}") };
    let config = Phi3Config::from_hf_json(&path, &super::hf_config(model)?)?;
    let c = &config.decoder;
    let (hidden, hd, n) = (c.hidden_size, c.head_dim, c.num_layers);
    let widths: Vec<_> = (0..n).map(|l| c.layer(l)).collect();
    let copies: Vec<Vec<usize>> = widths.iter().map(|w| w.kv_copies()).collect();
    let channels: Vec<usize> = widths.iter().map(|w| w.intermediate_size).collect();
    let (heads, shared) = SharedWidths::hidden_wide("phi3", hidden, hd, &copies, &channels, block).map_err(bad)?;
    let param = |hf: String, rows: Option<Vec<Option<usize>>>, cols: Option<Vec<Option<usize>>>| Planned::param(model, hf, rows, cols);
    let zeros = |shape: Vec<usize>| Planned::Values { values: vec![0.0; shape.iter().product()], shape };
    let ones = Planned::Values { values: vec![1.0; hidden], shape: vec![hidden] };
    let mut tensors = Vec::new();
    let mut push = |hf: &str, data: Planned| -> Result<()> {
        let name = gguf_name(hf).ok_or_else(|| bad(format!("llama.cpp has no name for `{hf}`")))?;
        tensors.push(PlannedTensor { name, data });
        Ok(())
    };
    let embed = "model.embed_tokens.weight";
    push(embed, param(embed.into(), None, None)?)?;
    let (kv_rows, ff) = (shared.kv * hd, shared.channels);
    let mut padding = Padding::default();
    for (l, w) in widths.iter().enumerate() {
        let p = format!("model.layers.{l}");
        let name = |m: &str| format!("{p}.{m}.weight");
        let (kv_slots, q_slots) = padding.layer(&shared, &copies[l], channels[l]);
        if w.has_attention() {
            let (q, kv) = config.qkv_rows(l);
            let (q_map, kv_map) = (head_rows(&q_slots, hd), head_rows(&kv_slots, hd));
            let rows = fused_rows(&[(q_map.clone(), q), (kv_map.clone(), kv), (kv_map, kv)]);
            push(&name("input_layernorm"), param(name("input_layernorm"), None, None)?)?;
            push(&name("self_attn.qkv_proj"), param(name("self_attn.qkv_proj"), rows, None)?)?;
            push(&name("self_attn.o_proj"), param(name("self_attn.o_proj"), None, q_map)?)?;
        } else {
            push(&name("input_layernorm"), ones.clone())?;
            push(&name("self_attn.qkv_proj"), zeros(vec![hidden + 2 * kv_rows, hidden]))?;
            push(&name("self_attn.o_proj"), zeros(vec![hidden, hidden]))?;
        }
        if w.has_mlp() {
            let f = channels[l];
            let pad = padded_channels(f, ff);
            let rows = fused_rows(&[(pad.clone(), f), (pad.clone(), f)]);
            push(&name("post_attention_layernorm"), param(name("post_attention_layernorm"), None, None)?)?;
            push(&name("mlp.gate_up_proj"), param(name("mlp.gate_up_proj"), rows, None)?)?;
            push(&name("mlp.down_proj"), param(name("mlp.down_proj"), None, pad)?)?;
        } else {
            push(&name("post_attention_layernorm"), ones.clone())?;
            push(&name("mlp.gate_up_proj"), zeros(vec![2 * ff, hidden]))?;
            push(&name("mlp.down_proj"), zeros(vec![hidden, ff]))?;
        }
    }
    push("model.norm.weight", param("model.norm.weight".into(), None, None)?)?;
    if model.params.get("lm_head.weight").is_some() {
        push("lm_head.weight", param("lm_head.weight".into(), None, None)?)?;
    }
    let key = |k: &str| format!("phi3.{k}");
    let u32_of = |v: usize| GgufValue::U32(v as u32);
    let metadata = vec![
        (key("block_count"), u32_of(n)),
        (key("context_length"), u32_of(c.max_position_embeddings)),
        (key("rope.scaling.original_context_length"), u32_of(config.original_max_position_embeddings)),
        (key("embedding_length"), u32_of(hidden)),
        (key("vocab_size"), u32_of(c.vocab_size)),
        (key("feed_forward_length"), u32_of(ff)),
        (key("attention.head_count"), u32_of(heads)),
        (key("attention.head_count_kv"), u32_of(shared.kv)),
        (key("attention.key_length"), u32_of(hd)),
        (key("attention.value_length"), u32_of(hd)),
        (key("attention.layer_norm_rms_epsilon"), GgufValue::F32(c.rms_norm_eps)),
        (key("rope.dimension_count"), u32_of(config.rotary_dims)),
        (key("rope.freq_base"), GgufValue::F32(c.rope_theta)),
        // the converter's 0 for none
        (key("attention.sliding_window"), u32_of(c.variant.sliding_window.unwrap_or(0))),
    ];
    let stale = ["rope.scaling.type", "rope.scaling.factor", "rope.scaling.attn_factor"].iter().map(|k| key(k)).collect();
    let mut notes: Vec<String> = padding.note("phi3", &shared, n, hd, hidden, model.params.numel()).into_iter().collect();
    if let Some(window) = c.variant.sliding_window {
        notes.push(format!(
            "gguf: llama.cpp (0.3.36) disables Phi-3's sliding window of {window} positions: its logits are prunec's for sequences of up to {window} tokens, and beyond them it attends to every earlier position"
        ));
    }
    Ok(GgufPlan { arch: "phi3".into(), metadata, stale, vocab: c.vocab_size, tensors, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hf_tensor_has_its_llama_cpp_name() {
        assert_eq!(gguf_name("model.layers.3.self_attn.qkv_proj.weight").as_deref(), Some("blk.3.attn_qkv.weight"));
        assert_eq!(gguf_name("model.layers.0.self_attn.o_proj.weight").as_deref(), Some("blk.0.attn_output.weight"));
        assert_eq!(gguf_name("model.layers.0.mlp.gate_up_proj.weight").as_deref(), Some("blk.0.ffn_up.weight"));
        assert_eq!(gguf_name("model.layers.12.mlp.down_proj.weight").as_deref(), Some("blk.12.ffn_down.weight"));
        assert_eq!(gguf_name("model.layers.1.input_layernorm.weight").as_deref(), Some("blk.1.attn_norm.weight"));
        assert_eq!(gguf_name("model.layers.1.post_attention_layernorm.weight").as_deref(), Some("blk.1.ffn_norm.weight"));
        assert_eq!(gguf_name("model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(gguf_name("model.norm.weight").as_deref(), Some("output_norm.weight"));
        assert_eq!(gguf_name("lm_head.weight").as_deref(), Some("output.weight"));
        // LLaMA's unfused names are not Phi-3's
        assert_eq!(gguf_name("model.layers.1.self_attn.q_proj.weight"), None);
        assert_eq!(gguf_name("model.layers.1.mlp.gate_proj.weight"), None);
        let json = crate::hf::read_config(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/phi3")).unwrap();
        let c = Phi3Config::from_hf_json(Path::new("config.json"), &json).unwrap();
        for (name, _) in c.expected_params() {
            assert!(gguf_name(&name).is_some(), "{name}");
        }
    }
}
