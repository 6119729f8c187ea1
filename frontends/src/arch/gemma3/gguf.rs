//! GGUF files of `general.architecture = gemma3` lowered through the Gemma 3 builder: the
//! `gemma3.*` metadata becomes a [`Gemma3Config`], llama.cpp's tensor names become HF's.
//!
//! llama.cpp's converter stores every Gemma norm weight as `w + 1` (transformers' GGUF loader
//! subtracts 1 again): prunec reads them as stored and lowers their norms with offset 0, which
//! computes `x̂ · (w + 1)` exactly as llama.cpp does; the HF writer turns them back into
//! `(1 + w)` norms ([`super::normalise_norm_offsets`]). What llama.cpp fixes in code rather than
//! metadata: one global layer in six (`sliding_window_pattern` 6), the sliding layers' rotary base
//! 10,000, and the attention scale `1/√key_length` (true for every size but 27B, which llama.cpp
//! scales by `1/√(hidden/heads)`; prunec takes `key_length`). q/k rows are not permuted (Gemma's
//! rotary layout is the NeoX one).

use std::path::Path;

use prunec_ir::Model;

use super::{Gemma3Config, LayerType};
use crate::arch::GgufWeights;
use crate::error::{FrontendError, Result};
use crate::gguf::GgufFile;

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
        rope_local_base_freq: 10_000.0,
        query_pre_attn_scalar: head_dim as f64,
        sliding_window: opt_usize(&key("attention.sliding_window"))?.unwrap_or(4096),
        layer_types: (0..num_layers.min(1 << 20)).map(|i| if (i + 1) % 6 != 0 { LayerType::Sliding } else { LayerType::Full }).collect(),
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        attention_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
        max_position_embeddings: opt_usize(&key("context_length"))?.unwrap_or(131_072),
        layer_widths: None,
    };
    config.validate(file.path())?;
    Ok(config)
}

/// Reads GGUF file `file` (at `path`) of a Gemma 3 model.
pub fn load(path: &Path, file: GgufFile) -> Result<Model> {
    let config = config_from_metadata(&file)?;
    let info = crate::arch::gguf_model_info(path, &file, "gemma3_text".to_string(), config.num_layers)?;
    let read: Vec<String> = config.expected_params().into_iter().filter_map(|(hf, _)| gguf_name(&hf)).collect();
    crate::arch::gguf_all_read(&file, &read)?;
    super::build(&config, &GgufWeights { file, names: |hf: &str| gguf_name(hf).map(|n| (n, None)) }, info, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
