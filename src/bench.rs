//! `prunec bench`: parameters, MACs, throughput and peak memory of models side by side.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::*;
use crate::device::{self};
use crate::report::{self};
use crate::session::*;
use crate::safety;

/// One model's cost, as `bench` measures it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct BenchRow {
    pub(crate) model: String,
    pub(crate) parameters: usize,
    pub(crate) macs_per_token: usize,
    pub(crate) forward_tokens_per_s: f64,
    pub(crate) backward_tokens_per_s: f64,
    pub(crate) generate_tokens_per_s: Option<f64>,
    pub(crate) peak_rss_mib: Option<f64>,
}

/// Measures one model in this process and prints its figures.
pub(crate) fn bench_one(args: &BenchArgs, path: &Path) -> Result<BenchRow> {
    reset_peak_rss();
    let model = load(path)?;
    safety::check_forward_memory(&model, args.batch, args.seq_len, &format!("--batch {} × --seq-len {}", args.batch, args.seq_len))?;
    let t = device::bench(args.device, &model, args.batch, args.seq_len, args.iters, args.new_tokens)?;
    let rss = peak_rss_mib();
    let macs = report::linear_macs_per_token(&model);
    println!("model                {} ({} parameters)", model.info.name, model.params.numel());
    println!("device               {}", args.device.name());
    println!("batch                {} × {} tokens, {} timed iterations", args.batch, args.seq_len, t.iters);
    println!("MACs per token       {macs} (linear ops)");
    println!("forward              {:.1} tokens/s", t.forward_tokens_per_s);
    // PRUNEC_OP_PROFILE: the forward passes' time per op kind
    let total: f64 = t.forward_ops.iter().map(|o| o.2).sum();
    for (op, steps, seconds) in &t.forward_ops {
        println!("  {op:<24} {steps:>6} steps {:>8.1} ms/pass {:>5.1}%", seconds * 1e3 / t.iters as f64, 100.0 * seconds / total);
    }
    println!("forward+backward     {:.1} tokens/s", t.backward_tokens_per_s);
    if let Some(g) = t.generate_tokens_per_s {
        println!("generation           {g:.1} tokens/s ({} new tokens after {}, prefill included)", args.new_tokens, args.seq_len);
    }
    println!("load                 {:.2} s", t.load_seconds);
    if let Some(rss) = rss {
        println!("peak RSS             {rss:.1} MiB");
    }
    Ok(BenchRow {
        model: path.display().to_string(),
        parameters: model.params.numel(),
        macs_per_token: macs,
        forward_tokens_per_s: t.forward_tokens_per_s,
        backward_tokens_per_s: t.backward_tokens_per_s,
        generate_tokens_per_s: t.generate_tokens_per_s,
        peak_rss_mib: rss,
    })
}

/// Measures one model in a fresh prunec process, so that neither its memory nor its timing
/// carries what an earlier model left behind.
pub(crate) fn bench_child(args: &BenchArgs, path: &Path) -> Result<BenchRow> {
    let exe = std::env::current_exe().context("finding the prunec executable")?;
    let out = std::process::Command::new(exe)
        .arg("bench")
        .arg(path)
        .args(["--batch", &args.batch.to_string(), "--seq-len", &args.seq_len.to_string(), "--iters", &args.iters.to_string()])
        .args(["--new-tokens", &args.new_tokens.to_string(), "--device", args.device.name(), "--row-json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("benchmarking {}", path.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("benchmarking {} failed", path.display());
    }
    let mut row = None;
    for line in stdout.lines() {
        match line.strip_prefix("row: ") {
            Some(json) => row = Some(serde_json::from_str::<BenchRow>(json).context("reading a benchmark row")?),
            None => println!("{line}"),
        }
    }
    row.with_context(|| format!("benchmarking {}: no result", path.display()))
}

pub(crate) fn bench(args: &BenchArgs) -> Result<()> {
    use std::fmt::Write as _;
    if args.batch == 0 || args.seq_len < 2 || args.iters == 0 {
        bail!("--batch and --iters must be positive and --seq-len at least 2");
    }
    if let Some(stem) = &args.out {
        safety::check_bench_outputs(&args.models, stem, args.force)?;
    }
    if args.row_json {
        let [path] = args.models.as_slice() else { bail!("--row-json measures one model") };
        let row = bench_one(args, path)?;
        println!("row: {}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for path in &args.models {
        rows.push(if args.models.len() > 1 { bench_child(args, path)? } else { bench_one(args, path)? });
    }
    if rows.len() < 2 && args.out.is_none() {
        return Ok(());
    }
    let first = rows[0].clone();
    let ratio = |x: f64, base: f64| if base > 0.0 { format!("{:.3}", x / base) } else { "—".into() };
    let mut md = format!(
        "# Cost of each model\n\n{} on {}, each measured in its own process: batches of {} × {} tokens, {} timed iterations, {} generated tokens; ratios against `{}`.\n\n",
        if rows.len() > 1 { "Original and pruned models" } else { "The model" },
        args.device.name(),
        args.batch,
        args.seq_len,
        args.iters,
        args.new_tokens,
        first.model
    );
    md.push_str("| model | parameters | MACs/token | forward tok/s | fwd+bwd tok/s | generation tok/s | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|\n");
    let mut csv = String::from("model,parameters,macs_per_token,forward_tokens_per_s,backward_tokens_per_s,generate_tokens_per_s,peak_rss_mib\n");
    for r in &rows {
        let g = r.generate_tokens_per_s.unwrap_or(f64::NAN);
        let rss = r.peak_rss_mib.unwrap_or(f64::NAN);
        let _ = writeln!(
            md,
            "| {} | {} ({}) | {} ({}) | {:.1} ({}) | {:.1} ({}) | {g:.1} ({}) | {rss:.0} ({}) |",
            r.model,
            r.parameters,
            ratio(r.parameters as f64, first.parameters as f64),
            r.macs_per_token,
            ratio(r.macs_per_token as f64, first.macs_per_token as f64),
            r.forward_tokens_per_s,
            ratio(r.forward_tokens_per_s, first.forward_tokens_per_s),
            r.backward_tokens_per_s,
            ratio(r.backward_tokens_per_s, first.backward_tokens_per_s),
            ratio(g, first.generate_tokens_per_s.unwrap_or(f64::NAN)),
            ratio(rss, first.peak_rss_mib.unwrap_or(f64::NAN)),
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{g},{rss}",
            r.model.replace(',', ";"),
            r.parameters,
            r.macs_per_token,
            r.forward_tokens_per_s,
            r.backward_tokens_per_s
        );
    }
    let json: Vec<serde_json::Value> = rows.iter().map(serde_json::to_value).collect::<std::result::Result<_, _>>()?;
    print!("\n{md}");
    if let Some(stem) = &args.out {
        let inputs: Vec<&Path> = args.models.iter().map(PathBuf::as_path).collect();
        let doc = serde_json::json!({
            "device": args.device.name(), "batch": args.batch, "seq_len": args.seq_len, "iters": args.iters,
            "new_tokens": args.new_tokens, "models": json,
        });
        for (ext, text) in [("md", md), ("csv", csv), ("json", serde_json::to_string_pretty(&doc)? + "\n")] {
            let dest = stem.with_extension(ext);
            prunec_backends::AtomicPath::write(&dest, text.as_bytes(), &inputs, args.force)?;
        }
        eprintln!("wrote {}.{{md,csv,json}}", stem.display());
    }
    Ok(())
}
