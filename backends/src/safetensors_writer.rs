//! Parameters to a safetensors file (f32), written atomically.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use prunec_ir::ParamStore;
use safetensors::tensor::{Dtype, View};

use crate::atomic::AtomicPath;
use crate::{BackendError, Result};

struct F32Tensor {
    shape: Vec<usize>,
    data: Arc<Vec<f32>>,
}

impl View for &F32Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

/// Writes every parameter of `params` to `path` as f32 safetensors, with `metadata` in the
/// header. `inputs` are the run's input paths, which are never overwritten.
pub fn write_safetensors(
    params: &ParamStore,
    path: &Path,
    metadata: Option<std::collections::HashMap<String, String>>,
    inputs: &[&Path],
) -> Result<()> {
    let out = AtomicPath::new(path, inputs)?;
    let tensors = params
        .iter()
        .map(|(name, p)| Ok((name.clone(), F32Tensor { shape: p.shape.clone(), data: params.read_f32(name)? })))
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), metadata, out.temp())
        .map_err(|e| BackendError::Encode { path: path.to_path_buf(), reason: e.to_string() })?;
    out.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prunec_ir::Param;

    #[test]
    fn round_trips_through_the_safetensors_crate() {
        let mut store = ParamStore::new();
        store.insert("a.weight", Param::owned(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap());
        store.insert("b", Param::owned(vec![1], vec![-0.25]).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write_safetensors(&store, &path, None, &[]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let a = st.tensor("a.weight").unwrap();
        assert_eq!(a.shape(), &[2, 3]);
        let values: Vec<f32> = a.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(st.tensor("b").unwrap().data(), (-0.25f32).to_le_bytes());
    }
}
