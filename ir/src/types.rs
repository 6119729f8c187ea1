//! Tensor types: element types and shapes whose batch and sequence dimensions are symbolic.

use std::fmt;

/// Element type of a value or parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit signed integer (token ids, positions).
    I64,
    /// 32-bit signed integer.
    I32,
    /// Boolean (masks).
    Bool,
}

impl DType {
    /// The short name used by the printer (`f32`, `i64`...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::Bool => "bool",
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension of a shape: a known size, or a symbol bound at run time (`batch`, `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known when the model is read.
    Fixed(usize),
    /// A size known only at run time, by name.
    Sym(String),
}

impl Dim {
    /// The batch dimension.
    pub fn batch() -> Dim {
        Dim::Sym("batch".into())
    }
    /// The sequence dimension.
    pub fn seq() -> Dim {
        Dim::Sym("seq".into())
    }
    /// The fixed size, if known.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Fixed(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// A size that numpy broadcasting stretches when it is 1: a [`Dim`] of a typed shape, or a plain
/// `usize` of a concrete one.
pub trait BroadcastDim: Clone + PartialEq {
    /// Whether the size is 1 (and so takes the other side's size).
    fn is_one(&self) -> bool;
}

impl BroadcastDim for Dim {
    fn is_one(&self) -> bool {
        *self == Dim::Fixed(1)
    }
}

impl BroadcastDim for usize {
    fn is_one(&self) -> bool {
        *self == 1
    }
}

/// Numpy broadcasting of two shapes, aligned at their last axes: equal sizes stay, a size of 1
/// takes the other side's, an axis only one shape has is kept; `None` when two sizes differ and
/// neither is 1. A symbolic [`Dim`] broadcasts only with itself or with 1.
pub fn broadcast<T: BroadcastDim>(a: &[T], b: &[T]) -> Option<Vec<T>> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = (i + a.len()).checked_sub(n).and_then(|k| a.get(k));
        let db = (i + b.len()).checked_sub(n).and_then(|k| b.get(k));
        out.push(match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(x), Some(y)) if x.is_one() => y.clone(),
            (Some(x), Some(y)) if y.is_one() => x.clone(),
            _ => return None,
        });
    }
    Some(out)
}

/// A shape: a list of dimensions, outermost first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape of fixed sizes.
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }
    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// The dimensions.
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }
    /// The last dimension, if any.
    pub fn last(&self) -> Option<&Dim> {
        self.0.last()
    }
    /// All sizes, when every one is fixed.
    pub fn to_fixed(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::fixed).collect()
    }
    /// Product of the fixed sizes (symbols count as 1).
    pub fn fixed_product(&self) -> usize {
        self.0.iter().filter_map(Dim::fixed).product()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The type of a value: element type and shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueType {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Shape,
}

impl ValueType {
    /// A value type.
    pub fn new(dtype: DType, shape: Shape) -> ValueType {
        ValueType { dtype, shape }
    }
    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }
    /// Dimension `axis`.
    pub fn dim(&self, axis: usize) -> Option<&Dim> {
        self.shape.0.get(axis)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}
