//! A writer of GGUF v3 files: the header, the metadata, the tensor infos (offsets aligned to
//! [`GGUF_DEFAULT_ALIGNMENT`]) and each tensor's data, streamed one tensor at a time (so
//! memory follows the largest tensor, not the file). The file is written to a temporary path
//! and renamed into place ([`prunec_ir::output::AtomicPath`]).
//!
//! Written by hand rather than with a crate: the reader's types ([`GgufValue`], [`GgmlType`])
//! describe everything a writer needs, the format is a few dozen lines, and the crates that
//! write GGUF (candle-core's `gguf_file`, ggus) either pull in a tensor library or hold every
//! tensor in memory before writing.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::ggml_type::GgmlType;
use super::layout::{GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC};
use super::value::GgufValue;
use crate::error::{FrontendError, Result};

/// One tensor of a file to write: its name, its dimensions in ggml order (`dims[0]`, the
/// length of a row, first) and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorOut {
    /// Its name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Its dimensions, `ne[0]` first.
    pub dims: Vec<u64>,
    /// Its type.
    pub ty: GgmlType,
}

impl TensorOut {
    /// The bytes its data takes (`None`: not whole blocks along `ne[0]`, or an unknown type).
    pub fn byte_len(&self) -> Option<usize> {
        let (bs, ts) = self.ty.block_layout()?;
        let row = usize::try_from(*self.dims.first().unwrap_or(&1)).ok()?;
        if !row.is_multiple_of(bs) {
            return None;
        }
        let n = self.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
        (n / bs).checked_mul(ts)
    }
}

/// The GGUF type id of a value.
fn type_id(v: &GgufValue) -> u32 {
    match v {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A value's bytes, without its type id. An array's elements take the type of its first one
/// (an empty array is written as one of strings: llama.cpp reads an empty
/// `tokenizer.ggml.merges` only so).
fn put_value(out: &mut Vec<u8>, v: &GgufValue) -> std::result::Result<(), String> {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(u8::from(*x)),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::Array(items) => {
            let ty = items.first().map_or(8, type_id);
            if items.iter().any(|i| type_id(i) != ty) {
                return Err("an array whose elements are not all of one type".into());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item)?;
            }
        }
    }
    Ok(())
}

fn pad(len: usize) -> usize {
    len.next_multiple_of(GGUF_DEFAULT_ALIGNMENT) - len
}

/// The header, metadata and tensor infos of a file, padded to where the data starts.
pub fn header(metadata: &[(String, GgufValue)], tensors: &[TensorOut]) -> std::result::Result<Vec<u8>, String> {
    let mut out = GGUF_MAGIC.to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        out.extend_from_slice(&type_id(value).to_le_bytes());
        put_value(&mut out, value).map_err(|e| format!("metadata `{key}`: {e}"))?;
    }
    let mut offset = 0usize;
    for t in tensors {
        let len = t.byte_len().ok_or_else(|| format!("tensor `{}`: {:?} is not whole {} blocks", t.name, t.dims, t.ty.name()))?;
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        t.dims.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset += len + pad(len);
    }
    out.resize(out.len() + pad(out.len()), 0);
    Ok(out)
}

/// Writes a GGUF v3 file at `dest` holding `metadata` and `tensors`, the data of tensor `i`
/// given by `data(i)` when it is written (in order, one at a time). `dest` must not be one of
/// `inputs`, and replaces what is there only when `replace` ([`prunec_ir::output`]).
pub fn write_gguf(
    dest: &Path,
    inputs: &[&Path],
    replace: bool,
    metadata: &[(String, GgufValue)],
    tensors: &[TensorOut],
    data: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
) -> Result<PathBuf> {
    let bad = |tensor: &str, reason: String| FrontendError::BadTensor { path: dest.to_path_buf(), tensor: tensor.into(), reason };
    let head = header(metadata, tensors).map_err(|reason| bad("", reason))?;
    let out = prunec_ir::output::AtomicPath::file(dest, inputs, replace)?;
    let io = |source| FrontendError::Io { path: dest.to_path_buf(), source };
    let mut file = BufWriter::with_capacity(1 << 20, std::fs::File::create(out.temp()).map_err(io)?);
    file.write_all(&head).map_err(io)?;
    for (i, t) in tensors.iter().enumerate() {
        let bytes = data(i)?;
        let want = t.byte_len().unwrap_or(0);
        if bytes.len() != want {
            return Err(bad(&t.name, format!("{} bytes of data where {:?} of {} take {want}", bytes.len(), t.dims, t.ty.name())));
        }
        file.write_all(&bytes).map_err(io)?;
        file.write_all(&vec![0u8; pad(bytes.len())]).map_err(io)?;
    }
    file.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
    Ok(out.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::tests::support::TempFile;
    use crate::gguf::GgufFile;

    #[test]
    fn written_files_read_back() {
        let t = TempFile::new();
        let metadata = vec![
            ("general.architecture".to_string(), GgufValue::String("llama".into())),
            ("llama.attention.head_count".to_string(), GgufValue::Array(vec![GgufValue::U32(3), GgufValue::U32(2)])),
            ("general.flag".to_string(), GgufValue::Bool(true)),
            ("x.f".to_string(), GgufValue::F32(0.5)),
            ("x.i".to_string(), GgufValue::I64(-7)),
            ("x.names".to_string(), GgufValue::Array(vec![GgufValue::String("a".into()), GgufValue::String("bé".into())])),
        ];
        let tensors = vec![
            TensorOut { name: "a".into(), dims: vec![3, 2], ty: GgmlType::F32 },
            TensorOut { name: "q".into(), dims: vec![64, 1], ty: GgmlType::Q8_0 },
        ];
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let q: Vec<f32> = (0..64).map(|i| i as f32 / 8.0 - 4.0).collect();
        let q_bytes = crate::gguf::quant::quantize(GgmlType::Q8_0, &q).unwrap();
        write_gguf(&t.0, &[], false, &metadata, &tensors, &mut |i| {
            Ok(if i == 0 { crate::gguf::quant::quantize(GgmlType::F32, &a).unwrap() } else { q_bytes.clone() })
        })
        .unwrap();
        let f = GgufFile::open(&t.0).unwrap();
        assert_eq!(f.version(), 3);
        for (k, v) in &metadata {
            assert_eq!(f.get(k), Some(v), "{k}");
        }
        assert_eq!(f.dequantize("a").unwrap(), a);
        assert_eq!(f.tensor_info("a").unwrap().shape(), [2, 3]);
        assert_eq!(f.tensor_bytes(f.tensor_info("q").unwrap()), q_bytes);
        // an existing file is replaced only when told
        let err = write_gguf(&t.0, &[], false, &metadata, &tensors, &mut |_| unreachable!()).unwrap_err();
        assert!(err.to_string().contains("--force") || err.to_string().contains("exists"), "{err}");
    }

    #[test]
    fn wrong_data_is_an_error_and_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("prunec-gguf-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("x.gguf");
        let tensors = vec![TensorOut { name: "w".into(), dims: vec![32, 2], ty: GgmlType::Q4_0 }];
        let err = write_gguf(&dest, &[], false, &[], &tensors, &mut |_| Ok(vec![0; 5])).unwrap_err().to_string();
        assert!(err.contains("`w`") && err.contains("36"), "{err}");
        let bad = vec![TensorOut { name: "w".into(), dims: vec![33], ty: GgmlType::Q4_0 }];
        assert!(write_gguf(&dest, &[], false, &[], &bad, &mut |_| Ok(vec![])).unwrap_err().to_string().contains("blocks"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "a temporary file was left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
