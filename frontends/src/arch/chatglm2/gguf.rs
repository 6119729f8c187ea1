//! GGUF files of `general.architecture = chatglm` (ChatGLM2/3, as llama.cpp's converter writes
//! them) lowered through the ChatGLM2 builder: the metadata becomes a [`ChatGlmConfig`],
//! llama.cpp's tensor names become HF's. The fused `query_key_value` and `dense_h_to_4h` stay
//! fused, and no rows were permuted: llama.cpp rotates the first half of each head in adjacent
//! pairs, as ChatGLM2 does.
//!
//! Written ([`plan`]) as llama.cpp's `chatglm` runs them: it builds every layer with the first
//! layer's widths and q (and `attn_output`) as wide as the hidden state (`n_embd`; checked in
//! llama.cpp 0.3.36's `llama_model_chatglm::load_arch_tensors`), so every layer is padded to
//! `hidden / kv_channels` query heads, one shared count of key/value heads and of MLP channels
//! ([`SharedWidths::with_heads`]), exactly, with zero heads and channels (the q/k/v bias padded
//! with its rows). llama.cpp's `chatglm` reads no bias of `dense` or of the MLP and always
//! applies the final norm: models with `add_bias_linear` or without `post_layer_norm` are
//! refused.

use std::path::Path;

use prunec_ir::{Model, Op};

use super::ChatGlmConfig;
use crate::arch::gguf_out::{GgufPlan, Planned, PlannedTensor};
use crate::arch::gguf_pad::{fused_rows, head_rows, padded_channels, Padding, SharedWidths};
use crate::arch::{Config, GgufWeights};
use crate::error::{FrontendError, Result};
use crate::gguf::{GgufFile, GgufValue};

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

/// The GGUF file llama.cpp's `chatglm` runs for ChatGLM2/3 `model`, widths read from its
/// parameters: every layer padded to `hidden / kv_channels` query heads and shared key/value
/// heads and MLP channels (see the module's doc), the channels in whole blocks of `block`. The
/// plan's note says what padding was added. Refused, naming why: biases of `dense` or the MLP,
/// no final norm, a hidden width that is not whole heads or narrower than a layer's query
/// heads (hidden channels pruned: llama.cpp's q is as wide as the hidden state).
pub fn plan(model: &Model, block: usize) -> Result<GgufPlan> {
    let path = model.info.source.join("config.json");
    let bad = |reason: String| FrontendError::BadConfig { path: path.clone(), reason: format!("writing GGUF: {reason}") };
    let json = super::hf_config(model)?;
    let config = ChatGlmConfig::from_hf_json(&path, &json)?;
    if config.linear_bias {
        return Err(bad("`add_bias_linear`: llama.cpp's chatglm reads no bias of `dense`, `dense_h_to_4h` or `dense_4h_to_h`".into()));
    }
    if !config.post_layer_norm {
        return Err(bad("no final norm (`post_layer_norm: false`), and llama.cpp's chatglm always applies one".into()));
    }
    let (hidden, hd, n) = (config.hidden_size, config.kv_channels, config.num_layers);
    // each layer's query heads per key/value head: uneven where pruning took query heads unevenly
    let copies: Vec<Vec<usize>> = (0..n)
        .map(|l| {
            let [heads, groups, _] = config.layer(l);
            let name = format!("transformer.encoder.layers.{l}.self_attention.k_repeat");
            let repeat = model.graph.node_ids().into_iter().filter_map(|id| model.graph.node(id).ok()).find(|n| n.name == name).and_then(|n| match &n.op {
                Op::RepeatHeads { copies } => Some(copies.clone()),
                _ => None,
            });
            repeat.unwrap_or_else(|| vec![heads / groups.max(1); groups])
        })
        .collect();
    let channels: Vec<usize> = (0..n).map(|l| config.layer(l)[2]).collect();
    let (heads, shared) = SharedWidths::hidden_wide("chatglm", hidden, hd, &copies, &channels, block).map_err(bad)?;
    let param = |hf: String, rows: Option<Vec<Option<usize>>>, cols: Option<Vec<Option<usize>>>| Planned::param(model, hf, rows, cols);
    let mut tensors = Vec::new();
    let mut push = |hf: String, rows: Option<Vec<Option<usize>>>, cols: Option<Vec<Option<usize>>>| -> Result<()> {
        let name = gguf_name(&hf).ok_or_else(|| bad(format!("llama.cpp has no name for `{hf}`")))?;
        tensors.push(PlannedTensor { name, data: param(hf, rows, cols)? });
        Ok(())
    };
    push("transformer.embedding.word_embeddings.weight".into(), None, None)?;
    let mut padding = Padding::default();
    for l in 0..n {
        let p = format!("transformer.encoder.layers.{l}");
        let (kv_slots, q_slots) = padding.layer(&shared, &copies[l], channels[l]);
        let (q, kv) = config.qkv_rows(l);
        let (q_map, kv_map) = (head_rows(&q_slots, hd), head_rows(&kv_slots, hd));
        let qkv = fused_rows(&[(q_map.clone(), q), (kv_map.clone(), kv), (kv_map, kv)]);
        let f = channels[l];
        let pad = padded_channels(f, shared.channels);
        push(format!("{p}.input_layernorm.weight"), None, None)?;
        push(format!("{p}.self_attention.query_key_value.weight"), qkv.clone(), None)?;
        if config.qkv_bias {
            push(format!("{p}.self_attention.query_key_value.bias"), qkv, None)?;
        }
        push(format!("{p}.self_attention.dense.weight"), None, q_map)?;
        push(format!("{p}.post_attention_layernorm.weight"), None, None)?;
        push(format!("{p}.mlp.dense_h_to_4h.weight"), fused_rows(&[(pad.clone(), f), (pad.clone(), f)]), None)?;
        push(format!("{p}.mlp.dense_4h_to_h.weight"), None, pad)?;
    }
    push("transformer.encoder.final_layernorm.weight".into(), None, None)?;
    push("transformer.output_layer.weight".into(), None, None)?;
    let key = |k: &str| format!("chatglm.{k}");
    let u32_of = |v: usize| GgufValue::U32(v as u32);
    let mut metadata = vec![
        (key("block_count"), u32_of(n)),
        (key("embedding_length"), u32_of(hidden)),
        (key("vocab_size"), u32_of(config.vocab_size)),
        (key("feed_forward_length"), u32_of(shared.channels)),
        (key("attention.head_count"), u32_of(heads)),
        (key("attention.head_count_kv"), u32_of(shared.kv)),
        (key("attention.key_length"), u32_of(hd)),
        (key("attention.value_length"), u32_of(hd)),
        (key("attention.layer_norm_rms_epsilon"), GgufValue::F32(config.eps)),
        // ChatGLM2 rotates the first half of each head
        (key("rope.dimension_count"), u32_of(hd / 2)),
        (key("rope.freq_base"), GgufValue::F32(config.rope_theta)),
    ];
    // the converter's: `seq_length` (a GGUF input keeps its own `context_length`)
    if let Some(ctx) = json.get("seq_length").and_then(serde_json::Value::as_u64) {
        metadata.push((key("context_length"), GgufValue::U32(ctx as u32)));
    } else if model.info.format != prunec_ir::SourceFormat::Gguf {
        metadata.push((key("context_length"), u32_of(hidden)));
    }
    let notes = padding.note("chatglm", &shared, n, hd, hidden, model.params.numel()).into_iter().collect();
    Ok(GgufPlan { arch: "chatglm".into(), metadata, stale: Vec::new(), vocab: config.vocab_size, tensors, notes })
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
