//! ggml's k-quants, super-blocks of 256 weights (with quantized sub-block scales but for Q8_K):
//! Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K.

use super::{h, QK_K};

pub(super) fn dq_q2_k(b: &[u8; 84]) -> [f32; QK_K] {
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

pub(super) fn dq_q3_k(b: &[u8; 110]) -> [f32; QK_K] {
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
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

pub(super) fn dq_q4_k(b: &[u8; 144]) -> [f32; QK_K] {
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

pub(super) fn dq_q5_k(b: &[u8; 176]) -> [f32; QK_K] {
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

pub(super) fn dq_q6_k(b: &[u8; 210]) -> [f32; QK_K] {
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

pub(super) fn dq_q8_k(b: &[u8; 292]) -> [f32; QK_K] {
    // d (f32) @0, qs[256] (i8) @4, bsums[16] (i16) @260
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut y = [0f32; QK_K];
    for (j, v) in y.iter_mut().enumerate() {
        *v = d * (b[4 + j] as i8) as f32;
    }
    y
}
