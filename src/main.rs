//! `prunec`: the command-line driver. Reads a model through a frontend, runs the passes
//! named on the command line (verifying the IR after each), and prints what they found;
//! `generate`, `bench` and `synth` are tools around it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use prunec_frontends::data::{read_text_source, TextSource};
use prunec_frontends::tokenizer::Tokenizer;
use prunec_ir::Model;

mod device;
mod evaluate;
mod memory;
mod pipeline;
mod plot;
mod progress;
mod recover;
mod report;
mod safety;
mod study;
mod synth;

use device::Device;
use memory::{MemoryPlan, Work};
use pipeline::Step;
use progress::Progress;
use report::{PassRecord, Report};

/// A compiler for structural pruning of large language models.
#[derive(Debug, Parser)]
#[command(name = "prunec", version, about, long_about = None, args_conflicts_with_subcommands = true, allow_negative_numbers = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    run: RunArgs,
}

/// Commands other than running passes on a model.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write an HF folder with a real model's shape and random weights.
    #[command(allow_negative_numbers = true)]
    Synth(synth::SynthArgs),
    /// Generate text from a prompt (greedy, or sampled with temperature and top-p).
    #[command(allow_negative_numbers = true)]
    Generate(GenerateArgs),
    /// Measure tokens/s of forward and forward+backward passes, and peak memory.
    #[command(allow_negative_numbers = true)]
    Bench(BenchArgs),
    /// Perplexity against pruning ratio for chosen importances and aggregations (the paper's
    /// Fig. 4 and Table 7; `--no-dependency` adds Table 6's ablation): table and chart.
    #[command(allow_negative_numbers = true)]
    Sweep(study::SweepArgs),
    /// Perplexity when only layer i is pruned, for every layer (the paper's Fig. 3): table and chart.
    #[command(allow_negative_numbers = true)]
    Sensitivity(study::SensitivityArgs),
}

/// `prunec MODEL --pass ...`: read a model and run passes on it.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The model: an HF folder (config.json + safetensors) or a GGUF file.
    model: Option<PathBuf>,

    /// Passes to run, comma-separated, in order (a pass may appear more than once).
    #[arg(long, default_value = "group")]
    pass: String,

    /// Print the IR after this pass (repeatable).
    #[arg(long, value_name = "PASS")]
    dump_after: Vec<String>,

    /// Print the IR as read, before any pass.
    #[arg(long)]
    dump_input: bool,

    /// What `eval` measures: perplexity texts, zero-shot tasks, and the table of results.
    #[command(flatten)]
    eval: evaluate::EvalArgs,

    /// A tokenizer.json to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,

    /// Where the backend runs.
    #[arg(long, value_enum, default_value = "cpu")]
    device: Device,

    /// The float type the backend computes in: `f64` (CPU only, about twice as slow) reproduces
    /// references computed in float64, such as lm-evaluation-harness with `dtype=float64`.
    #[arg(long, value_enum, default_value = "f32")]
    precision: device::Precision,

    /// Memory budget (`8GiB`, `512MiB`, `24GB`): calibration and evaluation of a model whose
    /// resident estimate exceeds it stream the model layer by layer. Default: 80% of the memory
    /// available when the run starts.
    #[arg(long, value_name = "SIZE", value_parser = memory::parse_size)]
    max_memory: Option<u64>,

    /// Hold the whole model in memory whatever its size (never stream).
    #[arg(long)]
    resident: bool,

    /// Write a JSON report of the run here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Importance estimator of `score`: random, l1, l2, taylor-vector, taylor-element1,
    /// taylor-element2, taylor-mix.
    #[arg(long, default_value = "taylor-element1")]
    importance: String,

    /// How a unit's members combine: sum, mean, max, prod, first, last.
    #[arg(long, default_value = "sum")]
    aggregation: String,

    /// Calibration text for Taylor importance: plain text, or JSONL rows with `text` or `input_ids`.
    #[arg(long, value_name = "FILE")]
    calib: Option<PathBuf>,

    /// Calibration samples (the paper: 10).
    #[arg(long, default_value_t = 10)]
    calib_samples: usize,

    /// Tokens per calibration sample (LLM-Pruner: 64).
    #[arg(long, default_value_t = 64)]
    calib_len: usize,

    /// Seed of calibration sampling and random importance.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Fraction of all parameters to remove (embeddings included).
    #[arg(long)]
    ratio: Option<f64>,

    /// LLM-Pruner's ratio: in each pruned group, `current − int(initial·(1−r))` channels, in whole units.
    #[arg(long, conflicts_with = "ratio")]
    unit_ratio: Option<f64>,

    /// What `prune` removes: `block` (attention heads and MLP channels) or `channel` (hidden channels).
    #[arg(long, value_enum, default_value = "block")]
    mode: PruneMode,

    /// Layers whose attention heads are pruned, `start..end` (end excluded); all by default.
    #[arg(long, value_parser = parse_layers)]
    attn_layers: Option<std::ops::Range<u32>>,

    /// Layers whose MLP channels are pruned, `start..end` (end excluded); all by default.
    #[arg(long, value_parser = parse_layers)]
    mlp_layers: Option<std::ops::Range<u32>>,

    /// One threshold across layers (score per parameter) instead of the same share in each.
    #[arg(long)]
    global: bool,

    /// Keep every layer's widths equal (the same units removed in every layer), so that a stock
    /// config describes the result and transformers loads it without custom code.
    #[arg(long, conflicts_with_all = ["global", "attn_layers", "mlp_layers"])]
    uniform: bool,

    /// With grouped-query attention: prune whole key/value heads with their query heads (`kv`),
    /// or query heads (`query`): the lowest-scoring of each layer, key/value heads then serving
    /// different numbers of them — with --uniform the same number from every key/value head.
    #[arg(long, value_enum, default_value = "kv")]
    gqa: Gqa,

    /// Keep each pruned group's width a multiple of N (removing fewer units when needed). With
    /// --uniform and --mode channel, also a multiple of the query heads (transformers 5 wants
    /// hidden_size divisible by num_attention_heads).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    round_to: u64,

    /// Training steps of `recover` (optimizer updates; or give --epochs).
    #[arg(long)]
    steps: Option<usize>,

    /// Prune in this many steps, regrouping and rescoring (recalibrating) between them.
    #[arg(long, default_value_t = 1)]
    prune_steps: usize,

    #[command(flatten)]
    recover: recover::RecoverArgs,

    /// Write every unit's score here (JSON: layer, kind, unit, score; sub-unit scores too).
    #[arg(long, value_name = "FILE")]
    scores_out: Option<PathBuf>,

    /// Write the resulting model here as an HF folder (safetensors + config.json + tokenizer).
    #[arg(short = 'o', long, value_name = "DIR")]
    output: Option<PathBuf>,

    /// Element type of the written weights.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: OutDType,

    /// Replace an existing output folder.
    #[arg(long)]
    force: bool,
}

/// Element type of written weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutDType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

/// Writes `model` as an HF folder at `out`, with the tokenizer of `source`.
fn write_output(model: &Model, source: &Path, out: &Path, dtype: OutDType, force: bool) -> Result<()> {
    use prunec_backends::hf_writer::{write_hf_folder, HfWriteOptions};
    let base;
    let model = if prunec_passes::lora::adapters(model).is_empty() {
        model
    } else {
        // the adapters are not folded in: -o holds the base weights (--adapter-out the adapters)
        let mut m = model.clone();
        let n = prunec_passes::lora::strip(&mut m)?;
        eprintln!("-o: {n} LoRA adapters not merged (no `merge` pass): the base model is written without them");
        base = m;
        &base
    };
    if model.info.format == "onnx" {
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
    let config = match model.info.architecture.as_str() {
        "llama" => {
            let dropped = prunec_frontends::llama::drop_empty_layers(&mut model)?;
            if dropped > 0 {
                eprintln!("{dropped} emptied layers left out; the others renumbered");
            }
            prunec_frontends::llama::hf_config(&model)?
        }
        "chatglm" => prunec_frontends::chatglm::hf_config(&model)?,
        other => bail!("-o: writing `{other}` models as HF folders is not supported yet"),
    };
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
fn write_scores(model: &Model, scores: &prunec_passes::Scores, path: &Path, input: &Path, force: bool) -> Result<()> {
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
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("prunec-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// What grouped-query attention loses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Gqa {
    /// Whole key/value heads with the query heads that share them.
    Kv,
    /// Query heads inside key/value groups, the same number from each.
    Query,
}

/// What `prune` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PruneMode {
    /// Attention heads and MLP channels of the decoder layers.
    Block,
    /// Hidden channels.
    Channel,
    /// Whole decoder layers, the lowest-scoring first (`--attn-layers` limits which).
    Layer,
}

/// Parses `start..end`.
fn parse_layers(s: &str) -> std::result::Result<std::ops::Range<u32>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("`{s}` is not START..END"))?;
    let a: u32 = a.trim().parse().map_err(|_| format!("`{a}` is not a layer number"))?;
    let b: u32 = b.trim().parse().map_err(|_| format!("`{b}` is not a layer number"))?;
    if a >= b {
        return Err(format!("`{s}` is empty: END must exceed START"));
    }
    Ok(a..b)
}

/// `prunec generate MODEL --prompt ...`.
#[derive(Debug, clap::Args)]
struct GenerateArgs {
    /// The model.
    model: PathBuf,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Where the backend runs.
    #[arg(long, value_enum, default_value = "cpu")]
    device: Device,
    /// Wrap the prompt as a user's turn in the model's chat template (and open the assistant's).
    #[arg(long)]
    chat: bool,
    /// With --chat: `vicuna` (Vicuna's conversation, which its checkpoints do not ship) or a
    /// Jinja file, instead of the model's own template.
    #[arg(long, value_name = "NAME|FILE", requires = "chat")]
    chat_template: Option<String>,
}

/// `prunec bench MODEL [MODEL...]`.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// The models (the first is the reference of the ratios: the original, then pruned ones).
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Tokens generated (greedy, with the key/value cache, after a prompt of --seq-len tokens).
    #[arg(long, default_value_t = 32)]
    new_tokens: usize,
    /// Also write the comparison as `<STEM>.md`, `.csv` and `.json`.
    #[arg(long, value_name = "STEM")]
    out: Option<PathBuf>,
    /// Replace existing `--out` files.
    #[arg(long)]
    force: bool,
    /// Print the one model's figures as a JSON line (how `bench` measures several models, each
    /// in its own process).
    #[arg(long, hide = true)]
    row_json: bool,
    /// Sequences per batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Timed batches of each kind.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Where the backend runs.
    #[arg(long, value_enum, default_value = "cpu")]
    device: Device,
}

/// Starts a new peak-memory measurement (Linux: writing 5 to `clear_refs` resets `VmHWM`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory of this process, from the kernel, in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn load(path: &Path) -> Result<Model> {
    let start = Instant::now();
    let model = prunec_frontends::load(path).with_context(|| format!("reading {}", path.display()))?;
    eprintln!(
        "read {} ({}, {}): {} parameters in {} tensors, {} nodes, {:.2} s",
        model.info.name,
        model.info.architecture,
        model.info.format,
        model.params.numel(),
        model.params.len(),
        model.graph.len(),
        start.elapsed().as_secs_f64()
    );
    for w in &model.info.warnings {
        eprintln!("warning: {}", safety::printable(w));
    }
    Ok(model)
}

fn tokenizer(model: &Path, explicit: Option<&Path>) -> Result<Tokenizer> {
    Ok(match explicit {
        Some(t) => Tokenizer::from_file(t)?,
        None => Tokenizer::for_model(model)
            .with_context(|| format!("no tokenizer for {} (give one with --tokenizer)", model.display()))?,
    })
}

/// The options of `prune` that the command line gives, for `amount`.
fn prune_options(cli: &RunArgs, model: &Model, amount: prunec_passes::prune::Amount) -> prunec_passes::prune::PruneOptions {
    prunec_passes::prune::PruneOptions {
        amount,
        mode: match cli.mode {
            PruneMode::Block => prunec_passes::prune::Mode::Block,
            PruneMode::Channel => prunec_passes::prune::Mode::Channel,
            PruneMode::Layer => prunec_passes::prune::Mode::Layer,
        },
        attn_layers: cli.attn_layers.clone(),
        mlp_layers: cli.mlp_layers.clone(),
        global: cli.global,
        gqa: match (cli.gqa, cli.uniform) {
            (Gqa::Kv, _) => prunec_passes::prune::Gqa::KvHeads,
            (Gqa::Query, false) => prunec_passes::prune::Gqa::QueryHeads,
            (Gqa::Query, true) => prunec_passes::prune::Gqa::QueryHeadsEven,
        },
        round_to: if cli.uniform && cli.mode == PruneMode::Channel {
            // a stock config for transformers 5 needs hidden_size a multiple of the heads
            prunec_passes::group::lcm(cli.round_to as usize, query_heads(model))
        } else {
            cli.round_to as usize
        },
    }
}

/// The calibration samples for `importance`: `--calib-samples` windows of `--calib-len` tokens
/// of `--calib` (or rows of its `input_ids`), else of the embedded text; and what they came
/// from, for messages and the report.
fn calibration_samples(
    cli: &RunArgs,
    model: &Model,
    model_path: &Path,
    importance: prunec_passes::Importance,
) -> Result<(Vec<Vec<u32>>, String)> {
    let (src, calib_name) = match cli.calib.as_deref() {
        Some(path) => (read_text_source(path)?, path.display().to_string()),
        None => (
            TextSource::Plain(prunec_frontends::data::EMBEDDED_CALIBRATION_TEXT.to_string()),
            "the embedded calibration text (give --calib FILE for your own)".to_string(),
        ),
    };
    let samples = match &src {
        TextSource::Tokens(rows) => rows.iter().take(cli.calib_samples).map(|r| r[..r.len().min(cli.calib_len)].to_vec()).collect(),
        _ => {
            let tok = tokenizer(model_path, cli.tokenizer.as_deref()).with_context(|| {
                format!(
                    "{} importance calibrates on token ids: give a tokenizer (--tokenizer), calibration rows of \
                     `input_ids` (--calib FILE.jsonl), or use a magnitude importance (--importance l1|l2)",
                    importance.name()
                )
            })?;
            prunec_frontends::data::calibration_samples(&src, &tok, cli.calib_samples, cli.calib_len, cli.seed)?
        }
    };
    let origin = match &src {
        TextSource::Tokens(_) => format!("the `input_ids` of --calib {calib_name}"),
        _ => format!("--calib {calib_name}, tokenized by {}", safety::tokenizer_origin(model_path, cli.tokenizer.as_deref())),
    };
    safety::check_token_ids(model, samples.iter().map(Vec::as_slice), &origin)?;
    Ok((samples, calib_name))
}

/// The report's `calibration` object.
fn calibration_record(cli: &RunArgs, calib_name: &str, samples: usize, tokens: usize, loss: f64, mode: &str) -> serde_json::Value {
    eprintln!("calibrated on {samples} samples of {} tokens from {calib_name} ({mode}): loss {loss:.4}", cli.calib_len);
    serde_json::json!({
        "text": if cli.calib.is_some() { calib_name.to_string() } else { "embedded".to_string() },
        "samples": samples,
        "tokens_per_sample": cli.calib_len,
        "predicted_tokens": tokens,
        "loss": loss,
        "seed": cli.seed,
        "mode": mode,
    })
}

/// Calibration for `importance` (the Fisher diagonal too when it needs it), holding the whole
/// model: the gradient of the mean loss on `--calib-samples` windows of `--calib`, recorded in
/// the report.
fn calibrate(
    cli: &RunArgs,
    model: &Model,
    model_path: &Path,
    importance: prunec_passes::Importance,
    report: &mut Report,
) -> Result<prunec_ir::CalibrationStats> {
    let (samples, calib_name) = calibration_samples(cli, model, model_path, importance)?;
    let options = prunec_backends::runtime::CalibrationOptions { fisher: importance.needs_fisher(), micro_batch: 4 };
    let mut bar = Progress::new("calibrate", samples.len(), "samples");
    let stats = device::calibrate(cli.device, model, &samples, options, |done, _| bar.update(done, "")).context("calibration")?;
    bar.finish();
    safety::check_finite(stats.loss, "the calibration loss")?;
    report.calibration = Some(calibration_record(cli, &calib_name, stats.samples, stats.tokens, stats.loss, "resident"));
    Ok(stats)
}

/// Calibration layer by layer (the model streamed from its files): each parameter of the groups
/// `scope` accepts is folded into per-index saliences the moment its gradient is complete, and
/// its gradient dropped.
fn calibrate_streamed(
    cli: &RunArgs,
    model: &Model,
    model_path: &Path,
    importance: prunec_passes::Importance,
    scope: &dyn Fn(&prunec_ir::Group) -> bool,
    memory: &MemoryPlan,
    report: &mut Report,
) -> Result<prunec_passes::Saliences> {
    let (samples, calib_name) = calibration_samples(cli, model, model_path, importance)?;
    let axes = prunec_passes::scored_axes(model, scope);
    let longest = samples.iter().map(Vec::len).max().unwrap_or(1);
    // micro-batches sized so that a layer, its gradients and the autodiff graph (about three times the forward's values) fit the budget
    let per_token = prunec_backends::runtime::activation_bytes_per_token(model)? * 3;
    let layer = prunec_backends::runtime::largest_segment_params(model)?;
    let (micro_batch, peak) = memory.micro_batch(layer, per_token, longest, samples.len());
    if peak > memory.budget {
        eprintln!(
            "warning: the largest layer ({layer} parameters) needs about {} with its gradients and activations, more than the budget of {}",
            safety::human_bytes(u128::from(peak)),
            safety::human_bytes(u128::from(memory.budget))
        );
    }
    let options = prunec_backends::runtime::StreamOptions {
        fisher: importance.needs_fisher(),
        wanted: axes.keys().cloned().collect(),
        micro_batch,
    };
    let mut saliences = prunec_passes::Saliences::new();
    let start = Instant::now();
    let sink = |name: &str, stats: prunec_ir::ParamGradient| -> prunec_backends::Result<()> {
        let mut fold = || -> Result<()> {
            let p = model.params.get(name).with_context(|| format!("no parameter `{name}`"))?;
            let w = model.params.read_f32(name)?;
            let none = std::collections::BTreeSet::new();
            saliences.fold(importance, name, &w, &p.shape, axes.get(name).unwrap_or(&none), &stats)?;
            Ok(())
        };
        fold().map_err(|e| prunec_backends::BackendError::Lowering(format!("scoring `{name}`: {e:#}")))
    };
    let progress = |step: prunec_backends::runtime::StreamStep| {
        let what = step.block.map_or_else(|| "embedding/head".to_string(), |b| format!("layer {b}"));
        eprintln!(
            "calibrate ({}): {}/{} segments ({what}) {:.1} s",
            step.phase,
            step.done,
            step.total,
            start.elapsed().as_secs_f64()
        );
    };
    let summary = device::calibrate_streamed(cli.device, model, &samples, &options, sink, progress).context("calibration")?;
    safety::check_finite(summary.loss, "the calibration loss")?;
    let mut record = calibration_record(cli, &calib_name, summary.samples, summary.tokens, summary.loss, "streamed");
    record["segments"] = summary.segments.into();
    record["backward_segments"] = summary.backward_segments.into();
    record["micro_batches"] = summary.micro_batches.into();
    record["largest_segment_params"] = summary.largest_segment_params.into();
    report.calibration = Some(record);
    Ok(saliences)
}

/// The `score` pass: calibrates when the estimator needs gradients (layer by layer when the
/// model exceeds the memory budget, scoring then only the groups `scope` accepts), then scores
/// every unit. Returns the scores, a summary and the mode.
#[allow(clippy::too_many_arguments)]
fn run_score(
    cli: &RunArgs,
    model: &Model,
    model_path: &Path,
    importance: prunec_passes::Importance,
    aggregation: prunec_passes::Aggregation,
    scope: &dyn Fn(&prunec_ir::Group) -> bool,
    memory: &MemoryPlan,
    report: &mut Report,
) -> Result<(prunec_passes::Scores, String, Option<&'static str>)> {
    let calibrates = importance.needs_gradient() || importance.needs_fisher();
    let work = Work::Calibrate { fisher: importance.needs_fisher() };
    let mode = calibrates.then(|| memory.mode_name(model, work));
    let s = if calibrates && memory.streams(model, work) {
        let saliences = calibrate_streamed(cli, model, model_path, importance, scope, memory, report)?;
        prunec_passes::score_with(model, saliences, importance, aggregation, cli.seed, scope)?
    } else {
        let stats = if calibrates { Some(calibrate(cli, model, model_path, importance, report)?) } else { None };
        prunec_passes::score(model, stats.as_ref(), importance, aggregation, cli.seed)?
    };
    let units: usize = s.groups.iter().map(|g| g.units.len()).sum();
    let scored = s.groups.iter().filter(|g| g.is_scored()).count();
    let summary = format!("scored {units} units of {scored} groups ({}, {})\n", importance.name(), aggregation.name());
    report.importance = model
        .groups
        .as_deref()
        .unwrap_or_default()
        .iter()
        .zip(&s.groups)
        .filter(|(_, gs)| gs.is_scored())
        .map(|(g, gs)| {
            let n = gs.units.len().max(1) as f64;
            serde_json::json!({
                "layer": g.block,
                "kind": g.kind.name(),
                "units": gs.units.len(),
                "min": gs.units.iter().copied().fold(f64::INFINITY, f64::min),
                "mean": gs.units.iter().sum::<f64>() / n,
                "max": gs.units.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            })
        })
        .collect();
    if let Some(path) = &cli.scores_out {
        write_scores(model, &s, path, model_path, cli.force)?;
    }
    Ok((s, summary, mode))
}

fn run(cli: &RunArgs) -> Result<()> {
    let Some(model_path) = &cli.model else {
        bail!("no MODEL given: `prunec MODEL --pass PASSES` runs passes on a model, `prunec synth ...` writes one (see --help)");
    };
    let steps = pipeline::parse(&cli.pass)?;
    cli.precision.apply(cli.device)?;
    for name in &cli.dump_after {
        if !pipeline::valid_names().contains(&name.as_str()) {
            bail!("--dump-after: unknown pass `{name}`; valid passes: {}", pipeline::valid_names().join(", "));
        }
        if !steps.iter().any(|p| p.name() == name) {
            bail!("--dump-after {name}: `{name}` is not in --pass {}", cli.pass);
        }
    }
    let importance = prunec_passes::Importance::from_name(&cli.importance)?;
    let aggregation = prunec_passes::Aggregation::from_name(&cli.aggregation)?;
    if steps.contains(&Step::Prune) && cli.ratio.is_none() && cli.unit_ratio.is_none() {
        bail!("pass `prune` needs --ratio R (fraction of all parameters) or --unit-ratio R (LLM-Pruner's)");
    }
    if let Some(r) = cli.ratio.or(cli.unit_ratio) {
        if !(0.0..1.0).contains(&r) {
            bail!("ratio {r} is out of range: it must be in [0, 1)");
        }
    }
    if cli.uniform && cli.mode == PruneMode::Layer {
        bail!("--uniform keeps every layer's widths equal: it does not go with --mode layer");
    }
    cli.recover.check(&steps, cli.steps, cli.force)?;
    let trains = steps.contains(&Step::Recover);
    let prune_steps = cli.prune_steps.max(1);
    if cli.steps.is_some() && !trains {
        bail!("--steps counts the training steps of `recover`, which --pass does not name (iterative pruning: --prune-steps N)");
    }
    let pass_options = prunec_passes::PassOptions { lora: cli.recover.lora_options(cli.seed) };
    let eval_plan = cli.eval.plan()?;
    if steps.contains(&Step::Eval) && eval_plan.is_empty() {
        bail!("pass `eval` needs --eval-text FILE (WikiText2/PTB Parquet, plain text, or JSONL rows with `text` or `input_ids`) or --tasks TASK=FILE,...");
    }
    // every output against the inputs (never replaced, even with --force), then what exists
    safety::check_run_outputs(cli, &steps, &eval_plan)?;
    if let Some(out) = &cli.output {
        if out.exists() && !cli.force {
            bail!("-o {}: already exists (give --force to replace it)", out.display());
        }
    }
    let memory = MemoryPlan::new(cli.max_memory, cli.resident)?;
    let start = Instant::now();
    // the evaluation's datasets, read and tokenized once, before any work that they could waste
    let eval_inputs = if steps.contains(&Step::Eval) {
        Some(evaluate::prepare(&eval_plan, &cli.eval, model_path, cli.tokenizer.as_deref())?)
    } else {
        None
    };
    let mut model = load(model_path)?;
    if let Some(inputs) = &eval_inputs {
        inputs.check(&model, &cli.eval, &safety::tokenizer_origin(model_path, cli.tokenizer.as_deref()))?;
    }
    let mut report = Report {
        model: serde_json::json!({
            "name": model.info.name,
            "architecture": model.info.architecture,
            "format": model.info.format,
            "source": model.info.source,
        }),
        params_before: model.params.numel(),
        macs_per_token: (report::linear_macs_per_token(&model), 0),
        device: cli.device.name().into(),
        precision: cli.precision.name().into(),
        memory: Some(memory.to_json()),
        ..Report::default()
    };
    if cli.dump_input {
        print!("{}", prunec_ir::print(&model)?);
    }
    let mut scores: Option<prunec_passes::Scores> = None;
    let total = steps.len();
    let mut overall_peak = 0.0f64;
    for (k, step) in steps.iter().enumerate() {
        eprintln!("[{}/{total}] {} ...", k + 1, step.name());
        let t = Instant::now();
        let run_peak = peak_rss_mib();
        reset_peak_rss();
        let mut record = PassRecord {
            name: step.name().into(),
            seconds: 0.0,
            summary: String::new(),
            perplexity: None,
            evaluation: None,
            peak_rss_mib: None,
            mode: None,
        };
        // what a streamed calibration scores: the groups `prune` will prune, when it follows
        let prunes = steps[k..].contains(&Step::Prune);
        let prune_scope = prune_options(cli, &model, prunec_passes::prune::Amount::Ratio(0.0));
        let scope = |g: &prunec_ir::Group| !prunes || prune_scope.prunes(g);
        match step {
            Step::Ir(pass) => {
                let outcome = pass.run_with(&mut model, &pass_options).with_context(|| format!("pass `{}`", pass.name()))?;
                record.summary = outcome.summary;
            }
            Step::Score => {
                let (s, summary, mode) = run_score(cli, &model, model_path, importance, aggregation, &scope, &memory, &mut report)?;
                record.summary = summary;
                record.mode = mode;
                scores = Some(s);
            }
            Step::Prune => {
                let mut s = scores.take().context("pass `prune` needs scores: put `score` before it")?;
                let steps = prune_steps;
                if steps > 1 && cli.ratio.is_none() {
                    bail!("--prune-steps {steps}: iterative pruning needs --ratio (a fraction of the parameters)");
                }
                let start_params = model.params.numel() as f64;
                let mut summaries = Vec::new();
                for k in 1..=steps {
                    if k > 1 {
                        // each further step works on the pruned model: groups and scores anew
                        prunec_passes::Pass::Group.run(&mut model)?;
                        s = run_score(cli, &model, model_path, importance, aggregation, &scope, &memory, &mut report)?.0;
                    }
                    let amount = match (cli.ratio, cli.unit_ratio) {
                        // step k reaches k/steps of the asked-for ratio, measured on the model as it was
                        (Some(r), _) => {
                            let keep = start_params * (1.0 - r * k as f64 / steps as f64);
                            prunec_passes::prune::Amount::Ratio((1.0 - keep / model.params.numel() as f64).max(0.0))
                        }
                        (None, Some(r)) => prunec_passes::prune::Amount::UnitRatio(r),
                        (None, None) => bail!("pass `prune` needs --ratio or --unit-ratio"),
                    };
                    let opts = prune_options(cli, &model, amount);
                    let selection = prunec_passes::prune::select(&model, &s, &opts)?;
                    if cli.uniform {
                        // every group of a kind loses as many units (the local share does this on a uniform model)
                        let groups = model.groups.as_deref().unwrap_or_default();
                        for kind in [prunec_ir::GroupKind::Attention, prunec_ir::GroupKind::Mlp, prunec_ir::GroupKind::Hidden] {
                            let counts: std::collections::BTreeSet<(usize, usize)> = groups
                                .iter()
                                .zip(&selection.removed)
                                .filter(|(g, _)| g.kind == kind)
                                .map(|(g, r)| (g.units.len(), r.len()))
                                .collect();
                            if counts.len() > 1 {
                                bail!("--uniform: the {kind} groups would differ ({counts:?} units before/removed): the model's layers are not alike");
                            }
                        }
                    }
                    let pruned = prunec_passes::prune::apply(&mut model, &selection)?;
                    report.widths = pruned
                        .groups
                        .iter()
                        .map(|(kind, block, before, after)| {
                            serde_json::json!({ "layer": block, "kind": kind.name(), "units_before": before, "units_after": after })
                        })
                        .collect();
                    if steps > 1 {
                        eprintln!("prune step {k}/{steps}: {} parameters left", pruned.params_after);
                        summaries.push(format!("step {k}/{steps}: {}", pruned.summary()));
                    } else {
                        summaries.push(pruned.summary());
                    }
                }
                record.summary = summaries.concat();
            }
            Step::Recover => {
                let (summary, training) = recover::run(cli, &mut model, model_path)?;
                record.summary = summary;
                report.training = Some(training);
            }
            Step::Eval => {
                let inputs = eval_inputs.as_ref().context("evaluation inputs")?;
                let before: Vec<&str> = steps[..k].iter().filter(|s| **s != Step::Eval).map(|s| s.name()).collect();
                let label = if before.is_empty() { "original".to_string() } else { before.join(",") };
                let streamed = memory.streams(&model, Work::Forward);
                record.mode = Some(memory.mode_name(&model, Work::Forward));
                let group_tokens = if streamed {
                    Some(memory.tokens_at_once(prunec_backends::runtime::crossing_bytes_per_token(&model)?))
                } else {
                    None
                };
                let (evaluation, summary) = evaluate::run(&cli.eval, cli.device, &model, inputs, label, group_tokens)?;
                record.summary = summary;
                record.perplexity = evaluation.texts.first().map(|t| (t.perplexity, t.file.clone(), t.seq_len));
                record.evaluation = Some(evaluation);
            }
        }
        record.seconds = t.elapsed().as_secs_f64();
        record.peak_rss_mib = peak_rss_mib();
        overall_peak = overall_peak.max(run_peak.unwrap_or(0.0)).max(record.peak_rss_mib.unwrap_or(0.0));
        eprintln!("[{}/{total}] {} done in {:.2} s", k + 1, step.name(), record.seconds);
        print!("{}", record.summary);
        if cli.dump_after.iter().any(|d| d == step.name()) {
            print!("{}", prunec_ir::print(&model)?);
        }
        report.passes.push(record);
    }
    report.params_after = model.params.numel();
    report.macs_per_token.1 = report::linear_macs_per_token(&model);
    if let Some(out) = &cli.output {
        write_output(&model, model_path, out, cli.dtype, cli.force)?;
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.peak_rss_mib = Some(overall_peak.max(peak_rss_mib().unwrap_or(0.0)));
    if let Some(path) = &cli.report {
        report.write(path, &[model_path.as_path()], cli.force)?;
        eprintln!("report written to {}", path.display());
    }
    let table = evaluate::Table::new(report.passes.iter().filter_map(|p| p.evaluation.as_ref()));
    if let Some(prefix) = cli.eval.table.clone().or_else(|| cli.report.as_ref().map(|r| r.with_extension("table"))) {
        if !table.is_empty() {
            let mut inputs: Vec<&Path> = vec![model_path.as_path()];
            inputs.extend(eval_plan.texts.iter().map(|(_, f)| f.as_path()));
            inputs.extend(eval_plan.tasks.iter().map(|(_, f)| f.as_path()));
            table.write(&prefix, &inputs, cli.force)?;
            eprintln!("table written to {}.{{md,csv,json}}", prefix.display());
        }
    }
    if let Some(path) = &cli.eval.samples {
        let mut inputs: Vec<&Path> = vec![model_path.as_path()];
        inputs.extend(eval_plan.tasks.iter().map(|(_, f)| f.as_path()));
        let n = evaluate::write_samples(report.passes.iter().filter_map(|p| p.evaluation.as_ref()), path, &inputs)?;
        eprintln!("{n} documents written to {}", path.display());
    }
    match report.peak_rss_mib {
        Some(rss) => eprintln!("done in {:.2} s, peak RSS {rss:.1} MiB", report.seconds),
        None => eprintln!("done in {:.2} s", report.seconds),
    }
    Ok(())
}

fn generate(args: &GenerateArgs) -> Result<()> {
    let model = load(&args.model)?;
    let tok = tokenizer(&args.model, args.tokenizer.as_deref())?;
    let text = if args.chat {
        let template = match args.chat_template.as_deref() {
            Some("vicuna") => prunec_frontends::chat::VICUNA.to_string(),
            Some(file) => std::fs::read_to_string(file).with_context(|| format!("--chat-template {file}"))?,
            None => tok
                .chat_template()
                .map(str::to_string)
                .with_context(|| format!("{} has no chat template: give --chat-template vicuna or a Jinja file", args.model.display()))?,
        };
        let special = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or_default();
        let user = prunec_frontends::chat::Message { role: "user".into(), content: args.prompt.clone() };
        prunec_frontends::chat::render(&template, &[user], &special(tok.bos), &special(tok.eos), true).map_err(anyhow::Error::msg)?
    } else {
        args.prompt.clone()
    };
    let prompt = tok.encode(&text)?;
    if prompt.is_empty() {
        bail!("the prompt gives no tokens");
    }
    let origin = format!("the prompt, tokenized by {}", safety::tokenizer_origin(&args.model, args.tokenizer.as_deref()));
    safety::check_token_ids(&model, [prompt.as_slice()], &origin)?;
    let sampling = prunec_backends::runtime::Sampling {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
    };
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    write!(out, "{text}")?;
    out.flush()?;
    let mut ids: Vec<u32> = Vec::new();
    let mut shown = 0;
    let generated = device::generate(args.device, &model, &prompt, &sampling, tok.eos, |t| {
        ids.push(t);
        // print what decodes cleanly so far (a character may span tokens)
        if let Ok(text) = tok.decode(&ids) {
            if text.len() > shown && text.is_char_boundary(shown) && !text.ends_with('\u{fffd}') {
                let _ = write!(out, "{}", &text[shown..]);
                let _ = out.flush();
                shown = text.len();
            }
        }
    })?;
    writeln!(out)?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{} tokens in {secs:.2} s ({:.1} tokens/s, prompt {} tokens)", generated.len(), generated.len() as f64 / secs, prompt.len());
    Ok(())
}

/// One model's cost, as `bench` measures it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct BenchRow {
    model: String,
    parameters: usize,
    macs_per_token: usize,
    forward_tokens_per_s: f64,
    backward_tokens_per_s: f64,
    generate_tokens_per_s: Option<f64>,
    peak_rss_mib: Option<f64>,
}

/// Measures one model in this process and prints its figures.
fn bench_one(args: &BenchArgs, path: &Path) -> Result<BenchRow> {
    reset_peak_rss();
    let model = load(path)?;
    safety::check_forward_memory(&model, args.batch, args.seq_len, &format!("--batch {} × --seq-len {}", args.batch, args.seq_len))?;
    let t = device::bench(args.device, &model, args.batch, args.seq_len, args.iters, args.new_tokens)?;
    let rss = peak_rss_mib();
    let macs = report::linear_macs_per_token(&model);
    println!("model                {} ({} parameters)", model.info.name, model.params.numel());
    println!("device               {}", args.device.name());
    println!("batch                {} × {} tokens, {} timed iterations", args.batch, args.seq_len, t.iters);
    println!("MACs per token       {macs} (linear ops)");
    println!("forward              {:.1} tokens/s", t.forward_tokens_per_s);
    println!("forward+backward     {:.1} tokens/s", t.backward_tokens_per_s);
    if let Some(g) = t.generate_tokens_per_s {
        println!("generation           {g:.1} tokens/s ({} new tokens after {}, prefill included)", args.new_tokens, args.seq_len);
    }
    println!("load                 {:.2} s", t.load_seconds);
    if let Some(rss) = rss {
        println!("peak RSS             {rss:.1} MiB");
    }
    Ok(BenchRow {
        model: path.display().to_string(),
        parameters: model.params.numel(),
        macs_per_token: macs,
        forward_tokens_per_s: t.forward_tokens_per_s,
        backward_tokens_per_s: t.backward_tokens_per_s,
        generate_tokens_per_s: t.generate_tokens_per_s,
        peak_rss_mib: rss,
    })
}

/// Measures one model in a fresh prunec process, so that neither its memory nor its timing
/// carries what an earlier model left behind.
fn bench_child(args: &BenchArgs, path: &Path) -> Result<BenchRow> {
    let exe = std::env::current_exe().context("finding the prunec executable")?;
    let out = std::process::Command::new(exe)
        .arg("bench")
        .arg(path)
        .args(["--batch", &args.batch.to_string(), "--seq-len", &args.seq_len.to_string(), "--iters", &args.iters.to_string()])
        .args(["--new-tokens", &args.new_tokens.to_string(), "--device", args.device.name(), "--row-json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("benchmarking {}", path.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("benchmarking {} failed", path.display());
    }
    let mut row = None;
    for line in stdout.lines() {
        match line.strip_prefix("row: ") {
            Some(json) => row = Some(serde_json::from_str::<BenchRow>(json).context("reading a benchmark row")?),
            None => println!("{line}"),
        }
    }
    row.with_context(|| format!("benchmarking {}: no result", path.display()))
}

fn bench(args: &BenchArgs) -> Result<()> {
    use std::fmt::Write as _;
    if args.batch == 0 || args.seq_len < 2 || args.iters == 0 {
        bail!("--batch and --iters must be positive and --seq-len at least 2");
    }
    if let Some(stem) = &args.out {
        safety::check_bench_outputs(&args.models, stem, args.force)?;
    }
    if args.row_json {
        let [path] = args.models.as_slice() else { bail!("--row-json measures one model") };
        let row = bench_one(args, path)?;
        println!("row: {}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for path in &args.models {
        rows.push(if args.models.len() > 1 { bench_child(args, path)? } else { bench_one(args, path)? });
    }
    if rows.len() < 2 && args.out.is_none() {
        return Ok(());
    }
    let first = rows[0].clone();
    let ratio = |x: f64, base: f64| if base > 0.0 { format!("{:.3}", x / base) } else { "—".into() };
    let mut md = format!(
        "# Cost of each model\n\n{} on {}, each measured in its own process: batches of {} × {} tokens, {} timed iterations, {} generated tokens; ratios against `{}`.\n\n",
        if rows.len() > 1 { "Original and pruned models" } else { "The model" },
        args.device.name(),
        args.batch,
        args.seq_len,
        args.iters,
        args.new_tokens,
        first.model
    );
    md.push_str("| model | parameters | MACs/token | forward tok/s | fwd+bwd tok/s | generation tok/s | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|\n");
    let mut csv = String::from("model,parameters,macs_per_token,forward_tokens_per_s,backward_tokens_per_s,generate_tokens_per_s,peak_rss_mib\n");
    for r in &rows {
        let g = r.generate_tokens_per_s.unwrap_or(f64::NAN);
        let rss = r.peak_rss_mib.unwrap_or(f64::NAN);
        let _ = writeln!(
            md,
            "| {} | {} ({}) | {} ({}) | {:.1} ({}) | {:.1} ({}) | {g:.1} ({}) | {rss:.0} ({}) |",
            r.model,
            r.parameters,
            ratio(r.parameters as f64, first.parameters as f64),
            r.macs_per_token,
            ratio(r.macs_per_token as f64, first.macs_per_token as f64),
            r.forward_tokens_per_s,
            ratio(r.forward_tokens_per_s, first.forward_tokens_per_s),
            r.backward_tokens_per_s,
            ratio(r.backward_tokens_per_s, first.backward_tokens_per_s),
            ratio(g, first.generate_tokens_per_s.unwrap_or(f64::NAN)),
            ratio(rss, first.peak_rss_mib.unwrap_or(f64::NAN)),
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{g},{rss}",
            r.model.replace(',', ";"),
            r.parameters,
            r.macs_per_token,
            r.forward_tokens_per_s,
            r.backward_tokens_per_s
        );
    }
    let json: Vec<serde_json::Value> = rows.iter().map(serde_json::to_value).collect::<std::result::Result<_, _>>()?;
    print!("\n{md}");
    if let Some(stem) = &args.out {
        let inputs: Vec<&Path> = args.models.iter().map(PathBuf::as_path).collect();
        let doc = serde_json::json!({
            "device": args.device.name(), "batch": args.batch, "seq_len": args.seq_len, "iters": args.iters,
            "new_tokens": args.new_tokens, "models": json,
        });
        for (ext, text) in [("md", md), ("csv", csv), ("json", serde_json::to_string_pretty(&doc)? + "\n")] {
            let dest = stem.with_extension(ext);
            prunec_backends::AtomicPath::write(&dest, text.as_bytes(), &inputs, args.force)?;
        }
        eprintln!("wrote {}.{{md,csv,json}}", stem.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match safety::negative_count(&e) {
            Some(msg) => {
                eprintln!("error: {msg}");
                return ExitCode::FAILURE;
            }
            None => e.exit(),
        },
    };
    safety::install_signal_cleanup();
    let result = safety::check_args(&cli).and_then(|()| match &cli.command {
        Some(Command::Synth(args)) => synth::run(args),
        Some(Command::Generate(args)) => generate(args),
        Some(Command::Bench(args)) => bench(args),
        Some(Command::Sweep(args)) => study::sweep(args),
        Some(Command::Sensitivity(args)) => study::sensitivity(args),
        None => run(&cli.run),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", safety::printable(&error_chain(&e)));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `: `-separated, leaving out a cause whose text the message before
/// it already ends with (errors that print their source, as `path: reason`, would repeat it).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// The most query heads of any attention group (its sub-units, or its units without them).
fn query_heads(model: &prunec_ir::Model) -> usize {
    let groups = model.groups.as_deref().unwrap_or_default();
    groups
        .iter()
        .filter(|g| g.kind == prunec_ir::GroupKind::Attention)
        .map(|g| g.units.iter().map(|u| u.sub_units.len().max(1)).sum::<usize>())
        .max()
        .unwrap_or(1)
}
