//! A LLaMA recognised in an IR graph by its structure alone — an ONNX export raised to the IR,
//! whose weights are named anything (`model.layers.0.self_attn.q_proj.weight`,
//! `onnx::MatMul_123`, onnxruntime-genai's names) — and rebuilt as a model of the LLaMA
//! architecture ([`as_llama`]), so that LLaMA's writers (its GGUF plan) write it.
//!
//! What is recognised, walking back from the logits:
//!
//! - the LM head, a linear op without a bias over the final RMSNorm; tied when its weight is
//!   the embedding's table;
//! - the residual stream: additions of a branch back to the embedding of the token ids; each
//!   branch reads the stream through an RMSNorm of its own;
//! - an attention branch: q, k and v linear ops over one norm (biases allowed, as Qwen2's;
//!   or one fused projection cut into the three by slices, as onnxruntime-genai writes it),
//!   split into heads, q and k through one rotary embedding (half-split, as HF's LLaMA, or
//!   interleaved, as Meta's: its q/k rows are put in HF's order), key/value heads repeated
//!   for their query heads (unevenly after pruning), causal attention scaled by
//!   `1/√head_dim` (transposes and reshapes that compose to nothing between it and the
//!   merge, as dynamo exports have, are passed through), heads merged, the o projection;
//! - an MLP branch: `down(silu(gate(x)) · up(x))`;
//! - the numbers: hidden size and vocabulary from the embedding, each layer's query and
//!   key/value heads and MLP channels (a pruned model's layers differ), head width, rotary base
//!   and scaling, the norms' epsilon.
//!
//! Branches pair into layers in order (an attention branch and the MLP branch after it; a
//! branch pruning emptied is gone from the graph, and its layer keeps the other). Every node of
//! the graph must be a part of this structure: anything else — an op LLaMA has not, a sliding
//! window, a rotary embedding of part of a head, norms of different epsilons, per-head q/k
//! norms — is refused with an error naming the model and what was not recognised, never
//! written as a different model.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prunec_ir::{BinaryOp, Model, ModelInfo, NodeId, Op, Param, ParamStore, Rope, RopeLayout, UnaryOp, ValueId};

use super::{LayerWidths, LlamaConfig, Variant};
use crate::error::{FrontendError, Result};

/// What [`as_llama`] expects, as its errors say it.
const EXPECTED: &str = "a LLaMA-family decoder";

/// A linear op recognised: its input, weight and bias parameters.
#[derive(Debug, Clone)]
struct Projection {
    /// What it multiplies.
    input: ValueId,
    /// The weight's parameter (`[out, in]`).
    weight: String,
    /// The bias's parameter, when it has one.
    bias: Option<String>,
    /// The rows of a fused projection this one is (onnxruntime-genai's `qkv_proj` cut by
    /// slices); `None`: all.
    rows: Option<std::ops::Range<usize>>,
}

/// An RMSNorm recognised: what it normalises, its weight and epsilon.
#[derive(Debug, Clone)]
struct Norm {
    input: ValueId,
    weight: String,
    eps: f32,
}

/// An attention branch.
#[derive(Debug, Clone)]
struct AttentionBranch {
    norm: Norm,
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    heads: usize,
    kv_heads: usize,
    /// Query heads per key/value head.
    copies: Vec<usize>,
    head_dim: usize,
    rope: Rope,
}

/// An MLP branch.
#[derive(Debug, Clone)]
struct MlpBranch {
    norm: Norm,
    gate: Projection,
    up: Projection,
    down: Projection,
}

/// One branch of the residual stream.
#[derive(Debug, Clone)]
enum Branch {
    Attention(Box<AttentionBranch>),
    Mlp(Box<MlpBranch>),
}

/// A decoder layer: its attention and MLP branches (either may be gone).
#[derive(Debug, Clone, Default)]
struct Layer {
    attention: Option<AttentionBranch>,
    mlp: Option<MlpBranch>,
}

/// The walk over `model`'s graph: every node it recognises is marked.
struct Walk<'m> {
    model: &'m Model,
    path: PathBuf,
    seen: BTreeSet<NodeId>,
}

impl<'m> Walk<'m> {
    fn refuse(&self, reason: impl Into<String>) -> FrontendError {
        FrontendError::NotRecognised { path: self.path.clone(), expected: EXPECTED, reason: reason.into() }
    }

    fn op(&self, v: ValueId) -> Result<&'m Op> {
        let model = self.model;
        model.graph.node(v.node).map(|n| &n.op).map_err(|e| FrontendError::Ir { path: self.path.clone(), source: e })
    }

    fn inputs(&self, v: ValueId) -> Vec<ValueId> {
        self.model.graph.inputs(v.node)
    }

    /// The node of `v` for people: its op, its index and the parameters it reads.
    fn describe(&self, v: ValueId) -> String {
        let g = &self.model.graph;
        let Ok(node) = g.node(v.node) else { return format!("{}", v.node) };
        let params: Vec<String> = g
            .inputs(v.node)
            .iter()
            .filter_map(|i| match g.node(i.node).ok().map(|n| &n.op) {
                Some(Op::Param { name, .. }) => Some(format!("`{name}`")),
                _ => None,
            })
            .collect();
        let reading = if params.is_empty() { String::new() } else { format!(" reading {}", params.join(", ")) };
        format!("`{}` op {}{reading}", node.op.mnemonic(), v.node)
    }

    /// Marks the node of `v` as part of the structure.
    fn mark(&mut self, v: ValueId) {
        self.seen.insert(v.node);
    }

    /// The parameter `v` is (marked), if it is one.
    fn param(&mut self, v: ValueId) -> Result<Option<String>> {
        match self.op(v)? {
            Op::Param { name, .. } => {
                self.mark(v);
                Ok(Some(name.clone()))
            }
            _ => Ok(None),
        }
    }

    /// The shape of parameter `name`.
    fn shape(&self, name: &str) -> &'m [usize] {
        let model = self.model;
        model.params.get(name).map_or(&[], |p| p.shape.as_slice())
    }

    /// The output width of `p`.
    fn out_rows(&self, p: &Projection) -> usize {
        match &p.rows {
            Some(r) => r.len(),
            None => self.shape(&p.weight).first().copied().unwrap_or(0),
        }
    }

    /// `v` as a linear op (`x·wᵀ`, its bias in the op or added to it), or a slice of the last
    /// axis of one (a fused projection's part), marked; `None` when it is not one.
    fn projection(&mut self, v: ValueId) -> Result<Option<Projection>> {
        if let Op::Slice { axis, start, end } = self.op(v)? {
            let rank = self.model.graph.value_type(v).map(|t| t.rank()).unwrap_or(0);
            let Some(inner) = self.inputs(v).first().copied() else { return Ok(None) };
            if *axis + 1 != rank {
                return Ok(None);
            }
            let (start, end) = (*start, *end);
            let Some(whole) = self.projection(inner)? else { return Ok(None) };
            if whole.rows.is_some() || end > self.out_rows(&whole) || start >= end {
                return Ok(None);
            }
            self.mark(v);
            return Ok(Some(Projection { rows: Some(start..end), ..whole }));
        }
        let (linear, added_bias) = match self.op(v)? {
            Op::Linear => (v, None),
            Op::Binary(BinaryOp::Add) => {
                let ins = self.inputs(v);
                let is_linear = |w: &Self, x: ValueId| w.op(x).is_ok_and(|o| matches!(o, Op::Linear));
                let is_param = |w: &Self, x: ValueId| w.op(x).is_ok_and(|o| matches!(o, Op::Param { .. }));
                match ins.as_slice() {
                    [a, b] if is_linear(self, *a) && is_param(self, *b) => (*a, Some(*b)),
                    [a, b] if is_param(self, *a) && is_linear(self, *b) => (*b, Some(*a)),
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let ins = self.inputs(linear);
        let (input, w, b) = match ins.as_slice() {
            [x, w] => (*x, *w, added_bias),
            [x, w, b] if added_bias.is_none() => (*x, *w, Some(*b)),
            _ => return Ok(None),
        };
        let Some(weight) = self.param(w)? else {
            return Err(self.refuse(format!("{} multiplies by a computed matrix, not a weight", self.describe(linear))));
        };
        let out = self.shape(&weight).first().copied().unwrap_or(0);
        let bias = match b {
            None => None,
            Some(b) => match self.param(b)? {
                Some(name) if self.shape(&name) == [out] => Some(name),
                _ => return Ok(None),
            },
        };
        self.mark(linear);
        self.mark(v);
        Ok(Some(Projection { input, weight, bias, rows: None }))
    }

    /// [`Walk::projection`], or an error saying that `what` is not a linear op.
    fn need_projection(&mut self, v: ValueId, what: &str) -> Result<Projection> {
        match self.projection(v)? {
            Some(p) => Ok(p),
            None => Err(self.refuse(format!("{what} is {}, not a linear projection", self.describe(v)))),
        }
    }

    /// `v` as an RMSNorm with a weight (marked); `None` when it is not one.
    fn norm(&mut self, v: ValueId) -> Result<Option<Norm>> {
        let Op::RmsNorm { eps, offset } = self.op(v)? else { return Ok(None) };
        if *offset != 0.0 {
            return Err(self.refuse(format!("{} adds {offset} to its weight (Gemma's norms), which LLaMA's do not", self.describe(v))));
        }
        let ins = self.inputs(v);
        let [input, w] = ins.as_slice() else { return Ok(None) };
        let Some(weight) = self.param(*w)? else { return Ok(None) };
        self.mark(v);
        Ok(Some(Norm { input: *input, weight, eps: *eps }))
    }

    /// The branch added to the residual stream `residual` as `y`: `None` when `y` is not a
    /// linear projection of something read through a norm of `residual`.
    fn branch(&mut self, y: ValueId, residual: ValueId) -> Result<Option<Branch>> {
        let saved = self.seen.clone();
        let Some(out) = self.projection(y)? else {
            self.seen = saved;
            return Ok(None);
        };
        match self.op(out.input)? {
            Op::Binary(BinaryOp::Mul) => self.mlp(out, residual).map(|m| Some(Branch::Mlp(Box::new(m)))),
            Op::MergeHeads | Op::Reshape { .. } => self.attention(out, residual).map(|a| Some(Branch::Attention(Box::new(a)))),
            _ => {
                self.seen = saved;
                Ok(None)
            }
        }
    }

    /// The norm that `p` reads, which must read `residual`.
    fn branch_norm(&mut self, p: &Projection, residual: ValueId, what: &str) -> Result<Norm> {
        match self.norm(p.input)? {
            Some(n) if n.input == residual => Ok(n),
            Some(_) => Err(self.refuse(format!("the norm before the {what} does not read the residual stream"))),
            None => Err(self.refuse(format!("the {what} reads {}, not an RMSNorm of the residual stream", self.describe(p.input)))),
        }
    }

    /// The MLP whose down projection is `down`: `down(silu(gate(n)) · up(n))`, `n` a norm of
    /// `residual`.
    fn mlp(&mut self, down: Projection, residual: ValueId) -> Result<MlpBranch> {
        let product = down.input;
        self.mark(product);
        let ins = self.inputs(product);
        let [a, b] = ins.as_slice() else { return Err(self.refuse(format!("{} is not a product of two values", self.describe(product)))) };
        let silu = |w: &Self, v: ValueId| w.op(v).is_ok_and(|o| matches!(o, Op::Unary(UnaryOp::Silu)));
        let (act, up) = if silu(self, *a) {
            (*a, *b)
        } else if silu(self, *b) {
            (*b, *a)
        } else {
            return Err(self.refuse(format!(
                "the MLP product {} has no SiLU operand (reads {} and {}): LLaMA's MLP is down(silu(gate(x)) · up(x))",
                self.describe(product),
                self.describe(*a),
                self.describe(*b)
            )));
        };
        self.mark(act);
        let gate_value = self.inputs(act).first().copied().ok_or_else(|| self.refuse("a SiLU without an input"))?;
        let gate = self.need_projection(gate_value, "the MLP's gate (the SiLU's input)")?;
        let up = self.need_projection(up, "the MLP's up projection (the product's other operand)")?;
        if gate.input != up.input {
            return Err(self.refuse("the MLP's gate and up projections read different values"));
        }
        let norm = self.branch_norm(&gate, residual, "MLP")?;
        Ok(MlpBranch { norm, gate, up, down })
    }

    /// `v` without a merge of its last two axes (`MergeHeads`, or a reshape doing it), marked.
    fn unmerge(&mut self, v: ValueId) -> Result<ValueId> {
        let model = self.model;
        let g = &model.graph;
        let inner = self.inputs(v).first().copied().ok_or_else(|| self.refuse("a merge without an input"))?;
        let ok = match self.op(v)? {
            Op::MergeHeads => true,
            Op::Reshape { .. } => {
                let (from, to) = (g.value_type(inner), g.value_type(v));
                match (from, to) {
                    (Ok(f), Ok(t)) => {
                        let (f, t) = (&f.shape.0, &t.shape.0);
                        f.len() == 4 && t.len() == 3 && f[..2] == t[..2] && match (f[2].fixed(), f[3].fixed(), t[2].fixed()) {
                            (Some(h), Some(d), Some(n)) => h * d == n,
                            _ => false,
                        }
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !ok {
            return Err(self.refuse(format!("the o projection reads {}, not the attention's heads merged", self.describe(v))));
        }
        self.mark(v);
        Ok(inner)
    }

    /// `v` before a chain of transposes and reshapes that leave it as it was (the composed
    /// permutation the identity, each reshape keeping its shape: dynamo's round trip through
    /// `[b, h, s, d]`), marked; `v` itself when there is none.
    fn through_layout(&mut self, v: ValueId) -> Result<ValueId> {
        let model = self.model;
        let g = &model.graph;
        let mut chain = Vec::new();
        let mut at = v;
        let mut perm: Option<Vec<usize>> = None;
        while let Some(inner) = self.inputs(at).first().copied() {
            match self.op(at)? {
                Op::Transpose { perm: p } => {
                    let c = perm.get_or_insert_with(|| (0..p.len()).collect());
                    if c.len() != p.len() {
                        break;
                    }
                    for x in c.iter_mut() {
                        *x = p.get(*x).copied().unwrap_or(usize::MAX);
                    }
                }
                Op::Reshape { .. } if g.value_type(inner).ok().map(|t| &t.shape) == g.value_type(at).ok().map(|t| &t.shape) => {}
                _ => break,
            }
            chain.push(at);
            at = inner;
            if perm.as_ref().is_none_or(|c| c.iter().enumerate().all(|(i, &x)| i == x)) {
                // the identity so far: take it
                for &n in &chain {
                    self.mark(n);
                }
                return self.through_layout(at);
            }
        }
        Ok(v)
    }

    /// `v` split into `(heads, head width)` from a linear projection: `SplitHeads`, or a
    /// reshape splitting the last axis. The projection and its split are marked.
    fn split(&mut self, v: ValueId, what: &str) -> Result<(Projection, usize, usize)> {
        let model = self.model;
        let g = &model.graph;
        let inner = self.inputs(v).first().copied().ok_or_else(|| self.refuse(format!("the {what} has no input")))?;
        let heads = match self.op(v)? {
            Op::SplitHeads { heads } => Some(*heads),
            Op::Reshape { .. } => match (g.value_type(inner), g.value_type(v)) {
                (Ok(f), Ok(t)) => {
                    let (f, t) = (&f.shape.0, &t.shape.0);
                    match (f.len(), t.len()) {
                        (3, 4) if f[..2] == t[..2] && f[2].fixed().zip(t[2].fixed()).zip(t[3].fixed()).is_some_and(|((n, h), d)| n == h * d) => t[2].fixed(),
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        };
        let Some(heads) = heads else {
            return Err(self.refuse(format!("the attention's {what} are {}, not a projection split into heads", self.describe(v))));
        };
        self.mark(v);
        let p = self.need_projection(inner, &format!("the attention's {what} before their split into heads"))?;
        let rows = self.out_rows(&p);
        if heads == 0 || !rows.is_multiple_of(heads) {
            return Err(self.refuse(format!("`{}` has {rows} rows, not whole heads of {heads}", p.weight)));
        }
        Ok((p, heads, rows / heads))
    }

    /// `v` without a repetition of its heads (marked): the value and the copies of each head
    /// (`None` when not repeated).
    fn unrepeat(&mut self, v: ValueId) -> Result<(ValueId, Option<Vec<usize>>)> {
        match self.op(v)? {
            Op::RepeatHeads { copies } => {
                self.mark(v);
                let inner = self.inputs(v).first().copied().ok_or_else(|| self.refuse("a head repetition without an input"))?;
                Ok((inner, Some(copies.clone())))
            }
            _ => Ok((v, None)),
        }
    }

    /// `v` as a rotary embedding (marked, its positions input too): the value it rotates and
    /// the rotation.
    fn rope(&mut self, v: ValueId, what: &str) -> Result<(ValueId, Rope)> {
        let Op::Rope(rope) = self.op(v)? else {
            return Err(self.refuse(format!("the attention's {what} are {}, not a rotary embedding of them", self.describe(v))));
        };
        self.mark(v);
        let ins = self.inputs(v);
        match ins.as_slice() {
            [x] => Ok((*x, *rope)),
            // positions given as an input (optimum's `position_ids`): llama.cpp counts them
            [x, pos] if matches!(self.op(*pos)?, Op::Input { .. }) => {
                self.mark(*pos);
                Ok((*x, *rope))
            }
            _ => Err(self.refuse(format!("{} reads computed positions", self.describe(v)))),
        }
    }

    /// The attention whose o projection is `o`, its q/k/v read through a norm of `residual`.
    fn attention(&mut self, o: Projection, residual: ValueId) -> Result<AttentionBranch> {
        let merged = self.unmerge(o.input)?;
        let heads_out = self.through_layout(merged)?;
        let Op::Attention(attention) = self.op(heads_out)? else {
            return Err(self.refuse(format!("the o projection reads {} merged, not an attention", self.describe(heads_out))));
        };
        let attention = *attention;
        self.mark(heads_out);
        let ins = self.inputs(heads_out);
        let [q, k, v] = ins.as_slice() else {
            return Err(self.refuse(format!("{} is a prefix-LM attention (GLM's), not a causal one", self.describe(heads_out))));
        };
        if !attention.causal {
            return Err(self.refuse(format!("{} is not causal", self.describe(heads_out))));
        }
        if let Some(w) = attention.window {
            return Err(self.refuse(format!("{} has a sliding window of {w} positions, which LLaMA's attention has not", self.describe(heads_out))));
        }
        let (q_rot, rope) = self.rope(*q, "queries")?;
        let (k_rep, k_copies) = self.unrepeat(*k)?;
        let (k_rot, k_rope) = self.rope(k_rep, "keys")?;
        let (v_split, v_copies) = self.unrepeat(*v)?;
        if k_rope != rope {
            return Err(self.refuse(format!("the queries and keys of {} rotate differently ({rope:?} and {k_rope:?})", self.describe(heads_out))));
        }
        if k_copies != v_copies {
            return Err(self.refuse(format!("{}: keys and values are repeated differently ({k_copies:?} and {v_copies:?})", self.describe(heads_out))));
        }
        if matches!(self.op(q_rot)?, Op::RmsNorm { .. }) || matches!(self.op(k_rot)?, Op::RmsNorm { .. }) {
            return Err(self.refuse(format!("{} normalises each head of q and k (Qwen3's q/k norms), which LLaMA does not", self.describe(heads_out))));
        }
        let (q, heads, head_dim) = self.split(q_rot, "queries")?;
        let (k, kv_heads, k_dim) = self.split(k_rot, "keys")?;
        let (v, v_heads, v_dim) = self.split(v_split, "values")?;
        if (k_dim, v_dim, v_heads) != (head_dim, head_dim, kv_heads) {
            return Err(self.refuse(format!(
                "{}: {heads} query heads of {head_dim}, {kv_heads} key heads of {k_dim}, {v_heads} value heads of {v_dim}: LLaMA's heads are all one width, keys and values as many",
                self.describe(heads_out)
            )));
        }
        let copies = k_copies.unwrap_or_else(|| vec![1; kv_heads]);
        if copies.len() != kv_heads || copies.iter().sum::<usize>() != heads {
            return Err(self.refuse(format!("{}: {kv_heads} key/value heads repeated {copies:?} times for {heads} query heads", self.describe(heads_out))));
        }
        if rope.rotary_dims != head_dim {
            return Err(self.refuse(format!("the rotary embedding turns {} of the {head_dim} dimensions of a head: LLaMA turns them all", rope.rotary_dims)));
        }
        if rope.half_freqs {
            return Err(self.refuse("the rotary frequencies are rounded to f16 (ChatGLM-6B's), which LLaMA's are not"));
        }
        let want = 1.0 / (head_dim as f32).sqrt();
        if ((attention.scale - want) / want).abs() > 1e-5 {
            return Err(self.refuse(format!("{} scales q·kᵀ by {}, not 1/√{head_dim} as LLaMA does", self.describe(heads_out), attention.scale)));
        }
        if q.input != k.input || q.input != v.input {
            return Err(self.refuse(format!("the q, k and v projections of {} read different values", self.describe(heads_out))));
        }
        let norm = self.branch_norm(&q, residual, "attention")?;
        Ok(AttentionBranch { norm, q, k, v, o, heads, kv_heads, copies, head_dim, rope })
    }
}

/// What was recognised: the layers and the parameters outside them.
struct Recognised {
    embedding: String,
    final_norm: Norm,
    lm_head: Option<String>,
    layers: Vec<Layer>,
}

/// Walks `model`'s graph back from its logits (see the module documentation).
fn recognise(walk: &mut Walk) -> Result<Recognised> {
    let model = walk.model;
    let g = &model.graph;
    let outputs: Vec<NodeId> = g.node_ids().into_iter().filter(|&id| g.node(id).is_ok_and(|n| matches!(n.op, Op::Output { .. }))).collect();
    let [output] = outputs.as_slice() else {
        return Err(walk.refuse(format!("the graph has {} outputs, not one (the logits)", outputs.len())));
    };
    walk.seen.insert(*output);
    let logits = g.inputs(*output).first().copied().ok_or_else(|| walk.refuse("the output has no value"))?;
    let head = walk.need_projection(logits, "the output")?;
    if head.bias.is_some() {
        return Err(walk.refuse("the LM head has a bias, which LLaMA's has not"));
    }
    let final_norm = match walk.norm(head.input)? {
        Some(n) => n,
        None => return Err(walk.refuse(format!("the LM head reads {}, not a final RMSNorm", walk.describe(head.input)))),
    };
    let mut branches = Vec::new();
    let mut h = final_norm.input;
    let embedding = loop {
        match walk.op(h)? {
            Op::Embedding => {
                walk.mark(h);
                let ins = walk.inputs(h);
                let [table, ids] = ins.as_slice() else { return Err(walk.refuse("an embedding without a table and ids")) };
                if !matches!(walk.op(*ids)?, Op::Input { .. }) {
                    return Err(walk.refuse(format!("the embedding looks up {}, not the token ids", walk.describe(*ids))));
                }
                walk.mark(*ids);
                match walk.param(*table)? {
                    Some(t) => break t,
                    None => return Err(walk.refuse("the embedding's table is computed, not a weight")),
                }
            }
            Op::Binary(BinaryOp::Add) => {
                let ins = walk.inputs(h);
                let [a, b] = ins.as_slice() else { return Err(walk.refuse("an addition without two operands")) };
                walk.mark(h);
                if let Some(branch) = walk.branch(*b, *a)? {
                    branches.push(branch);
                    h = *a;
                } else if let Some(branch) = walk.branch(*a, *b)? {
                    branches.push(branch);
                    h = *b;
                } else {
                    return Err(walk.refuse(format!(
                        "the residual addition {} adds {} and {}: neither is a projection of a normed residual stream (an attention or a SiLU MLP)",
                        walk.describe(h),
                        walk.describe(*a),
                        walk.describe(*b)
                    )));
                }
            }
            _ => {
                return Err(walk.refuse(format!(
                    "the residual stream is {} here, not an addition of a branch nor the token embedding",
                    walk.describe(h)
                )))
            }
        }
    };
    branches.reverse();
    // an attention branch and the MLP branch after it make a layer
    let mut layers: Vec<Layer> = Vec::new();
    for b in branches {
        match b {
            Branch::Attention(a) => layers.push(Layer { attention: Some(*a), mlp: None }),
            Branch::Mlp(m) => match layers.last_mut() {
                Some(l) if l.mlp.is_none() => l.mlp = Some(*m),
                _ => layers.push(Layer { attention: None, mlp: Some(*m) }),
            },
        }
    }
    let lm_head = (head.weight != embedding).then_some(head.weight);
    // every node must be a part of what was recognised
    if let Some(&stray) = g.node_ids().iter().find(|id| !walk.seen.contains(id)) {
        return Err(walk.refuse(format!(
            "{} is no part of a LLaMA decoder (the graph computes something besides its layers)",
            walk.describe(ValueId { node: stray, output: 0 })
        )));
    }
    Ok(Recognised { embedding, final_norm, lm_head, layers })
}

/// `model` (a graph of no known architecture: an ONNX export raised to the IR, possibly
/// pruned) recognised as a LLaMA and rebuilt as a model of the LLaMA architecture, with HF's
/// parameter names (`model.layers.N.self_attn.q_proj.weight`...) and a [`LlamaConfig`] of
/// each layer's widths; the parameters' data are the model's own (not copied). Its `info`
/// keeps the source (its tokenizer is the one beside it). Anything not recognised is an error
/// naming the source and what was found instead (see the module documentation).
pub fn as_llama(model: &Model) -> Result<Model> {
    let path = model.info.source.clone();
    let mut walk = Walk { model, path: path.clone(), seen: BTreeSet::new() };
    let r = recognise(&mut walk)?;
    let refuse = |reason: String| FrontendError::NotRecognised { path: path.clone(), expected: EXPECTED, reason };
    let embed_shape = walk.shape(&r.embedding);
    let [vocab_size, hidden_size] = *embed_shape else {
        return Err(refuse(format!("the embedding's table `{}` has shape {embed_shape:?}, not [vocab, hidden]", r.embedding)));
    };
    // one epsilon, one rotation, one head width for the whole model
    let norms = r.layers.iter().flat_map(|l| [l.attention.as_ref().map(|a| &a.norm), l.mlp.as_ref().map(|m| &m.norm)]).flatten();
    let eps = r.final_norm.eps;
    if let Some(n) = norms.clone().find(|n| n.eps != eps) {
        return Err(refuse(format!("the norm of `{}` has epsilon {}, the final norm {eps}: LLaMA's norms share one", n.weight, n.eps)));
    }
    let attentions: Vec<&AttentionBranch> = r.layers.iter().filter_map(|l| l.attention.as_ref()).collect();
    let Some(first) = attentions.first() else {
        return Err(refuse("the model has no attention layer, so no head width nor rotation to read".into()));
    };
    let (rope, head_dim) = (first.rope, first.head_dim);
    if let Some(a) = attentions.iter().find(|a| a.rope != rope || a.head_dim != head_dim) {
        return Err(refuse(format!("the attention of `{}` has heads of {} rotated as {:?}, another's of {head_dim} as {rope:?}", a.q.weight, a.head_dim, a.rope)));
    }
    // biases: LLaMA's configuration has them for all of q, k, v and o, or for none (missing
    // ones are zeros, which add nothing); likewise gate, up and down
    let attention_bias = attentions.iter().any(|a| [&a.q, &a.k, &a.v, &a.o].iter().any(|p| p.bias.is_some()));
    let mlps: Vec<&MlpBranch> = r.layers.iter().filter_map(|l| l.mlp.as_ref()).collect();
    let mlp_bias = mlps.iter().any(|m| [&m.gate, &m.up, &m.down].iter().any(|p| p.bias.is_some()));

    // HF's name of each parameter, and the zero biases a configuration of biases implies
    let mut renames: Vec<(String, &str, Option<std::ops::Range<usize>>)> =
        vec![("model.embed_tokens.weight".into(), &r.embedding, None), ("model.norm.weight".into(), &r.final_norm.weight, None)];
    if let Some(head) = &r.lm_head {
        renames.push(("lm_head.weight".into(), head, None));
    }
    let mut zeros: Vec<(String, usize)> = Vec::new();
    let mut widths = Vec::with_capacity(r.layers.len());
    let mut interleaved_qk: Vec<(String, usize)> = Vec::new();
    for (l, layer) in r.layers.iter().enumerate() {
        let p = format!("model.layers.{l}");
        let mut projections: Vec<(&str, &Projection, bool)> = Vec::new();
        let mut width = LayerWidths { num_heads: 0, num_kv_heads: 0, intermediate_size: 0, query_heads_per_kv: None };
        if let Some(a) = &layer.attention {
            for (module, proj) in [("self_attn.q_proj", &a.q), ("self_attn.k_proj", &a.k), ("self_attn.v_proj", &a.v), ("self_attn.o_proj", &a.o)] {
                projections.push((module, proj, attention_bias));
            }
            renames.push((format!("{p}.input_layernorm.weight"), &a.norm.weight, None));
            width.num_heads = a.heads;
            width.num_kv_heads = a.kv_heads;
            width.query_heads_per_kv = Op::uniform_copies(&a.copies).is_none().then(|| a.copies.clone());
            if rope.layout == RopeLayout::Interleaved {
                interleaved_qk.push((format!("{p}.self_attn.q_proj"), a.heads));
                interleaved_qk.push((format!("{p}.self_attn.k_proj"), a.kv_heads));
            }
        }
        if let Some(m) = &layer.mlp {
            for (module, proj) in [("mlp.gate_proj", &m.gate), ("mlp.up_proj", &m.up), ("mlp.down_proj", &m.down)] {
                projections.push((module, proj, mlp_bias));
            }
            renames.push((format!("{p}.post_attention_layernorm.weight"), &m.norm.weight, None));
            width.intermediate_size = walk.out_rows(&m.gate);
        }
        for (module, proj, with_bias) in projections {
            renames.push((format!("{p}.{module}.weight"), &proj.weight, proj.rows.clone()));
            match &proj.bias {
                Some(b) => renames.push((format!("{p}.{module}.bias"), b, proj.rows.clone())),
                None if with_bias => zeros.push((format!("{p}.{module}.bias"), walk.out_rows(proj))),
                None => {}
            }
        }
        widths.push(width);
    }
    let ir = |source| FrontendError::Ir { path: path.clone(), source };
    let mut params = ParamStore::new();
    for (name, from, rows) in renames {
        let p = model.params.get(from).ok_or_else(|| FrontendError::MissingTensor { path: path.clone(), tensor: from.to_string() })?;
        let p = match rows {
            None => p.clone(),
            // a part of a fused projection: its rows
            Some(r) => {
                let values = model.params.read_f32(from).map_err(ir)?;
                let cols: usize = p.shape.iter().skip(1).product();
                let mut shape = p.shape.clone();
                shape[0] = r.len();
                let mut part = Param::owned(shape, values[r.start * cols..r.end * cols].to_vec()).map_err(ir)?;
                part.dtype = p.dtype;
                part
            }
        };
        params.insert(name, p);
    }
    for (name, rows) in zeros {
        params.insert(name, Param::owned(vec![rows], vec![0.0; rows]).map_err(ir)?);
    }
    // an interleaved rotation (pairs 2i, 2i+1) is HF's half-split one (pairs i, i + d/2) over
    // q/k rows reordered within each head
    for (module, heads) in interleaved_qk {
        for suffix in ["weight", "bias"] {
            let name = format!("{module}.{suffix}");
            if let Some(p) = params.get(&name) {
                let reordered = half_split_rows(&params, &name, p, heads, head_dim).map_err(ir)?;
                params.insert(name, reordered);
            }
        }
    }
    let top = |f: fn(&LayerWidths) -> usize| widths.iter().map(f).max().unwrap_or(0);
    let uniform = widths.windows(2).all(|w| w[0] == w[1]) && widths.iter().all(|w| w.query_heads_per_kv.is_none() && w.num_heads > 0 && w.intermediate_size > 0);
    let config = LlamaConfig {
        vocab_size,
        hidden_size,
        intermediate_size: top(|w| w.intermediate_size),
        num_layers: widths.len(),
        num_heads: top(|w| w.num_heads),
        num_kv_heads: top(|w| w.num_kv_heads),
        head_dim,
        rms_norm_eps: eps,
        rope_theta: rope.theta,
        rope_scaling: rope.scaling,
        tie_word_embeddings: r.lm_head.is_none(),
        attention_bias,
        mlp_bias,
        max_position_embeddings: context_length(&path),
        layer_widths: (!uniform).then_some(widths),
        variant: Variant::default(),
    };
    config.validate(&path)?;
    let info = ModelInfo {
        name: model.info.name.clone(),
        architecture: super::LLAMA.model_type.into(),
        source: path.clone(),
        format: model.info.format,
        config: None,
        origins: Vec::new(),
        source_values: Vec::new(),
        warnings: model.info.warnings.clone(),
    };
    super::build_over(&config, params, info)
}

/// The rows of q/k weight (or bias) `p` of `heads` heads of `head_dim`, laid out for an
/// interleaved rotation, reordered for HF's half-split one: within each head, row `2i` goes to
/// `i` and row `2i + 1` to `i + head_dim/2`.
fn half_split_rows(params: &ParamStore, name: &str, p: &Param, heads: usize, head_dim: usize) -> prunec_ir::Result<Param> {
    let values = params.read_f32(name)?;
    let rows = p.shape.first().copied().unwrap_or(0);
    let cols = if p.shape.len() > 1 { p.shape[1..].iter().product() } else { 1 };
    if rows != heads * head_dim {
        return Err(prunec_ir::IrError::BadParam { name: name.into(), reason: format!("{rows} rows for {heads} heads of {head_dim}") });
    }
    let half = head_dim / 2;
    let mut out = vec![0.0f32; values.len()];
    for h in 0..heads {
        for r in 0..head_dim {
            let to = h * head_dim + if r % 2 == 0 { r / 2 } else { half + r / 2 };
            let from = h * head_dim + r;
            out[to * cols..(to + 1) * cols].copy_from_slice(&values[from * cols..(from + 1) * cols]);
        }
    }
    let mut q = Param::owned(p.shape.clone(), out)?;
    q.dtype = p.dtype;
    Ok(q)
}

/// The context the model was made for, from the files beside it when they say
/// (`config.json`'s `max_position_embeddings`, as optimum's folders have it;
/// `genai_config.json`'s `model.context_length`), else LLaMA's 2048. It only informs llama.cpp's
/// default context (`context_length`); a file that is not JSON is not read for it.
fn context_length(source: &Path) -> usize {
    let read = |file: &str, pointer: &str| -> Option<usize> {
        let text = std::fs::read_to_string(source.with_file_name(file)).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json.pointer(pointer)?.as_u64().and_then(|v| usize::try_from(v).ok()).filter(|&v| v > 0)
    };
    read("config.json", "/max_position_embeddings").or_else(|| read("genai_config.json", "/model/context_length")).unwrap_or(2048)
}
