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

use std::collections::HashMap;

use prunec_ir::rng::SplitMix64;
use prunec_ir::{CalibrationStats, Element, Group, Model};

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

/// The scores of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupScores {
    /// One score per unit.
    pub units: Vec<f64>,
    /// One score per sub-unit, per unit.
    pub sub_units: Vec<Vec<f64>>,
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

/// Per-index importance of parameters' axes, computed once each.
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
        let stride: usize = shape[axis + 1..].iter().product();
        let index = |i: usize| (i / stride) % size;
        let g = if self.importance.needs_gradient() { Some(self.stat(self.stats.map(|s| &s.grad), "gradient", name)?) } else { None };
        let f = if self.importance.needs_fisher() {
            Some(self.stat(self.stats.and_then(|s| s.fisher.as_ref()), "Fisher diagonal", name)?)
        } else {
            None
        };
        for (t, what) in [(g, "gradient"), (f, "Fisher diagonal")] {
            if let Some(t) = t {
                if t.len() != w.len() {
                    return Err(PassError::Config(format!("the {what} of `{name}` has {} values for {}", t.len(), w.len())));
                }
            }
        }
        let mut out = vec![0.0f64; size];
        match self.importance {
            Importance::TaylorVector => {
                let g = g.unwrap_or(&[]);
                for (i, (&w, &g)) in w.iter().zip(g).enumerate() {
                    out[index(i)] += f64::from(w * g);
                }
                out.iter_mut().for_each(|v| *v = v.abs());
            }
            _ => {
                for (i, &wi) in w.iter().enumerate() {
                    let s = match self.importance {
                        Importance::L1 => wi.abs(),
                        Importance::L2 => wi * wi,
                        Importance::TaylorElement1 => (wi * g.map_or(0.0, |g| g[i])).abs(),
                        Importance::TaylorElement2 => (wi * f.map_or(0.0, |f| f[i]) * wi).abs(),
                        Importance::TaylorMix => {
                            (wi * g.map_or(0.0, |g| g[i]) - 0.5 * wi * f.map_or(0.0, |f| f[i]) * wi).abs()
                        }
                        Importance::Random | Importance::TaylorVector => 0.0,
                    };
                    out[index(i)] += f64::from(s);
                }
            }
        }
        Ok(out)
    }
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
    let groups = model.groups.as_ref().ok_or_else(|| PassError::Config("`score` needs the groups: run `group` first".into()))?;
    let mut vectors = MemberVectors::new(model, stats, importance, seed);
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let mut units = Vec::with_capacity(group.units.len());
        let mut sub_units = Vec::with_capacity(group.units.len());
        for unit in &group.units {
            units.push(score_elements(group, &unit.elements, &mut vectors, aggregation)?);
            sub_units.push(
                unit.sub_units.iter().map(|s| score_elements(group, s, &mut vectors, aggregation)).collect::<Result<Vec<_>>>()?,
            );
        }
        out.push(GroupScores { units, sub_units });
    }
    Ok(Scores { importance, aggregation, groups: out })
}
