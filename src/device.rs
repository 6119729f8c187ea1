//! Where the backend runs: `--device cpu` (Burn's Flex) or `--device cuda` (Burn's CUDA
//! backend, in builds with the `cuda` feature). Each entry point here picks the backend type
//! and calls the generic runtime.

use anyhow::Result;
use prunec_backends::runtime::{self, CalibrationOptions, Executor, Perplexity, Sampling};
use prunec_ir::{CalibrationStats, Model};

/// A device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// The CPU, through Burn's Flex backend.
    Cpu,
    /// An NVIDIA GPU, through Burn's CUDA backend.
    Cuda,
}

impl Device {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

/// The float type the backend computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats (weights stored in 16 bits are widened).
    #[default]
    F32,
    /// 64-bit floats, on the CPU: for comparisons with references computed in float64.
    F64,
}

impl Precision {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }

    /// Sets the backend of `device` to compute in this precision; before any tensor exists.
    pub fn apply(self, device: Device) -> Result<()> {
        match (self, device) {
            (Precision::F32, _) => Ok(()),
            (Precision::F64, Device::Cpu) => Ok(runtime::cpu_in_f64()?),
            (Precision::F64, Device::Cuda) => anyhow::bail!("--precision f64 runs on the CPU only (--device cpu)"),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn no_cuda<T>() -> Result<T> {
    anyhow::bail!("--device cuda: this prunec was built without CUDA; build it with `cargo build --release --features cuda`")
}

/// Checks that the CUDA driver can be loaded (Burn's CUDA backend would panic without it).
#[cfg(feature = "cuda")]
fn cuda_driver() -> Result<()> {
    const NAMES: &[&str] = &["libcuda.so.1", "libcuda.so", "libnvcuda.so"];
    for name in NAMES {
        // SAFETY: loading the system's CUDA driver library runs its initialisers, as the CUDA
        // backend itself does when it starts; nothing else is called.
        if unsafe { libloading::Library::new(name) }.is_ok() {
            return Ok(());
        }
    }
    anyhow::bail!("--device cuda: no CUDA driver found ({} not loadable): is there an NVIDIA GPU and its driver?", NAMES.join(", "))
}

/// Runs `$body` with `B` bound to the backend (and `B::Autodiff` wrapper `A`) of `$device`,
/// and `dev` to its device.
macro_rules! on_device {
    ($device:expr, |$b:ident, $a:ident, $dev:ident| $body:expr) => {
        match $device {
            Device::Cpu => {
                #[allow(dead_code)]
                type $b = runtime::Cpu;
                #[allow(dead_code)]
                type $a = runtime::CpuAutodiff;
                let $dev = runtime::cpu();
                $body
            }
            Device::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    cuda_driver()?;
                    #[allow(dead_code)]
                    type $b = prunec_backends::burn::backend::Cuda;
                    #[allow(dead_code)]
                    type $a = prunec_backends::burn::backend::Autodiff<prunec_backends::burn::backend::Cuda>;
                    let $dev = prunec_backends::burn::backend::cuda::CudaDevice::default();
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                {
                    no_cuda()
                }
            }
        }
    };
}

/// Perplexity of `model` on `tokens` (see [`runtime::perplexity`]).
pub fn perplexity(
    device: Device,
    model: &Model,
    tokens: &[u32],
    seq_len: usize,
    batch: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    on_device!(device, |B, A, dev| Ok(runtime::perplexity::<B>(model, &dev, tokens, seq_len, batch, progress)?))
}

/// Log-likelihoods of task requests (see [`runtime::loglikelihoods`]).
pub fn loglikelihoods(
    device: Device,
    model: &Model,
    requests: &[runtime::TokenRequest],
    batch: usize,
    max_length: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<f64>> {
    on_device!(device, |B, A, dev| Ok(runtime::loglikelihoods::<B>(model, &dev, requests, batch, max_length, progress)?))
}

/// Perplexity of `model` on `tokens`, layer by layer (see [`runtime::perplexity_streamed`]).
pub fn perplexity_streamed(
    device: Device,
    model: &Model,
    tokens: &[u32],
    seq_len: usize,
    batch: usize,
    group_tokens: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    on_device!(device, |B, A, dev| Ok(runtime::perplexity_streamed::<B>(model, &dev, tokens, seq_len, batch, group_tokens, progress)?))
}

/// Log-likelihoods of task requests, layer by layer (see [`runtime::loglikelihoods_streamed`]).
pub fn loglikelihoods_streamed(
    device: Device,
    model: &Model,
    requests: &[runtime::TokenRequest],
    batch: usize,
    max_length: usize,
    group_tokens: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<f64>> {
    on_device!(device, |B, A, dev| Ok(runtime::loglikelihoods_streamed::<B>(
        model,
        &dev,
        requests,
        batch,
        max_length,
        group_tokens,
        progress
    )?))
}

/// Gradients of `model` on `samples`, layer by layer, handed to `sink` parameter by parameter
/// (see [`runtime::calibrate_streamed`]).
pub fn calibrate_streamed(
    device: Device,
    model: &Model,
    samples: &[Vec<u32>],
    options: &runtime::StreamOptions,
    sink: impl FnMut(&str, prunec_ir::ParamGradient) -> prunec_backends::Result<()>,
    progress: impl FnMut(runtime::StreamStep),
) -> Result<runtime::StreamSummary> {
    on_device!(device, |B, A, dev| Ok(runtime::calibrate_streamed::<A>(model, &dev, samples, options, sink, progress)?))
}

/// Calibration statistics of `model` on `samples` (see [`runtime::calibrate`]).
#[allow(dead_code)]
pub fn calibrate(
    device: Device,
    model: &Model,
    samples: &[Vec<u32>],
    options: CalibrationOptions,
    progress: impl FnMut(usize, usize),
) -> Result<CalibrationStats> {
    on_device!(device, |B, A, dev| Ok(runtime::calibrate::<A>(model, &dev, samples, options, progress)?))
}

/// Generates after `prompt` (see [`runtime::generate`]).
pub fn generate(
    device: Device,
    model: &Model,
    prompt: &[u32],
    sampling: &Sampling,
    eos: Option<u32>,
    on_token: impl FnMut(u32),
) -> Result<Vec<u32>> {
    on_device!(device, |B, A, dev| {
        let exec = Executor::<B>::new(model, &dev)?;
        Ok(runtime::generate(&exec, prompt, sampling, eos, on_token)?)
    })
}

/// Trains the parameters `trainable` of `model` (see [`runtime::train()`]).
#[allow(clippy::too_many_arguments)]
pub fn train(
    device: Device,
    model: &mut Model,
    trainable: &[String],
    train: &[runtime::Sample<'_>],
    val: &[runtime::Sample<'_>],
    eval_text: Option<runtime::EvalText<'_>>,
    options: &runtime::TrainOptions,
    observer: &mut dyn runtime::TrainObserver,
) -> Result<runtime::TrainOutcome> {
    on_device!(device, |B, A, dev| Ok(runtime::train::<A>(model, &dev, trainable, train, val, eval_text, options, observer)?))
}

/// Throughput of forward and of forward+backward on batches of `batch × seq_len` tokens, and of
/// generating `new_tokens` tokens.
pub fn bench(
    device: Device,
    model: &Model,
    batch: usize,
    seq_len: usize,
    iters: usize,
    new_tokens: usize,
) -> Result<runtime::bench::Throughput> {
    on_device!(device, |B, A, dev| Ok(runtime::bench::measure::<A>(model, &dev, batch, seq_len, iters, new_tokens)?))
}

/// Moments of the values `taps` of `model` over `batches`, a segment's at a time (see
/// [`runtime::input_moments`]).
pub fn input_moments(
    device: Device,
    model: &Model,
    batches: &[Vec<Vec<u32>>],
    taps: &[(prunec_ir::ValueId, bool)],
    on_segment: impl FnMut(std::collections::HashMap<prunec_ir::ValueId, prunec_ir::Moments>) -> prunec_backends::Result<()>,
    progress: impl FnMut(runtime::StreamStep),
) -> Result<()> {
    on_device!(device, |B, A, dev| Ok(runtime::input_moments::<B>(model, &dev, batches, taps, on_segment, progress)?))
}
