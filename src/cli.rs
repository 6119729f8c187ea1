//! The command line: `prunec MODEL --pass ...` and the other commands, their options as clap
//! parses them.

use std::path::PathBuf;

use clap::Parser;

use crate::device::{self, Device};
use crate::{evaluate, recover};
use crate::{memory, study, synth};

/// A compiler for structural pruning of large language models.
#[derive(Debug, Parser)]
#[command(name = "prunec", version, about, long_about = None, args_conflicts_with_subcommands = true, allow_negative_numbers = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Commands other than running passes on a model.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Write an HF folder with a real model's shape and random weights.
    #[command(allow_negative_numbers = true)]
    Synth(synth::SynthArgs),
    /// Generate text from a prompt (greedy, or sampled with temperature and top-p).
    #[command(allow_negative_numbers = true)]
    Generate(GenerateArgs),
    /// Measure tokens/s of forward and forward+backward passes, and peak memory.
    #[command(allow_negative_numbers = true)]
    Bench(BenchArgs),
    /// Perplexity against pruning ratio for chosen importances and aggregations (the paper's
    /// Fig. 4 and Table 7; `--no-dependency` adds Table 6's ablation): table and chart.
    #[command(allow_negative_numbers = true)]
    Sweep(study::SweepArgs),
    /// Perplexity when only layer i is pruned, for every layer (the paper's Fig. 3): table and chart.
    #[command(allow_negative_numbers = true)]
    Sensitivity(study::SensitivityArgs),
}

/// `prunec MODEL --pass ...`: read a model and run passes on it.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The model: an HF folder (config.json + safetensors) or a GGUF file.
    pub(crate) model: Option<PathBuf>,

    /// Passes to run, comma-separated, in order (a pass may appear more than once).
    #[arg(long, default_value = "group")]
    pub(crate) pass: String,

    /// Print the IR after this pass (repeatable).
    #[arg(long, value_name = "PASS")]
    pub(crate) dump_after: Vec<String>,

    /// Print the IR as read, before any pass.
    #[arg(long)]
    pub(crate) dump_input: bool,

    /// What `eval` measures: perplexity texts, zero-shot tasks, and the table of results.
    #[command(flatten)]
    pub(crate) eval: evaluate::EvalArgs,

    /// A tokenizer.json to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    pub(crate) tokenizer: Option<PathBuf>,

    /// Where the backend runs.
    #[arg(long, value_enum, default_value = "cpu")]
    pub(crate) device: Device,

    /// The float type the backend computes in: `f64` (CPU only, about twice as slow) reproduces
    /// references computed in float64, such as lm-evaluation-harness with `dtype=float64`.
    #[arg(long, value_enum, default_value = "f32")]
    pub(crate) precision: device::Precision,

    /// Memory budget (`8GiB`, `512MiB`, `24GB`): calibration and evaluation of a model whose
    /// resident estimate exceeds it stream the model layer by layer. Default: 80% of the memory
    /// available when the run starts.
    #[arg(long, value_name = "SIZE", value_parser = memory::parse_size)]
    pub(crate) max_memory: Option<u64>,

    /// Hold the whole model in memory whatever its size (never stream).
    #[arg(long)]
    pub(crate) resident: bool,

    /// Write a JSON report of the run here.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,

    /// Calibration and recovery on several devices and nodes (data-parallel).
    #[command(flatten)]
    pub(crate) parallel: device::ParallelArgs,

    /// Importance estimator of `score`: random, l1, l2, taylor-vector, taylor-element1,
    /// taylor-element2, taylor-mix.
    #[arg(long, default_value = "taylor-element1", value_delimiter = ',', value_parser = parse_importance)]
    pub(crate) importance: Vec<prunec_passes::Importance>,

    /// How a unit's members combine: sum, mean, max, prod, first, last.
    #[arg(long, default_value = "sum", value_delimiter = ',', value_parser = parse_aggregation)]
    pub(crate) aggregation: Vec<prunec_passes::Aggregation>,

    /// Calibration text for Taylor importance: plain text, or JSONL rows with `text` or `input_ids`.
    #[arg(long, value_name = "FILE")]
    pub(crate) calib: Option<PathBuf>,

    /// Calibration samples (the paper: 10).
    #[arg(long, default_value_t = 10)]
    pub(crate) calib_samples: usize,

    /// Tokens per calibration sample (LLM-Pruner: 64).
    #[arg(long, default_value_t = 64)]
    pub(crate) calib_len: usize,

    /// Seed of calibration sampling and random importance.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,

    /// Fraction of all parameters to remove (embeddings included).
    #[arg(long)]
    pub(crate) ratio: Option<f64>,

    /// LLM-Pruner's ratio: in each pruned group, `current − int(initial·(1−r))` channels, in whole units.
    #[arg(long, conflicts_with = "ratio")]
    pub(crate) unit_ratio: Option<f64>,

    /// What `prune` removes: `block` (attention heads and MLP channels) or `channel` (hidden channels).
    #[arg(long, value_enum, default_value = "block")]
    pub(crate) mode: PruneMode,

    /// Layers whose attention heads are pruned, `start..end` (end excluded); all by default.
    #[arg(long, value_parser = parse_layers)]
    pub(crate) attn_layers: Option<std::ops::Range<u32>>,

    /// Layers whose MLP channels are pruned, `start..end` (end excluded); all by default.
    #[arg(long, value_parser = parse_layers)]
    pub(crate) mlp_layers: Option<std::ops::Range<u32>>,

    /// One threshold across layers (score per parameter) instead of the same share in each:
    /// `--allocate sensitivity`, the default since allocations were added (kept for scripts).
    #[arg(long, conflicts_with = "allocate")]
    pub(crate) global: bool,

    /// How `--ratio` is shared among the layers: `sensitivity` (one threshold on the score per
    /// parameter — with Taylor importance, the predicted loss per parameter: the default),
    /// `uniform` (the same share of every group; the default with --uniform and --gqa query),
    /// `global` (one ranking of scores normalised by their group's mean) or `flap` (FLAP:
    /// units ranked by the fluctuation of their inputs over the calibration text, standardised
    /// per kind across layers; it replaces `score`'s importance). ONNX inputs default to
    /// `uniform` (the ONNX writer keeps layers alike) unless written as GGUF.
    #[arg(long, value_parser = parse_allocate)]
    pub(crate) allocate: Option<prunec_passes::prune::Allocate>,

    /// What the `reconstruct` pass does: `bias` (FLAP's bias compensation) or `ls` (the kept
    /// columns and the bias of each op reading pruned units solved by damped least squares).
    #[arg(long, default_value = "ls", value_parser = parse_reconstruction)]
    pub(crate) reconstruct: prunec_passes::reconstruct::Reconstruction,

    /// Calibration windows of `reconstruct` and of `--allocate flap` (from --calib or the
    /// embedded text).
    #[arg(long, default_value_t = 128)]
    pub(crate) reconstruct_samples: usize,

    /// Tokens per window of `reconstruct` and of `--allocate flap`.
    #[arg(long, default_value_t = 128)]
    pub(crate) reconstruct_len: usize,

    /// Damping of least-squares reconstruction, relative to the mean diagonal of the inputs'
    /// second moment (towards the pruned weights: larger keeps closer to them; 1 did best on
    /// SmolLM2 with calibration and evaluation texts of different kinds, docs/reconstruct.md).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) damp: f64,

    /// Keep every layer's widths equal (the same units removed in every layer), so that a stock
    /// config describes the result and transformers loads it without custom code.
    #[arg(long, conflicts_with_all = ["global", "allocate", "attn_layers", "mlp_layers"])]
    pub(crate) uniform: bool,

    /// With grouped-query attention: prune whole key/value heads with their query heads (`kv`),
    /// or query heads (`query`): the lowest-scoring of each layer, key/value heads then serving
    /// different numbers of them — with --uniform the same number from every key/value head.
    #[arg(long, value_enum, default_value = "kv")]
    pub(crate) gqa: Gqa,

    /// Keep each pruned group's width a multiple of N (removing fewer units when needed). With
    /// --uniform and --mode channel, also a multiple of the query heads (transformers 5 wants
    /// hidden_size divisible by num_attention_heads).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) round_to: u64,

    /// Training steps of `recover` (optimizer updates; or give --epochs).
    #[arg(long)]
    pub(crate) steps: Option<usize>,

    /// Prune in this many steps, regrouping and rescoring (recalibrating) between them.
    #[arg(long, default_value_t = 1)]
    pub(crate) prune_steps: usize,

    #[command(flatten)]
    pub(crate) recover: recover::RecoverArgs,

    /// Write every unit's score here (JSON: layer, kind, unit, score; sub-unit scores too).
    #[arg(long, value_name = "FILE")]
    pub(crate) scores_out: Option<PathBuf>,

    /// Write the resulting model here: an HF folder (safetensors + config.json + tokenizer), a
    /// GGUF file for llama.cpp (`FILE.gguf`) or, for an ONNX input, an ONNX file.
    #[arg(short = 'o', long, value_name = "DIR|FILE.gguf")]
    pub(crate) output: Option<PathBuf>,

    /// Element type of the written weights (HF folders).
    #[arg(long, value_enum, default_value = "f32")]
    pub(crate) dtype: OutDType,

    /// GGUF output: the type of every matrix (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1,
    /// q4_k, q6_k; a k-quant where rows are whole super-blocks of 256, else --gguf-fallback).
    /// Default: each tensor keeps its own type, its blocks copied bit for bit where pruning
    /// removed whole blocks.
    #[arg(long, value_name = "TYPE", value_parser = parse_gguf_type)]
    pub(crate) gguf_type: Option<prunec_frontends::gguf::GgmlType>,

    /// GGUF output: the type of a matrix that cannot keep its type (a type prunec does not
    /// quantize to, such as an i-quant or Q5_K, that must be quantized again; rows no longer
    /// whole blocks of it); F16 where rows are not whole blocks of this either.
    #[arg(long, value_name = "TYPE", default_value = "q8_0", value_parser = parse_gguf_type)]
    pub(crate) gguf_fallback: prunec_frontends::gguf::GgmlType,

    /// Replace an existing output folder.
    #[arg(long)]
    pub(crate) force: bool,
}

impl RunArgs {
    /// Settles `--devices` and the ranks before a run: the devices' kind becomes `--device`
    /// (evaluation and generation run on the first), and a rank other than 0 writes no output
    /// (rank 0 writes them; every rank computes the same).
    pub(crate) fn settle_parallel(&mut self) -> anyhow::Result<()> {
        let cluster = self.parallel.cluster(self.device)?;
        self.device = cluster.device;
        if self.parallel.rank != 0 {
            let dropped = [
                self.output.take(),
                self.scores_out.take(),
                self.report.take(),
                self.recover.adapter_out.take(),
                self.recover.checkpoint_dir.take(),
                self.eval.table.take(),
                self.eval.samples.take(),
            ];
            if dropped.iter().any(Option::is_some) {
                eprintln!("rank {}: the outputs are written by rank 0", self.parallel.rank);
            }
        }
        Ok(())
    }
}

fn parse_gguf_type(name: &str) -> std::result::Result<prunec_frontends::gguf::GgmlType, String> {
    prunec_frontends::arch::gguf_out::parse_type(name)
}

/// Element type of written weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutDType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

/// What grouped-query attention loses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Gqa {
    /// Whole key/value heads with the query heads that share them.
    Kv,
    /// Query heads inside key/value groups, the same number from each.
    Query,
}

/// What `prune` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PruneMode {
    /// Attention heads and MLP channels of the decoder layers.
    Block,
    /// Hidden channels.
    Channel,
    /// Whole decoder layers, the lowest-scoring first (`--attn-layers` limits which).
    Layer,
}

/// Parses `start..end`.
pub(crate) fn parse_layers(s: &str) -> std::result::Result<std::ops::Range<u32>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("`{s}` is not START..END"))?;
    let a: u32 = a.trim().parse().map_err(|_| format!("`{a}` is not a layer number"))?;
    let b: u32 = b.trim().parse().map_err(|_| format!("`{b}` is not a layer number"))?;
    if a >= b {
        return Err(format!("`{s}` is empty: END must exceed START"));
    }
    Ok(a..b)
}

/// `prunec generate MODEL --prompt ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// The model.
    pub(crate) model: PathBuf,
    /// The prompt.
    #[arg(long)]
    pub(crate) prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    pub(crate) tokenizer: Option<PathBuf>,
    /// Where the backend runs.
    #[arg(long, value_enum, default_value = "cpu")]
    pub(crate) device: Device,
    /// Wrap the prompt as a user's turn in the model's chat template (and open the assistant's).
    #[arg(long)]
    pub(crate) chat: bool,
    /// With --chat: `vicuna` (Vicuna's conversation, which its checkpoints do not ship) or a
    /// Jinja file, instead of the model's own template (its tokenizer's, else its architecture's:
    /// ChatGLM's checkpoints ship none, and their chat code's conversation is used).
    #[arg(long, value_name = "NAME|FILE", requires = "chat")]
    pub(crate) chat_template: Option<String>,
}

/// `prunec bench MODEL [MODEL...]`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// The models (the first is the reference of the ratios: the original, then pruned ones).
    #[arg(required = true)]
    pub(crate) models: Vec<PathBuf>,
    /// Tokens generated (greedy, with the key/value cache, after a prompt of --seq-len tokens).
    #[arg(long, default_value_t = 32)]
    pub(crate) new_tokens: usize,
    /// Also write the comparison as `<STEM>.md`, `.csv` and `.json`.
    #[arg(long, value_name = "STEM")]
    pub(crate) out: Option<PathBuf>,
    /// Replace existing `--out` files.
    #[arg(long)]
    pub(crate) force: bool,
    /// Print the one model's figures as a JSON line (how `bench` measures several models, each
    /// in its own process).
    #[arg(long, hide = true)]
    pub(crate) row_json: bool,
    /// Sequences per batch.
    #[arg(long, default_value_t = 1)]
    pub(crate) batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub(crate) seq_len: usize,
    /// Timed batches of each kind.
    #[arg(long, default_value_t = 3)]
    pub(crate) iters: usize,
    /// Where the backend runs.
    #[arg(long, value_enum, default_value = "cpu")]
    pub(crate) device: Device,
}

fn parse_allocate(name: &str) -> Result<prunec_passes::prune::Allocate, String> {
    prunec_passes::prune::Allocate::from_name(name).map_err(|e| e.to_string())
}

fn parse_reconstruction(name: &str) -> Result<prunec_passes::reconstruct::Reconstruction, String> {
    prunec_passes::reconstruct::Reconstruction::from_name(name).map_err(|e| e.to_string())
}

fn parse_importance(name: &str) -> Result<prunec_passes::Importance, String> {
    prunec_passes::Importance::from_name(name.trim()).map_err(|e| e.to_string())
}

fn parse_aggregation(name: &str) -> Result<prunec_passes::Aggregation, String> {
    prunec_passes::Aggregation::from_name(name.trim()).map_err(|e| e.to_string())
}

/// The one item of a list option that a run takes (`sweep` takes lists).
fn one<T: Copy>(flag: &str, items: &[T], name: impl Fn(T) -> &'static str) -> anyhow::Result<T> {
    match items {
        [one] => Ok(*one),
        many => anyhow::bail!(
            "{flag} {}: a run scores with one (lists are for `prunec sweep`)",
            many.iter().map(|&i| name(i)).collect::<Vec<_>>().join(",")
        ),
    }
}

impl RunArgs {
    /// `--importance`, which a run takes one of.
    pub(crate) fn one_importance(&self) -> anyhow::Result<prunec_passes::Importance> {
        one("--importance", &self.importance, prunec_passes::Importance::name)
    }

    /// `--aggregation`, which a run takes one of.
    pub(crate) fn one_aggregation(&self) -> anyhow::Result<prunec_passes::Aggregation> {
        one("--aggregation", &self.aggregation, prunec_passes::Aggregation::name)
    }
}
