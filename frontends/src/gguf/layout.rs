//! Where tensors lie in a GGUF file: the format's constants (magic, alignment, dimensions),
//! [`GgufTensorInfo`], and the check that places a tensor's data inside the file (known type,
//! whole blocks, aligned offset, byte range within the file).

use super::ggml_type::GgmlType;

/// The four bytes a GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of tensor data when the file has no `general.alignment`.
pub const GGUF_DEFAULT_ALIGNMENT: usize = 32;
/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const GGUF_MAX_DIMS: usize = 4;
/// The largest `general.alignment` accepted (a sanity bound; real files use 32).
pub(super) const MAX_ALIGNMENT: u64 = 1 << 30;

/// Where a tensor lies in a GGUF file and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`...).
    pub name: String,
    /// Its dimensions in ggml order: `dims[0]` (`ne[0]`) varies fastest.
    pub dims: Vec<u64>,
    /// The type of its data.
    pub ty: GgmlType,
    /// The absolute offset of its data in the file (data section start + the stored offset).
    pub offset: u64,
}

impl GgufTensorInfo {
    /// The shape in numpy/HF order (`dims` reversed): `[rows, cols]` for a matrix whose rows
    /// are `dims[0]` long.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect()
    }

    /// The number of elements (saturating; [`GgufFile::open`](super::GgufFile::open) has checked
    /// that it fits).
    pub fn n_elements(&self) -> usize {
        self.dims.iter().fold(1usize, |n, &d| n.saturating_mul(usize::try_from(d).unwrap_or(usize::MAX)))
    }

    /// The number of bytes of its data (saturating; 0 for an unknown type).
    pub fn byte_len(&self) -> usize {
        match self.ty.block_layout() {
            Some((bs, ts)) => (self.n_elements() / bs).saturating_mul(ts),
            None => 0,
        }
    }
}

pub(super) fn check_tensor(
    name: &str,
    dims: Vec<u64>,
    ty_id: u32,
    rel_offset: u64,
    alignment: usize,
    data_offset: usize,
    file_len: usize,
) -> std::result::Result<GgufTensorInfo, String> {
    let ty = GgmlType::from_id(ty_id);
    let (bs, ts) = ty.block_layout().ok_or_else(|| format!("unknown GGML type id {ty_id}"))?;
    let mut n_elements: usize = 1;
    for &d in &dims {
        n_elements = usize::try_from(d)
            .ok()
            .filter(|_| d <= i64::MAX as u64)
            .and_then(|d| n_elements.checked_mul(d))
            .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % bs as u64 != 0 {
        return Err(format!(
            "row length {ne0} (ne[0] of {dims:?}) is not a multiple of the {} block size {bs}",
            ty.name()
        ));
    }
    let byte_len =
        (n_elements / bs).checked_mul(ts).ok_or_else(|| format!("byte size of dimensions {dims:?} overflows"))?;
    if !rel_offset.is_multiple_of(alignment as u64) {
        return Err(format!("data offset {rel_offset} is not a multiple of the alignment {alignment}"));
    }
    let start = usize::try_from(rel_offset).ok().and_then(|o| o.checked_add(data_offset));
    let end = start.and_then(|s| s.checked_add(byte_len));
    match (start, end) {
        (Some(start), Some(end)) if end <= file_len => {
            Ok(GgufTensorInfo { name: name.to_string(), dims, ty, offset: start as u64 })
        }
        _ => Err(format!(
            "data ({byte_len} bytes of {} at data section offset {rel_offset}, absolute {}) lies \
             past the end of the file ({file_len} bytes)",
            ty.name(),
            (rel_offset as u128) + data_offset as u128
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::error::FrontendError;
    use crate::gguf::tests::support::{open_err, small_file, Edit};
    use crate::gguf::GgmlType;

    #[test]
    fn tensor_past_the_end() {
        let mut b = small_file();
        b.tensor_raw("late", &[8], GgmlType::F32.id(), 1 << 20);
        let (e, msg) = open_err(&b.build());
        assert!(matches!(&e, FrontendError::BadTensor { tensor, .. } if tensor == "late"), "{e:?}");
        assert!(msg.contains("past the end"), "{msg}");
        // an offset so large that adding it overflows
        let mut b = small_file();
        b.tensor_raw("huge", &[8], GgmlType::F32.id(), u64::MAX - 31);
        let (e, _) = open_err(&b.build());
        assert!(matches!(&e, FrontendError::BadTensor { tensor, .. } if tensor == "huge"), "{e:?}");
        // data that starts inside the file but runs past its end
        let mut b = small_file();
        b.tensor_raw("long", &[1 << 40], GgmlType::F32.id(), 0);
        let (e, _) = open_err(&b.build());
        assert!(matches!(&e, FrontendError::BadTensor { tensor, .. } if tensor == "long"), "{e:?}");
    }

    #[test]
    fn bad_tensor_infos() {
        let cases: Vec<(Edit, &str, &str)> = vec![
            (
                Box::new(|b| {
                    b.tensor_raw("odd", &[8], 99, 0);
                }),
                "odd",
                "unknown GGML type id 99",
            ),
            (
                Box::new(|b| {
                    b.tensor_raw("gone", &[8], 4, 0);
                }),
                "gone",
                "unknown GGML type id 4",
            ),
            (
                Box::new(|b| {
                    b.tensor_raw("deep", &[1, 1, 1, 1, 1], 0, 0);
                }),
                "deep",
                "5 dimensions",
            ),
            (
                Box::new(|b| {
                    b.tensor_raw("many", &[1 << 32, 1 << 32, 1 << 32], 0, 0);
                }),
                "many",
                "overflow",
            ),
            (
                Box::new(|b| {
                    b.tensor_raw("neg", &[u64::MAX], 0, 0);
                }),
                "neg",
                "overflow",
            ),
            (
                Box::new(|b| {
                    b.tensor_raw("partial", &[48], GgmlType::Q8_0.id(), 0);
                }),
                "partial",
                "multiple of",
            ),
            (
                Box::new(|b| {
                    b.tensor_raw("unaligned", &[2], 0, 4);
                }),
                "unaligned",
                "alignment",
            ),
            (
                Box::new(|b| {
                    b.tensor_raw("a", &[2], 0, 0);
                }),
                "a",
                "twice",
            ),
        ];
        for (add, tensor, needle) in cases {
            let mut b = small_file();
            add(&mut b);
            let (e, msg) = open_err(&b.build());
            assert!(matches!(&e, FrontendError::BadTensor { tensor: t, .. } if t == tensor), "{e:?}");
            assert!(msg.contains(needle) && msg.contains(tensor), "{msg}");
        }
    }
}
