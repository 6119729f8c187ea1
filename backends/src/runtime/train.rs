//! Training of chosen parameters (LoRA adapters) with Burn's autodiff and Burn's AdamW, as
//! LLM-Pruner's `post_training.py` runs HF's Trainer: batches of `batch_size` samples split in
//! micro-batches whose gradients accumulate, the learning rate warmed up linearly then decayed
//! (linearly or along a cosine), the loss the mean negative log-likelihood of the target
//! tokens of the whole batch (padding and prompt tokens masked out).
//!
//! Only the trainable parameters track gradients: the base weights are constants, so their
//! gradients are neither computed nor kept. Samples of one micro-batch are padded on the
//! right to its longest; attention is causal, so padding changes nothing before it.

use std::collections::HashMap;
use std::time::Instant;

use burn::optim::{AdamW, AdamWConfig, AdamWState, SimpleOptimizer};
use burn::prelude::{Tensor, TensorData};
use prunec_ir::rng::SplitMix64;
use prunec_ir::{Model, Param, ParamStore};

use super::collective::Peer;
use super::eval::{perplexity_of, Perplexity};
use super::exec::{masked_nll, Executor};
use super::fused::{Fused, FusedAutodiff};
use super::tensor::DynTensor;
use crate::{BackendError, Result};

fn err(msg: impl Into<String>) -> BackendError {
    BackendError::Lowering(msg.into())
}

/// A training sample: token ids and, per position, whether the loss predicts it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// Token ids.
    pub ids: &'a [u32],
    /// `targets[t]`: token `t` is a target (position 0 never is).
    pub targets: &'a [bool],
}

impl Sample<'_> {
    fn predicted(&self) -> usize {
        self.targets.iter().skip(1).filter(|&&t| t).count()
    }
}

/// How the learning rate decays after its warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrSchedule {
    /// Linearly to 0 at the last step (HF's default, LLM-Pruner's).
    Linear,
    /// Along half a cosine to 0 at the last step.
    Cosine,
    /// Constant after the warmup.
    Constant,
}

impl LrSchedule {
    /// The learning rate of step `step` (1-based) of `steps`, peak `lr`, after `warmup` steps
    /// of linear warmup (as HF's schedulers: step `k` uses `k − 1` completed steps).
    pub fn lr(self, lr: f64, step: usize, steps: usize, warmup: usize) -> f64 {
        let done = step.saturating_sub(1) as f64;
        if (done as usize) < warmup {
            return lr * done / warmup.max(1) as f64;
        }
        let progress = (done - warmup as f64) / (steps.saturating_sub(warmup)).max(1) as f64;
        match self {
            LrSchedule::Linear => lr * (1.0 - progress).max(0.0),
            LrSchedule::Cosine => lr * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()),
            LrSchedule::Constant => lr,
        }
    }
}

/// How to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Optimizer steps.
    pub steps: usize,
    /// Samples per optimizer step.
    pub batch_size: usize,
    /// Samples per forward/backward pass (gradients accumulate over `batch_size / micro_batch_size`).
    pub micro_batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warmup.
    pub warmup_steps: usize,
    /// Decay after the warmup.
    pub schedule: LrSchedule,
    /// AdamW's decoupled weight decay (HF's Trainer: 0).
    pub weight_decay: f32,
    /// Measure validation loss (and perplexity) every this many steps (0: at the end only).
    pub eval_every: usize,
    /// Hand the trainable parameters to [`TrainObserver::checkpoint`] every this many steps (0: never).
    pub save_every: usize,
    /// Seed of the sample order and of dropout.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: 1,
            batch_size: 128,
            micro_batch_size: 4,
            lr: 1e-4,
            warmup_steps: 0,
            schedule: LrSchedule::Linear,
            weight_decay: 0.0,
            eval_every: 0,
            save_every: 0,
            seed: 0,
        }
    }
}

/// Held-out text to measure perplexity on while training.
#[derive(Debug, Clone, Copy)]
pub struct EvalText<'a> {
    /// Its tokens.
    pub tokens: &'a [u32],
    /// Tokens per window.
    pub seq_len: usize,
    /// Windows per forward pass.
    pub batch: usize,
}

/// One point of the training curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainPoint {
    /// Optimizer steps done (0: before training).
    pub step: usize,
    /// Mean training loss (per target token) of the steps since the previous point.
    pub train_loss: Option<f64>,
    /// Loss on the validation split.
    pub val_loss: Option<f64>,
    /// Perplexity on the evaluation text; `exp(val_loss)` without one.
    pub perplexity: Option<f64>,
    /// The learning rate of the last step.
    pub lr: f64,
    /// Training tokens per second so far (padding not counted).
    pub tokens_per_s: f64,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Evaluation points, in order.
    pub curve: Vec<TrainPoint>,
    /// The loss of every step.
    pub step_losses: Vec<f64>,
    /// Training tokens seen (padding not counted).
    pub tokens: usize,
    /// Wall time of the steps (evaluation excluded).
    pub train_seconds: f64,
}

/// Hears about a training run as it goes.
pub trait TrainObserver {
    /// After each step: the step, the steps, its loss, training tokens/s so far.
    fn step(&mut self, _step: usize, _steps: usize, _loss: f64, _tokens_per_s: f64) {}
    /// After each evaluation.
    fn evaluated(&mut self, _point: &TrainPoint) {}
    /// Every `save_every` steps: the trainable parameters' current values.
    fn checkpoint(&mut self, _step: usize, _params: &ParamStore) -> Result<()> {
        Ok(())
    }
}

/// An observer that hears nothing.
impl TrainObserver for () {}

/// Trains the parameters `trainable` of `model` (the others frozen) on `train`, measuring the
/// loss on `val` and the perplexity on `eval_text` along the way; the trained values are
/// written back into `model.params`. `dropout` ops are active while training.
#[allow(clippy::too_many_arguments)]
pub fn train<A: FusedAutodiff>(
    model: &mut Model,
    device: &A::Device,
    trainable: &[String],
    train: &[Sample<'_>],
    val: &[Sample<'_>],
    eval_text: Option<EvalText<'_>>,
    opts: &TrainOptions,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome> {
    let mut peer = Peer::alone(device.clone());
    let (trained, outcome) = train_on::<A>(model, &mut peer, trainable, train, val, eval_text, opts, observer)?;
    for (name, p) in trained.iter() {
        model.params.insert(name.clone(), p.clone());
    }
    Ok(outcome)
}

/// [`train`] as one of several peers, data-parallel: every peer draws the same batches; the
/// micro-batches of each step are dealt among the peers ([`Peer::owns`]), their adapter
/// gradients and losses summed over the peers before the optimizer's step, so every peer takes
/// the same step and ends with the same parameters (returned, `model` is left as it is). Only
/// the first peer evaluates, checkpoints and reports steps to `observer`. Dropout masks are
/// drawn by each peer: with dropout the result equals one peer's in distribution only.
#[allow(clippy::too_many_arguments)]
pub fn train_on<A: FusedAutodiff>(
    model: &Model,
    peer: &mut Peer<A::InnerBackend>,
    trainable: &[String],
    train: &[Sample<'_>],
    val: &[Sample<'_>],
    eval_text: Option<EvalText<'_>>,
    opts: &TrainOptions,
    observer: &mut dyn TrainObserver,
) -> Result<(ParamStore, TrainOutcome)> {
    let device = &peer.device().clone();
    let first = peer.rank() == 0;
    if trainable.is_empty() {
        return Err(err("nothing to train: no trainable parameters"));
    }
    if train.is_empty() || train.iter().all(|s| s.predicted() == 0) {
        return Err(err("no training sample has a token to predict"));
    }
    if opts.steps == 0 || opts.batch_size == 0 || opts.micro_batch_size == 0 {
        return Err(err("steps, batch size and micro-batch size must be positive"));
    }
    if let Some(s) = train.iter().chain(val).find(|s| s.ids.len() != s.targets.len() || s.ids.is_empty()) {
        return Err(err(format!("a sample has {} tokens but {} target flags", s.ids.len(), s.targets.len())));
    }
    A::seed(device, opts.seed);
    let mut exec = Executor::<A>::new(model, device)?;
    exec.require_grad_of(trainable)?;
    exec.set_training(true);
    let optimizer: AdamW = AdamWConfig::new().with_weight_decay(opts.weight_decay).with_epsilon(1e-8).build();
    let mut states: HashMap<String, Option<AdamWState<A::InnerBackend, 2>>> = HashMap::new();
    let mut order = SampleOrder::new(train.len(), opts.seed);
    let mut outcome = TrainOutcome { curve: Vec::new(), step_losses: Vec::new(), tokens: 0, train_seconds: 0.0 };
    let (mut interval_loss, mut interval_tokens) = (0.0f64, 0usize);
    let evaluate_at = |step: usize| {
        (opts.eval_every > 0 && step.is_multiple_of(opts.eval_every)) || step == opts.steps
    };
    if opts.eval_every > 0 && first {
        let point = evaluate(&exec, val, eval_text, opts.micro_batch_size, 0, None, 0.0, 0.0)?;
        observer.evaluated(&point);
        outcome.curve.push(point);
    }
    for step in 1..=opts.steps {
        let started = Instant::now();
        let batch: Vec<Sample<'_>> = (0..opts.batch_size).map(|_| train[order.next()]).collect();
        let predicted: usize = batch.iter().map(Sample::predicted).sum();
        // each trainable parameter's gradient, summed in f64 (then rounded once): the sum of the
        // micro-batches' gradients is the same whichever peers computed which
        let mut grads: Vec<Option<Vec<f64>>> = vec![None; trainable.len()];
        let mut loss_sum = 0.0f64;
        let mut step_tokens = 0usize;
        for (i, micro) in batch.chunks(opts.micro_batch_size).enumerate() {
            if !peer.owns(i) || micro.iter().all(|s| s.predicted() == 0) {
                continue;
            }
            let (ids, mask) = padded(&exec, micro)?;
            // the micro-batch's own dropout masks, whichever peer runs it
            exec.seed_dropout(dropout_seed(opts.seed, step, i));
            let loss = masked_nll(exec.forward(ids.clone())?, ids.clone(), mask).div_scalar(predicted.max(1) as f64);
            let value = scalar(loss.clone())?;
            exec.ensure_finite(value, ids, || format!("the training loss of step {step}"))?;
            loss_sum += value;
            let g = loss.backward();
            for (name, acc) in trainable.iter().zip(grads.iter_mut()) {
                let DynTensor::F2(t) = param(&exec, name)? else {
                    return Err(err(format!("trainable parameter `{name}` is not a matrix")));
                };
                let Some(grad) = t.grad(&g) else { continue };
                let grad = grad.into_data().convert::<f64>().into_vec::<f64>().map_err(|e| err(format!("{e:?}")))?;
                match acc {
                    Some(acc) => acc.iter_mut().zip(grad).for_each(|(a, g)| *a += g),
                    None => *acc = Some(grad),
                }
            }
            step_tokens += micro.iter().map(|s| s.ids.len()).sum::<usize>();
        }
        let dims: Vec<Vec<usize>> = trainable.iter().map(|n| param(&exec, n).map(DynTensor::dims)).collect::<Result<_>>()?;
        if peer.peers() > 1 {
            peer.sum_optional(&mut grads, |k| dims[k].iter().product())?;
            let mut sums = [loss_sum, step_tokens as f64];
            peer.sum(&mut sums)?;
            loss_sum = sums[0];
            step_tokens = sums[1].round() as usize;
        }
        outcome.tokens += step_tokens;
        let lr = opts.schedule.lr(opts.lr, step, opts.steps, opts.warmup_steps);
        for ((name, grad), d) in trainable.iter().zip(grads).zip(&dims) {
            let Some(grad) = grad else { continue };
            let DynTensor::F2(t) = param(&exec, name)? else { continue };
            let [rows, cols] = d[..] else { continue };
            let grad = Tensor::<A::InnerBackend, 2>::from_data(TensorData::new(grad, [rows, cols]), device);
            let state = states.remove(name).flatten();
            let (updated, state) = SimpleOptimizer::<A::InnerBackend>::step(&optimizer, lr, t.clone().inner(), grad, state);
            states.insert(name.clone(), state);
            exec.set_param(name, DynTensor::F2(Tensor::from_inner(updated).require_grad()))?;
        }
        outcome.train_seconds += started.elapsed().as_secs_f64();
        outcome.step_losses.push(loss_sum);
        interval_loss += loss_sum * predicted as f64;
        interval_tokens += predicted;
        let tokens_per_s = outcome.tokens as f64 / outcome.train_seconds.max(1e-9);
        if first {
            observer.step(step, opts.steps, loss_sum, tokens_per_s);
        }
        if evaluate_at(step) && first {
            let train_loss = (interval_tokens > 0).then(|| interval_loss / interval_tokens as f64);
            let point = evaluate(&exec, val, eval_text, opts.micro_batch_size, step, train_loss, lr, tokens_per_s)?;
            (interval_loss, interval_tokens) = (0.0, 0);
            observer.evaluated(&point);
            outcome.curve.push(point);
        }
        if first && opts.save_every > 0 && step.is_multiple_of(opts.save_every) && step != opts.steps {
            observer.checkpoint(step, &current(&exec, model, trainable)?)?;
        }
    }
    let trained = current(&exec, model, trainable)?;
    if first && opts.save_every > 0 {
        observer.checkpoint(opts.steps, &trained)?;
    }
    Ok((trained, outcome))
}

/// The seed of the dropout masks of micro-batch `micro` of step `step`.
fn dropout_seed(seed: u64, step: usize, micro: usize) -> u64 {
    let mut rng = prunec_ir::rng::SplitMix64::new(seed ^ 0xD809_0075);
    rng.next_u64() ^ ((step as u64) << 20) ^ micro as u64
}

/// The trainable parameters' current values, as a store.
fn current<B: Fused>(exec: &Executor<B>, model: &Model, names: &[String]) -> Result<ParamStore> {
    let mut store = ParamStore::new();
    for name in names {
        let t = param(exec, name)?;
        let mut p = Param::owned(t.dims(), t.to_f32()?)?;
        if let Some(old) = model.params.get(name) {
            p.dtype = old.dtype;
        }
        store.insert(name.clone(), p);
    }
    Ok(store)
}

fn param<'e, B: Fused>(exec: &'e Executor<B>, name: &str) -> Result<&'e DynTensor<B>> {
    exec.params().get(name).ok_or_else(|| err(format!("parameter `{name}` not loaded")))
}

fn scalar<B: Fused>(t: Tensor<B, 1>) -> Result<f64> {
    let v = t.into_data().convert::<f32>().into_vec::<f32>().map_err(|e| err(format!("{e:?}")))?;
    Ok(f64::from(v.first().copied().unwrap_or(f32::NAN)))
}

/// Token ids `[m, longest]` padded on the right with token 0, and the target mask.
fn padded<B: Fused>(exec: &Executor<B>, samples: &[Sample<'_>]) -> Result<(Tensor<B, 2, burn::prelude::Int>, Tensor<B, 2>)> {
    let len = samples.iter().map(|s| s.ids.len()).max().unwrap_or(0).max(2);
    let rows: Vec<Vec<u32>> = samples.iter().map(|s| {
        let mut r = s.ids.to_vec();
        r.resize(len, 0);
        r
    }).collect();
    let mask: Vec<f32> = samples
        .iter()
        .flat_map(|s| (0..len).map(move |t| if s.targets.get(t).copied().unwrap_or(false) { 1.0 } else { 0.0 }))
        .collect();
    let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [samples.len(), len]), exec.device());
    Ok((exec.ids(&rows)?, mask))
}

/// Mean loss per target token of `samples` (none: `None`).
fn validation_loss<B: Fused>(exec: &Executor<B>, samples: &[Sample<'_>], micro: usize) -> Result<Option<f64>> {
    let predicted: usize = samples.iter().map(Sample::predicted).sum();
    if predicted == 0 {
        return Ok(None);
    }
    let mut nll = 0.0;
    for chunk in samples.chunks(micro.max(1)) {
        let (ids, mask) = padded(exec, chunk)?;
        let value = scalar(masked_nll(exec.forward(ids.clone())?, ids.clone(), mask))?;
        exec.ensure_finite(value, ids, || String::from("the validation loss"))?;
        nll += value;
    }
    Ok(Some(nll / predicted as f64))
}

#[allow(clippy::too_many_arguments)]
fn evaluate<A: FusedAutodiff>(
    exec: &Executor<A>,
    val: &[Sample<'_>],
    eval_text: Option<EvalText<'_>>,
    micro: usize,
    step: usize,
    train_loss: Option<f64>,
    lr: f64,
    tokens_per_s: f64,
) -> Result<TrainPoint> {
    let inference = exec.inference();
    let val_loss = validation_loss(&inference, val, micro)?;
    let perplexity = match eval_text {
        Some(t) => Some(perplexity_of(&inference, t.tokens, t.seq_len, t.batch, |_, _| {})?),
        None => None,
    };
    Ok(TrainPoint {
        step,
        train_loss,
        val_loss,
        perplexity: perplexity.map(|p: Perplexity| p.perplexity).or(val_loss.map(f64::exp)),
        lr,
        tokens_per_s,
    })
}

/// Sample indices epoch after epoch, each epoch in a fresh order drawn from the seed.
struct SampleOrder {
    rng: SplitMix64,
    order: Vec<usize>,
    at: usize,
}

impl SampleOrder {
    fn new(n: usize, seed: u64) -> SampleOrder {
        let mut o = SampleOrder { rng: SplitMix64::new(seed), order: (0..n).collect(), at: n };
        o.reshuffle();
        o
    }

    fn reshuffle(&mut self) {
        // Fisher–Yates
        for i in (1..self.order.len()).rev() {
            let j = self.rng.below(i + 1);
            self.order.swap(i, j);
        }
        self.at = 0;
    }

    fn next(&mut self) -> usize {
        if self.at >= self.order.len() {
            self.reshuffle();
        }
        self.at += 1;
        self.order[self.at - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_warm_up_then_decay() {
        let lr = |s: LrSchedule, step| s.lr(1.0, step, 10, 2);
        assert_eq!([lr(LrSchedule::Linear, 1), lr(LrSchedule::Linear, 2), lr(LrSchedule::Linear, 3)], [0.0, 0.5, 1.0]);
        assert!((lr(LrSchedule::Linear, 7) - 0.5).abs() < 1e-12);
        assert!((lr(LrSchedule::Cosine, 7) - 0.5).abs() < 1e-12);
        assert!(lr(LrSchedule::Cosine, 4) > lr(LrSchedule::Linear, 4));
        assert_eq!(lr(LrSchedule::Constant, 10), 1.0);
        // no warmup: the first step has the full rate
        assert_eq!(LrSchedule::Linear.lr(2.0, 1, 4, 0), 2.0);
    }

    #[test]
    fn sample_order_visits_every_sample_each_epoch() {
        let mut o = SampleOrder::new(5, 1);
        for _ in 0..3 {
            let mut epoch: Vec<usize> = (0..5).map(|_| o.next()).collect();
            epoch.sort();
            assert_eq!(epoch, [0, 1, 2, 3, 4]);
        }
    }
}
