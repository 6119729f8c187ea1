//! ggml's legacy quants, blocks of 32 weights with one f16 scale (and a minimum for the `_1`
//! types): Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.

use super::h;

pub(super) fn dq_q4_0(b: &[u8; 18]) -> [f32; 32] {
    let d = h(b, 0);
    let mut y = [0f32; 32];
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
    y
}

pub(super) fn dq_q4_1(b: &[u8; 20]) -> [f32; 32] {
    let (d, m) = (h(b, 0), h(b, 2));
    let mut y = [0f32; 32];
    for j in 0..16 {
        let q = b[4 + j];
        y[j] = (q & 0x0F) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
    y
}

pub(super) fn dq_q5_0(b: &[u8; 22]) -> [f32; 32] {
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

pub(super) fn dq_q5_1(b: &[u8; 24]) -> [f32; 32] {
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

pub(super) fn dq_q8_0(b: &[u8; 34]) -> [f32; 32] {
    let d = h(b, 0);
    let mut y = [0f32; 32];
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
    y
}
