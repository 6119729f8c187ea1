//! HF folders: `config.json` plus safetensors weights (one file or shards).

use std::path::Path;

use prunec_ir::{DType, Model, ModelInfo};
use safetensors::tensor::Dtype;

use crate::chatglm::{self, ChatGlmConfig};
use crate::glm::{self, GlmConfig};
use crate::error::{FrontendError, Result};
use crate::llama::{self, LlamaConfig};
use crate::safetensors::HfWeights;
use crate::weights::{FoundTensor, WeightSource};

/// Architectures the HF frontend reads, by `model_type`.
pub const SUPPORTED: &[&str] = &["llama", "chatglm"];

impl WeightSource for HfWeights {
    fn location(&self) -> &Path {
        self.dir()
    }

    fn tensor(&self, name: &str) -> Result<Option<FoundTensor>> {
        let Some((file, info)) = self.get(name) else { return Ok(None) };
        let dtype = match info.dtype {
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            _ => DType::F32,
        };
        Ok(Some(FoundTensor { file: file.path().to_path_buf(), shape: info.shape.clone(), dtype, source: file.source(name)? }))
    }
}

/// Reads the `config.json` of folder `dir`.
pub fn read_config(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(FrontendError::Missing { path, what: "the model configuration of an HF folder".into() });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| FrontendError::Io { path: path.clone(), source })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| FrontendError::Corrupt {
        path: path.clone(),
        format: "config.json",
        reason: e.to_string(),
    })?;
    if !json.is_object() {
        return Err(FrontendError::Corrupt { path, format: "config.json", reason: "not a JSON object".into() });
    }
    Ok(json)
}

/// The architecture a config names: `model_type`, else the first of `architectures`.
pub fn architecture(json: &serde_json::Value) -> Option<String> {
    if let Some(t) = json.get("model_type").and_then(serde_json::Value::as_str) {
        return Some(t.to_string());
    }
    let arch = json.get("architectures")?.as_array()?.first()?.as_str()?;
    Some(match arch {
        "LlamaForCausalLM" => "llama".to_string(),
        other => other.to_string(),
    })
}

/// Reads the HF folder `dir`.
pub fn load(dir: &Path) -> Result<Model> {
    let json = read_config(dir)?;
    let config_path = dir.join("config.json");
    let arch = architecture(&json).ok_or_else(|| FrontendError::BadConfig {
        path: config_path.clone(),
        reason: "neither `model_type` nor `architectures` says what the model is".into(),
    })?;
    let info = ModelInfo {
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        architecture: arch.clone(),
        source: dir.to_path_buf(),
        format: "hf".into(),
        config_json: Some(json.to_string()),
        ..ModelInfo::default()
    };
    match arch.as_str() {
        "llama" => {
            let config = LlamaConfig::from_hf_json(&config_path, &json)?;
            let weights = HfWeights::open(dir)?;
            llama::build(&config, &weights, info)
        }
        "chatglm" if glm::is_v1(&json) => {
            let config = GlmConfig::from_hf_json(&config_path, &json)?;
            let weights = HfWeights::open(dir)?;
            glm::build(&config, &weights, info)
        }
        "chatglm" => {
            let config = ChatGlmConfig::from_hf_json(&config_path, &json)?;
            let weights = HfWeights::open(dir)?;
            chatglm::build(&config, &weights, info)
        }
        other => Err(FrontendError::UnsupportedArchitecture {
            path: config_path,
            architecture: other.to_string(),
            supported: SUPPORTED.join(", "),
        }),
    }
}
