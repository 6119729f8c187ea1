//! The e-graph the ONNX import works on: its language ([`Term`]: ONNX ops, the IR ops the rules
//! raise them to, and typed leaves) and its analysis ([`Tables`], which gives every e-class its
//! [`Facts`]: the shape folding saw, the constant a leaf holds, the weight a leaf names).
//!
//! Folding ([`super::fold`]) builds the e-graph, the raising rules ([`super::rules`]) and the
//! probe ([`super::probe`]) read it, lowering (`lower`) extracts from it: this module
//! is what they share, and it depends on none of them.
//!
//! Leaves are typed; their text (what [`Term`]'s `Display` writes and its parser reads, in
//! tests and patterns) is:
//!
//! | leaf | text | meaning |
//! |---|---|---|
//! | [`Term::Input`] | `in:NAME` | a graph input (the token ids, a key/value cache) |
//! | [`Term::Weight`] | `w:NAME` | a float initializer (a weight; small ones' values are in [`Tables::floats`]) |
//! | [`Term::TransposedWeight`] | `wt:NAME` | initializer `NAME` transposed (a `[in, out]` matrix read as `[out, in]`) |
//! | [`Term::QuantizedWeight`] | `wq:NAME` | a 4-bit weight, by its packed data initializer |
//! | [`Term::Float`] | `f:V` | a float scalar |
//! | [`Term::Int`], [`Term::IntList`] | `i:V`, `i:[..]` | an integer scalar or list (constants, attributes, normalised axes) |
//! | [`Term::FloatTensor`] | `c:K` | float constant values, [`Tables::floats`]`[K]` |
//! | [`Term::Dims`] | `s:K` | a shape with symbolic sizes, [`Tables::shapes`]`[K]` |
//! | [`Term::CausalMask`] | `mask:causal` | the causal attention mask, as a rule recognised it |

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use egg::{define_language, Analysis, DidMerge, Id, Symbol};
use prunec_ir::Dim;

/// The e-graph of the import: [`Term`]s, with [`Facts`] on every class.
pub type EGraph = egg::EGraph<Term, Tables>;

/// A rewrite of the import's e-graph.
pub type Rewrite = egg::Rewrite<Term, Tables>;

define_language! {
    /// One e-node: an ONNX op as folding keeps it, an op of the IR a rule raised, or a leaf
    /// (see the module documentation). Children come first, then attribute leaves:
    ///
    /// - ONNX ops keep ONNX's names and operands; their attributes are leaves: `Cast(x, to)`,
    ///   `Gather(data, indices, axis)`, `Unsqueeze`/`Squeeze(x, axes)`, `Slice(x, axis, start,
    ///   end)` (one axis, step 1), `Concat(axis, xs…)`, `Softmax(x, axis)`, `CumSum(x, axis)`,
    ///   `ReduceMean`/`ReduceSum(x, axes, keepdims)`, `Trilu(x, k, upper)`, `Reshape`/`Expand(x,
    ///   shape)`, `Transpose(x, perm)`, `ConstantOfShape(shape, value)`, `Range(start, limit,
    ///   delta)`. Axes that folding normalised count from the end (`-1` is the last).
    /// - [`Term::SwapAxes12`] is the transpose `[0, 2, 1, 3]` (`[b, s, h, d]` ↔ `[b, h, s, d]`),
    ///   its own inverse; `SplitHeads(x, heads)` splits the last axis into heads, `MergeHeads(x)`
    ///   merges the last two.
    /// - Raised ops: `RmsNorm(x, w, eps)`, `Linear(x, w)` with `w` as `[out, in]`,
    ///   `Embedding(table, ids)`, `Silu(x)`, `Rope`/`RopeInterleaved(x, theta, dims)`,
    ///   `RepeatHeads(x, n)` and `Attention(q, k, v, scale)` (causal) on `[b, s, h, d]`.
    /// - `SkipNormStatistics(x)`: the mean and inverse deviation outputs of onnxruntime's
    ///   skip-norm, which nothing lowers.
    ///
    /// The order of the variants orders the e-nodes of a class, and so decides which of two
    /// alternatives of equal cost extraction takes: `Reciprocal(x)` before `Div(1, x)` (the
    /// IR has a reciprocal, not a division by a constant numerator), `MatMul(a·s, b·t)` before
    /// `Mul(MatMul(a, b), s·t)`.
    #[allow(missing_docs)] // the variants are the ops and leaves listed above
    pub enum Term {
        "Reciprocal" = Reciprocal(Id),
        "MatMul" = MatMul([Id; 2]),
        "Add" = Add([Id; 2]),
        "Sub" = Sub([Id; 2]),
        "Mul" = Mul([Id; 2]),
        "Div" = Div([Id; 2]),
        "Pow" = Pow([Id; 2]),
        "Max" = Max([Id; 2]),
        "Min" = Min([Id; 2]),
        "Equal" = Equal([Id; 2]),
        "Less" = Less([Id; 2]),
        "LessOrEqual" = LessOrEqual([Id; 2]),
        "Greater" = Greater([Id; 2]),
        "And" = And([Id; 2]),
        "Or" = Or([Id; 2]),
        "Not" = Not(Id),
        "IsNaN" = IsNaN(Id),
        "Neg" = Neg(Id),
        "Sqrt" = Sqrt(Id),
        "Exp" = Exp(Id),
        "Tanh" = Tanh(Id),
        "Sigmoid" = Sigmoid(Id),
        "Cos" = Cos(Id),
        "Sin" = Sin(Id),
        "Where" = Where([Id; 3]),
        "Cast" = Cast([Id; 2]),
        "Softmax" = Softmax([Id; 2]),
        "ReduceMean" = ReduceMean([Id; 3]),
        "ReduceSum" = ReduceSum([Id; 3]),
        "CumSum" = CumSum([Id; 2]),
        "Gather" = Gather([Id; 3]),
        "GatherND" = GatherND([Id; 2]),
        "Slice" = Slice([Id; 4]),
        "Concat" = Concat(Box<[Id]>),
        "Unsqueeze" = Unsqueeze([Id; 2]),
        "Squeeze" = Squeeze([Id; 2]),
        "Reshape" = Reshape([Id; 2]),
        "Expand" = Expand([Id; 2]),
        "Transpose" = Transpose([Id; 2]),
        "SwapAxes12" = SwapAxes12(Id),
        "SplitHeads" = SplitHeads([Id; 2]),
        "MergeHeads" = MergeHeads(Id),
        "Range" = Range([Id; 3]),
        "ConstantOfShape" = ConstantOfShape([Id; 2]),
        "Trilu" = Trilu([Id; 3]),
        "RmsNorm" = RmsNorm([Id; 3]),
        "SkipNormStatistics" = SkipNormStatistics(Id),
        "Linear" = Linear([Id; 2]),
        "Embedding" = Embedding([Id; 2]),
        "Silu" = Silu(Id),
        "Rope" = Rope([Id; 3]),
        "RopeInterleaved" = RopeInterleaved([Id; 3]),
        "RepeatHeads" = RepeatHeads([Id; 2]),
        "Attention" = Attention([Id; 4]),
        "mask:causal" = CausalMask,
        Input(InputName),
        Weight(WeightName),
        TransposedWeight(TransposedWeightName),
        QuantizedWeight(QuantizedWeightName),
        Float(FloatConst),
        Int(IntConst),
        IntList(IntList),
        FloatTensor(FloatTensorRef),
        Dims(DimsRef),
    }
}

/// Declares a leaf that names a tensor, written `PREFIX:NAME`.
macro_rules! named_leaf {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub Symbol);

        impl $name {
            /// The tensor's name.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = LeafSyntax;
            fn from_str(s: &str) -> Result<Self, LeafSyntax> {
                s.strip_prefix($prefix).map(|name| $name(Symbol::from(name))).ok_or(LeafSyntax)
            }
        }
    };
}

named_leaf!(
    /// A graph input: `in:NAME`.
    InputName,
    "in:"
);
named_leaf!(
    /// A float initializer: `w:NAME`.
    WeightName,
    "w:"
);
named_leaf!(
    /// A float initializer read transposed: `wt:NAME`.
    TransposedWeightName,
    "wt:"
);
named_leaf!(
    /// A 4-bit weight, by its packed data initializer: `wq:NAME`.
    QuantizedWeightName,
    "wq:"
);

/// Text that is not the leaf it was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafSyntax;

/// A float scalar, `f:V` (`V` as Rust writes the `f32`). Equal when their text is: NaNs are
/// one constant.
#[derive(Debug, Clone, Copy)]
pub struct FloatConst(f32);

impl FloatConst {
    /// The constant `v`.
    pub fn new(v: f32) -> FloatConst {
        FloatConst(v)
    }

    /// The value as stored.
    pub fn f32(self) -> f32 {
        self.0
    }

    /// The value as the `f64` its shortest decimal text denotes (`1e-6`, not the `f32`'s
    /// 9.99999997e-7): what rules compare and multiply.
    pub fn f64(self) -> f64 {
        if self.0.is_finite() {
            self.0.to_string().parse().unwrap_or(f64::from(self.0))
        } else {
            f64::from(self.0)
        }
    }

    /// The bits that identify the constant: one NaN.
    fn key(self) -> u32 {
        if self.0.is_nan() {
            f32::NAN.to_bits()
        } else {
            self.0.to_bits()
        }
    }
}

impl PartialEq for FloatConst {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for FloatConst {}

impl PartialOrd for FloatConst {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FloatConst {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl std::hash::Hash for FloatConst {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl fmt::Display for FloatConst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f:{}", self.0)
    }
}

impl FromStr for FloatConst {
    type Err = LeafSyntax;
    fn from_str(s: &str) -> Result<Self, LeafSyntax> {
        s.strip_prefix("f:").and_then(|v| v.parse().ok()).map(FloatConst).ok_or(LeafSyntax)
    }
}

/// An integer scalar, `i:V`: an ONNX int64 or a size (a `usize`, which a hostile file's
/// arithmetic may take past `i64::MAX`), so wider than both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntConst(pub i128);

impl fmt::Display for IntConst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i:{}", self.0)
    }
}

impl FromStr for IntConst {
    type Err = LeafSyntax;
    fn from_str(s: &str) -> Result<Self, LeafSyntax> {
        s.strip_prefix("i:").and_then(|v| v.parse().ok()).map(IntConst).ok_or(LeafSyntax)
    }
}

/// An integer list, `i:[a,b]` (axes, a permutation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntList(pub Box<[i64]>);

impl fmt::Display for IntList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(i64::to_string).collect();
        write!(f, "i:[{}]", items.join(","))
    }
}

impl FromStr for IntList {
    type Err = LeafSyntax;
    fn from_str(s: &str) -> Result<Self, LeafSyntax> {
        let items = s.strip_prefix("i:[").and_then(|v| v.strip_suffix(']')).ok_or(LeafSyntax)?;
        if items.is_empty() {
            return Ok(IntList(Box::new([])));
        }
        items.split(',').map(|v| v.parse().map_err(|_| LeafSyntax)).collect::<Result<_, _>>().map(IntList)
    }
}

/// Declares a leaf that refers to entry `K` of a table of [`Tables`], written `PREFIX:K`.
macro_rules! table_leaf {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub usize);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = LeafSyntax;
            fn from_str(s: &str) -> Result<Self, LeafSyntax> {
                s.strip_prefix($prefix).and_then(|k| k.parse().ok()).map($name).ok_or(LeafSyntax)
            }
        }
    };
}

table_leaf!(
    /// Float constant values, `c:K`: [`Tables::floats`]`[K]`.
    FloatTensorRef,
    "c:"
);
table_leaf!(
    /// A shape with symbolic sizes, `s:K`: [`Tables::shapes`]`[K]`.
    DimsRef,
    "s:"
);

/// A float tensor's shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatTensor {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// The constant a leaf holds, as its class's [`Facts`] carry it.
#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    /// A float scalar.
    Float(FloatConst),
    /// An integer scalar.
    Int(i128),
    /// An integer list.
    Ints(Box<[i64]>),
    /// Float values: a constant, or a small weight's.
    Floats(Arc<FloatTensor>),
    /// A shape with symbolic sizes.
    Dims(Vec<Dim>),
}

impl Constant {
    /// A scalar, float or integer, as `f64`.
    pub fn scalar(&self) -> Option<f64> {
        match self {
            Constant::Float(v) => Some(v.f64()),
            Constant::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// Integers: a list, or a scalar as a list of one (when it is an int64).
    pub fn ints(&self) -> Option<Vec<i64>> {
        match self {
            Constant::Int(v) => i64::try_from(*v).ok().map(|v| vec![v]),
            Constant::Ints(v) => Some(v.to_vec()),
            _ => None,
        }
    }
}

/// A weight a leaf names: the initializer and its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightFacts {
    /// The initializer's name.
    pub name: Symbol,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// What the e-graph knows of an e-class besides its e-nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The shape of a value computed at run time, as folding saw it (none for constants,
    /// weights, and the ops rules add).
    pub shape: Option<Vec<Dim>>,
    /// The constant its leaf holds.
    pub constant: Option<Constant>,
    /// The weight its leaf names.
    pub weight: Option<WeightFacts>,
}

/// A weight of [`Tables::weights`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightEntry {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values in [`Tables::floats`], when it is small enough for rules to read them.
    pub values: Option<usize>,
}

/// The tables leaves refer to, and the analysis that resolves a leaf into its class's
/// [`Facts`].
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Shapes with symbolic sizes (`s:K`).
    pub shapes: Vec<Vec<Dim>>,
    /// Float values: constants (`c:K`) and small weights.
    pub floats: Vec<Arc<FloatTensor>>,
    /// The weights by name.
    pub weights: HashMap<String, WeightEntry>,
}

impl Tables {
    /// Enters a shape; the leaf that refers to it.
    pub fn shape_leaf(&mut self, dims: Vec<Dim>) -> Term {
        self.shapes.push(dims);
        Term::Dims(DimsRef(self.shapes.len() - 1))
    }

    /// Enters float values; the leaf that refers to them.
    pub fn float_tensor_leaf(&mut self, shape: Vec<usize>, values: Vec<f32>) -> Term {
        self.floats.push(Arc::new(FloatTensor { shape, values }));
        Term::FloatTensor(FloatTensorRef(self.floats.len() - 1))
    }

    /// Enters weight `name` of `shape`, with its values when rules may need them; a weight
    /// entered again replaces the first.
    pub fn add_weight(&mut self, name: &str, shape: Vec<usize>, values: Option<Vec<f32>>) {
        let slot = self.weights.get(name).and_then(|w| w.values);
        let values = values.map(|v| {
            let tensor = Arc::new(FloatTensor { shape: shape.clone(), values: v });
            match slot {
                Some(k) => {
                    self.floats[k] = tensor;
                    k
                }
                None => {
                    self.floats.push(tensor);
                    self.floats.len() - 1
                }
            }
        });
        let values = values.or(slot);
        self.weights.insert(name.to_string(), WeightEntry { shape, values });
    }

    /// The constant leaf `term` holds.
    fn constant(&self, term: &Term) -> Option<Constant> {
        match term {
            Term::Float(v) => Some(Constant::Float(*v)),
            Term::Int(v) => Some(Constant::Int(v.0)),
            Term::IntList(v) => Some(Constant::Ints(v.0.clone())),
            Term::FloatTensor(k) => self.floats.get(k.0).cloned().map(Constant::Floats),
            Term::Dims(k) => self.shapes.get(k.0).cloned().map(Constant::Dims),
            Term::Weight(w) => {
                let k = self.weights.get(w.as_str())?.values?;
                self.floats.get(k).cloned().map(Constant::Floats)
            }
            _ => None,
        }
    }
}

/// Keeps `a` when it holds something, else takes `b`.
fn merge_first<T: PartialEq>(a: &mut Option<T>, b: Option<T>) -> DidMerge {
    match (a.is_some(), b) {
        (false, Some(b)) => {
            *a = Some(b);
            DidMerge(true, false)
        }
        (true, b) => DidMerge(false, b.as_ref() != a.as_ref()),
        (false, None) => DidMerge(false, false),
    }
}

impl Analysis<Term> for Tables {
    type Data = Facts;

    fn make(egraph: &mut EGraph, term: &Term) -> Facts {
        let tables = &egraph.analysis;
        let weight = match term {
            Term::Weight(w) => tables.weights.get(w.as_str()).map(|e| WeightFacts { name: w.0, shape: e.shape.clone() }),
            _ => None,
        };
        Facts { shape: None, constant: tables.constant(term), weight }
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        merge_first(&mut a.shape, b.shape) | merge_first(&mut a.constant, b.constant) | merge_first(&mut a.weight, b.weight)
    }
}

/// The classes' facts, read from the e-graph.
pub trait ReadFacts {
    /// The facts of class `id`.
    fn facts(&self, id: Id) -> &Facts;

    /// A scalar constant, float or integer.
    fn scalar(&self, id: Id) -> Option<f64> {
        self.facts(id).constant.as_ref()?.scalar()
    }

    /// An integer list, or a scalar as a list of one.
    fn ints(&self, id: Id) -> Option<Vec<i64>> {
        self.facts(id).constant.as_ref()?.ints()
    }

    /// The shape a symbolic-shape leaf holds.
    fn dims(&self, id: Id) -> Option<&[Dim]> {
        match self.facts(id).constant.as_ref()? {
            Constant::Dims(d) => Some(d),
            _ => None,
        }
    }

    /// Float values (a constant's, a small weight's).
    fn floats(&self, id: Id) -> Option<&FloatTensor> {
        match self.facts(id).constant.as_ref()? {
            Constant::Floats(t) => Some(t),
            _ => None,
        }
    }

    /// The weight a leaf of the class names.
    fn weight(&self, id: Id) -> Option<&WeightFacts> {
        self.facts(id).weight.as_ref()
    }

    /// The shape folding gave the class's value.
    fn shape(&self, id: Id) -> Option<&[Dim]> {
        self.facts(id).shape.as_deref()
    }
}

impl ReadFacts for EGraph {
    fn facts(&self, id: Id) -> &Facts {
        &self[id].data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaves print as they parse, and the tables resolve them into facts.
    #[test]
    fn leaves_round_trip_and_resolve() {
        for text in ["in:input_ids", "w:a.b", "wt:lm_head", "wq:q", "f:0.000001", "f:-0.5", "f:inf", "i:-1", "i:[0,2,1,3]", "i:[]", "c:3", "s:0", "mask:causal"] {
            let term: Term = egg::FromOp::from_op(text, vec![]).unwrap();
            assert_eq!(term.to_string(), text);
        }
        // the f32 closest to 1e-6 reads as the decimal it is written as
        assert_eq!(FloatConst::new(1e-6).f64(), 1e-6);
        assert_eq!(FloatConst::new(f32::NAN), FloatConst::new(-f32::NAN));
        assert_ne!(FloatConst::new(0.0), FloatConst::new(-0.0));

        let mut tables = Tables::default();
        tables.add_weight("g", vec![4], Some(vec![1.0; 4]));
        let dims = tables.shape_leaf(vec![Dim::batch(), Dim::Fixed(8)]);
        let mut eg = EGraph::new(tables);
        let leaf = |text: &str| -> Term { egg::FromOp::from_op(text, vec![]).unwrap() };
        let (g, s, i) = (eg.add(leaf("w:g")), eg.add(dims), eg.add(leaf("i:[1,0]")));
        assert_eq!(eg.weight(g).map(|w| (w.name.as_str(), w.shape.clone())), Some(("g", vec![4])));
        assert_eq!(eg.floats(g).map(|t| t.values.len()), Some(4));
        assert_eq!(eg.dims(s), Some(&[Dim::batch(), Dim::Fixed(8)][..]));
        assert_eq!(eg.ints(i), Some(vec![1, 0]));
        assert_eq!(eg.scalar(i), None);
    }
}
