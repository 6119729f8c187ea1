//! The graph's boundary: `Input` (token ids, positions), `Param` (a tensor of the parameter
//! store) and `Output`. Inputs and outputs pin their axes, so nothing the caller gives or
//! reads is ever pruned.

use crate::axes::{AxisMapping, PortAxis};
use crate::types::ValueType;

/// An input or a parameter gives a value of its own type.
pub(crate) fn infer_source(ty: &ValueType) -> Vec<ValueType> {
    vec![ty.clone()]
}

/// An output gives nothing.
pub(crate) fn infer_output() -> Vec<ValueType> {
    vec![]
}

/// Every axis of an input is pinned.
pub(crate) fn axes_input(ty: &ValueType) -> AxisMapping {
    let mut m = AxisMapping::default();
    (0..ty.rank()).for_each(|a| m.pin(PortAxis::output(0, a)));
    m
}

/// Every axis of what an output reads is pinned.
pub(crate) fn axes_output(inputs: &[&ValueType]) -> AxisMapping {
    let mut m = AxisMapping::default();
    (0..inputs.first().map_or(0, |t| t.rank())).for_each(|a| m.pin(PortAxis::input(0, a)));
    m
}
