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

/// A parameter's gradient (or any per-element statistic of it), row-major in its shape: every
/// element, or only some rows (an embedding table's gradient touches the rows of the tokens
/// seen; the others are zero).
#[derive(Debug, Clone, PartialEq)]
pub enum GradValues {
    /// Every element.
    Dense(Vec<f32>),
    /// Rows of `row_len` elements by index; rows not listed are zero.
    Rows {
        /// Elements per row (the product of every axis but the first).
        row_len: usize,
        /// Non-zero rows.
        rows: BTreeMap<usize, Vec<f32>>,
    },
}

impl GradValues {
    /// A borrowed view.
    pub fn view(&self) -> GradView<'_> {
        match self {
            GradValues::Dense(v) => GradView::Dense(v),
            GradValues::Rows { row_len, rows } => GradView::Rows { row_len: *row_len, rows },
        }
    }

    /// Number of elements stored.
    pub fn stored(&self) -> usize {
        match self {
            GradValues::Dense(v) => v.len(),
            GradValues::Rows { rows, .. } => rows.values().map(Vec::len).sum(),
        }
    }
}

/// [`GradValues`] borrowed (a resident gradient is read where it lies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GradView<'a> {
    /// Every element.
    Dense(&'a [f32]),
    /// Rows of `row_len` elements by index; rows not listed are zero.
    Rows {
        /// Elements per row.
        row_len: usize,
        /// Non-zero rows.
        rows: &'a BTreeMap<usize, Vec<f32>>,
    },
}

impl<'a> GradView<'a> {
    /// The value of element `i` (row-major).
    pub fn at(&self, i: usize) -> f32 {
        match self {
            GradView::Dense(v) => v.get(i).copied().unwrap_or(0.0),
            GradView::Rows { row_len, rows } => {
                let n = (*row_len).max(1);
                rows.get(&(i / n)).and_then(|row| row.get(i % n)).copied().unwrap_or(0.0)
            }
        }
    }

    /// The elements that may be non-zero, as `(first index, values)` runs in increasing order.
    pub fn runs(&self) -> Vec<(usize, &'a [f32])> {
        match self {
            GradView::Dense(v) => vec![(0, *v)],
            GradView::Rows { row_len, rows } => rows.iter().map(|(&r, v)| (r * row_len, v.as_slice())).collect(),
        }
    }

    /// Whether every element is stored.
    pub fn is_dense(&self) -> bool {
        matches!(self, GradView::Dense(_))
    }
}

/// What calibration measured of one parameter, as the layer-streamed runtime hands it over
/// the moment it is complete (and then drops it).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGradient {
    /// ∂L/∂W of the mean loss over every predicted token.
    pub grad: GradValues,
    /// The Fisher diagonal `(1/N) Σ_j (∂L_j/∂W)²`, when asked for.
    pub fisher: Option<GradValues>,
}
