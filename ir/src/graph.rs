//! The graph: ops on a petgraph `StableGraph`, so that ids survive deletions and side
//! tables keyed by id stay valid. Wiring a node infers its output types.

use std::collections::{BTreeSet, BinaryHeap};
use std::cmp::Reverse;
use std::fmt;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::error::{IrError, Result};
use crate::op::Op;
use crate::types::ValueType;

/// A node of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub NodeIndex<u32>);

impl NodeId {
    /// The node's index, as the printer writes it (`%index`).
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0.index())
    }
}

/// A value: output `output` of node `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId {
    /// The producing node.
    pub node: NodeId,
    /// Which of its outputs.
    pub output: u16,
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.output == 0 {
            write!(f, "{}", self.node)
        } else {
            write!(f, "{}.{}", self.node, self.output)
        }
    }
}

/// A node: an op, the types of its outputs, a name for people and the repeated block
/// (decoder layer) it belongs to, when it belongs to one.
#[derive(Debug, Clone)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// A readable name (the module path of the source model, for instance).
    pub name: String,
    /// The index of the repeated block (decoder layer) holding this node.
    pub block: Option<u32>,
    outputs: Vec<ValueType>,
}

impl Node {
    /// The types of the node's outputs.
    pub fn outputs(&self) -> &[ValueType] {
        &self.outputs
    }
}

/// An edge: output `output` of its source feeds input `input` of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Output index at the source.
    pub output: u16,
    /// Input index at the target.
    pub input: u16,
}

/// An op-level dataflow graph.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    g: StableDiGraph<Node, Edge, u32>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds a node computing `op` on `inputs`; its output types are inferred.
    pub fn add(&mut self, op: Op, name: impl Into<String>, block: Option<u32>, inputs: &[ValueId]) -> Result<NodeId> {
        let name = name.into();
        let types = inputs.iter().map(|&v| self.value_type(v)).collect::<Result<Vec<_>>>()?;
        let outputs = op.infer(&name, &types)?;
        let id = NodeId(self.g.add_node(Node { op, name, block, outputs }));
        for (k, v) in inputs.iter().enumerate() {
            let input = u16::try_from(k).map_err(|_| IrError::Structure("too many inputs".into()))?;
            self.g.add_edge(v.node.0, id.0, Edge { output: v.output, input });
        }
        Ok(id)
    }

    /// Adds a node and returns its first output.
    pub fn add_value(&mut self, op: Op, name: impl Into<String>, block: Option<u32>, inputs: &[ValueId]) -> Result<ValueId> {
        Ok(ValueId { node: self.add(op, name, block, inputs)?, output: 0 })
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> Result<&Node> {
        self.g.node_weight(id.0).ok_or_else(|| IrError::Structure(format!("no node {id}")))
    }

    /// The node `id`, mutably. Changing its op does not re-infer types: call
    /// [`Graph::reinfer`] (or run the verifier) afterwards.
    pub fn node_mut(&mut self, id: NodeId) -> Result<&mut Node> {
        self.g.node_weight_mut(id.0).ok_or_else(|| IrError::Structure(format!("no node {id}")))
    }

    /// The type of value `v`.
    pub fn value_type(&self, v: ValueId) -> Result<&ValueType> {
        self.node(v.node)?
            .outputs
            .get(usize::from(v.output))
            .ok_or_else(|| IrError::Structure(format!("{} has no output {}", v.node, v.output)))
    }

    /// The inputs of node `id`, in order.
    pub fn inputs(&self, id: NodeId) -> Vec<ValueId> {
        let mut edges: Vec<(u16, ValueId)> = self
            .g
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| (e.weight().input, ValueId { node: NodeId(e.source()), output: e.weight().output }))
            .collect();
        edges.sort();
        edges.into_iter().map(|(_, v)| v).collect()
    }

    /// The users of value `v`: `(node, input index)`, sorted.
    pub fn users(&self, v: ValueId) -> Vec<(NodeId, usize)> {
        let mut users: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(v.node.0, Direction::Outgoing)
            .filter(|e| e.weight().output == v.output)
            .map(|e| (NodeId(e.target()), usize::from(e.weight().input)))
            .collect();
        users.sort();
        users
    }

    /// Every node id, in increasing order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.g.node_indices().map(NodeId).collect();
        ids.sort();
        ids
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    /// Whether the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// The nodes in a topological order, ties broken by id, so the order is stable.
    pub fn topological_order(&self) -> Result<Vec<NodeId>> {
        let mut indegree: std::collections::HashMap<NodeIndex<u32>, usize> =
            self.g.node_indices().map(|n| (n, self.g.edges_directed(n, Direction::Incoming).count())).collect();
        let mut ready: BinaryHeap<Reverse<NodeIndex<u32>>> =
            indegree.iter().filter(|(_, &d)| d == 0).map(|(&n, _)| Reverse(n)).collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(NodeId(n));
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                if let Some(d) = indegree.get_mut(&e.target()) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(Reverse(e.target()));
                    }
                }
            }
        }
        if order.len() != self.g.node_count() {
            return Err(IrError::Structure("the graph has a cycle".into()));
        }
        Ok(order)
    }

    /// Re-infers the output types of node `id` from its inputs.
    pub fn reinfer(&mut self, id: NodeId) -> Result<()> {
        let inputs = self.inputs(id);
        let node = self.node(id)?;
        let types = inputs.iter().map(|&v| self.value_type(v)).collect::<Result<Vec<_>>>()?;
        let outputs = node.op.infer(&node.name, &types)?;
        self.node_mut(id)?.outputs = outputs;
        Ok(())
    }

    /// The recorded outputs of `id` against what its op infers now: `Err` on drift.
    pub(crate) fn check_types(&self, id: NodeId) -> Result<()> {
        let inputs = self.inputs(id);
        let node = self.node(id)?;
        let types = inputs.iter().map(|&v| self.value_type(v)).collect::<Result<Vec<_>>>()?;
        let inferred = node.op.infer(&node.name, &types)?;
        for (k, (r, i)) in node.outputs.iter().zip(&inferred).enumerate() {
            if r != i {
                return Err(IrError::TypeDrift { node: node.name.clone(), output: k, recorded: r.clone(), inferred: i.clone() });
            }
        }
        if inferred.len() != node.outputs.len() {
            return Err(IrError::Structure(format!("node `{}` changed its number of outputs", node.name)));
        }
        Ok(())
    }

    /// Input slots of `id` that are fed, as a set (for the verifier).
    pub(crate) fn input_slots(&self, id: NodeId) -> (usize, BTreeSet<u16>) {
        let mut slots = BTreeSet::new();
        let mut count = 0;
        for e in self.g.edges_directed(id.0, Direction::Incoming) {
            slots.insert(e.weight().input);
            count += 1;
        }
        (count, slots)
    }

    /// Replaces every use of `old` by `new`.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        let edges: Vec<_> = self
            .g
            .edges_directed(old.node.0, Direction::Outgoing)
            .filter(|e| e.weight().output == old.output)
            .map(|e| (e.id(), e.target(), *e.weight()))
            .collect();
        for (id, target, w) in edges {
            self.g.remove_edge(id);
            self.g.add_edge(new.node.0, target, Edge { output: new.output, input: w.input });
        }
    }

    /// Feeds input `input` of node `id` from `value` instead of what fed it (its type must
    /// agree: types are not re-inferred).
    pub fn set_input(&mut self, id: NodeId, input: usize, value: ValueId) -> Result<()> {
        let slot = u16::try_from(input).map_err(|_| IrError::Structure("too many inputs".into()))?;
        let old = self
            .g
            .edges_directed(id.0, Direction::Incoming)
            .find(|e| e.weight().input == slot)
            .map(|e| e.id())
            .ok_or_else(|| IrError::Structure(format!("{id} has no input {input}")))?;
        self.g.remove_edge(old);
        self.g.add_edge(value.node.0, id.0, Edge { output: value.output, input: slot });
        Ok(())
    }

    /// Feeds `value` to node `id` as a new last input (a linear op's bias, say); types are not
    /// re-inferred.
    pub fn push_input(&mut self, id: NodeId, value: ValueId) -> Result<()> {
        self.node(id)?;
        let slot = u16::try_from(self.inputs(id).len()).map_err(|_| IrError::Structure("too many inputs".into()))?;
        self.g.add_edge(value.node.0, id.0, Edge { output: value.output, input: slot });
        Ok(())
    }

    /// Removes node `id` and its edges.
    pub fn remove(&mut self, id: NodeId) -> Option<Node> {
        self.g.remove_node(id.0)
    }
}
