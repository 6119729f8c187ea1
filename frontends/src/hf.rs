//! HF folders: `config.json` plus safetensors weights (one file or shards).

use std::path::Path;

use prunec_ir::{DType, Model, ModelInfo};
use safetensors::tensor::Dtype;

use crate::error::{FrontendError, Result};
use crate::safetensors::HfWeights;
use crate::weights::{FoundTensor, WeightSource};

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
    Some(crate::arch::for_hf_class(arch).unwrap_or(arch).to_string())
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
        format: prunec_ir::SourceFormat::Hf,
        ..ModelInfo::default()
    };
    if !crate::arch::hf_names().contains(&arch.as_str()) {
        return Err(FrontendError::UnsupportedArchitecture {
            path: config_path,
            architecture: arch,
            supported: crate::arch::hf_names().join(", "),
        });
    }
    let weights = HfWeights::open(dir)?;
    let names: Vec<&String> = weights.names().collect();
    lower_with(&config_path, &json, info, &weights, &names)
}

/// What [`load`] does once the configuration is read and the weights are open: reads the
/// configuration of `info.architecture` (every value the computation uses checked), checks that
/// the weights' tensors (`names`) are all ones it describes, and lowers the model over
/// `weights`. For tools (and fuzzing) that hold the weights elsewhere than in files.
pub fn lower_with(
    config_path: &Path,
    json: &serde_json::Value,
    info: ModelInfo,
    weights: &dyn WeightSource,
    names: &[&String],
) -> Result<Model> {
    // every tensor of the file must be one the configuration describes (no weight is dropped
    // silently): the architecture checks its names
    match crate::arch::for_hf(&info.architecture, json) {
        Some(arch) => arch.lower(config_path, json, info, weights, names),
        None => Err(FrontendError::UnsupportedArchitecture {
            path: config_path.to_path_buf(),
            architecture: info.architecture.clone(),
            supported: crate::arch::hf_names().join(", "),
        }),
    }
}

