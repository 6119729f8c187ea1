//! Layers of different widths padded to one shared width, for the llama.cpp architectures that
//! build every layer with the first layer's widths (`gemma3`, `phi3`, `chatglm`): each layer's
//! heads are laid out in [`SharedWidths`] (key/value heads serving more query heads than a group
//! repeated, slots left over zero heads), its MLP channels followed by zero channels. Exact: a
//! zero query head attends to values an `attn_output` column of zeros discards, and a zero MLP
//! channel adds nothing through a zero `ffn_down` column.

/// The widths every layer of a file shares (for an architecture whose llama.cpp graph builds every
/// layer with one layer's widths): `kv` key/value heads of `group` query
/// heads each, `channels` MLP channels. Each layer's own heads are laid out in them by
/// [`SharedWidths::slots`]: a key/value head serving more than `group` query heads is
/// repeated (exact: its copies hold the same keys and values), slots left over are zero heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedWidths {
    /// Key/value heads per layer.
    pub kv: usize,
    /// Query heads per key/value head.
    pub group: usize,
    /// MLP channels per layer.
    pub channels: usize,
}

impl SharedWidths {
    /// The smallest widths that hold every layer: `copies[l]` the query heads each key/value head
    /// of layer `l` serves, `channels[l]` its MLP channels, channels in whole blocks of `block`
    /// (at least one block). Of the groupings holding as many query heads, the one with the
    /// fewest key/value heads (a smaller cache). `None` when no layer has a head.
    pub fn of(copies: &[Vec<usize>], channels: &[usize], block: usize) -> Option<SharedWidths> {
        let widest = copies.iter().flatten().copied().max().filter(|&c| c > 0)?;
        let kv_for = |group: usize| copies.iter().map(|c| c.iter().map(|&n| n.div_ceil(group)).sum::<usize>()).max().unwrap_or(0);
        let group = (1..=widest).rev().min_by_key(|&g| kv_for(g) * g)?;
        Some(SharedWidths { kv: kv_for(group), group, channels: shared_channels(channels, block) })
    }

    /// The widths that hold every layer (as [`SharedWidths::of`]) with exactly `heads` query
    /// heads, for a llama.cpp graph that fixes them (`phi3`: q as wide as the hidden state): of
    /// the groups dividing `heads` that hold every layer, the largest (the fewest key/value
    /// heads). `None` when a layer has more than `heads` query heads.
    pub fn with_heads(copies: &[Vec<usize>], channels: &[usize], block: usize, heads: usize) -> Option<SharedWidths> {
        let kv_for = |group: usize| copies.iter().map(|c| c.iter().map(|&n| n.div_ceil(group)).sum::<usize>()).max().unwrap_or(0);
        let group = (1..=heads).rev().filter(|g| heads.is_multiple_of(*g)).find(|&g| kv_for(g) <= heads / g)?;
        Some(SharedWidths { kv: heads / group, group, channels: shared_channels(channels, block) })
    }

    /// For llama.cpp's `arch` whose q is as wide as the hidden state (`phi3`, `chatglm`): its
    /// query heads (`hidden / head_dim`) and the widths every layer is padded to
    /// ([`SharedWidths::with_heads`]); else why not (hidden channels pruned), for an error.
    pub fn hidden_wide(arch: &str, hidden: usize, head_dim: usize, copies: &[Vec<usize>], channels: &[usize], block: usize) -> Result<(usize, SharedWidths), String> {
        let heads = hidden.checked_div(head_dim).filter(|h| h * head_dim == hidden).ok_or_else(|| {
            format!("llama.cpp's {arch} makes q as wide as the hidden state, and its {hidden} channels are not whole heads of {head_dim} (were hidden channels pruned?)")
        })?;
        let widest = copies.iter().map(|c| c.iter().sum::<usize>()).max().unwrap_or(0);
        let shared = SharedWidths::with_heads(copies, channels, block, heads).ok_or_else(|| {
            format!("llama.cpp's {arch} makes q as wide as the hidden state ({heads} heads of {head_dim}), and a layer has {widest} query heads (were hidden channels pruned?)")
        })?;
        Ok((heads, shared))
    }

    /// Query heads per layer.
    pub fn heads(&self) -> usize {
        self.kv * self.group
    }

    /// Where the heads of a layer whose key/value heads serve `copies` query heads go: for each
    /// key/value head written, the layer's key/value head (`None`: a zero head); for each query
    /// head written, the layer's query head (`None`: a zero head). Query heads are numbered
    /// as the model orders them, the first key/value head's first.
    pub fn slots(&self, copies: &[usize]) -> (Vec<Option<usize>>, Vec<Option<usize>>) {
        let (mut kv, mut q) = (Vec::with_capacity(self.kv), Vec::with_capacity(self.heads()));
        let mut first = 0;
        for (h, &c) in copies.iter().enumerate() {
            for chunk in 0..c.div_ceil(self.group) {
                kv.push(Some(h));
                let served = (c - chunk * self.group).min(self.group);
                q.extend((0..self.group).map(|s| (s < served).then_some(first + chunk * self.group + s)));
            }
            first += c;
        }
        kv.resize(self.kv, None);
        q.resize(self.heads(), None);
        (kv, q)
    }
}

/// The rows (or columns) of `heads` heads of `width` each, head by head (zeros for `None`);
/// `None` when that is every row in order (nothing to rearrange).
pub fn head_rows(heads: &[Option<usize>], width: usize) -> Option<Vec<Option<usize>>> {
    let rows: Vec<Option<usize>> = heads.iter().flat_map(|h| (0..width).map(move |i| h.map(|h| h * width + i))).collect();
    (!rows.iter().enumerate().all(|(i, r)| *r == Some(i))).then_some(rows)
}

/// What padding to [`SharedWidths`] added over a model's layers, counted as they are laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Padding {
    /// Zero query heads.
    pub heads: usize,
    /// Key/value heads added: zeros, or repeats of one serving more query heads.
    pub kv: usize,
    /// Zero MLP channels.
    pub channels: usize,
}

impl Padding {
    /// The slots of a layer whose key/value heads serve `copies` query heads and which has
    /// `channels` MLP channels ([`SharedWidths::slots`]), counting what they add.
    pub fn layer(&mut self, shared: &SharedWidths, copies: &[usize], channels: usize) -> (Vec<Option<usize>>, Vec<Option<usize>>) {
        let (kv, q) = shared.slots(copies);
        self.heads += q.iter().filter(|s| s.is_none()).count();
        self.kv += kv.len() - copies.len();
        self.channels += shared.channels.saturating_sub(channels);
        (kv, q)
    }

    /// The plan's line for people (`None` when nothing was added): the widths, why (`why`:
    /// llama.cpp's `arch` builds every layer with the first layer's widths), what was added over
    /// `layers` layers of heads of `head_dim` in a hidden state of `hidden`, and how much that
    /// is of the model's `own` parameters.
    pub fn note(&self, arch: &str, shared: &SharedWidths, layers: usize, head_dim: usize, hidden: usize, own: usize) -> Option<String> {
        if self.heads + self.kv + self.channels == 0 {
            return None;
        }
        let added = (self.heads + self.kv) * 2 * head_dim * hidden + self.channels * 3 * hidden;
        let parts: Vec<String> = [
            (self.heads, "zero query heads"),
            (self.kv, "key/value heads (zeros, or repeats of one serving more query heads)"),
            (self.channels, "zero MLP channels"),
        ]
        .iter()
        .filter(|(k, _)| *k > 0)
        .map(|(k, what)| format!("{k} {what}"))
        .collect();
        Some(format!(
            "gguf: every layer padded to {} query heads, {} key/value heads and {} MLP channels, as llama.cpp's {arch} builds every layer with the first layer's widths: {} over {layers} layers (exact; {added} parameters more, {:.1}% of the model's {own})",
            shared.heads(),
            shared.kv,
            shared.channels,
            parts.join(", "),
            100.0 * added as f64 / own.max(1) as f64
        ))
    }
}

/// The MLP channels every layer shares: the widest layer's, in whole blocks of `block` (at
/// least one block).
fn shared_channels(channels: &[usize], block: usize) -> usize {
    let block = block.max(1);
    channels.iter().copied().max().unwrap_or(0).next_multiple_of(block).max(block)
}

/// The map of `width` channels padded with zeros to `padded`: `None` when nothing is added.
pub fn padded_channels(width: usize, padded: usize) -> Option<Vec<Option<usize>>> {
    (padded > width).then(|| (0..width).map(Some).chain(std::iter::repeat_n(None, padded - width)).collect())
}

/// The rows of a fused projection whose parts are laid out one after another: each part's own
/// map (`None`: its rows in order, `rows` of them) shifted by the rows of the parts before it in
/// the model's tensor; `None` when that is every row in order.
pub fn fused_rows(parts: &[(Option<Vec<Option<usize>>>, usize)]) -> Option<Vec<Option<usize>>> {
    let mut out = Vec::new();
    let mut base = 0;
    for (map, rows) in parts {
        match map {
            Some(m) => out.extend(m.iter().map(|r| r.map(|r| r + base))),
            None => out.extend((base..base + rows).map(Some)),
        }
        base += rows;
    }
    (!out.iter().enumerate().all(|(i, r)| *r == Some(i)) || out.len() != base).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_share_the_fewest_heads_that_hold_each() {
        let w = |kv, group, channels| Some(SharedWidths { kv, group, channels });
        // Gemma 3 270M: one key/value head of four query heads, and a layer pruned to three
        assert_eq!(SharedWidths::of(&[vec![4], vec![3]], &[2048, 1600], 1), w(1, 4, 2048));
        // channels in whole blocks, at least one
        assert_eq!(SharedWidths::of(&[vec![4], vec![3]], &[0, 1600], 32), w(1, 4, 1600));
        assert_eq!(SharedWidths::of(&[vec![4], vec![3]], &[0, 1601], 32), w(1, 4, 1632));
        assert_eq!(SharedWidths::of(&[vec![4], vec![3]], &[0, 0], 32), w(1, 4, 32));
        // uneven groups: three key/value heads of one (one repeated) beat two of two
        assert_eq!(SharedWidths::of(&[vec![1, 2]], &[8], 1), w(3, 1, 8));
        // one layer of one group of four, another of four groups of one: four heads, not sixteen
        assert_eq!(SharedWidths::of(&[vec![4], vec![1, 1, 1, 1]], &[8, 8], 1), w(4, 1, 8));
        // equal head counts: the fewest key/value heads
        assert_eq!(SharedWidths::of(&[vec![2, 2], vec![2]], &[8, 8], 1), w(2, 2, 8));
        assert_eq!(SharedWidths::of(&[vec![], vec![]], &[8, 8], 1), None);
    }

    #[test]
    fn each_layer_s_heads_are_laid_out_in_the_shared_widths() {
        let shared = SharedWidths { kv: 2, group: 2, channels: 8 };
        // a key/value head of one query head: a zero query head after it
        assert_eq!(shared.slots(&[1, 2]), (vec![Some(0), Some(1)], vec![Some(0), None, Some(1), Some(2)]));
        // a key/value head of three: repeated, its third query head beside a zero one
        assert_eq!(shared.slots(&[3]), (vec![Some(0), Some(0)], vec![Some(0), Some(1), Some(2), None]));
        // a layer of one key/value head of one: a zero key/value head with two zero query heads
        assert_eq!(shared.slots(&[1]), (vec![Some(0), None], vec![Some(0), None, None, None]));
        // an emptied attention: zeros only
        assert_eq!(shared.slots(&[]), (vec![None, None], vec![None; 4]));
        // rows of heads of 2: in order (nothing to rearrange) or not
        assert_eq!(head_rows(&[Some(0), Some(1)], 2), None);
        assert_eq!(head_rows(&[Some(1), None], 2), Some(vec![Some(2), Some(3), None, None]));
        assert_eq!(head_rows(&[Some(0), None], 2), Some(vec![Some(0), Some(1), None, None]));
    }

    #[test]
    fn a_fixed_head_count_takes_the_fewest_key_value_heads_that_hold_each_layer() {
        let w = |kv, group, channels| Some(SharedWidths { kv, group, channels });
        // Phi-3's fixture: 4 heads; layers of two key/value heads of two, and of one of one
        assert_eq!(SharedWidths::with_heads(&[vec![2, 2], vec![1]], &[96, 40], 1, 4), w(2, 2, 96));
        // a key/value head serving three: groups of two do not hold it in two key/value heads
        assert_eq!(SharedWidths::with_heads(&[vec![3, 1]], &[8], 1, 4), w(4, 1, 8));
        assert_eq!(SharedWidths::with_heads(&[vec![]], &[8], 32, 4), w(1, 4, 32));
        assert_eq!(SharedWidths::with_heads(&[vec![4, 1]], &[8], 1, 4), None);
    }

    #[test]
    fn fused_parts_are_shifted_by_the_rows_before_them() {
        assert_eq!(fused_rows(&[(None, 2), (None, 1)]), None);
        assert_eq!(fused_rows(&[(padded_channels(1, 2), 1), (padded_channels(1, 2), 1)]), Some(vec![Some(0), None, Some(1), None]));
        assert_eq!(fused_rows(&[(None, 1), (Some(vec![Some(1), Some(0)]), 2)]), Some(vec![Some(0), Some(2), Some(1)]));
        assert_eq!(padded_channels(2, 2), None);
    }
}
