//! 4-bit block quantization as onnxruntime stores it for `MatMulNBits` (and
//! `GatherBlockQuantized` over the same data): a weight `W[N, K]` is cut into blocks of
//! `block_size` consecutive elements along `K`; each block has a scale and a zero point
//! (default 8); element `k` of row `n` is the low (even `k`) or high (odd `k`) nibble of byte
//! `n·blocks·block/2 + k/2`, and `W[n, k] = (q − zp)·scale`.
//!
//! [`dequantize`] reads it; [`quantize`] writes it as onnxruntime's quantizer does
//! (`MlasQuantizeBlockwise`, round to nearest): symmetric blocks take
//! `scale = −v/8` for the value `v` of largest magnitude, asymmetric ones
//! `scale = (max(hi, 0) − min(lo, 0))/15` and `zp = round(−min(lo, 0)/scale)`, then
//! `q = clamp(round(w/scale + zp), 0, 15)`. [`select`] takes rows or columns of a quantized
//! weight: rows and whole blocks are copied; a block that loses some of its columns is
//! requantized.

/// A 4-bit weight as one op reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockQuant {
    /// The packed data's initializer.
    pub data: String,
    /// Rows (`N`, the outputs).
    pub rows: usize,
    /// Columns (`K`, the inputs).
    pub cols: usize,
    /// Bits per element (4).
    pub bits: usize,
    /// Elements per block along `K`.
    pub block_size: usize,
    /// The scales' initializer (`[N·blocks]` or `[N, blocks]`).
    pub scales: String,
    /// The zero points' initializer (4-bit packed, `[N, ceil(blocks/2)]`), if any.
    pub zero_points: Option<String>,
}

/// A quantized weight's data: packed elements, scales, packed zero points.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// `[rows, blocks, block/2]` bytes.
    pub data: Vec<u8>,
    /// `[rows, blocks]`.
    pub scales: Vec<f32>,
    /// `[rows, ceil(blocks/2)]` bytes, when the weight has zero points.
    pub zero_points: Option<Vec<u8>>,
}

fn blocks(cols: usize, block: usize) -> usize {
    cols.div_ceil(block.max(1))
}

fn nibble(bytes: &[u8], i: usize) -> u8 {
    (bytes[i / 2] >> ((i % 2) * 4)) & 0xf
}

fn set_nibble(bytes: &mut [u8], i: usize, v: u8) {
    let shift = (i % 2) * 4;
    bytes[i / 2] = (bytes[i / 2] & !(0xf << shift)) | ((v & 0xf) << shift);
}

/// Checks the sizes of `p` against a `rows × cols` weight of blocks of `block`.
fn check(p: &Packed, rows: usize, cols: usize, block: usize) -> Result<(), String> {
    let nb = blocks(cols, block);
    if block == 0 || !block.is_multiple_of(2) {
        return Err(format!("a block size of {block}"));
    }
    if p.data.len() != rows * nb * block / 2 {
        return Err(format!("{} bytes of data for {rows} × {cols} in blocks of {block}", p.data.len()));
    }
    if p.scales.len() != rows * nb {
        return Err(format!("{} scales for {rows} × {nb} blocks", p.scales.len()));
    }
    if let Some(z) = &p.zero_points {
        if z.len() != rows * nb.div_ceil(2) {
            return Err(format!("{} bytes of zero points for {rows} × {nb} blocks", z.len()));
        }
    }
    Ok(())
}

/// The weight `[rows, cols]` (row-major) that `p` holds.
pub fn dequantize(p: &Packed, rows: usize, cols: usize, block: usize) -> Result<Vec<f32>, String> {
    check(p, rows, cols, block)?;
    let nb = blocks(cols, block);
    let mut w = Vec::with_capacity(rows * cols);
    for n in 0..rows {
        let row = &p.data[n * nb * block / 2..(n + 1) * nb * block / 2];
        for k in 0..cols {
            let b = k / block;
            let zp = match &p.zero_points {
                Some(z) => nibble(&z[n * nb.div_ceil(2)..], b),
                None => 8,
            };
            let q = nibble(row, k);
            w.push((f32::from(q) - f32::from(zp)) * p.scales[n * nb + b]);
        }
    }
    Ok(w)
}

/// `w[rows, cols]` quantized in blocks of `block` along the columns, with zero points when
/// `asymmetric`, as onnxruntime's `MlasQuantizeBlockwise` does.
pub fn quantize(w: &[f32], rows: usize, cols: usize, block: usize, asymmetric: bool) -> Packed {
    let nb = blocks(cols, block);
    let mut data = vec![0u8; rows * nb * block / 2];
    let mut scales = vec![0f32; rows * nb];
    let mut zero_points = asymmetric.then(|| vec![0u8; rows * nb.div_ceil(2)]);
    for n in 0..rows {
        for b in 0..nb {
            let values = &w[n * cols + b * block..n * cols + ((b + 1) * block).min(cols)];
            let (lo, hi) = values.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let (scale, zp) = if asymmetric {
                let (lo, hi) = (lo.min(0.0), hi.max(0.0));
                let scale = (hi - lo) / 15.0;
                let zp = if scale != 0.0 { -lo / scale } else { lo };
                (scale, zp.round().clamp(0.0, 15.0) as u8)
            } else {
                let v = if hi.abs() > lo.abs() { hi } else { lo };
                (-v / 8.0, 8)
            };
            scales[n * nb + b] = scale;
            if let Some(z) = zero_points.as_mut() {
                set_nibble(&mut z[n * nb.div_ceil(2)..], b, zp);
            }
            let reciprocal = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            let row = &mut data[n * nb * block / 2..(n + 1) * nb * block / 2];
            for (j, &v) in values.iter().enumerate() {
                let q = (v * reciprocal + f32::from(zp)).round().clamp(0.0, 15.0) as u8;
                set_nibble(row, b * block + j, q);
            }
        }
    }
    Packed { data, scales, zero_points }
}

/// Rows `keep_rows` and columns `keep_cols` (ascending) of the quantized `rows × cols`
/// weight `p`. Rows are copied; the blocks of a row whose columns are all kept, and that stay
/// whole blocks at the same offsets within the new row's block grid, are copied; every other
/// block is requantized from the dequantized values (symmetric, or asymmetric when `p` has
/// zero points). Also returns how many blocks were requantized per row.
pub fn select(p: &Packed, rows: usize, cols: usize, block: usize, keep_rows: &[usize], keep_cols: &[usize]) -> Result<(Packed, usize), String> {
    check(p, rows, cols, block)?;
    if keep_rows.iter().any(|&r| r >= rows) || keep_cols.iter().any(|&c| c >= cols) {
        return Err("an index past the weight's size".into());
    }
    let (nb, new_cols) = (blocks(cols, block), keep_cols.len());
    let new_nb = blocks(new_cols, block);
    // block `j` of the new grid is old block `b` copied when its columns are exactly the
    // old block's, in order
    let copied: Vec<Option<usize>> = (0..new_nb)
        .map(|j| {
            let cols_j = &keep_cols[j * block..((j + 1) * block).min(new_cols)];
            let b = cols_j.first()? / block;
            let whole = cols_j.len() == block.min(cols - b * block)
                && cols_j.iter().enumerate().all(|(i, &c)| c == b * block + i);
            whole.then_some(b)
        })
        .collect();
    let requantized = copied.iter().filter(|c| c.is_none()).count();
    let asymmetric = p.zero_points.is_some();
    let dense = if requantized > 0 { Some(dequantize(p, rows, cols, block)?) } else { None };
    let mut data = vec![0u8; keep_rows.len() * new_nb * block / 2];
    let mut scales = vec![0f32; keep_rows.len() * new_nb];
    let mut zero_points = asymmetric.then(|| vec![0u8; keep_rows.len() * new_nb.div_ceil(2)]);
    for (i, &r) in keep_rows.iter().enumerate() {
        for (j, c) in copied.iter().enumerate() {
            let out = &mut data[(i * new_nb + j) * block / 2..(i * new_nb + j + 1) * block / 2];
            match (c, &dense) {
                (Some(b), _) => {
                    out.copy_from_slice(&p.data[(r * nb + b) * block / 2..(r * nb + b + 1) * block / 2]);
                    scales[i * new_nb + j] = p.scales[r * nb + b];
                    if let (Some(z), Some(old)) = (zero_points.as_mut(), &p.zero_points) {
                        set_nibble(&mut z[i * new_nb.div_ceil(2)..], j, nibble(&old[r * nb.div_ceil(2)..], *b));
                    }
                }
                (None, Some(dense)) => {
                    let values: Vec<f32> = keep_cols[j * block..((j + 1) * block).min(new_cols)].iter().map(|&c| dense[r * cols + c]).collect();
                    let q = quantize(&values, 1, values.len(), block, asymmetric);
                    out.copy_from_slice(&q.data);
                    scales[i * new_nb + j] = q.scales[0];
                    if let (Some(z), Some(qz)) = (zero_points.as_mut(), &q.zero_points) {
                        set_nibble(&mut z[i * new_nb.div_ceil(2)..], j, nibble(qz, 0));
                    }
                }
                (None, None) => return Err("internal: a block to requantize without its values".into()),
            }
        }
    }
    Ok((Packed { data, scales, zero_points }, requantized))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols).map(|i| (((i * 37) % 29) as f32 - 14.0) / 7.0).collect()
    }

    #[test]
    fn quantize_then_dequantize_is_within_a_step() {
        for asymmetric in [false, true] {
            let (rows, cols, block) = (3, 40, 16);
            let w = weight(rows, cols);
            let p = quantize(&w, rows, cols, block, asymmetric);
            let back = dequantize(&p, rows, cols, block).unwrap();
            let mut max_steps = 0f32;
            for n in 0..rows {
                for k in 0..cols {
                    let scale = p.scales[n * 3 + k / block].abs();
                    // half a step from rounding; a whole one where the range's end is clamped
                    // to 15 (symmetric blocks map [-8s, 7s], asymmetric ones round the zero point)
                    let steps = (back[n * cols + k] - w[n * cols + k]).abs() / scale;
                    assert!(steps <= 1.0 + 1e-5, "{asymmetric} {n} {k}: {steps}");
                    max_steps = max_steps.max(steps);
                }
            }
            assert!(max_steps > 0.0);
            if !asymmetric {
                // a symmetric block's largest magnitude comes back exactly: it quantizes to itself
                assert_eq!(quantize(&back, rows, cols, block, asymmetric), p);
            }
        }
    }

    #[test]
    fn symmetric_scale_is_the_largest_magnitude_over_minus_eight() {
        let w = [0.5f32, -2.0, 1.0, 0.0];
        let p = quantize(&w, 1, 4, 4, false);
        assert_eq!(p.scales, [0.25]);
        // -2 / 0.25 + 8 = 0; 0.5 / 0.25 + 8 = 10
        assert_eq!(nibble(&p.data, 1), 0);
        assert_eq!(nibble(&p.data, 0), 10);
    }

    #[test]
    fn aligned_selections_copy_blocks_and_others_requantize() {
        let (rows, cols, block) = (4, 64, 16);
        let p = quantize(&weight(rows, cols), rows, cols, block, false);
        let dense = dequantize(&p, rows, cols, block).unwrap();
        // rows 0 and 2, blocks 1 and 3 whole: copied bit for bit
        let keep_cols: Vec<usize> = (16..32).chain(48..64).collect();
        let (s, requantized) = select(&p, rows, cols, block, &[0, 2], &keep_cols).unwrap();
        assert_eq!(requantized, 0);
        let got = dequantize(&s, 2, 32, block).unwrap();
        for (i, &r) in [0, 2].iter().enumerate() {
            for (j, &c) in keep_cols.iter().enumerate() {
                assert_eq!(got[i * 32 + j], dense[r * cols + c]);
            }
        }
        // one column out of block 0: that block and the ones after it are requantized
        let keep_cols: Vec<usize> = (1..64).collect();
        let (s, requantized) = select(&p, rows, cols, block, &[1], &keep_cols).unwrap();
        assert_eq!(requantized, 4);
        let got = dequantize(&s, 1, 63, block).unwrap();
        for (j, &c) in keep_cols.iter().enumerate() {
            let scale = s.scales[j / block].abs();
            assert!((got[j] - dense[cols + c]).abs() <= 0.5 * scale + 1e-6);
        }
    }

    #[test]
    fn sizes_are_checked() {
        let p = quantize(&weight(2, 32), 2, 32, 16, true);
        assert!(dequantize(&p, 3, 32, 16).is_err());
        assert!(select(&p, 2, 32, 16, &[2], &[0]).is_err());
    }
}
