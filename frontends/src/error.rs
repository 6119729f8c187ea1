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
    /// A graph is not the architecture a writer needs (an ONNX graph written as a LLaMA GGUF
    /// file): what was expected and what was found instead.
    #[error("{path}: not recognised as {expected}: {reason}")]
    NotRecognised {
        /// The model's file.
        path: PathBuf,
        /// What it was expected to be.
        expected: &'static str,
        /// What was found instead.
        reason: String,
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

thread_local! {
    /// Whether this thread is inside [`guarded`]: its panics are turned into errors, so the
    /// panic hook stays silent for them.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `read`, a reader of another crate (tokenizers, parquet) of the file at `path` in
/// `format`, turning a panic of that crate on a malformed file into a [`FrontendError::Corrupt`]
/// naming the file: a bad input is an error, never a crash. The panic's message is not printed.
pub fn guarded<T>(path: &std::path::Path, format: &'static str, read: impl FnOnce() -> Result<T>) -> Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    GUARDED.with(|g| g.set(outer));
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(FrontendError::Corrupt { path: path.to_path_buf(), format, reason: format!("its reader failed on it: {message}") })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_reader_is_an_error_naming_the_file() {
        let path = std::path::Path::new("data/bad.parquet");
        let e = guarded::<()>(path, "Parquet", || panic!("column start and length should not be negative")).unwrap_err();
        assert_eq!(e.to_string(), FrontendError::Corrupt { path: path.into(), format: "Parquet", reason: "its reader failed on it: column start and length should not be negative".into() }.to_string());
        assert!(e.to_string().contains("data/bad.parquet"), "{e}");
        assert_eq!(guarded(path, "Parquet", || Ok(7)).unwrap(), 7);
    }
}
