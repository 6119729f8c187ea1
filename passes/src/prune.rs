//! The `prune` pass: removes the lowest-scoring units of the chosen groups and shrinks every
//! tensor they touch — parameters, and the shape attributes of reshapes and slices — then
//! re-infers every type and re-verifies the graph. What to remove is chosen by [`select`];
//! [`apply`] is the rewrite, and works for any selection of whole units.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use prunec_ir::{Dim, GroupKind, Model, Op, ValueId};

use crate::score::Scores;
use crate::{PassError, Result};

/// Which groups are pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Attention heads and MLP channels of the decoder layers (LLM-Pruner's block-wise).
    Block,
    /// Hidden channels, across the whole model (LLM-Pruner's channel-wise).
    Channel,
    /// Whole decoder layers (every unit of a block's attention and MLP groups), the blocks
    /// with the lowest total score first; the residual stream then passes them unchanged.
    Layer,
}

/// How much to remove.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// This fraction of all parameters (embeddings included); the achieved fraction is reported.
    Ratio(f64),
    /// LLM-Pruner's meaning: in each pruned group, `current − int(initial·(1−r))` indices of
    /// its first member, counted in whole units.
    UnitRatio(f64),
}

/// The options of `prune`.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneOptions {
    /// How much.
    pub amount: Amount,
    /// Which groups.
    pub mode: Mode,
    /// Layers whose attention groups are pruned (all when `None`).
    pub attn_layers: Option<Range<u32>>,
    /// Layers whose MLP groups are pruned (all when `None`).
    pub mlp_layers: Option<Range<u32>>,
    /// How many units each group loses (with [`Amount::Ratio`]).
    pub allocate: Allocate,
    /// With grouped-query attention: what an attention unit loses.
    pub gqa: Gqa,
    /// Each pruned group keeps a multiple of this many units, removing fewer when needed
    /// (torch-pruning's `round_to`; 1: any number). Hardware likes widths in multiples of 8;
    /// transformers 5 wants `hidden_size` a multiple of `num_attention_heads`.
    pub round_to: usize,
    /// Every group of a kind loses as many units, so that the layers stay alike and a stock
    /// configuration describes the result: query heads are taken evenly from the key/value
    /// heads, hidden channels keep a multiple of the query heads, and a selection that would
    /// leave layers of different widths is refused.
    pub uniform: bool,
}

/// How a ratio of the parameters is shared out among the pruned groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocate {
    /// The same share of units in every group (LLM-Pruner's).
    #[default]
    Uniform,
    /// One ranking of all units by their score divided by their group's mean score, so that a
    /// group loses more where its scores are uneven, whatever the scale of its layer's scores.
    Global,
    /// One threshold on the score per parameter across groups: with Taylor importance, the
    /// allocation that removes the target with the least loss increase the calibration
    /// predicts, layer by layer (a layer the data say is sensitive keeps more).
    Sensitivity,
    /// FLAP's adaptive structure: scores standardised per kind of group (attention, MLP)
    /// across layers, `(s − mean) / std`, then one ranking of all units (the scores being
    /// FLAP's fluctuation metric when `prune` is given them).
    Flap,
}

impl Allocate {
    /// Every allocation, by name.
    pub const NAMES: &'static [(&'static str, Allocate)] =
        &[("uniform", Allocate::Uniform), ("global", Allocate::Global), ("sensitivity", Allocate::Sensitivity), ("flap", Allocate::Flap)];

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, a)| *a == self).map_or("?", |(n, _)| n)
    }

    /// The allocation called `name`.
    pub fn from_name(name: &str) -> Result<Allocate> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, a)| *a).ok_or_else(|| {
            PassError::Config(format!(
                "unknown allocation `{name}`; valid: {}",
                Self::NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// The first `counts[k]` units of each group's order (lowest score first), sorted by index.
fn lowest(order: &[Option<Vec<usize>>], counts: &[usize]) -> Vec<Vec<usize>> {
    order
        .iter()
        .zip(counts)
        .map(|(o, &n)| {
            let mut v: Vec<usize> = o.as_ref().map(|o| o[..n.min(o.len())].to_vec()).unwrap_or_default();
            v.sort_unstable();
            v
        })
        .collect()
}

/// The share in [0, 1] whose removal (`removed(share)` parameters, growing with the share)
/// comes closest to `target`, by bisection.
fn closest_share(target: usize, removed: impl Fn(f64) -> usize) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if removed(mid) <= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if target.abs_diff(removed(lo)) <= target.abs_diff(removed(hi)) {
        lo
    } else {
        hi
    }
}

/// How many of `units` to remove, at most `remove`, so that a multiple of `to` remains.
fn rounded(units: usize, remove: usize, to: usize) -> usize {
    let keep = units - remove.min(units);
    let keep = keep.div_ceil(to.max(1)) * to.max(1);
    units - keep.min(units)
}

/// What block-wise pruning removes from grouped-query attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gqa {
    /// Whole key/value heads with the query heads they serve.
    #[default]
    KvHeads,
    /// Query heads, the lowest-scoring of the layer wherever they are (LLM-Pruner's count:
    /// at unit ratio 0.2, 1 of SmolLM2's 9 heads); each key/value head keeps at least one.
    /// Key/value heads may then serve different numbers of query heads (`repeat_heads` with
    /// uneven copies), which a stock config cannot describe.
    QueryHeads,
    /// Query heads, the same number from every key/value head (the lowest-scoring of each),
    /// so the heads stay evenly shared and stock configs describe the result.
    QueryHeadsEven,
}

/// Units to remove, per group (indices into `Group::units`), in the order of `model.groups`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Sorted unit indices per group.
    pub removed: Vec<Vec<usize>>,
    /// Whether a group may lose every unit (layer-wise pruning removes whole branches).
    pub whole_groups: bool,
    /// Sub-units to remove, per group: `(unit, sub-unit)` (query heads inside key/value groups).
    pub removed_sub: Vec<Vec<(usize, usize)>>,
}

impl PruneOptions {
    /// Whether `group` is one these options prune (its kind for the mode, its layer in range):
    /// the groups a streamed calibration needs scores of.
    pub fn prunes(&self, group: &prunec_ir::Group) -> bool {
        eligible(group.kind, group.block, self)
    }
}

fn eligible(kind: GroupKind, block: Option<u32>, opts: &PruneOptions) -> bool {
    let within = |r: &Option<Range<u32>>| match (r, block) {
        (None, _) => true,
        (Some(r), Some(b)) => r.contains(&b),
        (Some(_), None) => false,
    };
    match (opts.mode, kind) {
        (Mode::Block, GroupKind::Attention) => within(&opts.attn_layers),
        (Mode::Block, GroupKind::Mlp) => within(&opts.mlp_layers),
        (Mode::Channel, GroupKind::Hidden) => true,
        (Mode::Layer, GroupKind::Attention | GroupKind::Mlp) => within(&opts.attn_layers) && block.is_some(),
        _ => false,
    }
}

impl PruneOptions {
    /// These options as they apply to `model`: with [`PruneOptions::uniform`], query heads
    /// evenly from every key/value head and hidden channels rounded to a multiple of the
    /// query heads as well (transformers 5 wants `hidden_size` a multiple of them).
    fn for_model(&self, model: &Model) -> Result<PruneOptions> {
        let mut opts = self.clone();
        if self.uniform && self.allocate != Allocate::Uniform {
            return Err(PassError::Config(format!("uniform widths do not go with {} allocation", self.allocate.name())));
        }
        if self.uniform {
            if self.mode == Mode::Layer {
                return Err(PassError::Config("uniform widths do not go with layer-wise pruning".into()));
            }
            if self.gqa == Gqa::QueryHeads {
                opts.gqa = Gqa::QueryHeadsEven;
            }
            if self.mode == Mode::Channel {
                opts.round_to = crate::group::lcm(self.round_to, query_heads(model));
            }
        }
        Ok(opts)
    }
}

/// The most query heads of any attention group (its sub-units, or its units without them).
pub fn query_heads(model: &Model) -> usize {
    let groups = model.groups.as_deref().unwrap_or_default();
    groups
        .iter()
        .filter(|g| g.kind == GroupKind::Attention)
        .map(|g| g.units.iter().map(|u| u.sub_units.len().max(1)).sum::<usize>())
        .max()
        .unwrap_or(1)
}

/// Chooses the units to remove.
pub fn select(model: &Model, scores: &Scores, opts: &PruneOptions) -> Result<Selection> {
    let opts = &opts.for_model(model)?;
    let selection = select_units(model, scores, opts)?;
    if opts.uniform {
        // every group of a kind loses as many units (the local share does this on a uniform model)
        let groups = model.groups.as_deref().unwrap_or_default();
        for kind in [GroupKind::Attention, GroupKind::Mlp, GroupKind::Hidden] {
            let counts: BTreeSet<(usize, usize)> = groups
                .iter()
                .zip(&selection.removed)
                .filter(|(g, _)| g.kind == kind)
                .map(|(g, r)| (g.units.len(), r.len()))
                .collect();
            if counts.len() > 1 {
                return Err(PassError::Config(format!(
                    "uniform widths: the {kind} groups would differ ({counts:?} units before/removed): the model's layers are not alike"
                )));
            }
        }
    }
    Ok(selection)
}

/// Pruning in `steps` steps to `opts.amount` (a [`Amount::Ratio`] of the parameters as they
/// were): step k reaches k/steps of it, and every step after the first works on the pruned
/// model, with its groups found anew and its units scored anew by `rescore`. One step is
/// [`select`] and [`apply`]. `progress` hears of every step as it ends (number, steps, report).
pub fn prune_in_steps<E: From<PassError>>(
    model: &mut Model,
    scores: Scores,
    opts: &PruneOptions,
    steps: usize,
    mut rescore: impl FnMut(&Model) -> std::result::Result<Scores, E>,
    mut progress: impl FnMut(usize, usize, &PruneReport),
) -> std::result::Result<Vec<PruneReport>, E> {
    let steps = steps.max(1);
    if steps > 1 && !matches!(opts.amount, Amount::Ratio(_)) {
        return Err(PassError::Config(format!("pruning in {steps} steps needs a ratio of the parameters, not a unit ratio")).into());
    }
    let start_params = model.params.numel() as f64;
    let mut scores = scores;
    let mut reports = Vec::with_capacity(steps);
    for k in 1..=steps {
        if k > 1 {
            crate::manager::run_group(model)?;
            scores = rescore(model)?;
        }
        let amount = match opts.amount {
            // step k reaches k/steps of the asked-for ratio, measured on the model as it was
            Amount::Ratio(r) => {
                let keep = start_params * (1.0 - r * k as f64 / steps as f64);
                Amount::Ratio((1.0 - keep / model.params.numel() as f64).max(0.0))
            }
            unit => unit,
        };
        let selection = select(model, &scores, &PruneOptions { amount, ..opts.clone() })?;
        let report = apply(model, &selection)?;
        progress(k, steps, &report);
        reports.push(report);
    }
    Ok(reports)
}

/// Chooses the units to remove, with options already applied to the model.
fn select_units(model: &Model, scores: &Scores, opts: &PruneOptions) -> Result<Selection> {
    crate::lora::refuse_adapters(model, "prune")?;
    let groups = model.groups.as_ref().ok_or_else(|| PassError::Config("`prune` needs the groups: run `group` first".into()))?;
    if scores.groups.len() != groups.len() {
        return Err(PassError::Config("the scores are not those of these groups: run `score` again".into()));
    }
    let r = match opts.amount {
        Amount::Ratio(r) | Amount::UnitRatio(r) => r,
    };
    if !(0.0..1.0).contains(&r) || r.is_nan() {
        return Err(PassError::Config(format!("ratio {r} is out of range: it must be in [0, 1)")));
    }
    // units of each eligible group, lowest score first
    let order: Vec<Option<Vec<usize>>> = groups
        .iter()
        .zip(&scores.groups)
        .map(|(g, s)| {
            eligible(g.kind, g.block, opts).then(|| {
                let mut o: Vec<usize> = (0..g.units.len()).collect();
                o.sort_by(|&a, &b| s.units[a].total_cmp(&s.units[b]).then(a.cmp(&b)));
                o
            })
        })
        .collect();
    if order.iter().all(Option::is_none) {
        return Err(PassError::Config("no group is eligible for pruning with these layer ranges and mode".into()));
    }
    let per_unit: Vec<usize> = groups.iter().map(|g| g.params_per_unit().1).collect();
    let take = |counts: &[usize]| Selection { removed: lowest(&order, counts), whole_groups: false, removed_sub: Vec::new() };
    let max_units = |k: usize| groups[k].units.len().saturating_sub(1); // never a whole group
    if opts.gqa != Gqa::KvHeads {
        if opts.mode != Mode::Block || (opts.allocate != Allocate::Uniform && matches!(opts.amount, Amount::Ratio(_))) {
            return Err(PassError::Config(format!(
                "query-head pruning is block-wise with uniform allocation (not {})",
                opts.allocate.name()
            )));
        }
        return select_query_heads(model, scores, opts, &order, &per_unit);
    }
    if opts.mode == Mode::Layer {
        // blocks by total score (for Taylor importance, the first-order loss change of removing them)
        let mut blocks: BTreeMap<u32, (f64, usize, Vec<usize>)> = BTreeMap::new();
        for (k, g) in groups.iter().enumerate() {
            if let (Some(_), Some(b)) = (&order[k], g.block) {
                let e = blocks.entry(b).or_insert((0.0, 0, Vec::new()));
                e.0 += scores.groups[k].units.iter().sum::<f64>();
                e.1 += g.units.len() * per_unit[k];
                e.2.push(k);
            }
        }
        let mut ranked: Vec<(u32, f64, usize, Vec<usize>)> = blocks.into_iter().map(|(b, (s, p, ks))| (b, s, p, ks)).collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let n_blocks = ranked.len();
        let take_blocks = match opts.amount {
            Amount::UnitRatio(r) => ((r * n_blocks as f64).floor() as usize).min(n_blocks.saturating_sub(1)),
            Amount::Ratio(r) => {
                let target = (r * model.params.numel() as f64).round() as usize;
                let mut removed = 0;
                let mut n = 0;
                for (_, _, p, _) in &ranked {
                    if n + 1 >= n_blocks || removed + p / 2 >= target {
                        break;
                    }
                    removed += p;
                    n += 1;
                }
                n
            }
        };
        let mut removed = vec![Vec::new(); groups.len()];
        for (_, _, _, ks) in ranked.iter().take(take_blocks) {
            for &k in ks {
                removed[k] = (0..groups[k].units.len()).collect();
            }
        }
        return Ok(Selection { removed, whole_groups: true, removed_sub: Vec::new() });
    }
    match opts.amount {
        Amount::UnitRatio(r) => {
            let counts: Vec<usize> = groups
                .iter()
                .enumerate()
                .map(|(k, g)| {
                    if order[k].is_none() {
                        return 0;
                    }
                    let first = g.axes.iter().find(|a| a.param.is_some());
                    let total = first.map_or(0, |a| a.size);
                    let per = total / g.units.len().max(1);
                    let remove = total - ((total as f64) * (1.0 - r)).floor() as usize;
                    rounded(g.units.len(), (remove / per.max(1)).min(max_units(k)), opts.round_to)
                })
                .collect();
            Ok(take(&counts))
        }
        Amount::Ratio(r) => {
            let target = (r * model.params.numel() as f64).round() as usize;
            if opts.allocate != Allocate::Uniform {
                // one ranking across all eligible groups, lowest first
                let key = ranking_keys(groups, scores, &order, &per_unit, opts.allocate);
                let mut all: Vec<(f64, usize, usize)> = Vec::new();
                for (k, o) in order.iter().enumerate() {
                    for &u in o.iter().flatten() {
                        all.push((key(k, u), k, u));
                    }
                }
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
                let mut counts = vec![0usize; groups.len()];
                let mut removed = 0usize;
                let mut chosen: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
                for (_, k, u) in all {
                    if removed + per_unit[k] / 2 >= target {
                        break;
                    }
                    if counts[k] < max_units(k) {
                        counts[k] += 1;
                        removed += per_unit[k];
                        chosen[k].push(u);
                    }
                }
                for (k, v) in chosen.iter_mut().enumerate() {
                    // chosen lowest first: rounding gives back the best of them
                    v.truncate(rounded(groups[k].units.len(), v.len(), opts.round_to));
                    v.sort_unstable();
                }
                Ok(Selection { removed: chosen, whole_groups: false, removed_sub: Vec::new() })
            } else {
                // the same share of units in every eligible group, the share closest to the target
                let removed_at = |share: f64| -> (Vec<usize>, usize) {
                    let counts: Vec<usize> = groups
                        .iter()
                        .enumerate()
                        .map(|(k, g)| {
                            if order[k].is_some() {
                                let n = ((share * g.units.len() as f64).round() as usize).min(max_units(k));
                                rounded(g.units.len(), n, opts.round_to)
                            } else {
                                0
                            }
                        })
                        .collect();
                    let params = counts.iter().zip(&per_unit).map(|(c, p)| c * p).sum();
                    (counts, params)
                };
                let share = closest_share(target, |share| removed_at(share).1);
                Ok(take(&removed_at(share).0))
            }
        }
    }
}

/// The key each unit is ranked by under `allocate` (a non-uniform one): the unit `u` of group
/// `k` goes before those of higher keys.
fn ranking_keys<'a>(
    groups: &'a [prunec_ir::Group],
    scores: &'a Scores,
    order: &'a [Option<Vec<usize>>],
    per_unit: &'a [usize],
    allocate: Allocate,
) -> Box<dyn Fn(usize, usize) -> f64 + 'a> {
    let score = move |k: usize, u: usize| scores.groups[k].units[u];
    match allocate {
        Allocate::Uniform | Allocate::Sensitivity => Box::new(move |k, u| score(k, u) / per_unit[k].max(1) as f64),
        Allocate::Global => {
            let means: Vec<f64> = (0..groups.len())
                .map(|k| {
                    let s = &scores.groups[k].units;
                    s.iter().sum::<f64>() / s.len().max(1) as f64
                })
                .collect();
            Box::new(move |k, u| if means[k] > 0.0 { score(k, u) / means[k] } else { 0.0 })
        }
        Allocate::Flap => {
            // mean and standard deviation of each kind's scores over its eligible groups
            let mut by_kind: BTreeMap<GroupKind, (f64, f64, f64)> = BTreeMap::new();
            for (k, o) in order.iter().enumerate() {
                let e = by_kind.entry(groups[k].kind).or_default();
                for &u in o.iter().flatten() {
                    let s = score(k, u);
                    e.0 += 1.0;
                    e.1 += s;
                    e.2 += s * s;
                }
            }
            let stats: BTreeMap<GroupKind, (f64, f64)> = by_kind
                .into_iter()
                .map(|(kind, (n, sum, sq))| {
                    let mean = sum / n.max(1.0);
                    let var = (sq / n.max(1.0) - mean * mean).max(0.0);
                    (kind, (mean, var.sqrt()))
                })
                .collect();
            Box::new(move |k, u| {
                let (mean, std) = stats.get(&groups[k].kind).copied().unwrap_or((0.0, 1.0));
                if std > 0.0 { (score(k, u) - mean) / std } else { 0.0 }
            })
        }
    }
}

/// Block-wise selection where attention groups lose query heads inside their key/value
/// units — the lowest-scoring of the layer ([`Gqa::QueryHeads`]) or the same number from
/// every unit ([`Gqa::QueryHeadsEven`]) — and MLP groups lose channels as usual, one share
/// for all.
fn select_query_heads(
    model: &Model,
    scores: &Scores,
    opts: &PruneOptions,
    order: &[Option<Vec<usize>>],
    per_unit: &[usize],
) -> Result<Selection> {
    let groups = model.groups.as_deref().unwrap_or_default();
    // (units per group, sub-units per group, parameters removed) at a share
    type Plan = (Vec<usize>, Vec<Vec<(usize, usize)>>, usize);
    let plan = |share: f64| -> Plan {
        let mut counts = vec![0usize; groups.len()];
        let mut subs = vec![Vec::new(); groups.len()];
        let mut params = 0;
        for (k, g) in groups.iter().enumerate() {
            if order[k].is_none() {
                continue;
            }
            let per_sub = g.units.first().map_or(0, |u| u.sub_units.len());
            if g.kind == GroupKind::Attention && per_sub > 0 {
                let sub_score = |u: usize, sub: usize| scores.groups[k].sub_units[u][sub];
                if opts.gqa == Gqa::QueryHeadsEven {
                    let m = ((share * per_sub as f64).round() as usize).min(per_sub - 1);
                    for (u, unit) in g.units.iter().enumerate() {
                        let mut o: Vec<usize> = (0..unit.sub_units.len()).collect();
                        o.sort_by(|&a, &b| sub_score(u, a).total_cmp(&sub_score(u, b)).then(a.cmp(&b)));
                        for &sub in o.iter().take(m) {
                            subs[k].push((u, sub));
                            params += g.params_in(&unit.sub_units[sub]);
                        }
                    }
                } else {
                    let heads: usize = g.units.iter().map(|u| u.sub_units.len()).sum();
                    let m = match opts.amount {
                        Amount::UnitRatio(r) => llm_pruner_heads(g, heads, r),
                        Amount::Ratio(_) => (share * heads as f64).round() as usize,
                    };
                    let mut all: Vec<(usize, usize)> =
                        g.units.iter().enumerate().flat_map(|(u, unit)| (0..unit.sub_units.len()).map(move |sub| (u, sub))).collect();
                    all.sort_by(|&(ua, a), &(ub, b)| sub_score(ua, a).total_cmp(&sub_score(ub, b)).then((ua, a).cmp(&(ub, b))));
                    let mut left: Vec<usize> = g.units.iter().map(|u| u.sub_units.len()).collect();
                    for (u, sub) in all {
                        if subs[k].len() >= m {
                            break;
                        }
                        if left[u] > 1 {
                            left[u] -= 1;
                            subs[k].push((u, sub));
                            params += g.params_in(&g.units[u].sub_units[sub]);
                        }
                    }
                }
            } else {
                let c = match opts.amount {
                    // LLM-Pruner's count: current − int(initial·(1−r))
                    Amount::UnitRatio(r) => g.units.len() - ((g.units.len() as f64) * (1.0 - r)).floor() as usize,
                    Amount::Ratio(_) => (share * g.units.len() as f64).round() as usize,
                }
                .min(g.units.len().saturating_sub(1));
                let c = rounded(g.units.len(), c, opts.round_to);
                counts[k] = c;
                params += c * per_unit[k];
            }
        }
        (counts, subs, params)
    };
    let share = match opts.amount {
        Amount::UnitRatio(r) => r,
        Amount::Ratio(r) => {
            let target = (r * model.params.numel() as f64).round() as usize;
            closest_share(target, |share| plan(share).2)
        }
    };
    let (counts, mut removed_sub, _) = plan(share);
    let removed = lowest(order, &counts);
    removed_sub.iter_mut().for_each(|v| v.sort_unstable());
    Ok(Selection { removed, whole_groups: false, removed_sub })
}

/// LLM-Pruner's count of query heads to remove at unit ratio `r`: `current − int(initial·(1−r))`
/// channels of the group's first weight, in whole heads.
fn llm_pruner_heads(g: &prunec_ir::Group, heads: usize, r: f64) -> usize {
    let channels = g.axes.iter().find(|a| a.param.is_some()).map_or(heads, |a| a.size);
    let per_head = if heads > 0 && channels.is_multiple_of(heads) { channels / heads } else { 1 };
    let total = if per_head == 1 { heads } else { channels };
    let removed = total - ((total as f64) * (1.0 - r)).floor() as usize;
    removed / per_head
}

/// What `apply` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Parameters before.
    pub params_before: usize,
    /// Parameters after.
    pub params_after: usize,
    /// Per pruned group: kind, block, units before, units after.
    pub groups: Vec<(GroupKind, Option<u32>, usize, usize)>,
}

impl PruneReport {
    /// A readable summary.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let removed = self.params_before - self.params_after;
        let _ = writeln!(
            s,
            "pruned {removed} of {} parameters ({:.2}%): {} left",
            self.params_before,
            100.0 * removed as f64 / self.params_before.max(1) as f64,
            self.params_after
        );
        let mut by_block: BTreeMap<Option<u32>, Vec<String>> = BTreeMap::new();
        for (kind, block, before, after) in &self.groups {
            by_block.entry(*block).or_default().push(format!("{kind} {before}→{after}"));
        }
        for (block, parts) in by_block {
            match block {
                Some(b) => {
                    let _ = writeln!(s, "  layer {b}: {}", parts.join(", "));
                }
                None => {
                    let _ = writeln!(s, "  model: {}", parts.join(", "));
                }
            }
        }
        s
    }
}

/// A linear op whose contraction lost every index (and has no bias) computes zeros: where
/// such a value is added to another, the sum is the other. Then every node no longer used
/// (but outputs) goes, with its parameters.
fn remove_dead_branches(model: &mut Model) -> Result<()> {
    let graph = &mut model.graph;
    for id in graph.node_ids() {
        let node = graph.node(id)?;
        if !matches!(node.op, Op::Linear) {
            continue;
        }
        let inputs = graph.inputs(id);
        if inputs.len() != 2 {
            continue;
        }
        let empty = match &graph.node(inputs[1].node)?.op {
            Op::Param { ty, .. } => ty.shape.dims().get(1) == Some(&Dim::Fixed(0)),
            _ => false,
        };
        if !empty {
            continue;
        }
        let zeros = ValueId { node: id, output: 0 };
        for (user, slot) in graph.users(zeros) {
            if matches!(graph.node(user)?.op, Op::Binary(prunec_ir::BinaryOp::Add)) {
                let other = graph.inputs(user)[1 - slot];
                graph.replace_uses(ValueId { node: user, output: 0 }, other);
            }
        }
    }
    // dead code
    loop {
        let dead: Vec<_> = graph
            .node_ids()
            .into_iter()
            .filter(|&id| {
                graph.node(id).is_ok_and(|n| {
                    !matches!(n.op, Op::Output { .. })
                        && (0..n.outputs().len()).all(|k| graph.users(ValueId { node: id, output: k as u16 }).is_empty())
                })
            })
            .collect();
        if dead.is_empty() {
            break;
        }
        for id in dead {
            if let Some(node) = graph.remove(id) {
                if let Op::Param { name, .. } = node.op {
                    model.params.remove(&name);
                }
            }
        }
    }
    Ok(())
}

/// The indices removed around one node, read from the pass's table of removals per value:
/// what the node's shrink rule ([`Op::shrink`]) is given.
struct NodeRemovals<'a> {
    removed: &'a HashMap<(ValueId, usize), BTreeSet<usize>>,
    node: prunec_ir::NodeId,
    inputs: &'a [ValueId],
}

impl prunec_ir::RemovedIndices for NodeRemovals<'_> {
    fn removed(&self, at: prunec_ir::PortAxis) -> Option<&BTreeSet<usize>> {
        let value = match at.port {
            prunec_ir::Port::Input(k) => *self.inputs.get(k)?,
            prunec_ir::Port::Output(k) => ValueId { node: self.node, output: u16::try_from(k).ok()? },
        };
        self.removed.get(&(value, at.axis))
    }
}

/// A shrink that rescales a parameter, waiting for every selection to be made.
struct Rescale {
    /// The node.
    node: prunec_ir::NodeId,
    /// Its new op.
    op: Option<Op>,
    /// The value feeding the scaled input.
    weight: Option<ValueId>,
    /// The multiplier.
    factor: f32,
}

/// Makes the shrinks that rescale a parameter (an RMSNorm's weight), in node order: the new
/// op, then the parameter feeding the input scaled, when a parameter feeds it. A parameter
/// rescaled for two nodes cannot be right for both.
fn rescale(model: &mut Model, pending: Vec<Rescale>) -> Result<()> {
    let mut scaled = BTreeSet::new();
    for Rescale { node, op, weight, factor } in pending {
        if let Some(op) = op {
            model.graph.node_mut(node)?.op = op;
        }
        let Some(w) = weight else { continue };
        let Op::Param { name, .. } = &model.graph.node(w.node)?.op else { continue };
        let name = name.clone();
        if !scaled.insert(name.clone()) {
            return Err(PassError::Config(format!("`{name}` weighs more than one norm: cannot rescale it for each")));
        }
        let p = model.params.scaled(&name, factor)?;
        model.params.insert(name, p);
    }
    Ok(())
}

/// Removes the selected units: each node shrinks by its op's rule ([`Op::shrink`]:
/// parameters, reshapes, slices, heads, RMSNorm rescaling), then types are re-inferred and
/// the model re-verified. The groups are dropped (their indices no longer hold): run `group`
/// again to prune further.
pub fn apply(model: &mut Model, selection: &Selection) -> Result<PruneReport> {
    let groups = model.groups.take().ok_or_else(|| PassError::Config("`prune` needs the groups: run `group` first".into()))?;
    let params_before = model.params.numel();
    // indices removed from every (value, axis)
    let mut removed: HashMap<(ValueId, usize), BTreeSet<usize>> = HashMap::new();
    let mut report_groups = Vec::new();
    for (k, g) in groups.iter().enumerate() {
        let Some(subs) = selection.removed_sub.get(k).filter(|s| !s.is_empty()) else { continue };
        for &(u, sub) in subs {
            let elements = g
                .units
                .get(u)
                .and_then(|unit| unit.sub_units.get(sub))
                .ok_or_else(|| PassError::Config(format!("no sub-unit {sub} of unit {u}")))?;
            for e in elements {
                let ax = &g.axes[e.axis as usize];
                removed.entry((ax.value, ax.axis)).or_default().extend(ax.indices(e.index));
            }
        }
        let per_sub = g.units.first().map_or(0, |u| u.sub_units.len()) * g.units.len();
        report_groups.push((g.kind, g.block, per_sub, per_sub - subs.len()));
    }
    for (g, units) in groups.iter().zip(&selection.removed) {
        if units.is_empty() {
            continue;
        }
        if units.len() >= g.units.len() && !selection.whole_groups {
            return Err(PassError::Config(format!("refusing to remove every unit of the {} group of block {:?}", g.kind, g.block)));
        }
        for &u in units {
            let unit = g.units.get(u).ok_or_else(|| PassError::Config(format!("no unit {u} in a group of {}", g.units.len())))?;
            for e in &unit.elements {
                let ax = &g.axes[e.axis as usize];
                removed.entry((ax.value, ax.axis)).or_default().extend(ax.indices(e.index));
            }
        }
        report_groups.push((g.kind, g.block, g.units.len(), g.units.len() - units.len()));
    }
    // each node shrinks by its op's rule; rescalings wait until every parameter is selected
    let mut pending = Vec::new();
    for id in model.graph.node_ids() {
        let graph = &model.graph;
        let node = graph.node(id)?;
        let inputs = graph.inputs(id);
        let types = inputs.iter().map(|&v| graph.value_type(v)).collect::<prunec_ir::Result<Vec<_>>>()?;
        let around = NodeRemovals { removed: &removed, node: id, inputs: &inputs };
        let shrink = node.op.shrink(&node.name, &types, node.outputs(), &around)?;
        match shrink.param {
            Some(prunec_ir::ParamEdit::Scale { input, factor }) => {
                pending.push(Rescale { node: id, op: shrink.op, weight: inputs.get(input).copied(), factor });
                continue;
            }
            Some(prunec_ir::ParamEdit::Select { name, keep }) => {
                let p = model.params.selected(&name, keep)?;
                model.params.insert(name, p);
            }
            None => {}
        }
        if let Some(op) = shrink.op {
            model.graph.node_mut(id)?.op = op;
        }
    }
    rescale(model, pending)?;
    remove_dead_branches(model)?;
    let graph = &mut model.graph;
    for id in graph.topological_order()? {
        graph.reinfer(id)?;
    }
    prunec_ir::verify(model)?;
    Ok(PruneReport { params_before, params_after: model.params.numel(), groups: report_groups })
}
