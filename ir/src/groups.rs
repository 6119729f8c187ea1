//! Dependency groups: the coupled structures the `group` pass finds, kept as a side table of
//! the model. A group is a set of axes (of values and parameters) whose indices must be
//! pruned together; it is cut into units, the smallest sets that can be removed alone
//! (an attention head, an MLP channel, a hidden channel), and a unit may hold finer
//! sub-units that can also go alone (query heads sharing one key/value head).

use std::fmt;
use std::ops::Range;

use crate::graph::ValueId;

/// What a group is, told from the ops it passes through (never from names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKind {
    /// Heads of an attention op (the head axis of its operands).
    Attention,
    /// Channels between linear ops that pass through no attention and no embedding.
    Mlp,
    /// Channels of the stream an embedding feeds (the hidden size).
    Hidden,
}

impl GroupKind {
    /// The name used in summaries and dumps.
    pub fn name(self) -> &'static str {
        match self {
            GroupKind::Attention => "attention",
            GroupKind::Mlp => "mlp",
            GroupKind::Hidden => "hidden",
        }
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One axis taking part in a group. Its indices are cut into elements of `granularity`
/// consecutive indices; element `k` is indices `k·granularity .. (k+1)·granularity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAxis {
    /// The value whose axis this is.
    pub value: ValueId,
    /// The axis.
    pub axis: usize,
    /// Its size.
    pub size: usize,
    /// Indices per element.
    pub granularity: usize,
    /// The parameter, when the value is a parameter: its name and shape.
    pub param: Option<(String, Vec<usize>)>,
}

impl GroupAxis {
    /// The index range of element `k`.
    pub fn indices(&self, k: u32) -> Range<usize> {
        let k = k as usize;
        k * self.granularity..(k + 1) * self.granularity
    }
}

/// An element of a group: element `index` of axis `axis` (an index into [`Group::axes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Element {
    /// Which of the group's axes.
    pub axis: u32,
    /// Which element of that axis.
    pub index: u32,
}

/// The smallest set of elements that can be removed alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unit {
    /// Its elements, sorted.
    pub elements: Vec<Element>,
    /// Strict subsets that can also be removed alone (each sorted), in order.
    pub sub_units: Vec<Vec<Element>>,
}

/// A dependency group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// What it is.
    pub kind: GroupKind,
    /// The repeated block (decoder layer) all its parameters belong to, if one.
    pub block: Option<u32>,
    /// The axes taking part, parameters first, each sorted by value then axis.
    pub axes: Vec<GroupAxis>,
    /// Its units, in order of their first element.
    pub units: Vec<Unit>,
}

/// Merges sorted indices into ranges.
fn ranges(mut idx: Vec<usize>) -> Vec<Range<usize>> {
    idx.sort_unstable();
    idx.dedup();
    let mut out: Vec<Range<usize>> = Vec::new();
    for i in idx {
        match out.last_mut() {
            Some(r) if r.end == i => r.end += 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

impl Group {
    /// The indices of axis `axis` that `elements` cover, as sorted ranges.
    pub fn indices_on(&self, elements: &[Element], axis: usize) -> Vec<Range<usize>> {
        let Some(ax) = self.axes.get(axis) else { return Vec::new() };
        ranges(
            elements
                .iter()
                .filter(|e| e.axis as usize == axis)
                .flat_map(|e| ax.indices(e.index))
                .collect(),
        )
    }

    /// How many indices of axis `axis` `elements` cover.
    fn count_on(&self, elements: &[Element], axis: usize) -> usize {
        let mut on = elements.iter().filter(|e| e.axis as usize == axis);
        match (on.next(), on.next()) {
            (None, _) => 0,
            // one element (a unit's usual case): its range, without sorting indices
            (Some(e), None) => self.axes.get(axis).map_or(0, |ax| ax.indices(e.index).len()),
            _ => self.indices_on(elements, axis).iter().map(Range::len).sum(),
        }
    }

    /// Parameter elements (numbers) that removing `elements` removes.
    pub fn params_in(&self, elements: &[Element]) -> usize {
        self.params_in_of(&self.param_axes(), elements)
    }

    /// Each parameter the axes belong to, once, in the order of its first axis: its shape (as
    /// that axis gives it) and the axes on it.
    fn param_axes(&self) -> Vec<(&[usize], Vec<usize>)> {
        let mut out: Vec<(&[usize], Vec<usize>)> = Vec::new();
        let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (k, a) in self.axes.iter().enumerate() {
            let Some((name, shape)) = &a.param else { continue };
            let i = *at.entry(name.as_str()).or_insert_with(|| {
                out.push((shape.as_slice(), Vec::new()));
                out.len() - 1
            });
            out[i].1.push(k);
        }
        out
    }

    /// [`Group::params_in`] over the parameters of [`Group::param_axes`].
    fn params_in_of(&self, params: &[(&[usize], Vec<usize>)], elements: &[Element]) -> usize {
        // indices of each axis that `elements` cover, in one pass over them
        let mut first: Vec<Option<&Element>> = vec![None; self.axes.len()];
        let mut several = vec![false; self.axes.len()];
        for e in elements {
            match first.get_mut(e.axis as usize) {
                Some(slot @ None) => *slot = Some(e),
                Some(Some(_)) => several[e.axis as usize] = true,
                None => {}
            }
        }
        let count = |k: usize| match first[k] {
            None => 0,
            Some(_) if several[k] => self.count_on(elements, k),
            Some(e) => self.axes[k].indices(e.index).len(),
        };
        let mut total = 0;
        for (shape, axes) in params {
            // indices removed per dimension, over every axis of this parameter
            let mut removed = vec![0usize; shape.len()];
            for &k in axes {
                let axis = self.axes[k].axis;
                if axis < shape.len() {
                    removed[axis] += count(k);
                }
            }
            // elements of this parameter with at least one coordinate removed
            let kept: usize = shape.iter().zip(&removed).map(|(&size, &r)| size.saturating_sub(r)).product();
            total += shape.iter().product::<usize>() - kept;
        }
        total
    }

    /// Parameter elements per unit: `(min, max)` over the units.
    pub fn params_per_unit(&self) -> (usize, usize) {
        let params = self.param_axes();
        let counts: Vec<usize> = self.units.iter().map(|u| self.params_in_of(&params, &u.elements)).collect();
        (counts.iter().copied().min().unwrap_or(0), counts.iter().copied().max().unwrap_or(0))
    }

    /// Sub-units per unit: `(min, max)`.
    pub fn sub_units_per_unit(&self) -> (usize, usize) {
        let counts: Vec<usize> = self.units.iter().map(|u| u.sub_units.len()).collect();
        (counts.iter().copied().min().unwrap_or(0), counts.iter().copied().max().unwrap_or(0))
    }

    /// Describes which indices of axis `axis` each unit covers: `u*32+[0,32)` when the
    /// pattern is the same for every unit, shifted; otherwise the first units one by one.
    pub fn describe_axis(&self, axis: usize) -> String {
        let per_unit: Vec<Vec<Range<usize>>> = self.units.iter().map(|u| self.indices_on(&u.elements, axis)).collect();
        let Some(first) = per_unit.first() else { return String::new() };
        let stride = per_unit.get(1).and_then(|r| r.first()).zip(first.first()).map(|(b, a)| b.start as isize - a.start as isize);
        let affine = per_unit.iter().enumerate().all(|(u, rs)| {
            rs.len() == first.len()
                && rs.iter().zip(first).all(|(r, f)| {
                    let s = stride.unwrap_or(0) * u as isize;
                    r.start as isize == f.start as isize + s && r.end as isize == f.end as isize + s
                })
        });
        let fmt_ranges = |rs: &[Range<usize>]| rs.iter().map(|r| format!("[{},{})", r.start, r.end)).collect::<Vec<_>>().join(" ");
        if affine {
            match stride {
                Some(1) if first.len() == 1 && first[0] == (0..1) => "u".to_string(),
                Some(s) if self.units.len() > 1 => format!("u*{s}+{}", fmt_ranges(first)),
                _ => fmt_ranges(first),
            }
        } else {
            let shown: Vec<String> = per_unit.iter().take(4).enumerate().map(|(u, rs)| format!("u{u}:{}", fmt_ranges(rs))).collect();
            let more = if per_unit.len() > 4 { " ..." } else { "" };
            format!("{}{more}", shown.join(" "))
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pmin, pmax) = self.params_per_unit();
        let (smin, smax) = self.sub_units_per_unit();
        write!(f, "{}", self.kind)?;
        if let Some(b) = self.block {
            write!(f, ", block {b}")?;
        }
        write!(f, ", {} units", self.units.len())?;
        if smax > 0 {
            if smin == smax {
                write!(f, " of {smax} sub-units")?;
            } else {
                write!(f, " of {smin}..{smax} sub-units")?;
            }
        }
        if pmin == pmax {
            writeln!(f, ", {pmin} params per unit")?;
        } else {
            writeln!(f, ", {pmin}..{pmax} params per unit")?;
        }
        for (k, ax) in self.axes.iter().enumerate() {
            let Some((name, _)) = &ax.param else { continue };
            write!(f, "    {name}[{}]  {}", ax.axis, self.describe_axis(k))?;
            if let Some(sub) = self.units.first().and_then(|u| u.sub_units.first()) {
                let n: usize = self.indices_on(sub, k).iter().map(|r| r.len()).sum();
                if n > 0 {
                    write!(f, "  sub-unit {n}")?;
                }
            }
            writeln!(f)?;
        }
        let values = self.axes.iter().filter(|a| a.param.is_none()).count();
        writeln!(f, "    (through {values} value axes)")
    }
}
