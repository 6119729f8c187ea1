//! What the importer says about a graph it cannot read: why a node's input is not defined when
//! the node runs — a cycle, nodes out of topological order, or a name that
//! nothing produces.

use std::collections::{HashMap, VecDeque};

use super::proto::GraphProto;

/// How a node is named in messages: its name, else its index and op.
fn node_name(graph: &GraphProto, k: usize) -> String {
    match graph.node.get(k) {
        Some(n) if !n.name.is_empty() => format!("`{}`", n.name),
        Some(n) => format!("#{k} ({})", n.op_type),
        None => format!("#{k}"),
    }
}

/// Why input `name` of node `at` is not defined when that node runs: the nodes that make a
/// cycle through it, a producer that comes later (nodes out of topological order), or nothing
/// that produces it.
pub fn undefined_input(graph: &GraphProto, at: usize, name: &str) -> String {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (k, n) in graph.node.iter().enumerate() {
        for o in &n.output {
            producer.entry(o.as_str()).or_insert(k);
        }
    }
    let Some(&p) = producer.get(name) else {
        return format!("input `{name}` is produced by no node, initializer or graph input");
    };
    if p == at {
        return format!("cycle: node {} reads its own output `{name}`", node_name(graph, at));
    }
    // walk back from the producer through the producers of its inputs: reaching `at` closes a cycle
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([p]);
    while let Some(k) = queue.pop_front() {
        for input in graph.node.get(k).map(|n| n.input.as_slice()).unwrap_or_default() {
            let Some(&q) = producer.get(input.as_str()) else { continue };
            if q == p || parent.contains_key(&q) {
                continue;
            }
            parent.insert(q, k);
            if q == at {
                // dataflow order: at → ... → p → at
                let mut chain = vec![node_name(graph, at)];
                let mut c = at;
                while let Some(&next) = parent.get(&c) {
                    chain.push(node_name(graph, next));
                    c = next;
                }
                chain.push(node_name(graph, at));
                return format!("cycle: {} (a graph must be acyclic)", chain.join(" → "));
            }
            queue.push_back(q);
        }
    }
    format!(
        "input `{name}` comes from node {}, which comes later: the nodes are not in topological order, as ONNX requires",
        node_name(graph, p)
    )
}

#[cfg(test)]
mod tests {
    use super::super::proto::NodeProto;
    use super::*;

    fn node(name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            name: name.into(),
            op_type: "Add".into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn cycles_order_and_missing_names_are_told_apart() {
        let cyclic = GraphProto {
            node: vec![node("a", &["x", "c"], &["a"]), node("b", &["a"], &["b"]), node("c", &["b"], &["c"])],
            ..Default::default()
        };
        assert_eq!(undefined_input(&cyclic, 0, "c"), "cycle: `a` → `b` → `c` → `a` (a graph must be acyclic)");
        let unsorted = GraphProto { node: vec![node("a", &["b"], &["a"]), node("b", &["x"], &["b"])], ..Default::default() };
        assert!(undefined_input(&unsorted, 0, "b").contains("not in topological order"));
        assert!(undefined_input(&unsorted, 0, "nowhere").contains("produced by no node"));
        let own = GraphProto { node: vec![node("", &["a"], &["a"])], ..Default::default() };
        assert!(undefined_input(&own, 0, "a").starts_with("cycle: node #0 (Add)"));
    }

    /// The list of `fold::SUPPORTED_OPS` is the ops `fold_node` matches (and `Split` and, in ONNX's
    /// own domain, `SimplifiedLayerNormalization`, handled before the match).
    #[test]
    fn supported_ops_are_the_folders_arms() {
        let source = include_str!("fold.rs");
        let body = &source[source.find("fn fold_node").unwrap()..];
        let body = &body[..body.find("_ => return Err(unsupported_op").unwrap()];
        let mut arms: Vec<&str> = vec!["Split", "SimplifiedLayerNormalization"];
        for line in body.lines().map(str::trim) {
            let Some((pattern, _)) = line.split_once(" =>") else { continue };
            let ops: Vec<&str> = pattern.split(" | ").filter_map(|p| p.strip_prefix('"')?.strip_suffix('"')).collect();
            if !ops.is_empty() && ops.len() == pattern.split(" | ").count() && line.starts_with('"') {
                arms.extend(ops);
            }
        }
        arms.sort_unstable();
        arms.dedup();
        let mut listed = super::super::fold::SUPPORTED_OPS.to_vec();
        listed.sort_unstable();
        assert_eq!(arms, listed);
    }
}
