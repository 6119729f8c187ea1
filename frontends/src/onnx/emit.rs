//! Writing a pruned model back as the ONNX file it came from: the original graph — nodes,
//! names, opset, metadata, inputs, outputs — with every initializer a parameter stands for
//! replaced by the pruned values, and the shape constants that carried a pruned size
//! (reshape targets holding head counts, expand sizes) corrected.
//!
//! Which constants change is found by folding the graph again with the new initializers,
//! knowing from the IR what shape each reshape must now produce ([`super::fold::repair`]);
//! a changed constant gets a new initializer, read only by the use that needed it, so that a
//! constant shared with unchanged uses (dynamo shares `[8]` between head counts and head
//! widths) keeps its value there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prunec_ir::{Dim, Model};

use super::fold::{repair, AttrEdit, Edit};
use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::{tensor_shape_proto, type_proto, TensorProto};
use super::write::{write_model_to, Destination};
use super::{OnnxFile, WrittenModel};
use crate::error::{FrontendError, Result};

#[path = "genai.rs"]
mod genai;
#[path = "quantized.rs"]
mod quantized;

fn bad(path: &Path, tensor: &str, reason: impl Into<String>) -> FrontendError {
    FrontendError::BadTensor { path: path.to_path_buf(), tensor: tensor.into(), reason: reason.into() }
}

/// Writes `model` (read from an ONNX file, then pruned) as ONNX at `out`; external data
/// beside it when the source had external data or the model is large. Existing files are
/// replaced, but never the source file or its external data files.
pub fn write_pruned(model: &Model, out: &Path) -> Result<WrittenModel> {
    write_pruned_to(model, out, true)
}

/// The files an ONNX model reads: `path` and the external data files its tensors name (inside
/// its folder), which no output may overwrite.
pub fn source_files(path: &Path) -> Result<Vec<PathBuf>> {
    let file = OnnxFile::open(path)?;
    let mut files = vec![path.to_path_buf()];
    let tensors = file.graph().initializer.iter().chain(file.graph().node.iter().flat_map(|n| n.attribute.iter().filter_map(|a| a.t.as_ref())));
    for t in tensors.filter(|t| t.data_location == DataLocation::External as i32) {
        if let Some(kv) = t.external_data.iter().find(|kv| kv.key == "location") {
            let f = file.dir().join(&kv.value);
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    Ok(files)
}

/// [`write_pruned`], replacing existing files at `out` (and its external data file) only when
/// `replace` (`--force`); never the source or its external data.
pub fn write_pruned_to(model: &Model, out: &Path, replace: bool) -> Result<WrittenModel> {
    let source = &model.info.source;
    if model.info.format != prunec_ir::SourceFormat::Onnx {
        return Err(FrontendError::Corrupt {
            path: source.clone(),
            format: "ONNX",
            reason: "only a model read from an ONNX file can be written back as ONNX".into(),
        });
    }
    let inputs = source_files(source)?;
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let mut file = OnnxFile::open(source)?;
    let had_external = file.graph().initializer.iter().any(|t| t.data_location == DataLocation::External as i32);
    file.load_external_data()?;

    // 1. initializers
    let mut replaced: HashMap<String, TensorProto> = HashMap::new();
    for o in &model.info.origins {
        let p = model.params.get(&o.param).ok_or_else(|| {
            bad(source, &o.tensor, format!("parameter `{}` is gone (whole layers removed): such a model cannot be written as ONNX yet", o.param))
        })?;
        let missing = || FrontendError::MissingTensor { path: source.clone(), tensor: o.tensor.clone() };
        let values = model.params.read_f32(&o.param).map_err(|e| FrontendError::Ir { path: source.clone(), source: e })?;
        if file.initializer(&o.tensor).ok_or_else(missing)?.data_type == DataType::Uint8 as i32 {
            // a 4-bit weight: whole blocks copied, cut blocks requantized
            let changed = quantized::write(&mut file, &o.tensor, &p.shape, &values)?;
            replaced.extend(changed.into_iter().map(|t| (t.name.clone(), t)));
            continue;
        }
        let init = file.initializer(&o.tensor).ok_or_else(missing)?;
        if init.data_type != DataType::Float as i32 {
            return Err(bad(source, &o.tensor, "only float32 and 4-bit initializers are written back yet"));
        }
        let (shape, data): (Vec<usize>, Vec<f32>) = match (o.transposed, p.shape.as_slice()) {
            (true, &[r, c]) => (vec![c, r], super::tensor::transposed(&values, r, c)),
            (true, other) => return Err(bad(source, &o.tensor, format!("a transposed parameter of shape {other:?}"))),
            (false, s) => (s.to_vec(), values.as_ref().clone()),
        };
        let mut t = init.clone();
        t.dims = shape.iter().map(|&d| d as i64).collect();
        t.raw_data = Bytes::from(data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        t.float_data.clear();
        t.external_data.clear();
        t.data_location = DataLocation::Default as i32;
        replaced.insert(o.tensor.clone(), t);
    }
    for t in file.model.graph.iter_mut().flat_map(|g| g.initializer.iter_mut()) {
        if let Some(new) = replaced.remove(&t.name) {
            *t = new;
        }
    }
    file.reindex();

    // 2. shape constants: what each reshape must produce now, from the IR
    let mut oracle: HashMap<String, Vec<Dim>> = HashMap::new();
    for sv in &model.info.source_values {
        let Ok(ty) = model.graph.value_type(sv.value) else { continue };
        let mut dims = ty.shape.dims().to_vec();
        if sv.swap_1_2 && dims.len() >= 3 {
            dims.swap(1, 2);
        }
        oracle.insert(sv.name.clone(), dims);
    }
    let repairs = repair(&file, &oracle)?;
    apply_edits(&mut file, &repairs.edits)?;
    apply_attrs(&mut file, &repairs.attrs)?;

    // 3. declared shapes follow: intermediate values, outputs, and the inputs (a key/value
    // cache has the pruned number of key/value heads)
    if let Some(g) = file.model.graph.as_mut() {
        for vi in g.value_info.iter_mut().chain(g.output.iter_mut()).chain(g.input.iter_mut()) {
            let Some(new) = repairs.shapes.get(&vi.name) else { continue };
            let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) else { continue };
            let Some(shape) = tt.shape.as_mut() else { continue };
            if shape.dim.len() != new.len() {
                continue;
            }
            for (d, n) in shape.dim.iter_mut().zip(new) {
                if let (Some(tensor_shape_proto::dimension::Value::DimValue(_)), Dim::Fixed(n)) = (&d.value, n) {
                    d.value = Some(tensor_shape_proto::dimension::Value::DimValue(*n as i64));
                }
            }
        }
    }
    let genai = genai::prepare(model, &file, out, &repairs.attrs)?;
    let external = had_external.then(|| format!("{}.data", out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    let dest = Destination { inputs: &inputs, replace };
    if let Some(genai) = &genai {
        genai.check(&dest)?;
    }
    let written = write_model_to(&file.model, out, external.as_deref(), Destination { inputs: dest.inputs, replace })?;
    if let Some(genai) = genai {
        genai.write(&dest)?;
    }
    Ok(written)
}

/// Sets the integer attributes `attrs` names.
fn apply_attrs(file: &mut OnnxFile, attrs: &[AttrEdit]) -> Result<()> {
    let path = file.path().to_path_buf();
    let Some(g) = file.model.graph.as_mut() else { return Ok(()) };
    for a in attrs {
        let node = g.node.get_mut(a.node).ok_or_else(|| bad(&path, &a.name, "the node is gone"))?;
        let name = node.name.clone();
        let slot = node.attribute.iter_mut().find(|x| x.name == a.name).ok_or_else(|| bad(&path, &name, format!("no attribute `{}`", a.name)))?;
        slot.i = a.value;
    }
    Ok(())
}

/// A changed constant element: a new initializer holding the constant with that element
/// changed, read by the one use that needed it.
fn apply_edits(file: &mut OnnxFile, edits: &[Edit]) -> Result<()> {
    // group by the use
    type Changes = (String, Vec<(usize, i64)>);
    let mut by_use: HashMap<(usize, usize), Changes> = HashMap::new();
    for e in edits {
        let Some(reader) = e.provenance.reader else { continue };
        let entry = by_use.entry(reader).or_insert_with(|| (e.provenance.source.clone(), Vec::new()));
        entry.1.push((e.provenance.elem, e.value));
    }
    let path = file.path().to_path_buf();
    let mut new_inits = Vec::new();
    let mut uses: Vec<_> = by_use.into_iter().collect();
    uses.sort_by_key(|u| u.0);
    for (k, ((node, input), (source, changes))) in uses.into_iter().enumerate() {
        let (shape, mut data) = file.value_i64(&source)?.ok_or_else(|| bad(&path, &source, "not a constant"))?;
        for (elem, value) in changes {
            let slot = data.get_mut(elem).ok_or_else(|| bad(&path, &source, format!("no element {elem}")))?;
            *slot = value;
        }
        let name = format!("{source}.prunec{k}");
        new_inits.push(TensorProto {
            name: name.clone(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int64 as i32,
            raw_data: Bytes::from(data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()),
            ..TensorProto::default()
        });
        let g = file.model.graph.as_mut().ok_or_else(|| bad(&path, &source, "no graph"))?;
        let slot = g.node.get_mut(node).and_then(|n| n.input.get_mut(input)).ok_or_else(|| bad(&path, &source, "its use is gone"))?;
        *slot = name;
    }
    if let Some(g) = file.model.graph.as_mut() {
        g.initializer.extend(new_inits);
    }
    file.reindex();
    Ok(())
}
