//! The Burn runtime: the IR lowered to Burn tensor ops, generic over Burn's backends (Flex on the CPU, Cuda on NVIDIA GPUs, each with or without Autodiff).

pub mod bench;
pub mod calibrate;
pub mod eval;
pub mod exec;
pub mod generate;
pub mod stream;
pub mod tensor;
pub mod train;
pub mod zero_shot;

pub use calibrate::{calibrate, CalibrationOptions};
pub use eval::{perplexity, perplexity_of, perplexity_streamed, Perplexity};
pub use generate::{generate, Sampling};
pub use exec::{causal_lm_loss, masked_nll, row_nll, EmbeddingTap, Executor, KvCache};
pub use stream::{activation_bytes_per_token, calibrate_streamed, crossing_bytes_per_token, forward_streamed, largest_segment_params, StreamOptions, StreamStep, StreamSummary};
pub use train::{train, EvalText, LrSchedule, Sample, TrainObserver, TrainOptions, TrainOutcome, TrainPoint};
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
