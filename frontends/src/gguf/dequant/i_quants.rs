//! ggml's 4-bit i-quants, indices into the non-linear table `kvalues_iq4nl`: IQ4_NL (blocks of 32)
//! and IQ4_XS (super-blocks of 256 with 6-bit sub-block scales).

use super::{h, QK_K};

/// ggml's `kvalues_iq4nl`.
const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

pub(super) fn dq_iq4_nl(b: &[u8; 18]) -> [f32; 32] {
    let d = h(b, 0);
    let mut y = [0f32; 32];
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = d * KVALUES_IQ4NL[(q & 0x0F) as usize] as f32;
        y[j + 16] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
    }
    y
}

pub(super) fn dq_iq4_xs(b: &[u8; 136]) -> [f32; QK_K] {
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
