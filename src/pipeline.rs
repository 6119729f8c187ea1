//! The driver's pipeline: the IR passes of `prunec-passes` and the passes that need the
//! backend (`score`, `prune`, `recover`, `eval`), by name. An unknown name is refused with the list of valid ones.

use anyhow::{bail, Result};

/// One step of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A pass of the IR.
    Ir(prunec_passes::Pass),
    /// Importance of every unit (calibrating first when the estimator needs gradients).
    Score,
    /// Removal of the lowest-scoring units.
    Prune,
    /// LoRA fine-tuning of the adapters `lora` inserted.
    Recover,
    /// Perplexity on `--eval-text`, zero-shot accuracy on `--tasks`: a row of the results table.
    Eval,
}

impl Step {
    /// The step's name.
    pub fn name(self) -> &'static str {
        match self {
            Step::Ir(p) => p.name(),
            Step::Score => "score",
            Step::Prune => "prune",
            Step::Recover => "recover",
            Step::Eval => "eval",
        }
    }
}

/// Every pass name the driver knows, in pipeline order.
pub fn valid_names() -> Vec<&'static str> {
    let mut names = vec!["group", "score", "prune", "lora", "recover", "merge", "eval"];
    names.extend(prunec_passes::PASSES.iter().filter(|p| !names.contains(p)).collect::<Vec<_>>());
    names
}

/// Parses `group,eval,...`.
pub fn parse(spec: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        steps.push(match name {
            "eval" => Step::Eval,
            "score" => Step::Score,
            "prune" => Step::Prune,
            "recover" => Step::Recover,
            other => match prunec_passes::Pass::from_name(other) {
                Ok(p) => Step::Ir(p),
                Err(_) => bail!("unknown pass `{other}`; valid passes: {}", valid_names().join(", ")),
            },
        });
    }
    if steps.is_empty() {
        bail!("--pass names no pass; valid passes: {}", valid_names().join(", "));
    }
    Ok(steps)
}
