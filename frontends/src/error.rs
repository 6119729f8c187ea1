//! Errors of the frontends: every one names the file and, where there is one, the tensor.

use std::path::PathBuf;

/// Why a model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file the format needs is not there.
    #[error("{path}: missing ({what})")]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
        /// What it would have held.
        what: String,
    },
    /// A file is not valid in its format (truncated, corrupt header, bad offsets...).
    #[error("{path}: corrupt {format} file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The format: `safetensors`, `GGUF`, `config.json`...
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// One tensor of a file is unusable (bad dtype, bad offsets, unsupported quantization).
    #[error("{path}: tensor `{tensor}`: {reason}")]
    BadTensor {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name in that file.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("{path}: tensor `{tensor}` not found")]
    MissingTensor {
        /// The file (or folder) searched.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
    },
    /// A tensor's shape disagrees with the model's configuration.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, but the config implies {expected:?}")]
    ShapeMismatch {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A configuration value is missing or out of range.
    #[error("{path}: config: {reason}")]
    BadConfig {
        /// The configuration file (or the GGUF file holding metadata).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The model's architecture has no frontend.
    #[error("{path}: unsupported architecture `{architecture}` (supported: {supported})")]
    UnsupportedArchitecture {
        /// The file that names the architecture.
        path: PathBuf,
        /// The architecture it names.
        architecture: String,
        /// The architectures prunec reads.
        supported: String,
    },
    /// An ONNX node whose op the importer neither raises nor computes (the file is valid ONNX).
    #[error("{path}: unsupported op `{op}` (node `{node}`); supported ops: {supported}")]
    UnsupportedOp {
        /// The model file.
        path: PathBuf,
        /// The node's name (its first output when it has none).
        node: String,
        /// The op, with its domain when that is not ONNX's own (`com.microsoft.Attention`).
        op: String,
        /// The ops the importer reads, comma-separated.
        supported: String,
    },
    /// A table of rows (Parquet, JSONL) lacks a column the reader needs.
    #[error("{path}: no column `{column}` (its columns: {found})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column looked for (alternatives separated by ` or `).
        column: String,
        /// The columns the file has, comma-separated.
        found: String,
    },
    /// One value of a table is not what the reader needs (a number where text is expected...).
    #[error("{path}: row {row}, column `{column}`: {reason}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The row (0-based, as `datasets` counts).
        row: usize,
        /// The column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// An output cannot be written where asked (an input, an existing file without `--force`...).
    #[error(transparent)]
    Output(#[from] prunec_ir::output::OutputError),
    /// Building the IR failed (a bug in a frontend or an inconsistent model).
    #[error("{path}: {source}")]
    Ir {
        /// The model's path.
        path: PathBuf,
        /// The IR error.
        #[source]
        source: prunec_ir::IrError,
    },
}

/// Result of the frontends.
pub type Result<T, E = FrontendError> = std::result::Result<T, E>;
