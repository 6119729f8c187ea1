//! HF folders from the IR: `config.json`, the parameters as safetensors (one file, or shards
//! with `model.safetensors.index.json`, see [`crate::sharding`]), and files given as they are
//! (tokenizer, generation config) or by content (a tokenizer built from a GGUF file).
//!
//! Parameters are read one at a time (`ParamStore::read_f32`) and streamed to disk, converted
//! to the asked dtype: memory holds one tensor, never the model twice. The whole folder is
//! written under a temporary name beside the destination and renamed into place at the end,
//! so an interrupted run leaves nothing where a user looks; an existing destination is
//! replaced only when asked, and an input of the run never.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use prunec_ir::{Model, Op};

use crate::atomic::AtomicPath;
use crate::sharding::{self, ShardPlan, HF_MAX_SHARD_BYTES, INDEX_FILE, SINGLE_FILE};
use crate::stream_writer::{Dtype, TensorEntry};
use crate::{BackendError, Result};

/// How [`write_hf_folder`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HfWriteOptions {
    /// The weights' dtype: `F32`, `F16` or `BF16` (values are rounded to nearest, ties to even).
    pub dtype: Dtype,
    /// Largest weights file (bytes of tensor data); a bigger model is sharded. Default:
    /// [`HF_MAX_SHARD_BYTES`] (5 GB, transformers 4's `save_pretrained` default).
    pub max_shard_bytes: u64,
    /// Whether an existing destination folder is replaced (only an empty folder or an earlier
    /// prunec output; never an input of the run).
    pub overwrite: bool,
}

impl Default for HfWriteOptions {
    fn default() -> HfWriteOptions {
        HfWriteOptions { dtype: Dtype::F32, max_shard_bytes: HF_MAX_SHARD_BYTES, overwrite: false }
    }
}

/// The name transformers gives `dtype` in `config.json`.
pub fn torch_dtype(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F16 => "float16",
        Dtype::BF16 => "bfloat16",
        _ => "float32",
    }
}

/// Whether the writer itself makes a file of this name.
fn is_written_by_us(name: &str) -> bool {
    name == "config.json"
        || name == SINGLE_FILE
        || name == INDEX_FILE
        || (name.starts_with("model-") && name.ends_with(".safetensors"))
}

/// Parameters in the model's order (the graph's, as HF lists a model's tensors), then any the
/// graph does not use, by name.
fn params_in_model_order(model: &Model) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(model.params.len());
    for id in model.graph.topological_order()? {
        if let Op::Param { name, .. } = &model.graph.node(id)?.op {
            if model.params.get(name).is_some() && seen.insert(name.clone()) {
                names.push(name.clone());
            }
        }
    }
    names.extend(model.params.iter().map(|(n, _)| n).filter(|n| !seen.contains(*n)).cloned());
    Ok(names)
}

/// Writes `model` as the HF folder `out` and returns its path:
/// - `config.json`: `config` (a JSON object, e.g. from `prunec_frontends::arch::llama::hf_config`),
///   pretty, with `dtype` (and `torch_dtype`, where the config has that older key) set to the
///   weights' dtype;
/// - `model.safetensors`, or shards `model-0000k-of-0000n.safetensors` of at most
///   `options.max_shard_bytes` with `model.safetensors.index.json`: every parameter of
///   `model.params`, as `options.dtype`;
/// - each file of `copy` that exists, copied as it is under its own name (tokenizer.json,
///   tokenizer_config.json, special_tokens_map.json, generation_config.json...);
/// - each `(name, bytes)` of `extra`, written as is.
///
/// Refuses an existing `out` unless `options.overwrite` (and then unless it is empty or an
/// earlier prunec output: see [`prunec_ir::output`]), an `out` that is or holds one of
/// `inputs` or of `copy`, names in `copy`/`extra` that clash with each other or with the files
/// the writer makes, and names that are not plain file names.
pub fn write_hf_folder(
    model: &Model,
    config: &serde_json::Value,
    copy: &[PathBuf],
    extra: &[(String, Vec<u8>)],
    out: &Path,
    inputs: &[&Path],
    options: HfWriteOptions,
) -> Result<PathBuf> {
    let bad = |reason: String| BackendError::Encode { path: out.to_path_buf(), reason };
    let mut config = config.clone();
    let obj = config.as_object_mut().ok_or_else(|| bad("the configuration is not a JSON object".into()))?;
    obj.insert("dtype".into(), torch_dtype(options.dtype).into());
    if obj.contains_key("torch_dtype") {
        obj.insert("torch_dtype".into(), torch_dtype(options.dtype).into());
    }
    if !matches!(options.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(bad(format!("weights dtype {:?}: the writer writes F32, F16 or BF16", options.dtype)));
    }
    if options.max_shard_bytes == 0 {
        return Err(bad("the largest shard size must be positive".into()));
    }

    // Files given as they are and by content: plain names, no clash.
    let copy: Vec<(&Path, String)> = copy
        .iter()
        .filter(|p| p.is_file())
        .map(|p| (p.as_path(), p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()))
        .collect();
    let mut names = HashSet::new();
    for name in copy.iter().map(|(_, n)| n.as_str()).chain(extra.iter().map(|(n, _)| n.as_str())) {
        let plain = Path::new(name).file_name().is_some_and(|f| f == name) && name != "." && name != "..";
        if !plain {
            return Err(bad(format!("`{name}` is not a plain file name")));
        }
        if is_written_by_us(name) {
            return Err(bad(format!("`{name}` would replace a file the writer makes")));
        }
        if !names.insert(name) {
            return Err(bad(format!("`{name}` is given twice")));
        }
    }

    let mut all_inputs: Vec<&Path> = inputs.to_vec();
    all_inputs.extend(copy.iter().map(|(p, _)| *p));
    // existing destinations: see `prunec_ir::output` (an earlier prunec output is replaced when
    // asked, anything else never)
    let dest = AtomicPath::folder(out, &all_inputs, options.overwrite)?;
    let dir = dest.temp().to_path_buf();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackendError::Io { path, source }
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;

    sharding::write_json(&dir.join("config.json"), &config, &[])?;
    let tensors = params_in_model_order(model)?
        .into_iter()
        .filter_map(|name| {
            let shape = model.params.get(&name)?.shape.clone();
            Some(TensorEntry::new(name, options.dtype, shape))
        })
        .collect();
    let plan = ShardPlan::new(out, tensors, options.max_shard_bytes)?;
    sharding::write_shards::<BackendError>(
        &dir,
        plan,
        &[],
        |writer, entry| writer.write_tensor(&entry.name, &model.params.read_f32(&entry.name)?),
        |_| {},
    )?;
    for (path, name) in &copy {
        std::fs::copy(path, dir.join(name)).map_err(io(path))?;
    }
    for (name, bytes) in extra {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    dest.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prunec_ir::Param;

    fn tiny() -> Model {
        let mut model = Model::default();
        model.params.insert("b.weight", Param::owned(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap());
        model.params.insert("a.bias", Param::owned(vec![3], vec![0.1, -0.2, 0.3]).unwrap());
        model
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn writes_config_weights_and_extras() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("tokenizer.json");
        std::fs::write(&tok, "{}").unwrap();
        let out = dir.path().join("out");
        let config = serde_json::json!({ "model_type": "x", "torch_dtype": "float32" });
        let copy = [tok.clone(), dir.path().join("missing.json")];
        let extra = [("notes.txt".to_string(), b"hi".to_vec())];
        let opts = HfWriteOptions { dtype: Dtype::F16, ..HfWriteOptions::default() };
        assert_eq!(write_hf_folder(&tiny(), &config, &copy, &extra, &out, &[], opts).unwrap(), out);
        assert_eq!(files(&out), ["config.json", "model.safetensors", "notes.txt", "tokenizer.json"]);
        assert_eq!(files(dir.path()), ["out", "tokenizer.json"], "no temporary folder left");
        let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(written, serde_json::json!({ "model_type": "x", "torch_dtype": "float16", "dtype": "float16" }));
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("b.weight").unwrap().dtype(), Dtype::F16);
        assert_eq!(st.tensor("a.bias").unwrap().shape(), &[3]);
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let config = serde_json::json!({});
        let write = |copy: &[PathBuf], extra: &[(String, Vec<u8>)], out: &Path, opts| {
            write_hf_folder(&tiny(), &config, copy, extra, out, &[], opts)
        };
        let opts = HfWriteOptions::default();
        let clash = [("config.json".to_string(), vec![])];
        assert!(write(&[], &clash, &out, opts).unwrap_err().to_string().contains("replace a file the writer makes"));
        let sneaky = [("../x".to_string(), vec![])];
        assert!(write(&[], &sneaky, &out, opts).unwrap_err().to_string().contains("plain file name"));
        assert!(write_hf_folder(&tiny(), &serde_json::json!([1]), &[], &[], &out, &[], opts).is_err());
        assert!(files(dir.path()).is_empty());
        write(&[], &[], &out, opts).unwrap();
        let err = write(&[], &[], &out, opts).unwrap_err();
        assert!(matches!(err, BackendError::OutputExists { .. }), "{err}");
        write(&[], &[], &out, HfWriteOptions { overwrite: true, ..opts }).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(write(&[], &[], &file, HfWriteOptions { overwrite: true, ..opts }).is_err());
        assert_eq!(files(dir.path()), ["file", "out"]);
    }
}
