//! The graph's boundary: `Input` (token ids, positions), `Param` (a tensor of the parameter
//! store) and `Output`. Inputs and outputs pin their axes, so nothing the caller gives or
//! reads is ever pruned; a parameter shrinks to the indices its axes keep.

use super::{Op, ParamEdit, RemovedIndices, Shrink};
use crate::axes::{AxisMapping, PortAxis};
use crate::error::{IrError, Result};
use crate::types::{Shape, ValueType};

/// An input or a parameter gives a value of its own type.
pub(super) fn infer_source(ty: &ValueType) -> Vec<ValueType> {
    vec![ty.clone()]
}

/// An output gives nothing.
pub(super) fn infer_output() -> Vec<ValueType> {
    vec![]
}

/// Every axis of an input is pinned.
pub(super) fn axes_input(ty: &ValueType) -> AxisMapping {
    let mut m = AxisMapping::default();
    (0..ty.rank()).for_each(|a| m.pin(PortAxis::output(0, a)));
    m
}

/// Every axis of what an output reads is pinned.
pub(super) fn axes_output(inputs: &[&ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    (0..inputs.first().map_or(0, |t| t.rank())).for_each(|a| m.pin(PortAxis::input(0, a)));
    m
}

/// A parameter keeps, along each axis that loses indices, the others; its type follows. Its
/// shape must be fixed (the store's always is).
pub(super) fn shrink_param(name: &str, ty: &ValueType, removed: &dyn RemovedIndices) -> Result<Shrink> {
    let shape = ty.shape.to_fixed().ok_or_else(|| IrError::SymbolicParam { name: name.to_string() })?;
    // the kept indices of each axis; the data stays where it is until read
    let keep: Vec<Option<Vec<usize>>> = (0..shape.len())
        .map(|axis| removed.removed(PortAxis::output(0, axis)).map(|idx| (0..shape[axis]).filter(|i| !idx.contains(i)).collect()))
        .collect();
    if !keep.iter().any(Option::is_some) {
        return Ok(Shrink::default());
    }
    let dims: Vec<usize> = keep.iter().zip(&shape).map(|(k, &n)| k.as_ref().map_or(n, Vec::len)).collect();
    Ok(Shrink {
        op: Some(Op::Param { name: name.to_string(), ty: ValueType::new(ty.dtype, Shape::fixed(&dims)) }),
        param: Some(ParamEdit::Select { name: name.to_string(), keep }),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::types::DType;

    #[test]
    fn a_parameter_keeps_what_its_axes_keep() {
        let ty = ValueType::new(DType::F32, Shape::fixed(&[4, 3]));
        let op = Op::Param { name: "w".into(), ty: ty.clone() };
        let removed = BTreeMap::from([(PortAxis::output(0, 0), BTreeSet::from([1, 3]))]);
        let s = op.shrink("w", &[], std::slice::from_ref(&ty), &removed).unwrap();
        assert_eq!(s.op, Some(Op::Param { name: "w".into(), ty: ValueType::new(DType::F32, Shape::fixed(&[2, 3])) }));
        assert_eq!(s.param, Some(ParamEdit::Select { name: "w".into(), keep: vec![Some(vec![0, 2]), None] }));
        let s = op.shrink("w", &[], std::slice::from_ref(&ty), &BTreeMap::new()).unwrap();
        assert_eq!(s, Shrink::default());
    }
}
