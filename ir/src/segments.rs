//! Segments: the graph cut into stretches that run one after another — what comes before the
//! first decoder layer, each layer, what comes after the last — so that a runtime can hold
//! one segment's parameters at a time and keep only the values that cross from one segment to
//! the next (a decoder's residual stream). Layer-streamed calibration and evaluation run on
//! them; nothing here names an architecture: the cut follows the nodes' blocks and the edges.
//!
//! Parameters and graph inputs are not computed: every segment that reads one loads it itself.
//! A computed node lands in the segment of its block, but never before a segment that feeds
//! it; nodes of no block go with what feeds them, except those that lead to no block (the
//! final norm, the LM head), which form the last segment.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::error::{IrError, Result};
use crate::graph::{Graph, NodeId, ValueId};
use crate::op::Op;

/// One stretch of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The decoder layer it is, when all its computed nodes belong to one.
    pub block: Option<u32>,
    /// Its nodes in topological order: parameters and graph inputs it reads, then what it
    /// computes (a parameter read by several segments is listed in each).
    pub nodes: Vec<NodeId>,
    /// The parameters it reads, by name, in order of first use.
    pub params: Vec<String>,
    /// Values computed by earlier segments that it reads.
    pub inputs: Vec<ValueId>,
    /// Values it computes that later segments read, and the graph's output when it computes it.
    pub outputs: Vec<ValueId>,
}

/// A graph cut into segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    /// The segments, in the order they run.
    pub segments: Vec<Segment>,
    /// The value of the `logits` output.
    pub logits: ValueId,
    /// For each value crossing segments, the segment that computes it.
    pub producer: BTreeMap<ValueId, usize>,
    /// Values crossing segments that depend on a parameter (those a gradient flows through;
    /// the others derive from the graph's inputs alone: token ids, positions, masks).
    pub param_dependent: BTreeSet<ValueId>,
}

fn is_free(op: &Op) -> bool {
    matches!(op, Op::Param { .. } | Op::Input { .. })
}

impl Segments {
    /// Cuts `graph` into segments.
    pub fn of(graph: &Graph) -> Result<Segments> {
        let order = graph.topological_order()?;
        let mut logits = None;
        for &id in &order {
            if let Op::Output { name } = &graph.node(id)?.op {
                if name == "logits" {
                    logits = graph.inputs(id).first().copied();
                }
            }
        }
        let logits = logits.ok_or_else(|| IrError::Structure("the graph has no `logits` output".into()))?;
        // blocks in increasing order: block b is segment 1 + its rank
        let blocks: BTreeSet<u32> = order.iter().filter_map(|&id| graph.node(id).ok().and_then(|n| n.block)).collect();
        let rank: HashMap<u32, usize> = blocks.iter().enumerate().map(|(k, &b)| (b, k + 1)).collect();
        let head = blocks.len() + 1;
        // nodes of no block that lead to no block node: the head
        let mut leads_to_block: HashSet<NodeId> = HashSet::new();
        for &id in order.iter().rev() {
            let node = graph.node(id)?;
            let users = (0..node.outputs().len()).flat_map(|k| graph.users(ValueId { node: id, output: k as u16 }));
            if node.block.is_some() || users.into_iter().any(|(u, _)| leads_to_block.contains(&u)) {
                leads_to_block.insert(id);
            }
        }
        let mut seg: HashMap<NodeId, usize> = HashMap::new();
        let mut param_dep: HashSet<NodeId> = HashSet::new();
        for &id in &order {
            let node = graph.node(id)?;
            let inputs = graph.inputs(id);
            if inputs.iter().any(|v| param_dep.contains(&v.node)) || matches!(node.op, Op::Param { .. }) {
                param_dep.insert(id);
            }
            if is_free(&node.op) {
                continue;
            }
            let preferred = match node.block {
                Some(b) => rank.get(&b).copied().unwrap_or(0),
                None if !leads_to_block.contains(&id) && !blocks.is_empty() => head,
                None => 0,
            };
            let after = inputs.iter().filter_map(|v| seg.get(&v.node)).copied().max().unwrap_or(0);
            seg.insert(id, preferred.max(after));
        }
        // gather each segment's nodes, reads and crossings
        let mut producer = BTreeMap::new();
        let mut param_dependent = BTreeSet::new();
        let mut by_segment: BTreeMap<usize, Segment> = BTreeMap::new();
        for &id in &order {
            let Some(&k) = seg.get(&id) else { continue };
            let node = graph.node(id)?;
            let s = by_segment
                .entry(k)
                .or_insert_with(|| Segment { block: node.block, nodes: Vec::new(), params: Vec::new(), inputs: Vec::new(), outputs: Vec::new() });
            if s.block != node.block {
                s.block = None;
            }
            for v in graph.inputs(id) {
                let producer_node = graph.node(v.node)?;
                if is_free(&producer_node.op) {
                    if !s.nodes.contains(&v.node) {
                        s.nodes.push(v.node);
                    }
                    if let Op::Param { name, .. } = &producer_node.op {
                        if !s.params.contains(name) {
                            s.params.push(name.clone());
                        }
                    }
                } else if let Some(&pk) = seg.get(&v.node) {
                    if pk != k {
                        if !s.inputs.contains(&v) {
                            s.inputs.push(v);
                        }
                        producer.insert(v, pk);
                        if param_dep.contains(&v.node) {
                            param_dependent.insert(v);
                        }
                    }
                }
            }
            s.nodes.push(id);
        }
        // outputs: values read by later segments, and the logits
        let mut outputs: BTreeMap<usize, Vec<ValueId>> = BTreeMap::new();
        for (&v, &k) in &producer {
            outputs.entry(k).or_default().push(v);
        }
        if let Some(&k) = seg.get(&logits.node) {
            producer.insert(logits, k);
            outputs.entry(k).or_default().push(logits);
        }
        // renumber densely (empty segment numbers disappear)
        let renumber: HashMap<usize, usize> = by_segment.keys().enumerate().map(|(i, &k)| (k, i)).collect();
        let mut segments: Vec<Segment> = by_segment.into_values().collect();
        for (k, outs) in outputs {
            if let Some(&i) = renumber.get(&k) {
                segments[i].outputs = outs;
            }
        }
        for k in producer.values_mut() {
            *k = renumber.get(k).copied().unwrap_or(*k);
        }
        Ok(Segments { segments, logits, producer, param_dependent })
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether there is none (never: a graph with an output has one).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The segments that read parameter `name`.
    pub fn readers_of(&self, name: &str) -> Vec<usize> {
        self.segments.iter().enumerate().filter(|(_, s)| s.params.iter().any(|p| p == name)).map(|(k, _)| k).collect()
    }

    /// The segments that read value `v` (computed by another segment).
    pub fn consumers_of(&self, v: ValueId) -> Vec<usize> {
        self.segments.iter().enumerate().filter(|(_, s)| s.inputs.contains(&v)).map(|(k, _)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DType, Dim, Shape, ValueType};

    fn param(g: &mut Graph, name: &str, shape: &[usize], block: Option<u32>) -> ValueId {
        let ty = ValueType::new(DType::F32, Shape::fixed(shape));
        g.add_value(Op::Param { name: name.into(), ty }, name, block, &[]).unwrap()
    }

    /// embed → two residual layers → norm → tied head.
    fn decoder() -> Graph {
        let mut g = Graph::new();
        let ids_ty = ValueType::new(DType::I64, Shape(vec![Dim::batch(), Dim::seq()]));
        let ids = g.add_value(Op::Input { name: "input_ids".into(), ty: ids_ty }, "input_ids", None, &[]).unwrap();
        let table = param(&mut g, "embed", &[10, 4], None);
        let mut x = g.add_value(Op::Embedding, "embed", None, &[table, ids]).unwrap();
        for l in 0..2u32 {
            let w = param(&mut g, &format!("l{l}.w"), &[4, 4], Some(l));
            let y = g.add_value(Op::Linear, format!("l{l}.proj"), Some(l), &[x, w]).unwrap();
            x = g.add_value(Op::Binary(crate::op::BinaryOp::Add), format!("l{l}.add"), Some(l), &[x, y]).unwrap();
        }
        let n = param(&mut g, "norm", &[4], None);
        let x = g.add_value(Op::RmsNorm { eps: 1e-6, offset: 0.0 }, "norm", None, &[x, n]).unwrap();
        let logits = g.add_value(Op::Linear, "head", None, &[x, table]).unwrap();
        g.add(Op::Output { name: "logits".into() }, "logits", None, &[logits]).unwrap();
        g
    }

    #[test]
    fn a_decoder_cuts_at_its_layers() {
        let g = decoder();
        let s = Segments::of(&g).unwrap();
        assert_eq!(s.len(), 4);
        let blocks: Vec<Option<u32>> = s.segments.iter().map(|s| s.block).collect();
        assert_eq!(blocks, [None, Some(0), Some(1), None]);
        let params: Vec<Vec<String>> = s.segments.iter().map(|s| s.params.clone()).collect();
        assert_eq!(params, [vec!["embed"], vec!["l0.w"], vec!["l1.w"], vec!["norm", "embed"]]);
        // one value crosses each cut; the head computes the logits
        for k in 1..4 {
            assert_eq!(s.segments[k].inputs.len(), 1, "segment {k}");
            assert_eq!(s.segments[k - 1].outputs, s.segments[k].inputs);
        }
        assert_eq!(s.segments[3].outputs, [s.logits]);
        assert_eq!(s.readers_of("embed"), [0, 3]);
        assert!(s.segments[1].inputs.iter().all(|v| s.param_dependent.contains(v)));
    }
}
