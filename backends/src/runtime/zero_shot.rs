//! Log-likelihoods of continuations, as lm-evaluation-harness (v0.4.2,
//! `HFLM._loglikelihood_tokens`) computes them for multiple-choice tasks: the model reads
//! `(context + continuation)[-(max_length + 1):][:-1]`, and the log-probabilities of the
//! continuation's tokens at the last positions are summed. Requests are grouped longest first into
//! batches, each row padded on the right (a causal model's earlier positions never see the padding).

use burn::prelude::{Int, Tensor, TensorData};
use burn::tensor::activation;
use prunec_ir::Model;

use super::exec::Executor;
use super::fused::Fused;
use crate::{BackendError, Result};

/// One request: the context's tokens and the continuation's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Tokens before (at least one).
    pub context: Vec<u32>,
    /// Tokens scored (at least one).
    pub continuation: Vec<u32>,
}

/// Requests ready to run: each one's model input, how many of its last positions are scored and
/// the tokens they predict; and the order they run in (longest first).
struct Prepared {
    inputs: Vec<(Vec<u32>, usize, Vec<u32>)>,
    order: Vec<usize>,
}

impl Prepared {
    fn new(requests: &[TokenRequest], max_length: usize) -> Result<Prepared> {
        if max_length == 0 {
            return Err(BackendError::Lowering("the longest input must be at least one token".into()));
        }
        // the model's input and how many of its last positions predict the continuation
        let mut inputs = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter().enumerate() {
            if r.context.is_empty() || r.continuation.is_empty() {
                return Err(BackendError::Lowering(format!(
                    "request {i}: the context and the continuation need at least one token each"
                )));
            }
            let whole: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
            let start = whole.len().saturating_sub(max_length + 1);
            let input = whole[start..whole.len() - 1].to_vec();
            let scored = r.continuation.len().min(input.len());
            inputs.push((input, scored, r.continuation[r.continuation.len() - scored..].to_vec()));
        }
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].0.len()));
        Ok(Prepared { inputs, order })
    }

    /// The batches: request indices and their inputs padded on the right to one width.
    fn batches(&self, batch: usize) -> Vec<(Vec<usize>, Vec<Vec<u32>>)> {
        self.order
            .chunks(batch.max(1))
            .map(|chunk| {
                let width = chunk.iter().map(|&i| self.inputs[i].0.len()).max().unwrap_or(0);
                let rows = chunk
                    .iter()
                    .map(|&i| {
                        let mut row = self.inputs[i].0.clone();
                        row.resize(width, 0);
                        row
                    })
                    .collect();
                (chunk.to_vec(), rows)
            })
            .collect()
    }

    /// Scores the requests `chunk` from their batch's `logits`, into `out`.
    fn score<B: Fused>(&self, chunk: &[usize], logits: Tensor<B, 3>, device: &B::Device, out: &mut [f64]) -> Result<()> {
        let vocab = logits.dims()[2];
        for (k, &i) in chunk.iter().enumerate() {
            let (input, scored, targets) = &self.inputs[i];
            let positions = logits.clone().narrow(0, k, 1).narrow(1, input.len() - scored, *scored);
            let logp = activation::log_softmax(positions.reshape([*scored, vocab]), 1);
            // the last target is not in the input, so `Executor::ids` has not seen it
            if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
                return Err(BackendError::TokenOutOfRange { id: i64::from(t), vocab, at: format!(" (the continuation of request {i})") });
            }
            let ids: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
            let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [*scored, 1]), device);
            let picked = logp.gather(1, ids).into_data().convert::<f32>().into_vec::<f32>();
            let picked = picked.map_err(|e| BackendError::Lowering(format!("{e:?}")))?;
            out[i] = picked.iter().map(|&v| f64::from(v)).sum();
        }
        Ok(())
    }
}

/// The summed log-probability of each request's continuation given its context, in the order
/// of `requests`; `batch` rows per forward pass; inputs longer than `max_length` lose their
/// first tokens (the harness's left truncation). `progress(done, total)` follows the requests.
pub fn loglikelihoods<B: Fused>(
    model: &Model,
    device: &B::Device,
    requests: &[TokenRequest],
    batch: usize,
    max_length: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let prepared = Prepared::new(requests, max_length)?;
    let exec = Executor::<B>::for_inference(model, device)?;
    let mut out = vec![0.0f64; requests.len()];
    let mut done = 0;
    for (chunk, rows) in prepared.batches(batch) {
        let logits = exec.forward(exec.ids(&rows)?)?;
        prepared.score(&chunk, logits, device, &mut out)?;
        for (k, &i) in chunk.iter().enumerate() {
            if !out[i].is_finite() {
                exec.ensure_finite(out[i], exec.ids(&rows[k..=k])?, || format!("the log-likelihood of request {i}"))?;
            }
        }
        done += chunk.len();
        progress(done, requests.len());
    }
    Ok(out)
}

/// [`loglikelihoods`] layer by layer (for models larger than memory): the batches run in groups
/// of at most `group_tokens` input tokens, each segment's parameters read once per group; the
/// same batches as the resident path, so the same values. `progress(done, total)` follows the
/// requests.
pub fn loglikelihoods_streamed<B: Fused>(
    model: &Model,
    device: &B::Device,
    requests: &[TokenRequest],
    batch: usize,
    max_length: usize,
    group_tokens: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let prepared = Prepared::new(requests, max_length)?;
    let batches = prepared.batches(batch);
    let mut out = vec![0.0f64; requests.len()];
    let mut done = 0;
    for group in super::stream::token_groups(&batches, group_tokens, |(_, rows)| rows.iter().map(Vec::len).sum()) {
        let rows: Vec<Vec<Vec<u32>>> = group.iter().map(|(_, rows)| rows.clone()).collect();
        super::stream::forward_streamed::<B>(model, device, &rows, |m, _, logits| prepared.score(&group[m].0, logits, device, &mut out), |_| {})?;
        if let Some(&i) = group.iter().flat_map(|(chunk, _)| chunk).find(|&&i| !out[i].is_finite()) {
            let at = String::from("; the model ran layer by layer: run with --resident to find the first node whose output is not");
            return Err(BackendError::NonFinite { what: format!("the log-likelihood of request {i}"), value: out[i], at });
        }
        done += group.iter().map(|(chunk, _)| chunk.len()).sum::<usize>();
        progress(done, requests.len());
    }
    Ok(out)
}
