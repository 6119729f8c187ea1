//! The weights of a GGUF file as an architecture's lowering reads them: HF names mapped to
//! llama.cpp's by the architecture, each tensor dequantized (and its rows put back in HF's
//! order where llama.cpp's converter permuted them) when a pass reads it. Tensors stay
//! quantized in the map until then.

use std::path::Path;
use std::sync::Arc;

use prunec_ir::{DType, TensorSource};

use crate::error::{FrontendError, Result};
use crate::gguf::{self, GgmlType, GgufFile};
use crate::weights::{FoundTensor, WeightSource};

/// A tensor of a GGUF file, dequantized (and un-permuted) when read.
#[derive(Debug)]
pub(crate) struct GgufTensor {
    pub(crate) file: GgufFile,
    pub(crate) name: String,
    /// Heads to undo llama.cpp's rotary row permutation for, with the matrix's rows and columns.
    pub(crate) unpermute: Option<(usize, usize, usize)>,
}

impl GgufTensor {
    /// The row of the file's tensor that holds row `r` of the HF-order tensor.
    pub(crate) fn stored_row(&self, r: usize) -> usize {
        match self.unpermute {
            Some((heads, rows, _)) => gguf::unpermuted_source_row(r, heads, rows),
            None => r,
        }
    }
}

impl TensorSource for GgufTensor {
    fn read_f32(&self) -> std::result::Result<Vec<f32>, String> {
        let data = self.file.dequantize(&self.name).map_err(|e| e.to_string())?;
        Ok(match self.unpermute {
            Some((heads, rows, cols)) => gguf::unpermute_rows(&data, heads, rows, cols)?,
            None => data,
        })
    }

    fn stored_dtype(&self) -> DType {
        match self.file.tensor_info(&self.name).map(|t| t.ty) {
            Some(GgmlType::F16) => DType::F16,
            Some(GgmlType::BF16) => DType::BF16,
            _ => DType::F32,
        }
    }

    fn describe(&self) -> String {
        format!("{} (`{}`)", self.file.path().display(), self.name)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// The weights of GGUF file `file`, found by HF name through `names`: an architecture's map
/// from an HF tensor name to llama.cpp's, with the heads whose rows llama.cpp's converter
/// permuted for its rotary layout (LLaMA's q and k; `None` for a tensor left as it was).
pub(crate) struct GgufWeights<F> {
    pub(crate) file: GgufFile,
    pub(crate) names: F,
}

impl<F: Fn(&str) -> Option<(String, Option<usize>)>> WeightSource for GgufWeights<F> {
    fn location(&self) -> &Path {
        self.file.path()
    }

    fn tensor(&self, hf: &str) -> Result<Option<FoundTensor>> {
        let Some((name, heads)) = (self.names)(hf) else { return Ok(None) };
        let Some(info) = self.file.tensor_info(&name) else { return Ok(None) };
        let shape = info.shape();
        // a q/k bias is permuted as a matrix of one column
        let matrix = match shape.as_slice() {
            [rows, cols] => Some((*rows, *cols)),
            [rows] => Some((*rows, 1)),
            _ => None,
        };
        let unpermute = match (heads, matrix) {
            (Some(h), Some((rows, cols))) => {
                if h == 0 || rows % (2 * h) != 0 {
                    return Err(FrontendError::BadTensor {
                        path: self.file.path().to_path_buf(),
                        tensor: name,
                        reason: format!("{rows} rows cannot hold {h} rotary heads"),
                    });
                }
                Some((h, rows, cols))
            }
            _ => None,
        };
        let source = Arc::new(GgufTensor { file: self.file.clone(), name, unpermute });
        let dtype = source.stored_dtype();
        Ok(Some(FoundTensor { file: self.file.path().to_path_buf(), shape, dtype, source }))
    }
}

/// llama.cpp's name of the HF tensor `hf`, as the architectures' maps give it: a whole name of
/// `direct` (`model.embed_tokens.weight` → `token_embd.weight`), or, for a tensor under
/// `layers` (`model.layers.`), `blk.N.NAME.SUFFIX` where `module` maps the layer's module
/// (`self_attn.q_proj`) to NAME; `None` for a name the map does not know.
pub(crate) fn gguf_tensor_name(
    hf: &str,
    direct: &[(&str, &str)],
    layers: &str,
    module: impl Fn(&str) -> Option<&'static str>,
) -> Option<String> {
    if let Some((_, d)) = direct.iter().find(|(h, _)| *h == hf) {
        return Some(d.to_string());
    }
    let (layer, rest) = hf.strip_prefix(layers)?.split_once('.')?;
    let (m, suffix) = rest.rsplit_once('.')?;
    Some(format!("blk.{layer}.{}.{suffix}", module(m)?))
}
