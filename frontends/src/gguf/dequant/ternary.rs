//! ggml's ternary quants, 256 weights of -1, 0 or 1 times an f16 scale: TQ1_0 (base-3 packed) and
//! TQ2_0 (2 bits each).

use super::{h, QK_K};

pub(super) fn dq_tq1_0(b: &[u8; 54]) -> [f32; QK_K] {
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

pub(super) fn dq_tq2_0(b: &[u8; 66]) -> [f32; QK_K] {
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
