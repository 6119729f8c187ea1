//! Safetensors files, memory-mapped: one file or the shards an index names. Tensors stay in
//! the map until a pass reads them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use prunec_ir::{DType, TensorSource};
use safetensors::tensor::{Dtype, TensorInfo};

use crate::error::{FrontendError, Result};

/// One tensor inside a mapped safetensors file.
#[derive(Debug)]
pub struct MappedTensor {
    path: PathBuf,
    map: Arc<Mmap>,
    start: usize,
    end: usize,
    dtype: Dtype,
}

impl TensorSource for MappedTensor {
    fn read_f32(&self) -> std::result::Result<Vec<f32>, String> {
        let bytes = self.map.get(self.start..self.end).ok_or("data range outside the file")?;
        let values = decode(bytes, self.dtype);
        crate::weights::release_pages(&self.map, self.start, self.end - self.start);
        values
    }

    fn stored_dtype(&self) -> DType {
        match self.dtype {
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            _ => DType::F32,
        }
    }

    fn describe(&self) -> String {
        format!("{} @ {}", self.path.display(), self.start)
    }
}

/// Decodes little-endian tensor bytes of a float dtype to f32.
pub fn decode(bytes: &[u8], dtype: Dtype) -> std::result::Result<Vec<f32>, String> {
    Ok(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => return Err(format!("dtype {other:?} is not a float type prunec reads (f32, f16, bf16, f64)")),
    })
}

/// The largest header read (the safetensors crate's limit).
const MAX_HEADER: usize = 100_000_000;

/// The header of a safetensors file in `bytes`: its length and every tensor's entry, each
/// checked (a known dtype, data inside the file whose size is the shape's, no two tensors
/// overlapping). Unlike the safetensors crate, bytes that no tensor holds are allowed, so that a
/// tensor missing from the header is reported by name when it is looked for rather than as a
/// bad offset of its neighbour.
pub fn parse_header(bytes: &[u8]) -> std::result::Result<(usize, HashMap<String, TensorInfo>), String> {
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("the file is {} bytes, too short for the 8-byte header length", bytes.len()))?;
    let n = u64::from_le_bytes(len);
    let n = usize::try_from(n).ok().filter(|&n| n <= MAX_HEADER).ok_or_else(|| format!("header length {n} exceeds {MAX_HEADER} bytes"))?;
    let header = bytes
        .get(8..8 + n)
        .ok_or_else(|| format!("the header of {n} bytes runs past the end of the file ({} bytes)", bytes.len()))?;
    let data_len = bytes.len() - 8 - n;
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("the header is not a JSON object: {e}"))?;
    let mut tensors = HashMap::with_capacity(json.len());
    let mut ranges = Vec::with_capacity(json.len());
    for (name, value) in json {
        if name == "__metadata__" {
            serde_json::from_value::<HashMap<String, String>>(value)
                .map_err(|e| format!("`__metadata__` is not a map of strings: {e}"))?;
            continue;
        }
        let info: TensorInfo = serde_json::from_value(value).map_err(|e| format!("tensor `{}`: {e}", name.escape_debug()))?;
        let (start, end) = info.data_offsets;
        let bits = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor `{}`: shape {:?} overflows", name.escape_debug(), info.shape))?;
        if start > end || end > data_len || bits % 8 != 0 || end - start != bits / 8 {
            return Err(format!(
                "tensor `{}`: data offsets {start}..{end} do not hold {:?} {:?} inside the {data_len} bytes of data",
                name.escape_debug(),
                info.dtype,
                info.shape
            ));
        }
        if end > start {
            ranges.push((start, end, name.clone()));
        }
        tensors.insert(name, info);
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(format!("tensors `{}` and `{}` overlap", pair[0].2.escape_debug(), pair[1].2.escape_debug()));
        }
    }
    Ok((n, tensors))
}

/// A memory-mapped safetensors file with its validated header.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    map: Arc<Mmap>,
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
}

impl SafetensorsFile {
    /// Maps `path` and validates its header (offsets inside the file, no overlap, no gap).
    pub fn open(path: &Path) -> Result<SafetensorsFile> {
        let file = File::open(path).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
        // SAFETY: the map is read-only; prunec never writes its inputs, and a file changed
        // by another process while mapped is outside what any reader can guard against.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
        let (header, tensors) = parse_header(&map).map_err(|reason| FrontendError::Corrupt {
            path: path.to_path_buf(),
            format: "safetensors",
            reason,
        })?;
        Ok(SafetensorsFile { path: path.to_path_buf(), map: Arc::new(map), data_start: 8 + header, tensors })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header entry of tensor `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Names of the tensors in the file.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// A lazy source for tensor `name`.
    pub fn source(&self, name: &str) -> Result<Arc<dyn TensorSource>> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| FrontendError::MissingTensor { path: self.path.clone(), tensor: name.to_string() })?;
        if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
            return Err(FrontendError::BadTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
                reason: format!("dtype {:?} is not a float type prunec reads (f32, f16, bf16)", info.dtype),
            });
        }
        Ok(Arc::new(MappedTensor {
            path: self.path.clone(),
            map: Arc::clone(&self.map),
            start: self.data_start + info.data_offsets.0,
            end: self.data_start + info.data_offsets.1,
            dtype: info.dtype,
        }))
    }
}

/// The weights of an HF folder: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` names.
#[derive(Debug)]
pub struct HfWeights {
    dir: PathBuf,
    files: Vec<SafetensorsFile>,
    by_name: BTreeMap<String, usize>,
}

impl HfWeights {
    /// Opens the weights of folder `dir`.
    pub fn open(dir: &Path) -> Result<HfWeights> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let mut files = Vec::new();
        let mut by_name = BTreeMap::new();
        if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|source| FrontendError::Io { path: index.clone(), source })?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| FrontendError::Corrupt {
                path: index.clone(),
                format: "safetensors index",
                reason: e.to_string(),
            })?;
            let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| FrontendError::Corrupt {
                path: index.clone(),
                format: "safetensors index",
                reason: "no `weight_map` object".into(),
            })?;
            let mut shard_of: BTreeMap<String, usize> = BTreeMap::new();
            for (tensor, shard) in map {
                let shard = shard.as_str().ok_or_else(|| FrontendError::Corrupt {
                    path: index.clone(),
                    format: "safetensors index",
                    reason: format!("shard of `{tensor}` is not a file name"),
                })?;
                if shard.contains('/') || shard.contains('\\') || shard == ".." {
                    return Err(FrontendError::Corrupt {
                        path: index.clone(),
                        format: "safetensors index",
                        reason: format!("shard `{shard}` is not a plain file name"),
                    });
                }
                let k = match shard_of.get(shard) {
                    Some(&k) => k,
                    None => {
                        let path = dir.join(shard);
                        if !path.is_file() {
                            return Err(FrontendError::Missing { path, what: format!("shard holding `{tensor}`") });
                        }
                        files.push(SafetensorsFile::open(&path)?);
                        shard_of.insert(shard.to_string(), files.len() - 1);
                        files.len() - 1
                    }
                };
                if files[k].info(tensor).is_none() {
                    return Err(FrontendError::MissingTensor { path: files[k].path.clone(), tensor: tensor.clone() });
                }
                by_name.insert(tensor.clone(), k);
            }
        } else if single.is_file() {
            let f = SafetensorsFile::open(&single)?;
            for n in f.names() {
                by_name.insert(n.clone(), 0);
            }
            files.push(f);
        } else {
            return Err(FrontendError::Missing { path: single, what: "the weights (or model.safetensors.index.json)".into() });
        }
        Ok(HfWeights { dir: dir.to_path_buf(), files, by_name })
    }

    /// The file holding tensor `name`, and its header entry.
    pub fn get(&self, name: &str) -> Option<(&SafetensorsFile, &TensorInfo)> {
        let f = self.files.get(*self.by_name.get(name)?)?;
        Some((f, f.info(name)?))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every tensor name.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of `header` (JSON) and `data` bytes.
    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(vec![0u8; data]);
        bytes
    }

    #[test]
    fn headers_are_checked_but_gaps_are_allowed() {
        // `b` was removed from the header: its bytes are held by no tensor, and that is fine
        let gap = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"c":{"dtype":"F16","shape":[2],"data_offsets":[16,20]}}"#;
        let (n, tensors) = parse_header(&file(gap, 20)).unwrap();
        assert_eq!((n, tensors.len()), (gap.len(), 2));
        for (header, data, needle) in [
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4, "inside the 4 bytes"),
            (r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, "do not hold"),
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, 12, "overlap"),
            (r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, 8, "overflows"),
            (r#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, 8, "tensor `a`"),
            (r#"{"__metadata__":{"format":3}}"#, 0, "map of strings"),
            (r#"[1, 2]"#, 0, "not a JSON object"),
        ] {
            let e = parse_header(&file(header, data)).unwrap_err();
            assert!(e.contains(needle), "{header}: {e}");
        }
        assert!(parse_header(&[1, 2, 3]).unwrap_err().contains("too short"));
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend(b"{}");
        assert!(parse_header(&huge).unwrap_err().contains("exceeds"));
        let mut past = 100u64.to_le_bytes().to_vec();
        past.extend(b"{}");
        assert!(parse_header(&past).unwrap_err().contains("runs past the end"));
    }
}
