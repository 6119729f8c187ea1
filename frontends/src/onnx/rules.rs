//! The raising rules: egg rewrites that recognise what exporters write for RMSNorm, linear
//! layers, the SiLU gate, rotary embeddings, repeated key/value heads and scaled dot-product
//! attention with a causal mask, and add the IR's op beside it in the e-graph. Every rule is
//! named and listed in [`rules`]; [`raise`] runs them with bounded iterations, nodes and time
//! and checks why the runner stopped. The extraction that follows prefers raised ops, so what
//! no rule raises stays a primitive op.
//!
//! Raised forms (children, then attribute leaves): `RmsNorm(x, w, f:eps)`, `Linear(x, w)` with
//! `w` as `[out, in]` (`wt:NAME` is initializer `NAME` transposed), `Embedding(table, ids)`,
//! `Silu(x)`, `Rope(x, f:theta, i:dims)` and `Attention(q, k, v, f:scale)` on `[b, s, h, d]`,
//! `RepeatHeads(x, i:n)`; `T0213` is the transpose `[0, 2, 1, 3]`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use egg::{Applier, Id, Pattern, PatternAst, Rewrite, Runner, StopReason, Subst, Symbol, SymbolLang, Var};
use prunec_ir::Dim;

use super::fold::{Egraph, Folded};

/// What the rules may read besides the e-graph.
#[derive(Debug, Default)]
pub struct Context {
    /// Values of float leaves (`c:K`, small `w:NAME`).
    pub floats: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// `s:K` shapes.
    pub shape_table: Vec<Vec<Dim>>,
    /// Weight shapes by name.
    pub weights: HashMap<String, Vec<usize>>,
    /// Shapes of runtime e-classes as folding saw them (by the ids of then).
    pub shapes: HashMap<Id, Vec<Dim>>,
}

impl Context {
    /// The context of a folded graph.
    pub fn of(folded: &Folded) -> Context {
        Context {
            floats: folded.floats.clone(),
            shape_table: folded.shape_table.clone(),
            weights: folded.weights.clone(),
            shapes: folded.shapes.clone(),
        }
    }

    fn shape(&self, eg: &Egraph, id: Id) -> Option<&Vec<Dim>> {
        let c = eg.find(id);
        self.shapes.iter().find(|(k, _)| eg.find(**k) == c).map(|(_, s)| s)
    }
}

fn leaves(eg: &Egraph, id: Id) -> impl Iterator<Item = &str> {
    eg[id].nodes.iter().filter(|n| n.children.is_empty()).map(|n| n.op.as_str())
}

/// A scalar constant (`f:V` or `i:V`).
fn scalar(eg: &Egraph, id: Id) -> Option<f64> {
    leaves(eg, id).find_map(|s| s.strip_prefix("f:").or_else(|| s.strip_prefix("i:")).and_then(|v| v.parse().ok()))
}

/// An integer list (`i:[..]`) or scalar (`i:V`).
fn ints(eg: &Egraph, id: Id) -> Option<Vec<i64>> {
    leaves(eg, id).find_map(|s| {
        let v = s.strip_prefix("i:")?;
        match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            Some("") => Some(vec![]),
            Some(l) => l.split(',').map(|x| x.parse().ok()).collect(),
            None => v.parse().ok().map(|x| vec![x]),
        }
    })
}

/// A weight leaf's name.
fn weight(eg: &Egraph, id: Id) -> Option<String> {
    leaves(eg, id).find_map(|s| s.strip_prefix("w:").map(str::to_string))
}

/// An `s:K` shape.
fn shape_leaf<'c>(ctx: &'c Context, eg: &Egraph, id: Id) -> Option<&'c Vec<Dim>> {
    leaves(eg, id).find_map(|s| s.strip_prefix("s:").and_then(|k| k.parse::<usize>().ok()).and_then(|k| ctx.shape_table.get(k)))
}

/// Values of a float vector leaf.
fn float_vector<'c>(ctx: &'c Context, eg: &Egraph, id: Id) -> Option<&'c Vec<f32>> {
    leaves(eg, id).find_map(|s| ctx.floats.get(s).map(|(_, v)| v))
}

fn children_of<'e>(eg: &'e Egraph, id: Id, op: &'e str) -> impl Iterator<Item = &'e [Id]> {
    eg[id].nodes.iter().filter(move |n| n.op.as_str() == op).map(|n| n.children.as_slice())
}

/// Whether `id` is the positions `0..seq` (possibly unsqueezed, cast or expanded).
fn positions(eg: &Egraph, id: Id, depth: usize) -> bool {
    if depth > 8 {
        return false;
    }
    if children_of(eg, id, "Range").any(|c| scalar(eg, c[0]) == Some(0.0) && scalar(eg, c[2]) == Some(1.0)) {
        return true;
    }
    ["Unsqueeze", "Cast", "Expand"].iter().any(|op| children_of(eg, id, op).any(|c| positions(eg, c[0], depth + 1)))
}

/// The inverse frequencies of a rotary table `Unsqueeze(f(Concat(p·inv, p·inv)), [1])` with
/// `f` = `Cos` or `Sin`, `p` the positions.
fn rope_table(ctx: &Context, eg: &Egraph, id: Id, f: &str) -> Option<Vec<f32>> {
    for c in children_of(eg, id, "Unsqueeze") {
        if ints(eg, c[1]).as_deref() != Some(&[1]) {
            continue;
        }
        for t in children_of(eg, c[0], f) {
            for cat in children_of(eg, t[0], "Concat") {
                if cat.len() != 3 || ints(eg, cat[0]).as_deref() != Some(&[-1]) || eg.find(cat[1]) != eg.find(cat[2]) {
                    continue;
                }
                for m in children_of(eg, cat[1], "Mul") {
                    for (p, inv) in [(m[0], m[1]), (m[1], m[0])] {
                        if let Some(v) = float_vector(ctx, eg, inv).filter(|_| positions(eg, p, 0)) {
                            return Some(v.clone());
                        }
                    }
                }
            }
        }
    }
    None
}

/// `θ` of inverse frequencies `θ^(−2i/d)`, `d` = 2·len, when they are those.
pub(crate) fn rope_theta(inv: &[f32]) -> Option<f64> {
    let d = 2 * inv.len();
    if inv.len() < 2 || (inv[0] - 1.0).abs() > 1e-6 {
        return None;
    }
    let theta = f64::from(inv[1]).powf(-(d as f64) / 2.0);
    let ok = inv.iter().enumerate().all(|(i, &v)| {
        let want = theta.powf(-2.0 * i as f64 / d as f64);
        (f64::from(v) - want).abs() <= 1e-4 * want.max(1e-30)
    });
    ok.then_some(theta)
}

type Build = dyn Fn(&mut Egraph, &Subst) -> Option<Id> + Send + Sync;

/// An applier that builds the raised form (or nothing) and unions it with the match.
struct Raise(Box<Build>);

impl Applier<SymbolLang, ()> for Raise {
    fn apply_one(&self, eg: &mut Egraph, eclass: Id, subst: &Subst, _: Option<&PatternAst<SymbolLang>>, _: Symbol) -> Vec<Id> {
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

fn rule(name: &str, pattern: &str, build: impl Fn(&mut Egraph, &Subst) -> Option<Id> + Send + Sync + 'static) -> Result<Rewrite<SymbolLang, ()>, String> {
    let p: Pattern<SymbolLang> = pattern.parse().map_err(|e| format!("rule {name}: {e}"))?;
    Rewrite::new(name, p, Raise(Box::new(build)))
}

fn node(eg: &mut Egraph, op: &str, children: Vec<Id>) -> Id {
    eg.add(SymbolLang::new(op, children))
}

fn leaf(eg: &mut Egraph, s: String) -> Id {
    eg.add(SymbolLang::leaf(s))
}

/// Every raising rule, by name.
pub fn rules(ctx: Arc<Context>) -> Result<Vec<Rewrite<SymbolLang, ()>>, String> {
    let c = ctx;
    let mut r = vec![
        rule("mul-commutes", "(Mul ?a ?b)", |eg, s| Some(node(eg, "Mul", vec![s[v("?b")], s[v("?a")]])))?,
        rule("add-commutes", "(Add ?a ?b)", |eg, s| Some(node(eg, "Add", vec![s[v("?b")], s[v("?a")]])))?,
        rule("times-one", "(Mul ?x ?one)", |eg, s| (scalar(eg, s[v("?one")]) == Some(1.0)).then(|| s[v("?x")]))?,
        rule("one-over-is-reciprocal", "(Div ?one ?x)", |eg, s| {
            (scalar(eg, s[v("?one")]) == Some(1.0)).then(|| node(eg, "Reciprocal", vec![s[v("?x")]]))
        })?,
        rule("rms-norm", "(Mul ?w (Mul ?x (Reciprocal (Sqrt (Add (ReduceMean (Pow ?x ?two) ?axes ?keep) ?eps)))))", |eg, s| {
            let ok = weight(eg, s[v("?w")]).is_some()
                && scalar(eg, s[v("?two")]) == Some(2.0)
                && ints(eg, s[v("?axes")]).as_deref() == Some(&[-1])
                && scalar(eg, s[v("?keep")]) == Some(1.0);
            let eps = scalar(eg, s[v("?eps")])?;
            ok.then(|| {
                let e = leaf(eg, format!("f:{}", eps as f32));
                node(eg, "RmsNorm", vec![s[v("?x")], s[v("?w")], e])
            })
        })?,
        rule("silu", "(Mul ?x (Sigmoid ?x))", |eg, s| Some(node(eg, "Silu", vec![s[v("?x")]])))?,
        {
            let c = c.clone();
            rule("linear", "(MatMul ?x ?w)", move |eg, s| {
                let name = weight(eg, s[v("?w")])?;
                (c.weights.get(&name)?.len() == 2).then(|| {
                    let wt = leaf(eg, format!("wt:{name}"));
                    node(eg, "Linear", vec![s[v("?x")], wt])
                })
            })?
        },
        {
            let c = c.clone();
            rule("linear-of-transposed-weight", "(MatMul ?x (Transpose ?w ?perm))", move |eg, s| {
                let name = weight(eg, s[v("?w")])?;
                (c.weights.get(&name)?.len() == 2 && ints(eg, s[v("?perm")]).as_deref() == Some(&[1, 0]))
                    .then(|| node(eg, "Linear", vec![s[v("?x")], s[v("?w")]]))
            })?
        },
        {
            let c = c.clone();
            rule("embedding", "(Gather ?w ?ids ?axis)", move |eg, s| {
                let name = weight(eg, s[v("?w")])?;
                (c.weights.get(&name)?.len() == 2 && scalar(eg, s[v("?axis")]) == Some(0.0))
                    .then(|| node(eg, "Embedding", vec![s[v("?w")], s[v("?ids")]]))
            })?
        },
        {
            let c = c.clone();
            // onnxruntime-genai ties the table to the LM head's `[hidden, vocab]` weight
            rule("embedding-of-transposed-table", "(Gather (Transpose ?w ?perm) ?ids ?axis)", move |eg, s| {
                let name = weight(eg, s[v("?w")])?;
                let ok = c.weights.get(&name)?.len() == 2 && ints(eg, s[v("?perm")]).as_deref() == Some(&[1, 0]) && scalar(eg, s[v("?axis")]) == Some(0.0);
                ok.then(|| {
                    let wt = leaf(eg, format!("wt:{name}"));
                    node(eg, "Embedding", vec![wt, s[v("?ids")]])
                })
            })?
        },
        rule("transpose-0213-twice", "(T0213 (T0213 ?x))", |_, s| Some(s[v("?x")]))?,
        {
            let c = c.clone();
            rule(
                "rotary-half-split",
                "(Add (Mul (T0213 ?x) ?cos) (Mul (Concat ?ax (Neg (Slice (T0213 ?x) ?ax2 ?h ?d)) (Slice (T0213 ?x) ?ax2 ?zero ?h)) ?sin))",
                move |eg, s| {
                    let (h, d) = (scalar(eg, s[v("?h")])?, scalar(eg, s[v("?d")])?);
                    let ok = ints(eg, s[v("?ax")]).as_deref() == Some(&[-1])
                        && ints(eg, s[v("?ax2")]).as_deref() == Some(&[-1])
                        && scalar(eg, s[v("?zero")]) == Some(0.0)
                        && d == 2.0 * h;
                    if !ok {
                        return None;
                    }
                    let (cos, sin) = (s[v("?cos")], s[v("?sin")]);
                    let theta = match (rope_table(&c, eg, cos, "Cos"), rope_table(&c, eg, sin, "Sin")) {
                        (Some(a), Some(b)) if a == b && 2 * a.len() == d as usize => rope_theta(&a)?,
                        // tables computed some other way (positions as an input, a MatMul by
                        // the frequencies): evaluated at probe sizes
                        _ => match super::probe::rotary(eg, &c, cos, sin) {
                            Some((theta, dims)) if dims == d as usize => theta,
                            _ => return None,
                        },
                    };
                    let (t, dims) = (leaf(eg, format!("f:{}", theta as f32)), leaf(eg, format!("i:{}", d as usize)));
                    let rope = node(eg, "Rope", vec![s[v("?x")], t, dims]);
                    Some(node(eg, "T0213", vec![rope]))
                },
            )?
        },
        {
            let c = c.clone();
            rule("repeat-kv", "(Reshape (Expand (Unsqueeze (T0213 ?k) ?ax) ?s1) ?s2)", move |eg, s| {
                let (s1, s2) = (shape_leaf(&c, eg, s[v("?s1")])?, shape_leaf(&c, eg, s[v("?s2")])?);
                let n = s1.get(2)?.fixed()?;
                let kv = s1.get(1)?.fixed()?;
                let ok = ints(eg, s[v("?ax")]).as_deref() == Some(&[2])
                    && s1.len() == 5
                    && s2.len() == 4
                    && s2[1] == Dim::Fixed(kv * n)
                    && s2[0] == s1[0]
                    && s2[2] == s1[3]
                    && s2[3] == s1[4];
                ok.then(|| {
                    let l = leaf(eg, format!("i:{n}"));
                    let r = node(eg, "RepeatHeads", vec![s[v("?k")], l]);
                    node(eg, "T0213", vec![r])
                })
            })?
        },
        rule("safe-softmax", "(Where (IsNaN ?p) ?zero ?p)", |eg, s| (scalar(eg, s[v("?zero")]) == Some(0.0)).then(|| s[v("?p")]))?,
    ];
    for (name, pattern) in [
        ("causal-mask", "(Where (LessOrEqual ?k ?q) ?zero ?neg)"),
        ("causal-mask-expanded", "(Where (Expand (LessOrEqual ?k ?q) ?shape) ?zero ?neg)"),
    ] {
        let c = c.clone();
        r.push(rule(name, pattern, move |eg, s| {
            let (k, q) = (s[v("?k")], s[v("?q")]);
            let (ks, qs) = (c.shape(eg, k)?, c.shape(eg, q)?);
            let seq_last = |sh: &Vec<Dim>| sh.len() >= 2 && sh[sh.len() - 1].fixed().is_none() && sh[sh.len() - 2] == Dim::Fixed(1);
            let seq_second = |sh: &Vec<Dim>| sh.len() >= 2 && sh[sh.len() - 2].fixed().is_none() && sh[sh.len() - 1] == Dim::Fixed(1);
            let ok = positions(eg, k, 0)
                && positions(eg, q, 0)
                && seq_last(ks)
                && seq_second(qs)
                && scalar(eg, s[v("?zero")]) == Some(0.0)
                && scalar(eg, s[v("?neg")]).is_some_and(|n| n <= -1e30);
            ok.then(|| leaf(eg, "mask:causal".into()))
        })?);
    }
    {
        let c = c.clone();
        r.push(rule("causal-mask-by-probe", "(Where ?cond ?zero ?neg)", move |eg, s| {
            let ok = scalar(eg, s[v("?zero")]) == Some(0.0)
                && scalar(eg, s[v("?neg")]).is_some_and(|n| n <= -1e30)
                && !leaves(eg, s[v("?cond")]).any(|l| l == "mask:causal")
                && super::probe::is_causal(eg, &c, s[v("?cond")]);
            ok.then(|| leaf(eg, "mask:causal".into()))
        })?);
    }
    r.push(rule("scales-of-both-operands", "(MatMul (Mul ?a ?s) (Mul ?b ?t))", |eg, s| {
        let (x, y) = (scalar(eg, s[v("?s")])?, scalar(eg, s[v("?t")])?);
        let m = node(eg, "MatMul", vec![s[v("?a")], s[v("?b")]]);
        let l = leaf(eg, format!("f:{}", (x * y) as f32));
        Some(node(eg, "Mul", vec![m, l]))
    })?);
    {
        let c = c.clone();
        r.push(rule("swap-last-two-through-3d", "(Reshape (Transpose (Reshape ?x ?r1) ?perm) ?r2)", move |eg, s| {
            let x = c.shape(eg, s[v("?x")])?.clone();
            let (r1, r2) = (shape_leaf(&c, eg, s[v("?r1")])?, shape_leaf(&c, eg, s[v("?r2")])?);
            let ok = ints(eg, s[v("?perm")]).as_deref() == Some(&[0, 2, 1])
                && x.len() == 4
                && r1.len() == 3
                && r1[1] == x[2]
                && r1[2] == x[3]
                && *r2 == [x[0].clone(), x[1].clone(), x[3].clone(), x[2].clone()];
            ok.then(|| {
                let p = leaf(eg, "i:[0,1,3,2]".into());
                node(eg, "Transpose", vec![s[v("?x")], p])
            })
        })?);
    }
    r.push(rule(
        "sdpa-causal",
        "(MatMul (Softmax (Add (Mul (MatMul (T0213 ?q) (Transpose (T0213 ?k) ?perm)) ?scale) ?mask) ?ax) (T0213 ?v))",
        |eg, s| {
            let ok = ints(eg, s[v("?perm")]).as_deref() == Some(&[0, 1, 3, 2])
                && ints(eg, s[v("?ax")]).as_deref() == Some(&[-1])
                && leaves(eg, s[v("?mask")]).any(|l| l == "mask:causal");
            let scale = scalar(eg, s[v("?scale")])?;
            ok.then(|| {
                let l = leaf(eg, format!("f:{}", scale as f32));
                let a = node(eg, "Attention", vec![s[v("?q")], s[v("?k")], s[v("?v")], l]);
                node(eg, "T0213", vec![a])
            })
        },
    )?);
    Ok(r)
}

/// Runs the rules on `folded`'s e-graph, bounded; an error unless the rules saturated.
pub fn raise(folded: &mut Folded) -> Result<(), String> {
    let ctx = Arc::new(Context::of(folded));
    let rules = rules(ctx)?;
    let eg = std::mem::take(&mut folded.egraph);
    let runner = Runner::default()
        .with_egraph(eg)
        .with_iter_limit(40)
        .with_node_limit(1_000_000)
        .with_time_limit(Duration::from_secs(60))
        .run(&rules);
    let reason = runner.stop_reason.clone();
    folded.egraph = runner.egraph;
    match reason {
        Some(StopReason::Saturated) => Ok(()),
        other => Err(format!("raising did not saturate: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    //! Each rule on its own: an exporter's pattern in, the raised op found in the same class.
    use super::*;
    use egg::{Language, RecExpr};

    /// Runs every rule on `expr` and says whether its root class holds an `op` node.
    fn raises(expr: &str, ctx: Context, op: &str) -> bool {
        let expr: RecExpr<SymbolLang> = expr.parse().unwrap();
        let mut eg = Egraph::default();
        let root = eg.add_expr(&expr);
        let rules = rules(Arc::new(ctx)).unwrap();
        let runner = Runner::default().with_egraph(eg).with_iter_limit(20).run(&rules);
        assert!(matches!(runner.stop_reason, Some(StopReason::Saturated)), "{:?}", runner.stop_reason);
        let eg = runner.egraph;
        eg[eg.find(root)].nodes.iter().any(|n| n.op.as_str() == op)
    }

    fn weights(ws: &[(&str, &[usize])]) -> Context {
        Context { weights: ws.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect(), ..Context::default() }
    }

    const RMS_TS: &str = "(Mul w:g (Mul x (Div f:1 (Sqrt (Add (ReduceMean (Pow x f:2) i:-1 i:1) f:0.000001)))))";
    const RMS_DYNAMO: &str = "(Mul w:g (Mul x (Reciprocal (Sqrt (Add (ReduceMean (Pow x f:2) i:-1 i:1) f:0.000001)))))";

    #[test]
    fn rms_norm_both_exporters() {
        assert!(raises(RMS_TS, weights(&[("g", &[64])]), "RmsNorm"));
        assert!(raises(RMS_DYNAMO, weights(&[("g", &[64])]), "RmsNorm"));
        // a mean over another axis is not an RMSNorm
        assert!(!raises(&RMS_TS.replace("i:-1 i:1", "i:-2 i:1"), weights(&[("g", &[64])]), "RmsNorm"));
        // a cube is not a square
        assert!(!raises(&RMS_TS.replace("f:2", "f:3"), weights(&[("g", &[64])]), "RmsNorm"));
    }

    #[test]
    fn silu_and_its_operand_order() {
        assert!(raises("(Mul x (Sigmoid x))", Context::default(), "Silu"));
        assert!(raises("(Mul (Sigmoid x) x)", Context::default(), "Silu"));
        assert!(!raises("(Mul y (Sigmoid x))", Context::default(), "Silu"));
    }

    #[test]
    fn linear_from_matmul_by_a_weight() {
        assert!(raises("(MatMul x w:q)", weights(&[("q", &[64, 32])]), "Linear"));
        assert!(raises("(MatMul x (Transpose w:e i:[1,0]))", weights(&[("e", &[256, 64])]), "Linear"));
        // two activations multiplied are not a linear layer
        assert!(!raises("(MatMul x y)", Context::default(), "Linear"));
    }

    #[test]
    fn embedding_from_gather_of_a_table() {
        assert!(raises("(Gather w:e in:ids i:0)", weights(&[("e", &[256, 64])]), "Embedding"));
        assert!(!raises("(Gather w:e in:ids i:1)", weights(&[("e", &[256, 64])]), "Embedding"));
        assert!(raises("(Gather (Transpose w:h i:[1,0]) in:ids i:0)", weights(&[("h", &[64, 256])]), "Embedding"));
        assert!(!raises("(Gather (Transpose w:h i:[0,1]) in:ids i:0)", weights(&[("h", &[64, 256])]), "Embedding"));
    }

    #[test]
    fn small_identities() {
        assert!(raises("(T0213 (T0213 x))", Context::default(), "x"));
        assert!(raises("(Mul x f:1)", Context::default(), "x"));
        assert!(raises("(Div f:1 x)", Context::default(), "Reciprocal"));
        assert!(raises("(Where (IsNaN p) f:0 p)", Context::default(), "p"));
        assert!(!raises("(Where (IsNaN p) f:1 p)", Context::default(), "p"));
    }

    #[test]
    fn repeated_key_value_heads() {
        let ctx = Context {
            shape_table: vec![
                vec![Dim::batch(), Dim::Fixed(2), Dim::Fixed(4), Dim::seq(), Dim::Fixed(8)],
                vec![Dim::batch(), Dim::Fixed(8), Dim::seq(), Dim::Fixed(8)],
            ],
            ..Context::default()
        };
        assert!(raises("(Reshape (Expand (Unsqueeze (T0213 k) i:[2]) s:0) s:1)", ctx, "T0213"));
    }

    /// A rotary table as exporters compute it: positions 0..seq times θ^(−2i/d), d = 8.
    fn rope_ctx() -> Context {
        let inv: Vec<f32> = (0..4).map(|i| 10000f32.powf(-2.0 * i as f32 / 8.0)).collect();
        let mut floats = HashMap::new();
        floats.insert("c:0".to_string(), (vec![4], inv));
        Context { floats, ..Context::default() }
    }

    fn table(f: &str) -> String {
        format!("(Unsqueeze ({f} (Concat i:-1 (Mul (Cast (Unsqueeze (Unsqueeze (Range i:0 s:0 i:1) i:[0]) i:[2]) i:1) c:0) (Mul (Cast (Unsqueeze (Unsqueeze (Range i:0 s:0 i:1) i:[0]) i:[2]) i:1) c:0))) i:[1])")
    }

    #[test]
    fn rotary_half_split() {
        let expr = format!(
            "(Add (Mul (T0213 x) {}) (Mul (Concat i:-1 (Neg (Slice (T0213 x) i:-1 i:4 i:8)) (Slice (T0213 x) i:-1 i:0 i:4)) {}))",
            table("Cos"),
            table("Sin")
        );
        assert!(raises(&expr, rope_ctx(), "T0213"));
        // cos where sin belongs
        let swapped = expr.replacen("Sin", "Cos", 1);
        assert!(!raises(&swapped, rope_ctx(), "T0213"));
    }

    #[test]
    fn causal_mask_and_attention() {
        // k positions along the last axis, q along the one before: k ≤ q
        let expr: RecExpr<SymbolLang> =
            "(Where (LessOrEqual (Unsqueeze (Range i:0 s:0 i:1) i:[0,1,2]) (Unsqueeze (Range i:0 s:0 i:1) i:[0,1,3])) f:0 f:-3.4028235e38)".parse().unwrap();
        let mut eg = Egraph::default();
        let root = eg.add_expr(&expr);
        // the shapes folding gives the two position tensors
        let nodes = expr.as_ref();
        let mut ids = Vec::new();
        for n in nodes {
            ids.push(eg.lookup(n.clone().map_children(|c| ids[usize::from(c)])).unwrap());
        }
        let k = ids[nodes.iter().position(|n| n.op.as_str() == "Unsqueeze").unwrap()];
        let q = ids[nodes.iter().rposition(|n| n.op.as_str() == "Unsqueeze").unwrap()];
        let mut shapes = HashMap::new();
        shapes.insert(k, vec![Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(1), Dim::seq()]);
        shapes.insert(q, vec![Dim::Fixed(1), Dim::Fixed(1), Dim::seq(), Dim::Fixed(1)]);
        let ctx = Arc::new(Context { shapes: shapes.clone(), ..Context::default() });
        let runner = Runner::default().with_egraph(eg).with_iter_limit(20).run(&rules(ctx).unwrap());
        let eg = runner.egraph;
        assert!(eg[eg.find(root)].nodes.iter().any(|n| n.op.as_str() == "mask:causal"));
        // the other way round (k ≥ q) is not causal
        let mut swapped = shapes;
        let (a, b) = (swapped[&k].clone(), swapped[&q].clone());
        swapped.insert(k, b);
        swapped.insert(q, a);
        let mut eg = Egraph::default();
        let root = eg.add_expr(&expr);
        let runner = Runner::default().with_egraph(eg).with_iter_limit(20).run(&rules(Arc::new(Context { shapes: swapped, ..Context::default() })).unwrap());
        let eg = runner.egraph;
        assert!(!eg[eg.find(root)].nodes.iter().any(|n| n.op.as_str() == "mask:causal"));

        let sdpa = "(MatMul (Softmax (Add (Mul (MatMul (T0213 q) (Transpose (T0213 k) i:[0,1,3,2])) f:0.35355338) mask:causal) i:-1) (T0213 v))";
        assert!(raises(sdpa, Context::default(), "T0213"));
        // without the causal mask it is not the IR's causal attention
        assert!(!raises(&sdpa.replace("mask:causal", "m"), Context::default(), "T0213"));
    }
}
