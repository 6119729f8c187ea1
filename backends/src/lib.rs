//! # prunec-backends
//!
//! Backends turn the IR into something that runs or loads elsewhere: the Burn runtime, and
//! writers — HF folders ([`hf_writer`]), safetensors streamed tensor by tensor — every output
//! written to a temporary path and renamed into place so that no half-written file is ever
//! left where a user looks.
#![warn(missing_docs)]

pub mod atomic;
pub mod hf_writer;
pub mod peft;
pub mod runtime;
pub mod safetensors_writer;
pub mod sharding;
pub mod stream_writer;

/// The Burn version prunec is built with, for code that works with its tensors.
pub use ::burn;
pub use atomic::AtomicPath;
pub use hf_writer::{write_hf_folder, HfWriteOptions};
pub use safetensors_writer::write_safetensors;

use std::path::PathBuf;

/// Why a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The output exists already.
    #[error("{path}: exists; {reason}")]
    OutputExists {
        /// The output.
        path: PathBuf,
        /// Why it is not replaced.
        reason: &'static str,
    },
    /// The output would overwrite the model's own input.
    #[error("{path}: refusing to overwrite an input of this run")]
    WouldOverwriteInput {
        /// The path.
        path: PathBuf,
    },
    /// Encoding a tensor file failed.
    #[error("{path}: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The IR could not be run (an op the backend cannot lower, inconsistent operands).
    #[error("backend: {0}")]
    Lowering(String),
    /// The IR could not be read (a parameter's data, for instance).
    #[error(transparent)]
    Ir(#[from] prunec_ir::IrError),
}

/// Result of the backends.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;
