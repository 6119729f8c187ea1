//! How much memory a run may use, and whether work holds the whole model (resident) or streams
//! it layer by layer: `--max-memory SIZE` sets the budget (default: 80% of the memory the
//! kernel says is available when the run starts), `--resident` forces the resident path.
//! A pass streams when the resident path's estimate exceeds the budget.

use anyhow::{bail, Result};
use prunec_ir::Model;

/// Bytes per parameter the resident path holds: the weights as f32 tensors, plus, when
/// calibrating, their gradients in the backend and as host copies (and the Fisher diagonal).
const RESIDENT_WEIGHTS: u64 = 4;
const RESIDENT_GRADIENTS: u64 = 8;
const RESIDENT_FISHER: u64 = 4;
/// What the resident path holds besides the parameters: a quarter more for the activations of
/// a batch and the allocator's slack, and the process itself (measured on SmolLM2-135M: 650 MiB
/// to evaluate 480 MB of f32 weights, 1.9 GiB to calibrate 1.6 GB of weights and gradients).
const RESIDENT_SLACK_QUARTERS: u64 = 5;
const RESIDENT_BASE: u64 = 256 << 20;

/// Parses a size: a number with an optional unit `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (the `i` units and the bare letters are powers of 1024,
/// `KB`/`MB`/`GB`/`TB` powers of 1000), case-insensitive.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{s}` is not a size (like 8GiB, 512MiB, 4GB)"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "tib" => 1024.0f64.powi(4),
        "tb" => 1e12,
        other => return Err(format!("`{other}` is not a size unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")),
    };
    let bytes = value * factor;
    if !bytes.is_finite() || !(1.0..=1e18).contains(&bytes) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(bytes as u64)
}

/// The run's memory budget and what it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The budget, in bytes.
    pub budget: u64,
    /// Whether the budget was given (`--max-memory`) rather than taken from the machine.
    pub given: bool,
    /// `--resident`: never stream.
    pub resident: bool,
}

/// What a pass does with the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Forward passes only (evaluation).
    Forward,
    /// Forward and backward passes (calibration), with or without the Fisher diagonal.
    Calibrate {
        /// Whether the Fisher diagonal is accumulated too.
        fisher: bool,
    },
}

impl MemoryPlan {
    /// The plan of the command line: `max_memory` as given, else 80% of what is available.
    pub fn new(max_memory: Option<u64>, resident: bool) -> Result<MemoryPlan> {
        if resident && max_memory.is_some() {
            bail!("--resident holds the whole model whatever the budget: it does not go with --max-memory");
        }
        Ok(match max_memory {
            Some(budget) => MemoryPlan { budget, given: true, resident },
            None => {
                let budget = crate::safety::available_memory().map_or(8 << 30, |a| (a / 5 * 4).min(u128::from(u64::MAX)) as u64);
                MemoryPlan { budget, given: false, resident }
            }
        })
    }

    /// What the resident path would hold for `work` on `model`, in bytes.
    pub fn resident_estimate(model: &Model, work: Work) -> u64 {
        let params = model.params.numel() as u64;
        let per_param = match work {
            Work::Forward => RESIDENT_WEIGHTS,
            Work::Calibrate { fisher } => RESIDENT_WEIGHTS + RESIDENT_GRADIENTS + if fisher { RESIDENT_FISHER } else { 0 },
        };
        params * per_param * RESIDENT_SLACK_QUARTERS / 4 + RESIDENT_BASE
    }

    /// Whether `work` on `model` streams layer by layer.
    pub fn streams(&self, model: &Model, work: Work) -> bool {
        !self.resident && Self::resident_estimate(model, work) > self.budget
    }

    /// The mode's name, for reports: `resident` or `streamed`.
    pub fn mode_name(&self, model: &Model, work: Work) -> &'static str {
        if self.streams(model, work) {
            "streamed"
        } else {
            "resident"
        }
    }

    /// Tokens a streamed pass may run at once: a quarter of the budget for activations of
    /// `bytes_per_token` each (at least one token).
    pub fn tokens_at_once(&self, bytes_per_token: usize) -> usize {
        let quarter = (self.budget / 4) as usize;
        (quarter / bytes_per_token.max(1)).max(1)
    }

    /// Samples per micro-batch of a streamed calibration over `samples` rows of at most `longest`
    /// tokens, whose largest layer has `layer_params` parameters and whose autodiff graph holds
    /// `bytes_per_token` per token; and the peak it plans. A layer holds its f32 weights and its
    /// gradient accumulators, plus, from the second micro-batch on, that micro-batch's own
    /// gradients: one micro-batch saves a layer's worth of memory, more micro-batches save
    /// activations. The largest micro-batch that fits the budget; when none does, the plan of
    /// the lower peak.
    pub fn micro_batch(&self, layer_params: usize, bytes_per_token: usize, longest: usize, samples: usize) -> (usize, u64) {
        let layer = 4 * layer_params as u64;
        let row = (bytes_per_token * longest) as u64;
        let n = samples.max(1);
        let peak = |s: usize| if s >= n { 2 * layer } else { 3 * layer } + row * s as u64;
        let s = if peak(n) <= self.budget {
            n
        } else {
            (1..n).rev().find(|&s| peak(s) <= self.budget).unwrap_or(if peak(n) <= peak(1) { n } else { 1 })
        };
        (s, peak(s))
    }

    /// The report's `memory` object.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "budget_bytes": self.budget,
            "budget": crate::safety::human_bytes(u128::from(self.budget)),
            "budget_given": self.given,
            "resident_forced": self.resident,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert_eq!(parse_size("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("eight").is_err());
        assert!(parse_size("8XB").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1G").is_err());
    }

    #[test]
    fn micro_batches_follow_the_budget_and_the_layer() {
        let plan = |budget: u64| MemoryPlan { budget, given: true, resident: false };
        // 10 rows of 64 tokens at 1 KiB a token: 640 KiB of activations; a layer of 1 Mi params
        let (layer, per_token, longest, n) = (1 << 20, 1024, 64, 10);
        // everything fits: one micro-batch, two copies of the layer
        assert_eq!(plan(1 << 30).micro_batch(layer, per_token, longest, n), (10, (8 << 20) + 640 * 1024));
        // rows of 4 MiB: not two copies of the layer and all rows (48 MiB), but three copies
        // and 4 rows (28 MiB; 5 rows would be 32)
        assert_eq!(plan(30 << 20).micro_batch(layer, 64 << 10, longest, n), (4, 28 << 20));
        // nothing fits: the lower peak; here the layer dominates, so one micro-batch
        assert_eq!(plan(1 << 20).micro_batch(layer, per_token, longest, n).0, 10);
        // activations dominate: single rows
        assert_eq!(plan(1 << 20).micro_batch(1, per_token * 1000, longest, n).0, 1);
    }
}
