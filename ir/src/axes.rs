//! Axis mappings: how each op's input axes correspond to its output axes.
//!
//! The dependency analysis of the `group` pass reads nothing but these. A link says which
//! indices of one axis stand for the same structure (a channel, a head) as which indices of
//! another; an axis with no link is not coupled (a contraction's output, a softmax axis, the
//! mixed dimensions of a rotary embedding); a pinned axis may never be pruned.

use crate::types::{Dim, Shape};

/// One side of an op: its `i`-th input or `j`-th output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    /// The op's input at this position.
    Input(usize),
    /// The op's output at this position.
    Output(usize),
}

/// An axis of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortAxis {
    /// The port.
    pub port: Port,
    /// The axis of its value.
    pub axis: usize,
}

impl PortAxis {
    /// Axis `axis` of input `i`.
    pub fn input(i: usize, axis: usize) -> PortAxis {
        PortAxis { port: Port::Input(i), axis }
    }
    /// Axis `axis` of output `j`.
    pub fn output(j: usize, axis: usize) -> PortAxis {
        PortAxis { port: Port::Output(j), axis }
    }
}

/// How indices of two axes correspond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxisLink {
    /// Index `i` of `a` is index `i` of `b`: element-wise ops, the two sides of a
    /// contraction, a weight's output axis and the output's feature axis.
    Same(PortAxis, PortAxis),
    /// Index `i` of `part` is index `offset + i` of `whole`: concat, slice, split.
    Offset {
        /// The smaller axis.
        part: PortAxis,
        /// The axis it lies in.
        whole: PortAxis,
        /// Where it starts in `whole`.
        offset: usize,
    },
    /// `flat` is `outer × inner` laid out outer-major (a reshape into heads × head_dim, or
    /// back): index `i` of `flat` belongs to index `i / inner` of `outer`. Pruning `outer`'s
    /// index `k` removes `flat`'s indices `k·inner .. (k+1)·inner`.
    Split {
        /// The flat axis.
        flat: PortAxis,
        /// The outer axis of the factorisation.
        outer: PortAxis,
        /// The product of the inner sizes.
        inner: usize,
    },
    /// Index `i` of `source` is repeated `copies[i]` times, consecutively, in `target`
    /// (grouped-query attention's shared key/value heads): see [`repeat_ranges`]. Directed:
    /// pruning a source index removes its copies; pruning a copy does not remove the source.
    Repeat {
        /// The repeated axis.
        source: PortAxis,
        /// The axis holding the copies.
        target: PortAxis,
        /// Copies of each source index.
        copies: Vec<usize>,
    },
}

/// Where the copies of each source index lie in the target of a repeat: index `i` of the
/// source becomes the range `ranges[i]` (consecutive, in source order).
pub fn repeat_ranges(copies: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut start = 0;
    copies
        .iter()
        .map(|&c| {
            let r = start..start + c;
            start += c;
            r
        })
        .collect()
}

/// Everything an op says about its axes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AxisMapping {
    /// Correspondences between axes.
    pub links: Vec<AxisLink>,
    /// Axes that may never be pruned (indexed tables, graph inputs and outputs).
    pub pinned: Vec<PortAxis>,
}

impl AxisMapping {
    /// Link `a` and `b` index for index.
    pub fn same(&mut self, a: PortAxis, b: PortAxis) {
        self.links.push(AxisLink::Same(a, b));
    }
    /// Pin an axis.
    pub fn pin(&mut self, a: PortAxis) {
        self.pinned.push(a);
    }
}

/// How the axes of a reshape from `from` to `to` correspond, found by aligning the products
/// of their sizes. Axes of size 1 take part in no link; a symbol matches only itself.
/// Returns `None` when the shapes cannot be aligned.
pub fn reshape_links(from: &Shape, to: &Shape, input: usize, output: usize) -> Option<Vec<AxisLink>> {
    let a: Vec<(usize, &Dim)> = from.0.iter().enumerate().filter(|(_, d)| **d != Dim::Fixed(1)).collect();
    let b: Vec<(usize, &Dim)> = to.0.iter().enumerate().filter(|(_, d)| **d != Dim::Fixed(1)).collect();
    let mut links = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ai, ad) = a[i];
        let (bj, bd) = b[j];
        if ad == bd {
            links.push(AxisLink::Same(PortAxis::input(input, ai), PortAxis::output(output, bj)));
            i += 1;
            j += 1;
            continue;
        }
        let (an, bn) = (ad.fixed()?, bd.fixed()?);
        if an > bn {
            // input axis ai splits into output axes bj, bj+1, ...
            let mut prod = bn;
            let mut k = j + 1;
            while prod < an {
                prod *= b.get(k)?.1.fixed()?;
                k += 1;
            }
            if prod != an {
                return None;
            }
            links.push(AxisLink::Split {
                flat: PortAxis::input(input, ai),
                outer: PortAxis::output(output, bj),
                inner: an / bn,
            });
            i += 1;
            j = k;
        } else {
            // output axis bj merges input axes ai, ai+1, ...
            let mut prod = an;
            let mut k = i + 1;
            while prod < bn {
                prod *= a.get(k)?.1.fixed()?;
                k += 1;
            }
            if prod != bn {
                return None;
            }
            links.push(AxisLink::Split {
                flat: PortAxis::output(output, bj),
                outer: PortAxis::input(input, ai),
                inner: bn / an,
            });
            i = k;
            j += 1;
        }
    }
    if i == a.len() && j == b.len() {
        Some(links)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bsd(n: usize) -> Shape {
        Shape(vec![Dim::batch(), Dim::seq(), Dim::Fixed(n)])
    }

    #[test]
    fn split_into_heads_links_flat_to_outer() {
        let to = Shape(vec![Dim::batch(), Dim::seq(), Dim::Fixed(8), Dim::Fixed(16)]);
        let links = reshape_links(&bsd(128), &to, 0, 0).unwrap();
        assert_eq!(
            links,
            vec![
                AxisLink::Same(PortAxis::input(0, 0), PortAxis::output(0, 0)),
                AxisLink::Same(PortAxis::input(0, 1), PortAxis::output(0, 1)),
                AxisLink::Split { flat: PortAxis::input(0, 2), outer: PortAxis::output(0, 2), inner: 16 },
            ]
        );
    }

    #[test]
    fn merge_heads_links_outer_to_flat() {
        let from = Shape(vec![Dim::batch(), Dim::seq(), Dim::Fixed(4), Dim::Fixed(3), Dim::Fixed(16)]);
        let links = reshape_links(&from, &bsd(192), 0, 0).unwrap();
        assert_eq!(
            links[2],
            AxisLink::Split { flat: PortAxis::output(0, 2), outer: PortAxis::input(0, 2), inner: 48 }
        );
    }

    #[test]
    fn incompatible_shapes_do_not_align() {
        assert!(reshape_links(&bsd(10), &bsd(12), 0, 0).is_none());
        let to = Shape(vec![Dim::batch(), Dim::Fixed(10)]);
        assert!(reshape_links(&bsd(10), &to, 0, 0).is_none());
    }
}
