//! Writing a pruned 4-bit weight (`MatMulNBits`) back: the rows and columns the pruned
//! parameter kept are found in the original weight (the IR holds the dequantized values, so
//! a kept row or column is found bit for bit); whole blocks are copied, blocks that lost
//! columns are requantized as onnxruntime's quantizer does ([`super::super::quant`]); the
//! readers' `N` and `K` attributes follow. A weight whose values changed otherwise (merged
//! adapters) is requantized whole.

use bytes::Bytes;

use super::super::proto::tensor_proto::{DataLocation, DataType};
use super::super::proto::TensorProto;
use super::super::quant::{self, BlockQuant, Packed};
use super::super::OnnxFile;
use super::bad;
use crate::error::Result;

/// The `MatMulNBits` nodes reading `data` as their weight, by index.
fn readers(file: &OnnxFile, data: &str) -> Vec<usize> {
    file.graph()
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.domain == "com.microsoft" && n.op_type == "MatMulNBits" && n.input.get(1).map(String::as_str) == Some(data))
        .map(|(i, _)| i)
        .collect()
}

/// Whether something other than `MatMulNBits` reads `data` (a `Reshape` for
/// `GatherBlockQuantized`).
fn other_readers(file: &OnnxFile, data: &str) -> bool {
    file.graph().node.iter().any(|n| n.op_type != "MatMulNBits" && n.input.iter().any(|i| i == data))
}

/// `MatMulNBits`'s description of its weight.
fn block_quant(file: &OnnxFile, node: usize, data: &str) -> Result<BlockQuant> {
    let path = file.path().to_path_buf();
    let n = file.graph().node.get(node).ok_or_else(|| bad(&path, data, "its reader is gone"))?;
    let attr = |name: &str| -> Result<usize> {
        let v = file.attr_int(n, name)?.ok_or_else(|| bad(&path, data, format!("`{}` has no attribute `{name}`", n.name)))?;
        usize::try_from(v).map_err(|_| bad(&path, data, format!("attribute `{name}` is {v}")))
    };
    Ok(BlockQuant {
        data: data.to_string(),
        rows: attr("N")?,
        cols: attr("K")?,
        bits: attr("bits")?,
        block_size: attr("block_size")?,
        scales: n.input.get(2).cloned().unwrap_or_default(),
        zero_points: n.input.get(3).filter(|z| !z.is_empty()).cloned(),
    })
}

/// Which of the `n` original items (rows or columns, by `original`) the `m` pruned ones (by
/// `pruned`) are, in order: each pruned item is the next equal original one.
fn kept(n: usize, m: usize, original: impl Fn(usize) -> Vec<f32>, pruned: impl Fn(usize) -> Vec<f32>) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity(m);
    let mut j = 0;
    for i in 0..m {
        let want = pruned(i);
        while j < n && original(j) != want {
            j += 1;
        }
        if j == n {
            return None;
        }
        out.push(j);
        j += 1;
    }
    Some(out)
}

/// Writes the pruned values `values` (shape `shape`, `[N', K']`) of the 4-bit weight `data`:
/// the new data, scales and zero points (returned), and the readers' `N`/`K` set.
pub(super) fn write(file: &mut OnnxFile, data: &str, shape: &[usize], values: &[f32]) -> Result<Vec<TensorProto>> {
    let path = file.path().to_path_buf();
    let nodes = readers(file, data);
    let first = *nodes.first().ok_or_else(|| bad(&path, data, "a packed weight that no MatMulNBits reads"))?;
    let q = block_quant(file, first, data)?;
    let [rows, cols] = shape else { return Err(bad(&path, data, format!("a pruned weight of shape {shape:?}"))) };
    let (rows, cols) = (*rows, *cols);
    if q.bits != 4 {
        return Err(bad(&path, data, format!("{}-bit weights", q.bits)));
    }
    let packed = file.packed_weight(&q)?;
    let block = q.block_size;
    let original = quant::dequantize(&packed, q.rows, q.cols, block).map_err(|r| bad(&path, data, r))?;
    if (rows, cols) == (q.rows, q.cols) && original == values {
        return Ok(vec![]);
    }
    if (rows, cols) != (q.rows, q.cols) && other_readers(file, data) {
        return Err(bad(&path, data, "a pruned 4-bit weight that is also a quantized embedding table: not written yet"));
    }
    // the kept rows (all columns kept) or columns (all rows kept); else requantize everything
    let row = |w: &[f32], width: usize, i: usize| w[i * width..(i + 1) * width].to_vec();
    let column = |w: &[f32], width: usize, j: usize| (0..rows).map(|i| w[i * width + j]).collect::<Vec<f32>>();
    let selection = if cols == q.cols {
        kept(q.rows, rows, |i| row(&original, cols, i), |i| row(values, cols, i)).map(|r| (r, (0..cols).collect::<Vec<_>>()))
    } else if rows == q.rows {
        kept(q.cols, cols, |j| column(&original, q.cols, j), |j| column(values, cols, j)).map(|c| ((0..rows).collect::<Vec<_>>(), c))
    } else {
        None
    };
    let new = match selection {
        Some((keep_rows, keep_cols)) => quant::select(&packed, q.rows, q.cols, block, &keep_rows, &keep_cols).map_err(|r| bad(&path, data, r))?.0,
        None => quant::quantize(values, rows, cols, block, packed.zero_points.is_some()),
    };
    let tensors = tensors(file, &q, &new, rows, cols)?;
    if let Some(g) = file.model.graph.as_mut() {
        for &i in &nodes {
            if let Some(n) = g.node.get_mut(i) {
                for a in n.attribute.iter_mut() {
                    match a.name.as_str() {
                        "N" => a.i = rows as i64,
                        "K" => a.i = cols as i64,
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(tensors)
}

/// The initializers of a new packed weight, named and shaped as the old ones.
fn tensors(file: &OnnxFile, q: &BlockQuant, new: &Packed, rows: usize, cols: usize) -> Result<Vec<TensorProto>> {
    let path = file.path().to_path_buf();
    let nb = cols.div_ceil(q.block_size);
    let like = |name: &str| file.initializer(name).cloned().ok_or_else(|| bad(&path, name, "not an initializer"));
    let fill = |mut t: TensorProto, dims: Vec<usize>, bytes: Vec<u8>| {
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.raw_data = Bytes::from(bytes);
        t.float_data.clear();
        t.int32_data.clear();
        t.external_data.clear();
        t.data_location = DataLocation::Default as i32;
        t
    };
    let mut out = vec![fill(like(&q.data)?, vec![rows, nb, q.block_size / 2], new.data.clone())];
    let scales = like(&q.scales)?;
    if scales.data_type != DataType::Float as i32 {
        return Err(bad(&path, &q.scales, "only float32 scales are written back yet"));
    }
    let dims = if scales.dims.len() == 2 { vec![rows, nb] } else { vec![rows * nb] };
    out.push(fill(scales, dims, new.scales.iter().flat_map(|v| v.to_le_bytes()).collect()));
    if let (Some(name), Some(z)) = (&q.zero_points, &new.zero_points) {
        let t = like(name)?;
        let dims = if t.dims.len() == 2 { vec![rows, nb.div_ceil(2)] } else { vec![rows * nb.div_ceil(2)] };
        out.push(fill(t, dims, z.clone()));
    }
    Ok(out)
}
