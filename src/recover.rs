//! The `recover` pass on the command line: LoRA fine-tuning of the adapters `lora` inserted,
//! on Alpaca instruction data (`--train-data`) or plain text (`--train-text`), as LLM-Pruner's
//! `post_training.py` runs it; checkpoints and the final adapters in PEFT's format.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use prunec_backends::peft::{write_peft_adapter_replacing, PeftAdapter, PeftConfig};
use prunec_backends::runtime::{EvalText, LrSchedule, Sample, TrainObserver, TrainOptions, TrainPoint};
use prunec_frontends::data::{read_text_source, token_stream, SplitMix64, TextSource};
use prunec_frontends::train_data::{alpaca_sample, read_alpaca, text_samples, TrainSample};
use prunec_ir::{Model, ParamStore};
use prunec_passes::lora::{adapters, Adapter, LoraOptions};
use serde_json::json;

use prunec_passes::PassName;
use crate::progress::Progress;

/// Options of `lora` and `recover`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecoverArgs {
    /// `lora`: rank of each adapter.
    #[arg(long, default_value_t = 8)]
    pub lora_r: usize,

    /// `lora`: the adapters' output is scaled by alpha / r.
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f32,

    /// `lora`: dropout on the adapters' input while training.
    #[arg(long, default_value_t = 0.05)]
    pub lora_dropout: f32,

    /// `lora`: the modules adapted, by the last component of their name, comma-separated
    /// (default: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj and ChatGLM's
    /// query_key_value,dense,dense_h_to_4h,dense_4h_to_h).
    #[arg(long, value_delimiter = ',')]
    pub lora_targets: Vec<String>,

    /// `recover`: Alpaca instruction data (`instruction`, `input`, `output`), a JSON array or JSONL.
    #[arg(long, value_name = "FILE", conflicts_with = "train_text")]
    pub train_data: Option<PathBuf>,

    /// `recover`: plain text (or JSONL rows of `text` or `input_ids`) for causal language
    /// modelling on windows of --cutoff-len tokens.
    #[arg(long, value_name = "FILE")]
    pub train_text: Option<PathBuf>,

    /// `recover`: passes over the training samples (instead of --steps).
    #[arg(long)]
    pub epochs: Option<f64>,

    /// `recover`: peak learning rate (LLM-Pruner: 1e-4).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,

    /// `recover`: linear warmup steps (LLM-Pruner: 100), at most a tenth of the steps.
    #[arg(long, default_value_t = 100)]
    pub warmup_steps: usize,

    /// `recover`: decay of the learning rate after the warmup.
    #[arg(long, value_enum, default_value = "linear")]
    pub lr_schedule: Schedule,

    /// `recover`: AdamW's decoupled weight decay (HF's Trainer default: 0).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,

    /// `recover`: samples per optimizer step (LLM-Pruner: 128; at most the training samples).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,

    /// `recover`: samples per forward/backward pass; gradients accumulate over
    /// batch-size / micro-batch-size of them (LLM-Pruner: 4).
    #[arg(long, default_value_t = 4)]
    pub micro_batch_size: usize,

    /// `recover`: most tokens of a sample (LLM-Pruner: 256); text windows have this length.
    #[arg(long, default_value_t = 256)]
    pub cutoff_len: usize,

    /// `recover`: samples held out for the validation loss (LLM-Pruner: 2000; at most half
    /// of the data).
    #[arg(long, default_value_t = 2000)]
    pub val_set_size: usize,

    /// `recover`: measure the validation loss (and perplexity on --eval-text) every N steps
    /// (0: at the end only).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,

    /// `recover`: write the adapters (PEFT format) to DIR/checkpoint-STEP every --save-every steps.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,

    /// `recover`: steps between checkpoints (LLM-Pruner: 200); the last step is always saved.
    #[arg(long, default_value_t = 200)]
    pub save_every: usize,

    /// `recover`: write the trained adapters here, as PEFT does (adapter_model.safetensors +
    /// adapter_config.json), for `PeftModel.from_pretrained` on the base model (`-o` without `merge`).
    #[arg(long, value_name = "DIR")]
    pub adapter_out: Option<PathBuf>,
}

/// Decay of the learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Schedule {
    /// Linearly to 0 (HF's default).
    Linear,
    /// Along half a cosine to 0.
    Cosine,
    /// Constant after the warmup.
    Constant,
}

impl RecoverArgs {
    /// The options of the `lora` pass on `model`: without --lora-targets, the modules its
    /// architecture adapts.
    pub fn lora_options(&self, seed: u64, model: &Model) -> LoraOptions {
        let targets = prunec_frontends::arch::lora_targets(model);
        let mut o = LoraOptions { rank: self.lora_r, alpha: self.lora_alpha, dropout: self.lora_dropout, seed, ..LoraOptions::targeting(&targets) };
        if !self.lora_targets.is_empty() {
            o.targets = self.lora_targets.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        }
        o
    }

    /// Refuses bad options before the model is read. `steps` is --steps when the pipeline
    /// trains.
    pub fn check(&self, pipeline: &[PassName], steps: Option<usize>, force: bool) -> Result<()> {
        let names: Vec<&str> = pipeline.iter().map(|s| s.name()).collect();
        let lora = names.iter().position(|&n| n == "lora");
        if names.contains(&"lora") || names.contains(&"recover") {
            if self.lora_r == 0 {
                bail!("--lora-r 0: the rank must be at least 1");
            }
            if !(0.0..1.0).contains(&self.lora_dropout) {
                bail!("--lora-dropout {}: it must be in [0, 1)", self.lora_dropout);
            }
            if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
                bail!("--lora-alpha {}: it must be a positive number", self.lora_alpha);
            }
        }
        let Some(recover) = names.iter().position(|&n| n == "recover") else {
            if self.adapter_out.is_some() {
                bail!("--adapter-out: only `recover` writes adapters; put it in --pass");
            }
            return Ok(());
        };
        if lora.is_none_or(|l| l > recover) {
            bail!("pass `recover` trains LoRA adapters: put `lora` before it (--pass ...,lora,recover,merge)");
        }
        if self.train_data.is_none() && self.train_text.is_none() {
            bail!("pass `recover` needs --train-data FILE (Alpaca JSON/JSONL) or --train-text FILE (plain text)");
        }
        match (steps, self.epochs) {
            (Some(_), Some(_)) => bail!("give --steps or --epochs for `recover`, not both"),
            (Some(0), _) => bail!("--steps 0: `recover` needs at least one step"),
            (_, Some(e)) if !(e.is_finite() && e > 0.0) => bail!("--epochs {e}: it must be positive"),
            _ => {}
        }
        if self.batch_size == 0 || self.micro_batch_size == 0 {
            bail!("--batch-size and --micro-batch-size must be positive");
        }
        if self.cutoff_len < 2 {
            bail!("--cutoff-len {}: a sample needs at least 2 tokens", self.cutoff_len);
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr {}: it must be positive", self.lr);
        }
        if let Some(out) = &self.adapter_out {
            if out.exists() && !force {
                bail!("--adapter-out {}: already exists (give --force to replace it)", out.display());
            }
        }
        Ok(())
    }
}

/// Training samples from --train-data or --train-text.
fn read_samples(args: &RecoverArgs, model_path: &Path, tokenizer: Option<&Path>) -> Result<(Vec<TrainSample>, String)> {
    if let Some(path) = &args.train_data {
        let rows = read_alpaca(path)?;
        let tok = crate::session::tokenizer(model_path, tokenizer).context("--train-data is tokenized with the model's tokenizer")?;
        let samples = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                alpaca_sample(r, |t| tok.encode_with_special(t), tok.eos, args.cutoff_len)
                    .with_context(|| format!("{}: row {i}", path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok((samples, path.display().to_string()));
    }
    let path = args.train_text.as_deref().context("--train-text")?;
    let src = read_text_source(path)?;
    let tokens = match &src {
        TextSource::Tokens(rows) => rows.concat(),
        _ => token_stream(&src, &crate::session::tokenizer(model_path, tokenizer)?)?,
    };
    let samples = text_samples(&tokens, args.cutoff_len);
    if samples.is_empty() {
        bail!("{}: {} tokens, fewer than one window of --cutoff-len {}", path.display(), tokens.len(), args.cutoff_len);
    }
    Ok((samples, path.display().to_string()))
}

/// An f32 as the f64 of its shortest decimal (0.05, not 0.05000000074505806).
fn shortest(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// Samples as the trainer takes them.
fn views(samples: &[TrainSample]) -> Vec<Sample<'_>> {
    samples.iter().map(|s| Sample { ids: &s.ids, targets: &s.targets }).collect()
}

/// Reports steps on a progress bar and writes checkpoints.
struct Observer<'a> {
    bar: Progress,
    checkpoints: Option<&'a Path>,
    peft: (Vec<PeftAdapter>, PeftConfig),
    inputs: Vec<&'a Path>,
    /// Whether an earlier checkpoint of the same step is replaced (`--force`).
    force: bool,
}

impl TrainObserver for Observer<'_> {
    fn step(&mut self, step: usize, _steps: usize, loss: f64, tokens_per_s: f64) {
        self.bar.update(step, &format!("loss {loss:.4}, {tokens_per_s:.0} tokens/s"));
    }

    fn evaluated(&mut self, p: &TrainPoint) {
        let f = |v: Option<f64>| v.map_or("—".to_string(), |x| format!("{x:.4}"));
        eprintln!(
            "step {}: train loss {}, val loss {}, perplexity {}, {:.0} tokens/s",
            p.step,
            f(p.train_loss),
            f(p.val_loss),
            f(p.perplexity),
            p.tokens_per_s
        );
    }

    fn checkpoint(&mut self, step: usize, params: &ParamStore) -> prunec_backends::Result<()> {
        if let Some(dir) = self.checkpoints {
            let out = dir.join(format!("checkpoint-{step}"));
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent).map_err(|source| prunec_backends::BackendError::Io { path: parent.to_path_buf(), source })?;
            }
            write_peft_adapter_replacing(params, &self.peft.0, &self.peft.1, &out, &self.inputs, self.force)?;
        }
        Ok(())
    }
}

/// The adapters of `model` as PEFT's writer takes them, and their common configuration.
fn peft_adapters(found: &[Adapter], base_model: String) -> Result<(Vec<PeftAdapter>, PeftConfig)> {
    let first = found.first().context("the model has no LoRA adapters")?;
    if found.iter().any(|a| a.rank != first.rank || a.scale != first.scale) {
        bail!("the adapters differ in rank or alpha: PEFT's adapter_config.json holds one of each");
    }
    let mut targets: Vec<String> = found.iter().map(|a| a.target().to_string()).collect();
    targets.sort();
    targets.dedup();
    let list = found.iter().map(|a| PeftAdapter { module: a.module.clone(), a: a.a.clone(), b: a.b.clone() }).collect();
    Ok((list, PeftConfig { r: first.rank, alpha: first.alpha(), dropout: first.dropout, target_modules: targets, base_model }))
}

/// Runs `recover` on `model`: returns the summary line and the report's `training` entry.
pub fn run(cli: &crate::cli::RunArgs, model: &mut Model, model_path: &Path) -> Result<(String, serde_json::Value)> {
    let args = &cli.recover;
    let found = adapters(model);
    if found.is_empty() {
        bail!("it trains LoRA adapters, and the model has none: put `lora` before it");
    }
    let trainable: Vec<String> = found.iter().flat_map(|a| [a.a.clone(), a.b.clone()]).collect();
    let (mut samples, source) = read_samples(args, model_path, cli.tokenizer.as_deref())?;
    let origin = format!("{source} (its `input_ids`, or tokenized by {})", crate::safety::tokenizer_origin(model_path, cli.tokenizer.as_deref()));
    crate::safety::check_token_ids(model, samples.iter().map(|s| s.ids.as_slice()), &origin)?;
    let total = samples.len();
    samples.retain(|s| s.predicted() > 0);
    let dropped = total - samples.len();
    if samples.is_empty() {
        bail!("{source}: no sample keeps a token to predict within --cutoff-len {}", args.cutoff_len);
    }
    // the validation split: a seeded shuffle, at most half of the samples held out
    let mut rng = SplitMix64::new(cli.seed ^ 0x5EED_5A1E);
    for i in (1..samples.len()).rev() {
        samples.swap(i, rng.below(i + 1));
    }
    let n_val = args.val_set_size.min(samples.len() / 2);
    let (val, train) = samples.split_at(n_val);
    let (train_view, val_view) = (views(train), views(val));
    let batch_size = args.batch_size.min(train.len());
    let micro = args.micro_batch_size.min(batch_size);
    let steps = match (cli.steps, args.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => ((e * train.len() as f64) / batch_size as f64).ceil().max(1.0) as usize,
        (None, None) => train.len().div_ceil(batch_size),
    };
    let warmup = args.warmup_steps.min(steps / 10);
    let eval_tokens = crate::evaluate::first_text_tokens(&cli.eval, model_path, cli.tokenizer.as_deref())?.map(|(_, t)| t);
    let eval_text = eval_tokens.as_deref().map(|tokens| EvalText { tokens, seq_len: cli.eval.seq_len, batch: cli.eval.eval_batch });
    if let Some(t) = &eval_text {
        if t.tokens.len() < t.seq_len.max(2) {
            bail!("--eval-text: {} tokens, fewer than one window of --seq-len {}", t.tokens.len(), t.seq_len);
        }
    }
    eprintln!(
        "recover: {} adapters ({} trainable parameters); {} training and {} validation samples from {source}{}; \
         {steps} steps of {batch_size} samples ({micro} per pass), lr {} ({:?}, {warmup} warmup steps)",
        found.len(),
        trainable.iter().filter_map(|n| model.params.get(n)).map(|p| p.numel()).sum::<usize>(),
        train.len(),
        val.len(),
        if dropped > 0 { format!(" ({dropped} without a target token left out)") } else { String::new() },
        args.lr,
        args.lr_schedule,
    );
    let opts = TrainOptions {
        steps,
        batch_size,
        micro_batch_size: micro,
        lr: args.lr,
        warmup_steps: warmup,
        schedule: match args.lr_schedule {
            Schedule::Linear => LrSchedule::Linear,
            Schedule::Cosine => LrSchedule::Cosine,
            Schedule::Constant => LrSchedule::Constant,
        },
        weight_decay: args.weight_decay,
        eval_every: args.eval_every,
        save_every: if args.checkpoint_dir.is_some() { args.save_every } else { 0 },
        seed: cli.seed,
    };
    let base_model = cli.output.as_deref().unwrap_or(model_path).display().to_string();
    let mut observer = Observer {
        bar: Progress::new("recover", steps, "steps"),
        checkpoints: args.checkpoint_dir.as_deref(),
        peft: peft_adapters(&found, base_model)?,
        inputs: vec![model_path],
        force: cli.force,
    };
    let cluster = cli.parallel.cluster(cli.device)?;
    let (outcome, times) = crate::device::train(&cluster, model, &trainable, &train_view, &val_view, eval_text, &opts, &mut observer)
        .context("training")?;
    let peers = if cluster.is_parallel() {
        let mut record = cluster.describe(&times);
        let adapters = trainable.iter().map(|n| Ok((n, model.params.read_f32(n)?))).collect::<Result<Vec<_>>>()?;
        let digest = crate::session::stats_digest(adapters.iter().map(|(n, v)| (*n, v.as_ref())));
        eprintln!("adapters digest {digest} (equal on every peer)");
        record["digest"] = digest.into();
        Some(record)
    } else {
        None
    };
    let Observer { bar, peft, .. } = observer;
    bar.finish();
    if let Some(out) = &args.adapter_out {
        let written = write_peft_adapter_replacing(&model.params, &peft.0, &peft.1, out, &[model_path], cli.force)?;
        eprintln!("adapters written to {} (PEFT)", written.display());
    }
    let first = outcome.step_losses.first().copied().unwrap_or(f64::NAN);
    let last = outcome.step_losses.last().copied().unwrap_or(f64::NAN);
    let tokens_per_s = outcome.tokens as f64 / outcome.train_seconds.max(1e-9);
    let mut summary = format!("trained {} adapters for {steps} steps: loss {first:.4} → {last:.4}, {tokens_per_s:.0} tokens/s", found.len());
    if let Some(v) = outcome.curve.last().and_then(|p| p.val_loss) {
        summary += &format!(", validation loss {v:.4}");
    }
    summary.push('\n');
    let curve: Vec<serde_json::Value> = outcome
        .curve
        .iter()
        .map(|p| {
            json!({
                "step": p.step,
                "train_loss": p.train_loss,
                "val_loss": p.val_loss,
                "perplexity": p.perplexity,
                "lr": p.lr,
                "tokens_per_s": p.tokens_per_s,
            })
        })
        .collect();
    let mut training = json!({
        "data": source,
        "samples": { "train": train.len(), "validation": val.len(), "left_out": dropped },
        "steps": steps,
        "batch_size": batch_size,
        "micro_batch_size": micro,
        "cutoff_len": args.cutoff_len,
        "lr": args.lr,
        "warmup_steps": warmup,
        "lora": { "r": peft.1.r, "alpha": shortest(peft.1.alpha), "dropout": shortest(peft.1.dropout), "target_modules": peft.1.target_modules, "adapters": found.len() },
        "tokens": outcome.tokens,
        "seconds": outcome.train_seconds,
        "tokens_per_s": tokens_per_s,
        "step_losses": outcome.step_losses,
        "curve": curve,
    });
    if let Some(peers) = peers {
        training["peers"] = peers;
    }
    Ok((summary, training))
}
