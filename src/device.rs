//! Where the backend runs: `--device cpu` (Burn's Flex) or `--device cuda` (Burn's CUDA
//! backend, in builds with the `cuda` feature). Each entry point here picks the backend type
//! and calls the generic runtime.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use prunec_backends::runtime::{self, CalibrationOptions, Executor, Nodes, PeerTime, Perplexity, Sampling};
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

/// `--devices`, `--world-size`, `--rank`, `--coordinator`: the peers calibration and recovery
/// split their samples over (data-parallel, summed with burn-collective's all-reduce).
#[derive(Debug, Clone, clap::Args)]
pub struct ParallelArgs {
    /// Devices of this process to split calibration samples and training micro-batches over,
    /// one peer each: `cuda:0,cuda:1,...` or `cpu:0,cpu:1` (several CPU peers share the cores;
    /// for tests). Default: the one `--device`.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_device_at)]
    pub devices: Vec<(Device, usize)>,

    /// Processes (nodes) in all, one per node, each started with the same command and its own
    /// `--rank`; they meet at `--coordinator`.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub world_size: u32,

    /// This process's rank, 0..N; rank 0 runs the orchestrator and writes the outputs.
    #[arg(long, value_name = "R", default_value_t = 0)]
    pub rank: u32,

    /// `HOST:PORT` of the orchestrator (on rank 0's node; rank 0 listens on PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: Option<String>,

    /// `HOST:PORT` under which the other nodes reach this one (it listens on PORT). Default:
    /// the coordinator's port + 1 + rank, on 127.0.0.1 when the coordinator is on this machine.
    #[arg(long, value_name = "HOST:PORT")]
    pub node_address: Option<String>,

    /// Seconds a peer waits for the others in one collective call before the run fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
    pub peer_timeout: f64,
}

fn parse_device_at(s: &str) -> std::result::Result<(Device, usize), String> {
    let (kind, index) = s.split_once(':').unwrap_or((s, "0"));
    let kind = match kind {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda,
        other => return Err(format!("`{other}` is not a device: cpu:N or cuda:N")),
    };
    let index = index.parse().map_err(|_| format!("`{s}`: the device's index is not a number"))?;
    Ok((kind, index))
}

/// The peers of a run: this process's devices, and the other nodes.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The kind of every local device.
    pub device: Device,
    /// Their indices (CUDA ordinals; CPU peers all run on the one CPU device).
    pub ordinals: Vec<usize>,
    /// The other processes, when there are.
    pub nodes: Option<Nodes>,
    /// Bound on one collective call.
    pub timeout: Duration,
}

impl ParallelArgs {
    /// The peers these arguments ask for, `device` being `--device` (`--devices` overrides it).
    pub fn cluster(&self, device: Device) -> Result<Cluster> {
        let device = match self.devices.first() {
            Some(&(kind, _)) => {
                if self.devices.iter().any(|&(k, _)| k != kind) {
                    bail!("--devices: every device must be of one kind (all cpu:N or all cuda:N)");
                }
                kind
            }
            None => device,
        };
        let mut ordinals: Vec<usize> = self.devices.iter().map(|&(_, i)| i).collect();
        if ordinals.is_empty() {
            ordinals.push(0);
        }
        if device == Device::Cuda {
            let mut seen = ordinals.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != ordinals.len() {
                bail!("--devices: a CUDA device is listed twice");
            }
        }
        if !(self.peer_timeout > 0.0 && self.peer_timeout.is_finite()) {
            bail!("--peer-timeout {}: it must be a positive number of seconds", self.peer_timeout);
        }
        let nodes = match (self.world_size, &self.coordinator) {
            (0, _) => bail!("--world-size 0: there must be at least one process"),
            (n, _) if self.rank >= n => bail!("--rank {} is outside --world-size {n} (ranks are 0..{n})", self.rank),
            (1, None) => None,
            (1, Some(_)) => bail!("--coordinator goes with --world-size N > 1"),
            (_, None) => bail!("--world-size {}: give --coordinator HOST:PORT (rank 0's address for the orchestrator)", self.world_size),
            (n, Some(c)) => {
                let (host, port) = c
                    .rsplit_once(':')
                    .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), p)))
                    .with_context(|| format!("--coordinator `{c}` is not HOST:PORT"))?;
                let node_address = match &self.node_address {
                    Some(a) => a.clone(),
                    None if ["127.0.0.1", "localhost", "::1", "[::1]"].contains(&host.as_str()) => {
                        let port = u32::from(port) + 1 + self.rank;
                        let port = u16::try_from(port).with_context(|| format!("--coordinator port {port}: no port left after it for rank {}", self.rank))?;
                        format!("127.0.0.1:{port}")
                    }
                    None => bail!("--coordinator {c} is another machine: give --node-address HOST:PORT, this node's address the others reach"),
                };
                Some(Nodes { world_size: n, rank: self.rank, coordinator: c.clone(), node_address })
            }
        };
        Ok(Cluster { device, ordinals, nodes, timeout: Duration::from_secs_f64(self.peer_timeout) })
    }
}

impl Cluster {
    /// Says, once per process, that the peers have joined; gives peer `rank`'s index in this
    /// process.
    fn joined(&self, rank: usize, peers: usize) -> usize {
        let local = rank % self.ordinals.len();
        if local == 0 && self.is_parallel() {
            eprintln!("rank {}: {peers} peers joined", self.nodes.as_ref().map_or(0, |n| n.rank));
        }
        local
    }

    /// The local peers' devices, of `dev`'s kind, by their ordinals (every CPU peer is the CPU).
    fn devices_like<D: prunec_backends::burn::tensor::backend::DeviceOps>(&self, dev: &D) -> Vec<D> {
        let kind = dev.to_id().type_id;
        self.ordinals
            .iter()
            .map(|&i| D::from_id(prunec_backends::burn::tensor::backend::DeviceId { type_id: kind, index_id: i as u16 }))
            .collect()
    }

    /// Whether there is more than one peer.
    pub fn is_parallel(&self) -> bool {
        self.ordinals.len() > 1 || self.nodes.is_some()
    }

    /// Peers in all nodes.
    pub fn peers(&self) -> usize {
        self.ordinals.len() * self.nodes.as_ref().map_or(1, |n| n.world_size as usize)
    }

    /// The name of local peer `i`'s device.
    pub fn device_name(&self, i: usize) -> String {
        format!("{}:{}", self.device.name(), self.ordinals.get(i).copied().unwrap_or(0))
    }

    /// What each peer spent, as lines and as the report's `peers` object.
    pub fn describe(&self, times: &[PeerTime]) -> serde_json::Value {
        for (i, t) in times.iter().enumerate() {
            eprintln!(
                "peer {} ({}): computed {:.2} s, communicated {:.2} s ({} all-reduce calls, {})",
                t.rank,
                self.device_name(i),
                t.compute_s,
                t.communicate_s,
                t.calls,
                crate::safety::human_bytes(u128::from(t.reduced_bytes)),
            );
        }
        serde_json::json!({
            "count": self.peers(),
            "nodes": self.nodes.as_ref().map_or(1, |n| n.world_size),
            "rank": self.nodes.as_ref().map_or(0, |n| n.rank),
            "local": times.iter().enumerate().map(|(i, t)| serde_json::json!({
                "rank": t.rank,
                "device": self.device_name(i),
                "compute_s": t.compute_s,
                "communicate_s": t.communicate_s,
                "all_reduce_calls": t.calls,
                "all_reduced_bytes": t.reduced_bytes,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Something only the first local peer uses (a progress bar, an observer).
struct ForFirst<T>(Mutex<Option<T>>);

impl<T> ForFirst<T> {
    fn new(t: T) -> Self {
        ForFirst(Mutex::new(Some(t)))
    }

    /// The thing, for local peer `rank - first_rank == 0`; `None` for the others.
    fn take(&self, local_index: usize) -> Option<T> {
        if local_index != 0 {
            return None;
        }
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
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

/// Runs `$body` once per peer of `$cluster` (see [`runtime::run_peers`]), with `B`/`A` the
/// backend and `$peer` the peer; gives the [`runtime::PeerRun`].
macro_rules! on_peers {
    ($cluster:expr, |$b:ident, $a:ident, $peer:ident| $body:expr) => {{
        let cluster: &Cluster = $cluster;
        on_device!(cluster.device, |$b, $a, dev| {
            let devices = cluster.devices_like(&dev);
            runtime::run_peers::<$b, _>(&devices, cluster.nodes.as_ref(), cluster.timeout, |$peer| $body)
                .map_err(anyhow::Error::from)
        })
    }};
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
/// (see [`runtime::calibrate_streamed_on`]), the samples split over the peers of `cluster`;
/// only the first local peer's `sink` and `progress` are called (every peer gets the same
/// sums). Gives the summary and each local peer's times.
pub fn calibrate_streamed(
    cluster: &Cluster,
    model: &Model,
    samples: &[Vec<u32>],
    options: &runtime::StreamOptions,
    sink: impl FnMut(&str, prunec_ir::ParamGradient) -> prunec_backends::Result<()> + Send,
    progress: impl FnMut(runtime::StreamStep) + Send,
) -> Result<(runtime::StreamSummary, Vec<PeerTime>)> {
    let first = ForFirst::new((sink, progress));
    let run = on_peers!(cluster, |B, A, peer| {
        let local = cluster.joined(peer.rank(), peer.peers());
        match first.take(local) {
            Some((sink, progress)) => runtime::calibrate_streamed_on::<A>(model, peer, samples, options, sink, progress),
            None => runtime::calibrate_streamed_on::<A>(model, peer, samples, options, |_, _| Ok(()), |_| {}),
        }
    })?;
    let summary = run.results.into_iter().next().context("no peer ran")?;
    Ok((summary, run.times))
}

/// Calibration statistics of `model` on `samples` (see [`runtime::calibrate_on`]), the samples
/// split over the peers of `cluster`; `progress` follows the first local peer. Gives the
/// statistics (every peer's are the same) and each local peer's times.
pub fn calibrate(
    cluster: &Cluster,
    model: &Model,
    samples: &[Vec<u32>],
    options: CalibrationOptions,
    progress: impl FnMut(usize, usize) + Send,
) -> Result<(CalibrationStats, Vec<PeerTime>)> {
    let first = ForFirst::new(progress);
    let run = on_peers!(cluster, |B, A, peer| {
        let local = cluster.joined(peer.rank(), peer.peers());
        match first.take(local) {
            Some(progress) => runtime::calibrate_on::<A>(model, peer, samples, options.clone(), progress),
            None => runtime::calibrate_on::<A>(model, peer, samples, options.clone(), |_, _| {}),
        }
    })?;
    let stats = run.results.into_iter().next().context("no peer ran")?;
    Ok((stats, run.times))
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
        let exec = Executor::<B>::for_inference(model, &dev)?;
        Ok(runtime::generate(&exec, prompt, sampling, eos, on_token)?)
    })
}

/// Trains the parameters `trainable` of `model` (see [`runtime::train_on`]), the micro-batches
/// of each step split over the peers of `cluster`; the first local peer reports to
/// `observer`. Gives the outcome and each local peer's times.
#[allow(clippy::too_many_arguments)]
pub fn train(
    cluster: &Cluster,
    model: &mut Model,
    trainable: &[String],
    train: &[runtime::Sample<'_>],
    val: &[runtime::Sample<'_>],
    eval_text: Option<runtime::EvalText<'_>>,
    options: &runtime::TrainOptions,
    observer: &mut (dyn runtime::TrainObserver + Send),
) -> Result<(runtime::TrainOutcome, Vec<PeerTime>)> {
    let first = ForFirst::new(observer);
    let base: &Model = model;
    let run = on_peers!(cluster, |B, A, peer| {
        let local = cluster.joined(peer.rank(), peer.peers());
        match first.take(local) {
            Some(observer) => runtime::train_on::<A>(base, peer, trainable, train, val, eval_text, options, observer),
            None => runtime::train_on::<A>(base, peer, trainable, train, val, eval_text, options, &mut ()),
        }
    })?;
    let (trained, outcome) = run.results.into_iter().next().context("no peer ran")?;
    for (name, p) in trained.iter() {
        model.params.insert(name.clone(), p.clone());
    }
    Ok((outcome, run.times))
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
