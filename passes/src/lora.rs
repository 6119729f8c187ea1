//! The `lora` and `merge` passes: low-rank adapters (LoRA, Hu et al. 2021) beside linear ops,
//! and their folding back into the base weights.
//!
//! `lora` rewrites each chosen `y = Linear(x, W)` into
//! `y' = y + (alpha/r) · Linear(Linear(Dropout(x), A), B)`, with `A[r, in]` drawn
//! Kaiming-uniform as PEFT does (`kaiming_uniform_(a=√5)`: bound `1/√in`) from prunec's seeded
//! generator and `B[out, r]` zero, so the model computes exactly what it did until `B` is
//! trained. Adapters are ordinary IR nodes with parameters of their own
//! (`{module}.lora_A.weight`, `{module}.lora_B.weight`, where `{module}` is the base weight's
//! name without `.weight`, as PEFT names them); the dropout is the IR's `dropout` op, the
//! identity outside training.
//!
//! [`adapters`] finds adapters by their structure (not by name); `merge` folds each into its
//! base weight (`W += (alpha/r)·B·A`) and removes its nodes, leaving the graph exactly as it
//! was before `lora`; [`strip`] removes them without folding (the base model).

use std::collections::BTreeSet;

use prunec_ir::rng::SplitMix64;
use prunec_ir::{BinaryOp, DType, Model, NodeId, Op, Param, Shape, UnaryOp, ValueId, ValueType};

use crate::{PassError, Result};

/// The options of `lora` (LLM-Pruner's defaults: rank 8, alpha 16, dropout 0.05). The default
/// targets are none: which modules an architecture adapts is its own knowledge
/// (`prunec_frontends::arch::Architecture::lora_targets`), given by [`LoraOptions::targeting`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoraOptions {
    /// Rank `r` of each adapter.
    pub rank: usize,
    /// The adapter's output is scaled by `alpha / r`.
    pub alpha: f32,
    /// Dropout probability on the adapter's input while training.
    pub dropout: f32,
    /// Module names adapted: a linear op is adapted when its weight's module name (the weight
    /// parameter's name without `.weight`) is one of these or ends with `.` and one of these.
    pub targets: Vec<String>,
    /// Seed of the initialisation of `A`.
    pub seed: u64,
}

impl Default for LoraOptions {
    fn default() -> Self {
        LoraOptions {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: Vec::new(),
            seed: 0,
        }
    }
}

impl LoraOptions {
    /// LLM-Pruner's defaults, adapting the modules `targets`.
    pub fn targeting(targets: &[&str]) -> LoraOptions {
        LoraOptions { targets: targets.iter().map(|t| t.to_string()).collect(), ..LoraOptions::default() }
    }
}

/// One adapter found in a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    /// The adapted module (its weight's name without `.weight`).
    pub module: String,
    /// The base weight's parameter name.
    pub weight: String,
    /// `A`'s parameter name (`[r, in]`).
    pub a: String,
    /// `B`'s parameter name (`[out, r]`).
    pub b: String,
    /// The rank.
    pub rank: usize,
    /// The multiplier of the adapter's output (`alpha / r`).
    pub scale: f32,
    /// Dropout on the adapter's input while training (0: no dropout node).
    pub dropout: f32,
    /// The base linear's output.
    base: ValueId,
    /// The adapter's nodes (dropout, the two linears, the scale, the add, the two params).
    nodes: Vec<NodeId>,
    /// The add (its output replaced the base's).
    add: ValueId,
}

impl Adapter {
    /// `alpha`, as PEFT's `lora_alpha` (`scale · r`).
    pub fn alpha(&self) -> f32 {
        self.scale * self.rank as f32
    }

    /// The last component of the module's name (`q_proj`), as PEFT's `target_modules` lists it.
    pub fn target(&self) -> &str {
        self.module.rsplit('.').next().unwrap_or(&self.module)
    }
}

/// What `lora` added.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraReport {
    /// Adapters added.
    pub adapters: usize,
    /// Trainable parameters (elements of every `A` and `B`).
    pub trainable: usize,
    /// Parameters of the model before (the frozen base).
    pub base: usize,
}

impl LoraReport {
    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} adapters, {} trainable parameters ({:.3}% of {})\n",
            self.adapters,
            self.trainable,
            100.0 * self.trainable as f64 / self.base.max(1) as f64,
            self.base
        )
    }
}

fn lora_err(msg: impl Into<String>) -> PassError {
    PassError::Lora(msg.into())
}

/// The module name of a weight parameter.
fn module_of(weight: &str) -> &str {
    weight.strip_suffix(".weight").unwrap_or(weight)
}

fn is_target(module: &str, targets: &[String]) -> bool {
    targets.iter().any(|t| module == t || module.strip_suffix(t.as_str()).is_some_and(|rest| rest.ends_with('.')))
}

/// The parameter a value comes straight from, if it does.
fn param_of(model: &Model, v: ValueId) -> Option<(String, Vec<usize>)> {
    match &model.graph.node(v.node).ok()?.op {
        Op::Param { name, ty } => Some((name.clone(), ty.shape.to_fixed()?)),
        _ => None,
    }
}

/// Inserts an adapter beside every linear op whose module is one of `opts.targets`.
pub fn add_adapters(model: &mut Model, opts: &LoraOptions) -> Result<LoraReport> {
    if opts.rank == 0 {
        return Err(lora_err("the rank must be at least 1 (--lora-r)"));
    }
    if !opts.alpha.is_finite() || opts.alpha <= 0.0 {
        return Err(lora_err(format!("alpha {} must be a positive number (--lora-alpha)", opts.alpha)));
    }
    if !(0.0..1.0).contains(&opts.dropout) {
        return Err(lora_err(format!("dropout {} must be in [0, 1) (--lora-dropout)", opts.dropout)));
    }
    if opts.targets.is_empty() {
        return Err(lora_err("no target modules given (--lora-targets)"));
    }
    if !adapters(model).is_empty() {
        return Err(lora_err("the model has LoRA adapters already (run `merge` before adding new ones)"));
    }
    let base = model.params.numel();
    let scale = opts.alpha / opts.rank as f32;
    let mut rng = SplitMix64::new(opts.seed);
    let mut report = LoraReport { adapters: 0, trainable: 0, base };
    for id in model.graph.node_ids() {
        let node = model.graph.node(id)?;
        if node.op != Op::Linear {
            continue;
        }
        let (name, block) = (node.name.clone(), node.block);
        let inputs = model.graph.inputs(id);
        let Some((weight, shape)) = inputs.get(1).and_then(|&w| param_of(model, w)) else { continue };
        let module = module_of(&weight).to_string();
        if !is_target(&module, &opts.targets) {
            continue;
        }
        let [out, inp] = shape[..] else {
            return Err(lora_err(format!("`{weight}` has shape {shape:?}, not [out, in]")));
        };
        let (a_name, b_name) = (format!("{module}.lora_A.weight"), format!("{module}.lora_B.weight"));
        for n in [&a_name, &b_name] {
            if model.params.get(n).is_some() {
                return Err(lora_err(format!("parameter `{n}` exists already")));
            }
        }
        // kaiming_uniform_(a=√5) on [r, in]: gain √(2/(1+5)), bound gain·√(3/in) = 1/√in
        let bound = 1.0 / (inp as f64).sqrt();
        let a_values: Vec<f32> = (0..opts.rank * inp).map(|_| ((2.0 * rng.next_f64() - 1.0) * bound) as f32).collect();
        model.params.insert(a_name.clone(), Param::owned(vec![opts.rank, inp], a_values)?);
        model.params.insert(b_name.clone(), Param::owned(vec![out, opts.rank], vec![0.0; out * opts.rank])?);
        let y = ValueId { node: id, output: 0 };
        let users = model.graph.users(y);
        let g = &mut model.graph;
        let x = inputs[0];
        let x = if opts.dropout > 0.0 {
            g.add_value(Op::Dropout { p: opts.dropout }, format!("{name}.lora_dropout"), block, &[x])?
        } else {
            x
        };
        let ty = |shape: &[usize]| ValueType::new(DType::F32, Shape::fixed(shape));
        let a = g.add_value(Op::Param { name: a_name.clone(), ty: ty(&[opts.rank, inp]) }, a_name.clone(), block, &[])?;
        let b = g.add_value(Op::Param { name: b_name.clone(), ty: ty(&[out, opts.rank]) }, b_name.clone(), block, &[])?;
        let down = g.add_value(Op::Linear, format!("{name}.lora_A"), block, &[x, a])?;
        let up = g.add_value(Op::Linear, format!("{name}.lora_B"), block, &[down, b])?;
        let scaled = g.add_value(Op::Unary(UnaryOp::Scale(scale)), format!("{name}.lora_scale"), block, &[up])?;
        let sum = g.add_value(Op::Binary(BinaryOp::Add), format!("{name}.lora_add"), block, &[y, scaled])?;
        for (user, input) in users {
            g.set_input(user, input, sum)?;
        }
        report.adapters += 1;
        report.trainable += opts.rank * (inp + out);
    }
    if report.adapters == 0 {
        return Err(lora_err(format!(
            "no linear op matches the targets {} (module names are the weights' names without `.weight`)",
            opts.targets.join(",")
        )));
    }
    Ok(report)
}

/// Every adapter of the graph, found by its structure: `Add(y, Scale(Linear(Linear(x', A), B)))`
/// with `y = Linear(x, W..)`, `x'` = `x` or `Dropout(x)`, `A` and `B` parameters, and every
/// inner node used only there. Sorted by the base linear's node.
pub fn adapters(model: &Model) -> Vec<Adapter> {
    let g = &model.graph;
    let single_user = |v: ValueId| g.users(v).len() == 1;
    let mut found = Vec::new();
    for id in g.node_ids() {
        let Ok(node) = g.node(id) else { continue };
        if node.op != Op::Binary(BinaryOp::Add) {
            continue;
        }
        let add = ValueId { node: id, output: 0 };
        let inputs = g.inputs(id);
        let (Some(&y), Some(&s)) = (inputs.first(), inputs.get(1)) else { continue };
        let Ok(Op::Unary(UnaryOp::Scale(scale))) = g.node(s.node).map(|n| &n.op) else { continue };
        let Some(&up) = g.inputs(s.node).first() else { continue };
        if !single_user(s) || !single_user(up) || g.node(up.node).map(|n| &n.op).ok() != Some(&Op::Linear) {
            continue;
        }
        let up_in = g.inputs(up.node);
        let (Some(&down), Some(&b)) = (up_in.first(), up_in.get(1)) else { continue };
        if up_in.len() != 2 || !single_user(down) || g.node(down.node).map(|n| &n.op).ok() != Some(&Op::Linear) {
            continue;
        }
        let down_in = g.inputs(down.node);
        let (Some(&x_in), Some(&a)) = (down_in.first(), down_in.get(1)) else { continue };
        if down_in.len() != 2 {
            continue;
        }
        let (Some((a_name, a_shape)), Some((b_name, b_shape))) = (param_of(model, a), param_of(model, b)) else { continue };
        let (dropout, x, dropout_node) = match g.node(x_in.node).map(|n| &n.op) {
            Ok(Op::Dropout { p }) if single_user(x_in) => {
                (*p, g.inputs(x_in.node).first().copied(), Some(x_in.node))
            }
            _ => (0.0, Some(x_in), None),
        };
        let Ok(base) = g.node(y.node) else { continue };
        let base_in = g.inputs(y.node);
        if base.op != Op::Linear || base_in.first().copied() != x {
            continue;
        }
        let Some((weight, _)) = base_in.get(1).and_then(|&w| param_of(model, w)) else { continue };
        let (Some(&rank), true) = (a_shape.first(), b_shape.get(1) == a_shape.first()) else { continue };
        let mut nodes: Vec<NodeId> = dropout_node.into_iter().collect();
        nodes.extend([down.node, up.node, s.node, id, a.node, b.node]);
        found.push(Adapter {
            module: module_of(&weight).to_string(),
            weight,
            a: a_name,
            b: b_name,
            rank,
            scale: *scale,
            dropout,
            base: y,
            nodes,
            add,
        });
    }
    found.sort_by_key(|a| a.base);
    found
}

/// Removes every adapter without folding it in: the base model, as before `lora`. Returns how
/// many were removed.
pub fn strip(model: &mut Model) -> Result<usize> {
    let found = adapters(model);
    for a in &found {
        remove(model, a)?;
    }
    Ok(found.len())
}

fn remove(model: &mut Model, a: &Adapter) -> Result<()> {
    model.graph.replace_uses(a.add, a.base);
    for &n in &a.nodes {
        model.graph.remove(n);
    }
    for p in [&a.a, &a.b] {
        let still_used = model.graph.node_ids().into_iter().any(|id| {
            model.graph.node(id).is_ok_and(|n| matches!(&n.op, Op::Param { name, .. } if name == p))
        });
        if !still_used {
            model.params.remove(p);
        }
    }
    Ok(())
}

/// What `merge` did.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    /// Adapters folded in.
    pub merged: usize,
    /// Base weights changed.
    pub weights: Vec<String>,
}

impl MergeReport {
    /// One line for people.
    pub fn summary(&self) -> String {
        format!("merged {} adapters into their base weights\n", self.merged)
    }
}

/// Folds every adapter into its base weight (`W += (alpha/r)·B·A`, accumulated in f64) and
/// removes its nodes and parameters.
pub fn merge(model: &mut Model) -> Result<MergeReport> {
    let found = adapters(model);
    if found.is_empty() {
        return Err(lora_err("`merge`: the model has no LoRA adapters (run `lora` and `recover` first)"));
    }
    let mut weights = BTreeSet::new();
    for a in &found {
        let uses = model
            .graph
            .node_ids()
            .into_iter()
            .filter(|&id| model.graph.node(id).is_ok_and(|n| matches!(&n.op, Op::Param { name, .. } if *name == a.weight)))
            .count();
        if uses != 1 {
            return Err(lora_err(format!("`{}` is used by {uses} nodes: a shared weight cannot take one adapter", a.weight)));
        }
        let w = model.params.get(&a.weight).ok_or_else(|| lora_err(format!("no parameter `{}`", a.weight)))?;
        let shape = w.shape.clone();
        let [out, inp] = shape[..] else { return Err(lora_err(format!("`{}` is not a matrix", a.weight))) };
        let mut wv = model.params.read_f32(&a.weight)?.as_ref().clone();
        let av = model.params.read_f32(&a.a)?;
        let bv = model.params.read_f32(&a.b)?;
        let r = a.rank;
        if av.len() != r * inp || bv.len() != out * r {
            return Err(lora_err(format!("`{}`/`{}` do not fit `{}` {shape:?}", a.a, a.b, a.weight)));
        }
        let scale = f64::from(a.scale);
        let mut row = vec![0.0f64; inp];
        for o in 0..out {
            row.iter_mut().for_each(|v| *v = 0.0);
            for k in 0..r {
                let bk = f64::from(bv[o * r + k]);
                if bk == 0.0 {
                    continue;
                }
                for (acc, &x) in row.iter_mut().zip(&av[k * inp..(k + 1) * inp]) {
                    *acc += bk * f64::from(x);
                }
            }
            for (wv, d) in wv[o * inp..(o + 1) * inp].iter_mut().zip(&row) {
                *wv = (f64::from(*wv) + scale * d) as f32;
            }
        }
        let dtype = w.dtype;
        let mut p = Param::owned(shape, wv)?;
        p.dtype = dtype;
        model.params.insert(a.weight.clone(), p);
        weights.insert(a.weight.clone());
    }
    for a in &found {
        remove(model, a)?;
    }
    Ok(MergeReport { merged: found.len(), weights: weights.into_iter().collect() })
}

/// Refuses a model that has adapters, for passes that cannot work on them.
pub fn refuse_adapters(model: &Model, pass: &str) -> Result<()> {
    let n = adapters(model).len();
    if n > 0 {
        return Err(PassError::Config(format!(
            "`{pass}` cannot work on a model with LoRA adapters ({n} found): prune before `lora`, or `merge` the adapters first"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prunec_ir::{Dim, Graph};

    /// x[batch, 4] → q_proj (6×4) → o_proj (4×6) → output; lm_head left alone.
    fn tiny() -> Model {
        let mut m = Model::default();
        let mut p = |name: &str, shape: Vec<usize>| {
            let n: usize = shape.iter().product();
            m.params.insert(name, Param::owned(shape, (0..n).map(|i| (i as f32 * 0.37).sin()).collect()).unwrap());
        };
        p("l.q_proj.weight", vec![6, 4]);
        p("l.o_proj.weight", vec![4, 6]);
        p("lm_head.weight", vec![3, 4]);
        let mut g = Graph::new();
        let ty = |s: &[usize]| ValueType::new(DType::F32, Shape::fixed(s));
        let x = g
            .add_value(Op::Input { name: "x".into(), ty: ValueType::new(DType::F32, Shape(vec![Dim::batch(), 4.into()])) }, "x", None, &[])
            .unwrap();
        let wq = g.add_value(Op::Param { name: "l.q_proj.weight".into(), ty: ty(&[6, 4]) }, "wq", Some(0), &[]).unwrap();
        let q = g.add_value(Op::Linear, "l.q_proj", Some(0), &[x, wq]).unwrap();
        let wo = g.add_value(Op::Param { name: "l.o_proj.weight".into(), ty: ty(&[4, 6]) }, "wo", Some(0), &[]).unwrap();
        let o = g.add_value(Op::Linear, "l.o_proj", Some(0), &[q, wo]).unwrap();
        let wh = g.add_value(Op::Param { name: "lm_head.weight".into(), ty: ty(&[3, 4]) }, "wh", None, &[]).unwrap();
        let h = g.add_value(Op::Linear, "lm_head", None, &[o, wh]).unwrap();
        g.add(Op::Output { name: "logits".into() }, "logits", None, &[h]).unwrap();
        m.graph = g;
        prunec_ir::verify(&m).unwrap();
        m
    }

    #[test]
    fn adds_verified_adapters_found_by_structure() {
        let mut m = tiny();
        let before = prunec_ir::print(&m).unwrap();
        let r = add_adapters(&mut m, &LoraOptions::targeting(&["q_proj", "o_proj"])).unwrap();
        prunec_ir::verify(&m).unwrap();
        assert_eq!((r.adapters, r.trainable), (2, 8 * (4 + 6) * 2));
        let found = adapters(&m);
        assert_eq!(found.iter().map(|a| a.module.as_str()).collect::<Vec<_>>(), ["l.q_proj", "l.o_proj"]);
        assert_eq!(found[0].a, "l.q_proj.lora_A.weight");
        assert_eq!((found[0].rank, found[0].alpha(), found[0].dropout, found[0].target()), (8, 16.0, 0.05, "q_proj"));
        // A is uniform in ±1/√in, B zero
        let a = m.params.read_f32("l.q_proj.lora_A.weight").unwrap();
        assert!(a.iter().all(|v| v.abs() <= 0.5) && a.iter().any(|v| *v != 0.0));
        assert!(m.params.read_f32("l.o_proj.lora_B.weight").unwrap().iter().all(|v| *v == 0.0));
        // seeded: the same seed gives the same A
        let mut again = tiny();
        add_adapters(&mut again, &LoraOptions::targeting(&["q_proj", "o_proj"])).unwrap();
        assert_eq!(again.params.read_f32("l.q_proj.lora_A.weight").unwrap(), a);
        // strip restores the printed graph
        assert_eq!(strip(&mut m).unwrap(), 2);
        prunec_ir::verify(&m).unwrap();
        assert_eq!(prunec_ir::print(&m).unwrap(), before);
        assert!(m.params.get("l.q_proj.lora_A.weight").is_none());
    }

    #[test]
    fn merge_folds_b_times_a_and_restores_the_graph() {
        let mut m = tiny();
        let opts = LoraOptions { rank: 2, alpha: 4.0, dropout: 0.0, targets: vec!["o_proj".into()], seed: 3 };
        add_adapters(&mut m, &opts).unwrap();
        let a = m.params.read_f32("l.o_proj.lora_A.weight").unwrap();
        let b: Vec<f32> = (0..8).map(|i| i as f32 * 0.1).collect();
        m.params.insert("l.o_proj.lora_B.weight", Param::owned(vec![4, 2], b.clone()).unwrap());
        let w = m.params.read_f32("l.o_proj.weight").unwrap();
        let nodes = m.graph.len();
        let r = merge(&mut m).unwrap();
        prunec_ir::verify(&m).unwrap();
        assert_eq!(r.weights, ["l.o_proj.weight"]);
        assert_eq!(m.graph.len(), nodes - 6);
        let merged = m.params.read_f32("l.o_proj.weight").unwrap();
        for o in 0..4 {
            for i in 0..6 {
                let d: f32 = (0..2).map(|k| b[o * 2 + k] * a[k * 6 + i]).sum();
                assert!((merged[o * 6 + i] - (w[o * 6 + i] + 2.0 * d)).abs() < 1e-6);
            }
        }
        assert!(adapters(&m).is_empty());
        assert!(matches!(merge(&mut m), Err(PassError::Lora(_))));
    }

    #[test]
    fn bad_options_and_targets_are_refused() {
        let mut m = tiny();
        let bad = |o: LoraOptions| add_adapters(&mut tiny(), &o).unwrap_err().to_string();
        assert!(bad(LoraOptions { rank: 0, ..LoraOptions::default() }).contains("rank"));
        assert!(bad(LoraOptions { dropout: 1.0, ..LoraOptions::default() }).contains("dropout"));
        assert!(bad(LoraOptions { alpha: 0.0, ..LoraOptions::default() }).contains("alpha"));
        assert!(bad(LoraOptions { targets: vec!["nope".into()], ..LoraOptions::default() }).contains("no linear op matches"));
        // dotted targets and suffixes: `proj` alone matches nothing (whole components only)
        assert!(bad(LoraOptions { targets: vec!["proj".into()], ..LoraOptions::default() }).contains("no linear op"));
        add_adapters(&mut m, &LoraOptions { targets: vec!["l.q_proj".into()], ..LoraOptions::default() }).unwrap();
        assert_eq!(adapters(&m).len(), 1);
        assert!(add_adapters(&mut m, &LoraOptions::targeting(&["q_proj"])).unwrap_err().to_string().contains("already"));
        assert!(refuse_adapters(&m, "group").unwrap_err().to_string().contains("prune before `lora`"));
    }
}
