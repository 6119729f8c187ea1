//! Writing ONNX models: the proto inline, or with its large initializers moved to one
//! external data file beside it. Files are written under a temporary name in the destination
//! folder and renamed into place, so a failed write leaves no half-written model.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::{ModelProto, StringStringEntryProto, TensorProto};
use super::tensor;
use crate::error::{FrontendError, Result};

/// Initializers whose data takes more bytes than this go to the external data file.
pub const EXTERNAL_THRESHOLD: usize = 1024;

/// Offsets of tensors in the external data file are multiples of this (a page), so they can
/// be mapped and read aligned.
pub const EXTERNAL_ALIGNMENT: u64 = 4096;

/// The largest protobuf message protobuf's own readers accept (2 GiB − 1 bytes).
pub const PROTOBUF_LIMIT: usize = i32::MAX as usize;

/// The files [`write_model`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenModel {
    /// The model file.
    pub model: PathBuf,
    /// The external data file, when initializers were moved to one.
    pub external_data: Option<PathBuf>,
}

/// Encodes `model` to `path`.
///
/// With `external` = `Some(file name)`, or when the model would pass [`PROTOBUF_LIMIT`]
/// (the file name is then `<model file name>.data`), every initializer whose data takes more
/// than [`EXTERNAL_THRESHOLD`] bytes is moved to that file, beside the model, at offsets
/// aligned to [`EXTERNAL_ALIGNMENT`]; the model then refers to it (`data_location` EXTERNAL,
/// `location`/`offset`/`length`). No external file is written when no initializer is that
/// large. Initializers must hold their data (see [`super::OnnxFile::load_external_data`])
/// when their data is to be moved; inline, a model is written as it is.
///
/// Existing files at those paths are replaced; [`write_model_to`] says where not to write.
pub fn write_model(model: &ModelProto, path: &Path, external: Option<&str>) -> Result<WrittenModel> {
    write_with_limit(model, path, external, PROTOBUF_LIMIT)
}

/// Where [`write_model_to`] may write.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// Files and folders that are never written over (the run's inputs).
    pub inputs: &'a [&'a Path],
    /// Whether existing files are replaced (`--force`).
    pub replace: bool,
}

/// [`write_model`], never over one of `dest.inputs` and over existing files only when
/// `dest.replace`; both files (model and external data) are checked before either is written
/// (see [`prunec_ir::output`]).
pub fn write_model_to(model: &ModelProto, path: &Path, external: Option<&str>, dest: Destination<'_>) -> Result<WrittenModel> {
    write_checked(model, path, external, PROTOBUF_LIMIT, dest)
}

fn write_with_limit(model: &ModelProto, path: &Path, external: Option<&str>, limit: usize) -> Result<WrittenModel> {
    write_checked(model, path, external, limit, Destination { inputs: &[], replace: true })
}

fn write_checked(model: &ModelProto, path: &Path, external: Option<&str>, limit: usize, dest: Destination<'_>) -> Result<WrittenModel> {
    let invalid = |path: &Path, reason: String| FrontendError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| invalid(path, "the model's path has no file name".into()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let external = match external {
        Some(name) => Some(name.to_string()),
        None if model.encoded_len() > limit => Some(format!("{file_name}.data")),
        None => None,
    };
    let check = |p: &Path| prunec_ir::output::check_destination(p, prunec_ir::output::OutputKind::File, dest.inputs, dest.replace);
    check(path)?;
    let Some(data_name) = external else {
        let (temp, mut file) = TempFile::create(path, dest)?;
        file.write_all(&model.encode_to_vec())
            .map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
        drop(file);
        temp.commit()?;
        return Ok(WrittenModel { model: path.to_path_buf(), external_data: None });
    };
    let data_path = dir.join(&data_name);
    let plain = matches!(Path::new(&data_name).components().collect::<Vec<_>>().as_slice(), [Component::Normal(_)]);
    if !plain || data_name == file_name {
        return Err(invalid(
            &data_path,
            format!("the external data file `{data_name}` must be a plain file name other than the model's"),
        ));
    }

    check(&data_path)?;
    let mut model = model.clone();
    let (data_temp, data_file) = TempFile::create(&data_path, dest)?;
    let data_io = |source| FrontendError::Io { path: data_path.clone(), source };
    let mut out = BufWriter::new(data_file);
    let mut pos = 0u64;
    let mut moved = 0usize;
    if let Some(graph) = model.graph.as_mut() {
        for t in graph.initializer.iter_mut() {
            let Some(bytes) = movable_bytes(t, path)? else { continue };
            if bytes.len() <= EXTERNAL_THRESHOLD {
                continue;
            }
            let start = pos.next_multiple_of(EXTERNAL_ALIGNMENT);
            let padding = vec![0u8; (start - pos) as usize];
            out.write_all(&padding).map_err(data_io)?;
            out.write_all(&bytes).map_err(data_io)?;
            pos = start + bytes.len() as u64;
            move_out(t, &data_name, start, bytes.len());
            moved += 1;
        }
    }
    out.flush().map_err(data_io)?;
    drop(out);

    let encoded = model.encode_to_vec();
    if encoded.len() > limit {
        return Err(invalid(
            path,
            format!(
                "the model is {} bytes without its large initializers, over protobuf's limit of {limit}",
                encoded.len()
            ),
        ));
    }
    let (model_temp, mut file) = TempFile::create(path, dest)?;
    file.write_all(&encoded).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
    drop(file);
    let external_data = if moved > 0 {
        data_temp.commit()?;
        Some(data_path)
    } else {
        None
    };
    model_temp.commit()?;
    Ok(WrittenModel { model: path.to_path_buf(), external_data })
}

/// The raw bytes of an initializer that may move to the external file; `None` for one that
/// stays inline whatever its size (strings, 4-bit types in typed fields).
fn movable_bytes(t: &TensorProto, dest: &Path) -> Result<Option<Bytes>> {
    let bad = |reason: String| FrontendError::BadTensor { path: dest.to_path_buf(), tensor: t.name.clone(), reason };
    let data_type = tensor::data_type_of(t).map_err(bad)?;
    if tensor::is_external(t).map_err(bad)? {
        return Err(bad("its data is still in an external file: load it first (OnnxFile::load_external_data)".into()));
    }
    let typed_4bit = matches!(data_type, DataType::Int4 | DataType::Uint4) && t.raw_data.is_empty();
    if tensor::raw_len(data_type, 0).is_none() || typed_4bit {
        return Ok(None);
    }
    let (_, n) = tensor::shape_of(t).map_err(bad)?;
    tensor::inline_bytes(t, data_type, n).map(Some).map_err(bad)
}

/// Points `t` at `length` bytes at `offset` of the external file `location`.
fn move_out(t: &mut TensorProto, location: &str, offset: u64, length: usize) {
    t.raw_data = Bytes::new();
    t.float_data.clear();
    t.int32_data.clear();
    t.int64_data.clear();
    t.double_data.clear();
    t.uint64_data.clear();
    t.data_location = DataLocation::External as i32;
    let entry = |key: &str, value: String| StringStringEntryProto { key: key.into(), value };
    t.external_data = vec![
        entry("location", location.into()),
        entry("offset", offset.to_string()),
        entry("length", length.to_string()),
    ];
}

/// A file written under a temporary name beside its destination (see
/// [`prunec_ir::output::AtomicPath`]); removed unless committed.
struct TempFile(prunec_ir::output::AtomicPath);

impl TempFile {
    fn create(dest: &Path, to: Destination<'_>) -> Result<(TempFile, File)> {
        let out = prunec_ir::output::AtomicPath::file(dest, to.inputs, to.replace)?;
        let file = File::create(out.temp()).map_err(|source| FrontendError::Io { path: out.temp().to_path_buf(), source })?;
        Ok((TempFile(out), file))
    }

    fn commit(self) -> Result<()> {
        self.0.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::OnnxFile;

    fn model_with(initializers: Vec<TensorProto>) -> ModelProto {
        ModelProto {
            ir_version: 10,
            graph: Some(super::super::proto::GraphProto { initializer: initializers, ..Default::default() }),
            ..Default::default()
        }
    }

    fn floats(name: &str, n: usize) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![n as i64],
            data_type: DataType::Float as i32,
            float_data: (0..n).map(|i| i as f32 * 0.5).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn small_initializers_stay_inline_and_offsets_are_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let model = model_with(vec![floats("big1", 300), floats("small", 10), floats("big2", 1000)]);
        let path = dir.path().join("m.onnx");
        let written = write_model(&model, &path, Some("m.onnx.data")).unwrap();
        assert_eq!(written.external_data, Some(dir.path().join("m.onnx.data")));
        let file = OnnxFile::open(&path).unwrap();
        let g = file.graph();
        assert_eq!(g.initializer[1].data_location, DataLocation::Default as i32);
        for t in [&g.initializer[0], &g.initializer[2]] {
            assert_eq!(t.data_location, DataLocation::External as i32);
            let offset: u64 = t.external_data.iter().find(|e| e.key == "offset").unwrap().value.parse().unwrap();
            assert_eq!(offset % EXTERNAL_ALIGNMENT, 0);
        }
        for (orig, back) in model.graph.as_ref().unwrap().initializer.iter().zip(&g.initializer) {
            assert_eq!(file.tensor_f32(back).unwrap().1.as_ref(), orig.float_data.as_slice());
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_model_over_the_limit_goes_external_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let model = model_with(vec![floats("w", 4096)]);
        let path = dir.path().join("m.onnx");
        let written = write_with_limit(&model, &path, None, 8000).unwrap();
        assert_eq!(written.external_data, Some(dir.path().join("m.onnx.data")));
        let file = OnnxFile::open(&path).unwrap();
        let t = &file.graph().initializer[0];
        assert_eq!(
            file.tensor_f32(t).unwrap().1.as_ref(),
            model.graph.as_ref().unwrap().initializer[0].float_data.as_slice()
        );
        // Still too large without its initializers: refused, nothing written.
        let dir2 = tempfile::tempdir().unwrap();
        let path2 = dir2.path().join("m.onnx");
        assert!(write_with_limit(&model, &path2, None, 10).is_err());
        assert_eq!(std::fs::read_dir(dir2.path()).unwrap().count(), 0);
    }

    #[test]
    fn external_names_must_be_plain() {
        let dir = tempfile::tempdir().unwrap();
        let model = model_with(vec![floats("w", 400)]);
        let path = dir.path().join("m.onnx");
        for name in ["../x.data", "/tmp/x.data", "sub/x.data", "m.onnx", ""] {
            assert!(write_model(&model, &path, Some(name)).is_err(), "{name}");
        }
    }

    #[test]
    fn unloaded_external_tensors_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = floats("w", 400);
        t.float_data.clear();
        t.data_location = DataLocation::External as i32;
        t.external_data = vec![StringStringEntryProto { key: "location".into(), value: "w.bin".into() }];
        let path = dir.path().join("m.onnx");
        let e = write_model(&model_with(vec![t]), &path, Some("m.data")).unwrap_err().to_string();
        assert!(e.contains("`w`") && e.contains("external"), "{e}");
    }
}
