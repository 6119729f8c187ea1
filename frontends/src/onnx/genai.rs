//! An onnxruntime-genai folder written beside a pruned model: the source's
//! `genai_config.json` with the pruned head counts and hidden size and the new model file's
//! name, and its tokenizer and generation files copied, so that `onnxruntime_genai` loads the
//! output folder as it loaded the input. The config holds one count of heads and of key/value
//! heads for every layer (onnxruntime-genai allocates the cache from them): layers pruned to
//! different counts are refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prunec_ir::Model;

use super::super::OnnxFile;
use crate::error::{FrontendError, Result};

/// The files of a genai folder besides the model and its config.
const COMPANIONS: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "generation_config.json",
    "processor_config.json",
];

/// What [`prepare`] found to write.
#[derive(Debug)]
pub(super) struct GenaiFolder {
    /// The source folder's `genai_config.json`.
    source: PathBuf,
    config: PathBuf,
    json: serde_json::Value,
    copies: Vec<(PathBuf, PathBuf)>,
}

fn config_error(path: &Path, reason: impl Into<String>) -> FrontendError {
    FrontendError::BadConfig { path: path.to_path_buf(), reason: reason.into() }
}

/// The distinct values of integer attribute `name` over the nodes `op` of `file`.
fn counts(file: &OnnxFile, op: &str, name: &str) -> Result<BTreeSet<i64>> {
    let mut out = BTreeSet::new();
    for n in file.graph().node.iter().filter(|n| n.op_type == op) {
        if let Some(v) = file.attr_int(n, name)? {
            out.insert(v);
        }
    }
    Ok(out)
}

/// The updated `genai_config.json` and the files to copy, when the source folder has a
/// `genai_config.json`; `file` is the written graph (attributes and initializers pruned).
pub(super) fn prepare(model: &Model, file: &OnnxFile, out: &Path, _attrs: &[super::AttrEdit]) -> Result<Option<GenaiFolder>> {
    let source_dir = model.info.source.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let source_config = source_dir.join("genai_config.json");
    if !source_config.is_file() {
        return Ok(None);
    }
    let out_dir = out.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let same = matches!((source_dir.canonicalize(), out_dir.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same {
        return Err(config_error(
            &source_config,
            "an onnxruntime-genai model is written to another folder than its own: its genai_config.json would be replaced",
        ));
    }
    let text = std::fs::read_to_string(&source_config).map_err(|source| FrontendError::Io { path: source_config.clone(), source })?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| config_error(&source_config, format!("not JSON: {e}")))?;
    let decoder = json
        .get_mut("model")
        .and_then(|m| m.get_mut("decoder"))
        .and_then(|d| d.as_object_mut())
        .ok_or_else(|| config_error(&source_config, "no `model.decoder` object"))?;
    let one = |name: &str, values: BTreeSet<i64>| -> Result<Option<i64>> {
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.first().copied()),
            _ => Err(config_error(
                &source_config,
                format!(
                    "the pruned layers have different numbers of {name} ({values:?}), and genai_config.json holds one for all layers: prune with --uniform"
                ),
            )),
        }
    };
    if let Some(h) = one("attention heads", counts(file, "GroupQueryAttention", "num_heads")?)? {
        decoder.insert("num_attention_heads".into(), h.into());
    }
    if let Some(kv) = one("key/value heads", counts(file, "GroupQueryAttention", "kv_num_heads")?)? {
        decoder.insert("num_key_value_heads".into(), kv.into());
    }
    // the hidden size: the width of the norms' weights
    let mut hidden = BTreeSet::new();
    for n in file.graph().node.iter().filter(|n| n.op_type.ends_with("SimplifiedLayerNormalization")) {
        let w = n.input.get(if n.op_type.starts_with("Skip") { 2 } else { 1 }).cloned().unwrap_or_default();
        if let Some(t) = file.initializer(&w) {
            hidden.extend(t.dims.first().copied());
        }
    }
    if let Some(h) = one("hidden channels", hidden)? {
        decoder.insert("hidden_size".into(), h.into());
    }
    let file_name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    decoder.insert("filename".into(), file_name.into());
    let copies = COMPANIONS
        .iter()
        .map(|name| (source_dir.join(name), out_dir.join(name)))
        .filter(|(from, _)| from.is_file())
        .collect();
    Ok(Some(GenaiFolder { source: source_config, config: out_dir.join("genai_config.json"), json, copies }))
}

impl GenaiFolder {
    /// What a run writing this folder reads: `inputs`, the source config and the files copied.
    fn inputs<'a>(&'a self, inputs: &[&'a Path]) -> Vec<&'a Path> {
        let mut all = inputs.to_vec();
        all.push(&self.source);
        all.extend(self.copies.iter().map(|(from, _)| from.as_path()));
        all
    }

    /// The files [`GenaiFolder::write`] writes: the config, then the copies.
    fn outputs(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.config).chain(self.copies.iter().map(|(_, to)| to))
    }

    /// Checks every file [`GenaiFolder::write`] writes as an output of a run reading
    /// `dest.inputs` and the files it copies (none is replaced without `dest.replace`), before
    /// anything is written.
    pub(super) fn check(&self, dest: &super::Destination<'_>) -> Result<()> {
        let inputs = self.inputs(dest.inputs);
        for to in self.outputs() {
            prunec_ir::output::check_destination(to, prunec_ir::output::OutputKind::File, &inputs, dest.replace)?;
        }
        Ok(())
    }

    /// Writes the config and copies the companion files, each through the project's atomic
    /// output path.
    pub(super) fn write(&self, dest: &super::Destination<'_>) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.json)
            .map_err(|e| config_error(&self.config, format!("cannot encode: {e}")))?;
        let inputs = self.inputs(dest.inputs);
        let put = |to: &Path, bytes: &[u8]| -> Result<()> {
            prunec_ir::output::write_file(to, bytes, &inputs, dest.replace)?;
            Ok(())
        };
        put(&self.config, text.as_bytes())?;
        for (from, to) in &self.copies {
            let bytes = std::fs::read(from).map_err(|source| FrontendError::Io { path: from.clone(), source })?;
            put(to, &bytes)?;
        }
        Ok(())
    }
}
