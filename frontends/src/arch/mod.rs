//! The architecture seam: what an architecture knows, behind one trait ([`Architecture`]),
//! and one registry ([`ARCHITECTURES`]) that every caller asks — the HF and GGUF frontends,
//! the HF writer, LoRA's default targets. One module per architecture: [`llama`] (LLaMA 1/2/3,
//! Vicuna, SmolLM), [`qwen2`] (Qwen2/2.5), [`mistral`] (the last two LLaMA-like: their
//! configurations over LLaMA's lowering), [`chatglm2`] (ChatGLM2/3), [`chatglm6b`]
//! (ChatGLM-6B).
//!
//! To add an architecture: a module here with its typed configuration, its lowering through
//! [`crate::builder`], its HF config writer, and a type implementing [`Architecture`]; then its
//! entry in [`ARCHITECTURES`]. Nothing outside this folder names an architecture.

pub mod chatglm2;
pub mod chatglm6b;
pub mod llama;
pub mod mistral;
pub mod qwen2;

use std::path::Path;

use prunec_ir::{Model, ModelInfo};

use crate::error::{FrontendError, Result};
use crate::gguf::GgufFile;
use crate::weights::WeightSource;

/// What prunec knows of one architecture.
pub trait Architecture: Sync {
    /// Its name: the `model_type` of its HF configs, `ModelInfo::architecture` of its models.
    fn name(&self) -> &'static str;

    /// The classes of an HF config's `architectures` that name it when `model_type` is absent.
    fn hf_classes(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether an HF `config.json` (with `model_type` = [`Architecture::name`]) describes this
    /// architecture (ChatGLM-6B and ChatGLM2 share their `model_type`).
    fn reads(&self, json: &serde_json::Value) -> bool {
        let _ = json;
        true
    }

    /// Reads the configuration (every value the computation uses checked), checks that the
    /// weights' tensors (`names`) are all ones it describes, and lowers the model over
    /// `weights`; `config_path` names the configuration in errors.
    fn lower(
        &self,
        config_path: &Path,
        json: &serde_json::Value,
        info: ModelInfo,
        weights: &dyn WeightSource,
        names: &[&String],
    ) -> Result<Model>;

    /// The HF `config.json` of `model` as it is now (pruned widths read from its parameters).
    fn hf_config(&self, model: &Model) -> Result<serde_json::Value>;

    /// Prepares a pruned `model` for its HF writer (LLaMA leaves out the layers pruning
    /// emptied); returns a line for people when it changed something.
    fn before_writing(&self, model: &mut Model) -> Result<Option<String>> {
        let _ = model;
        Ok(None)
    }

    /// The linear modules LoRA adapts unless told otherwise, by the last component of their
    /// module name.
    fn lora_targets(&self) -> &'static [&'static str];

    /// Its `general.architecture` in GGUF files, when prunec reads it from them.
    fn gguf_name(&self) -> Option<&'static str> {
        None
    }

    /// Reads the GGUF file `file` (at `path`) of this architecture.
    fn load_gguf(&self, path: &Path, file: GgufFile) -> Result<Model> {
        let _ = file;
        Err(FrontendError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            architecture: self.name().to_string(),
            supported: gguf_names().join(", "),
        })
    }
}

/// Every architecture prunec reads.
pub static ARCHITECTURES: &[&dyn Architecture] = &[&llama::Llama, &chatglm6b::ChatGlm6b, &chatglm2::ChatGlm2, &qwen2::Qwen2, &mistral::Mistral];

/// The names of the architectures of HF folders, each once.
pub fn hf_names() -> Vec<&'static str> {
    unique(ARCHITECTURES.iter().map(|a| a.name()))
}

/// `items` in order, each once.
fn unique(items: impl Iterator<Item = &'static str>) -> Vec<&'static str> {
    let mut seen = std::collections::HashSet::new();
    items.filter(|t| seen.insert(*t)).collect()
}

/// The `general.architecture` names of the GGUF files prunec reads.
pub fn gguf_names() -> Vec<&'static str> {
    ARCHITECTURES.iter().filter_map(|a| a.gguf_name()).collect()
}

/// The architecture name an HF class (`LlamaForCausalLM`) stands for.
pub fn for_hf_class(class: &str) -> Option<&'static str> {
    ARCHITECTURES.iter().find(|a| a.hf_classes().contains(&class)).map(|a| a.name())
}

/// The architecture of HF config `json` whose `model_type` (or first of `architectures`) is
/// `name`.
pub fn for_hf(name: &str, json: &serde_json::Value) -> Option<&'static dyn Architecture> {
    ARCHITECTURES.iter().copied().find(|a| a.name() == name && a.reads(json))
}

/// The architecture of `model`, when it is one of the registry's (an ONNX graph raised to the
/// IR has none).
pub fn of(model: &Model) -> Option<&'static dyn Architecture> {
    let json = model.info.config_json.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(serde_json::Value::Null);
    ARCHITECTURES.iter().copied().find(|a| a.name() == model.info.architecture && a.reads(&json))
}

/// The architecture of GGUF file `file` (at `path`), by its `general.architecture`.
pub fn for_gguf(path: &Path, file: &GgufFile) -> Result<&'static dyn Architecture> {
    let name = file.get_str("general.architecture")?;
    ARCHITECTURES.iter().copied().find(|a| a.gguf_name() == Some(name)).ok_or_else(|| FrontendError::UnsupportedArchitecture {
        path: path.to_path_buf(),
        architecture: name.to_string(),
        supported: gguf_names().join(", "),
    })
}

/// The modules LoRA adapts in `model` unless told otherwise: its architecture's, or for a
/// model of none (an ONNX graph, whose module names are its HF names) those of every
/// architecture.
pub fn lora_targets(model: &Model) -> Vec<&'static str> {
    match of(model) {
        Some(a) => a.lora_targets().to_vec(),
        None => unique(ARCHITECTURES.iter().flat_map(|a| a.lora_targets().iter().copied())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_is_found_by_its_names() {
        let v1 = serde_json::json!({ "model_type": "chatglm" });
        let v2 = serde_json::json!({ "model_type": "chatglm", "rmsnorm": true });
        assert_eq!(for_hf("chatglm", &v1).map(|a| a.lora_targets()), Some(chatglm6b::ChatGlm6b.lora_targets()));
        assert_eq!(for_hf("chatglm", &v2).map(|a| a.lora_targets()), Some(chatglm2::ChatGlm2.lora_targets()));
        assert_eq!(for_hf("llama", &serde_json::json!({})).map(|a| a.name()), Some("llama"));
        assert!(for_hf("gpt2", &serde_json::json!({})).is_none());
        assert_eq!(hf_names(), vec!["llama", "chatglm", "qwen2", "mistral"]);
        assert_eq!(gguf_names(), vec!["llama"]);
    }
}
