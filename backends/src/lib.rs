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
    /// The output would overwrite an input of the run (or a folder holding one).
    #[error("{path}: refusing to overwrite an input of this run ({reason}); an input is never overwritten, even with --force")]
    WouldOverwriteInput {
        /// The path.
        path: PathBuf,
        /// Which input, and how.
        reason: String,
    },
    /// The output cannot go where asked (see [`prunec_ir::output`]).
    #[error(transparent)]
    Output(prunec_ir::output::OutputError),
    /// Encoding a tensor file failed.
    #[error("{path}: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A token id outside the model's vocabulary (another model's tokenizer, for instance).
    #[error("token id {id} is outside the model's vocabulary of {vocab} tokens{at}")]
    TokenOutOfRange {
        /// The id.
        id: i64,
        /// The tokens the model has (the embedding's rows, or fewer logits).
        vocab: usize,
        /// Where it is (` (row R, position P)`), or nothing.
        at: String,
    },
    /// A loss, log-likelihood or perplexity that is NaN or infinite.
    #[error("{what} is {value}, not a finite number{at}")]
    NonFinite {
        /// Which value, where (the windows, the step...).
        what: String,
        /// The value.
        value: f64,
        /// Where the first non-finite value appeared in the model, when found.
        at: String,
    },
    /// The IR could not be run (an op the backend cannot lower, inconsistent operands).
    #[error("backend: {0}")]
    Lowering(String),
    /// Several peers (devices, nodes) could not work together: one failed, stopped answering
    /// within the timeout, or the collective could not be set up.
    #[error("peers: {0}")]
    Collective(String),
    /// The IR could not be read (a parameter's data, for instance).
    #[error(transparent)]
    Ir(#[from] prunec_ir::IrError),
}

/// Result of the backends.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;
