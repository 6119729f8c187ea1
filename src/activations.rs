//! The work that reads calibration activations rather than gradients: FLAP's fluctuation
//! scores for `--allocate flap`, and the `reconstruct` pass. Both run the unpruned model
//! forward layer by layer over `--reconstruct-samples` windows of `--reconstruct-len` tokens
//! (see [`prunec_backends::runtime::input_moments`]), so memory holds one layer at a time.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use prunec_ir::{Model, Moments, ValueId};
use prunec_passes::reconstruct::{self, Reconstruction};
use prunec_passes::Scores;
use serde_json::json;

use crate::cli::RunArgs;
use crate::device;

/// Windows per forward pass.
const MICRO_BATCH: usize = 8;

/// The calibration windows of this work, cut into micro-batches of equal length; and a line
/// naming them.
fn batches(cli: &RunArgs, model: &Model, path: &Path, why: &str) -> Result<(Vec<Vec<Vec<u32>>>, String)> {
    let (samples, name) = crate::session::calibration_windows(cli, model, path, why, cli.reconstruct_samples, cli.reconstruct_len)?;
    if samples.is_empty() {
        anyhow::bail!("{why}: no calibration window");
    }
    let tokens: usize = samples.iter().map(Vec::len).sum();
    let mut out: Vec<Vec<Vec<u32>>> = Vec::new();
    for s in samples.iter() {
        match out.last_mut() {
            Some(b) if b.len() < MICRO_BATCH && b[0].len() == s.len() => b.push(s.clone()),
            _ => out.push(vec![s.clone()]),
        }
    }
    Ok((out, format!("{} windows, {tokens} tokens of {name}", samples.len())))
}

fn progress_line(what: &'static str, start: Instant) -> impl FnMut(prunec_backends::runtime::StreamStep) {
    move |step| {
        let at = step.block.map_or_else(|| "embedding/head".to_string(), |b| format!("layer {b}"));
        eprintln!("{what}: {}/{} segments ({at}) {:.1} s", step.done, step.total, start.elapsed().as_secs_f64());
    }
}

/// FLAP's fluctuation metric of every unit of `model` (grouped, unpruned), from one forward
/// pass over the calibration windows.
pub(crate) fn fluctuation_scores(cli: &RunArgs, model: &Model, path: &Path) -> Result<Scores> {
    let options = crate::pipeline::prune_options(cli, prunec_passes::prune::Amount::Ratio(0.0));
    let scope = |g: &prunec_ir::Group| options.prunes(g);
    let (moments, _) = all_moments(cli, model, path, &scope, false, "--allocate flap")?;
    Ok(reconstruct::fluctuation(model, &moments, &scope)?)
}

/// What reconstructing some ops did, summed.
#[derive(Default)]
pub(crate) struct Totals {
    before: f64,
    after: f64,
    energy: f64,
    records: Vec<serde_json::Value>,
}

impl Totals {
    /// The relative error summed over the ops, before and after.
    pub(crate) fn relative(&self) -> (f64, f64) {
        (self.before / self.energy, self.after / self.energy)
    }
}

/// Reconstructs (`how`, `damp`) those of `targets` whose input's moments `moments` holds,
/// adding to `totals`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn reconstruct_targets(
    how: Reconstruction,
    damp: f64,
    original: &Model,
    model: &mut Model,
    targets: &[reconstruct::Target],
    moments: &HashMap<ValueId, Moments>,
    totals: &mut Totals,
    verbose: Option<Instant>,
) -> Result<()> {
    for t in targets.iter().filter(|t| moments.contains_key(&t.input)) {
        let m = &moments[&t.input];
        let (full, pruned) = reconstruct::weights_of(original, model, t)?;
        let solved =
            reconstruct::solve(m, &full, &pruned, &t.kept_cols, how, damp).with_context(|| format!("reconstructing `{}`", t.name))?;
        if !solved.linear.weight.iter().chain(&solved.linear.bias).all(|v| v.is_finite()) {
            anyhow::bail!("reconstructing `{}` gave non-finite weights", t.name);
        }
        reconstruct::apply(model, t, &solved.linear)?;
        totals.before += solved.error_before;
        totals.after += solved.error_after;
        totals.energy += solved.energy;
        if let Some(start) = verbose {
            eprintln!(
                "reconstruct `{}` ({} of {} inputs kept): relative error {:.4} -> {:.4} ({:.1} s)",
                t.name,
                t.kept_cols.len(),
                t.inputs,
                solved.error_before / solved.energy,
                solved.error_after / solved.energy,
                start.elapsed().as_secs_f64()
            );
        }
        totals.records.push(json!({
            "op": t.name,
            "inputs": t.inputs,
            "kept": t.kept_cols.len(),
            "error_before": solved.error_before,
            "error_after": solved.error_after,
            "output_energy": solved.energy,
        }));
    }
    Ok(())
}

/// The moments (`full`: whole second moments, else their diagonals) of every linear input
/// [`reconstruct::fluctuation_taps`] names for the groups `scope` accepts (what any allocation
/// and reconstruction of them reads), held together, for `what` (in messages); and a line
/// naming the windows.
pub(crate) fn all_moments(
    cli: &RunArgs,
    model: &Model,
    path: &Path,
    scope: &dyn Fn(&prunec_ir::Group) -> bool,
    full: bool,
    what: &'static str,
) -> Result<(HashMap<ValueId, Moments>, String)> {
    let (batches, origin) = batches(cli, model, path, &format!("{what} measures activations"))?;
    let taps: Vec<(ValueId, bool)> = reconstruct::fluctuation_taps(model, scope).into_iter().map(|v| (v, full)).collect();
    let start = Instant::now();
    let mut moments = HashMap::new();
    device::input_moments(
        cli.device,
        model,
        &batches,
        &taps,
        |m| {
            moments.extend(m);
            Ok(())
        },
        progress_line(what, start),
    )
    .with_context(|| format!("measuring activations for {what}"))?;
    eprintln!("{what}: activations of {} linear inputs over {origin} ({:.1} s)", moments.len(), start.elapsed().as_secs_f64());
    Ok((moments, origin))
}

/// The `reconstruct` pass: every linear op of `model` whose input features `prune` removed
/// from `original` is updated (`cli.reconstruct`) from the moments of its input in `original`,
/// measured layer by layer. Returns a summary and the report's record.
pub(crate) fn reconstruct(cli: &RunArgs, original: &Model, model: &mut Model, path: &Path) -> Result<(String, serde_json::Value)> {
    let how = cli.reconstruct;
    if !(cli.damp > 0.0 && cli.damp.is_finite()) {
        anyhow::bail!("--damp {} must be positive", cli.damp);
    }
    let targets = reconstruct::targets(original, model)?;
    if targets.is_empty() {
        return Ok(("nothing to reconstruct: no linear op lost input features\n".into(), json!({ "method": how.name(), "ops": [] })));
    }
    let (batches, origin) = batches(cli, model, path, "reconstruct measures activations")?;
    let taps: Vec<(ValueId, bool)> = targets.iter().map(|t| (t.input, true)).collect();
    let start = Instant::now();
    let mut totals = Totals::default();
    let mut failed: Option<anyhow::Error> = None;
    device::input_moments(
        cli.device,
        original,
        &batches,
        &taps,
        |moments| {
            if failed.is_none() {
                if let Err(e) = reconstruct_targets(how, cli.damp, original, model, &targets, &moments, &mut totals, Some(start)) {
                    failed = Some(e);
                }
            }
            Ok(())
        },
        progress_line("reconstruct", start),
    )
    .context("measuring activations for reconstruct")?;
    if let Some(e) = failed {
        return Err(e);
    }
    let (before, after) = totals.relative();
    let summary = format!(
        "{} ops reconstructed ({}, damp {}) over {origin}: summed relative error {before:.4} -> {after:.4}\n",
        targets.len(),
        how.name(),
        cli.damp,
    );
    let record = json!({
        "method": how.name(),
        "damp": cli.damp,
        "calibration": origin,
        "error_before": totals.before,
        "error_after": totals.after,
        "output_energy": totals.energy,
        "ops": totals.records,
    });
    Ok((summary, record))
}
