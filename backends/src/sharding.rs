//! HF's sharded safetensors layout: the weights of a model cut into files of at most a given
//! size, `model-0000k-of-0000n.safetensors`, named tensor by tensor in
//! `model.safetensors.index.json`; a model that fits in one file is `model.safetensors`
//! alone. Both `prunec synth` and the HF writer write through [`write_shards`].
//!
//! The cut follows `save_pretrained`: tensors in the model's order fill a shard until the next
//! one would overflow it, and a tensor bigger than the limit gets a shard of its own. Within a
//! file, tensors lie by name (as the `safetensors` library orders them), with the header
//! metadata `format: pt` that transformers checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::atomic::AtomicPath;
use crate::stream_writer::{SafetensorsStreamWriter, TensorEntry};
use crate::{BackendError, Result};

/// The largest weights file by default: 5 GB (5 × 10⁹ bytes), the `max_shard_size="5GB"` of
/// transformers 4's `save_pretrained` that most Hub checkpoints follow (transformers 5 raised
/// its default to 50 GB).
pub const HF_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// The name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The name of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

/// Tensors cut into shards, before anything is written.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    shards: Vec<Vec<TensorEntry>>,
    total_bytes: u64,
    total_params: u64,
}

impl ShardPlan {
    /// Cuts `tensors` (in the model's order) into shards of at most `max_shard_bytes` of tensor
    /// data the way `save_pretrained` does: a tensor opens a new shard when it would overflow
    /// the current one (a tensor bigger than the limit gets a shard of its own). `dir`, the
    /// folder the shards are for, is named in errors (a shape too large, a dtype the writer
    /// does not write).
    pub fn new(dir: &Path, tensors: Vec<TensorEntry>, max_shard_bytes: u64) -> Result<ShardPlan> {
        let mut shards: Vec<Vec<TensorEntry>> = vec![Vec::new()];
        let (mut size, mut total_bytes, mut total_params) = (0u64, 0u64, 0u64);
        for t in tensors {
            let (Some(bytes), Some(numel)) = (t.byte_len(), t.numel()) else {
                return Err(BackendError::Encode {
                    path: dir.to_path_buf(),
                    reason: format!("tensor `{}`: shape {:?} of {:?} is too large or not writable", t.name, t.shape, t.dtype),
                });
            };
            let bytes = bytes as u64;
            let current = shards.last().map_or(0, Vec::len);
            if current > 0 && size + bytes > max_shard_bytes {
                shards.push(Vec::new());
                size = 0;
            }
            size += bytes;
            total_bytes += bytes;
            total_params += numel as u64;
            if let Some(shard) = shards.last_mut() {
                shard.push(t);
            }
        }
        Ok(ShardPlan { shards, total_bytes, total_params })
    }

    /// The shards, each in the model's order.
    pub fn shards(&self) -> &[Vec<TensorEntry>] {
        &self.shards
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether the plan holds no shard (never: an empty model still has one, empty, file).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Bytes of tensor data over all shards (the index's `metadata.total_size`).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Elements over all tensors (the index's `metadata.total_parameters`).
    pub fn total_params(&self) -> u64 {
        self.total_params
    }

    /// The file name of shard `k`: `model.safetensors` when there is one shard, else
    /// `model-0000k-of-0000n.safetensors` (counting from 1).
    pub fn file_name(&self, k: usize) -> String {
        let n = self.shards.len();
        if n == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", k + 1)
        }
    }
}

/// One shard, once written.
#[derive(Debug, Clone)]
pub struct ShardWritten {
    /// Its position (from 0).
    pub index: usize,
    /// How many shards there are.
    pub count: usize,
    /// Its file name.
    pub file_name: String,
    /// Its bytes of tensor data.
    pub bytes: u64,
}

/// Writes `plan` into folder `dir` (which must exist): every shard through a
/// [`SafetensorsStreamWriter`], `fill` giving each tensor's values (it is called once per
/// tensor, in the file's order, and must write the whole tensor through the writer), `done`
/// told after each file; then, for more than one shard, the index. Returns the files written.
/// `inputs` are never overwritten.
pub fn write_shards<E: From<BackendError>>(
    dir: &Path,
    plan: ShardPlan,
    inputs: &[&Path],
    mut fill: impl FnMut(&mut SafetensorsStreamWriter, &TensorEntry) -> Result<(), E>,
    mut done: impl FnMut(&ShardWritten),
) -> Result<Vec<PathBuf>, E> {
    // `format: pt` for transformers; the marker lets `--force` replace this output later
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        (prunec_ir::output::MARKER_KEY.to_string(), prunec_ir::output::marker_value()),
    ]);
    let count = plan.len();
    let names: Vec<String> = (0..count).map(|k| plan.file_name(k)).collect();
    let (total_bytes, total_params) = (plan.total_bytes, plan.total_params);
    let mut weight_map = BTreeMap::new();
    let mut files = Vec::with_capacity(count + 1);
    for (k, (mut shard, name)) in plan.shards.into_iter().zip(names).enumerate() {
        shard.sort_by(|a, b| a.name.cmp(&b.name));
        let mut writer = SafetensorsStreamWriter::create(&dir.join(&name), shard.clone(), Some(&metadata), inputs)?;
        let mut bytes = 0u64;
        for entry in &shard {
            fill(&mut writer, entry)?;
            bytes += entry.byte_len().unwrap_or(0) as u64;
            weight_map.insert(entry.name.clone(), name.clone());
        }
        files.push(writer.finish()?);
        done(&ShardWritten { index: k, count, file_name: name, bytes });
    }
    if count > 1 {
        let index = serde_json::json!({
            "metadata": { "total_parameters": total_params, "total_size": total_bytes },
            "weight_map": weight_map,
        });
        files.push(write_json(&dir.join(INDEX_FILE), &index, inputs)?);
    }
    Ok(files)
}

/// Writes `value` as pretty JSON with a final newline (as transformers writes its JSON files),
/// under a temporary name renamed into place.
pub fn write_json(path: &Path, value: &serde_json::Value, inputs: &[&Path]) -> Result<PathBuf> {
    let out = AtomicPath::new(path, inputs)?;
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| BackendError::Encode { path: path.to_path_buf(), reason: e.to_string() })?
        + "\n";
    std::fs::write(out.temp(), text).map_err(|source| BackendError::Io { path: path.to_path_buf(), source })?;
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_writer::Dtype;

    #[test]
    fn shards_follow_the_size_limit() {
        let t = |n: &str, gib: usize| TensorEntry::new(n, Dtype::F32, vec![gib << 28]);
        let plan = ShardPlan::new(Path::new("m"), vec![t("a", 1), t("b", 1), t("c", 1), t("d", 3), t("e", 1)], 2 << 30).unwrap();
        let names: Vec<Vec<&str>> = plan.shards().iter().map(|s| s.iter().map(|e| e.name.as_str()).collect()).collect();
        assert_eq!(names, [vec!["a", "b"], vec!["c"], vec!["d"], vec!["e"]]);
        assert_eq!(plan.total_bytes(), 7 << 30);
        assert_eq!(plan.total_params(), 7 << 28);
        assert_eq!(plan.file_name(2), "model-00003-of-00004.safetensors");
        let one = ShardPlan::new(Path::new("m"), vec![t("a", 1)], HF_MAX_SHARD_BYTES).unwrap();
        assert_eq!((one.len(), one.file_name(0).as_str()), (1, "model.safetensors"));
    }

    #[test]
    fn shards_and_index_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            TensorEntry::new("z", Dtype::F32, vec![4]),
            TensorEntry::new("y", Dtype::F16, vec![2, 2]),
            TensorEntry::new("x", Dtype::BF16, vec![4]),
        ];
        let plan = ShardPlan::new(dir.path(), entries, 16).unwrap();
        assert_eq!(plan.len(), 2);
        let mut told = Vec::new();
        let files = write_shards::<BackendError>(
            dir.path(),
            plan,
            &[],
            |w, e| w.write_tensor(&e.name, &vec![1.5; e.numel().unwrap()]),
            |s| told.push((s.index, s.count, s.file_name.clone(), s.bytes)),
        )
        .unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(
            told,
            [(0, 2, "model-00001-of-00002.safetensors".into(), 16), (1, 2, "model-00002-of-00002.safetensors".into(), 16)]
        );
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap()).unwrap();
        assert_eq!(index["metadata"]["total_size"], 32);
        assert_eq!(index["metadata"]["total_parameters"], 12);
        assert_eq!(index["weight_map"]["z"], "model-00001-of-00002.safetensors");
        assert_eq!(index["weight_map"]["x"], "model-00002-of-00002.safetensors");
        let bytes = std::fs::read(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.names().len(), 2);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));
    }
}
