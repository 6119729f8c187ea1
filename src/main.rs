//! `prunec`: the command-line driver. Reads a model through a frontend, runs the passes
//! named on the command line (verifying the IR after each), and prints what they found.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

/// A compiler for structural pruning of large language models.
#[derive(Debug, Parser)]
#[command(name = "prunec", version, about, long_about = None)]
struct Cli {
    /// The model: an HF folder (config.json + safetensors) or a GGUF file.
    model: PathBuf,

    /// Passes to run, comma-separated, in order (a pass may appear more than once).
    #[arg(long, default_value = "group")]
    pass: String,

    /// Print the IR after this pass (repeatable).
    #[arg(long, value_name = "PASS")]
    dump_after: Vec<String>,

    /// Print the IR as read, before any pass.
    #[arg(long)]
    dump_input: bool,
}

/// Peak resident memory of this process, from the kernel, in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn run(cli: &Cli) -> Result<()> {
    let pipeline = prunec_passes::parse_pipeline(&cli.pass)?;
    if pipeline.is_empty() {
        bail!("--pass names no pass; valid passes: {}", prunec_passes::PASSES.join(", "));
    }
    for name in &cli.dump_after {
        prunec_passes::manager::Pass::from_name(name)?;
        if !pipeline.iter().any(|p| p.name() == name) {
            bail!("--dump-after {name}: `{name}` is not in --pass {}", cli.pass);
        }
    }
    let start = Instant::now();
    let mut model = prunec_frontends::load(&cli.model).with_context(|| format!("reading {}", cli.model.display()))?;
    eprintln!(
        "read {} ({}, {}): {} parameters in {} tensors, {} nodes, {:.2} s",
        model.info.name,
        model.info.architecture,
        model.info.format,
        model.params.numel(),
        model.params.len(),
        model.graph.len(),
        start.elapsed().as_secs_f64()
    );
    if cli.dump_input {
        print!("{}", prunec_ir::print(&model)?);
    }
    let total = pipeline.len();
    for (k, pass) in pipeline.iter().enumerate() {
        eprintln!("[{}/{total}] {} ...", k + 1, pass.name());
        let outcome = pass.run(&mut model).with_context(|| format!("pass `{}`", pass.name()))?;
        eprintln!("[{}/{total}] {} done in {:.2} s", k + 1, pass.name(), outcome.elapsed.as_secs_f64());
        print!("{}", outcome.summary);
        if cli.dump_after.iter().any(|d| d == pass.name()) {
            print!("{}", prunec_ir::print(&model)?);
        }
    }
    match peak_rss_mib() {
        Some(rss) => eprintln!("done in {:.2} s, peak RSS {rss:.1} MiB", start.elapsed().as_secs_f64()),
        None => eprintln!("done in {:.2} s", start.elapsed().as_secs_f64()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
