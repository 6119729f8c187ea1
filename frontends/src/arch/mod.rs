//! The architecture seam: what an architecture knows, behind one trait ([`Architecture`]),
//! and one registry ([`ARCHITECTURES`]) that every caller asks — the HF and GGUF frontends,
//! the HF writer, LoRA's default targets. One module per architecture: [`llama`] (LLaMA 1/2/3,
//! Vicuna, SmolLM), [`qwen2`] (Qwen2/2.5), [`qwen3`] (Qwen3), [`mistral`] (the last three
//! LLaMA-like: their configurations over LLaMA's lowering), [`phi3`] (Phi-3: LLaMA-like with
//! fused projections, its own lowering), [`chatglm2`] (ChatGLM2/3), [`chatglm6b`]
//! (ChatGLM-6B), [`gemma3`] (Gemma 3 text).
//!
//! To add an architecture: a module here with its typed configuration, its lowering through
//! [`crate::builder`], its HF config writer, and a type implementing [`Architecture`]; then its
//! entry in [`ARCHITECTURES`]. Nothing outside this folder names an architecture.

pub mod chatglm2;
pub mod chatglm6b;
pub mod gemma3;
pub mod gguf_out;
pub mod gguf_pad;
mod gguf_weights;
pub mod llama;
pub mod mistral;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use std::any::Any;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use prunec_ir::{ArchConfig, Model, ModelInfo};

use crate::error::{FrontendError, Result};
use crate::gguf::GgufFile;
pub(crate) use gguf_weights::{gguf_tensor_name, GgufWeights};
use crate::weights::WeightSource;

/// An architecture's typed configuration `T` (what its lowering read, every value checked)
/// with the `config.json` it came from (for a GGUF model, the one its metadata describes),
/// whose keys prunec does not model its writer keeps: what a model of the architecture carries
/// as its `ModelInfo::config`.
#[derive(Debug, Clone)]
pub struct Config<T> {
    /// The configuration as the architecture's module reads it.
    pub typed: T,
    /// The `config.json` object it was read from.
    pub json: serde_json::Value,
}

impl<T: fmt::Debug + Send + Sync + 'static> ArchConfig for Config<T> {
    fn to_json(&self) -> serde_json::Value {
        self.json.clone()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<T: fmt::Debug + Send + Sync + 'static> Config<T> {
    /// `typed` and `json` as a model carries them.
    pub fn shared(typed: T, json: serde_json::Value) -> Arc<dyn ArchConfig> {
        Arc::new(Config { typed, json })
    }

    /// The configuration of type `T` that `model` carries; `path` names it in errors.
    pub fn of<'m>(model: &'m Model, path: &Path) -> Result<&'m Config<T>> {
        model.info.config_as::<Config<T>>().ok_or_else(|| FrontendError::BadConfig {
            path: path.to_path_buf(),
            reason: format!("the model carries no {} configuration", std::any::type_name::<T>().rsplit("::").next().unwrap_or("")),
        })
    }
}

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

    /// The chat template of the architecture's own chat code (Jinja, as [`crate::chat::render`]
    /// takes it), for checkpoints whose tokenizer ships none.
    fn chat_template(&self) -> Option<&'static str> {
        None
    }

    /// Its `general.architecture` in GGUF files, when prunec reads it from them.
    fn gguf_name(&self) -> Option<&'static str> {
        None
    }

    /// Other `general.architecture` names of GGUF files this architecture reads (LLaMA reads
    /// llama.cpp's `deci`, its LLaMA with layers of their own widths, which prunec writes).
    fn gguf_also(&self) -> &'static [&'static str] {
        &[]
    }

    /// What a GGUF file of `model` holds, for llama.cpp (`model` prepared by
    /// [`Architecture::before_writing`]), its matrices to be written in blocks of `block`
    /// values ([`gguf_out::block_width`]).
    fn gguf_plan(&self, model: &Model, block: usize) -> Result<gguf_out::GgufPlan> {
        let _ = block;
        Err(FrontendError::UnsupportedArchitecture {
            path: model.info.source.clone(),
            architecture: format!("{} (writing GGUF)", self.name()),
            supported: ARCHITECTURES.iter().filter(|a| a.writes_gguf()).map(|a| a.name()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Whether [`Architecture::gguf_plan`] writes this architecture's GGUF files.
    fn writes_gguf(&self) -> bool {
        false
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
pub static ARCHITECTURES: &[&dyn Architecture] =
    &[&llama::LLAMA, &chatglm6b::ChatGlm6b, &chatglm2::ChatGlm2, &qwen2::FAMILY, &qwen3::FAMILY, &mistral::FAMILY, &gemma3::Gemma3, &phi3::Phi3];

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
    unique(ARCHITECTURES.iter().flat_map(|a| a.gguf_name().into_iter().chain(a.gguf_also().iter().copied())))
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
    let json = model.info.config.as_ref().map_or(serde_json::Value::Null, |c| c.to_json());
    ARCHITECTURES.iter().copied().find(|a| a.name() == model.info.architecture && a.reads(&json))
}

/// The architecture of GGUF file `file` (at `path`), by its `general.architecture`.
pub fn for_gguf(path: &Path, file: &GgufFile) -> Result<&'static dyn Architecture> {
    let name = file.get_str("general.architecture")?;
    ARCHITECTURES.iter().copied().find(|a| a.gguf_name() == Some(name) || a.gguf_also().contains(&name)).ok_or_else(|| FrontendError::UnsupportedArchitecture {
        path: path.to_path_buf(),
        architecture: name.to_string(),
        supported: gguf_names().join(", "),
    })
}

/// The `ModelInfo` a model read from GGUF file `file` (at `path`) starts with: its
/// `general.name` (else the file's stem) and `architecture`. Refuses a file holding tensors of
/// more layers (`blk.N.*`) than `layers`, the metadata's `block_count`: their weights would be
/// dropped silently.
pub(crate) fn gguf_model_info(path: &Path, file: &GgufFile, architecture: String, layers: usize) -> Result<ModelInfo> {
    let bad = |reason: String| FrontendError::BadConfig { path: file.path().to_path_buf(), reason };
    if layers > file.tensors().len() {
        // every layer has tensors: a larger count is wrong, and its list of tensors could exhaust memory
        return Err(bad(format!("the metadata's `block_count` is {layers}, but the file holds only {} tensors", file.tensors().len())));
    }
    let beyond = file
        .tensors()
        .iter()
        .filter_map(|t| Some((t.name.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok()?, &t.name)))
        .filter(|(l, _)| *l >= layers)
        .max_by_key(|(l, _)| *l);
    if let Some((last, name)) = beyond {
        return Err(bad(format!(
            "the file holds tensors of layers up to {last} (`{}`), but the metadata's `block_count` is {layers}: their weights would be dropped",
            crate::gguf::escaped(name)
        )));
    }
    let name = file
        .get("general.name")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    Ok(ModelInfo { name, architecture, source: path.to_path_buf(), format: prunec_ir::SourceFormat::Gguf, ..ModelInfo::default() })
}

/// Refuses GGUF file `file` when it holds a tensor outside `read`, the tensors its model reads:
/// a weight left unread would change what the model computes without a word (Llama 3.1's
/// `rope_freqs.weight` did, before it was read).
pub(crate) fn gguf_all_read(file: &GgufFile, read: &[String]) -> Result<()> {
    let read: std::collections::HashSet<&str> = read.iter().map(String::as_str).collect();
    match file.tensors().iter().find(|t| !read.contains(t.name.as_str())) {
        None => Ok(()),
        Some(t) => Err(FrontendError::BadTensor {
            path: file.path().to_path_buf(),
            tensor: crate::gguf::escaped(&t.name),
            reason: format!(
                "the {} reader does not use this tensor, and leaving it out would change what the model computes",
                crate::gguf::escaped(file.get_str("general.architecture").unwrap_or("?"))
            ),
        }),
    }
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
        assert_eq!(hf_names(), vec!["llama", "chatglm", "qwen2", "qwen3", "mistral", "gemma3_text", "phi3"]);
        assert_eq!(gguf_names(), vec!["llama", "deci", "chatglm", "qwen2", "qwen3", "gemma3", "phi3"]);
        assert_eq!(for_hf_class("Phi3ForCausalLM"), Some("phi3"));
    }
}
