//! Layer-streamed work: calibration and evaluation of models larger than memory. The graph is
//! cut into segments ([`Segments`]: the embedding, each decoder layer, the head); one segment's
//! parameters are read from the input (decoded to f32) at a time, and only the values that
//! cross segments (the residual stream) are kept.
//!
//! Calibration (as `DESIGN.md` sets it out):
//! 1. forward without autodiff, segment by segment, over every micro-batch, keeping each
//!    segment's inputs;
//! 2. each micro-batch's mean loss at the head, under autodiff (its gradients weighted by its
//!    share of the predicted tokens when accumulated, as the resident path does);
//! 3. backward segment by segment in reverse, recomputing a segment's forward under autodiff
//!    from its saved inputs and seeding it with `Σ y ⊙ g` over its outputs `y` (`g`, their
//!    gradients from the segments above): its gradient is exactly `Jᵀ g`, so `backward` gives
//!    the segment's parameter gradients and the gradients of its inputs;
//! 4. stopping at the lowest segment that reads a parameter whose gradient is wanted; only those
//!    parameters track gradients; an embedding table's gradient is reduced from its lookup's
//!    output gradient and the ids (the rows of the tokens seen), never as a dense tensor;
//! 5. each parameter's gradient (and Fisher diagonal) handed to a sink the moment its lowest
//!    reader is done, then dropped.
//!
//! Peak memory: one segment's parameters and gradients, its autodiff graph over one
//! micro-batch, and the saved crossing values — not the model.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use prunec_ir::{GradValues, Model, Moments, Op, ParamGradient, Segments, ValueId};

use super::collective::Peer;
use super::exec::{causal_lm_loss, Executor};
use super::fused::{Fused, FusedAutodiff};
use super::tensor::DynTensor;
use crate::{BackendError, Result};

fn err(msg: impl Into<String>) -> BackendError {
    BackendError::Lowering(msg.into())
}

/// How to calibrate layer by layer.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// Also the Fisher diagonal (one backward pass per sample).
    pub fisher: bool,
    /// The parameters whose gradients are wanted (the members of the groups being scored).
    pub wanted: BTreeSet<String>,
    /// Samples per forward/backward pass (1 with `fisher`).
    pub micro_batch: usize,
}

/// Where streamed work is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStep {
    /// `"forward"` or `"backward"`.
    pub phase: &'static str,
    /// Segments of this phase done.
    pub done: usize,
    /// Segments this phase runs.
    pub total: usize,
    /// The decoder layer just done, when the segment is one.
    pub block: Option<u32>,
}

/// What a streamed calibration did.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    /// Samples used.
    pub samples: usize,
    /// Tokens predicted.
    pub tokens: usize,
    /// Mean loss per predicted token.
    pub loss: f64,
    /// Segments of the graph.
    pub segments: usize,
    /// Segments run forward without autodiff.
    pub forward_segments: usize,
    /// Segments recomputed under autodiff (from the head down to the lowest one scored).
    pub backward_segments: usize,
    /// Forward/backward passes over micro-batches, per segment.
    pub micro_batches: usize,
    /// Parameters of the largest segment (what is in memory at once).
    pub largest_segment_params: usize,
    /// Parameters whose gradients were handed over.
    pub params_done: usize,
}

/// Saved values crossing segments, one tensor per micro-batch.
type Saved<B> = HashMap<ValueId, Vec<DynTensor<B>>>;

/// Micro-batches of consecutive samples of equal length, at most `per` each.
fn micro_batches(samples: &[Vec<u32>], per: usize) -> Vec<Vec<Vec<u32>>> {
    let mut batches: Vec<Vec<Vec<u32>>> = Vec::new();
    for s in samples {
        match batches.last_mut() {
            Some(b) if b.len() < per && b[0].len() == s.len() => b.push(s.clone()),
            _ => batches.push(vec![s.clone()]),
        }
    }
    batches
}

/// Rows of a tapped table seen by one sample, and its dense gradient on them from other
/// segments (for the Fisher diagonal's cross term).
type RowGrads = BTreeMap<usize, Vec<f32>>;

/// Adds `rows` (`ids[i]` gets `values[i]`, `width` each) into `into`, scaled by `scale`.
fn scatter_rows(into: &mut RowGrads, ids: &[i64], values: &[f32], width: usize, scale: f32) -> Result<()> {
    if values.len() != ids.len() * width {
        return Err(err(format!("an embedding gradient of {} values for {} ids of width {width}", values.len(), ids.len())));
    }
    for (&id, row) in ids.iter().zip(values.chunks_exact(width.max(1))) {
        let id = usize::try_from(id).map_err(|_| err(format!("token id {id} is negative")))?;
        let acc = into.entry(id).or_insert_with(|| vec![0.0; width]);
        for (a, &g) in acc.iter_mut().zip(row) {
            *a += g * scale;
        }
    }
    Ok(())
}

/// Gradient accumulators of one parameter.
#[derive(Default)]
struct Accumulated<I: Backend> {
    dense: Option<DynTensor<I>>,
    dense_fisher: Option<DynTensor<I>>,
    rows: RowGrads,
    rows_fisher: RowGrads,
    /// Per micro-batch (one sample, with Fisher): the dense gradient on the rows the sample's
    /// tokens select, for the cross term of a table read both densely and by lookups.
    dense_on_rows: HashMap<usize, RowGrads>,
}

fn add_into<I: Backend>(slot: &mut Option<DynTensor<I>>, t: DynTensor<I>) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(a) => a.plus(t)?,
        None => t,
    });
    Ok(())
}

/// Runs segments `range` of `segs` forward on the inner backend over `batches`, reading and
/// extending `saved`; values whose last reader is done and that `keep` does not want are dropped.
#[allow(clippy::too_many_arguments)]
fn forward_segments<B: Fused>(
    exec: &mut Executor<B>,
    model: &Model,
    segs: &Segments,
    range: std::ops::Range<usize>,
    batches: &[Vec<Vec<u32>>],
    saved: &mut Saved<B>,
    keep: &dyn Fn(ValueId) -> bool,
    taps: &dyn Fn(usize) -> Vec<ValueId>,
    mut on_output: impl FnMut(usize, usize, HashMap<ValueId, DynTensor<B>>) -> Result<HashMap<ValueId, DynTensor<B>>>,
    progress: &mut dyn FnMut(StreamStep),
) -> Result<()> {
    let total = range.len();
    for (done, k) in range.enumerate() {
        let seg = &segs.segments[k];
        // the segment's outputs, and values inside it that `on_output` wants to see
        let mut wanted = seg.outputs.clone();
        wanted.extend(taps(k).into_iter().filter(|v| !seg.outputs.contains(v)));
        exec.load_params(model, &seg.params)?;
        let mut made: HashMap<ValueId, Vec<DynTensor<B>>> = HashMap::new();
        for (m, batch) in batches.iter().enumerate() {
            let ids = exec.ids(batch)?;
            let mut inputs = HashMap::new();
            for &v in &seg.inputs {
                let t = saved.get(&v).and_then(|ts| ts.get(m)).ok_or_else(|| err(format!("value {v} was not saved")))?;
                inputs.insert(v, t.clone());
            }
            let outs = exec.run_segment(&seg.nodes, ids, inputs, &wanted)?;
            for (v, t) in on_output(k, m, outs)? {
                made.entry(v).or_default().push(t);
            }
        }
        exec.unload_params();
        saved.extend(made);
        // drop what no later segment reads, unless kept
        saved.retain(|&v, _| keep(v) || segs.consumers_of(v).iter().any(|&c| c > k));
        progress(StreamStep { phase: "forward", done: done + 1, total, block: seg.block });
    }
    Ok(())
}

/// Calibrates `model` layer by layer on `samples` (token ids, each at least 2 long): every
/// parameter of `options.wanted`'s gradient of the mean loss (and Fisher diagonal) goes to
/// `sink` once complete.
pub fn calibrate_streamed<A: FusedAutodiff>(
    model: &Model,
    device: &A::Device,
    samples: &[Vec<u32>],
    options: &StreamOptions,
    sink: impl FnMut(&str, ParamGradient) -> Result<()>,
    progress: impl FnMut(StreamStep),
) -> Result<StreamSummary> {
    calibrate_streamed_on::<A>(model, &mut Peer::alone(device.clone()), samples, options, sink, progress)
}

/// A gradient summed over the peers: dense where any peer's is dense, else on the union of
/// the rows the peers saw (a row mask, then the rows packed in that order, are all-reduced).
fn sum_over_peers<B: Fused>(peer: &mut Peer<B>, g: GradValues, len: usize, width: usize) -> Result<GradValues> {
    if peer.peers() == 1 {
        return Ok(g);
    }
    let width = width.max(1);
    let mut dense = [if matches!(g, GradValues::Dense(_)) { 1.0 } else { 0.0 }];
    peer.sum(&mut dense)?;
    let rows = match g {
        GradValues::Dense(mut v) => {
            peer.sum(&mut v)?;
            return Ok(GradValues::Dense(v));
        }
        GradValues::Rows { rows, .. } if dense[0] > 0.0 => {
            let mut v = vec![0.0; len];
            for (r, row) in rows {
                v.get_mut(r * width..(r + 1) * width).ok_or_else(|| err(format!("row {r} is outside the table")))?.copy_from_slice(&row);
            }
            peer.sum(&mut v)?;
            return Ok(GradValues::Dense(v));
        }
        GradValues::Rows { rows, .. } => rows,
    };
    let mut seen = vec![0.0f32; len / width];
    for &r in rows.keys() {
        *seen.get_mut(r).ok_or_else(|| err(format!("row {r} is outside the table")))? = 1.0;
    }
    peer.sum(&mut seen)?;
    let union: Vec<usize> = (0..seen.len()).filter(|&r| seen[r] > 0.0).collect();
    let mut packed = vec![0.0f32; union.len() * width];
    for (j, r) in union.iter().enumerate() {
        if let Some(row) = rows.get(r) {
            packed[j * width..(j + 1) * width].copy_from_slice(row);
        }
    }
    peer.sum(&mut packed)?;
    Ok(GradValues::Rows { row_len: width, rows: union.into_iter().zip(packed.chunks_exact(width)).map(|(r, c)| (r, c.to_vec())).collect() })
}

/// [`calibrate_streamed`] as one of several peers: each streams the layers over the
/// micro-batches it [owns](Peer::owns) (all are weighted by their share of every peer's
/// tokens); each parameter's gradient and Fisher diagonal are summed over the peers before
/// `sink` gets them, so every peer's sink gets the same values, as does the loss.
pub fn calibrate_streamed_on<A: FusedAutodiff>(
    model: &Model,
    peer: &mut Peer<A::InnerBackend>,
    samples: &[Vec<u32>],
    options: &StreamOptions,
    mut sink: impl FnMut(&str, ParamGradient) -> Result<()>,
    mut progress: impl FnMut(StreamStep),
) -> Result<StreamSummary> {
    type I<A> = <A as AutodiffBackend>::InnerBackend;
    let device = &peer.device().clone();
    if samples.is_empty() || samples.iter().any(|s| s.len() < 2) {
        return Err(err("calibration needs samples of at least 2 tokens"));
    }
    let segs = Segments::of(&model.graph)?;
    let n_segs = segs.len();
    for name in &options.wanted {
        if model.params.get(name).is_none() || segs.readers_of(name).is_empty() {
            return Err(err(format!("parameter `{name}` is not read by the model")));
        }
    }
    let wanted_in: Vec<Vec<String>> =
        segs.segments.iter().map(|s| s.params.iter().filter(|p| options.wanted.contains(*p)).cloned().collect()).collect();
    let first = (0..n_segs).find(|&k| !wanted_in[k].is_empty()).ok_or_else(|| err("no parameter's gradient is wanted"))?;
    // a wanted parameter read only as an embedding table in a segment is tapped there
    let mut tapped: Vec<HashSet<String>> = vec![HashSet::new(); n_segs];
    for (k, seg) in segs.segments.iter().enumerate() {
        for p in &wanted_in[k] {
            let mut lookups = 0;
            let mut other = 0;
            for &id in &seg.nodes {
                let node = model.graph.node(id)?;
                for (slot, v) in model.graph.inputs(id).iter().enumerate() {
                    if matches!(&model.graph.node(v.node)?.op, Op::Param { name, .. } if name == p) {
                        if matches!(node.op, Op::Embedding) && slot == 0 {
                            lookups += 1;
                        } else {
                            other += 1;
                        }
                    }
                }
            }
            if lookups > 0 && other == 0 {
                tapped[k].insert(p.clone());
            }
        }
    }
    // the lowest segment reading each wanted parameter: its gradient is complete there
    let lowest: HashMap<&str, usize> =
        options.wanted.iter().map(|p| (p.as_str(), segs.readers_of(p).into_iter().min().unwrap_or(0))).collect();
    // tables both looked up and read densely: with the Fisher diagonal, the per-sample
    // gradient spans segments; its cross term needs the lookups' rows known ahead (token ids)
    let mixed: HashSet<String> = options
        .wanted
        .iter()
        .filter(|p| {
            let readers = segs.readers_of(p);
            readers.iter().any(|&k| tapped[k].contains(*p)) && readers.iter().any(|&k| !tapped[k].contains(*p))
        })
        .cloned()
        .collect();
    if options.fisher {
        // a per-sample gradient must be whole before it is squared: a parameter read densely by
        // two segments would have its parts squared apart
        for p in &options.wanted {
            let dense_readers = segs.readers_of(p).into_iter().filter(|&k| !tapped[k].contains(p)).count();
            if dense_readers > 1 {
                return Err(err(format!(
                    "`{p}` is read by {dense_readers} segments of the model: its Fisher diagonal cannot be streamed \
                     (use the resident path)"
                )));
            }
        }
        for p in &mixed {
            let by_ids = segs.segments.iter().enumerate().filter(|(k, _)| tapped[*k].contains(p)).all(|(_, seg)| {
                seg.nodes.iter().all(|&id| {
                    let ins = model.graph.inputs(id);
                    let looks_up_p = matches!(model.graph.node(id).map(|n| &n.op), Ok(Op::Embedding))
                        && ins.first().is_some_and(|v| matches!(&model.graph.node(v.node).map(|n| &n.op), Ok(Op::Param { name, .. }) if name == p));
                    !looks_up_p
                        || ins.get(1).is_some_and(|v| matches!(model.graph.node(v.node).map(|n| &n.op), Ok(Op::Input { name, .. }) if name == "input_ids"))
                })
            });
            // the dense readers run (backward) before the lookups, so each sample's dense rows are known
            let readers = segs.readers_of(p);
            let highest_lookup = readers.iter().filter(|&&k| tapped[k].contains(p)).max();
            let lowest_dense = readers.iter().filter(|&&k| !tapped[k].contains(p)).min();
            let ordered = matches!((highest_lookup, lowest_dense), (Some(l), Some(d)) if l < d);
            if !by_ids || !ordered {
                return Err(err(format!(
                    "`{p}` is looked up by other ids than the tokens and read densely elsewhere: its Fisher diagonal \
                     cannot be streamed (use the resident path)"
                )));
            }
        }
    }
    let per = if options.fisher { 1 } else { options.micro_batch.max(1) };
    let batches = micro_batches(samples, per);
    let total_tokens: usize = samples.iter().map(|s| s.len() - 1).sum();
    let weights: Vec<f64> = batches.iter().map(|b| (b.len() * (b[0].len() - 1)) as f64 / total_tokens as f64).collect();
    let all_batches = batches.len();
    let (batches, weights): (Vec<_>, Vec<_>) = batches.into_iter().zip(weights).enumerate().filter(|(i, _)| peer.owns(*i)).map(|(_, bw)| bw).unzip();
    let n_samples = samples.len() as f64;
    let largest_segment_params = segment_params(model, &segs);

    // 1. forward, keeping what the backward segments read
    let needs_backward = |v: ValueId| segs.consumers_of(v).iter().any(|&c| c >= first);
    let mut saved: Saved<I<A>> = HashMap::new();
    let mut fexec = Executor::<I<A>>::program(model, device)?;
    forward_segments(
        &mut fexec,
        model,
        &segs,
        0..n_segs - 1,
        &batches,
        &mut saved,
        &needs_backward,
        &|_| Vec::new(),
        |_, _, outs| Ok(outs),
        &mut progress,
    )?;
    drop(fexec);

    // 2-4. the head's loss, then backward segment by segment
    let mut bexec = Executor::<A>::program(model, device)?;
    let mut grads_of: HashMap<ValueId, Vec<Option<DynTensor<I<A>>>>> = HashMap::new();
    let mut acc: HashMap<String, Accumulated<I<A>>> = HashMap::new();
    let mut loss_sum = 0.0f64;
    let mut params_done = 0;
    let backward_total = n_segs - first;
    for (done, k) in (first..n_segs).rev().enumerate() {
        let seg = &segs.segments[k];
        bexec.load_params(model, &seg.params)?;
        let dense: Vec<&String> = wanted_in[k].iter().filter(|p| !tapped[k].contains(*p)).collect();
        for p in &dense {
            bexec.map_param(p, DynTensor::require_grad)?;
        }
        bexec.tap_embeddings(tapped[k].clone(), DynTensor::require_grad);
        for (m, batch) in batches.iter().enumerate() {
            let w = weights[m];
            let ids = bexec.ids(batch)?;
            let mut leaves: Vec<(ValueId, DynTensor<A>)> = Vec::new();
            let mut inputs = HashMap::new();
            for &v in &seg.inputs {
                let t = saved.get(&v).and_then(|ts| ts.get(m)).ok_or_else(|| err(format!("value {v} was not saved")))?;
                let mut t = DynTensor::<A>::from_inner(t.clone());
                let producer = segs.producer.get(&v).copied().unwrap_or(0);
                if t.is_float() && segs.param_dependent.contains(&v) && producer >= first {
                    t = t.require_grad();
                    leaves.push((v, t.clone()));
                }
                inputs.insert(v, t);
            }
            let mut outs = bexec.run_segment(&seg.nodes, ids.clone(), inputs, &seg.outputs)?;
            let seed = if k + 1 == n_segs {
                let logits = match outs.remove(&segs.logits) {
                    Some(DynTensor::F3(t)) => t,
                    _ => return Err(err("the last segment does not give logits [batch, seq, vocab]")),
                };
                // each micro-batch's own mean loss: its gradients are weighted when accumulated,
                // as the resident path weighs its micro-batches
                let loss = causal_lm_loss(logits, ids);
                let value = loss.clone().inner().into_data().convert::<f32>().into_vec::<f32>().map_err(|e| err(format!("{e:?}")))?;
                loss_sum += f64::from(value.first().copied().unwrap_or(f32::NAN)) * w;
                Some(loss)
            } else {
                let mut seed = None;
                for (v, y) in outs {
                    let Some(g) = grads_of.get(&v).and_then(|gs| gs.get(m)).and_then(Option::as_ref) else { continue };
                    let term = y.dot(DynTensor::<A>::from_inner(g.clone()))?;
                    seed = Some(match seed {
                        Some(s) => s + term,
                        None => term,
                    });
                }
                seed
            };
            let Some(seed) = seed else {
                bexec.take_taps();
                continue;
            };
            let mut grads = seed.backward();
            for p in &dense {
                let g = bexec.params().get(*p).and_then(|t| t.take_grad(&mut grads));
                let Some(g) = g else { continue };
                let a = acc.entry((*p).clone()).or_default();
                if options.fisher {
                    // this micro-batch is one sample: g is its own gradient
                    let per_sample = g.clone();
                    if mixed.contains(*p) {
                        let width: usize = model.params.get(p).map_or(0, |q| q.shape[1..].iter().product());
                        let rows: BTreeSet<usize> = batch.iter().flatten().map(|&t| t as usize).collect();
                        let values = per_sample.to_f32()?;
                        let on_rows = rows
                            .into_iter()
                            .filter_map(|r| values.get(r * width..(r + 1) * width).map(|v| (r, v.to_vec())))
                            .collect();
                        a.dense_on_rows.insert(m, on_rows);
                    }
                    add_into(&mut a.dense_fisher, per_sample.square()?.scale(1.0 / n_samples)?)?;
                }
                add_into(&mut a.dense, g.scale(w)?)?;
            }
            for (v, leaf) in &leaves {
                if let Some(g) = leaf.take_grad(&mut grads) {
                    let slots = grads_of.entry(*v).or_insert_with(|| vec![None; batches.len()]);
                    add_into(&mut slots[m], g)?;
                }
            }
            for tap in bexec.take_taps() {
                let Some(g) = tap.output.take_grad(&mut grads) else { continue };
                let ids = tap.ids.to_i64()?;
                let width = g.dims().last().copied().unwrap_or(0);
                let values = g.to_f32()?;
                let a = acc.entry(tap.table.clone()).or_default();
                scatter_rows(&mut a.rows, &ids, &values, width, w as f32)?;
                if options.fisher {
                    // (D + S)² = D² + 2·D·S + S², S this sample's lookup gradient, D its dense one
                    let mut sample = RowGrads::new();
                    scatter_rows(&mut sample, &ids, &values, width, 1.0)?;
                    let cross = a.dense_on_rows.remove(&m).unwrap_or_default();
                    for (r, s) in sample {
                        let f = a.rows_fisher.entry(r).or_insert_with(|| vec![0.0; width]);
                        let d = cross.get(&r);
                        for (j, (fj, sj)) in f.iter_mut().zip(&s).enumerate() {
                            let dj = d.and_then(|d| d.get(j)).copied().unwrap_or(0.0);
                            *fj += (2.0 * dj * sj + sj * sj) / n_samples as f32;
                        }
                    }
                }
            }
        }
        // the gradients of this segment's outputs are used up; so are saved inputs no lower
        // backward segment reads
        for v in &seg.outputs {
            grads_of.remove(v);
        }
        saved.retain(|&v, _| segs.consumers_of(v).iter().any(|&c| c >= first && c < k));
        // parameters whose lowest reader this is are complete
        for p in &wanted_in[k] {
            if lowest.get(p.as_str()) != Some(&k) {
                continue;
            }
            let a = acc.remove(p).unwrap_or_default();
            let param = model.params.get(p).ok_or_else(|| err(format!("parameter `{p}` is not in the model")))?;
            let width: usize = param.shape[1..].iter().product();
            let to_values = |dense: Option<DynTensor<I<A>>>, rows: RowGrads| -> Result<GradValues> {
                Ok(match dense {
                    Some(d) => {
                        let mut v = d.to_f32()?;
                        for (r, row) in rows {
                            let dst = v
                                .get_mut(r * width..(r + 1) * width)
                                .ok_or_else(|| err(format!("`{p}`: row {r} is outside the table")))?;
                            for (x, g) in dst.iter_mut().zip(row) {
                                *x += g;
                            }
                        }
                        GradValues::Dense(v)
                    }
                    None => GradValues::Rows { row_len: width, rows },
                })
            };
            let numel = width * param.shape.first().copied().unwrap_or(1);
            let grad = sum_over_peers(peer, to_values(a.dense, a.rows)?, numel, width)?;
            let fisher = match options.fisher {
                true => Some(sum_over_peers(peer, to_values(a.dense_fisher, a.rows_fisher)?, numel, width)?),
                false => None,
            };
            sink(p, ParamGradient { grad, fisher })?;
            params_done += 1;
        }
        bexec.unload_params();
        progress(StreamStep { phase: "backward", done: done + 1, total: backward_total, block: seg.block });
    }
    let mut loss = [loss_sum];
    peer.sum(&mut loss)?;
    let loss_sum = loss[0];
    Ok(StreamSummary {
        samples: samples.len(),
        tokens: total_tokens,
        loss: loss_sum,
        segments: n_segs,
        forward_segments: n_segs - 1,
        backward_segments: backward_total,
        micro_batches: all_batches,
        largest_segment_params,
        params_done,
    })
}

/// Runs `model` forward layer by layer over `batches` (rows of one length each): each
/// segment's parameters are read once for all of them; `on_logits(batch, ids, logits)` takes
/// each batch's logits as the last segment makes them.
pub fn forward_streamed<B: Fused>(
    model: &Model,
    device: &B::Device,
    batches: &[Vec<Vec<u32>>],
    mut on_logits: impl FnMut(usize, &[Vec<u32>], burn::prelude::Tensor<B, 3>) -> Result<()>,
    mut progress: impl FnMut(StreamStep),
) -> Result<()> {
    let segs = Segments::of(&model.graph)?;
    let mut exec = Executor::<B>::program(model, device)?;
    exec.hold_linear_weights_transposed();
    let mut saved: Saved<B> = HashMap::new();
    let logits = segs.logits;
    let last = segs.len() - 1;
    forward_segments(
        &mut exec,
        model,
        &segs,
        0..segs.len(),
        batches,
        &mut saved,
        &|_| false,
        &|_| Vec::new(),
        |k, m, mut outs| {
            if k == last {
                match outs.remove(&logits) {
                    Some(DynTensor::F3(t)) => on_logits(m, &batches[m], t)?,
                    _ => return Err(err("the last segment does not give logits [batch, seq, vocab]")),
                }
            }
            Ok(outs)
        },
        &mut progress,
    )
}

/// Runs `model` forward layer by layer over `batches` (rows of one length each) and measures
/// the [`Moments`] of the values `taps` (each a value computed inside a segment, with whether
/// its whole second moment is wanted or its diagonal). The moments of a segment's taps go to
/// `on_segment` once every batch has run through it, before the next segment loads: memory
/// holds one segment's parameters and moments, never the model's.
pub fn input_moments<B: Fused>(
    model: &Model,
    device: &B::Device,
    batches: &[Vec<Vec<u32>>],
    taps: &[(ValueId, bool)],
    mut on_segment: impl FnMut(HashMap<ValueId, Moments>) -> Result<()>,
    mut progress: impl FnMut(StreamStep),
) -> Result<()> {
    let segs = Segments::of(&model.graph)?;
    let mut in_segment: Vec<Vec<(ValueId, bool)>> = vec![Vec::new(); segs.len()];
    for &(v, full) in taps {
        let k = segs
            .segments
            .iter()
            .position(|s| s.nodes.contains(&v.node))
            .ok_or_else(|| err(format!("value {v} is computed by no segment")))?;
        in_segment[k].push((v, full));
    }
    // the segments up to the last one with a tap (the head is never needed)
    let Some(last) = in_segment.iter().rposition(|t| !t.is_empty()) else { return Ok(()) };
    let mut exec = Executor::<B>::program(model, device)?;
    let mut saved: Saved<B> = HashMap::new();
    let acc: std::cell::RefCell<HashMap<ValueId, Moments>> = std::cell::RefCell::new(HashMap::new());
    let mut failed: Option<BackendError> = None;
    let mut report = |step: StreamStep| {
        // the segment just done: its moments are complete
        let done: HashMap<ValueId, Moments> = std::mem::take(&mut *acc.borrow_mut());
        if failed.is_none() && !done.is_empty() {
            if let Err(e) = on_segment(done) {
                failed = Some(e);
            }
        }
        progress(step);
    };
    let taps_of = |k: usize| in_segment[k].iter().map(|&(v, _)| v).collect::<Vec<_>>();
    forward_segments(
        &mut exec,
        model,
        &segs,
        0..last + 1,
        batches,
        &mut saved,
        &|_| false,
        &taps_of,
        |k, _, mut outs| {
            for &(v, full) in &in_segment[k] {
                let t = outs.remove(&v).ok_or_else(|| err(format!("value {v} was not computed")))?;
                let dims = t.dims();
                let dim = dims.last().copied().unwrap_or(0);
                let tokens: usize = dims[..dims.len().saturating_sub(1)].iter().product();
                let x = match t.reshape(&[tokens, dim])? {
                    DynTensor::F2(x) => x,
                    _ => return Err(err(format!("value {v} is not a float tensor"))),
                };
                let sum = DynTensor::F1(x.clone().sum_dim(0).reshape([dim])).to_f32()?;
                let gram = if full {
                    DynTensor::F2(x.clone().transpose().matmul(x)).to_f32()?
                } else {
                    DynTensor::F1((x.clone() * x).sum_dim(0).reshape([dim])).to_f32()?
                };
                let mut acc = acc.borrow_mut();
                let m = acc.entry(v).or_insert_with(|| Moments::new(dim, full));
                m.add(tokens, &sum, &gram).map_err(|e| err(format!("value {v}: {e}")))?;
            }
            Ok(outs)
        },
        &mut report,
    )?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `items` cut into consecutive groups of at most `budget` by `size` (each group holds at
/// least one item).
pub fn token_groups<T>(items: &[T], budget: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut groups = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && used + n > budget {
            groups.push(&items[start..i]);
            start = i;
            used = 0;
        }
        used += n;
    }
    if start < items.len() {
        groups.push(&items[start..]);
    }
    groups
}

/// Bytes of f32 activations per token that one segment's forward makes at most (every value's
/// fixed sizes; the sequence and batch axes count once): what sizes micro-batches.
pub fn activation_bytes_per_token(model: &Model) -> Result<usize> {
    most_per_segment(model, |seg| {
        let mut values = Vec::new();
        for &id in &seg.nodes {
            let node = model.graph.node(id)?;
            if !matches!(node.op, Op::Param { .. } | Op::Input { .. }) {
                values.extend(node.outputs().iter().map(|ty| ty.shape.fixed_product()));
            }
        }
        Ok(values)
    })
}

/// The largest, over `model`'s segments, of 4 bytes times the sum of the element counts
/// `sizes` gives for a segment.
fn most_per_segment(model: &Model, sizes: impl Fn(&prunec_ir::Segment) -> Result<Vec<usize>>) -> Result<usize> {
    let segs = Segments::of(&model.graph)?;
    let mut most = 0usize;
    for seg in &segs.segments {
        most = most.max(sizes(seg)?.iter().sum::<usize>() * 4);
    }
    Ok(most)
}

/// Parameters of the largest segment of `model` (what a streamed pass holds at once).
pub fn largest_segment_params(model: &Model) -> Result<usize> {
    Ok(segment_params(model, &Segments::of(&model.graph)?))
}

fn segment_params(model: &Model, segs: &Segments) -> usize {
    segs.segments
        .iter()
        .map(|s| s.params.iter().filter_map(|p| model.params.get(p)).map(|p| p.numel()).sum::<usize>())
        .max()
        .unwrap_or(0)
}

/// Bytes per token of the values crossing into the segment that reads the most (what a
/// streamed forward keeps for every token of a group between segments).
pub fn crossing_bytes_per_token(model: &Model) -> Result<usize> {
    most_per_segment(model, |seg| seg.inputs.iter().map(|&v| Ok(model.graph.value_type(v)?.shape.fixed_product())).collect())
}
