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

/// Drops the pages of `map[start..start + len]` from this process's resident memory once a
/// tensor there has been decoded: they stay in the kernel's page cache (a later read maps them
/// again), but no longer count against the process, so reading a model larger than memory
/// layer by layer keeps the resident set to what is decoded at once.
pub(crate) fn release_pages(map: &memmap2::Mmap, start: usize, len: usize) {
    if len == 0 || start.checked_add(len).is_none_or(|end| end > map.len()) {
        return;
    }
    // SAFETY: the map is read-only and backed by a file: after MADV_DONTNEED a later access
    // reads the same bytes back from the page cache (or the file), so no reader of the map
    // (here or on another thread) can observe a change. Advice failing is harmless.
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
}
