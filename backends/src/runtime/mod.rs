//! The Burn runtime: the IR lowered to Burn tensor ops, generic over Burn's backends (Flex on the CPU, Cuda on NVIDIA GPUs, each with or without Autodiff).

pub mod bench;
pub mod calibrate;
pub mod collective;
pub mod eval;
pub mod exec;
pub mod generate;
pub mod stream;
pub mod tensor;
pub mod train;
pub mod zero_shot;

pub use calibrate::{calibrate, calibrate_on, CalibrationOptions};
pub use collective::{is_collective_panic, run_peers, Nodes, Peer, PeerRun, PeerTime};
pub use eval::{perplexity, perplexity_of, perplexity_streamed, Perplexity};
pub use generate::{generate, Sampling};
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
