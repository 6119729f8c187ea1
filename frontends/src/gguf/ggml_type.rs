//! ggml's tensor types: [`GgmlType`], with its id in GGUF files, its name and its block layout
//! (elements and bytes per block), and whether it can be dequantized.

use std::fmt;

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

    /// Whether [`dequantize`](super::dequantize) handles this type.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
