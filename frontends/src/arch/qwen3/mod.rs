//! Qwen3 (`model_type` `qwen3`, `Qwen3ForCausalLM`): a LLaMA decoder that normalises each
//! head of q and of k with an RMSNorm of its own (`q_norm`, `k_norm`, weights of `head_dim`)
//! after the projections and before the rotary embedding, with an explicit `head_dim` (heads ×
//! head_dim need not be the hidden width) and no biases unless `attention_bias`. Its
//! configuration is read here ([`Qwen3Config`]); the lowering, the parameters and the HF
//! writer are LLaMA's ([`super::llama`]), told the difference by [`Variant::qk_norm`].

use std::path::Path;

use super::llama::gguf::GgufLayout;
use super::llama::{Family, LlamaConfig, Variant};
use crate::builder::opt_usize;
use crate::error::{FrontendError, Result};

/// `head_dim` when a Qwen3 config has none: transformers' `Qwen3Config` default.
pub const DEFAULT_HEAD_DIM: usize = 128;

/// The shape of a Qwen3 model: LLaMA's description with per-head norms of q and k.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3Config {
    /// The decoder as the shared LLaMA code lowers it.
    pub decoder: LlamaConfig,
}

/// Qwen3 for the shared LLaMA code (llama.cpp's `qwen3` files keep q/k rows in HF's order).
pub const FAMILY: Family = Family {
    model_type: "qwen3",
    hf_classes: &["Qwen3ForCausalLM"],
    gguf: Some(GgufLayout { name: "qwen3", permuted: false }),
    read: read_decoder,
    write: |c| Qwen3Config { decoder: c.clone() }.to_hf_json(),
    attention_bias_key: true,
    mlp_bias_key: false,
};

fn read_decoder(path: &Path, json: &serde_json::Value) -> Result<LlamaConfig> {
    Qwen3Config::from_hf_json(path, json).map(|c| c.decoder)
}

impl Qwen3Config {
    /// Reads an HF `config.json` of `Qwen3ForCausalLM` (every value the computation uses
    /// checked; errors name `path` and the key), with each layer's widths from
    /// [`LAYER_WIDTHS_KEY`] when it is there. `head_dim` defaults to [`DEFAULT_HEAD_DIM`] as in
    /// transformers, not to hidden ÷ heads.
    pub fn from_hf_json(path: &Path, json: &serde_json::Value) -> Result<Qwen3Config> {
        let mut decoder = LlamaConfig::read_family(path, json, &FAMILY)?;
        if let Some(w) = super::qwen2::sliding_window(path, json, decoder.num_layers)? {
            return Err(FrontendError::BadConfig {
                path: path.to_path_buf(),
                reason: format!("`use_sliding_window` is true: sliding-window attention ({w} positions) is not supported for qwen3 models yet"),
            });
        }
        decoder.head_dim = opt_usize(path, json, "head_dim")?.unwrap_or(DEFAULT_HEAD_DIM);
        decoder.variant = Variant { qk_norm: true, ..Variant::default() };
        decoder.validate(path)?;
        Ok(Qwen3Config { decoder })
    }

    /// The configuration as a transformers `config.json` for `Qwen3ForCausalLM`
    /// ([`LAYER_WIDTHS_KEY`](super::llama::LAYER_WIDTHS_KEY) when layers differ).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut json = super::qwen2::qwen_hf_json(&self.decoder, "Qwen3ForCausalLM", "qwen3");
        json["attention_bias"] = self.decoder.attention_bias.into();
        json
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn fixture_json() -> serde_json::Value {
        crate::hf::read_config(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/qwen3")).unwrap()
    }

    fn bad_config(json: &serde_json::Value, needle: &str) {
        match Qwen3Config::from_hf_json(Path::new("some/config.json"), json) {
            Err(e @ FrontendError::BadConfig { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("some/config.json") && msg.contains(needle), "{msg}");
            }
            other => panic!("expected BadConfig naming `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn heads_have_norms_of_head_dim() {
        let c = Qwen3Config::from_hf_json(Path::new("config.json"), &fixture_json()).unwrap();
        assert_eq!((c.decoder.num_heads, c.decoder.num_kv_heads, c.decoder.head_dim), (4, 2, 24));
        assert!(c.decoder.variant.qk_norm && !c.decoder.qkv_bias() && !c.decoder.tie_word_embeddings);
        let shapes: BTreeMap<String, Vec<usize>> = c.decoder.expected_params().into_iter().collect();
        assert_eq!(shapes["model.layers.1.self_attn.q_proj.weight"], [96, 64]);
        assert_eq!(shapes["model.layers.1.self_attn.o_proj.weight"], [64, 96]);
        assert_eq!(shapes["model.layers.1.self_attn.q_norm.weight"], [24]);
        assert_eq!(shapes["model.layers.1.self_attn.k_norm.weight"], [24]);
        assert!(!shapes.contains_key("model.layers.1.self_attn.q_proj.bias"));
        // `attention_bias` gives q, k, v and o biases, as in transformers
        let mut json = fixture_json();
        json["attention_bias"] = true.into();
        let shapes: BTreeMap<String, Vec<usize>> =
            Qwen3Config::from_hf_json(Path::new("config.json"), &json).unwrap().decoder.expected_params().into_iter().collect();
        assert_eq!(shapes["model.layers.0.self_attn.k_proj.bias"], [48]);
        assert_eq!(shapes["model.layers.0.self_attn.o_proj.bias"], [64]);
        // without `head_dim`, transformers' default (not hidden ÷ heads)
        json.as_object_mut().unwrap().remove("head_dim");
        assert_eq!(Qwen3Config::from_hf_json(Path::new("config.json"), &json).unwrap().decoder.head_dim, DEFAULT_HEAD_DIM);
    }

    #[test]
    fn to_hf_json_reads_back() {
        let c = Qwen3Config::from_hf_json(Path::new("config.json"), &fixture_json()).unwrap();
        assert_eq!(Qwen3Config::from_hf_json(Path::new("config.json"), &c.to_hf_json()).unwrap(), c);
        let want = fixture_json();
        for key in ["architectures", "model_type", "head_dim", "attention_bias", "rope_theta", "tie_word_embeddings", "layer_types"] {
            assert_eq!(c.to_hf_json()[key], want[key], "{key}");
        }
    }

    #[test]
    fn bad_configs_name_the_key() {
        let mut json = fixture_json();
        json["head_dim"] = 7.into();
        bad_config(&json, "head_dim 7 must be even");
        json["head_dim"] = "24".into();
        bad_config(&json, "`head_dim` must be a non-negative integer");
        let mut json = fixture_json();
        json["attention_bias"] = 1.into();
        bad_config(&json, "`attention_bias` must be true or false");
        let mut json = fixture_json();
        json["use_sliding_window"] = true.into();
        json["sliding_window"] = 4.into();
        json["max_window_layers"] = 1.into();
        json.as_object_mut().unwrap().remove("layer_types");
        bad_config(&json, "not supported for qwen3 models yet");
    }
}
