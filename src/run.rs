//! `prunec MODEL --pass ...`: the pipeline of passes on one model, with the prune policy the
//! command line gives, and what the run writes at its end.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::*;
use crate::memory::MemoryPlan;
use crate::output::write_output;
use crate::pipeline::{self, RunState};
use crate::report::{self, PassRecord, Report};
use crate::session::*;
use crate::{evaluate, safety};
use prunec_passes::PassName;

pub(crate) fn run(cli: &RunArgs) -> Result<()> {
    let Some(model_path) = &cli.model else {
        bail!("no MODEL given: `prunec MODEL --pass PASSES` runs passes on a model, `prunec synth ...` writes one (see --help)");
    };
    let steps = pipeline::parse(&cli.pass)?;
    cli.precision.apply(cli.device)?;
    for name in &cli.dump_after {
        if PassName::from_name(name).is_err() {
            bail!("--dump-after: unknown pass `{name}`; valid passes: {}", PassName::names().join(", "));
        }
        if !steps.iter().any(|p| p.name() == name) {
            bail!("--dump-after {name}: `{name}` is not in --pass {}", cli.pass);
        }
    }
    let importance = cli.one_importance()?;
    let aggregation = cli.one_aggregation()?;
    if steps.contains(&PassName::Prune) && cli.ratio.is_none() && cli.unit_ratio.is_none() {
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
    if cli.steps.is_some() && !steps.contains(&PassName::Recover) {
        bail!("--steps counts the training steps of `recover`, which --pass does not name (iterative pruning: --prune-steps N)");
    }
    if cli.prune_steps > 1 && cli.ratio.is_none() && steps.contains(&PassName::Prune) {
        bail!("--prune-steps {}: iterative pruning needs --ratio (a fraction of the parameters)", cli.prune_steps);
    }
    let eval_plan = cli.eval.plan()?;
    if steps.contains(&PassName::Eval) && eval_plan.is_empty() {
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
    let eval_inputs = if steps.contains(&PassName::Eval) {
        Some(evaluate::prepare(&eval_plan, &cli.eval, model_path, cli.tokenizer.as_deref())?)
    } else {
        None
    };
    let mut model = load(model_path)?;
    if let Some(inputs) = &eval_inputs {
        inputs.check(&model, &cli.eval, &safety::tokenizer_origin(model_path, cli.tokenizer.as_deref()))?;
    }
    let report = Report {
        model: serde_json::json!({
            "name": model.info.name,
            "architecture": model.info.architecture,
            "format": model.info.format.name(),
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
    let mut state = RunState {
        cli,
        model_path,
        memory: &memory,
        pipeline: &steps,
        index: 0,
        importance,
        aggregation,
        eval_inputs: eval_inputs.as_ref(),
        report,
        scores: None,
        unpruned: None,
        record: Default::default(),
    };
    let total = steps.len();
    let mut overall_peak = 0.0f64;
    for (k, &name) in steps.iter().enumerate() {
        eprintln!("[{}/{total}] {name} ...", k + 1);
        let run_peak = peak_rss_mib();
        reset_peak_rss();
        state.index = k;
        let mut pass = pipeline::build(name, cli, &model);
        // the pass, then the IR verifier (every pass, `recover` and `eval` too)
        let outcome = prunec_passes::run_pass(pass.as_mut(), &mut model, &mut state).with_context(|| format!("pass `{name}`"))?;
        let extras = std::mem::take(&mut state.record);
        let record = PassRecord {
            name: name.name().into(),
            seconds: outcome.elapsed.as_secs_f64(),
            summary: outcome.summary,
            perplexity: extras.perplexity,
            evaluation: extras.evaluation,
            peak_rss_mib: peak_rss_mib(),
            mode: extras.mode,
        };
        overall_peak = overall_peak.max(run_peak.unwrap_or(0.0)).max(record.peak_rss_mib.unwrap_or(0.0));
        eprintln!("[{}/{total}] {name} done in {:.2} s", k + 1, record.seconds);
        print!("{}", record.summary);
        if cli.dump_after.iter().any(|d| d == name.name()) {
            print!("{}", prunec_ir::print(&model)?);
        }
        state.report.passes.push(record);
    }
    let mut report = state.report;
    report.params_after = model.params.numel();
    report.macs_per_token.1 = report::linear_macs_per_token(&model);
    if let Some(out) = &cli.output {
        write_output(&model, model_path, out, cli)?;
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
        let n = evaluate::write_samples(report.passes.iter().filter_map(|p| p.evaluation.as_ref()), path, &inputs, cli.force)?;
        eprintln!("{n} documents written to {}", path.display());
    }
    match report.peak_rss_mib {
        Some(rss) => eprintln!("done in {:.2} s, peak RSS {rss:.1} MiB", report.seconds),
        None => eprintln!("done in {:.2} s", report.seconds),
    }
    Ok(())
}
