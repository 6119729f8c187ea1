//! Calibration statistics: what the backend measures on calibration samples and the `score`
//! pass reads, as plain data (so that passes never depend on a tensor library).

use std::collections::BTreeMap;

/// Gradients of the causal-LM loss on calibration samples, per parameter, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
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

/// Moments of the values one input of a linear op takes over calibration tokens: their count,
/// their sum and the sum of their outer products (or of their squares only), accumulated in
/// f64. What FLAP's fluctuation metric and least-squares reconstruction read.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// Features per token.
    pub dim: usize,
    /// Tokens seen.
    pub tokens: usize,
    /// `Σ x`, `[dim]`.
    pub sum: Vec<f64>,
    /// `Σ x xᵀ`, `[dim, dim]` row-major when [`Moments::full`], else its diagonal `Σ x²`, `[dim]`.
    pub gram: Vec<f64>,
    /// Whether [`Moments::gram`] is the whole matrix.
    pub full: bool,
}

impl Moments {
    /// Nothing seen yet, of `dim` features; `full`: the whole second moment, else its diagonal.
    pub fn new(dim: usize, full: bool) -> Moments {
        Moments { dim, tokens: 0, sum: vec![0.0; dim], gram: vec![0.0; if full { dim * dim } else { dim }], full }
    }

    /// Adds `tokens` tokens' sum (`[dim]`) and second moment (`[dim, dim]` or `[dim]`, as
    /// [`Moments::full`]), computed in f32 over one batch.
    pub fn add(&mut self, tokens: usize, sum: &[f32], gram: &[f32]) -> Result<(), String> {
        if sum.len() != self.dim || gram.len() != self.gram.len() {
            return Err(format!("moments of {} and {} values for {} features", sum.len(), gram.len(), self.dim));
        }
        self.tokens += tokens;
        self.sum.iter_mut().zip(sum).for_each(|(a, &x)| *a += f64::from(x));
        self.gram.iter_mut().zip(gram).for_each(|(a, &x)| *a += f64::from(x));
        Ok(())
    }

    /// The mean of feature `j`.
    pub fn mean(&self, j: usize) -> f64 {
        self.sum[j] / self.tokens.max(1) as f64
    }

    /// The (population) variance of feature `j`.
    pub fn variance(&self, j: usize) -> f64 {
        let n = self.tokens.max(1) as f64;
        let sq = if self.full { self.gram[j * self.dim + j] } else { self.gram[j] };
        (sq / n - self.mean(j).powi(2)).max(0.0)
    }
}
