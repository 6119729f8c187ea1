//! What a run writes besides its report: the model (`-o`) in the format its architecture and
//! the input call for, and the scores (`--scores-out`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use prunec_frontends::tokenizer::Tokenizer;
use prunec_ir::Model;

use crate::cli::*;
use crate::safety;

/// Whether `-o` names a GGUF file.
pub(crate) fn is_gguf(out: &Path) -> bool {
    out.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Writes `model` at `out` (`-o`) as the run's options say: a GGUF file, the ONNX graph of an
/// ONNX input, else an HF folder with the tokenizer of `source`.
pub(crate) fn write_output(model: &Model, source: &Path, out: &Path, cli: &RunArgs) -> Result<()> {
    if is_gguf(out) {
        return write_gguf_output(model, source, out, cli);
    }
    write_folder_output(model, source, out, cli.dtype, cli.force)
}

/// Writes `model` as a GGUF file for llama.cpp at `out` (see
/// [`prunec_frontends::arch::gguf_out`]).
fn write_gguf_output(model: &Model, source: &Path, out: &Path, cli: &RunArgs) -> Result<()> {
    use prunec_frontends::arch::gguf_out;
    let model = &without_adapters(model)?;
    let recognised;
    let model = if model.info.format == prunec_ir::SourceFormat::Onnx && prunec_frontends::arch::of(model).is_none() {
        // an ONNX graph has no architecture: written as the LLaMA its structure is
        recognised = prunec_frontends::arch::llama::recognise::as_llama(model)?;
        &recognised
    } else {
        model
    };
    let Some(arch) = prunec_frontends::arch::of(model) else {
        bail!("-o {}: writing GGUF needs a model of an architecture prunec knows (this one is `{}`, read from {:?})", out.display(), model.info.architecture, model.info.format);
    };
    let mut model = model.clone();
    if let Some(note) = arch.before_writing(&mut model)? {
        eprintln!("{note}");
    }
    let options = gguf_out::GgufOptions { ty: cli.gguf_type, fallback: cli.gguf_fallback, replace: cli.force, tokenizer: cli.tokenizer.clone() };
    let plan = arch.gguf_plan(&model, gguf_out::block_width(&model, &options))?;
    for note in &plan.notes {
        eprintln!("{note}");
    }
    let t = Instant::now();
    safety::check_output_space(&model, out, 4)?;
    let mut bar = crate::progress::Progress::new("gguf", plan.tensors.len(), "tensors");
    let written = gguf_out::write(&model, &plan, out, &[source], options, &mut |done, _, name| bar.update(done, name))?;
    bar.finish();
    // one line per change of type, naming the first tensors
    let mut changes: std::collections::BTreeMap<(&str, &str, usize), Vec<&str>> = std::collections::BTreeMap::new();
    for (name, want, got) in &written.fell_back {
        changes.entry((want.name(), got.name(), want.block_size().unwrap_or(1))).or_default().push(name);
    }
    for ((want, got, block), names) in changes {
        let more = if names.len() > 3 { format!(" and {} more", names.len() - 3) } else { String::new() };
        eprintln!(
            "gguf: {} tensors written as {got}, not {want} (rows no longer whole blocks of {block}, or a type prunec does not quantize to; --round-to {block} keeps pruned widths in whole blocks): {}{more}",
            names.len(),
            names.iter().take(3).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        );
    }
    let types: Vec<String> = written.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    eprintln!(
        "wrote {} ({} `{}`, {} parameters; tensors: {}; {} copied block for block, {} quantized) in {:.2} s",
        written.path.display(),
        plan.arch,
        model.info.architecture,
        model.params.numel(),
        types.join(", "),
        written.copied,
        written.quantized,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `model` without its LoRA adapters (not folded in without a `merge` pass: `-o` holds the
/// base weights, `--adapter-out` the adapters).
fn without_adapters(model: &Model) -> Result<Model> {
    let mut m = model.clone();
    if !prunec_passes::lora::adapters(model).is_empty() {
        let n = prunec_passes::lora::strip(&mut m)?;
        eprintln!("-o: {n} LoRA adapters not merged (no `merge` pass): the base model is written without them");
    }
    Ok(m)
}

/// Writes `model` as an HF folder at `out`, with the tokenizer of `source` (or the ONNX graph
/// of an ONNX input).
fn write_folder_output(model: &Model, source: &Path, out: &Path, dtype: OutDType, force: bool) -> Result<()> {
    use prunec_backends::hf_writer::{write_hf_folder, HfWriteOptions};
    let model = &without_adapters(model)?;
    if model.info.format == prunec_ir::SourceFormat::Onnx {
        // the source graph, rewritten: shrunken initializers, corrected shape constants
        let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
        if same(out, source) || same(&out.with_extension("onnx.data"), source) {
            bail!("-o {}: that is the input; an input is never overwritten", out.display());
        }
        let t = Instant::now();
        safety::check_output_space(model, out, 4)?;
        let written = prunec_frontends::onnx::write_pruned_to(model, out, force)?;
        eprintln!("wrote {} ({} parameters) in {:.2} s", written.model.display(), model.params.numel(), t.elapsed().as_secs_f64());
        return Ok(());
    }
    let mut model = model.clone();
    let Some(arch) = prunec_frontends::arch::of(&model) else {
        bail!("-o: writing `{}` models as HF folders is not supported yet", model.info.architecture);
    };
    if let Some(note) = arch.before_writing(&mut model)? {
        eprintln!("{note}");
    }
    let config = arch.hf_config(&model)?;
    let model = &model;
    let mut copy = Vec::new();
    let mut extra = Vec::new();
    if source.is_dir() {
        for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model"] {
            copy.push(source.join(f));
        }
        // the model's own code (ChatGLM's modeling_chatglm.py, tokenization_chatglm.py...)
        for entry in std::fs::read_dir(source)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "py") {
                copy.push(entry.path());
            }
        }
    } else if let Ok(tok) = Tokenizer::for_model(source) {
        // a GGUF file's embedded tokenizer, as tokenizer.json
        let dir = tempfile_dir()?;
        let path = dir.join("tokenizer.json");
        tok.save(&path)?;
        extra.push(("tokenizer.json".to_string(), std::fs::read(&path)?));
        // so that transformers loads it as it is (not as the model type's tokenizer class)
        extra.push(("tokenizer_config.json".to_string(), serde_json::to_vec_pretty(&tok.hf_tokenizer_config())?));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let options = HfWriteOptions {
        dtype: match dtype {
            OutDType::F32 => prunec_backends::stream_writer::Dtype::F32,
            OutDType::F16 => prunec_backends::stream_writer::Dtype::F16,
            OutDType::Bf16 => prunec_backends::stream_writer::Dtype::BF16,
        },
        overwrite: force,
        ..HfWriteOptions::default()
    };
    let t = Instant::now();
    safety::check_output_space(model, out, if dtype == OutDType::F32 { 4 } else { 2 })?;
    let written = write_hf_folder(model, &config, &copy, &extra, out, &[source], options)?;
    eprintln!("wrote {} ({} parameters) in {:.2} s", written.display(), model.params.numel(), t.elapsed().as_secs_f64());
    Ok(())
}

/// Writes every unit's score as JSON rows `{layer, kind, unit, score, sub_units}`.
pub(crate) fn write_scores(model: &Model, scores: &prunec_passes::Scores, path: &Path, input: &Path, force: bool) -> Result<()> {
    let groups = model.groups.as_deref().unwrap_or_default();
    let rows: Vec<serde_json::Value> = groups
        .iter()
        .zip(&scores.groups)
        .flat_map(|(g, s)| {
            s.units.iter().enumerate().map(move |(u, score)| {
                serde_json::json!({
                    "layer": g.block,
                    "kind": g.kind.name(),
                    "unit": u,
                    "score": score,
                    "sub_units": s.sub_units.get(u),
                })
            })
        })
        .collect();
    let doc = serde_json::json!({
        "importance": scores.importance.name(),
        "aggregation": scores.aggregation.name(),
        "units": rows,
    });
    prunec_backends::AtomicPath::write(path, (serde_json::to_string_pretty(&doc)? + "\n").as_bytes(), &[input], force)?;
    Ok(())
}

/// A fresh private folder under the system's temporary folder.
pub(crate) fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("prunec-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
