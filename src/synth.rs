//! `prunec synth`: HF folders with the shapes of real models and random weights, for tests and
//! scaling runs where the real weights are too big to fetch or not needed (grouping and
//! pruning depend on shapes; only quality depends on the values).
//!
//! The folder is what `transformers`' `save_pretrained` writes for a LLaMA model:
//! `config.json`, `generation_config.json` and `model.safetensors`, or shards of at most
//! 2 GiB with `model.safetensors.index.json`. Weights are drawn like HF's initialisation:
//! normal with mean 0 and standard deviation 0.02 (`initializer_range`), norm weights 1.0.
//!
//! Random numbers: SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
//! generators", OOPSLA 2014; the constants of Vigna's reference code) feeding the polar
//! Box–Muller transform (Marsaglia) in f64. Every block of [`BLOCK`] values of a tensor has its own stream, keyed by
//! the seed, the tensor's name and the block's index, so that the values of a tensor depend on
//! nothing else (not the dtype, the layer count, the shard or the number of threads) and
//! blocks are drawn in parallel. The same seed gives the same bytes on the same platform
//! (`ln`, `sin` and `cos` come from the platform's math library).
//!
//! Memory: tensors are streamed to disk in pieces of [`CHUNK`] values through
//! [`SafetensorsStreamWriter`]; nothing close to the model's size is ever held.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use prunec_backends::hf_writer::torch_dtype;
use prunec_backends::sharding::{self, ShardPlan};
use prunec_backends::stream_writer::{Dtype, SafetensorsStreamWriter, TensorEntry};
use prunec_backends::AtomicPath;
use prunec_frontends::arch::llama::LlamaConfig;

/// Values per random stream: a tensor is drawn in blocks of this many values.
const BLOCK: usize = 1 << 16;
/// Values generated and written at a time (a few MiB of f32).
const CHUNK: usize = 16 * BLOCK;
/// Standard deviation of the weights: HF's `initializer_range` for LLaMA models.
const INIT_STD: f64 = 0.02;
/// Architectures `synth` writes.
const ARCHS: &[&str] = &["llama"];
/// Weight dtypes `synth` writes.
const DTYPES: &[&str] = &["f32", "f16", "bf16"];

/// Arguments of `prunec synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Architecture. Now: llama.
    #[arg(long, default_value = "llama")]
    pub arch: String,

    /// Shape: 70b (LLaMA-2-70B, grouped-query), 13b (LLaMA-2-13B), 8b (Llama-3-8B), 7b
    /// (LLaMA-2-7B), 1b (LLaMA-3.2-1B), 135m (SmolLM2-135M) or tiny (the test fixture llama-gqa).
    #[arg(long)]
    pub preset: String,

    /// Number of decoder layers, instead of the preset's (the width stays the preset's: a
    /// 70B model's layer with `--layers 2` fits where the whole model would not).
    #[arg(long, value_name = "N")]
    pub layers: Option<usize>,

    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Dtype of the weights: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,

    /// The HF folder to write (must not exist, or be empty, unless --force).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,

    /// Largest weights file, in MiB (like `max_shard_size` of HF's `save_pretrained`); a
    /// bigger model is split into shards named by `model.safetensors.index.json`.
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub max_shard_mib: u64,

    /// Replace an existing non-empty output folder.
    #[arg(long)]
    pub force: bool,
}

/// A real model's shape, as its `config.json` states it.
struct Preset {
    name: &'static str,
    /// The model whose shape this is.
    model: &'static str,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_layers: usize,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    rms_norm_eps: f64,
    rope_theta: f64,
    tie_word_embeddings: bool,
    max_position_embeddings: usize,
    bos_token_id: u64,
    eos_token_id: u64,
}

const PRESETS: &[Preset] = &[
    Preset {
        name: "7b",
        model: "LLaMA-2-7B",
        vocab_size: 32000,
        hidden_size: 4096,
        intermediate_size: 11008,
        num_layers: 32,
        num_heads: 32,
        num_kv_heads: 32,
        head_dim: 128,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_word_embeddings: false,
        max_position_embeddings: 4096,
        bos_token_id: 1,
        eos_token_id: 2,
    },
    Preset {
        name: "8b",
        model: "Llama-3-8B",
        vocab_size: 128256,
        hidden_size: 4096,
        intermediate_size: 14336,
        num_layers: 32,
        num_heads: 32,
        num_kv_heads: 8,
        head_dim: 128,
        rms_norm_eps: 1e-5,
        rope_theta: 500000.0,
        tie_word_embeddings: false,
        max_position_embeddings: 8192,
        bos_token_id: 128000,
        eos_token_id: 128001,
    },
    Preset {
        name: "13b",
        model: "LLaMA-2-13B",
        vocab_size: 32000,
        hidden_size: 5120,
        intermediate_size: 13824,
        num_layers: 40,
        num_heads: 40,
        num_kv_heads: 40,
        head_dim: 128,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_word_embeddings: false,
        max_position_embeddings: 4096,
        bos_token_id: 1,
        eos_token_id: 2,
    },
    Preset {
        name: "70b",
        model: "LLaMA-2-70B",
        vocab_size: 32000,
        hidden_size: 8192,
        intermediate_size: 28672,
        num_layers: 80,
        num_heads: 64,
        num_kv_heads: 8,
        head_dim: 128,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_word_embeddings: false,
        max_position_embeddings: 4096,
        bos_token_id: 1,
        eos_token_id: 2,
    },
    Preset {
        name: "1b",
        model: "LLaMA-3.2-1B",
        vocab_size: 128256,
        hidden_size: 2048,
        intermediate_size: 8192,
        num_layers: 16,
        num_heads: 32,
        num_kv_heads: 8,
        head_dim: 64,
        rms_norm_eps: 1e-5,
        rope_theta: 500000.0,
        tie_word_embeddings: true,
        max_position_embeddings: 131072,
        bos_token_id: 128000,
        eos_token_id: 128001,
    },
    Preset {
        name: "135m",
        model: "SmolLM2-135M",
        vocab_size: 49152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_layers: 30,
        num_heads: 9,
        num_kv_heads: 3,
        head_dim: 64,
        rms_norm_eps: 1e-5,
        rope_theta: 100000.0,
        tie_word_embeddings: true,
        max_position_embeddings: 8192,
        bos_token_id: 0,
        eos_token_id: 0,
    },
    Preset {
        name: "tiny",
        model: "tests/fixtures/llama-gqa",
        vocab_size: 256,
        hidden_size: 64,
        intermediate_size: 176,
        num_layers: 4,
        num_heads: 8,
        num_kv_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-6,
        rope_theta: 10000.0,
        tie_word_embeddings: true,
        max_position_embeddings: 128,
        bos_token_id: 1,
        eos_token_id: 2,
    },
];

impl Preset {
    fn llama_config(&self, num_layers: usize) -> LlamaConfig {
        LlamaConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers,
            num_heads: self.num_heads,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            rms_norm_eps: self.rms_norm_eps as f32,
            rope_theta: self.rope_theta as f32,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: false,
            mlp_bias: false,
            max_position_embeddings: self.max_position_embeddings,
            layer_widths: None,
            variant: Default::default(),
            rope_scaling: Default::default(),
        }
    }

    /// `config.json` as transformers (5.x, like the fixtures) writes it for a LLaMA model,
    /// keys sorted, plus a `prunec_synth` entry saying how the weights were made.
    fn config_json(&self, num_layers: usize, dtype: Dtype, seed: u64) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": false,
            "attention_dropout": 0.0,
            "bos_token_id": self.bos_token_id,
            "dtype": torch_dtype(dtype),
            "eos_token_id": self.eos_token_id,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initializer_range": INIT_STD,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "mlp_bias": false,
            "model_type": "llama",
            "num_attention_heads": self.num_heads,
            "num_hidden_layers": num_layers,
            "num_key_value_heads": self.num_kv_heads,
            "pad_token_id": null,
            "pretraining_tp": 1,
            "prunec_synth": {
                "preset": self.name,
                "shape_of": self.model,
                "seed": seed,
                "weights": "random: normal(0, 0.02), norm weights 1.0",
            },
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": { "rope_theta": self.rope_theta, "rope_type": "default" },
            "tie_word_embeddings": self.tie_word_embeddings,
            "use_cache": true,
            "vocab_size": self.vocab_size,
        })
    }

    fn generation_config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "_from_model_config": true,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "use_cache": true,
        })
    }
}

use prunec_ir::rng::SplitMix64;

/// The key of tensor `name`'s streams under `seed` (FNV-1a of the name, mixed with the seed).
fn tensor_key(seed: u64, name: &str) -> u64 {
    let fnv = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3));
    SplitMix64::new(seed ^ SplitMix64::new(fnv).next_u64()).next_u64()
}

/// Fills `out` with normal values of standard deviation `std` from the stream `key`, by
/// Marsaglia's polar form of the Box–Muller transform (a point drawn uniformly in the unit
/// disc gives two independent normals with one `ln` and one `sqrt`, and no `sin`/`cos`; about
/// twice as fast as the basic form).
fn fill_normal(out: &mut [f32], key: u64, std: f32) {
    let mut rng = SplitMix64::new(key);
    for pair in out.chunks_mut(2) {
        let (x, y) = rng.normal_pair();
        pair[0] = x as f32 * std;
        if let Some(second) = pair.get_mut(1) {
            *second = y as f32 * std;
        }
    }
}

/// Fills `out`, which starts at block `first_block` of the tensor keyed `key`, block by block,
/// the blocks shared among `threads` threads.
fn fill_blocks(out: &mut [f32], key: u64, first_block: usize, threads: usize) {
    let mut blocks: Vec<(u64, &mut [f32])> = out
        .chunks_mut(BLOCK)
        .enumerate()
        .map(|(i, b)| (SplitMix64::new(key ^ (first_block + i) as u64).next_u64(), b))
        .collect();
    let per_thread = blocks.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for group in blocks.chunks_mut(per_thread) {
            scope.spawn(move || {
                for (block_key, block) in group.iter_mut() {
                    fill_normal(block, *block_key, INIT_STD as f32);
                }
            });
        }
    });
}

/// Whether tensor `name` is a norm's weight (initialised to 1.0 instead of drawn).
fn is_norm(name: &str) -> bool {
    name.ends_with("norm.weight")
}

/// Streams every value of tensor `entry` into `writer`, drawing the next piece (on `threads`
/// threads) while the current one is converted and written.
fn write_tensor(
    writer: &mut SafetensorsStreamWriter,
    entry: &TensorEntry,
    seed: u64,
    buffers: &mut [Vec<f32>; 2],
    threads: usize,
) -> Result<()> {
    let numel = entry.numel().context("tensor size overflows")?;
    let [current, following] = buffers;
    if is_norm(&entry.name) {
        current.fill(1.0);
        for start in (0..numel).step_by(CHUNK) {
            writer.write_part(&entry.name, &current[..(numel - start).min(CHUNK)])?;
        }
        return Ok(());
    }
    let key = tensor_key(seed, &entry.name);
    let pieces: Vec<(usize, usize)> = (0..numel).step_by(CHUNK).map(|start| (start, (numel - start).min(CHUNK))).collect();
    if let Some(&(_, n)) = pieces.first() {
        fill_blocks(&mut current[..n], key, 0, threads);
    }
    for (k, &(_, n)) in pieces.iter().enumerate() {
        std::thread::scope(|scope| {
            if let Some(&(start, m)) = pieces.get(k + 1) {
                let next = &mut following[..m];
                scope.spawn(move || fill_blocks(next, key, start / BLOCK, threads));
            }
            writer.write_part(&entry.name, &current[..n])
        })?;
        std::mem::swap(current, following);
    }
    Ok(())
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Checks `-o`: a new path, an empty folder, or (with `force`) a folder to replace.
fn check_output(out: &Path, force: bool) -> Result<()> {
    if out.file_name().is_none() {
        bail!("-o {}: give the path of a new folder", out.display());
    }
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!("-o {}: exists and is not a folder", out.display());
    }
    let mut entries = std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
    if entries.next().is_some() {
        if !force {
            bail!("-o {}: the folder exists and is not empty (pass --force to replace it)", out.display());
        }
        let canon = std::fs::canonicalize(out).with_context(|| format!("resolving {}", out.display()))?;
        if let Ok(cwd) = std::env::current_dir().and_then(std::fs::canonicalize) {
            if cwd.starts_with(&canon) {
                bail!("-o {}: refusing to replace a folder that holds the current folder", out.display());
            }
        }
    }
    Ok(())
}

/// Writes the HF folder that `args` describe.
pub fn run(args: &SynthArgs) -> Result<()> {
    let start = Instant::now();
    if !ARCHS.contains(&args.arch.as_str()) {
        bail!("unknown architecture `{}`; valid architectures: {}", args.arch, ARCHS.join(", "));
    }
    let Some(preset) = PRESETS.iter().find(|p| p.name == args.preset) else {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        bail!("unknown preset `{}`; valid presets: {}", args.preset, names.join(", "));
    };
    let dtype = match args.dtype.as_str() {
        "f32" => Dtype::F32,
        "f16" => Dtype::F16,
        "bf16" => Dtype::BF16,
        other => bail!("unknown dtype `{other}`; valid dtypes: {}", DTYPES.join(", ")),
    };
    let num_layers = args.layers.unwrap_or(preset.num_layers);
    if num_layers == 0 {
        bail!("--layers 0: a model needs at least one layer");
    }
    if args.max_shard_mib == 0 || args.max_shard_mib > 1 << 30 {
        bail!("--max-shard-mib {}: give a size between 1 and 2^30 MiB", args.max_shard_mib);
    }
    let config = preset.llama_config(num_layers);
    config.validate(Path::new("config.json")).context("the requested shape")?;
    check_output(&args.output, args.force)?;
    crate::safety::check_synth_space(&config, prunec_backends::stream_writer::dtype_size(dtype).unwrap_or(4), &args.output)?;

    let tensors: Vec<TensorEntry> =
        config.expected_params().into_iter().map(|(name, shape)| TensorEntry::new(name, dtype, shape)).collect();
    let plan = ShardPlan::new(&args.output, tensors, args.max_shard_mib << 20)?;
    let (n_shards, total_bytes, total_params) = (plan.len(), plan.total_bytes(), plan.total_params());
    eprintln!(
        "synth {} {} (shape of {}): {num_layers} layers, {total_params} parameters, {}, {:.2} GiB in {n_shards} file{} -> {}",
        args.arch,
        preset.name,
        preset.model,
        args.dtype,
        gib(total_bytes),
        if n_shards == 1 { "" } else { "s" },
        args.output.display()
    );

    let out = AtomicPath::folder(&args.output, &[], args.force)?;
    let dir = out.temp().to_path_buf();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing a stale {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    sharding::write_json(&dir.join("config.json"), &preset.config_json(num_layers, dtype, args.seed), &[])?;
    sharding::write_json(&dir.join("generation_config.json"), &preset.generation_config_json(), &[])?;

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let mut buffers = [vec![0f32; CHUNK], vec![0f32; CHUNK]];
    let mut written = 0u64;
    sharding::write_shards::<anyhow::Error>(
        &dir,
        plan,
        &[],
        |writer, entry| {
            let file = writer.path().file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            write_tensor(writer, entry, args.seed, &mut buffers, threads)
                .with_context(|| format!("writing `{}` to {file}", entry.name))
        },
        |shard| {
            written += shard.bytes;
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "[{}/{n_shards}] {}: {:.2} GiB; {:.2} of {:.2} GiB ({:.0}%) in {secs:.1} s, {:.0} MiB/s",
                shard.index + 1,
                shard.file_name,
                gib(shard.bytes),
                gib(written),
                gib(total_bytes),
                100.0 * written as f64 / total_bytes.max(1) as f64,
                written as f64 / (1u64 << 20) as f64 / secs.max(1e-9),
            );
        },
    )?;
    let dest = out.commit()?;
    println!(
        "wrote {}: {} {} shape, {num_layers} layers, {total_params} parameters, {}, seed {}, {:.2} GiB in {n_shards} file{}, {:.1} s",
        dest.display(),
        args.arch,
        preset.model,
        args.dtype,
        args.seed,
        gib(total_bytes),
        if n_shards == 1 { "" } else { "s" },
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_values_have_the_asked_spread() {
        let mut v = vec![0f32; 1 << 18];
        fill_blocks(&mut v, tensor_key(7, "w"), 0, 2);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 2e-4, "std {}", var.sqrt());
    }

    #[test]
    fn values_do_not_depend_on_threads_or_pieces() {
        let key = tensor_key(3, "model.layers.0.mlp.up_proj.weight");
        let mut one = vec![0f32; 5 * BLOCK + 17];
        fill_blocks(&mut one, key, 0, 1);
        let mut many = vec![0f32; 5 * BLOCK + 17];
        fill_blocks(&mut many[..2 * BLOCK], key, 0, 3);
        fill_blocks(&mut many[2 * BLOCK..], key, 2, 2);
        assert_eq!(one, many);
    }
}
