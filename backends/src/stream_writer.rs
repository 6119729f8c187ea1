//! Safetensors files written tensor by tensor, for models larger than memory.
//!
//! A safetensors file is an 8-byte header length, a JSON header (every tensor's name, dtype,
//! shape and byte range) and then the tensors' bytes back to back. When every name, dtype and
//! shape is known up front, the header can be written first and each tensor's bytes streamed
//! after it as they are produced: [`SafetensorsStreamWriter`] does that, converting the f32
//! values it is given to each tensor's dtype, checking that tensors come in the order of the
//! header with the right number of values, and writing to a temporary file that is renamed
//! into place only by [`SafetensorsStreamWriter::finish`]. After any error the temporary file
//! is removed at once: no half-written file is ever left behind.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

// f16 and bf16 round to nearest, ties to even.
use half::{bf16, f16};
pub use safetensors::tensor::Dtype;

use crate::atomic::AtomicPath;
use crate::{BackendError, Result};

/// Values converted and written per system call (a tensor's bytes go out in pieces this big).
const CHUNK_VALUES: usize = 1 << 16;

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The tensor's name.
    pub name: String,
    /// How it is stored: `F32`, `F16` or `BF16`.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl TensorEntry {
    /// An entry.
    pub fn new(name: impl Into<String>, dtype: Dtype, shape: Vec<usize>) -> TensorEntry {
        TensorEntry { name: name.into(), dtype, shape }
    }

    /// Number of elements, or `None` if it overflows.
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Bytes the tensor takes in the file, or `None` if it overflows or the dtype is not one
    /// the writer converts to.
    pub fn byte_len(&self) -> Option<usize> {
        self.numel()?.checked_mul(dtype_size(self.dtype)?)
    }
}

/// Bytes per element of the dtypes the writer converts f32 values to.
pub fn dtype_size(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        _ => None,
    }
}

fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F16 => "F16",
        Dtype::BF16 => "BF16",
        _ => "F32",
    }
}

/// The header bytes (length prefix included) of a file holding `tensors` in that order.
/// Like the `safetensors` crate, pads the JSON with spaces to a multiple of 8 bytes so that
/// the data starts aligned.
fn header_bytes(path: &Path, tensors: &[TensorEntry], metadata: Option<&BTreeMap<String, String>>) -> Result<Vec<u8>> {
    let bad = |reason: String| BackendError::Encode { path: path.to_path_buf(), reason };
    let mut header = serde_json::Map::new();
    if let Some(meta) = metadata {
        let meta: serde_json::Map<String, serde_json::Value> =
            meta.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect();
        header.insert("__metadata__".into(), meta.into());
    }
    let mut seen = HashSet::new();
    let mut offset = 0usize;
    for t in tensors {
        if t.name == "__metadata__" || !seen.insert(t.name.as_str()) {
            return Err(bad(format!("tensor name `{}` is reserved or given twice", t.name)));
        }
        if dtype_size(t.dtype).is_none() {
            return Err(bad(format!("tensor `{}`: dtype {:?} is not one the writer converts to (F32, F16, BF16)", t.name, t.dtype)));
        }
        let end = t
            .byte_len()
            .and_then(|n| offset.checked_add(n))
            .ok_or_else(|| bad(format!("tensor `{}`: shape {:?} is too large", t.name, t.shape)))?;
        header.insert(
            t.name.clone(),
            serde_json::json!({ "dtype": dtype_name(t.dtype), "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| bad(e.to_string()))?;
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut bytes = Vec::with_capacity(8 + json.len());
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&json);
    Ok(bytes)
}

/// The open file and the temporary path it stands for. Fields drop in order: the file is
/// closed before the temporary path is removed.
struct Open {
    file: BufWriter<File>,
    out: AtomicPath,
}

/// Writes a safetensors file tensor by tensor: the header at creation, then each tensor's
/// values, in the header's order, through [`write_tensor`](Self::write_tensor) (a whole
/// tensor) or [`write_part`](Self::write_part) (a tensor in consecutive pieces), then
/// [`finish`](Self::finish). Memory use is one piece of one tensor, whatever the file's size.
///
/// Any error (a tensor out of order, too many or too few values, a failed write) removes the
/// temporary file at once, and every later call fails; dropping the writer unfinished removes
/// it too.
pub struct SafetensorsStreamWriter {
    path: PathBuf,
    open: Option<Open>,
    tensors: Vec<TensorEntry>,
    /// The tensor being written.
    next: usize,
    /// Values of `tensors[next]` written so far.
    written: usize,
    bytes_written: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for SafetensorsStreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsStreamWriter")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .field("next", &self.next)
            .field("written", &self.written)
            .field("failed", &self.open.is_none())
            .finish()
    }
}

impl SafetensorsStreamWriter {
    /// Starts writing `path` (under a temporary name beside it) with a header listing
    /// `tensors` in the order their data will come, and `metadata` as `__metadata__`.
    /// Refuses a path among `inputs`, duplicate names and dtypes other than F32, F16, BF16.
    pub fn create(
        path: &Path,
        tensors: Vec<TensorEntry>,
        metadata: Option<&BTreeMap<String, String>>,
        inputs: &[&Path],
    ) -> Result<SafetensorsStreamWriter> {
        let header = header_bytes(path, &tensors, metadata)?;
        let out = AtomicPath::new(path, inputs)?;
        let io = |source| BackendError::Io { path: path.to_path_buf(), source };
        let mut file = BufWriter::with_capacity(1 << 20, File::create(out.temp()).map_err(io)?);
        file.write_all(&header).map_err(io)?;
        let mut writer = SafetensorsStreamWriter {
            path: path.to_path_buf(),
            open: Some(Open { file, out }),
            tensors,
            next: 0,
            written: 0,
            bytes_written: header.len() as u64,
            scratch: Vec::new(),
        };
        writer.skip_empty();
        Ok(writer)
    }

    /// The file this writer makes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The tensor the writer expects next, if any is left.
    pub fn next_tensor(&self) -> Option<&TensorEntry> {
        self.tensors.get(self.next)
    }

    /// Writes the whole of tensor `name`, which must be the next one of the header, from
    /// exactly as many values as it has elements.
    pub fn write_tensor(&mut self, name: &str, values: &[f32]) -> Result<()> {
        self.check_open()?;
        if let Some(t) = self.tensors.get(self.next) {
            if t.name == name && (self.written != 0 || Some(values.len()) != t.numel()) {
                let reason = format!(
                    "tensor `{name}` (shape {:?}) needs {} values, got {}{}",
                    t.shape,
                    t.numel().unwrap_or(0),
                    values.len(),
                    if self.written != 0 { format!(" after {} already written", self.written) } else { String::new() }
                );
                return Err(self.fail(reason));
            }
        }
        self.write_part(name, values)
    }

    /// Writes the next `values` of tensor `name`: the tensor being written, or the next one of
    /// the header once the previous one is complete. The tensor is complete when all its
    /// elements have come; more values than that are an error.
    pub fn write_part(&mut self, name: &str, values: &[f32]) -> Result<()> {
        self.check_open()?;
        let Some(t) = self.tensors.get(self.next) else {
            let reason = format!("tensor `{name}` comes after every tensor of the header was written");
            return Err(self.fail(reason));
        };
        if t.name != name {
            let reason = if self.tensors[..self.next].iter().any(|w| w.name == name) {
                format!("tensor `{name}` was already written; `{}` comes next", t.name)
            } else if self.tensors.iter().any(|w| w.name == name) {
                format!("tensor `{name}` written out of order: `{}` comes first", t.name)
            } else {
                format!("tensor `{name}` is not in the header")
            };
            return Err(self.fail(reason));
        }
        let (numel, dtype) = (t.numel().unwrap_or(0), t.dtype);
        if values.len() > numel - self.written {
            let reason = format!(
                "tensor `{name}` (shape {:?}) has {numel} elements; {} values after {} written",
                t.shape,
                values.len(),
                self.written
            );
            return Err(self.fail(reason));
        }
        for chunk in values.chunks(CHUNK_VALUES) {
            self.scratch.clear();
            match dtype {
                Dtype::F16 => self.scratch.extend(chunk.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes())),
                Dtype::BF16 => self.scratch.extend(chunk.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes())),
                _ => self.scratch.extend(chunk.iter().flat_map(|&v| v.to_le_bytes())),
            }
            let result = match &mut self.open {
                Some(open) => open.file.write_all(&self.scratch),
                None => Ok(()),
            };
            if let Err(source) = result {
                self.open = None;
                return Err(BackendError::Io { path: self.path.clone(), source });
            }
            self.bytes_written += self.scratch.len() as u64;
        }
        self.written += values.len();
        if self.written == numel {
            self.next += 1;
            self.written = 0;
            self.skip_empty();
        }
        Ok(())
    }

    /// Checks that every tensor was written, flushes and renames the file into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.check_open()?;
        if let Some(t) = self.tensors.get(self.next) {
            let reason = format!(
                "finished with tensor `{}` incomplete ({} of {} values) and {} more after it unwritten",
                t.name,
                self.written,
                t.numel().unwrap_or(0),
                self.tensors.len() - self.next - 1
            );
            return Err(self.fail(reason));
        }
        let Some(Open { file, out }) = self.open.take() else { return Err(self.failed()) };
        let io = |source| BackendError::Io { path: self.path.clone(), source };
        file.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        out.commit()
    }

    /// Tensors without elements need no data: step over them.
    fn skip_empty(&mut self) {
        while self.tensors.get(self.next).is_some_and(|t| t.numel() == Some(0)) {
            self.next += 1;
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.open.is_none() {
            return Err(self.failed());
        }
        Ok(())
    }

    fn failed(&self) -> BackendError {
        BackendError::Encode { path: self.path.clone(), reason: "an earlier write failed; the file was removed".into() }
    }

    /// Removes the temporary file and returns the error.
    fn fail(&mut self, reason: String) -> BackendError {
        self.open = None;
        BackendError::Encode { path: self.path.clone(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<TensorEntry> {
        vec![
            TensorEntry::new("b.weight", Dtype::F32, vec![2, 3]),
            TensorEntry::new("a.half", Dtype::F16, vec![3]),
            TensorEntry::new("empty", Dtype::F32, vec![0, 4]),
            TensorEntry::new("c.brain", Dtype::BF16, vec![1, 1, 5]),
        ]
    }

    fn files_in(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn file_reads_back_through_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let mut w = SafetensorsStreamWriter::create(&path, entries(), Some(&meta), &[]).unwrap();
        assert!(!path.exists(), "nothing in place before finish");
        w.write_tensor("b.weight", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        w.write_part("a.half", &[0.1]).unwrap();
        w.write_part("a.half", &[-2.0, 65504.0]).unwrap();
        // `empty` has no elements and needs no call
        let brain = [0.1f32, 1e-3, -7.0, 3.0e38, 1.0];
        w.write_tensor("c.brain", &brain).unwrap();
        let written = w.bytes_written();
        assert_eq!(w.finish().unwrap(), path);
        assert_eq!(files_in(dir.path()), ["model.safetensors"]);

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, written);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0, "data starts aligned");
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), 4);
        let b = st.tensor("b.weight").unwrap();
        assert_eq!((b.dtype(), b.shape()), (Dtype::F32, &[2usize, 3][..]));
        let values: Vec<f32> = b.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        let a = st.tensor("a.half").unwrap();
        assert_eq!((a.dtype(), a.shape()), (Dtype::F16, &[3usize][..]));
        let values: Vec<f32> = a.data().chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
        assert_eq!(values, [f16::from_f32(0.1).to_f32(), -2.0, 65504.0]);
        assert_eq!(st.tensor("empty").unwrap().shape(), &[0, 4]);
        let c = st.tensor("c.brain").unwrap();
        assert_eq!((c.dtype(), c.shape()), (Dtype::BF16, &[1usize, 1, 5][..]));
        let values: Vec<f32> = c.data().chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
        let want: Vec<f32> = brain.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
        assert_eq!(values, want);
    }

    /// Runs `misuse` on a fresh writer; it must fail, leave no file, and poison the writer.
    fn refused(misuse: impl FnOnce(&mut SafetensorsStreamWriter) -> Result<()>, needle: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let mut w = SafetensorsStreamWriter::create(&path, entries(), None, &[]).unwrap();
        let err = misuse(&mut w).expect_err("misuse is an error").to_string();
        assert!(err.contains(needle), "`{err}` does not say `{needle}`");
        assert!(files_in(dir.path()).is_empty(), "left {:?}", files_in(dir.path()));
        assert!(w.write_tensor("b.weight", &[0.0; 6]).is_err(), "a failed writer refuses more");
        assert!(w.finish().is_err());
        assert!(files_in(dir.path()).is_empty());
    }

    #[test]
    fn out_of_order_tensor_is_an_error_that_leaves_no_file() {
        refused(|w| w.write_tensor("a.half", &[0.0; 3]), "out of order: `b.weight` comes first");
        refused(
            |w| {
                w.write_tensor("b.weight", &[0.0; 6])?;
                w.write_tensor("b.weight", &[0.0; 6])
            },
            "already written",
        );
        refused(|w| w.write_tensor("nope", &[0.0]), "not in the header");
    }

    #[test]
    fn wrong_size_is_an_error_that_leaves_no_file() {
        refused(|w| w.write_tensor("b.weight", &[0.0; 5]), "needs 6 values, got 5");
        refused(|w| w.write_tensor("b.weight", &[0.0; 7]), "needs 6 values, got 7");
        refused(|w| w.write_part("b.weight", &[0.0; 7]), "has 6 elements");
        refused(
            |w| {
                w.write_part("b.weight", &[0.0; 4])?;
                w.write_part("a.half", &[0.0; 3])
            },
            "out of order",
        );
        refused(
            |w| {
                w.write_tensor("b.weight", &[0.0; 6])?;
                w.write_part("a.half", &[0.0; 2])?;
                w.write_tensor("c.brain", &[0.0; 5])
            },
            "out of order",
        );
    }

    #[test]
    fn unfinished_file_is_an_error_that_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let mut w = SafetensorsStreamWriter::create(&path, entries(), None, &[]).unwrap();
        w.write_tensor("b.weight", &[0.0; 6]).unwrap();
        let err = w.finish().expect_err("unfinished").to_string();
        assert!(err.contains("`a.half` incomplete (0 of 3 values) and 2 more"), "{err}");
        assert!(files_in(dir.path()).is_empty());
        // dropped without finish
        let mut w = SafetensorsStreamWriter::create(&path, entries(), None, &[]).unwrap();
        w.write_tensor("b.weight", &[0.0; 6]).unwrap();
        drop(w);
        assert!(files_in(dir.path()).is_empty());
    }

    #[test]
    fn bad_headers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let twice = vec![TensorEntry::new("a", Dtype::F32, vec![1]), TensorEntry::new("a", Dtype::F32, vec![1])];
        assert!(SafetensorsStreamWriter::create(&path, twice, None, &[]).is_err());
        let int = vec![TensorEntry::new("a", Dtype::I64, vec![1])];
        assert!(SafetensorsStreamWriter::create(&path, int, None, &[]).is_err());
        let huge = vec![TensorEntry::new("a", Dtype::F32, vec![usize::MAX, 2])];
        assert!(SafetensorsStreamWriter::create(&path, huge, None, &[]).is_err());
        assert!(files_in(dir.path()).is_empty());
    }
}
