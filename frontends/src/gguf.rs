//! A reader of GGUF files (versions 2 and 3), the format of llama.cpp, with dequantization.
//!
//! [`GgufFile::open`] memory-maps a file and parses its header, its metadata and its tensor
//! infos; every tensor's byte range is checked against the file's size and its type's block size
//! then, so that [`GgufFile::tensor_bytes`] and [`GgufFile::dequantize`] never read out of bounds.
//! Nothing read from the file can make this module panic or allocate without bound: every count
//! and length is checked against the bytes that are left before anything is allocated, offsets use
//! checked arithmetic, and a bad file is an error that names the file (and the tensor, where there
//! is one).
//!
//! [`dequantize`] turns a tensor's bytes into `f32`s exactly as the reference C code of ggml
//! (`dequantize_row_*` in ggml-quants.c) and gguf-py's `gguf.quants.dequantize` do, bit for bit.
//! Supported: F32, F16, BF16, F64, I8, I16, I32, I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
//! Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 and MXFP4 (see
//! [`GgmlType::can_dequantize`]); the other types are read and range-checked, and dequantizing
//! them is an error.
//!
//! Layout: GGUF stores a tensor's dimensions in ggml order (`ne[0]`, the fastest-varying, first);
//! [`GgufTensorInfo::shape`] reverses them into numpy/HF order, and the data that
//! [`GgufFile::dequantize`] returns is row-major in that order. llama.cpp's converter permutes the
//! rows of the q/k projections of LLaMA-like models for its rotary embedding;
//! [`unpermute_rows`] undoes that.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16};
use memmap2::Mmap;

use crate::error::{FrontendError, Result};

/// The four bytes a GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of tensor data when the file has no `general.alignment`.
pub const GGUF_DEFAULT_ALIGNMENT: usize = 32;
/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const GGUF_MAX_DIMS: usize = 4;
/// The largest `general.alignment` accepted (a sanity bound; real files use 32).
const MAX_ALIGNMENT: u64 = 1 << 30;
/// How deeply metadata arrays may nest (arrays of arrays of ...).
const MAX_ARRAY_DEPTH: usize = 16;
/// The name of the format, for [`FrontendError::Corrupt`].
const FORMAT: &str = "GGUF";

// ---------------------------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------------------------

/// One metadata value of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `GGUF_TYPE_UINT8` (0).
    U8(u8),
    /// `GGUF_TYPE_INT8` (1).
    I8(i8),
    /// `GGUF_TYPE_UINT16` (2).
    U16(u16),
    /// `GGUF_TYPE_INT16` (3).
    I16(i16),
    /// `GGUF_TYPE_UINT32` (4).
    U32(u32),
    /// `GGUF_TYPE_INT32` (5).
    I32(i32),
    /// `GGUF_TYPE_UINT64` (10).
    U64(u64),
    /// `GGUF_TYPE_INT64` (11).
    I64(i64),
    /// `GGUF_TYPE_FLOAT32` (6).
    F32(f32),
    /// `GGUF_TYPE_FLOAT64` (12).
    F64(f64),
    /// `GGUF_TYPE_BOOL` (7): one byte, 0 or 1.
    Bool(bool),
    /// `GGUF_TYPE_STRING` (8). GGUF does not promise UTF-8: invalid sequences in a value are
    /// replaced by U+FFFD (keys and tensor names must be valid UTF-8).
    String(String),
    /// `GGUF_TYPE_ARRAY` (9): elements all of one type (which may be an array again).
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The string, if this is a [`GgufValue::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a `u64`, if it is an integer (of any width or signedness) that is `>= 0`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(u64::from(v)),
            GgufValue::U16(v) => Some(u64::from(v)),
            GgufValue::U32(v) => Some(u64::from(v)),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an `i64`, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::U8(v) => Some(i64::from(v)),
            GgufValue::U16(v) => Some(i64::from(v)),
            GgufValue::U32(v) => Some(i64::from(v)),
            GgufValue::U64(v) => i64::try_from(v).ok(),
            GgufValue::I8(v) => Some(i64::from(v)),
            GgufValue::I16(v) => Some(i64::from(v)),
            GgufValue::I32(v) => Some(i64::from(v)),
            GgufValue::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as an `f64`, if it is a float or an integer (64-bit integers may round).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(f64::from(v)),
            GgufValue::F64(v) => Some(v),
            GgufValue::U8(v) => Some(f64::from(v)),
            GgufValue::U16(v) => Some(f64::from(v)),
            GgufValue::U32(v) => Some(f64::from(v)),
            GgufValue::U64(v) => Some(v as f64),
            GgufValue::I8(v) => Some(f64::from(v)),
            GgufValue::I16(v) => Some(f64::from(v)),
            GgufValue::I32(v) => Some(f64::from(v)),
            GgufValue::I64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value, if this is a [`GgufValue::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is a [`GgufValue::Array`].
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF name of the value's type (`u32`, `string`, `array`...), for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "u8",
            GgufValue::I8(_) => "i8",
            GgufValue::U16(_) => "u16",
            GgufValue::I16(_) => "i16",
            GgufValue::U32(_) => "u32",
            GgufValue::I32(_) => "i32",
            GgufValue::U64(_) => "u64",
            GgufValue::I64(_) => "i64",
            GgufValue::F32(_) => "f32",
            GgufValue::F64(_) => "f64",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
        }
    }
}

/// Shows the value as GGUF tools do: numbers plainly, strings quoted, arrays bracketed (at most
/// 8 elements, then how many more).
impl fmt::Display for GgufValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufValue::U8(v) => write!(f, "{v}"),
            GgufValue::I8(v) => write!(f, "{v}"),
            GgufValue::U16(v) => write!(f, "{v}"),
            GgufValue::I16(v) => write!(f, "{v}"),
            GgufValue::U32(v) => write!(f, "{v}"),
            GgufValue::I32(v) => write!(f, "{v}"),
            GgufValue::U64(v) => write!(f, "{v}"),
            GgufValue::I64(v) => write!(f, "{v}"),
            GgufValue::F32(v) => write!(f, "{v}"),
            GgufValue::F64(v) => write!(f, "{v}"),
            GgufValue::Bool(v) => write!(f, "{v}"),
            GgufValue::String(s) => write!(f, "{s:?}"),
            GgufValue::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().take(8).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                if a.len() > 8 {
                    write!(f, ", ... ({} more)", a.len() - 8)?;
                }
                f.write_str("]")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GGML tensor types
// ---------------------------------------------------------------------------------------------

/// The type of a tensor's data (ggml's `enum ggml_type`), with its id in GGUF files.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit IEEE float (id 0).
    F32,
    /// 16-bit IEEE float (id 1).
    F16,
    /// 32 weights: f16 scale, 4-bit quants, offset 8 (id 2).
    Q4_0,
    /// 32 weights: f16 scale and minimum, 4-bit quants (id 3).
    Q4_1,
    /// 32 weights: f16 scale, 5-bit quants, offset 16 (id 6).
    Q5_0,
    /// 32 weights: f16 scale and minimum, 5-bit quants (id 7).
    Q5_1,
    /// 32 weights: f16 scale, 8-bit quants (id 8).
    Q8_0,
    /// 32 weights: f16 scale and sum, 8-bit quants; an intermediate type of ggml (id 9).
    Q8_1,
    /// k-quant, 256 weights, 2 bits (id 10).
    Q2_K,
    /// k-quant, 256 weights, 3 bits (id 11).
    Q3_K,
    /// k-quant, 256 weights, 4 bits (id 12).
    Q4_K,
    /// k-quant, 256 weights, 5 bits (id 13).
    Q5_K,
    /// k-quant, 256 weights, 6 bits (id 14).
    Q6_K,
    /// k-quant, 256 weights, f32 scale, 8 bits (id 15).
    Q8_K,
    /// i-quant (id 16).
    IQ2_XXS,
    /// i-quant (id 17).
    IQ2_XS,
    /// i-quant (id 18).
    IQ3_XXS,
    /// i-quant (id 19).
    IQ1_S,
    /// 32 weights: f16 scale, 4-bit indices into a non-linear table (id 20).
    IQ4_NL,
    /// i-quant (id 21).
    IQ3_S,
    /// i-quant (id 22).
    IQ2_S,
    /// 256 weights: 6-bit sub-block scales, 4-bit indices into IQ4_NL's table (id 23).
    IQ4_XS,
    /// 8-bit signed integer (id 24).
    I8,
    /// 16-bit signed integer (id 25).
    I16,
    /// 32-bit signed integer (id 26).
    I32,
    /// 64-bit signed integer (id 27).
    I64,
    /// 64-bit IEEE float (id 28).
    F64,
    /// i-quant (id 29).
    IQ1_M,
    /// bfloat16 (id 30).
    BF16,
    /// ternary, 256 weights, base-3 packed (id 34).
    TQ1_0,
    /// ternary, 256 weights, 2 bits (id 35).
    TQ2_0,
    /// OCP microscaling FP4: 32 weights, e8m0 scale, e2m1 values (id 39).
    MXFP4,
    /// NVIDIA FP4: 64 weights, four ue4m3 scales, e2m1 values (id 40).
    NVFP4,
    /// 1-bit, 128 weights (id 41).
    Q1_0,
    /// An id this reader does not know; its block size is unknown, so files holding it are refused.
    Other(u32),
}

impl GgmlType {
    /// Every type this reader knows, in id order.
    pub const KNOWN: [GgmlType; 34] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
    ];

    /// The type with ggml id `id` ([`GgmlType::Other`] for an unknown id, including the ids of
    /// types ggml has removed: 4, 5, 31-33, 36-38).
    pub fn from_id(id: u32) -> GgmlType {
        GgmlType::KNOWN.iter().copied().find(|t| t.id() == id).unwrap_or(GgmlType::Other(id))
    }

    /// The type's ggml id, as stored in GGUF files.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2_K => 10,
            GgmlType::Q3_K => 11,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::Q8_K => 15,
            GgmlType::IQ2_XXS => 16,
            GgmlType::IQ2_XS => 17,
            GgmlType::IQ3_XXS => 18,
            GgmlType::IQ1_S => 19,
            GgmlType::IQ4_NL => 20,
            GgmlType::IQ3_S => 21,
            GgmlType::IQ2_S => 22,
            GgmlType::IQ4_XS => 23,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::IQ1_M => 29,
            GgmlType::BF16 => 30,
            GgmlType::TQ1_0 => 34,
            GgmlType::TQ2_0 => 35,
            GgmlType::MXFP4 => 39,
            GgmlType::NVFP4 => 40,
            GgmlType::Q1_0 => 41,
            GgmlType::Other(id) => id,
        }
    }

    /// The type's name as ggml spells it (`q4_K`, `f16`...); `unknown` for [`GgmlType::Other`].
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q8_1 => "q8_1",
            GgmlType::Q2_K => "q2_K",
            GgmlType::Q3_K => "q3_K",
            GgmlType::Q4_K => "q4_K",
            GgmlType::Q5_K => "q5_K",
            GgmlType::Q6_K => "q6_K",
            GgmlType::Q8_K => "q8_K",
            GgmlType::IQ2_XXS => "iq2_xxs",
            GgmlType::IQ2_XS => "iq2_xs",
            GgmlType::IQ3_XXS => "iq3_xxs",
            GgmlType::IQ1_S => "iq1_s",
            GgmlType::IQ4_NL => "iq4_nl",
            GgmlType::IQ3_S => "iq3_s",
            GgmlType::IQ2_S => "iq2_s",
            GgmlType::IQ4_XS => "iq4_xs",
            GgmlType::I8 => "i8",
            GgmlType::I16 => "i16",
            GgmlType::I32 => "i32",
            GgmlType::I64 => "i64",
            GgmlType::F64 => "f64",
            GgmlType::IQ1_M => "iq1_m",
            GgmlType::BF16 => "bf16",
            GgmlType::TQ1_0 => "tq1_0",
            GgmlType::TQ2_0 => "tq2_0",
            GgmlType::MXFP4 => "mxfp4",
            GgmlType::NVFP4 => "nvfp4",
            GgmlType::Q1_0 => "q1_0",
            GgmlType::Other(_) => "unknown",
        }
    }

    /// `(elements per block, bytes per block)`, as ggml's `ggml_blck_size`/`ggml_type_size`;
    /// `None` for [`GgmlType::Other`].
    pub fn block_layout(self) -> Option<(usize, usize)> {
        const QK_K: usize = 256;
        Some(match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 => (1, 2),
            GgmlType::Q4_0 => (32, 2 + 16),
            GgmlType::Q4_1 => (32, 2 + 2 + 16),
            GgmlType::Q5_0 => (32, 2 + 4 + 16),
            GgmlType::Q5_1 => (32, 2 + 2 + 4 + 16),
            GgmlType::Q8_0 => (32, 2 + 32),
            // ggml's block_q8_1 holds two f16 (d, s): 36 bytes (gguf-py still says 40, from
            // when they were f32; Q8_1 is never stored in model files).
            GgmlType::Q8_1 => (32, 2 + 2 + 32),
            GgmlType::Q2_K => (QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
            GgmlType::Q3_K => (QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
            GgmlType::Q4_K => (QK_K, 2 + 2 + QK_K / 2 + 12),
            GgmlType::Q5_K => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
            GgmlType::Q6_K => (QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
            GgmlType::Q8_K => (QK_K, 4 + QK_K + QK_K / 8),
            GgmlType::IQ2_XXS => (QK_K, 2 + QK_K / 4),
            GgmlType::IQ2_XS => (QK_K, 2 + QK_K / 4 + QK_K / 32),
            GgmlType::IQ3_XXS => (QK_K, 2 + QK_K / 4 + QK_K / 8),
            GgmlType::IQ1_S => (QK_K, 2 + QK_K / 8 + QK_K / 16),
            GgmlType::IQ4_NL => (32, 2 + 16),
            GgmlType::IQ3_S => (QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
            GgmlType::IQ2_S => (QK_K, 2 + QK_K / 4 + QK_K / 16),
            GgmlType::IQ4_XS => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
            GgmlType::I8 => (1, 1),
            GgmlType::I16 => (1, 2),
            GgmlType::I32 => (1, 4),
            GgmlType::I64 => (1, 8),
            GgmlType::F64 => (1, 8),
            GgmlType::IQ1_M => (QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
            GgmlType::BF16 => (1, 2),
            GgmlType::TQ1_0 => (QK_K, 2 + 4 * 13),
            GgmlType::TQ2_0 => (QK_K, 2 + 64),
            GgmlType::MXFP4 => (32, 1 + 16),
            GgmlType::NVFP4 => (64, 4 + 32),
            GgmlType::Q1_0 => (128, 2 + 16),
            GgmlType::Other(_) => return None,
        })
    }

    /// Elements per block (1 for plain types); `None` for [`GgmlType::Other`].
    pub fn block_size(self) -> Option<usize> {
        self.block_layout().map(|(b, _)| b)
    }

    /// Bytes per block; `None` for [`GgmlType::Other`].
    pub fn type_size(self) -> Option<usize> {
        self.block_layout().map(|(_, t)| t)
    }

    /// Whether [`dequantize`] handles this type.
    pub fn can_dequantize(self) -> bool {
        matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::F64
                | GgmlType::I8
                | GgmlType::I16
                | GgmlType::I32
                | GgmlType::I64
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q8_0
                | GgmlType::Q2_K
                | GgmlType::Q3_K
                | GgmlType::Q4_K
                | GgmlType::Q5_K
                | GgmlType::Q6_K
                | GgmlType::Q8_K
                | GgmlType::IQ4_NL
                | GgmlType::IQ4_XS
                | GgmlType::TQ1_0
                | GgmlType::TQ2_0
                | GgmlType::MXFP4
        )
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgmlType::Other(id) => write!(f, "unknown type (id {id})"),
            t => write!(f, "{} (id {})", t.name(), t.id()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor infos
// ---------------------------------------------------------------------------------------------

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

    /// The number of elements (saturating; [`GgufFile::open`] has checked that it fits).
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

// ---------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------

/// A memory-mapped GGUF file: its metadata and tensor infos, parsed and checked. Cloning is cheap
/// (the map is shared).
#[derive(Debug, Clone)]
pub struct GgufFile {
    path: PathBuf,
    mmap: Arc<Mmap>,
    version: u32,
    alignment: usize,
    data_offset: usize,
    // shared, so that a clone (one per lazily read tensor) copies no metadata
    metadata: Arc<BTreeMap<String, GgufValue>>,
    tensors: Arc<Vec<GgufTensorInfo>>,
    index: Arc<BTreeMap<String, usize>>,
}

impl GgufFile {
    /// Memory-maps `path` and parses its header, metadata and tensor infos. Honours
    /// `general.alignment` (default 32); checks that every tensor has a known type, whole blocks
    /// along `ne[0]`, an aligned offset and a byte range inside the file.
    ///
    /// Errors: [`FrontendError::Io`] if the file cannot be read; [`FrontendError::Corrupt`] for a
    /// bad header, metadata or tensor info (bad magic, GGUF v1, truncation, impossible counts...);
    /// [`FrontendError::BadTensor`] for a tensor of unknown type or with data outside the file.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io = |source| FrontendError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 24 {
            return Err(corrupt(path, format!("truncated: {len} bytes, shorter than a GGUF header (24 bytes)")));
        }
        // SAFETY: the map is read-only and private to this process; like every reader of
        // memory-mapped model files we assume nobody truncates or rewrites the file meanwhile.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let parsed = parse(&mmap).map_err(|e| e.into_frontend(path))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap: Arc::new(mmap),
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: Arc::new(parsed.metadata),
            tensors: Arc::new(parsed.tensors),
            index: Arc::new(parsed.index),
        })
    }

    /// The file's path, as given to [`GgufFile::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data (`general.alignment`, or 32).
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// The absolute offset of the data section (tensor offsets are relative to it in the file).
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// A string metadata value; [`FrontendError::BadConfig`] naming the key if it is absent or
    /// not a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong_type(key, v, "a string"))
    }

    /// An integer metadata value of any integer type, as `usize`; [`FrontendError::BadConfig`]
    /// naming the key if it is absent, not an integer, negative or too large.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.wrong_type(key, v, "a non-negative integer"))
    }

    /// A numeric metadata value (f32, f64 or any integer) as `f32`;
    /// [`FrontendError::BadConfig`] naming the key if it is absent or not a number.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        match *v {
            GgufValue::F32(x) => Ok(x),
            _ => v.as_f64().map(|x| x as f32).ok_or_else(|| self.wrong_type(key, v, "a number")),
        }
    }

    /// A boolean metadata value; [`FrontendError::BadConfig`] naming the key if it is absent or
    /// not a bool.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong_type(key, v, "a bool"))
    }

    /// An array of strings (`tokenizer.ggml.tokens`...); [`FrontendError::BadConfig`] naming
    /// the key if it is absent or not an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        v.as_array()
            .and_then(|a| a.iter().map(GgufValue::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| self.wrong_type(key, v, "an array of strings"))
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of the tensor named `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The raw bytes of a tensor's data. For an info of this file the range was checked by
    /// [`GgufFile::open`]; an info whose range is not inside the file gives an empty slice.
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> &[u8] {
        let range =
            usize::try_from(info.offset).ok().and_then(|start| Some(start..start.checked_add(info.byte_len())?));
        range.and_then(|r| self.mmap.get(r)).unwrap_or(&[])
    }

    /// The tensor named `name` as `f32`s, row-major in numpy/HF order
    /// ([`GgufTensorInfo::shape`]). [`FrontendError::MissingTensor`] if there is no such tensor;
    /// [`FrontendError::BadTensor`] naming the tensor and its type if the type is not supported.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| FrontendError::MissingTensor { path: self.path.clone(), tensor: name.to_string() })?;
        self.dequantize_tensor(info)
    }

    /// [`GgufFile::dequantize`] of a tensor info (of this file).
    pub fn dequantize_tensor(&self, info: &GgufTensorInfo) -> Result<Vec<f32>> {
        let bytes = self.tensor_bytes(info);
        let values = dequantize(info.ty, bytes, info.n_elements());
        if let Ok(start) = usize::try_from(info.offset) {
            crate::weights::release_pages(&self.mmap, start, bytes.len());
        }
        values.map_err(|reason| FrontendError::BadTensor {
            path: self.path.clone(),
            tensor: info.name.clone(),
            reason,
        })
    }

    /// The memory map of the whole file (shared).
    pub fn mmap(&self) -> Arc<Mmap> {
        Arc::clone(&self.mmap)
    }

    fn require(&self, key: &str) -> Result<&GgufValue> {
        self.metadata.get(key).ok_or_else(|| FrontendError::BadConfig {
            path: self.path.clone(),
            reason: format!("GGUF metadata key `{key}` is missing"),
        })
    }

    fn wrong_type(&self, key: &str, v: &GgufValue, expected: &str) -> FrontendError {
        let shown = match v {
            GgufValue::Array(a) => format!("an array of {} elements", a.len()),
            other => format!("{} {other}", other.type_name()),
        };
        FrontendError::BadConfig {
            path: self.path.clone(),
            reason: format!("GGUF metadata key `{key}` is {shown}, expected {expected}"),
        }
    }
}

fn corrupt(path: &Path, reason: String) -> FrontendError {
    FrontendError::Corrupt { path: path.to_path_buf(), format: FORMAT, reason }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Why parsing failed, before the path is known.
enum ParseError {
    /// The file as a whole is bad.
    Corrupt(String),
    /// One tensor is bad.
    Tensor { tensor: String, reason: String },
}

impl ParseError {
    fn into_frontend(self, path: &Path) -> FrontendError {
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

type ParseResult<T> = std::result::Result<T, ParseError>;

struct Parsed {
    version: u32,
    alignment: usize,
    data_offset: usize,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    index: BTreeMap<String, usize>,
}

/// A little-endian reader over the file's bytes that never reads past the end.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let bytes = self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end)).ok_or_else(|| {
            format!(
                "truncated: {what} needs {n} bytes at offset {}, but the file has {} bytes",
                self.pos,
                self.buf.len()
            )
        })?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let b = self.take(N, what)?;
        <[u8; N]>::try_from(b).map_err(|_| format!("internal: short read of {what}"))
    }

    fn u8(&mut self, what: &str) -> std::result::Result<u8, String> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 length, then bytes.
    fn bytes_string(&mut self, what: &str) -> std::result::Result<&'a [u8], String> {
        let len = self.u64(what)?;
        let remaining = self.remaining();
        let n = usize::try_from(len).ok().filter(|&n| n <= remaining).ok_or_else(|| {
            format!("{what}: string length {len} at offset {} exceeds the {remaining} bytes left", self.pos - 8)
        })?;
        self.take(n, what)
    }

    /// A GGUF string that must be UTF-8 (keys, tensor names).
    fn utf8_string(&mut self, what: &str) -> std::result::Result<String, String> {
        let start = self.pos;
        let b = self.bytes_string(what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| format!("{what} at offset {start} is not valid UTF-8: {:?}", lossy(b)))
    }
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", escaped(&s[..i])),
        None => escaped(&s),
    }
}

/// A key or name from the file as messages show it: control characters (an ANSI escape, a
/// newline), quotes and backslashes escaped, so that a message is one plain line.
pub(crate) fn escaped(s: &str) -> String {
    s.escape_debug().to_string()
}

/// The fewest bytes a value of GGUF type `ty` takes (for bounding counts); `None` if unknown.
fn min_value_size(ty: u32) -> Option<usize> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        8 | 10 | 11 | 12 => Some(8),
        9 => Some(12),
        _ => None,
    }
}

fn read_value(c: &mut Cursor<'_>, ty: u32, key: &str, depth: usize) -> std::result::Result<GgufValue, String> {
    let what = key;
    Ok(match ty {
        0 => GgufValue::U8(c.u8(what)?),
        1 => GgufValue::I8(i8::from_le_bytes(c.array(what)?)),
        2 => GgufValue::U16(u16::from_le_bytes(c.array(what)?)),
        3 => GgufValue::I16(i16::from_le_bytes(c.array(what)?)),
        4 => GgufValue::U32(c.u32(what)?),
        5 => GgufValue::I32(i32::from_le_bytes(c.array(what)?)),
        6 => GgufValue::F32(f32::from_le_bytes(c.array(what)?)),
        7 => match c.u8(what)? {
            0 => GgufValue::Bool(false),
            1 => GgufValue::Bool(true),
            b => return Err(format!("metadata `{key}`: bool byte {b} is neither 0 nor 1")),
        },
        8 => GgufValue::String(String::from_utf8_lossy(c.bytes_string(what)?).into_owned()),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(format!("metadata `{key}`: arrays nested more than {MAX_ARRAY_DEPTH} deep"));
            }
            let elem_ty = c.u32(what)?;
            let min = min_value_size(elem_ty)
                .ok_or_else(|| format!("metadata `{key}`: unknown array element type {elem_ty}"))?;
            let count = c.u64(what)?;
            let remaining = c.remaining();
            let n = usize::try_from(count).ok().filter(|&n| n <= remaining / min).ok_or_else(|| {
                format!(
                    "metadata `{key}`: array of {count} elements cannot fit in the {remaining} \
                         bytes left"
                )
            })?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_value(c, elem_ty, key, depth + 1)?);
            }
            GgufValue::Array(items)
        }
        10 => GgufValue::U64(c.u64(what)?),
        11 => GgufValue::I64(i64::from_le_bytes(c.array(what)?)),
        12 => GgufValue::F64(f64::from_le_bytes(c.array(what)?)),
        other => return Err(format!("metadata `{key}`: unknown value type {other}")),
    })
}

fn parse(buf: &[u8]) -> ParseResult<Parsed> {
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

fn check_tensor(
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

// ---------------------------------------------------------------------------------------------
// Dequantization
// ---------------------------------------------------------------------------------------------

/// Dequantizes `n_elements` values of type `ty` from `bytes`, exactly as ggml's reference
/// `dequantize_row_*` (and gguf-py's `gguf.quants.dequantize`) do. `bytes` must hold exactly
/// `n_elements / block_size` blocks. Errors (never panics) for an unsupported type, a count that is
/// not a whole number of blocks or a byte length that does not match.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> std::result::Result<Vec<f32>, String> {
    if !ty.can_dequantize() {
        return Err(format!("dequantizing GGML type {ty} is not supported"));
    }
    let (bs, ts) = ty.block_layout().ok_or_else(|| format!("unknown GGML type {ty}"))?;
    if !n_elements.is_multiple_of(bs) {
        return Err(format!("{n_elements} elements is not a whole number of {} blocks of {bs}", ty.name()));
    }
    let need = (n_elements / bs).checked_mul(ts);
    if need != Some(bytes.len()) {
        return Err(format!(
            "{n_elements} elements of {} need {} bytes, got {}",
            ty.name(),
            need.map_or_else(|| String::from("too many"), |n| n.to_string()),
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(n_elements);
    match ty {
        GgmlType::F32 => out.extend(blocks::<4>(bytes).map(|b| f32::from_le_bytes(*b))),
        GgmlType::F16 => out.extend(blocks::<2>(bytes).map(|b| f16::from_le_bytes(*b).to_f32())),
        GgmlType::BF16 => out.extend(blocks::<2>(bytes).map(|b| bf16::from_le_bytes(*b).to_f32())),
        GgmlType::F64 => out.extend(blocks::<8>(bytes).map(|b| f64::from_le_bytes(*b) as f32)),
        GgmlType::I8 => out.extend(bytes.iter().map(|&b| f32::from(b as i8))),
        GgmlType::I16 => out.extend(blocks::<2>(bytes).map(|b| f32::from(i16::from_le_bytes(*b)))),
        GgmlType::I32 => out.extend(blocks::<4>(bytes).map(|b| i32::from_le_bytes(*b) as f32)),
        GgmlType::I64 => out.extend(blocks::<8>(bytes).map(|b| i64::from_le_bytes(*b) as f32)),
        GgmlType::Q4_0 => blocks::<18>(bytes).for_each(|b| out.extend_from_slice(&dq_q4_0(b))),
        GgmlType::Q4_1 => blocks::<20>(bytes).for_each(|b| out.extend_from_slice(&dq_q4_1(b))),
        GgmlType::Q5_0 => blocks::<22>(bytes).for_each(|b| out.extend_from_slice(&dq_q5_0(b))),
        GgmlType::Q5_1 => blocks::<24>(bytes).for_each(|b| out.extend_from_slice(&dq_q5_1(b))),
        GgmlType::Q8_0 => blocks::<34>(bytes).for_each(|b| out.extend_from_slice(&dq_q8_0(b))),
        GgmlType::Q2_K => blocks::<84>(bytes).for_each(|b| out.extend_from_slice(&dq_q2_k(b))),
        GgmlType::Q3_K => blocks::<110>(bytes).for_each(|b| out.extend_from_slice(&dq_q3_k(b))),
        GgmlType::Q4_K => blocks::<144>(bytes).for_each(|b| out.extend_from_slice(&dq_q4_k(b))),
        GgmlType::Q5_K => blocks::<176>(bytes).for_each(|b| out.extend_from_slice(&dq_q5_k(b))),
        GgmlType::Q6_K => blocks::<210>(bytes).for_each(|b| out.extend_from_slice(&dq_q6_k(b))),
        GgmlType::Q8_K => blocks::<292>(bytes).for_each(|b| out.extend_from_slice(&dq_q8_k(b))),
        GgmlType::IQ4_NL => blocks::<18>(bytes).for_each(|b| out.extend_from_slice(&dq_iq4_nl(b))),
        GgmlType::IQ4_XS => blocks::<136>(bytes).for_each(|b| out.extend_from_slice(&dq_iq4_xs(b))),
        GgmlType::TQ1_0 => blocks::<54>(bytes).for_each(|b| out.extend_from_slice(&dq_tq1_0(b))),
        GgmlType::TQ2_0 => blocks::<66>(bytes).for_each(|b| out.extend_from_slice(&dq_tq2_0(b))),
        GgmlType::MXFP4 => blocks::<17>(bytes).for_each(|b| out.extend_from_slice(&dq_mxfp4(b))),
        _ => return Err(format!("dequantizing GGML type {ty} is not supported")),
    }
    if out.len() != n_elements {
        // Only reachable if a block layout above disagrees with `block_layout`.
        return Err(format!("internal: dequantized {} of {n_elements} elements", out.len()));
    }
    Ok(out)
}

/// `bytes` as consecutive blocks of `N` bytes (a trailing partial block is ignored; callers have
/// checked there is none).
fn blocks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = &[u8; N]> + '_ {
    bytes.chunks_exact(N).filter_map(|c| <&[u8; N]>::try_from(c).ok())
}

/// The f16 at byte `i` of a block (little-endian), as f32.
#[inline]
fn h<const N: usize>(b: &[u8; N], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

const QK_K: usize = 256;

fn dq_q4_0(b: &[u8; 18]) -> [f32; 32] {
    let d = h(b, 0);
    let mut y = [0f32; 32];
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
    y
}

fn dq_q4_1(b: &[u8; 20]) -> [f32; 32] {
    let (d, m) = (h(b, 0), h(b, 2));
    let mut y = [0f32; 32];
    for j in 0..16 {
        let q = b[4 + j];
        y[j] = (q & 0x0F) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
    y
}

fn dq_q5_0(b: &[u8; 22]) -> [f32; 32] {
    let d = h(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let mut y = [0f32; 32];
    for j in 0..16 {
        let q = b[6 + j];
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        y[j] = (((q & 0x0F) | xh0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) | xh1) as i32 - 16) as f32 * d;
    }
    y
}

fn dq_q5_1(b: &[u8; 24]) -> [f32; 32] {
    let (d, m) = (h(b, 0), h(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let mut y = [0f32; 32];
    for j in 0..16 {
        let q = b[8 + j];
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        y[j] = ((q & 0x0F) | xh0) as f32 * d + m;
        y[j + 16] = ((q >> 4) | xh1) as f32 * d + m;
    }
    y
}

fn dq_q8_0(b: &[u8; 34]) -> [f32; 32] {
    let d = h(b, 0);
    let mut y = [0f32; 32];
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
    y
}

fn dq_q2_k(b: &[u8; 84]) -> [f32; QK_K] {
    // scales[16] @0, qs[64] @16, d @80, dmin @82
    let (d, min) = (h(b, 80), h(b, 82));
    let mut y = [0f32; QK_K];
    let mut k = 0;
    let mut is = 0;
    for n in 0..2 {
        let q = 16 + 32 * n;
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let sc = b[is];
                is += 1;
                let dl = d * (sc & 0x0F) as f32;
                let ml = min * (sc >> 4) as f32;
                for l in 0..16 {
                    y[k] = dl * ((b[q + 16 * half + l] >> shift) & 3) as f32 - ml;
                    k += 1;
                }
            }
        }
    }
    y
}

fn dq_q3_k(b: &[u8; 110]) -> [f32; QK_K] {
    // hmask[32] @0, qs[64] @32, scales[12] @96, d @108
    let d_all = h(b, 108);
    // 16 six-bit scales: low 4 bits from bytes 0..8 (low nibbles, then high nibbles), high 2 bits
    // from bytes 8..12.
    let mut scales = [0i32; 16];
    for (is, s) in scales.iter_mut().enumerate() {
        let sb = &b[96..108];
        let low = if is < 8 { sb[is] & 0x0F } else { sb[is - 8] >> 4 };
        let high = (sb[8 + is % 4] >> (2 * (is / 4))) & 3;
        *s = (low | (high << 4)) as i32 - 32;
    }
    let mut y = [0f32; QK_K];
    let mut k = 0;
    let mut is = 0;
    let mut m: u8 = 1;
    for n in 0..2 {
        let q = 32 + 32 * n;
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * scales[is] as f32;
                is += 1;
                for l in 0..16 {
                    let i = 16 * half + l;
                    let lo = ((b[q + i] >> shift) & 3) as i32;
                    let hi = if b[i] & m != 0 { 0 } else { 4 };
                    y[k] = dl * (lo - hi) as f32;
                    k += 1;
                }
            }
            m = m.wrapping_shl(1);
        }
    }
    y
}

/// ggml's `get_scale_min_k4`: the j-th 6-bit scale and min of a Q4_K/Q5_K block's 12 scale bytes.
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

fn dq_q4_k(b: &[u8; 144]) -> [f32; QK_K] {
    // d @0, dmin @2, scales[12] @4, qs[128] @16
    let (d, min) = (h(b, 0), h(b, 2));
    let scales = &b[4..16];
    let mut y = [0f32; QK_K];
    for g in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            let q = b[16 + 32 * g + l];
            y[64 * g + l] = d1 * (q & 0x0F) as f32 - m1;
            y[64 * g + 32 + l] = d2 * (q >> 4) as f32 - m2;
        }
    }
    y
}

fn dq_q5_k(b: &[u8; 176]) -> [f32; QK_K] {
    // d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
    let (d, min) = (h(b, 0), h(b, 2));
    let scales = &b[4..16];
    let mut y = [0f32; QK_K];
    for g in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
        for l in 0..32 {
            let q = b[48 + 32 * g + l];
            let qh = b[16 + l];
            let h1 = if qh & u1 != 0 { 16 } else { 0 };
            let h2 = if qh & u2 != 0 { 16 } else { 0 };
            y[64 * g + l] = d1 * ((q & 0x0F) + h1) as f32 - m1;
            y[64 * g + 32 + l] = d2 * ((q >> 4) + h2) as f32 - m2;
        }
    }
    y
}

fn dq_q6_k(b: &[u8; 210]) -> [f32; QK_K] {
    // ql[128] @0, qh[64] @128, scales[16] (i8) @192, d @208
    let d = h(b, 208);
    let mut y = [0f32; QK_K];
    for n in 0..2 {
        let (ql, qh, sc, yo) = (64 * n, 128 + 32 * n, 192 + 8 * n, 128 * n);
        for l in 0..32 {
            let is = l / 16;
            let qhl = b[qh + l];
            let q1 = ((b[ql + l] & 0x0F) | ((qhl & 3) << 4)) as i32 - 32;
            let q2 = ((b[ql + l + 32] & 0x0F) | (((qhl >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((b[ql + l] >> 4) | (((qhl >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((b[ql + l + 32] >> 4) | (((qhl >> 6) & 3) << 4)) as i32 - 32;
            let s = |i: usize| (b[sc + is + i] as i8) as f32;
            y[yo + l] = d * s(0) * q1 as f32;
            y[yo + l + 32] = d * s(2) * q2 as f32;
            y[yo + l + 64] = d * s(4) * q3 as f32;
            y[yo + l + 96] = d * s(6) * q4 as f32;
        }
    }
    y
}

fn dq_q8_k(b: &[u8; 292]) -> [f32; QK_K] {
    // d (f32) @0, qs[256] (i8) @4, bsums[16] (i16) @260
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut y = [0f32; QK_K];
    for (j, v) in y.iter_mut().enumerate() {
        *v = d * (b[4 + j] as i8) as f32;
    }
    y
}

/// ggml's `kvalues_iq4nl`.
const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

fn dq_iq4_nl(b: &[u8; 18]) -> [f32; 32] {
    let d = h(b, 0);
    let mut y = [0f32; 32];
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = d * KVALUES_IQ4NL[(q & 0x0F) as usize] as f32;
        y[j + 16] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
    }
    y
}

fn dq_iq4_xs(b: &[u8; 136]) -> [f32; QK_K] {
    // d @0, scales_h (u16) @2, scales_l[4] @4, qs[128] @8
    let d = h(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let mut y = [0f32; QK_K];
    for ib in 0..QK_K / 32 {
        let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0F;
        let hi = ((scales_h >> (2 * ib)) & 3) as u8;
        let dl = d * ((lo | (hi << 4)) as i32 - 32) as f32;
        for j in 0..16 {
            let q = b[8 + 16 * ib + j];
            y[32 * ib + j] = dl * KVALUES_IQ4NL[(q & 0x0F) as usize] as f32;
            y[32 * ib + j + 16] = dl * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
        }
    }
    y
}

fn dq_tq1_0(b: &[u8; 54]) -> [f32; QK_K] {
    // qs[48] @0, qh[4] @48, d @52; base-3 digits recovered as (q * 3^n mod 256) * 3 >> 8
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let d = h(b, 52);
    let trit = |q: u8, n: usize| -> f32 {
        let q = q.wrapping_mul(POW3[n]);
        let xi = ((q as u16 * 3) >> 8) as i16;
        (xi - 1) as f32 * d
    };
    let mut y = [0f32; QK_K];
    let mut k = 0;
    for (start, width) in [(0usize, 32usize), (32, 16)] {
        for n in 0..5 {
            for m in 0..width {
                y[k] = trit(b[start + m], n);
                k += 1;
            }
        }
    }
    for n in 0..4 {
        for j in 0..4 {
            y[k] = trit(b[48 + j], n);
            k += 1;
        }
    }
    y
}

fn dq_tq2_0(b: &[u8; 66]) -> [f32; QK_K] {
    // qs[64] @0, d @64
    let d = h(b, 64);
    let mut y = [0f32; QK_K];
    let mut k = 0;
    for j in [0usize, 32] {
        for l in 0..4 {
            for m in 0..32 {
                let q = ((b[j + m] >> (2 * l)) & 3) as i8;
                y[k] = (q - 1) as f32 * d;
                k += 1;
            }
        }
    }
    y
}

/// ggml's `kvalues_mxfp4`: e2m1 values, doubled.
const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

fn dq_mxfp4(b: &[u8; 17]) -> [f32; 32] {
    // e (e8m0) @0, qs[16] @1; ggml_e8m0_to_fp32_half (half, because the values are doubled)
    let e = b[0];
    let bits = if e < 2 { 0x0020_0000u32 << e } else { u32::from(e - 1) << 23 };
    let d = f32::from_bits(bits);
    let mut y = [0f32; 32];
    for j in 0..16 {
        let q = b[1 + j];
        y[j] = KVALUES_MXFP4[(q & 0x0F) as usize] as f32 * d;
        y[j + 16] = KVALUES_MXFP4[(q >> 4) as usize] as f32 * d;
    }
    y
}

// ---------------------------------------------------------------------------------------------
// llama.cpp's q/k row permutation
// ---------------------------------------------------------------------------------------------

/// Checks the arguments of [`unpermute_rows`]/[`permute_rows`]; returns rows per half-head.
fn permute_geometry(len: usize, n_head: usize, rows: usize, cols: usize) -> std::result::Result<usize, String> {
    let per_head = n_head.checked_mul(2).filter(|&p| p > 0 && rows.is_multiple_of(p) && rows > 0);
    if per_head.is_none() {
        return Err(format!("{rows} rows cannot be split into {n_head} heads of two halves"));
    }
    if rows.checked_mul(cols) != Some(len) {
        return Err(format!("{len} values are not {rows} x {cols}"));
    }
    Ok(rows / n_head / 2)
}

/// Maps every row: `out[dst(r)] = data[r]` or `out[r] = data[src(r)]`.
fn gather_rows(data: &[f32], rows: usize, cols: usize, src_row: impl Fn(usize) -> usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let s = src_row(r) * cols;
        out.extend_from_slice(data.get(s..s + cols).unwrap_or(&[]));
    }
    out
}

/// Undoes llama.cpp's convert_hf_to_gguf.py `permute` of q/k projection rows (for rotary),
/// giving HF's row order. `data` is `rows x cols`, row-major (numpy order, as
/// [`GgufFile::dequantize`] returns it); `n_head` is `head_count` for `attn_q` and
/// `head_count_kv` for `attn_k`. Inconsistent arguments (no heads, rows not a multiple of
/// `2 * n_head`, a wrong length) are an error.
pub fn unpermute_rows(
    data: &[f32],
    n_head: usize,
    rows: usize,
    cols: usize,
) -> std::result::Result<Vec<f32>, String> {
    let half = permute_geometry(data.len(), n_head, rows, cols)?;
    // permute: HF row h*2*half + j*half + i  ->  GGUF row h*2*half + i*2 + j (j in 0..2).
    Ok(gather_rows(data, rows, cols, |r| {
        let (h, rest) = (r / (2 * half), r % (2 * half));
        let (j, i) = (rest / half, rest % half);
        h * 2 * half + i * 2 + j
    }))
}

/// llama.cpp's convert_hf_to_gguf.py `permute` itself (HF row order to GGUF's), for writing GGUF
/// files; the inverse of [`unpermute_rows`], with the same argument checks.
pub fn permute_rows(
    data: &[f32],
    n_head: usize,
    rows: usize,
    cols: usize,
) -> std::result::Result<Vec<f32>, String> {
    let half = permute_geometry(data.len(), n_head, rows, cols)?;
    Ok(gather_rows(data, rows, cols, |r| {
        let (h, rest) = (r / (2 * half), r % (2 * half));
        let (i, j) = (rest / 2, rest % 2);
        h * 2 * half + j * half + i
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fixture(name: &str) -> PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/gguf")).join(name)
    }

    /// A file in the temporary folder, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new() -> TempFile {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            TempFile(std::env::temp_dir().join(format!("prunec-gguf-{}-{n}.gguf", std::process::id())))
        }

        fn with(bytes: &[u8]) -> TempFile {
            let t = TempFile::new();
            t.write(bytes);
            t
        }

        fn write(&self, bytes: &[u8]) {
            std::fs::write(&self.0, bytes).unwrap();
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// `open` must fail; returns the message, after checking that it names the file.
    fn open_err(bytes: &[u8]) -> (FrontendError, String) {
        let t = TempFile::with(bytes);
        let err = match GgufFile::open(&t.0) {
            Ok(_) => panic!("a bad file opened"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains(&t.0.display().to_string()), "message does not name the file: {msg}");
        (err, msg)
    }

    /// F32 tensors of a safetensors file: name -> (shape, values).
    fn load_safetensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        let bytes = std::fs::read(path).unwrap();
        let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.tensors()
            .into_iter()
            .map(|(name, view)| {
                assert_eq!(view.dtype(), ::safetensors::Dtype::F32, "{name}");
                let values =
                    view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                (name, (view.shape().to_vec(), values))
            })
            .collect()
    }

    /// Bitwise equality, with the first difference in the message.
    fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
            panic!(
                "{what}: element {i}: got {} ({:#x}), want {} ({:#x})",
                got[i],
                got[i].to_bits(),
                want[i],
                want[i].to_bits()
            );
        }
    }

    /// A GGUF file assembled by hand, for broken inputs.
    struct Builder {
        version: u32,
        kvs: Vec<u8>,
        n_kv: u64,
        infos: Vec<u8>,
        n_tensors: u64,
        data: Vec<u8>,
        alignment: usize,
    }

    fn gstr(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    impl Builder {
        fn new() -> Builder {
            Builder { version: 3, kvs: vec![], n_kv: 0, infos: vec![], n_tensors: 0, data: vec![], alignment: 32 }
        }

        fn kv_raw(&mut self, key: &[u8], ty: u32, value: &[u8]) -> &mut Builder {
            self.kvs.extend(gstr(key));
            self.kvs.extend(ty.to_le_bytes());
            self.kvs.extend_from_slice(value);
            self.n_kv += 1;
            self
        }

        fn kv_u32(&mut self, key: &str, v: u32) -> &mut Builder {
            self.kv_raw(key.as_bytes(), 4, &v.to_le_bytes())
        }

        fn kv_str(&mut self, key: &str, v: &str) -> &mut Builder {
            self.kv_raw(key.as_bytes(), 8, &gstr(v.as_bytes()))
        }

        fn tensor_raw(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Builder {
            self.infos.extend(gstr(name.as_bytes()));
            self.infos.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                self.infos.extend(d.to_le_bytes());
            }
            self.infos.extend(ty.to_le_bytes());
            self.infos.extend(offset.to_le_bytes());
            self.n_tensors += 1;
            self
        }

        /// A tensor whose data is `bytes`, placed at the next aligned offset.
        fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, bytes: &[u8]) -> &mut Builder {
            while !self.data.len().is_multiple_of(self.alignment) {
                self.data.push(0);
            }
            let offset = self.data.len() as u64;
            self.data.extend_from_slice(bytes);
            self.tensor_raw(name, dims, ty.id(), offset)
        }

        fn tensor_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Builder {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.tensor(name, dims, GgmlType::F32, &bytes)
        }

        fn build(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(self.version.to_le_bytes());
            out.extend(self.n_tensors.to_le_bytes());
            out.extend(self.n_kv.to_le_bytes());
            out.extend_from_slice(&self.kvs);
            out.extend_from_slice(&self.infos);
            while !out.len().is_multiple_of(self.alignment) {
                out.push(0);
            }
            out.extend_from_slice(&self.data);
            out
        }
    }

    /// An edit of a [`Builder`], for the table-driven tests.
    type Edit = Box<dyn Fn(&mut Builder)>;

    /// A tensor of SmolLM2 with gguf-py's values: name, shape, (index, f32 bits) of some
    /// elements, sum, sum of absolute values.
    type SmolCase = (&'static str, [usize; 2], [(usize, u32); 5], f64, f64);

    /// A small valid file: metadata of several types and two tensors.
    fn small_file() -> Builder {
        small_file_aligned(None)
    }

    /// [`small_file`] with a `general.alignment`.
    fn small_file_aligned(alignment: Option<u32>) -> Builder {
        let mut b = Builder::new();
        if let Some(a) = alignment {
            b.alignment = a as usize;
            b.kv_u32("general.alignment", a);
        }
        b.kv_str("general.architecture", "llama").kv_u32("llama.block_count", 2);
        let mut arr = 5u32.to_le_bytes().to_vec(); // array of i32
        arr.extend(3u64.to_le_bytes());
        for v in [1i32, -2, 3] {
            arr.extend(v.to_le_bytes());
        }
        b.kv_raw(b"test.array", 9, &arr);
        b.tensor_f32("a", &[4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        b.tensor_f32("b", &[3], &[-1.0, 0.5, 0.25]);
        b
    }

    // --- fixtures made with gguf-py ---------------------------------------------------------

    #[test]
    fn quants_match_gguf_py_bitwise() {
        let file = GgufFile::open(&fixture("quants.gguf")).unwrap();
        let expected = load_safetensors(&fixture("quants.expected.safetensors"));
        assert_eq!(file.version(), 3);
        assert_eq!(file.alignment(), 64);
        assert_eq!(file.tensors().len(), expected.len());
        for info in file.tensors() {
            assert_eq!((info.offset as usize - file.data_offset()) % 64, 0, "{}", info.name);
            let (shape, want) = expected.get(&info.name).unwrap_or_else(|| panic!("{} not expected", info.name));
            assert_eq!(&info.shape(), shape, "{}", info.name);
            assert_eq!(info.n_elements(), want.len());
            let got = file.dequantize(&info.name).unwrap();
            assert_bits_eq(&format!("{} ({})", info.name, info.ty), &got, want);
        }
        let types: std::collections::BTreeSet<&str> = file.tensors().iter().map(|t| t.ty.name()).collect();
        for t in [
            "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
            "iq4_nl", "iq4_xs", "tq1_0", "tq2_0", "mxfp4",
        ] {
            assert!(types.contains(t), "quants.gguf lacks {t}");
        }
    }

    #[test]
    fn quants_metadata_values() {
        let f = GgufFile::open(&fixture("quants.gguf")).unwrap();
        assert_eq!(f.get("test.u8"), Some(&GgufValue::U8(200)));
        assert_eq!(f.get("test.i8"), Some(&GgufValue::I8(-100)));
        assert_eq!(f.get("test.u16"), Some(&GgufValue::U16(60000)));
        assert_eq!(f.get("test.i16"), Some(&GgufValue::I16(-30000)));
        assert_eq!(f.get("test.u32"), Some(&GgufValue::U32(4_000_000_000)));
        assert_eq!(f.get("test.i32"), Some(&GgufValue::I32(-2_000_000_000)));
        assert_eq!(f.get("test.u64"), Some(&GgufValue::U64((1 << 63) + 5)));
        assert_eq!(f.get("test.i64"), Some(&GgufValue::I64(-(1 << 62))));
        assert_eq!(f.get("test.f32"), Some(&GgufValue::F32(0.15625)));
        assert_eq!(f.get("test.f64"), Some(&GgufValue::F64(1e-300)));
        assert_eq!(f.get("test.bool"), Some(&GgufValue::Bool(true)));
        assert_eq!(f.get_str("test.string").unwrap(), "héllo ✓");
        assert_eq!(
            f.get("test.array_i32"),
            Some(&GgufValue::Array(vec![GgufValue::I32(1), GgufValue::I32(-2), GgufValue::I32(3)]))
        );
        assert_eq!(f.get_str_array("test.array_str").unwrap(), vec!["a", "bc", ""]);
        let nested = f.get("test.array_nested").and_then(GgufValue::as_array).unwrap();
        assert_eq!(nested.len(), 2);
        assert_eq!(nested[0], GgufValue::Array(vec![GgufValue::I32(1), GgufValue::I32(2)]));
        assert_eq!(nested[1], GgufValue::Array(vec![GgufValue::I32(3)]));
        assert_eq!(f.get_usize("test.u8").unwrap(), 200);
        assert_eq!(f.get_usize("test.u32").unwrap(), 4_000_000_000);
        assert_eq!(f.get_usize("general.alignment").unwrap(), 64);
        assert_eq!(f.get_f32("test.f64").unwrap(), 0.0); // 1e-300 underflows f32
        assert_eq!(f.get_f32("test.i16").unwrap(), -30000.0);
        assert!(f.get_bool("test.bool").unwrap());
        assert_eq!(f.get("test.i8").and_then(GgufValue::as_i64), Some(-100));
        assert_eq!(f.get("test.f32").and_then(GgufValue::as_f64), Some(0.15625));
        assert_eq!(f.get_str("general.architecture").unwrap(), "test");
        // wrong types and absent keys: BadConfig naming the key
        for (r, key) in [
            (f.get_usize("test.i8").map(|_| ()), "test.i8"),
            (f.get_usize("test.string").map(|_| ()), "test.string"),
            (f.get_str("test.u8").map(|_| ()), "test.u8"),
            (f.get_f32("test.array_i32").map(|_| ()), "test.array_i32"),
            (f.get_str_array("test.array_i32").map(|_| ()), "test.array_i32"),
            (f.get_bool("test.u8").map(|_| ()), "test.u8"),
            (f.get_str("no.such.key").map(|_| ()), "no.such.key"),
        ] {
            match r {
                Err(e @ FrontendError::BadConfig { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(key) && msg.contains("quants.gguf"), "{msg}");
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn llama_gqa_metadata() {
        let f = GgufFile::open(&fixture("llama-gqa.gguf")).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
        for (key, want) in [
            ("llama.block_count", 4),
            ("llama.context_length", 128),
            ("llama.embedding_length", 64),
            ("llama.feed_forward_length", 176),
            ("llama.attention.head_count", 8),
            ("llama.attention.head_count_kv", 2),
            ("llama.vocab_size", 256),
            ("llama.rope.dimension_count", 8),
            ("llama.attention.key_length", 8),
            ("llama.attention.value_length", 8),
            ("general.file_type", 0),
        ] {
            assert_eq!(f.get_usize(key).unwrap(), want, "{key}");
        }
        assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
        assert_eq!(f.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap(), 1e-6);
        assert_eq!(f.tensors().len(), 1 + 4 * 9 + 1);
        assert!(f.tensor_info("output.weight").is_none(), "tied embeddings: no output.weight");
        assert!(f.tensors().iter().all(|t| t.ty == GgmlType::F32));
        let shape = |n: &str| f.tensor_info(n).unwrap().shape();
        assert_eq!(shape("token_embd.weight"), vec![256, 64]);
        assert_eq!(f.tensor_info("token_embd.weight").unwrap().dims, vec![64, 256]);
        assert_eq!(shape("blk.0.attn_q.weight"), vec![64, 64]);
        assert_eq!(shape("blk.3.attn_k.weight"), vec![16, 64]);
        assert_eq!(shape("blk.1.ffn_down.weight"), vec![64, 176]);
        assert_eq!(shape("output_norm.weight"), vec![64]);
        let info = f.tensor_info("blk.2.ffn_up.weight").unwrap();
        assert_eq!(f.tensor_bytes(info).len(), 176 * 64 * 4);
        assert_eq!(info.byte_len(), 176 * 64 * 4);
        match f.dequantize("output.weight") {
            Err(e @ FrontendError::MissingTensor { .. }) => assert!(e.to_string().contains("output.weight")),
            other => panic!("{other:?}"),
        }
    }

    /// The HF model the fixture was converted from, in the project's own fixtures.
    fn hf_llama_gqa() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llama-gqa/model.safetensors")
    }

    #[test]
    fn llama_gqa_matches_hf_after_unpermute() {
        let hf_path = hf_llama_gqa();
        let hf = load_safetensors(&hf_path);
        let f = GgufFile::open(&fixture("llama-gqa.gguf")).unwrap();
        let (n_head, n_head_kv) = (8, 2);
        let mut compared = 0;
        for (hf_name, (shape, want)) in &hf {
            let gguf_name = match hf_name.as_str() {
                "model.embed_tokens.weight" => "token_embd.weight".to_string(),
                "model.norm.weight" => "output_norm.weight".to_string(),
                n => {
                    let rest = n.strip_prefix("model.layers.").unwrap();
                    let (i, module) = rest.split_once('.').unwrap();
                    let short = match module {
                        "input_layernorm.weight" => "attn_norm",
                        "self_attn.q_proj.weight" => "attn_q",
                        "self_attn.k_proj.weight" => "attn_k",
                        "self_attn.v_proj.weight" => "attn_v",
                        "self_attn.o_proj.weight" => "attn_output",
                        "post_attention_layernorm.weight" => "ffn_norm",
                        "mlp.gate_proj.weight" => "ffn_gate",
                        "mlp.up_proj.weight" => "ffn_up",
                        "mlp.down_proj.weight" => "ffn_down",
                        m => panic!("unexpected {m}"),
                    };
                    format!("blk.{i}.{short}.weight")
                }
            };
            let info = f.tensor_info(&gguf_name).unwrap();
            assert_eq!(&info.shape(), shape, "{gguf_name}");
            let data = f.dequantize(&gguf_name).unwrap();
            let heads = if gguf_name.ends_with("attn_q.weight") {
                Some(n_head)
            } else if gguf_name.ends_with("attn_k.weight") {
                Some(n_head_kv)
            } else {
                None
            };
            let got = match heads {
                Some(h) => {
                    let permuted = unpermute_rows(&data, h, shape[0], shape[1]).unwrap();
                    assert_ne!(permuted, data, "{gguf_name}: the permutation should move rows");
                    permuted
                }
                None => data,
            };
            assert_bits_eq(&gguf_name, &got, want);
            compared += 1;
        }
        assert_eq!(compared, f.tensors().len());
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // numpy: np.arange(8).reshape(2, 2, 2).swapaxes(1, 2).reshape(8) == [0, 2, 1, 3, 4, 6, 5, 7]
        let original: Vec<f32> = (0..8 * 3).map(|v| v as f32).collect(); // 8 rows x 3 cols
        let order = [0usize, 2, 1, 3, 4, 6, 5, 7];
        let permuted: Vec<f32> = order.iter().flat_map(|&r| original[r * 3..r * 3 + 3].to_vec()).collect();
        assert_eq!(permute_rows(&original, 2, 8, 3).unwrap(), permuted);
        assert_eq!(unpermute_rows(&permuted, 2, 8, 3).unwrap(), original);
        // round trips with several head counts
        let x: Vec<f32> = (0..48 * 5).map(|v| v as f32 * 0.5).collect();
        for h in [1, 2, 3, 4, 6, 8, 12, 24] {
            let p = permute_rows(&x, h, 48, 5).unwrap();
            assert_eq!(unpermute_rows(&p, h, 48, 5).unwrap(), x, "{h} heads");
        }
        // inconsistent arguments: errors, not panics
        assert!(unpermute_rows(&x, 0, 48, 5).is_err());
        assert!(unpermute_rows(&x, 5, 48, 5).is_err());
        assert!(unpermute_rows(&x, 2, 48, 4).is_err());
        assert!(permute_rows(&x, 7, 48, 5).is_err());
    }

    #[test]
    fn unpermute_rejects_inconsistent_arguments() {
        assert!(unpermute_rows(&[0.0; 6], 2, 3, 2).is_err());
    }

    // --- hand-made inputs -------------------------------------------------------------------

    #[test]
    fn small_file_reads() {
        let t = TempFile::with(&small_file().build());
        let f = GgufFile::open(&t.0).unwrap();
        assert_eq!(f.get_usize("llama.block_count").unwrap(), 2);
        assert_eq!(f.dequantize("a").unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(f.tensor_info("a").unwrap().shape(), vec![2, 4]);
        assert_eq!(f.dequantize("b").unwrap(), vec![-1.0, 0.5, 0.25]);
        // v2 has the same layout
        let mut b = small_file();
        b.version = 2;
        let t2 = TempFile::with(&b.build());
        assert_eq!(GgufFile::open(&t2.0).unwrap().version(), 2);
        // Send + Sync + cheap clone
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        let g = f.clone();
        assert_send_sync(&g);
        assert!(Arc::ptr_eq(&f.mmap(), &g.mmap()));
        // an empty array (gguf-py cannot write one)
        let mut b = Builder::new();
        let mut arr = 8u32.to_le_bytes().to_vec();
        arr.extend(0u64.to_le_bytes());
        b.kv_raw(b"empty", 9, &arr);
        let t3 = TempFile::with(&b.build());
        assert_eq!(GgufFile::open(&t3.0).unwrap().get("empty"), Some(&GgufValue::Array(vec![])));
    }

    #[test]
    #[ignore = "prints the error messages, for reading"]
    fn show_messages() {
        let mut b = small_file();
        b.tensor_raw("late", &[8], 0, 1 << 20);
        println!("{}", open_err(&b.build()).1);
        let mut b = small_file();
        b.tensor_raw("odd", &[8], 99, 0);
        println!("{}", open_err(&b.build()).1);
        let mut v = 0u32.to_le_bytes().to_vec();
        v.extend((1u64 << 60).to_le_bytes());
        let mut b = small_file();
        b.kv_raw(b"big", 9, &v);
        println!("{}", open_err(&b.build()).1);
        let full = small_file().build();
        println!("{}", open_err(&full[..40]).1);
        println!("{}", open_err(&full[..full.len() - 1]).1);
        let mut b = small_file();
        b.version = 1;
        println!("{}", open_err(&b.build()).1);
        println!("{}", open_err(b"GGML\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0").1);
        let f = GgufFile::open(&fixture("quants.gguf")).unwrap();
        println!("{}", f.get_usize("test.i8").unwrap_err());
        println!("{}", f.get_str("test.array_str").unwrap_err());
        println!("{}", f.get_str("nope").unwrap_err());
    }

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

    #[test]
    fn bad_metadata() {
        let huge_array = {
            let mut v = 0u32.to_le_bytes().to_vec(); // u8 elements
            v.extend((1u64 << 60).to_le_bytes());
            v
        };
        let huge_string_array = {
            let mut v = 8u32.to_le_bytes().to_vec();
            v.extend((1u64 << 60).to_le_bytes());
            v
        };
        let nested_bomb = {
            let mut v = Vec::new();
            for _ in 0..100 {
                v.extend(9u32.to_le_bytes());
                v.extend(1u64.to_le_bytes());
            }
            v.extend(0u32.to_le_bytes());
            v.extend(0u64.to_le_bytes());
            v
        };
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(move |b| {
                    b.kv_raw(b"big", 9, &huge_array);
                }),
                "cannot fit",
            ),
            (
                Box::new(move |b| {
                    b.kv_raw(b"big", 9, &huge_string_array);
                }),
                "cannot fit",
            ),
            (
                Box::new(|b| {
                    b.kv_raw(b"s", 8, &(1u64 << 62).to_le_bytes());
                }),
                "string length",
            ),
            (
                Box::new(|b| {
                    b.kv_raw(b"s", 8, &u64::MAX.to_le_bytes());
                }),
                "string length",
            ),
            (
                Box::new(move |b| {
                    b.kv_raw(b"bomb", 9, &nested_bomb);
                }),
                "nested",
            ),
            (
                Box::new(|b| {
                    b.kv_raw(b"t", 13, &[0; 8]);
                }),
                "unknown value type 13",
            ),
            (
                Box::new(|b| {
                    b.kv_raw(b"t", 9, &[77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                }),
                "unknown array element type 77",
            ),
            (
                Box::new(|b| {
                    b.kv_raw(b"flag", 7, &[2]);
                }),
                "bool",
            ),
            (
                Box::new(|b| {
                    b.kv_raw(b"\xff\xfe", 0, &[1]);
                }),
                "UTF-8",
            ),
            (
                Box::new(|b| {
                    b.kv_u32("llama.block_count", 3);
                }),
                "twice",
            ),
            (
                Box::new(|b| {
                    b.kv_u32("general.alignment", 0);
                }),
                "alignment",
            ),
            (
                Box::new(|b| {
                    b.kv_u32("general.alignment", 24);
                }),
                "alignment",
            ),
            (
                Box::new(|b| {
                    b.kv_str("general.alignment", "32");
                }),
                "alignment",
            ),
            (
                Box::new(|b| {
                    b.n_kv = 1 << 61;
                }),
                "metadata entries",
            ),
            (
                Box::new(|b| {
                    b.n_kv = u64::MAX;
                }),
                "metadata entries",
            ),
            (
                Box::new(|b| {
                    b.n_tensors = 1 << 60;
                }),
                "tensor infos",
            ),
            (
                Box::new(|b| {
                    b.n_kv += 1;
                }),
                "",
            ),
            (
                Box::new(|b| {
                    b.n_tensors += 1;
                }),
                "",
            ),
        ];
        for (i, (edit, needle)) in cases.into_iter().enumerate() {
            let mut b = small_file();
            edit(&mut b);
            let (e, msg) = open_err(&b.build());
            assert!(matches!(e, FrontendError::Corrupt { .. } | FrontendError::BadTensor { .. }), "case {i}: {e:?}");
            assert!(msg.contains(needle), "case {i}: {msg}");
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

    #[test]
    fn alignment_is_honoured() {
        for align in [1u32, 8, 64, 256] {
            let b = small_file_aligned(Some(align));
            let t = TempFile::with(&b.build());
            let f = GgufFile::open(&t.0).unwrap();
            assert_eq!(f.alignment(), align as usize);
            assert_eq!(f.data_offset() % align as usize, 0);
            assert_eq!(f.dequantize("b").unwrap(), vec![-1.0, 0.5, 0.25]);
        }
    }

    #[test]
    fn unsupported_type_is_an_error_naming_the_tensor() {
        let mut b = small_file();
        b.tensor("iq", &[256], GgmlType::IQ2_XXS, &[0u8; 66]);
        b.tensor("q81", &[32], GgmlType::Q8_1, &[0u8; 36]);
        let t = TempFile::with(&b.build());
        let f = GgufFile::open(&t.0).unwrap();
        for (name, ty) in [("iq", "iq2_xxs"), ("q81", "q8_1")] {
            match f.dequantize(name) {
                Err(e @ FrontendError::BadTensor { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(name) && msg.contains(ty) && msg.contains("not supported"), "{msg}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(f.tensor_bytes(f.tensor_info("iq").unwrap()).len(), 66);
    }

    #[test]
    fn dequantize_checks_its_arguments() {
        assert!(dequantize(GgmlType::Q8_0, &[0; 34], 31).is_err());
        assert!(dequantize(GgmlType::Q8_0, &[0; 33], 32).is_err());
        assert!(dequantize(GgmlType::Q8_0, &[0; 68], 32).is_err());
        assert!(dequantize(GgmlType::F32, &[0; 8], usize::MAX).is_err());
        assert!(dequantize(GgmlType::Other(99), &[], 0).unwrap_err().contains("99"));
        assert!(dequantize(GgmlType::IQ2_XXS, &[0; 66], 256).is_err());
        assert_eq!(dequantize(GgmlType::Q4_K, &[], 0).unwrap(), Vec::<f32>::new());
        // a user-made info outside the file gives no bytes, not a panic
        let f = GgufFile::open(&fixture("quants.gguf")).unwrap();
        let fake = GgufTensorInfo { name: "x".into(), dims: vec![u64::MAX, 3], ty: GgmlType::F32, offset: u64::MAX };
        assert!(f.tensor_bytes(&fake).is_empty());
        assert!(f.dequantize_tensor(&fake).is_err());
    }

    #[test]
    fn plain_types_by_hand() {
        let le = |v: &[i64], w: usize| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()[..w].to_vec()).collect() };
        let vals = [-3i64, 0, 7, -128, 127];
        let want: Vec<f32> = vals.iter().map(|&v| v as f32).collect();
        assert_eq!(dequantize(GgmlType::I8, &le(&vals, 1), 5).unwrap(), want);
        assert_eq!(dequantize(GgmlType::I16, &le(&vals, 2), 5).unwrap(), want);
        assert_eq!(dequantize(GgmlType::I32, &le(&vals, 4), 5).unwrap(), want);
        assert_eq!(dequantize(GgmlType::I64, &le(&vals, 8), 5).unwrap(), want);
        let f64s: Vec<u8> = [1.5f64, -2.25, 1e300].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(dequantize(GgmlType::F64, &f64s, 3).unwrap(), vec![1.5, -2.25, f32::INFINITY]);
        // Q8_K: f32 scale, 256 i8 quants, 16 i16 sums (ignored)
        let mut block = 0.5f32.to_le_bytes().to_vec();
        block.extend((0..256).map(|i| (i - 128) as i8 as u8));
        block.extend([0u8; 32]);
        let got = dequantize(GgmlType::Q8_K, &block, 256).unwrap();
        let want: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) * 0.5).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn ggml_type_ids_round_trip() {
        for t in GgmlType::KNOWN {
            assert_eq!(GgmlType::from_id(t.id()), t);
            assert!(t.block_layout().is_some());
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), GgmlType::Other(id));
            assert_eq!(GgmlType::Other(id).block_layout(), None);
        }
        assert_eq!(GgmlType::Q4_K.to_string(), "q4_K (id 12)");
    }

    // --- a real model, when present ---------------------------------------------------------

    use crate::test_support::smollm2;

    #[test]
    fn smollm2_q4_1() {
        let Some(path) = smollm2() else {
            println!("skipped: PRUNEC_OFFLINE is set");
            return;
        };
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(f.get_usize("llama.block_count").unwrap(), 30);
        assert_eq!(f.get_usize("llama.embedding_length").unwrap(), 576);
        assert_eq!(f.get_usize("llama.attention.head_count").unwrap(), 9);
        assert_eq!(f.get_usize("llama.attention.head_count_kv").unwrap(), 3);
        assert_eq!(f.get_usize("llama.rope.dimension_count").unwrap(), 64);
        assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
        assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
        assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
        assert_eq!(f.tensors().len(), 272);
        let count = |t: GgmlType| f.tensors().iter().filter(|i| i.ty == t).count();
        assert_eq!((count(GgmlType::Q4_1), count(GgmlType::F32), count(GgmlType::Q8_0)), (210, 61, 1));
        // Reference values from gguf-py 0.19 (`gguf.quants.dequantize`): elements (bitwise) and
        // the f64 sum and sum of absolute values of the whole tensor.
        let cases: [SmolCase; 5] = [
            (
                "token_embd.weight",
                [49152, 576],
                [(0, 0xbdda3400), (1, 0x3d071400), (12345, 0x3cfe0000), (14155783, 0x3dfd0b00), (28311551, 0xbd2ad000)],
                -15353.04449415207,
                2802153.619805813,
            ),
            (
                "blk.0.attn_norm.weight",
                [576, 1],
                [(0, 0x3c650000), (1, 0x3cc30000), (249, 0x3d6e0000), (295, 0x3d100000), (575, 0xbd1d0000)],
                0.6129436492919922,
                15.815359115600586,
            ),
            (
                "blk.0.attn_k.weight",
                [192, 576],
                [(0, 0xbe1f0000), (1, 0x3eae3000), (12345, 0x3e2e8000), (55303, 0xbf330000), (110591, 0x3eba3000)],
                26.937057495117188,
                29794.78126525879,
            ),
            (
                "blk.0.attn_q.weight",
                [576, 576],
                [(0, 0xbdc54000), (1, 0x3e212000), (12345, 0x3df80000), (165895, 0x3e300000), (331775, 0xbe830000)],
                59.22322082519531,
                63395.39872741699,
            ),
            (
                "blk.29.ffn_down.weight",
                [576, 1536],
                [(0, 0xbe8bf000), (1, 0x3e3ec000), (12345, 0xbd384000), (442375, 0xbc7e0000), (884735, 0x3d680000)],
                49.83570861816406,
                126250.91435241699,
            ),
        ];
        for (name, shape, elements, sum, abs_sum) in cases {
            let info = f.tensor_info(name).unwrap();
            let n: usize = shape.iter().product();
            assert_eq!(info.n_elements(), n, "{name}");
            let data = f.dequantize(name).unwrap();
            for (i, bits) in elements {
                assert_eq!(data[i].to_bits(), bits, "{name}[{i}]");
            }
            let s: f64 = data.iter().map(|&v| f64::from(v)).sum();
            let a: f64 = data.iter().map(|&v| f64::from(v).abs()).sum();
            assert!((s - sum).abs() <= 1e-9 * abs_sum && (a - abs_sum).abs() <= 1e-9 * abs_sum, "{name}: {s} {a}");
        }
        // q rows un-permute with 9 heads, k rows with 3
        let q = f.dequantize("blk.0.attn_q.weight").unwrap();
        assert_eq!(unpermute_rows(&q, 9, 576, 576).unwrap().len(), q.len());
        let k = f.dequantize("blk.0.attn_k.weight").unwrap();
        assert!(unpermute_rows(&k, 3, 192, 576).is_ok());
    }

    /// Full comparison against a safetensors of gguf-py dequantizations (name -> flat F32), made
    /// by hand: `PRUNEC_GGUF_REFERENCE=ref.safetensors` (and `PRUNEC_SMOLLM2_GGUF` for the model).
    #[test]
    fn smollm2_against_reference_dump_when_given() {
        let (Some(path), Some(reference)) = (smollm2(), std::env::var_os("PRUNEC_GGUF_REFERENCE")) else {
            println!("skipped: set PRUNEC_GGUF_REFERENCE to a gguf-py dump to compare whole tensors");
            return;
        };
        let f = GgufFile::open(&path).unwrap();
        for (name, (_, want)) in load_safetensors(Path::new(&reference)) {
            let got = f.dequantize(&name).unwrap();
            assert_bits_eq(&name, &got, &want);
            println!("{name}: {} elements equal bitwise", got.len());
        }
    }
}
