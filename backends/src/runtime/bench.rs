//! Throughput of the runtime: tokens per second of forward passes, of forward+backward passes
//! (the work of calibration), and of greedy generation with the key/value cache, on random
//! token ids.

use std::time::Instant;

use prunec_ir::rng::SplitMix64;
use prunec_ir::Model;

use super::exec::{causal_lm_loss, op_profile, Executor};
use super::fused::FusedAutodiff;
use super::generate::{generate, Sampling};
use crate::{BackendError, Result};

/// What a benchmark measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    /// Tokens per batch.
    pub tokens_per_batch: usize,
    /// Batches timed per kind (after one untimed warm-up).
    pub iters: usize,
    /// Forward-only tokens per second.
    pub forward_tokens_per_s: f64,
    /// Forward+backward tokens per second (gradients of every parameter).
    pub backward_tokens_per_s: f64,
    /// Tokens generated per second (greedy, one at a time with the key/value cache, after a
    /// prompt of `seq_len` tokens); `None` when no generation was asked for.
    pub generate_tokens_per_s: Option<f64>,
    /// Seconds to prepare the model on the device.
    pub load_seconds: f64,
    /// The timed forward passes' seconds per op kind, `(op, steps, seconds)`, longest first:
    /// empty unless `PRUNEC_OP_PROFILE` is set (see [`op_profile`]).
    pub forward_ops: Vec<(String, u64, f64)>,
}

/// Times `iters` forward passes and `iters` forward+backward passes of `batch × seq_len` tokens,
/// and the generation of `new_tokens` tokens after `seq_len` (when `new_tokens > 0`).
pub fn measure<B: FusedAutodiff>(
    model: &Model,
    device: &B::Device,
    batch: usize,
    seq_len: usize,
    iters: usize,
    new_tokens: usize,
) -> Result<Throughput> {
    // token ids drawn below the embedding table's row count
    let vocab = model
        .graph
        .node_ids()
        .into_iter()
        .find(|&id| model.graph.node(id).is_ok_and(|n| matches!(n.op, prunec_ir::Op::Embedding)))
        .and_then(|id| model.graph.inputs(id).first().copied())
        .and_then(|table| model.graph.value_type(table).ok().and_then(|t| t.dim(0).and_then(prunec_ir::Dim::fixed)))
        .ok_or_else(|| BackendError::Lowering("the graph has no embedding to draw token ids for".into()))?;
    let mut rng = SplitMix64::new(0);
    let rows: Vec<Vec<u32>> = (0..batch).map(|_| (0..seq_len).map(|_| rng.below(vocab) as u32).collect()).collect();
    let t0 = Instant::now();
    let inference = Executor::<B::InnerBackend>::for_inference(model, device)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let ids = inference.ids(&rows)?;
    let sync = |v: Vec<f32>| v.first().copied();
    let read = |t: burn::prelude::Tensor<B::InnerBackend, 3>| {
        t.narrow(2, 0, 1).into_data().convert::<f32>().into_vec::<f32>().map_err(|e| BackendError::Lowering(format!("{e:?}")))
    };
    sync(read(inference.forward(ids.clone())?)?);
    op_profile::take();
    let t = Instant::now();
    for _ in 0..iters {
        sync(read(inference.forward(ids.clone())?)?);
    }
    let forward = t.elapsed().as_secs_f64();
    let forward_ops = op_profile::take();
    let generate_tokens_per_s = if new_tokens > 0 {
        let sampling = Sampling { max_new_tokens: new_tokens, ..Sampling::default() };
        let t = Instant::now();
        let out = generate(&inference, &rows[0], &sampling, None, |_| {})?;
        Some(out.len() as f64 / t.elapsed().as_secs_f64())
    } else {
        None
    };
    drop(inference);

    let mut train = Executor::<B>::new(model, device)?;
    train.require_grad();
    let ids = train.ids(&rows)?;
    let step = |train: &Executor<B>| -> Result<()> {
        let loss = causal_lm_loss(train.forward(ids.clone())?, ids.clone());
        let grads = loss.backward();
        // read one gradient back so the work is done
        if let Some((_, p)) = train.params().iter().next() {
            p.grad_f32(&grads)?;
        }
        Ok(())
    };
    step(&train)?;
    let t = Instant::now();
    for _ in 0..iters {
        step(&train)?;
    }
    let backward = t.elapsed().as_secs_f64();
    let tokens = (batch * seq_len * iters) as f64;
    Ok(Throughput {
        tokens_per_batch: batch * seq_len,
        iters,
        forward_tokens_per_s: tokens / forward,
        forward_ops,
        backward_tokens_per_s: tokens / backward,
        generate_tokens_per_s,
        load_seconds,
    })
}
