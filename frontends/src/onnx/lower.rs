//! The last step of importing ONNX: the cheapest term of each output's e-class — raised ops
//! cost least — becomes IR ops, and decoder layers are numbered from the parameters' names.

use std::collections::HashMap;
use std::path::Path;

use egg::{CostFunction, Extractor, Id, Language};
use prunec_ir::{Attention, BinaryOp, Graph, Model, ModelInfo, Op, Param, ParamData, ParamOrigin, ParamStore, SourceValue, Rope, RopeLayout, Shape, UnaryOp, ValueId, ValueType};

use super::fold::Folded;
use super::language::{EGraph, ReadFacts, Tables, Term};
use super::OnnxFile;
use crate::error::{FrontendError, Result};

/// Raised ops cost 1, transposes 2, other primitives 10, plus the costliest operand:
/// extraction prefers what rules raised.
struct PreferRaised;

impl CostFunction<Term> for PreferRaised {
    type Cost = u64;
    fn cost<C>(&mut self, enode: &Term, mut costs: C) -> u64
    where
        C: FnMut(Id) -> u64,
    {
        let own = match enode {
            Term::RmsNorm(_)
            | Term::Linear(_)
            | Term::Embedding(_)
            | Term::Silu(_)
            | Term::Rope(_)
            | Term::RopeInterleaved(_)
            | Term::Attention(_)
            | Term::RepeatHeads(_)
            | Term::SplitHeads(_)
            | Term::MergeHeads(_) => 1,
            _ if enode.is_leaf() => 1,
            Term::SwapAxes12(_) => 2,
            _ => 10,
        };
        // own cost plus the costliest child, not the sum: a tree sum grows exponentially with
        // the residual stream's sharing (2^layers) and saturates, leaving every choice a tie;
        // this is bounded by the depth and still counts a cycle through the class as dearer
        own + enode.children().iter().map(|&c| costs(c)).max().unwrap_or(0)
    }
}

struct Lowerer<'a> {
    file: &'a OnnxFile,
    folded: &'a Folded,
    ext: Extractor<'a, PreferRaised, Term, Tables>,
    eg: &'a EGraph,
    graph: Graph,
    params: ParamStore,
    memo: HashMap<Id, ValueId>,
    used: HashMap<String, bool>,
    param_nodes: HashMap<String, ValueId>,
    origins: Vec<ParamOrigin>,
}

impl Lowerer<'_> {
    fn err(&self, reason: impl Into<String>) -> FrontendError {
        FrontendError::Corrupt { path: self.file.path().to_path_buf(), format: "ONNX", reason: reason.into() }
    }

    fn ir(&self, e: prunec_ir::IrError) -> FrontendError {
        FrontendError::Ir { path: self.file.path().to_path_buf(), source: e }
    }

    /// The leaf of class `id`, when it has one.
    fn leaf_of(&self, id: Id) -> Option<&Term> {
        self.eg[id].nodes.iter().find(|n| n.is_leaf())
    }

    /// A scalar attribute leaf, float or integer.
    fn scalar(&self, id: Id) -> Result<f64> {
        match self.leaf_of(id) {
            None => Err(self.err("expected a constant attribute")),
            Some(Term::Float(v)) => Ok(v.f64()),
            Some(Term::Int(v)) => Ok(v.0 as f64),
            Some(l) => Err(self.err(format!("expected a scalar, found `{l}`"))),
        }
    }

    /// An integer list attribute leaf (or a scalar, as a list of one).
    fn ints(&self, id: Id) -> Result<Vec<i64>> {
        match self.leaf_of(id) {
            None => Err(self.err("expected an integer attribute")),
            Some(Term::IntList(l)) => Ok(l.0.to_vec()),
            Some(l @ Term::Int(v)) => i64::try_from(v.0).map(|v| vec![v]).map_err(|_| self.err(format!("bad integer `{l}`"))),
            Some(l) => Err(self.err(format!("expected integers, found `{l}`"))),
        }
    }

    fn param(&mut self, name: &str, transposed: bool) -> Result<ValueId> {
        // an initializer used both as it is and transposed gives two parameters
        let mut key = match self.used.get(name) {
            Some(&t) if t != transposed => format!("{name}{}", if transposed { ".T" } else { ".plain" }),
            _ => {
                self.used.insert(name.to_string(), transposed);
                name.to_string()
            }
        };
        if self.params.get(&key).is_none() {
            let (shape, data) = match self.folded.quantized.get(name) {
                // a 4-bit weight, dequantized: [N, K] as the IR's linear weights
                Some(q) => {
                    let packed = self.file.packed_weight(q)?;
                    let values = super::quant::dequantize(&packed, q.rows, q.cols, q.block_size)
                        .map_err(|reason| FrontendError::BadTensor { path: self.file.path().to_path_buf(), tensor: name.into(), reason })?;
                    (vec![q.rows, q.cols], std::borrow::Cow::Owned(values))
                }
                None => {
                    let init = self.file.initializer(name).ok_or_else(|| FrontendError::MissingTensor { path: self.file.path().to_path_buf(), tensor: name.into() })?;
                    self.file.tensor_f32(init)?
                }
            };
            let p = if transposed {
                let (r, c) = match shape.as_slice() {
                    [r, c] => (*r, *c),
                    _ => return Err(FrontendError::BadTensor { path: self.file.path().to_path_buf(), tensor: name.into(), reason: format!("shape {shape:?} is not a matrix") }),
                };
                Param::owned(vec![c, r], super::tensor::transposed(&data, r, c))
            } else {
                Param::owned(shape, data.into_owned())
            }
            .map_err(|e| self.ir(e))?;
            // TorchScript exports a tied LM head as a second, transposed copy of the embedding:
            // one matrix with the same values is the same parameter
            let twin = match (&p.data, p.shape.len()) {
                (ParamData::Owned(values), 2) => self
                    .params
                    .iter()
                    .filter(|(_, q)| q.shape == p.shape)
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .find(|k| self.params.read_f32(k).is_ok_and(|v| v.as_slice() == values.as_slice())),
                _ => None,
            };
            match twin {
                Some(k) => key = k,
                None => self.params.insert(key.clone(), p),
            }
            self.origins.push(ParamOrigin { param: key.clone(), tensor: name.to_string(), transposed });
        }
        if let Some(&v) = self.param_nodes.get(&key) {
            return Ok(v);
        }
        let p = self.params.get(&key).ok_or_else(|| self.err("parameter"))?;
        let ty = ValueType::new(p.dtype, Shape::fixed(&p.shape));
        let v = self.graph.add_value(Op::Param { name: key.clone(), ty }, key.clone(), None, &[]).map_err(|e| self.ir(e))?;
        self.param_nodes.insert(key, v);
        Ok(v)
    }

    fn add(&mut self, op: Op, name: &str, inputs: &[ValueId]) -> Result<ValueId> {
        self.graph.add_value(op, name, None, inputs).map_err(|e| self.ir(e))
    }

    fn rank(&self, v: ValueId) -> Result<usize> {
        Ok(self.graph.value_type(v).map_err(|e| self.ir(e))?.rank())
    }

    fn lower(&mut self, id: Id) -> Result<ValueId> {
        let id = self.eg.find(id);
        if let Some(v) = self.memo.get(&id) {
            return Ok(*v);
        }
        let node = self.ext.find_best_node(id).clone();
        let v = match node {
            Term::Input(name) => {
                let name = name.as_str();
                let (_, dtype, shape) = self.folded.inputs.iter().find(|(n, _, _)| n == name).ok_or_else(|| self.err(format!("input `{name}`")))?;
                let ty = ValueType::new(*dtype, Shape(shape.clone()));
                self.add(Op::Input { name: name.to_string(), ty }, name, &[])?
            }
            Term::TransposedWeight(name) => self.param(name.as_str(), true)?,
            Term::Weight(name) => self.param(name.as_str(), false)?,
            Term::QuantizedWeight(name) => self.param(name.as_str(), false)?,
            Term::Embedding([table, ids]) => {
                let (t, i) = (self.lower(table)?, self.lower(ids)?);
                self.add(Op::Embedding, "embedding", &[t, i])?
            }
            Term::RmsNorm([x, w, eps]) => {
                let eps = self.scalar(eps)? as f32;
                let (x, w) = (self.lower(x)?, self.lower(w)?);
                self.add(Op::RmsNorm { eps, offset: 0.0 }, "rms_norm", &[x, w])?
            }
            Term::Linear([x, w]) => {
                let (x, w) = (self.lower(x)?, self.lower(w)?);
                self.add(Op::Linear, "linear", &[x, w])?
            }
            Term::Silu(x) => {
                let x = self.lower(x)?;
                self.add(Op::Unary(UnaryOp::Silu), "silu", &[x])?
            }
            Term::SplitHeads([x, heads]) => {
                let heads = self.scalar(heads)? as usize;
                let x = self.lower(x)?;
                self.add(Op::SplitHeads { heads }, "split_heads", &[x])?
            }
            Term::MergeHeads(x) => {
                let x = self.lower(x)?;
                self.add(Op::MergeHeads, "merge_heads", &[x])?
            }
            Term::Rope([x, theta, dims]) | Term::RopeInterleaved([x, theta, dims]) => {
                let theta = self.scalar(theta)? as f32;
                let dims = self.scalar(dims)? as usize;
                let x = self.lower(x)?;
                let layout = if matches!(node, Term::Rope(_)) { RopeLayout::HalfSplit } else { RopeLayout::Interleaved };
                self.add(Op::Rope(Rope { theta, rotary_dims: dims, layout, half_freqs: false, scaling: Default::default() }), "rope", &[x])?
            }
            Term::RepeatHeads([x, n]) => {
                let n = self.scalar(n)? as usize;
                let x = self.lower(x)?;
                let r = self.rank(x)?;
                let heads = self.graph.value_type(x).map_err(|e| self.ir(e))?.dim(r - 2).and_then(prunec_ir::Dim::fixed).unwrap_or(0);
                self.add(Op::repeat_heads(heads, n), "repeat_heads", &[x])?
            }
            Term::Attention([q, k, v, scale]) => {
                let scale = self.scalar(scale)? as f32;
                let (q, k, v) = (self.lower(q)?, self.lower(k)?, self.lower(v)?);
                self.add(Op::Attention(Attention::causal(scale)), "attention", &[q, k, v])?
            }
            Term::SwapAxes12(x) => {
                let x = self.lower(x)?;
                self.add(Op::Transpose { perm: vec![0, 2, 1, 3] }, "transpose", &[x])?
            }
            Term::Transpose([x, perm]) => {
                let perm: Vec<usize> = self.ints(perm)?.iter().map(|&p| p as usize).collect();
                let x = self.lower(x)?;
                self.add(Op::Transpose { perm }, "transpose", &[x])?
            }
            Term::Add(xy) | Term::Sub(xy) | Term::Mul(xy) | Term::Div(xy) => {
                let (b, name) = match node {
                    Term::Add(_) => (BinaryOp::Add, "add"),
                    Term::Sub(_) => (BinaryOp::Sub, "sub"),
                    Term::Mul(_) => (BinaryOp::Mul, "mul"),
                    _ => (BinaryOp::Div, "div"),
                };
                // a float scalar operand makes a product or quotient a scale
                let scalar_operand = |k: usize| match self.leaf_of(xy[k]) {
                    Some(Term::Float(c)) => Some(c.f32()),
                    _ => None,
                };
                let (mul, div) = (matches!(node, Term::Mul(_)), matches!(node, Term::Div(_)));
                match (scalar_operand(0), scalar_operand(1)) {
                    (Some(c), None) if mul => {
                        let x = self.lower(xy[1])?;
                        self.add(Op::Unary(UnaryOp::Scale(c)), "scale", &[x])?
                    }
                    (None, Some(c)) if mul || div => {
                        let c = if div { 1.0 / c } else { c };
                        let x = self.lower(xy[0])?;
                        self.add(Op::Unary(UnaryOp::Scale(c)), "scale", &[x])?
                    }
                    _ => {
                        let (x, y) = (self.lower(xy[0])?, self.lower(xy[1])?);
                        self.add(Op::Binary(b), name, &[x, y])?
                    }
                }
            }
            Term::Sigmoid(x) | Term::Neg(x) | Term::Sqrt(x) | Term::Reciprocal(x) | Term::Exp(x) | Term::Tanh(x) => {
                let (u, name) = match node {
                    Term::Sigmoid(_) => (UnaryOp::Sigmoid, "sigmoid"),
                    Term::Neg(_) => (UnaryOp::Neg, "neg"),
                    Term::Sqrt(_) => (UnaryOp::Sqrt, "sqrt"),
                    Term::Reciprocal(_) => (UnaryOp::Reciprocal, "reciprocal"),
                    Term::Exp(_) => (UnaryOp::Exp, "exp"),
                    _ => (UnaryOp::Tanh, "tanh"),
                };
                let x = self.lower(x)?;
                self.add(Op::Unary(u), name, &[x])?
            }
            Term::MatMul([a, b]) => {
                let (a, b) = (self.lower(a)?, self.lower(b)?);
                self.add(Op::MatMul, "matmul", &[a, b])?
            }
            Term::Softmax([x, axis]) => {
                let x = self.lower(x)?;
                let r = self.rank(x)? as i64;
                let axis = (self.scalar(axis)? as i64 + r) as usize;
                self.add(Op::Softmax { axis }, "softmax", &[x])?
            }
            Term::Concat(ref parts) => {
                let mut xs = Vec::new();
                for &c in &parts[1..] {
                    xs.push(self.lower(c)?);
                }
                let r = self.rank(xs[0])? as i64;
                let axis = (self.scalar(parts[0])? as i64 + r) as usize;
                self.add(Op::Concat { axis }, "concat", &xs)?
            }
            Term::Slice([x, axis, start, end]) => {
                let x = self.lower(x)?;
                let r = self.rank(x)? as i64;
                let axis = (self.scalar(axis)? as i64 + r) as usize;
                let (start, end) = (self.scalar(start)? as usize, self.scalar(end)? as usize);
                self.add(Op::Slice { axis, start, end }, "slice", &[x])?
            }
            Term::Reshape([x, target]) => {
                let shape = match self.leaf_of(target) {
                    Some(Term::Dims(k)) => Shape(self.eg.analysis.shapes.get(k.0).cloned().unwrap_or_default()),
                    _ => return Err(self.err("reshape target")),
                };
                let x = self.lower(x)?;
                self.add(Op::Reshape { shape }, "reshape", &[x])?
            }
            Term::Unsqueeze([x, _]) | Term::Squeeze([x, _]) => {
                // a reshape to the shape folding gave the class
                let name = if matches!(node, Term::Unsqueeze(_)) { "unsqueeze" } else { "squeeze" };
                let shape = self.eg.shape(id).map(<[_]>::to_vec).ok_or_else(|| self.err(format!("`{node}`: no shape")))?;
                let x = self.lower(x)?;
                self.add(Op::Reshape { shape: Shape(shape) }, name, &[x])?
            }
            other => {
                return Err(self.err(format!(
                    "`{other}` was not raised by any rule and the IR has no primitive for it (the pattern around it is not one prunec recognises)"
                )))
            }
        };
        self.memo.insert(id, v);
        Ok(v)
    }
}

/// The decoder layer a parameter name states (`...layers.N...`).
fn layer_of(name: &str) -> Option<u32> {
    let i = name.find("layers.")?;
    name[i + 7..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Numbers decoder layers: a node using a parameter named `…layers.N…` is in layer N; one
/// using another named parameter (`model.norm.weight`, the embedding) in none; any other
/// node in the last layer of its inputs. Parameters then take their first user's layer.
fn number_layers(graph: &mut Graph) -> prunec_ir::Result<()> {
    let order = graph.topological_order()?;
    let anonymous = |n: &str| n.starts_with("onnx::") || n.starts_with("val_") || !n.contains('.');
    for &id in &order {
        if matches!(graph.node(id)?.op, Op::Param { .. }) {
            continue;
        }
        let mut named = None;
        let mut inherited: Option<u32> = None;
        let mut explicit_none = false;
        for v in graph.inputs(id) {
            let n = graph.node(v.node)?;
            match &n.op {
                Op::Param { name, .. } => match layer_of(name) {
                    Some(l) => named = Some(l),
                    None if !anonymous(name) => explicit_none = true,
                    None => {}
                },
                _ => inherited = inherited.max(n.block),
            }
        }
        graph.node_mut(id)?.block = named.or(if explicit_none { None } else { inherited });
    }
    for &id in &order {
        if matches!(graph.node(id)?.op, Op::Param { .. }) {
            let users = graph.users(ValueId { node: id, output: 0 });
            let block = match users.first() {
                Some((u, _)) => graph.node(*u)?.block,
                None => None,
            };
            graph.node_mut(id)?.block = block;
        }
    }
    Ok(())
}

/// Lowers the raised e-graph of `folded` to an IR model.
pub fn lower(file: &OnnxFile, folded: &Folded, path: &Path) -> Result<Model> {
    let eg = &folded.egraph;
    let mut l = Lowerer {
        file,
        folded,
        ext: Extractor::new(eg, PreferRaised),
        eg,
        graph: Graph::new(),
        params: ParamStore::new(),
        memo: HashMap::new(),
        used: HashMap::new(),
        param_nodes: HashMap::new(),
        origins: Vec::new(),
    };
    // with a `logits` output, the others (a key/value cache's present keys and values) are
    // left to the written graph: prunec keeps its own cache
    let has_logits = folded.outputs.iter().any(|(n, _)| n == "logits");
    for (name, id) in folded.outputs.iter().filter(|(n, _)| !has_logits || n == "logits") {
        let v = l.lower(*id)?;
        l.add(Op::Output { name: name.clone() }, name, &[v])?;
    }
    // the IR values computing the source's reshapes (a writer recomputes their targets)
    let mut source_values = Vec::new();
    for (name, id) in &folded.reshapes {
        let c = eg.find(*id);
        if let Some(&value) = l.memo.get(&c) {
            source_values.push(SourceValue { name: name.clone(), value, swap_1_2: false });
        } else if let Some(&value) = eg[c].nodes.iter().find_map(|n| if let Term::SwapAxes12(x) = n { l.memo.get(&eg.find(*x)) } else { None }) {
            source_values.push(SourceValue { name: name.clone(), value, swap_1_2: true });
        }
    }
    let Lowerer { mut graph, params, origins, .. } = l;
    number_layers(&mut graph).map_err(|e| FrontendError::Ir { path: path.to_path_buf(), source: e })?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let model = Model {
        graph,
        params,
        info: ModelInfo {
            name,
            architecture: "onnx".into(),
            source: path.to_path_buf(),
            format: prunec_ir::SourceFormat::Onnx,
            config: None,
            origins,
            source_values,
            warnings: Vec::new(),
        },
        groups: None,
    };
    prunec_ir::verify(&model).map_err(|e| FrontendError::Ir { path: path.to_path_buf(), source: e })?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deep residual-like sharing (each level uses the one below twice) must not hide the
    /// raised choice at the top: a summed tree cost would be 2^80 there.
    #[test]
    fn raised_ops_win_under_deep_sharing() {
        let mut eg = EGraph::default();
        let leaf = |text: &str| -> Term { egg::FromOp::from_op(text, vec![]).unwrap() };
        let mut body = eg.add(leaf("in:x"));
        for _ in 0..80 {
            body = eg.add(Term::Add([body, body]));
        }
        let w = eg.add(leaf("w:head"));
        let root = eg.add(Term::MatMul([body, w]));
        let wt = eg.add(leaf("wt:head"));
        let linear = eg.add(Term::Linear([body, wt]));
        eg.union(root, linear);
        eg.rebuild();
        let ext = Extractor::new(&eg, PreferRaised);
        assert!(matches!(ext.find_best_node(root), Term::Linear(_)));
    }
}
