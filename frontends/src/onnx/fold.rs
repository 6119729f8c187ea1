//! The first step of importing an ONNX graph: every value is classified ([`Value`]) as a
//! runtime tensor (with a symbolic shape), a weight, small constant values or a vector of
//! integers that may be symbolic sizes (the shape arithmetic exporters emit: `Shape → Gather →
//! Unsqueeze → Concat → Reshape`). Shape arithmetic is evaluated here, so no `Shape` node
//! survives; runtime ops become e-nodes ([`Term`]) of the e-graph the raising rules work on
//! ([`super::rules`]), their constant operands and attributes typed leaves, and each runtime
//! class's shape goes in its [`Facts`](super::language::Facts).
//!
//! Reductions, softmax, concatenation and slices name their axis from the end (`i:-1`), so
//! that rules need not know ranks; reshapes that split the last axis into heads (or merge the
//! last two) become `SplitHeads`/`MergeHeads`, a transpose `[0,2,1,3]` `SwapAxes12`.

use std::collections::{HashMap, HashSet};

use egg::{Id, Symbol};
use prunec_ir::{broadcast, DType, Dim};

#[path = "contrib.rs"]
mod contrib;

pub use contrib::AttrEdit;

use super::language::{EGraph, FloatConst, InputName, IntConst, IntList, Tables, Term, WeightName};
use super::proto::tensor_proto::DataType;
use super::proto::NodeProto;
use super::quant::BlockQuant;
use super::symbolic::{dim_op, eval_dim, SizeOp};
use super::tensor::checked_product;
use super::{ConstantValue, OnnxFile};
use crate::error::{FrontendError, Result};

/// An integer that may be a symbolic size.
#[derive(Debug, Clone, PartialEq)]
pub enum SymInt {
    /// A number.
    Known(i64),
    /// A symbolic size.
    Symbolic(Dim),
}

impl SymInt {
    /// The size it is: none for a negative number.
    fn size(&self) -> Option<Dim> {
        match self {
            SymInt::Known(k) => usize::try_from(*k).ok().map(Dim::Fixed),
            SymInt::Symbolic(d) => Some(d.clone()),
        }
    }

    /// It as a size, a negative number as a symbol (`-1`) that arithmetic on sizes keeps.
    fn dim(&self) -> Dim {
        match self {
            SymInt::Known(k) if *k >= 0 => Dim::Fixed(*k as usize),
            SymInt::Known(k) => Dim::Sym(k.to_string()),
            SymInt::Symbolic(d) => d.clone(),
        }
    }
}

impl From<&Dim> for SymInt {
    fn from(d: &Dim) -> SymInt {
        match d {
            Dim::Fixed(n) => SymInt::Known(*n as i64),
            Dim::Sym(_) => SymInt::Symbolic(d.clone()),
        }
    }
}

/// What an ONNX value is.
#[derive(Debug, Clone)]
pub enum Value {
    /// A tensor computed at run time.
    Runtime {
        /// Its e-class.
        id: Id,
        /// Element type.
        dtype: DType,
        /// Shape.
        shape: Vec<Dim>,
    },
    /// A float initializer, kept by name.
    Weight {
        /// Its name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// Known float values.
    Floats {
        /// Shape.
        shape: Vec<usize>,
        /// Values.
        data: Vec<f32>,
    },
    /// Integers (and booleans), possibly symbolic sizes.
    Ints {
        /// Shape (rank 0 or 1 in practice).
        shape: Vec<usize>,
        /// Values.
        data: Vec<SymInt>,
    },
}

/// The folded graph: the e-graph (whose analysis holds the tables leaves refer to), the output
/// classes, and what lowering needs besides.
pub struct Folded {
    /// The e-graph.
    pub egraph: EGraph,
    /// The graph outputs, by name.
    pub outputs: Vec<(String, Id)>,
    /// Graph inputs: name, dtype, shape.
    pub inputs: Vec<(String, DType, Vec<Dim>)>,
    /// Values whose shape a written graph must reproduce — the outputs of `Reshape` nodes
    /// computed at run time, of attention ops whose attributes count heads — with their
    /// e-classes.
    pub reshapes: Vec<(String, Id)>,
    /// The 4-bit weights (`wq:NAME` leaves), by data initializer.
    pub quantized: HashMap<String, BlockQuant>,
}

/// Float initializers of at most this many elements and rank ≤ 1 have their values in
/// [`Tables::floats`] (norm weights, rotary frequencies): rules may need to read them.
const SMALL_WEIGHT: usize = 1 << 16;

struct Folder<'a> {
    file: &'a OnnxFile,
    eg: EGraph,
    values: HashMap<String, Value>,
    /// Where integer values' elements come from (constants, through unsqueezes and concats).
    provenance: HashMap<String, Vec<Option<Provenance>>>,
    /// Expected shapes of reshape outputs (repairing a pruned model's shape constants).
    oracle: Option<&'a HashMap<String, Vec<Dim>>>,
    /// Constant elements to change.
    edits: Vec<Edit>,
    /// The `Expand` producing a runtime e-class: its node index and target's value name.
    expand_of: HashMap<Id, (usize, String)>,
    /// The node being folded.
    current: usize,
    /// Outputs of `Constant` nodes holding strings (no op prunec imports reads them).
    strings: HashSet<String>,
    /// Graph inputs folded to empty key/value caches, by their leaf.
    cache_inputs: HashMap<Id, String>,
    /// The shape each cache input takes: that of what it is concatenated with.
    cache_shapes: HashMap<String, Vec<Dim>>,
    /// Shapes of every value, by name.
    value_shapes: HashMap<String, Vec<Dim>>,
    /// The outputs of `Reshape` nodes computed at run time, with their e-classes.
    reshapes: Vec<(String, Id)>,
    /// Packed integer initializers (4-bit weights), by value name: the initializer and the
    /// shape the value has (a `Reshape` of one gives another view of the same data).
    packed: HashMap<String, (String, Vec<usize>)>,
    /// Quantized weights read so far (`wq:NAME` leaves), by data initializer.
    quantized: HashMap<String, BlockQuant>,
    /// Attributes to change in a written graph.
    attr_edits: Vec<AttrEdit>,
}

/// Where an integer element comes from: element `elem` of constant `source`, read by input
/// `input` of node `node` (the use to rewire when the element must change).
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The constant's value name.
    pub source: String,
    /// The element.
    pub elem: usize,
    /// The node reading the constant, and the input.
    pub reader: Option<(usize, usize)>,
}

/// A constant element to change: in the copy of `provenance.source` read by
/// `provenance.reader`, element `provenance.elem` becomes `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// The element.
    pub provenance: Provenance,
    /// Its new value.
    pub value: i64,
}

/// `axis` (possibly negative) of a rank-`rank` tensor, counted from the end (−1 is the last).
fn from_end(axis: i64, rank: usize) -> i64 {
    if axis >= 0 {
        axis - rank as i64
    } else {
        axis
    }
}

/// Axis `axis` (negative counts from the end) of a value of `rank` axes, when it has one.
fn axis_index(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

impl Folder<'_> {
    /// Provenance of the integer output (of `n` elements) of `node`.
    fn propagate_provenance(&self, node: &NodeProto, index: usize, n: usize) -> Vec<Option<Provenance>> {
        let read = |k: usize| -> Vec<Option<Provenance>> {
            let name = node.input.get(k).cloned().unwrap_or_default();
            match self.provenance.get(&name) {
                Some(p) => p
                    .iter()
                    .map(|e| e.clone().map(|mut e| {
                        if e.reader.is_none() {
                            e.reader = Some((index, k));
                        }
                        e
                    }))
                    .collect(),
                None => Vec::new(),
            }
        };
        let out = match node.op_type.as_str() {
            "Constant" => node.output.first().map(|o| (0..n).map(|elem| Some(Provenance { source: o.clone(), elem, reader: None })).collect()).unwrap_or_default(),
            "Unsqueeze" | "Squeeze" | "Reshape" | "Cast" | "Identity" => read(0),
            "Concat" => (0..node.input.len()).flat_map(|k| {
                let p = read(k);
                let len = self.values.get(&node.input[k]).map_or(0, |v| if let Value::Ints { data, .. } = v { data.len() } else { 0 });
                if p.len() == len { p } else { vec![None; len] }
            }).collect(),
            _ => Vec::new(),
        };
        if out.len() == n { out } else { vec![None; n] }
    }

    /// Makes a reshape produce `expected`: when its input comes from an `Expand` whose size no
    /// longer matches, the one broadcast size of the expand is corrected; then every constant
    /// element of the target that disagrees with `expected`.
    fn repair_reshape(&mut self, node: &NodeProto, x: &Value, target: &[SymInt], expected: &[Dim]) -> Result<()> {
        let probe: HashMap<String, i64> = [("batch".to_string(), 2), ("seq".to_string(), 3)].into_iter().collect();
        let count = |dims: &[Dim]| -> Option<i64> {
            dims.iter().try_fold(1i64, |n, d| eval_dim(d, &probe).and_then(|v| n.checked_mul(v)))
        };
        let Value::Runtime { id, shape, .. } = x else { return Ok(()) };
        let (have, want) = (count(shape), count(expected));
        if have != want {
            let Some((e_idx, tname)) = self.expand_of.get(id).cloned() else {
                return Err(self.err(node, format!("its input has {have:?} elements at the probe sizes, {want:?} are expected, and no expand before it to correct")));
            };
            let e_node = self.file.graph().node.get(e_idx).cloned().ok_or_else(|| self.err(node, "expand"))?;
            let e_in = self.input(&e_node, 0)?;
            let from = self.shape_of(&e_in);
            let Some(Value::Ints { data: tdata, .. }) = self.values.get(&tname).cloned() else { return Err(self.err(&e_node, "expand target")) };
            let off = tdata.len().saturating_sub(from.len());
            let candidates: Vec<usize> = (off..tdata.len())
                .filter(|&k| from[k - off] == Dim::Fixed(1) && matches!(tdata[k], SymInt::Known(c) if c > 1))
                .collect();
            let (Some(have), Some(want), [k]) = (have, want, candidates.as_slice()) else {
                return Err(self.err(&e_node, "cannot tell which broadcast size of this expand to correct"));
            };
            let SymInt::Known(c) = tdata[*k] else { return Ok(()) };
            if (want * c) % have != 0 {
                return Err(self.err(&e_node, "the corrected broadcast size is not a whole number"));
            }
            let new = want * c / have;
            self.edit(&e_node, &tname, *k, new)?;
            let mut s = shape.clone();
            s[*k] = Dim::Fixed(new as usize);
            self.set_shape(*id, s);
        }
        let tname = node.input.get(1).cloned().unwrap_or_default();
        if target.len() != expected.len() {
            return Err(self.err(node, format!("the target has {} axes, {} are expected", target.len(), expected.len())));
        }
        for (k, (t, e)) in target.iter().zip(expected).enumerate() {
            if let (SymInt::Known(c), Dim::Fixed(e)) = (t, e) {
                if *c > 0 && *c as usize != *e {
                    self.edit(node, &tname, k, *e as i64)?;
                }
            }
        }
        Ok(())
    }

    /// `Split`: one slice per output.
    fn split(&mut self, node: &NodeProto) -> Result<Vec<Value>> {
        let x = self.input(node, 0)?;
        let shape = self.shape_of(&x);
        let axis = self.file.attr_int(node, "axis")?.unwrap_or(0);
        let ax = self.axis(node, axis, shape.len())?;
        let size = shape.get(ax).and_then(Dim::fixed).ok_or_else(|| self.err(node, "splitting a symbolic axis"))?;
        let n = node.output.len().max(1);
        let sizes: Vec<usize> = match (self.optional_input(node, 1), self.file.attr_ints(node, "split")?) {
            (Some(v), _) => Self::known_ints(&v).ok_or_else(|| self.err(node, "split sizes must be constant"))?.iter().map(|&v| v.max(0) as usize).collect(),
            (None, Some(a)) => a.iter().map(|&v| v.max(0) as usize).collect(),
            // equal parts, the last one smaller (opset 18's num_outputs)
            (None, None) => {
                let part = size.div_ceil(n);
                (0..n).map(|k| part.min(size.saturating_sub(k * part))).collect()
            }
        };
        if sizes.len() != node.output.len() || sizes.iter().sum::<usize>() != size {
            return Err(self.err(node, format!("split sizes {sizes:?} do not cover the axis of {size}")));
        }
        let mut outs = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for len in sizes {
            let end = start + len;
            outs.push(match &x {
                Value::Ints { data, .. } if shape.len() == 1 => Value::Ints { shape: vec![len], data: data[start..end].to_vec() },
                _ => {
                    let mut out = shape.clone();
                    out[ax] = Dim::Fixed(len);
                    let dtype = Self::dtype_of(&x);
                    let id = self.operand(&x);
                    let a = self.int_leaf(from_end(axis, shape.len()));
                    let (ls, le) = (self.size_leaf(start), self.size_leaf(end));
                    self.node(Term::Slice([id, a, ls, le]), dtype, out)
                }
            });
            start = end;
        }
        Ok(outs)
    }

    /// Records that element `k` of the integer value `name` must be `value`.
    fn edit(&mut self, node: &NodeProto, name: &str, k: usize, value: i64) -> Result<()> {
        let prov = self.provenance.get(name).and_then(|p| p.get(k).cloned().flatten());
        match prov {
            Some(prov) if prov.reader.is_some() => {
                self.edits.push(Edit { provenance: prov, value });
                Ok(())
            }
            _ => Err(self.err(node, format!("element {k} of `{name}` must become {value}, but it is not a constant prunec can rewrite"))),
        }
    }

    /// A valid node whose op (`op`, with its domain when not the default) the importer does not read.
    /// Axis `axis` of a value of `rank` axes read by `node`, or an error naming the node.
    fn axis(&self, node: &NodeProto, axis: i64, rank: usize) -> Result<usize> {
        axis_index(axis, rank).ok_or_else(|| self.err(node, format!("axis {axis} is outside a value of rank {rank}")))
    }

    fn err(&self, node: &NodeProto, reason: impl Into<String>) -> FrontendError {
        FrontendError::Corrupt {
            path: self.file.path().to_path_buf(),
            format: "ONNX",
            reason: format!("node `{}` ({}): {}", node.name, node.op_type, reason.into()),
        }
    }

    fn leaf(&mut self, leaf: Term) -> Id {
        self.eg.add(leaf)
    }

    fn int_leaf(&mut self, v: i64) -> Id {
        self.leaf(Term::Int(IntConst(i128::from(v))))
    }

    /// An integer leaf holding a size or an index.
    fn size_leaf(&mut self, v: usize) -> Id {
        self.leaf(Term::Int(IntConst(v as i128)))
    }

    fn ints_leaf(&mut self, v: &[i64]) -> Id {
        self.leaf(Term::IntList(IntList(v.into())))
    }

    fn float_leaf(&mut self, v: f32) -> Id {
        self.leaf(Term::Float(FloatConst::new(v)))
    }

    /// A leaf for a shape with symbolic sizes (a new table entry, even for a shape entered
    /// before).
    fn dims_leaf(&mut self, dims: Vec<Dim>) -> Id {
        let leaf = self.eg.analysis.shape_leaf(dims);
        self.leaf(leaf)
    }

    fn node(&mut self, term: Term, dtype: DType, shape: Vec<Dim>) -> Value {
        let id = self.add(term, shape.clone());
        Value::Runtime { id, dtype, shape }
    }

    /// A runtime e-node of `shape`, its class.
    fn add(&mut self, term: Term, shape: Vec<Dim>) -> Id {
        let id = self.eg.add(term);
        self.set_shape(id, shape);
        id
    }

    /// Records the shape of runtime class `id`.
    fn set_shape(&mut self, id: Id, shape: Vec<Dim>) {
        self.eg[id].data.shape = Some(shape);
    }

    /// The value of input `k` of `node`; an error naming the node when it has none.
    fn input(&self, node: &NodeProto, k: usize) -> Result<Value> {
        let name = node.input.get(k).filter(|n| !n.is_empty()).ok_or_else(|| self.err(node, format!("input {k} missing")))?;
        match self.values.get(name) {
            Some(v) => Ok(v.clone()),
            None if self.strings.contains(name) => Err(self.err(node, format!("input `{name}` is a string constant, which no op prunec imports reads"))),
            None if self.packed.contains_key(name) => Err(self.err(node, format!("input `{name}` is a packed quantized tensor, which only MatMulNBits and GatherBlockQuantized read"))),
            None => Err(self.err(node, super::check::undefined_input(self.file.graph(), self.current, name))),
        }
    }

    /// The value of input `k` of `node`, when it has one.
    fn optional_input(&self, node: &NodeProto, k: usize) -> Option<Value> {
        node.input.get(k).filter(|n| !n.is_empty()).and_then(|n| self.values.get(n).cloned())
    }

    fn known_ints(v: &Value) -> Option<Vec<i64>> {
        match v {
            Value::Ints { data, .. } => data.iter().map(|s| if let SymInt::Known(k) = s { Some(*k) } else { None }).collect(),
            _ => None,
        }
    }

    /// The element count of a constant the folder would build with `shape`, refused (an error
    /// naming the node) past [`MAX_FOLDED`] elements: a graph cannot make the importer allocate
    /// without bound.
    fn folded_len(&self, node: &NodeProto, shape: &[usize]) -> Result<usize> {
        checked_product(shape.iter().copied())
            .filter(|&n| n <= MAX_FOLDED)
            .ok_or_else(|| self.err(node, format!("a constant of shape {shape:?} is too large to fold (more than {MAX_FOLDED} elements)")))
    }

    fn ints_input(&self, node: &NodeProto, k: usize, what: &str) -> Result<Vec<i64>> {
        let v = self.input(node, k)?;
        Self::known_ints(&v).ok_or_else(|| self.err(node, format!("{what} must be constant")))
    }

    /// An e-class for any value used as a runtime operand.
    fn operand(&mut self, v: &Value) -> Id {
        match v {
            Value::Runtime { id, .. } => *id,
            Value::Weight { name, .. } => self.leaf(Term::Weight(WeightName(Symbol::from(name.as_str())))),
            // one value, whatever its shape: a scalar
            Value::Floats { data, .. } if data.len() == 1 => self.float_leaf(data[0]),
            Value::Floats { shape, data } => {
                let leaf = self.eg.analysis.float_tensor_leaf(shape.clone(), data.clone());
                self.leaf(leaf)
            }
            Value::Ints { data, shape } => match Self::known_ints(v) {
                Some(k) if k.len() == 1 && shape.is_empty() => self.int_leaf(k[0]),
                Some(k) => self.ints_leaf(&k),
                None => {
                    let dims: Vec<Dim> = data.iter().map(|s| s.size().unwrap_or(Dim::Fixed(0))).collect();
                    self.dims_leaf(dims)
                }
            },
        }
    }

    fn shape_of(&self, v: &Value) -> Vec<Dim> {
        match v {
            Value::Runtime { shape, .. } => shape.clone(),
            Value::Weight { shape, .. } | Value::Floats { shape, .. } | Value::Ints { shape, .. } => shape.iter().map(|&n| Dim::Fixed(n)).collect(),
        }
    }

    fn dtype_of(v: &Value) -> DType {
        match v {
            Value::Runtime { dtype, .. } => *dtype,
            Value::Weight { .. } | Value::Floats { .. } => DType::F32,
            Value::Ints { .. } => DType::I64,
        }
    }

    /// The value of a `Constant` node, whichever attribute holds it; `None` for strings.
    fn constant(&self, node: &NodeProto) -> Result<Option<Value>> {
        let value = self.file.constant_value(node)?;
        Ok(Some(match value {
            ConstantValue::Float(f) => Value::Floats { shape: vec![], data: vec![f] },
            ConstantValue::Floats(f) => Value::Floats { shape: vec![f.len()], data: f.to_vec() },
            ConstantValue::Int(i) => Value::Ints { shape: vec![], data: vec![SymInt::Known(i)] },
            ConstantValue::Ints(i) => Value::Ints { shape: vec![i.len()], data: i.iter().map(|&k| SymInt::Known(k)).collect() },
            ConstantValue::Tensor(t) if t.data_type == DataType::String as i32 => return Ok(None),
            ConstantValue::Tensor(t) => self.tensor_val(t)?,
            ConstantValue::Sparse(t) => {
                let float = t.values.as_ref().is_some_and(|v| {
                    matches!(DataType::try_from(v.data_type), Ok(DataType::Float | DataType::Float16 | DataType::Bfloat16 | DataType::Double))
                });
                if float {
                    let (shape, data) = self.file.sparse_f32(t)?;
                    Value::Floats { shape, data }
                } else {
                    let (shape, data) = self.file.sparse_i64(t)?;
                    Value::Ints { shape, data: data.into_iter().map(SymInt::Known).collect() }
                }
            }
            ConstantValue::String(_) | ConstantValue::Strings(_) => return Ok(None),
        }))
    }

    fn tensor_val(&self, t: &super::proto::TensorProto) -> Result<Value> {
        let dt = DataType::try_from(t.data_type).unwrap_or(DataType::Undefined);
        match dt {
            DataType::Float | DataType::Float16 | DataType::Bfloat16 | DataType::Double => {
                let (shape, data) = self.file.tensor_f32(t)?;
                Ok(Value::Floats { shape, data: data.into_owned() })
            }
            _ => {
                let (shape, data) = self.file.tensor_i64(t)?;
                Ok(Value::Ints { shape, data: data.into_iter().map(SymInt::Known).collect() })
            }
        }
    }

    fn binary_ints(&self, node: &NodeProto, a: &Value, b: &Value) -> Result<Option<Value>> {
        let (Value::Ints { shape: sa, data: da }, Value::Ints { shape: sb, data: db }) = (a, b) else { return Ok(None) };
        let n = da.len().max(db.len());
        if !(da.len() == n || da.len() == 1) || !(db.len() == n || db.len() == 1) {
            return Ok(None);
        }
        let shape = if sa.len() >= sb.len() { sa.clone() } else { sb.clone() };
        let overflow = || self.err(node, "a symbolic size overflows");
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let (x, y) = (&da[if da.len() == 1 { 0 } else { i }], &db[if db.len() == 1 { 0 } else { i }]);
            let r = match (node.op_type.as_str(), x, y) {
                // int64 arithmetic wraps in ONNX (as in onnxruntime): a graph's constants may overflow
                ("Add", SymInt::Known(x), SymInt::Known(y)) => SymInt::Known(x.wrapping_add(*y)),
                ("Sub", SymInt::Known(x), SymInt::Known(y)) => SymInt::Known(x.wrapping_sub(*y)),
                ("Mul", SymInt::Known(x), SymInt::Known(y)) => SymInt::Known(x.wrapping_mul(*y)),
                ("Div", SymInt::Known(x), SymInt::Known(y)) => match x.checked_div_euclid(*y) {
                    Some(q) => SymInt::Known(q),
                    None => return Ok(None),
                },
                ("Equal", x, y) => SymInt::Known(i64::from(x == y)),
                ("Add", x, y) => SymInt::Symbolic(dim_op(SizeOp::Add, &x.dim(), &y.dim()).ok_or_else(overflow)?),
                ("Sub", x, y) => SymInt::Symbolic(dim_op(SizeOp::Sub, &x.dim(), &y.dim()).ok_or_else(overflow)?),
                ("Mul", x, y) => SymInt::Symbolic(dim_op(SizeOp::Mul, &x.dim(), &y.dim()).ok_or_else(overflow)?),
                _ => return Ok(None),
            };
            out.push(r);
        }
        Ok(Some(Value::Ints { shape, data: out }))
    }

    /// `x` cast to a float (`float`) or integer type (`to`, ONNX's number, kept on a runtime
    /// cast). Casts between float types and between integer types change nothing the IR
    /// computes in f32 and i64; constants are converted at once.
    fn cast(&mut self, node: &NodeProto, x: Value, float: bool, to: i64) -> Result<Value> {
        Ok(match (&x, float) {
            (Value::Runtime { dtype, .. }, true) if dtype.is_float() => x.clone(),
            (Value::Runtime { dtype, .. }, false) if !dtype.is_float() => x.clone(),
            (Value::Runtime { shape, .. }, _) => {
                let id = self.operand(&x);
                let to_leaf = self.int_leaf(to);
                let shape = shape.clone();
                self.node(Term::Cast([id, to_leaf]), if float { DType::F32 } else { DType::I64 }, shape)
            }
            (Value::Ints { shape, .. }, true) => match Self::known_ints(&x) {
                Some(k) => Value::Floats { shape: shape.clone(), data: k.iter().map(|&v| v as f32).collect() },
                None => return Err(self.err(node, "casting a symbolic size to float")),
            },
            (Value::Floats { shape, data }, false) => {
                Value::Ints { shape: shape.clone(), data: data.iter().map(|&v| SymInt::Known(v as i64)).collect() }
            }
            _ => x.clone(),
        })
    }

    fn fold_node(&mut self, node: &NodeProto) -> Result<Vec<Value>> {
        let op = node.op_type.as_str();
        let attr_i = |name: &str| self.file.attr_int(node, name);
        // onnxruntime registers SimplifiedLayerNormalization in ONNX's own domain
        if !super::is_default_domain(&node.domain) || op == "SimplifiedLayerNormalization" {
            return self.fold_contrib(node);
        }
        match op {
            "Split" => return self.split(node),
            "If" => return self.fold_if(node),
            "Reshape" if node.input.first().is_some_and(|n| self.packed.contains_key(n)) => {
                // another view of packed 4-bit data (the table `GatherBlockQuantized` reads)
                let (init, from) = node.input.first().and_then(|n| self.packed.get(n)).cloned().unwrap_or_default();
                let target = self.ints_input(node, 1, "the shape")?;
                let total = checked_product(from.iter().copied()).ok_or_else(|| self.err(node, "the data's size overflows"))?;
                let known = checked_product(target.iter().filter(|&&t| t > 0).map(|&t| t as usize))
                    .ok_or_else(|| self.err(node, "the target shape's size overflows"))?;
                let shape: Vec<usize> = target
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| match t {
                        -1 => total / known.max(1),
                        0 => from.get(i).copied().unwrap_or(0),
                        t => t.max(0) as usize,
                    })
                    .collect();
                if checked_product(shape.iter().copied()) != Some(total) {
                    return Err(self.err(node, format!("reshaping packed data of shape {from:?} to {target:?}")));
                }
                if let Some(o) = node.output.first() {
                    self.packed.insert(o.clone(), (init, shape));
                }
                return Ok(vec![]);
            }
            _ => {}
        }
        let out = match op {
            "Constant" => match self.constant(node)? {
                Some(v) => v,
                None => {
                    self.strings.extend(node.output.iter().cloned());
                    return Ok(vec![]);
                }
            },
            "Identity" => self.input(node, 0)?,
            "Shape" => {
                let x = self.input(node, 0)?;
                let dims: Vec<SymInt> = self.shape_of(&x).iter().map(SymInt::from).collect();
                let r = dims.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let start = clamp(attr_i("start")?.unwrap_or(0));
                let end = clamp(attr_i("end")?.unwrap_or(r));
                let data = dims.get(start..end.max(start)).unwrap_or_default().to_vec();
                Value::Ints { shape: vec![data.len()], data }
            }
            "Cast" => {
                let x = self.input(node, 0)?;
                let to = attr_i("to")?.unwrap_or(1);
                let float = matches!(DataType::try_from(to as i32), Ok(DataType::Float | DataType::Float16 | DataType::Bfloat16 | DataType::Double));
                self.cast(node, x, float, to)?
            }
            "CastLike" => {
                // the element type of the second operand, whatever its value
                let (x, like) = (self.input(node, 0)?, self.input(node, 1)?);
                let float = match &like {
                    Value::Runtime { dtype, .. } => dtype.is_float(),
                    Value::Weight { .. } | Value::Floats { .. } => true,
                    Value::Ints { .. } => false,
                };
                let to = if float { DataType::Float as i64 } else { DataType::Int64 as i64 };
                self.cast(node, x, float, to)?
            }
            "Gather" => {
                let (data, idx) = (self.input(node, 0)?, self.input(node, 1)?);
                let axis = attr_i("axis")?.unwrap_or(0);
                match (&data, Self::known_ints(&idx)) {
                    (Value::Ints { data: d, .. }, Some(ix)) if axis == 0 => {
                        let n = d.len() as i64;
                        let picked: Option<Vec<SymInt>> =
                            ix.iter().map(|&i| d.get(if i < 0 { i + n } else { i } as usize).cloned()).collect();
                        let picked = picked.ok_or_else(|| self.err(node, "index out of range"))?;
                        let Value::Ints { shape: ishape, .. } = &idx else { return Err(self.err(node, "index")) };
                        Value::Ints { shape: ishape.clone(), data: picked }
                    }
                    _ => {
                        let ds = self.shape_of(&data);
                        let is = self.shape_of(&idx);
                        let ax = self.axis(node, axis, ds.len())?;
                        let mut shape = ds[..ax].to_vec();
                        shape.extend(is);
                        shape.extend_from_slice(ds.get(ax + 1..).unwrap_or_default());
                        let (a, b) = (self.operand(&data), self.operand(&idx));
                        let ax_leaf = self.size_leaf(ax);
                        self.node(Term::Gather([a, b, ax_leaf]), Self::dtype_of(&data), shape)
                    }
                }
            }
            "Unsqueeze" | "Squeeze" => {
                let x = self.input(node, 0)?;
                let axes = match self.file.attr_ints(node, "axes")? {
                    Some(a) => a.to_vec(),
                    None if node.input.len() > 1 => self.ints_input(node, 1, "axes")?,
                    None => vec![],
                };
                let shape = self.shape_of(&x);
                let new_shape: Vec<Dim> = if op == "Unsqueeze" {
                    let r = shape.len() + axes.len();
                    let mut ax: Vec<usize> = axes.iter().map(|&a| self.axis(node, a, r)).collect::<Result<_>>()?;
                    ax.sort_unstable();
                    let mut s = shape.clone();
                    for a in ax {
                        s.insert(a.min(s.len()), Dim::Fixed(1));
                    }
                    s
                } else {
                    let ax: Vec<usize> = if axes.is_empty() {
                        shape.iter().enumerate().filter(|(_, d)| **d == Dim::Fixed(1)).map(|(i, _)| i).collect()
                    } else {
                        axes.iter().map(|&a| self.axis(node, a, shape.len())).collect::<Result<_>>()?
                    };
                    shape.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, d)| d.clone()).collect()
                };
                match x {
                    Value::Ints { data, .. } => Value::Ints { shape: new_shape.iter().filter_map(Dim::fixed).collect(), data },
                    Value::Floats { data, .. } => Value::Floats { shape: new_shape.iter().filter_map(Dim::fixed).collect(), data },
                    _ => {
                        let id = self.operand(&x);
                        let norm: Vec<i64> = if op == "Unsqueeze" {
                            let r = new_shape.len();
                            let mut a: Vec<i64> = axes.iter().map(|&a| self.axis(node, a, r).map(|a| a as i64)).collect::<Result<_>>()?;
                            a.sort_unstable();
                            a
                        } else {
                            axes.iter().map(|&a| self.axis(node, a, shape.len()).map(|a| a as i64)).collect::<Result<_>>()?
                        };
                        let l = self.ints_leaf(&norm);
                        let term = if op == "Unsqueeze" { Term::Unsqueeze([id, l]) } else { Term::Squeeze([id, l]) };
                        self.node(term, Self::dtype_of(&x), new_shape)
                    }
                }
            }
            "Concat" => {
                let xs: Vec<Value> = (0..node.input.len()).map(|k| self.input(node, k)).collect::<Result<_>>()?;
                let axis = attr_i("axis")?.unwrap_or(0);
                if xs.iter().all(|x| matches!(x, Value::Ints { .. })) {
                    let data: Vec<SymInt> = xs.iter().flat_map(|x| if let Value::Ints { data, .. } = x { data.clone() } else { vec![] }).collect();
                    Value::Ints { shape: vec![data.len()], data }
                } else {
                    // an empty operand (a key/value cache with no past positions) adds nothing;
                    // the cache takes the shape of what it is concatenated with
                    let rank = self.shape_of(xs.first().ok_or_else(|| self.err(node, "no operand"))?).len();
                    let ax = self.axis(node, axis, rank)?;
                    if xs.iter().any(|x| self.shape_of(x).len() != rank) {
                        return Err(self.err(node, format!("axis {axis} of operands of ranks {:?}", xs.iter().map(|x| self.shape_of(x).len()).collect::<Vec<_>>())));
                    }
                    let (empty, xs): (Vec<Value>, Vec<Value>) = xs.into_iter().partition(|x| self.shape_of(x).get(ax) == Some(&Dim::Fixed(0)));
                    if xs.is_empty() {
                        return Err(self.err(node, "every operand is empty"));
                    }
                    let shapes: Vec<Vec<Dim>> = xs.iter().map(|x| self.shape_of(x)).collect();
                    for e in &empty {
                        if let Some(name) = self.cache_inputs.get(&self.eg.find(match e { Value::Runtime { id, .. } => *id, _ => continue })) {
                            self.cache_shapes.insert(name.clone(), shapes[0].clone());
                        }
                    }
                    if xs.len() == 1 {
                        return Ok(xs);
                    }
                    let mut shape = shapes[0].clone();
                    shape[ax] = shapes
                        .iter()
                        .skip(1)
                        .try_fold(shapes[0][ax].clone(), |acc, s| dim_op(SizeOp::Add, &acc, &s[ax]))
                        .ok_or_else(|| self.err(node, "the concatenated size overflows"))?;
                    let mut children = vec![self.int_leaf(from_end(axis, rank))];
                    for x in &xs {
                        children.push(self.operand(x));
                    }
                    self.node(Term::Concat(children.into()), Self::dtype_of(&xs[0]), shape)
                }
            }
            "Range" => {
                let (s, l, d) = (self.input(node, 0)?, self.input(node, 1)?, self.input(node, 2)?);
                let first = |v: &Value| if let Value::Ints { data, .. } = v { data.first().cloned() } else { None };
                match (first(&s), first(&l), first(&d)) {
                    (Some(SymInt::Known(s)), Some(SymInt::Known(l)), Some(SymInt::Known(d))) if d != 0 => {
                        // ONNX's count: max(ceil((limit − start) / delta), 0), in i128 (no overflow)
                        let (s128, l128, d128) = (i128::from(s), i128::from(l), i128::from(d));
                        let count = ((l128 - s128 + d128 - d128.signum()) / d128).max(0);
                        self.folded_len(node, &[usize::try_from(count).unwrap_or(usize::MAX)])?;
                        let data: Vec<SymInt> = (0..).map(|k| s + k * d).take_while(|&v| if d > 0 { v < l } else { v > l }).map(SymInt::Known).collect();
                        Value::Ints { shape: vec![data.len()], data }
                    }
                    (Some(SymInt::Known(0)), Some(SymInt::Symbolic(dim)), Some(SymInt::Known(1))) => {
                        let (a, b, c) = (self.operand(&s), self.operand(&l), self.operand(&d));
                        self.node(Term::Range([a, b, c]), DType::I64, vec![dim])
                    }
                    _ => return Err(self.err(node, "only ranges 0..n step 1 over a symbolic n, or constant ones")),
                }
            }
            "ConstantOfShape" if Self::known_ints(&self.input(node, 0)?).is_none() => {
                // a symbolic shape: a runtime tensor (masks are built from these)
                let Value::Ints { data, .. } = self.input(node, 0)? else { return Err(self.err(node, "the shape")) };
                let dims: Vec<Dim> = data.iter().map(SymInt::dim).collect();
                let value = match self.file.attr_tensor(node, "value")? {
                    Some(t) => match self.tensor_val(t)? {
                        Value::Floats { data, .. } => data.first().copied().unwrap_or(0.0),
                        Value::Ints { data, .. } => match data.first() {
                            Some(SymInt::Known(k)) => *k as f32,
                            _ => 0.0,
                        },
                        _ => 0.0,
                    },
                    None => 0.0,
                };
                let l = self.dims_leaf(dims.clone());
                let v = self.float_leaf(value);
                self.node(Term::ConstantOfShape([l, v]), DType::F32, dims)
            }
            "Trilu" => {
                let x = self.input(node, 0)?;
                let k = match self.optional_input(node, 1) {
                    Some(v) => Self::known_ints(&v).and_then(|k| k.first().copied()).ok_or_else(|| self.err(node, "k must be constant"))?,
                    None => 0,
                };
                let upper = attr_i("upper")?.unwrap_or(1);
                let shape = self.shape_of(&x);
                let dtype = Self::dtype_of(&x);
                let id = self.operand(&x);
                let (lk, lu) = (self.int_leaf(k), self.int_leaf(upper));
                self.node(Term::Trilu([id, lk, lu]), dtype, shape)
            }
            "ConstantOfShape" => {
                let s = self.ints_input(node, 0, "the shape")?;
                let shape: Vec<usize> = s.iter().map(|&v| v.max(0) as usize).collect();
                let n = self.folded_len(node, &shape)?;
                match self.file.attr_tensor(node, "value")? {
                    Some(t) => match self.tensor_val(t)? {
                        Value::Floats { data, .. } => Value::Floats { shape, data: vec![data.first().copied().unwrap_or(0.0); n] },
                        Value::Ints { data, .. } => Value::Ints { shape, data: vec![data.first().cloned().unwrap_or(SymInt::Known(0)); n] },
                        _ => return Err(self.err(node, "value")),
                    },
                    None => Value::Floats { shape, data: vec![0.0; n] },
                }
            }
            "Reshape" => {
                let x = self.input(node, 0)?;
                let target = match self.input(node, 1)? {
                    Value::Ints { data, .. } => data,
                    _ => return Err(self.err(node, "the target shape must be known")),
                };
                let allowzero = attr_i("allowzero")?.unwrap_or(0) != 0;
                let expected = match (&x, self.oracle.and_then(|o| node.output.first().and_then(|n| o.get(n)))) {
                    (Value::Runtime { .. }, Some(e)) => Some(e.clone()),
                    _ => None,
                };
                if let Some(e) = &expected {
                    self.repair_reshape(node, &x, &target, e)?;
                }
                let from = match &x {
                    Value::Runtime { id, .. } => self.eg[*id].data.shape.clone().unwrap_or_else(|| self.shape_of(&x)),
                    _ => self.shape_of(&x),
                };
                let mut dims: Vec<Option<Dim>> = Vec::new();
                for (i, t) in target.iter().enumerate() {
                    dims.push(match t {
                        SymInt::Known(0) if !allowzero => from.get(i).cloned(),
                        SymInt::Known(-1) => None,
                        other => other.size(),
                    });
                }
                if dims.iter().filter(|d| d.is_none()).count() > 1 {
                    return Err(self.err(node, "more than one -1 in the target shape"));
                }
                if let Some(e) = &expected {
                    dims = e.iter().cloned().map(Some).collect();
                }
                if let Some(hole) = dims.iter().position(Option::is_none) {
                    // cancel the symbols present on both sides, divide the fixed products
                    let mut syms: Vec<Dim> = from.iter().filter(|d| d.fixed().is_none()).cloned().collect();
                    let mut rest = 1usize;
                    for d in dims.iter().flatten() {
                        match d.fixed() {
                            Some(n) => rest = rest.checked_mul(n).ok_or_else(|| self.err(node, "the target shape's size overflows"))?,
                            None => match syms.iter().position(|s| s == d) {
                                Some(p) => {
                                    syms.remove(p);
                                }
                                None => return Err(self.err(node, "cannot infer -1")),
                            },
                        }
                    }
                    let fixed = checked_product(from.iter().filter_map(Dim::fixed)).ok_or_else(|| self.err(node, "the input's size overflows"))?;
                    if rest == 0 || !fixed.is_multiple_of(rest) {
                        return Err(self.err(node, "cannot infer -1"));
                    }
                    let inferred = syms.iter().try_fold(Dim::Fixed(fixed / rest), |acc, s| dim_op(SizeOp::Mul, s, &acc));
                    dims[hole] = Some(inferred.ok_or_else(|| self.err(node, "the inferred size overflows"))?);
                }
                let to: Vec<Dim> = dims.into_iter().flatten().collect();
                match &x {
                    Value::Ints { data, .. } => Value::Ints { shape: to.iter().filter_map(Dim::fixed).collect(), data: data.clone() },
                    Value::Floats { data, .. } => Value::Floats { shape: to.iter().filter_map(Dim::fixed).collect(), data: data.clone() },
                    _ => {
                        let dtype = Self::dtype_of(&x);
                        let id = self.operand(&x);
                        let r = from.len();
                        let split = r >= 1
                            && to.len() == r + 1
                            && to[..r - 1] == from[..r - 1]
                            && matches!((&from[r - 1], &to[r - 1], &to[r]), (Dim::Fixed(n), Dim::Fixed(h), Dim::Fixed(d)) if h.checked_mul(*d) == Some(*n));
                        let merge = r >= 2
                            && to.len() == r - 1
                            && to[..r - 2] == from[..r - 2]
                            && matches!((&from[r - 2], &from[r - 1], &to[r - 2]), (Dim::Fixed(h), Dim::Fixed(d), Dim::Fixed(n)) if h.checked_mul(*d) == Some(*n));
                        if split {
                            let h = to[r - 1].fixed().unwrap_or(1);
                            let l = self.size_leaf(h);
                            self.node(Term::SplitHeads([id, l]), dtype, to)
                        } else if merge {
                            self.node(Term::MergeHeads(id), dtype, to)
                        } else {
                            let l = self.dims_leaf(to.clone());
                            self.node(Term::Reshape([id, l]), dtype, to)
                        }
                    }
                }
            }
            "Expand" => {
                let x = self.input(node, 0)?;
                let target: Vec<Dim> = match self.input(node, 1)? {
                    Value::Ints { data, .. } => data.iter().map(|s| s.size().unwrap_or(Dim::Fixed(1))).collect(),
                    _ => return Err(self.err(node, "the target shape must be known")),
                };
                let from = self.shape_of(&x);
                let mut target = target;
                if self.oracle.is_some() {
                    // a kept (not broadcast) axis must keep the input's size; when the input is
                    // an unsqueeze, the axes it inserted are the broadcast ones, and the others
                    // keep their size even when pruning left 1
                    let off = target.len().saturating_sub(from.len());
                    let tname = node.input.get(1).cloned().unwrap_or_default();
                    let inserted: Option<Vec<usize>> = match &x {
                        Value::Runtime { id, .. } => {
                            let axes = self.eg[*id].nodes.iter().find_map(|n| if let Term::Unsqueeze([_, axes]) = n { Some(*axes) } else { None });
                            // an unsqueeze without axes tells nothing
                            axes.and_then(|axes| match self.eg[axes].nodes.first()? {
                                Term::IntList(IntList(axes)) if !axes.is_empty() => axes.iter().map(|&a| usize::try_from(a).ok()).collect(),
                                _ => None,
                            })
                        }
                        _ => None,
                    };
                    for k in off..target.len() {
                        if let (Dim::Fixed(n), Dim::Fixed(c)) = (&from[k - off], &target[k]) {
                            let kept = *n != 1 || inserted.as_ref().is_some_and(|ins| !ins.contains(&(k - off)));
                            if kept && n != c && *c != 1 {
                                self.edit(node, &tname, k, *n as i64)?;
                                target[k] = Dim::Fixed(*n);
                            }
                        }
                    }
                }
                let shape = broadcast(&from, &target).ok_or_else(|| self.err(node, "shapes do not broadcast"))?;
                let dtype = Self::dtype_of(&x);
                let id = self.operand(&x);
                let l = self.dims_leaf(shape.clone());
                self.node(Term::Expand([id, l]), dtype, shape)
            }
            "Transpose" => {
                let x = self.input(node, 0)?;
                let from = self.shape_of(&x);
                let perm: Vec<i64> = match self.file.attr_ints(node, "perm")? {
                    Some(p) => p.to_vec(),
                    None => (0..from.len() as i64).rev().collect(),
                };
                let shape: Vec<Dim> = perm.iter().map(|&p| from.get(p as usize).cloned().unwrap_or(Dim::Fixed(1))).collect();
                let dtype = Self::dtype_of(&x);
                let id = self.operand(&x);
                if perm == [0, 2, 1, 3] {
                    self.node(Term::SwapAxes12(id), dtype, shape)
                } else {
                    let l = self.ints_leaf(&perm);
                    self.node(Term::Transpose([id, l]), dtype, shape)
                }
            }
            "Slice" => {
                let x = self.input(node, 0)?;
                let bound = |k: usize| -> Result<Vec<SymInt>> {
                    match self.input(node, k)? {
                        Value::Ints { data, .. } => Ok(data),
                        _ => Err(self.err(node, "slice bounds must be integers")),
                    }
                };
                let (starts, ends) = (bound(1)?, bound(2)?);
                let shape = self.shape_of(&x);
                let axes = match self.optional_input(node, 3) {
                    Some(v) => Self::known_ints(&v).ok_or_else(|| self.err(node, "axes must be constant"))?,
                    None => (0..starts.len() as i64).collect(),
                };
                let steps = match self.optional_input(node, 4) {
                    Some(v) => Self::known_ints(&v).ok_or_else(|| self.err(node, "steps must be constant"))?,
                    None => vec![1; starts.len()],
                };
                if starts.len() != 1 || ends.len() != 1 || axes.len() != 1 || steps != [1] {
                    return Err(self.err(node, "only slices of one axis with step 1"));
                }
                let ax = self.axis(node, axes[0], shape.len())?;
                let size = shape.get(ax).and_then(Dim::fixed);
                let norm = |v: &SymInt| -> Option<usize> {
                    let SymInt::Known(v) = v else { return None };
                    match size {
                        Some(n) => Some((if *v < 0 { v + n as i64 } else { *v }).clamp(0, n as i64) as usize),
                        None if (0..i64::MAX / 2).contains(v) => Some(*v as usize),
                        None => None,
                    }
                };
                match (&x, norm(&starts[0]), norm(&ends[0])) {
                    (Value::Ints { data, .. }, Some(s), Some(e)) if shape.len() == 1 => {
                        let data = data.get(s..e.max(s).min(data.len())).unwrap_or_default().to_vec();
                        Value::Ints { shape: vec![data.len()], data }
                    }
                    (_, s, e) => {
                        let mut out = shape.clone();
                        let (sd, ed) = (s.map(Dim::Fixed).unwrap_or_else(|| starts[0].dim()), e.map(Dim::Fixed).unwrap_or_else(|| ends[0].dim()));
                        out[ax] = match (s, e) {
                            (Some(s), Some(e)) => Dim::Fixed(e.max(s) - s),
                            _ => dim_op(SizeOp::Sub, &ed, &sd).ok_or_else(|| self.err(node, "the slice's size overflows"))?,
                        };
                        let dtype = Self::dtype_of(&x);
                        let id = self.operand(&x);
                        let a = self.int_leaf(from_end(axes[0], shape.len()));
                        let ls = match s {
                            Some(s) => self.size_leaf(s),
                            None => self.operand(&Value::Ints { shape: vec![], data: vec![starts[0].clone()] }),
                        };
                        let le = match e {
                            Some(e) => self.size_leaf(e),
                            None => self.operand(&Value::Ints { shape: vec![], data: vec![ends[0].clone()] }),
                        };
                        self.node(Term::Slice([id, a, ls, le]), dtype, out)
                    }
                }
            }
            "CumSum" => {
                let x = self.input(node, 0)?;
                let axis = self.ints_input(node, 1, "the axis")?;
                if attr_i("exclusive")?.unwrap_or(0) != 0 || attr_i("reverse")?.unwrap_or(0) != 0 {
                    return Err(self.err(node, "only inclusive forward sums"));
                }
                let shape = self.shape_of(&x);
                let id = self.operand(&x);
                let l = self.int_leaf(from_end(axis.first().copied().unwrap_or(0), shape.len()));
                self.node(Term::CumSum([id, l]), Self::dtype_of(&x), shape)
            }
            "GatherND" => {
                let (data, idx) = (self.input(node, 0)?, self.input(node, 1)?);
                if attr_i("batch_dims")?.unwrap_or(0) != 0 {
                    return Err(self.err(node, "only batch_dims = 0"));
                }
                let (ds, is) = (self.shape_of(&data), self.shape_of(&idx));
                let m = is.last().and_then(Dim::fixed).ok_or_else(|| self.err(node, "the index depth must be fixed"))?;
                let mut shape = is[..is.len() - 1].to_vec();
                shape.extend_from_slice(ds.get(m..).unwrap_or_default());
                let (a, b) = (self.operand(&data), self.operand(&idx));
                self.node(Term::GatherND([a, b]), Self::dtype_of(&data), shape)
            }
            "ReduceMean" | "ReduceSum" => {
                let x = self.input(node, 0)?;
                let axes = match self.file.attr_ints(node, "axes")? {
                    Some(a) => a.to_vec(),
                    None if self.optional_input(node, 1).is_some() => self.ints_input(node, 1, "axes")?,
                    None if attr_i("noop_with_empty_axes")?.unwrap_or(0) != 0 => return Ok(vec![x]),
                    None => (0..self.shape_of(&x).len() as i64).collect(),
                };
                let keep = attr_i("keepdims")?.unwrap_or(1);
                let mut shape = self.shape_of(&x);
                let rank = shape.len();
                let norm: Vec<i64> = axes.iter().map(|&a| from_end(a, rank)).collect();
                for &a in &norm {
                    shape[self.axis(node, a, rank)?] = Dim::Fixed(1);
                }
                if keep == 0 {
                    let pos: Vec<usize> = norm.iter().map(|&a| self.axis(node, a, rank)).collect::<Result<_>>()?;
                    shape = shape.into_iter().enumerate().filter(|(i, _)| !pos.contains(i)).map(|(_, d)| d).collect();
                }
                let dtype = Self::dtype_of(&x);
                let id = self.operand(&x);
                let (la, lk) = (self.ints_leaf(&norm), self.int_leaf(keep));
                let term = if op == "ReduceMean" { Term::ReduceMean([id, la, lk]) } else { Term::ReduceSum([id, la, lk]) };
                self.node(term, dtype, shape)
            }
            "Flatten" => {
                let x = self.input(node, 0)?;
                let shape = self.shape_of(&x);
                // Flatten's axis may also be the rank (everything in the first factor)
                let axis = self.axis(node, attr_i("axis")?.unwrap_or(1), shape.len() + 1)?.min(shape.len());
                let product = |dims: &[Dim]| {
                    dims.iter().try_fold(Dim::Fixed(1), |acc, d| dim_op(SizeOp::Mul, &acc, d)).ok_or_else(|| self.err(node, "the flattened size overflows"))
                };
                let to = vec![product(&shape[..axis])?, product(&shape[axis..])?];
                match x {
                    Value::Ints { data, .. } => Value::Ints { shape: to.iter().filter_map(Dim::fixed).collect(), data },
                    Value::Floats { data, .. } => Value::Floats { shape: to.iter().filter_map(Dim::fixed).collect(), data },
                    _ => {
                        let dtype = Self::dtype_of(&x);
                        let id = self.operand(&x);
                        let l = self.dims_leaf(to.clone());
                        self.node(Term::Reshape([id, l]), dtype, to)
                    }
                }
            }
            "Softmax" => {
                let x = self.input(node, 0)?;
                let shape = self.shape_of(&x);
                let axis = from_end(attr_i("axis")?.unwrap_or(-1), shape.len());
                let id = self.operand(&x);
                let l = self.int_leaf(axis);
                self.node(Term::Softmax([id, l]), DType::F32, shape)
            }
            "Sqrt" | "Reciprocal" | "Neg" | "Sigmoid" | "Cos" | "Sin" | "Exp" | "Tanh" if matches!(self.input(node, 0)?, Value::Floats { .. }) => {
                // a constant (dynamo's `sqrt(scale)` of its attention decomposition)
                let Value::Floats { shape, data } = self.input(node, 0)? else { return Err(self.err(node, "a constant")) };
                let f = |v: f32| match op {
                    "Sqrt" => v.sqrt(),
                    "Reciprocal" => 1.0 / v,
                    "Neg" => -v,
                    "Sigmoid" => 1.0 / (1.0 + (-v).exp()),
                    "Cos" => v.cos(),
                    "Sin" => v.sin(),
                    "Exp" => v.exp(),
                    _ => v.tanh(),
                };
                Value::Floats { shape, data: data.into_iter().map(f).collect() }
            }
            "Sqrt" | "Reciprocal" | "Neg" | "Sigmoid" | "Cos" | "Sin" | "IsNaN" | "Not" | "Exp" | "Tanh" => {
                let x = self.input(node, 0)?;
                let shape = self.shape_of(&x);
                let dtype = if matches!(op, "IsNaN" | "Not") { DType::Bool } else { Self::dtype_of(&x) };
                let id = self.operand(&x);
                let term = unary_term(op, id).ok_or_else(|| unsupported_op(self.file, node))?;
                self.node(term, dtype, shape)
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "LessOrEqual" | "Less" | "Greater" | "And" | "Or" | "Max" | "Min" => {
                let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
                if let Some(v) = self.binary_ints(node, &a, &b)? {
                    v
                } else if let (Value::Floats { shape, data: da }, Value::Floats { data: db, .. }) = (&a, &b) {
                    if da.len() != db.len() && da.len() != 1 && db.len() != 1 {
                        return Err(self.err(node, "constant operands do not broadcast"));
                    }
                    let n = da.len().max(db.len());
                    let at = |d: &Vec<f32>, i: usize| d[if d.len() == 1 { 0 } else { i }];
                    let data: Vec<f32> = (0..n)
                        .map(|i| match op {
                            "Add" => at(da, i) + at(db, i),
                            "Sub" => at(da, i) - at(db, i),
                            "Mul" => at(da, i) * at(db, i),
                            "Div" => at(da, i) / at(db, i),
                            "Pow" => at(da, i).powf(at(db, i)),
                            _ => f32::NAN,
                        })
                        .collect();
                    Value::Floats { shape: if da.len() >= db.len() { shape.clone() } else { vec![n] }, data }
                } else {
                    let shape = broadcast(&self.shape_of(&a), &self.shape_of(&b)).ok_or_else(|| self.err(node, "shapes do not broadcast"))?;
                    let dtype = match op {
                        "Equal" | "LessOrEqual" | "Less" | "Greater" | "And" | "Or" => DType::Bool,
                        _ if matches!(a, Value::Runtime { .. }) => Self::dtype_of(&a),
                        _ => Self::dtype_of(&b),
                    };
                    let (ia, ib) = (self.operand(&a), self.operand(&b));
                    let term = binary_term(op, [ia, ib]).ok_or_else(|| unsupported_op(self.file, node))?;
                    self.node(term, dtype, shape)
                }
            }
            "Where" => {
                let (c, a, b) = (self.input(node, 0)?, self.input(node, 1)?, self.input(node, 2)?);
                if let (Some(cv), Value::Ints { data: da, .. }, Value::Ints { data: db, shape }) = (Self::known_ints(&c), &a, &b) {
                    let n = cv.len();
                    let pick = |d: &Vec<SymInt>, i: usize| d[if d.len() == 1 { 0 } else { i }].clone();
                    let data = (0..n).map(|i| if cv[i] != 0 { pick(da, i) } else { pick(db, i) }).collect();
                    Value::Ints { shape: shape.clone(), data }
                } else {
                    let s = broadcast(&self.shape_of(&c), &self.shape_of(&a)).and_then(|s| broadcast(&s, &self.shape_of(&b)));
                    let shape = s.ok_or_else(|| self.err(node, "shapes do not broadcast"))?;
                    let dtype = if matches!(a, Value::Runtime { .. }) { Self::dtype_of(&a) } else { Self::dtype_of(&b) };
                    let (ic, ia, ib) = (self.operand(&c), self.operand(&a), self.operand(&b));
                    self.node(Term::Where([ic, ia, ib]), dtype, shape)
                }
            }
            "MatMul" => {
                let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
                let (sa, sb) = (self.shape_of(&a), self.shape_of(&b));
                if sa.len() < 2 || sb.len() < 2 {
                    return Err(self.err(node, "operands of rank < 2"));
                }
                let batch = broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).ok_or_else(|| self.err(node, "batch axes do not broadcast"))?;
                let mut shape = batch;
                shape.push(sa[sa.len() - 2].clone());
                shape.push(sb[sb.len() - 1].clone());
                let (ia, ib) = (self.operand(&a), self.operand(&b));
                self.node(Term::MatMul([ia, ib]), DType::F32, shape)
            }
            "Gemm" => {
                let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
                let (ta, tb) = (attr_i("transA")?.unwrap_or(0), attr_i("transB")?.unwrap_or(0));
                let (alpha, beta) = (self.file.attr_float(node, "alpha")?.unwrap_or(1.0), self.file.attr_float(node, "beta")?.unwrap_or(1.0));
                if ta != 0 || alpha != 1.0 || beta != 1.0 {
                    return Err(self.err(node, "only Gemm with transA=0, alpha=beta=1"));
                }
                let (sa, sb) = (self.shape_of(&a), self.shape_of(&b));
                let n = if tb != 0 { sb[0].clone() } else { sb[1].clone() };
                let shape = vec![sa[0].clone(), n];
                let (ia, ib) = (self.operand(&a), self.operand(&b));
                let w = if tb != 0 {
                    let p = self.ints_leaf(&[1, 0]);
                    self.eg.add(Term::Transpose([ib, p]))
                } else {
                    ib
                };
                let Value::Runtime { id: mm, .. } = self.node(Term::MatMul([ia, w]), DType::F32, shape.clone()) else {
                    return Err(self.err(node, "gemm"));
                };
                match self.optional_input(node, 2) {
                    Some(c) => {
                        let ic = self.operand(&c);
                        self.node(Term::Add([mm, ic]), DType::F32, shape)
                    }
                    None => Value::Runtime { id: mm, dtype: DType::F32, shape },
                }
            }
            _ => return Err(unsupported_op(self.file, node)),
        };
        Ok(vec![out])
    }
}

/// The e-node of ONNX's elementwise op `op` of one operand.
fn unary_term(op: &str, x: Id) -> Option<Term> {
    Some(match op {
        "Sqrt" => Term::Sqrt(x),
        "Reciprocal" => Term::Reciprocal(x),
        "Neg" => Term::Neg(x),
        "Sigmoid" => Term::Sigmoid(x),
        "Cos" => Term::Cos(x),
        "Sin" => Term::Sin(x),
        "IsNaN" => Term::IsNaN(x),
        "Not" => Term::Not(x),
        "Exp" => Term::Exp(x),
        "Tanh" => Term::Tanh(x),
        _ => return None,
    })
}

/// The e-node of ONNX's elementwise op `op` of two operands.
fn binary_term(op: &str, xy: [Id; 2]) -> Option<Term> {
    Some(match op {
        "Add" => Term::Add(xy),
        "Sub" => Term::Sub(xy),
        "Mul" => Term::Mul(xy),
        "Div" => Term::Div(xy),
        "Pow" => Term::Pow(xy),
        "Equal" => Term::Equal(xy),
        "LessOrEqual" => Term::LessOrEqual(xy),
        "Less" => Term::Less(xy),
        "Greater" => Term::Greater(xy),
        "And" => Term::And(xy),
        "Or" => Term::Or(xy),
        "Max" => Term::Max(xy),
        "Min" => Term::Min(xy),
        _ => return None,
    })
}

/// What a graph input other than the token ids stands for. prunec computes a model as it
/// runs on whole rows without a cache — what calibration, evaluation and its own generation
/// need — so each of these inputs is folded to that value; the written model keeps the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputRole {
    /// The token ids, `[batch, seq]`: the IR's input.
    Ids,
    /// A padding mask `[batch, past + seq]` (`attention_mask`): all ones.
    Mask,
    /// Positions `[batch, seq]` (`position_ids`): `0..seq` in every row.
    Positions,
    /// A key/value cache `[batch, kv_heads, past, head_dim]` (`past_key_values.N.key`, …):
    /// empty (`past` = 0), so that concatenating it leaves the new keys or values.
    Cache,
}

impl InputRole {
    fn of(name: &str, float: bool, rank: usize) -> Option<InputRole> {
        let lower = name.to_ascii_lowercase();
        match (float, rank) {
            (false, 2) if lower.contains("attention_mask") => Some(InputRole::Mask),
            (false, 2) if lower.contains("position_ids") => Some(InputRole::Positions),
            (false, 2) => Some(InputRole::Ids),
            (true, 4) if lower.starts_with("past") => Some(InputRole::Cache),
            _ => None,
        }
    }
}

impl Folder<'_> {
    /// A float initializer of rank ≥ 1 and more than one element is a weight; the others are
    /// constants.
    fn fold_initializer(&mut self, init: &super::proto::TensorProto, nested: bool) -> Result<()> {
        let dt = DataType::try_from(init.data_type).unwrap_or(DataType::Undefined);
        let shape: Vec<usize> = init.dims.iter().map(|&d| d.max(0) as usize).collect();
        let numel = checked_product(shape.iter().copied()).ok_or_else(|| FrontendError::Corrupt {
            path: self.file.path().to_path_buf(),
            format: "ONNX",
            reason: format!("initializer `{}`: its dimensions {:?} overflow", init.name, init.dims),
        })?;
        let float = matches!(dt, DataType::Float | DataType::Float16 | DataType::Bfloat16 | DataType::Double);
        let v = if float && !nested && (shape.len() >= 2 || (shape.len() == 1 && numel > 1)) {
            let values = if shape.len() <= 1 && numel <= SMALL_WEIGHT {
                let (_, data) = self.file.tensor_f32(init)?;
                Some(data.into_owned())
            } else {
                None
            };
            self.eg.analysis.add_weight(&init.name, shape.clone(), values);
            Value::Weight { name: init.name.clone(), shape }
        } else if matches!(dt, DataType::Uint8 | DataType::Int8 | DataType::Uint4 | DataType::Int4) && shape.len() >= 2 {
            // packed quantized weights: read by the op that uses them (MatMulNBits, GatherBlockQuantized)
            self.packed.insert(init.name.clone(), (init.name.clone(), shape.clone()));
            return Ok(());
        } else {
            self.tensor_val(init)?
        };
        if let Value::Ints { data, .. } = &v {
            let reader = None;
            self.provenance.insert(init.name.clone(), (0..data.len()).map(|elem| Some(Provenance { source: init.name.clone(), elem, reader })).collect());
        }
        self.values.insert(init.name.clone(), v);
        Ok(())
    }

    /// A graph input, folded to the value its role gives it (see [`InputRole`]); the token ids
    /// are returned: they stay an input.
    fn fold_input(&mut self, name: &str) -> Result<Option<(String, DType, Vec<Dim>)>> {
        let file = self.file;
        let ty = file.value_type(name).cloned();
        let data_type = ty.as_ref().and_then(|t| t.data_type());
        let float = matches!(data_type, Some(DataType::Float | DataType::Float16 | DataType::Bfloat16));
        let int = matches!(data_type, Some(DataType::Int64 | DataType::Int32));
        let declared = ty.and_then(|t| t.shape).unwrap_or_default();
        let role = if float || int { InputRole::of(name, float, declared.len()) } else { None };
        let Some(role) = role else {
            return Err(FrontendError::Corrupt {
                path: file.path().to_path_buf(),
                format: "ONNX",
                reason: format!(
                    "graph input `{name}` ({data_type:?}, rank {}) is none of those prunec knows: token ids (`input_ids`, int64 [batch, seq]), \
                     `attention_mask` and `position_ids` (int64 [batch, seq]), key/value caches (`past_key_values.N.key|value`, float [batch, heads, past, head_dim])",
                    declared.len()
                ),
            });
        };
        let shape: Vec<Dim> = declared
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Some(Dim::Fixed(n)) if *n > 0 => Dim::Fixed(*n),
                _ if i == 0 => Dim::batch(),
                Some(Dim::Sym(p)) if role == InputRole::Cache && i == 3 => Dim::Sym(p.clone()),
                _ => Dim::seq(),
            })
            .collect();
        let val = match role {
            InputRole::Ids => {
                let id = self.leaf(Term::Input(InputName(Symbol::from(name))));
                self.set_shape(id, shape.clone());
                self.values.insert(name.to_string(), Value::Runtime { id, dtype: DType::I64, shape: shape.clone() });
                return Ok(Some((name.to_string(), DType::I64, shape)));
            }
            InputRole::Mask => {
                let dims = vec![Dim::batch(), Dim::seq()];
                let l = self.dims_leaf(dims.clone());
                let one = self.float_leaf(1.0);
                self.node(Term::ConstantOfShape([l, one]), DType::I64, dims)
            }
            InputRole::Positions => {
                let (zero, one) = (self.int_leaf(0), self.int_leaf(1));
                let seq = self.operand(&Value::Ints { shape: vec![], data: vec![SymInt::Symbolic(Dim::seq())] });
                let Value::Runtime { id: range, .. } = self.node(Term::Range([zero, seq, one]), DType::I64, vec![Dim::seq()]) else {
                    return Ok(None);
                };
                let axes = self.ints_leaf(&[0]);
                let Value::Runtime { id: row, .. } = self.node(Term::Unsqueeze([range, axes]), DType::I64, vec![Dim::Fixed(1), Dim::seq()]) else {
                    return Ok(None);
                };
                let dims = vec![Dim::batch(), Dim::seq()];
                let l = self.dims_leaf(dims.clone());
                self.node(Term::Expand([row, l]), DType::I64, dims)
            }
            InputRole::Cache => {
                let mut s = shape;
                s[2] = Dim::Fixed(0);
                let id = self.leaf(Term::Input(InputName(Symbol::from(name))));
                self.set_shape(id, s.clone());
                self.cache_inputs.insert(id, name.to_string());
                Value::Runtime { id, dtype: DType::F32, shape: s }
            }
        };
        self.values.insert(name.to_string(), val);
        Ok(None)
    }

    /// Folds `nodes` in order. Nodes of a subgraph (`nested`, an `If` branch) are read as the
    /// `If` node that holds them: a constant they read cannot be rewritten.
    fn fold_nodes(&mut self, nodes: &[NodeProto], nested: bool) -> Result<()> {
        for (k, node) in nodes.iter().enumerate() {
            if !nested {
                self.current = k;
            }
            let index = self.current;
            let outs = self.fold_node(node)?;
            for (name, v) in node.output.iter().zip(outs) {
                if name.is_empty() {
                    continue;
                }
                if let (Value::Runtime { id, .. }, "Reshape") = (&v, node.op_type.as_str()) {
                    self.reshapes.push((name.clone(), *id));
                }
                if let Value::Runtime { id, .. } = &v {
                    if node.op_type == "Expand" && !nested {
                        if let Some(target) = node.input.get(1) {
                            self.expand_of.insert(*id, (index, target.clone()));
                        }
                    }
                }
                self.value_shapes.insert(name.clone(), self.shape_of(&v));
                if let Value::Ints { data, .. } = &v {
                    let prov = if nested { vec![None; data.len()] } else { self.propagate_provenance(node, index, data.len()) };
                    self.provenance.insert(name.clone(), prov);
                }
                self.values.insert(name.clone(), v);
            }
        }
        Ok(())
    }

    /// `If` with a condition known when folding: the branch taken, folded in place.
    fn fold_if(&mut self, node: &NodeProto) -> Result<Vec<Value>> {
        let cond = self.input(node, 0)?;
        let taken = match &cond {
            Value::Ints { data, .. } if data.len() == 1 => match &data[0] {
                SymInt::Known(k) => *k != 0,
                SymInt::Symbolic(_) => return Err(self.err(node, "the condition depends on a symbolic size")),
            },
            Value::Floats { data, .. } if data.len() == 1 => data[0] != 0.0,
            _ => return Err(self.err(node, "the condition is computed at run time: only an `If` whose condition is constant is folded")),
        };
        let which = if taken { "then_branch" } else { "else_branch" };
        let branch = node
            .attr(which)
            .and_then(|a| a.g.as_ref())
            .ok_or_else(|| self.err(node, format!("no `{which}` graph")))?;
        for init in &branch.initializer {
            self.fold_initializer(init, true)?;
        }
        self.fold_nodes(&branch.node, true)?;
        branch
            .output
            .iter()
            .map(|o| self.values.get(&o.name).cloned().ok_or_else(|| self.err(node, format!("`{which}` does not compute its output `{}`", o.name))))
            .collect()
    }
}


/// The most elements a constant built at import time may have (64 Mi: an 8192 × 8192 mask).
const MAX_FOLDED: usize = 1 << 26;

/// The ops of ONNX's own domain the importer reads (folds, raises or keeps as primitives).
pub const SUPPORTED_OPS: &[&str] = &[
    "Add", "And", "Cast", "CastLike", "Concat", "Constant", "ConstantOfShape", "Cos", "CumSum", "Div", "Equal", "Exp", "Expand",
    "Flatten", "Gather", "GatherND", "Gemm", "Greater", "Identity", "If", "IsNaN", "Less", "LessOrEqual", "MatMul", "Max", "Min",
    "Mul", "Neg", "Not", "Or", "Pow", "Range", "Reciprocal", "ReduceMean", "ReduceSum", "Reshape", "Shape", "Sigmoid", "Sin",
    "SimplifiedLayerNormalization", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Trilu", "Unsqueeze",
    "Where",
];

/// The contrib ops (domain `com.microsoft`, as onnxruntime-genai's model builder writes them)
/// the importer reads.
pub const SUPPORTED_CONTRIB_OPS: &[&str] = &[
    "GatherBlockQuantized", "GroupQueryAttention", "MatMulNBits", "RotaryEmbedding", "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
];

/// The error for a node whose op the importer does not read: the op, the node and what is
/// supported.
pub fn unsupported_op(file: &OnnxFile, node: &NodeProto) -> FrontendError {
    let op = if super::is_default_domain(&node.domain) { node.op_type.clone() } else { format!("{}.{}", node.domain, node.op_type) };
    let node_name = if node.name.is_empty() { node.output.first().cloned().unwrap_or_default() } else { node.name.clone() };
    let contrib = SUPPORTED_CONTRIB_OPS.iter().map(|o| format!("com.microsoft.{o}"));
    let supported = SUPPORTED_OPS.iter().map(|o| o.to_string()).chain(contrib).collect::<Vec<_>>().join(", ");
    FrontendError::UnsupportedOp { path: file.path().to_path_buf(), node: node_name, op, supported }
}

/// Folds the graph of `file` into an e-graph (see the module documentation).
pub fn fold(file: &OnnxFile) -> Result<Folded> {
    Ok(fold_with(file, None)?.0 .0)
}

/// Folds `file` knowing the shapes its reshapes must now produce (`oracle`, by output name):
/// the constant elements of reshape and expand targets that must change for them, and the
/// shape of every value (by name) once they have.
pub fn repair(file: &OnnxFile, oracle: &HashMap<String, Vec<Dim>>) -> Result<Repairs> {
    let (folded, edits, shapes) = fold_with(file, Some(oracle))?;
    Ok(Repairs { edits, attrs: folded.1, shapes })
}

/// What a written graph must change: constant elements, attributes, declared shapes.
#[derive(Debug, Clone, Default)]
pub struct Repairs {
    /// Constant elements.
    pub edits: Vec<Edit>,
    /// Node attributes.
    pub attrs: Vec<AttrEdit>,
    /// The shape of every value, by name (graph inputs included).
    pub shapes: ValueShapes,
}

/// Shapes of values by name.
pub type ValueShapes = HashMap<String, Vec<Dim>>;

type FoldResult = ((Folded, Vec<AttrEdit>), Vec<Edit>, ValueShapes);

fn fold_with(file: &OnnxFile, oracle: Option<&HashMap<String, Vec<Dim>>>) -> Result<FoldResult> {
    let mut f = Folder {
        file,
        eg: EGraph::new(Tables::default()),
        values: HashMap::new(),
        provenance: HashMap::new(),
        oracle,
        edits: Vec::new(),
        expand_of: HashMap::new(),
        current: 0,
        strings: HashSet::new(),
        cache_inputs: HashMap::new(),
        cache_shapes: HashMap::new(),
        value_shapes: HashMap::new(),
        reshapes: Vec::new(),
        packed: HashMap::new(),
        quantized: HashMap::new(),
        attr_edits: Vec::new(),
    };
    let graph = file.graph();
    for init in &graph.initializer {
        f.fold_initializer(init, false)?;
    }
    let mut inputs = Vec::new();
    for input in &graph.input {
        if f.values.contains_key(&input.name) {
            continue; // an initializer listed as an input (old exporters)
        }
        if let Some(input) = f.fold_input(&input.name)? {
            inputs.push(input);
        }
    }
    f.fold_nodes(&graph.node, false)?;
    let mut names = std::mem::take(&mut f.value_shapes);
    // a cache input takes the shape of the new keys or values it is concatenated with
    for (name, shape) in std::mem::take(&mut f.cache_shapes) {
        names.insert(name, shape);
    }
    let reshapes = std::mem::take(&mut f.reshapes);
    let mut outputs = Vec::new();
    for out in &graph.output {
        match f.values.get(&out.name) {
            Some(Value::Runtime { id, .. }) => outputs.push((out.name.clone(), *id)),
            _ => {
                return Err(FrontendError::Corrupt {
                    path: file.path().to_path_buf(),
                    format: "ONNX",
                    reason: format!("graph output `{}` is not computed at run time", out.name),
                })
            }
        }
    }
    f.eg.rebuild();
    let edits = std::mem::take(&mut f.edits);
    let attrs = std::mem::take(&mut f.attr_edits);
    let folded = Folded {
        egraph: f.eg,
        outputs,
        inputs,
        reshapes,
        quantized: f.quantized,
    };
    Ok(((folded, attrs), edits, names))
}
