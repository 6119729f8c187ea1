//! `prunec MODEL --pass ...`: the pipeline of passes on one model, with the prune policy the
//! command line gives, and what the run writes at its end.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use prunec_ir::Model;

use crate::cli::*;
use crate::memory::{MemoryPlan, Work};
use crate::pipeline::{self, Step};
use crate::report::{self, PassRecord, Report};
use crate::session::*;
use crate::{evaluate, recover, safety};
use crate::output::write_output;

/// The options of `prune` that the command line gives, for `amount`.
pub(crate) fn prune_options(cli: &RunArgs, model: &Model, amount: prunec_passes::prune::Amount) -> prunec_passes::prune::PruneOptions {
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

pub(crate) fn run(cli: &RunArgs) -> Result<()> {
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
        // every pass leaves a valid IR: the IR passes check it themselves; `score`, `prune`,
        // `recover` (which writes parameters) and `eval` are checked here
        if !matches!(step, Step::Ir(_)) {
            prunec_ir::verify(&model).with_context(|| format!("the IR after pass `{}`", step.name()))?;
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
        let n = evaluate::write_samples(report.passes.iter().filter_map(|p| p.evaluation.as_ref()), path, &inputs, cli.force)?;
        eprintln!("{n} documents written to {}", path.display());
    }
    match report.peak_rss_mib {
        Some(rss) => eprintln!("done in {:.2} s, peak RSS {rss:.1} MiB", report.seconds),
        None => eprintln!("done in {:.2} s", report.seconds),
    }
    Ok(())
}

/// The most query heads of any attention group (its sub-units, or its units without them).
pub(crate) fn query_heads(model: &prunec_ir::Model) -> usize {
    let groups = model.groups.as_deref().unwrap_or_default();
    groups
        .iter()
        .filter(|g| g.kind == prunec_ir::GroupKind::Attention)
        .map(|g| g.units.iter().map(|u| u.sub_units.len().max(1)).sum::<usize>())
        .max()
        .unwrap_or(1)
}
