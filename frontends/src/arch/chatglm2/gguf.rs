//! GGUF files of `general.architecture = chatglm` (ChatGLM2/3, as llama.cpp's converter writes
//! them) lowered through the ChatGLM2 builder: the metadata becomes a [`ChatGlmConfig`],
//! llama.cpp's tensor names become HF's. The fused `query_key_value` and `dense_h_to_4h` stay
//! fused, and no rows were permuted: llama.cpp rotates the first half of each head in adjacent
//! pairs, as ChatGLM2 does.

use std::path::Path;

use prunec_ir::Model;

use super::ChatGlmConfig;
use crate::arch::{Config, GgufWeights};
use crate::error::{FrontendError, Result};
use crate::gguf::GgufFile;

/// The GGUF name of an HF ChatGLM2 tensor.
fn gguf_name(hf: &str) -> Option<String> {
    let direct = [
        ("embedding.word_embeddings.weight", "token_embd.weight"),
        ("encoder.final_layernorm.weight", "output_norm.weight"),
        ("output_layer.weight", "output.weight"),
    ];
    crate::arch::gguf_tensor_name(hf.strip_prefix("transformer.")?, &direct, "encoder.layers.", |module| {
        Some(match module {
            "input_layernorm" => "attn_norm",
            "self_attention.query_key_value" => "attn_qkv",
            "self_attention.dense" => "attn_output",
            "post_attention_layernorm" => "ffn_norm",
            "mlp.dense_h_to_4h" => "ffn_up",
            "mlp.dense_4h_to_h" => "ffn_down",
            _ => return None,
        })
    })
}

/// The ChatGLM2 configuration a GGUF file's metadata describes (biases and the final norm from
/// the tensors the file holds).
pub fn config_from_metadata(file: &GgufFile) -> Result<ChatGlmConfig> {
    let key = |k: &str| format!("chatglm.{k}");
    let opt_usize = |k: &str| if file.get(k).is_some() { file.get_usize(k).map(Some) } else { Ok(None) };
    let opt_f32 = |k: &str| if file.get(k).is_some() { file.get_f32(k).map(Some) } else { Ok(None) };
    let has = |t: &str| file.tensor_info(t).is_some();
    let hidden_size = file.get_usize(&key("embedding_length"))?;
    let num_heads = file.get_usize(&key("attention.head_count"))?;
    let vocab_size = match file.tensor_info("token_embd.weight") {
        Some(t) => t.shape().first().copied().unwrap_or(0),
        None => return Err(FrontendError::MissingTensor { path: file.path().to_path_buf(), tensor: "token_embd.weight".into() }),
    };
    let kv_channels = match opt_usize(&key("attention.key_length"))? {
        Some(d) => d,
        None => hidden_size.checked_div(num_heads).unwrap_or(0),
    };
    let config = ChatGlmConfig {
        vocab_size,
        hidden_size,
        ffn_hidden_size: file.get_usize(&key("feed_forward_length"))?,
        num_layers: file.get_usize(&key("block_count"))?,
        num_heads,
        num_groups: opt_usize(&key("attention.head_count_kv"))?.unwrap_or(num_heads),
        kv_channels,
        eps: opt_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        rope_theta: opt_f32(&key("rope.freq_base"))?.unwrap_or(10000.0),
        qkv_bias: has("blk.0.attn_qkv.bias"),
        linear_bias: has("blk.0.attn_output.bias"),
        post_layer_norm: has("output_norm.weight"),
        layer_widths: None,
    };
    if let Some(rot) = opt_usize(&key("rope.dimension_count"))? {
        if 2 * rot != kv_channels {
            return Err(FrontendError::BadConfig {
                path: file.path().to_path_buf(),
                reason: format!("`chatglm.rope.dimension_count` is {rot}: ChatGLM2 rotates half of each head's {kv_channels} dims"),
            });
        }
    }
    config.validate(file.path())?;
    Ok(config)
}

/// Reads GGUF file `file` (at `path`) of a ChatGLM2/3 model; a tensor it would not read is
/// refused.
pub fn load(path: &Path, file: GgufFile) -> Result<Model> {
    let config = config_from_metadata(&file)?;
    let mut info = crate::arch::gguf_model_info(path, &file, "chatglm".to_string(), config.num_layers)?;
    let read: Vec<String> = config.expected_params().into_iter().filter_map(|(hf, _)| gguf_name(&hf)).collect();
    crate::arch::gguf_all_read(&file, &read)?;
    info.config = Some(Config::shared(config.clone(), config.to_hf_json()));
    super::build(&config, &GgufWeights { file, names: |hf: &str| gguf_name(hf).map(|n| (n, None)) }, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_llama_cpps() {
        assert_eq!(gguf_name("transformer.encoder.layers.3.self_attention.query_key_value.bias").unwrap(), "blk.3.attn_qkv.bias");
        assert_eq!(gguf_name("transformer.encoder.layers.0.mlp.dense_h_to_4h.weight").unwrap(), "blk.0.ffn_up.weight");
        assert_eq!(gguf_name("transformer.output_layer.weight").unwrap(), "output.weight");
        assert_eq!(gguf_name("transformer.rotary_pos_emb.inv_freq"), None);
    }
}
