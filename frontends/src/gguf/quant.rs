//! Quantization of `f32` values to GGUF tensor data, bit for bit as ggml's reference
//! `quantize_row_*_ref` (ggml-quants.c) and gguf-py's `gguf.quants.quantize` do: F32, F16,
//! BF16, the legacy blocks of 32, Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1, and the k-quants' super-blocks
//! of 256, Q4_K and Q6_K (see [`can_quantize`]). gguf-py has no k-quant quantizer: those two are
//! checked against ggml-quants.c itself, built without floating-point contraction
//! (`scripts/make-quant-reference`), as Rust never contracts `a * b + c` into one rounding.
//!
//! Each block is quantized alone, so a tensor's rows can be quantized one at a time (and a row
//! of blocks copied from an input file is the same bytes as quantizing its values again only
//! when the values were not changed: see the GGUF writer's block copies).

use half::f16;

use super::ggml_type::GgmlType;

/// Whether [`quantize`] writes this type.
pub fn can_quantize(ty: GgmlType) -> bool {
    WRITABLE.contains(&ty)
}

/// The types [`quantize`] writes, in the order messages list them.
pub const WRITABLE: [GgmlType; 10] =
    [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q6_K];

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
    // blocks are quantized alone: large tensors are split over the cores in whole blocks
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(values.len() / PARALLEL_FROM + 1);
    let per = values.len().div_ceil(bs).div_ceil(threads.max(1)) * bs;
    if threads <= 1 || per == 0 {
        return Ok(quantize_blocks(ty, values, bs, ts));
    }
    let parts: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = values.chunks(per).map(|c| s.spawn(move || quantize_blocks(ty, c, bs, ts))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    Ok(parts.concat())
}

/// Values from which [`quantize`] uses more than one thread (per thread).
const PARALLEL_FROM: usize = 1 << 18;

/// `values`, whole blocks of `bs` values of a type [`can_quantize`] writes, as its data (`ts`
/// bytes a block).
fn quantize_blocks(ty: GgmlType, values: &[f32], bs: usize, ts: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / bs * ts);
    match ty {
        GgmlType::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => values.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::BF16 => values.iter().for_each(|v| out.extend_from_slice(&bf16_bits(*v).to_le_bytes())),
        GgmlType::Q4_K | GgmlType::Q6_K => {
            let block = if ty == GgmlType::Q4_K { q4_k } else { q6_k };
            for x in values.chunks_exact(QK_K).filter_map(|c| <&[f32; QK_K]>::try_from(c).ok()) {
                block(x, &mut out);
            }
        }
        _ => {
            let block = match ty {
                GgmlType::Q8_0 => q8_0,
                GgmlType::Q4_0 => q4_0,
                GgmlType::Q4_1 => q4_1,
                GgmlType::Q5_0 => q5_0,
                _ => q5_1,
            };
            for x in values.chunks_exact(32).filter_map(|c| <&[f32; 32]>::try_from(c).ok()) {
                block(x, &mut out);
            }
        }
    }
    out
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

/// Values in a k-quant super-block.
const QK_K: usize = 256;

/// ggml's `nearest_int`: `fval` rounded to the nearest integer, ties to even, by adding
/// 1.5·2²³ and reading the mantissa (the reference asserts `|fval| ≤ 4194303`).
fn nearest_int(fval: f32) -> i32 {
    let bits = (fval + 12582912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `make_qkx2_quants` for the 32 values `x` of a sub-block with `weights`, as
/// `quantize_row_q4_K_ref` calls it (`rmin` −1, `rdelta` 0.1, `nstep` 20, squared error):
/// codes `0..=nmax` in `l` for `x ≈ scale·l − min`, searching 21 scales around
/// `nmax / (max − min)` for the least weighted squared error; returns `(scale, min)`, `min ≥ 0`.
fn make_qkx2_quants(nmax: i32, x: &[f32; 32], weights: &[f32; 32], l: &mut [u8]) -> (f32, f32) {
    let (rmin, rdelta, nstep) = (-1.0f32, 0.1f32, 20);
    let mut laux = [0u8; 32];
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        l[i] = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        let diff = scale * f32::from(l[i]) + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, q) = (weights[i], q as f32);
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` with `rmse_type` 1 (weights `x²`) and no importance: signed codes
/// `−nmax..nmax−1`, stored as `l + nmax` in `l`, for `x ≈ scale·l`, searching 19 scales around
/// `−nmax / max` (`max` the value of largest magnitude); returns `scale`.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [u8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l[..x.len()].fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // the weighted sums `Σ w·x·l` and `Σ w·l²` of the codes at `iscale`
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let (w, q) = (v * v, code(iscale, v) as f32);
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let set = |iscale: f32, l: &mut [u8]| {
        for (l, &v) in l.iter_mut().zip(x) {
            *l = (code(iscale, v) + nmax) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    set(iscale, l);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            set(iscale, l);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// The reference code's bound below which a group's values are all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// `quantize_row_q4_K_ref`: eight sub-blocks of 32, each `x ≈ d·sc·q − dmin·m` with 4-bit codes
/// `q` and 6-bit `sc`, `m` (from `make_qkx2_quants` weighted by `rms + |x|`), `d` and `dmin` f16.
fn q4_k(x: &[f32; QK_K], out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for (j, xs) in x.as_chunks::<32>().0.iter().enumerate() {
        let sum_x2 = xs.iter().fold(0f32, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        (scales[j], mins[j]) = make_qkx2_quants(15, xs, &weights, &mut l[32 * j..32 * (j + 1)]);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        // the reference stores the codes in a byte (wrapping) before bounding them by 63
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = crate::gguf::dequant::scale_min_k4(j, &packed);
        let d = d.to_f32() * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * f32::from(m);
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / d).clamp(0, 15) as u8;
        }
    }
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
    out.extend_from_slice(&packed);
    for j in (0..QK_K).step_by(64) {
        out.extend((0..32).map(|i| l[j + i] | (l[j + i + 32] << 4)));
    }
}

/// `quantize_row_q6_K_ref`: sixteen sub-blocks of 16, each `x ≈ d·sc·(q − 32)` with 6-bit codes
/// `q` (from `make_qx_quants`), signed 8-bit `sc` and `d` f16.
fn q6_k(x: &[f32; QK_K], out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for (ib, s) in scales.iter_mut().enumerate() {
        *s = make_qx_quants(32, &x[16 * ib..16 * (ib + 1)], &mut l[16 * ib..16 * (ib + 1)]);
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = *s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        out.extend_from_slice(&[0u8; 210]);
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    let sc: [i8; 16] = std::array::from_fn(|ib| nearest_int(iscale * scales[ib]).min(127) as i8);
    for (j, &s) in sc.iter().enumerate() {
        let d = d.to_f32() * f32::from(s);
        if d == 0.0 {
            continue;
        }
        for i in 0..16 {
            l[16 * j + i] = (nearest_int(x[16 * j + i] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for (n, j) in (0..QK_K).step_by(128).enumerate() {
        for i in 0..32 {
            let q = |k: usize| l[j + i + 32 * k];
            ql[64 * n + i] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
            ql[64 * n + i + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
            qh[32 * n + i] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend_from_slice(&d.to_le_bytes());
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
        use crate::gguf::tests::support::fixture;
        let f = crate::gguf::GgufFile::open(&fixture("quantize.gguf")).unwrap();
        // the legacy types' input, and the k-quants' (ggml-quants.c's own outputs)
        let (x, xk) = (f.dequantize("input").unwrap(), f.dequantize("input_k").unwrap());
        let mut checked = 0;
        for info in f.tensors().iter().filter(|t| !t.name.starts_with("input")) {
            let want = f.tensor_bytes(info);
            let got = quantize(info.ty, if matches!(info.ty, GgmlType::Q4_K | GgmlType::Q6_K) { &xk } else { &x }).unwrap();
            let (_, ts) = info.ty.block_layout().unwrap();
            if let Some(b) = (0..want.len() / ts).find(|&b| got[b * ts..(b + 1) * ts] != want[b * ts..(b + 1) * ts]) {
                panic!("{}: block {b} differs: got {:?}, want {:?}", info.name, &got[b * ts..(b + 1) * ts], &want[b * ts..(b + 1) * ts]);
            }
            assert_eq!(got.len(), want.len(), "{}", info.name);
            checked += 1;
        }
        assert_eq!(checked, 9, "every type gguf-py quantizes, and Q4_K and Q6_K");
    }

    /// A tensor large enough to be split over threads is the same bytes as one pass.
    #[test]
    fn threads_change_no_byte() {
        let x: Vec<f32> = (0..3 * PARALLEL_FROM + 4096).map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 97.0).collect();
        for ty in [GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F16] {
            let (bs, ts) = ty.block_layout().unwrap();
            assert!(quantize(ty, &x).unwrap() == quantize_blocks(ty, &x, bs, ts), "{ty}");
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(quantize(GgmlType::Q5_K, &[0.0; 256]).unwrap_err().contains("not supported"));
        assert!(quantize(GgmlType::Q4_K, &[0.0; 288]).unwrap_err().contains("whole number"));
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
