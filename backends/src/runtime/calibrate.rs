//! Calibration: the causal-LM loss on a few samples, its gradient for every parameter (or for
//! those [wanted](CalibrationOptions::wanted)), and the per-sample squared gradients whose mean
//! approximates the Hessian diagonal (Fisher).
//!
//! Memory: besides the model and the autodiff graph of one micro-batch, it holds one f32
//! copy of the parameters per statistic asked for (the gradient; the Fisher diagonal).

use std::collections::BTreeMap;

use prunec_ir::{CalibrationStats, Model};

use super::collective::Peer;
use super::exec::{causal_lm_loss, Executor};
use super::fused::FusedAutodiff;
use super::tensor::DynTensor;
use crate::{BackendError, Result};

/// How to calibrate.
#[derive(Debug, Clone)]
pub struct CalibrationOptions {
    /// Also accumulate the Fisher diagonal (needs one backward pass per sample).
    pub fisher: bool,
    /// Samples per forward/backward pass when the Fisher diagonal is not asked for.
    pub micro_batch: usize,
    /// The parameters whose statistics are wanted (`None`: every parameter). The others stay
    /// constants: the backward pass computes no gradient for them, and none for the layers
    /// below the lowest wanted one.
    pub wanted: Option<Vec<String>>,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        CalibrationOptions { fisher: false, micro_batch: 4, wanted: None }
    }
}

fn add_scaled(acc: &mut Vec<f32>, g: &[f32], scale: f32, square: bool) {
    if acc.is_empty() {
        acc.resize(g.len(), 0.0);
    }
    for (a, &x) in acc.iter_mut().zip(g) {
        *a += if square { x * x * scale } else { x * scale };
    }
}

/// Measures the calibration statistics of `model` on `samples` (token ids, each at least 2
/// long). `progress(samples_done, samples)` is called after each forward/backward pass.
pub fn calibrate<B: FusedAutodiff>(
    model: &Model,
    device: &B::Device,
    samples: &[Vec<u32>],
    options: CalibrationOptions,
    progress: impl FnMut(usize, usize),
) -> Result<CalibrationStats> {
    calibrate_on::<B>(model, &mut Peer::alone(device.clone()), samples, options, progress)
}

/// [`calibrate`] as one of several peers: every peer is given all `samples` and runs the
/// micro-batches it [owns](Peer::owns); the token-weighted gradient sums, the Fisher sums and
/// the loss are summed over the peers, so every peer returns the statistics of all samples.
/// `progress` counts this peer's samples.
pub fn calibrate_on<B: FusedAutodiff>(
    model: &Model,
    peer: &mut Peer<B::InnerBackend>,
    samples: &[Vec<u32>],
    options: CalibrationOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<CalibrationStats> {
    if samples.is_empty() || samples.iter().any(|s| s.len() < 2) {
        return Err(BackendError::Lowering("calibration needs samples of at least 2 tokens".into()));
    }
    let mut exec = Executor::<B>::new(model, peer.device())?;
    match &options.wanted {
        Some(names) => exec.require_grad_of(names)?,
        None => exec.require_grad(),
    }
    let total_tokens: usize = samples.iter().map(|s| s.len() - 1).sum();
    // batches of equal-length samples; one sample per batch when per-sample gradients are needed
    let per_batch = if options.fisher { 1 } else { options.micro_batch.max(1) };
    let mut batches: Vec<Vec<Vec<u32>>> = Vec::new();
    for s in samples {
        match batches.last_mut() {
            Some(b) if b.len() < per_batch && b[0].len() == s.len() => b.push(s.clone()),
            _ => batches.push(vec![s.clone()]),
        }
    }
    let mut grad: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut fisher: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut loss_sum = 0.0f64;
    let mut done = 0;
    // this peer's micro-batches (all of them when it is alone)
    let owned: Vec<&Vec<Vec<u32>>> = batches.iter().enumerate().filter(|(i, _)| peer.owns(*i)).map(|(_, b)| b).collect();
    let mine: usize = owned.iter().map(|b| b.len()).sum();
    for batch in owned {
        let ids = exec.ids(batch)?;
        let loss = causal_lm_loss(exec.forward(ids.clone())?, ids.clone());
        let tokens = batch.len() * (batch[0].len() - 1);
        let value = loss.clone().into_data().convert::<f32>().into_vec::<f32>().map_err(|e| BackendError::Lowering(format!("{e:?}")))?;
        let value = f64::from(value.first().copied().unwrap_or(f32::NAN));
        exec.ensure_finite(value, ids, || format!("the calibration loss of samples {done}..{} (of {mine})", done + batch.len()))?;
        loss_sum += value * tokens as f64;
        let mut grads = loss.backward();
        // the batch gradient is the token-weighted mean of the micro-batch gradients
        let weight = tokens as f32 / total_tokens as f32;
        for (name, t) in exec.params() {
            // taken out of `grads`, so that reading a gradient that is already contiguous copies nothing
            let Some(g) = t.take_grad(&mut grads).map(DynTensor::into_f32).transpose()? else { continue };
            if options.fisher {
                add_scaled(fisher.entry(name.clone()).or_default(), &g, 1.0 / samples.len() as f32, true);
            }
            match grad.entry(name.clone()).or_default() {
                // one pass over every sample: the gradient as it is (0 + x·1 is x)
                acc if acc.is_empty() && weight == 1.0 => *acc = g,
                acc => add_scaled(acc, &g, weight, false),
            }
        }
        done += batch.len();
        progress(done, mine);
    }
    if peer.peers() > 1 {
        let mut names: Vec<&String> = exec.params().keys().collect();
        names.sort();
        let numel = |i: usize| exec.params()[names[i]].dims().iter().product::<usize>();
        for (stat, wanted) in [(&mut grad, true), (&mut fisher, options.fisher)] {
            if !wanted {
                continue;
            }
            let mut slots: Vec<Option<Vec<f32>>> = names.iter().map(|n| stat.remove(*n)).collect();
            peer.sum_optional(&mut slots, numel)?;
            stat.extend(names.iter().zip(slots).filter_map(|(n, s)| s.map(|s| ((*n).clone(), s))));
        }
        let mut loss = [loss_sum];
        peer.sum(&mut loss)?;
        loss_sum = loss[0];
    }
    Ok(CalibrationStats {
        samples: samples.len(),
        tokens: total_tokens,
        loss: loss_sum / total_tokens as f64,
        grad,
        fisher: options.fisher.then_some(fisher),
    })
}
