//! Qwen2 and Qwen2.5 (`model_type` `qwen2`, `Qwen2ForCausalLM`): a LLaMA decoder whose q, k
//! and v projections have biases and whose o projection has none, with grouped-query
//! attention, tied or untied embeddings and its own rotary base. Its configuration is read
//! here ([`Qwen2Config`]); the lowering, the parameters and the HF writer are LLaMA's
//! ([`super::llama`]), told the difference by [`Variant::qkv_bias`].

use std::path::Path;

use super::llama::gguf::GgufLayout;
use super::llama::{self, Family, LlamaConfig, Variant, LAYER_WIDTHS_KEY};
use crate::builder::{opt_bool, opt_usize, shortest_f64};
use crate::error::{FrontendError, Result};

/// The shape of a Qwen2 model: LLaMA's description with q/k/v biases.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2Config {
    /// The decoder as the shared LLaMA code lowers it.
    pub decoder: LlamaConfig,
}

/// Qwen2 for the shared LLaMA code (llama.cpp's `qwen2` files keep q/k rows in HF's order,
/// rotating them as NeoX does).
pub const FAMILY: Family = Family {
    model_type: "qwen2",
    hf_classes: &["Qwen2ForCausalLM"],
    gguf: Some(GgufLayout { name: "qwen2", permuted: false }),
    read: read_decoder,
    write: |c| Qwen2Config { decoder: c.clone() }.to_hf_json(),
    attention_bias_key: false,
    mlp_bias_key: false,
};

fn read_decoder(path: &Path, json: &serde_json::Value) -> Result<LlamaConfig> {
    Qwen2Config::from_hf_json(path, json).map(|c| c.decoder)
}

impl Qwen2Config {
    /// Reads an HF `config.json` of `Qwen2ForCausalLM` (every value the computation uses
    /// checked; errors name `path` and the key), with each layer's widths from
    /// [`LAYER_WIDTHS_KEY`] when it is there.
    pub fn from_hf_json(path: &Path, json: &serde_json::Value) -> Result<Qwen2Config> {
        let mut decoder = LlamaConfig::read_family(path, json, &FAMILY)?;
        if let Some(w) = sliding_window(path, json, decoder.num_layers)? {
            return Err(FrontendError::BadConfig {
                path: path.to_path_buf(),
                reason: format!("`use_sliding_window` is true: sliding-window attention ({w} positions) is not supported for qwen2 models yet"),
            });
        }
        decoder.variant = Variant { qkv_bias: true, ..Variant::default() };
        Ok(Qwen2Config { decoder })
    }

    /// The configuration as a transformers `config.json` for `Qwen2ForCausalLM`
    /// ([`LAYER_WIDTHS_KEY`] when layers differ).
    pub fn to_hf_json(&self) -> serde_json::Value {
        qwen_hf_json(&self.decoder, "Qwen2ForCausalLM", "qwen2")
    }
}

/// A transformers `config.json` of a Qwen family (HF class `class`, `model_type`) for `c`: no
/// sliding window, [`LAYER_WIDTHS_KEY`] when layers differ.
pub(crate) fn qwen_hf_json(c: &LlamaConfig, class: &str, model_type: &str) -> serde_json::Value {
    let mut json = serde_json::json!({
        "architectures": [class],
        "attention_dropout": 0.0,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "hidden_size": c.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": c.intermediate_size,
        "layer_types": vec!["full_attention"; c.num_layers],
        "max_position_embeddings": c.max_position_embeddings,
        "max_window_layers": c.num_layers,
        "model_type": model_type,
        "num_attention_heads": c.num_heads,
        "num_hidden_layers": c.num_layers,
        "num_key_value_heads": c.num_kv_heads,
        "rms_norm_eps": shortest_f64(c.rms_norm_eps),
        "rope_scaling": llama::rope_scaling_json(&c.rope_scaling),
        "rope_theta": shortest_f64(c.rope_theta),
        "sliding_window": null,
        "tie_word_embeddings": c.tie_word_embeddings,
        "use_cache": true,
        "use_sliding_window": false,
        "vocab_size": c.vocab_size,
    });
    if let (Some(layers), Some(obj)) = (&c.layer_widths, json.as_object_mut()) {
        obj.insert(LAYER_WIDTHS_KEY.into(), layers.iter().map(llama::LayerWidths::to_json).collect());
    }
    json
}

/// The sliding window of a Qwen2/Qwen3 configuration when its layers use one: `sliding_window`
/// when `use_sliding_window` is true and `layer_types` (or, without it, `max_window_layers`)
/// makes some layer a `sliding_attention` one, as transformers decides; `None` otherwise.
pub(crate) fn sliding_window(path: &Path, json: &serde_json::Value, num_layers: usize) -> Result<Option<usize>> {
    let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
    let used = opt_bool(path, json, "use_sliding_window")?.unwrap_or(false);
    let window = opt_usize(path, json, "sliding_window")?;
    let max_window_layers = opt_usize(path, json, "max_window_layers")?;
    let sliding_layers = match json.get("layer_types") {
        None | Some(serde_json::Value::Null) => (0..num_layers).filter(|&l| l >= max_window_layers.unwrap_or(num_layers)).count(),
        Some(serde_json::Value::Array(types)) => {
            if types.len() != num_layers {
                return Err(bad(format!("`layer_types` has {} entries for {num_layers} layers (num_hidden_layers)", types.len())));
            }
            let mut sliding = 0;
            for (l, t) in types.iter().enumerate() {
                match t.as_str() {
                    Some("full_attention") => {}
                    Some("sliding_attention") => sliding += 1,
                    _ => return Err(bad(format!("`layer_types[{l}]` must be \"full_attention\" or \"sliding_attention\", not {t}"))),
                }
            }
            sliding
        }
        Some(_) => return Err(bad("`layer_types` is not a list (one entry per layer)".into())),
    };
    Ok(match window {
        Some(w) if used && sliding_layers > 0 => Some(w),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/qwen2")
    }

    fn fixture_json() -> serde_json::Value {
        crate::hf::read_config(&fixture()).unwrap()
    }

    fn bad_config(json: &serde_json::Value, needle: &str) {
        match Qwen2Config::from_hf_json(Path::new("some/config.json"), json) {
            Err(e @ FrontendError::BadConfig { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("some/config.json") && msg.contains(needle), "{msg}");
            }
            other => panic!("expected BadConfig naming `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn qkv_have_biases_and_o_has_none() {
        let c = Qwen2Config::from_hf_json(Path::new("config.json"), &fixture_json()).unwrap();
        assert_eq!((c.decoder.num_heads, c.decoder.num_kv_heads, c.decoder.head_dim), (8, 2, 8));
        assert_eq!(c.decoder.rope_theta, 1e6);
        assert!(c.decoder.tie_word_embeddings && !c.decoder.attention_bias && c.decoder.variant.qkv_bias);
        let shapes: BTreeMap<String, Vec<usize>> = c.decoder.expected_params().into_iter().collect();
        assert_eq!(shapes["model.layers.0.self_attn.q_proj.bias"], [64]);
        assert_eq!(shapes["model.layers.2.self_attn.k_proj.bias"], [16]);
        assert_eq!(shapes["model.layers.2.self_attn.v_proj.bias"], [16]);
        assert!(!shapes.contains_key("model.layers.0.self_attn.o_proj.bias"));
        assert!(!shapes.contains_key("model.layers.0.mlp.gate_proj.bias"));
        assert!(!shapes.contains_key("lm_head.weight"));
        // `attention_bias` is not a Qwen2 key: a config that has it changes nothing
        let mut json = fixture_json();
        json["attention_bias"] = true.into();
        assert_eq!(Qwen2Config::from_hf_json(Path::new("config.json"), &json).unwrap(), c);
    }

    #[test]
    fn to_hf_json_reads_back() {
        let c = Qwen2Config::from_hf_json(Path::new("config.json"), &fixture_json()).unwrap();
        assert_eq!(Qwen2Config::from_hf_json(Path::new("config.json"), &c.to_hf_json()).unwrap(), c);
        let want = fixture_json();
        for key in ["architectures", "model_type", "hidden_size", "num_key_value_heads", "rope_theta", "tie_word_embeddings", "layer_types"] {
            assert_eq!(c.to_hf_json()[key], want[key], "{key}");
        }
    }

    #[test]
    fn bad_configs_name_the_key() {
        let mut json = fixture_json();
        json["use_sliding_window"] = true.into();
        json["sliding_window"] = 4.into();
        json["layer_types"] = serde_json::json!(["full_attention", "sliding_attention", "sliding_attention"]);
        bad_config(&json, "`use_sliding_window` is true");
        // sliding layers without `use_sliding_window` are full ones, as in transformers
        json["use_sliding_window"] = false.into();
        assert!(Qwen2Config::from_hf_json(Path::new("config.json"), &json).is_ok());
        json["layer_types"] = serde_json::json!(["full_attention"]);
        bad_config(&json, "`layer_types` has 1 entries for 3 layers");
        json["layer_types"] = serde_json::json!(["full_attention", "local", "full_attention"]);
        bad_config(&json, "`layer_types[1]`");
        let mut json = fixture_json();
        json["rope_theta"] = "big".into();
        bad_config(&json, "`rope_theta` must be a number");
        let mut json = fixture_json();
        json["hidden_act"] = "gelu".into();
        bad_config(&json, "hidden_act `gelu` is not supported for qwen2 models");
        let mut json = fixture_json();
        json["num_key_value_heads"] = 3.into();
        bad_config(&json, "num_attention_heads 8 is not a multiple of num_key_value_heads 3");
    }
}
