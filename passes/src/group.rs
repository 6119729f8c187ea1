//! The `group` pass: finds the coupled structures of a model from its graph alone.
//!
//! Every axis of every value and parameter with a known size is cut into
//! *elements* (neurons, or blocks of them where a reshape makes several indices one head).
//! The ops' axis mappings say which elements stand for the same structure; the dependency
//! rules of LLM-Pruner then say which must go together:
//!
//! * an index-for-index link (element-wise ops, both sides of a contraction, a weight's
//!   rows and the output channels they make, concat and slice offsets, reshapes) couples
//!   both ways: each element is the other's only neighbour, so the forward rule
//!   (`N_j ∈ Out(N_i) ∧ deg⁻(N_j) = 1`) and the backward rule (`N_i ∈ In(N_j) ∧
//!   deg⁺(N_i) = 1`) both hold;
//! * a repeat (one source element feeding several copies) is directed: a copy depends on
//!   its source by the forward rule, and a source depends on its copies only once all of
//!   them are pruned (the backward rule, generalised from one consumer to all of them).
//!
//! Starting from a trigger element and following the rules until nothing new is reached
//! gives a closure. The closures that are maximal are the *units* of a group (an attention
//! head, or a key/value head with the query heads that share it; an MLP channel; a hidden
//! channel); smaller closures inside a unit are *sub-units* that can go alone (a query
//! head). A group is a connected set of axes; what it is — attention, mlp, hidden — is told
//! from the ops its axes pass through. No rule here knows an architecture or a name.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use prunec_ir::{
    repeat_ranges,
    AxisLink, Dim, Element, Graph, Group, GroupAxis, GroupKind, Model, Op, Port, PortAxis, Unit, ValueId,
};

use crate::{PassError, Result};

/// A union-find over dense ids.
struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    fn new(n: usize) -> UnionFind {
        UnionFind { parent: (0..n as u32).collect() }
    }
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // keep the smaller id as root, so roots are deterministic
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi as usize] = lo;
        }
    }
}

/// An axis with a known size above one.
#[derive(Debug, Clone)]
struct Slot {
    value: ValueId,
    axis: usize,
    size: usize,
}

/// A link between slots, resolved from an op's axis mapping.
#[derive(Debug, Clone)]
enum Link {
    Same(usize, usize),
    Offset { part: usize, whole: usize, offset: usize },
    Split { flat: usize, outer: usize, inner: usize },
    /// Source index `i` is repeated as target indices `ranges[i]`.
    Repeat { source: usize, target: usize, ranges: Vec<std::ops::Range<usize>> },
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The least common multiple of two sizes: a block size both divide into (0 when either is 0,
/// `lcm(0, 0)` included).
pub fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b).max(1) * b
}

/// The slots and links of a graph, with pinned slots.
struct AxisGraph {
    slots: Vec<Slot>,
    index: HashMap<(ValueId, usize), usize>,
    links: Vec<Link>,
    pinned: HashSet<usize>,
}

impl AxisGraph {
    fn build(graph: &Graph) -> Result<AxisGraph> {
        let mut slots = Vec::new();
        let mut index = HashMap::new();
        let ids = graph.node_ids();
        for &id in &ids {
            let node = graph.node(id)?;
            for (k, t) in node.outputs().iter().enumerate() {
                let value = ValueId { node: id, output: k as u16 };
                for (axis, d) in t.shape.dims().iter().enumerate() {
                    // axes of size 1 take part too: one head is still a head
                    if let Dim::Fixed(size) = *d {
                        if size >= 1 {
                            index.insert((value, axis), slots.len());
                            slots.push(Slot { value, axis, size });
                        }
                    }
                }
            }
        }
        let mut links = Vec::new();
        let mut pinned = HashSet::new();
        for &id in &ids {
            let node = graph.node(id)?;
            let inputs = graph.inputs(id);
            let in_types = inputs.iter().map(|&v| graph.value_type(v)).collect::<prunec_ir::Result<Vec<_>>>()?;
            let mapping = node.op.axis_mapping(&in_types, node.outputs());
            let slot = |pa: PortAxis| -> Option<usize> {
                let value = match pa.port {
                    Port::Input(i) => *inputs.get(i)?,
                    Port::Output(j) => ValueId { node: id, output: j as u16 },
                };
                index.get(&(value, pa.axis)).copied()
            };
            for p in &mapping.pinned {
                if let Some(s) = slot(*p) {
                    pinned.insert(s);
                }
            }
            for l in &mapping.links {
                let resolved = match l {
                    &AxisLink::Same(a, b) => slot(a).zip(slot(b)).map(|(a, b)| Link::Same(a, b)),
                    &AxisLink::Offset { part, whole, offset } => {
                        slot(part).zip(slot(whole)).map(|(part, whole)| Link::Offset { part, whole, offset })
                    }
                    &AxisLink::Split { flat, outer, inner } => {
                        slot(flat).zip(slot(outer)).map(|(flat, outer)| Link::Split { flat, outer, inner })
                    }
                    AxisLink::Repeat { source, target, copies } => slot(*source)
                        .zip(slot(*target))
                        .map(|(source, target)| Link::Repeat { source, target, ranges: repeat_ranges(copies) }),
                };
                links.extend(resolved);
            }
        }
        Ok(AxisGraph { slots, index, links, pinned })
    }

    /// Indices per element of each slot: the least granularity that every link respects.
    /// Slots that no granularity fits (sizes or offsets not divisible) are returned as bad.
    fn granularity(&self) -> (Vec<usize>, HashSet<usize>) {
        let mut g = vec![1usize; self.slots.len()];
        let mut bad = HashSet::new();
        let limit = 64 + 4 * self.links.len();
        for _ in 0..limit {
            let mut changed = false;
            let mut raise = |g: &mut Vec<usize>, s: usize, to: usize| {
                if g[s] != to {
                    g[s] = to;
                    changed = true;
                }
            };
            for l in &self.links {
                match *l {
                    Link::Same(a, b)
                    | Link::Offset { part: a, whole: b, .. }
                    | Link::Repeat { source: a, target: b, .. } => {
                        let m = lcm(g[a], g[b]);
                        raise(&mut g, a, m);
                        raise(&mut g, b, m);
                    }
                    Link::Split { flat, outer, inner } => {
                        let m = lcm(g[flat], inner * g[outer]);
                        raise(&mut g, flat, m);
                        raise(&mut g, outer, m / inner);
                    }
                }
            }
            // a granularity above the size can only grow further: stop it there
            for (s, slot) in self.slots.iter().enumerate() {
                if g[s] > slot.size {
                    g[s] = slot.size;
                    bad.insert(s);
                }
            }
            if !changed {
                break;
            }
        }
        for (s, slot) in self.slots.iter().enumerate() {
            if slot.size % g[s] != 0 {
                bad.insert(s);
            }
        }
        for l in &self.links {
            if let Link::Offset { part, whole, offset } = *l {
                if offset % g[whole] != 0 {
                    bad.insert(part);
                    bad.insert(whole);
                }
            }
        }
        (g, bad)
    }
}

/// Element-level dependencies: atoms (elements coupled both ways) and directed edges.
struct Dependencies {
    /// First element id of each slot.
    base: Vec<u32>,
    /// Slot of each element.
    slot_of: Vec<u32>,
    atoms: UnionFind,
    /// Directed edges between elements: source -> copies, copy -> sources.
    out: HashMap<u32, Vec<u32>>,
    inn: HashMap<u32, Vec<u32>>,
}

impl Dependencies {
    fn build(ag: &AxisGraph, g: &[usize], bad: &HashSet<usize>) -> Result<Dependencies> {
        let mut base = Vec::with_capacity(ag.slots.len());
        let mut slot_of = Vec::new();
        for (s, slot) in ag.slots.iter().enumerate() {
            base.push(u32::try_from(slot_of.len()).map_err(|_| PassError::Group("too many elements".into()))?);
            let n = if bad.contains(&s) { 1 } else { slot.size / g[s] };
            slot_of.extend(std::iter::repeat_n(s as u32, n));
        }
        let count = |s: usize| -> u32 { if bad.contains(&s) { 1 } else { (ag.slots[s].size / g[s]) as u32 } };
        let mut atoms = UnionFind::new(slot_of.len());
        let mut out: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut inn: HashMap<u32, Vec<u32>> = HashMap::new();
        for l in &ag.links {
            match *l {
                Link::Same(a, b) | Link::Split { flat: a, outer: b, .. } => {
                    if bad.contains(&a) || bad.contains(&b) {
                        atoms.union(base[a], base[b]);
                        continue;
                    }
                    for k in 0..count(a).min(count(b)) {
                        atoms.union(base[a] + k, base[b] + k);
                    }
                }
                Link::Offset { part, whole, offset } => {
                    if bad.contains(&part) || bad.contains(&whole) {
                        atoms.union(base[part], base[whole]);
                        continue;
                    }
                    let shift = (offset / g[whole]) as u32;
                    for k in 0..count(part) {
                        if k + shift < count(whole) {
                            atoms.union(base[part] + k, base[whole] + k + shift);
                        }
                    }
                }
                Link::Repeat { source, target, ref ranges } => {
                    if bad.contains(&source) || bad.contains(&target) {
                        atoms.union(base[source], base[target]);
                        continue;
                    }
                    let (gs, gt) = (g[source], g[target]);
                    for k in 0..count(source) {
                        let mut targets = BTreeSet::new();
                        for i in k as usize * gs..(k as usize + 1) * gs {
                            for c in ranges.get(i).cloned().unwrap_or_default() {
                                targets.insert((c / gt) as u32);
                            }
                        }
                        for t in targets {
                            if t < count(target) {
                                let (se, te) = (base[source] + k, base[target] + t);
                                out.entry(se).or_default().push(te);
                                inn.entry(te).or_default().push(se);
                            }
                        }
                    }
                }
            }
        }
        Ok(Dependencies { base, slot_of, atoms, out, inn })
    }

    /// Every atom reachable from `start` by the forward and backward rules.
    fn closure(&mut self, start: u32, atom_elements: &HashMap<u32, Vec<u32>>) -> BTreeSet<u32> {
        let mut set = BTreeSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(a) = queue.pop_front() {
            let Some(elems) = atom_elements.get(&a) else { continue };
            let mut add = Vec::new();
            for &e in elems {
                // forward: a copy whose every source is pruned
                for &d in self.out.get(&e).map(Vec::as_slice).unwrap_or(&[]) {
                    let srcs = self.inn.get(&d).cloned().unwrap_or_default();
                    if srcs.iter().all(|&s| set.contains(&self.atoms.find(s))) {
                        add.push(self.atoms.find(d));
                    }
                }
                // backward: a source whose every copy is pruned
                for &s in self.inn.get(&e).map(Vec::as_slice).unwrap_or(&[]) {
                    let dsts = self.out.get(&s).cloned().unwrap_or_default();
                    if dsts.iter().all(|&d| set.contains(&self.atoms.find(d))) {
                        add.push(self.atoms.find(s));
                    }
                }
            }
            for x in add {
                if set.insert(x) {
                    queue.push_back(x);
                }
            }
        }
        set
    }
}

/// Finds the dependency groups of `model`'s graph.
pub fn find_groups(model: &Model) -> Result<Vec<Group>> {
    let graph = &model.graph;
    let ag = AxisGraph::build(graph)?;
    let (g, bad) = ag.granularity();
    let mut deps = Dependencies::build(&ag, &g, &bad)?;

    // connected sets of slots
    let mut slot_uf = UnionFind::new(ag.slots.len());
    for l in &ag.links {
        let (a, b) = match *l {
            Link::Same(a, b) => (a, b),
            Link::Offset { part, whole, .. } => (part, whole),
            Link::Split { flat, outer, .. } => (flat, outer),
            Link::Repeat { source, target, .. } => (source, target),
        };
        slot_uf.union(a as u32, b as u32);
    }
    let mut components: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for s in 0..ag.slots.len() {
        components.entry(slot_uf.find(s as u32)).or_default().push(s);
    }

    let param_of = |v: ValueId| -> Option<(String, Vec<usize>)> {
        match graph.node(v.node).ok().map(|n| &n.op) {
            Some(Op::Param { name, ty }) => ty.shape.to_fixed().map(|shape| (name.clone(), shape)),
            _ => None,
        }
    };

    let mut groups = Vec::new();
    for slots in components.values() {
        if slots.iter().any(|s| ag.pinned.contains(s) || bad.contains(s)) {
            continue;
        }
        if !slots.iter().any(|&s| param_of(ag.slots[s].value).is_some()) {
            continue;
        }
        groups.push(build_group(model, &ag, &g, &mut deps, slots, &param_of)?);
    }
    groups.sort_by_key(|gr| (gr.block.unwrap_or(u32::MAX), gr.kind));
    let _ = &ag.index;
    Ok(groups)
}

fn build_group(
    model: &Model,
    ag: &AxisGraph,
    g: &[usize],
    deps: &mut Dependencies,
    slots: &[usize],
    param_of: &dyn Fn(ValueId) -> Option<(String, Vec<usize>)>,
) -> Result<Group> {
    let graph = &model.graph;
    // the group's axes: parameters first, then values, each by (value, axis)
    let mut ordered: Vec<usize> = slots.to_vec();
    ordered.sort_by_key(|&s| (param_of(ag.slots[s].value).is_none(), ag.slots[s].value, ag.slots[s].axis));
    let axes: Vec<GroupAxis> = ordered
        .iter()
        .map(|&s| GroupAxis {
            value: ag.slots[s].value,
            axis: ag.slots[s].axis,
            size: ag.slots[s].size,
            granularity: g[s],
            param: param_of(ag.slots[s].value),
        })
        .collect();
    let axis_of_slot: HashMap<usize, u32> = ordered.iter().enumerate().map(|(k, &s)| (s, k as u32)).collect();

    // atoms and their elements, in group order
    let mut atom_elements: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut atom_order: Vec<u32> = Vec::new();
    for &s in &ordered {
        let n = (ag.slots[s].size / g[s]) as u32;
        for k in 0..n {
            let e = deps.base[s] + k;
            let a = deps.atoms.find(e);
            let entry = atom_elements.entry(a).or_default();
            if entry.is_empty() {
                atom_order.push(a);
            }
            entry.push(e);
        }
    }
    let element = |e: u32, deps: &Dependencies| -> Element {
        let s = deps.slot_of[e as usize] as usize;
        Element { axis: axis_of_slot[&s], index: e - deps.base[s] }
    };

    // units: atoms joined by directed edges
    let atom_ids: HashMap<u32, u32> = atom_order.iter().enumerate().map(|(k, &a)| (a, k as u32)).collect();
    let mut unit_uf = UnionFind::new(atom_order.len());
    for (&s, dsts) in &deps.out.clone() {
        let sa = deps.atoms.find(s);
        for &d in dsts {
            let da = deps.atoms.find(d);
            if let (Some(&x), Some(&y)) = (atom_ids.get(&sa), atom_ids.get(&da)) {
                unit_uf.union(x, y);
            }
        }
    }
    let mut unit_atoms: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (k, &a) in atom_order.iter().enumerate() {
        unit_atoms.entry(unit_uf.find(k as u32)).or_default().push(a);
    }

    let is_param_atom = |a: u32, deps: &Dependencies| -> bool {
        atom_elements[&a].iter().any(|&e| axes[axis_of_slot[&(deps.slot_of[e as usize] as usize)] as usize].param.is_some())
    };

    let mut units = Vec::new();
    for atoms in unit_atoms.values() {
        if !atoms.iter().any(|&a| is_param_atom(a, deps)) {
            continue;
        }
        let mut elements: Vec<Element> =
            atoms.iter().flat_map(|a| atom_elements[a].iter().map(|&e| element(e, deps))).collect();
        elements.sort();
        // sub-units: closures of triggers inside the unit that stop short of all of it
        let mut sub_units: Vec<Vec<Element>> = Vec::new();
        if atoms.len() > 1 {
            let whole: BTreeSet<u32> = atoms.iter().copied().collect();
            for &a in atoms {
                if !is_param_atom(a, deps) {
                    continue;
                }
                let c = deps.closure(a, &atom_elements);
                if c.len() < whole.len() && c.iter().any(|&x| is_param_atom(x, deps)) {
                    let mut sub: Vec<Element> =
                        c.iter().flat_map(|x| atom_elements[x].iter().map(|&e| element(e, deps))).collect();
                    sub.sort();
                    if !sub_units.contains(&sub) {
                        sub_units.push(sub);
                    }
                }
            }
            sub_units.sort();
        }
        units.push(Unit { elements, sub_units });
    }
    units.sort_by(|a, b| a.elements.first().cmp(&b.elements.first()));

    // what the group is, from its ops
    let mut kind = GroupKind::Mlp;
    for ax in &axes {
        let node = graph.node(ax.value.node)?;
        let rank = node.outputs().get(usize::from(ax.value.output)).map_or(0, |t| t.rank());
        match node.op {
            Op::Attention(_) if ax.axis + 2 == rank => kind = GroupKind::Attention,
            Op::Embedding if ax.axis + 1 == rank && kind != GroupKind::Attention => kind = GroupKind::Hidden,
            _ => {}
        }
    }
    let blocks: BTreeSet<Option<u32>> = axes
        .iter()
        .filter(|a| a.param.is_some())
        .map(|a| graph.node(a.value.node).map(|n| n.block))
        .collect::<prunec_ir::Result<_>>()?;
    let block = match blocks.len() {
        1 => blocks.into_iter().next().flatten(),
        _ => None,
    };
    Ok(Group { kind, block, axes, units })
}

/// Summary of groups for people: groups per kind, units, sub-units and parameters per unit.
pub fn summarize(groups: &[Group]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mut kinds: BTreeMap<GroupKind, Vec<&Group>> = BTreeMap::new();
    for gr in groups {
        kinds.entry(gr.kind).or_default().push(gr);
    }
    let _ = writeln!(s, "{} dependency groups", groups.len());
    let _ = writeln!(s, "  {:<10} {:>6}  {:<28} {:>16}", "kind", "groups", "units per group", "params per unit");
    for (kind, list) in &kinds {
        let mut units: Vec<usize> = list.iter().map(|g| g.units.len()).collect();
        units.sort_unstable();
        units.dedup();
        let units_s = units.iter().map(ToString::to_string).collect::<Vec<_>>().join("/");
        let subs: BTreeSet<(usize, usize)> = list.iter().map(|g| g.sub_units_per_unit()).collect();
        let subs_s = match subs.iter().next() {
            Some(&(lo, hi)) if hi > 0 && subs.len() == 1 && lo == hi => format!("{units_s} (each {hi} sub-units)"),
            Some(_) if subs.iter().any(|&(_, hi)| hi > 0) => format!("{units_s} (with sub-units)"),
            _ => units_s,
        };
        let params: BTreeSet<(usize, usize)> = list.iter().map(|g| g.params_per_unit()).collect();
        let lo = params.iter().map(|p| p.0).min().unwrap_or(0);
        let hi = params.iter().map(|p| p.1).max().unwrap_or(0);
        let params_s = if lo == hi { lo.to_string() } else { format!("{lo}..{hi}") };
        let _ = writeln!(s, "  {:<10} {:>6}  {:<28} {:>16}", kind.name(), list.len(), subs_s, params_s);
    }
    s
}
