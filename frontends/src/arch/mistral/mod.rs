//! Mistral (`model_type` `mistral`, `MistralForCausalLM`): a LLaMA decoder whose attention may
//! see only the last `sliding_window` positions (null: every earlier one), with grouped-query
//! attention, no biases and an optional explicit `head_dim`. Its configuration is read here
//! ([`MistralConfig`]); the lowering, the parameters and the HF writer are LLaMA's
//! ([`super::llama`]), told the difference by [`Variant::sliding_window`] (the IR's
//! `Attention::window`). Mistral's GGUF files call themselves `llama`: the LLaMA GGUF reader
//! reads them, and they are written as LLaMA's, without the window (llama.cpp has none for
//! `llama`; the file computes the model for sequences up to the window, and says so).

use std::path::Path;

use super::llama::gguf::GgufLayout;
use super::llama::{self, Family, LlamaConfig, Variant, LAYER_WIDTHS_KEY};
use crate::builder::{opt_usize, shortest_f64};
use crate::error::{FrontendError, Result};

/// The shape of a Mistral model: LLaMA's description with a sliding window.
#[derive(Debug, Clone, PartialEq)]
pub struct MistralConfig {
    /// The decoder as the shared LLaMA code lowers it.
    pub decoder: LlamaConfig,
}

/// Mistral for the shared LLaMA code. Its GGUF files are llama.cpp's `llama` (q/k rows
/// permuted as LLaMA's, no sliding window), which [`super::llama`] reads, being first in
/// [`super::ARCHITECTURES`]; Mistral names the layout to write them.
pub const FAMILY: Family = Family {
    model_type: "mistral",
    hf_classes: &["MistralForCausalLM"],
    gguf: Some(GgufLayout { name: "llama", permuted: true }),
    read: read_decoder,
    write: |c| MistralConfig { decoder: c.clone() }.to_hf_json(),
    attention_bias_key: false,
    mlp_bias_key: false,
};

fn read_decoder(path: &Path, json: &serde_json::Value) -> Result<LlamaConfig> {
    MistralConfig::from_hf_json(path, json).map(|c| c.decoder)
}

impl MistralConfig {
    /// Reads an HF `config.json` of `MistralForCausalLM` (every value the computation uses
    /// checked; errors name `path` and the key), with each layer's widths from
    /// [`LAYER_WIDTHS_KEY`] when it is there.
    pub fn from_hf_json(path: &Path, json: &serde_json::Value) -> Result<MistralConfig> {
        let mut decoder = LlamaConfig::read_family(path, json, &FAMILY)?;
        let sliding_window = opt_usize(path, json, "sliding_window")?;
        if sliding_window == Some(0) {
            return Err(FrontendError::BadConfig {
                path: path.to_path_buf(),
                reason: "`sliding_window` must be positive (or null: no window)".into(),
            });
        }
        decoder.variant = Variant { sliding_window, ..Variant::default() };
        Ok(MistralConfig { decoder })
    }

    /// The configuration as a transformers `config.json` for `MistralForCausalLM`
    /// ([`LAYER_WIDTHS_KEY`] when layers differ).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let c = &self.decoder;
        let mut json = serde_json::json!({
            "architectures": ["MistralForCausalLM"],
            "attention_dropout": 0.0,
            "head_dim": c.head_dim,
            "hidden_act": "silu",
            "hidden_size": c.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": c.intermediate_size,
            "max_position_embeddings": c.max_position_embeddings,
            "model_type": "mistral",
            "num_attention_heads": c.num_heads,
            "num_hidden_layers": c.num_layers,
            "num_key_value_heads": c.num_kv_heads,
            "rms_norm_eps": shortest_f64(c.rms_norm_eps),
            "rope_scaling": llama::rope_scaling_json(&c.rope_scaling),
            "rope_theta": shortest_f64(c.rope_theta),
            "sliding_window": c.variant.sliding_window,
            "tie_word_embeddings": c.tie_word_embeddings,
            "use_cache": true,
            "vocab_size": c.vocab_size,
        });
        if let (Some(layers), Some(obj)) = (&c.layer_widths, json.as_object_mut()) {
            obj.insert(LAYER_WIDTHS_KEY.into(), layers.iter().map(llama::LayerWidths::to_json).collect());
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_json() -> serde_json::Value {
        crate::hf::read_config(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mistral")).unwrap()
    }

    fn bad_config(json: &serde_json::Value, needle: &str) {
        match MistralConfig::from_hf_json(Path::new("some/config.json"), json) {
            Err(e @ FrontendError::BadConfig { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("some/config.json") && msg.contains(needle), "{msg}");
            }
            other => panic!("expected BadConfig naming `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn window_and_head_dim_are_read() {
        let c = MistralConfig::from_hf_json(Path::new("config.json"), &fixture_json()).unwrap();
        assert_eq!(c.decoder.variant.sliding_window, Some(5));
        assert_eq!(c.decoder.head_dim, 16, "null head_dim: hidden ÷ heads");
        assert!(!c.decoder.qkv_bias() && !c.decoder.mlp_bias);
        let mut json = fixture_json();
        json["sliding_window"] = serde_json::Value::Null;
        assert_eq!(MistralConfig::from_hf_json(Path::new("config.json"), &json).unwrap().decoder.variant.sliding_window, None);
        assert_eq!(MistralConfig::from_hf_json(Path::new("config.json"), &c.to_hf_json()).unwrap(), c);
        let lowered = crate::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mistral")).unwrap();
        let windows: Vec<Option<usize>> = lowered
            .graph
            .node_ids()
            .into_iter()
            .filter_map(|id| match &lowered.graph.node(id).unwrap().op {
                prunec_ir::Op::Attention(a) => Some(a.window),
                _ => None,
            })
            .collect();
        assert_eq!(windows, vec![Some(5); 3]);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let mut json = fixture_json();
        json["sliding_window"] = 0.into();
        bad_config(&json, "`sliding_window` must be positive");
        json["sliding_window"] = (-3).into();
        bad_config(&json, "`sliding_window` must be a non-negative integer");
        let mut json = fixture_json();
        json["head_dim"] = 5.into();
        bad_config(&json, "head_dim 5 must be even");
    }
}
