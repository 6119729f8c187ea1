//! Parsing a GGUF file's bytes: the header (magic, version, counts), the metadata section and the
//! tensor infos, into what [`GgufFile`](super::GgufFile) holds; and the errors of a bad file.

use std::collections::BTreeMap;
use std::path::Path;

use super::cursor::{escaped, Cursor};
use super::layout::{check_tensor, GgufTensorInfo, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_MAX_DIMS, MAX_ALIGNMENT};
use super::value::{read_value, GgufValue};
use crate::error::FrontendError;

/// The name of the format, for [`FrontendError::Corrupt`].
const FORMAT: &str = "GGUF";

pub(super) fn corrupt(path: &Path, reason: String) -> FrontendError {
    FrontendError::Corrupt { path: path.to_path_buf(), format: FORMAT, reason }
}

/// Why parsing failed, before the path is known.
pub(super) enum ParseError {
    /// The file as a whole is bad.
    Corrupt(String),
    /// One tensor is bad.
    Tensor { tensor: String, reason: String },
}

impl ParseError {
    pub(super) fn into_frontend(self, path: &Path) -> FrontendError {
        match self {
            ParseError::Corrupt(reason) => corrupt(path, reason),
            ParseError::Tensor { tensor, reason } => {
                FrontendError::BadTensor { path: path.to_path_buf(), tensor, reason }
            }
        }
    }
}

impl From<String> for ParseError {
    fn from(reason: String) -> Self {
        ParseError::Corrupt(reason)
    }
}

pub(super) type ParseResult<T> = std::result::Result<T, ParseError>;

pub(super) struct Parsed {
    pub(super) version: u32,
    pub(super) alignment: usize,
    pub(super) data_offset: usize,
    pub(super) metadata: BTreeMap<String, GgufValue>,
    pub(super) tensors: Vec<GgufTensorInfo>,
    pub(super) index: BTreeMap<String, usize>,
}

pub(super) fn parse(buf: &[u8]) -> ParseResult<Parsed> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.array("magic")?;
    if magic != GGUF_MAGIC {
        return Err(format!(
            "bad magic {:?} (bytes {magic:02x?}), expected \"GGUF\": not a GGUF file",
            String::from_utf8_lossy(&magic)
        )
        .into());
    }
    let version = c.u32("version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(String::from(
                "GGUF version 1 is not supported (it has 32-bit counts and lengths); \
                 convert the model again with a current llama.cpp",
            )
            .into())
        }
        v if matches!(v.swap_bytes(), 1..=3) => {
            return Err(format!("big-endian GGUF (version {}) is not supported", v.swap_bytes()).into())
        }
        v => return Err(format!("unsupported GGUF version {v} (supported: 2 and 3)").into()),
    }
    let tensor_count = c.u64("tensor count")?;
    let kv_count = c.u64("metadata count")?;
    // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor info at
    // least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    let remaining = c.remaining();
    let kv_n = usize::try_from(kv_count).ok().filter(|&n| n <= remaining / 13).ok_or_else(|| {
        format!("{kv_count} metadata entries cannot fit in the {remaining} bytes left (truncated or corrupt)")
    })?;
    let tensor_n = usize::try_from(tensor_count).ok().filter(|&n| n <= remaining / 24).ok_or_else(|| {
        format!("{tensor_count} tensor infos cannot fit in the {remaining} bytes left (truncated or corrupt)")
    })?;

    let mut metadata = BTreeMap::new();
    for i in 0..kv_n {
        let key = c.utf8_string(&format!("key of metadata entry #{i}"))?;
        let shown = escaped(&key);
        let ty = c.u32(&format!("type of metadata `{shown}`"))?;
        let value = read_value(&mut c, ty, &shown, 0)?;
        if metadata.insert(key, value).is_some() {
            return Err(format!("metadata key `{shown}` appears twice").into());
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => GGUF_DEFAULT_ALIGNMENT,
        Some(v) => v
            .as_u64()
            .filter(|&a| a > 0 && a.is_power_of_two() && a <= MAX_ALIGNMENT)
            .and_then(|a| usize::try_from(a).ok())
            .ok_or_else(|| format!("general.alignment must be a power of two up to 2^30, not {} {v}", v.type_name()))?,
    };

    let mut raw = Vec::with_capacity(tensor_n);
    let mut index = BTreeMap::new();
    for i in 0..tensor_n {
        let name = c.utf8_string(&format!("name of tensor info #{i}"))?;
        let shown = escaped(&name);
        let bad = |reason: String| ParseError::Tensor { tensor: shown.clone(), reason };
        let n_dims = c.u32(&format!("n_dims of tensor `{shown}`")).map_err(bad)?;
        let n_dims = usize::try_from(n_dims)
            .ok()
            .filter(|&n| n <= GGUF_MAX_DIMS)
            .ok_or_else(|| bad(format!("{n_dims} dimensions (at most {GGUF_MAX_DIMS})")))?;
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64(&format!("dimensions of tensor `{shown}`")).map_err(bad)?);
        }
        let ty_id = c.u32(&format!("type of tensor `{shown}`")).map_err(bad)?;
        let rel_offset = c.u64(&format!("offset of tensor `{shown}`")).map_err(bad)?;
        if index.insert(name.clone(), i).is_some() {
            return Err(bad(String::from("tensor name appears twice")));
        }
        raw.push((name, dims, ty_id, rel_offset));
    }

    let data_offset = c.pos.checked_next_multiple_of(alignment).ok_or_else(|| String::from("data offset overflows"))?;
    let file_len = buf.len();
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, dims, ty_id, rel_offset) in raw {
        let info = check_tensor(&name, dims, ty_id, rel_offset, alignment, data_offset, file_len)
            .map_err(|reason| ParseError::Tensor { tensor: escaped(&name), reason })?;
        tensors.push(info);
    }
    Ok(Parsed { version, alignment, data_offset, metadata, tensors, index })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FrontendError;
    use crate::gguf::tests::support::{fixture, open_err, small_file, TempFile};
    use crate::gguf::{dequantize, GgufFile};

    #[test]
    fn bad_magic_and_versions() {
        let mut bytes = small_file().build();
        bytes[..4].copy_from_slice(b"GGUG");
        let (e, msg) = open_err(&bytes);
        assert!(matches!(e, FrontendError::Corrupt { format: "GGUF", .. }), "{e:?}");
        assert!(msg.contains("magic"), "{msg}");

        for (version, needle) in [(1u32, "version 1"), (4, "version 4"), (3u32.swap_bytes(), "big-endian")] {
            let mut b = small_file();
            b.version = version;
            let (_, msg) = open_err(&b.build());
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let full = small_file().build();
        let t = TempFile::new();
        for len in 0..full.len() {
            t.write(&full[..len]);
            match GgufFile::open(&t.0) {
                Ok(_) => panic!("a {len}-byte prefix of a {}-byte file opened", full.len()),
                Err(e) => assert!(e.to_string().contains(&t.0.display().to_string()), "{e}"),
            }
        }
        t.write(&full);
        GgufFile::open(&t.0).unwrap();
    }

    #[test]
    fn every_truncation_of_quants_gguf_is_an_error() {
        // In memory (`parse` is what `open` runs on the map), to spare the disk 13k writes.
        let full = std::fs::read(fixture("quants.gguf")).unwrap();
        let f = GgufFile::open(&fixture("quants.gguf")).unwrap();
        // gguf-py pads the file after the last tensor: only prefixes that cut data must fail
        let data_end = f.tensors().iter().map(|t| t.offset as usize + t.byte_len()).max().unwrap();
        assert!(data_end <= full.len() && data_end + 64 > full.len());
        for len in data_end..=full.len() {
            assert!(parse(&full[..len]).is_ok(), "a {len}-byte prefix failed");
        }
        for len in 0..data_end {
            assert!(parse(&full[..len]).is_err(), "a {len}-byte prefix parsed");
        }
    }

    /// Random byte edits of valid files: never a panic; whatever opens can be fully read.
    #[test]
    fn random_corruptions_never_panic() {
        // In memory, like `open` after the map: parse, then read every tensor and key.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let quants = std::fs::read(fixture("quants.gguf")).unwrap();
        let header_len = GgufFile::open(&fixture("quants.gguf")).unwrap().data_offset();
        let small = small_file().build();
        let (mut parsed, mut failed) = (0, 0);
        for round in 0..5000 {
            // the small file anywhere, quants.gguf in its header (its data is covered elsewhere)
            let (mut bytes, span) =
                if round % 2 == 0 { (small.clone(), small.len()) } else { (quants.clone(), header_len) };
            for _ in 0..1 + next() % 4 {
                let i = (next() % span as u64) as usize;
                bytes[i] = match next() % 3 {
                    0 => next() as u8,
                    1 => bytes[i] ^ (1 << (next() % 8)),
                    _ => 0xFF,
                };
            }
            match parse(&bytes) {
                Ok(p) => {
                    parsed += 1;
                    for info in &p.tensors {
                        let start = info.offset as usize;
                        let data = &bytes[start..start + info.byte_len()];
                        let _ = dequantize(info.ty, data, info.n_elements());
                    }
                    for v in p.metadata.values() {
                        let _ = (v.as_str(), v.as_u64(), v.as_f64(), v.to_string());
                    }
                }
                Err(_) => failed += 1,
            }
        }
        assert!(parsed > 0 && failed > 0, "{parsed} parsed, {failed} failed");
    }
}
