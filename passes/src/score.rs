//! The `score` pass: the importance of every unit of every group, as LLM-Pruner estimates it.
//!
//! For each member of a group (one axis of one parameter `W`), every index of that axis gets
//! the importance of its weight slice (all of `W` at that index, over the other axes), from a
//! salience `S` of each weight:
//!
//! | estimator | per-index importance |
//! |---|---|
//! | `l1` | `Σ |W|` |
//! | `l2` | `Σ W²` (no square root, as LLM-Pruner) |
//! | `random` | a seeded uniform draw |
//! | `taylor-vector` | `|Σ W·G|` (`vectorize`) |
//! | `taylor-element1` | `Σ |W·G|` (`param_first`) |
//! | `taylor-element2` | `Σ |W·F·W|` (`param_second`) |
//! | `taylor-mix` | `Σ |W·G − ½·W·F·W|` (`param_mix`) |
//!
//! with `G` the batch gradient and `F` the Fisher diagonal of [`CalibrationStats`]. A unit's
//! score aggregates its members: where every member holds as many indices of the unit (an
//! attention head's rows of q, k, v and columns of o), index by index as LLM-Pruner does,
//! then summed over the unit; otherwise member by member over their sums.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prunec_ir::rng::SplitMix64;
use prunec_ir::{CalibrationStats, Element, GradValues, GradView, Group, Model, ParamGradient};

use crate::{PassError, Result};

/// How the importance of a weight slice is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Importance {
    /// Seeded random scores (a baseline).
    Random,
    /// Sum of absolute weights.
    L1,
    /// Sum of squared weights.
    L2,
    /// First-order Taylor, vector-wise: `|Σ W·G|`.
    TaylorVector,
    /// First-order Taylor, element-wise: `Σ |W·G|`.
    TaylorElement1,
    /// Second-order term, element-wise: `Σ |W·F·W|`.
    TaylorElement2,
    /// First order minus half the second: `Σ |W·G − ½·W·F·W|`.
    TaylorMix,
}

/// Every estimator, by name.
pub const IMPORTANCES: &[(&str, Importance)] = &[
    ("random", Importance::Random),
    ("l1", Importance::L1),
    ("l2", Importance::L2),
    ("taylor-vector", Importance::TaylorVector),
    ("taylor-element1", Importance::TaylorElement1),
    ("taylor-element2", Importance::TaylorElement2),
    ("taylor-mix", Importance::TaylorMix),
];

impl Importance {
    /// The estimator called `name`.
    pub fn from_name(name: &str) -> Result<Importance> {
        IMPORTANCES.iter().find(|(n, _)| *n == name).map(|(_, i)| *i).ok_or_else(|| {
            PassError::Config(format!(
                "unknown importance `{name}`; valid: {}",
                IMPORTANCES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        IMPORTANCES.iter().find(|(_, i)| *i == self).map_or("?", |(n, _)| n)
    }

    /// Whether it reads the batch gradient.
    pub fn needs_gradient(self) -> bool {
        matches!(self, Importance::TaylorVector | Importance::TaylorElement1 | Importance::TaylorMix)
    }

    /// Whether it reads the Fisher diagonal.
    pub fn needs_fisher(self) -> bool {
        matches!(self, Importance::TaylorElement2 | Importance::TaylorMix)
    }
}

/// How a unit's members' importances combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregation {
    /// Sum (LLM-Pruner's default for Taylor importance).
    Sum,
    /// Mean (LLM-Pruner's default for magnitude importance).
    Mean,
    /// Largest.
    Max,
    /// Product.
    Prod,
    /// The first member's.
    First,
    /// The last member's.
    Last,
}

/// Every aggregation, by name.
pub const AGGREGATIONS: &[(&str, Aggregation)] = &[
    ("sum", Aggregation::Sum),
    ("mean", Aggregation::Mean),
    ("max", Aggregation::Max),
    ("prod", Aggregation::Prod),
    ("first", Aggregation::First),
    ("last", Aggregation::Last),
];

impl Aggregation {
    /// The aggregation called `name`.
    pub fn from_name(name: &str) -> Result<Aggregation> {
        AGGREGATIONS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a).ok_or_else(|| {
            PassError::Config(format!(
                "unknown aggregation `{name}`; valid: {}",
                AGGREGATIONS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        AGGREGATIONS.iter().find(|(_, a)| *a == self).map_or("?", |(n, _)| n)
    }

    fn apply(self, values: &[f64]) -> f64 {
        match self {
            Aggregation::Sum => values.iter().sum(),
            Aggregation::Mean => values.iter().sum::<f64>() / values.len().max(1) as f64,
            Aggregation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregation::Prod => values.iter().product(),
            Aggregation::First => values.first().copied().unwrap_or(0.0),
            Aggregation::Last => values.last().copied().unwrap_or(0.0),
        }
    }
}

/// The scores of one group (none when it was not scored: see [`GroupScores::is_scored`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupScores {
    /// One score per unit (empty when the group was not scored).
    pub units: Vec<f64>,
    /// One score per sub-unit, per unit.
    pub sub_units: Vec<Vec<f64>>,
}

impl GroupScores {
    /// Whether the group was scored (layer-streamed calibration scores only the groups that
    /// will be pruned).
    pub fn is_scored(&self) -> bool {
        !self.units.is_empty()
    }
}

/// Scores of every group of a model, in the order of `model.groups`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The estimator.
    pub importance: Importance,
    /// The aggregation.
    pub aggregation: Aggregation,
    /// Per group.
    pub groups: Vec<GroupScores>,
}

/// The importance of every index of `axis` of a parameter `w` of `shape` (named `name` in
/// errors): its weight slices' saliences summed, from the gradient `g` and Fisher diagonal `f`
/// when the estimator reads them. Rows a sparse gradient leaves out are zero, and contribute
/// nothing, exactly as their zeros would.
pub fn salience<'g>(
    importance: Importance,
    name: &str,
    w: &[f32],
    shape: &[usize],
    axis: usize,
    g: Option<GradView<'g>>,
    f: Option<GradView<'g>>,
) -> Result<Vec<f64>> {
    fn runs<'g>(t: Option<GradView<'g>>) -> Vec<(usize, &'g [f32])> {
        t.map(|t| t.runs()).unwrap_or_default()
    }
    let size = shape.get(axis).copied().ok_or_else(|| PassError::Config(format!("`{name}` has no axis {axis}")))?;
    let stride: usize = shape[axis + 1..].iter().product::<usize>().max(1);
    // `index(i)` of `(i / stride) % size`, one flat index after another, without a division
    let walk = |start: usize| {
        let mut index = (start / stride) % size.max(1);
        let mut left = stride - start % stride;
        move || {
            let at = index;
            left -= 1;
            if left == 0 {
                left = stride;
                index += 1;
                if index == size {
                    index = 0;
                }
            }
            at
        }
    };
    let index = |i: usize| (i / stride) % size;
    for (t, what) in [(g, "gradient"), (f, "Fisher diagonal")] {
        match t {
            Some(GradView::Dense(t)) if t.len() != w.len() => {
                return Err(PassError::Config(format!("the {what} of `{name}` has {} values for {}", t.len(), w.len())));
            }
            Some(GradView::Rows { row_len, rows }) => {
                let shape_row: usize = shape[1.min(shape.len())..].iter().product();
                let n_rows = shape.first().copied().unwrap_or(0);
                if row_len != shape_row || rows.iter().any(|(&r, v)| r >= n_rows || v.len() != row_len) {
                    return Err(PassError::Config(format!("the {what} of `{name}` has rows that do not fit its shape {shape:?}")));
                }
            }
            _ => {}
        }
    }
    let mut out = vec![0.0f64; size];
    match importance {
        Importance::Random => return Err(PassError::Config("random importance has no salience".into())),
        Importance::L1 | Importance::L2 => {
            let mut next = walk(0);
            for &wi in w {
                out[next()] += f64::from(if importance == Importance::L1 { wi.abs() } else { wi * wi });
            }
        }
        Importance::TaylorVector => {
            for (start, g) in runs(g) {
                let mut next = walk(start);
                for (&wi, &gi) in w[start..start + g.len()].iter().zip(g) {
                    out[next()] += f64::from(wi * gi);
                }
            }
            out.iter_mut().for_each(|v| *v = v.abs());
        }
        Importance::TaylorElement1 => {
            for (start, g) in runs(g) {
                let mut next = walk(start);
                for (&wi, &gi) in w[start..start + g.len()].iter().zip(g) {
                    out[next()] += f64::from((wi * gi).abs());
                }
            }
        }
        Importance::TaylorElement2 => {
            for (start, f) in runs(f) {
                let mut next = walk(start);
                for (&wi, &fi) in w[start..start + f.len()].iter().zip(f) {
                    out[next()] += f64::from((wi * fi * wi).abs());
                }
            }
        }
        Importance::TaylorMix => {
            let at = |t: Option<GradView<'_>>, i: usize| t.map_or(0.0, |t| t.at(i));
            let mix = |i: usize| {
                let wi = w[i];
                f64::from((wi * at(g, i) - 0.5 * wi * at(f, i) * wi).abs())
            };
            if g.is_some_and(|g| g.is_dense()) || f.is_some_and(|f| f.is_dense()) {
                for i in 0..w.len() {
                    out[index(i)] += mix(i);
                }
            } else {
                // only the rows either statistic holds can be non-zero
                let mut starts: BTreeMap<usize, usize> = BTreeMap::new();
                for (start, run) in runs(g).into_iter().chain(runs(f)) {
                    starts.insert(start, run.len());
                }
                for (start, len) in starts {
                    for i in start..start + len {
                        out[index(i)] += mix(i);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Per-index importance of parameters' axes, computed once each (or given, computed as the
/// layer-streamed runtime finished each parameter's gradient).
pub(crate) struct MemberVectors<'a> {
    model: &'a Model,
    stats: Option<&'a CalibrationStats>,
    importance: Importance,
    seed: u64,
    cache: HashMap<(String, usize), Vec<f64>>,
}

impl<'a> MemberVectors<'a> {
    /// Importance of `importance` over `model`'s parameters (`stats` for Taylor estimators).
    pub(crate) fn new(model: &'a Model, stats: Option<&'a CalibrationStats>, importance: Importance, seed: u64) -> Self {
        MemberVectors { model, stats, importance, seed, cache: HashMap::new() }
    }

    fn stat<'s>(&self, table: Option<&'s std::collections::BTreeMap<String, Vec<f32>>>, what: &str, name: &str) -> Result<&'s [f32]>
    where
        Self: 's,
    {
        table.and_then(|t| t.get(name)).map(Vec::as_slice).ok_or_else(|| {
            PassError::Config(format!(
                "importance `{}` needs the {what} of `{name}`, which calibration did not measure",
                self.importance.name()
            ))
        })
    }

    /// The importance of every index of `axis` of parameter `name`.
    pub(crate) fn get(&mut self, name: &str, shape: &[usize], axis: usize) -> Result<&[f64]> {
        let key = (name.to_string(), axis);
        if !self.cache.contains_key(&key) {
            let v = self.compute(name, shape, axis)?;
            self.cache.insert(key.clone(), v);
        }
        Ok(self.cache.get(&key).map(Vec::as_slice).unwrap_or(&[]))
    }

    fn compute(&self, name: &str, shape: &[usize], axis: usize) -> Result<Vec<f64>> {
        let size = shape.get(axis).copied().ok_or_else(|| PassError::Config(format!("`{name}` has no axis {axis}")))?;
        if self.importance == Importance::Random {
            // one stream per (seed, parameter, axis), so scores do not depend on visiting order
            let h = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3));
            let mut rng = SplitMix64::new(self.seed ^ h ^ (axis as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            return Ok((0..size).map(|_| rng.next_f64()).collect());
        }
        let w = self.model.params.read_f32(name)?;
        let g = if self.importance.needs_gradient() {
            Some(GradView::Dense(self.stat(self.stats.map(|s| &s.grad), "gradient", name)?))
        } else {
            None
        };
        let f = if self.importance.needs_fisher() {
            Some(GradView::Dense(self.stat(self.stats.and_then(|s| s.fisher.as_ref()), "Fisher diagonal", name)?))
        } else {
            None
        };
        salience(self.importance, name, &w, shape, axis, g, f)
    }
}

/// Per-index importances of parameters' axes computed ahead of scoring: what the
/// layer-streamed runtime folds each parameter's gradient into the moment it is complete, so
/// that no gradient outlives its layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Saliences {
    vectors: HashMap<(String, usize), Vec<f64>>,
}

impl Saliences {
    /// None yet.
    pub fn new() -> Saliences {
        Saliences::default()
    }

    /// Folds parameter `name` (weights `w` of `shape`) and its statistics into the importance of
    /// each of `axes`.
    pub fn fold(
        &mut self,
        importance: Importance,
        name: &str,
        w: &[f32],
        shape: &[usize],
        axes: &BTreeSet<usize>,
        stats: &ParamGradient,
    ) -> Result<()> {
        let g = importance.needs_gradient().then(|| stats.grad.view());
        let f = if importance.needs_fisher() {
            Some(stats.fisher.as_ref().map(GradValues::view).ok_or_else(|| {
                PassError::Config(format!("importance `{}` needs the Fisher diagonal of `{name}`", importance.name()))
            })?)
        } else {
            None
        };
        for &axis in axes {
            let v = salience(importance, name, w, shape, axis, g, f)?;
            self.vectors.insert((name.to_string(), axis), v);
        }
        Ok(())
    }

    /// Number of (parameter, axis) vectors held.
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }
}

/// The axes of each parameter that the groups `scope` accepts read: what scoring them needs.
pub fn scored_axes(model: &Model, scope: &dyn Fn(&Group) -> bool) -> BTreeMap<String, BTreeSet<usize>> {
    let mut out: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for g in model.groups.as_deref().unwrap_or_default().iter().filter(|g| scope(g)) {
        for ax in &g.axes {
            if let Some((name, _)) = &ax.param {
                out.entry(name.clone()).or_default().insert(ax.axis);
            }
        }
    }
    out
}

/// The score of `elements` of `group`.
fn score_elements(group: &Group, elements: &[Element], vectors: &mut MemberVectors<'_>, aggregation: Aggregation) -> Result<f64> {
    let mut members: Vec<Vec<f64>> = Vec::new();
    for (k, ax) in group.axes.iter().enumerate() {
        let Some((name, shape)) = &ax.param else { continue };
        let ranges = group.indices_on(elements, k);
        if ranges.is_empty() {
            continue;
        }
        let v = vectors.get(name, shape, ax.axis)?;
        members.push(ranges.into_iter().flatten().map(|i| v.get(i).copied().unwrap_or(0.0)).collect());
    }
    let n = members.first().map_or(0, Vec::len);
    if members.iter().all(|m| m.len() == n) {
        // index by index across members, then over the unit
        Ok((0..n).map(|p| aggregation.apply(&members.iter().map(|m| m[p]).collect::<Vec<_>>())).sum())
    } else {
        let totals: Vec<f64> = members.iter().map(|m| m.iter().sum()).collect();
        Ok(aggregation.apply(&totals))
    }
}

/// Scores every unit and sub-unit of `model`'s groups.
pub fn score(
    model: &Model,
    stats: Option<&CalibrationStats>,
    importance: Importance,
    aggregation: Aggregation,
    seed: u64,
) -> Result<Scores> {
    score_in(model, stats, importance, aggregation, seed, &|_| true)
}

/// [`score`] of the groups `scope` accepts only; the other groups get no scores (empty
/// [`GroupScores`]), so `stats` need only hold the parameters of [`scored_axes`]`(model, scope)`.
pub fn score_in(
    model: &Model,
    stats: Option<&CalibrationStats>,
    importance: Importance,
    aggregation: Aggregation,
    seed: u64,
    scope: &dyn Fn(&Group) -> bool,
) -> Result<Scores> {
    score_groups(model, MemberVectors::new(model, stats, importance, seed), aggregation, scope)
}

/// Scores the units of the groups `scope` accepts from saliences computed ahead (by the
/// layer-streamed runtime); the other groups get no scores (empty [`GroupScores`]). Random and
/// magnitude estimators need no saliences: they read the weights.
pub fn score_with(
    model: &Model,
    saliences: Saliences,
    importance: Importance,
    aggregation: Aggregation,
    seed: u64,
    scope: &dyn Fn(&Group) -> bool,
) -> Result<Scores> {
    let mut vectors = MemberVectors::new(model, None, importance, seed);
    vectors.cache = saliences.vectors;
    score_groups(model, vectors, aggregation, scope)
}

impl MemberVectors<'_> {
    /// Computes the vectors of every (parameter, axis) that `groups` read and the cache lacks,
    /// spread over the machine's cores (each vector is computed as [`MemberVectors::get`] would,
    /// so the scores do not depend on the number of threads).
    fn prefetch(&mut self, groups: &[&Group]) {
        let mut wanted: Vec<(String, Vec<usize>, usize)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for g in groups {
            for ax in &g.axes {
                if let Some((name, shape)) = &ax.param {
                    let key = (name.clone(), ax.axis);
                    if !self.cache.contains_key(&key) && seen.insert(key) {
                        wanted.push((name.clone(), shape.clone(), ax.axis));
                    }
                }
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(wanted.len()).max(1);
        let this = &*self;
        // a vector that fails here is left out: `get` computes it again and reports the error
        // where scoring reads it, as without prefetching
        let computed: Vec<Vec<((String, usize), Vec<f64>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let wanted = &wanted;
                    scope.spawn(move || {
                        wanted
                            .iter()
                            .skip(t)
                            .step_by(threads)
                            .filter_map(|(name, shape, axis)| Some(((name.clone(), *axis), this.compute(name, shape, *axis).ok()?)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for part in computed {
            self.cache.extend(part);
        }
    }
}

fn score_groups(model: &Model, mut vectors: MemberVectors<'_>, aggregation: Aggregation, scope: &dyn Fn(&Group) -> bool) -> Result<Scores> {
    let groups = model.groups.as_ref().ok_or_else(|| PassError::Config("`score` needs the groups: run `group` first".into()))?;
    vectors.prefetch(&groups.iter().filter(|g| scope(g)).collect::<Vec<_>>());
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let mut units = Vec::with_capacity(group.units.len());
        let mut sub_units = Vec::with_capacity(group.units.len());
        if scope(group) {
            for unit in &group.units {
                units.push(score_elements(group, &unit.elements, &mut vectors, aggregation)?);
                sub_units.push(
                    unit.sub_units.iter().map(|s| score_elements(group, s, &mut vectors, aggregation)).collect::<Result<Vec<_>>>()?,
                );
            }
        }
        out.push(GroupScores { units, sub_units });
    }
    Ok(Scores { importance: vectors.importance, aggregation, groups: out })
}
