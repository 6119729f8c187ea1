//! # prunec-passes
//!
//! The passes of prunec and the pass manager that runs them by name. Analyses read the
//! model; transforms change it; the verifier runs after each pass.
//!
//! Every pass has a name in [`PassName`] (`group`, `score`, `prune`, `lora`, `recover`,
//! `merge`, `eval`) and implements [`Pass`]; [`run_pass`] runs one and the verifier after it.
//! `group` (dependency groups), `lora` (low-rank adapters) and `merge` (adapters folded back)
//! are implemented here; `score` and `prune` are the functions of [`score`] and [`prune`],
//! which a program with a backend wraps as passes (prunec's driver does). An unknown name is
//! refused with the list of valid ones.
#![warn(missing_docs)]

pub mod ablate;
pub mod group;
pub mod lora;
pub mod manager;
pub mod prune;
pub mod reconstruct;
pub mod score;

pub use group::{find_groups, summarize};
pub use lora::LoraOptions;
pub use manager::{parse_pipeline, run_group, run_pass, Group, Lora, Merge, Pass, PassName, PassOutcome};
pub use score::{score, score_in, score_with, scored_axes, Aggregation, GroupScores, Importance, Saliences, Scores};

use prunec_ir::IrError;

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// A pass name no pass answers to.
    #[error("unknown pass `{name}`; valid passes: {}", valid.join(", "))]
    UnknownPass {
        /// The name given.
        name: String,
        /// The valid names.
        valid: Vec<&'static str>,
    },
    /// The IR is inconsistent (before or after a pass).
    #[error(transparent)]
    Ir(#[from] IrError),
    /// A pass left an invalid IR (found by the verifier that runs after every pass).
    #[error("the IR after pass `{pass}` is invalid: {error}")]
    Invalid {
        /// The pass.
        pass: &'static str,
        /// What the verifier found.
        error: IrError,
    },
    /// A pass was asked for something it cannot do (missing statistics, bad option).
    #[error("{0}")]
    Config(String),
    /// The dependency analysis failed.
    #[error("group: {0}")]
    Group(String),
    /// Adding or merging LoRA adapters failed.
    #[error("lora: {0}")]
    Lora(String),
}

/// Result of the passes.
pub type Result<T, E = PassError> = std::result::Result<T, E>;
