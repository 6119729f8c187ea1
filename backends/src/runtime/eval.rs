//! Perplexity as LLM-Pruner's evaluator computes it: non-overlapping windows of `seq_len`
//! tokens (the last partial window dropped), each scored on its own (positions `1..L` predicted
//! from `0..L−1`), `exp` of the mean NLL over every predicted token, summed in f64.

use burn::prelude::{Int, Tensor, TensorData};
use prunec_ir::Model;

use super::exec::{row_nll, Executor};
use super::fused::Fused;
use crate::{BackendError, Result};

/// What a perplexity run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    /// `exp(mean_nll)`.
    pub perplexity: f64,
    /// Mean negative log-likelihood per predicted token.
    pub mean_nll: f64,
    /// Tokens of the text.
    pub tokens: usize,
    /// Windows scored.
    pub windows: usize,
    /// Tokens predicted (`windows × (seq_len − 1)`).
    pub predicted: usize,
}

/// Perplexity of `model` on `tokens`, in windows of `seq_len`, `batch` windows per forward.
/// `progress(done, total)` is called after each batch.
pub fn perplexity<B: Fused>(
    model: &Model,
    device: &B::Device,
    tokens: &[u32],
    seq_len: usize,
    batch: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    check_windows(tokens, seq_len)?;
    let exec = Executor::<B>::for_inference(model, device)?;
    perplexity_of(&exec, tokens, seq_len, batch, progress)
}

fn check_windows(tokens: &[u32], seq_len: usize) -> Result<()> {
    if seq_len < 2 {
        return Err(BackendError::Lowering(format!("windows of {seq_len} tokens: a window needs at least 2")));
    }
    if tokens.len() < seq_len {
        return Err(BackendError::Lowering(format!(
            "the text has {} tokens, fewer than one window of {seq_len}",
            tokens.len()
        )));
    }
    Ok(())
}

/// [`perplexity`] with a model already prepared (during training, for instance).
pub fn perplexity_of<B: Fused>(
    exec: &Executor<B>,
    tokens: &[u32],
    seq_len: usize,
    batch: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    check_windows(tokens, seq_len)?;
    let windows: Vec<Vec<u32>> = tokens.chunks_exact(seq_len).map(<[u32]>::to_vec).collect();
    let mut nll = 0.0f64;
    let total = windows.len();
    let mut done = 0;
    for chunk in windows.chunks(batch.max(1)) {
        let ids = exec.ids(chunk)?;
        let rows = row_nll(exec.forward(ids.clone())?, ids.clone());
        let values = rows.into_data().convert::<f32>().into_vec::<f32>().map_err(|e| BackendError::Lowering(format!("{e:?}")))?;
        let sum = values.iter().map(|&v| f64::from(v)).sum::<f64>();
        exec.ensure_finite(sum, ids, || format!("the loss of perplexity windows {done}..{} (of {total})", done + chunk.len()))?;
        nll += sum;
        done += chunk.len();
        progress(done, total);
    }
    Perplexity::of(nll, tokens.len(), total, seq_len)
}

impl Perplexity {
    /// The perplexity of a summed NLL `nll` over `windows` windows of `seq_len` of `tokens`
    /// tokens; an error when it is not finite.
    fn of(nll: f64, tokens: usize, windows: usize, seq_len: usize) -> Result<Perplexity> {
        let predicted = windows * (seq_len - 1);
        let mean_nll = nll / predicted as f64;
        let perplexity = mean_nll.exp();
        if !perplexity.is_finite() {
            return Err(BackendError::NonFinite { what: format!("the perplexity (exp of the mean NLL {mean_nll})"), value: perplexity, at: String::new() });
        }
        Ok(Perplexity { perplexity, mean_nll, tokens, windows, predicted })
    }
}

/// [`perplexity`] layer by layer (for models larger than memory): the windows run in groups of
/// at most `group_tokens` tokens, each segment's parameters read once per group, in the same
/// batches of `batch` windows as the resident path (so the same values). `progress(done,
/// total)` follows the windows.
pub fn perplexity_streamed<B: Fused>(
    model: &Model,
    device: &B::Device,
    tokens: &[u32],
    seq_len: usize,
    batch: usize,
    group_tokens: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    check_windows(tokens, seq_len)?;
    let windows: Vec<Vec<u32>> = tokens.chunks_exact(seq_len).map(<[u32]>::to_vec).collect();
    let batches: Vec<Vec<Vec<u32>>> = windows.chunks(batch.max(1)).map(<[Vec<u32>]>::to_vec).collect();
    let total = windows.len();
    let mut nll = 0.0f64;
    let mut done = 0;
    for group in super::stream::token_groups(&batches, group_tokens, |b| b.len() * seq_len) {
        super::stream::forward_streamed::<B>(
            model,
            device,
            group,
            |_, rows, logits| {
                let ids = Tensor::<B, 2, Int>::from_data(
                    TensorData::new(rows.iter().flatten().map(|&t| i64::from(t)).collect::<Vec<_>>(), [rows.len(), seq_len]),
                    device,
                );
                let values = row_nll(logits, ids).into_data().convert::<f32>().into_vec::<f32>();
                let values = values.map_err(|e| BackendError::Lowering(format!("{e:?}")))?;
                let sum = values.iter().map(|&v| f64::from(v)).sum::<f64>();
                if !sum.is_finite() {
                    let what = format!("the loss of perplexity windows {done}..{} (of {total})", done + rows.len());
                    let at = String::from("; the model ran layer by layer: run with --resident to find the first node whose output is not");
                    return Err(BackendError::NonFinite { what, value: sum, at });
                }
                nll += sum;
                done += rows.len();
                Ok(())
            },
            |_| {},
        )?;
        progress(done, total);
    }
    Perplexity::of(nll, tokens.len(), total, seq_len)
}
