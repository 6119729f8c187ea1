//! The pass manager: every pass's name in one list ([`PassName`]), one trait every pass
//! implements ([`Pass`]), and the one function that runs a pass and then the IR verifier
//! ([`run_pass`]).
//!
//! The IR's own passes ([`Group`], [`Lora`], [`Merge`]) live here and need nothing but the
//! model. The passes that need a backend or data (`score`, `prune`, `recover`, `eval`) are
//! implemented by the program that embeds the passes (prunec's driver does) against the same
//! trait, with a context `C` that they share (scores from `score` for `prune`, a report).
//! To add a pass: a variant of [`PassName`] (its name and line of help), a type implementing
//! [`Pass`], and its construction where the embedding program builds its pipeline.

use std::time::{Duration, Instant};

use prunec_ir::Model;

use crate::lora::{self, LoraOptions};
use crate::{group, PassError, Result};

/// Every pass, in the order a full pipeline runs them: the one list of pass names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassName {
    /// Finds the dependency groups (an analysis: it only attaches a side table).
    Group,
    /// The importance of every unit (calibrating first when the estimator needs gradients).
    Score,
    /// Removes the lowest-scoring units (the selection policy is [`crate::prune::PruneOptions`]).
    Prune,
    /// Updates the linear ops that read pruned units so that each matches its unpruned output
    /// on calibration activations ([`crate::reconstruct`]).
    Reconstruct,
    /// Inserts low-rank adapters beside the chosen linear ops ([`lora::add_adapters`]).
    Lora,
    /// Fine-tunes the adapters `lora` inserted.
    Recover,
    /// Folds the adapters into their base weights and removes them ([`lora::merge`]).
    Merge,
    /// Perplexity and zero-shot accuracy: a row of the results table.
    Eval,
}

impl PassName {
    /// Every pass, in pipeline order.
    pub const ALL: [PassName; 8] = [
        PassName::Group,
        PassName::Score,
        PassName::Prune,
        PassName::Reconstruct,
        PassName::Lora,
        PassName::Recover,
        PassName::Merge,
        PassName::Eval,
    ];

    /// The pass's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PassName::Group => "group",
            PassName::Score => "score",
            PassName::Prune => "prune",
            PassName::Reconstruct => "reconstruct",
            PassName::Lora => "lora",
            PassName::Recover => "recover",
            PassName::Merge => "merge",
            PassName::Eval => "eval",
        }
    }

    /// Every name, in pipeline order.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|p| p.name()).collect()
    }

    /// The pass called `name`; an unknown name is refused with the list of valid ones.
    pub fn from_name(name: &str) -> Result<PassName> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| PassError::UnknownPass { name: name.to_string(), valid: Self::names() })
    }
}

impl std::fmt::Display for PassName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a comma-separated pipeline (`group,score,prune`); a pass may appear twice.
pub fn parse_pipeline(spec: &str) -> Result<Vec<PassName>> {
    spec.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PassName::from_name).collect()
}

/// A pass: which one it is, and what it does to a model. `C` is what the passes of one run
/// share (the IR's own passes need nothing and work with any `C`); `E` is the error type of
/// the program that runs them, which [`PassError`] converts into.
pub trait Pass<C: ?Sized = (), E = PassError> {
    /// Which pass this is.
    fn name(&self) -> PassName;

    /// Runs the pass on `model`; returns a readable summary of what it found or changed. Run
    /// passes through [`run_pass`], which verifies the IR after.
    fn run(&mut self, model: &mut Model, cx: &mut C) -> std::result::Result<String, E>;
}

/// What a pass did, for people and reports.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    /// The pass.
    pub name: PassName,
    /// A readable summary of what it found or changed.
    pub summary: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs `pass` on `model`, then the IR verifier: every pass leaves a valid IR, whatever it
/// changed (structure, or only parameters as `recover` does).
pub fn run_pass<C: ?Sized, E: From<PassError>>(
    pass: &mut dyn Pass<C, E>,
    model: &mut Model,
    cx: &mut C,
) -> std::result::Result<PassOutcome, E> {
    let start = Instant::now();
    let summary = pass.run(model, cx)?;
    let name = pass.name();
    prunec_ir::verify(model).map_err(|error| PassError::Invalid { pass: name.name(), error })?;
    Ok(PassOutcome { name, summary, elapsed: start.elapsed() })
}

/// `group`: the dependency groups ([`group::find_groups`]), attached to the model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Group;

impl<C: ?Sized, E: From<PassError>> Pass<C, E> for Group {
    fn name(&self) -> PassName {
        PassName::Group
    }

    fn run(&mut self, model: &mut Model, _: &mut C) -> std::result::Result<String, E> {
        lora::refuse_adapters(model, "group")?;
        let groups = group::find_groups(model)?;
        let s = group::summarize(&groups);
        model.groups = Some(groups);
        Ok(s)
    }
}

/// `lora`: low-rank adapters beside the chosen linear ops.
#[derive(Debug, Clone, Default)]
pub struct Lora(pub LoraOptions);

impl<C: ?Sized, E: From<PassError>> Pass<C, E> for Lora {
    fn name(&self) -> PassName {
        PassName::Lora
    }

    fn run(&mut self, model: &mut Model, _: &mut C) -> std::result::Result<String, E> {
        Ok(lora::add_adapters(model, &self.0)?.summary())
    }
}

/// `merge`: the adapters folded into their base weights.
#[derive(Debug, Clone, Copy, Default)]
pub struct Merge;

impl<C: ?Sized, E: From<PassError>> Pass<C, E> for Merge {
    fn name(&self) -> PassName {
        PassName::Merge
    }

    fn run(&mut self, model: &mut Model, _: &mut C) -> std::result::Result<String, E> {
        Ok(lora::merge(model)?.summary())
    }
}

/// Runs `group` on `model` (with the verifier): what every caller that needs the dependency
/// groups before scoring or pruning does.
pub fn run_group(model: &mut Model) -> Result<PassOutcome> {
    run_pass(&mut Group, model, &mut ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_pass_lists_valid_ones() {
        let e = parse_pipeline("group,frobnicate").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown pass `frobnicate`; valid passes: group, score, prune, reconstruct, lora, recover, merge, eval"
        );
    }

    #[test]
    fn pipeline_keeps_order_and_repeats() {
        assert_eq!(parse_pipeline("group, group").unwrap(), vec![PassName::Group, PassName::Group]);
    }

    #[test]
    fn every_name_parses_back() {
        for p in PassName::ALL {
            assert_eq!(PassName::from_name(p.name()).unwrap(), p);
        }
    }

    /// A pass that breaks the IR is stopped by the verifier, whatever it is.
    #[test]
    fn the_verifier_runs_after_every_pass() {
        struct Breaks;
        impl Pass for Breaks {
            fn name(&self) -> PassName {
                PassName::Recover
            }
            fn run(&mut self, model: &mut Model, _: &mut ()) -> Result<String> {
                // a parameter that no node uses
                model.params.insert("stray", prunec_ir::Param::owned(vec![1], vec![0.0])?);
                Ok(String::new())
            }
        }
        let mut model = Model::default();
        run_group(&mut model).expect("an empty model is valid");
        let e = run_pass(&mut Breaks, &mut model, &mut ()).unwrap_err();
        assert!(e.to_string().starts_with("the IR after pass `recover` is invalid"), "{e}");
    }
}
