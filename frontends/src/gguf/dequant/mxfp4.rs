//! OCP microscaling FP4 (MXFP4): blocks of 32 e2m1 values sharing one e8m0 scale.

/// ggml's `kvalues_mxfp4`: e2m1 values, doubled.
const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

pub(super) fn dq_mxfp4(b: &[u8; 17]) -> [f32; 32] {
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
