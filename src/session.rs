//! What every command shares: the model read, its tokenizer, calibration (resident or streamed)
//! and the `score` pass built on it, the process's peak memory.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use prunec_frontends::data::{read_text_source, TextSource};
use prunec_frontends::tokenizer::Tokenizer;
use prunec_ir::Model;

use crate::cli::*;
use crate::device;
use crate::memory::{MemoryPlan, Work};
use crate::progress::Progress;
use crate::report::Report;
use crate::safety;
use crate::output::write_scores;

/// Tunes glibc's allocator for tensor work: blocks up to 32 MiB (its largest mmap threshold)
/// come from the heap and freed memory stays with the process, instead of each block of 128 KiB
/// and more being mapped fresh and unmapped on release. A forward pass allocates and frees its
/// activations op after op, and fresh maps cost a page fault and a zeroed page per 4 KiB written:
/// SmolLM2's forward (4×128 tokens) runs at ~940 tokens/s so against 650-750 (docs/speed.md,
/// "Fifth part"). Larger blocks (a big model's weights, the logits) are still mapped, and
/// returned but for the last one freed, which [`crate::alloc`] keeps for the next block of its
/// size; [`reset_peak_rss`] hands the rest back between passes.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread is started
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, crate::alloc::LARGE as i32);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Starts a new peak-memory measurement (Linux: writing 5 to `clear_refs` resets `VmHWM`),
/// after returning the memory the allocator keeps freed to the kernel, so that a pass's peak
/// counts what it holds, not what an earlier pass left free.
pub(crate) fn reset_peak_rss() {
    crate::alloc::release();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory of this process, from the kernel, in MiB.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn load(path: &Path) -> Result<Model> {
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

pub(crate) fn tokenizer(model: &Path, explicit: Option<&Path>) -> Result<Tokenizer> {
    Ok(match explicit {
        Some(t) => Tokenizer::from_file(t)?,
        None => Tokenizer::for_model(model)
            .with_context(|| format!("no tokenizer for {} (give one with --tokenizer)", model.display()))?,
    })
}

/// The calibration samples for `importance`: `--calib-samples` windows of `--calib-len` tokens
/// of `--calib` (or rows of its `input_ids`), else of the embedded text; and what they came
/// from, for messages and the report.
pub(crate) fn calibration_samples(
    cli: &RunArgs,
    model: &Model,
    model_path: &Path,
    importance: prunec_passes::Importance,
) -> Result<(Vec<Vec<u32>>, String)> {
    let why = format!("{} importance calibrates", importance.name());
    calibration_windows(cli, model, model_path, &why, cli.calib_samples, cli.calib_len)
}

/// `count` windows of `len` tokens of `--calib` (or rows of its `input_ids`), else of the
/// embedded text, for `why` (`… calibrates`, in messages); and what they came from.
pub(crate) fn calibration_windows(
    cli: &RunArgs,
    model: &Model,
    model_path: &Path,
    why: &str,
    count: usize,
    len: usize,
) -> Result<(Vec<Vec<u32>>, String)> {
    let (src, calib_name) = match cli.calib.as_deref() {
        Some(path) => (read_text_source(path)?, path.display().to_string()),
        None => (
            TextSource::Plain(prunec_frontends::data::EMBEDDED_CALIBRATION_TEXT.to_string()),
            "the embedded calibration text (give --calib FILE for your own)".to_string(),
        ),
    };
    let samples = match &src {
        TextSource::Tokens(rows) => rows.iter().take(count).map(|r| r[..r.len().min(len)].to_vec()).collect(),
        _ => {
            let tok = tokenizer(model_path, cli.tokenizer.as_deref()).with_context(|| {
                format!(
                    "{why} on token ids: give a tokenizer (--tokenizer), calibration rows of \
                     `input_ids` (--calib FILE.jsonl), or use a magnitude importance (--importance l1|l2)"
                )
            })?;
            prunec_frontends::data::calibration_samples(&src, &tok, count, len, cli.seed)?
        }
    };
    let origin = match &src {
        TextSource::Tokens(_) => format!("the `input_ids` of --calib {calib_name}"),
        _ => format!("--calib {calib_name}, tokenized by {}", safety::tokenizer_origin(model_path, cli.tokenizer.as_deref())),
    };
    safety::check_token_ids(model, samples.iter().map(Vec::as_slice), &origin)?;
    Ok((samples, calib_name))
}

/// FNV-1a over names and f32 bit patterns: what every peer of a parallel run prints, to show
/// that they hold the same values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Adds a name (a parameter's).
    pub(crate) fn add_name(&mut self, name: &str) {
        self.bytes(name.as_bytes());
        self.bytes(&[0]);
    }

    /// Adds values.
    pub(crate) fn add(&mut self, values: &[f32]) {
        for v in values {
            self.bytes(&v.to_bits().to_le_bytes());
        }
    }

    /// The digest as 16 hex digits.
    pub(crate) fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The digest of named vectors (in their map's order).
pub(crate) fn stats_digest<'a>(named: impl Iterator<Item = (&'a String, &'a Vec<f32>)>) -> String {
    let mut d = Digest::default();
    for (name, v) in named {
        d.add_name(name);
        d.add(v);
    }
    d.hex()
}

/// The report's `calibration` object.
pub(crate) fn calibration_record(cli: &RunArgs, calib_name: &str, samples: usize, tokens: usize, loss: f64, mode: &str) -> serde_json::Value {
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

/// Tokens per forward/backward pass of resident calibration (LLM-Pruner runs its 10 samples of
/// 64 tokens in one pass; the activations of 1024 tokens stay within the resident estimate's
/// slack, a quarter of the weights and gradients, from SmolLM2-135M up).
const CALIBRATION_TOKENS: usize = 1024;

/// Calibration for `importance` (the Fisher diagonal too when it needs it), holding the whole
/// model: the gradient of the mean loss on `--calib-samples` windows of `--calib`, recorded in
/// the report; of the parameters `wanted` only when given (the others get no gradient).
pub(crate) fn calibrate(
    cli: &RunArgs,
    model: &Model,
    model_path: &Path,
    importance: prunec_passes::Importance,
    wanted: Option<Vec<String>>,
    report: &mut Report,
) -> Result<prunec_ir::CalibrationStats> {
    let (samples, calib_name) = calibration_samples(cli, model, model_path, importance)?;
    let cluster = cli.parallel.cluster(cli.device)?;
    // as many samples per forward/backward pass as make CALIBRATION_TOKENS tokens: fewer passes
    // read every gradient back fewer times, and larger matrix products run faster; with several
    // peers, at least one pass for each
    let longest = samples.iter().map(Vec::len).max().unwrap_or(1);
    let micro_batch = (CALIBRATION_TOKENS / longest.max(1)).max(1).min(samples.len().div_ceil(cluster.peers()).max(1));
    let options = prunec_backends::runtime::CalibrationOptions { fisher: importance.needs_fisher(), micro_batch, wanted };
    let mut bar = Progress::new("calibrate", samples.len(), "samples");
    let (stats, times) = device::calibrate(&cluster, model, &samples, options, |done, mine| {
        bar.update(done * samples.len() / mine.max(1), "")
    })
    .context("calibration")?;
    bar.finish();
    safety::check_finite(stats.loss, "the calibration loss")?;
    let mut record = calibration_record(cli, &calib_name, stats.samples, stats.tokens, stats.loss, "resident");
    if cluster.is_parallel() {
        record["peers"] = cluster.describe(&times);
        record["digest"] = stats_digest(stats.grad.iter().chain(stats.fisher.iter().flatten())).into();
        eprintln!("calibration digest {} (equal on every peer)", record["digest"].as_str().unwrap_or(""));
    }
    report.calibration = Some(record);
    Ok(stats)
}

/// Calibration layer by layer (the model streamed from its files): each parameter of the groups
/// `scope` accepts is folded into per-index saliences the moment its gradient is complete, and
/// its gradient dropped.
pub(crate) fn calibrate_streamed(
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
    let cluster = cli.parallel.cluster(cli.device)?;
    let mut saliences = prunec_passes::Saliences::new();
    let mut digest = Digest::default();
    let start = Instant::now();
    let sink = |name: &str, stats: prunec_ir::ParamGradient| -> prunec_backends::Result<()> {
        if cluster.is_parallel() {
            digest.add_name(name);
            for g in std::iter::once(&stats.grad).chain(&stats.fisher) {
                match g {
                    prunec_ir::GradValues::Dense(v) => digest.add(v),
                    prunec_ir::GradValues::Rows { rows, .. } => rows.iter().for_each(|(r, v)| {
                        digest.add_name(&r.to_string());
                        digest.add(v)
                    }),
                }
            }
        }
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
    let (summary, times) = device::calibrate_streamed(&cluster, model, &samples, &options, sink, progress).context("calibration")?;
    safety::check_finite(summary.loss, "the calibration loss")?;
    let mut record = calibration_record(cli, &calib_name, summary.samples, summary.tokens, summary.loss, "streamed");
    if cluster.is_parallel() {
        record["peers"] = cluster.describe(&times);
        record["digest"] = digest.hex().into();
        eprintln!("calibration digest {} (equal on every peer)", digest.hex());
    }
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
pub(crate) fn run_score(
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
        // the gradients of the parameters of the groups in scope only (all when it takes every
        // group): the backward pass then skips the others', and every layer below the lowest
        // scored one (LLM-Pruner's recipe: the first layers, and the tied embedding's table)
        let groups = model.groups.as_deref().unwrap_or_default();
        let partial = calibrates && !groups.iter().all(scope);
        let wanted = partial.then(|| prunec_passes::scored_axes(model, scope).into_keys().collect());
        let stats = if calibrates { Some(calibrate(cli, model, model_path, importance, wanted, report)?) } else { None };
        let every = |_: &prunec_ir::Group| true;
        // estimators that read only the weights score every group, as before
        prunec_passes::score_in(model, stats.as_ref(), importance, aggregation, cli.seed, if calibrates { scope } else { &every })?
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
