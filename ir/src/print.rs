//! The stable text form of a model: one line per node in topological order, axes annotated
//! with the dependency group they belong to, then the groups. Made for snapshots and for
//! people debugging a model (`--dump-after PASS`).

use std::collections::HashMap;
use std::fmt::Write;

use crate::error::Result;
use crate::graph::ValueId;
use crate::model::Model;
use crate::op::Op;
use crate::types::ValueType;

/// Prints `model` as text.
pub fn print(model: &Model) -> Result<String> {
    let g = &model.graph;
    // (value, axis) -> (group, granularity)
    let mut tags: HashMap<(ValueId, usize), (usize, usize)> = HashMap::new();
    if let Some(groups) = &model.groups {
        for (gi, group) in groups.iter().enumerate() {
            for ax in &group.axes {
                tags.insert((ax.value, ax.axis), (gi, ax.granularity));
            }
        }
    }
    let ty = |v: ValueId, t: &ValueType| -> String {
        let dims: Vec<String> = t
            .shape
            .0
            .iter()
            .enumerate()
            .map(|(a, d)| match tags.get(&(v, a)) {
                Some((gi, 1)) => format!("{d}@{gi}"),
                Some((gi, gr)) => format!("{d}@{gi}/{gr}"),
                None => d.to_string(),
            })
            .collect();
        format!("{}[{}]", t.dtype, dims.join(", "))
    };
    let mut s = String::new();
    let info = &model.info;
    let _ = writeln!(
        s,
        "model {:?} ({}, {}): {} nodes, {} parameters, {} parameter elements",
        info.name,
        info.architecture,
        info.format,
        g.len(),
        model.params.len(),
        model.params.numel()
    );
    for id in g.topological_order()? {
        let node = g.node(id)?;
        let inputs: Vec<String> = g.inputs(id).iter().map(ToString::to_string).collect();
        let _ = write!(s, "{id} = {}", node.op);
        if !matches!(node.op, Op::Input { .. } | Op::Param { .. }) {
            let _ = write!(s, "({})", inputs.join(", "));
        }
        let named = matches!(node.op, Op::Input { .. } | Op::Param { .. } | Op::Output { .. });
        if !named && !node.name.is_empty() {
            let _ = write!(s, " {:?}", node.name);
        }
        if let Some(b) = node.block {
            let _ = write!(s, " #{b}");
        }
        let outs: Vec<String> = node
            .outputs()
            .iter()
            .enumerate()
            .map(|(k, t)| ty(ValueId { node: id, output: k as u16 }, t))
            .collect();
        if !outs.is_empty() {
            let _ = write!(s, " : {}", outs.join(", "));
        }
        s.push('\n');
    }
    if let Some(groups) = &model.groups {
        let _ = writeln!(s, "\ngroups ({} in all; axes above read size@group or size@group/indices-per-element):", groups.len());
        for (gi, group) in groups.iter().enumerate() {
            let _ = write!(s, "group {gi}: {group}");
        }
    }
    Ok(s)
}
