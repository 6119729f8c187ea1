//! Calibration statistics: what the backend measures on calibration samples and the `score`
//! pass reads, as plain data (so that passes never depend on a tensor library).

use std::collections::BTreeMap;

/// Gradients of the causal-LM loss on calibration samples, per parameter, row-major.
#[derive(Debug, Clone, Default)]
pub struct CalibrationStats {
    /// Samples used.
    pub samples: usize,
    /// Tokens predicted over all samples.
    pub tokens: usize,
    /// Mean loss (NLL per predicted token) over all samples.
    pub loss: f64,
    /// ∂L/∂W of the mean loss over all predicted tokens (the batch gradient LLM-Pruner's
    /// first-order and vector-wise estimators read).
    pub grad: BTreeMap<String, Vec<f32>>,
    /// The mean over samples of each sample's squared gradient, `(1/N) Σ_j (∂L_j/∂W)²`: the
    /// Fisher approximation of the Hessian diagonal (LLM-Pruner's `acc_grad`). Present when
    /// asked for.
    pub fisher: Option<BTreeMap<String, Vec<f32>>>,
}
