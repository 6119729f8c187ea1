//! Metadata values of a GGUF file: [`GgufValue`], its accessors and display, and reading one
//! value (of any type, arrays nested to a bounded depth) from the file's bytes.

use std::fmt;

use super::cursor::Cursor;

/// How deeply metadata arrays may nest (arrays of arrays of ...).
const MAX_ARRAY_DEPTH: usize = 16;

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

pub(super) fn read_value(
    c: &mut Cursor<'_>,
    ty: u32,
    key: &str,
    depth: usize,
) -> std::result::Result<GgufValue, String> {
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

#[cfg(test)]
mod tests {
    use crate::error::FrontendError;
    use crate::gguf::tests::support::{open_err, small_file, Edit};

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
}
