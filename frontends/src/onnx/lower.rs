//! The last step of importing ONNX: the cheapest term of each output's e-class — raised ops
//! cost least — becomes IR ops, and decoder layers are numbered from the parameters' names.

use std::collections::HashMap;
use std::path::Path;

use egg::{CostFunction, Extractor, Id, Language, SymbolLang};
use prunec_ir::{Attention, BinaryOp, Graph, Model, ModelInfo, Op, Param, ParamData, ParamOrigin, ParamStore, SourceValue, Rope, RopeLayout, Shape, UnaryOp, ValueId, ValueType};

use super::fold::{Egraph, Folded};
use super::OnnxFile;
use crate::error::{FrontendError, Result};

/// Raised ops cost 1, transposes 2, other primitives 10, plus the costliest operand:
/// extraction prefers what rules raised.
struct PreferRaised;

impl CostFunction<SymbolLang> for PreferRaised {
    type Cost = u64;
    fn cost<C>(&mut self, enode: &SymbolLang, mut costs: C) -> u64
    where
        C: FnMut(Id) -> u64,
    {
        let own = match enode.op.as_str() {
            "RmsNorm" | "Linear" | "Embedding" | "Silu" | "Rope" | "RopeInterleaved" | "Attention" | "RepeatHeads" | "SplitHeads" | "MergeHeads" => 1,
            _ if enode.children.is_empty() => 1,
            "T0213" => 2,
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
    ext: Extractor<'a, PreferRaised, SymbolLang, ()>,
    eg: &'a Egraph,
    graph: Graph,
    params: ParamStore,
    memo: HashMap<Id, ValueId>,
    used: HashMap<String, bool>,
    param_nodes: HashMap<String, ValueId>,
    origins: Vec<ParamOrigin>,
}

fn leaf_str(n: &SymbolLang) -> Option<&str> {
    n.children.is_empty().then(|| n.op.as_str())
}

impl Lowerer<'_> {
    fn err(&self, reason: impl Into<String>) -> FrontendError {
        FrontendError::Corrupt { path: self.file.path().to_path_buf(), format: "ONNX", reason: reason.into() }
    }

    fn ir(&self, e: prunec_ir::IrError) -> FrontendError {
        FrontendError::Ir { path: self.file.path().to_path_buf(), source: e }
    }

    fn leaf_of(&self, id: Id) -> Option<String> {
        self.eg[id].nodes.iter().find_map(|n| leaf_str(n).map(str::to_string))
    }

    fn scalar(&self, id: Id) -> Result<f64> {
        let l = self.leaf_of(id).ok_or_else(|| self.err("expected a constant attribute"))?;
        l.strip_prefix("f:")
            .or_else(|| l.strip_prefix("i:"))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.err(format!("expected a scalar, found `{l}`")))
    }

    fn ints(&self, id: Id) -> Result<Vec<i64>> {
        let l = self.leaf_of(id).ok_or_else(|| self.err("expected an integer attribute"))?;
        let v = l.strip_prefix("i:").ok_or_else(|| self.err(format!("expected integers, found `{l}`")))?;
        match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            Some("") => Ok(vec![]),
            Some(list) => list.split(',').map(|x| x.parse().map_err(|_| self.err(format!("bad list `{l}`")))).collect(),
            None => v.parse().map(|x| vec![x]).map_err(|_| self.err(format!("bad integer `{l}`"))),
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

    /// The shape folding gave e-class `id` (any of its members).
    fn class_shape(&self, id: Id) -> Option<Vec<prunec_ir::Dim>> {
        let c = self.eg.find(id);
        self.folded.shapes.iter().find(|(k, _)| self.eg.find(**k) == c).map(|(_, s)| s.clone())
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
        let op = node.op.as_str().to_string();
        let ch = node.children.clone();
        let v = if let Some(name) = op.strip_prefix("in:") {
            let (_, dtype, shape) = self.folded.inputs.iter().find(|(n, _, _)| n == name).ok_or_else(|| self.err(format!("input `{name}`")))?;
            let ty = ValueType::new(*dtype, Shape(shape.clone()));
            self.add(Op::Input { name: name.to_string(), ty }, name, &[])?
        } else if let Some(name) = op.strip_prefix("wt:") {
            self.param(name, true)?
        } else if let Some(name) = op.strip_prefix("w:").or_else(|| op.strip_prefix("wq:")) {
            self.param(name, false)?
        } else {
            let mut arg = |k: usize| -> Result<ValueId> {
                let c = *ch.get(k).ok_or_else(|| self.err(format!("`{op}` lacks operand {k}")))?;
                self.lower(c)
            };
            match op.as_str() {
                "Embedding" => {
                    let (t, i) = (arg(0)?, arg(1)?);
                    self.add(Op::Embedding, "embedding", &[t, i])?
                }
                "RmsNorm" => {
                    let eps = self.scalar(ch[2])? as f32;
                    let (x, w) = (self.lower(ch[0])?, self.lower(ch[1])?);
                    self.add(Op::RmsNorm { eps }, "rms_norm", &[x, w])?
                }
                "Linear" => {
                    let (x, w) = (self.lower(ch[0])?, self.lower(ch[1])?);
                    self.add(Op::Linear, "linear", &[x, w])?
                }
                "Silu" => {
                    let x = self.lower(ch[0])?;
                    self.add(Op::Unary(UnaryOp::Silu), "silu", &[x])?
                }
                "SplitHeads" => {
                    let heads = self.scalar(ch[1])? as usize;
                    let x = self.lower(ch[0])?;
                    self.add(Op::SplitHeads { heads }, "split_heads", &[x])?
                }
                "MergeHeads" => {
                    let x = self.lower(ch[0])?;
                    self.add(Op::MergeHeads, "merge_heads", &[x])?
                }
                "Rope" | "RopeInterleaved" => {
                    let theta = self.scalar(ch[1])? as f32;
                    let dims = self.scalar(ch[2])? as usize;
                    let x = self.lower(ch[0])?;
                    let layout = if op == "Rope" { RopeLayout::HalfSplit } else { RopeLayout::Interleaved };
                    self.add(Op::Rope(Rope { theta, rotary_dims: dims, layout, half_freqs: false }), "rope", &[x])?
                }
                "RepeatHeads" => {
                    let n = self.scalar(ch[1])? as usize;
                    let x = self.lower(ch[0])?;
                    let r = self.rank(x)?;
                    let heads = self.graph.value_type(x).map_err(|e| self.ir(e))?.dim(r - 2).and_then(prunec_ir::Dim::fixed).unwrap_or(0);
                    self.add(Op::repeat_heads(heads, n), "repeat_heads", &[x])?
                }
                "Attention" => {
                    let scale = self.scalar(ch[3])? as f32;
                    let (q, k, v) = (self.lower(ch[0])?, self.lower(ch[1])?, self.lower(ch[2])?);
                    self.add(Op::Attention(Attention { scale, causal: true }), "attention", &[q, k, v])?
                }
                "T0213" => {
                    let x = self.lower(ch[0])?;
                    self.add(Op::Transpose { perm: vec![0, 2, 1, 3] }, "transpose", &[x])?
                }
                "Transpose" => {
                    let perm: Vec<usize> = self.ints(ch[1])?.iter().map(|&p| p as usize).collect();
                    let x = self.lower(ch[0])?;
                    self.add(Op::Transpose { perm }, "transpose", &[x])?
                }
                "Add" | "Sub" | "Mul" | "Div" => {
                    let scalar_operand = |k: usize| self.leaf_of(ch[k]).filter(|l| l.starts_with("f:")).and_then(|l| l[2..].parse::<f32>().ok());
                    match (op.as_str(), scalar_operand(0), scalar_operand(1)) {
                        ("Mul", Some(c), None) => {
                            let x = self.lower(ch[1])?;
                            self.add(Op::Unary(UnaryOp::Scale(c)), "scale", &[x])?
                        }
                        ("Mul", None, Some(c)) | ("Div", None, Some(c)) => {
                            let c = if op == "Div" { 1.0 / c } else { c };
                            let x = self.lower(ch[0])?;
                            self.add(Op::Unary(UnaryOp::Scale(c)), "scale", &[x])?
                        }
                        _ => {
                            let b = match op.as_str() {
                                "Add" => BinaryOp::Add,
                                "Sub" => BinaryOp::Sub,
                                "Mul" => BinaryOp::Mul,
                                _ => BinaryOp::Div,
                            };
                            let (x, y) = (self.lower(ch[0])?, self.lower(ch[1])?);
                            self.add(Op::Binary(b), &op.to_lowercase(), &[x, y])?
                        }
                    }
                }
                "Sigmoid" | "Neg" | "Sqrt" | "Reciprocal" | "Exp" | "Tanh" => {
                    let u = match op.as_str() {
                        "Sigmoid" => UnaryOp::Sigmoid,
                        "Neg" => UnaryOp::Neg,
                        "Sqrt" => UnaryOp::Sqrt,
                        "Reciprocal" => UnaryOp::Reciprocal,
                        "Exp" => UnaryOp::Exp,
                        _ => UnaryOp::Tanh,
                    };
                    let x = self.lower(ch[0])?;
                    self.add(Op::Unary(u), &op.to_lowercase(), &[x])?
                }
                "MatMul" => {
                    let (a, b) = (self.lower(ch[0])?, self.lower(ch[1])?);
                    self.add(Op::MatMul, "matmul", &[a, b])?
                }
                "Softmax" => {
                    let x = self.lower(ch[0])?;
                    let r = self.rank(x)? as i64;
                    let axis = (self.scalar(ch[1])? as i64 + r) as usize;
                    self.add(Op::Softmax { axis }, "softmax", &[x])?
                }
                "Concat" => {
                    let mut xs = Vec::new();
                    for &c in &ch[1..] {
                        xs.push(self.lower(c)?);
                    }
                    let r = self.rank(xs[0])? as i64;
                    let axis = (self.scalar(ch[0])? as i64 + r) as usize;
                    self.add(Op::Concat { axis }, "concat", &xs)?
                }
                "Slice" => {
                    let x = self.lower(ch[0])?;
                    let r = self.rank(x)? as i64;
                    let axis = (self.scalar(ch[1])? as i64 + r) as usize;
                    let (start, end) = (self.scalar(ch[2])? as usize, self.scalar(ch[3])? as usize);
                    self.add(Op::Slice { axis, start, end }, "slice", &[x])?
                }
                "Reshape" => {
                    let l = self.leaf_of(ch[1]).unwrap_or_default();
                    let k: usize = l.strip_prefix("s:").and_then(|k| k.parse().ok()).ok_or_else(|| self.err("reshape target"))?;
                    let shape = Shape(self.folded.shape_table.get(k).cloned().unwrap_or_default());
                    let x = self.lower(ch[0])?;
                    self.add(Op::Reshape { shape }, "reshape", &[x])?
                }
                "Unsqueeze" | "Squeeze" => {
                    // a reshape to the shape folding gave the class
                    let shape = self.class_shape(id).ok_or_else(|| self.err(format!("`{op}`: no shape")))?;
                    let x = self.lower(ch[0])?;
                    self.add(Op::Reshape { shape: Shape(shape) }, &op.to_lowercase(), &[x])?
                }
                other => {
                    return Err(self.err(format!(
                        "`{other}` was not raised by any rule and the IR has no primitive for it (the pattern around it is not one prunec recognises)"
                    )))
                }
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
        } else if let Some(&value) = eg[c].nodes.iter().filter(|n| n.op.as_str() == "T0213").find_map(|n| l.memo.get(&eg.find(n.children[0]))) {
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
            config_json: None,
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
        let mut eg = Egraph::default();
        let mut body = eg.add(SymbolLang::leaf("x"));
        for _ in 0..80 {
            body = eg.add(SymbolLang::new("Add", vec![body, body]));
        }
        let w = eg.add(SymbolLang::leaf("w:head"));
        let root = eg.add(SymbolLang::new("MatMul", vec![body, w]));
        let wt = eg.add(SymbolLang::leaf("wt:head"));
        let linear = eg.add(SymbolLang::new("Linear", vec![body, wt]));
        eg.union(root, linear);
        eg.rebuild();
        let ext = Extractor::new(&eg, PreferRaised);
        assert_eq!(ext.find_best_node(root).op.as_str(), "Linear");
    }
}
