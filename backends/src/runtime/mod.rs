//! The Burn runtime: the IR lowered to Burn tensor ops, generic over Burn's backends (Flex on the CPU, Cuda on NVIDIA GPUs, each with or without Autodiff).

pub mod bench;
pub mod calibrate;
pub mod collective;
pub mod eval;
pub mod exec;
pub mod fused;
pub mod generate;
pub mod stream;
pub mod tensor;
pub mod train;
pub mod zero_shot;

pub use calibrate::{calibrate, calibrate_on, CalibrationOptions};
pub use collective::{is_collective_panic, run_peers, Nodes, Peer, PeerRun, PeerTime};
pub use eval::{perplexity, perplexity_of, perplexity_streamed, Perplexity};
pub use generate::{generate, Sampling};
pub use fused::{Fused, FusedAutodiff};
pub use exec::{causal_lm_loss, masked_nll, row_nll, EmbeddingTap, Executor, KvCache};
pub use stream::{activation_bytes_per_token, calibrate_streamed, calibrate_streamed_on, crossing_bytes_per_token, forward_streamed, input_moments, largest_segment_params, StreamOptions, StreamStep, StreamSummary};
pub use train::{train, train_on, EvalText, LrSchedule, Sample, TrainObserver, TrainOptions, TrainOutcome, TrainPoint};
pub use tensor::DynTensor;
pub use zero_shot::{loglikelihoods, loglikelihoods_streamed, TokenRequest};

/// The CPU backend.
pub type Cpu = burn::backend::Flex;
/// The CPU backend with automatic differentiation.
pub type CpuAutodiff = burn::backend::Autodiff<burn::backend::Flex>;
/// The CPU device.
pub fn cpu() -> burn::backend::flex::FlexDevice {
    burn::backend::flex::FlexDevice
}

/// Makes every float tensor created on the CPU from now on f64 instead of f32 (`--precision
/// f64`): parameters, activations, gradients. For reference comparisons (about 2× slower);
/// must be called before the first tensor is created on the CPU.
pub fn cpu_in_f64() -> crate::Result<()> {
    burn::tensor::backend::set_default_float_dtype::<Cpu>(&cpu(), burn::tensor::FloatDType::F64)
        .map_err(|e| crate::BackendError::Lowering(format!("the CPU's float type cannot be set to f64: {e:?}")))
}

/// Values in [-scale, scale) from a fixed linear congruential sequence, for the kernels' tests.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{cpu, Cpu};
    use burn::prelude::{Tensor, TensorData};
    use burn::tensor::activation;

    /// Values in [-4, 4).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        super::test_values(n, seed, 4.0)
    }

    fn tensor<const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<Cpu, D> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), &cpu())
    }

    fn bits<const D: usize>(t: Tensor<Cpu, D>) -> Vec<u32> {
        t.into_data().to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
    }

    fn expect(got: Vec<u32>, want: impl IntoIterator<Item = f32>, what: &str) {
        let want: Vec<u32> = want.into_iter().map(f32::to_bits).collect();
        assert_eq!(got.len(), want.len(), "{what}: length");
        let first = got.iter().zip(&want).position(|(g, w)| g != w);
        assert!(first.is_none(), "{what}: element {first:?} differs from the element-by-element loop");
    }

    /// The CPU backend's element-wise ops, scalar ops and strided copies are split over rayon's
    /// pool above 32 Ki elements (vendor/burn-flex/PRUNEC.md). On tensors large enough to be
    /// split, in chunks that do not divide them, every element is the one a plain loop gives:
    /// in place and into a new buffer, broadcast by row and by scalar, transposed and permuted.
    #[test]
    fn split_cpu_kernels_compute_every_element_as_a_loop() {
        let (rows, cols) = (389, 517); // 201 113 elements, prime sides
        let n = rows * cols;
        let (a, b) = (values(n, 1), values(n, 2));
        let (ta, tb) = (tensor(&a, [rows, cols]), tensor(&b, [rows, cols]));
        let zip = |f: fn(f32, f32) -> f32| a.iter().zip(&b).map(move |(&x, &y)| f(x, y)).collect::<Vec<_>>();

        // in place (the left operand is unique), then into a new buffer (it is shared)
        expect(bits(ta.clone() + tb.clone()), zip(|x, y| x + y), "add, shared lhs");
        expect(bits(tensor(&a, [rows, cols]) * tb.clone()), zip(|x, y| x * y), "mul in place");
        expect(bits(tensor(&a, [rows, cols]) / tb.clone()), zip(|x, y| x / y), "div in place");
        expect(bits(ta.clone().sub(tb.clone())), zip(|x, y| x - y), "sub, shared lhs");
        expect(bits(tensor(&a, [rows, cols]).mul_scalar(0.37)), a.iter().map(|x| x * 0.37), "mul_scalar in place");
        expect(bits(ta.clone().add_scalar(1.5)), a.iter().map(|x| x + 1.5), "add_scalar, shared");
        expect(bits(tensor(&a, [rows, cols]).exp()), a.iter().map(|x| x.exp()), "exp in place");
        expect(bits(ta.clone().exp()), a.iter().map(|x| x.exp()), "exp, shared");
        let sigmoid = |x: f32| if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) };
        expect(bits(activation::sigmoid(ta.clone())), a.iter().map(|&x| sigmoid(x)), "sigmoid");

        // a row shared by every row, and one scalar per row
        let row = tensor(&b[..cols], [1, cols]);
        let want = (0..n).map(|i| a[i] + b[i % cols]);
        expect(bits(tensor(&a, [rows, cols]) + row), want, "add a shared row");
        let per_row = tensor(&b[..rows], [rows, 1]);
        let want = (0..n).map(|i| a[i] * b[i / cols]);
        expect(bits(tensor(&a, [rows, cols]) * per_row), want, "mul a scalar per row");

        // strided copies: a transpose, and heads swapped with positions ([b, s, h, d] → [b, h, s, d])
        let want = (0..n).map(|i| a[(i % rows) * cols + i / rows]);
        expect(bits(ta.clone().transpose()), want, "transpose");
        let (bs, s, h, d) = (3, 67, 9, 37);
        let v = values(bs * s * h * d, 3);
        let got = bits(tensor(&v, [bs, s, h, d]).swap_dims(1, 2));
        let want = (0..bs * h * s * d).map(|i| {
            let (bi, hi, si, di) = (i / (h * s * d), i / (s * d) % h, i / d % s, i % d);
            v[((bi * s + si) * h + hi) * d + di]
        });
        expect(got, want, "swap_dims(1, 2)");

        // transposed and permuted operands, laid out contiguously before the op (as a gradient
        // arriving transposed is added to another)
        let at = |i: usize| (i % rows) * cols + i / rows; // element i of the transpose, in `a`/`b`
        let want = (0..n).map(|i| a[at(i)] + b[at(i)]);
        expect(bits(ta.clone().transpose() + tb.clone().transpose()), want, "add of two transposes");
        let c = values(n, 4);
        let want = (0..n).map(|i| c[i] - b[at(i)]);
        expect(bits(tensor(&c, [cols, rows]) - tb.clone().transpose()), want, "sub of a transpose, in place");
        let want = (0..n).map(|i| a[at(i)] * 0.37);
        expect(bits(ta.clone().transpose().mul_scalar(0.37)), want, "mul_scalar of a transpose");
        let w = values(bs * s * h * d, 5);
        let permuted = (0..bs * h * s * d).map(|i| {
            let (bi, hi, si, di) = (i / (h * s * d), i / (s * d) % h, i / d % s, i % d);
            ((bi * s + si) * h + hi) * d + di
        });
        let want = permuted.map(|j| v[j] * w[j]);
        let got = bits(tensor(&v, [bs, s, h, d]).swap_dims(1, 2) * tensor(&w, [bs, s, h, d]).swap_dims(1, 2));
        expect(got, want, "mul of two permuted tensors");
    }

    /// Zeros of 1 MiB and more are written over the pool, not taken from calloc
    /// (vendor/burn-flex/PRUNEC.md, `zeroed_vec`): every element is zero, in buffers that do and
    /// do not divide into the pool's pieces, after the allocator's free lists were filled with
    /// non-zero blocks of those sizes; and an in-place add into them (an accumulated gradient)
    /// gives the other operand.
    #[test]
    fn large_zeros_are_zeros_and_take_in_place_adds() {
        for (rows, cols) in [(512, 512), (1031, 263), (3, 5)] {
            let n = rows * cols;
            for _ in 0..4 {
                drop(tensor(&values(n, 11), [rows, cols]).exp());
            }
            let zeros = Tensor::<Cpu, 2>::zeros([rows, cols], &cpu());
            assert!(bits(zeros.clone()).iter().all(|&b| b == 0), "{rows}×{cols} zeros hold a non-zero element");
            let b = values(n, 12);
            expect(bits(zeros + tensor(&b, [rows, cols])), b.iter().copied(), "an add into zeros");
        }
    }

    /// Matrix products write their outputs without zeroing them first (vendor/burn-flex/PRUNEC.md):
    /// every element is written, each the one a plain loop of products gives within f32
    /// rounding, including an inner size of 0 (all zeros) and batched products.
    #[test]
    fn products_write_every_element_of_their_output() {
        let naive = |a: &[f32], b: &[f32], m: usize, k: usize, n: usize| -> Vec<f32> {
            (0..m * n).map(|i| (0..k).map(|j| f64::from(a[i / n * k + j]) * f64::from(b[j * n + i % n])).sum::<f64>() as f32).collect()
        };
        let close = |got: Vec<f32>, want: Vec<f32>, k: usize, what: &str| {
            assert_eq!(got.len(), want.len(), "{what}: length");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-5 * (k as f32) * 16.0, "{what}: element {i} is {g}, a plain loop gives {w}");
            }
        };
        // fill the allocator's free lists with non-zero blocks of the outputs' sizes first
        for _ in 0..4 {
            drop(tensor(&values(300 * 257, 9), [300, 257]).exp());
        }
        let (m, k, n) = (300, 67, 257);
        let (a, b) = (values(m * k, 6), values(k * n, 7));
        let got = tensor(&a, [m, k]).matmul(tensor(&b, [k, n])).into_data().to_vec::<f32>().unwrap();
        close(got, naive(&a, &b, m, k, n), k, "2D product");
        let got = tensor(&a, [3, m / 3, k]).matmul(tensor(&b, [1, k, n])).into_data().to_vec::<f32>().unwrap();
        close(got, naive(&a, &b, m, k, n), k, "batched product");
        let empty: Tensor<Cpu, 2> = Tensor::from_data(TensorData::new(Vec::<f32>::new(), [m, 0]), &cpu());
        let none: Tensor<Cpu, 2> = Tensor::from_data(TensorData::new(Vec::<f32>::new(), [0, n]), &cpu());
        let got = empty.matmul(none).into_data().to_vec::<f32>().unwrap();
        assert_eq!(got, vec![0.0; m * n], "a product over an inner size of 0 is all zeros");
    }
}
