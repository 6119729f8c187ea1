//! The verifier, run after every pass: types agree along every edge, every parameter's
//! shape agrees with its op, nothing dangles.

use std::collections::BTreeSet;

use crate::error::{IrError, Result};
use crate::model::Model;
use crate::op::Op;

/// Checks `model`; the first problem found is the error.
pub fn verify(model: &Model) -> Result<()> {
    let g = &model.graph;
    g.topological_order()?;
    let mut used_params = BTreeSet::new();
    for id in g.node_ids() {
        let node = g.node(id)?;
        let (count, slots) = g.input_slots(id);
        let (lo, hi) = node.op.arity();
        let contiguous = slots.iter().enumerate().all(|(k, &s)| usize::from(s) == k);
        if count != slots.len() || !contiguous || count < lo || count > hi {
            return Err(IrError::Structure(format!(
                "node {id} `{}` ({}) has inputs at slots {slots:?} ({count} edges)",
                node.name,
                node.op.mnemonic()
            )));
        }
        g.check_types(id)?;
        if let Op::Param { name, ty } = &node.op {
            let p = model
                .params
                .get(name)
                .ok_or_else(|| IrError::BadParam { name: name.clone(), reason: "used by the graph but not in the store".into() })?;
            if ty.shape.to_fixed().as_deref() != Some(p.shape.as_slice()) {
                return Err(IrError::BadParam {
                    name: name.clone(),
                    reason: format!("the graph says {} but the store holds {:?}", ty.shape, p.shape),
                });
            }
            used_params.insert(name.as_str());
        }
        let has_users = (0..node.outputs().len()).any(|k| {
            !g.users(crate::graph::ValueId { node: id, output: k as u16 }).is_empty()
        });
        if !matches!(node.op, Op::Output { .. }) && !has_users {
            return Err(IrError::Structure(format!("node {id} `{}` ({}) has no users", node.name, node.op.mnemonic())));
        }
    }
    if let Some((name, _)) = model.params.iter().find(|(n, _)| !used_params.contains(n.as_str())) {
        return Err(IrError::BadParam { name: name.clone(), reason: "in the store but used by no node".into() });
    }
    Ok(())
}
