//! Tensor data of ONNX files: `raw_data` (little endian), the typed fields (`float_data`,
//! `int32_data`...) and external data files, turned into one form, [`RawTensor`].

use std::borrow::Cow;

use bytes::Bytes;

use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::TensorProto;

/// A tensor's data as little-endian bytes in ONNX's `raw_data` layout, with its shape.
///
/// Data stored raw (inline or in an external file) is not copied: `bytes` points into the
/// mapped file. Data stored in the typed fields is converted once.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// The shape, outermost first (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// The element type.
    pub data_type: DataType,
    /// The data: exactly [`raw_len`] bytes for the shape and type.
    pub bytes: Bytes,
}

impl RawTensor {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32, for the float types (FLOAT, FLOAT16, BFLOAT16, DOUBLE).
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        f32_from_le(&self.bytes, self.data_type)
    }

    /// The values as i64, for the integer types and BOOL (not UINT64, not the 4-bit types).
    pub fn to_i64(&self) -> Result<Vec<i64>, String> {
        i64_from_le(&self.bytes, self.data_type)
    }
}

/// The product of `sizes` (an element count), when it fits in `usize`: a hostile file's
/// declared sizes may not.
pub fn checked_product(sizes: impl IntoIterator<Item = usize>) -> Option<usize> {
    sizes.into_iter().try_fold(1usize, usize::checked_mul)
}

/// A data type's name for messages (`FLOAT`, `INT64`, or `unknown data type 99`).
pub fn type_name(data_type: i32) -> String {
    match DataType::try_from(data_type) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("unknown data type {data_type}"),
    }
}

/// The bytes `n` elements of `data_type` take in `raw_data`; `None` for STRING, UNDEFINED,
/// or an overflow.
pub fn raw_len(data_type: DataType, n: usize) -> Option<usize> {
    use DataType as T;
    let size = match data_type {
        T::Uint8 | T::Int8 | T::Bool | T::Float8e4m3fn | T::Float8e4m3fnuz | T::Float8e5m2 | T::Float8e5m2fnuz => 1,
        T::Uint16 | T::Int16 | T::Float16 | T::Bfloat16 => 2,
        T::Float | T::Int32 | T::Uint32 => 4,
        T::Int64 | T::Uint64 | T::Double | T::Complex64 => 8,
        T::Complex128 => 16,
        T::Uint4 | T::Int4 => return Some(n.div_ceil(2)),
        T::String | T::Undefined => return None,
    };
    n.checked_mul(size)
}

/// The tensor's shape and element count; refuses negative dimensions and overflows.
pub(crate) fn shape_of(t: &TensorProto) -> Result<(Vec<usize>, usize), String> {
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut n: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| format!("negative dimension in shape {:?}", t.dims))?;
        n = n.checked_mul(d).ok_or_else(|| format!("shape {:?} has too many elements", t.dims))?;
        shape.push(d);
    }
    Ok((shape, n))
}

/// The tensor's data type, refusing values outside the enum.
pub(crate) fn data_type_of(t: &TensorProto) -> Result<DataType, String> {
    DataType::try_from(t.data_type).map_err(|_| format!("unknown data type {}", t.data_type))
}

/// Whether the tensor's data is in an external file; refuses unknown locations.
pub(crate) fn is_external(t: &TensorProto) -> Result<bool, String> {
    match DataLocation::try_from(t.data_location) {
        Ok(DataLocation::External) => Ok(true),
        Ok(DataLocation::Default) => Ok(false),
        Err(_) => Err(format!("unknown data location {}", t.data_location)),
    }
}

/// The data of a tensor held in the proto itself (not external): `raw_data` if set, else the
/// typed field converted to raw bytes. Checks the size against the shape.
pub(crate) fn inline_bytes(t: &TensorProto, data_type: DataType, n: usize) -> Result<Bytes, String> {
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    let expected =
        raw_len(data_type, n).ok_or_else(|| format!("{} tensors have no raw byte form", data_type.as_str_name()))?;
    let bytes = if t.raw_data.is_empty() { Bytes::from(typed_bytes(t, data_type, n)?) } else { t.raw_data.clone() };
    check_len(bytes.len(), expected, t, data_type)?;
    Ok(bytes)
}

/// Refuses data whose size disagrees with the shape.
pub(crate) fn check_len(found: usize, expected: usize, t: &TensorProto, data_type: DataType) -> Result<(), String> {
    if found == expected {
        Ok(())
    } else {
        Err(format!(
            "holds {found} bytes of data, but shape {:?} of {} needs {expected}",
            t.dims,
            data_type.as_str_name()
        ))
    }
}

/// The typed field of `t` for `data_type`, as raw little-endian bytes.
fn typed_bytes(t: &TensorProto, data_type: DataType, n: usize) -> Result<Vec<u8>, String> {
    use DataType as T;
    let count = |found: usize, per_element: usize, field: &str| -> Result<(), String> {
        let expected = n.checked_mul(per_element).ok_or("too many elements")?;
        if found == expected {
            Ok(())
        } else {
            Err(format!("`{field}` holds {found} values, but shape {:?} needs {expected}", t.dims))
        }
    };
    Ok(match data_type {
        T::Float | T::Complex64 => {
            let per = if data_type == T::Float { 1 } else { 2 };
            count(t.float_data.len(), per, "float_data")?;
            t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        T::Double | T::Complex128 => {
            let per = if data_type == T::Double { 1 } else { 2 };
            count(t.double_data.len(), per, "double_data")?;
            t.double_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        T::Int64 => {
            count(t.int64_data.len(), 1, "int64_data")?;
            t.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        T::Uint64 => {
            count(t.uint64_data.len(), 1, "uint64_data")?;
            t.uint64_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        T::Uint32 => {
            count(t.uint64_data.len(), 1, "uint64_data")?;
            t.uint64_data.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect()
        }
        T::Int32 => {
            count(t.int32_data.len(), 1, "int32_data")?;
            t.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        // 16-bit types: each int32 holds one element's bits in its low 16 bits.
        T::Int16 | T::Uint16 | T::Float16 | T::Bfloat16 => {
            count(t.int32_data.len(), 1, "int32_data")?;
            t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect()
        }
        T::Int8 | T::Uint8 | T::Bool | T::Float8e4m3fn | T::Float8e4m3fnuz | T::Float8e5m2 | T::Float8e5m2fnuz => {
            count(t.int32_data.len(), 1, "int32_data")?;
            t.int32_data.iter().map(|&v| v as u8).collect()
        }
        T::Uint4 | T::Int4 | T::String | T::Undefined => {
            return Err(format!("{} tensors in typed fields are not supported", data_type.as_str_name()))
        }
    })
}

/// The `rows × cols` row-major matrix `values`, transposed (`cols × rows`): ONNX stores
/// `MatMul` weights `[in, out]`, the IR `[out, in]`.
pub(crate) fn transposed(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = values[i * cols + j];
        }
    }
    t
}

/// Little-endian float data to f32.
fn f32_from_le(bytes: &[u8], data_type: DataType) -> Result<Vec<f32>, String> {
    use ::safetensors::Dtype;
    use DataType as T;
    let dtype = match data_type {
        T::Float => Dtype::F32,
        T::Float16 => Dtype::F16,
        T::Bfloat16 => Dtype::BF16,
        T::Double => Dtype::F64,
        other => {
            return Err(format!(
                "data type {} is not a float type prunec reads (FLOAT, FLOAT16, BFLOAT16, DOUBLE)",
                other.as_str_name()
            ))
        }
    };
    crate::safetensors::decode(bytes, dtype)
}

/// Little-endian integer data to i64.
fn i64_from_le(bytes: &[u8], data_type: DataType) -> Result<Vec<i64>, String> {
    use DataType as T;
    Ok(match data_type {
        T::Int64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        T::Int32 => bytes.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        T::Uint32 => bytes.chunks_exact(4).map(|c| i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        T::Int16 => bytes.chunks_exact(2).map(|c| i64::from(i16::from_le_bytes([c[0], c[1]]))).collect(),
        T::Uint16 => bytes.chunks_exact(2).map(|c| i64::from(u16::from_le_bytes([c[0], c[1]]))).collect(),
        T::Int8 => bytes.iter().map(|&b| i64::from(b as i8)).collect(),
        T::Uint8 | T::Bool => bytes.iter().map(|&b| i64::from(b)).collect(),
        other => {
            return Err(format!(
            "data type {} is not an integer type prunec reads (INT64, INT32, UINT32, INT16, UINT16, INT8, UINT8, BOOL)",
            other.as_str_name()
        ))
        }
    })
}

/// FLOAT data of a tensor held in the proto, borrowed where it can be: `float_data` always,
/// `raw_data` when it is 4-byte aligned on a little-endian machine.
pub(crate) fn borrowed_f32<'a>(t: &'a TensorProto, n: usize) -> Option<Cow<'a, [f32]>> {
    if t.raw_data.is_empty() {
        return (t.float_data.len() == n).then_some(Cow::Borrowed(t.float_data.as_slice()));
    }
    if Some(t.raw_data.len()) != n.checked_mul(4) {
        return None;
    }
    aligned_f32(&t.raw_data).map(Cow::Borrowed)
}

#[cfg(target_endian = "little")]
fn aligned_f32(raw: &[u8]) -> Option<&[f32]> {
    // SAFETY: every bit pattern is a valid f32, and `align_to` only puts in the middle slice
    // the part of `raw` that is aligned for f32; the machine is little endian like ONNX data.
    let (head, body, tail) = unsafe { raw.align_to::<f32>() };
    (head.is_empty() && tail.is_empty()).then_some(body)
}

#[cfg(not(target_endian = "little"))]
fn aligned_f32(_raw: &[u8]) -> Option<&[f32]> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(dims: &[i64], data_type: DataType) -> TensorProto {
        TensorProto { dims: dims.to_vec(), data_type: data_type as i32, name: "t".into(), ..Default::default() }
    }

    #[test]
    fn typed_and_raw_floats_agree() {
        let values = [1.5f32, -2.0, 0.25, 3.0e-3];
        let mut typed = tensor(&[2, 2], DataType::Float);
        typed.float_data = values.to_vec();
        let mut raw = tensor(&[2, 2], DataType::Float);
        raw.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into();
        let a = inline_bytes(&typed, DataType::Float, 4).unwrap();
        let b = inline_bytes(&raw, DataType::Float, 4).unwrap();
        assert_eq!(a, b);
        assert_eq!(f32_from_le(&a, DataType::Float).unwrap(), values);
    }

    #[test]
    fn half_types_come_from_int32_bits() {
        let values = [1.0f32, -0.5, 65504.0];
        let mut f16 = tensor(&[3], DataType::Float16);
        f16.int32_data = values.iter().map(|&v| i32::from(half::f16::from_f32(v).to_bits())).collect();
        let bytes = inline_bytes(&f16, DataType::Float16, 3).unwrap();
        assert_eq!(f32_from_le(&bytes, DataType::Float16).unwrap(), values);
        let mut bf16 = tensor(&[3], DataType::Bfloat16);
        bf16.int32_data = values.iter().map(|&v| i32::from(half::bf16::from_f32(v).to_bits())).collect();
        let bytes = inline_bytes(&bf16, DataType::Bfloat16, 3).unwrap();
        let expected: Vec<f32> = values.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
        assert_eq!(f32_from_le(&bytes, DataType::Bfloat16).unwrap(), expected);
    }

    #[test]
    fn doubles_and_ints() {
        let mut d = tensor(&[2], DataType::Double);
        d.double_data = vec![0.5, -1.25];
        assert_eq!(
            f32_from_le(&inline_bytes(&d, DataType::Double, 2).unwrap(), DataType::Double).unwrap(),
            [0.5, -1.25]
        );
        let mut i = tensor(&[3], DataType::Int64);
        i.int64_data = vec![-1, 0, i64::MAX];
        assert_eq!(
            i64_from_le(&inline_bytes(&i, DataType::Int64, 3).unwrap(), DataType::Int64).unwrap(),
            [-1, 0, i64::MAX]
        );
        let mut j = tensor(&[2], DataType::Int32);
        j.raw_data = [-7i32, 9].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into();
        assert_eq!(i64_from_le(&inline_bytes(&j, DataType::Int32, 2).unwrap(), DataType::Int32).unwrap(), [-7, 9]);
    }

    #[test]
    fn size_mismatches_are_refused() {
        let mut t = tensor(&[2, 3], DataType::Float);
        t.float_data = vec![1.0; 5];
        let e = inline_bytes(&t, DataType::Float, 6).unwrap_err();
        assert!(e.contains("float_data") && e.contains("holds 5"), "{e}");
        t.float_data.clear();
        t.raw_data = vec![0u8; 20].into();
        let e = inline_bytes(&t, DataType::Float, 6).unwrap_err();
        assert!(e.contains("20 bytes") && e.contains("24"), "{e}");
        let neg = tensor(&[2, -1], DataType::Float);
        assert!(shape_of(&neg).unwrap_err().contains("negative"));
        let huge = tensor(&[i64::MAX, i64::MAX], DataType::Float);
        assert!(shape_of(&huge).is_err());
    }

    #[test]
    fn float_data_is_borrowed() {
        let mut t = tensor(&[2], DataType::Float);
        t.float_data = vec![1.0, 2.0];
        assert!(matches!(borrowed_f32(&t, 2), Some(Cow::Borrowed(_))));
    }
}
