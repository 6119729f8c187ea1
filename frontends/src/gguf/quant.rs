//! Quantization of `f32` values to GGUF tensor data, bit for bit as ggml's reference
//! `quantize_row_*_ref` (ggml-quants.c) and gguf-py's `gguf.quants.quantize` do: F32, F16,
//! BF16, and the legacy blocks of 32, Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 (see [`can_quantize`]).
//!
//! Each block is quantized alone, so a tensor's rows can be quantized one at a time (and a row
//! of blocks copied from an input file is the same bytes as quantizing its values again only
//! when the values were not changed: see the GGUF writer's block copies).

use half::f16;

use super::ggml_type::GgmlType;

/// Whether [`quantize`] writes this type.
pub fn can_quantize(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1)
}

/// `values` as data of type `ty`. Errors (never panics) for a type [`can_quantize`] refuses and
/// for a count that is not a whole number of the type's blocks.
pub fn quantize(ty: GgmlType, values: &[f32]) -> std::result::Result<Vec<u8>, String> {
    if !can_quantize(ty) {
        return Err(format!("quantizing to GGML type {ty} is not supported"));
    }
    let (bs, ts) = ty.block_layout().ok_or_else(|| format!("unknown GGML type {ty}"))?;
    if !values.len().is_multiple_of(bs) {
        return Err(format!("{} values are not a whole number of {} blocks of {bs}", values.len(), ty.name()));
    }
    let mut out = Vec::with_capacity(values.len() / bs * ts);
    match ty {
        GgmlType::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => values.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::BF16 => values.iter().for_each(|v| out.extend_from_slice(&bf16_bits(*v).to_le_bytes())),
        _ => {
            let block = match ty {
                GgmlType::Q8_0 => q8_0,
                GgmlType::Q4_0 => q4_0,
                GgmlType::Q4_1 => q4_1,
                GgmlType::Q5_0 => q5_0,
                _ => q5_1,
            };
            for chunk in values.chunks_exact(32) {
                let x: &[f32; 32] = chunk.try_into().map_err(|_| "a block of 32".to_string())?;
                block(x, &mut out);
            }
        }
    }
    Ok(out)
}

/// ggml's `ggml_compute_fp32_to_bf16`: NaNs made quiet, others rounded to nearest even.
fn bf16_bits(v: f32) -> u16 {
    let u = v.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u64::from(u) + 0x7fff + u64::from((u >> 16) & 1)) >> 16) as u16
}

fn push_f16(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// `1/d`, or 0 for `d == 0`, as the reference code computes its inverse scale.
fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// The value of largest magnitude (the first of them), with its sign.
fn signed_absmax(x: &[f32; 32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32; 32]) -> (f32, f32) {
    x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (if v < lo { v } else { lo }, if v > hi { v } else { hi }))
}

/// `quantize_row_q8_0_ref`: `d = amax / 127`, `q = roundf(x / d)` (half away from zero).
fn q8_0(x: &[f32; 32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    push_f16(out, d);
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

/// Packs 32 values of 4 bits: `x[j]` in the low nibble of byte `j`, `x[j + 16]` in its high one.
fn push_nibbles(q: &[u8; 32], out: &mut Vec<u8>) {
    out.extend((0..16).map(|j| (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4)));
}

/// The fifth bits of 32 values of 5 bits, as the little-endian `qh` word.
fn push_high_bits(q: &[u8; 32], out: &mut Vec<u8>) {
    let qh = q.iter().enumerate().fold(0u32, |h, (j, &v)| h | (u32::from((v & 0x10) >> 4) << j));
    out.extend_from_slice(&qh.to_le_bytes());
}

/// Codes of `x` scaled by `id` and offset by `offset` (truncated toward zero, as the reference
/// code's `(int8_t)` cast), at most `top`.
fn codes(x: &[f32; 32], sub: f32, id: f32, offset: f32, top: u8) -> [u8; 32] {
    let mut q = [0u8; 32];
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (((v - sub) * id + offset) as i8).clamp(0, top as i8) as u8;
    }
    q
}

/// `quantize_row_q4_0_ref`: `d = max / -8` of the signed value of largest magnitude.
fn q4_0(x: &[f32; 32], out: &mut Vec<u8>) {
    let d = signed_absmax(x) / -8.0;
    push_f16(out, d);
    push_nibbles(&codes(x, 0.0, inverse(d), 8.5, 15), out);
}

/// `quantize_row_q4_1_ref`: `d = (max − min) / 15`, `m = min`.
fn q4_1(x: &[f32; 32], out: &mut Vec<u8>) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    push_f16(out, d);
    push_f16(out, min);
    push_nibbles(&codes(x, min, inverse(d), 0.5, 15), out);
}

/// `quantize_row_q5_0_ref`: `d = max / -16` of the signed value of largest magnitude.
fn q5_0(x: &[f32; 32], out: &mut Vec<u8>) {
    let d = signed_absmax(x) / -16.0;
    push_f16(out, d);
    let q = codes(x, 0.0, inverse(d), 16.5, 31);
    push_high_bits(&q, out);
    push_nibbles(&q, out);
}

/// `quantize_row_q5_1_ref`: `d = (max − min) / 31`, `m = min`.
fn q5_1(x: &[f32; 32], out: &mut Vec<u8>) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    push_f16(out, d);
    push_f16(out, min);
    let q = codes(x, min, inverse(d), 0.5, 31);
    push_high_bits(&q, out);
    push_nibbles(&q, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequantize;

    /// Values that hit the reference code's edge cases: ties at .5, zeros, a block of equal
    /// values, a lone extreme.
    fn values() -> Vec<f32> {
        let mut v: Vec<f32> = (0..32 * 8).map(|i| ((i * 7919 % 263) as f32 - 131.0) / 37.0).collect();
        v[40..72].fill(0.0);
        v[72..104].fill(0.3);
        v[110] = -50.0;
        v
    }

    #[test]
    fn quantized_values_come_back_within_a_step() {
        let x = values();
        for (ty, steps) in [(GgmlType::Q8_0, 127.0), (GgmlType::Q4_0, 8.0), (GgmlType::Q4_1, 15.0), (GgmlType::Q5_0, 16.0), (GgmlType::Q5_1, 31.0)] {
            let back = dequantize(ty, &quantize(ty, &x).unwrap(), x.len()).unwrap();
            for (b, (xs, ys)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
                let (lo, hi) = xs.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                let range = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) { hi - lo } else { lo.abs().max(hi.abs()) };
                for (a, y) in xs.iter().zip(ys) {
                    assert!((a - y).abs() <= range / steps * 1.01 + 1e-6, "{ty} block {b}: {a} came back as {y}");
                }
            }
        }
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            let back = dequantize(ty, &quantize(ty, &x).unwrap(), x.len()).unwrap();
            assert!(x.iter().zip(&back).all(|(a, b)| (a - b).abs() <= a.abs() / 128.0), "{ty}");
        }
    }

    /// Byte for byte what gguf-py's ports of ggml's reference quantizers give, on inputs made to
    /// hit their edge cases (`scripts/make-quant-reference`).
    #[test]
    fn quantizers_equal_the_reference_byte_for_byte() {
        use crate::gguf::testing::fixture;
        let f = crate::gguf::GgufFile::open(&fixture("quantize.gguf")).unwrap();
        let x = f.dequantize("input").unwrap();
        let mut checked = 0;
        for info in f.tensors().iter().filter(|t| t.name != "input") {
            let want = f.tensor_bytes(info);
            let got = quantize(info.ty, &x).unwrap();
            let (_, ts) = info.ty.block_layout().unwrap();
            if let Some(b) = (0..want.len() / ts).find(|&b| got[b * ts..(b + 1) * ts] != want[b * ts..(b + 1) * ts]) {
                panic!("{}: block {b} differs: got {:?}, want {:?}", info.name, &got[b * ts..(b + 1) * ts], &want[b * ts..(b + 1) * ts]);
            }
            assert_eq!(got.len(), want.len(), "{}", info.name);
            checked += 1;
        }
        assert_eq!(checked, 7, "every type gguf-py quantizes");
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(quantize(GgmlType::Q4_K, &[0.0; 256]).unwrap_err().contains("not supported"));
        assert!(quantize(GgmlType::Q8_0, &[0.0; 33]).unwrap_err().contains("whole number"));
        assert_eq!(quantize(GgmlType::Q8_0, &[]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nans_quiet() {
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
    }
}
