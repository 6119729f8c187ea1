//! Dequantization of tensor data to `f32`, bit for bit as ggml's reference `dequantize_row_*`
//! (and gguf-py's `gguf.quants.dequantize`): [`dequantize`] checks its arguments and dispatches on
//! the type; plain types are converted here, each family of quantized blocks in its own module.

mod i_quants;
mod k_quants;
mod legacy;
mod mxfp4;
mod ternary;

use half::{bf16, f16};

use super::ggml_type::GgmlType;
use i_quants::{dq_iq4_nl, dq_iq4_xs};
use k_quants::{dq_q2_k, dq_q3_k, dq_q4_k, dq_q5_k, dq_q6_k, dq_q8_k};
pub(crate) use k_quants::scale_min_k4;
use legacy::{dq_q4_0, dq_q4_1, dq_q5_0, dq_q5_1, dq_q8_0};
use mxfp4::dq_mxfp4;
use ternary::{dq_tq1_0, dq_tq2_0};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::tests::support::{assert_bits_eq, fixture, load_safetensors};
    use crate::gguf::{GgufFile, GgufTensorInfo};

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
}
