//! Tensors of any rank the IR uses (1 to 5) behind one type, so that the interpreter can hold
//! the IR's dynamically ranked values in Burn's statically ranked tensors.

use burn::prelude::{Backend, Int, Tensor, TensorData};
use burn::tensor::backend::AutodiffBackend;

use crate::{BackendError, Result};

/// A float or integer tensor of rank 1 to 5.
#[derive(Debug, Clone)]
pub enum DynTensor<B: Backend> {
    /// Float, rank 1.
    F1(Tensor<B, 1>),
    /// Float, rank 2.
    F2(Tensor<B, 2>),
    /// Float, rank 3.
    F3(Tensor<B, 3>),
    /// Float, rank 4.
    F4(Tensor<B, 4>),
    /// Float, rank 5.
    F5(Tensor<B, 5>),
    /// Integer, rank 1.
    I1(Tensor<B, 1, Int>),
    /// Integer, rank 2.
    I2(Tensor<B, 2, Int>),
}

fn unsupported(what: &str) -> BackendError {
    BackendError::Lowering(what.to_string())
}

/// Applies `$body` (an expression over the rank-generic tensor `$t`) to a float tensor of
/// any rank, re-wrapping the result in the same rank.
macro_rules! float_map {
    ($value:expr, $t:ident => $body:expr) => {
        match $value {
            DynTensor::F1($t) => Ok(DynTensor::F1($body)),
            DynTensor::F2($t) => Ok(DynTensor::F2($body)),
            DynTensor::F3($t) => Ok(DynTensor::F3($body)),
            DynTensor::F4($t) => Ok(DynTensor::F4($body)),
            DynTensor::F5($t) => Ok(DynTensor::F5($body)),
            _ => Err(crate::BackendError::Lowering("expected a float tensor".into())),
        }
    };
}
pub(crate) use float_map;

/// Applies `$body` to two float tensors of the same rank.
macro_rules! float_zip {
    ($a:expr, $b:expr, |$x:ident, $y:ident| $body:expr) => {
        match ($a, $b) {
            (DynTensor::F1($x), DynTensor::F1($y)) => Ok(DynTensor::F1($body)),
            (DynTensor::F2($x), DynTensor::F2($y)) => Ok(DynTensor::F2($body)),
            (DynTensor::F3($x), DynTensor::F3($y)) => Ok(DynTensor::F3($body)),
            (DynTensor::F4($x), DynTensor::F4($y)) => Ok(DynTensor::F4($body)),
            (DynTensor::F5($x), DynTensor::F5($y)) => Ok(DynTensor::F5($body)),
            _ => Err(crate::BackendError::Lowering("operands must be float tensors of one rank".into())),
        }
    };
}
pub(crate) use float_zip;

impl<B: Backend> DynTensor<B> {
    /// A float tensor from row-major values.
    pub fn from_f32(values: Vec<f32>, shape: &[usize], device: &B::Device) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != values.len() {
            return Err(unsupported(&format!("{} values for shape {shape:?}", values.len())));
        }
        let flat = Tensor::<B, 1>::from_data(TensorData::new(values, [n]), device);
        DynTensor::F1(flat).reshape(shape)
    }

    /// The dimensions.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            DynTensor::F1(t) => t.dims().to_vec(),
            DynTensor::F2(t) => t.dims().to_vec(),
            DynTensor::F3(t) => t.dims().to_vec(),
            DynTensor::F4(t) => t.dims().to_vec(),
            DynTensor::F5(t) => t.dims().to_vec(),
            DynTensor::I1(t) => t.dims().to_vec(),
            DynTensor::I2(t) => t.dims().to_vec(),
        }
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        self.dims().len()
    }

    /// A float tensor reshaped to `dims` (any rank from 1 to 5).
    pub fn reshape(self, dims: &[usize]) -> Result<Self> {
        let n: usize = dims.iter().product();
        let flat: Tensor<B, 1> = match self {
            DynTensor::F1(t) => t.reshape([n]),
            DynTensor::F2(t) => t.reshape([n]),
            DynTensor::F3(t) => t.reshape([n]),
            DynTensor::F4(t) => t.reshape([n]),
            DynTensor::F5(t) => t.reshape([n]),
            _ => return Err(unsupported("reshape of an integer tensor")),
        };
        Ok(match *dims {
            [a] => DynTensor::F1(flat.reshape([a])),
            [a, b] => DynTensor::F2(flat.reshape([a, b])),
            [a, b, c] => DynTensor::F3(flat.reshape([a, b, c])),
            [a, b, c, d] => DynTensor::F4(flat.reshape([a, b, c, d])),
            [a, b, c, d, e] => DynTensor::F5(flat.reshape([a, b, c, d, e])),
            _ => return Err(unsupported(&format!("rank {} tensors", dims.len()))),
        })
    }

    /// The tensor with leading axes of size 1 added up to `rank`.
    pub fn lift(self, rank: usize) -> Result<Self> {
        let dims = self.dims();
        if dims.len() >= rank {
            return Ok(self);
        }
        let mut new = vec![1; rank - dims.len()];
        new.extend(dims);
        self.reshape(&new)
    }

    /// Axes permuted: output axis `i` is input axis `perm[i]`.
    pub fn permute(self, perm: &[usize]) -> Result<Self> {
        let p = |k: usize| perm.get(k).copied().unwrap_or(k);
        match self {
            DynTensor::F1(t) => Ok(DynTensor::F1(t)),
            DynTensor::F2(t) => Ok(DynTensor::F2(t.permute([p(0), p(1)]))),
            DynTensor::F3(t) => Ok(DynTensor::F3(t.permute([p(0), p(1), p(2)]))),
            DynTensor::F4(t) => Ok(DynTensor::F4(t.permute([p(0), p(1), p(2), p(3)]))),
            DynTensor::F5(t) => Ok(DynTensor::F5(t.permute([p(0), p(1), p(2), p(3), p(4)]))),
            _ => Err(unsupported("permute of an integer tensor")),
        }
    }

    /// Indices `start..start+len` of `axis`.
    pub fn narrow(self, axis: usize, start: usize, len: usize) -> Result<Self> {
        float_map!(self, t => t.narrow(axis, start, len))
    }

    /// Concatenation along `axis`.
    pub fn cat(parts: Vec<Self>, axis: usize) -> Result<Self> {
        let rank = parts.first().map(Self::rank).ok_or_else(|| unsupported("concat of nothing"))?;
        macro_rules! cat_rank {
            ($v:ident) => {{
                let mut ts = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        DynTensor::$v(t) => ts.push(t),
                        _ => return Err(unsupported("concat of tensors of different ranks")),
                    }
                }
                Ok(DynTensor::$v(Tensor::cat(ts, axis)))
            }};
        }
        match rank {
            1 => cat_rank!(F1),
            2 => cat_rank!(F2),
            3 => cat_rank!(F3),
            4 => cat_rank!(F4),
            5 => cat_rank!(F5),
            r => Err(unsupported(&format!("concat of rank {r}"))),
        }
    }

    /// The values, row-major, on the host (a copy: the tensor stays shared).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        self.clone().into_f32()
    }
}

impl<B: Backend> DynTensor<B> {
    /// The values, row-major, on the host, taking the tensor: a contiguous buffer that nothing
    /// else holds moves out as it is (a shared one is copied).
    pub fn into_f32(self) -> Result<Vec<f32>> {
        let data = match self {
            DynTensor::F1(t) => t.into_data(),
            DynTensor::F2(t) => t.into_data(),
            DynTensor::F3(t) => t.into_data(),
            DynTensor::F4(t) => t.into_data(),
            DynTensor::F5(t) => t.into_data(),
            _ => return Err(unsupported("reading an integer tensor as floats")),
        };
        data.convert::<f32>().into_vec::<f32>().map_err(|e| unsupported(&format!("{e:?}")))
    }

    /// Whether it holds floats.
    pub fn is_float(&self) -> bool {
        !matches!(self, DynTensor::I1(_) | DynTensor::I2(_))
    }

    /// `Σ self ⊙ other` over every element, as a tensor `[1]` (both floats of one shape).
    pub fn dot(self, other: Self) -> Result<Tensor<B, 1>> {
        match float_zip!(self, other, |x, y| x * y)? {
            DynTensor::F1(t) => Ok(t.sum()),
            DynTensor::F2(t) => Ok(t.sum()),
            DynTensor::F3(t) => Ok(t.sum()),
            DynTensor::F4(t) => Ok(t.sum()),
            DynTensor::F5(t) => Ok(t.sum()),
            _ => Err(unsupported("dot of integer tensors")),
        }
    }

    /// Element-wise sum of two floats of one shape.
    pub fn plus(self, other: Self) -> Result<Self> {
        float_zip!(self, other, |x, y| x + y)
    }

    /// Every element times `factor`.
    pub fn scale(self, factor: f64) -> Result<Self> {
        float_map!(self, t => t.mul_scalar(factor))
    }

    /// Every element squared.
    pub fn square(self) -> Result<Self> {
        float_map!(self, t => t.powi_scalar(2))
    }

    /// The values of an integer tensor, row-major, on the host.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let data = match self {
            DynTensor::I1(t) => t.to_data(),
            DynTensor::I2(t) => t.to_data(),
            _ => return Err(unsupported("reading a float tensor as integers")),
        };
        data.convert::<i64>().into_vec::<i64>().map_err(|e| unsupported(&format!("{e:?}")))
    }
}

impl<B: AutodiffBackend> DynTensor<B> {
    /// A tensor of the inner backend brought into the autodiff graph (a constant, until
    /// [`DynTensor::require_grad`] makes it a leaf).
    pub fn from_inner(t: DynTensor<B::InnerBackend>) -> Self {
        match t {
            DynTensor::F1(t) => DynTensor::F1(Tensor::from_inner(t)),
            DynTensor::F2(t) => DynTensor::F2(Tensor::from_inner(t)),
            DynTensor::F3(t) => DynTensor::F3(Tensor::from_inner(t)),
            DynTensor::F4(t) => DynTensor::F4(Tensor::from_inner(t)),
            DynTensor::F5(t) => DynTensor::F5(Tensor::from_inner(t)),
            DynTensor::I1(t) => DynTensor::I1(Tensor::from_inner(t)),
            DynTensor::I2(t) => DynTensor::I2(Tensor::from_inner(t)),
        }
    }

    /// The gradient of this leaf, taken out of `grads` (freeing it there), on the inner backend.
    pub fn take_grad(&self, grads: &mut B::Gradients) -> Option<DynTensor<B::InnerBackend>> {
        match self {
            DynTensor::F1(t) => t.grad_remove(grads).map(DynTensor::F1),
            DynTensor::F2(t) => t.grad_remove(grads).map(DynTensor::F2),
            DynTensor::F3(t) => t.grad_remove(grads).map(DynTensor::F3),
            DynTensor::F4(t) => t.grad_remove(grads).map(DynTensor::F4),
            DynTensor::F5(t) => t.grad_remove(grads).map(DynTensor::F5),
            _ => None,
        }
    }

    /// Marks a float tensor as a leaf whose gradient is wanted.
    pub fn require_grad(self) -> Self {
        match self {
            DynTensor::F1(t) => DynTensor::F1(t.require_grad()),
            DynTensor::F2(t) => DynTensor::F2(t.require_grad()),
            DynTensor::F3(t) => DynTensor::F3(t.require_grad()),
            DynTensor::F4(t) => DynTensor::F4(t.require_grad()),
            DynTensor::F5(t) => DynTensor::F5(t.require_grad()),
            other => other,
        }
    }

    /// The tensor on the inner (non-differentiating) backend.
    pub fn inner(self) -> DynTensor<B::InnerBackend> {
        match self {
            DynTensor::F1(t) => DynTensor::F1(t.inner()),
            DynTensor::F2(t) => DynTensor::F2(t.inner()),
            DynTensor::F3(t) => DynTensor::F3(t.inner()),
            DynTensor::F4(t) => DynTensor::F4(t.inner()),
            DynTensor::F5(t) => DynTensor::F5(t.inner()),
            DynTensor::I1(t) => DynTensor::I1(t.inner()),
            DynTensor::I2(t) => DynTensor::I2(t.inner()),
        }
    }

    /// The gradient of this leaf, on the host.
    pub fn grad_f32(&self, grads: &B::Gradients) -> Result<Option<Vec<f32>>> {
        let data = match self {
            DynTensor::F1(t) => t.grad(grads).map(|g| g.into_data()),
            DynTensor::F2(t) => t.grad(grads).map(|g| g.into_data()),
            DynTensor::F3(t) => t.grad(grads).map(|g| g.into_data()),
            DynTensor::F4(t) => t.grad(grads).map(|g| g.into_data()),
            DynTensor::F5(t) => t.grad(grads).map(|g| g.into_data()),
            _ => None,
        };
        data.map(|d| d.convert::<f32>().into_vec::<f32>().map_err(|e| unsupported(&format!("{e:?}")))).transpose()
    }
}
