//! Models written as GGUF files that llama.cpp runs. An architecture says what its file holds
//! ([`GgufPlan`]: llama.cpp's architecture name, the keys of its widths, and each tensor as
//! llama.cpp names and lays it out); this module chooses every tensor's type, copies or
//! quantizes its data and writes the file, one tensor at a time.
//!
//! - Metadata: a GGUF input's own (`general.*`, the tokenizer, the chat template), with the
//!   plan's keys over it; `general.file_type` from the types written.
//! - Types: each tensor keeps the type it had (a GGUF tensor its GGML type, an HF one its
//!   dtype), or every matrix takes `--gguf-type` (vectors stay F32, as llama.cpp's converter
//!   keeps them).
//! - Block copies: a GGUF tensor written in its own type whose kept columns are whole blocks
//!   (rows removed or reordered, heads of 64 removed from blocks of 32) is copied block for
//!   block from the input, bit for bit: pruning adds no quantization error to it.
//! - Otherwise the values are quantized again with ggml's reference quantizers
//!   ([`crate::gguf::quant`]: the legacy types, Q4_K and Q6_K); a type prunec cannot quantize
//!   to (the other k-quants, i-quants), or whose blocks the row length does not fill (a k-quant
//!   needs rows of whole super-blocks of 256), becomes the fallback type (Q8_0 unless told), or
//!   F16 when the row is not whole blocks of 32 either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prunec_ir::{DType, Model, ParamData, SourceFormat, TensorSource};

use super::gguf_weights::GgufTensor;
use crate::error::{FrontendError, Result};
use crate::gguf::quant::{can_quantize, quantize};
use crate::gguf::write::{write_gguf, TensorOut};
use crate::gguf::{GgmlType, GgufFile, GgufValue};

/// What an architecture writes in a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufPlan {
    /// llama.cpp's name of the architecture (`general.architecture`).
    pub arch: String,
    /// The architecture's keys (`llama.block_count`...), over the input's.
    pub metadata: Vec<(String, GgufValue)>,
    /// Keys of the input's metadata that no longer hold (removed).
    pub stale: Vec<String>,
    /// Tokens the model reads (its tokenizer is padded to them).
    pub vocab: usize,
    /// The tensors, in file order.
    pub tensors: Vec<PlannedTensor>,
    /// Lines for people: what the file holds that the model does not (layers padded to one
    /// width with zero heads and channels).
    pub notes: Vec<String>,
}

impl Planned {
    /// `model`'s parameter `hf`, its rows and columns mapped as [`Planned::Param`] says; an
    /// error naming the model's source when the model has no such parameter.
    pub fn param(model: &Model, hf: String, rows: Option<Vec<Option<usize>>>, cols: Option<Vec<Option<usize>>>) -> Result<Planned> {
        match model.params.get(&hf) {
            None => Err(FrontendError::MissingTensor { path: model.info.source.clone(), tensor: hf }),
            Some(_) => Ok(Planned::Param { hf, rows, cols }),
        }
    }
}

/// One tensor of a [`GgufPlan`]: its llama.cpp name and where its values come from.
#[derive(Debug, Clone)]
pub struct PlannedTensor {
    /// Its name in the file.
    pub name: String,
    /// Its values.
    pub data: Planned,
}

/// Where a planned tensor's values come from.
#[derive(Debug, Clone)]
pub enum Planned {
    /// The model's parameter `hf`, with its rows in the order `rows` gives (row `i` of the file
    /// is row `rows[i]` of the parameter, or zeros for `None`; all, in order, when `None`):
    /// llama.cpp's rotary layout, key/value heads repeated, MLP channels padded to whole
    /// blocks; and its columns as `cols` gives them (the same way: MLP channels padded, zero
    /// heads between others; a vector's elements are its rows, and it has no columns).
    Param {
        /// The parameter's name.
        hf: String,
        /// The parameter's row (or a row of zeros) for each row written.
        rows: Option<Vec<Option<usize>>>,
        /// The parameter's column (or a column of zeros) for each column written.
        cols: Option<Vec<Option<usize>>>,
    },
    /// Values made for the file (Llama 3.1's rotary divisors), row-major in `shape` (HF order).
    Values {
        /// Its shape, HF order.
        shape: Vec<usize>,
        /// The values.
        values: Vec<f32>,
    },
}

/// How a GGUF file is written.
#[derive(Debug, Clone)]
pub struct GgufOptions {
    /// The type of every matrix (`--gguf-type`); `None`: each keeps its own.
    pub ty: Option<GgmlType>,
    /// The type of a matrix whose type prunec cannot quantize to or whose rows are not whole
    /// blocks of it (`--gguf-fallback`).
    pub fallback: GgmlType,
    /// Replace an existing file (`--force`).
    pub replace: bool,
    /// The `tokenizer.json` of a model read from other than a GGUF file (`--tokenizer`);
    /// `None`: the one beside the model.
    pub tokenizer: Option<PathBuf>,
}

impl Default for GgufOptions {
    fn default() -> GgufOptions {
        GgufOptions { ty: None, fallback: GgmlType::Q8_0, replace: false, tokenizer: None }
    }
}

/// What writing a GGUF file did.
#[derive(Debug, Clone)]
pub struct GgufWritten {
    /// The file.
    pub path: PathBuf,
    /// Tensors copied block for block from the input.
    pub copied: usize,
    /// Tensors whose values were quantized (or converted) for the file.
    pub quantized: usize,
    /// Tensors that could not keep the type asked for: name, type asked, type written.
    pub fell_back: Vec<(String, GgmlType, GgmlType)>,
    /// Tensors written, by type.
    pub types: BTreeMap<&'static str, usize>,
}

/// How a tensor's data is made.
enum How {
    /// Blocks of a GGUF input tensor: for each row written, its row in the file (`None`: a row
    /// of zero bytes, which every GGML type decodes as zeros) and (when not the whole row)
    /// which of its blocks (`None`: a block of zero bytes).
    Copy { source: Arc<dyn TensorSource>, rows: Vec<Option<usize>>, blocks: Option<Vec<Option<usize>>> },
    /// Values read (gathered by rows) and quantized.
    Quantize,
}

/// Per axis, the indices kept (all when `None`), as [`prunec_ir::ParamView::keep`].
type Keep = Vec<Option<Vec<usize>>>;

/// The GGUF tensor a parameter's data is stored in, with the indices kept along each axis, when
/// it is exactly a selection of it (no factors applied).
fn stored(data: &ParamData) -> Option<(Arc<dyn TensorSource>, Keep)> {
    let (source, keep) = match data {
        ParamData::Source(s) => (s.clone(), Vec::new()),
        ParamData::View(v) if v.scales.is_empty() => match &v.base {
            ParamData::Source(s) => (s.clone(), v.keep.clone()),
            _ => return None,
        },
        _ => return None,
    };
    source.as_any()?.downcast_ref::<GgufTensor>()?;
    Some((source, keep))
}

fn gguf_tensor(source: &Arc<dyn TensorSource>) -> Option<&GgufTensor> {
    source.as_any()?.downcast_ref::<GgufTensor>()
}

/// The element type a parameter is stored in, as a GGML type.
fn own_type(model: &Model, hf: &str) -> GgmlType {
    let Some(p) = model.params.get(hf) else { return GgmlType::F32 };
    if let Some(t) = stored(&p.data).and_then(|(s, _)| gguf_tensor(&s).and_then(|g| g.file.tensor_info(&g.name).map(|i| i.ty))) {
        return t;
    }
    match p.dtype {
        DType::F16 => GgmlType::F16,
        DType::BF16 => GgmlType::BF16,
        _ => GgmlType::F32,
    }
}

/// The block indices of a row whose columns `cols` (a stored column, or a zero one) are whole
/// blocks of `bs`, in order: each a block of the stored row, or `None`, a block of zeros.
fn whole_blocks(cols: &[Option<usize>], bs: usize) -> Option<Vec<Option<usize>>> {
    if !cols.len().is_multiple_of(bs) {
        return None;
    }
    cols.chunks(bs)
        .map(|c| match c[0] {
            None => c.iter().all(Option::is_none).then_some(None),
            Some(first) => (first.is_multiple_of(bs) && c.iter().enumerate().all(|(k, &x)| x == Some(first + k))).then_some(Some(first / bs)),
        })
        .collect()
}

/// How parameter `hf` is copied block for block as type `ty`, when it can be.
fn copy_plan(model: &Model, hf: &str, rows: Option<&[Option<usize>]>, cols: Option<&[Option<usize>]>, ty: GgmlType) -> Option<How> {
    let p = model.params.get(hf)?;
    let (source, keep) = stored(&p.data)?;
    let g = gguf_tensor(&source)?;
    let info = g.file.tensor_info(&g.name)?;
    let bs = info.ty.block_size()?;
    // a vector's rows are its elements: copied only whole
    if info.ty != ty || p.shape.len() > 2 || p.shape.is_empty() || (p.shape.len() == 1 && (rows.is_some() || cols.is_some())) {
        return None;
    }
    let axis = |a: usize| keep.get(a).cloned().flatten();
    let (row_keep, col_keep) = if p.shape.len() == 2 { (axis(0), axis(1)) } else { (None, axis(0)) };
    let n_rows = if p.shape.len() == 2 { p.shape[0] } else { 1 };
    // each column written: its column of the stored row, or zeros
    let stored_col = |c: usize| col_keep.as_ref().map_or(Some(c), |k| k.get(c).copied());
    let stored_cols: Option<Vec<Option<usize>>> = match (cols, &col_keep) {
        (None, None) => None,
        (Some(cols), _) => Some(
            cols.iter()
                .map(|c| match *c {
                    None => Some(None),
                    Some(c) => stored_col(c).map(Some),
                })
                .collect::<Option<_>>()?,
        ),
        (None, Some(k)) => Some(k.iter().copied().map(Some).collect()),
    };
    let blocks = match stored_cols {
        Some(cols) => Some(whole_blocks(&cols, bs)?),
        None => None,
    };
    let out_rows: Vec<Option<usize>> = match rows {
        Some(r) => r.to_vec(),
        None => (0..n_rows).map(Some).collect(),
    };
    let stored_rows = out_rows
        .iter()
        .map(|r| match r {
            None => Some(None),
            Some(r) => {
                let base = row_keep.as_ref().map_or(Some(*r), |k| k.get(*r).copied())?;
                Some(Some(if p.shape.len() == 2 { g.stored_row(base) } else { 0 }))
            }
        })
        .collect::<Option<Vec<Option<usize>>>>()?;
    Some(How::Copy { source, rows: stored_rows, blocks })
}

/// The bytes of a planned tensor.
fn tensor_data(model: &Model, t: &PlannedTensor, out: &TensorOut, how: &How) -> Result<Vec<u8>> {
    let bad = |tensor: &str, reason: String| FrontendError::BadTensor { path: model.info.source.clone(), tensor: tensor.into(), reason };
    match (how, &t.data) {
        (How::Copy { source, rows, blocks }, _) => {
            let g = gguf_tensor(source).ok_or_else(|| bad(&t.name, "not a GGUF tensor".into()))?;
            let info = g.file.tensor_info(&g.name).ok_or_else(|| bad(&g.name, "gone from its file".into()))?;
            let bytes = g.file.tensor_bytes(info);
            let (bs, ts) = info.ty.block_layout().unwrap_or((1, 1));
            let row_bytes = usize::try_from(info.dims[0]).unwrap_or(0) / bs * ts;
            let mut data = Vec::with_capacity(out.byte_len().unwrap_or(0));
            let out_row = blocks.as_ref().map_or(row_bytes, |b| b.len() * ts);
            for r in rows {
                let Some(r) = *r else {
                    data.resize(data.len() + out_row, 0);
                    continue;
                };
                let row = bytes.get(r * row_bytes..(r + 1) * row_bytes).ok_or_else(|| bad(&g.name, format!("row {r} is outside its data")))?;
                match blocks {
                    None => data.extend_from_slice(row),
                    Some(b) => b.iter().for_each(|&b| match b {
                        Some(b) => data.extend_from_slice(&row[b * ts..(b + 1) * ts]),
                        None => data.resize(data.len() + ts, 0),
                    }),
                }
            }
            Ok(data)
        }
        (How::Quantize, Planned::Values { values, .. }) => quantize(out.ty, values).map_err(|e| bad(&t.name, e)),
        (How::Quantize, Planned::Param { hf, rows, cols: picked_cols }) => {
            let values = model.params.read_f32(hf).map_err(|e| bad(hf, e.to_string()))?;
            // a vector's rows are its elements
            let shape = model.params.get(hf).map(|p| p.shape.clone()).unwrap_or_default();
            let cols = if shape.len() <= 1 { 1 } else { shape.last().copied().unwrap_or(1) };
            let values = match (rows, picked_cols) {
                (None, None) => values,
                _ => {
                    let picked: Vec<Option<usize>> = rows.clone().unwrap_or_else(|| (0..values.len() / cols.max(1)).map(Some).collect());
                    let mut v = Vec::with_capacity(picked.len() * picked_cols.as_ref().map_or(cols, Vec::len));
                    for r in picked {
                        let row = match r {
                            Some(r) => Some(values.get(r * cols..(r + 1) * cols).ok_or_else(|| bad(hf, format!("has no row {r}")))?),
                            None => None,
                        };
                        match (row, picked_cols) {
                            (Some(row), None) => v.extend_from_slice(row),
                            (None, None) => v.resize(v.len() + cols, 0.0),
                            (row, Some(pc)) => {
                                for c in pc {
                                    let x = match (row, c) {
                                        (Some(row), Some(c)) => *row.get(*c).ok_or_else(|| bad(hf, format!("has no column {c}")))?,
                                        _ => 0.0,
                                    };
                                    v.push(x);
                                }
                            }
                        }
                    }
                    Arc::new(v)
                }
            };
            quantize(out.ty, &values).map_err(|e| bad(&t.name, e))
        }
    }
}

/// The shape a planned tensor is written in, HF order.
fn planned_shape(model: &Model, t: &PlannedTensor) -> Result<Vec<usize>> {
    match &t.data {
        Planned::Values { shape, .. } => Ok(shape.clone()),
        Planned::Param { hf, rows, cols } => {
            let p = model
                .params
                .get(hf)
                .ok_or_else(|| FrontendError::MissingTensor { path: model.info.source.clone(), tensor: hf.clone() })?;
            let mut shape = p.shape.clone();
            if let (Some(rows), Some(first)) = (rows, shape.first_mut()) {
                *first = rows.len();
            }
            if let (Some(cols), true, Some(last)) = (cols, shape.len() > 1, shape.last_mut()) {
                *last = cols.len();
            }
            Ok(shape)
        }
    }
}

/// The type a tensor of `shape` is written in when `want` is asked for: `want` when its rows are
/// whole blocks of it and prunec quantizes to it (or copies it), else the fallback, else F16.
fn writable_type(want: GgmlType, shape: &[usize], copy: bool, fallback: GgmlType) -> GgmlType {
    let row = shape.last().copied().unwrap_or(1);
    let fits = |t: GgmlType| t.block_size().is_some_and(|b| row.is_multiple_of(b));
    if copy || (can_quantize(want) && fits(want)) {
        want
    } else if can_quantize(fallback) && fits(fallback) {
        fallback
    } else {
        GgmlType::F16
    }
}

/// llama.cpp's `general.file_type` (`llama_ftype`) of a file whose matrices are mostly `ty`.
fn file_type(ty: GgmlType) -> Option<u32> {
    Some(match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q2_K => 10,
        GgmlType::Q3_K => 12,
        GgmlType::Q4_K => 15,
        GgmlType::Q5_K => 17,
        GgmlType::Q6_K => 18,
        GgmlType::BF16 => 32,
        _ => return None,
    })
}

/// The metadata of the file: the input's own when it is a GGUF file (its `general.*`, tokenizer
/// and chat template; not its alignment, split or file type), else the tokenizer beside the
/// model (or `tokenizer`), then the plan's keys.
fn metadata(model: &Model, plan: &GgufPlan, tokenizer: Option<&Path>) -> Result<Vec<(String, GgufValue)>> {
    let mut keys: BTreeMap<String, GgufValue> = BTreeMap::new();
    if model.info.format == SourceFormat::Gguf {
        let file = GgufFile::open(&model.info.source)?;
        // an input of another llama.cpp architecture (a `llama` file written as `deci`): its
        // own keys would describe the widths it had
        let other = file.get_str("general.architecture").ok().filter(|a| *a != plan.arch).map(|a| format!("{a}."));
        for (k, v) in file.metadata() {
            let stale = other.as_ref().is_some_and(|p| k.starts_with(p.as_str()));
            if !(stale || k == "general.alignment" || k == "general.file_type" || k.starts_with("split.")) {
                keys.insert(k.clone(), v.clone());
            }
        }
    }
    if model.info.format != SourceFormat::Gguf {
        // llama.cpp's converter: the name, and the tokenizer beside the model
        let name = model.info.name.clone();
        keys.insert("general.name".into(), GgufValue::String(name));
        let tokenizer = crate::tokenizer::Tokenizer::for_model(tokenizer.unwrap_or(&model.info.source))?;
        keys.extend(tokenizer.gguf_metadata(plan.vocab)?);
    }
    for k in &plan.stale {
        keys.remove(k);
    }
    keys.insert("general.architecture".into(), GgufValue::String(plan.arch.clone()));
    for (k, v) in &plan.metadata {
        keys.insert(k.clone(), v.clone());
    }
    // general.architecture first, as llama.cpp's converter writes it
    let mut out = vec![("general.architecture".to_string(), keys.remove("general.architecture").unwrap_or(GgufValue::String(plan.arch.clone())))];
    out.extend(keys);
    Ok(out)
}

/// Writes `model` as the GGUF file `dest` that `plan` describes. `inputs` are never
/// overwritten; an existing file is replaced only with `options.replace`. `progress` is told
/// each tensor written (done, total, name).
pub fn write(model: &Model, plan: &GgufPlan, dest: &Path, inputs: &[&Path], options: GgufOptions, progress: &mut dyn FnMut(usize, usize, &str)) -> Result<GgufWritten> {
    let mut outs = Vec::with_capacity(plan.tensors.len());
    let mut hows = Vec::with_capacity(plan.tensors.len());
    let mut fell_back = Vec::new();
    let mut types: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut matrix_elements: BTreeMap<u32, (GgmlType, usize)> = BTreeMap::new();
    for t in &plan.tensors {
        let shape = planned_shape(model, t)?;
        let own = match &t.data {
            Planned::Param { hf, .. } => own_type(model, hf),
            Planned::Values { .. } => GgmlType::F32,
        };
        let want = match options.ty {
            Some(ty) if shape.len() >= 2 => ty,
            Some(_) => GgmlType::F32,
            None => own,
        };
        let copy = match &t.data {
            Planned::Param { hf, rows, cols } => copy_plan(model, hf, rows.as_deref(), cols.as_deref(), want),
            Planned::Values { .. } => None,
        };
        let ty = writable_type(want, &shape, copy.is_some(), options.fallback);
        if ty != want {
            fell_back.push((t.name.clone(), want, ty));
        }
        *types.entry(ty.name()).or_default() += 1;
        if shape.len() >= 2 {
            matrix_elements.entry(ty.id()).or_insert((ty, 0)).1 += shape.iter().product::<usize>();
        }
        outs.push(TensorOut { name: t.name.clone(), dims: shape.iter().rev().map(|&d| d as u64).collect(), ty });
        hows.push(copy.unwrap_or(How::Quantize));
    }
    let mut meta = metadata(model, plan, options.tokenizer.as_deref())?;
    let mostly = matrix_elements.values().max_by_key(|(_, n)| *n).map(|(t, _)| *t);
    if let Some(ft) = mostly.and_then(file_type) {
        meta.push(("general.file_type".into(), GgufValue::U32(ft)));
    }
    if outs.iter().any(|t| t.ty.block_size().is_some_and(|b| b > 1)) && !meta.iter().any(|(k, _)| k == "general.quantization_version") {
        meta.push(("general.quantization_version".into(), GgufValue::U32(2)));
    }
    let total = outs.len();
    let copied = hows.iter().filter(|h| matches!(h, How::Copy { .. })).count();
    let path = write_gguf(dest, inputs, options.replace, &meta, &outs, &mut |i| {
        let data = tensor_data(model, &plan.tensors[i], &outs[i], &hows[i])?;
        progress(i + 1, total, &outs[i].name);
        Ok(data)
    })?;
    Ok(GgufWritten { path, copied, quantized: total - copied, fell_back, types })
}

/// The width of the blocks the matrices of `model` will be written in with `options`: the
/// largest block of their types (`--gguf-type`, else a GGUF input's own types): 256 for a
/// k-quant, 32 for the other quantized types, 1 when none is quantized. An architecture pads
/// widths it cannot otherwise keep whole blocks of (MLP channels) to it, so that a matrix whose
/// columns pruning shortened keeps its type.
pub fn block_width(model: &Model, options: &GgufOptions) -> usize {
    let own = |p: &prunec_ir::Param| stored(&p.data).and_then(|(s, _)| gguf_tensor(&s).and_then(|g| g.file.tensor_info(&g.name)).and_then(|i| i.ty.block_size()));
    match options.ty {
        Some(t) => t.block_size().unwrap_or(1),
        None => model.params.iter().filter(|(_, p)| p.shape.len() == 2).filter_map(|(_, p)| own(p)).max().unwrap_or(1),
    }
    .max(1)
}

/// A GGML type by its name as people write it (`q4_0`, `Q8_0`, `f16`...), among those prunec
/// writes; the error lists them.
pub fn parse_type(name: &str) -> std::result::Result<GgmlType, String> {
    let writable = crate::gguf::quant::WRITABLE;
    writable
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("`{name}`: prunec writes {}", writable.map(GgmlType::name).join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_blocks_are_found_only_when_aligned() {
        let some = |r: std::ops::Range<usize>| r.map(Some).collect::<Vec<_>>();
        let cols: Vec<Option<usize>> = some(64..128).into_iter().chain(some(0..32)).collect();
        assert_eq!(whole_blocks(&cols, 32), Some(vec![Some(2), Some(3), Some(0)]));
        assert_eq!(whole_blocks(&some(1..33), 32), None);
        assert_eq!(whole_blocks(&some(0..31), 32), None);
        let mut gap = some(0..32);
        gap[5] = Some(40);
        assert_eq!(whole_blocks(&gap, 32), None);
        // zero columns: whole blocks of them only
        let padded: Vec<Option<usize>> = some(32..64).into_iter().chain([None; 32]).chain(some(0..32)).collect();
        assert_eq!(whole_blocks(&padded, 32), Some(vec![Some(1), None, Some(0)]));
        let mut torn = padded.clone();
        torn[40] = Some(8);
        assert_eq!(whole_blocks(&torn, 32), None);
    }

    #[test]
    fn types_fall_back_where_rows_are_not_whole_blocks() {
        assert_eq!(writable_type(GgmlType::Q4_1, &[10, 64], false, GgmlType::Q8_0), GgmlType::Q4_1);
        assert_eq!(writable_type(GgmlType::Q4_1, &[10, 70], false, GgmlType::Q8_0), GgmlType::F16);
        assert_eq!(writable_type(GgmlType::Q4_K, &[10, 96], false, GgmlType::Q8_0), GgmlType::Q8_0);
        assert_eq!(writable_type(GgmlType::Q4_K, &[10, 96], true, GgmlType::Q8_0), GgmlType::Q4_K);
        assert_eq!(writable_type(GgmlType::Q6_K, &[10, 512], false, GgmlType::Q8_0), GgmlType::Q6_K);
        assert_eq!(writable_type(GgmlType::Q3_K, &[10, 512], false, GgmlType::Q8_0), GgmlType::Q8_0);
        assert_eq!(writable_type(GgmlType::F32, &[7], false, GgmlType::Q8_0), GgmlType::F32);
    }

    #[test]
    fn types_are_parsed_by_their_names() {
        assert_eq!(parse_type("Q4_1"), Ok(GgmlType::Q4_1));
        assert_eq!(parse_type("bf16"), Ok(GgmlType::BF16));
        assert_eq!(parse_type("q4_k"), Ok(GgmlType::Q4_K));
        assert_eq!(parse_type("Q6_K"), Ok(GgmlType::Q6_K));
        assert!(parse_type("q3_k").unwrap_err().contains("q6_K"));
    }
}
