//! # prunec-frontends
//!
//! Frontends lower models into the prunec IR: HF folders (`config.json` + safetensors,
//! sharded or not) and GGUF files (llama.cpp), both through the same architecture
//! modules ([`arch`]), so one model gives one graph whatever file it came in; ONNX files
//! through their own raising ([`onnx`]).
//!
//! [`load`] looks at the path and picks the frontend.
#![warn(missing_docs)]

pub mod arch;
mod builder;
pub mod chat;
pub mod data;
pub mod error;
pub mod gguf;
pub mod hf;
pub mod onnx;
pub mod parquet;
pub mod safetensors;
pub mod tasks;
pub mod tokenizer;
pub mod train_data;
pub mod weights;

use std::io::Read;
use std::path::Path;

pub use error::{FrontendError, Result};
use prunec_ir::Model;

/// Reads the model at `path`: an HF folder, or a GGUF file.
pub fn load(path: &Path) -> Result<Model> {
    if path.is_dir() {
        return hf::load(path);
    }
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
    let n = file.read(&mut magic).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
    if n == 4 && &magic == b"GGUF" {
        let file = gguf::GgufFile::open(path)?;
        return arch::for_gguf(path, &file)?.load_gguf(path, file);
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "onnx" {
        return onnx::load(path);
    }
    Err(FrontendError::Corrupt {
        path: path.to_path_buf(),
        format: if ext == "gguf" { "GGUF" } else { "model" },
        reason: if ext == "gguf" {
            "no GGUF magic at the start".into()
        } else {
            "not an HF folder, a GGUF file nor an `.onnx` file".into()
        },
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers of the unit tests.
    use std::path::{Path, PathBuf};

    /// SmolLM2-135M's GGUF: `PRUNEC_SMOLLM2_GGUF`, else fetched by `scripts/fetch-smollm2`;
    /// `None` only when `PRUNEC_OFFLINE` is set.
    pub fn smollm2() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("PRUNEC_SMOLLM2_GGUF") {
            return Some(PathBuf::from(p));
        }
        if std::env::var_os("PRUNEC_OFFLINE").is_some() {
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-smollm2");
        let out = std::process::Command::new(&script).output().expect("scripts/fetch-smollm2 runs");
        assert!(out.status.success(), "fetching SmolLM2 failed: {}", String::from_utf8_lossy(&out.stderr));
        Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}
