//! Guards of the interpreter: token ids are checked against the vocabulary before any gather
//! can see them (an out-of-range index would panic inside Burn), and a loss that is not finite
//! is traced to the first node whose output holds a NaN or an infinity.

use std::cell::RefCell;
use std::collections::HashMap;

use burn::prelude::{Backend, Int, Tensor};
use burn::tensor::ElementConversion;
use prunec_ir::{Dim, Op, ValueId};

use super::{Executor, Run};
use crate::runtime::fused::Fused;
use crate::runtime::tensor::DynTensor;
use crate::{BackendError, Result};

impl<B: Fused> Executor<B> {
    /// The rows of the embedding table, which token ids must stay below.
    fn embedding_rows(&self) -> Option<usize> {
        let table = self.steps.iter().find(|s| matches!(s.op, Op::Embedding))?.inputs.first()?.node;
        match &self.steps.iter().find(|s| s.id == table)?.op {
            Op::Param { name, .. } => self.params.get(name).and_then(|t| t.dims().first().copied()),
            _ => None,
        }
    }

    /// The logits' vocabulary (the last axis of the `logits` output), which target ids must
    /// stay below.
    fn logits_vocab(&self) -> Option<usize> {
        let step = self.steps.iter().find(|s| s.id == self.output.node)?;
        match step.outputs.get(usize::from(self.output.output))?.shape.dims().last()? {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }

    /// The token ids the model reads and predicts: below both the embedding's rows and the
    /// logits' vocabulary (`None` when the graph states neither).
    pub fn vocab_size(&self) -> Option<usize> {
        match (self.embedding_rows(), self.logits_vocab()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Refuses a token id at or past [`Executor::vocab_size`], naming it, its row and position.
    pub(super) fn check_ids(&self, rows: &[Vec<u32>]) -> Result<()> {
        let Some(vocab) = self.vocab_size() else { return Ok(()) };
        for (r, row) in rows.iter().enumerate() {
            if let Some(p) = row.iter().position(|&t| t as usize >= vocab) {
                return Err(BackendError::TokenOutOfRange {
                    id: i64::from(row[p]),
                    vocab,
                    at: format!(" (row {r}, position {p})"),
                });
            }
        }
        Ok(())
    }

    /// The first node, in the order the graph runs, whose output on `ids` holds a NaN or an
    /// infinity, as `node `NAME` (op)`; `None` when every value is finite.
    pub fn first_non_finite(&self, ids: Tensor<B, 2, Int>) -> Result<Option<String>> {
        let [batch, seq] = ids.dims();
        let mut run = Run { batch, seq, ids, cache: None, ropes: RefCell::new(HashMap::new()) };
        let mut values: HashMap<ValueId, DynTensor<B>> = HashMap::new();
        for (k, step) in self.steps.iter().enumerate() {
            let inputs = step
                .inputs
                .iter()
                .map(|v| values.get(v).cloned().ok_or_else(|| BackendError::Lowering(format!("value {v} used before it is computed"))))
                .collect::<Result<Vec<_>>>()?;
            for v in &step.inputs {
                if self.last_use.get(v) == Some(&k) {
                    values.remove(v);
                }
            }
            let outs = self.eval(step, inputs, &mut run)?;
            for (j, t) in outs.into_iter().enumerate() {
                if non_finite(&t) > 0 {
                    return Ok(Some(format!("node `{}` ({})", step.name, step.op.mnemonic())));
                }
                values.insert(ValueId { node: step.id, output: j as u16 }, t);
            }
        }
        Ok(None)
    }

    /// Checks that `value` (a loss or log-likelihood, `what` says which, on the token ids `ids`)
    /// is finite; otherwise an error naming the first node whose output is not.
    pub fn ensure_finite(&self, value: f64, ids: Tensor<B, 2, Int>, what: impl FnOnce() -> String) -> Result<()> {
        if value.is_finite() {
            return Ok(());
        }
        let at = match self.first_non_finite(ids) {
            Ok(Some(node)) => format!("; the first value that is not finite is the output of {node}"),
            Ok(None) => String::from("; every node's output is finite when run again, so it appeared in the loss itself"),
            Err(e) => format!("; tracing it failed: {e}"),
        };
        Err(BackendError::NonFinite { what: what(), value, at })
    }
}

/// The elements of `t` that are NaN or infinite (integers are always finite).
fn non_finite<B: Backend>(t: &DynTensor<B>) -> i64 {
    macro_rules! count {
        ($x:expr) => {
            $x.clone().is_finite().bool_not().int().sum().into_scalar().elem::<i64>()
        };
    }
    match t {
        DynTensor::F1(x) => count!(x),
        DynTensor::F2(x) => count!(x),
        DynTensor::F3(x) => count!(x),
        DynTensor::F4(x) => count!(x),
        DynTensor::F5(x) => count!(x),
        DynTensor::I1(_) | DynTensor::I2(_) => 0,
    }
}

/// Refuses indices of a gather into a table of `rows` rows that fall outside it: the last guard
/// before Burn, which would panic.
pub(super) fn check_gather<B: Backend, const D: usize>(ids: &Tensor<B, D, Int>, rows: usize) -> Result<()> {
    if ids.shape().num_elements() == 0 {
        return Ok(());
    }
    let max = ids.clone().max().into_scalar().elem::<i64>();
    let min = ids.clone().min().into_scalar().elem::<i64>();
    if min < 0 || max >= rows as i64 {
        return Err(BackendError::TokenOutOfRange { id: if min < 0 { min } else { max }, vocab: rows, at: String::new() });
    }
    Ok(())
}
