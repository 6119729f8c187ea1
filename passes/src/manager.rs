//! The pass manager: passes by name, a pipeline parsed from the command line, the verifier
//! after every pass.

use std::time::{Duration, Instant};

use prunec_ir::Model;

use crate::lora::{self, LoraOptions};
use crate::{group, PassError, Result};

/// The passes, by name, in the order a full pipeline runs them.
pub const PASSES: &[&str] = &["group", "lora", "merge"];

/// The options of the passes that take some.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassOptions {
    /// Of `lora`.
    pub lora: LoraOptions,
}

/// What a pass did, for people and reports.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    /// The pass's name.
    pub name: &'static str,
    /// A readable summary of what it found or changed.
    pub summary: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// A pass of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Finds the dependency groups (an analysis: it only attaches a side table).
    Group,
    /// Inserts low-rank adapters beside the chosen linear ops ([`lora::add_adapters`]).
    Lora,
    /// Folds the adapters into their base weights and removes them ([`lora::merge`]).
    Merge,
}

impl Pass {
    /// The pass's name.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Group => "group",
            Pass::Lora => "lora",
            Pass::Merge => "merge",
        }
    }

    /// The pass called `name`.
    pub fn from_name(name: &str) -> Result<Pass> {
        match name {
            "group" => Ok(Pass::Group),
            "lora" => Ok(Pass::Lora),
            "merge" => Ok(Pass::Merge),
            _ => Err(PassError::UnknownPass { name: name.to_string(), valid: PASSES.to_vec() }),
        }
    }

    /// Runs the pass on `model` with default options, then the verifier.
    pub fn run(self, model: &mut Model) -> Result<PassOutcome> {
        self.run_with(model, &PassOptions::default())
    }

    /// Runs the pass on `model` with `options`, then the verifier.
    pub fn run_with(self, model: &mut Model, options: &PassOptions) -> Result<PassOutcome> {
        let start = Instant::now();
        let summary = match self {
            Pass::Lora => lora::add_adapters(model, &options.lora)?.summary(),
            Pass::Merge => lora::merge(model)?.summary(),
            Pass::Group => {
                lora::refuse_adapters(model, "group")?;
                let groups = group::find_groups(model)?;
                let s = group::summarize(&groups);
                model.groups = Some(groups);
                s
            }
        };
        prunec_ir::verify(model)?;
        Ok(PassOutcome { name: self.name(), summary, elapsed: start.elapsed() })
    }
}

/// Parses a comma-separated pipeline (`group,score,prune`); a pass may appear twice.
pub fn parse_pipeline(spec: &str) -> Result<Vec<Pass>> {
    spec.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Pass::from_name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_pass_lists_valid_ones() {
        let e = parse_pipeline("group,frobnicate").unwrap_err();
        assert_eq!(e.to_string(), "unknown pass `frobnicate`; valid passes: group, lora, merge");
    }

    #[test]
    fn pipeline_keeps_order_and_repeats() {
        assert_eq!(parse_pipeline("group, group").unwrap(), vec![Pass::Group, Pass::Group]);
    }
}
