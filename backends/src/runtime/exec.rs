//! The IR lowered to Burn: an interpreter that runs each op of the graph, in topological
//! order, as Burn tensor ops on any backend (`Flex` on the CPU, `Cuda` on NVIDIA GPUs, each
//! wrapped in `Autodiff` when gradients are wanted). Values are dropped after their last use.
//! An optional key/value cache makes generation incremental. For training, only chosen
//! parameters need track gradients ([`Executor::require_grad_of`]), `dropout` ops are active
//! while [`Executor::set_training`] is on, and parameters can be replaced ([`Executor::set_param`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use burn::prelude::{Backend, Int, Tensor, TensorData};
use burn::tensor::activation;
use prunec_ir::rng::SplitMix64;
use prunec_ir::{BinaryOp, Dim, Model, NodeId, Op, PrefixPart, RopeLayout, UnaryOp, ValueId, ValueType};

use super::fused::{self, AttentionMask, Fused, FusedAutodiff};
use super::tensor::{float_map, float_zip, DynTensor};
use crate::{BackendError, Result};

mod guard;

/// Wall time per op kind of the interpreter's steps, kept when the environment sets
/// `PRUNEC_OP_PROFILE` (to anything but `0`): where a forward pass spends its time. Meaningful on
/// the CPU, whose ops finish before they return; on a GPU it times the launches. Under autodiff
/// it counts the forward pass and the recording of its graph, never the backward pass.
pub mod op_profile {
    use std::collections::BTreeMap;
    use std::sync::{LazyLock, Mutex};

    static ENABLED: LazyLock<bool> = LazyLock::new(|| std::env::var_os("PRUNEC_OP_PROFILE").is_some_and(|v| v != "0"));
    static TIMES: Mutex<BTreeMap<String, (u64, f64)>> = Mutex::new(BTreeMap::new());

    /// Whether steps are timed.
    pub fn enabled() -> bool {
        *ENABLED
    }

    pub(super) fn add(op: String, seconds: f64) {
        if let Ok(mut t) = TIMES.lock() {
            let e = t.entry(op).or_default();
            e.0 += 1;
            e.1 += seconds;
        }
    }

    /// The times kept since the last call, `(op, steps, seconds)`, longest first; clears them.
    pub fn take() -> Vec<(String, u64, f64)> {
        let times = TIMES.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        let mut v: Vec<_> = times.into_iter().map(|(k, (n, s))| (k, n, s)).collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }
}

fn err(msg: impl Into<String>) -> BackendError {
    BackendError::Lowering(msg.into())
}

/// One node, as the interpreter needs it.
#[derive(Debug, Clone)]
struct Step {
    id: NodeId,
    op: Op,
    name: String,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueType>,
    /// A `repeat_heads` read only by an attention op that repeats the heads itself: its input
    /// passes through ([`defer_head_repeats`]).
    pass_through: bool,
    /// An attention op whose keys and values come unrepeated: each key/value head's copies.
    kv_copies: Option<Vec<usize>>,
}

/// Keys and values of past positions, per attention node.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    /// Positions already seen.
    pub past: usize,
    entries: HashMap<NodeId, (Tensor<B, 4>, Tensor<B, 4>)>,
    /// The token ids seen (positions of a prefix-LM layout depend on all of them).
    history: Option<Tensor<B, 2, Int>>,
}

impl<B: Backend> Default for KvCache<B> {
    fn default() -> Self {
        KvCache { past: 0, entries: HashMap::new(), history: None }
    }
}

/// A model ready to run on backend `B`: its steps and its parameters as tensors (all of them,
/// or, for layer-streamed work, those of the segment at hand: see [`Executor::program`]).
#[derive(Debug)]
pub struct Executor<B: Backend> {
    device: B::Device,
    steps: Vec<Step>,
    /// Each node's step.
    step_of: HashMap<NodeId, usize>,
    /// Index of the step after which each value is no longer needed.
    last_use: HashMap<ValueId, usize>,
    params: HashMap<String, DynTensor<B>>,
    output: ValueId,
    /// Whether `dropout` ops drop (training) or pass their input (inference).
    training: bool,
    /// The masks of `dropout` ops: 32 random bits per element ([`Executor::seed_dropout`]).
    dropout: RefCell<SplitMix64>,
    /// Embedding tables whose lookups are tapped: the lookup's output becomes a leaf (through
    /// `leaf`), recorded with its ids, so that the table's gradient can be reduced from the
    /// output's gradient and the ids instead of as a dense tensor.
    tapped_tables: HashSet<String>,
    leaf: Option<fn(DynTensor<B>) -> DynTensor<B>>,
    taps: RefCell<Vec<EmbeddingTap<B>>>,
    /// Parameters held transposed, `[in, out]`: weights that only linear ops read, in an
    /// executor for inference ([`Executor::for_inference`]).
    transposed: HashSet<String>,
}

/// A tapped embedding lookup: the table's name, the lookup's output (a leaf) and its ids.
#[derive(Debug, Clone)]
pub struct EmbeddingTap<B: Backend> {
    /// The table.
    pub table: String,
    /// The looked-up rows, `[.., hidden]`, a leaf whose gradient is wanted.
    pub output: DynTensor<B>,
    /// The ids looked up.
    pub ids: DynTensor<B>,
}

/// cos and sin tables, `[batch, seq, heads, width]`, by (inverse frequencies' bits, interleaved,
/// attention factor's bits, offset, length, batch, heads).
type RopeTables<B> = HashMap<(Vec<u32>, bool, u32, usize, usize, usize, usize), (Tensor<B, 4>, Tensor<B, 4>)>;

struct Run<'a, B: Backend> {
    batch: usize,
    seq: usize,
    ids: Tensor<B, 2, Int>,
    cache: Option<&'a mut KvCache<B>>,
    ropes: RefCell<RopeTables<B>>,
}

impl<B: Fused> Executor<B> {
    /// Prepares `model` to run on `device`, reading every parameter into a tensor.
    pub fn new(model: &Model, device: &B::Device) -> Result<Executor<B>> {
        Executor::program(model, device)?.with_every_param(model)
    }

    /// This executor with every parameter of `model` loaded.
    fn with_every_param(mut self, model: &Model) -> Result<Executor<B>> {
        let names: Vec<String> = model.params.iter().map(|(n, _)| n.clone()).collect();
        self.load_params(model, &names)?;
        Ok(self)
    }

    /// Prepares `model`'s steps to run on `device` without reading any parameter: load those a
    /// segment needs with [`Executor::load_params`] before running it.
    pub fn program(model: &Model, device: &B::Device) -> Result<Executor<B>> {
        let g = &model.graph;
        let order = g.topological_order()?;
        let mut steps = Vec::with_capacity(order.len());
        let mut step_of = HashMap::with_capacity(order.len());
        let mut last_use = HashMap::new();
        let mut output = None;
        for (k, &id) in order.iter().enumerate() {
            let node = g.node(id)?;
            let inputs = g.inputs(id);
            for &v in &inputs {
                last_use.insert(v, k);
            }
            if let Op::Output { name } = &node.op {
                if name == "logits" {
                    output = inputs.first().copied();
                }
            }
            step_of.insert(id, k);
            steps.push(Step {
                id,
                op: node.op.clone(),
                name: node.name.clone(),
                inputs,
                outputs: node.outputs().to_vec(),
                pass_through: false,
                kv_copies: None,
            });
        }
        let output = output.ok_or_else(|| err("the graph has no `logits` output"))?;
        defer_head_repeats(&mut steps, &step_of);
        Ok(Executor {
            device: device.clone(),
            steps,
            step_of,
            last_use,
            params: HashMap::new(),
            output,
            training: false,
            dropout: RefCell::new(SplitMix64::new(0)),
            tapped_tables: HashSet::new(),
            leaf: None,
            taps: RefCell::new(Vec::new()),
            transposed: HashSet::new(),
        })
    }

    /// Prepares `model` to run forward passes only on `device`, reading every parameter: as
    /// [`Executor::new`], with the weights of linear ops held transposed
    /// ([`Executor::hold_linear_weights_transposed`]).
    pub fn for_inference(model: &Model, device: &B::Device) -> Result<Executor<B>> {
        let mut exec = Executor::program(model, device)?;
        exec.hold_linear_weights_transposed();
        exec.with_every_param(model)
    }

    /// Holds the weights that only linear ops read transposed, `[in, out]` row by row, as they
    /// are loaded from now on: a linear op then multiplies by a row-major matrix, which gemm
    /// does 5-30% faster than by the transposed view of `[out, in]` (SmolLM2's down projection:
    /// 2.1 against 2.8 ms for 4×128 tokens), with the same bits. For inference only: the
    /// gradient of such a parameter would be transposed too. [`Executor::params`] and
    /// [`Executor::map_param`] see them as held; [`Executor::set_param`] takes `[out, in]`.
    pub fn hold_linear_weights_transposed(&mut self) {
        // whether every use of a value is as a linear op's weight
        let mut only_weight: HashMap<ValueId, bool> = HashMap::new();
        for step in &self.steps {
            for (i, &v) in step.inputs.iter().enumerate() {
                let weight = matches!(step.op, Op::Linear) && i == 1;
                *only_weight.entry(v).or_insert(true) &= weight;
            }
        }
        self.transposed = self
            .steps
            .iter()
            .filter_map(|step| match &step.op {
                Op::Param { name, .. } if only_weight.get(&ValueId { node: step.id, output: 0 }) == Some(&true) => Some(name.clone()),
                _ => None,
            })
            .collect();
    }

    /// Reads parameters `names` of `model` into tensors (decoding them from their files now).
    pub fn load_params(&mut self, model: &Model, names: &[String]) -> Result<()> {
        use rayon::prelude::*;
        // decoded (dequantized, transposed) a few at a time over the pool, handed to the device
        // in order: at most a chunk's values wait on the host beside the loaded tensors
        let chunk = 2 * rayon::current_num_threads().max(1);
        for names in names.chunks(chunk) {
            let decoded = names
                .par_iter()
                .map(|name| {
                    let p = model.params.get(name).ok_or_else(|| err(format!("parameter `{name}` is not in the model")))?;
                    let values = model.params.read_f32(name)?;
                    Ok(match p.shape.as_slice() {
                        &[rows, cols] if self.transposed.contains(name) => (transpose(&values, rows, cols), vec![cols, rows]),
                        _ => (Arc::try_unwrap(values).unwrap_or_else(|shared| shared.as_ref().clone()), p.shape.clone()),
                    })
                })
                .collect::<Vec<Result<_>>>();
            // the first error in the order of `names`, as when they were read one by one
            for (name, decoded) in names.iter().zip(decoded) {
                let (values, shape) = decoded?;
                let tensor = DynTensor::from_f32(values, &shape, &self.device)?;
                self.params.insert(name.clone(), tensor);
            }
        }
        Ok(())
    }

    /// Drops every loaded parameter.
    pub fn unload_params(&mut self) {
        self.params.clear();
    }

    /// Replaces the tensor of a loaded parameter by `f` of it (marking it as a leaf, say).
    pub fn map_param(&mut self, name: &str, f: impl FnOnce(DynTensor<B>) -> DynTensor<B>) -> Result<()> {
        let t = self.params.remove(name).ok_or_else(|| err(format!("parameter `{name}` not loaded")))?;
        self.params.insert(name.to_string(), f(t));
        Ok(())
    }

    /// Taps the lookups of embedding `tables`: each lookup's output goes through `leaf` and is
    /// recorded with its ids (see [`Executor::take_taps`]).
    pub fn tap_embeddings(&mut self, tables: HashSet<String>, leaf: fn(DynTensor<B>) -> DynTensor<B>) {
        self.tapped_tables = tables;
        self.leaf = Some(leaf);
    }

    /// The lookups tapped since the last call.
    pub fn take_taps(&self) -> Vec<EmbeddingTap<B>> {
        std::mem::take(&mut *self.taps.borrow_mut())
    }

    /// Whether the weight of linear `step` (its second input) is a parameter held transposed.
    fn weight_held_transposed(&self, step: &Step) -> bool {
        step.inputs.get(1).and_then(|&v| self.param_name(v)).is_some_and(|n| self.transposed.contains(n))
    }

    /// The parameter that value `v` is, when it is one.
    fn param_name(&self, v: ValueId) -> Option<&str> {
        match &self.steps.get(*self.step_of.get(&v.node)?)?.op {
            Op::Param { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Switches `dropout` ops on (training) or off (inference, the default).
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// Restarts the generator of the `dropout` masks at `seed`: the masks of a forward pass
    /// depend only on the seed it starts from (so whichever peer runs a micro-batch draws its
    /// masks, when the seed is the micro-batch's).
    pub fn seed_dropout(&self, seed: u64) {
        *self.dropout.borrow_mut() = SplitMix64::new(seed);
    }

    /// Replaces the tensor of parameter `name` (same shape).
    pub fn set_param(&mut self, name: &str, tensor: DynTensor<B>) -> Result<()> {
        let tensor = match tensor {
            DynTensor::F2(w) if self.transposed.contains(name) => DynTensor::F2(w.transpose()),
            t => t,
        };
        let old = self.params.get_mut(name).ok_or_else(|| err(format!("parameter `{name}` not loaded")))?;
        if old.dims() != tensor.dims() {
            return Err(err(format!("parameter `{name}`: shape {:?} replaced by {:?}", old.dims(), tensor.dims())));
        }
        *old = tensor;
        Ok(())
    }

    /// The device.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The parameters as tensors, by name.
    pub fn params(&self) -> &HashMap<String, DynTensor<B>> {
        &self.params
    }

    /// Token ids `[batch, seq]` as a tensor on the device.
    pub fn ids(&self, rows: &[Vec<u32>]) -> Result<Tensor<B, 2, Int>> {
        let seq = rows.first().map_or(0, Vec::len);
        if seq == 0 || rows.iter().any(|r| r.len() != seq) {
            return Err(err("a batch needs rows of one, non-zero length"));
        }
        self.check_ids(rows)?;
        let flat: Vec<i64> = rows.iter().flatten().map(|&t| i64::from(t)).collect();
        Ok(Tensor::from_data(TensorData::new(flat, [rows.len(), seq]), &self.device))
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]`.
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>> {
        self.run(ids, None)
    }

    /// Logits for `ids` following the positions in `cache`, which is extended.
    pub fn forward_cached(&self, ids: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Result<Tensor<B, 3>> {
        let seq = ids.dims()[1];
        let out = self.run(ids.clone(), Some(cache))?;
        cache.past += seq;
        cache.history = Some(match cache.history.take() {
            Some(h) => Tensor::cat(vec![h, ids], 1),
            None => ids,
        });
        Ok(out)
    }

    fn run(&self, ids: Tensor<B, 2, Int>, cache: Option<&mut KvCache<B>>) -> Result<Tensor<B, 3>> {
        let [batch, seq] = ids.dims();
        let mut run = Run { batch, seq, ids, cache, ropes: RefCell::new(HashMap::new()) };
        let all: Vec<usize> = (0..self.steps.len()).collect();
        let mut values = self.run_steps(&all, &self.last_use, HashMap::new(), &[self.output], &mut run)?;
        Self::logits_of(values.remove(&self.output))
    }

    fn logits_of(value: Option<DynTensor<B>>) -> Result<Tensor<B, 3>> {
        match value {
            Some(DynTensor::F3(t)) => Ok(t),
            Some(other) => Err(err(format!("logits have shape {:?}, not [batch, seq, vocab]", other.dims()))),
            None => Err(err("logits were not computed")),
        }
    }

    /// Runs the steps `steps` (indices, in order) from `values` (what earlier steps computed
    /// that these read); a value is dropped after its last use in `last_use` (by step index)
    /// unless it is one of `keep`, which are returned.
    fn run_steps(
        &self,
        steps: &[usize],
        last_use: &HashMap<ValueId, usize>,
        mut values: HashMap<ValueId, DynTensor<B>>,
        keep: &[ValueId],
        run: &mut Run<'_, B>,
    ) -> Result<HashMap<ValueId, DynTensor<B>>> {
        for &k in steps {
            let step = &self.steps[k];
            let inputs = step
                .inputs
                .iter()
                .map(|v| values.get(v).cloned().ok_or_else(|| err(format!("value {v} used before it is computed"))))
                .collect::<Result<Vec<_>>>()?;
            for v in &step.inputs {
                if last_use.get(v) == Some(&k) && !keep.contains(v) {
                    values.remove(v);
                }
            }
            // the op and, for a linear op, its weight's shape
            let profiled = op_profile::enabled().then(|| {
                let key = match (&step.op, inputs.get(1)) {
                    // `[out, in]`, whichever way the weight is held
                    (Op::Linear, Some(w)) => {
                        let mut dims = w.dims();
                        if self.weight_held_transposed(step) {
                            dims.reverse();
                        }
                        format!("linear {dims:?}")
                    }
                    (op, _) => op.mnemonic().to_string(),
                };
                (key, std::time::Instant::now())
            });
            let outs = self.eval(step, inputs, run).map_err(|e| err(format!("node `{}` ({}): {e}", step.name, step.op.mnemonic())))?;
            if let Some((key, t)) = profiled {
                op_profile::add(key, t.elapsed().as_secs_f64());
            }
            for (j, t) in outs.into_iter().enumerate() {
                values.insert(ValueId { node: step.id, output: j as u16 }, t);
            }
        }
        keep.iter()
            .map(|v| values.remove(v).map(|t| (*v, t)).ok_or_else(|| err(format!("value {v} was not computed"))))
            .collect()
    }

    /// Runs one segment's `nodes` (in order) for token ids `ids`, from `inputs` (the values of
    /// earlier segments it reads), with the parameters loaded now; returns the values `outputs`.
    pub fn run_segment(
        &self,
        nodes: &[NodeId],
        ids: Tensor<B, 2, Int>,
        inputs: HashMap<ValueId, DynTensor<B>>,
        outputs: &[ValueId],
    ) -> Result<HashMap<ValueId, DynTensor<B>>> {
        let steps = nodes
            .iter()
            .map(|id| self.step_of.get(id).copied().ok_or_else(|| err(format!("node {id} is not in the program"))))
            .collect::<Result<Vec<usize>>>()?;
        let mut last_use = HashMap::new();
        for &k in &steps {
            for &v in &self.steps[k].inputs {
                last_use.insert(v, k);
            }
        }
        let [batch, seq] = ids.dims();
        let mut run = Run { batch, seq, ids, cache: None, ropes: RefCell::new(HashMap::new()) };
        self.run_steps(&steps, &last_use, inputs, outputs, &mut run)
    }

    fn shape_of(&self, ty: &ValueType, run: &Run<'_, B>) -> Result<Vec<usize>> {
        ty.shape
            .dims()
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Ok(*n),
                Dim::Sym(s) if s == "batch" => Ok(run.batch),
                Dim::Sym(s) if s == "seq" => Ok(run.seq),
                Dim::Sym(s) => Err(err(format!("no value for dimension `{s}`"))),
            })
            .collect()
    }

    fn eval(&self, step: &Step, mut inputs: Vec<DynTensor<B>>, run: &mut Run<'_, B>) -> Result<Vec<DynTensor<B>>> {
        let mut it = inputs.drain(..);
        let mut next = || it.next().ok_or_else(|| err("missing input"));
        let one = |t: DynTensor<B>| Ok(vec![t]);
        match &step.op {
            Op::Input { name, .. } => match name.as_str() {
                "input_ids" => one(DynTensor::I2(run.ids.clone())),
                other => Err(err(format!("no value for graph input `{other}`"))),
            },
            Op::Param { name, .. } => {
                one(self.params.get(name).cloned().ok_or_else(|| err(format!("parameter `{name}` not loaded")))?)
            }
            Op::Output { .. } => Ok(vec![]),
            Op::Embedding => {
                let table = next()?;
                let ids = next()?;
                let DynTensor::F2(table) = table else { return Err(err("the table must be a matrix")) };
                match &ids {
                    DynTensor::I2(i) => guard::check_gather(i, table.dims()[0])?,
                    DynTensor::I1(i) => guard::check_gather(i, table.dims()[0])?,
                    _ => {}
                }
                let looked_up = match ids.clone() {
                    DynTensor::I2(ids) => {
                        let [b, s] = ids.dims();
                        let rows = table.select(0, ids.reshape([b * s]));
                        let h = rows.dims()[1];
                        DynTensor::F3(rows.reshape([b, s, h]))
                    }
                    DynTensor::I1(ids) => DynTensor::F2(table.select(0, ids)),
                    _ => return Err(err("ids must be integers")),
                };
                let tapped = step.inputs.first().and_then(|v| self.param_name(*v)).filter(|n| self.tapped_tables.contains(*n));
                match (tapped, self.leaf) {
                    (Some(table), Some(leaf)) => {
                        let output = leaf(looked_up);
                        self.taps.borrow_mut().push(EmbeddingTap { table: table.to_string(), output: output.clone(), ids });
                        one(output)
                    }
                    _ => one(looked_up),
                }
            }
            Op::Linear => {
                let x = next()?;
                let DynTensor::F2(w) = next()? else { return Err(err("the weight must be a matrix")) };
                let bias = next().ok();
                let mut dims = x.dims();
                let inner = dims.pop().ok_or_else(|| err("scalar input"))?;
                let rows: usize = dims.iter().product();
                let DynTensor::F2(x2) = x.reshape(&[rows, inner])? else { return Err(err("reshape")) };
                // a weight held transposed is `[in, out]` already
                let mut y = if self.weight_held_transposed(step) { x2.matmul(w) } else { fused::linear(x2, w) };
                if let Some(DynTensor::F1(b)) = bias {
                    y = y + b.unsqueeze::<2>();
                }
                let out = y.dims()[1];
                dims.push(out);
                one(DynTensor::F2(y).reshape(&dims)?)
            }
            Op::MatMul => {
                let (a, b) = (next()?, next()?);
                let r = a.rank().max(b.rank());
                float_zip!(a.lift(r)?, b.lift(r)?, |x, y| x.matmul(y)).map(|t| vec![t])
            }
            Op::RmsNorm { eps, offset } => {
                let (x, w) = (next()?, next()?);
                let w = if *offset == 0.0 { w } else { float_map!(w, t => t.add_scalar(*offset))? };
                let eps = f64::from(*eps);
                let normed = float_map!(x, t => fused::rms_normalize(t, eps))?;
                one(binary(BinaryOp::Mul, w, normed)?)
            }
            Op::LayerNorm { eps } => {
                let (x, w, b) = (next()?, next()?, next()?);
                let axis = x.rank() - 1;
                let eps = *eps;
                let normed = float_map!(x, t => {
                    let mean = t.clone().mean_dim(axis);
                    let centered = t - mean;
                    let var = centered.clone().powi_scalar(2).mean_dim(axis);
                    centered * (var + eps).sqrt().recip()
                })?;
                one(binary(BinaryOp::Add, binary(BinaryOp::Mul, normed, w)?, b)?)
            }
            Op::Rope(rope) => {
                let DynTensor::F4(x) = next()? else { return Err(err("rope needs [batch, seq, heads, dim]")) };
                let positions = match next().ok() {
                    Some(DynTensor::I2(p)) => Some(p),
                    Some(_) => return Err(err("rope positions must be integers [batch, seq]")),
                    None => None,
                };
                let offset = run.cache.as_ref().map_or(0, |c| c.past);
                one(DynTensor::F4(self.rope(x, rope, offset, positions, run)?))
            }
            Op::PrefixLm { bos, masks, part } => {
                let DynTensor::I2(ids) = next()? else { return Err(err("prefix_lm needs token ids [batch, seq]")) };
                let full = match run.cache.as_ref().and_then(|c| c.history.clone()) {
                    Some(h) => Tensor::cat(vec![h, ids], 1),
                    None => ids,
                };
                let [b, t] = full.dims();
                let tokens: Vec<i64> =
                    full.into_data().convert::<i64>().into_vec::<i64>().map_err(|e| err(format!("{e:?}")))?;
                let layouts: Vec<PrefixLayout> =
                    tokens.chunks(t.max(1)).map(|row| PrefixLayout::of(row, i64::from(*bos), masks)).collect();
                let s = run.seq;
                if *part == PrefixPart::Length {
                    let lengths: Vec<i64> = layouts.iter().map(|l| l.prefix as i64).collect();
                    return one(DynTensor::I1(Tensor::from_data(TensorData::new(lengths, [b]), &self.device)));
                }
                // the positions of the last `s` tokens (all of them without a cache)
                let values: Vec<i64> = layouts
                    .iter()
                    .flat_map(|l| (t - s..t).map(move |i| l.position(i, *part)))
                    .collect();
                one(DynTensor::I2(Tensor::from_data(TensorData::new(values, [b, s]), &self.device)))
            }
            Op::RepeatHeads { .. } if step.pass_through => one(next()?),
            Op::RepeatHeads { copies } => one(match next()? {
                DynTensor::F2(t) => DynTensor::F2(fused::repeat_heads::<B, 2, 3>(t, copies)),
                DynTensor::F3(t) => DynTensor::F3(fused::repeat_heads::<B, 3, 4>(t, copies)),
                DynTensor::F4(t) => DynTensor::F4(fused::repeat_heads::<B, 4, 5>(t, copies)),
                _ => return Err(err("repeat_heads needs a float [.., heads, dim] of rank 2 to 4")),
            }),
            Op::Attention(attn) => {
                let (q, k, v) = (next()?, next()?, next()?);
                let prefix = match next().ok() {
                    Some(DynTensor::I1(p)) => {
                        Some(p.into_data().convert::<i64>().into_vec::<i64>().map_err(|e| err(format!("{e:?}")))?)
                    }
                    Some(_) => return Err(err("the prefix lengths must be integers [batch]")),
                    None => None,
                };
                let (DynTensor::F4(q), DynTensor::F4(mut k), DynTensor::F4(mut v)) = (q, k, v) else {
                    return Err(err("attention needs [batch, seq, heads, dim] operands"));
                };
                let mut past = 0;
                if let Some(cache) = run.cache.as_deref_mut() {
                    past = cache.past;
                    if let Some((pk, pv)) = cache.entries.get(&step.id) {
                        k = Tensor::cat(vec![pk.clone(), k], 1);
                        v = Tensor::cat(vec![pv.clone(), v], 1);
                    }
                    cache.entries.insert(step.id, (k.clone(), v.clone()));
                }
                let mask = AttentionMask { causal: attn.causal, window: attn.window, past, prefix, kv_copies: step.kv_copies.clone() };
                one(DynTensor::F4(fused::attention(q, k, v, attn.scale, &mask).swap_dims(1, 2)))
            }
            Op::Reshape { .. } | Op::SplitHeads { .. } | Op::MergeHeads => {
                let x = next()?;
                let ty = step.outputs.first().ok_or_else(|| err("reshape has no output type"))?;
                one(x.reshape(&self.shape_of(ty, run)?)?)
            }
            Op::Transpose { perm } => one(next()?.permute(perm)?),
            Op::Binary(op) => {
                let (a, b) = (next()?, next()?);
                one(binary(*op, a, b)?)
            }
            Op::Unary(op) => {
                let x = next()?;
                one(match *op {
                    UnaryOp::Silu => float_map!(x, t => fused::silu(t))?,
                    UnaryOp::Gelu => float_map!(x, t => activation::gelu(t))?,
                    UnaryOp::GeluTanh => float_map!(x, t => {
                        let inner = t.clone().mul(t.clone().powi_scalar(2).mul_scalar(0.044715).add_scalar(1.0)).mul_scalar(0.797_884_6);
                        t.clone().mul(inner.tanh().add_scalar(1.0)).mul_scalar(0.5)
                    })?,
                    UnaryOp::Sigmoid => float_map!(x, t => activation::sigmoid(t))?,
                    UnaryOp::Neg => float_map!(x, t => t.neg())?,
                    UnaryOp::Sqrt => float_map!(x, t => t.sqrt())?,
                    UnaryOp::Reciprocal => float_map!(x, t => t.recip())?,
                    UnaryOp::Exp => float_map!(x, t => t.exp())?,
                    UnaryOp::Tanh => float_map!(x, t => t.tanh())?,
                    UnaryOp::Scale(c) => float_map!(x, t => t.mul_scalar(c))?,
                })
            }
            Op::Concat { axis } => {
                let parts: Vec<DynTensor<B>> = std::iter::from_fn(|| next().ok()).collect();
                one(DynTensor::cat(parts, *axis)?)
            }
            Op::Slice { axis, start, end } => one(next()?.narrow(*axis, *start, end - start)?),
            Op::Softmax { axis } => one(float_map!(next()?, t => fused::softmax(t, *axis))?),
            Op::Dropout { p } => {
                let x = next()?;
                if !self.training || *p <= 0.0 {
                    return one(x);
                }
                // each element kept with probability `keep` (its 32 random bits below keep·2³²)
                // and scaled by 1/keep: one multiplication by a mask drawn here, ten times faster
                // than the backend's Bernoulli draws (a lock and a ChaCha draw per element)
                let dims = x.dims();
                let mask = dropout_mask(&mut self.dropout.borrow_mut(), dims.iter().product(), 1.0 - f64::from(*p));
                one(binary(BinaryOp::Mul, x, DynTensor::from_f32(mask, &dims, &self.device)?)?)
            }
        }
    }

    /// Rotary embedding of `x[batch, seq, heads, dim]` at `positions[batch, seq]`, or
    /// `offset..offset+seq` in every row.
    fn rope(
        &self,
        x: Tensor<B, 4>,
        rope: &prunec_ir::Rope,
        offset: usize,
        positions: Option<Tensor<B, 2, Int>>,
        run: &Run<'_, B>,
    ) -> Result<Tensor<B, 4>> {
        let [b, s, h, _] = x.dims();
        let r = rope.rotary_dims;
        let half = r / 2;
        let interleaved = rope.layout == RopeLayout::Interleaved;
        // as HF computes them, in f32: inv_freq = 1 / theta^(2i / r) (scaled: `Rope::inv_freq`);
        // angle = pos · inv_freq; cos and sin times the attention factor (YaRN's)
        let inv: Vec<f32> = rope
            .inv_freq(offset + s)
            .into_iter()
            .map(|f| if rope.half_freqs { half::f16::from_f32(f).to_f32() } else { f })
            .collect();
        let factor = rope.attention_factor();
        let width = if interleaved { half } else { r };
        let (cos, sin) = if let Some(positions) = positions {
            // per-row positions: angles on the device, [batch, seq, 1, width]
            let freqs: Vec<f32> = (0..width).map(|j| inv[j % half]).collect();
            let freqs = Tensor::<B, 1>::from_data(TensorData::new(freqs, [width]), &self.device).reshape([1, 1, width]);
            let angles = positions.float().reshape([b, s, 1]) * freqs;
            let (cos, sin) = (angles.clone().cos().reshape([b, s, 1, width]), angles.sin().reshape([b, s, 1, width]));
            if factor == 1.0 {
                (cos, sin)
            } else {
                (cos * factor, sin * factor)
            }
        } else {
            // the tables are written out for every row and head, [batch, seq, heads, width]:
            // the CPU's fused rope reads them so, and where it does not apply (f64) the
            // composition multiplies two operands of one shape with SIMD, whereas a [1, seq, 1,
            // width] table broadcast over the rows and heads Flex would walk element by element
            let key = (inv.iter().map(|f| f.to_bits()).collect(), interleaved, factor.to_bits(), offset, s, b, h);
            let mut tables = run.ropes.borrow_mut();
            tables
                .entry(key)
                .or_insert_with(|| {
                    let mut cos = Vec::with_capacity(s * width);
                    let mut sin = Vec::with_capacity(s * width);
                    for p in offset..offset + s {
                        for j in 0..width {
                            let a = p as f32 * inv[j % half];
                            cos.push(a.cos() * factor);
                            sin.push(a.sin() * factor);
                        }
                    }
                    let table = |v: Vec<f32>| {
                        let mut full = Vec::with_capacity(b * s * h * width);
                        for _ in 0..b {
                            for row in v.chunks(width) {
                                for _ in 0..h {
                                    full.extend_from_slice(row);
                                }
                            }
                        }
                        Tensor::<B, 4>::from_data(TensorData::new(full, [b, s, h, width]), &self.device)
                    };
                    (table(cos), table(sin))
                })
                .clone()
        };
        Ok(fused::rope(x, cos, sin, r, interleaved))
    }
}

impl<B: FusedAutodiff> Executor<B> {
    /// Marks every parameter as a leaf whose gradient is wanted.
    pub fn require_grad(&mut self) {
        let params = std::mem::take(&mut self.params);
        self.params = params.into_iter().map(|(n, t)| (n, t.require_grad())).collect();
    }

    /// Marks only the parameters `names` as leaves whose gradient is wanted; the others stay
    /// constants, so backward passes neither compute nor keep their gradients.
    pub fn require_grad_of(&mut self, names: &[String]) -> Result<()> {
        for name in names {
            let t = self.params.remove(name).ok_or_else(|| err(format!("parameter `{name}` not loaded")))?;
            self.params.insert(name.clone(), t.require_grad());
        }
        Ok(())
    }

    /// The same model on the inner (non-differentiating) backend, sharing the parameters'
    /// current values, for evaluation during training; `dropout` off.
    pub fn inference(&self) -> Executor<B::InnerBackend> {
        Executor {
            device: self.device.clone(),
            steps: self.steps.clone(),
            step_of: self.step_of.clone(),
            last_use: self.last_use.clone(),
            params: self.params.iter().map(|(n, t)| (n.clone(), t.clone().inner())).collect(),
            output: self.output,
            training: false,
            dropout: RefCell::new(SplitMix64::new(0)),
            tapped_tables: HashSet::new(),
            leaf: None,
            taps: RefCell::new(Vec::new()),
            transposed: self.transposed.clone(),
        }
    }
}

/// Lets each attention op whose keys and values are both `repeat_heads` outputs (the same copies,
/// `[batch, seq, kv heads, dim]`, read by nothing else) read them unrepeated: the attention
/// kernel takes each query head's key/value head in place (the composition repeats them
/// itself, by the same ops), so no copy of the repeated keys and values is made, and a key/value
/// cache holds them once per key/value head.
fn defer_head_repeats(steps: &mut [Step], step_of: &HashMap<NodeId, usize>) {
    let mut readers: HashMap<ValueId, usize> = HashMap::new();
    for step in steps.iter() {
        for &v in &step.inputs {
            *readers.entry(v).or_default() += 1;
        }
    }
    // the step of a repeat whose output is `v`, read once, rank 4, with its copies
    let repeat = |steps: &[Step], v: ValueId| -> Option<(usize, Vec<usize>)> {
        let k = *step_of.get(&v.node)?;
        match &steps[k].op {
            Op::RepeatHeads { copies }
                if v.output == 0 && readers.get(&v) == Some(&1) && steps[k].outputs.first()?.shape.dims().len() == 4 =>
            {
                Some((k, copies.clone()))
            }
            _ => None,
        }
    };
    for a in 0..steps.len() {
        if !matches!(steps[a].op, Op::Attention(_)) || steps[a].inputs.len() < 3 {
            continue;
        }
        let (k, v) = (steps[a].inputs[1], steps[a].inputs[2]);
        if let (Some((rk, ck)), Some((rv, cv))) = (repeat(steps, k), repeat(steps, v)) {
            if rk != rv && ck == cv {
                steps[rk].pass_through = true;
                steps[rv].pass_through = true;
                steps[a].kv_copies = Some(ck);
            }
        }
    }
}

/// The prefix-LM layout of one row of token ids, as ChatGLM-6B's `get_position_ids` and
/// `get_masks` derive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PrefixLayout {
    /// Index of the first `bos` (the answer starts there); the row's length when it has none.
    answer: usize,
    /// Index of the mask token (the position every answer token takes).
    mask: usize,
    /// Keys before it are seen by every query (0 without `bos`: plain causal attention).
    prefix: usize,
}

impl PrefixLayout {
    fn of(row: &[i64], bos: i64, masks: &[u32]) -> PrefixLayout {
        match row.iter().position(|&t| t == bos) {
            Some(answer) => {
                let mask = masks
                    .iter()
                    .find_map(|&m| row.iter().position(|&t| t == i64::from(m)))
                    .unwrap_or(answer.saturating_sub(1));
                PrefixLayout { answer, mask, prefix: answer }
            }
            None => PrefixLayout { answer: row.len(), mask: 0, prefix: 0 },
        }
    }

    fn position(&self, i: usize, part: PrefixPart) -> i64 {
        let (i, answer) = (i as i64, self.answer as i64);
        match part {
            PrefixPart::Positions if i < answer => i,
            PrefixPart::Positions => self.mask as i64,
            PrefixPart::BlockPositions if i < answer => 0,
            PrefixPart::BlockPositions => i - answer + 1,
            PrefixPart::Length => self.prefix as i64,
        }
    }
}

/// A `rows × cols` matrix, row by row, transposed: `cols × rows`. In tiles of 32 × 32, so that
/// both sides stay in cache, a band of 32 output rows a task over rayon's pool.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const TILE: usize = 32;
    let mut out = vec![0.0; values.len()];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(TILE * rows).enumerate().for_each(|(band, out)| {
        let c0 = band * TILE;
        let width = out.len() / rows;
        for r0 in (0..rows).step_by(TILE) {
            for c in 0..width {
                for r in r0..(r0 + TILE).min(rows) {
                    out[c * rows + r] = values[r * cols + c0 + c];
                }
            }
        }
    });
    out
}

/// A dropout mask of `n` elements: each `1/keep` with probability `keep` (its 32 random bits
/// below keep·2³²), else 0. Two elements a draw, in order; drawn in chunks over rayon's pool, each
/// from its own piece of the stream (`SplitMix64::take`), so the mask is the one a single loop
/// draws.
fn dropout_mask(rng: &mut SplitMix64, n: usize, keep: f64) -> Vec<f32> {
    const CHUNK: usize = 1 << 16; // elements, even: a chunk starts at a draw's first half
    let (threshold, scale) = ((keep * 4_294_967_296.0) as u64, (1.0 / keep) as f32);
    let pieces: Vec<SplitMix64> = (0..n).step_by(CHUNK).map(|start| rng.take(CHUNK.min(n - start).div_ceil(2) as u64)).collect();
    // written by the tasks, not zeroed first on the calling thread (LoRA's dropout draws a mask
    // the size of each adapter's input, 210 of them a step for SmolLM2)
    fused::output(n, CHUNK, |i, chunk| {
        let mut rng = pieces[i].clone();
        for pair in chunk.chunks_mut(2) {
            let bits = rng.next_u64();
            for (m, half) in pair.iter_mut().zip([bits & 0xFFFF_FFFF, bits >> 32]) {
                *m = if half < threshold { scale } else { 0.0 };
            }
        }
    })
}

/// An element-wise binary op with numpy broadcasting.
///
/// Speed: Flex runs a broadcast op with SIMD (in place when it can) only when the left operand
/// is the full, contiguous one and the right one is broadcast (`x * gamma`); the other way round
/// (`gamma * x`, as RMSNorm's weight comes first in the IR) it walks both operands element by
/// element, an order of magnitude slower. Addition and multiplication of floats commute exactly,
/// so their operands are put in that order; the values are the same bit for bit.
fn binary<B: Backend>(op: BinaryOp, a: DynTensor<B>, b: DynTensor<B>) -> Result<DynTensor<B>> {
    let r = a.rank().max(b.rank());
    let (a, b) = (a.lift(r)?, b.lift(r)?);
    let numel = |t: &DynTensor<B>| t.dims().iter().product::<usize>();
    let (a, b) = match op {
        BinaryOp::Add | BinaryOp::Mul if numel(&a) < numel(&b) => (b, a),
        _ => (a, b),
    };
    match op {
        BinaryOp::Add => float_zip!(a, b, |x, y| x + y),
        BinaryOp::Sub => float_zip!(a, b, |x, y| x - y),
        BinaryOp::Mul => float_zip!(a, b, |x, y| x * y),
        BinaryOp::Div => float_zip!(a, b, |x, y| x / y),
    }
}

/// Log-probability of each row's tokens `1..seq` predicted from `0..seq-1`: `[batch, seq-1]`.
///
/// One fused op (`Fused::token_log_probs`: no log-softmax of the whole logits is written out or
/// kept) over every position, the last one's too (whose prediction has no target and is dropped
/// after): the logits stay one contiguous tensor, which a view without the last position would
/// not be.
fn target_log_probs<B: Fused>(logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let s = logits.dims()[1];
    // each position's next token; the last position takes the first token, any valid index
    let targets = Tensor::cat(vec![ids.clone().narrow(1, 1, s - 1), ids.narrow(1, 0, 1)], 1);
    fused::token_log_probs(logits, targets).narrow(1, 0, s - 1)
}

/// Mean negative log-likelihood of each row's tokens `1..seq` predicted from `0..seq-1`
/// (the causal-LM loss), as a scalar tensor `[1]`.
pub fn causal_lm_loss<B: Fused>(logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    target_log_probs(logits, ids).mean().neg()
}

/// Sum of negative log-likelihoods per row `[batch]`, over tokens `1..seq`.
pub fn row_nll<B: Fused>(logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let b = ids.dims()[0];
    target_log_probs(logits, ids).sum_dim(1).reshape([b]).neg()
}

/// Sum of negative log-likelihoods of the tokens `mask` marks (`mask[b, t]` 1: token `t` is a
/// target, predicted from `..t`; 0: padding or a prompt token; column 0 is never predicted),
/// as a scalar tensor `[1]`.
pub fn masked_nll<B: Fused>(logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>, mask: Tensor<B, 2>) -> Tensor<B, 1> {
    let s = ids.dims()[1];
    (target_log_probs(logits, ids) * mask.narrow(1, 1, s - 1)).sum().neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(row: &[i64]) -> (Vec<i64>, Vec<i64>, i64) {
        let l = PrefixLayout::of(row, 252, &[251, 250]);
        let at = |p| (0..row.len()).map(|i| l.position(i, p)).collect::<Vec<_>>();
        (at(PrefixPart::Positions), at(PrefixPart::BlockPositions), l.position(0, PrefixPart::Length))
    }

    /// The fixtures README's position ids of ChatGLM-6B's golden rows.
    #[test]
    fn prefix_layout_matches_chatglm6b() {
        let (p, b, n) = parts(&[244, 4, 122, 202, 234, 251, 252, 135, 64, 34, 224, 26]);
        assert_eq!(p, [0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5]);
        assert_eq!(b, [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(n, 6);
        let (p, b, n) = parts(&[13, 219, 184, 17, 6, 219, 55, 128, 251, 252, 114, 68]);
        assert_eq!(p, [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8]);
        assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        assert_eq!(n, 9);
    }

    #[test]
    fn transposed_matrices_swap_rows_and_columns() {
        for (rows, cols) in [(1, 1), (3, 70), (70, 3), (65, 33), (0, 4)] {
            let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let t = transpose(&values, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], values[r * cols + c], "{rows}×{cols} at ({r}, {c})");
                }
            }
        }
    }

    #[test]
    fn dropout_masks_keep_the_asked_share() {
        for keep in [0.95, 0.5, 0.1] {
            let n = 200_001;
            let mask = dropout_mask(&mut SplitMix64::new(9), n, keep);
            assert_eq!(mask.len(), n);
            assert!(mask.iter().all(|&m| m == 0.0 || m == (1.0 / keep) as f32));
            let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / n as f64;
            // binomial: the standard deviation of the share is below 0.0012 here
            assert!((kept - keep).abs() < 0.006, "keep {keep}: {kept}");
            assert_eq!(mask, dropout_mask(&mut SplitMix64::new(9), n, keep), "a seed gives its mask");
            assert_ne!(mask, dropout_mask(&mut SplitMix64::new(10), n, keep));
            // drawn in chunks, the mask of a single loop over the stream, which ends where the
            // loop's would (n is odd: the last draw's upper half is unused)
            let mut rng = SplitMix64::new(9);
            let mut one_loop = Vec::new();
            while one_loop.len() < n {
                let bits = rng.next_u64();
                for half in [bits & 0xFFFF_FFFF, bits >> 32] {
                    one_loop.push(if half < (keep * 4_294_967_296.0) as u64 { (1.0 / keep) as f32 } else { 0.0 });
                }
            }
            one_loop.truncate(n);
            assert_eq!(mask, one_loop);
            let mut chunked = SplitMix64::new(9);
            dropout_mask(&mut chunked, n, keep);
            assert_eq!(chunked.next_u64(), rng.next_u64(), "the generator is left where the loop leaves it");
        }
    }

    #[test]
    fn rows_without_bos_are_plain_text() {
        let (p, b, n) = parts(&[5, 6, 7]);
        assert_eq!((p, b, n), (vec![0, 1, 2], vec![0, 0, 0], 0));
        // [MASK] when there is no [gMASK]; the token before <sop> when there is neither
        assert_eq!(parts(&[5, 250, 6, 252, 7]).0, [0, 1, 2, 1, 1]);
        assert_eq!(parts(&[5, 6, 252, 7]).0, [0, 1, 1, 1]);
    }
}
