//! The raising rules: egg rewrites that recognise what exporters write for RMSNorm, linear
//! layers, the SiLU gate, rotary embeddings, repeated key/value heads and scaled dot-product
//! attention with a causal mask, and add the IR's op beside it in the e-graph. Every rule is
//! named and listed in [`rules`]; [`raise`] runs them with bounded iterations, nodes and time
//! and checks why the runner stopped. The extraction that follows prefers raised ops, so what
//! no rule raises stays a primitive op.
//!
//! A rule reads what it needs from the classes' [`Facts`](super::language::Facts) — constants,
//! weights, the shapes folding saw — and, for values computed from the sizes alone (rotary
//! tables, masks), asks the [`probe`] what they are. The raised forms are those of
//! [`Term`]: `RmsNorm(x, w, eps)`, `Linear(x, w)` with `w` as `[out, in]` (`wt:NAME` is
//! initializer `NAME` transposed), `Embedding(table, ids)`, `Silu(x)`, `Rope(x, theta, dims)`
//! and `Attention(q, k, v, scale)` on `[b, s, h, d]`, `RepeatHeads(x, n)`.

use std::time::Duration;

use egg::{Applier, Id, Pattern, PatternAst, Runner, StopReason, Subst, Symbol, Var};
use prunec_ir::Dim;

use super::language::{EGraph, FloatConst, IntConst, IntList, ReadFacts, Rewrite, Tables, Term, TransposedWeightName};
use super::probe;

/// Whether class `id` holds the causal mask leaf.
fn is_causal_mask(eg: &EGraph, id: Id) -> bool {
    eg[id].nodes.iter().any(|n| matches!(n, Term::CausalMask))
}

/// Whether `id` is the positions `0..seq` (possibly unsqueezed, cast or expanded).
fn positions(eg: &EGraph, id: Id, depth: usize) -> bool {
    if depth > 8 {
        return false;
    }
    let nodes = &eg[id].nodes;
    let range = |n: &Term| matches!(n, Term::Range([start, _, step]) if eg.scalar(*start) == Some(0.0) && eg.scalar(*step) == Some(1.0));
    if nodes.iter().any(range) {
        return true;
    }
    nodes.iter().any(|n| match n {
        Term::Unsqueeze([x, _]) | Term::Cast([x, _]) | Term::Expand([x, _]) => positions(eg, *x, depth + 1),
        _ => false,
    })
}

/// The operand of a `Cos` node.
fn cos_of(t: &Term) -> Option<Id> {
    match t {
        Term::Cos(x) => Some(*x),
        _ => None,
    }
}

/// The operand of a `Sin` node.
fn sin_of(t: &Term) -> Option<Id> {
    match t {
        Term::Sin(x) => Some(*x),
        _ => None,
    }
}

/// The inverse frequencies of a rotary table `Unsqueeze(f(Concat(p·inv, p·inv)), [1])` with
/// `f` = `Cos` or `Sin` (`table` picks its operand), `p` the positions.
fn rope_table(eg: &EGraph, id: Id, table: fn(&Term) -> Option<Id>) -> Option<Vec<f32>> {
    for n in &eg[id].nodes {
        let Term::Unsqueeze([t, axes]) = n else { continue };
        if eg.ints(*axes).as_deref() != Some(&[1]) {
            continue;
        }
        for angles in eg[*t].nodes.iter().filter_map(table) {
            for cat in &eg[angles].nodes {
                let Term::Concat(parts) = cat else { continue };
                if parts.len() != 3 || eg.ints(parts[0]).as_deref() != Some(&[-1]) || eg.find(parts[1]) != eg.find(parts[2]) {
                    continue;
                }
                for m in &eg[parts[1]].nodes {
                    let Term::Mul([a, b]) = m else { continue };
                    for (p, inv) in [(*a, *b), (*b, *a)] {
                        if let Some(v) = eg.floats(inv).filter(|_| positions(eg, p, 0)) {
                            return Some(v.values.clone());
                        }
                    }
                }
            }
        }
    }
    None
}

type Build = dyn Fn(&mut EGraph, &Subst) -> Option<Id> + Send + Sync;

/// An applier that builds the raised form (or nothing) and unions it with the match.
struct Raise(Box<Build>);

impl Applier<Term, Tables> for Raise {
    fn apply_one(&self, eg: &mut EGraph, eclass: Id, subst: &Subst, _: Option<&PatternAst<Term>>, _: Symbol) -> Vec<Id> {
        match (self.0)(eg, subst) {
            Some(id) if eg.union(eclass, id) => vec![eclass],
            _ => vec![],
        }
    }
}

fn v(name: &str) -> Var {
    // the names below are all well-formed `?x`; a bad one would match nothing
    name.parse().unwrap_or(Var::from(u32::MAX))
}

fn rule(name: &str, pattern: &str, build: impl Fn(&mut EGraph, &Subst) -> Option<Id> + Send + Sync + 'static) -> Result<Rewrite, String> {
    let p: Pattern<Term> = pattern.parse().map_err(|e| format!("rule {name}: {e}"))?;
    Rewrite::new(name, p, Raise(Box::new(build)))
}

fn float(eg: &mut EGraph, v: f32) -> Id {
    eg.add(Term::Float(FloatConst::new(v)))
}

fn int(eg: &mut EGraph, v: usize) -> Id {
    eg.add(Term::Int(IntConst(v as i128)))
}

/// Whether the causal-mask rules' `?zero` and `?neg` are `0` and a large negative number.
fn zero_and_minus_infinity(eg: &EGraph, s: &Subst) -> bool {
    eg.scalar(s[v("?zero")]) == Some(0.0) && eg.scalar(s[v("?neg")]).is_some_and(|n| n <= -1e30)
}

/// Every raising rule, by name.
pub fn rules() -> Result<Vec<Rewrite>, String> {
    let mut r = vec![
        rule("mul-commutes", "(Mul ?a ?b)", |eg, s| Some(eg.add(Term::Mul([s[v("?b")], s[v("?a")]]))))?,
        rule("add-commutes", "(Add ?a ?b)", |eg, s| Some(eg.add(Term::Add([s[v("?b")], s[v("?a")]]))))?,
        rule("times-one", "(Mul ?x ?one)", |eg, s| (eg.scalar(s[v("?one")]) == Some(1.0)).then(|| s[v("?x")]))?,
        rule("one-over-is-reciprocal", "(Div ?one ?x)", |eg, s| {
            (eg.scalar(s[v("?one")]) == Some(1.0)).then(|| eg.add(Term::Reciprocal(s[v("?x")])))
        })?,
        rule("rms-norm", "(Mul ?w (Mul ?x (Reciprocal (Sqrt (Add (ReduceMean (Pow ?x ?two) ?axes ?keep) ?eps)))))", |eg, s| {
            let ok = eg.weight(s[v("?w")]).is_some()
                && eg.scalar(s[v("?two")]) == Some(2.0)
                && eg.ints(s[v("?axes")]).as_deref() == Some(&[-1])
                && eg.scalar(s[v("?keep")]) == Some(1.0);
            let eps = eg.scalar(s[v("?eps")])?;
            ok.then(|| {
                let e = float(eg, eps as f32);
                eg.add(Term::RmsNorm([s[v("?x")], s[v("?w")], e]))
            })
        })?,
        rule("silu", "(Mul ?x (Sigmoid ?x))", |eg, s| Some(eg.add(Term::Silu(s[v("?x")]))))?,
        rule("linear", "(MatMul ?x ?w)", |eg, s| {
            let w = eg.weight(s[v("?w")])?;
            let (name, matrix) = (w.name, w.shape.len() == 2);
            matrix.then(|| {
                let wt = eg.add(Term::TransposedWeight(TransposedWeightName(name)));
                eg.add(Term::Linear([s[v("?x")], wt]))
            })
        })?,
        rule("linear-of-transposed-weight", "(MatMul ?x (Transpose ?w ?perm))", |eg, s| {
            let matrix = eg.weight(s[v("?w")])?.shape.len() == 2;
            (matrix && eg.ints(s[v("?perm")]).as_deref() == Some(&[1, 0])).then(|| eg.add(Term::Linear([s[v("?x")], s[v("?w")]])))
        })?,
        rule("embedding", "(Gather ?w ?ids ?axis)", |eg, s| {
            let matrix = eg.weight(s[v("?w")])?.shape.len() == 2;
            (matrix && eg.scalar(s[v("?axis")]) == Some(0.0)).then(|| eg.add(Term::Embedding([s[v("?w")], s[v("?ids")]])))
        })?,
        // onnxruntime-genai ties the table to the LM head's `[hidden, vocab]` weight
        rule("embedding-of-transposed-table", "(Gather (Transpose ?w ?perm) ?ids ?axis)", |eg, s| {
            let w = eg.weight(s[v("?w")])?;
            let (name, matrix) = (w.name, w.shape.len() == 2);
            let ok = matrix && eg.ints(s[v("?perm")]).as_deref() == Some(&[1, 0]) && eg.scalar(s[v("?axis")]) == Some(0.0);
            ok.then(|| {
                let wt = eg.add(Term::TransposedWeight(TransposedWeightName(name)));
                eg.add(Term::Embedding([wt, s[v("?ids")]]))
            })
        })?,
        rule("swap-axes-1-2-twice", "(SwapAxes12 (SwapAxes12 ?x))", |_, s| Some(s[v("?x")]))?,
        rule(
            "rotary-half-split",
            "(Add (Mul (SwapAxes12 ?x) ?cos) (Mul (Concat ?ax (Neg (Slice (SwapAxes12 ?x) ?ax2 ?h ?d)) (Slice (SwapAxes12 ?x) ?ax2 ?zero ?h)) ?sin))",
            |eg, s| {
                let (h, d) = (eg.scalar(s[v("?h")])?, eg.scalar(s[v("?d")])?);
                let ok = eg.ints(s[v("?ax")]).as_deref() == Some(&[-1])
                    && eg.ints(s[v("?ax2")]).as_deref() == Some(&[-1])
                    && eg.scalar(s[v("?zero")]) == Some(0.0)
                    && d == 2.0 * h;
                if !ok {
                    return None;
                }
                let (cos, sin) = (s[v("?cos")], s[v("?sin")]);
                let theta = match (rope_table(eg, cos, cos_of), rope_table(eg, sin, sin_of)) {
                    (Some(a), Some(b)) if a == b && 2 * a.len() == d as usize => probe::rope_theta(&a)?,
                    // tables computed some other way (positions as an input, a MatMul by
                    // the frequencies): evaluated at probe sizes
                    _ => match probe::rotary(eg, cos, sin) {
                        Some((theta, dims)) if dims == d as usize => theta,
                        _ => return None,
                    },
                };
                let (t, dims) = (float(eg, theta as f32), int(eg, d as usize));
                let rope = eg.add(Term::Rope([s[v("?x")], t, dims]));
                Some(eg.add(Term::SwapAxes12(rope)))
            },
        )?,
        rule("repeat-kv", "(Reshape (Expand (Unsqueeze (SwapAxes12 ?k) ?ax) ?s1) ?s2)", |eg, s| {
            let (s1, s2) = (eg.dims(s[v("?s1")])?, eg.dims(s[v("?s2")])?);
            let n = s1.get(2)?.fixed()?;
            let kv = s1.get(1)?.fixed()?;
            let ok = eg.ints(s[v("?ax")]).as_deref() == Some(&[2])
                && s1.len() == 5
                && s2.len() == 4
                && s2[1] == Dim::Fixed(kv * n)
                && s2[0] == s1[0]
                && s2[2] == s1[3]
                && s2[3] == s1[4];
            ok.then(|| {
                let l = int(eg, n);
                let r = eg.add(Term::RepeatHeads([s[v("?k")], l]));
                eg.add(Term::SwapAxes12(r))
            })
        })?,
        rule("safe-softmax", "(Where (IsNaN ?p) ?zero ?p)", |eg, s| (eg.scalar(s[v("?zero")]) == Some(0.0)).then(|| s[v("?p")]))?,
    ];
    for (name, pattern) in [
        ("causal-mask", "(Where (LessOrEqual ?k ?q) ?zero ?neg)"),
        ("causal-mask-expanded", "(Where (Expand (LessOrEqual ?k ?q) ?shape) ?zero ?neg)"),
    ] {
        r.push(rule(name, pattern, |eg, s| {
            let (k, q) = (s[v("?k")], s[v("?q")]);
            let (ks, qs) = (eg.shape(k)?, eg.shape(q)?);
            let seq_last = |sh: &[Dim]| sh.len() >= 2 && sh[sh.len() - 1].fixed().is_none() && sh[sh.len() - 2] == Dim::Fixed(1);
            let seq_second = |sh: &[Dim]| sh.len() >= 2 && sh[sh.len() - 2].fixed().is_none() && sh[sh.len() - 1] == Dim::Fixed(1);
            let ok = positions(eg, k, 0) && positions(eg, q, 0) && seq_last(ks) && seq_second(qs) && zero_and_minus_infinity(eg, s);
            ok.then(|| eg.add(Term::CausalMask))
        })?);
    }
    r.push(rule("causal-mask-by-probe", "(Where ?cond ?zero ?neg)", |eg, s| {
        let cond = s[v("?cond")];
        let ok = zero_and_minus_infinity(eg, s) && !is_causal_mask(eg, cond) && probe::is_causal(eg, cond);
        ok.then(|| eg.add(Term::CausalMask))
    })?);
    r.push(rule("scales-of-both-operands", "(MatMul (Mul ?a ?s) (Mul ?b ?t))", |eg, s| {
        let (x, y) = (eg.scalar(s[v("?s")])?, eg.scalar(s[v("?t")])?);
        let m = eg.add(Term::MatMul([s[v("?a")], s[v("?b")]]));
        let l = float(eg, (x * y) as f32);
        Some(eg.add(Term::Mul([m, l])))
    })?);
    r.push(rule("swap-last-two-through-3d", "(Reshape (Transpose (Reshape ?x ?r1) ?perm) ?r2)", |eg, s| {
        let x = eg.shape(s[v("?x")])?;
        let (r1, r2) = (eg.dims(s[v("?r1")])?, eg.dims(s[v("?r2")])?);
        let ok = eg.ints(s[v("?perm")]).as_deref() == Some(&[0, 2, 1])
            && x.len() == 4
            && r1.len() == 3
            && r1[1] == x[2]
            && r1[2] == x[3]
            && *r2 == [x[0].clone(), x[1].clone(), x[3].clone(), x[2].clone()];
        ok.then(|| {
            let p = eg.add(Term::IntList(IntList(Box::new([0, 1, 3, 2]))));
            eg.add(Term::Transpose([s[v("?x")], p]))
        })
    })?);
    r.push(rule(
        "sdpa-causal",
        "(MatMul (Softmax (Add (Mul (MatMul (SwapAxes12 ?q) (Transpose (SwapAxes12 ?k) ?perm)) ?scale) ?mask) ?ax) (SwapAxes12 ?v))",
        |eg, s| {
            let ok = eg.ints(s[v("?perm")]).as_deref() == Some(&[0, 1, 3, 2])
                && eg.ints(s[v("?ax")]).as_deref() == Some(&[-1])
                && is_causal_mask(eg, s[v("?mask")]);
            let scale = eg.scalar(s[v("?scale")])?;
            ok.then(|| {
                let l = float(eg, scale as f32);
                let a = eg.add(Term::Attention([s[v("?q")], s[v("?k")], s[v("?v")], l]));
                eg.add(Term::SwapAxes12(a))
            })
        },
    )?);
    Ok(r)
}

/// Runs the rules on `egraph`, bounded; an error unless the rules saturated.
pub fn raise(egraph: &mut EGraph) -> Result<(), String> {
    let rules = rules()?;
    let eg = std::mem::take(egraph);
    let runner = Runner::default()
        .with_egraph(eg)
        .with_iter_limit(40)
        .with_node_limit(1_000_000)
        .with_time_limit(Duration::from_secs(60))
        .run(&rules);
    let reason = runner.stop_reason.clone();
    *egraph = runner.egraph;
    match reason {
        Some(StopReason::Saturated) => Ok(()),
        other => Err(format!("raising did not saturate: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    //! Each rule on its own: an exporter's pattern in, and in the same class the raised op with
    //! the operands and the attributes (ε, θ, rotated width, scale, repeat count) it must have.
    use super::*;
    use egg::{Language, RecExpr};
    use prunec_ir::Dim;

    /// `expr` added to an e-graph over `tables` and every rule run on it to saturation: the
    /// e-graph and the ids of its nodes, in the order of `expr`.
    fn saturate(expr: &str, tables: Tables) -> (EGraph, Vec<Id>) {
        saturate_with(expr, tables, |_, _| {})
    }

    /// [`saturate`], `facts` setting what folding would know of the classes before the rules
    /// run (`ids` in the order of `expr`'s nodes).
    fn saturate_with(expr: &str, tables: Tables, facts: impl FnOnce(&mut EGraph, &[Id])) -> (EGraph, Vec<Id>) {
        let expr: RecExpr<Term> = expr.parse().unwrap();
        let mut eg = EGraph::new(tables);
        let mut ids: Vec<Id> = Vec::new();
        for n in expr.as_ref() {
            let n = n.clone().map_children(|c| ids[usize::from(c)]);
            ids.push(eg.add(n));
        }
        facts(&mut eg, &ids);
        let runner = Runner::default().with_egraph(eg).with_iter_limit(20).run(&rules().unwrap());
        assert!(matches!(runner.stop_reason, Some(StopReason::Saturated)), "{:?}", runner.stop_reason);
        (runner.egraph, ids)
    }

    /// The first node of class `id` that `pick` takes.
    fn find<T>(eg: &EGraph, id: Id, pick: impl Fn(&Term) -> Option<T>) -> Option<T> {
        eg[id].nodes.iter().find_map(pick)
    }

    /// The class of leaf `text` in `eg` (it must be there).
    fn leaf(eg: &EGraph, text: &str) -> Id {
        let term: Term = egg::FromOp::from_op(text, vec![]).unwrap();
        eg.lookup(term).unwrap_or_else(|| panic!("no leaf `{text}`"))
    }

    /// The float leaf of class `id`.
    fn float_of(eg: &EGraph, id: Id) -> Option<f32> {
        find(eg, id, |t| if let Term::Float(v) = t { Some(v.f32()) } else { None })
    }

    /// The integer leaf of class `id`.
    fn int_of(eg: &EGraph, id: Id) -> Option<i128> {
        find(eg, id, |t| if let Term::Int(v) = t { Some(v.0) } else { None })
    }

    fn weights(ws: &[(&str, &[usize])]) -> Tables {
        let mut t = Tables::default();
        for (name, shape) in ws {
            t.add_weight(name, shape.to_vec(), None);
        }
        t
    }

    const RMS_TS: &str = "(Mul w:g (Mul in:x (Div f:1 (Sqrt (Add (ReduceMean (Pow in:x f:2) i:-1 i:1) f:0.000001)))))";
    const RMS_DYNAMO: &str = "(Mul w:g (Mul in:x (Reciprocal (Sqrt (Add (ReduceMean (Pow in:x f:2) i:-1 i:1) f:0.000001)))))";

    /// The operands and ε of the `RmsNorm` in the root class of `expr`.
    fn rms_norm(expr: &str) -> Option<(Id, Id, f32)> {
        let (eg, ids) = saturate(expr, weights(&[("g", &[64])]));
        let root = *ids.last().unwrap();
        let [x, w, eps] = find(&eg, root, |t| if let Term::RmsNorm(c) = t { Some(*c) } else { None })?;
        Some((eg.find(x), eg.find(w), float_of(&eg, eps)?)).filter(|&(x, w, _)| x == leaf(&eg, "in:x") && w == leaf(&eg, "w:g"))
    }

    #[test]
    fn rms_norm_both_exporters() {
        for expr in [RMS_TS, RMS_DYNAMO] {
            let (_, _, eps) = rms_norm(expr).expect("an RmsNorm of x by g");
            assert_eq!(eps, 1e-6);
        }
        assert_eq!(rms_norm(&RMS_TS.replace("f:0.000001", "f:0.00001")).map(|r| r.2), Some(1e-5));
        // a mean over another axis is not an RMSNorm
        assert_eq!(rms_norm(&RMS_TS.replace("i:-1 i:1", "i:-2 i:1")), None);
        // a cube is not a square
        assert_eq!(rms_norm(&RMS_TS.replace("f:2", "f:3")), None);
    }

    /// Whether the root class of `expr` holds a node that `pick` takes.
    fn raises(expr: &str, tables: Tables, pick: impl Fn(&Term) -> bool) -> bool {
        let (eg, ids) = saturate(expr, tables);
        eg[*ids.last().unwrap()].nodes.iter().any(pick)
    }

    #[test]
    fn silu_and_its_operand_order() {
        let silu = |t: &Term| matches!(t, Term::Silu(_));
        assert!(raises("(Mul in:x (Sigmoid in:x))", Tables::default(), silu));
        assert!(raises("(Mul (Sigmoid in:x) in:x)", Tables::default(), silu));
        assert!(!raises("(Mul in:y (Sigmoid in:x))", Tables::default(), silu));
    }

    /// The weight operand of the `Linear` in the root class of `expr`, as text.
    fn linear_weight(expr: &str, tables: Tables) -> Option<String> {
        let (eg, ids) = saturate(expr, tables);
        let w = find(&eg, *ids.last().unwrap(), |t| if let Term::Linear([x, w]) = t { (eg.find(*x) == leaf(&eg, "in:x")).then_some(*w) } else { None })?;
        find(&eg, w, |t| t.is_leaf().then(|| t.to_string()))
    }

    #[test]
    fn linear_from_matmul_by_a_weight() {
        // ONNX's `[in, out]` weight is the IR's `[out, in]` transposed
        assert_eq!(linear_weight("(MatMul in:x w:q)", weights(&[("q", &[64, 32])])).as_deref(), Some("wt:q"));
        assert_eq!(linear_weight("(MatMul in:x (Transpose w:e i:[1,0]))", weights(&[("e", &[256, 64])])).as_deref(), Some("w:e"));
        assert_eq!(linear_weight("(MatMul in:x (Transpose w:e i:[0,1]))", weights(&[("e", &[256, 64])])), None);
        // two activations multiplied are not a linear layer; nor is a product by a vector
        assert_eq!(linear_weight("(MatMul in:x in:y)", Tables::default()), None);
        assert_eq!(linear_weight("(MatMul in:x w:b)", weights(&[("b", &[64])])), None);
    }

    /// The table operand of the `Embedding` in the root class of `expr`, as text.
    fn embedding_table(expr: &str, tables: Tables) -> Option<String> {
        let (eg, ids) = saturate(expr, tables);
        let table = find(&eg, *ids.last().unwrap(), |t| if let Term::Embedding([w, i]) = t { (eg.find(*i) == leaf(&eg, "in:ids")).then_some(*w) } else { None })?;
        find(&eg, table, |t| t.is_leaf().then(|| t.to_string()))
    }

    #[test]
    fn embedding_from_gather_of_a_table() {
        assert_eq!(embedding_table("(Gather w:e in:ids i:0)", weights(&[("e", &[256, 64])])).as_deref(), Some("w:e"));
        assert_eq!(embedding_table("(Gather w:e in:ids i:1)", weights(&[("e", &[256, 64])])), None);
        assert_eq!(embedding_table("(Gather (Transpose w:h i:[1,0]) in:ids i:0)", weights(&[("h", &[64, 256])])).as_deref(), Some("wt:h"));
        assert_eq!(embedding_table("(Gather (Transpose w:h i:[0,1]) in:ids i:0)", weights(&[("h", &[64, 256])])), None);
    }

    #[test]
    fn small_identities() {
        let is = |text: &'static str| move |t: &Term| t.to_string() == text;
        assert!(raises("(SwapAxes12 (SwapAxes12 in:x))", Tables::default(), is("in:x")));
        assert!(raises("(Mul in:x f:1)", Tables::default(), is("in:x")));
        assert!(!raises("(Mul in:x f:2)", Tables::default(), is("in:x")));
        assert!(raises("(Div f:1 in:x)", Tables::default(), |t| matches!(t, Term::Reciprocal(_))));
        assert!(raises("(Where (IsNaN in:p) f:0 in:p)", Tables::default(), is("in:p")));
        assert!(!raises("(Where (IsNaN in:p) f:1 in:p)", Tables::default(), is("in:p")));
    }

    #[test]
    fn scales_of_both_operands_multiply() {
        let (eg, ids) = saturate("(MatMul (Mul in:q f:0.5) (Mul in:k f:0.25))", Tables::default());
        let scaled = find(&eg, *ids.last().unwrap(), |t| match t {
            Term::Mul([m, s]) if find(&eg, *m, |t| matches!(t, Term::MatMul(_)).then_some(())).is_some() => float_of(&eg, *s),
            _ => None,
        });
        assert_eq!(scaled, Some(0.125));
    }

    /// The repeat count of the `RepeatHeads` raised from `expr` (under the swap back to
    /// `[b, h, s, d]`), with key/value heads `kv`, `n` copies each.
    fn repeat_count(kv: usize, n: usize, heads: usize) -> Option<i128> {
        let mut tables = Tables::default();
        tables.shape_leaf(vec![Dim::batch(), Dim::Fixed(kv), Dim::Fixed(n), Dim::seq(), Dim::Fixed(8)]);
        tables.shape_leaf(vec![Dim::batch(), Dim::Fixed(heads), Dim::seq(), Dim::Fixed(8)]);
        let (eg, ids) = saturate("(Reshape (Expand (Unsqueeze (SwapAxes12 in:k) i:[2]) s:0) s:1)", tables);
        let swapped = find(&eg, *ids.last().unwrap(), |t| if let Term::SwapAxes12(r) = t { Some(*r) } else { None })?;
        let [k, count] = find(&eg, swapped, |t| if let Term::RepeatHeads(c) = t { Some(*c) } else { None })?;
        assert_eq!(eg.find(k), leaf(&eg, "in:k"));
        int_of(&eg, count)
    }

    #[test]
    fn repeated_key_value_heads() {
        assert_eq!(repeat_count(2, 4, 8), Some(4));
        assert_eq!(repeat_count(4, 2, 8), Some(2));
        // the merged axis must hold every copy
        assert_eq!(repeat_count(2, 4, 6), None);
    }

    /// A rotary table as exporters compute it: positions `0..seq` times θ^(−2i/d) (`c:0`).
    fn rope_tables(theta: f32, d: usize) -> Tables {
        let inv: Vec<f32> = (0..d / 2).map(|i| theta.powf(-2.0 * i as f32 / d as f32)).collect();
        let mut tables = Tables::default();
        tables.shape_leaf(vec![Dim::seq()]);
        tables.float_tensor_leaf(vec![d / 2], inv);
        tables
    }

    fn table(f: &str) -> String {
        let angles = "(Mul (Cast (Unsqueeze (Unsqueeze (Range i:0 s:0 i:1) i:[0]) i:[2]) i:1) c:0)";
        format!("(Unsqueeze ({f} (Concat i:-1 {angles} {angles})) i:[1])")
    }

    fn half_split(d: usize) -> String {
        format!(
            "(Add (Mul (SwapAxes12 in:x) {}) (Mul (Concat i:-1 (Neg (Slice (SwapAxes12 in:x) i:-1 i:{h} i:{d})) (Slice (SwapAxes12 in:x) i:-1 i:0 i:{h})) {}))",
            table("Cos"),
            table("Sin"),
            h = d / 2
        )
    }

    /// θ and the rotated width of the `Rope` raised from `expr` (under the swap back to
    /// `[b, h, s, d]`), applied to `in:x`.
    fn rope(expr: &str, tables: Tables) -> Option<(f32, i128)> {
        let (eg, ids) = saturate(expr, tables);
        let swapped = find(&eg, *ids.last().unwrap(), |t| if let Term::SwapAxes12(r) = t { Some(*r) } else { None })?;
        let [x, theta, dims] = find(&eg, swapped, |t| if let Term::Rope(c) = t { Some(*c) } else { None })?;
        assert_eq!(eg.find(x), leaf(&eg, "in:x"));
        Some((float_of(&eg, theta)?, int_of(&eg, dims)?))
    }

    #[test]
    fn rotary_half_split() {
        // θ is read back from f32 frequencies: to within their precision
        for (theta, d) in [(10000.0, 8), (500000.0, 16)] {
            let (found, dims) = rope(&half_split(d), rope_tables(theta, d)).expect("a rotary embedding");
            assert!((found / theta - 1.0).abs() < 1e-5, "θ = {found}, not {theta}");
            assert_eq!(dims, d as i128);
        }
        // the slices must halve the width the tables rotate
        assert_eq!(rope(&half_split(16), rope_tables(10000.0, 8)), None);
        // cos where sin belongs
        assert_eq!(rope(&half_split(8).replacen("Sin", "Cos", 1), rope_tables(10000.0, 8)), None);
    }

    /// `(Where (LessOrEqual k q) 0 -inf)` with the shapes folding gives `k` (`[1, 1, 1, seq]`)
    /// and `q` (`[1, 1, seq, 1]`), swapped when `swap`: whether the root class holds the mask.
    fn causal(swap: bool) -> bool {
        let expr = "(Where (LessOrEqual (Unsqueeze (Range i:0 s:0 i:1) i:[0,1,2]) (Unsqueeze (Range i:0 s:0 i:1) i:[0,1,3])) f:0 f:-3.4028235e38)";
        // no shape table: `s:0` is unknown, so the probe cannot tell, and the rule must
        let (eg, ids) = saturate_with(expr, Tables::default(), |eg, ids| {
            let unsqueezes: Vec<Id> = ids.iter().copied().filter(|&id| eg[id].nodes.iter().any(|n| matches!(n, Term::Unsqueeze(_)))).collect();
            let (mut k, mut q) = (vec![Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(1), Dim::seq()], vec![Dim::Fixed(1), Dim::Fixed(1), Dim::seq(), Dim::Fixed(1)]);
            if swap {
                std::mem::swap(&mut k, &mut q);
            }
            eg[unsqueezes[0]].data.shape = Some(k);
            eg[unsqueezes[1]].data.shape = Some(q);
        });
        is_causal_mask(&eg, *ids.last().unwrap())
    }

    #[test]
    fn causal_mask() {
        // k positions along the last axis, q along the one before: k ≤ q
        assert!(causal(false));
        // the other way round (k ≥ q) is not causal
        assert!(!causal(true));
    }

    /// The operands (as text) and scale of the causal `Attention` raised from `expr`.
    fn attention(expr: &str) -> Option<(Vec<String>, f32)> {
        let (eg, ids) = saturate(expr, Tables::default());
        let swapped = find(&eg, *ids.last().unwrap(), |t| if let Term::SwapAxes12(a) = t { Some(*a) } else { None })?;
        let [q, k, v, scale] = find(&eg, swapped, |t| if let Term::Attention(c) = t { Some(*c) } else { None })?;
        let text = |id: Id| find(&eg, id, |t| t.is_leaf().then(|| t.to_string())).unwrap_or_default();
        Some((vec![text(q), text(k), text(v)], float_of(&eg, scale)?))
    }

    const SDPA: &str = "(MatMul (Softmax (Add (Mul (MatMul (SwapAxes12 in:q) (Transpose (SwapAxes12 in:k) i:[0,1,3,2])) f:0.35355338) mask:causal) i:-1) (SwapAxes12 in:v))";

    #[test]
    fn causal_attention() {
        let (operands, scale) = attention(SDPA).expect("causal attention");
        assert_eq!(operands, ["in:q", "in:k", "in:v"]);
        assert_eq!(scale, 0.35355338);
        assert_eq!(attention(&SDPA.replace("f:0.35355338", "f:0.125")).map(|a| a.1), Some(0.125));
        // without the causal mask it is not the IR's causal attention
        assert_eq!(attention(&SDPA.replace("mask:causal", "in:m")), None);
        // the keys must be transposed for the scores
        assert_eq!(attention(&SDPA.replace("i:[0,1,3,2]", "i:[0,1,2,3]")), None);
    }
}
