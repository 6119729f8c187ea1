//! GGUF files of `general.architecture = llama` lowered through the LLaMA builder: the
//! metadata becomes a [`LlamaConfig`], llama.cpp's tensor names become HF's, and the q/k
//! rows that llama.cpp's converter permuted for its rotary layout are put back in HF's order
//! when read. Tensors stay quantized in the map until a pass reads them.

use std::path::Path;

use prunec_ir::Model;

use crate::error::{FrontendError, Result};
use crate::arch::GgufWeights;
use crate::gguf::GgufFile;
use super::{self as llama, LlamaConfig};

/// The GGUF name of an HF LLaMA tensor, and the heads its rows were permuted for.
fn gguf_name(hf: &str, config: &LlamaConfig) -> Option<(String, Option<usize>)> {
    let direct = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(d) = direct {
        return Some((d.to_string(), None));
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, module) = rest.split_once('.')?;
    let (module, suffix) = module.rsplit_once('.')?;
    let (name, heads) = match module {
        "input_layernorm" => ("attn_norm", None),
        "self_attn.q_proj" => ("attn_q", Some(config.num_heads)),
        "self_attn.k_proj" => ("attn_k", Some(config.num_kv_heads)),
        "self_attn.v_proj" => ("attn_v", None),
        "self_attn.o_proj" => ("attn_output", None),
        "post_attention_layernorm" => ("ffn_norm", None),
        "mlp.gate_proj" => ("ffn_gate", None),
        "mlp.up_proj" => ("ffn_up", None),
        "mlp.down_proj" => ("ffn_down", None),
        _ => return None,
    };
    Some((format!("blk.{layer}.{name}.{suffix}"), heads))
}

/// The LLaMA configuration a GGUF file's metadata describes.
pub fn config_from_metadata(file: &GgufFile) -> Result<LlamaConfig> {
    let arch = file.get_str("general.architecture")?.to_string();
    let key = |k: &str| format!("{arch}.{k}");
    let hidden_size = file.get_usize(&key("embedding_length"))?;
    let num_heads = file.get_usize(&key("attention.head_count"))?;
    let opt_usize = |k: &str| if file.get(k).is_some() { file.get_usize(k).map(Some) } else { Ok(None) };
    let opt_f32 = |k: &str| if file.get(k).is_some() { file.get_f32(k).map(Some) } else { Ok(None) };
    let vocab_size = match opt_usize(&key("vocab_size"))? {
        Some(v) => v,
        None => match file.tensor_info("token_embd.weight") {
            Some(t) => t.shape().first().copied().unwrap_or(0),
            None => {
                return Err(FrontendError::MissingTensor { path: file.path().to_path_buf(), tensor: "token_embd.weight".into() })
            }
        },
    };
    let head_dim = match opt_usize(&key("attention.key_length"))? {
        Some(d) => d,
        None if num_heads > 0 => hidden_size / num_heads,
        None => 0,
    };
    let config = LlamaConfig {
        vocab_size,
        hidden_size,
        intermediate_size: file.get_usize(&key("feed_forward_length"))?,
        num_layers: file.get_usize(&key("block_count"))?,
        num_heads,
        num_kv_heads: opt_usize(&key("attention.head_count_kv"))?.unwrap_or(num_heads),
        head_dim,
        rms_norm_eps: opt_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        rope_theta: opt_f32(&key("rope.freq_base"))?.unwrap_or(10000.0),
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        attention_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
        mlp_bias: file.tensor_info("blk.0.ffn_gate.bias").is_some(),
        max_position_embeddings: opt_usize(&key("context_length"))?.unwrap_or(2048),
        layer_widths: None,
        variant: Default::default(),
        rope_scaling: Default::default(),
    };
    if let Some(rot) = opt_usize(&key("rope.dimension_count"))? {
        if rot != config.head_dim {
            return Err(FrontendError::BadConfig {
                path: file.path().to_path_buf(),
                reason: format!("partial rotary ({rot} of {} dims) is not supported for llama", config.head_dim),
            });
        }
    }
    config.validate(file.path())?;
    Ok(config)
}

/// Reads GGUF file `file` (at `path`) of a LLaMA model.
pub fn load(path: &Path, file: GgufFile) -> Result<Model> {
    let arch = file.get_str("general.architecture")?.to_string();
    let config = config_from_metadata(&file)?;
    let info = crate::arch::gguf_model_info(path, &file, arch, config.num_layers)?;
    llama::build(&config, &GgufWeights { file, names: |hf: &str| gguf_name(hf, &config) }, info)
}
