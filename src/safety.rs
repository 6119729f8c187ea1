//! Nothing lost, nothing silent: the checks a run passes before it starts work, and what it
//! does when interrupted.
//!
//! - Outputs: every file and folder a command will write is checked before any work against
//!   its inputs (model files, external data, tokenizer, calibration, evaluation and training
//!   data: never overwritten, even with `--force`), against what exists (replaced only with
//!   `--force`; a folder only when it is an earlier prunec output) and against the command's
//!   other outputs (no two the same). The writers check again when they write
//!   ([`prunec_ir::output`]).
//! - Signals: SIGINT, SIGTERM and SIGHUP remove the outputs being written (their hidden
//!   temporary paths) before the process exits.
//! - Arguments: numbers in range (`--eval-batch 0`, `--temperature nan` are refused); a
//!   negative number given to a count says so.
//! - Resources: memory for calibration samples and evaluation batches, disk space for what is
//!   written, checked before allocating or writing.
//! - Token ids: checked against the model's vocabulary before running, naming the id, the
//!   vocabulary and where the ids came from.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use prunec_ir::output::{check_destination, check_not_input, resolve, OutputKind};
use prunec_ir::{Model, Op};

use prunec_passes::PassName;
use crate::cli::{Cli, Command, RunArgs};

/// Installs a handler of SIGINT, SIGTERM and SIGHUP that removes the outputs being written (and
/// puts back a replaced folder not yet succeeded), then exits with status 128 + the signal.
pub fn install_signal_cleanup() {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
        let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                prunec_ir::output::remove_unfinished();
                eprintln!("\ninterrupted (signal {signal}): unfinished outputs removed");
                std::process::exit(128 + signal);
            }
        });
        if spawned.is_err() {
            eprintln!("warning: no handler of interruptions: an interrupted run may leave a temporary output behind");
        }
    }
}

/// `text` as one plain line: control characters (an ANSI escape, a newline from a file) escaped.
pub fn printable(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_debug().collect::<Vec<_>>() } else { vec![c] }).collect()
}

/// A clearer word than clap's for a negative number given where a count is expected
/// (`--seq-len -1`): `None` for every other argument error.
pub fn negative_count(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    if e.kind() != clap::error::ErrorKind::ValueValidation {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) =
        (e.get(ContextKind::InvalidArg), e.get(ContextKind::InvalidValue))
    else {
        return None;
    };
    let negative = value.strip_prefix('-').is_some_and(|v| v.parse::<f64>().is_ok());
    let flag = arg.split_whitespace().next().unwrap_or(arg);
    negative.then(|| format!("{flag} {value}: a count cannot be negative"))
}

/// Refuses numbers out of range, for every command, before anything is read.
pub fn check_args(cli: &Cli) -> Result<()> {
    match &cli.command {
        None => check_run_args(&cli.run),
        Some(Command::Sweep(a)) => check_run_args(&a.run),
        Some(Command::Sensitivity(a)) => check_run_args(&a.run),
        Some(Command::Generate(a)) => {
            if !(a.temperature.is_finite() && a.temperature >= 0.0) {
                bail!("--temperature {}: it must be a number ≥ 0 (0 is greedy)", a.temperature);
            }
            if !(a.top_p > 0.0 && a.top_p <= 1.0) {
                bail!("--top-p {}: it must be in (0, 1]", a.top_p);
            }
            Ok(())
        }
        Some(Command::Bench(_) | Command::Synth(_)) => Ok(()),
    }
}

fn check_run_args(r: &RunArgs) -> Result<()> {
    if r.calib_samples == 0 {
        bail!("--calib-samples 0: calibration needs at least one sample");
    }
    if r.calib_len < 2 {
        bail!("--calib-len {}: a calibration sample needs at least 2 tokens", r.calib_len);
    }
    let e = &r.eval;
    if e.seq_len < 2 {
        bail!("--seq-len {}: a perplexity window needs at least 2 tokens", e.seq_len);
    }
    if e.eval_batch == 0 {
        bail!("--eval-batch 0: a forward pass needs at least one window");
    }
    if e.max_length == 0 {
        bail!("--max-length 0: the model must read at least one token");
    }
    if e.limit == Some(0) {
        bail!("--limit 0: nothing would be measured");
    }
    if r.prune_steps == 0 {
        bail!("--prune-steps 0: pruning takes at least one step");
    }
    let rec = &r.recover;
    if !(rec.weight_decay.is_finite() && rec.weight_decay >= 0.0) {
        bail!("--weight-decay {}: it must be a number ≥ 0", rec.weight_decay);
    }
    if rec.checkpoint_dir.is_some() && rec.save_every == 0 {
        bail!("--save-every 0: give the steps between checkpoints (at least 1)");
    }
    // the samples alone: the ids and a vector for each
    let per_sample = (r.calib_len as u128) * 4 + 24;
    check_memory(&format!("--calib-samples {} of --calib-len {}", r.calib_samples, r.calib_len), per_sample * r.calib_samples as u128)?;
    Ok(())
}

/// Bytes of memory available to this process (Linux: `MemAvailable`, and the cgroup's limit
/// when lower); `None` when the system does not say.
pub fn available_memory() -> Option<u128> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut bytes = kib * 1024;
    if let Some(limit) = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u128>().ok()) {
        let used = std::fs::read_to_string("/sys/fs/cgroup/memory.current").ok().and_then(|s| s.trim().parse::<u128>().ok()).unwrap_or(0);
        bytes = bytes.min(limit.saturating_sub(used));
    }
    Some(bytes)
}

/// `bytes` as people read sizes.
pub fn human_bytes(bytes: u128) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut x = bytes as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

/// Refuses work that needs more memory than is available: `what` needs `bytes`.
pub fn check_memory(what: &str, bytes: u128) -> Result<()> {
    match available_memory() {
        Some(free) if bytes > free => {
            bail!("{what}: needs {} of memory, more than the {} available", human_bytes(bytes), human_bytes(free))
        }
        _ => Ok(()),
    }
}

/// Bytes free for an unprivileged writer in the file system holding `dir` (or its nearest
/// existing ancestor); `None` when the system does not say.
pub fn free_disk(dir: &Path) -> Option<u128> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let mut at = resolve(dir);
        while !at.exists() {
            at = at.parent()?.to_path_buf();
        }
        let c = std::ffi::CString::new(at.as_os_str().as_bytes()).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `c` is a NUL-terminated path and `st` a buffer statvfs fills on success.
        if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        #[allow(clippy::unnecessary_cast)]
        Some(st.f_bavail as u128 * st.f_frsize as u128)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Refuses to start writing `bytes` (`what`) into `dir` when its file system has less free.
pub fn check_disk(dir: &Path, bytes: u128, what: &str) -> Result<()> {
    match free_disk(dir) {
        Some(free) if bytes > free => bail!(
            "{what}: {} to write, but only {} are free on the file system of {}",
            human_bytes(bytes),
            human_bytes(free),
            dir.display()
        ),
        _ => Ok(()),
    }
}

/// The folder an output at `path` is written in.
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuses `prunec synth` when the folder's file system cannot hold the model: its size is
/// computed from the configuration (one and two layers, then scaled), before any tensor is
/// listed or written.
pub fn check_synth_space(config: &prunec_frontends::arch::llama::LlamaConfig, bytes_per_value: usize, out: &Path) -> Result<()> {
    let params = |layers: usize| -> u128 {
        let mut c = config.clone();
        c.num_layers = layers;
        c.expected_params().iter().map(|(_, s)| s.iter().map(|&d| d as u128).product::<u128>()).sum()
    };
    let (one, two) = (params(1), params(2));
    let per_layer = two.saturating_sub(one);
    let total = (one - per_layer + per_layer * config.num_layers as u128) * bytes_per_value as u128;
    check_disk(&folder_of(out), total, &format!("synth with {} layers", config.num_layers))
}

/// Refuses writing `model` at `out` (`-o`) when the file system has no room for its weights.
pub fn check_output_space(model: &Model, out: &Path, bytes_per_value: usize) -> Result<()> {
    check_disk(&folder_of(out), model.params.numel() as u128 * bytes_per_value as u128, &format!("-o {}", out.display()))
}

/// The tokens `model` reads and predicts: the rows of its embedding table (and no more than
/// its logits' vocabulary); `None` when its graph states neither.
pub fn vocab_size(model: &Model) -> Option<usize> {
    let g = &model.graph;
    let mut vocab: Option<usize> = None;
    for id in g.node_ids() {
        let Ok(node) = g.node(id) else { continue };
        let found = match &node.op {
            Op::Embedding => g.inputs(id).first().and_then(|v| match g.node(v.node).ok().map(|n| &n.op) {
                Some(Op::Param { name, .. }) => model.params.get(name).and_then(|p| p.shape.first().copied()),
                _ => None,
            }),
            Op::Output { name } if name == "logits" => g.inputs(id).first().and_then(|v| match g.value_type(*v).ok()?.shape.dims().last()? {
                prunec_ir::Dim::Fixed(n) => Some(*n),
                prunec_ir::Dim::Sym(_) => None,
            }),
            _ => None,
        };
        if let Some(n) = found {
            vocab = Some(vocab.map_or(n, |v| v.min(n)));
        }
    }
    vocab
}

/// Where token ids came from, for messages: the tokenizer given with `--tokenizer`, else the
/// model's own.
pub fn tokenizer_origin(model: &Path, explicit: Option<&Path>) -> String {
    match explicit {
        Some(t) => format!("the tokenizer given with --tokenizer {}", t.display()),
        None => format!("the tokenizer of {}", model.display()),
    }
}

/// Refuses token ids at or past the model's vocabulary before anything runs: the message names
/// the first such id, where it is, the vocabulary's size and `origin` (where the ids came from).
pub fn check_token_ids<'a>(model: &Model, rows: impl IntoIterator<Item = &'a [u32]>, origin: &str) -> Result<()> {
    let Some(vocab) = vocab_size(model) else { return Ok(()) };
    for (r, row) in rows.into_iter().enumerate() {
        if let Some(p) = row.iter().position(|&t| t as usize >= vocab) {
            bail!(
                "token id {} (row {r}, position {p}) is outside the vocabulary of {} ({vocab} tokens, the rows of its embedding): the ids come from {origin}; is that this model's tokenizer?",
                row[p],
                model.info.name
            );
        }
    }
    Ok(())
}

/// Refuses a loss, log-likelihood or perplexity that is not finite, naming `what` it is.
pub fn check_finite(value: f64, what: &str) -> Result<()> {
    if !value.is_finite() {
        bail!("{what} is {value}, not a finite number: the model or its configuration is broken (see the messages above)");
    }
    Ok(())
}

/// The files and folders a run reads: the model (with an ONNX file's external data), the
/// tokenizer, calibration, evaluation and training data.
pub fn run_inputs(cli: &RunArgs, plan: &crate::evaluate::Plan) -> Result<Vec<PathBuf>> {
    let mut inputs = Vec::new();
    if let Some(model) = &cli.model {
        if is_onnx(model) {
            inputs.extend(prunec_frontends::onnx::source_files(model)?);
        } else {
            inputs.push(model.clone());
        }
    }
    inputs.extend(cli.tokenizer.iter().cloned());
    inputs.extend(cli.calib.iter().cloned());
    inputs.extend(plan.texts.iter().map(|(_, f)| f.clone()));
    inputs.extend(plan.tasks.iter().map(|(_, f)| f.clone()));
    inputs.extend(cli.eval.tasks_dir.iter().cloned());
    inputs.extend(cli.recover.train_data.iter().cloned());
    inputs.extend(cli.recover.train_text.iter().cloned());
    Ok(inputs)
}

/// Whether the model at `path` is read as an ONNX file.
fn is_onnx(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "onnx")
}

/// `stem` with `.ext` added (`R.table` → `R.table.md`), as the table writer names its files.
fn with_added_extension(stem: &Path, ext: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(format!(".{ext}"));
    PathBuf::from(name)
}

/// An output a command will write: the flag that names it, where, and what it is.
struct Output {
    flag: &'static str,
    path: PathBuf,
    kind: OutputKind,
}

/// Checks `outputs` before any work: none is an input, none is named twice or lies inside
/// another, and each may be written where it goes (what exists there is replaced only with
/// `force`, a folder only when it is an earlier prunec output).
fn check_outputs(outputs: &[Output], inputs: &[PathBuf], force: bool) -> Result<()> {
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    for (k, o) in outputs.iter().enumerate() {
        check_destination(&o.path, o.kind, &inputs, force).map_err(|e| anyhow::anyhow!("{}: {e}", o.flag))?;
        let here = resolve(&o.path);
        for other in &outputs[..k] {
            let there = resolve(&other.path);
            if here == there || here.starts_with(&there) || there.starts_with(&here) {
                bail!(
                    "{} {} and {} {} would write the same place: give them different paths",
                    other.flag,
                    other.path.display(),
                    o.flag,
                    o.path.display()
                );
            }
        }
    }
    Ok(())
}

/// Checks, before a run reads its model, every output it will write (see the module
/// documentation): `-o`, `--report` (and its `.md` and table), `--table`, `--scores-out`,
/// `--adapter-out` and the checkpoints under `--checkpoint-dir`.
pub fn check_run_outputs(cli: &RunArgs, steps: &[PassName], plan: &crate::evaluate::Plan) -> Result<()> {
    let inputs = run_inputs(cli, plan)?;
    let mut outputs = Vec::new();
    let file = |flag, path: PathBuf| Output { flag, path, kind: OutputKind::File };
    if let (Some(out), Some(model)) = (&cli.output, &cli.model) {
        if crate::output::is_gguf(out) {
            outputs.push(file("-o", out.clone()));
        } else if is_onnx(model) {
            outputs.push(file("-o", out.clone()));
            // a source with external data is written with its own external data file
            if prunec_frontends::onnx::source_files(model)?.len() > 1 {
                outputs.push(file("-o", with_added_extension(out, "data")));
            }
        } else {
            outputs.push(Output { flag: "-o", path: out.clone(), kind: OutputKind::Folder });
        }
    }
    let evaluates = steps.contains(&PassName::Eval);
    if let Some(r) = &cli.report {
        outputs.push(file("--report", r.clone()));
        outputs.push(file("--report", r.with_extension("md")));
        if evaluates && cli.eval.table.is_none() {
            for ext in ["md", "csv", "json"] {
                outputs.push(file("--report", with_added_extension(&r.with_extension("table"), ext)));
            }
        }
    }
    if let (Some(t), true) = (&cli.eval.table, evaluates) {
        for ext in ["md", "csv", "json"] {
            outputs.push(file("--table", with_added_extension(t, ext)));
        }
    }
    if let (Some(s), true) = (&cli.eval.samples, evaluates) {
        outputs.push(file("--samples", s.clone()));
    }
    if let (Some(s), true) = (&cli.scores_out, steps.contains(&PassName::Score)) {
        outputs.push(file("--scores-out", s.clone()));
    }
    if let (Some(a), true) = (&cli.recover.adapter_out, steps.contains(&PassName::Recover)) {
        outputs.push(Output { flag: "--adapter-out", path: a.clone(), kind: OutputKind::Folder });
    }
    check_outputs(&outputs, &inputs, cli.force)?;
    if let (Some(dir), true) = (&cli.recover.checkpoint_dir, steps.contains(&PassName::Recover)) {
        check_checkpoint_dir(dir, &inputs, cli.force)?;
    }
    Ok(())
}

/// `--checkpoint-dir DIR`: not an input (nor inside one), and its `checkpoint-N` folders are
/// replaced only with `--force` (and then only prunec's own).
fn check_checkpoint_dir(dir: &Path, inputs: &[PathBuf], force: bool) -> Result<()> {
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    check_not_input(dir, &refs).map_err(|e| anyhow::anyhow!("--checkpoint-dir: {e}"))?;
    if dir.exists() && !dir.is_dir() {
        bail!("--checkpoint-dir {}: exists and is not a folder", dir.display());
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let mut taken: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().filter(|n| n.starts_with("checkpoint-")).map(str::to_string))
        .collect();
    taken.sort();
    if taken.is_empty() {
        return Ok(());
    }
    if !force {
        bail!(
            "--checkpoint-dir {}: already holds {}; give --force to replace them, or another folder",
            dir.display(),
            taken.join(", ")
        );
    }
    for name in &taken {
        check_destination(&dir.join(name), OutputKind::Folder, &refs, true)
            .map_err(|e| anyhow::anyhow!("--checkpoint-dir: {e}"))?;
    }
    Ok(())
}

/// Checks the files a study (`sweep`, `sensitivity`) writes: `<STEM>.md`, `.csv`, `.json`,
/// `.svg`, `.png`.
pub fn check_study_outputs(cli: &RunArgs, stem: &Path) -> Result<()> {
    let plan = cli.eval.plan()?;
    let inputs = run_inputs(cli, &plan)?;
    let outputs: Vec<Output> =
        ["md", "csv", "json", "svg", "png"].iter().map(|ext| Output { flag: "--out", path: stem.with_extension(ext), kind: OutputKind::File }).collect();
    check_outputs(&outputs, &inputs, cli.force)
}

/// Checks the files `bench --out STEM` writes (`.md`, `.csv`, `.json`) against the models
/// measured.
pub fn check_bench_outputs(models: &[PathBuf], stem: &Path, force: bool) -> Result<()> {
    let outputs: Vec<Output> =
        ["md", "csv", "json"].iter().map(|ext| Output { flag: "--out", path: stem.with_extension(ext), kind: OutputKind::File }).collect();
    check_outputs(&outputs, models, force)
}

/// Refuses a forward pass of `batch` rows of `seq` tokens whose logits alone (with their
/// log-softmax) would not fit in memory.
pub fn check_forward_memory(model: &Model, batch: usize, seq: usize, what: &str) -> Result<()> {
    let vocab = vocab_size(model).unwrap_or(0) as u128;
    check_memory(what, batch as u128 * seq as u128 * vocab * 4 * 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("key `a\u{1b}[31m\nb`"), "key `a\\u{1b}[31m\\nb`");
        assert_eq!(printable("plain – text"), "plain – text");
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn memory_and_disk_limits_speak() {
        if available_memory().is_none() || free_disk(&std::env::temp_dir()).is_none() {
            return; // the system does not say: nothing is checked
        }
        let e = check_memory("a test", u128::MAX).unwrap_err().to_string();
        assert!(e.contains("a test: needs") && e.contains("available"), "{e}");
        assert!(check_memory("a test", 1).is_ok());
        let dir = std::env::temp_dir();
        let e = check_disk(&dir, u128::MAX, "a test").unwrap_err().to_string();
        assert!(e.contains("to write, but only"), "{e}");
        assert!(check_disk(&dir.join("not/yet/made"), 1, "a test").is_ok());
    }
}
