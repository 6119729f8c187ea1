//! The driver's pipeline: every pass of [`PassName`] built for one run. The IR's own passes
//! (`group`, `lora`, `merge`) come from `prunec-passes`; the passes that need the backend,
//! data or the command line (`score`, `prune`, `recover`, `eval`) are here, against the same
//! [`Pass`] trait, sharing a [`RunState`]. [`prunec_passes::run_pass`] runs each and the IR
//! verifier after it.

use std::path::Path;

use anyhow::{bail, Context, Result};
use prunec_ir::Model;
use prunec_passes::prune::{Amount, PruneOptions};
use prunec_passes::{Aggregation, Importance, Pass, PassName, Scores};

use crate::cli::{Gqa, PruneMode, RunArgs};
use crate::evaluate::{self, Evaluation};
use crate::memory::{MemoryPlan, Work};
use crate::report::Report;
use crate::session::run_score;

/// What the passes of one run share.
pub(crate) struct RunState<'a> {
    /// The command line.
    pub cli: &'a RunArgs,
    /// The model's file or folder.
    pub model_path: &'a Path,
    /// Resident or streamed, and how many tokens at once.
    pub memory: &'a MemoryPlan,
    /// The passes of the run, and which one runs now.
    pub pipeline: &'a [PassName],
    /// The index in `pipeline` of the pass running now.
    pub index: usize,
    /// `score`'s estimator and aggregation.
    pub importance: Importance,
    /// How a unit's members' importances combine.
    pub aggregation: Aggregation,
    /// The evaluation's datasets, read before the model (when the run evaluates).
    pub eval_inputs: Option<&'a evaluate::Inputs>,
    /// The run's report, which passes add to.
    pub report: Report,
    /// `score`'s scores, until `prune` takes them.
    pub scores: Option<Scores>,
    /// The model as `prune` found it, when `reconstruct` follows (its parameters shared, not
    /// copied).
    pub unpruned: Option<Model>,
    /// What the running pass adds to its record in the report.
    pub record: RecordExtras,
}

/// What a pass adds to its line of the report, beside its name, time and summary.
#[derive(Default)]
pub(crate) struct RecordExtras {
    /// `eval`'s first perplexity: value, file, window.
    pub perplexity: Option<(prunec_backends::runtime::Perplexity, String, usize)>,
    /// `eval`'s results.
    pub evaluation: Option<Evaluation>,
    /// Resident or streamed.
    pub mode: Option<&'static str>,
}

/// A pass of the driver's pipeline.
pub(crate) type DriverPass<'a> = Box<dyn Pass<RunState<'a>, anyhow::Error>>;

/// The pass `name` for `model`, with the command line's options.
pub(crate) fn build<'a>(name: PassName, cli: &RunArgs, model: &Model) -> DriverPass<'a> {
    match name {
        PassName::Group => Box::new(prunec_passes::Group),
        PassName::Lora => Box::new(prunec_passes::Lora(cli.recover.lora_options(cli.seed, model))),
        PassName::Merge => Box::new(prunec_passes::Merge),
        PassName::Score => Box::new(ScorePass),
        PassName::Prune => Box::new(PrunePass),
        PassName::Reconstruct => Box::new(ReconstructPass),
        PassName::Recover => Box::new(RecoverPass),
        PassName::Eval => Box::new(EvalPass),
    }
}

/// Parses `--pass group,eval,...`.
pub(crate) fn parse(spec: &str) -> Result<Vec<PassName>> {
    let steps = prunec_passes::parse_pipeline(spec)?;
    if steps.is_empty() {
        bail!("--pass names no pass; valid passes: {}", PassName::names().join(", "));
    }
    Ok(steps)
}

/// How `prune` shares a ratio among layers: `--allocate`, else sensitivity (`--global`'s
/// threshold), except with `--uniform` widths and `--gqa query` (whose query heads are taken
/// by one share per layer).
pub(crate) fn allocation(cli: &RunArgs) -> prunec_passes::prune::Allocate {
    use prunec_passes::prune::Allocate;
    match cli.allocate {
        Some(a) => a,
        None if cli.global => Allocate::Sensitivity,
        None if cli.uniform || cli.gqa == Gqa::Query => Allocate::Uniform,
        None => Allocate::Sensitivity,
    }
}

/// The options of `prune` that the command line gives, for `amount`.
pub(crate) fn prune_options(cli: &RunArgs, amount: Amount) -> PruneOptions {
    PruneOptions {
        amount,
        mode: match cli.mode {
            PruneMode::Block => prunec_passes::prune::Mode::Block,
            PruneMode::Channel => prunec_passes::prune::Mode::Channel,
            PruneMode::Layer => prunec_passes::prune::Mode::Layer,
        },
        attn_layers: cli.attn_layers.clone(),
        mlp_layers: cli.mlp_layers.clone(),
        allocate: allocation(cli),
        gqa: match cli.gqa {
            Gqa::Kv => prunec_passes::prune::Gqa::KvHeads,
            Gqa::Query => prunec_passes::prune::Gqa::QueryHeads,
        },
        round_to: cli.round_to as usize,
        uniform: cli.uniform,
    }
}

impl RunState<'_> {
    /// Scores of `model`'s groups: of those `prune` will prune when it follows (a streamed
    /// calibration computes no others), else of all.
    fn score(&mut self, model: &Model) -> Result<(Scores, String, Option<&'static str>)> {
        let prunes = self.pipeline[self.index..].contains(&PassName::Prune);
        let scope_options = prune_options(self.cli, Amount::Ratio(0.0));
        let scope = |g: &prunec_ir::Group| !prunes || scope_options.prunes(g);
        let (cli, path, memory) = (self.cli, self.model_path, self.memory);
        run_score(cli, model, path, self.importance, self.aggregation, &scope, memory, &mut self.report)
    }
}

/// `score`: the importance of every unit.
struct ScorePass;

impl<'a> Pass<RunState<'a>, anyhow::Error> for ScorePass {
    fn name(&self) -> PassName {
        PassName::Score
    }

    fn run(&mut self, model: &mut Model, cx: &mut RunState<'a>) -> Result<String> {
        let (scores, summary, mode) = cx.score(model)?;
        cx.record.mode = mode;
        cx.scores = Some(scores);
        Ok(summary)
    }
}

/// `prune`: the lowest-scoring units removed, in `--prune-steps` steps.
struct PrunePass;

impl<'a> Pass<RunState<'a>, anyhow::Error> for PrunePass {
    fn name(&self) -> PassName {
        PassName::Prune
    }

    fn run(&mut self, model: &mut Model, cx: &mut RunState<'a>) -> Result<String> {
        let scores = cx.scores.take().context("it needs scores: put `score` before it")?;
        let amount = match (cx.cli.ratio, cx.cli.unit_ratio) {
            (Some(r), _) => Amount::Ratio(r),
            (None, Some(r)) => Amount::UnitRatio(r),
            (None, None) => bail!("it needs --ratio or --unit-ratio"),
        };
        let mut options = prune_options(cx.cli, amount);
        // written as GGUF, an ONNX model is a LLaMA whose layers may differ (`deci`)
        let onnx_out = model.info.format == prunec_ir::SourceFormat::Onnx && !cx.cli.output.as_deref().is_some_and(crate::output::is_gguf);
        if cx.cli.allocate.is_none() && !cx.cli.global && onnx_out {
            // layers of their own widths do not yet survive the ONNX writer (the file reads
            // back as corrupt: a MatMul's batch axes disagree): ONNX inputs keep them alike
            // unless --allocate asks otherwise or the output is GGUF
            options.allocate = prunec_passes::prune::Allocate::Uniform;
        }
        if onnx_out && options.allocate != prunec_passes::prune::Allocate::Uniform && cx.cli.output.is_some() {
            bail!("an ONNX model pruned to layers of their own widths cannot be written as ONNX yet: use --allocate uniform");
        }
        let steps = cx.cli.prune_steps.max(1);
        if cx.pipeline[cx.index..].contains(&PassName::Reconstruct) {
            cx.unpruned = Some(model.clone());
        }
        let flap = options.allocate == prunec_passes::prune::Allocate::Flap;
        let scores = if flap { crate::activations::fluctuation_scores(cx.cli, model, cx.model_path)? } else { scores };
        let reports = prunec_passes::prune::prune_in_steps(
            model,
            scores,
            &options,
            steps,
            |m| {
                if flap {
                    crate::activations::fluctuation_scores(cx.cli, m, cx.model_path)
                } else {
                    Ok::<_, anyhow::Error>(cx.score(m)?.0)
                }
            },
            |k, n, r| {
                if n > 1 {
                    eprintln!("prune step {k}/{n}: {} parameters left", r.params_after);
                }
            },
        )?;
        if let Some(last) = reports.last() {
            cx.report.widths = last
                .groups
                .iter()
                .map(|(kind, block, before, after)| {
                    serde_json::json!({ "layer": block, "kind": kind.name(), "units_before": before, "units_after": after })
                })
                .collect();
        }
        Ok(match reports.as_slice() {
            [one] => one.summary(),
            all => all.iter().enumerate().map(|(k, r)| format!("step {}/{steps}: {}", k + 1, r.summary())).collect(),
        })
    }
}

/// `reconstruct`: the linear ops reading pruned units updated to match their unpruned outputs.
struct ReconstructPass;

impl<'a> Pass<RunState<'a>, anyhow::Error> for ReconstructPass {
    fn name(&self) -> PassName {
        PassName::Reconstruct
    }

    fn run(&mut self, model: &mut Model, cx: &mut RunState<'a>) -> Result<String> {
        let original = cx.unpruned.take().context("it needs the model before pruning: put `prune` before it")?;
        let (summary, record) = crate::activations::reconstruct(cx.cli, &original, model, cx.model_path)?;
        cx.report.reconstruction = Some(record);
        Ok(summary)
    }
}

/// `recover`: LoRA fine-tuning of the adapters `lora` inserted.
struct RecoverPass;

impl<'a> Pass<RunState<'a>, anyhow::Error> for RecoverPass {
    fn name(&self) -> PassName {
        PassName::Recover
    }

    fn run(&mut self, model: &mut Model, cx: &mut RunState<'a>) -> Result<String> {
        let (summary, training) = crate::recover::run(cx.cli, model, cx.model_path)?;
        cx.report.training = Some(training);
        Ok(summary)
    }
}

/// `eval`: perplexity on `--eval-text`, zero-shot accuracy on `--tasks`.
struct EvalPass;

impl<'a> Pass<RunState<'a>, anyhow::Error> for EvalPass {
    fn name(&self) -> PassName {
        PassName::Eval
    }

    fn run(&mut self, model: &mut Model, cx: &mut RunState<'a>) -> Result<String> {
        let inputs = cx.eval_inputs.context("evaluation inputs")?;
        let before: Vec<&str> = cx.pipeline[..cx.index].iter().filter(|s| **s != PassName::Eval).map(|s| s.name()).collect();
        let label = if before.is_empty() { "original".to_string() } else { before.join(",") };
        let streamed = cx.memory.streams(model, Work::Forward);
        cx.record.mode = Some(cx.memory.mode_name(model, Work::Forward));
        let group_tokens = if streamed {
            Some(cx.memory.tokens_at_once(prunec_backends::runtime::crossing_bytes_per_token(model)?))
        } else {
            None
        };
        let (evaluation, summary) = evaluate::run(&cx.cli.eval, cx.cli.device, model, inputs, label, group_tokens)?;
        cx.record.perplexity = evaluation.texts.first().map(|t| (t.perplexity, t.file.clone(), t.seq_len));
        cx.record.evaluation = Some(evaluation);
        Ok(summary)
    }
}
