//! What a frontend's file format gives the architecture builders: tensors by (HF) name,
//! with their shape and a lazy source, and the file to name in messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prunec_ir::{DType, TensorSource};

use crate::error::Result;

/// A tensor found in a model's files.
#[derive(Debug, Clone)]
pub struct FoundTensor {
    /// The file it is in.
    pub file: PathBuf,
    /// Its shape, outermost first (HF/numpy order).
    pub shape: Vec<usize>,
    /// Its element type as stored.
    pub dtype: DType,
    /// Its data.
    pub source: Arc<dyn TensorSource>,
}

/// Tensors of a model by their HF name, whatever the file format.
pub trait WeightSource {
    /// The model's path (folder or file), named when a tensor is missing.
    fn location(&self) -> &Path;
    /// Tensor `name`, if the model has it.
    fn tensor(&self, name: &str) -> Result<Option<FoundTensor>>;
}
